//! The real ACME test server for the ACME tests: Debian's `pebble`, with
//! `pebble-challtestsrv` as its DNS (every name is 127.0.0.1), serving its
//! directory over HTTPS with a certificate of a CA made for the test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use boring::ssl::{SslConnector, SslMethod, SslVerifyMode};
use boring::x509::X509;

use crate::common::{free_port, make_pki};

/// A running pebble and its DNS server, stopped on drop.
pub struct Pebble {
    /// The ACME directory URL.
    pub directory_url: String,
    /// The CA of pebble's own HTTPS certificate.
    pub ca_file: PathBuf,
    dns: Child,
    server: Child,
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on 127.0.0.1:`http_port` and
    /// TLS-ALPN-01 on 127.0.0.1:`tls_port`, its files in `dir`.
    pub fn start(http_port: u16, tls_port: u16, dir: &Path) -> Pebble {
        let dir = dir.join("pebble");
        std::fs::create_dir_all(&dir).unwrap();
        // ca.pem signs srv.pem, a certificate for localhost and 127.0.0.1.
        make_pki(&dir);
        let (dns_port, mgmt, api, api_mgmt) = (free_port(), free_port(), free_port(), free_port());
        let dns = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{mgmt}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv is needed: apt-get install -y pebble");
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{api}"),
            "managementListenAddress": format!("127.0.0.1:{api_mgmt}"),
            "certificate": dir.join("srv.pem"),
            "privateKey": dir.join("srv.key"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
        let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
        let server = Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble is needed: apt-get install -y pebble");
        let pebble = Pebble {
            directory_url: format!("https://localhost:{api}/dir"),
            ca_file: dir.join("ca.pem"),
            dns,
            server,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], api));
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "pebble did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        pebble
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [&mut self.server, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The leaf certificate `addr` presents to a client sending `sni`.
pub fn served_certificate(addr: SocketAddr, sni: &str) -> Option<X509> {
    let mut connector = SslConnector::builder(SslMethod::tls()).ok()?;
    connector.set_verify(SslVerifyMode::NONE);
    let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let stream = connector.build().connect(sni, tcp).ok()?;
    stream.ssl().peer_certificate()
}
