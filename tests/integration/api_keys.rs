//! API keys: consumers from `consumers/*.yaml` and from TokenginX
//! (a real redis-server), scopes, per-consumer limits, reloads, and no
//! key in any log.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::auth_support::{now, sign_hs, RedisServer};
use crate::common::{client, eventually, metric, metrics_text, route_file, Gateway, Upstream};
use crate::oauth_support::JsonBody;

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
const PARTNER_KEY: &str = "gh_partner-key-0123456789abcdefghijklmnop";
const SCRIPT_KEY: &str = "gh_script-key-0123456789abcdefghijklmnopq";
const STORED_KEY: &str = "gh_stored-key-0123456789abcdefghijklmnopq";

fn hash(key: &str) -> String {
    gatehouse::auth::api_key::sha256_hex(key)
}

fn consumers(extra: &str) -> String {
    format!(
        "consumers:\n  - {{name: partner, key_sha256: {}, scopes: [kline:read]}}\n  - {{name: script, key_sha256: {}}}\n{extra}",
        hash(PARTNER_KEY),
        hash(SCRIPT_KEY)
    )
}

async fn setup() -> (Gateway, Upstream, RedisServer) {
    let up = Upstream::start("kline").await;
    let redis = RedisServer::start();
    let conf = format!(
        "jwt:\n  issuers:\n    - issuer: dev\n      secret: {SECRET}\n      algorithms: [HS256]\ntokenginx: {{url: '{}', cache_ms: 300, timeout_ms: 200}}\napi_keys: {{lookup_key: 'apikey:{{sha256}}'}}\naccess_log: {{path: access.log}}",
        redis.url()
    );
    let routes = route_file(
        &[up.addr],
        "",
        &[
            (
                "kline",
                "/kline",
                "auth: api_key\nscopes: [kline:read]\nrate_limit: {key: consumer, rate: 1/h, burst: 3}",
            ),
            ("mixed", "/mixed", "auth: [jwt, api_key]"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("consumers")).unwrap();
    std::fs::write(dir.path().join("consumers/partners.yaml"), consumers("")).unwrap();
    (
        Gateway::start_in(dir, &conf, &[("r.yaml", &routes)]),
        up,
        redis,
    )
}

async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut req = client().get(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json_value().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_authenticate_by_key_and_get_their_scopes_and_limits() {
    let (gw, _up, redis) = setup().await;
    let (status, body) = get(&gw, "/kline/candles", &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("missing_token"))
    );
    let (status, body) = get(&gw, "/kline/candles", &[("x-api-key", "gh_wrong")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );

    // A key in X-Api-Key or `Authorization: ApiKey`; the consumer goes
    // upstream, and a client's own X-Consumer-Id never does.
    for headers in [
        vec![("x-api-key", PARTNER_KEY), ("x-consumer-id", "admin")],
        vec![
            ("authorization", &*format!("ApiKey {PARTNER_KEY}")),
            ("x_consumer_id", "admin"),
        ],
    ] {
        let (status, body) = get(&gw, "/kline/candles", &headers).await;
        assert_eq!(status, 200, "{body}\n{}", gw.log());
        assert_eq!(body["headers"]["x-consumer-id"], json!(["partner"]));
        assert_eq!(body["headers"]["x-user-scopes"], json!(["kline:read"]));
        assert!(body["headers"].get("x_consumer_id").is_none());
        for name in ["x-api-key", "authorization"] {
            assert!(
                body["headers"].get(name).is_none(),
                "the key went upstream: {body}"
            );
        }
    }
    // The script consumer lacks the scope.
    let (status, body) = get(&gw, "/kline/candles", &[("x-api-key", SCRIPT_KEY)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    // The partner's third request used its burst of 3; the fourth is over.
    let (status, _) = get(&gw, "/kline/candles", &[("x-api-key", PARTNER_KEY)]).await;
    assert_eq!(status, 200);
    let (status, body) = get(&gw, "/kline/candles", &[("x-api-key", PARTNER_KEY)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("rate_limited"))
    );

    // A consumer kept in TokenginX, refused within cache_ms of its deletion.
    let record_key = format!("apikey:{}", hash(STORED_KEY));
    redis.cmd(&[
        "SET",
        &record_key,
        r#"{"consumer":"stored","scopes":["kline:read"],"roles":["partner"]}"#,
    ]);
    let (status, body) = get(&gw, "/kline/candles", &[("x-api-key", STORED_KEY)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-consumer-id"], json!(["stored"]));
    redis.cmd(&["DEL", &record_key]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, _) = get(&gw, "/kline/candles", &[("x-api-key", STORED_KEY)]).await;
    assert_eq!(status, 401);

    // Either a JWT or a key on a route that takes both.
    let token = sign_hs(
        Algorithm::HS256,
        SECRET.as_bytes(),
        &json!({"iss": "dev", "sub": "u1", "exp": now() + 60}),
    );
    let (status, body) = get(
        &gw,
        "/mixed/x",
        &[("authorization", &*format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(
        (status, body["headers"]["x-user-id"].clone()),
        (200, json!(["u1"]))
    );
    let (status, body) = get(&gw, "/mixed/x", &[("x-api-key", SCRIPT_KEY)]).await;
    assert_eq!(
        (status, body["headers"]["x-consumer-id"].clone()),
        (200, json!(["script"]))
    );

    let text = metrics_text(&gw).await;
    assert_eq!(
        metric(
            &text,
            "gatehouse_auth_failures_total{reason=\"api_key\",route=\"kline\"}"
        ),
        2.0,
        "the wrong key and the deleted one"
    );
    // No key, and no hash of one, in any log line.
    let access = std::fs::read_to_string(gw.dir.path().join("access.log")).unwrap_or_default();
    for log in [gw.log(), access] {
        for secret in [PARTNER_KEY, SCRIPT_KEY, STORED_KEY, "gh_wrong"] {
            assert!(!log.contains(secret), "{secret} logged:\n{log}");
            assert!(!log.contains(&hash(secret)), "hash of {secret} logged");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_files_reload_and_name_their_errors() {
    let (gw, _up, _redis) = setup().await;
    let new_key = "gh_new-consumer-key-0123456789abcdefghijk";
    let (status, _) = get(&gw, "/kline/c", &[("x-api-key", new_key)]).await;
    assert_eq!(status, 401);
    std::fs::write(
        gw.dir.path().join("consumers/later.yaml"),
        format!(
            "consumers:\n  - {{name: later, key_sha256: {}, scopes: [kline:read]}}\n",
            hash(new_key)
        ),
    )
    .unwrap();
    let joined = eventually(10, async || {
        get(&gw, "/kline/c", &[("x-api-key", new_key)]).await.0 == 200
    })
    .await;
    assert!(joined, "a new consumer file is picked up:\n{}", gw.log());
    // A bad file is refused with file, line and key; the running consumers stay.
    std::fs::write(
        gw.dir.path().join("consumers/later.yaml"),
        "consumers:\n  - {name: later, key_sha256: not-a-hash}\n  - {name: partner, key_sha256: '0000000000000000000000000000000000000000000000000000000000000000'}\n",
    )
    .unwrap();
    let reported = eventually(10, async || {
        let log = gw.log();
        log.contains(
            "consumers/later.yaml:2:19: `consumers[0].key_sha256`: must be the 64 hex digits",
        ) && log.contains("consumer `partner` is already defined")
    })
    .await;
    assert!(reported, "{}", gw.log());
    let (status, _) = get(&gw, "/kline/c", &[("x-api-key", new_key)]).await;
    assert_eq!(status, 200, "the running config keeps serving");
}
