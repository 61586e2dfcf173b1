//! ACME against the real pebble (Debian's `pebble` + `pebble-challtestsrv`):
//! a certificate ordered over HTTP-01 and TLS-ALPN-01, served by SNI without
//! a restart, stored with private keys 0600 and loaded again by the next
//! process instead of ordering; a fleet sharing the TokenginX store orders
//! once and answers each other's challenges; a failed renewal keeps the
//! current certificate and retries with backoff.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::acme_support::{served_certificate, Pebble};
use crate::auth_support::RedisServer;
use crate::common::{free_port, metric, raw, self_signed, spawn_gateway, write_config};

const NAME: &str = "app.example.com";

/// One gateway process with a plain and a TLS listener.
struct Instance {
    child: Child,
    tls: SocketAddr,
    admin: SocketAddr,
    dir: std::path::PathBuf,
}

impl Instance {
    /// Starts a gateway in `dir` (which keeps a default certificate) with
    /// its plain listener on `plain` and `acme` as given.
    fn start(dir: &Path, plain: u16, acme: &str, extra: &str) -> Instance {
        Instance::start_on(dir, plain, free_port(), acme, extra)
    }

    /// [`Instance::start`] with the TLS listener on `tls`.
    fn start_on(dir: &Path, plain: u16, tls: u16, acme: &str, extra: &str) -> Instance {
        std::fs::create_dir_all(dir).unwrap();
        if !dir.join("default.crt").exists() {
            self_signed(dir, "default", "default.test");
        }
        let admin = free_port();
        let conf = format!(
            "pid_file: {d}/gw.pid\nupgrade_sock: {d}/upgrade.sock\ngrace_period_seconds: 1\n\
             graceful_shutdown_timeout_seconds: 2\n\
             listeners:\n  - addr: 127.0.0.1:{plain}\n  - addr: 127.0.0.1:{tls}\n    tls: {{cert: default.crt, key: default.key}}\n\
             admin: 127.0.0.1:{admin}\nroutes_dir: routes\nallow_empty_routes: true\n{extra}\nacme:\n{acme}\n",
            d = dir.display()
        );
        let conf = write_config(dir, &conf, &[]);
        let child = spawn_gateway(&conf, &[], dir);
        let instance = Instance {
            child,
            tls: SocketAddr::from(([127, 0, 0, 1], tls)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            dir: dir.to_path_buf(),
        };
        instance.wait_ready();
        instance
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let probe = "GET /health/ready HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
            if raw(self.admin, probe).is_ok_and(|r| r.status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gateway not ready; log:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    fn metrics(&self) -> String {
        let r = raw(
            self.admin,
            "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        r.body
    }

    /// The serial of the pebble-issued certificate served for `name`,
    /// once there is one (at most `limit`).
    fn wait_issued(&self, name: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(cert) = served_certificate(self.tls, name) {
                if issued_by_pebble(&cert) {
                    return serial(&cert);
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("no ACME certificate for {name}; log:\n{}", self.log());
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn issued_by_pebble(cert: &boring::x509::X509) -> bool {
    cert.issuer_name()
        .entries()
        .any(|e| e.data().as_utf8().is_ok_and(|s| s.contains("Pebble")))
}

fn serial(cert: &boring::x509::X509) -> String {
    cert.serial_number()
        .to_bn()
        .and_then(|b| b.to_hex_str().map(|s| s.to_string()))
        .unwrap()
}

fn acme_section(pebble: &Pebble, domains: &str, storage: &str) -> String {
    format!(
        "  directory_url: {}\n  ca_file: {}\n  contact: mailto:ops@example.com\n  domains: [{domains}]\n  storage: {storage}\n  retry_seconds: 1\n",
        pebble.directory_url,
        pebble.ca_file.display()
    )
}

fn counter(instance: &Instance, series: &str) -> f64 {
    metric(&instance.metrics(), series)
}

#[test]
fn a_certificate_is_ordered_served_by_sni_stored_privately_and_loaded_by_the_next_process() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = free_port();
    let pebble = Pebble::start(plain, free_port(), tmp.path());
    let dir = tmp.path().join("gw");
    let acme = acme_section(&pebble, NAME, "acme");
    let first = Instance::start(&dir, plain, &acme, "");
    let serial_issued = first.wait_issued(NAME, Duration::from_secs(60));
    assert_eq!(
        counter(&first, "gatehouse_acme_orders_total{result=\"issued\"}"),
        1.0
    );
    let expiry = counter(
        &first,
        &format!("gatehouse_tls_certificate_expiry_timestamp_seconds{{name=\"{NAME}\"}}"),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(expiry > now + 86_400.0, "expiry {expiry}");
    assert!(
        counter(
            &first,
            "gatehouse_tls_certificate_expiry_timestamp_seconds{name=\"default.test\"}"
        ) > now,
        "file certificates have their expiry too"
    );
    // Other names keep the listener's own certificate.
    let other = served_certificate(first.tls, "other.example.com").unwrap();
    assert!(!issued_by_pebble(&other));
    // Stored privately, never logged.
    let key = dir.join("acme/certs").join(format!("{NAME}.key"));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key_pem = std::fs::read_to_string(&key).unwrap();
    let body = key_pem.lines().nth(1).unwrap();
    assert!(!first.log().contains(body), "the private key is in the log");
    assert!(!first.log().contains("PRIVATE KEY"));
    drop(first);

    // The next process loads what is stored instead of ordering again.
    let second = Instance::start(&dir, free_port(), &acme, "");
    assert_eq!(
        second.wait_issued(NAME, Duration::from_secs(10)),
        serial_issued
    );
    assert_eq!(
        counter(&second, "gatehouse_acme_orders_total{result=\"issued\"}"),
        0.0
    );
}

#[test]
fn tls_alpn_01_is_answered_in_the_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = free_port();
    let dir = tmp.path().join("gw");
    // The TLS listener's port is chosen by the instance: give pebble a
    // port first, then make the instance's TLS listener take it.
    let tls_port = free_port();
    let pebble = Pebble::start(free_port(), tls_port, tmp.path());
    let acme = format!(
        "{}  challenge: tls-alpn-01\n",
        acme_section(&pebble, NAME, "acme")
    );
    let instance = Instance::start_on(&dir, plain, tls_port, &acme, "");
    instance.wait_issued(NAME, Duration::from_secs(60));
    assert_eq!(
        counter(&instance, "gatehouse_acme_orders_total{result=\"issued\"}"),
        1.0
    );
}

#[test]
fn instances_sharing_the_store_order_once_and_answer_each_others_challenges() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let store = format!("tokenginx: {{url: \"{}\"}}", redis.url());
    let plain = free_port();
    let pebble = Pebble::start(plain, free_port(), tmp.path());
    // `responder` holds the port pebble validates on, but orders another
    // name: the challenges of app.example.com reach it while another
    // instance ordered, and it answers them from the shared store.
    let responder = Instance::start(
        &tmp.path().join("responder"),
        plain,
        &acme_section(&pebble, "responder.example.com", "redis"),
        &store,
    );
    let acme = acme_section(&pebble, NAME, "redis");
    let (b_dir, c_dir) = (tmp.path().join("b"), tmp.path().join("c"));
    let (b, c) = std::thread::scope(|s| {
        let b = s.spawn(|| Instance::start(&b_dir, free_port(), &acme, &store));
        let c = s.spawn(|| Instance::start(&c_dir, free_port(), &acme, &store));
        (b.join().unwrap(), c.join().unwrap())
    });
    let serial_b = b.wait_issued(NAME, Duration::from_secs(60));
    let serial_c = c.wait_issued(NAME, Duration::from_secs(20));
    assert_eq!(serial_b, serial_c, "both serve the one certificate");
    let issued = |i: &Instance| counter(i, "gatehouse_acme_orders_total{result=\"issued\"}");
    assert_eq!(issued(&b) + issued(&c), 1.0, "one instance ordered");
    responder.wait_issued("responder.example.com", Duration::from_secs(60));

    let later = Instance::start(&tmp.path().join("d"), free_port(), &acme, &store);
    assert_eq!(later.wait_issued(NAME, Duration::from_secs(10)), serial_b);
    assert_eq!(
        issued(&later),
        0.0,
        "a later instance loads the stored certificate"
    );
}

#[test]
fn a_failed_renewal_keeps_the_current_certificate_and_retries_then_a_reload_renews() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gw");
    // A certificate of one day: inside the 30-day renewal window.
    let certs = dir.join("acme/certs");
    std::fs::create_dir_all(&certs).unwrap();
    self_signed(&certs, NAME, NAME);
    let old = served_serial_of_file(&certs.join(format!("{NAME}.crt")));
    let plain = free_port();
    let pebble = Pebble::start(plain, free_port(), tmp.path());
    let dead = format!(
        "  directory_url: https://127.0.0.1:{}/dir\n  ca_file: {}\n  domains: [{NAME}]\n  storage: acme\n  retry_seconds: 1\n",
        free_port(),
        pebble.ca_file.display()
    );
    let instance = Instance::start(&dir, plain, &dead, "");
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter(&instance, "gatehouse_acme_orders_total{result=\"failed\"}") < 3.0 {
        assert!(
            Instant::now() < deadline,
            "no retries; log:\n{}",
            instance.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let served = served_certificate(instance.tls, NAME).unwrap();
    assert_eq!(serial(&served), old, "the current certificate stays served");
    let log = instance.log();
    assert!(log.contains("failure 2 in a row"), "{log}");

    // Point it at pebble: the reload renews without a restart.
    let conf = std::fs::read_to_string(dir.join("conf.yaml")).unwrap();
    let conf = conf.replace(&dead, &acme_section(&pebble, NAME, "acme"));
    std::fs::write(dir.join("conf.yaml"), conf).unwrap();
    let renewed = instance.wait_issued(NAME, Duration::from_secs(60));
    assert_ne!(renewed, old);
}

fn served_serial_of_file(path: &Path) -> String {
    let pem = std::fs::read(path).unwrap();
    serial(&boring::x509::X509::from_pem(&pem).unwrap())
}
