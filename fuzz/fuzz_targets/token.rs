//! Token handling on fuzzed input: `auth::extract::find` over fuzzed
//! `Authorization` and `Cookie` headers, and `auth::jwt::Verifier::verify`
//! with HMAC issuers on (a) fuzzed token strings and (b) fuzzed JOSE
//! header + claims JSON that the harness signs with the issuer's real
//! secret, so the fuzzer gets past the signature into claim handling.
//!
//! Never panics. A token that verifies must name a configured issuer, use
//! one of that issuer's algorithms (alg confusion, `none`: refused), carry
//! `exp` and a string `sub`, and, for the issuer with audiences, one of them.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gatehouse::auth::extract::{find, Found, TokenSource};
use gatehouse::auth::jwt::{Issuer, IssuerKeys, Verifier};
use gatehouse::auth::template::Template;
use http::HeaderName;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use pingora_http::RequestHeader;
use serde_json::Value;

const SECRET_A: &[u8] = b"0123456789abcdef0123456789abcdef";
const SECRET_B: &[u8] = b"fedcba9876543210fedcba9876543210-second-issuer";
const ISS_A: &str = "https://a.test";
const ISS_B: &str = "https://b.test";
/// A fixed "now" near the present; `now` itself comes from the input.
const EPOCH: u64 = 1_700_000_000;

#[derive(Arbitrary, Debug)]
struct Input {
    authorization: Option<Vec<u8>>,
    cookies: Vec<Vec<u8>>,
    cookie_name: String,
    cookie_first: bool,
    /// Verified as is.
    token: String,
    /// Signed with an issuer's secret, then verified.
    header_json: Vec<u8>,
    claims_json: Vec<u8>,
    sign_with_b: bool,
    sign_alg: u8,
    now_offset: u32,
}

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| Verifier {
        issuers: vec![
            Issuer {
                issuer: ISS_A.into(),
                audiences: vec!["gatehouse".into()],
                algorithms: vec![Algorithm::HS256],
                keys: IssuerKeys::Secret(DecodingKey::from_secret(SECRET_A)),
                roles_claim: "realm_access.roles".into(),
            },
            Issuer {
                issuer: ISS_B.into(),
                audiences: vec![],
                algorithms: vec![Algorithm::HS384, Algorithm::HS512],
                keys: IssuerKeys::Secret(DecodingKey::from_secret(SECRET_B)),
                roles_claim: "roles".into(),
            },
        ],
        leeway_seconds: 60,
        forward: vec![
            ("sub".into(), HeaderName::from_static("x-user-id")),
            ("scope".into(), HeaderName::from_static("x-user-scopes")),
            ("roles".into(), HeaderName::from_static("x-user-roles")),
            ("email".into(), HeaderName::from_static("x-user-email")),
        ],
        session_key: Some(
            Template::parse("oauth:token:{jti}", &["jti", "sid", "sub"]).expect("template"),
        ),
    })
}

fuzz_target!(|input: Input| {
    let now = EPOCH + u64::from(input.now_offset);

    // Extraction.
    let mut req = RequestHeader::build("GET", b"/", None).expect("request");
    if let Some(v) = &input.authorization {
        if let Ok(v) = http::HeaderValue::from_bytes(v) {
            req.append_header("authorization", v).expect("append");
        }
    }
    for c in input.cookies.iter().take(8) {
        if let Ok(v) = http::HeaderValue::from_bytes(c) {
            req.append_header("cookie", v).expect("append");
        }
    }
    let cookie = TokenSource::parse(&format!("cookie:{}", input.cookie_name))
        .unwrap_or_else(|| TokenSource::Cookie("access_token".into()));
    let sources = if input.cookie_first {
        vec![cookie, TokenSource::Header]
    } else {
        vec![TokenSource::Header, cookie]
    };
    if let Found::Token(t) = find(&req, &sources) {
        assert!(!t.is_empty(), "empty token found");
        check(t, now);
    }

    // Verification of a fuzzed string.
    check(&input.token, now);

    // Verification of fuzzed JSON, correctly signed.
    let algs = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
    let alg = algs[usize::from(input.sign_alg) % algs.len()];
    let secret = if input.sign_with_b {
        SECRET_B
    } else {
        SECRET_A
    };
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&input.header_json),
        URL_SAFE_NO_PAD.encode(&input.claims_json)
    );
    let sig =
        jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(secret), alg)
            .expect("sign");
    check(&format!("{message}.{sig}"), now);
});

/// Verifies `token`; if it is accepted, checks it deserved to be.
fn check(token: &str, now: u64) {
    let Ok(identity) = futures_executor::block_on(verifier().verify(token, now)) else {
        return;
    };
    let mut parts = token.split('.');
    let header = json(parts.next().expect("header"));
    let claims = json(parts.next().expect("claims"));
    let alg = header["alg"].as_str().expect("accepted token without alg");
    let iss = claims["iss"].as_str().expect("accepted token without iss");
    let allowed: &[&str] = match iss {
        ISS_A => &["HS256"],
        ISS_B => &["HS384", "HS512"],
        other => panic!("accepted token of unknown issuer {other:?}"),
    };
    assert!(allowed.contains(&alg), "{iss} accepted alg {alg:?}");
    assert!(claims.get("exp").is_some(), "accepted token without exp");
    assert_eq!(
        claims["sub"].as_str(),
        Some(identity.subject.as_str()),
        "subject is not the sub claim"
    );
    if iss == ISS_A {
        let aud_ok = match &claims["aud"] {
            Value::String(a) => a == "gatehouse",
            Value::Array(a) => a.iter().any(|a| a == "gatehouse"),
            _ => false,
        };
        assert!(aud_ok, "accepted token without the audience");
    }
    for (name, value) in &identity.headers {
        assert!(
            !value.as_bytes().iter().any(|b| *b == b'\r' || *b == b'\n'),
            "{name}: CR/LF in a forwarded identity header"
        );
    }
}

fn json(part: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .expect("accepted token part is not base64url");
    serde_json::from_slice(&bytes).expect("accepted token part is not JSON")
}
