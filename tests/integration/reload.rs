//! Hot reload: file changes and SIGHUP swap the whole config atomically;
//! an invalid config keeps the old one serving; buckets and health state
//! survive; settings that need an upgrade are named; and under continuous
//! wrk load, 20 reloads and a graceful upgrade lose nothing.

use std::time::Duration;

use crate::common::{
    eventually, get_json, route_file, small_backlog_upstream, spawn_gateway, wrk, Gateway, Killed,
    Upstream,
};

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

/// Against backends with a listen backlog of 5: each reload builds new
/// pools whose checks and connects start at once, and the upgraded process
/// opens all its upstream connections together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_loss_under_load_through_reloads_and_an_upgrade() {
    let a = small_backlog_upstream(5);
    let b = small_backlog_upstream(5);
    let routes_a = route_file(&[a], "", &[("all", "/", "")]);
    let routes_ab = route_file(&[a, b], "", &[("all", "/", ""), ("extra", "/extra", "")]);
    let mut old = Gateway::start("", &[("r.yaml", &routes_a)]);
    let load = wrk(old.url("/load"), 9);
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
    let new = Killed(spawn_gateway(&conf, &["-u"], old.dir.path()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    old.signal(libc::SIGQUIT);
    let report = load.await.unwrap();
    let reloads = old.log().matches("config reloaded (").count();
    assert!(reloads >= 20, "only {reloads} reloads:\n{}", old.log());
    report.assert_nothing_lost(&format!("under reload/upgrade; log:\n{}", old.log()));
    drop(new);
    old.child.kill().ok();
}

/// Waits until the gateway's last reload has `result`, and returns its error.
async fn last_reload(gw: &Gateway, result: &str, reloads_before: usize) -> String {
    let seen = eventually(10, async || {
        let (_, s) = get_json(&gw.admin_url("/status")).await;
        let n = gw.log().matches("config reload (").count()
            + gw.log().matches("config reloaded (").count();
        n > reloads_before && s["config"]["last_reload"]["result"] == result
    })
    .await;
    assert!(seen, "no reload with result {result}:\n{}", gw.log());
    let (_, s) = get_json(&gw.admin_url("/status")).await;
    s["config"]["last_reload"]["error"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn reload_lines(gw: &Gateway) -> usize {
    gw.log().matches("config reload (").count() + gw.log().matches("config reloaded (").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dangling_route_file_or_an_emptied_directory_keeps_the_routes() {
    let a = Upstream::start("a").await;
    let gw = Gateway::start(
        "",
        &[("r.yaml", &route_file(&[a.addr], "", &[("one", "/one", "")]))],
    );
    let routes = gw.dir.path().join("routes");
    let conf = gw.dir.path().join("conf.yaml");

    // The file becomes a link to nowhere.
    let before = reload_lines(&gw);
    std::fs::remove_file(routes.join("r.yaml")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/r.yaml", routes.join("r.yaml")).unwrap();
    let why = last_reload(&gw, "error", before).await;
    assert!(
        why.contains("r.yaml") && why.contains("cannot read"),
        "{why}"
    );
    assert_eq!(get_json(&gw.url("/one/x")).await.1["app"], "a");
    let text = metrics(&gw).await;
    assert!(
        text.contains("gatehouse_config_last_reload_success 0"),
        "{text}"
    );
    assert!(gw.log().contains("cannot read"), "{}", gw.log());
    let check = std::process::Command::new(crate::common::bin())
        .args(["check", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("r.yaml") && stderr.contains("cannot read"),
        "{stderr}"
    );

    // The directory is emptied: refused, the routes keep serving.
    std::fs::remove_file(routes.join("r.yaml")).unwrap();
    std::fs::write(routes.join("notes.txt"), "not a route file").unwrap();
    let before = reload_lines(&gw);
    let why = last_reload(&gw, "error", before).await;
    assert!(why.contains("allow_empty_routes"), "{why}");
    assert_eq!(get_json(&gw.url("/one/x")).await.1["app"], "a");

    // The operator says so: now it applies.
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{text}allow_empty_routes: true\n")).unwrap();
    let emptied = eventually(10, async || get_json(&gw.url("/one/x")).await.0 == 404).await;
    assert!(emptied, "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_configmap_style_directory_swap_reloads_once_to_the_new_content() {
    let a = Upstream::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes");
    // What a Kubernetes ConfigMap volume looks like.
    let version = |name: &str, prefix: &str| {
        let d = routes.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("r.yaml"),
            route_file(&[a.addr], "", &[("r", prefix, "")]),
        )
        .unwrap();
    };
    version("..2026_12_01_a", "/old");
    std::os::unix::fs::symlink("..2026_12_01_a", routes.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/r.yaml", routes.join("r.yaml")).unwrap();
    let gw = Gateway::start_in(dir, "", &[]);
    assert_eq!(get_json(&gw.url("/old/x")).await.0, 200);

    // The kubelet's update: a new version directory, a new link swapped in
    // by rename, the old version removed, each step a moment apart.
    let before = reload_lines(&gw);
    version("..2026_12_02_b", "/new");
    tokio::time::sleep(Duration::from_millis(700)).await;
    std::os::unix::fs::symlink("..2026_12_02_b", routes.join("..data_tmp")).unwrap();
    std::fs::rename(routes.join("..data_tmp"), routes.join("..data")).unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    std::fs::remove_dir_all(routes.join("..2026_12_01_a")).unwrap();

    let swapped = eventually(10, async || get_json(&gw.url("/new/x")).await.0 == 200).await;
    assert!(swapped, "{}", gw.log());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(get_json(&gw.url("/old/x")).await.0, 404);
    assert_eq!(reload_lines(&gw) - before, 1, "{}", gw.log());
    let (_, s) = get_json(&gw.admin_url("/status")).await;
    assert_eq!(s["config"]["last_reload"]["result"], "ok");
}
