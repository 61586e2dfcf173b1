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

/// A WebSocket that sends its first frame the moment the 101 arrives, 500
/// times: every one must get its echo. Pingora 0.9.1 may read the 101
/// before it has handled the request's own empty body, then take that end
/// for the end of the tunnel (cloudflare/pingora#946; about one in a
/// hundred connections): `upstream::upgrade_gate` holds the read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websockets_that_talk_at_once_after_the_101_stay_open() {
    use std::io::{Read, Write};
    let (_up, gw) = gateway().await;
    let addr = gw.addr;
    let outcomes = tokio::task::spawn_blocking(move || {
        let mut failed = Vec::new();
        for i in 0..500 {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(
                b"GET /flow/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                  Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            )
            .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            let mut sent = false;
            // A masked text frame "ping" (mask 1 2 3 4).
            let frame = [
                0x81,
                0x84,
                1,
                2,
                3,
                4,
                b'p' ^ 1,
                b'i' ^ 2,
                b'n' ^ 3,
                b'g' ^ 4,
            ];
            let echoed = loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break false,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                if !sent && got.windows(4).any(|w| w == b"\r\n\r\n") {
                    sent = true;
                    s.write_all(&frame).unwrap();
                }
                if got.windows(4).any(|w| w == b"ping") {
                    break true;
                }
            };
            if !echoed {
                failed.push((i, String::from_utf8_lossy(&got).into_owned()));
            }
        }
        failed
    })
    .await
    .unwrap();
    assert!(
        outcomes.is_empty(),
        "{} of 500 closed without an echo: {:?}",
        outcomes.len(),
        outcomes.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_alive_both_sides_and_upstream_reuse() {
    let (_up, gw) = gateway().await;
    let c = gatehouse::http_client::builder()
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
