//! Logout: the refresh token revoked at the server (RFC 7009), the session
//! deleted, the cookie cleared, and the browser sent through the server's
//! RP-initiated logout when it has one.

use pingora_http::RequestHeader;

use super::cookies;
use super::secrets::is_random_shaped;
use super::token_endpoint::revoke;
use super::{same_origin, OauthClient, OauthError, Redirect};

impl OauthClient {
    /// `POST logout_path` from this origin.
    pub async fn logout(&self, req: &RequestHeader, origin: &str) -> Result<Redirect, OauthError> {
        if !same_origin(req, origin) {
            return Err(OauthError::Csrf);
        }
        let jar = Self::jar(origin);
        let md = self.discovery.metadata();
        let id =
            cookies::get(req, &jar.name(&self.settings.cookie)).filter(|v| is_random_shaped(v));
        let mut id_token = None;
        if let Some(id) = id {
            if let Ok(Some(record)) = self.store.session(id).await {
                let endpoint = md.as_ref().and_then(|m| m.revocation_endpoint.as_deref());
                if let (Some(endpoint), Some(token)) = (endpoint, &record.refresh_token) {
                    revoke(&self.http, &self.settings, endpoint, token).await;
                }
                id_token = record.id_token;
            }
            self.store
                .delete_session(id)
                .await
                .map_err(|_| OauthError::Unavailable)?;
            self.forget(id);
        }
        self.metrics.logouts.inc();
        let after = format!("{origin}{}", self.settings.post_logout_redirect);
        let location = match (
            md.as_ref().and_then(|m| m.end_session_endpoint.as_deref()),
            id_token,
        ) {
            (Some(end), Some(hint)) => match url::Url::parse(end) {
                Ok(mut url) => {
                    url.query_pairs_mut()
                        .append_pair("id_token_hint", &hint)
                        .append_pair("post_logout_redirect_uri", &after)
                        .append_pair("client_id", &self.settings.client_id);
                    url.into()
                }
                Err(_) => self.settings.post_logout_redirect.clone(),
            },
            _ => self.settings.post_logout_redirect.clone(),
        };
        Ok(Redirect {
            status: 303,
            location,
            cookies: vec![jar.clear(&self.settings.cookie)],
        })
    }
}
