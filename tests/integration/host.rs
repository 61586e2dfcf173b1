//! Host spellings: a route scoped by host cannot be bypassed by spelling
//! its host differently (trailing dot, case, port), invalid hosts are 400
//! `bad_host`, and the upstream receives the canonical host, over HTTP/1.1
//! and h2c alike.

use std::process::Command;

use crate::common::{raw, route_file, Gateway, Upstream};

/// `{host: admin.example.com, auth: jwt}`, `{host: *.internal.example.com,
/// auth: jwt}` and a public catch-all, on one upstream.
async fn gateway() -> (Upstream, Gateway) {
    let up = Upstream::start("app").await;
    let routes = route_file(
        &[up.addr],
        "",
        &[
            ("admin", "/", "host: admin.example.com\nauth: jwt"),
            (
                "internal",
                "/",
                "host: \"*.internal.example.com\"\nauth: jwt",
            ),
            ("public", "/", ""),
        ],
    );
    let jwt = crate::common::DEV_JWT;
    let gw = Gateway::start(jwt, &[("r.yaml", &routes)]);
    (up, gw)
}

/// Status and JSON body of `GET /x` with the raw `Host` line `host`.
fn get_with_host(gw: &Gateway, host: &str) -> (u16, serde_json::Value) {
    let r = raw(
        gw.addr,
        &format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .unwrap();
    (r.status, r.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_spelling_of_a_protected_host_reaches_it_without_a_token() {
    let (_up, gw) = gateway().await;
    for host in [
        "admin.example.com",
        "admin.example.com.",
        "Admin.Example.Com.",
        "ADMIN.EXAMPLE.COM",
        "admin.example.com:8080",
        "admin.example.com.:8080",
        "x.internal.example.com",
        "x.internal.example.com.",
        "X.Internal.Example.Com.:443",
    ] {
        let (status, body) = get_with_host(&gw, host);
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("missing_token")),
            "Host: {host}"
        );
    }
    for host in [
        "admin.example.com:abc",
        "admin.example.com:",
        "admin.example.com:99999",
        "a.com, b.com",
        "evil/admin.example.com",
        "x\\",
        "x%2e",
        "admin.example.com..",
        "[::1",
    ] {
        let (status, body) = get_with_host(&gw, host);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("bad_host")),
            "Host: {host}"
        );
    }
    // Two Host headers, and a target naming another host than Host.
    let r = raw(
        gw.addr,
        "GET /x HTTP/1.1\r\nHost: public.example.com\r\nHost: admin.example.com\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 400, "{r:?}");
    let r = raw(
        gw.addr,
        "GET http://admin.example.com./x HTTP/1.1\r\nHost: public.example.com\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 400, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_upstream_gets_the_canonical_host() {
    let (_up, gw) = gateway().await;
    let (status, body) = get_with_host(&gw, "Public.Example.Com.:8080");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["headers"]["host"][0], "public.example.com:8080",
        "{body}"
    );
    assert_eq!(
        body["headers"]["x-forwarded-host"][0], "public.example.com:8080",
        "{body}"
    );
    let (_, body) = get_with_host(&gw, "public.example.com");
    assert_eq!(body["headers"]["host"][0], "public.example.com", "{body}");
}

/// `curl --http2-prior-knowledge` to `authority` (the `:authority` it
/// sends), connected to the gateway: status and body.
fn h2c(gw: &Gateway, authority: &str) -> (String, String) {
    let port = gw.addr.port();
    let out = Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "--connect-to",
            &format!("{authority}:{port}:127.0.0.1:{port}"),
            "-w",
            "\n%{http_code}",
            &format!("http://{authority}:{port}/x"),
        ])
        .output()
        .expect("curl is needed: apt-get install -y curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn h2c_authority_spellings_are_canonical_too() {
    let (_up, gw) = gateway().await;
    for authority in [
        "admin.example.com",
        "admin.example.com.",
        "Admin.Example.Com.",
    ] {
        let (code, body) = h2c(&gw, authority);
        assert_eq!(code, "401", ":authority {authority}: {body}");
    }
    let (code, body) = h2c(&gw, "public.example.com.");
    assert_eq!(code, "200", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let port = gw.addr.port();
    assert_eq!(
        v["headers"]["host"][0],
        format!("public.example.com:{port}"),
        "{v}"
    );
}
