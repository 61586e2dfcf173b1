//! Background work of the gateway process: starts the active health
//! checks, JWKS refreshers and the TokenginX connection of the loaded
//! config, and tracks readiness through Pingora's execution phases (ready
//! once running, not ready while draining).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use log::info;
use pingora_core::server::{ExecutionPhase, ShutdownWatch};
use pingora_core::services::background::BackgroundService;
use tokio::sync::broadcast;

use crate::admin::Lifecycle;
use crate::config::Runtime;
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
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = shutdown.changed() => {
                    self.lifecycle.ready.store(false, Relaxed);
                    return;
                }
            }
        }
    }
}
