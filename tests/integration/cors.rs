//! CORS per route and path rewrites, at the HTTP level (the browser's
//! side of CORS is in `browser.rs`).

use crate::common::{client, route_file, Gateway, Upstream, DEV_JWT};
use crate::oauth_support::JsonBody;

/// Routes: `/api` with CORS for `https://app.example.com` and any
/// `https://*.partner.test` (credentials, one allowed header, one exposed),
/// behind a JWT; `/open` for any origin; `/plain` without CORS.
async fn gateway() -> (Gateway, Upstream) {
    let up = Upstream::start("api").await;
    let routes = route_file(
        &[up.addr],
        "",
        &[
            (
                "api",
                "/api",
                "methods: [GET, PUT]\nauth: jwt\ncors:\n  allow_origins: [https://app.example.com, 'https://*.partner.test']\n  allow_headers: [authorization, x-trace]\n  expose_headers: [x-request-id]\n  allow_credentials: true\n  max_age_seconds: 120",
            ),
            ("open", "/open", "cors: {allow_origins: ['*']}"),
            ("plain", "/plain", ""),
        ],
    );
    (Gateway::start(DEV_JWT, &[("r.yaml", &routes)]), up)
}

fn preflight(origin: &str, method: &str, headers: Option<&str>) -> reqwest::RequestBuilder {
    let mut req = crate::common::client()
        .request(reqwest::Method::OPTIONS, "http://placeholder/")
        .header("origin", origin)
        .header("access-control-request-method", method);
    if let Some(h) = headers {
        req = req.header("access-control-request-headers", h);
    }
    req
}

async fn send(gw: &Gateway, path: &str, req: reqwest::RequestBuilder) -> reqwest::Response {
    let mut req = req.build().unwrap();
    *req.url_mut() = gw.url(path).parse().unwrap();
    client().execute(req).await.unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn preflights_are_answered_before_authentication_for_allowed_origins_only() {
    let (gw, _up) = gateway().await;
    for origin in ["https://app.example.com", "https://eu.partner.test"] {
        let r = send(
            &gw,
            "/api/orders",
            preflight(origin, "PUT", Some("Authorization, X-Trace")),
        )
        .await;
        assert_eq!(r.status(), 204, "{origin}: {}", gw.log());
        assert_eq!(header(&r, "access-control-allow-origin"), Some(origin));
        assert_eq!(header(&r, "access-control-allow-methods"), Some("GET, PUT"));
        assert_eq!(
            header(&r, "access-control-allow-headers"),
            Some("Authorization, X-Trace")
        );
        assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
        assert_eq!(header(&r, "access-control-max-age"), Some("120"));
        assert!(header(&r, "vary").unwrap().contains("Origin"));
        assert_eq!(
            header(&r, "content-length"),
            None,
            "a 204 has no Content-Length"
        );
    }
    // Refused: another origin, a look-alike, a method or a header the
    // policy does not list. No CORS header at all.
    for (origin, method, headers) in [
        ("https://evil.example", "GET", None),
        ("https://app.example.com.evil.example", "GET", None),
        ("https://partner.test", "GET", None),
        ("null", "GET", None),
        ("https://app.example.com", "DELETE", None),
        ("https://app.example.com", "GET", Some("x-other")),
    ] {
        let r = send(&gw, "/api/orders", preflight(origin, method, headers)).await;
        assert_eq!(r.status(), 403, "{origin} {method} {headers:?}");
        assert_eq!(header(&r, "access-control-allow-origin"), None);
        assert_eq!(r.json_value().await["error"], "cors_rejected");
    }
    // Any origin, without credentials: `*`.
    let r = send(
        &gw,
        "/open/x",
        preflight("https://anyone.test", "POST", None),
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&r, "access-control-allow-credentials"), None);
    // A route without CORS sends the OPTIONS on to the app.
    let r = send(
        &gw,
        "/plain/x",
        preflight("https://app.example.com", "GET", None),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json_value().await["method"], "OPTIONS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn actual_responses_carry_cors_headers_for_allowed_origins_and_always_vary() {
    let (gw, _up) = gateway().await;
    let get = |origin: &str| {
        crate::common::client()
            .get("http://placeholder/")
            .header("origin", origin)
    };
    // The gateway's own 401 is readable by the allowed origin's script.
    let r = send(&gw, "/api/orders", get("https://app.example.com")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
    assert_eq!(
        header(&r, "access-control-expose-headers"),
        Some("x-request-id")
    );
    assert_eq!(header(&r, "vary"), Some("Origin"));
    let r = send(&gw, "/api/orders", get("https://evil.example")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    assert_eq!(header(&r, "vary"), Some("Origin"));
    // An app response.
    let r = send(&gw, "/open/x", get("https://anyone.test")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
    let r = send(&gw, "/plain/x", get("https://anyone.test")).await;
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    assert_eq!(header(&r, "vary"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rewrites_use_capture_groups_keep_the_query_and_cannot_escape() {
    let up = Upstream::start("api").await;
    let routes = route_file(
        &[up.addr],
        "",
        &[
            (
                "kline",
                "/kline/v1",
                "rewrite: {regex: '^/kline/v1/(?P<market>[a-z]+)/(.*)$', replacement: '/api/$${market}/$2'}",
            ),
            ("joined", "/j", "rewrite: {regex: '^/j/x(.*)$', replacement: '/api/.$1'}"),
        ],
    );
    let gw = Gateway::start("", &[("r.yaml", &routes)]);
    let body = client()
        .get(gw.url("/kline/v1/btc/candles/1m?limit=5&from=x%20y"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(
        body["target"], "/api/btc/candles/1m?limit=5&from=x%20y",
        "{body}"
    );
    // No match: the normalised path goes on as it is.
    let body = client()
        .get(gw.url("/kline/v1/BTC"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(body["path"], "/kline/v1/BTC");
    // A capture that joins the replacement into a dot-segment (`/api/.`
    // + `./y`) is normalised again, never forwarded as `/api/../y`.
    let body = client()
        .get(gw.url("/j/x./y"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(body["path"], "/y", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_are_validated_against_the_routes_schema_before_they_go_on() {
    let up = Upstream::start("orders").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
    std::fs::write(
        dir.path().join("schemas/order.json"),
        r#"{"type": "object", "required": ["symbol", "qty"], "additionalProperties": false,
            "properties": {"symbol": {"type": "string", "pattern": "^[A-Z]{3,6}$"},
                           "qty": {"type": "integer", "minimum": 1}}}"#,
    )
    .unwrap();
    let routes = route_file(
        &[up.addr],
        "",
        &[(
            "orders",
            "/orders",
            "validate: {json_schema: schemas/order.json}",
        )],
    );
    let gw = Gateway::start_in(dir, "", &[("r.yaml", &routes)]);
    let post = |body: &str, ctype: &str| {
        client()
            .post(gw.url("/orders/new"))
            .header("content-type", ctype)
            .body(body.to_string())
            .send()
    };
    // Valid: the app gets the body as sent, whole.
    let r = post(r#"{"symbol": "BTC", "qty": 2}"#, "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", gw.log());
    let body = r.json_value().await;
    assert_eq!(body["body_bytes"], 27, "{body}");
    // Chunked works the same.
    let stream = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(br#"{"symbol": "ETH","#)),
        Ok(bytes::Bytes::from_static(br#" "qty": 1}"#)),
    ]);
    let r = client()
        .post(gw.url("/orders/new"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Invalid: 400 with the violations, the value sent never echoed.
    let r = post(
        r#"{"symbol": "secret-value", "qty": 0, "extra": 1}"#,
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.json_value().await;
    assert_eq!(body["error"], "invalid_request", "{body}");
    let paths: Vec<&str> = body["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/symbol") && paths.contains(&"/qty"),
        "{body}"
    );
    assert!(!body.to_string().contains("secret-value"), "{body}");
    for (text, ctype, want) in [
        ("{not json", "application/json", "not JSON"),
        (
            r#"{"symbol": "BTC", "qty": 1}"#,
            "text/plain",
            "must be JSON",
        ),
        ("", "application/json", "is required"),
    ] {
        let r = post(text, ctype).await.unwrap();
        assert_eq!(r.status(), 400, "{text:?}");
        let body = r.json_value().await;
        assert!(
            body["violations"][0]["message"]
                .as_str()
                .unwrap()
                .contains(want),
            "{body}"
        );
    }
    // Over the 64 KiB a validated body may have: 413.
    let big = format!(
        r#"{{"symbol": "BTC", "qty": 1, "pad": "{}"}}"#,
        "x".repeat(70_000)
    );
    let r = post(&big, "application/json").await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        up_requests(&gw).await,
        2.0,
        "only the two valid bodies reached the app"
    );
}

/// Requests of route `orders` the upstream answered.
async fn up_requests(gw: &Gateway) -> f64 {
    let text = crate::common::metrics_text(gw).await;
    crate::common::metric(
        &text,
        "gatehouse_requests_total{method=\"POST\",route=\"orders\",status=\"200\"}",
    )
}
