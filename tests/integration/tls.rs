//! TLS termination: certificates chosen by SNI (exact, wildcard, default),
//! renewed certificate files applied without a restart, bad pairs refused,
//! request bodies of many records read whole.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use boring::ssl::{SslConnector, SslMethod, SslVerifyMode};

use crate::common::{eventually, make_pki, route_file, self_signed, Gateway, Killed, Upstream};

/// Subject CN and serial of the certificate the server presents for `sni`.
fn presented(addr: SocketAddr, sni: Option<&str>) -> (String, String) {
    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    let mut config = b.build().configure().unwrap();
    config.set_use_server_name_indication(sni.is_some());
    config.set_verify_hostname(false);
    let tcp = TcpStream::connect(addr).unwrap();
    let tls = config.connect(sni.unwrap_or("ignored"), tcp).unwrap();
    let cert = tls.ssl().peer_certificate().unwrap();
    let cn = cert
        .subject_name()
        .entries_by_nid(boring::nid::Nid::COMMONNAME)
        .next()
        .unwrap()
        .data()
        .as_utf8()
        .unwrap()
        .to_string();
    let serial = cert
        .serial_number()
        .to_bn()
        .unwrap()
        .to_hex_str()
        .unwrap()
        .to_string();
    (cn, serial)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_by_sni_and_renewal_without_restart() {
    let up = Upstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    self_signed(dir.path(), "a", "a.test");
    self_signed(dir.path(), "b", "b.test");
    self_signed(dir.path(), "w", "*.w.test");
    let extra = "tls: {cert: a.crt, key: a.key, certificates: [{cert: b.crt, key: b.key}, {cert: w.crt, key: w.key}]}";
    let gw = Gateway::start_in(
        dir,
        extra,
        &[("r.yaml", &route_file(&[up.addr], "", &[("all", "/", "")]))],
    );
    let addr = gw.addr;
    let check = move |sni: Option<&'static str>| presented(addr, sni);
    for (sni, want) in [
        (Some("a.test"), "a.test"),
        (Some("B.TEST"), "b.test"),
        (Some("api.w.test"), "*.w.test"),
        (Some("unknown.test"), "a.test"),
        (None, "a.test"),
    ] {
        let (cn, _) = tokio::task::spawn_blocking(move || check(sni))
            .await
            .unwrap();
        assert_eq!(cn, want, "SNI {sni:?}");
    }

    // Renew b.test: the watcher sees the new files and the next handshake uses them.
    let (_, old_serial) = tokio::task::spawn_blocking(move || check(Some("b.test")))
        .await
        .unwrap();
    self_signed(gw.dir.path(), "b", "b.test");
    let renewed = eventually(10, async || {
        let (_, serial) = tokio::task::spawn_blocking(move || check(Some("b.test")))
            .await
            .unwrap();
        serial != old_serial
    })
    .await;
    assert!(renewed, "renewed certificate not served:\n{}", gw.log());
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    self_signed(dir.path(), "a", "a.test");
    self_signed(dir.path(), "b", "b.test");
    let conf = "listeners:\n  - addr: 127.0.0.1:1\n    tls: {cert: a.crt, key: b.key}\n";
    let path = crate::common::write_config(dir.path(), conf, &[]);
    let out = Command::new(crate::common::bin())
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("conf.yaml:3:5: `listeners[0].tls`:") && err.contains("does not belong to"),
        "{err}"
    );
}

/// An HTTPS server that demands a client certificate signed by the CA and
/// answers with the client's CN.
const MTLS_SERVER: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        cert = self.connection.getpeercert()
        cn = dict(x[0] for x in cert["subject"])["commonName"]
        body = ("client=" + cn).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("srv.pem", "srv.key")
ctx.load_verify_locations("ca.pem")
ctx.verify_mode = ssl.CERT_REQUIRED
srv = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("ready", flush=True)
srv.serve_forever()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutual_tls_to_the_backends() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let port = crate::common::free_port();
    let mut server = Killed(
        Command::new("python3")
            .current_dir(dir.path())
            .args(["-c", MTLS_SERVER, &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    let pki = dir.path().display().to_string();
    let routes = format!(
        "upstreams:
  mtls:
    backends: [127.0.0.1:{port}]
    tls: true
    sni: localhost
    ca_file: {pki}/ca.pem
    client_cert: {pki}/client.pem
    client_key: {pki}/client.key
    health_check: {{interval_ms: 60000}}
  anonymous:
    backends: [127.0.0.1:{port}]
    tls: true
    sni: localhost
    ca_file: {pki}/ca.pem
    retries: 0
    health_check: {{interval_ms: 60000}}
routes:
  - {{name: mtls, prefix: /mtls, upstream: mtls}}
  - {{name: anonymous, prefix: /anonymous, upstream: anonymous}}
"
    );
    let gw = Gateway::start("", &[("r.yaml", &routes)]);
    let r = crate::common::raw_get(gw.addr, "/mtls/x", &[]);
    let log = gw.log();
    let tail: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "client=gateway-client"),
        "{tail:?}"
    );
    let r = crate::common::raw_get(gw.addr, "/anonymous/x", &[]);
    // The backend refuses the handshake without a client certificate
    // (a reset or a stalled handshake, depending on its TLS stack).
    assert!(matches!(r.status, 502 | 504), "{}", r.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_bodies_of_many_tls_records_arrive_whole() {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("all", "/", "")]);
    let dir = tempfile::tempdir().unwrap();
    // 3 MB: about 190 full TLS records, read through the listener's
    // record-sized read buffer in reads of every size BoringSSL asks for.
    let body: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let file = dir.path().join("body.bin");
    std::fs::write(&file, &body).unwrap();
    let data = format!("@{}", file.display());
    let gw = Gateway::start_tls("", &[("r.yaml", &routes)]);
    let url = format!("https://localhost:{}/upload", gw.addr.port());
    let resolve = gw.curl_resolve();
    for version in ["--http1.1", "--http2"] {
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "20", "--resolve", &resolve, version])
            .args([
                "--data-binary",
                &data,
                "-H",
                "content-type: application/octet-stream",
            ])
            .args(["-w", "\\n%{http_version} %{http_code}", &url])
            .output()
            .expect("curl is needed: apt-get install -y curl");
        let text = String::from_utf8_lossy(&out.stdout);
        let (json, status) = text.rsplit_once('\n').unwrap();
        let want = if version == "--http2" {
            "2 200"
        } else {
            "1.1 200"
        };
        assert_eq!(status, want, "{version}: {text}");
        let echo: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(echo["body_bytes"], 3_000_000, "{version}: {echo}");
        assert_eq!(echo["method"], "POST", "{version}: {echo}");
    }
}
