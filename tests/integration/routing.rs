//! Routing: host and longest prefix on segment boundaries, methods,
//! normalised paths (also what the upstream receives), strip_prefix,
//! header edits, IP rules, 400/404/405/403/413 JSON.

use crate::common::{client, get_json, raw_get, route_file, Gateway, Upstream};

async fn two_apps() -> (Upstream, Upstream, Gateway) {
    let admin = Upstream::start("admin-portal").await;
    let other = Upstream::start("catch-all").await;
    let admin_routes = route_file(
        &[admin.addr],
        "",
        &[
            ("admin", "/admin", ""),
            ("admin-api", "/admin/api", "strip_prefix: true\nmethods: [GET, POST]"),
            (
                "admin-headers",
                "/admin/h",
                "headers:\n  request_set: {X-Env: test}\n  request_remove: [X-Drop]\n  response_set: {X-Served-By: gatehouse}\n  response_remove: [X-Custom]",
            ),
            ("admin-internal", "/admin/internal", "ip_allow: [10.0.0.0/8]"),
            ("admin-blocked", "/admin/blocked", "ip_deny: [127.0.0.0/8]"),
        ],
    );
    let other_routes = "upstreams:\n  other:\n    backends: [ADDR]\nroutes:\n  - name: root\n    prefix: /\n    upstream: other\n  - name: api-host\n    prefix: /admin\n    host: api.example.com\n    upstream: other\n  - name: wild\n    prefix: /\n    host: \"*.apps.test\"\n    upstream: other\n"
        .replace("ADDR", &other.addr.to_string());
    let gw = Gateway::start(
        "max_request_body_bytes: 1000",
        &[("admin.yaml", &admin_routes), ("other.yaml", &other_routes)],
    );
    (admin, other, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn longest_prefix_on_segment_boundaries() {
    let (_a, _o, gw) = two_apps().await;
    let cases = [
        ("/admin", "admin-portal", "/admin"),
        ("/admin/", "admin-portal", "/admin/"),
        ("/admin/users/7?x=1", "admin-portal", "/admin/users/7"),
        ("/administrator", "catch-all", "/administrator"),
        ("/admin/api/orders", "admin-portal", "/orders"),
        ("/admin/api", "admin-portal", "/"),
        ("/elsewhere", "catch-all", "/elsewhere"),
    ];
    for (path, app, seen) in cases {
        let (status, body) = get_json(&gw.url(path)).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body["app"], app, "{path}");
        assert_eq!(body["path"], seen, "{path}");
    }
    let (_, body) = get_json(&gw.url("/admin/api/orders?page=2&q=a%20b")).await;
    assert_eq!(body["target"], "/orders?page=2&q=a%20b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn host_routing_exact_then_wildcard_then_any() {
    let (_a, _o, gw) = two_apps().await;
    for (host, want) in [
        ("api.example.com", "catch-all"),
        ("API.Example.com:6188", "catch-all"),
        ("gw.test", "admin-portal"),
        ("x.apps.test", "catch-all"),
    ] {
        let r = client()
            .get(gw.url("/admin/x"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(body["app"], want, "host {host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paths_are_normalised_before_routing_and_forwarding() {
    let (_a, _o, gw) = two_apps().await;
    for (raw_path, app, seen) in [
        ("//admin/x", "admin-portal", "/admin/x"),
        ("/x/../admin/y", "admin-portal", "/admin/y"),
        ("/%61dmin/z", "admin-portal", "/admin/z"),
        ("/./admin/./a/../b", "admin-portal", "/admin/b"),
        ("/admin/../public", "catch-all", "/public"),
        // Raw UTF-8 and its escapes are one path, sent encoded.
        ("/admin/caf\u{e9}", "admin-portal", "/admin/caf%C3%A9"),
        ("/admin/caf%c3%a9", "admin-portal", "/admin/caf%C3%A9"),
        ("/\u{ff41}dmin/x", "catch-all", "/%EF%BD%81dmin/x"),
    ] {
        let r = raw_get(gw.addr, raw_path, &[]);
        assert_eq!(r.status, 200, "{raw_path}");
        assert_eq!(r.json()["app"], app, "{raw_path}");
        assert_eq!(r.json()["path"], seen, "{raw_path}");
    }
    for bad in ["/admin%2Fx", "/x/%2e%2e/admin", "/a%zz", "/a%00b"] {
        let r = raw_get(gw.addr, bad, &[]);
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json()["error"], "bad_path", "{bad}");
        assert_eq!(r.json()["request_id"].as_str(), r.header("x-request-id"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_are_json() {
    let admin = Upstream::start("only").await;
    let routes = route_file(
        &[admin.addr],
        "",
        &[("only", "/only", "methods: [GET, POST]")],
    );
    let gw = Gateway::start("max_request_body_bytes: 1000", &[("r.yaml", &routes)]);

    let r = raw_get(gw.addr, "/nothing", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "no_route");
    assert!(r.json()["message"].is_string());

    let r = client().delete(gw.url("/only/x")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, POST");

    let r = client()
        .post(gw.url("/only/x"))
        .body(vec![b'x'; 2000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"], "body_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunked_body_over_limit_is_refused() {
    let (_a, _o, gw) = two_apps().await;
    let chunk = "x".repeat(600);
    let req = format!(
        "POST /elsewhere HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let r = crate::common::raw(gw.addr, &req).unwrap();
    assert_eq!(r.status, 413, "{r:?}");
    let small = format!("POST /elsewhere HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n258\r\n{chunk}\r\n0\r\n\r\n");
    let r = crate::common::raw(gw.addr, &small).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_bytes"], 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn route_header_edits_and_ip_rules() {
    let (_a, _o, gw) = two_apps().await;
    let r = client()
        .get(gw.url("/admin/h/x"))
        .header("x-drop", "1")
        .header("x-keep", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-served-by"], "gatehouse");
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["headers"]["x-env"][0], "test");
    assert!(body["headers"].get("x-drop").is_none());
    assert_eq!(body["headers"]["x-keep"][0], "1");

    for path in ["/admin/internal/x", "/admin/blocked"] {
        let r = raw_get(gw.addr, path, &[]);
        assert_eq!(r.status, 403, "{path}");
        assert_eq!(r.json()["error"], "ip_denied");
    }
    // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
    let r = raw_get(gw.addr, "/admin/internal/x", &["X-Forwarded-For: 10.1.2.3"]);
    assert_eq!(r.status, 403);
}
