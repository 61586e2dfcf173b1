//! Slowloris: a client that drips its request head is answered 408 and
//! closed once `client_header_timeout_ms` has passed since its first byte,
//! on plain and TLS listeners and for an HTTP/2 preface, and a thousand of
//! them at once do not slow anybody else down.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use boring::ssl::{SslConnector, SslMethod, SslVerifyMode};

use crate::common::{metrics_text, route_file, self_signed, Gateway, Upstream};

/// The deadline the tests configure.
const DEADLINE: Duration = Duration::from_secs(2);

async fn gateway(tls: bool) -> (Upstream, Gateway) {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("all", "/", "")]);
    let dir = tempfile::tempdir().unwrap();
    let mut extra = format!("client_header_timeout_ms: {}", DEADLINE.as_millis());
    if tls {
        self_signed(dir.path(), "gw", "gw.test");
        extra = format!("tls: {{cert: gw.crt, key: gw.key}}\n{extra}");
    }
    let gw = Gateway::start_in(dir, &extra, &[("r.yaml", &routes)]);
    (up, gw)
}

/// Writes `head` one byte every 500 ms until the gateway answers or
/// closes; returns what it answered and how long after the first byte it
/// did. `conn` must have a read timeout of 500 ms: the wait for an answer
/// is the pause between bytes.
fn drip(conn: &mut (impl Read + Write), head: &[u8]) -> (String, Duration) {
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    for byte in head {
        if conn.write_all(&[*byte]).and_then(|_| conn.flush()).is_err() {
            break;
        }
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    let took = started.elapsed();
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    (String::from_utf8_lossy(&answer).into_owned(), took)
}

/// A head far longer than the deadline allows at two bytes a second.
const SLOW_HEAD: &[u8] = b"GET /slow HTTP/1.1\r\nHost: a\r\nX-One: 1\r\nX-Two: 2\r\n\r\n";

fn assert_cut_off(answer: &str, took: Duration) {
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("\"error\":\"request_timeout\""), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(
        took >= DEADLINE && took <= DEADLINE + Duration::from_secs(1),
        "closed {took:?} after the first byte (deadline {DEADLINE:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dripped_head_is_cut_off_at_the_deadline_on_plain_listeners() {
    let (_up, gw) = gateway(false).await;
    let addr = gw.addr;
    let (answer, took) = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        drip(&mut s, SLOW_HEAD)
    })
    .await
    .unwrap();
    assert_cut_off(&answer, took);
    // A keep-alive connection's second request has the same deadline.
    let (answer, took) = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        assert_eq!(crate::common::read_response(&mut s).0, 200);
        drip(&mut s, SLOW_HEAD)
    })
    .await
    .unwrap();
    assert_cut_off(&answer, took);
    let text = metrics_text(&gw).await;
    assert!(
        text.contains("gatehouse_client_timeouts_total{phase=\"header\"} 2"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dripped_head_is_cut_off_at_the_deadline_on_tls_listeners() {
    let (_up, gw) = gateway(true).await;
    let addr = gw.addr;
    let (answer, took) = tokio::task::spawn_blocking(move || {
        let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
        b.set_verify(SslVerifyMode::NONE);
        b.set_alpn_protos(b"\x08http/1.1").unwrap();
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut tls = b.build().connect("gw.test", s).unwrap();
        drip(&mut tls, SLOW_HEAD)
    })
    .await
    .unwrap();
    assert_cut_off(&answer, took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dripped_h2_preface_is_cut_off_at_the_deadline() {
    let (_up, gw) = gateway(false).await;
    let addr = gw.addr;
    let took = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        drip(&mut s, &preface).1
    })
    .await
    .unwrap();
    assert!(
        took >= DEADLINE && took <= DEADLINE + Duration::from_secs(1),
        "closed {took:?} after the first byte"
    );
}

/// The 99th percentiles of `n` requests to each of `gateways`, sent in
/// turn, so that whatever else loads the machine weighs on all alike.
async fn probe_p99s<const N: usize>(gateways: [&Gateway; N], n: usize) -> [Duration; N] {
    let c = crate::common::client();
    let mut took = [(); N].map(|_| Vec::with_capacity(n));
    for _ in 0..n {
        for (gw, took) in gateways.iter().zip(took.iter_mut()) {
            let started = Instant::now();
            let r = c.get(gw.url("/probe")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
            took.push(started.elapsed());
        }
    }
    took.map(|mut t| {
        t.sort();
        t[n * 99 / 100]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_drippers_do_not_slow_normal_requests() {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("all", "/", "")]);
    // The baseline: an identical gateway nobody drips on, probed in turn
    // with the dripped one.
    let gw = Gateway::start("", &[("r.yaml", &routes)]);
    let clean = Gateway::start("", &[("r.yaml", &routes)]);
    probe_p99s([&gw, &clean], 50).await;
    // One thread drips a byte on each of 1,000 connections every 500 ms,
    // spread over those 500 ms as independent clients would be.
    let addr = gw.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let drippers = std::thread::spawn(move || {
        let mut conns: Vec<TcpStream> = (0..1000)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let mut i = 0;
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            let byte = SLOW_HEAD[i % SLOW_HEAD.len()];
            conns.retain_mut(|c| {
                std::thread::sleep(Duration::from_micros(500));
                c.write_all(&[byte]).is_ok()
            });
            i += 1;
        }
        conns.len()
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let [loaded, baseline] = probe_p99s([&gw, &clean], 300).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let open = drippers.join().unwrap();
    assert_eq!(open, 1000, "dripping connections were closed early");
    // Loopback latencies are sub-millisecond: 2 ms is the noise floor.
    let allowed = 2 * baseline.max(Duration::from_millis(2));
    assert!(
        loaded <= allowed,
        "p99 {loaded:?} with 1,000 drippers, {baseline:?} without"
    );
}
