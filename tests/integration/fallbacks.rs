//! Degraded answers: a route's static `fallback` and its
//! `fallback_upstream` take over when the route's own upstream cannot
//! answer (breakers open, shed, down, past the deadline), never when the
//! app itself answered.

use std::net::SocketAddr;

use crate::common::{client, eventually, free_port, metric, metrics_text, Gateway, Upstream};
use crate::fault_peers::{FlakyApp, ServerProcess, FAILING};
use crate::oauth_support::JsonBody;

/// The JSON body the static fallbacks here serve.
const DEGRADED: &str = r#"{"candles":[],"degraded":true}"#;

/// A gateway whose route `/p` goes to upstream `app` over `primary`
/// (keys `pool_extra`), with the route keys `route_extra`; upstream
/// `backup` over `backup` exists beside it, and `fallback/p.json` holds
/// [`DEGRADED`].
fn gateway(
    primary: &[SocketAddr],
    pool_extra: &str,
    backup: &[SocketAddr],
    route_extra: &str,
) -> Gateway {
    let list = |a: &[SocketAddr]| {
        a.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let routes = format!(
        "upstreams:\n  app:\n    backends: [{}]\n    health_check: {{interval_ms: 3600000}}\n    {pool_extra}\n  backup:\n    backends: [{}]\n    health_check: {{interval_ms: 3600000}}\nroutes:\n  - name: p\n    prefix: /p\n    upstream: app\n    {route_extra}\n",
        list(primary),
        list(backup),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("fallback")).unwrap();
    std::fs::write(dir.path().join("fallback/p.json"), DEGRADED).unwrap();
    Gateway::start_in(
        dir,
        "access_log: {path: access.log}",
        &[("r.yaml", &routes)],
    )
}

/// A loopback address nothing listens on.
fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// `gatehouse_fallbacks_total` of route `p` for `reason`.
async fn fallbacks(gw: &Gateway, reason: &str) -> f64 {
    let text = metrics_text(gw).await;
    metric(
        &text,
        &format!("gatehouse_fallbacks_total{{reason=\"{reason}\",route=\"p\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_static_answer_replaces_an_open_breaker_but_never_the_apps_own_503() {
    let app = FlakyApp::start(FAILING).await;
    let backup = Upstream::start("backup").await;
    let gw = gateway(
        &[app.addr],
        "retries: 0\n    circuit_breaker: {min_requests: 5, window_seconds: 30, open_seconds: 30, half_open_requests: 1}",
        &[backup.addr],
        "fallback: {body_file: fallback/p.json}",
    );
    assert_eq!(
        fallbacks(&gw, "circuit_open").await,
        0.0,
        "series exist at zero"
    );
    // The app answers for itself, 503s included, until its breaker opens.
    for _ in 0..5 {
        let r = client().get(gw.url("/p/candles")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert!(r.headers().get("x-gatehouse-fallback").is_none());
        assert_eq!(r.text().await.unwrap(), "failing");
    }
    let hits = app.hits();
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let r = client()
            .request(method.clone(), gw.url("/p/candles"))
            .body(if method == reqwest::Method::POST {
                "x"
            } else {
                ""
            })
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{method}\n{}", gw.log());
        assert_eq!(r.headers()["x-gatehouse-fallback"], "circuit_open");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert!(r.headers().get("x-request-id").is_some());
        assert_eq!(r.text().await.unwrap(), DEGRADED);
    }
    let r = client().head(gw.url("/p/candles")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], DEGRADED.len().to_string());
    assert_eq!(r.text().await.unwrap(), "");
    assert_eq!(app.hits(), hits, "an open breaker sends the app nothing");
    assert_eq!(fallbacks(&gw, "circuit_open").await, 3.0);
    let access_log = gw.dir.path().join("access.log");
    let logged = eventually(5, async || {
        let log = std::fs::read_to_string(&access_log).unwrap_or_default();
        log.matches(r#""fallback":"circuit_open""#).count() == 3
    })
    .await;
    assert!(logged, "the access log names the fallback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_pool_is_answered_by_the_fallback_upstream_then_by_the_static_answer() {
    let mut backup = Upstream::start("backup").await;
    let dead = [dead_addr(), dead_addr()];
    let gw = gateway(
        &dead,
        "retries: 1",
        &[backup.addr],
        "fallback_upstream: backup\n    fallback: {status: 503, body_file: fallback/p.json}",
    );
    // The first health probes find both backends down.
    let down = eventually(5, async || {
        let text = metrics_text(&gw).await;
        dead.iter().all(|b| {
            let series =
                format!("gatehouse_upstream_backend_healthy{{backend=\"{b}\",upstream=\"app\"}}");
            text.contains(&series) && metric(&text, &series) == 0.0
        })
    })
    .await;
    assert!(down, "{}", gw.log());
    // A refused connect never reached the app: a POST goes on as well.
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let r = client()
            .request(method.clone(), gw.url("/p/x"))
            .body("payload")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{method}\n{}", gw.log());
        assert_eq!(r.headers()["x-gatehouse-fallback"], "no_healthy_backend");
        let body = r.json_value().await;
        assert_eq!(body["app"], "backup", "{body}");
    }
    assert_eq!(fallbacks(&gw, "no_healthy_backend").await, 2.0);
    // With the backup down too, the static answer stands in, naming why
    // the route's own upstream was given up.
    backup.kill().await;
    let r = client().get(gw.url("/p/x")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-gatehouse-fallback"], "no_healthy_backend");
    assert_eq!(r.text().await.unwrap(), DEGRADED);
    assert_eq!(fallbacks(&gw, "no_healthy_backend").await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn past_the_deadline_the_fallback_upstream_answers_in_its_own_time() {
    let hung = ServerProcess::start();
    let backup = Upstream::start("backup").await;
    let gw = gateway(
        &[hung.addr],
        "read_timeout_ms: 30000",
        &[backup.addr],
        "timeout_ms: 300\n    fallback_upstream: backup",
    );
    hung.signal(libc::SIGSTOP);
    let r = client().get(gw.url("/p/slow")).send().await.unwrap();
    hung.signal(libc::SIGCONT);
    assert_eq!(r.status(), 200, "{}", gw.log());
    assert_eq!(r.headers()["x-gatehouse-fallback"], "gateway_timeout");
    let body = r.json_value().await;
    assert_eq!(body["app"], "backup");
    assert_eq!(fallbacks(&gw, "gateway_timeout").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shed_request_gets_the_fallback_at_once() {
    let hung = ServerProcess::start();
    let gw = gateway(
        &[hung.addr],
        "max_in_flight: 1\n    read_timeout_ms: 3000",
        &[dead_addr()],
        "fallback: {body_file: fallback/p.json}",
    );
    hung.signal(libc::SIGSTOP);
    // Five at once: one holds the pool's only slot while the process is
    // stopped, the others are shed.
    let requests: Vec<_> = (0..5)
        .map(|i| tokio::spawn(client().get(gw.url(&format!("/p/{i}"))).send()))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    hung.signal(libc::SIGCONT);
    let mut reasons = Vec::new();
    for r in requests {
        let r = r.await.unwrap().unwrap();
        let reason = r
            .headers()
            .get("x-gatehouse-fallback")
            .map(|v| v.to_str().unwrap().to_string());
        if reason.is_some() {
            assert_eq!(r.status(), 200);
            assert_eq!(r.text().await.unwrap(), DEGRADED);
        }
        reasons.push(reason);
    }
    let shed = reasons
        .iter()
        .filter(|r| r.as_deref() == Some("upstream_overloaded"))
        .count();
    assert_eq!(shed, 4, "{reasons:?}\n{}", gw.log());
    assert_eq!(fallbacks(&gw, "upstream_overloaded").await, 4.0);
}
