//! DNS service discovery against a real DNS server: Debian's `dnsmasq` on
//! a loopback port, answering from a hosts directory the tests rewrite.
//! Addresses that appear join the pool, addresses that go stop receiving
//! traffic, and a DNS server that stops answering changes nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{client, free_port, metric, metrics_text, Gateway, Killed, Upstream};
use crate::oauth_support::JsonBody;

/// `dnsmasq` serving the names of one hosts file until dropped.
struct Dns {
    port: u16,
    hosts: PathBuf,
    process: Killed,
    _dir: tempfile::TempDir,
}

impl Dns {
    /// Starts dnsmasq on a free loopback port with `hosts` as its only
    /// records (TTL 1 s); it rereads the file when it changes.
    fn start(hosts: &str) -> Dns {
        let dir = tempfile::tempdir().unwrap();
        let hosts_dir = dir.path().join("hosts.d");
        std::fs::create_dir(&hosts_dir).unwrap();
        let file = hosts_dir.join("apps");
        std::fs::write(&file, hosts).unwrap();
        let port = free_port();
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--user=root",
                "--local-ttl=1",
                "--cache-size=0",
                &format!("--port={port}"),
                &format!("--hostsdir={}", hosts_dir.display()),
                &format!("--pid-file={}", dir.path().join("pid").display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq is needed (apt-get install dnsmasq)");
        let dns = Dns {
            port,
            hosts: file,
            process: Killed(child),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dns.answers() {
            assert!(Instant::now() < deadline, "dnsmasq did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        dns
    }

    /// Whether it answers a query on its UDP port (any answer will do).
    fn answers(&self) -> bool {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // A query for `x.` type A, id 0x1234.
        let query = [
            0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'x', 0, 0, 1, 0, 1,
        ];
        s.send_to(&query, ("127.0.0.1", self.port)).unwrap();
        s.recv(&mut [0u8; 512]).is_ok()
    }

    /// Replaces its records.
    fn set(&self, hosts: &str) {
        let tmp = self.hosts.with_extension("tmp");
        std::fs::write(&tmp, hosts).unwrap();
        std::fs::rename(&tmp, &self.hosts).unwrap();
    }

    /// Sends `sig` to the dnsmasq process this test started.
    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of a child this test started.
        unsafe { libc::kill(self.process.0.id() as i32, sig) };
    }
}

/// A gateway resolving `app.test` through `dns` every `interval_ms`, for
/// the backends `{dns: app.test, port}` of the one route `/p`.
fn gateway(dns: &Dns, port: u16, interval_ms: u64) -> Gateway {
    let conf = format!(
        "dns: {{nameservers: ['127.0.0.1:{}'], timeout_ms: 300}}",
        dns.port
    );
    let routes = format!(
        "upstreams:\n  app:\n    backends: [{{dns: app.test, port: {port}}}]\n    resolve_interval_ms: {interval_ms}\n    health_check: {{path: /health, interval_ms: 100}}\nroutes:\n  - {{name: p, prefix: /p, upstream: app}}\n"
    );
    Gateway::start(&conf, &[("r.yaml", &routes)])
}

/// Sends GETs one after another for `time`; every one must succeed.
/// Returns how many each app answered.
async fn serve_for(gw: &Gateway, time: Duration) -> HashMap<String, usize> {
    let mut by_app = HashMap::new();
    let end = Instant::now() + time;
    while Instant::now() < end {
        let r = client().get(gw.url("/p/x")).send().await.unwrap();
        assert_eq!(r.status(), 200, "a request failed\n{}", gw.log());
        let body = r.json_value().await;
        *by_app
            .entry(body["app"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    by_app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn addresses_that_appear_join_and_addresses_that_go_are_drained() {
    let port = free_port();
    let one = SocketAddr::from(([127, 0, 0, 1], port));
    let two = SocketAddr::from(([127, 0, 0, 2], port));
    let _a = Upstream::start_at(one, "one").await;
    let _b = Upstream::start_at(two, "two").await;
    let dns = Dns::start("127.0.0.1 app.test\n");
    let gw = gateway(&dns, port, 300);

    let before = serve_for(&gw, Duration::from_millis(500)).await;
    assert_eq!(before.keys().collect::<Vec<_>>(), ["one"], "{before:?}");

    // Two intervals (and a health check) later, the new address serves.
    dns.set("127.0.0.1 app.test\n127.0.0.2 app.test\n");
    serve_for(&gw, Duration::from_millis(800)).await;
    let both = serve_for(&gw, Duration::from_millis(600)).await;
    assert!(
        both.get("one") > Some(&0) && both.get("two") > Some(&0),
        "{both:?}\n{}",
        gw.log()
    );

    // A removed address stops receiving requests, and none fails meanwhile.
    dns.set("127.0.0.2 app.test\n");
    serve_for(&gw, Duration::from_millis(800)).await;
    let after = serve_for(&gw, Duration::from_millis(600)).await;
    assert_eq!(after.keys().collect::<Vec<_>>(), ["two"], "{after:?}");

    let text = metrics_text(&gw).await;
    assert_eq!(
        metric(
            &text,
            &format!("gatehouse_upstream_backend_healthy{{backend=\"{one}\",upstream=\"app\"}}")
        ),
        0.0,
        "the removed backend's series is gone"
    );
    assert!(!text.contains(&format!("backend=\"{one}\"")), "{text}");
    assert!(
        metric(
            &text,
            "gatehouse_dns_resolutions_total{result=\"ok\",upstream=\"app\"}"
        ) >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dns_server_that_stops_answering_keeps_the_last_good_set() {
    let port = free_port();
    let one = SocketAddr::from(([127, 0, 0, 1], port));
    let _a = Upstream::start_at(one, "one").await;
    let dns = Dns::start("127.0.0.1 app.test\n");
    let gw = gateway(&dns, port, 200);
    serve_for(&gw, Duration::from_millis(300)).await;

    dns.signal(libc::SIGSTOP);
    let served = serve_for(&gw, Duration::from_millis(1500)).await;
    dns.signal(libc::SIGCONT);
    assert_eq!(served.keys().collect::<Vec<_>>(), ["one"]);
    let text = metrics_text(&gw).await;
    assert!(
        metric(
            &text,
            "gatehouse_dns_resolutions_total{result=\"error\",upstream=\"app\"}"
        ) >= 1.0,
        "{text}"
    );
    let log = gw.log();
    assert!(
        log.contains("keeps its last"),
        "the failure is reported:\n{log}"
    );
}
