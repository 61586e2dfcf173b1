//! Passive health that cannot turn a healthy app into an outage: a burst
//! that overflows a backend's listen backlog, a graceful upgrade under
//! `wrk`, a dead backend beside a live one, health checks that are wrong,
//! and the gateway itself out of file descriptors.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{
    bin, client, conf_yaml, eventually, free_port, get_json, metric, metrics_at, metrics_text,
    pool_gateway, read_response, route_file, small_backlog_upstream, spawn_gateway, write_config,
    wrk, Gateway, Killed, Upstream,
};
use crate::fault_peers::{FlakyApp, FAILING, HEALTHY};
use crate::oauth_support::JsonBody;

/// The value of the metric line starting with `series` (0 when absent).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_backend_pool_survives_a_burst_that_overflows_its_backlog() {
    let up = small_backlog_upstream(5);
    let gw = pool_gateway(&[up], "health_check: {interval_ms: 60000}");
    for wave in 0..3 {
        // Each request on its own client connection: the gateway has no
        // idle upstream connection for most of them and opens 64 at once.
        let requests = (0..64).map(|_| {
            let url = gw.url("/p/burst");
            tokio::spawn(async move {
                match client().get(&url).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                }
            })
        });
        let mut statuses = Vec::new();
        for r in requests.collect::<Vec<_>>() {
            statuses.push(r.await.unwrap());
        }
        let failed = statuses.iter().filter(|&&s| s != 200).count();
        assert_eq!(failed, 0, "wave {wave}: {statuses:?}\n{}", gw.log());
    }
    let (_, status) = get_json(&gw.admin_url("/status")).await;
    assert_eq!(
        status["upstreams"][0]["backends"][0]["healthy"], true,
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_upgrade_under_wrk_against_a_small_backlog_loses_nothing() {
    let up = small_backlog_upstream(5);
    let routes = route_file(&[up], "", &[("all", "/", "")]);
    let old = Gateway::start("", &[("r.yaml", &routes)]);
    let load = wrk(old.url("/load"), 6);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let conf = old.dir.path().join("conf.yaml");
    let new = Killed(spawn_gateway(&conf, &["-u"], old.dir.path()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    old.signal(libc::SIGQUIT);
    let report = load.await.unwrap();
    report.assert_nothing_lost(&format!("through the upgrade; log:\n{}", old.log()));
    assert!(
        !old.log().contains("no healthy backend"),
        "the only backend was reported down:\n{}",
        old.log()
    );
    drop(new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_backend_is_ejected_but_never_the_last_one() {
    let mut ups = [Upstream::start("a0").await, Upstream::start("a1").await];
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    // Checks far apart: what happens here is passive health alone.
    let gw = pool_gateway(&addrs, "health_check: {interval_ms: 60000}");
    ups[0].kill().await;
    for i in 0..20 {
        let r = client().get(gw.url("/p/x")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}\n{}", gw.log());
    }
    let healthy = async || {
        let (_, s) = get_json(&gw.admin_url("/status")).await;
        let b = &s["upstreams"][0]["backends"];
        (b[0]["healthy"].clone(), b[1]["healthy"].clone())
    };
    assert_eq!(healthy().await, (false.into(), true.into()));

    // The other one dies too: tried, refused, but not ejected (the last).
    ups[1].kill().await;
    let (status, body) = get_json(&gw.url("/p/x")).await;
    assert_eq!((status, body["error"].as_str()), (502, Some("bad_gateway")));
    assert_eq!(healthy().await, (false.into(), true.into()));
    // It comes back: served at once, no check needed.
    ups[1] = Upstream::start_at(addrs[1], "a1").await;
    let (status, _) = get_json(&gw.url("/p/x")).await;
    assert_eq!(status, 200, "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pool_the_checks_call_down_is_tried_anyway_and_counted() {
    let up = Upstream::start("app").await;
    // The probe always times out, yet the app serves requests fine.
    let gw = pool_gateway(
        &[up.addr],
        "health_check: {path: \"/api/slow?ms=500\", interval_ms: 200, timeout_ms: 50}",
    );
    let down = eventually(10, async || {
        let (_, s) = get_json(&gw.admin_url("/health/ready")).await;
        s["components"]["upstreams"]["app"]["healthy"] == 0
    })
    .await;
    assert!(down, "the check never failed");
    for _ in 0..5 {
        let (status, body) = get_json(&gw.url("/p/x")).await;
        assert_eq!((status, body["app"].as_str()), (200, Some("app")));
    }
    let text = metrics_text(&gw).await;
    assert!(
        metric(&text, "gatehouse_upstream_panic_total{upstream=\"app\"}") >= 5.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refusal_says_connection_close_when_the_connection_closes() {
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = pool_gateway(&[dead], "retries: 0");
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /p/x HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert!(
        text.starts_with("http/1.1 502") || text.starts_with("http/1.1 503"),
        "{text}"
    );
    assert!(text.contains("connection: close"), "{text}");
    assert!(!text.contains("keep-alive"), "{text}");
}

/// Starts the gateway with at most `nofile` open file descriptors.
fn gateway_with_fd_limit(
    routes: &str,
    nofile: u64,
) -> (Killed, SocketAddr, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let conf = write_config(
        dir.path(),
        &conf_yaml(dir.path(), port, admin, ""),
        &[("r.yaml", routes)],
    );
    let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["run", "-c"])
        .arg(&conf)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = Killed(cmd.spawn().unwrap());
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin));
    (child, addr, admin, dir)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A keep-alive GET on `s`; the response's status and body.
fn get_on(s: &mut TcpStream, path: &str) -> (u16, String) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .unwrap();
    read_response(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn out_of_file_descriptors_is_the_gateways_fault_not_the_backends() {
    let up = Upstream::start("app").await;
    // One check at start, then none: no probe frees a descriptor mid-test.
    let routes = route_file(
        &[up.addr],
        "health_check: {interval_ms: 60000}",
        &[("p", "/p", "")],
    );
    let (gw, addr, admin, dir) = gateway_with_fd_limit(&routes, 128);
    let log = || std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    let ready = eventually(20, async || {
        client()
            .get(format!("http://{admin}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready, "gateway not ready:\n{}", log());
    // A connection the gateway has accepted (its descriptor shows), with
    // no request yet, so no upstream connection is pooled for it.
    let pid = gw.0.id();
    // The start-up health probe's socket is gone by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = open_fds(pid);
    let mut probe = TcpStream::connect(addr).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let accepted = eventually(5, async || open_fds(pid) > before).await;
    assert!(accepted, "{}", log());

    // Idle connections until the gateway cannot accept any more.
    let mut hogs = Vec::new();
    while open_fds(pid) < 128 && hogs.len() < 200 {
        hogs.push(TcpStream::connect(addr).unwrap());
        std::thread::sleep(Duration::from_millis(2));
    }
    // More wait in the listen queue: a descriptor that frees up is taken
    // by the next accept (Pingora retries a second after EMFILE).
    for _ in 0..10 {
        hogs.push(TcpStream::connect(addr).unwrap());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fds = open_fds(pid);
    let (status, body) = get_on(&mut probe, "/p/x");
    assert_eq!(
        status,
        503,
        "{body}\n{fds} descriptors open, {} hogs\n{}",
        hogs.len(),
        log()
    );
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "gateway_overloaded");

    drop(hogs);
    let recovered = eventually(10, async || {
        client()
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .is_ok()
    })
    .await;
    assert!(recovered, "{}", log());
    let text = metrics_at(admin).await;
    assert!(
        metric(&text, "gatehouse_local_errors_total{kind=\"fd_limit\"}") >= 1.0,
        "{text}"
    );
    let (_, status) = get_json(&format!("http://{admin}/status")).await;
    assert_eq!(
        status["upstreams"][0]["backends"][0]["healthy"], true,
        "{status}"
    );
    assert!(
        !log().contains("is unhealthy"),
        "the backend was reported down:\n{}",
        log()
    );
    let mut again = TcpStream::connect(addr).unwrap();
    again
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(get_on(&mut again, "/p/x").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_max_in_flight_the_excess_is_shed_at_once_and_the_rest_served() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = pool_gateway(&[a.addr, b.addr], "max_in_flight: 4");
    let text = metrics_text(&gw).await;
    assert_eq!(
        metric(&text, "gatehouse_upstream_shed_total{upstream=\"app\"}"),
        0.0
    );
    // Ten times the limit at once, each held 1.5 s by the backend.
    let started = std::time::Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let url = gw.url("/p/api/slow?ms=1500");
        all.spawn(async move {
            let r = client().get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let retry_after = r.headers().get("retry-after").is_some();
            let body = r.bytes().await.unwrap_or_default();
            (status, retry_after, body, started.elapsed())
        });
    }
    let answers = all.join_all().await;
    let served: Vec<_> = answers.iter().filter(|a| a.0 == 200).collect();
    let shed: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert_eq!(
        (served.len(), shed.len()),
        (4, 36),
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    for (_, retry_after, body, _) in &shed {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["error"], "upstream_overloaded");
        assert!(*retry_after);
    }
    // Shed at once: every 503 came back while the admitted requests were
    // still being served, not after waiting for a slot.
    let first_served = served.iter().map(|a| a.3).min().unwrap();
    assert!(
        shed.iter().all(|a| a.3 < first_served),
        "a 503 waited for a slot"
    );
    let text = metrics_text(&gw).await;
    assert_eq!(
        metric(&text, "gatehouse_upstream_shed_total{upstream=\"app\"}"),
        36.0
    );
    // Shedding is the gateway's choice, never held against the backends.
    assert_eq!(get_json(&gw.url("/p/x")).await.0, 200);
    for backend in [a.addr, b.addr] {
        let series =
            format!("gatehouse_upstream_backend_healthy{{backend=\"{backend}\",upstream=\"app\"}}");
        assert_eq!(metric(&text, &series), 1.0, "{series}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_route_deadline_bounds_the_whole_request() {
    let up = Upstream::start("app").await;
    let routes = route_file(
        &[up.addr],
        "read_timeout_ms: 10000",
        &[
            ("bounded", "/bounded", "timeout_ms: 400"),
            ("open", "/", ""),
        ],
    );
    let gw = Gateway::start("", &[("r.yaml", &routes)]);
    // The backend would answer after 3 s; the route gives up at its deadline,
    // long before the per-attempt read_timeout_ms.
    let started = std::time::Instant::now();
    let (status, body) = get_json(&gw.url("/bounded/api/slow?ms=3000")).await;
    let took = started.elapsed();
    assert_eq!(
        (status, body["error"].as_str()),
        (504, Some("gateway_timeout")),
        "{body}"
    );
    assert!(
        took < Duration::from_millis(2500),
        "answered after {took:?}, not at the deadline"
    );
    // Within the deadline, and on routes without one, requests go through.
    assert_eq!(get_json(&gw.url("/bounded/api/slow?ms=50")).await.0, 200);
    assert_eq!(get_json(&gw.url("/api/slow?ms=600")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_backend_is_cut_off_by_its_breaker_and_let_back_when_it_recovers() {
    use std::sync::atomic::Ordering::Relaxed;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let app = FlakyApp::start(FAILING).await;
    let flaky = app.addr;
    let gw = pool_gateway(
        &[a.addr, b.addr, flaky],
        "retries: 0\nhealth_check: {interval_ms: 3600000}\ncircuit_breaker: {min_requests: 5, window_seconds: 30, open_seconds: 2, half_open_requests: 2}",
    );
    let state = format!("gatehouse_circuit_state{{backend=\"{flaky}\",upstream=\"app\"}}");
    assert_eq!(metric(&metrics_text(&gw).await, &state), 0.0);
    let mut failed = 0;
    for _ in 0..45 {
        if get_json(&gw.url("/p/x")).await.0 != 200 {
            failed += 1;
        }
    }
    // Five failures open the breaker; then the failing app gets nothing
    // (a trial or two if the run outlasts open_seconds).
    let seen = app.hits();
    assert!(
        (5..=9).contains(&seen),
        "the failing app got {seen} requests"
    );
    assert_eq!(failed, seen, "only the failing app's answers failed");
    let text = metrics_text(&gw).await;
    assert!(metric(&text, &state) >= 1.0, "breaker not open:\n{text}");
    let opened = format!(
        "gatehouse_circuit_transitions_total{{backend=\"{flaky}\",to=\"open\",upstream=\"app\"}}"
    );
    assert!(metric(&text, &opened) >= 1.0, "{text}");
    let status: serde_json::Value = client()
        .get(gw.admin_url("/status"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    let circuits: Vec<&str> = status["upstreams"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["circuit"].as_str())
        .collect();
    assert!(
        circuits.contains(&"open") || circuits.contains(&"half_open"),
        "{status}"
    );

    // Recovered: after open_seconds, the trials succeed and it closes.
    app.mode.store(HEALTHY, Relaxed);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    for _ in 0..30 {
        assert_eq!(get_json(&gw.url("/p/x")).await.0, 200);
    }
    assert!(app.hits() >= seen + 2 + 5, "traffic did not come back");
    assert_eq!(metric(&metrics_text(&gw).await, &state), 0.0);
}
