//! Forwarding headers, request ids, trace context, hop-by-hop headers and
//! response hygiene.

use crate::common::{raw_get, route_file, Gateway, Upstream};

async fn gateway(extra: &str) -> (Upstream, Gateway) {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("all", "/", "")]);
    let gw = Gateway::start(extra, &[("r.yaml", &routes)]);
    (up, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn untrusted_peer_gets_its_own_forwarding_headers() {
    let (_up, gw) = gateway("").await;
    let r = raw_get(
        gw.addr,
        "/x",
        &[
            "X-Forwarded-For: 6.6.6.6",
            "X-Forwarded-Proto: https",
            "X-Forwarded-Host: evil.test",
        ],
    );
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    let r = raw_get(
        gw.addr,
        "/x",
        &[
            "X_Forwarded_For: 6.6.6.6",
            "X_Request_Id: evil",
            "x_forwarded_proto: https",
        ],
    );
    let h = &r.json()["headers"];
    for spoofed in ["x_forwarded_for", "x_request_id", "x_forwarded_proto"] {
        assert!(
            h.get(spoofed).is_none(),
            "{spoofed} reached the upstream: {h}"
        );
    }
    assert_eq!(h["x-forwarded-proto"], serde_json::json!(["http"]));
    assert_eq!(h["x-forwarded-host"], serde_json::json!(["gw.test"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_claims_from_untrusted_peers_never_reach_the_upstream() {
    let (_up, gw) = gateway("").await;
    let claims = [
        "Forwarded: for=1.2.3.4;host=evil.com",
        "X-Real-IP: 1.2.3.4",
        "True-Client-IP: 1.2.3.4",
        "X-Client-IP: 1.2.3.4",
        "X-Forwarded-Port: 443",
        "X-Forwarded-Prefix: /admin",
        "X-Original-URL: /admin",
        "X-Rewrite-URL: /admin",
        "X_Real_IP: 1.2.3.4",
        "x_original_url: /admin",
        "X_Forwarded_Prefix: /admin",
        "TRUE_CLIENT_IP: 1.2.3.4",
    ];
    let r = raw_get(gw.addr, "/x", &claims);
    let h = &r.json()["headers"];
    for name in [
        "x-real-ip",
        "true-client-ip",
        "x-client-ip",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-original-url",
        "x-rewrite-url",
        "x_real_ip",
        "x_original_url",
        "x_forwarded_prefix",
        "true_client_ip",
    ] {
        assert!(h.get(name).is_none(), "{name} reached the upstream: {h}");
    }
    // Forwarded is the gateway's own, matching X-Forwarded-*.
    assert_eq!(
        h["forwarded"],
        serde_json::json!(["for=127.0.0.1;host=\"gw.test\";proto=http"]),
        "{h}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trusted_proxys_forwarded_chain_is_extended_and_ports_are_read() {
    let (_up, gw) = gateway("trusted_proxies: [127.0.0.1/32]").await;
    let r = raw_get(
        gw.addr,
        "/x",
        &[
            "Forwarded: for=203.0.113.5",
            "X-Forwarded-For: 203.0.113.5:4711",
            "X-Real-IP: 203.0.113.5",
        ],
    );
    let h = &r.json()["headers"];
    assert_eq!(
        h["forwarded"],
        serde_json::json!(["for=203.0.113.5, for=127.0.0.1;host=\"gw.test\";proto=http"]),
        "{h}"
    );
    assert_eq!(h["x-real-ip"], serde_json::json!(["203.0.113.5"]), "{h}");
    // Off: not set, an untrusted peer's still removed.
    let (_up, gw) = gateway("forwarded_header: false").await;
    let r = raw_get(gw.addr, "/x", &["Forwarded: for=1.2.3.4"]);
    assert!(
        r.json()["headers"].get("forwarded").is_none(),
        "{:?}",
        r.json()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trusted_peer_chain_is_extended() {
    let (_up, gw) = gateway("trusted_proxies: [127.0.0.1/32]").await;
    let r = raw_get(
        gw.addr,
        "/x",
        &[
            "X-Forwarded-For: 203.0.113.7, 10.0.0.1",
            "X-Forwarded-Proto: https",
        ],
    );
    let h = &r.json()["headers"];
    assert_eq!(
        h["x-forwarded-for"],
        serde_json::json!(["203.0.113.7, 10.0.0.1, 127.0.0.1"])
    );
    assert_eq!(h["x-forwarded-proto"], serde_json::json!(["https"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_id_kept_when_sane_else_generated() {
    let (_up, gw) = gateway("").await;
    let r = raw_get(gw.addr, "/x", &["X-Request-Id: client-id-42"]);
    assert_eq!(r.header("x-request-id"), Some("client-id-42"));
    assert_eq!(r.json()["headers"]["x-request-id"][0], "client-id-42");

    let r = raw_get(gw.addr, "/x", &["X-Request-Id: bad id <script>"]);
    let id = r.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(r.json()["headers"]["x-request-id"][0], id.as_str());
    let r2 = raw_get(gw.addr, "/x", &[]);
    assert_ne!(r2.header("x-request-id").unwrap(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traceparent_continued_or_started() {
    let (_up, gw) = gateway("").await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = raw_get(
        gw.addr,
        "/x",
        &[&format!("traceparent: {incoming}"), "tracestate: vendor=1"],
    );
    let tp = r.json()["headers"]["traceparent"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert!(
        !tp.contains("00f067aa0ba902b7"),
        "gateway span must be the parent: {tp}"
    );
    assert_eq!(r.json()["headers"]["tracestate"][0], "vendor=1");

    let r = raw_get(gw.addr, "/x", &[]);
    let tp = r.json()["headers"]["traceparent"][0]
        .as_str()
        .unwrap()
        .to_string();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(
        (parts.len(), parts[1].len(), parts[2].len()),
        (4, 32, 16),
        "{tp}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hop_by_hop_headers_are_not_forwarded() {
    let (_up, gw) = gateway("").await;
    let r = raw_get(
        gw.addr,
        "/x",
        &[
            "Keep-Alive: timeout=5",
            "X-Private: 1",
            "Proxy-Authorization: Basic eA==",
            "TE: gzip",
        ],
    );
    let h = &r.json()["headers"];
    for gone in ["keep-alive", "proxy-authorization", "te"] {
        assert!(h.get(gone).is_none(), "{gone} forwarded: {h}");
    }
    // Headers a client lists in Connection are hop-by-hop too.
    let req = "GET /x HTTP/1.1\r\nHost: gw\r\nConnection: close, X-Private\r\nX-Private: 1\r\n\r\n";
    let r = crate::common::raw(gw.addr, req).unwrap();
    assert!(r.json()["headers"].get("x-private").is_none(), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn responses_get_security_headers_and_lose_server_banners() {
    let (_up, gw) = gateway("").await;
    let r = raw_get(gw.addr, "/x", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("server"), None);
    assert_eq!(r.header("x-powered-by"), None);
    // The app's `Keep-Alive: timeout=5` is about its connection to the gateway.
    assert_eq!(r.header("keep-alive"), None);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(
        r.header("referrer-policy"),
        Some("strict-origin-when-cross-origin")
    );
    assert_eq!(
        r.header("strict-transport-security"),
        None,
        "HSTS only on TLS"
    );
    drop(gw);

    let (_up2, gw) = gateway("security_headers: false").await;
    let r = raw_get(gw.addr, "/x", &[]);
    assert_eq!(r.header("x-frame-options"), None);
    assert_eq!(r.header("x-powered-by"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_listener_adds_hsts_and_forwards_https() {
    let up = Upstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    crate::common::self_signed(dir.path(), "server", "localhost");
    let routes = route_file(&[up.addr], "", &[("all", "/", "")]);
    let gw = Gateway::start_in(
        dir,
        "tls: {cert: server.crt, key: server.key}",
        &[("r.yaml", &routes)],
    );

    let addr = gw.addr;
    let response = tokio::task::spawn_blocking(move || {
        let mut b = boring::ssl::SslConnector::builder(boring::ssl::SslMethod::tls()).unwrap();
        b.set_verify(boring::ssl::SslVerifyMode::NONE);
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        let mut tls = b.build().connect("localhost", tcp).unwrap();
        use std::io::{Read, Write};
        tls.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut buf = Vec::new();
        let _ = tls.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let lower = response.to_ascii_lowercase();
    assert!(
        lower.contains("strict-transport-security: max-age=31536000"),
        "{response}"
    );
    assert!(
        response.contains(r#""x-forwarded-proto":["https"]"#),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forwarded_for_entry_that_cannot_be_read_never_makes_the_proxy_the_client() {
    let up = Upstream::start("app").await;
    let routes = route_file(
        &[up.addr],
        "",
        &[
            ("deny", "/deny", "ip_deny: [203.0.113.0/24]"),
            (
                "allow",
                "/allow",
                "ip_allow: [127.0.0.0/8, 198.51.100.0/24]",
            ),
            ("open", "/", ""),
        ],
    );
    let gw = Gateway::start(
        "trusted_proxies: [127.0.0.1/32]\naccess_log: {path: access.log}",
        &[("r.yaml", &routes)],
    );
    let status = |path: &str, xff: &str| {
        raw_get(gw.addr, path, &[&format!("X-Forwarded-For: {xff}")]).status
    };
    // Ports are read, so the denied network stays denied in every form.
    for xff in [
        "203.0.113.5",
        "203.0.113.5:4711",
        "203.0.113.5, 127.0.0.1:80",
    ] {
        assert_eq!(status("/deny/x", xff), 403, "{xff}");
    }
    assert_eq!(status("/allow/x", "198.51.100.7:4711"), 200);
    // An unreadable hop next to the trusted proxy: the client is unknown,
    // refused wherever an IP rule applies; the proxy (127.0.0.1, allowed
    // on /allow) never stands in for it.
    for xff in [
        "unknown",
        "203.0.113.5, _hidden",
        "203.0.113.5, 10.0.0.1:99999",
        "[::1",
    ] {
        assert_eq!(status("/deny/x", xff), 403, "{xff}");
        assert_eq!(status("/allow/x", xff), 403, "{xff}");
        assert_eq!(status("/open/x", xff), 200, "{xff}");
    }
    let log_path = gw.dir.path().join("access.log");
    let logged = crate::common::eventually(5, async || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"route\":\"open\""))
            .count()
            >= 4
    })
    .await;
    assert!(logged, "no access log lines for the open route");
    let text = std::fs::read_to_string(&log_path).unwrap();
    let clients: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["route"] == "open")
        .map(|l| l["client_ip"].clone())
        .collect();
    assert_eq!(
        clients,
        [
            serde_json::Value::Null,
            "203.0.113.5".into(),
            "203.0.113.5".into(),
            serde_json::Value::Null
        ]
    );
}
