//! What clients receive from upstreams that frame their responses oddly:
//! each case is a raw upstream answering with fixed bytes, read by a raw
//! client through the gateway.

use std::io::{Read, Write};
use std::net::SocketAddr;

use crate::common::{raw, route_file, Gateway};

/// A server that answers every request on every connection with
/// `response`, then closes.
fn raw_upstream(response: &'static [u8]) -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(response);
            });
        }
    });
    addr
}

/// Status, lower-cased headers and body of `GET /` through a gateway in
/// front of an upstream that answers `response`.
fn through(response: &'static [u8]) -> crate::common::RawResponse {
    let up = raw_upstream(response);
    let routes = route_file(
        &[up],
        "retries: 0\nhealth_check: {interval_ms: 3600000}",
        &[("all", "/", "")],
    );
    let gw = Gateway::start("", &[("r.yaml", &routes)]);
    raw(
        gw.addr,
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .unwrap()
}

fn count(r: &crate::common::RawResponse, name: &str) -> usize {
    r.headers.iter().filter(|(k, _)| k == name).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_identical_content_lengths_become_one() {
    for response in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
    ] {
        let r = through(response);
        assert_eq!((r.status, r.body.as_str()), (200, "hello"), "{r:?}");
        assert_eq!(count(&r, "content-length"), 1, "{r:?}");
        assert_eq!(r.header("content-length"), Some("5"), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflicting_content_lengths_are_a_502() {
    let r = through(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!");
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.json()["error"], "bad_gateway", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_204_carries_no_framing_headers() {
    let r = through(b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(count(&r, "transfer-encoding"), 0, "{r:?}");
    assert_eq!(count(&r, "content-length"), 0, "{r:?}");
}
