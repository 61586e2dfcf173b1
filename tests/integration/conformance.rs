//! HTTP conformance at both edges: what clients receive from upstreams
//! that frame their responses oddly (a raw upstream answering with fixed
//! bytes), and what upstreams receive from clients that speak HTTP/1.0,
//! send `Expect: 100-continue`, unknown transfer codings, or cookies as
//! HTTP/2 browsers do; Node's own HTTP client reads the results.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::common::{raw, route_file, serve_each, Gateway, Upstream, DEV_JWT};

/// A server that answers the first request of each connection with
/// `response`, then holds the connection open for `hold` (zero: closes at
/// once).
fn raw_upstream(response: &'static [u8], hold: Duration) -> SocketAddr {
    serve_each(move |mut conn| {
        let mut buf = [0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = conn.write_all(response);
        std::thread::sleep(hold);
    })
}

/// Status, lower-cased headers and body of `GET /` through a gateway in
/// front of an upstream that answers `response`.
fn through(response: &'static [u8]) -> crate::common::RawResponse {
    let gw = gateway_before(response);
    raw(
        gw.addr,
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .unwrap()
}

/// A gateway in front of an upstream that answers `response` and closes.
fn gateway_before(response: &'static [u8]) -> Gateway {
    gateway_in_front_of(raw_upstream(response, Duration::ZERO))
}

/// A gateway whose one route sends everything to `up`, without retries or
/// health checks.
fn gateway_in_front_of(up: SocketAddr) -> Gateway {
    let routes = route_file(
        &[up],
        "retries: 0\nhealth_check: {interval_ms: 3600000}",
        &[("all", "/", "")],
    );
    Gateway::start("", &[("r.yaml", &routes)])
}

/// Everything the gateway sends back for `request` until it closes the
/// connection (at most 10 s), as text.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads one response head (up to its blank line) off `s`.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_encoding_identity_is_framed_by_its_content_length() {
    for response in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: Identity\r\n\r\nhello",
    ] {
        let gw = gateway_in_front_of(raw_upstream(response, Duration::from_secs(30)));
        // The upstream never closes: a gateway that read the body until
        // close would answer nothing before the client's 10 s give up.
        let mut s = TcpStream::connect(gw.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let head = read_head(&mut s).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200 "), "{head}");
        assert!(head.contains("content-length: 5\r\n"), "{head}");
        assert!(!head.contains("transfer-encoding"), "{head}");
        let mut body = [0u8; 5];
        s.read_exact(&mut body).unwrap();
        assert_eq!(&body, b"hello");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http10_upstream_is_answered_in_the_gateways_own_version() {
    let gw = gateway_before(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    let text = exchange(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unsolicited_101_is_a_502() {
    for response in [
        &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"[..],
        b"HTTP/1.1 101 Switching Protocols\r\n\r\nraw bytes of another protocol",
    ] {
        let r = through(response);
        assert_eq!(r.status, 502, "{r:?}");
        assert_eq!(r.json()["error"], "bad_gateway", "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http10_clients_get_no_chunked_body_and_no_1xx() {
    let gw = gateway_before(
        b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    for request in [
        &b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
    ] {
        // The gateway closes the connection: the read ends before its 10 s.
        let started = std::time::Instant::now();
        let text = exchange(gw.addr, request);
        assert!(
            started.elapsed() < Duration::from_secs(9),
            "kept open: {text}"
        );
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200 "), "{text}");
        assert!(!head.contains("transfer-encoding"), "{text}");
        assert!(head.contains("\r\nconnection: close"), "{text}");
        assert!(!text.contains("103"), "{text}");
        assert_eq!(body, "hello world", "{text}");
    }
    // HTTP/1.1 clients still get the chunked body on a kept connection.
    let text = exchange(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_codings_the_gateway_does_not_apply_are_a_501() {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("all", "/", "")]);
    let gw = Gateway::start("", &[("r.yaml", &routes)]);
    for te in [
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked, chunked",
        "Transfer-Encoding: x-custom , CHUNKED",
    ] {
        let request = format!(
            "POST /x HTTP/1.1\r\nHost: a\r\n{te}\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n"
        );
        let r = raw(gw.addr, &request).unwrap();
        assert_eq!(r.status, 501, "{te}: {r:?}");
        assert_eq!(r.json()["error"], "unsupported_transfer_coding", "{te}");
        assert_eq!(r.header("connection"), Some("close"), "{te}");
    }
    // One chunked coding, any case, is read and forwarded.
    let r = raw(
        gw.addr,
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["body_bytes"], 5, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expect_100_continue_is_answered_after_admission() {
    let up = Upstream::start("app").await;
    let routes = route_file(
        &[up.addr],
        "",
        &[("private", "/private", "auth: jwt"), ("all", "/", "")],
    );
    let gw = Gateway::start(DEV_JWT, &[("r.yaml", &routes)]);
    // Admitted: 100 Continue before the body is sent, then the answer; the
    // upstream never sees Expect.
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-Continue\r\n\r\n",
    )
    .unwrap();
    let interim = read_head(&mut s);
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").unwrap();
    let (status, body) = crate::common::read_response(&mut s);
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["body_bytes"], 5, "{body}");
    assert!(body["headers"].get("expect").is_none(), "{body}");
    // The connection carries the next request.
    s.write_all(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(crate::common::read_response(&mut s).0, 200);

    // Refused: the final answer comes at once, no 100, and the connection
    // closes (the body the client holds back is never read as a request).
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /private/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("missing_token"), "{rest}");

    // Other expectations are a 417; an HTTP/1.0 client's is ignored.
    let r = raw(
        gw.addr,
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue, x-fast\r\nConnection: close\r\n\r\nhello",
    )
    .unwrap();
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (417, Some("expectation_failed"))
    );
    let text = exchange(
        gw.addr,
        b"POST /x HTTP/1.0\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
    );
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
}

/// Runs `script` with Node.js (the Next.js apps' runtime), `args` after
/// it; its standard output.
fn node(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("node")
        .arg("-e")
        .arg(script)
        .args(args)
        .output()
        .expect("Node.js is needed: apt-get install -y nodejs");
    assert!(
        out.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Fetches `process.argv[1]` with Node's fetch; prints status and body.
const NODE_FETCH: &str = r#"
fetch(process.argv[1]).then(async (r) => console.log(r.status, await r.text()),
                           (e) => console.log("failed", e.cause ? e.cause.code : e.message));
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_fetch_reads_what_the_gateway_repairs() {
    for response in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
        b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    ] {
        let gw = gateway_before(response);
        let got = node(
            NODE_FETCH,
            &[&format!("http://127.0.0.1:{}/", gw.addr.port())],
        );
        assert_eq!(got, "200 hello", "{}", String::from_utf8_lossy(response));
    }
}

/// Sends one HTTP/2 request to `process.argv[1]` with three `cookie`
/// fields, as browsers send cookies over HTTP/2; prints the body.
const NODE_H2_COOKIES: &str = r#"
const http2 = require("http2");
const c = http2.connect(process.argv[1]);
const req = c.request({ ":path": "/x", cookie: ["a=1", "b=2", "session=s3"] });
let body = "";
req.setEncoding("utf8");
req.on("data", (d) => (body += d));
req.on("end", () => { console.log(body); c.close(); });
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_cookie_fields_reach_an_http1_app_as_one_header() {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("all", "/", "")]);
    let gw = Gateway::start("", &[("r.yaml", &routes)]);
    let body = node(
        NODE_H2_COOKIES,
        &[&format!("http://127.0.0.1:{}", gw.addr.port())],
    );
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["headers"]["cookie"],
        serde_json::json!(["a=1; b=2; session=s3"]),
        "{body}"
    );
}
