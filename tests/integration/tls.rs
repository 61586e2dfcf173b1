//! TLS termination: certificates chosen by SNI (exact, wildcard, default),
//! renewed certificate files applied without a restart, bad pairs refused.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};

use crate::common::{eventually, route_file, Gateway, Upstream};

/// A self-signed certificate for `name` at `dir/stem.{crt,key}`.
fn make_cert(dir: &Path, stem: &str, name: &str) {
    let ok = Command::new("openssl")
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
        .stderr(Stdio::null())
        .status()
        .expect("the openssl command (Debian package openssl) makes test certificates");
    assert!(ok.success());
}

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
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .unwrap()
        .data()
        .to_string()
        .unwrap();
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
    make_cert(dir.path(), "a", "a.test");
    make_cert(dir.path(), "b", "b.test");
    make_cert(dir.path(), "w", "*.w.test");
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
    make_cert(gw.dir.path(), "b", "b.test");
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
    make_cert(dir.path(), "a", "a.test");
    make_cert(dir.path(), "b", "b.test");
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
