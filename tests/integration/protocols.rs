//! Streaming, WebSocket and keep-alive through the gateway.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{client, route_file, Gateway, Upstream};

async fn gateway() -> (Upstream, Gateway) {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("flow", "/flow", "")]);
    let gw = Gateway::start("", &[("r.yaml", &routes)]);
    (up, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_sent_events_are_not_buffered() {
    let (_up, gw) = gateway().await;
    let start = Instant::now();
    let mut r = client()
        .get(gw.url("/flow/api/stream?events=3&interval_ms=1500"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let first = r.chunk().await.unwrap().unwrap();
    let first_at = start.elapsed();
    assert!(String::from_utf8_lossy(&first).contains("data: {\"n\":0}"));
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    let end_at = start.elapsed();
    assert!(String::from_utf8_lossy(&rest).contains("data: {\"n\":2}"));
    // The stream lasts 3 s on the server; a buffering proxy would hand the
    // first event over only at the end.
    assert!(
        end_at - first_at > Duration::from_secs(2),
        "first event at {first_at:?}, end at {end_at:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_echo_through_the_gateway() {
    let (_up, gw) = gateway().await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/flow/ws", gw.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    for text in ["hello", "hot reload", &"x".repeat(70_000)] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_data().as_ref(), &[1u8, 2, 3]);
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_alive_both_sides_and_upstream_reuse() {
    let (_up, gw) = gateway().await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let mut max_reuse = 0;
    for _ in 0..20 {
        let r = c.get(gw.url("/flow/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        max_reuse = max_reuse.max(body["conn_requests"].as_u64().unwrap());
    }
    assert!(
        max_reuse >= 10,
        "upstream connections not reused: max {max_reuse} requests per connection"
    );
}
