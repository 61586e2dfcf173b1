//! The process's lifecycle: when it started, whether it is ready, whether
//! it is draining, how many requests are in flight, and how the last
//! config load went. Shared by the proxy, the admin service and the
//! supervisor.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Process-wide facts the admin service reports.
#[derive(Debug)]
pub struct Lifecycle {
    /// When the process started.
    pub started: Instant,
    /// True once listeners are bound and config is loaded; false again while draining.
    pub ready: AtomicBool,
    /// True once the process hands its listeners over or stops: responses then
    /// close their connection, so clients move to the new process between
    /// requests instead of racing a close on an idle connection.
    pub draining: AtomicBool,
    /// Requests being served now (see [`InFlight`]).
    pub in_flight: AtomicUsize,
    /// Outcome of the last config load (admin-only, never on the request path).
    pub last_reload: Mutex<ReloadOutcome>,
}

/// What the last config load did.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    /// `ok` or `error`.
    pub result: &'static str,
    /// Unix seconds.
    pub at: u64,
    /// The errors, one per line, when it failed.
    pub error: Option<String>,
}

impl Lifecycle {
    /// A process that has just loaded its first config.
    pub fn new() -> Lifecycle {
        Lifecycle {
            started: Instant::now(),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_reload: Mutex::new(ReloadOutcome {
                result: "ok",
                at: unix_now(),
                error: None,
            }),
        }
    }

    /// A copy of the last config load's outcome.
    pub fn last_reload(&self) -> ReloadOutcome {
        self.last_reload
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Counts one request as in flight for as long as it lives.
#[derive(Debug)]
pub struct InFlight(Arc<Lifecycle>);

impl InFlight {
    /// Starts counting a request.
    pub fn start(lifecycle: &Arc<Lifecycle>) -> InFlight {
        lifecycle.in_flight.fetch_add(1, Relaxed);
        InFlight(Arc::clone(lifecycle))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}
