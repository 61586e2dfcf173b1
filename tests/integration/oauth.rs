//! The gateway as the OAuth 2.1 client of its apps, against a real
//! authorization server (oidc-provider) and a real TokenginX
//! (redis-server): login, sessions, refresh under rotation with reuse
//! detection, two instances sharing sessions, logout, and every refusal.

use std::time::Duration;

use crate::auth_support::RedisServer;
use crate::common::{metrics_text, route_file, Gateway, Upstream};
use crate::oauth_support::{discovered, provider_port, Browser, JsonBody, Provider};

/// conf.yaml keys of a gateway that logs in at `issuer`, sessions in `redis`.
fn oauth_conf(issuer: &str, redis: &RedisServer, extra: &str) -> String {
    format!(
        "access_log: {{path: access.log}}\n\
         tokenginx: {{url: '{}', cache_ms: 200, timeout_ms: 500}}\n\
         oauth:\n  issuer: {issuer}\n  client_id: gatehouse\n  client_secret: gatehouse-test-secret\n  \
         refresh_before_seconds: 2\n  timeout_ms: 1500\n{extra}",
        redis.url()
    )
}

/// A gateway in front of `up` with `/app` (login), `/api` (401) and a
/// public `/`.
fn gateway(up: &Upstream, issuer: &str, redis: &RedisServer, extra: &str) -> Gateway {
    let routes = route_file(
        &[up.addr],
        "",
        &[
            ("app", "/app", "auth: oauth\non_unauthenticated: login"),
            ("api", "/api", "auth: oauth"),
            (
                "admin",
                "/admin",
                "auth: oauth\nroles: [admin]\non_unauthenticated: login",
            ),
            ("public", "/", ""),
        ],
    );
    Gateway::start(&oauth_conf(issuer, redis, extra), &[("r.yaml", &routes)])
}

/// A provider, a TokenginX, an upstream and one gateway, discovery done.
async fn stack(access_ttl: u64) -> (Provider, RedisServer, Upstream, Gateway) {
    let redis = RedisServer::start();
    let up = Upstream::start("app").await;
    let port = provider_port();
    let gw = gateway(&up, &Provider::issuer_at(port), &redis, "");
    let provider = Provider::start(port, &[&gw], access_ttl, &[]);
    discovered(&gw).await;
    (provider, redis, up, gw)
}

fn counter(text: &str, series: &str) -> u64 {
    crate::common::metric(text, series) as u64
}

/// `POST` the logout endpoint of `gw` with `browser`, from `origin`.
async fn logout(browser: &mut Browser, gw: &Gateway, origin: &str) -> reqwest::Response {
    let url = gw.url("/_gatehouse/oauth/logout");
    browser
        .send("POST", &url, None, &[("origin", origin)])
        .await
}

/// The upstream's echo of a request sent with `browser`'s cookies.
async fn echo(
    browser: &mut Browser,
    url: &str,
    extra: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let resp = browser.send("GET", url, None, extra).await;
    (resp.status().as_u16(), resp.json_value().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_navigation_logs_in_at_the_server_and_lands_on_the_original_url() {
    let (_provider, _redis, _up, gw) = stack(60).await;
    let before = metrics_text(&gw).await;
    for series in [
        "gatehouse_oauth_logins_total{result=\"ok\"}",
        "gatehouse_oauth_refreshes_total{result=\"ok\"}",
        "gatehouse_oauth_logouts_total",
    ] {
        assert!(
            before.contains(&format!("{series} 0")),
            "{series} missing:\n{before}"
        );
    }
    let mut browser = Browser::new("alice");
    let page = browser.navigate(&gw.url("/app/page?x=1")).await;
    assert_eq!(page.status, 200, "{page:#?}");
    assert_eq!(page.url, gw.url("/app/page?x=1"), "{page:#?}");
    assert!(page.hops.iter().any(|h| h.contains("/auth?")), "{page:#?}");
    let body: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    let h = &body["headers"];
    assert_eq!(h["x-user-id"][0], "alice", "{body}");
    let bearer = h["authorization"][0].as_str().unwrap_or("");
    assert!(bearer.starts_with("Bearer ") && bearer.len() > 20, "{body}");
    assert!(
        !h["cookie"].to_string().contains("gatehouse"),
        "the session cookie reached the upstream: {body}"
    );
    let session = browser.cookies["gatehouse_session"].clone();
    assert_eq!(session.len(), 43);

    // API calls ride the same session; without it they get a 401, never a
    // redirect.
    let (status, _) = echo(&mut browser, &gw.url("/api/items"), &[]).await;
    assert_eq!(status, 200);
    let anonymous = crate::common::raw_get(gw.addr, "/api/items", &["Accept: text/html"]);
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["error"], "missing_token");
    // Roles come from the id_token: alice is no admin.
    let (status, body) = echo(&mut browser, &gw.url("/admin/x"), &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_role"))
    );
    let mut admin = Browser::new("admin-bob");
    let page = admin.navigate(&gw.url("/admin/x")).await;
    assert_eq!(page.status, 200, "{page:#?}");

    let after = metrics_text(&gw).await;
    assert_eq!(
        counter(&after, "gatehouse_oauth_logins_total{result=\"ok\"}"),
        2
    );
    let ready: serde_json::Value = crate::common::client()
        .get(gw.admin_url("/health/ready"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(ready["components"]["oauth"], "ok");
    // No session id, code or state in any log line.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log =
        std::fs::read_to_string(gw.dir.path().join("access.log")).unwrap_or_default() + &gw.log();
    assert!(!log.contains(&session), "a session id was logged");
    let callback = page_hop(&page, "/_gatehouse/oauth/callback");
    for secret in ["code", "state"] {
        let value = query_value(&callback, secret);
        assert!(!log.contains(&value), "the {secret} was logged");
    }
}

fn page_hop(page: &crate::oauth_support::Page, path: &str) -> String {
    page.hops
        .iter()
        .find(|h| h.contains(path))
        .cloned()
        .unwrap_or_else(|| panic!("no hop to {path}: {page:#?}"))
}

fn query_value(url: &str, name: &str) -> String {
    let url = reqwest::Url::parse(url).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_tokens_are_refreshed_invisibly_under_rotation() {
    let (_provider, _redis, _up, gw) = stack(3).await;
    let mut browser = Browser::new("carol");
    assert_eq!(browser.navigate(&gw.url("/app/")).await.status, 200);
    let mut tokens = std::collections::BTreeSet::new();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(9) {
        let (status, body) = echo(&mut browser, &gw.url("/api/poll"), &[]).await;
        assert_eq!(
            status,
            200,
            "logged out after {:?}: {body}",
            started.elapsed()
        );
        tokens.insert(body["headers"]["authorization"][0].to_string());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A 3 s token refreshed 2 s before expiry: a new one every second or so.
    assert!(
        tokens.len() >= 4,
        "only {} access tokens seen",
        tokens.len()
    );
    let m = metrics_text(&gw).await;
    assert!(
        counter(&m, "gatehouse_oauth_refreshes_total{result=\"ok\"}") >= 3,
        "{m}"
    );
    assert_eq!(
        counter(
            &m,
            "gatehouse_oauth_refreshes_total{result=\"invalid_grant\"}"
        ),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_one_session_and_refresh_it_once() {
    let redis = RedisServer::start();
    let up = Upstream::start("app").await;
    let port = provider_port();
    let issuer = Provider::issuer_at(port);
    let (a, b) = (
        gateway(&up, &issuer, &redis, ""),
        gateway(&up, &issuer, &redis, ""),
    );
    let _provider = Provider::start(port, &[&a, &b], 4, &[]);
    discovered(&a).await;
    discovered(&b).await;
    let mut browser = Browser::new("dave");
    assert_eq!(browser.navigate(&a.url("/app/")).await.status, 200);
    // The session cookie is for 127.0.0.1, so it reaches both instances.
    let (status, _) = echo(&mut browser, &b.url("/api/on-b"), &[]).await;
    assert_eq!(status, 200);
    for round in 0..3 {
        // Into the refresh window: every request below needs a refresh.
        tokio::time::sleep(Duration::from_millis(2300)).await;
        let cookie = format!("gatehouse_session={}", browser.cookies["gatehouse_session"]);
        let mut burst = tokio::task::JoinSet::new();
        for i in 0..16 {
            let gw = if i % 2 == 0 {
                a.url("/api/burst")
            } else {
                b.url("/api/burst")
            };
            let cookie = cookie.clone();
            burst.spawn(async move {
                crate::common::client()
                    .get(gw)
                    .header("cookie", cookie)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            });
        }
        let statuses: Vec<u16> = burst.join_all().await;
        assert!(
            statuses.iter().all(|s| *s == 200),
            "round {round}: {statuses:?}"
        );
    }
    let (ma, mb) = (metrics_text(&a).await, metrics_text(&b).await);
    let ok = |m: &str| counter(m, "gatehouse_oauth_refreshes_total{result=\"ok\"}");
    let grant = |m: &str| {
        counter(
            m,
            "gatehouse_oauth_refreshes_total{result=\"invalid_grant\"}",
        )
    };
    // One refresh per round for both instances together; a second one
    // would have presented a used refresh token and revoked the grant.
    assert_eq!(ok(&ma) + ok(&mb), 3, "a:\n{ma}\nb:\n{mb}");
    assert_eq!(grant(&ma) + grant(&mb), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_ends_the_session_here_and_at_the_server() {
    let (provider, redis, _up, gw) = stack(60).await;
    let mut browser = Browser::new("erin");
    assert_eq!(browser.navigate(&gw.url("/app/")).await.status, 200);
    let session = browser.cookies["gatehouse_session"].clone();
    let record_key = cli(&redis, &["KEYS", "gatehouse:oauth:session:*"]);
    assert!(
        !record_key.contains(&session),
        "the store's key holds the session id"
    );
    let refresh_token = stored_refresh_token(&redis);

    // From another site: refused, the session stays.
    let resp = logout(&mut browser, &gw, "http://evil.test").await;
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.json_value().await["error"], "csrf_rejected");
    assert_eq!(echo(&mut browser, &gw.url("/api/x"), &[]).await.0, 200);

    let origin = format!("http://{}", gw.addr);
    let resp = logout(&mut browser, &gw, &origin).await;
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&provider.issuer()), "{location}");
    assert!(location.contains("id_token_hint="), "{location}");
    assert!(
        !browser.cookies.contains_key("gatehouse_session"),
        "cookie not cleared"
    );
    // The old cookie no longer works, here or anywhere.
    let old = crate::common::raw_get(
        gw.addr,
        "/api/x",
        &[&format!("Cookie: gatehouse_session={session}")],
    );
    assert_eq!(old.status, 401);
    // The server revoked the refresh token too.
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.as_str()),
    ];
    let resp = crate::common::client()
        .post(format!("{}/token", provider.issuer()))
        .basic_auth("gatehouse", Some("gatehouse-test-secret"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json_value().await["error"], "invalid_grant");
    assert_eq!(
        counter(&metrics_text(&gw).await, "gatehouse_oauth_logouts_total"),
        1
    );
}

/// `redis-cli --raw` against `redis`: its output.
fn cli(redis: &RedisServer, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "--raw"])
        .args(args)
        .output()
        .expect("redis-cli comes with redis-server");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The refresh token of the one session in `redis`.
fn stored_refresh_token(redis: &RedisServer) -> String {
    let keys = cli(redis, &["KEYS", "gatehouse:oauth:session:*"]);
    let key = keys.lines().next().unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&cli(redis, &["GET", &key])).unwrap();
    v["refresh_token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_replayed_and_foreign_logins_are_refused() {
    let (_provider, redis, _up, gw) = stack(60).await;
    let mut alice = Browser::new("alice");
    let page = alice.navigate(&gw.url("/app/")).await;
    assert_eq!(page.status, 200);
    let callback = page_hop(&page, "/_gatehouse/oauth/callback");

    let refused = |status: u16, body: &serde_json::Value, code: &str| {
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    };
    // The same callback again: its state was single use.
    let (s, b) = echo(&mut alice, &callback, &[]).await;
    refused(s, &b, "invalid_oauth_state");
    // A forged state.
    let forged = gw.url(&format!(
        "/_gatehouse/oauth/callback?code=x&state={}",
        "A".repeat(43)
    ));
    let (s, b) = echo(&mut alice, &forged, &[]).await;
    refused(s, &b, "invalid_oauth_state");

    // A login started by one browser and completed by another.
    let mut victim = Browser::new("victim");
    let start = victim.send("GET", &gw.url("/app/"), None, &[]).await;
    assert_eq!(start.status(), 302);
    let authorize = start.headers()["location"].to_str().unwrap().to_string();
    let mut attacker = Browser::new("mallory");
    let page = attacker.navigate(&authorize).await;
    assert!(page.url.contains("/_gatehouse/oauth/callback"), "{page:#?}");
    refused(
        page.status,
        &serde_json::from_str(&page.body).unwrap(),
        "invalid_oauth_state",
    );

    // A replayed code under a fresh state of the same browser.
    let start = alice
        .send(
            "GET",
            &gw.url("/_gatehouse/oauth/login?next=/app/again"),
            None,
            &[],
        )
        .await;
    let state = query_value(start.headers()["location"].to_str().unwrap(), "state");
    let old_code = query_value(&callback, "code");
    let replay = gw.url(&format!(
        "/_gatehouse/oauth/callback?code={old_code}&state={state}"
    ));
    let (s, b) = echo(&mut alice, &replay, &[]).await;
    refused(s, &b, "invalid_oauth_state");

    // A wrong nonce: the pending login's nonce is changed in TokenginX
    // before the server's id_token comes back with the original one.
    let mut frank = Browser::new("frank");
    let start = frank.send("GET", &gw.url("/app/"), None, &[]).await;
    let authorize = start.headers()["location"].to_str().unwrap().to_string();
    for key in cli(&redis, &["KEYS", "gatehouse:oauth:state:*"]).lines() {
        let mut v: serde_json::Value = serde_json::from_str(&cli(&redis, &["GET", key])).unwrap();
        v["nonce"] = "not-the-nonce-that-was-sent".into();
        cli(&redis, &["SET", key, &v.to_string(), "EX", "600"]);
    }
    let page = frank.navigate(&authorize).await;
    refused(
        page.status,
        &serde_json::from_str(&page.body).unwrap(),
        "invalid_oauth_state",
    );

    // The user says no at the server.
    let start = frank.send("GET", &gw.url("/app/"), None, &[]).await;
    let state = query_value(start.headers()["location"].to_str().unwrap(), "state");
    let denied = gw.url(&format!("/_gatehouse/oauth/callback?error=access_denied&error_description=%3Cscript%3E&state={state}"));
    let (s, b) = echo(&mut frank, &denied, &[]).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("oauth_denied")), "{b}");
    assert!(
        !b.to_string().contains("script"),
        "the server's text was echoed: {b}"
    );

    // Return URLs must be local.
    for next in [
        "//evil.test/x",
        "https://evil.test/",
        "/\\evil.test",
        "javascript:alert(1)",
    ] {
        let url = gw.url(&format!(
            "/_gatehouse/oauth/login?next={}",
            url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        ));
        let (s, b) = echo(&mut alice, &url, &[]).await;
        refused(s, &b, "invalid_return_url");
    }
    let start = alice
        .send(
            "GET",
            &gw.url("/_gatehouse/oauth/login?next=%2Fapp%2Fhome"),
            None,
            &[],
        )
        .await;
    assert_eq!(start.status(), 302);

    // Cookie-authenticated unsafe methods need the gateway's own origin.
    for (extra, want) in [
        (vec![("origin", "http://evil.test")], 403),
        (vec![("sec-fetch-site", "cross-site")], 403),
        (vec![], 403),
        (vec![("sec-fetch-site", "same-origin")], 200),
    ] {
        let resp = alice
            .send("POST", &gw.url("/api/write"), None, &extra)
            .await;
        assert_eq!(resp.status(), want, "{extra:?}");
        if want == 403 {
            assert_eq!(resp.json_value().await["error"], "csrf_rejected");
        }
    }
    let origin = format!("http://{}", gw.addr);
    let resp = alice
        .send("POST", &gw.url("/api/write"), None, &[("origin", &origin)])
        .await;
    assert_eq!(resp.status(), 200);
    let m = metrics_text(&gw).await;
    assert!(
        counter(&m, "gatehouse_oauth_logins_total{result=\"invalid_state\"}") >= 5,
        "{m}"
    );
    assert_eq!(
        counter(&m, "gatehouse_oauth_logins_total{result=\"denied\"}"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_authorization_server_keeps_valid_sessions_then_answers_503_in_time() {
    let (provider, _redis, _up, gw) = stack(4).await;
    let mut browser = Browser::new("grace");
    assert_eq!(browser.navigate(&gw.url("/app/")).await.status, 200);
    drop(provider);
    // In the refresh window the refresh fails, the still-valid token serves.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(echo(&mut browser, &gw.url("/api/x"), &[]).await.0, 200);
    // Once it has expired: 503, within the configured timeout.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let started = std::time::Instant::now();
    let (status, body) = echo(&mut browser, &gw.url("/api/x"), &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("oauth_unavailable")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_https_the_cookies_are_secure_and_host_prefixed() {
    let redis = RedisServer::start();
    let up = Upstream::start("app").await;
    let port = provider_port();
    let routes = route_file(
        &[up.addr],
        "",
        &[("app", "/app", "auth: oauth\non_unauthenticated: login")],
    );
    let conf = oauth_conf(&Provider::issuer_at(port), &redis, "");
    let gw = Gateway::start_tls(&conf, &[("r.yaml", &routes)]);
    let base = format!("https://localhost:{}", gw.addr.port());
    let callback = format!("{base}/_gatehouse/oauth/callback");
    let _provider = Provider::start(port, &[&gw], 60, &["--redirect-uri", &callback]);
    discovered(&gw).await;
    let mut browser = Browser::accepting_test_certificates("heidi");
    let start = browser
        .send("GET", &format!("{base}/app/"), None, &[])
        .await;
    assert_eq!(start.status(), 302);
    let set_cookie: Vec<String> = start
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        set_cookie
            .iter()
            .any(|c| c.starts_with("__Host-gatehouse_oauth_state=")
                && c.contains("; Secure")
                && c.contains("; HttpOnly")
                && c.contains("SameSite=Lax")
                && c.contains("Path=/")),
        "{set_cookie:?}"
    );
    let location = start.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(query_value(&location, "redirect_uri"), callback);
    let page = browser.navigate(&location).await;
    assert_eq!(page.status, 200, "{page:#?}");
    assert_eq!(page.url, format!("{base}/app/"));
    assert!(
        browser.cookies.contains_key("__Host-gatehouse_session"),
        "{:?}",
        browser.cookies
    );
    assert!(!browser.cookies.contains_key("gatehouse_session"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_tokenginx_one_instance_keeps_its_sessions_itself() {
    let up = Upstream::start("app").await;
    let port = provider_port();
    let routes = route_file(
        &[up.addr],
        "",
        &[("app", "/app", "auth: oauth\non_unauthenticated: login")],
    );
    let conf = format!(
        "oauth:\n  issuer: {}\n  client_id: gatehouse\n  client_secret: gatehouse-test-secret\n  refresh_before_seconds: 2\n",
        Provider::issuer_at(port)
    );
    let gw = Gateway::start(&conf, &[("r.yaml", &routes)]);
    let _provider = Provider::start(port, &[&gw], 3, &[]);
    discovered(&gw).await;
    let mut browser = Browser::new("ivan");
    assert_eq!(browser.navigate(&gw.url("/app/")).await.status, 200);
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let (status, body) = echo(&mut browser, &gw.url("/app/poll"), &[]).await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let m = metrics_text(&gw).await;
    assert!(
        counter(&m, "gatehouse_oauth_refreshes_total{result=\"ok\"}") >= 2,
        "{m}"
    );
    let origin = format!("http://{}", gw.addr);
    let session = browser.cookies["gatehouse_session"].clone();
    let resp = logout(&mut browser, &gw, &origin).await;
    assert_eq!(resp.status(), 303);
    let old = crate::common::raw_get(
        gw.addr,
        "/app/x",
        &[&format!("Cookie: gatehouse_session={session}")],
    );
    assert_eq!(old.status, 401);
}
