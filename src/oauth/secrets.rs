//! The random values and digests of the login flow: session ids, `state`,
//! `nonce`, PKCE verifiers (RFC 7636) and the keys TokenginX holds.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::auth::api_key::sha256_hex;

/// Bytes of every random value: 256 bits.
const RANDOM_BYTES: usize = 32;

/// Characters of a [`random`] value (base64url of 32 bytes).
pub const RANDOM_LEN: usize = 43;

/// 256 random bits from BoringSSL's CSPRNG, base64url without padding.
pub fn random() -> String {
    let mut buf = [0u8; RANDOM_BYTES];
    boring::rand::rand_bytes(&mut buf).expect("BoringSSL's CSPRNG is available");
    URL_SAFE_NO_PAD.encode(buf)
}

/// Whether `value` has the shape of a [`random`] value (and so may be
/// looked up at all).
pub fn is_random_shaped(value: &str) -> bool {
    value.len() == RANDOM_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The PKCE S256 challenge of `verifier`.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(boring::sha::sha256(verifier.as_bytes()))
}

/// SHA-256 of `secret` in hex (the API keys' [`sha256_hex`]): what
/// TokenginX keys carry instead of a session id or a state, so a dump of
/// the store cannot be replayed.
pub fn digest(secret: &str) -> String {
    sha256_hex(secret)
}

/// Whether `a` and `b` are equal, in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && boring::memcmp::eq(a.as_bytes(), b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_the_rfc_7636_example() {
        let r = random();
        assert!(is_random_shaped(&r));
        assert_ne!(r, random());
        assert!(!is_random_shaped("short"));
        assert!(!is_random_shaped(&format!("{}=", &r[1..])));
        // RFC 7636 appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(digest("abc").len(), 64);
        assert!(digest("abc").starts_with("ba7816bf"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
