//! Rate limits: admitted counts within ±10% of `burst + rate × T` for each
//! key kind, the 429 and RateLimit headers, one shared limit across two
//! gateways on one Redis, a 3-master Redis Cluster, and Redis killed under
//! each `on_error`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::auth_support::{now, redis_cluster, sign_hs, RedisServer};
use crate::common::{client, get_json, route_file, Gateway, Upstream};

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const RATE: f64 = 20.0;
const BURST: f64 = 10.0;

fn conf(rate_limit: &str) -> String {
    format!(
        "trusted_proxies: [127.0.0.1/32]
jwt:
  issuers:
    - issuer: dev
      secret: \"{SECRET}\"
      algorithms: [HS256]
rate_limit: {rate_limit}
"
    )
}

fn routes(up: &Upstream) -> String {
    let limit = |key: &str| format!("rate_limit: {{key: \"{key}\", rate: 20/s, burst: 10}}");
    route_file(
        &[up.addr],
        "",
        &[
            ("by-ip", "/ip", &limit("ip")),
            ("by-user", "/user", &format!("auth: jwt\n{}", limit("user"))),
            ("by-route", "/route", &limit("route")),
            ("by-header", "/hdr", &limit("header:X-Api-Key")),
            ("few", "/few", "rate_limit: {key: ip, rate: 1/m, burst: 3}"),
            (
                "multi",
                "/multi",
                "rate_limit:\n  - {key: ip, rate: 1000/s, burst: 1000}\n  - {key: route, rate: 20/s, burst: 10}",
            ),
        ],
    )
}

fn token(user: &str) -> String {
    sign_hs(
        Algorithm::HS256,
        SECRET.as_bytes(),
        &json!({"iss": "dev", "sub": user, "exp": now() + 600}),
    )
}

/// Counts of one client's traffic, and when answers came (µs after the
/// start): the limit applies to the span in which requests really arrived.
#[derive(Debug, Default)]
struct Tally {
    ok: AtomicUsize,
    limited: AtomicUsize,
    other: AtomicUsize,
    first_us: AtomicU64,
    last_us: AtomicU64,
}

/// Sends requests to `url` with `headers` from 4 tasks for `secs` seconds;
/// returns the tally and how long answers kept coming (first to last).
async fn hammer(url: String, headers: Vec<(&'static str, String)>, secs: f64) -> (Arc<Tally>, f64) {
    let tally = Arc::new(Tally::default());
    tally.first_us.store(u64::MAX, Relaxed);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (tally, url, headers) = (tally.clone(), url.clone(), headers.clone());
            tokio::spawn(async move {
                let c = client();
                while Instant::now() < deadline {
                    let mut req = c.get(&url);
                    for (k, v) in &headers {
                        req = req.header(*k, v);
                    }
                    let status = req.send().await.map(|r| r.status().as_u16());
                    let at = started.elapsed().as_micros() as u64;
                    tally.first_us.fetch_min(at, Relaxed);
                    tally.last_us.fetch_max(at, Relaxed);
                    match status {
                        Ok(200) => tally.ok.fetch_add(1, Relaxed),
                        Ok(429) => tally.limited.fetch_add(1, Relaxed),
                        _ => tally.other.fetch_add(1, Relaxed),
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let span = tally
        .last_us
        .load(Relaxed)
        .saturating_sub(tally.first_us.load(Relaxed));
    (tally, span as f64 / 1e6)
}

fn assert_near_bound(what: &str, admitted: usize, elapsed: f64) {
    let bound = BURST + RATE * elapsed;
    let ratio = admitted as f64 / bound;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{what}: {admitted} admitted in {elapsed:.2}s, bound {bound:.0} (ratio {ratio:.2})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_key_kind_admits_burst_plus_rate_times_t() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&conf("{store: local}"), &[("r.yaml", &routes(&up))]);
    let xff = |ip: &str| vec![("x-forwarded-for", ip.to_string())];
    let auth = |u: &str| vec![("authorization", format!("Bearer {}", token(u)))];
    let key = |k: &str| vec![("x-api-key", k.to_string())];
    let runs = vec![
        ("ip 1", gw.url("/ip/x"), xff("203.0.113.1")),
        ("ip 2", gw.url("/ip/x"), xff("203.0.113.2")),
        ("user a", gw.url("/user/x"), auth("alice")),
        ("user b", gw.url("/user/x"), auth("bob")),
        ("header k1", gw.url("/hdr/x"), key("k1")),
        ("header k2", gw.url("/hdr/x"), key("k2")),
        ("header missing", gw.url("/hdr/x"), vec![]),
    ];
    let handles: Vec<_> = runs
        .into_iter()
        .map(|(what, url, headers)| (what, tokio::spawn(hammer(url, headers, 2.0))))
        .collect();
    for (what, h) in handles {
        let (tally, elapsed) = h.await.unwrap();
        assert_eq!(tally.other.load(Relaxed), 0, "{what}");
        assert!(
            tally.limited.load(Relaxed) > 0,
            "{what}: traffic never exceeded the limit"
        );
        assert_near_bound(what, tally.ok.load(Relaxed), elapsed);
    }

    // One bucket for the whole route, whoever calls; `multi` enforces both limits.
    for path in ["/route/x", "/multi/x"] {
        let a = tokio::spawn(hammer(gw.url(path), xff("198.51.100.1"), 2.0));
        let b = tokio::spawn(hammer(gw.url(path), xff("198.51.100.2"), 2.0));
        let ((ta, ea), (tb, _)) = (a.await.unwrap(), b.await.unwrap());
        assert_near_bound(path, ta.ok.load(Relaxed) + tb.ok.load(Relaxed), ea);
    }
    let metrics = crate::common::metrics_text(&gw).await;
    assert!(metrics.contains("gatehouse_rate_limited_total{route=\"by-ip\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_carry_retry_after_and_ratelimit_headers() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&conf("{store: local}"), &[("r.yaml", &routes(&up))]);
    let c = client();
    let first = c.get(gw.url("/few/x")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["ratelimit-policy"], "\"few-ip\";q=3;w=180");
    assert_eq!(first.headers()["ratelimit"], "\"few-ip\";r=2;t=60");
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(
                c.get(gw.url("/few/x"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            );
        }
        v
    };
    assert_eq!(statuses, [200, 200, 429]);
    let r = c.get(gw.url("/few/x")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((55..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.headers()["ratelimit-policy"], "\"few-ip\";q=3;w=180");
    assert!(r.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"few-ip\";r=0;t="));
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert!(body["request_id"].is_string());
    // Unlimited routes say nothing about limits.
    let r = c.get(gw.url("/other")).send().await.unwrap();
    assert!(r.headers().get("ratelimit").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_share_one_redis_limit() {
    let redis = RedisServer::start();
    let up = Upstream::start("app").await;
    let rl = format!(
        "{{store: redis, redis_url: \"{}\", timeout_ms: 1000}}",
        redis.url()
    );
    let one = Gateway::start(&conf(&rl), &[("r.yaml", &routes(&up))]);
    let two = Gateway::start(&conf(&rl), &[("r.yaml", &routes(&up))]);
    let a = tokio::spawn(hammer(one.url("/route/x"), vec![], 2.0));
    let b = tokio::spawn(hammer(two.url("/route/x"), vec![], 2.0));
    let ((ta, ea), (tb, _)) = (a.await.unwrap(), b.await.unwrap());
    assert!(ta.ok.load(Relaxed) > 0 && tb.ok.load(Relaxed) > 0);
    assert_near_bound(
        "two gateways",
        ta.ok.load(Relaxed) + tb.ok.load(Relaxed),
        ea,
    );
    let (_, ready) = get_json(&one.admin_url("/health/ready")).await;
    assert_eq!(ready["components"]["rate_limit_store"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_with_hash_tagged_keys() {
    let nodes = redis_cluster();
    let up = Upstream::start("app").await;
    let seeds: Vec<String> = nodes
        .iter()
        .map(|n| format!("\"redis://127.0.0.1:{}\"", n.port))
        .collect();
    let rl = format!(
        "{{store: redis, redis_cluster: [{}], timeout_ms: 1000}}",
        seeds.join(", ")
    );
    let gw = Gateway::start(&conf(&rl), &[("r.yaml", &routes(&up))]);
    let ips: Vec<String> = (1..=6).map(|i| format!("192.0.2.{i}")).collect();
    let handles: Vec<_> = ips
        .iter()
        .map(|ip| {
            tokio::spawn(hammer(
                gw.url("/ip/x"),
                vec![("x-forwarded-for", ip.clone())],
                2.0,
            ))
        })
        .collect();
    for (ip, h) in ips.iter().zip(handles) {
        let (tally, elapsed) = h.await.unwrap();
        assert_eq!(tally.other.load(Relaxed), 0, "{ip}");
        assert_near_bound(ip, tally.ok.load(Relaxed), elapsed);
    }
    let holding = nodes
        .iter()
        .filter(|n| n.cmd(&["DBSIZE"]).is_some_and(|r| r != ":0"))
        .count();
    assert!(holding >= 2, "buckets did not spread over the cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_mid_test_follows_on_error() {
    for (policy, expect) in [
        ("local", "limited"),
        ("allow", "all pass"),
        ("deny", "all 503"),
    ] {
        let mut redis = RedisServer::start();
        let up = Upstream::start("app").await;
        let rl = format!(
            "{{store: redis, redis_url: \"{}\", on_error: {policy}, timeout_ms: 50}}",
            redis.url()
        );
        let gw = Gateway::start(&conf(&rl), &[("r.yaml", &routes(&up))]);
        let (warm, _) = hammer(gw.url("/route/x"), vec![], 0.5).await;
        assert!(warm.ok.load(Relaxed) > 0, "{policy}");
        redis.kill();
        let started = Instant::now();
        let (tally, elapsed) = hammer(gw.url("/route/x"), vec![], 1.5).await;
        let (ok, limited, other) = (
            tally.ok.load(Relaxed),
            tally.limited.load(Relaxed),
            tally.other.load(Relaxed),
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{policy}: requests hung"
        );
        match expect {
            "limited" => {
                assert!(
                    limited > 0 && other == 0,
                    "{policy}: {ok} ok, {limited} limited, {other} other"
                );
                assert!(
                    ok as f64 <= (BURST + RATE * elapsed) * 1.1,
                    "{policy}: {ok} ok"
                );
            }
            // Refusals Redis gave before it died are remembered until their
            // Retry-After, so a few 429s may still come from that cache.
            "all pass" => assert!(ok > 0 && other == 0, "{policy}: {ok}/{limited}/{other}"),
            _ => {
                let r = client().get(gw.url("/route/x")).send().await.unwrap();
                assert_eq!(r.status(), 503, "{policy}");
                assert_eq!(r.headers()["retry-after"], "1");
                assert!(ok == 0 && other > 0, "{policy}: {ok}/{limited}/{other}");
            }
        }
        let metrics = crate::common::metrics_text(&gw).await;
        assert!(
            metrics.contains(&format!(
                "gatehouse_rate_limit_store_total{{result=\"error_{policy}\"}}"
            )),
            "{policy}"
        );
    }
}
