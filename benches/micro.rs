//! Criterion micro benchmarks of the per-request hot paths.
//!
//! Run: `cargo bench --bench micro` (see benches/MICRO.md for a short run
//! and the last measured medians). Every group times library code in
//! process; only `tokenginx` starts a server, a `redis-server` on a free
//! loopback port standing in for TokenginX.
//!
//! | group | what one iteration is |
//! |---|---|
//! | `route_match` | `RouteTable::lookup` at 10 / 1k / 10k routes; `normalize` of a plain and a messy path |
//! | `jwt_verify_cold` | `jsonwebtoken::decode` per algorithm (the signature check the gateway does), and `Verifier::verify` HS256 end to end |
//! | `jwt_verify_cached` | `TokenCache::get` hit (and miss) for a 600-byte token |
//! | `tokenginx` | `Tokenginx::session` answered from its cache, and the same lookup going to a real `redis-server`; an `auth: oauth` login session answered from `OauthClient`'s cache, and read from the in-memory store |
//! | `rate_limit_local` | `LocalStore::decide` vs `pingora_limits::rate::Rate::observe`, one hot key and 100k keys |
//! | `upstream_request` | `request_modifiers::prepare` on a typical browser request |
//! | `downstream_response` | `response_modifiers::prepare` on a Next.js page's response head |
//! | `access_log` | one 19-field `access_log::Line`, and `rfc3339_now` |
//! | `dashboard` | `RouteSeries::record` of one request into the live dashboard's ring |
//! | `features` | CORS on an allowed cross-origin response, an API key found and identified, a circuit breaker's bookkeeping, a sampled request's two spans built, and 512 spans encoded for export |

use std::future::Future;
use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use boring::rsa::Rsa;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use http::HeaderName;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use pingora_http::{RequestHeader, ResponseHeader};
use serde_json::{json, Value};

use gatehouse::access_log::{redacted_target, rfc3339_now, Line};
use gatehouse::auth::api_key::sha256_hex;
use gatehouse::auth::jwt::{Issuer, IssuerKeys, Verifier};
use gatehouse::auth::template::Template;
use gatehouse::auth::token_cache::TokenCache;
use gatehouse::auth::tokenginx::{LookupMetrics, Tokenginx, TokenginxSettings, Verdict};
use gatehouse::auth::Identity;
use gatehouse::config::auth_file::OnError;
use gatehouse::cors::Verdict as CorsVerdict;
use gatehouse::lifecycle::{InFlight, Lifecycle};
use gatehouse::limit::gcra::{Bucket, Decision};
use gatehouse::limit::local::LocalStore;
use gatehouse::metrics::Metrics;
use gatehouse::oauth::store::{SessionRecord, Store};
use gatehouse::otlp::SpanRecord;
use gatehouse::proxy::request_modifiers::prepare;
use gatehouse::proxy::response_modifiers;
use gatehouse::proxy::RequestCtx;
use gatehouse::routing::{normalize, RouteTable};
use gatehouse::trace::TraceContext;
use gatehouse::upstream::breaker::{Breaker, BreakerPolicy};
use prometheus::{IntCounter, IntGauge};

/// The gateway's allocator (src/main.rs): allocation-heavy paths cost what
/// they cost in the gateway.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ISSUER: &str = "https://login.example.com/";
const AUDIENCE: &str = "gatehouse";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Polls a future that never waits (no I/O on its path) to completion.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("benchmarked future was not ready on first poll"),
    }
}

// ---------------------------------------------------------------- routing

fn route_table(n: usize) -> RouteTable {
    let mut t = RouteTable::default();
    for i in 0..n {
        t.insert(None, &format!("/svc{i}/api"), i);
    }
    // A few host routes, so the lookup also walks the exact and wildcard maps.
    t.insert(None, "/", n);
    t.insert(Some("api.example.com"), "/admin", n + 1);
    t.insert(Some("*.example.com"), "/static", n + 2);
    t.insert(Some("*.internal.example.com"), "/", n + 3);
    t.insert(Some("status.example.org"), "/", n + 4);
    t
}

fn bench_routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_match");
    for n in [10usize, 1_000, 10_000] {
        let table = route_table(n);
        let mid = n / 2;
        let path = format!("/svc{mid}/api/v1/items/42");
        assert_eq!(table.lookup("gw.example.com", &path), Some(&[mid][..]));
        g.bench_with_input(BenchmarkId::new("lookup", n), &path, |b, path| {
            b.iter(|| table.lookup(black_box("gw.example.com"), black_box(path)))
        });
    }
    let plain = "/svc500/api/v1/items/42";
    let messy = "/svc500//api/./v1/x/../%69tems/%7e42/";
    assert!(matches!(
        normalize(plain),
        Ok(std::borrow::Cow::Borrowed(_))
    ));
    assert_eq!(normalize(messy).unwrap(), "/svc500/api/v1/items/~42/");
    g.bench_function("normalize/plain", |b| {
        b.iter(|| normalize(black_box(plain)))
    });
    g.bench_function("normalize/messy", |b| {
        b.iter(|| normalize(black_box(messy)))
    });
    g.finish();
}

// ---------------------------------------------------------------- JWT

fn claims(now: u64) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-4711",
        "iat": now,
        "exp": now + 365 * 86_400,
        "jti": "4f1c2a9e-7b3d-4c55-9a8e-2d7f1b6c0e31",
        "scope": "orders:read orders:write profile",
        "roles": ["customer", "beta"],
    })
}

fn validation(alg: Algorithm) -> Validation {
    // What `Verifier::verify` asks of jsonwebtoken.
    let mut v = Validation::new(alg);
    v.leeway = 60;
    v.validate_nbf = true;
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    v.set_required_spec_claims(&["exp"]);
    v
}

/// A signing key for `alg` and the verifying key built from its public JWK,
/// the way a JWKS key reaches the gateway.
fn key_pair(alg: Algorithm) -> (EncodingKey, DecodingKey) {
    let enc = match alg {
        Algorithm::HS256 => {
            return (
                EncodingKey::from_secret(SECRET),
                DecodingKey::from_secret(SECRET),
            )
        }
        Algorithm::ES256 => {
            EncodingKey::from_ec_der(&ecdsa_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING))
        }
        Algorithm::ES384 => {
            EncodingKey::from_ec_der(&ecdsa_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING))
        }
        Algorithm::EdDSA => EncodingKey::from_ed_der(
            Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
                .unwrap()
                .as_ref(),
        ),
        _ => EncodingKey::from_rsa_der(&Rsa::generate(2048).unwrap().private_key_to_der().unwrap()),
    };
    let jwk = Jwk::from_encoding_key(&enc, alg).unwrap();
    let dec = DecodingKey::from_jwk(&jwk).unwrap();
    (enc, dec)
}

fn bench_jwt_cold(c: &mut Criterion) {
    let now = unix_now();
    let mut g = c.benchmark_group("jwt_verify_cold");
    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        let (enc, dec) = key_pair(alg);
        let mut h = Header::new(alg);
        h.kid = Some("k1".into());
        let token = jsonwebtoken::encode(&h, &claims(now), &enc).unwrap();
        let v = validation(alg);
        jsonwebtoken::decode::<Value>(&token, &dec, &v).unwrap();
        g.bench_function(BenchmarkId::new("decode", format!("{alg:?}")), |b| {
            b.iter(|| jsonwebtoken::decode::<Value>(black_box(&token), &dec, &v).unwrap())
        });
    }

    // HS256 through the gateway's own verifier: header and claims parsing,
    // issuer and algorithm checks, decode, identity and forwarded headers.
    let verifier = Verifier {
        issuers: vec![Issuer {
            issuer: ISSUER.into(),
            audiences: vec![AUDIENCE.into()],
            algorithms: vec![Algorithm::HS256],
            keys: IssuerKeys::Secret(DecodingKey::from_secret(SECRET)),
            roles_claim: "roles".into(),
        }],
        leeway_seconds: 60,
        forward: vec![
            ("sub".into(), HeaderName::from_static("x-user-id")),
            ("scope".into(), HeaderName::from_static("x-user-scopes")),
            ("roles".into(), HeaderName::from_static("x-user-roles")),
        ],
        session_key: None,
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(now),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let id = ready(verifier.verify(&token, now)).unwrap();
    assert_eq!(id.subject, "user-4711");
    assert_eq!(id.headers.len(), 3);
    g.bench_function("verifier_verify/HS256", |b| {
        b.iter(|| ready(verifier.verify(black_box(&token), now)).unwrap())
    });
    g.finish();
}

fn identity(expires_at: u64) -> Identity {
    Identity {
        subject: "user-4711".into(),
        scopes: vec![
            "orders:read".into(),
            "orders:write".into(),
            "profile".into(),
        ],
        roles: vec!["customer".into(), "beta".into()],
        headers: vec![
            (
                HeaderName::from_static("x-user-id"),
                "user-4711".parse().unwrap(),
            ),
            (
                HeaderName::from_static("x-user-scopes"),
                "orders:read orders:write profile".parse().unwrap(),
            ),
            (
                HeaderName::from_static("x-user-roles"),
                "customer,beta".parse().unwrap(),
            ),
        ],
        expires_at,
        session_key: None,
        consumer: false,
    }
}

/// An HS256 token of exactly `len` bytes (padded through a claim).
fn token_of_len(len: usize, now: u64) -> String {
    let key = EncodingKey::from_secret(SECRET);
    let mut pad = 0;
    loop {
        let mut c = claims(now);
        c["pad"] = Value::String("x".repeat(pad));
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, &key).unwrap();
        if t.len() >= len {
            return t;
        }
        pad += 1;
    }
}

fn bench_jwt_cached(c: &mut Criterion) {
    let now = unix_now();
    let token = token_of_len(600, now);
    let other = token_of_len(601, now);
    let cache = TokenCache::new(64 << 20);
    cache.put(&token, Arc::new(identity(now + 3600)));
    assert!(cache.get(&token, now).is_some());
    assert!(cache.get(&other, now).is_none());
    let mut g = c.benchmark_group("jwt_verify_cached");
    g.bench_function(format!("token_cache_get_hit/{}B", token.len()), |b| {
        b.iter(|| cache.get(black_box(&token), now).unwrap())
    });
    g.bench_function(format!("token_cache_get_miss/{}B", other.len()), |b| {
        b.iter(|| cache.get(black_box(&other), now))
    });
    g.finish();
}

// ---------------------------------------------------------------- TokenginX

/// A `redis-server` standing in for TokenginX on a free loopback port;
/// stopped when dropped.
struct TokenginxServer {
    child: std::process::Child,
    url: String,
}

impl TokenginxServer {
    fn start() -> TokenginxServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the tokenginx group needs redis-server: apt-get install -y redis-server");
        let server = TokenginxServer {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        };
        let client = redis::Client::open(server.url.as_str()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.get_connection().is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Drop for TokenginxServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TokenginX client of `server` that keeps answers for `cache_ttl`.
fn tokenginx(server: &TokenginxServer, cache_ttl: Duration) -> Arc<Tokenginx> {
    let settings = TokenginxSettings {
        client: redis::Client::open(server.url.as_str()).unwrap(),
        session_key: Template::parse("oauth:token:{jti}", &["jti"]).unwrap(),
        opaque_key: Template::parse("oauth:token:{token}", &["token"]).unwrap(),
        timeout: Duration::from_millis(500),
        cache_ttl,
        cache_entries: 10_000,
        on_error: OnError::Deny,
        forward: Vec::new(),
    };
    Arc::new(Tokenginx::new(
        settings,
        LookupMetrics::new(&Metrics::new()),
    ))
}

fn bench_tokenginx(c: &mut Criterion) {
    const KEY: &str = "oauth:token:3f9c2b4e-5d1a-4c8e-9b7f-2a6d8e0c1f34";
    let server = TokenginxServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cached = tokenginx(&server, Duration::from_secs(3600));
    let uncached = tokenginx(&server, Duration::ZERO);
    rt.block_on(async {
        cached.start();
        uncached.start();
        let mut conn = redis::Client::open(server.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg(KEY)
            .arg("{}")
            .query_async(&mut conn)
            .await
            .unwrap();
        // The first lookup goes to the server and fills the cache.
        assert!(matches!(cached.session(KEY).await, Verdict::Found(_)));
        assert!(matches!(uncached.session(KEY).await, Verdict::Found(_)));
    });
    // An `auth: oauth` route's login session, its record in the same
    // TokenginX; the cache outlives the run, so every lookup is a hit (with
    // bench.py's `cache_ms: 1000` one a second per session goes to TokenginX).
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("routes")).unwrap();
    let conf = dir.path().join("conf.yaml");
    std::fs::write(
        &conf,
        format!(
            "listeners:\n  - addr: 127.0.0.1:1\nroutes_dir: routes\n\
             tokenginx: {{url: '{}', cache_ms: 3600000}}\n\
             oauth: {{issuer: 'http://127.0.0.1:9', client_id: bench, client_secret: bench}}\n",
            server.url
        ),
    )
    .unwrap();
    let oauth_rt = gatehouse::config::load(&conf, &Metrics::new()).unwrap();
    let oauth = oauth_rt.auth.oauth.clone().unwrap();
    let session_id = gatehouse::oauth::secrets::random();
    let now = unix_now();
    let record = SessionRecord {
        sub: "bench-user".into(),
        scopes: vec!["openid".into()],
        roles: Vec::new(),
        claims: json!({"sub": "bench-user"}),
        access_token: "opaque-bench-access-token".into(),
        access_expires_at: now + 3600,
        refresh_token: None,
        id_token: None,
        expires_at: now + 3600,
    };
    rt.block_on(async {
        oauth_rt.auth.tokenginx.as_ref().unwrap().start();
        Store::new(oauth_rt.auth.tokenginx.clone())
            .put_session(&session_id, &record, now)
            .await
            .unwrap();
        // The first lookup goes to the server and fills the cache.
        assert!(oauth.session(&session_id, now).await.is_ok());
    });
    let mut g = c.benchmark_group("tokenginx");
    g.bench_function("session_cache_hit", |b| {
        b.iter(|| ready(cached.session(black_box(KEY))))
    });
    g.bench_function("oauth_session_cache_hit", |b| {
        b.iter(|| ready(oauth.session(black_box(&session_id), now)).is_ok())
    });
    // What a lookup in the in-memory store costs (without TokenginX):
    // finding the record and parsing its JSON.
    let memory = Store::new(None);
    ready(memory.put_session(&session_id, &record, now)).unwrap();
    g.bench_function("oauth_memory_store_session", |b| {
        b.iter(|| ready(memory.session(black_box(&session_id))).unwrap())
    });
    g.bench_function("session_redis_round_trip", |b| {
        b.iter(|| rt.block_on(uncached.session(black_box(KEY))))
    });
    g.finish();
}

// ---------------------------------------------------------------- rate limits

const KEYS: usize = 100_000;

/// Bucket keys as the limiter builds them (`gatehouse:rl:{route:index:ip=...}`).
fn limit_keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "gatehouse:rl:{{api:0:ip=10.{}.{}.{}}}",
                i >> 16,
                (i >> 8) & 0xff,
                i & 0xff
            )
        })
        .collect()
}

fn bench_rate_limit(c: &mut Criterion) {
    // 1 token per µs with a huge burst: every decision is an Allow (the
    // common path, which writes the bucket), whatever the iteration count.
    let bucket = Bucket {
        interval_us: 1,
        burst: 1 << 40,
    };
    let keys = limit_keys(KEYS);
    let seed = ahash::RandomState::with_seeds(1, 2, 3, 4);
    let hashes: Vec<u64> = keys.iter().map(|k| seed.hash_one(k)).collect();
    let mut g = c.benchmark_group("rate_limit_local");

    for (label, n) in [("1_key", 1usize), ("100k_keys", KEYS)] {
        // The table alone: precomputed hash, a counter as the clock.
        let store = LocalStore::new(KEYS);
        let mut i = 0usize;
        let mut now = 1_000_000u64;
        g.bench_function(BenchmarkId::new("gatehouse_decide", label), |b| {
            b.iter(|| {
                i += 1;
                if i == n {
                    i = 0;
                }
                now += 1;
                let d = store.decide(black_box(hashes[i]), bucket, now);
                debug_assert!(matches!(d, Decision::Allow { .. }));
                d
            })
        });

        // What `Limiter` does per limit: hash the key, read the clock, decide.
        // Comparable with `Rate::observe`, which hashes and reads the clock itself.
        let store = LocalStore::new(KEYS);
        let epoch = Instant::now() - Duration::from_secs(1);
        let mut i = 0usize;
        g.bench_function(
            BenchmarkId::new("gatehouse_hash_clock_decide", label),
            |b| {
                b.iter(|| {
                    i += 1;
                    if i == n {
                        i = 0;
                    }
                    let key: &str = black_box(&keys[i]);
                    let hash = seed.hash_one(key);
                    let now = epoch.elapsed().as_micros() as u64;
                    store.decide(hash, bucket, now)
                })
            },
        );

        let rate = pingora_limits::rate::Rate::new(Duration::from_secs(1));
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("pingora_rate_observe", label), |b| {
            b.iter(|| {
                i += 1;
                if i == n {
                    i = 0;
                }
                let key: &str = black_box(&keys[i]);
                rate.observe(&key, 1) <= 1_000_000
            })
        });

        // The same with the estimator sized like the gatehouse table
        // (131,072 slots per row, 4 rows, red + blue = 8 MiB), so 100k keys
        // do not all collide in the default 1,024 slots.
        let rate = pingora_limits::rate::Rate::new_with_estimator_config(
            Duration::from_secs(1),
            4,
            KEYS.next_power_of_two(),
        );
        let mut i = 0usize;
        g.bench_function(
            BenchmarkId::new("pingora_rate_observe_128k_slots", label),
            |b| {
                b.iter(|| {
                    i += 1;
                    if i == n {
                        i = 0;
                    }
                    let key: &str = black_box(&keys[i]);
                    rate.observe(&key, 1) <= 1_000_000
                })
            },
        );
    }
    g.finish();
}

// ---------------------------------------------------------------- upstream request

const CONF: &str = "\
threads: 1
listeners:
  - addr: 127.0.0.1:1
routes_dir: routes
security_headers: true
jwt:
  issuers:
    - issuer: https://login.example.com/
      audiences: [gatehouse]
      secret: \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"
      algorithms: [HS256]
forward_identity:
  sub: X-User-Id
  scope: X-User-Scopes
  roles: X-User-Roles
";

const ROUTES: &str = "\
upstreams:
  app:
    backends: [127.0.0.1:2]
routes:
  - name: public
    prefix: /shop
    upstream: app
  - name: api
    prefix: /svc42/api
    upstream: app
    strip_prefix: true
    auth: jwt
    headers:
      request_set: { X-Gateway: gatehouse, X-Api-Version: \"1\" }
      request_remove: [X-Debug]
  - name: partner
    prefix: /partner
    upstream: app
    auth: api_key
    cors:
      allow_origins: [https://app.example.com, 'https://*.partner.test']
      allow_credentials: true
      expose_headers: [x-request-id]
";

/// The API key of the bench's one consumer (`consumers/bench.yaml`).
const API_KEY: &str = "gh_bench_0123456789abcdefghijklmnopqrstuv";

fn runtime(dir: &Path) -> gatehouse::config::Runtime {
    std::fs::create_dir_all(dir.join("routes")).unwrap();
    let conf = dir.join("conf.yaml");
    std::fs::write(&conf, CONF).unwrap();
    std::fs::write(dir.join("routes/app.yaml"), ROUTES).unwrap();
    std::fs::create_dir_all(dir.join("consumers")).unwrap();
    std::fs::write(
        dir.join("consumers/bench.yaml"),
        format!(
            "consumers:\n  - {{name: bench, key_sha256: '{}', scopes: [kline:read]}}\n",
            sha256_hex(API_KEY)
        ),
    )
    .unwrap();
    let metrics = Metrics::new();
    gatehouse::config::load(&conf, &metrics).unwrap_or_else(|e| panic!("bench config: {e:?}"))
}

fn browser_request(path: &str, token: Option<&str>) -> RequestHeader {
    let mut r = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
    let headers: &[(&str, &str)] = &[
        ("host", "gw.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
        ),
        ("accept", "application/json, text/plain, */*"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "en-US,en;q=0.9,de;q=0.8"),
        ("connection", "keep-alive"),
        ("referer", "https://gw.example.com/shop/cart"),
        ("cookie", "theme=dark; _ga=GA1.1.123456789.1700000000"),
        ("x-forwarded-for", "198.51.100.23"),
        ("x-user-id", "spoofed-admin"),
        ("x-debug", "1"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ];
    for (k, v) in headers {
        r.append_header(*k, *v).unwrap();
    }
    if let Some(t) = token {
        r.append_header("authorization", format!("Bearer {t}"))
            .unwrap();
    }
    r
}

/// A Next.js page's response head as it leaves the app's server.
fn app_response() -> ResponseHeader {
    let mut r = ResponseHeader::build(200, None).unwrap();
    let headers: &[(&str, &str)] = &[
        ("Server", "nginx/1.22.1"),
        ("Date", "Thu, 03 Dec 2026 13:05:52 GMT"),
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", "18342"),
        ("Connection", "keep-alive"),
        ("Keep-Alive", "timeout=5"),
        ("X-Powered-By", "Next.js"),
        ("ETag", "\"5f1a-18342\""),
        ("Vary", "RSC, Next-Router-State-Tree, Accept-Encoding"),
        ("Cache-Control", "private, no-cache, no-store, max-age=0"),
    ];
    for (k, v) in headers {
        r.append_header(*k, *v).unwrap();
    }
    r
}

fn bench_upstream_request(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(runtime(dir.path()));
    let lifecycle = Arc::new(Lifecycle::new());
    let peer: Option<IpAddr> = Some("203.0.113.7".parse().unwrap());
    let now = unix_now();
    let token = token_of_len(600, now);
    let route_index = |name: &str| rt.routes.iter().position(|r| r.name == name).unwrap();

    let ctx = |route: usize, identity: Option<Identity>| {
        let mut ctx = RequestCtx::new(InFlight::start(&lifecycle));
        ctx.runtime = Some(Arc::clone(&rt));
        ctx.route = Some(route);
        ctx.request_id = gatehouse::trace::request_id(None);
        ctx.trace = Some(TraceContext::continue_or_start(
            Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            1.0,
        ));
        ctx.client_ip = peer.map(gatehouse::client_ip::ClientIp::Known);
        ctx.identity = identity.map(Arc::new);
        ctx
    };

    let public = &rt.routes[route_index("public")];
    let request_id = gatehouse::trace::request_id(None);
    let mut g = c.benchmark_group("downstream_response");
    g.bench_function("prepare/next_js_page", |b| {
        b.iter_batched_ref(
            app_response,
            |resp| {
                response_modifiers::prepare(
                    resp,
                    &request_id,
                    false,
                    Some(public),
                    None,
                    &rt.settings,
                )
                .unwrap()
            },
            BatchSize::NumIterations(32),
        )
    });
    g.finish();

    let mut g = c.benchmark_group("upstream_request");
    let cases = [
        (
            "prepare/public",
            ctx(route_index("public"), None),
            browser_request("/shop/products?page=2&sort=price", None),
        ),
        (
            "prepare/jwt_strip_prefix_edits",
            ctx(route_index("api"), Some(identity(now + 3600))),
            browser_request("/svc42/api/v1/items/42?expand=owner", Some(&token)),
        ),
    ];
    for (name, ctx, template) in &cases {
        let route = ctx.route().unwrap();
        let mut check = template.clone();
        prepare(
            &mut check,
            ctx,
            route,
            &rt.settings,
            &rt.auth.identity_headers,
            rt.auth.oauth.as_deref(),
            peer,
        )
        .unwrap();
        assert!(check.headers.get("x-request-id").is_some());
        assert!(check.headers.get("connection").is_none());
        g.bench_function(*name, |b| {
            b.iter_batched_ref(
                || template.clone(),
                |req| {
                    prepare(
                        req,
                        ctx,
                        route,
                        &rt.settings,
                        &rt.auth.identity_headers,
                        rt.auth.oauth.as_deref(),
                        peer,
                    )
                    .unwrap()
                },
                // Small batches: the clones stay in cache, as a request
                // header just parsed would be.
                BatchSize::NumIterations(32),
            )
        });
    }
    g.finish();
}

// ---------------------------------------------------------------- access log

/// The fields of `proxy::log_line::line` for a typical authenticated request
/// (the time passed in, so it can be timed apart).
fn log_line(time: &str, ip: IpAddr, redact: &[String]) -> String {
    let mut l = Line::new();
    l.str("time", time)
        .str("request_id", "01JD3Q4W2N7X8Y9Z0A1B2C3D4E")
        .opt("trace_id", Some("4bf92f3577b34da6a3ce929d0e0e4736"))
        .opt("client_ip", Some(ip.to_string()).as_deref())
        .str("method", "GET")
        .str(
            "path",
            &redacted_target(
                "/svc42/api/v1/items/42",
                Some("expand=owner&token=abc"),
                redact,
            ),
        )
        .opt("route", Some("api"))
        .opt("upstream", Some("app"))
        .opt("backend", Some("10.0.3.17:8080"))
        .num("status", 200u16)
        .num("bytes_sent", 1024u64)
        .num("bytes_received", 0u64)
        .num("duration_ms", 1.234f64)
        .num("upstream_ms", 0.987f64)
        .num("attempts", 1u32)
        .opt("user", Some("user-4711"))
        .str("auth", "ok")
        .opt("limit", Some("ok"))
        .opt("error", None);
    l.finish()
}

fn bench_access_log(c: &mut Criterion) {
    let ip: IpAddr = "203.0.113.7".parse().unwrap();
    let redact = vec!["token".to_string(), "code".to_string()];
    let time = rfc3339_now();
    let line = log_line(&time, ip, &redact);
    let parsed: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(parsed.as_object().unwrap().len(), 19);
    let mut g = c.benchmark_group("access_log");
    g.bench_function("line_19_fields", |b| {
        b.iter(|| log_line(black_box(&time), ip, &redact))
    });
    g.bench_function("rfc3339_now", |b| b.iter(rfc3339_now));
    g.bench_function("line_19_fields_with_now", |b| {
        b.iter(|| log_line(&rfc3339_now(), ip, &redact))
    });
    g.finish();
}

fn bench_dashboard(c: &mut Criterion) {
    let dashboard = gatehouse::dashboard::Dashboard::new(100);
    let series = dashboard.route("web");
    let mut g = c.benchmark_group("dashboard");
    g.bench_function("record", |b| {
        b.iter(|| {
            series.record(
                black_box(Instant::now()),
                black_box(Duration::from_micros(850)),
                black_box(200),
            )
        })
    });
    g.finish();
}

/// The request-path work of the features added after the first release,
/// each as configured on a route (SPEC §7: ≤ 1 µs per request each).
fn bench_features(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(runtime(dir.path()));
    let lifecycle = Arc::new(Lifecycle::new());
    let route = |name: &str| rt.routes.iter().find(|r| r.name == name).unwrap();
    let mut g = c.benchmark_group("features");

    let cors = route("partner").cors.clone().unwrap();
    let mut cross_origin = browser_request("/partner/v1/quotes", None);
    cross_origin
        .append_header("origin", "https://eu.partner.test")
        .unwrap();
    assert!(matches!(cors.judge(&cross_origin), CorsVerdict::Allowed(_)));
    g.bench_function("cors/judge_and_decorate", |b| {
        b.iter_batched_ref(
            app_response,
            |resp| {
                let CorsVerdict::Allowed(origin) = cors.judge(black_box(&cross_origin)) else {
                    unreachable!()
                };
                cors.decorate(resp, Some(&origin)).unwrap()
            },
            BatchSize::NumIterations(32),
        )
    });

    let mut keyed = browser_request("/partner/v1/quotes", None);
    keyed.append_header("x-api-key", API_KEY).unwrap();
    let keys = &rt.api_keys;
    assert!(ready(keys.identify(keys.find(&keyed).unwrap(), None)).is_ok());
    g.bench_function("api_key/find_and_identify", |b| {
        b.iter(|| ready(keys.identify(keys.find(black_box(&keyed)).unwrap(), None)).is_ok())
    });

    let policy = BreakerPolicy {
        error_ratio: 0.5,
        min_requests: 20,
        window: Duration::from_secs(10),
        open_for: Duration::from_secs(5),
        half_open_requests: 2,
        consecutive_failures: 5,
    };
    let counter = || IntCounter::new("c", "c").unwrap();
    let breaker = Breaker::new(
        policy,
        IntGauge::new("g", "g").unwrap(),
        [counter(), counter(), counter()],
    );
    g.bench_function("breaker/allows_picked_record", |b| {
        b.iter(|| {
            let allowed = breaker.allows();
            breaker.picked();
            breaker.record(black_box(false));
            allowed
        })
    });

    // A sampled request of one upstream attempt: its two spans built in
    // `logging`, then their share of a 512-span export's encoding.
    let mut ctx = RequestCtx::new(InFlight::start(&lifecycle));
    ctx.runtime = Some(Arc::clone(&rt));
    ctx.route = rt.routes.iter().position(|r| r.name == "public");
    ctx.trace = Some(TraceContext::continue_or_start(
        Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        1.0,
    ));
    ctx.client_ip = Some(gatehouse::client_ip::ClientIp::Known(
        "203.0.113.7".parse().unwrap(),
    ));
    ctx.attempt_log
        .push((Instant::now(), "127.0.0.1:3001".parse().unwrap(), false));
    let req = browser_request("/shop/products?page=2", None);
    let mut spans = Vec::new();
    gatehouse::proxy::spans::spans(&req, &ctx, 200, |s| spans.push(s));
    assert_eq!(spans.len(), 2);
    g.bench_function("trace/two_spans_built", |b| {
        b.iter(|| {
            let mut n = 0;
            gatehouse::proxy::spans::spans(black_box(&req), &ctx, 200, |s| {
                n += black_box(s).attrs.len()
            });
            n
        })
    });
    let batch: Vec<SpanRecord> = spans.iter().cycle().take(512).cloned().collect();
    g.bench_function("trace/encode_512_spans", |b| {
        b.iter_batched(
            || batch.clone(),
            |batch| gatehouse::otlp::encode("gatehouse", batch.into_iter()).len(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_routing,
    bench_jwt_cold,
    bench_jwt_cached,
    bench_tokenginx,
    bench_rate_limit,
    bench_upstream_request,
    bench_access_log,
    bench_dashboard,
    bench_features
);
criterion_main!(benches);

/// A fresh ECDSA private key, PKCS#8 DER.
fn ecdsa_pkcs8(alg: &'static EcdsaSigningAlgorithm) -> Vec<u8> {
    EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec()
}
