//! Process lifecycle: SIGTERM drains, `-u` + SIGQUIT hands over the
//! listeners without losing a request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use crate::common::{
    client, conf_yaml, free_port, raw, route_file, serve_each, spawn_gateway, write_config,
    Gateway, Killed, Upstream,
};

fn wait_exit(child: &mut std::process::Child, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Waits (at most 20 s) for a gateway that was told to go to exit; it is
/// given back for its log.
async fn exits(mut gw: Gateway) -> Gateway {
    tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut gw.child, 20);
        assert!(status.is_some(), "gateway did not exit:\n{}", gw.log());
        gw
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_requests() {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("web", "/", "")]);
    // In-flight requests get up to `grace_period_seconds`; the process
    // exits as soon as none is left, not at the end of the period.
    let mut gw = Gateway::start("grace_period_seconds: 30", &[("r.yaml", &routes)]);
    let slow = tokio::spawn(client().get(gw.url("/api/slow?ms=2500")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let r = slow
        .await
        .unwrap()
        .expect("in-flight request must complete");
    assert_eq!(r.status(), 200);
    let status = wait_exit(&mut gw.child, 15).expect("gateway did not exit after SIGTERM");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "exit waited for the grace period"
    );
    assert!(
        status.success() || status.code().is_none(),
        "{status:?}\n{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_upgrade_loses_no_request_under_load() {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("web", "/", "")]);
    let old = Gateway::start("", &[("r.yaml", &routes)]);
    let url = old.url("/x");
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
        workers.push(tokio::spawn(async move {
            let c = client();
            let mut errors = Vec::new();
            while !stop.load(Relaxed) {
                let outcome = match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                    }
                    Ok(r) => Err(format!("status {}", r.status())),
                    Err(e) => Err(format!("{e:?}")),
                };
                match outcome {
                    Ok(()) => ok.fetch_add(1, Relaxed),
                    Err(e) => {
                        errors.push(e);
                        failed.fetch_add(1, Relaxed)
                    }
                };
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let conf = old.dir.path().join("conf.yaml");
    let mut new = Killed(spawn_gateway(&conf, &["-u"], old.dir.path()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = ok.load(Relaxed);
    old.signal(libc::SIGQUIT);
    let old = exits(old).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Relaxed);
    let mut errors = Vec::new();
    for w in workers {
        errors.extend(w.await.unwrap());
    }
    let after = ok.load(Relaxed);
    assert!(
        after > before + 50,
        "no traffic served after the upgrade: {before} -> {after}"
    );
    assert_eq!(
        failed.load(Relaxed),
        0,
        "failed requests: {errors:?}\n{}",
        old.log()
    );
    assert!(new.0.try_wait().unwrap().is_none(), "new gateway died");
    let _ = new.0.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_during_start_up_does_not_kill_the_gateway() {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("web", "/", "")]);
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let conf = write_config(
        dir.path(),
        &conf_yaml(dir.path(), port, admin, ""),
        &[("r.yaml", &routes)],
    );
    let mut gw = Killed(spawn_gateway(&conf, &[], dir.path()));
    let pid = gw.0.id() as i32;
    let log = dir.path().join("gateway.log");
    // From the moment Pingora bootstraps (the config is loaded) until the
    // supervisor handles SIGHUP, the signal's default action would end the
    // process: a config tool that sends SIGHUP right after it starts the
    // service must not kill it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("Bootstrap starting")
    {
        assert!(Instant::now() < deadline, "gateway did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    let ready = "GET /health/ready HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    while !raw(SocketAddr::from(([127, 0, 0, 1], admin)), ready).is_ok_and(|r| r.status == 200) {
        assert!(Instant::now() < deadline, "never ready");
        assert!(
            gw.0.try_wait().unwrap().is_none(),
            "SIGHUP during start-up ended the gateway"
        );
        unsafe { libc::kill(pid, libc::SIGHUP) };
        std::thread::sleep(Duration::from_millis(1));
    }
    let served = raw(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(served.status, 200);
    // Once it runs, SIGHUP reloads.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("config reloaded (SIGHUP)")
    {
        assert!(
            Instant::now() < deadline,
            "SIGHUP after start-up did not reload"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gw.0.try_wait().unwrap().is_none());
}

/// Starts a gateway on `port` (proxy) and `admin` in a new directory.
fn start_on(port: u16, admin: u16) -> (Killed, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let routes = route_file(&["127.0.0.1:9".parse().unwrap()], "", &[("web", "/", "")]);
    let conf = write_config(
        dir.path(),
        &conf_yaml(dir.path(), port, admin, ""),
        &[("r.yaml", &routes)],
    );
    (Killed(spawn_gateway(&conf, &[], dir.path())), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listener_that_cannot_be_bound_fails_start_up() {
    for taken in ["proxy", "admin"] {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = held.local_addr().unwrap().port();
        let (port, admin) = match taken {
            "proxy" => (busy, free_port()),
            _ => (free_port(), busy),
        };
        let (mut gw, dir) = start_on(port, admin);
        let started = Instant::now();
        let status = wait_exit(&mut gw.0, 10);
        let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap();
        let status = status.unwrap_or_else(|| panic!("{taken} port in use: still running\n{log}"));
        assert!(!status.success(), "{taken}: exit {status}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{taken}: took {:?}",
            started.elapsed()
        );
        assert!(
            log.contains(&format!("127.0.0.1:{busy}")) && log.contains("in use"),
            "{taken}: {log}"
        );
        assert!(!log.contains(": ready"), "{taken}: said ready\n{log}");
        drop(held);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pid_file_is_written_in_the_foreground_and_the_upgrade_recipe_works() {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("web", "/", "")]);
    let old = Gateway::start("", &[("r.yaml", &routes)]);
    let pid_file = old.dir.path().join("gw.pid");
    let read_pid = || {
        std::fs::read_to_string(&pid_file)
            .unwrap_or_default()
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
    };
    assert_eq!(read_pid(), old.child.id());

    // The README's recipe: start with -u, then SIGQUIT whatever the pid
    // file names. Probes every 100 ms all the way through must stay ready.
    let conf = old.dir.path().join("conf.yaml");
    let new = Killed(spawn_gateway(&conf, &["-u"], old.dir.path()));
    let admin = old.admin;
    let probes = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..60 {
            let r = client()
                .get(format!("http://{admin}/health/ready"))
                .send()
                .await;
            seen.push(r.map(|r| r.status().as_u16()).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        read_pid(),
        old.child.id(),
        "the new process wrote its pid before taking over"
    );
    unsafe { libc::kill(read_pid() as i32, libc::SIGQUIT) };
    let old = exits(old).await;
    let taken_over = crate::common::eventually(5, async || read_pid() == new.0.id()).await;
    assert!(taken_over, "pid file not updated:\n{}", old.log());
    let seen = probes.await.unwrap();
    assert!(
        seen.iter().all(|&s| s == 200),
        "readiness flapped: {seen:?}\n{}",
        old.log()
    );
    let (status, _) = crate::common::get_json(&format!("http://{}/x", old.addr)).await;
    assert_eq!(status, 200);
}

/// A health endpoint on loopback that counts its probes.
fn counting_health_server() -> (SocketAddr, Arc<AtomicUsize>) {
    use std::io::{Read, Write};
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let addr = serve_each(move |mut conn| {
        let mut buf = [0u8; 4096];
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                return;
            }
            seen.fetch_add(1, Relaxed);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        }
    });
    (addr, count)
}

/// Accepts connections and never answers.
fn silent_server() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in l.incoming() {
            held.push(conn);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_probe_does_not_delay_the_other_backends_checks() {
    let (healthy, probes) = counting_health_server();
    let hanging = silent_server();
    let routes = route_file(
        &[healthy, hanging],
        "health_check: {path: /api/health, interval_ms: 300, timeout_ms: 500}",
        &[("web", "/", "")],
    );
    let _gw = Gateway::start("", &[("r.yaml", &routes)]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = probes.load(Relaxed);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let during = probes.load(Relaxed) - before;
    // Every 300 ms is 10 probes in 3 s; waiting for the hanging one (500 ms
    // each round) would allow 6.
    assert!(during >= 8, "{during} probes of the healthy backend in 3 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jwks_state_is_reported_per_issuer() {
    let dead = free_port();
    let extra = format!(
        "jwt:\n  issuers:\n    - issuer: https://down.example\n      jwks_url: http://127.0.0.1:{dead}/jwks.json\n      algorithms: [ES256]\n"
    );
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("api", "/api", "auth: jwt")]);
    let gw = Gateway::start(&extra, &[("r.yaml", &routes)]);
    let failing = crate::common::eventually(10, async || {
        let (code, s) = crate::common::get_json(&gw.admin_url("/health/ready")).await;
        code == 200 && s["components"]["jwks"]["https://down.example"] == "failing"
    })
    .await;
    assert!(failing, "{}", gw.log());
    let (_, s) = crate::common::get_json(&gw.admin_url("/status")).await;
    let j = &s["jwks"][0];
    assert_eq!(
        (
            j["issuer"].as_str(),
            j["state"].as_str(),
            j["keys"].as_u64()
        ),
        (Some("https://down.example"), Some("failing"), Some(0)),
        "{s}"
    );
    assert!(
        j["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{s}"
    );
    assert!(j["last_success_seconds_ago"].is_null(), "{s}");
}
