//! `gatehouse demo`: the shipped config in front of five sample apps on
//! the reference ports. The sample OAuth service publishes a freshly made
//! ES256 signing key as its JWKS, and the demo prints a token signed with
//! it next to curl lines to paste. It is also a minimal authorization
//! server ([`auth_server`]), and the demo adds an `oauth:` block and one
//! `auth: oauth` route (`/test/account`) to the shipped config, so a
//! browser shows the gateway's own login.

pub mod auth_server;
pub mod sample_app;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use auth_server::AuthServer;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sample_app::SampleApp;

use crate::oauth::secrets;

/// The reference deployment: app name and port.
pub const APPS: [(&str, u16); 5] = [
    ("oauth-service", 3001),
    ("admin-portal", 3002),
    ("kline-service", 3003),
    ("flow-service", 3004),
    ("test-service", 3005),
];

/// `iss` of the demo OAuth service's tokens (as in the shipped conf.yaml).
pub const DEMO_ISSUER: &str = "http://127.0.0.1:6188/oauth";

/// The demo's signing key: its JWKS and a token for a demo user.
pub struct DevKey {
    /// JWKS document with the public key.
    pub jwks: String,
    /// A token for `demo-user` with scopes `read admin`, valid for a day.
    pub token: String,
    /// The private key, for the demo authorization server's tokens.
    pub key: EncodingKey,
}

impl DevKey {
    /// A fresh ES256 key pair.
    pub fn generate() -> Result<DevKey, String> {
        let der = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| e.to_string())?
            .serialize_der();
        let key = EncodingKey::from_ec_der(&der);
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).map_err(|e| e.to_string())?;
        jwk.common.key_id = Some("demo-1".into());
        let jwks = serde_json::to_string(&JwkSet { keys: vec![jwk] }).map_err(|e| e.to_string())?;
        let now = crate::lifecycle::unix_now();
        let claims = serde_json::json!({
            "iss": DEMO_ISSUER, "aud": "gatehouse", "sub": "demo-user",
            "scope": "read admin", "iat": now, "exp": now + 86_400, "jti": "demo-session",
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("demo-1".into());
        let token = jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())?;
        Ok(DevKey { jwks, token, key })
    }
}

/// Runs the demo until the gateway stops.
pub fn run(conf: &Path) -> ExitCode {
    match start(conf) {
        Ok(server) => server.run_forever(),
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

fn start(conf: &Path) -> Result<pingora_core::server::Server, String> {
    let key = DevKey::generate().map_err(|e| format!("demo: cannot make a signing key: {e}"))?;
    let secret = secrets::random();
    let conf = login_overlay(conf, &secret)?;
    let auth = Arc::new(AuthServer::new(key.key.clone(), secret));
    let listeners = bind_apps(&key.jwks, &auth)?;
    let metrics = crate::metrics::Metrics::new();
    let rt = crate::config::load(&conf, &metrics).map_err(|e| e.to_string())?;
    let (public, admin) = (rt.server.listeners.first().map(|l| l.addr), rt.server.admin);
    drop(rt);
    std::thread::spawn(move || serve_apps(listeners));
    let server =
        crate::build_server(&conf, crate::RunFlags::default()).map_err(|e| e.to_string())?;
    print_guide(public, admin, &key.token);
    Ok(server)
}

/// The route the demo adds: the gateway's own login in front of the
/// test-service.
const LOGIN_ROUTE: &str = "# added by gatehouse demo: the gateway's own login\n\
routes:\n  - name: demo-login\n    prefix: /test/account\n    upstream: test-service\n    strip_prefix: false\n    auth: oauth\n    on_unauthenticated: login\n";

/// A config directory beside the shipped one (`gatehouse-demo-<pid>` in
/// the temp directory): its conf.yaml plus an `oauth:` block naming
/// the sample authorization server, its route files linked, plus
/// [`LOGIN_ROUTE`]. The shipped files stay as they are.
fn login_overlay(conf: &Path, secret: &str) -> Result<PathBuf, String> {
    let err = |e: std::io::Error| format!("demo: cannot prepare its config: {e}");
    let shipped = std::fs::read_to_string(conf).map_err(err)?;
    let base = conf
        .parent()
        .unwrap_or(Path::new("."))
        .canonicalize()
        .map_err(err)?;
    let dir = std::env::temp_dir().join(format!("gatehouse-demo-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(err)?;
    }
    std::fs::create_dir(&dir).map_err(err)?;
    let routes = dir.join("routes");
    std::fs::create_dir(&routes).map_err(err)?;
    for entry in std::fs::read_dir(base.join("routes")).map_err(err)? {
        let path = entry.map_err(err)?.path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let name = path.file_name().unwrap_or_default();
            std::os::unix::fs::symlink(&path, routes.join(name)).map_err(err)?;
        }
    }
    std::fs::write(routes.join("zz-demo-login.yaml"), LOGIN_ROUTE).map_err(err)?;
    let overlay = format!(
        "{shipped}\n# added by gatehouse demo: the sample oauth-service as authorization server\n\
         oauth:\n  issuer: {DEMO_ISSUER}\n  client_id: gatehouse\n  client_secret: \"{secret}\"\n"
    );
    let path = dir.join("conf.yaml");
    std::fs::write(&path, overlay).map_err(err)?;
    Ok(path)
}

fn bind_apps(
    jwks: &str,
    auth: &Arc<AuthServer>,
) -> Result<Vec<(std::net::TcpListener, SampleApp)>, String> {
    APPS.iter()
        .map(|(name, port)| {
            let addr = SocketAddr::from(([127, 0, 0, 1], *port));
            let l = std::net::TcpListener::bind(addr).map_err(|e| {
                format!("demo: cannot start sample app {name} on {addr}: {e} (is something already running there?)")
            })?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            let oauth = *name == "oauth-service";
            let app = SampleApp {
                name: name.to_string(),
                jwks: oauth.then(|| jwks.to_string()),
                auth: oauth.then(|| Arc::clone(auth)),
            };
            Ok((l, app))
        })
        .collect()
}

fn serve_apps(listeners: Vec<(std::net::TcpListener, SampleApp)>) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: cannot start sample apps: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let mut servers = Vec::new();
        for (l, app) in listeners {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => servers.push(sample_app::spawn(l, app)),
                Err(e) => eprintln!("demo: sample app: {e}"),
            }
        }
        std::future::pending::<()>().await;
    });
}

fn print_guide(public: Option<SocketAddr>, admin: Option<SocketAddr>, token: &str) {
    let gw = public.map_or("127.0.0.1:6188".to_string(), |a| loopback(a).to_string());
    let admin = admin.map_or("(no admin address configured)".to_string(), |a| {
        loopback(a).to_string()
    });
    println!(
        "\ngatehouse demo: sample apps on :3001-:3005, gateway on {gw}, admin on {admin}\n\
         dev signing key: ES256, published by the sample oauth-service at /oauth/.well-known/jwks.json\n\n\
         TOKEN={token}\n\n\
         Routing (each prefix reaches its app; the app echoes what it received):\n\
         \x20 curl -i http://{gw}/test/hello                                   # public\n\
         \x20 curl -i -H \"Authorization: Bearer $TOKEN\" http://{gw}/admin/dashboard\n\
         \x20 curl -N -H \"Authorization: Bearer $TOKEN\" http://{gw}/flow/api/stream   # server-sent events\n\
         \x20 curl -i http://{gw}/nowhere                                      # 404 JSON\n\
         \x20 curl -i 'http://{gw}/admin/%2e%2e/x'                              # 400: ambiguous path\n\n\
         Authentication (401):\n\
         \x20 curl -i http://{gw}/kline/api/candles                            # 401, no token\n\
         \x20 curl -i -H 'Accept: text/html' http://{gw}/admin/dashboard      # 302 to the login page\n\n\
         The gateway's own login (OAuth 2.1 + PKCE at the sample oauth-service; sessions in this process):\n\
         \x20 open http://{gw}/test/account in a browser                  # sign in as anyone, land back logged in\n\n\
         Rate limiting (429): /test allows 10 at once, then 5/s per client IP:\n\
         \x20 for i in $(seq 15); do curl -s -o /dev/null -w '%{{http_code}} ' http://{gw}/test/hello; done; echo\n\
         \x20 curl -si http://{gw}/test/hello | grep -i -E '^(HTTP|retry-after|ratelimit)'\n\n\
         Operations:\n\
         \x20 curl http://{admin}/health/ready\n\
         \x20 curl http://{admin}/metrics\n\
         \x20 curl http://{admin}/status\n\
         \x20 curl http://{admin}/status/live                             # the dashboard's numbers\n\
         \x20 open http://{admin}/ in a browser                          # the live dashboard\n\n\
         Ctrl-C stops everything.\n"
    );
}

/// `0.0.0.0:6188` is reachable as `127.0.0.1:6188`.
fn loopback(a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], a.port()))
    } else {
        a
    }
}
