//! Response aggregation: one GET answered with the JSON of several
//! upstream paths, a slow optional part left out on time, a failing
//! required part failing the request.

use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::auth_support::{now, sign_hs};
use crate::common::{client, metric, metrics_text, Gateway, Upstream, DEV_JWT};
use crate::fault_peers::{FlakyApp, ServerProcess, FAILING};
use crate::oauth_support::JsonBody;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parts_are_fetched_in_parallel_and_a_slow_optional_one_is_left_out_on_time() {
    let kline = Upstream::start("kline").await;
    let flow = ServerProcess::start();
    flow.put("flows.json", r#"{"net": 12}"#);
    let failing = FlakyApp::start(FAILING).await;
    let routes = format!(
        "upstreams:\n  kline: {{backends: ['{}']}}\n  flow: {{backends: ['{}'], read_timeout_ms: 30000}}\n  failing: {{backends: ['{}']}}\nroutes:\n  - name: dash\n    prefix: /dash\n    methods: [GET]\n    auth: jwt\n    aggregate:\n      timeout_ms: 400\n      parts:\n        - {{name: candles, upstream: kline, path: /kline/api/candles}}\n        - {{name: flows, upstream: flow, path: /flows.json, required: false}}\n  - name: broken\n    prefix: /broken\n    methods: [GET]\n    aggregate:\n      parts:\n        - {{name: candles, upstream: kline, path: /kline/api/candles}}\n        - {{name: must, upstream: failing, path: /x}}\n",
        kline.addr, flow.addr, failing.addr
    );
    let gw = Gateway::start(DEV_JWT, &[("r.yaml", &routes)]);
    let token = sign_hs(
        Algorithm::HS256,
        b"a-test-secret-that-is-long-enough-for-hs256",
        &json!({"iss": "dev", "sub": "trader-7", "exp": now() + 60}),
    );
    let get = |path: &str| {
        client()
            .get(gw.url(path))
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    // Both parts answer.
    let r = get("/dash?symbol=BTC").await.unwrap();
    assert_eq!(r.status(), 200, "{}", gw.log());
    assert!(r.headers().get("x-gatehouse-partial").is_none());
    let body = r.json_value().await;
    assert_eq!(
        body["candles"]["target"], "/kline/api/candles?symbol=BTC",
        "{body}"
    );
    assert_eq!(body["candles"]["headers"]["x-user-id"], json!(["trader-7"]));
    assert_eq!(body["flows"], json!({"net": 12}));

    // The optional part hangs: the answer comes at the aggregate's
    // timeout, with it as null and named.
    flow.signal(libc::SIGSTOP);
    let started = Instant::now();
    let r = get("/dash?symbol=ETH").await.unwrap();
    let took = started.elapsed();
    flow.signal(libc::SIGCONT);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-gatehouse-partial"], "flows");
    let body = r.json_value().await;
    assert_eq!(body["flows"], serde_json::Value::Null);
    assert_eq!(body["candles"]["target"], "/kline/api/candles?symbol=ETH");
    assert!(
        took < Duration::from_millis(2000),
        "bounded by timeout_ms: {took:?}"
    );

    // A required part that fails fails the request.
    let r = client().get(gw.url("/broken")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.json_value().await["error"], "bad_gateway");
    let r = client().post(gw.url("/dash")).send().await.unwrap();
    assert_eq!(r.status(), 405, "reads only");

    let text = metrics_text(&gw).await;
    let series = |route: &str, part: &str, result: &str| {
        metric(
            &text,
            &format!("gatehouse_aggregate_parts_total{{part=\"{part}\",result=\"{result}\",route=\"{route}\"}}"),
        )
    };
    assert_eq!(series("dash", "candles", "ok"), 2.0);
    assert_eq!(series("dash", "flows", "timeout"), 1.0);
    assert_eq!(series("broken", "must", "error"), 1.0);
}
