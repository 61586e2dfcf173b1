//! Certificates without a human (RFC 8555): the gateway orders a
//! certificate for each name in `acme.domains` from the ACME server,
//! answers its challenges itself (HTTP-01 on every listener before
//! routing, TLS-ALPN-01 in the TLS handshake), serves the result by SNI on
//! every TLS listener from the next handshake on, and renews it
//! `renew_before_days` before it expires.
//!
//! | module | holds |
//! |---|---|
//! | [`storage`] | account, certificates, order locks and HTTP-01 answers, in a directory or the TokenginX store |
//! | [`order`] | one order with `instant-acme`: account, challenges, finalisation |
//! | [`renew`] | the background loop: load, order when due, back off after failures |
//! | [`alpn`] | the TLS-ALPN-01 challenge certificate |

pub mod alpn;
pub mod order;
pub mod renew;
pub mod storage;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::{IntCounter, IntGaugeVec};
use rustls::pki_types::CertificateDer;

use crate::config::acme_file::ChallengeKind;
use crate::tls::CertKey;
use storage::Storage;

/// The path prefix of HTTP-01 answers.
pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Settings of `acme`.
pub struct AcmeSettings {
    /// The directory URL.
    pub directory_url: String,
    /// Roots for the ACME server's HTTPS; `None`: the system's.
    pub ca_roots: Option<Vec<CertificateDer<'static>>>,
    /// Account contact URLs.
    pub contact: Vec<String>,
    /// One certificate per name.
    pub domains: Vec<String>,
    /// The challenge answered.
    pub challenge: ChallengeKind,
    /// Renew this long before expiry.
    pub renew_before: Duration,
    /// First wait after a failure.
    pub retry: Duration,
}

/// `gatehouse_acme_orders_total` and the expiry gauge.
pub struct AcmeMetrics {
    /// result="issued".
    pub issued: IntCounter,
    /// result="failed".
    pub failed: IntCounter,
    /// `gatehouse_tls_certificate_expiry_timestamp_seconds`.
    pub expiry: IntGaugeVec,
}

impl AcmeMetrics {
    /// The handles of `metrics`' ACME families.
    pub fn new(metrics: &crate::metrics::Metrics) -> AcmeMetrics {
        AcmeMetrics {
            issued: metrics.acme_orders.with_label_values(&["issued"]),
            failed: metrics.acme_orders.with_label_values(&["failed"]),
            expiry: metrics.tls_certificate_expiry.clone(),
        }
    }
}

/// The ACME part of a running gateway; kept across reloads that do not
/// change `acme`.
pub struct Acme {
    /// Its settings.
    pub settings: AcmeSettings,
    /// Where its state is kept.
    pub storage: Storage,
    /// Certificates being served, by name.
    certs: ArcSwap<HashMap<String, Arc<CertKey>>>,
    /// HTTP-01 answers this instance published, by token.
    answers: Mutex<HashMap<String, String>>,
    /// TLS-ALPN-01 certificates, by name.
    alpn: Mutex<HashMap<String, Arc<CertKey>>>,
    /// Its metrics.
    pub metrics: AcmeMetrics,
    started: AtomicBool,
    /// This instance's name in order locks.
    pub owner: String,
}

impl Acme {
    /// An ACME client that does nothing until [`Acme::start`].
    pub fn new(settings: AcmeSettings, storage: Storage, metrics: AcmeMetrics) -> Acme {
        Acme {
            settings,
            storage,
            certs: ArcSwap::from_pointee(HashMap::new()),
            answers: Mutex::new(HashMap::new()),
            alpn: Mutex::new(HashMap::new()),
            metrics,
            started: AtomicBool::new(false),
            owner: format!("{}-{:016x}", std::process::id(), fastrand::u64(..)),
        }
    }

    /// Starts the renewal loop on the current runtime (once).
    pub fn start(self: &Arc<Self>) {
        if !self.started.swap(true, Relaxed) {
            tokio::spawn(renew::run(Arc::downgrade(self)));
        }
    }

    /// The certificate served for `name`, when one was obtained.
    pub fn certificate(&self, name: &str) -> Option<Arc<CertKey>> {
        self.certs.load().get(name).cloned()
    }

    /// The TLS-ALPN-01 certificate for `name`, while its challenge is open.
    pub fn alpn_certificate(&self, name: &str) -> Option<Arc<CertKey>> {
        lock(&self.alpn).get(name).cloned()
    }

    /// The HTTP-01 answer for `token`: this instance's, else one another
    /// instance published in the shared storage.
    pub async fn answer(&self, token: &str) -> Option<String> {
        // Tokens are base64url (RFC 8555 §8.3); anything else never reaches
        // the storage, where a token names a file.
        let valid = !token.is_empty()
            && token.len() <= 256
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return None;
        }
        if let Some(a) = lock(&self.answers).get(token) {
            return Some(a.clone());
        }
        match self.storage.challenge(token).await {
            Ok(a) => a,
            Err(e) => {
                log::warn!("acme: cannot read a challenge answer from the storage: {e}");
                None
            }
        }
    }

    /// Serves `cert` for `name` from the next handshake on.
    fn install(&self, name: &str, cert: Arc<CertKey>) {
        self.metrics
            .expiry
            .with_label_values(&[name])
            .set(cert.not_after());
        let mut next = HashMap::clone(&self.certs.load());
        next.insert(name.to_string(), cert);
        self.certs.store(Arc::new(next));
    }

    /// Names with a certificate served, and when each expires.
    pub fn expiries(&self) -> Vec<(String, i64)> {
        self.certs
            .load()
            .iter()
            .map(|(n, c)| (n.clone(), c.not_after()))
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
