//! The retry policy against backends that fail for real: one answering 503
//! to every other request, one stopped with SIGSTOP, one resetting
//! connections mid-request.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::{
    client, get_json, metric, metrics_text, pool_gateway, route_file, Gateway, Upstream,
};
use crate::fault_peers::{FlakyApp, ResettingApp, ServerProcess, EVERY_OTHER, HEALTHY};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gets_ride_out_a_backend_failing_half_its_requests_and_its_breaker_closes_after() {
    use std::sync::atomic::Ordering::Relaxed;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let flaky = FlakyApp::start(EVERY_OTHER).await;
    let gw = pool_gateway(
        &[a.addr, b.addr, flaky.addr],
        "health_check: {interval_ms: 3600000}\nretry: {on: [connect_failure, reset, timeout, 502, 503, 504], max: 2}\ncircuit_breaker: {error_ratio: 0.4, min_requests: 10, window_seconds: 30, open_seconds: 2, half_open_requests: 2}",
    );
    let mut ok = 0;
    let total = 1000;
    for _ in 0..total {
        if get_json(&gw.url("/p/x")).await.0 == 200 {
            ok += 1;
        }
    }
    assert!(
        ok * 1000 >= total * 999,
        "{ok} of {total} succeeded\n{}",
        gw.log()
    );
    let text = metrics_text(&gw).await;
    let state = format!(
        "gatehouse_circuit_state{{backend=\"{}\",upstream=\"app\"}}",
        flaky.addr
    );
    let opened = format!(
        "gatehouse_circuit_transitions_total{{backend=\"{}\",to=\"open\",upstream=\"app\"}}",
        flaky.addr
    );
    assert!(
        metric(&text, &opened) >= 1.0,
        "the breaker never opened:\n{text}"
    );
    let retried = metric(
        &text,
        "gatehouse_upstream_retries_total{reason=\"503\",upstream=\"app\"}",
    );
    assert!(retried >= 1.0, "no retry counted:\n{text}");
    assert!(
        (flaky.hits() as f64) < total as f64 / 3.0 * 0.5,
        "the open breaker still let {} requests through",
        flaky.hits()
    );

    // Recovered: the half-open trials succeed and the breaker closes.
    flaky.mode.store(HEALTHY, Relaxed);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    for _ in 0..30 {
        assert_eq!(get_json(&gw.url("/p/x")).await.0, 200);
    }
    assert_eq!(metric(&metrics_text(&gw).await, &state), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_backend_costs_one_read_timeout_and_the_request_succeeds_elsewhere() {
    let servers: Vec<ServerProcess> = (0..3).map(|_| ServerProcess::start()).collect();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let read_timeout = Duration::from_millis(300);
    let routes = route_file(
        &addrs,
        "connect_timeout_ms: 200\nread_timeout_ms: 300\nhealth_check: {interval_ms: 3600000}\nretry: {on: [connect_failure, reset, timeout], max: 2}",
        &[("p", "/p", "strip_prefix: true")],
    );
    let gw = Gateway::start("", &[("r.yaml", &routes)]);
    assert_eq!(get_json(&gw.url("/p/")).await.0, 200);
    servers[1].signal(libc::SIGSTOP);
    let mut took = Vec::new();
    for i in 0..60 {
        let started = Instant::now();
        let status = client()
            .get(gw.url("/p/"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        took.push(started.elapsed());
        assert_eq!(status, 200, "request {i}\n{}", gw.log());
    }
    servers[1].signal(libc::SIGCONT);
    took.sort();
    let slowest = *took.last().unwrap();
    // One attempt timed out at most: never two read timeouts in a row
    // (a retry goes to a backend not tried yet).
    assert!(
        slowest < read_timeout * 2,
        "slowest request took {slowest:?}: {took:?}\n{}",
        gw.log()
    );
    assert!(
        took[took.len() / 2] < read_timeout,
        "the median request waited for the stopped backend"
    );
    let text = metrics_text(&gw).await;
    assert!(
        metric(
            &text,
            "gatehouse_upstream_retries_total{reason=\"timeout\",upstream=\"app\"}"
        ) >= 1.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_post_the_backend_reset_is_not_sent_twice_but_a_get_is_retried() {
    use std::sync::atomic::Ordering::Relaxed;
    let resetting = ResettingApp::start().await;
    let good = FlakyApp::start(HEALTHY).await;
    let gw = pool_gateway(
        &[resetting.addr, good.addr],
        "health_check: {interval_ms: 3600000}\nretry: {on: [connect_failure, reset, timeout], max: 2}",
    );
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let r = client()
            .post(gw.url("/p/order"))
            .body("item=1")
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    let reset = statuses.iter().filter(|&&s| s == 502).count();
    assert!(
        reset >= 1,
        "no POST met the resetting backend: {statuses:?}"
    );
    assert_eq!(reset, resetting.others.load(Relaxed), "{statuses:?}");
    assert_eq!(
        good.hits(),
        10 - reset,
        "a reset POST was sent again: {statuses:?}"
    );

    for i in 0..10 {
        let (status, _) = get_json(&gw.url("/p/item")).await;
        assert_eq!(status, 200, "GET {i}\n{}", gw.log());
    }
    assert!(
        resetting.gets.load(Relaxed) >= 1,
        "no GET met the resetting backend"
    );
    let text = metrics_text(&gw).await;
    assert_eq!(
        metric(
            &text,
            "gatehouse_upstream_retries_total{reason=\"reset\",upstream=\"app\"}"
        ),
        resetting.gets.load(Relaxed) as f64
    );
}
