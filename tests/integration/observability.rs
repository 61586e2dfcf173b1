//! Access log, metrics exposition and the status page, as operators and
//! their tools (promtool, a browser) see them.

use std::process::Command;

use futures_util::StreamExt;
use std::time::Duration;

use crate::common::{client, eventually, raw_get, route_file, Gateway, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_log_lines_and_reopen_on_sigusr1() {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("web", "/web", "")]);
    let gw = Gateway::start("access_log: {path: access.log}", &[("r.yaml", &routes)]);
    let log_path = gw.dir.path().join("access.log");
    let secret = "tok-secret-value";
    raw_get(
        gw.addr,
        &format!("/web/items?page=2&token={secret}"),
        &[
            &format!("Authorization: Bearer {secret}"),
            &format!("Cookie: access_token={secret}"),
            "X-Request-Id: log-test-1",
        ],
    );
    raw_get(gw.addr, "/missing", &[]);
    let written = eventually(5, async || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
    })
    .await;
    assert!(written, "no access log lines");
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        !text.contains(secret),
        "a token reached the access log:\n{text}"
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = lines
        .iter()
        .find(|l| l["request_id"] == "log-test-1")
        .unwrap();
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/web/items?page=2&token=REDACTED");
    assert_eq!(first["route"], "web");
    assert_eq!(first["upstream"], "app");
    assert_eq!(first["backend"], up.addr.to_string());
    assert_eq!(first["status"], 200);
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert_eq!(first["auth"], "public");
    assert_eq!(first["trace_id"].as_str().unwrap().len(), 32);
    assert!(first["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(first["bytes_sent"].as_u64().unwrap() > 0);
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    let missing = lines.iter().find(|l| l["path"] == "/missing").unwrap();
    assert_eq!(
        (missing["status"].as_u64(), missing["error"].as_str()),
        (Some(404), Some("no_route"))
    );

    // logrotate: move the file away, SIGUSR1, new lines land in a new file.
    std::fs::rename(&log_path, gw.dir.path().join("access.log.1")).unwrap();
    gw.signal(libc::SIGUSR1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    raw_get(gw.addr, "/web/after-rotate", &[]);
    let reopened = eventually(5, async || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("/web/after-rotate")
    })
    .await;
    assert!(reopened, "no line in the reopened file");
    let rotated = std::fs::read_to_string(gw.dir.path().join("access.log.1")).unwrap();
    assert!(!rotated.contains("after-rotate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_log_off_writes_nothing() {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("web", "/", "")]);
    let gw = Gateway::start(
        "access_log: {format: off, path: access.log}",
        &[("r.yaml", &routes)],
    );
    raw_get(gw.addr, "/x", &[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!gw.dir.path().join("access.log").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_pass_promtool_and_random_paths_add_no_series() {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("web", "/web", "")]);
    let gw = Gateway::start("", &[("r.yaml", &routes)]);
    raw_get(gw.addr, "/web/x", &[]);
    // The first unmatched request creates the `route="none"` series once.
    raw_get(gw.addr, "/random/first", &[]);
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let before = crate::common::metrics_text(&gw).await;
    let c = client();
    let statuses: Vec<_> = futures_util::stream::iter(0..10_000)
        .map(|i| {
            let (c, url) = (
                c.clone(),
                gw.url(&format!("/random/{i}/{}", fastrand::u64(..))),
            );
            async move { c.get(url).send().await.map(|r| r.status().as_u16()) }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| matches!(s, Ok(404))));
    let after = crate::common::metrics_text(&gw).await;
    assert!(after
        .contains("gatehouse_requests_total{method=\"GET\",route=\"none\",status=\"404\"} 10001"));
    assert_eq!(
        series(&after),
        series(&before),
        "unmatched paths created series"
    );

    promtool_check(&after);
}

/// `promtool check metrics` on an exposition; fails the test on any finding.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed: apt-get install -y prometheus");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every family of SPEC §5 (and the gateway's own additions).
const FAMILIES: &[&str] = &[
    "gatehouse_requests_total",
    "gatehouse_request_duration_seconds",
    "gatehouse_upstream_duration_seconds",
    "gatehouse_auth_failures_total",
    "gatehouse_rate_limited_total",
    "gatehouse_tokenginx_lookups_total",
    "gatehouse_tokenginx_lookup_duration_seconds",
    "gatehouse_upstream_backend_healthy",
    "gatehouse_upstream_retries_total",
    "gatehouse_upstream_retry_overflow_total",
    "gatehouse_upstream_panic_total",
    "gatehouse_local_errors_total",
    "gatehouse_client_timeouts_total",
    "gatehouse_config_reloads_total",
    "gatehouse_config_last_reload_success",
    "gatehouse_jwks_refreshes_total",
    "process_cpu_seconds_total",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_family_is_present_from_start_with_known_label_sets_at_zero() {
    let up = Upstream::start("app").await;
    // A gateway with nothing but a public route: every family is still there.
    let routes = route_file(&[up.addr], "", &[("web", "/web", "")]);
    let bare = Gateway::start("", &[("r.yaml", &routes)]);
    let text = crate::common::metrics_text(&bare).await;
    for family in FAMILIES {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing from a fresh gateway:\n{text}"
        );
    }
    for series in [
        "gatehouse_config_reloads_total{result=\"error\"} 0",
        "gatehouse_tokenginx_lookups_total{result=\"error\"} 0",
        "gatehouse_client_timeouts_total{phase=\"header\"} 0",
        "gatehouse_local_errors_total{kind=\"fd_limit\"} 0",
        "gatehouse_upstream_panic_total{upstream=\"app\"} 0",
        "gatehouse_upstream_retries_total{reason=\"connect_failure\",upstream=\"app\"} 0",
        "gatehouse_upstream_retry_overflow_total{upstream=\"app\"} 0",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    promtool_check(&text);

    // Routes with auth and limits: their reasons and limits at 0; a route
    // added by a reload gets its own.
    let extra = crate::common::DEV_JWT;
    let routes = route_file(
        &[up.addr],
        "",
        &[(
            "api",
            "/api",
            "auth: jwt\nrate_limit: {key: ip, rate: 10/s, burst: 5}\nip_deny: [10.0.0.0/8]",
        )],
    );
    let gw = Gateway::start(extra, &[("r.yaml", &routes)]);
    let text = crate::common::metrics_text(&gw).await;
    for series in [
        "gatehouse_auth_failures_total{reason=\"missing\",route=\"api\"} 0",
        "gatehouse_auth_failures_total{reason=\"expired\",route=\"api\"} 0",
        "gatehouse_auth_failures_total{reason=\"ip\",route=\"api\"} 0",
        "gatehouse_rate_limited_total{route=\"api\"} 0",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    promtool_check(&text);
    let more = route_file(&[up.addr], "", &[("api2", "/api2", "auth: jwt")]).replace("app", "app2");
    std::fs::write(gw.dir.path().join("routes/s.yaml"), more).unwrap();
    let added = crate::common::eventually(10, async || {
        crate::common::metrics_text(&gw)
            .await
            .contains("gatehouse_auth_failures_total{reason=\"missing\",route=\"api2\"} 0")
    })
    .await;
    assert!(added, "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_page_renders_in_headless_chromium() {
    let up = Upstream::start("app").await;
    let routes = route_file(
        &[up.addr],
        "",
        &[("web-route", "/web", ""), ("api-route", "/api", "")],
    );
    let gw = Gateway::start("", &[("r.yaml", &routes)]);
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(gw.admin_url("/status"))
        .output()
        .expect("chromium is needed: apt-get install -y chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("<table id=\"routes\">"),
        "no routes table in:\n{dom}"
    );
    for needle in [
        "web-route",
        "api-route",
        "/web",
        "/api",
        &up.addr.to_string(),
        "healthy",
    ] {
        assert!(
            dom.contains(needle),
            "{needle} missing from the rendered status page"
        );
    }
}
