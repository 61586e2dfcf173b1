//! Keep-alive client connections between requests: the gateway waits for a
//! request's first bytes before it starts serving it, so heads that arrive
//! in pieces or outgrow the first read, bodies sent with the head, idle
//! memory, and shutdown with idle connections open are all checked here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{read_response, route_file, Gateway, Upstream};

/// A keep-alive connection that has been served one request.
fn served_connection(gw: &Gateway) -> TcpStream {
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).0, 200);
    s
}

async fn gateway(extra: &str) -> (Upstream, Gateway) {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("public", "/", "")]);
    let gw = Gateway::start(extra, &[("r.yaml", &routes)]);
    (up, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_after_an_idle_wait_arrive_whole() {
    let (_up, gw) = gateway("").await;
    let mut s = served_connection(&gw);

    // A head in three pieces, the first of two bytes.
    for piece in [
        "GE",
        "T /pieces HTTP/1.1\r\nHo",
        "st: a\r\nX-Piece: 3\r\n\r\n",
    ] {
        std::thread::sleep(Duration::from_millis(150));
        s.write_all(piece.as_bytes()).unwrap();
    }
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"/pieces\"") && body.contains(r#""x-piece":["3"]"#),
        "{body}"
    );

    // A head of 12 KB: three times the first read.
    let big = "b".repeat(12_000);
    std::thread::sleep(Duration::from_millis(100));
    write!(s, "GET /big HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").unwrap();
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 200);
    assert!(body.contains(&big), "the 12 KB header did not arrive whole");

    // A body sent in the same write as its head, then one sent after it.
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b"POST /post HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 200);
    assert!(body.contains("\"body_bytes\":5"), "{body}");
    s.write_all(b"POST /post HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    s.write_all(b"world").unwrap();
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 200);
    assert!(body.contains("\"body_bytes\":5"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_first_request_shorter_than_the_h2_preface_is_answered() {
    // h2c is on by default: Pingora's own loop waited for the 24 bytes of
    // the HTTP/2 preface before it looked at an HTTP/1 request.
    let (_up, gw) = gateway("").await;
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = [0u8; 64];
    let n = s.read(&mut reply).expect("no answer to an 18-byte request");
    assert!(
        reply[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&reply[..n])
    );
}

/// Resident memory of process `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Raises this process's open-file limit (the gateway started after it
/// inherits it) and says how many connections the test can hold.
fn connections_allowed(wanted: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_cur = lim.rlim_max.min(2 * wanted + 512);
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    (lim.rlim_cur.saturating_sub(512) / 2).min(wanted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_keep_alive_connections_hold_no_request_memory() {
    let count = connections_allowed(1500);
    assert!(count >= 300, "open-file limit too low for this test");
    let (_up, gw) = gateway("").await;
    // Warm up: worker threads, allocator pages, the upstream pool.
    let warm: Vec<TcpStream> = (0..50).map(|_| served_connection(&gw)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(gw.child.id());
    let idle: Vec<TcpStream> = (0..count).map(|_| served_connection(&gw)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib(gw.child.id());
    let per_connection = (after.saturating_sub(before)) * 1024 / count;
    // Pingora's own loop holds about 24 KB per idle connection (a request
    // future, a head buffer, the loop); waiting for the first bytes leaves
    // the socket and its small write buffer.
    assert!(
        per_connection <= 10 * 1024,
        "{per_connection} bytes per idle connection ({count} connections, RSS {before} -> {after} KiB)"
    );
    // They are all still usable.
    for mut s in idle.into_iter().chain(warm).step_by(97) {
        s.write_all(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut s).0, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_closes_idle_connections_and_finishes_busy_ones() {
    let (_up, mut gw) = gateway("grace_period_seconds: 30").await;
    let mut idle: Vec<TcpStream> = (0..20).map(|_| served_connection(&gw)).collect();
    let mut busy = served_connection(&gw);
    busy.write_all(b"GET /api/slow?ms=1500 HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    gw.signal(libc::SIGTERM);
    let signalled = Instant::now();
    assert_eq!(
        read_response(&mut busy).0,
        200,
        "the busy request must finish"
    );
    for s in &mut idle {
        let mut byte = [0u8; 1];
        assert!(
            matches!(s.read(&mut byte), Ok(0) | Err(_)),
            "an idle connection got bytes after SIGTERM"
        );
    }
    let deadline = signalled + Duration::from_secs(15);
    while gw.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "idle connections kept the gateway alive"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
