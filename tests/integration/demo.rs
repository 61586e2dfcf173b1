//! `gatehouse demo` on a fresh machine: the shipped config, five sample
//! apps on :3001-:3005, every prefix reaching its app.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, get_json, Killed};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_serves_the_reference_deployment() {
    let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf.yaml");
    let mut demo = Killed(
        Command::new(bin())
            .args(["demo", "-c"])
            .arg(&conf)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = demo.0.stdout.take().unwrap();
    let guide = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            if line.contains("Ctrl-C") {
                break;
            }
        }
        text
    })
    .await
    .unwrap();
    assert!(guide.contains("401") && guide.contains("429"), "{guide}");
    let token = guide
        .lines()
        .find_map(|l| l.strip_prefix("TOKEN="))
        .unwrap_or_else(|| panic!("no token in {guide}"))
        .to_string();

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = crate::common::client()
            .get("http://127.0.0.1:9091/health/ready")
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "demo never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (prefix, app) in [
        ("oauth", "oauth-service"),
        ("admin", "admin-portal"),
        ("kline", "kline-service"),
        ("flow", "flow-service"),
        ("test", "test-service"),
    ] {
        let r = crate::common::client()
            .get(format!("http://127.0.0.1:6188/{prefix}/page"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{prefix}");
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(body["app"].as_str(), Some(app), "{prefix}");
    }
    let (status, body) = get_json("http://127.0.0.1:6188/kline/api/candles").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("missing_token"))
    );
    // 30 at once against a burst of 10 (then 5/s): however slow the
    // machine, most are over the limit.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..30 {
        burst.spawn(async { get_json("http://127.0.0.1:6188/test/hello").await.0 });
    }
    let statuses = burst.join_all().await;
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.contains(&429),
        "the demo's 429 never came: {statuses:?}"
    );
    let (status, body) = get_json("http://127.0.0.1:6188/nowhere").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("no_route")));

    // The gateway's own login, at the sample authorization server.
    assert!(guide.contains("/test/account"), "{guide}");
    crate::oauth_support::discovered_at("http://127.0.0.1:9091").await;
    let mut browser = crate::oauth_support::Browser::new("ada");
    let page = browser.navigate("http://127.0.0.1:6188/test/account").await;
    assert_eq!(page.status, 200, "{page:#?}");
    assert_eq!(page.url, "http://127.0.0.1:6188/test/account");
    let body: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(body["app"], "test-service");
    assert_eq!(body["headers"]["x-user-id"][0], "ada", "{body}");
    assert_eq!(body["headers"]["x-user-scopes"][0], "read admin", "{body}");
    let origin = [("origin", "http://127.0.0.1:6188")];
    let out = browser
        .send(
            "POST",
            "http://127.0.0.1:6188/_gatehouse/oauth/logout",
            None,
            &origin,
        )
        .await;
    assert_eq!(out.status(), 303);
    let again = browser
        .send("GET", "http://127.0.0.1:6188/test/account", None, &[])
        .await;
    assert_eq!(again.status(), 302, "still logged in after logout");
}
