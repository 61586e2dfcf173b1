//! JWT verification: issuer by `iss`, algorithm pinned by the issuer's
//! allow-list and the key's type, signature, `exp`/`nbf`/`iat` with
//! leeway, audience. Produces the caller's [`Identity`].

use std::sync::Arc;

use base64::Engine;
use http::HeaderName;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::identity::{forward_headers, roles_at, scopes_of, Identity};
use super::jwks::{KeyStore, Lookup};
use super::template::Template;
use super::{Failure, Reason};

/// Where an issuer's keys come from.
pub enum IssuerKeys {
    /// An HMAC secret from config.
    Secret(DecodingKey),
    /// The issuer's JWKS.
    Jwks(Arc<KeyStore>),
}

/// A trusted issuer, compiled.
pub struct Issuer {
    /// Must equal `iss`.
    pub issuer: String,
    /// The token's `aud` must contain one (when non-empty).
    pub audiences: Vec<String>,
    /// Allowed algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Verification keys.
    pub keys: IssuerKeys,
    /// Claim path of the roles.
    pub roles_claim: String,
}

/// Verifies tokens of the configured issuers.
pub struct Verifier {
    /// The issuers, matched by `iss`.
    pub issuers: Vec<Issuer>,
    /// Clock skew tolerated.
    pub leeway_seconds: u64,
    /// `claim -> header` of `forward_identity`.
    pub forward: Vec<(String, HeaderName)>,
    /// TokenginX key of a JWT's session, when TokenginX is configured.
    pub session_key: Option<Template>,
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

fn b64(part: &str) -> Result<Vec<u8>, Failure> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| Failure::Unauthenticated(Reason::Malformed))
}

impl Verifier {
    /// Verifies `token` at time `now` (Unix seconds).
    pub async fn verify(&self, token: &str, now: u64) -> Result<Identity, Failure> {
        self.verify_claims(token, now)
            .await
            .map(|(identity, _)| identity)
    }

    /// [`Verifier::verify`], also giving the verified claim set (an
    /// id_token's `nonce` is checked by its caller).
    pub async fn verify_claims(&self, token: &str, now: u64) -> Result<(Identity, Value), Failure> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(_sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Failure::Unauthenticated(Reason::Malformed));
        };
        let header: JoseHeader = serde_json::from_slice(&b64(h)?)
            .map_err(|_| Failure::Unauthenticated(Reason::Malformed))?;
        let alg: Algorithm = header
            .alg
            .parse()
            .map_err(|_| Failure::Unauthenticated(Reason::Algorithm))?;
        let claims: Value = serde_json::from_slice(&b64(p)?)
            .map_err(|_| Failure::Unauthenticated(Reason::Malformed))?;
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer == iss)
            .ok_or(Failure::Unauthenticated(Reason::Issuer))?;
        if !issuer.algorithms.contains(&alg) {
            return Err(Failure::Unauthenticated(Reason::Algorithm));
        }
        let key_entry;
        let key = match &issuer.keys {
            IssuerKeys::Secret(k) => k,
            IssuerKeys::Jwks(store) => {
                match store.find_or_refetch(header.kid.as_deref(), alg).await {
                    Lookup::Found(k) => {
                        key_entry = k;
                        &key_entry.key
                    }
                    Lookup::WrongAlgorithm => {
                        return Err(Failure::Unauthenticated(Reason::Algorithm))
                    }
                    Lookup::Unknown => return Err(Failure::Unauthenticated(Reason::UnknownKey)),
                    Lookup::Empty => {
                        return Err(Failure::Unavailable(
                            "the issuer's keys could not be fetched",
                        ))
                    }
                }
            }
        };
        if key.family() != alg.family() {
            return Err(Failure::Unauthenticated(Reason::Algorithm));
        }
        let mut v = Validation::new(alg);
        v.leeway = self.leeway_seconds;
        v.validate_nbf = true;
        v.set_issuer(&[&issuer.issuer]);
        if issuer.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&issuer.audiences);
        }
        v.set_required_spec_claims(&["exp"]);
        let claims = jsonwebtoken::decode::<Value>(token, key, &v)
            .map_err(|e| Failure::Unauthenticated(reason_of(e.kind())))?
            .claims;
        let iat = claims.get("iat").and_then(Value::as_u64);
        if iat.is_some_and(|iat| iat > now.saturating_add(self.leeway_seconds)) {
            return Err(Failure::Unauthenticated(Reason::NotYetValid));
        }
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(Failure::Unauthenticated(Reason::Malformed))?
            .to_string();
        let scopes = scopes_of(&claims);
        let roles = roles_at(&claims, &issuer.roles_claim);
        let headers = forward_headers(&self.forward, &subject, &scopes, &roles, &claims)
            .ok_or(Failure::Unauthenticated(Reason::Malformed))?;
        let identity = Identity {
            headers,
            session_key: self
                .session_key
                .as_ref()
                .and_then(|t| t.render_claims(&claims)),
            subject,
            scopes,
            roles,
            expires_at: exp.saturating_add(self.leeway_seconds),
            consumer: false,
        };
        Ok((identity, claims))
    }
}

/// The metric reason of a jsonwebtoken error.
fn reason_of(kind: &ErrorKind) -> Reason {
    match kind {
        ErrorKind::ExpiredSignature => Reason::Expired,
        ErrorKind::ImmatureSignature => Reason::NotYetValid,
        ErrorKind::InvalidIssuer => Reason::Issuer,
        ErrorKind::InvalidAudience => Reason::Audience,
        ErrorKind::InvalidSignature => Reason::Signature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => Reason::Algorithm,
        _ => Reason::Malformed,
    }
}
