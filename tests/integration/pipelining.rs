//! HTTP/1.1 pipelining (RFC 9112 §9.3.2): requests written back to back in
//! one send are each answered, in order, on plain and TLS listeners; a
//! pipelined request behind a refused one gets its own answer; nothing
//! ever leaves the client waiting.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use boring::ssl::{SslConnector, SslMethod, SslVerifyMode};

use crate::common::{read_response, route_file, self_signed, Gateway, Upstream};

/// A client connection, plain or TLS.
trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

fn plain(gw: &Gateway) -> Box<dyn Conn> {
    let s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    Box::new(s)
}

fn tls(gw: &Gateway) -> Box<dyn Conn> {
    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    // HTTP/1.1 only: pipelining is an HTTP/1 matter.
    b.set_alpn_protos(b"\x08http/1.1").unwrap();
    let s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    Box::new(b.build().connect("gw.test", s).unwrap())
}

/// A gateway with a public echo route, `/private` behind a JWT and
/// `/limited` allowing one request; `tls` makes its listener TLS.
async fn gateway(tls: bool) -> (Upstream, Gateway) {
    let up = Upstream::start("app").await;
    let routes = route_file(
        &[up.addr],
        "",
        &[
            ("public", "/", ""),
            ("private", "/private", "auth: jwt"),
            (
                "limited",
                "/limited",
                "rate_limit: {key: route, rate: 1/h, burst: 1}",
            ),
        ],
    );
    let jwt = crate::common::DEV_JWT;
    let dir = tempfile::tempdir().unwrap();
    let extra = if tls {
        self_signed(dir.path(), "gw", "gw.test");
        format!("tls: {{cert: gw.crt, key: gw.key}}\n{jwt}")
    } else {
        jwt.to_string()
    };
    let gw = Gateway::start_in(dir, &extra, &[("r.yaml", &routes)]);
    (up, gw)
}

/// The path the echo upstream saw.
fn echoed_path(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["path"].as_str().unwrap_or("").to_string()
}

async fn pipelined_requests_are_answered_in_order(tls_listener: bool) {
    let (_up, gw) = gateway(tls_listener).await;
    let connect = if tls_listener { tls } else { plain };

    // Three GETs in one write.
    let mut c = connect(&gw);
    c.write_all(
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /two HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /three HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .unwrap();
    for want in ["/one", "/two", "/three"] {
        let (status, body) = read_response(&mut c);
        assert_eq!((status, echoed_path(&body)), (200, want.to_string()));
    }

    // A request with a body, then a GET, in one write; then one more later.
    let mut c = connect(&gw);
    c.write_all(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
          GET /after HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .unwrap();
    let (status, body) = read_response(&mut c);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, v["path"].as_str(), v["body_bytes"].as_u64()),
        (200, Some("/upload"), Some(5))
    );
    let (status, body) = read_response(&mut c);
    assert_eq!((status, echoed_path(&body)), (200, "/after".to_string()));
    c.write_all(b"GET /later HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let (status, body) = read_response(&mut c);
    assert_eq!((status, echoed_path(&body)), (200, "/later".to_string()));

    // Behind refusals: a 401 and a 429 (the route allows one request).
    let mut c = connect(&gw);
    c.write_all(
        b"GET /private/x HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /limited/1 HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /limited/2 HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /last HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .unwrap();
    let answers: Vec<(u16, String)> = (0..4).map(|_| read_response(&mut c)).collect();
    let got: Vec<(u16, String)> = answers
        .iter()
        .map(|(status, body)| (*status, echoed_path(body)))
        .collect();
    let want = [(401, ""), (200, "/limited/1"), (429, ""), (200, "/last")];
    let want: Vec<(u16, String)> = want.iter().map(|(s, p)| (*s, p.to_string())).collect();
    assert_eq!(got, want, "{answers:?}\n{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_requests_on_a_plain_listener() {
    pipelined_requests_are_answered_in_order(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_requests_on_a_tls_listener() {
    pipelined_requests_are_answered_in_order(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pipelined_request_behind_a_malformed_one_is_closed_not_left_waiting() {
    let (_up, gw) = gateway(false).await;
    let mut c = plain(&gw);
    c.write_all(
        b"GET /bad HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx\
          GET /next HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .unwrap();
    let mut all = Vec::new();
    // Either answered or closed: a read that times out is the failure.
    let read = c.read_to_end(&mut all);
    assert!(read.is_ok(), "the client was left waiting: {read:?}");
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
}
