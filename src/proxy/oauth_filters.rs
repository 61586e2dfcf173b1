//! `request_filter`'s part of the gateway's own login: its endpoints
//! (callback, logout, login start) and the session-cookie authentication
//! of `auth: oauth` routes, with the CSRF rule for unsafe methods.

use std::sync::Arc;

use http::Method;
use pingora_http::RequestHeader;

use super::ctx::RequestCtx;
use crate::auth::{authorize, looks_like_jwt, Auth, Failure, Identity, Reason};
use crate::config::Route;
use crate::oauth::login::query_param;
use crate::oauth::session::LiveSession;
use crate::oauth::{cookies, same_origin, OauthClient};
use crate::reject::Rejection;
use crate::routing::Authority;

/// Where the request came from, as the login flow needs it.
pub struct Origin<'a> {
    /// The request.
    pub req: &'a RequestHeader,
    /// Its canonical Host.
    pub authority: &'a Authority<'a>,
    /// Whether the peer is a trusted proxy (its X-Forwarded-* believed).
    pub trusted: bool,
    /// Whether the client connection is TLS.
    pub tls: bool,
}

impl Origin<'_> {
    fn of(&self, oauth: &OauthClient) -> String {
        oauth.origin(
            self.req,
            self.tls,
            self.trusted,
            &self.authority.to_header(),
        )
    }
}

/// The gateway's OAuth endpoints: `Some(answer)` when `path` is one.
pub async fn endpoint(oauth: &OauthClient, from: &Origin<'_>, path: &str) -> Option<Rejection> {
    let s = &oauth.settings;
    let req = from.req;
    let now = crate::auth::now();
    let result = if path == s.callback_path {
        if !matches!(req.method, Method::GET | Method::HEAD) {
            return Some(Rejection::MethodNotAllowed("GET, HEAD".into()));
        }
        oauth.callback(req, &from.of(oauth), now).await
    } else if path == s.logout_path {
        if req.method != Method::POST {
            return Some(Rejection::MethodNotAllowed("POST".into()));
        }
        oauth.logout(req, &from.of(oauth)).await
    } else if path == s.login_path {
        if !matches!(req.method, Method::GET | Method::HEAD) {
            return Some(Rejection::MethodNotAllowed("GET, HEAD".into()));
        }
        let next = query_param(req.uri.query(), "next").unwrap_or_else(|| "/".into());
        oauth.begin_login(req, &from.of(oauth), &next).await
    } else {
        return None;
    };
    Some(match result {
        Ok(redirect) => Rejection::Redirect(Box::new(redirect)),
        Err(e) => e.into(),
    })
}

/// Authenticates a request to an `auth: oauth` route by its session
/// cookie. A bearer token goes the JWT way instead (`None` here).
/// On success, `ctx` carries the access token for the upstream.
pub async fn session_auth(
    auth: &Auth,
    oauth: &OauthClient,
    from: &Origin<'_>,
    route: &Route,
    ctx: &mut RequestCtx,
) -> Option<Result<Arc<Identity>, Rejection>> {
    let req = from.req;
    if req.headers.contains_key(http::header::AUTHORIZATION) {
        return None;
    }
    let secure = oauth.is_secure(req, from.tls, from.trusted);
    let failure = match cookies::get(req, oauth.session_cookie(secure)) {
        None => Failure::Unauthenticated(Reason::Missing),
        Some(id) => match oauth.session(id, crate::auth::now()).await {
            Ok(live) => {
                if !req.method.is_safe() && !same_origin(req, &from.of(oauth)) {
                    return Some(Err(Rejection::CsrfRejected));
                }
                let identity = match identity_of(auth, &live).await {
                    Ok(identity) => identity,
                    Err(f) => return Some(Err(f.into())),
                };
                match authorize(&identity, &route.policy) {
                    Ok(()) => {
                        if oauth.settings.forward_access_token {
                            ctx.oauth_authorization = Some(live.authorization.clone());
                        }
                        return Some(Ok(identity));
                    }
                    Err(f) => f,
                }
            }
            Err(f) => f,
        },
    };
    if let Some(reason) = failure.reason() {
        route.metrics.auth_failures.inc(reason);
    }
    Some(Err(match failure {
        Failure::Unauthenticated(reason) => {
            if route.policy.login && super::request_filters::is_navigation(req) {
                let origin = from.of(oauth);
                let mut target = ctx
                    .normalized_path
                    .clone()
                    .unwrap_or_else(|| req.uri.path().to_string());
                if let Some(q) = req.uri.query() {
                    target.push('?');
                    target.push_str(q);
                }
                match oauth.begin_login(req, &origin, &target).await {
                    Ok(r) => Rejection::Redirect(Box::new(r)),
                    Err(e) => e.into(),
                }
            } else {
                Rejection::Unauthenticated(reason)
            }
        }
        other => other.into(),
    }))
}

/// The identity of a session: its access token's when that is a JWT of a
/// configured `jwt` issuer (verified once, then from the token cache; an
/// invalid one is refused), else the id_token's, kept in the session.
async fn identity_of(auth: &Auth, live: &LiveSession) -> Result<Arc<Identity>, Failure> {
    let token = live.record.access_token.as_str();
    if auth.verifier.is_some() && looks_like_jwt(token) {
        match auth.jwt(token, crate::auth::now()).await {
            // A JWT of an issuer the `jwt` section does not name: the
            // id_token speaks for the session.
            Err(Failure::Unauthenticated(Reason::Issuer)) => {}
            other => return other,
        }
    }
    Ok(Arc::clone(&live.identity))
}
