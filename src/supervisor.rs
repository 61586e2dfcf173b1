//! Background work of the gateway process: starts the active health
//! checks, JWKS refreshers and the TokenginX connection of the loaded
//! config, and follows Pingora's execution phases: ready once running; not
//! ready, and closing keep-alive connections, while draining; exiting as
//! soon as the last in-flight request is done.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use log::info;
use pingora_core::server::{ExecutionPhase, ShutdownWatch};
use pingora_core::services::background::BackgroundService;
use tokio::sync::broadcast;

use crate::config::Runtime;
use crate::lifecycle::Lifecycle;
use crate::upstream::health;

/// The supervisor background service.
pub struct Supervisor {
    live: Arc<ArcSwap<Runtime>>,
    lifecycle: Arc<Lifecycle>,
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

impl Supervisor {
    /// `phases` comes from `Server::watch_execution_phase`.
    pub fn new(
        live: Arc<ArcSwap<Runtime>>,
        lifecycle: Arc<Lifecycle>,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> Supervisor {
        Supervisor {
            live,
            lifecycle,
            phases: Mutex::new(Some(phases)),
        }
    }
}

#[async_trait]
impl BackgroundService for Supervisor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let runtime = self.live.load_full();
        for (pool, spec) in runtime.pools.values() {
            health::spawn(pool, spec.clone());
        }
        runtime.auth.start();
        runtime.limiter.start();
        drop(runtime);
        let phases = self.phases.lock().ok().and_then(|mut p| p.take());
        let Some(mut phases) = phases else { return };
        loop {
            tokio::select! {
                phase = phases.recv() => match phase {
                    Ok(ExecutionPhase::Running) => {
                        info!("listeners bound, config loaded: ready");
                        self.lifecycle.ready.store(true, Relaxed);
                    }
                    Ok(ExecutionPhase::GracefulTerminate
                        | ExecutionPhase::GracefulUpgradeTransferringFds
                        | ExecutionPhase::ShutdownStarted) => {
                        info!("draining: responses now close their connections");
                        self.lifecycle.ready.store(false, Relaxed);
                        self.lifecycle.draining.store(true, Relaxed);
                    }
                    Ok(ExecutionPhase::ShutdownGracePeriod) => {
                        tokio::spawn(exit_when_drained(Arc::clone(&self.lifecycle)));
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                changed = shutdown.changed() => {
                    self.lifecycle.ready.store(false, Relaxed);
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
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
