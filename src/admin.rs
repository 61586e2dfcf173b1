//! The admin service: `/health/live`, `/health/ready`, `/metrics`,
//! `/status` (JSON), `/status/live` (the dashboard's numbers) and the
//! dashboard page (`/`, and `/status` for a browser), on its own address.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::{json, Value};

use crate::auth::tokenginx::Health;
use crate::auth::{AuthMode, RoutePolicy};
use crate::config::auth_file::SessionMode;
use crate::config::Runtime;
use crate::dashboard::page;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;

/// The admin HTTP app.
pub struct Admin {
    live: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    lifecycle: Arc<Lifecycle>,
}

impl Admin {
    /// An admin app reporting on `live`.
    pub fn new(
        live: Arc<ArcSwap<Runtime>>,
        metrics: Arc<Metrics>,
        lifecycle: Arc<Lifecycle>,
    ) -> Admin {
        Admin {
            live,
            metrics,
            lifecycle,
        }
    }

    fn readiness(&self) -> (StatusCode, Value) {
        let rt = self.live.load();
        let ready = self.lifecycle.ready.load(Relaxed);
        let upstreams: serde_json::Map<String, Value> = rt
            .pools
            .iter()
            .map(|(name, (pool, _))| {
                let (healthy, total) = pool.health_counts();
                (name.clone(), json!({"healthy": healthy, "total": total}))
            })
            .collect();
        let jwks: serde_json::Map<String, Value> = rt
            .auth
            .jwks_status()
            .into_iter()
            .map(|(issuer, s)| (issuer.to_string(), s.state.as_str().into()))
            .collect();
        let body = json!({
            "status": if ready { "ready" } else { "not_ready" },
            "version": env!("CARGO_PKG_VERSION"),
            "config_version": rt.version,
            "uptime_seconds": self.lifecycle.started.elapsed().as_secs(),
            "components": {
                "tokenginx": match &rt.auth.tokenginx {
                    None => "off",
                    Some(t) if t.health() == Health::Ok => "ok",
                    Some(_) => "error",
                },
                "rate_limit_store": rt.limiter.store_health(),
                "oauth": rt.auth.oauth.as_ref().map_or("off", |o| o.discovery_state().as_str()),
                "jwks": jwks,
                "upstreams": upstreams,
            },
        });
        let code = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (code, body)
    }

    /// The `/status` document.
    pub fn status(&self) -> Value {
        let rt = self.live.load();
        let routes: Vec<Value> = rt
            .routes_in_match_order()
            .into_iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "host": r.host,
                    "prefix": r.prefix,
                    "methods": r.methods.as_ref().map(|m| m.iter().map(|x| x.as_str()).collect::<Vec<_>>()),
                    "upstream": r.pool.name,
                    "strip_prefix": r.strip_prefix,
                    "auth": auth_summary(&r.policy),
                    "rate_limit": r.limits.as_ref().map(|l| l.policy_header.to_string()),
                    "ip_allow": r.ip_allow.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                    "ip_deny": r.ip_deny.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                    "file": r.file.display().to_string(),
                })
            })
            .collect();
        let upstreams: Vec<Value> = rt
            .pools
            .iter()
            .map(|(name, (pool, spec))| {
                json!({
                    "name": name,
                    "balance": format!("{:?}", pool.balance),
                    "health_check": spec.path.clone().unwrap_or_else(|| "tcp".into()),
                    "backends": pool.members().backends.iter().map(|b| json!({
                        "addr": b.label,
                        "weight": b.weight,
                        "healthy": b.is_healthy(),
                        "in_flight": b.in_flight(),
                        "circuit": b.breaker.as_ref().map(|br| br.circuit().as_str()),
                        "recent_error_rate": b.recent_error_rate(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let reload = self.lifecycle.last_reload();
        let jwks: Vec<Value> = rt
            .auth
            .jwks_status()
            .into_iter()
            .map(|(issuer, s)| {
                json!({
                    "issuer": issuer,
                    "state": s.state.as_str(),
                    "keys": s.keys,
                    "last_success_seconds_ago": s.last_success_age.map(|a| a.as_secs()),
                    "last_error": s.last_error,
                })
            })
            .collect();
        let oauth = rt.auth.oauth.as_ref().map(|o| {
            let state = o.discovery_state();
            json!({
                "issuer": o.settings.issuer,
                "discovery": state.as_str(),
                "last_error": match &state {
                    crate::oauth::discovery::DiscoveryState::Error(e) => Some(e.clone()),
                    _ => None,
                },
            })
        });
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "jwks": jwks,
            "oauth": oauth,
            "config": {
                "version": rt.version,
                "files": rt.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
                "last_reload": {"result": reload.result, "at": reload.at, "error": reload.error},
            },
            "routes": routes,
            "upstreams": upstreams,
        })
    }
}

impl Admin {
    /// The `/status/live` document, `None` when the dashboard is off.
    fn live(&self) -> Option<Value> {
        let rt = self.live.load();
        let dashboard = rt.dashboard.as_ref()?;
        let reload = self.lifecycle.last_reload();
        Some(crate::dashboard::report::live(
            dashboard,
            &rt,
            &reload,
            std::time::Instant::now(),
        ))
    }

    /// The dashboard page.
    fn page(&self) -> Response<Vec<u8>> {
        let generated = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let html = page::render(self.live().as_ref(), &self.status(), generated);
        let mut resp = build(
            StatusCode::OK,
            "text/html; charset=utf-8",
            html.into_bytes(),
        );
        resp.headers_mut().insert(
            http::header::CONTENT_SECURITY_POLICY,
            http::HeaderValue::from_static(page::CSP),
        );
        resp
    }
}

/// `jwt scopes=admin roles=ops session` style summary of a route's policy.
fn auth_summary(p: &RoutePolicy) -> String {
    let mut s = match p.mode {
        AuthMode::None => return "public".into(),
        AuthMode::Jwt => "jwt".to_string(),
        AuthMode::Opaque => "opaque".to_string(),
        AuthMode::Any => "jwt|opaque".to_string(),
        AuthMode::Oauth => "oauth".to_string(),
        AuthMode::ApiKey => "api_key".to_string(),
    };
    if p.api_key && p.mode != AuthMode::ApiKey {
        s.push_str("|api_key");
    }
    if p.session == SessionMode::Required {
        s.push_str(" session");
    }
    if !p.scopes.is_empty() {
        s.push_str(&format!(" scopes={}", p.scopes.join(",")));
    }
    if !p.roles.is_empty() {
        s.push_str(&format!(" roles={}", p.roles.join("|")));
    }
    s
}

fn json_response(code: StatusCode, body: &Value) -> Response<Vec<u8>> {
    build(code, "application/json", body.to_string().into_bytes())
}

fn build(code: StatusCode, ctype: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, ctype)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let wants_html = req
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
        match req.uri.path() {
            "/health/live" => json_response(StatusCode::OK, &json!({"status": "alive"})),
            "/health/ready" => {
                let (code, body) = self.readiness();
                json_response(code, &body)
            }
            "/metrics" => build(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(),
            ),
            "/" => self.page(),
            "/status" if wants_html => self.page(),
            "/status" => json_response(StatusCode::OK, &self.status()),
            "/status/live" => match self.live() {
                Some(live) => json_response(StatusCode::OK, &live),
                None => json_response(
                    StatusCode::NOT_FOUND,
                    &json!({"error": "dashboard_off", "message": "the live dashboard is off: set dashboard.enabled in conf.yaml"}),
                ),
            },
            "/dashboard.js" => build(
                StatusCode::OK,
                "text/javascript; charset=utf-8",
                page::SCRIPT.into(),
            ),
            "/dashboard.css" => build(
                StatusCode::OK,
                "text/css; charset=utf-8",
                page::STYLE.into(),
            ),
            "/favicon.svg" => build(StatusCode::OK, "image/svg+xml", page::ICON.into()),
            _ => json_response(
                StatusCode::NOT_FOUND,
                &json!({"error": "not_found", "message": "admin paths: / /health/live /health/ready /metrics /status /status/live"}),
            ),
        }
    }
}
