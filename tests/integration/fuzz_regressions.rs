//! The fuzz targets' properties (`fuzz/fuzz_targets/*.rs`) as plain,
//! table-driven tests on tricky inputs, so CI checks them without a fuzzer,
//! plus every crash the fuzzers found, minimised, as a regression test.
//!
//! Properties:
//! - `routing::normalize`: never panics; a result starts with `/`, has no
//!   `//`, no `.`/`..` segment, escapes only of reserved bytes in upper-case
//!   hex, and normalising it again returns it unchanged.
//! - `routing::RouteTable`: a match's prefix is a segment-boundary prefix
//!   of the normalised path, and the longest one for the host.
//! - `config::compile::load_with_env`: any file contents give `Ok` or
//!   errors, never a panic.
//! - `auth::extract::find` and `auth::jwt::Verifier::verify`: never panic;
//!   an accepted token names a configured issuer and uses one of its
//!   algorithms; `jku`/`x5u`/`jwk` headers change nothing.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gatehouse::auth::extract::{find, Found, TokenSource};
use gatehouse::auth::jwt::{Issuer, IssuerKeys, Verifier};
use gatehouse::auth::{Failure, Reason};
use gatehouse::config::compile::load_with_env;
use gatehouse::metrics::Metrics;
use gatehouse::routing::{canonical_prefix, normalize, parse_authority, PathError, RouteTable};
use http::HeaderName;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use pingora_http::RequestHeader;
use serde_json::{json, Value};

// ---------------------------------------------------------------- paths

/// The `path_normalize` target's checks on one accepted path.
fn assert_normal_form(input: &str, n: &str) {
    assert!(n.starts_with('/'), "{input:?} -> {n:?}: not absolute");
    assert!(!n.contains("//"), "{input:?} -> {n:?}: empty segment");
    assert!(!n.contains('\0'), "{input:?} -> {n:?}: NUL");
    assert!(
        n.split('/').all(|s| s != "." && s != ".."),
        "{input:?} -> {n:?}: dot-segment left"
    );
    let b = n.as_bytes();
    for (i, _) in n.match_indices('%') {
        let hex = &b[i + 1..i + 3];
        assert!(
            hex.iter()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c)),
            "{input:?} -> {n:?}: escape not in upper-case hex"
        );
        let byte = u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
        assert!(
            !(byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) || byte == 0),
            "{input:?} -> {n:?}: %{byte:02X} should have been decoded or refused"
        );
    }
    assert_eq!(
        normalize(n).map(|c| c.into_owned()),
        Ok(n.to_string()),
        "{input:?}: normal form not idempotent"
    );
}

#[test]
fn normalised_paths_are_in_normal_form_and_idempotent() {
    let cases: &[(&str, Result<&str, PathError>)] = &[
        ("/", Ok("/")),
        ("///", Ok("/")),
        ("/.//.", Ok("/")),
        ("/a/..//", Ok("/")),
        ("/a/b/../../../../c/", Ok("/c/")),
        ("/x/./../admin/.", Ok("/admin/")),
        ("/%2e%2e%2e", Ok("/...")),
        ("/a/.%2e.", Ok("/a/...")),
        ("/..../x", Ok("/..../x")),
        // `%25` decodes to `%`, which stays escaped: no double decoding.
        ("/%252e%252e/admin", Ok("/%252e%252e/admin")),
        ("/%2541dmin", Ok("/%2541dmin")),
        ("/%7e%7E", Ok("/~~")),
        ("/%c3%a9", Ok("/%C3%A9")),
        ("/\u{e9}/../x", Ok("/x")),
        ("/%41%44%4d%49%4e/../admin", Ok("/admin")),
        ("/admin%3b/x", Ok("/admin%3B/x")),
        ("/a%2fb", Err(PathError::EncodedSlash)),
        ("/%2F", Err(PathError::EncodedSlash)),
        ("/%2e/admin", Err(PathError::EncodedDotSegment)),
        ("/x/%2E%2e", Err(PathError::EncodedDotSegment)),
        ("/x/..%00", Err(PathError::Nul)),
        ("/x/%", Err(PathError::BadEscape)),
        ("/x/%%41", Err(PathError::BadEscape)),
        ("/x/%4", Err(PathError::BadEscape)),
        ("/x/%\u{e9}", Err(PathError::BadEscape)),
        ("x/../admin", Err(PathError::NotAbsolute)),
    ];
    for (input, want) in cases {
        let got = normalize(input).map(|c| c.into_owned());
        assert_eq!(got.as_deref().map_err(|e| *e), *want, "input {input:?}");
        if let Ok(n) = &got {
            assert_normal_form(input, n);
        }
    }
}

#[test]
fn normal_form_holds_for_generated_spellings() {
    // Every short path over an alphabet of the characters that matter.
    let alphabet = [
        "/", ".", "%2e", "%2E", "a", "%41", "%25", "%3f", "~", "\u{e9}",
    ];
    let mut paths = vec![String::from("/")];
    for _ in 0..4 {
        let mut next = Vec::new();
        for p in &paths {
            for a in alphabet {
                next.push(format!("{p}{a}"));
            }
        }
        paths.extend(next);
    }
    for p in &paths {
        if let Ok(n) = normalize(p) {
            assert_normal_form(p, &n);
        }
    }
}

// -------------------------------------------------------------- routing

/// `route_match`'s check: `/` matches all, `/a` matches `/a`, `/a/`, `/a/x`.
fn on_boundary(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[test]
fn route_matches_end_on_segment_boundaries() {
    let routes: &[(Option<&str>, &str)] = &[
        (None, "/"),
        (None, "/admin"),
        (None, "/admin/_next/static/"),
        (None, "/..."),
        (None, "/a%20b"),
        (Some("API.example.com"), "/admin"),
        (Some("*.example.com"), "/"),
        (Some("*"), "/star"),
        (Some(""), "/empty-host"),
    ];
    let mut table = RouteTable::default();
    let mut prefixes = Vec::new();
    for (id, (host, prefix)) in routes.iter().enumerate() {
        let prefix = canonical_prefix(&normalize(prefix).unwrap());
        let host = host.map(str::to_ascii_lowercase);
        table.insert(host.as_deref(), &prefix, id);
        prefixes.push(prefix);
    }
    let cases: &[(&str, &str, Option<&[usize]>)] = &[
        ("gw", "/administrator", Some(&[0])),
        ("gw", "//admin/../admin/", Some(&[1])),
        ("gw", "/admin/_next/static", Some(&[2])),
        ("gw", "/admin/_next/staticx", Some(&[1])),
        ("gw", "/..../x", Some(&[0])),
        ("gw", "/.../x", Some(&[3])),
        ("gw", "/a%20b/c", Some(&[4])),
        ("gw", "/a b", Some(&[0])),
        ("api.EXAMPLE.com:8443", "/admin/x", Some(&[5])),
        ("api.example.com", "/x", Some(&[6])),
        ("example.com", "/x", Some(&[0])),
        // Not a host name: refused before routing (None here).
        (".example.com", "/x", None),
        ("api.example.com.", "/x", Some(&[6])),
        ("a.b", "/star", Some(&[0])),
        ("", "/empty-host/x", Some(&[8])),
        ("[::1]:80", "/", Some(&[0])),
    ];
    for (host, raw, want) in cases {
        let path = normalize(raw).unwrap();
        let got = match parse_authority(host) {
            Ok(a) => table.lookup(&a.host, &path),
            Err(_) => None,
        };
        assert_eq!(got, *want, "{host} {raw}");
        for &id in got.unwrap_or(&[]) {
            assert!(
                on_boundary(&prefixes[id], &path),
                "{} is not a segment-boundary prefix of {path}",
                prefixes[id]
            );
        }
    }
    // Paths that were never normalised must not panic either.
    for raw in ["", "//", "admin", "/admin//", "\u{e9}", "/%"] {
        let _ = table.lookup("gw", raw);
    }
}

// --------------------------------------------------------------- config

/// Loads `conf` as conf.yaml and `route` as routes/r.yaml; must not panic.
fn load(conf: &str, route: &str) -> Result<(), Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("routes")).unwrap();
    let conf_path = dir.path().join("conf.yaml");
    std::fs::write(&conf_path, conf).unwrap();
    std::fs::write(dir.path().join("routes/r.yaml"), route).unwrap();
    load_with_env(&conf_path, &Metrics::new(), &|_| None)
        .map(|_| ())
        .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
}

const CONF: &str = "listeners:\n  - addr: 127.0.0.1:6188\n";
const ROUTE: &str =
    "upstreams:\n  web:\n    backends: [127.0.0.1:3002]\nroutes:\n  - name: web\n    prefix: /web\n    upstream: web\n";

#[test]
fn malformed_config_files_are_errors_not_panics() {
    let junk: &[&str] = &[
        "",
        "---",
        "--- \n...\n---\n",
        "[",
        "{",
        "\"",
        "- - - -",
        "? : :",
        "&a [*a]",
        "*unknown",
        "!!binary AAAA",
        "a: !!float x",
        "listeners: ~",
        "listeners: [{addr: ${}}]",
        "listeners: [{addr: ${X}}]",
        "listeners: [{addr: $${X}}]",
        "listeners: [{addr: \"${\"}]",
        "listeners: [{addr: 999.0.0.1:1}]",
        "listeners: [{addr: 127.0.0.1:99999}]",
        "routes_dir: \"\"",
        "routes_dir: /nonexistent/dir",
        "\u{feff}listeners: []",
        "\0",
        "\t\t",
        "a: 1\na: 2",
        "1: [2]\n[3]: {4: 5}",
        "jwt: {issuers: [{issuer: x, secret: short, algorithms: [none]}]}",
        "jwt: {issuers: [{issuer: x, jwks_url: 'file:///etc/passwd', algorithms: [HS256]}]}",
        "tokenginx: {url: 'redis://[', session_key: '{', opaque_key: '{token'}",
        "rate_limit: {store: redis, redis_cluster: ['']}",
        "forward_identity: {sub: 'bad header'}",
        "access_log: {path: ''}",
    ];
    for text in junk {
        assert!(load(text, text).is_err(), "{text:?} loaded");
    }
    let routes: &[&str] = &[
        "routes: [{name: a, prefix: /a, upstream: web}]",
        "upstreams: {web: {backends: []}}\nroutes: [{name: a, prefix: a, upstream: web}]",
        "upstreams: {web: {backends: ['127.0.0.1:1', '127.0.0.1:1']}}",
        "upstreams: {web: {backends: [{addr: '127.0.0.1:1', weight: 0}], balance: hash}}",
        "upstreams: {web: {backends: ['127.0.0.1:1'], balance: hash, hash_key: 'cookie:'}}",
        "upstreams: {web: {backends: ['127.0.0.1:1']}}\nroutes: [{name: a, prefix: '/a/../b', upstream: web, methods: ['GE T'], ip_allow: ['10.0.0.0/33'], rate_limit: {key: user, rate: '0/s'}}]",
        "upstreams: {web: {backends: ['127.0.0.1:1']}}\nroutes: [{name: '', prefix: '/%2F', host: '*', upstream: web, auth: jwt, scopes: [1]}]",
    ];
    for route in routes {
        assert!(load(CONF, route).is_err(), "{route:?} loaded");
    }
    assert_eq!(load(CONF, ROUTE), Ok(()));
}

#[test]
fn hmac_secrets_shorter_than_32_bytes_are_config_errors() {
    // SPEC §6, RFC 7518 §3.2: an HMAC key at least as long as the hash.
    let conf = |secret: &str| {
        format!(
            "{CONF}jwt:\n  issuers:\n    - issuer: https://a.test\n      secret: \"{secret}\"\n      algorithms: [HS256]\n"
        )
    };
    let short = load(&conf(&"s".repeat(31)), ROUTE).unwrap_err();
    assert!(
        short
            .iter()
            .any(|e| e.contains("jwt.issuers[0].secret") && e.contains("at least 32 bytes")),
        "{short:?}"
    );
    // The error names the key, never the secret.
    assert!(
        !short.iter().any(|e| e.contains(&"s".repeat(31))),
        "{short:?}"
    );
    assert_eq!(load(&conf(&"s".repeat(32)), ROUTE), Ok(()));
}

#[test]
fn fuzz_seed_configs_load() {
    // fuzz/seeds/config_load/: conf.yaml and a route file split at `#--route--`.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/config_load");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let (conf, route) = text.split_once("\n#--route--\n").unwrap();
        assert_eq!(load(conf, route), Ok(()), "{}", path.display());
    }
}

// --------------------------------------------------------------- tokens

const SECRET_A: &[u8] = b"0123456789abcdef0123456789abcdef";
const SECRET_B: &[u8] = b"fedcba9876543210fedcba9876543210-second-issuer";
const NOW: u64 = 1_700_000_000;

/// The `token` target's verifier: issuer A (HS256, audience `gatehouse`)
/// and issuer B (HS384/HS512, no audience).
fn verifier() -> Verifier {
    Verifier {
        issuers: vec![
            Issuer {
                issuer: "https://a.test".into(),
                audiences: vec!["gatehouse".into()],
                algorithms: vec![Algorithm::HS256],
                keys: IssuerKeys::Secret(DecodingKey::from_secret(SECRET_A)),
                roles_claim: "realm_access.roles".into(),
            },
            Issuer {
                issuer: "https://b.test".into(),
                audiences: vec![],
                algorithms: vec![Algorithm::HS384, Algorithm::HS512],
                keys: IssuerKeys::Secret(DecodingKey::from_secret(SECRET_B)),
                roles_claim: "roles".into(),
            },
        ],
        leeway_seconds: 60,
        forward: vec![
            ("sub".into(), HeaderName::from_static("x-user-id")),
            ("email".into(), HeaderName::from_static("x-user-email")),
        ],
        session_key: None,
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// `header.claims` signed with `secret` under `alg`.
fn signed(header: &Value, claims: &Value, secret: &[u8], alg: Algorithm) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let sig =
        jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(secret), alg)
            .unwrap();
    format!("{message}.{sig}")
}

fn verify(token: &str) -> Result<String, Option<Reason>> {
    futures_util::FutureExt::now_or_never(verifier().verify(token, NOW))
        .expect("an HMAC issuer never waits")
        .map(|id| id.subject)
        .map_err(|f| match f {
            Failure::Unauthenticated(r) => Some(r),
            _ => None,
        })
}

#[test]
fn token_strings_never_panic_the_verifier() {
    let far = jsonwebtoken::get_current_timestamp() + 3600;
    let good = signed(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &json!({"iss": "https://a.test", "aud": "gatehouse", "sub": "u1", "exp": far}),
        SECRET_A,
        Algorithm::HS256,
    );
    let weird: Vec<String> = vec![
        String::new(),
        ".".into(),
        "..".into(),
        "...".into(),
        "a.b.c".into(),
        "e30.e30.".into(),
        "e30.e30.e30.e30".into(),
        "=.=.=".into(),
        "eyJ.eyJ.x".into(),
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none"})),
            b64(&json!({"iss": "https://a.test"}))
        ),
        format!("{}.{}.x", b64(&json!({"alg": 7})), b64(&json!({}))),
        format!(
            "{}.{}.x",
            b64(&json!({"alg": "HS256"})),
            b64(&json!([1, 2]))
        ),
        format!(
            "{}.{}.x",
            b64(&json!({"alg": "HS256"})),
            b64(&json!({"iss": 1}))
        ),
        format!("{}.{}.x", b64(&json!("HS256")), b64(&json!({}))),
        good.replace('.', ".."),
        format!("{good}="),
        format!("{good}.x"),
        good.to_uppercase(),
        "\u{e9}.\u{e9}.\u{e9}".into(),
    ];
    for t in &weird {
        assert!(verify(t).is_err(), "{t:?} accepted");
    }
    assert_eq!(verify(&good), Ok("u1".to_string()));
}

#[test]
fn accepted_tokens_use_their_issuers_algorithm_and_ignore_key_urls() {
    let far = jsonwebtoken::get_current_timestamp() + 3600;
    let a = json!({"iss": "https://a.test", "aud": "gatehouse", "sub": "u1", "exp": far});
    let b = json!({"iss": "https://b.test", "sub": "u2", "exp": far});
    type Case<'a> = (
        &'a str,
        Value,
        &'a Value,
        &'a [u8],
        Algorithm,
        Result<&'a str, Reason>,
    );
    let cases: Vec<Case> = vec![
        (
            "A, HS256",
            json!({"alg": "HS256"}),
            &a,
            SECRET_A,
            Algorithm::HS256,
            Ok("u1"),
        ),
        (
            "B, HS512",
            json!({"alg": "HS512"}),
            &b,
            SECRET_B,
            Algorithm::HS512,
            Ok("u2"),
        ),
        // Alg confusion: an algorithm the issuer does not allow.
        (
            "A, HS384",
            json!({"alg": "HS384"}),
            &a,
            SECRET_A,
            Algorithm::HS384,
            Err(Reason::Algorithm),
        ),
        (
            "B, HS256",
            json!({"alg": "HS256"}),
            &b,
            SECRET_B,
            Algorithm::HS256,
            Err(Reason::Algorithm),
        ),
        // Header says one thing, signature made with another.
        (
            "A, says HS256, signed HS384",
            json!({"alg": "HS256"}),
            &a,
            SECRET_A,
            Algorithm::HS384,
            Err(Reason::Signature),
        ),
        // Issuer B's secret for issuer A's claims.
        (
            "A, B's key",
            json!({"alg": "HS256"}),
            &a,
            SECRET_B,
            Algorithm::HS256,
            Err(Reason::Signature),
        ),
        (
            "alg none",
            json!({"alg": "none"}),
            &a,
            SECRET_A,
            Algorithm::HS256,
            Err(Reason::Algorithm),
        ),
        (
            "alg lower-case",
            json!({"alg": "hs256"}),
            &a,
            SECRET_A,
            Algorithm::HS256,
            Err(Reason::Algorithm),
        ),
        // jku, x5u and an embedded jwk are ignored: the configured key decides.
        (
            "jku/x5u/jwk ignored",
            json!({"alg": "HS256", "jku": "http://127.0.0.1:1/k.json", "x5u": "http://127.0.0.1:1/c.pem",
                   "jwk": {"kty": "oct", "k": URL_SAFE_NO_PAD.encode(b"attacker-key-attacker-key-attacker")}}),
            &a,
            SECRET_A,
            Algorithm::HS256,
            Ok("u1"),
        ),
        (
            "signed with the embedded jwk",
            json!({"alg": "HS256", "jwk": {"kty": "oct", "k": URL_SAFE_NO_PAD.encode(b"attacker-key-attacker-key-attacker")}}),
            &a,
            b"attacker-key-attacker-key-attacker",
            Algorithm::HS256,
            Err(Reason::Signature),
        ),
    ];
    for (what, header, claims, secret, alg, want) in cases {
        let token = signed(&header, claims, secret, alg);
        let got = verify(&token);
        match want {
            Ok(sub) => assert_eq!(got, Ok(sub.to_string()), "{what}"),
            Err(r) => assert_eq!(got, Err(Some(r)), "{what}"),
        }
    }
}

#[test]
fn signed_claims_of_every_shape_never_panic() {
    let far = jsonwebtoken::get_current_timestamp() + 3600;
    let claims: Vec<Value> = vec![
        json!({}),
        json!(null),
        json!([]),
        json!("s"),
        json!({"iss": "https://a.test"}),
        json!({"iss": "https://a.test", "aud": "gatehouse", "exp": far}),
        json!({"iss": "https://a.test", "aud": "gatehouse", "exp": far, "sub": 7}),
        json!({"iss": "https://a.test", "aud": ["x", "gatehouse"], "exp": far, "sub": "u",
               "scope": ["a", 1], "scp": "b c", "realm_access": {"roles": "r"}, "email": "a\r\nb"}),
        json!({"iss": "https://a.test", "aud": "gatehouse", "exp": -1, "sub": "u"}),
        json!({"iss": "https://a.test", "aud": "gatehouse", "exp": 1.5e300, "sub": "u"}),
        json!({"iss": "https://a.test", "aud": "gatehouse", "exp": far, "nbf": u64::MAX, "sub": "u"}),
        json!({"iss": "https://a.test", "aud": "gatehouse", "exp": far, "iat": u64::MAX, "sub": "u"}),
        json!({"iss": "https://a.test", "aud": "gatehouse", "exp": "far", "sub": "u"}),
        json!({"iss": "https://a.test", "aud": 1, "exp": far, "sub": "u"}),
    ];
    for c in &claims {
        let token = signed(&json!({"alg": "HS256"}), c, SECRET_A, Algorithm::HS256);
        let _ = verify(&token);
    }
}

fn request(headers: &[(&str, &[u8])]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", b"/", None).unwrap();
    for (k, v) in headers {
        r.append_header(k.to_string(), http::HeaderValue::from_bytes(v).unwrap())
            .unwrap();
    }
    r
}

#[test]
fn token_extraction_from_tricky_headers() {
    let both = [TokenSource::Header, TokenSource::Cookie("sid".into())];
    type Case<'a> = (&'a [(&'a str, &'a [u8])], Found<'a>);
    let cases: &[Case] = &[
        (&[("authorization", b"Bearer")], Found::Malformed),
        (&[("authorization", b"Bearer ")], Found::Malformed),
        (&[("authorization", b"Bearer  \t ")], Found::Malformed),
        (&[("authorization", b"")], Found::Malformed),
        (&[("authorization", b" ")], Found::Malformed),
        (&[("authorization", b"Bearer\tx")], Found::Malformed),
        (&[("authorization", b"BEARER x y")], Found::Token("x y")),
        (&[("authorization", b"Bearer \xff")], Found::Malformed),
        (&[("authorization", b"Bearerx")], Found::Malformed),
        (&[("cookie", b"sid")], Found::Missing),
        (&[("cookie", b"sid=")], Found::Missing),
        (&[("cookie", b"sid=\"\"")], Found::Missing),
        (&[("cookie", b"sid=\"")], Found::Missing),
        (&[("cookie", b";;;=;sid==x")], Found::Token("=x")),
        (&[("cookie", b"SID=x; sid=y")], Found::Token("y")),
        (&[("cookie", b"\xff; sid=x")], Found::Missing),
        (
            &[("cookie", b"a=1"), ("cookie", b" sid = x ")],
            Found::Missing,
        ),
    ];
    for (headers, want) in cases {
        let req = request(headers);
        assert_eq!(find(&req, &both), *want, "{headers:?}");
        if let Found::Token(t) = find(&req, &both) {
            let _ = verify(t);
        }
    }
}

// -------------------------------------------------- crashes found by fuzzing
//
// Each test below is a minimised input from `fuzz/` that crashed the
// target; each crash is fixed and its test guards the fix.

/// conf.yaml with `extra` appended to a minimal valid main file.
fn conf_with(extra: &str) -> String {
    format!("{CONF}{extra}")
}

#[test]
fn crash_local_max_keys_overflow() {
    let errors = load(
        &conf_with("rate_limit: {local_max_keys: 18446744073709551615}\n"),
        ROUTE,
    )
    .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("rate_limit.local_max_keys")),
        "{errors:?}"
    );
}

#[test]
fn crash_local_max_keys_unbounded_allocation() {
    let errors = load(
        &conf_with("rate_limit: {local_max_keys: 4294967296}\n"),
        ROUTE,
    )
    .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("rate_limit.local_max_keys")),
        "{errors:?}"
    );
}

#[test]
fn crash_jwt_cache_max_bytes_unbounded_allocation() {
    let errors = load(
        &conf_with("jwt: {cache_max_bytes: 18446744073709551615, issuers: []}\n"),
        ROUTE,
    )
    .unwrap_err();
    assert!(
        errors.iter().any(|e| e.contains("jwt.cache_max_bytes")),
        "{errors:?}"
    );
}

#[test]
fn crash_tokenginx_cache_entries_unbounded_allocation() {
    let errors = load(
        &conf_with(
            "tokenginx: {url: 'redis://127.0.0.1:1', session_key: 'k:{jti}', opaque_key: 'o:{token}', cache_entries: 18446744073709551615}\n",
        ),
        ROUTE,
    )
    .unwrap_err();
    assert!(
        errors.iter().any(|e| e.contains("tokenginx.cache_entries")),
        "{errors:?}"
    );
}

/// Ten anchors, each a list of ten aliases of the one before: 10^8 nodes
/// from a 500-byte file when every alias is copied ("billion laughs").
fn alias_bomb(levels: usize) -> String {
    let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..levels {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    s
}

#[test]
fn crash_yaml_alias_expansion_is_bounded() {
    let started = std::time::Instant::now();
    assert!(load(&alias_bomb(9), ROUTE).is_err());
    assert!(load(CONF, &alias_bomb(9)).is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn crash_jwt_exp_plus_leeway_overflow() {
    // `expires_at` is `exp + leeway`: a trusted issuer's token with the
    // largest `exp` must not overflow it (saturate, or refuse the token).
    for exp in [u64::MAX, u64::MAX - 60, u64::MAX - 59, i64::MAX as u64] {
        let token = signed(
            &json!({"alg": "HS256"}),
            &json!({"iss": "https://a.test", "aud": "gatehouse", "sub": "u", "exp": exp}),
            SECRET_A,
            Algorithm::HS256,
        );
        let _ = verify(&token);
    }
}
