//! Test harness: the real `gatehouse` binary on free loopback ports, real
//! sample-app upstreams, a plain HTTP client and a raw-socket client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse::demo::sample_app::{self, SampleApp};
use tokio::task::JoinSet;

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback server that runs `handle` on a thread of its own for each
/// connection it accepts, for as long as the test process lives.
pub fn serve_each<F>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let handle = std::sync::Arc::new(handle);
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let handle = std::sync::Arc::clone(&handle);
            std::thread::spawn(move || handle(conn));
        }
    });
    addr
}

/// A sample app serving on a loopback port until dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    tasks: Option<JoinSet<()>>,
}

impl Upstream {
    /// Starts an app named `name` on a free port.
    pub async fn start(name: &str) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, name)
    }

    /// Starts an app on a given address (to bring a killed backend back).
    pub async fn start_at(addr: SocketAddr, name: &str) -> Upstream {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Self::serve(listener, name)
    }

    fn serve(listener: tokio::net::TcpListener, name: &str) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let tasks = sample_app::spawn(
            listener,
            SampleApp {
                name: name.into(),
                jwks: None,
                auth: None,
            },
        );
        Upstream {
            addr,
            tasks: Some(tasks),
        }
    }

    /// Stops it like a killed process: listener and connections closed.
    pub async fn kill(&mut self) {
        if let Some(mut t) = self.tasks.take() {
            t.shutdown().await;
        }
    }
}

/// A running gateway process with its own config directory.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
}

/// A `jwt:` block with one HS256 issuer, `dev`, for routes that only need
/// authentication to be on.
pub const DEV_JWT: &str = "jwt:\n  issuers:\n    - issuer: dev\n      secret: a-test-secret-that-is-long-enough-for-hs256\n      algorithms: [HS256]";

/// Minimal conf.yaml for tests; `extra` is appended verbatim (a grace
/// period in `extra` replaces the default one second; a first line
/// `tls: {...}` turns the listener into a TLS one).
pub fn conf_yaml(dir: &Path, port: u16, admin: u16, extra: &str) -> String {
    let grace = if extra.contains("grace_period_seconds") {
        ""
    } else {
        "grace_period_seconds: 1\n"
    };
    let (tls, extra) = match extra.strip_prefix("tls: ") {
        Some(rest) => {
            let (tls, rest) = rest.split_once('\n').unwrap_or((rest, ""));
            (format!("    tls: {tls}\n"), rest)
        }
        None => (String::new(), extra),
    };
    format!(
        "threads: 2\n\
         pid_file: {d}/gw.pid\n\
         upgrade_sock: {d}/upgrade.sock\n\
         {grace}\
         graceful_shutdown_timeout_seconds: 5\n\
         listeners:\n  - addr: 127.0.0.1:{port}\n{tls}\
         admin: 127.0.0.1:{admin}\n\
         routes_dir: routes\n{extra}\n",
        d = dir.display()
    )
}

/// Writes a config directory: conf.yaml plus `routes/NAME` files.
pub fn write_config(dir: &Path, conf: &str, routes: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir.join("routes")).unwrap();
    let conf_path = dir.join("conf.yaml");
    std::fs::write(&conf_path, conf).unwrap();
    for (name, text) in routes {
        std::fs::write(dir.join("routes").join(name), text).unwrap();
    }
    conf_path
}

/// A route file with one upstream `app` over `backends` and one route per
/// `(name, prefix, extra)`; `pool_extra` is added under the upstream.
pub fn route_file(
    backends: &[SocketAddr],
    pool_extra: &str,
    routes: &[(&str, &str, &str)],
) -> String {
    let list: Vec<String> = backends.iter().map(|b| b.to_string()).collect();
    let mut s = format!(
        "upstreams:\n  app:\n    backends: [{}]\n{}\nroutes:\n",
        list.join(", "),
        indent(pool_extra, 4)
    );
    for (name, prefix, extra) in routes {
        s.push_str(&format!(
            "  - name: {name}\n    prefix: {prefix}\n    upstream: app\n{}\n",
            indent(extra, 4)
        ));
    }
    s
}

/// A gateway with one pool of `backends` (its keys `pool_extra`) behind
/// the one route `/p`.
pub fn pool_gateway(backends: &[SocketAddr], pool_extra: &str) -> Gateway {
    let routes = route_file(backends, pool_extra, &[("p", "/p", "")]);
    Gateway::start("", &[("r.yaml", &routes)])
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Path of the built binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gatehouse")
}

impl Gateway {
    /// Starts a gateway with the test conf (plus `extra`) and `routes`.
    pub fn start(extra: &str, routes: &[(&str, &str)]) -> Gateway {
        Self::start_in(tempfile::tempdir().unwrap(), extra, routes)
    }

    /// Like [`Gateway::start`], in a directory the caller has prepared
    /// (certificates, for example).
    pub fn start_in(dir: tempfile::TempDir, extra: &str, routes: &[(&str, &str)]) -> Gateway {
        let (port, admin) = (free_port(), free_port());
        let conf = write_config(
            dir.path(),
            &conf_yaml(dir.path(), port, admin, extra),
            routes,
        );
        let child = spawn_gateway(&conf, &[], dir.path());
        let gw = Gateway {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            dir,
        };
        gw.wait_ready();
        gw
    }

    /// Like [`Gateway::start`], its listener serving TLS with a self-signed
    /// certificate for `localhost`.
    pub fn start_tls(extra: &str, routes: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path(), "c", "localhost");
        let extra = format!("tls: {{cert: c.crt, key: c.key}}\n{extra}");
        Self::start_in(dir, &extra, routes)
    }

    /// curl's `--resolve` value sending `localhost` at its port here.
    pub fn curl_resolve(&self) -> String {
        format!("localhost:{}:127.0.0.1", self.addr.port())
    }

    /// Waits until `/health/ready` answers 200 (at most 20 s).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = raw(
                self.admin,
                "GET /health/ready HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            ) {
                if r.status == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gateway not ready; log:\n{}", self.log());
    }

    /// The gateway's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `http://ADMIN{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Sends a signal to the gateway process.
    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `gatehouse run -c conf` with stderr to `dir/gateway.log`.
pub fn spawn_gateway(conf: &Path, args: &[&str], dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("gateway.log"))
        .unwrap();
    Command::new(bin())
        .arg("run")
        .arg("-c")
        .arg(conf)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// An HTTP client that never uses a proxy.
pub fn client() -> reqwest::Client {
    gatehouse::http_client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// GET `url` and parse the JSON body.
pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let r = client().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends `request` verbatim (it should say `Connection: close`) and reads
/// the whole response. For paths an HTTP library would clean up first.
pub fn raw(addr: SocketAddr, request: &str) -> std::io::Result<RawResponse> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> std::io::Result<RawResponse> {
    let text = String::from_utf8_lossy(buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `GET path` over a raw socket with `Connection: close` and extra header lines.
pub fn raw_get(addr: SocketAddr, path: &str, headers: &[&str]) -> RawResponse {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    raw(addr, &req).unwrap()
}

/// Reads one response with a `content-length` body off `s`: its status
/// and its body. It reads no byte past that response, so pipelined
/// responses can be read one after another.
pub fn read_response(s: &mut impl Read) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("a response in time");
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("the whole body in time");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Polls `cond` every 50 ms for up to `secs` seconds.
pub async fn eventually(secs: u64, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A self-signed certificate for `name` at `dir/stem.{crt,key}`.
pub fn self_signed(dir: &Path, stem: &str, name: &str) {
    let ok = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            &format!("subjectAltName=DNS:{name}"),
        ])
        .arg("-keyout")
        .arg(dir.join(format!("{stem}.key")))
        .arg("-out")
        .arg(dir.join(format!("{stem}.crt")))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl command (Debian package openssl) makes test certificates");
    assert!(ok.success());
}

/// Runs one openssl CLI step in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let ok = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "openssl {args:?}");
}

/// A CA, a server certificate for localhost and a client certificate, all signed by the CA.
pub fn make_pki(dir: &Path) {
    let days = ["-days", "1"];
    openssl(
        dir,
        &[
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ][..],
            &days,
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    for (stem, cn) in [("srv", "localhost"), ("client", "gateway-client")] {
        let (key, csr, pem) = (
            format!("{stem}.key"),
            format!("{stem}.csr"),
            format!("{stem}.pem"),
        );
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        openssl(
            dir,
            &[
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-extfile",
                    "san.ext",
                ][..],
                &days,
            ]
            .concat(),
        );
    }
}

/// A child process killed (and reaped) when dropped, also when the test
/// fails, so a panicking test never leaves its peer running.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Ends the whole test run, naming `what`, when it is still alive after
/// `limit`: a peer that never answers must make CI fail at once, not hang
/// until its run is killed. Disarmed when dropped.
pub struct Watchdog(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Watchdog {
    /// Arms a watchdog for `what`.
    pub fn arm(what: String, limit: Duration) -> Watchdog {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = done.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + limit;
            while std::time::Instant::now() < deadline {
                if seen.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            eprintln!("{what} still running after {limit:?}: a peer hangs; ending the test run");
            std::process::exit(101);
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The admin service's `/metrics` text.
pub async fn metrics_text(gw: &Gateway) -> String {
    metrics_at(gw.admin).await
}

/// The value of one exact `series` (name and labels, as rendered) in a
/// `/metrics` text; 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The `/metrics` text of the admin service at `admin`.
pub async fn metrics_at(admin: SocketAddr) -> String {
    client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// An HTTP/1.1 keep-alive server that answers every request `200 ok`,
/// listening with a backlog of `backlog` and accepting one connection per
/// millisecond at most, like a busy single-process app: a burst of
/// connects overflows its accept queue and the kernel drops their SYNs.
pub fn small_backlog_upstream(backlog: i32) -> SocketAddr {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns; it is
    // handed to a TcpListener, which closes it.
    let listener = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len),
            0
        );
        assert_eq!(libc::listen(fd, backlog), 0);
        StdListener::from_raw_fd(fd)
    };
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if let Ok(conn) = conn {
                std::thread::spawn(move || serve_ok(conn));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    addr
}

/// Answers each request head on `conn` with `200 ok` until the peer closes.
fn serve_ok(mut conn: TcpStream) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            if conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

/// What one `wrk` run reported.
pub struct WrkReport {
    /// wrk's whole output.
    pub text: String,
    /// Requests completed.
    pub requests: u64,
}

impl WrkReport {
    /// Asserts that no request failed: no non-2xx/3xx answer, no socket error.
    pub fn assert_nothing_lost(&self, context: &str) {
        assert!(self.requests > 0, "wrk sent nothing:\n{}", self.text);
        assert!(
            !self.text.contains("Non-2xx") && !self.text.contains("Socket errors"),
            "requests lost {context}:\n{}",
            self.text
        );
    }
}

/// Runs `wrk -t1 -c16` (wrk's own 2 s request timeout) against `url` for
/// `secs` seconds, on a blocking thread.
pub fn wrk(url: String, secs: u64) -> tokio::task::JoinHandle<WrkReport> {
    assert!(
        Command::new("wrk").arg("--version").output().is_ok(),
        "wrk is needed: apt-get install -y wrk"
    );
    tokio::task::spawn_blocking(move || {
        let out = Command::new("wrk")
            .args(["-t", "1", "-c", "16", "-d", &format!("{secs}s"), &url])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let requests = text
            .lines()
            .find_map(|l| l.trim().split_once(" requests in "))
            .and_then(|(n, _)| n.trim().parse().ok())
            .unwrap_or(0);
        WrkReport { text, requests }
    })
}

/// `npm ci` of the node package in `dir` (relative to the repository),
/// once per test run, when its node_modules does not hold the version of
/// `package` its lockfile names.
pub fn npm_installed(dir: &str, package: &str) {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if done.iter().any(|d| d == dir) {
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let version = |file: &str| -> serde_json::Value {
        let text = std::fs::read(path.join(file)).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        v["packages"][format!("node_modules/{package}")]["version"].clone()
    };
    let wanted = version("package-lock.json");
    if wanted.is_null() || version("node_modules/.package-lock.json") != wanted {
        let child = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&path)
            .spawn()
            .expect("npm is needed: apt-get install -y nodejs npm");
        let mut child = Killed(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "npm ci in {dir}: not done in 10 minutes"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(status.success(), "npm ci in {dir} failed");
    }
    done.push(dir.to_string());
}
