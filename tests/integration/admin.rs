//! The admin service: health, readiness, metrics, status.

use crate::common::{client, get_json, raw_get, route_file, Gateway, Upstream};

async fn gateway() -> (Upstream, Gateway) {
    let up = Upstream::start("app").await;
    let routes = route_file(
        &[up.addr],
        "health_check: {path: /api/health, interval_ms: 500}",
        &[("web", "/web", "")],
    );
    let gw = Gateway::start("", &[("r.yaml", &routes)]);
    (up, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn liveness_and_readiness() {
    let (_up, gw) = gateway().await;
    let (status, live) = get_json(&gw.admin_url("/health/live")).await;
    assert_eq!(
        (status, live),
        (200, serde_json::json!({"status": "alive"}))
    );
    let (status, ready) = get_json(&gw.admin_url("/health/ready")).await;
    assert_eq!(status, 200);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["version"], env!("CARGO_PKG_VERSION"));
    assert!(ready["uptime_seconds"].is_u64());
    assert_eq!(ready["components"]["tokenginx"], "off");
    assert_eq!(
        ready["components"]["upstreams"]["app"],
        serde_json::json!({"healthy": 1, "total": 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_exposition() {
    let (_up, gw) = gateway().await;
    raw_get(gw.addr, "/web/x", &[]);
    raw_get(gw.addr, "/nowhere/123", &[]);
    raw_get(gw.addr, "/nowhere/456", &[]);
    let r = client().get(gw.admin_url("/metrics")).send().await.unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for needle in [
        "gatehouse_requests_total{method=\"GET\",route=\"web\",status=\"200\"} 1",
        "gatehouse_requests_total{method=\"GET\",route=\"none\",status=\"404\"} 2",
        "gatehouse_request_duration_seconds_bucket{route=\"web\",le=\"0.0001\"}",
        "gatehouse_upstream_duration_seconds_count{route=\"web\",upstream=\"app\"} 1",
        "gatehouse_upstream_backend_healthy{backend=\"",
        "gatehouse_config_reloads_total{result=\"ok\"} 1",
        "gatehouse_config_last_reload_success 1",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(
        !text.contains("/nowhere"),
        "raw paths must never become labels"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_json_and_html() {
    let (up, gw) = gateway().await;
    let (status, s) = get_json(&gw.admin_url("/status")).await;
    assert_eq!(status, 200);
    assert_eq!(s["routes"][0]["name"], "web");
    assert_eq!(s["routes"][0]["prefix"], "/web");
    assert_eq!(s["upstreams"][0]["name"], "app");
    assert_eq!(
        s["upstreams"][0]["backends"][0]["addr"],
        up.addr.to_string()
    );
    assert_eq!(s["upstreams"][0]["backends"][0]["healthy"], true);
    assert_eq!(s["upstreams"][0]["backends"][0]["recent_error_rate"], 0.0);
    assert_eq!(s["routes"][0]["auth"], "public");
    assert!(s["routes"][0]["rate_limit"].is_null());
    assert_eq!(s["config"]["last_reload"]["result"], "ok");
    assert_eq!(s["config"]["version"].as_str().unwrap().len(), 16);

    let r = client()
        .get(gw.admin_url("/status"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = r.text().await.unwrap();
    assert!(
        html.contains("<td>/web</td>") && html.contains("healthy"),
        "{html}"
    );
}
