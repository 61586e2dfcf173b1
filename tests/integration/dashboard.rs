//! The live dashboard: its numbers (`/status/live`) against requests whose
//! count, answer and duration the test chose, and its page in headless
//! Chromium (`tests/browser/dashboard.mjs`): updating by itself, under
//! load, and without JavaScript. Screenshots go to
//! `target/tmp/artifacts/dashboard/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{
    eventually, free_port, get_json, npm_installed, raw_get, route_file, wrk, Gateway, Upstream,
    DEV_JWT,
};

/// A gateway with the dashboard on (the default): `web` and `slow` public, `api` behind
/// a JWT, `lim` at one request a second, `dead` on a backend nobody
/// listens on.
async fn gateway() -> (Upstream, Gateway) {
    let up = Upstream::start("app").await;
    let dead = format!("127.0.0.1:{}", free_port());
    let routes = route_file(
        &[up.addr],
        "health_check: {path: /api/health, interval_ms: 300}",
        &[
            ("web", "/web", ""),
            ("slow", "/slow", ""),
            ("api", "/api", "auth: jwt"),
            ("lim", "/lim", "rate_limit: {key: ip, rate: 1/s, burst: 1}"),
        ],
    ) + "  - name: dead\n    prefix: /dead\n    upstream: gone\n";
    let gone = format!(
        "upstreams:\n  gone:\n    backends: [{dead}]\n    health_check: {{interval_ms: 300}}\n"
    );
    let gw = Gateway::start(DEV_JWT, &[("r.yaml", &routes), ("gone.yaml", &gone)]);
    (up, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_live_numbers_count_what_each_route_did() {
    let (_up, gw) = gateway().await;
    for _ in 0..20 {
        assert_eq!(raw_get(gw.addr, "/web/x", &[]).status, 200);
    }
    for _ in 0..4 {
        assert_eq!(raw_get(gw.addr, "/slow/api/slow?ms=40", &[]).status, 200);
    }
    for _ in 0..3 {
        assert_eq!(raw_get(gw.addr, "/api/x", &[]).status, 401);
    }
    let limited = (0..4)
        .filter(|_| raw_get(gw.addr, "/lim/x", &[]).status == 429)
        .count();
    assert!(limited >= 2, "{limited} refused of 4");
    let dead = raw_get(gw.addr, "/dead/x", &[]).status;
    assert!(dead >= 500, "{dead}");

    let (status, live) = get_json(&gw.admin_url("/status/live")).await;
    assert_eq!(status, 200, "{live}");
    let route = |name: &str| {
        live["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no route {name} in {live}"))
            .clone()
    };
    for w in ["1m", "5m", "15m"] {
        let web = &route("web")["windows"][w];
        assert_eq!(web["requests"], 20, "{w}: {web}");
        assert_eq!(web["error_ratio"], 0.0, "{w}: {web}");
        assert!(web["requests_per_second"].as_f64().unwrap() > 0.0);
    }
    let slow = &route("slow")["windows"]["1m"];
    let p50 = slow["p50_ms"].as_f64().unwrap();
    assert!((35.0..60.0).contains(&p50), "a 40 ms answer's p50: {slow}");
    assert!(slow["p99_ms"].as_f64().unwrap() >= p50);
    assert_eq!(route("dead")["windows"]["1m"]["error_ratio"], 1.0);
    assert_eq!(route("api")["windows"]["1m"]["requests"], 3);

    let refusals = live["refusals"].as_array().unwrap();
    let refused = |reason: &str| {
        refusals
            .iter()
            .find(|r| r["reason"] == reason)
            .map_or(0, |r| r["1m"].as_u64().unwrap())
    };
    assert_eq!(refused("missing"), 3, "{refusals:?}");
    assert_eq!(refused("rate_limited"), limited as u64, "{refusals:?}");

    let (_, status_doc) = get_json(&gw.admin_url("/status")).await;
    assert_eq!(live["config"]["version"], status_doc["config"]["version"]);
    assert_eq!(live["config"]["last_reload"]["result"], "ok");
    assert!(live["process"]["rss_bytes"].as_u64().unwrap() > 1 << 20);

    // The dead backend goes down on its checks, and its timeline says so.
    let down = eventually(10, async || {
        let (_, live) = get_json(&gw.admin_url("/status/live")).await;
        let gone = live["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == "gone")
            .cloned()
            .unwrap_or_default();
        let b = &gone["backends"][0];
        b["state"] == "down" && b["timeline"].as_array().is_some_and(|t| !t.is_empty())
    })
    .await;
    assert!(down, "{}", gw.log());
    // A second reading a second later has a CPU share.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, again) = get_json(&gw.admin_url("/status/live")).await;
    assert!(
        again["process"]["cpu_percent"].as_f64().is_some(),
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_history_survives_a_reload_and_the_dashboard_can_be_turned_off() {
    let (_up, gw) = gateway().await;
    for _ in 0..5 {
        raw_get(gw.addr, "/web/x", &[]);
    }
    let routes = std::fs::read_to_string(gw.dir.path().join("routes/r.yaml")).unwrap();
    std::fs::write(
        gw.dir.path().join("routes/r.yaml"),
        routes.replace("name: slow", "name: slower"),
    )
    .unwrap();
    let reloaded = eventually(10, async || {
        let (_, live) = get_json(&gw.admin_url("/status/live")).await;
        let names: Vec<String> = live["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        names.contains(&"slower".to_string()) && !names.contains(&"slow".to_string())
    })
    .await;
    assert!(reloaded, "{}", gw.log());
    let (_, live) = get_json(&gw.admin_url("/status/live")).await;
    let web = live["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "web")
        .unwrap();
    assert_eq!(web["windows"]["15m"]["requests"], 5, "{web}");

    let up = Upstream::start("app").await;
    let plain = Gateway::start(
        "dashboard: {enabled: false}",
        &[(
            "r.yaml",
            &route_file(&[up.addr], "", &[("web", "/web", "")]),
        )],
    );
    raw_get(plain.addr, "/web/x", &[]);
    let (status, body) = get_json(&plain.admin_url("/status/live")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("dashboard_off"))
    );
    let page = raw_get(plain.admin, "/", &["Accept: text/html"]);
    assert!(page.body.contains("Live numbers are off"), "{}", page.body);
}

/// Where the Chromium test keeps its screenshots.
fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts/dashboard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_sees_the_page_update_itself_under_load_and_without_javascript() {
    npm_installed("tests/browser", "playwright-core");
    let (_up, gw) = gateway().await;
    for _ in 0..10 {
        raw_get(gw.addr, "/web/x", &[]);
        raw_get(gw.addr, "/api/x", &[]);
    }
    let out = artifacts();
    std::fs::create_dir_all(&out).unwrap();
    // Load for the screenshot under load: wrk on /web while the page runs.
    let load = wrk(gw.url("/web/x"), 12);
    let urls = serde_json::json!({
        "admin": gw.admin_url(""),
        "artifacts": out.display().to_string(),
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.mjs");
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("DASHBOARD", urls.to_string())
            .output()
            .expect("node is needed: apt-get install -y nodejs npm")
    })
    .await
    .unwrap();
    let load = load.await.unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "dashboard.mjs failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&run.stderr),
        gw.log()
    );
    let got: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(load.requests > 0, "{}", load.text);
    assert_eq!(got["updated"], true, "{got}");
    assert!(
        got["underLoadRps"].as_f64().unwrap() > 10.0,
        "the page showed the load: {got}"
    );
    assert_eq!(got["noScript"]["tables"], true, "{got}");
    assert!(
        got["noScript"]["refresh"]
            .as_str()
            .unwrap_or("")
            .contains('2'),
        "{got}"
    );
    assert_eq!(got["consoleErrors"], serde_json::json!([]), "{got}");
    for shot in [
        "dashboard.png",
        "dashboard-under-load.png",
        "dashboard-no-js.png",
    ] {
        let png = std::fs::read(out.join(shot)).unwrap_or_default();
        assert!(
            png.len() > 10_000 && png.starts_with(b"\x89PNG"),
            "{shot}: {} bytes",
            png.len()
        );
    }
}
