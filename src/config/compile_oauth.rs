//! Validation and compilation of the `oauth:` block into the gateway's
//! [`OauthClient`].

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::compile::{Compiler, Parsed};
use super::file::MainFile;
use super::oauth_file::OauthFile;
use crate::auth::jwks::RefreshCounters;
use crate::auth::tokenginx::Tokenginx;
use crate::metrics::Metrics;
use crate::oauth::{is_local, OauthClient, OauthMetrics, OauthSettings};

/// Where `GET ?next=/path` starts a login, beside the callback.
const LOGIN_PATH: &str = "login";

impl Compiler<'_> {
    /// The OAuth client of `o`, keeping its sessions in `tokenginx` (in
    /// the process without it).
    pub(super) fn oauth(
        &mut self,
        main: &Parsed<MainFile>,
        o: &OauthFile,
        tokenginx: Option<&Arc<Tokenginx>>,
        forward: &[(String, HeaderName)],
        metrics: &Metrics,
    ) -> Option<OauthClient> {
        let before = self.errors.len();
        let url_ok = |u: &str| {
            url::Url::parse(u)
                .is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host().is_some())
        };
        if !url_ok(&o.issuer) {
            self.errors
                .push(main.err("oauth.issuer", "must be an http(s) URL"));
        }
        if o.client_id.is_empty() {
            self.errors
                .push(main.err("oauth.client_id", "must not be empty"));
        }
        let external_url = o
            .external_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_string());
        if let Some(u) = &external_url {
            let origin_only =
                url::Url::parse(u).is_ok_and(|p| p.path() == "/" && p.query().is_none());
            if !url_ok(u) || !origin_only {
                self.errors.push(main.err(
                    "oauth.external_url",
                    "must be an origin: scheme and host (and port), no path",
                ));
            }
        }
        for (key, path) in [
            ("oauth.callback_path", &o.callback_path),
            ("oauth.logout_path", &o.logout_path),
            ("oauth.post_logout_redirect", &o.post_logout_redirect),
        ] {
            if !is_local(path) {
                self.errors
                    .push(main.err(key, "must be a local path starting with `/`"));
            }
        }
        if o.callback_path == o.logout_path {
            self.errors
                .push(main.err("oauth.logout_path", "must differ from `callback_path`"));
        }
        let cookie_ok = !o.cookie.is_empty()
            && o.cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !cookie_ok {
            self.errors.push(main.err(
                "oauth.cookie",
                "must be a cookie name of letters, digits, `_` and `-`",
            ));
        }
        if o.scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            self.errors
                .push(main.err("oauth.scopes", "each scope must be one word"));
        }
        if !(60..=31_536_000).contains(&o.session_ttl_seconds) {
            self.errors.push(main.err(
                "oauth.session_ttl_seconds",
                "must be between 60 and 31536000",
            ));
        }
        if o.refresh_before_seconds > 3600 {
            self.errors
                .push(main.err("oauth.refresh_before_seconds", "must be at most 3600"));
        }
        self.millis(main, "oauth.timeout_ms", o.timeout_ms, 1, 60_000);
        if self.errors.len() > before {
            return None;
        }
        let callback_dir = o.callback_path.rsplit_once('/').map_or("", |(dir, _)| dir);
        let settings = OauthSettings {
            issuer: o.issuer.trim_end_matches('/').to_string(),
            client_id: o.client_id.clone(),
            client_secret: o.client_secret.clone(),
            client_auth: o.client_auth,
            scopes: o.scopes.clone(),
            callback_path: o.callback_path.clone(),
            logout_path: o.logout_path.clone(),
            login_path: format!("{callback_dir}/{LOGIN_PATH}"),
            post_logout_redirect: o.post_logout_redirect.clone(),
            external_url,
            cookie: o.cookie.clone(),
            session_ttl: o.session_ttl_seconds,
            refresh_before: o.refresh_before_seconds,
            forward_access_token: o.forward_access_token,
            timeout: Duration::from_millis(o.timeout_ms),
            roles_claim: o.roles_claim.clone(),
            leeway_seconds: main.content.jwt.as_ref().map_or(60, |j| j.leeway_seconds),
            forward: forward.to_vec(),
        };
        let oauth_metrics = OauthMetrics {
            logins: metrics.oauth_logins.clone(),
            refreshes: metrics.oauth_refreshes.clone(),
            logouts: metrics.oauth_logouts.clone(),
            jwks: RefreshCounters {
                ok: metrics
                    .jwks_refreshes
                    .with_label_values(&[&settings.issuer, "ok"]),
                error: metrics
                    .jwks_refreshes
                    .with_label_values(&[&settings.issuer, "error"]),
            },
        };
        if tokenginx.is_none() {
            log::warn!(
                "oauth: no `tokenginx` section: sessions are kept in this process, so only this gateway instance knows them"
            );
        }
        Some(OauthClient::new(
            settings,
            tokenginx.cloned(),
            oauth_metrics,
        ))
    }
}
