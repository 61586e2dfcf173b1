//! The peers of the login tests: `oidc-provider` (npm, an OpenID-certified
//! server; `tests/oauth/provider.mjs` configures it) as a child process, and
//! a minimal browser: one cookie jar for 127.0.0.1 (cookies ignore ports,
//! as in browsers), redirects followed by hand, the provider's login and
//! consent forms submitted.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, npm_installed, Gateway, Killed, Watchdog};

/// A running oidc-provider.
pub struct Provider {
    pub port: u16,
    _child: Killed,
    _watchdog: Watchdog,
}

/// How long the provider may take to say it is ready.
const PROVIDER_START: Duration = Duration::from_secs(30);

/// How long a login test may run: each takes seconds; one that hangs on a
/// peer ends the run instead of holding CI until its time limit.
const TEST_LIMIT: Duration = Duration::from_secs(240);

impl Provider {
    /// The issuer URL a provider on `port` will have.
    pub fn issuer_at(port: u16) -> String {
        format!("http://127.0.0.1:{port}")
    }

    /// Starts a provider on `port` whose client `gatehouse` may come back
    /// to each of `gateways`, with access tokens living `access_ttl` s.
    pub fn start(port: u16, gateways: &[&Gateway], access_ttl: u64, extra: &[&str]) -> Provider {
        npm_installed("tests/oauth", "oidc-provider");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oauth/provider.mjs");
        let mut cmd = Command::new("node");
        cmd.arg(script)
            .args(["--port", &port.to_string()])
            .args(["--access-ttl", &access_ttl.to_string()]);
        for gw in gateways {
            cmd.args(["--redirect-uri", &gw.url("/_gatehouse/oauth/callback")]);
            cmd.args(["--post-logout-redirect-uri", &gw.url("/")]);
        }
        cmd.args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("node is needed for the login tests");
        let stdout = child.stdout.take().unwrap();
        let child = Killed(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(PROVIDER_START)
            .unwrap_or_else(|_| panic!("provider on {port}: no ready line in {PROVIDER_START:?}"));
        assert!(line.starts_with("ready"), "provider did not start: {line}");
        Provider {
            port,
            _child: child,
            _watchdog: Watchdog::arm(format!("a login test (provider on {port})"), TEST_LIMIT),
        }
    }

    pub fn issuer(&self) -> String {
        Self::issuer_at(self.port)
    }
}

/// A free port for a provider that starts after its gateways.
pub fn provider_port() -> u16 {
    free_port()
}

/// Waits until the gateway's discovery of the provider worked (10 s).
pub async fn discovered(gw: &Gateway) {
    if !wait_discovery(&gw.admin_url("")).await {
        panic!("discovery never worked:\n{}", gw.log());
    }
}

/// [`discovered`] for the admin service at `admin` (`http://host:port`).
pub async fn discovered_at(admin: &str) {
    assert!(wait_discovery(admin).await, "discovery never worked");
}

async fn wait_discovery(admin: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let r = crate::common::client()
            .get(format!("{admin}/health/ready"))
            .send()
            .await;
        if let Ok(r) = r {
            let v: serde_json::Value = r.json_value().await;
            if v["components"]["oauth"] == "ok" {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// JSON of a response body (the crate's reqwest has no `json` feature).
pub trait JsonBody {
    async fn json_value(self) -> serde_json::Value;
}

impl JsonBody for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        let bytes = self.bytes().await.unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
    }
}

/// What a page load ended with.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub url: String,
    pub body: String,
    /// Every URL the load went through, in order.
    pub hops: Vec<String>,
}

/// A browser: cookies for 127.0.0.1, redirects followed, forms sent.
pub struct Browser {
    http: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
    /// The login name typed into the provider's form.
    pub user: String,
}

impl Browser {
    pub fn new(user: &str) -> Browser {
        Self::build(user, false)
    }

    /// A browser that accepts the tests' self-signed certificates.
    pub fn accepting_test_certificates(user: &str) -> Browser {
        Self::build(user, true)
    }

    fn build(user: &str, insecure: bool) -> Browser {
        Browser {
            http: gatehouse::http_client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .danger_accept_invalid_certs(insecure)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
            user: user.into(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn take_cookies(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all("set-cookie") {
            let text = v.to_str().unwrap_or("");
            let first = text.split(';').next().unwrap_or("");
            let Some((name, value)) = first.split_once('=') else {
                continue;
            };
            let expired = text.to_ascii_lowercase().contains("max-age=0")
                || text
                    .to_ascii_lowercase()
                    .contains("expires=thu, 01 jan 1970");
            if expired || value.is_empty() {
                self.cookies.remove(name.trim());
            } else {
                self.cookies.insert(name.trim().into(), value.trim().into());
            }
        }
    }

    /// One request, no redirect followed; `extra` headers added.
    pub async fn send(
        &mut self,
        method: &str,
        url: &str,
        form: Option<&[(String, String)]>,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self
            .http
            .request(method.parse().unwrap(), url)
            .header("accept", "text/html,application/xhtml+xml")
            .header("cookie", self.cookie_header());
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if let Some(f) = form {
            req = req.form(f);
        }
        let resp = req.send().await.unwrap();
        self.take_cookies(&resp);
        resp
    }

    /// Loads `url` as a navigation: follows redirects, and on the
    /// provider's pages submits the login form (as [`Browser::user`]) and
    /// the consent form, until a page that is neither.
    pub async fn navigate(&mut self, url: &str) -> Page {
        let mut hops = vec![url.to_string()];
        let mut method = "GET".to_string();
        let mut url = url.to_string();
        let mut form: Option<Vec<(String, String)>> = None;
        for _ in 0..30 {
            let resp = self.send(&method, &url, form.as_deref(), &[]).await;
            let status = resp.status().as_u16();
            if let Some(loc) = resp.headers().get("location").and_then(|v| v.to_str().ok()) {
                url = reqwest::Url::parse(&url)
                    .unwrap()
                    .join(loc)
                    .unwrap()
                    .to_string();
                hops.push(url.clone());
                (method, form) = ("GET".into(), None);
                continue;
            }
            let body = resp.text().await.unwrap_or_default();
            match provider_form(&body, &self.user) {
                Some((action, fields)) if status == 200 => {
                    url = reqwest::Url::parse(&url)
                        .unwrap()
                        .join(&action)
                        .unwrap()
                        .to_string();
                    hops.push(url.clone());
                    (method, form) = ("POST".into(), Some(fields));
                }
                _ => {
                    return Page {
                        status,
                        url,
                        body,
                        hops,
                    }
                }
            }
        }
        panic!("too many hops: {hops:#?}");
    }
}

/// The login or consent form of oidc-provider's dev interactions: its
/// action and the fields to post.
fn provider_form(html: &str, user: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = html.find("<form")?;
    let action = html[start..]
        .split("action=\"")
        .nth(1)?
        .split('"')
        .next()?
        .to_string();
    let prompt = html[start..]
        .split("name=\"prompt\" value=\"")
        .nth(1)?
        .split('"')
        .next()?
        .to_string();
    let mut fields = vec![("prompt".to_string(), prompt.clone())];
    if prompt == "login" {
        fields.push(("login".into(), user.into()));
        fields.push(("password".into(), "any".into()));
    }
    Some((action.replace("&amp;", "&"), fields))
}
