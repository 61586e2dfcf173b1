//! Hot reload: file changes and SIGHUP swap the whole config atomically;
//! an invalid config keeps the old one serving; buckets and health state
//! survive; settings that need an upgrade are named; and under continuous
//! wrk load, 20 reloads and a graceful upgrade lose nothing.

use std::process::Command;
use std::time::Duration;

use crate::common::{eventually, get_json, route_file, spawn_gateway, Gateway, Upstream};

fn write_routes(gw: &Gateway, name: &str, text: &str) {
    std::fs::write(gw.dir.path().join("routes").join(name), text).unwrap();
}

async fn metrics(gw: &Gateway) -> String {
    crate::common::metrics_text(gw).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_changes_reload_and_bad_configs_keep_serving() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = Gateway::start(
        "",
        &[("r.yaml", &route_file(&[a.addr], "", &[("one", "/one", "")]))],
    );
    let (_, s) = get_json(&gw.admin_url("/status")).await;
    let first_version = s["config"]["version"].as_str().unwrap().to_string();
    assert_eq!(get_json(&gw.url("/two")).await.0, 404);

    // A new route file appears: the watcher picks it up.
    write_routes(
        &gw,
        "s.yaml",
        &route_file(&[b.addr], "", &[("two", "/two", "")]).replace("app", "bee"),
    );
    let served = eventually(10, async || {
        get_json(&gw.url("/two/x")).await.1["app"] == "b"
    })
    .await;
    assert!(served, "new route never served:\n{}", gw.log());
    let (_, s) = get_json(&gw.admin_url("/status")).await;
    assert_ne!(s["config"]["version"], first_version.as_str());
    assert_eq!(s["config"]["last_reload"]["result"], "ok");

    // A broken file: logged with its position, counted, old config serves on.
    write_routes(
        &gw,
        "s.yaml",
        "routes:\n  - name: two\n    prefix: /two\n    upstream: nowhere\n",
    );
    let failed = eventually(10, async || {
        metrics(&gw)
            .await
            .contains("gatehouse_config_last_reload_success 0")
    })
    .await;
    assert!(failed, "{}", gw.log());
    assert!(metrics(&gw)
        .await
        .contains("gatehouse_config_reloads_total{result=\"error\"} 1"));
    let (_, s) = get_json(&gw.admin_url("/status")).await;
    assert_eq!(s["config"]["last_reload"]["result"], "error");
    let why = s["config"]["last_reload"]["error"].as_str().unwrap();
    assert!(
        why.contains("s.yaml:4:5: `routes[0].upstream`: no upstream named `nowhere`"),
        "{why}"
    );
    assert!(
        gw.log().contains("s.yaml:4:5"),
        "the log names file and line"
    );
    assert_eq!(
        get_json(&gw.url("/two/x")).await.1["app"],
        "b",
        "old config still serves"
    );
    assert_eq!(get_json(&gw.url("/one/x")).await.1["app"], "a");

    // Fixed again.
    std::fs::remove_file(gw.dir.path().join("routes/s.yaml")).unwrap();
    let gone = eventually(10, async || get_json(&gw.url("/two/x")).await.0 == 404).await;
    assert!(gone);
    assert!(metrics(&gw)
        .await
        .contains("gatehouse_config_last_reload_success 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_reloads_and_buckets_survive_unchanged_routes() {
    let a = Upstream::start("a").await;
    let limited = ("few", "/few", "rate_limit: {key: ip, rate: 1/m, burst: 2}");
    let gw = Gateway::start("", &[("r.yaml", &route_file(&[a.addr], "", &[limited]))]);
    assert_eq!(get_json(&gw.url("/few")).await.0, 200);
    assert_eq!(get_json(&gw.url("/few")).await.0, 200);
    assert_eq!(get_json(&gw.url("/few")).await.0, 429);

    // Add a route and change the pool's balance; send SIGHUP.
    let more = route_file(
        &[a.addr],
        "balance: least_conn",
        &[limited, ("other", "/other", "")],
    );
    write_routes(&gw, "r.yaml", &more);
    gw.signal(libc::SIGHUP);
    let reloaded = eventually(5, async || get_json(&gw.url("/other")).await.0 == 200).await;
    assert!(reloaded, "{}", gw.log());
    assert_eq!(
        get_json(&gw.url("/few")).await.0,
        429,
        "the bucket of an unchanged route survives"
    );
    let (_, s) = get_json(&gw.admin_url("/status")).await;
    assert_eq!(s["upstreams"][0]["balance"], "LeastConn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settings_that_need_an_upgrade_are_named() {
    let a = Upstream::start("a").await;
    let gw = Gateway::start(
        "",
        &[("r.yaml", &route_file(&[a.addr], "", &[("one", "/", "")]))],
    );
    let conf = gw.dir.path().join("conf.yaml");
    let text = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("threads: 2", "threads: 3");
    std::fs::write(&conf, text).unwrap();
    gw.signal(libc::SIGHUP);
    let named = eventually(5, async || {
        gw.log()
            .contains("threads changed but cannot change in a running process")
    })
    .await;
    assert!(named, "{}", gw.log());
    assert!(gw.log().contains("graceful upgrade"));
    assert_eq!(get_json(&gw.url("/x")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_loss_under_load_through_reloads_and_an_upgrade() {
    let wrk = Command::new("wrk").arg("--version").output();
    assert!(wrk.is_ok(), "wrk is needed: apt-get install -y wrk");
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let routes_a = route_file(&[a.addr], "", &[("all", "/", "")]);
    let routes_ab = route_file(
        &[a.addr, b.addr],
        "",
        &[("all", "/", ""), ("extra", "/extra", "")],
    );
    let mut old = Gateway::start("", &[("r.yaml", &routes_a)]);
    let url = old.url("/load");
    let load = tokio::task::spawn_blocking(move || {
        Command::new("wrk")
            .args(["-t", "2", "-c", "16", "-d", "9s", "--timeout", "5s", &url])
            .output()
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..20 {
        write_routes(
            &old,
            "r.yaml",
            if i % 2 == 0 { &routes_ab } else { &routes_a },
        );
        old.signal(libc::SIGHUP);
        // Signals that arrive during a reload coalesce: wait for this one.
        let done = eventually(5, async || {
            old.log().matches("config reloaded (").count() > i
        })
        .await;
        assert!(done, "reload {i} did not happen:\n{}", old.log());
    }
    let conf = old.dir.path().join("conf.yaml");
    let mut new = spawn_gateway(&conf, &["-u"], old.dir.path());
    tokio::time::sleep(Duration::from_millis(500)).await;
    old.signal(libc::SIGQUIT);
    let out = load.await.unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = new.kill();
    let _ = new.wait();
    let reloads = old.log().matches("config reloaded (").count();
    assert!(reloads >= 20, "only {reloads} reloads:\n{}", old.log());
    assert!(report.contains("requests in"), "{report}");
    assert!(
        !report.contains("Non-2xx"),
        "non-2xx responses under reload:\n{report}"
    );
    assert!(
        !report.contains("Socket errors"),
        "failed requests under reload/upgrade:\n{report}"
    );
    old.child.kill().ok();
}
