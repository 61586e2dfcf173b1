//! The renewal loop of one [`Acme`]: for each name, serve what the storage
//! holds (another instance may have renewed it), order when the served
//! certificate is missing or due, and after a failure keep serving the
//! current one and try again later, waiting twice as long each time.
//!
//! An order runs under a lock in the storage, so in a fleet one instance
//! orders while the others wait for its result; an instance started later
//! finds the certificate stored and orders nothing. Renewal starts
//! `renew_before_days` before expiry plus a random share of a tenth of
//! that (at most a day), so a fleet's certificates do not renew in one
//! burst.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use log::warn;
use tokio::time::Instant;

use super::order::{self, DEADLINE};
use super::Acme;
use crate::lifecycle::unix_now;

/// The longest wait between looks at the storage.
const CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// How often an instance waiting on another's order looks again.
const LOCK_POLL: Duration = Duration::from_secs(2);

/// The longest wait after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);

/// What the loop knows of one name.
#[derive(Default)]
struct NameState {
    /// When to look at the name again.
    next: Option<Instant>,
    /// Orders failed in a row.
    failures: u32,
    /// Seconds before `renew_before` that this instance renews.
    jitter: u64,
}

/// Runs until the gateway drops `acme` (a reload changed `acme`).
pub async fn run(acme: Weak<Acme>) {
    let mut names: HashMap<String, NameState> = HashMap::new();
    loop {
        let Some(a) = acme.upgrade() else { return };
        let now = Instant::now();
        let mut wake = now + CHECK_INTERVAL;
        for name in &a.settings.domains {
            let state = names.entry(name.clone()).or_insert_with(|| NameState {
                jitter: jitter(a.settings.renew_before),
                ..NameState::default()
            });
            let next = match state.next {
                Some(at) if at > now => at,
                _ => {
                    let at = step(&a, name, state).await;
                    state.next = Some(at);
                    at
                }
            };
            wake = wake.min(next);
        }
        drop(a);
        tokio::time::sleep_until(wake.max(Instant::now() + Duration::from_millis(100))).await;
    }
}

/// A random share of a tenth of `renew_before`, at most a day, in seconds.
fn jitter(renew_before: Duration) -> u64 {
    let span = (renew_before.as_secs() / 10).min(86_400);
    fastrand::u64(0..=span)
}

/// One look at `name`; returns when to look again.
async fn step(acme: &Arc<Acme>, name: &str, state: &mut NameState) -> Instant {
    load_stored(acme, name).await;
    let wait = due_in(acme, name, state);
    if !wait.is_zero() {
        return Instant::now() + wait.min(CHECK_INTERVAL);
    }
    let owner = &acme.owner;
    match acme.storage.lock(name, owner, DEADLINE * 2).await {
        Ok(false) => return Instant::now() + LOCK_POLL,
        Ok(true) => {}
        Err(e) => return failed(acme, name, state, &format!("storage: {e}")),
    }
    // The instance that held the lock may have stored a fresh certificate.
    load_stored(acme, name).await;
    if !due_in(acme, name, state).is_zero() {
        let _ = acme.storage.unlock(name, owner).await;
        return Instant::now();
    }
    let result = match order::order(acme, name).await {
        Ok((stored, cert)) => match acme.storage.save_certificate(name, &stored).await {
            Ok(()) => Ok(cert),
            Err(e) => Err(format!("storage: {e}")),
        },
        Err(e) => Err(e),
    };
    if let Err(e) = acme.storage.unlock(name, owner).await {
        warn!("acme: cannot release the order lock of {name}: {e}");
    }
    match result {
        Ok(cert) => {
            acme.install(name, Arc::new(cert));
            acme.metrics.issued.inc();
            state.failures = 0;
            Instant::now()
        }
        Err(e) => failed(acme, name, state, &e),
    }
}

/// Counts a failure; the current certificate stays served.
fn failed(acme: &Acme, name: &str, state: &mut NameState, why: &str) -> Instant {
    acme.metrics.failed.inc();
    state.failures += 1;
    let doubling = 2u32.saturating_pow(state.failures - 1);
    let backoff = acme
        .settings
        .retry
        .saturating_mul(doubling)
        .min(MAX_BACKOFF);
    // Half to all of the backoff, so instances that failed together spread.
    let wait = backoff.mul_f64(0.5 + fastrand::f64() / 2.0);
    warn!(
        "acme: no certificate for {name} ({why}); failure {} in a row, next try in {:.0} s",
        state.failures,
        wait.as_secs_f64()
    );
    Instant::now() + wait
}

/// Serves the stored certificate of `name` when it expires later than the
/// one served.
async fn load_stored(acme: &Acme, name: &str) {
    let stored = match acme.storage.certificate(name).await {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            warn!("acme: cannot read the stored certificate of {name}: {e}");
            return;
        }
    };
    match stored.cert_key() {
        Ok(cert) => {
            let served = acme.certificate(name).map(|c| c.not_after());
            if served.is_none_or(|s| cert.not_after() > s) {
                acme.install(name, Arc::new(cert));
            }
        }
        Err(e) => warn!("acme: the stored certificate of {name} is unusable: {e}"),
    }
}

/// How long until `name` is due for an order: zero when it has no
/// certificate or is within its renewal window.
fn due_in(acme: &Acme, name: &str, state: &NameState) -> Duration {
    let Some(cert) = acme.certificate(name) else {
        return Duration::ZERO;
    };
    let renew_at =
        cert.not_after() - acme.settings.renew_before.as_secs() as i64 - state.jitter as i64;
    let now = unix_now() as i64;
    Duration::from_secs(renew_at.saturating_sub(now).max(0) as u64)
}
