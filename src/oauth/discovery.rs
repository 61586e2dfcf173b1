//! The authorization server's metadata: fetched from
//! `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery),
//! else `/.well-known/oauth-authorization-server` (RFC 8414), retried in
//! the background until it works and refreshed hourly after.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use log::warn;
use serde::Deserialize;

/// What the gateway uses of the server's metadata.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    /// Must equal the configured issuer.
    pub issuer: String,
    /// Where browsers log in.
    pub authorization_endpoint: String,
    /// Where codes and refresh tokens are exchanged.
    pub token_endpoint: String,
    /// The keys of id_tokens.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// RFC 7009 token revocation.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// id_token signature algorithms the server may use.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// Where discovery stands, for readiness and the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryState {
    /// Not fetched yet.
    Pending,
    /// The last fetch worked.
    Ok,
    /// The last fetch failed; why.
    Error(String),
}

impl DiscoveryState {
    /// `pending`, `ok` or `error`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DiscoveryState::Pending => "pending",
            DiscoveryState::Ok => "ok",
            DiscoveryState::Error(_) => "error",
        }
    }
}

/// The metadata once known, and the state of the last fetch.
pub struct Discovery {
    issuer: String,
    http: reqwest::Client,
    metadata: ArcSwapOption<Metadata>,
    state: Mutex<DiscoveryState>,
}

/// Pause between failed fetches: doubles from one second to this.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Pause between fetches once one worked.
const REFRESH: Duration = Duration::from_secs(3600);

impl Discovery {
    /// Discovery of `issuer`'s metadata through `http`; nothing is fetched
    /// until [`Discovery::spawn`].
    pub fn new(issuer: &str, http: reqwest::Client) -> Discovery {
        Discovery {
            issuer: issuer.trim_end_matches('/').to_string(),
            http,
            metadata: ArcSwapOption::empty(),
            state: Mutex::new(DiscoveryState::Pending),
        }
    }

    /// The metadata, if a fetch has worked.
    pub fn metadata(&self) -> Option<Arc<Metadata>> {
        self.metadata.load_full()
    }

    /// The state of the last fetch.
    pub fn state(&self) -> DiscoveryState {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or(DiscoveryState::Pending)
    }

    /// Fetches until it works, then hourly, while the client lives.
    pub fn spawn(self: &Arc<Self>, on_change: impl Fn(&Metadata) + Send + Sync + 'static) {
        let weak: Weak<Discovery> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut retry = Duration::from_secs(1);
            loop {
                let Some(d) = weak.upgrade() else { return };
                let pause = match d.fetch().await {
                    Ok(m) => {
                        on_change(&m);
                        d.metadata.store(Some(Arc::new(m)));
                        d.set_state(DiscoveryState::Ok);
                        retry = Duration::from_secs(1);
                        REFRESH
                    }
                    Err(e) => {
                        warn!("oauth: discovery of {} failed: {e}", d.issuer);
                        d.set_state(DiscoveryState::Error(e));
                        let pause = retry;
                        retry = (retry * 2).min(MAX_RETRY);
                        pause
                    }
                };
                drop(d);
                tokio::time::sleep(pause).await;
            }
        });
    }

    fn set_state(&self, state: DiscoveryState) {
        if let Ok(mut s) = self.state.lock() {
            *s = state;
        }
    }

    async fn fetch(&self) -> Result<Metadata, String> {
        let mut last = String::new();
        for path in [
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
        ] {
            let url = format!("{}{path}", self.issuer);
            match self.fetch_one(&url).await {
                Ok(m) if m.issuer.trim_end_matches('/') == self.issuer => return Ok(m),
                Ok(m) => {
                    return Err(format!(
                        "{url} names issuer `{}`, not the configured `{}`",
                        m.issuer, self.issuer
                    ))
                }
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        Err(last)
    }

    async fn fetch_one(&self, url: &str) -> Result<Metadata, String> {
        let resp = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&body).map_err(|e| format!("not server metadata: {e}"))
    }
}
