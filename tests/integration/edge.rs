//! Abuse resistance, each case sent as raw bytes over a socket: request
//! smuggling (CL.TE, TE.CL, TE obfuscations, duplicate Content-Length),
//! size limits, absolute-form, CONNECT and Host abuse, slow clients, and
//! path spellings that must never reach a protected route unauthenticated.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::{raw, route_file, Gateway, Upstream};

/// Sends `bytes` and reads until the server closes or 3 s of silence.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn status(reply: &str) -> u16 {
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn gateway() -> (Upstream, Gateway) {
    let up = Upstream::start("app").await;
    let routes = route_file(
        &[up.addr],
        "",
        &[
            ("public", "/", ""),
            ("admin", "/admin", "ip_allow: [10.9.9.9/32]"),
        ],
    );
    let gw = Gateway::start(
        "max_request_body_bytes: 1000\nmax_uri_bytes: 2048\nclient_body_timeout_ms: 1000\nkeepalive_timeout_seconds: 1",
        &[("r.yaml", &routes)],
    );
    (up, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ambiguous_framing_is_refused_or_normalised() {
    let (_up, gw) = gateway().await;
    // CL.TE: chunked wins, Content-Length is dropped; the trailing `G`
    // never becomes the start of a second request.
    let reply = exchange(
        gw.addr,
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\nG",
    );
    assert_eq!(status(&reply), 200, "{reply}");
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
    assert!(
        reply.contains("\"body_bytes\":0") && !reply.contains("\"content-length\""),
        "{reply}"
    );
    // TE.CL: the chunked body is what the upstream gets, with no Content-Length.
    let reply = exchange(
        gw.addr,
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nConnection: close\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
    );
    assert_eq!(status(&reply), 200, "{reply}");
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1);
    assert!(
        reply.contains("\"body_bytes\":8") && !reply.contains("\"content-length\""),
        "{reply}"
    );

    let refused: &[(&str, &[u8])] = &[
        ("TE xchunked", b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\nabcd"),
        ("TE twice", b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"),
        ("TE space before colon", b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\nabcd"),
        ("TE folded", b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 4\r\n\r\nabcd"),
        ("CL twice, different", b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        ("CL list", b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 5\r\n\r\nabcde"),
        ("CL negative", b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
    ];
    for (what, bytes) in refused {
        let reply = exchange(gw.addr, bytes);
        assert_eq!(status(&reply), 400, "{what}: {reply}");
        assert_eq!(
            reply.matches("HTTP/1.1 ").count(),
            1,
            "{what}: a second response means a smuggled request"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn size_limits() {
    let (_up, gw) = gateway().await;
    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "a".repeat(3000)
    );
    let reply = exchange(gw.addr, long_uri.as_bytes());
    assert_eq!(status(&reply), 414, "{reply}");
    assert!(reply.contains("\"error\":\"uri_too_long\""));
    let huge_header = format!(
        "GET /x HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(70_000)
    );
    assert_eq!(status(&exchange(gw.addr, huge_header.as_bytes())), 431);
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let reply = exchange(
        gw.addr,
        format!("GET /x HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes(),
    );
    assert!(matches!(status(&reply), 400 | 431), "{reply}");
    let body = "x".repeat(2000);
    let reply = exchange(
        gw.addr,
        format!("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n{body}").as_bytes(),
    );
    assert_eq!(status(&reply), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn absolute_form_connect_and_host_abuse() {
    let (_up, gw) = gateway().await;
    let r = raw(
        gw.addr,
        "GET http://a/x?q=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["target"],
        "/x?q=1",
        "the upstream gets origin form"
    );
    let cases: &[(&str, &str, u16)] = &[
        (
            "absolute-form naming another host",
            "GET http://evil.test/x HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
        ),
        (
            "CONNECT",
            "CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n",
            405,
        ),
        (
            "HTTP/1.1 without Host",
            "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            "two Host headers",
            "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            400,
        ),
        (
            "userinfo in Host",
            "GET /x HTTP/1.1\r\nHost: user@a\r\nConnection: close\r\n\r\n",
            400,
        ),
    ];
    for (what, req, want) in cases {
        let reply = exchange(gw.addr, req.as_bytes());
        assert_eq!(status(&reply), *want, "{what}: {reply}");
    }
}

/// How the upstream's own parser may read a path the gateway forwarded:
/// WHATWG URL parsing (Node, browsers) takes `\` for `/`, Java servlet
/// containers drop `;` parameters per segment; then dot-segments resolve.
fn other_readings(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let slashed = path.replace('\\', "/");
    for segment in slashed.split('/') {
        match segment.split(';').next().unwrap_or("") {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn path_spellings_never_reach_the_protected_route() {
    let (_up, gw) = gateway().await;
    // `/admin` only admits 10.9.9.9; every spelling must be refused (403),
    // rejected as ambiguous (400), or routed elsewhere with a path the
    // upstream cannot read as /admin.
    for path in [
        "/admin",
        "/admin/",
        "//admin",
        "/./admin",
        "/x/../admin",
        "/%61dmin",
        "/admin/..;/",
        "/admin;/x",
        "/%2e%2e/admin",
        "/admin%2Fsecret",
        "/x/%2e%2e/admin",
        "/ADMIN",
        "/\u{ff41}dmin",
        "/admin%00",
        "/admin\\x",
        "/x\\..\\admin",
        "/admin;x=1/y",
        "/admin;/y",
        "/x/..;/admin",
        "/x/..;x=1/admin",
        "/adm%69n;jsessionid=1",
    ] {
        let reply = exchange(
            gw.addr,
            format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let code = status(&reply);
        let reached_admin = code == 200 && {
            let body = reply.split("\r\n\r\n").nth(1).unwrap_or("");
            let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            let seen = other_readings(v["path"].as_str().unwrap_or(""));
            seen == "/admin" || seen.starts_with("/admin/")
        };
        assert!(
            !reached_admin,
            "{path} reached the protected route: {reply}"
        );
        assert!(matches!(code, 200 | 400 | 403 | 404), "{path}: {code}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_do_not_starve_others() {
    let (_up, gw) = gateway().await;
    // 200 connections that trickle a header and never finish it.
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(gw.addr).unwrap();
            s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    for _ in 0..20 {
        let r = raw(
            gw.addr,
            "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "normal clients slowed to {:?}",
        started.elapsed()
    );
    for s in &mut slow {
        let _ = s.write_all(b"x");
    }
    // A body that stalls longer than client_body_timeout_ms gets 408.
    let started = Instant::now();
    let reply = exchange(
        gw.addr,
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc",
    );
    assert_eq!(status(&reply), 408, "{reply}");
    assert!(reply.contains("\"error\":\"request_timeout\""), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A kept-alive connection that sends nothing more, or only part of its
/// next request's head, is closed after `keepalive_timeout_seconds`
/// (Pingora alone would keep both forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_and_stalled_keep_alive_connections_are_closed() {
    let (_up, gw) = gateway().await;
    for next in ["", "GET /x HTTP/1.1\r\nHost: a\r\nX-Slow: "] {
        let mut s = TcpStream::connect(gw.addr).unwrap();
        s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 65536];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        s.write_all(next.as_bytes()).unwrap();
        let started = Instant::now();
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break true,
                Ok(_) => continue,
            }
        };
        assert!(closed);
        let idle = started.elapsed();
        assert!(
            idle >= Duration::from_millis(900) && idle < Duration::from_secs(8),
            "closed after {idle:?} with {next:?} pending"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn path_parameters_pass_only_when_allowed_and_never_as_dot_segments() {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("public", "/", "")]);
    let gw = Gateway::start("path_params: allow", &[("r.yaml", &routes)]);
    let get = |path: &str| {
        let reply = exchange(
            gw.addr,
            format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        (status(&reply), v["path"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(
        get("/shop;jsessionid=1/cart"),
        (200, "/shop;jsessionid=1/cart".into())
    );
    assert_eq!(get("/x/..;/admin").0, 400);
    assert_eq!(get("/x\\y"), (200, "/x%5Cy".into()));
}
