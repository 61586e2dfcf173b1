//! Process lifecycle: SIGTERM drains, `-u` + SIGQUIT hands over the
//! listeners without losing a request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use crate::common::{
    client, conf_yaml, free_port, raw, route_file, spawn_gateway, write_config, Gateway, Killed,
    Upstream,
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
    let mut old = Gateway::start("", &[("r.yaml", &routes)]);
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
    let new_child = spawn_gateway(&conf, &["-u"], old.dir.path());
    let mut new = Guard(new_child);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = ok.load(Relaxed);
    old.signal(libc::SIGQUIT);
    let exited = tokio::task::spawn_blocking(move || {
        let s = wait_exit(&mut old.child, 20);
        (s, old)
    })
    .await
    .unwrap();
    assert!(
        exited.0.is_some(),
        "old gateway did not exit:\n{}",
        exited.1.log()
    );
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
        exited.1.log()
    );
    assert!(new.0.try_wait().unwrap().is_none(), "new gateway died");
    let _ = new.0.kill();
}

/// Kills the child when dropped, so a failing test leaves nothing behind.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
