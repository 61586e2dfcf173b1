//! Upstream pools: balancing, active health checks, passive ejection,
//! retries, and the 502/503/504 answers.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::common::{
    client, eventually, free_port, get_json, pool_gateway, serve_each, Gateway, Upstream,
};

async fn apps(n: usize) -> Vec<Upstream> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(Upstream::start(&format!("app{i}")).await);
    }
    v
}

async fn tally(gw: &Gateway, n: usize, header: Option<(&str, &str)>) -> HashMap<String, usize> {
    let c = client();
    let mut seen = HashMap::new();
    for _ in 0..n {
        let mut req = c.get(gw.url("/p/x"));
        if let Some((k, v)) = header {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        *seen
            .entry(body["app"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_robin_and_weighted_spread() {
    let ups = apps(3).await;
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let gw = pool_gateway(&addrs, "balance: round_robin");
    let seen = tally(&gw, 30, None).await;
    assert_eq!(
        seen.values().copied().collect::<Vec<_>>(),
        vec![10, 10, 10],
        "{seen:?}"
    );
    drop(gw);

    let weighted = format!(
        "upstreams:\n  app:\n    balance: weighted\n    backends:\n      - {{addr: {}, weight: 3}}\n      - {{addr: {}, weight: 1}}\nroutes:\n  - name: p\n    prefix: /p\n    upstream: app\n",
        addrs[0], addrs[1]
    );
    let gw = Gateway::start("", &[("p.yaml", &weighted)]);
    let seen = tally(&gw, 40, None).await;
    assert_eq!((seen["app0"], seen["app1"]), (30, 10), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hash_balancing_is_sticky_per_key() {
    let ups = apps(3).await;
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let gw = pool_gateway(&addrs, "balance: hash\nhash_key: header:X-Tenant");
    let mut owners = Vec::new();
    for tenant in ["a", "b", "c", "d", "e", "f"] {
        let seen = tally(&gw, 5, Some(("x-tenant", tenant))).await;
        assert_eq!(seen.len(), 1, "tenant {tenant} spread over {seen:?}");
        owners.push(seen.into_keys().next().unwrap());
    }
    owners.sort();
    owners.dedup();
    assert!(
        owners.len() >= 2,
        "six tenants all on one backend: {owners:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn least_conn_avoids_the_busy_backend() {
    let ups = apps(2).await;
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let gw = pool_gateway(&addrs, "balance: least_conn");
    // Hold three slow requests open; they spread over both backends.
    let slow: Vec<_> = (0..3)
        .map(|_| tokio::spawn(client().get(gw.url("/p/api/slow?ms=1500")).send()))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Backends now hold 2 and 1 requests: quick requests go to the one with 1.
    let quick = tally(&gw, 6, None).await;
    let mut busy = HashMap::new();
    for s in slow {
        let r = s.await.unwrap().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        *busy
            .entry(body["app"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    let less_busy = busy.iter().min_by_key(|(_, n)| **n).unwrap().0;
    assert_eq!(
        quick.len(),
        1,
        "quick requests {quick:?}, slow ones {busy:?}"
    );
    assert!(
        quick.contains_key(less_busy),
        "quick {quick:?} busy {busy:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_backend_is_ejected_and_no_request_fails() {
    let mut ups = apps(2).await;
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let gw = pool_gateway(
        &addrs,
        "health_check: {path: /api/health, interval_ms: 200, timeout_ms: 200}\nretries: 1",
    );
    tally(&gw, 4, None).await;
    ups[1].kill().await;
    // Every request succeeds: connect failures are retried on the live backend.
    let seen = tally(&gw, 40, None).await;
    assert_eq!(seen.get("app0"), Some(&40), "{seen:?}");
    let (_, status) = get_json(&gw.admin_url("/status")).await;
    let backends = &status["upstreams"][0]["backends"];
    assert_eq!(backends[1]["healthy"], false, "{status}");

    // The backend comes back; the health check notices and traffic returns.
    ups[1] = Upstream::start_at(addrs[1], "app1").await;
    let back = eventually(10, async || {
        let (_, s) = get_json(&gw.admin_url("/status")).await;
        s["upstreams"][0]["backends"][1]["healthy"] == true
    })
    .await;
    assert!(back, "backend never marked healthy again");
    let seen = tally(&gw, 10, None).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
}

/// Accepts connections and closes them at once, without a response.
fn closing_server() -> SocketAddr {
    serve_each(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_timeout_and_no_healthy_backend() {
    let up = Upstream::start("slow").await;
    let closing = closing_server();
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let routes = format!(
        "upstreams:\n  reset:\n    backends: [{closing}]\n    retries: 0\n  dead:\n    backends: [{dead}]\n    health_check: {{interval_ms: 200}}\n  slow:\n    backends: [{}]\n    read_timeout_ms: 300\nroutes:\n  - name: reset\n    prefix: /reset\n    upstream: reset\n  - name: dead\n    prefix: /dead\n    upstream: dead\n  - name: slow\n    prefix: /slow\n    upstream: slow\n",
        up.addr
    );
    let gw = Gateway::start("", &[("r.yaml", &routes)]);
    let (status, body) = get_json(&gw.url("/reset/x")).await;
    assert_eq!((status, body["error"].as_str()), (502, Some("bad_gateway")));

    let unhealthy = eventually(10, async || {
        let (_, s) = get_json(&gw.admin_url("/health/ready")).await;
        s["components"]["upstreams"]["dead"]["healthy"] == 0
    })
    .await;
    assert!(unhealthy);
    let r = client().get(gw.url("/dead/x")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"], "no_healthy_backend");

    let (status, body) = get_json(&gw.url("/slow/api/slow?ms=2000")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (504, Some("gateway_timeout"))
    );
}

/// Answers the first request of each connection with keep-alive, then
/// closes the connection when the second request arrives, unanswered: what
/// a backend does when its keep-alive timeout fires as a request comes in.
fn one_request_per_connection_server() -> SocketAddr {
    use std::io::{Read, Write};
    serve_each(|mut conn| {
        let mut buf = [0u8; 4096];
        if conn.read(&mut buf).unwrap_or(0) == 0 {
            return;
        }
        let _ = conn
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok");
        let _ = conn.read(&mut buf);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reused_connection_closed_by_the_backend_is_retried_on_it() {
    let addr = one_request_per_connection_server();
    let gw = pool_gateway(&[addr], "retries: 0\nhealth_check: {interval_ms: 60000}");
    for i in 0..5 {
        let r = client().get(gw.url("/p/x")).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (200, "ok"),
            "request {i}\n{}",
            gw.log()
        );
    }
}
