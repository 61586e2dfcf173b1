//! Background work of the gateway process. It puts the loaded config into
//! service (health checkers, JWKS refreshers, TokenginX and rate-limit
//! store connections), reloads the config when a file changes or on
//! SIGHUP, reopens the access log on SIGUSR1, and follows Pingora's
//! execution phases: ready once running; not ready, and closing keep-alive
//! connections, while draining; exiting as soon as the last in-flight
//! request is done.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use log::{error, info, warn};
use pingora_core::server::{ExecutionPhase, ShutdownWatch};
use pingora_core::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::broadcast;

use crate::access_log::Reopen;
use crate::config::compile::is_route_file_name;
use crate::config::reload::{activate, Reloader};
use crate::lifecycle::Lifecycle;

/// How often the config files are checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The supervisor background service.
pub struct Supervisor {
    reloader: Reloader,
    lifecycle: Arc<Lifecycle>,
    reopen: Arc<Reopen>,
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
    live: Arc<arc_swap::ArcSwap<crate::config::Runtime>>,
    /// The config files as they were when the config was loaded, so an
    /// edit made before the supervisor runs is still noticed.
    loaded: Snapshot,
}

impl Supervisor {
    /// `phases` comes from `Server::watch_execution_phase`.
    pub fn new(
        reloader: Reloader,
        live: Arc<arc_swap::ArcSwap<crate::config::Runtime>>,
        lifecycle: Arc<Lifecycle>,
        reopen: Arc<Reopen>,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> Supervisor {
        let mut supervisor = Supervisor {
            reloader,
            lifecycle,
            reopen,
            phases: Mutex::new(Some(phases)),
            live,
            loaded: Vec::new(),
        };
        supervisor.loaded = snapshot(&supervisor.watched());
        supervisor
    }
}

#[async_trait]
impl BackgroundService for Supervisor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        activate(&self.live.load(), None);
        let phases = self.phases.lock().ok().and_then(|mut p| p.take());
        let Some(mut phases) = phases else { return };
        let (Ok(mut hup), Ok(mut usr1)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
        ) else {
            warn!("cannot listen for SIGHUP/SIGUSR1: reload and log reopening by signal are off");
            return;
        };
        let mut watch = tokio::time::interval(WATCH_INTERVAL);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = self.loaded.clone();
        // Once the sockets are handed to a new process, this one still
        // answers on them until it exits, for an instance that is healthy:
        // readiness must not flap while both accept.
        let mut handed_over = false;
        loop {
            tokio::select! {
                phase = phases.recv() => match phase {
                    Ok(ExecutionPhase::Running) => {
                        tokio::spawn(ready_once_bound(
                            self.bound_addrs(),
                            Arc::clone(&self.lifecycle),
                            self.pid_file(),
                        ));
                    }
                    Ok(ExecutionPhase::GracefulUpgradeTransferringFds) => {
                        info!("sockets handed to the new process: draining, still ready");
                        handed_over = true;
                        self.lifecycle.draining.store(true, Relaxed);
                    }
                    Ok(ExecutionPhase::GracefulTerminate | ExecutionPhase::ShutdownStarted) => {
                        info!("draining: responses now close their connections");
                        if !handed_over {
                            self.lifecycle.ready.store(false, Relaxed);
                        }
                        self.lifecycle.draining.store(true, Relaxed);
                    }
                    Ok(ExecutionPhase::ShutdownGracePeriod) => {
                        tokio::spawn(exit_when_drained(Arc::clone(&self.lifecycle)));
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                changed = shutdown.changed() => {
                    if !handed_over {
                        self.lifecycle.ready.store(false, Relaxed);
                    }
                    if changed.is_err() {
                        return;
                    }
                }
                _ = hup.recv() => {
                    self.reloader.reload("SIGHUP");
                    seen = snapshot(&self.watched());
                }
                _ = usr1.recv() => {
                    info!("SIGUSR1: reopening the access log");
                    self.reopen.request();
                }
                _ = watch.tick() => {
                    let now = snapshot(&self.watched());
                    if now != seen {
                        // Let an editor or a ConfigMap update finish writing.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        seen = snapshot(&self.watched());
                        self.reloader.reload("files changed");
                    }
                }
            }
        }
    }
}

impl Supervisor {
    /// Every address the running process must listen on.
    fn bound_addrs(&self) -> Vec<SocketAddr> {
        let rt = self.live.load();
        let mut addrs: Vec<SocketAddr> = rt.server.listeners.iter().map(|l| l.addr).collect();
        addrs.extend(rt.server.admin);
        addrs
    }

    /// Where a foreground process writes its pid (Pingora writes it only
    /// for daemons).
    fn pid_file(&self) -> Option<PathBuf> {
        let conf = &self.live.load().server.pingora;
        (!conf.daemon).then(|| PathBuf::from(&conf.pid_file))
    }

    /// conf.yaml, every file of the routes and consumers directories (new
    /// files count) and the files the running config read (certificates
    /// included).
    fn watched(&self) -> Vec<PathBuf> {
        let rt = self.live.load();
        let mut files = vec![self.reloader.conf().clone()];
        files.extend(rt.files.iter().cloned());
        for dir in [&rt.routes_dir, &rt.consumers_dir] {
            if let Ok(entries) = std::fs::read_dir(dir) {
                files.extend(
                    entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| is_route_file_name(p)),
                );
            }
        }
        files.sort();
        files.dedup();
        files
    }
}

/// Each watched file with its inode, size and modification time (a
/// dangling link's own; `None`: missing).
type Snapshot = Vec<(PathBuf, Option<(u64, u64, SystemTime)>)>;

/// Inode, size and modification time of each file, following symlinks: a
/// Kubernetes ConfigMap swaps its `..data` link to a new directory, and
/// only then do the route files' links lead to new inodes, so the swap is
/// seen once, complete.
fn snapshot(files: &[PathBuf]) -> Snapshot {
    files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f)
                .or_else(|_| std::fs::symlink_metadata(f))
                .ok()
                .and_then(|m| Some((m.ino(), m.len(), m.modified().ok()?)));
            (f.clone(), meta)
        })
        .collect()
}

/// How long the listeners may take to be bound once Pingora runs.
const BIND_DEADLINE: Duration = Duration::from_secs(5);

/// Marks the process ready once it listens on every one of `addrs`, and
/// writes `pid_file`; exits with an error when it cannot within
/// [`BIND_DEADLINE`] (Pingora would retry for half a minute, then leave
/// a process that serves nothing).
async fn ready_once_bound(
    addrs: Vec<SocketAddr>,
    lifecycle: Arc<Lifecycle>,
    pid_file: Option<PathBuf>,
) {
    let started = std::time::Instant::now();
    loop {
        let missing = crate::listeners::missing(&addrs);
        if missing.is_empty() {
            break;
        }
        if started.elapsed() > BIND_DEADLINE {
            let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
            error!(
                "cannot listen on {} after {} s: exiting",
                list.join(", "),
                BIND_DEADLINE.as_secs()
            );
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(path) = pid_file {
        if let Err(e) = std::fs::write(&path, format!("{}\n", std::process::id())) {
            warn!("cannot write the pid file {}: {e}", path.display());
        }
    }
    info!("listeners bound, config loaded: ready");
    lifecycle.ready.store(true, Relaxed);
}

/// How long no request may be in flight before a draining process exits:
/// long enough for a request whose connection was accepted just before the
/// listeners closed to arrive.
const DRAIN_QUIET: Duration = Duration::from_millis(500);

/// During the grace period, exits as soon as no request has been in flight
/// for [`DRAIN_QUIET`], instead of always sleeping the whole period.
/// Requests still running at its end are cut by Pingora as usual.
async fn exit_when_drained(lifecycle: Arc<Lifecycle>) {
    let step = Duration::from_millis(50);
    let mut quiet = Duration::ZERO;
    while quiet < DRAIN_QUIET {
        tokio::time::sleep(step).await;
        quiet = if lifecycle.in_flight.load(Relaxed) == 0 {
            quiet + step
        } else {
            Duration::ZERO
        };
    }
    info!("drained: no request in flight, exiting before the grace period ends");
    std::process::exit(0);
}
