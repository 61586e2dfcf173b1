//! Upstreams that fail on purpose, for the resilience tests: an app whose
//! answers can be switched to 503, one that resets every connection after
//! reading a request head, and a separate server process that can be
//! stopped with SIGSTOP.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{free_port, Killed};

/// Every request gets 200.
pub const HEALTHY: u8 = 0;
/// Every request gets 503.
pub const FAILING: u8 = 1;
/// Every other request gets 503.
pub const EVERY_OTHER: u8 = 2;

/// An HTTP/1.1 keep-alive app whose answers follow `mode`, counting the
/// requests it read.
pub struct FlakyApp {
    pub addr: SocketAddr,
    /// [`HEALTHY`], [`FAILING`] or [`EVERY_OTHER`].
    pub mode: Arc<AtomicU8>,
    /// Requests read so far.
    pub hits: Arc<AtomicUsize>,
}

impl FlakyApp {
    /// Starts one in `mode` on a free port.
    pub async fn start(mode: u8) -> FlakyApp {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = FlakyApp {
            addr: l.local_addr().unwrap(),
            mode: Arc::new(AtomicU8::new(mode)),
            hits: Arc::default(),
        };
        let (mode, hits) = (app.mode.clone(), app.hits.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(serve(s, mode.clone(), hits.clone()));
            }
        });
        app
    }

    /// Requests read so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Relaxed)
    }
}

/// Serves requests (head and `Content-Length` body) on one connection.
async fn serve(mut s: TcpStream, mode: Arc<AtomicU8>, hits: Arc<AtomicUsize>) {
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 16384];
    loop {
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let body = content_length(&pending[..end]);
            if pending.len() < end + 4 + body {
                break;
            }
            pending.drain(..end + 4 + body);
            let n = hits.fetch_add(1, Relaxed);
            let fail = match mode.load(Relaxed) {
                FAILING => true,
                EVERY_OTHER => n.is_multiple_of(2),
                _ => false,
            };
            let answer: &[u8] = if fail {
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 7\r\n\r\nfailing"
            } else {
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
            };
            if s.write_all(answer).await.is_err() {
                return;
            }
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

/// The `Content-Length` of a request head (0 without one).
fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// An app that reads each request head and then resets the connection
/// (RST, no answer), counting the heads by method.
pub struct ResettingApp {
    pub addr: SocketAddr,
    /// Heads of `GET` requests read.
    pub gets: Arc<AtomicUsize>,
    /// Heads of other requests read.
    pub others: Arc<AtomicUsize>,
}

impl ResettingApp {
    /// Starts one on a free port.
    pub async fn start() -> ResettingApp {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = ResettingApp {
            addr: l.local_addr().unwrap(),
            gets: Arc::default(),
            others: Arc::default(),
        };
        let (gets, others) = (app.gets.clone(), app.others.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (gets, others) = (gets.clone(), others.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let counter = if head.starts_with(b"GET ") {
                        &gets
                    } else {
                        &others
                    };
                    counter.fetch_add(1, Relaxed);
                    // Linger 0: closing sends RST, mid-request.
                    let _ = socket2::SockRef::from(&s).set_linger(Some(std::time::Duration::ZERO));
                });
            }
        });
        app
    }
}

/// A separate HTTP server process (Python's `http.server`, threaded),
/// serving an empty directory on a free loopback port until dropped.
pub struct ServerProcess {
    pub addr: SocketAddr,
    process: Killed,
    root: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts one and waits until it accepts connections.
    pub fn start() -> ServerProcess {
        let root = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is needed");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "http.server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        ServerProcess {
            addr,
            process: Killed(child),
            root,
        }
    }

    /// Serves `content` at `/{name}` from now on.
    pub fn put(&self, name: &str, content: &str) {
        std::fs::write(self.root.path().join(name), content).unwrap();
    }

    /// Sends `sig` (SIGSTOP, SIGCONT) to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of a child this test started.
        unsafe { libc::kill(self.process.0.id() as i32, sig) };
    }
}
