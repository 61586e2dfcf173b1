//! The TLS-ALPN-01 challenge certificate (RFC 8737): self-signed for the
//! name, with the critical acmeIdentifier extension holding the SHA-256
//! of the key authorisation, served only to clients that ask for ALPN
//! `acme-tls/1`.

use rcgen::{CertificateParams, CustomExtension, KeyPair};

use crate::tls::CertKey;

/// The challenge certificate of `name` for key-authorisation digest `digest`.
pub fn challenge_certificate(name: &str, digest: &[u8]) -> Result<CertKey, String> {
    let mut params =
        CertificateParams::new(vec![name.to_string()]).map_err(|e| format!("{name}: {e}"))?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    CertKey::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_names_the_host_and_carries_the_digest() {
        let digest = [7u8; 32];
        let cert = challenge_certificate("a.example.com", &digest).unwrap();
        assert_eq!(cert.names(), ["a.example.com"]);
        let der = cert.leaf().to_der().unwrap();
        let needle = [&[0x04, 0x20][..], &digest].concat();
        assert!(
            der.windows(needle.len()).any(|w| w == needle),
            "the acmeIdentifier's octet string is in the certificate"
        );
    }
}
