//! API keys (`auth: api_key`, or alongside a token mode): machine clients
//! present a key, the gateway finds its consumer by the key's SHA-256,
//! and the consumer becomes the request's identity.
//!
//! Consumers come from `consumers/*.yaml` (`{name, key_sha256, scopes,
//! roles}`, reloaded like routes) and, with `api_keys.lookup_key`, from
//! TokenginX records (`{consumer, scopes, roles}` JSON, cached for
//! `cache_ms` like every TokenginX lookup, so a deleted record refuses the
//! key within it). Keys are never kept or logged in clear: only hashes are
//! compared.

use std::sync::Arc;

use ahash::AHashMap;
use http::{HeaderName, HeaderValue};
use pingora_http::RequestHeader;

use super::identity::{forward_headers, roles_at, scopes_of, Identity};
use super::template::Template;
use super::tokenginx::{Tokenginx, Verdict};
use super::{Failure, Reason};

/// The upstream header naming the consumer.
pub const CONSUMER_HEADER: HeaderName = HeaderName::from_static("x-consumer-id");

/// Where a request's key may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A header holding the key alone (`header:X-Api-Key`).
    Header(HeaderName),
    /// `Authorization: <scheme> <key>` (`authorization:ApiKey`).
    Authorization(String),
}

impl KeySource {
    /// Parses `header:NAME` or `authorization:SCHEME`.
    pub fn parse(text: &str) -> Option<KeySource> {
        match text.split_once(':')? {
            ("header", name) => HeaderName::try_from(name).ok().map(KeySource::Header),
            ("authorization", scheme)
                if !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                Some(KeySource::Authorization(scheme.to_string()))
            }
            _ => None,
        }
    }
}

/// The lower-case hex SHA-256 of `key`.
pub fn sha256_hex(key: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = boring::sha::sha256(key.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// A new random key: 32 bytes from the OS's generator, base64url.
pub fn new_key() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    boring::rand::rand_bytes(&mut bytes).expect("the OS random generator works");
    format!(
        "gh_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// One consumer of `consumers/*.yaml`.
#[derive(Debug, Clone)]
pub struct Consumer {
    /// Its name: the identity's subject and `X-Consumer-Id`.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Roles.
    pub roles: Vec<String>,
}

/// API-key authentication for one config.
pub struct ApiKeys {
    /// Where keys are looked for, in order.
    pub sources: Vec<KeySource>,
    /// The consumers of the consumer files, by key hash.
    consumers: AHashMap<String, Arc<Identity>>,
    /// TokenginX key of a consumer record (`{sha256}`), if looked up there.
    lookup_key: Option<Template>,
    /// `forward_identity` minus `sub`: scopes and roles go upstream too.
    forward: Vec<(String, HeaderName)>,
}

impl ApiKeys {
    /// API keys read from `sources`, with `consumers` (by key hash) and
    /// the TokenginX `lookup_key`, forwarding per `forward`.
    /// `None` when a consumer cannot be forwarded (see [`forward_headers`]).
    pub fn new(
        sources: Vec<KeySource>,
        consumers: Vec<(String, Consumer)>,
        lookup_key: Option<Template>,
        forward: &[(String, HeaderName)],
    ) -> Result<ApiKeys, String> {
        let forward: Vec<(String, HeaderName)> = forward
            .iter()
            .filter(|(claim, _)| claim != "sub")
            .cloned()
            .collect();
        let mut by_hash = AHashMap::with_capacity(consumers.len());
        for (hash, c) in consumers {
            let identity = consumer_identity(&forward, c.name.clone(), c.scopes, c.roles)
                .ok_or_else(|| format!("consumer `{}` cannot be forwarded", c.name))?;
            by_hash.insert(hash, Arc::new(identity));
        }
        Ok(ApiKeys {
            sources,
            consumers: by_hash,
            lookup_key,
            forward,
        })
    }

    /// The key `req` presents, if any (an empty one counts as none).
    pub fn find<'a>(&self, req: &'a RequestHeader) -> Option<&'a str> {
        self.sources.iter().find_map(|source| match source {
            KeySource::Header(name) => req
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|k| !k.is_empty()),
            KeySource::Authorization(scheme) => {
                let v = req
                    .headers
                    .get(http::header::AUTHORIZATION)?
                    .to_str()
                    .ok()?;
                let (s, key) = v.trim().split_once(' ')?;
                let key = key.trim();
                (s.eq_ignore_ascii_case(scheme) && !key.is_empty()).then_some(key)
            }
        })
    }

    /// Removes the presented key from a request going upstream: the
    /// gateway checked it, and the app must not see (or log) it.
    pub fn strip(&self, req: &mut RequestHeader) {
        for source in &self.sources {
            match source {
                KeySource::Header(name) => {
                    req.remove_header(name);
                }
                KeySource::Authorization(scheme) => {
                    let presented = req
                        .headers
                        .get(http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().split_once(' '))
                        .is_some_and(|(s, _)| s.eq_ignore_ascii_case(scheme));
                    if presented {
                        req.remove_header(&http::header::AUTHORIZATION);
                    }
                }
            }
        }
    }

    /// The consumer of `key`: from the consumer files, else TokenginX.
    pub async fn identify(
        &self,
        key: &str,
        store: Option<&Tokenginx>,
    ) -> Result<Arc<Identity>, Failure> {
        let hash = sha256_hex(key);
        if let Some(id) = self.consumers.get(&hash) {
            return Ok(Arc::clone(id));
        }
        let (Some(template), Some(store)) = (&self.lookup_key, store) else {
            return Err(Failure::Unauthenticated(Reason::ApiKey));
        };
        let Some(record_key) = template.render(|_| Some(hash.clone())) else {
            return Err(Failure::Unauthenticated(Reason::ApiKey));
        };
        let verdict = store
            .record(&record_key, |record| {
                let name = record.get("consumer")?.as_str()?.to_string();
                let scopes = scopes_of(record)
                    .into_iter()
                    .chain(
                        record
                            .get("scopes")
                            .and_then(|s| s.as_array())
                            .into_iter()
                            .flatten()
                            .filter_map(|s| s.as_str().map(str::to_string)),
                    )
                    .collect();
                let roles = roles_at(record, "roles");
                consumer_identity(&self.forward, name, scopes, roles)
            })
            .await;
        match verdict {
            Verdict::Found(Some(id)) => Ok(id),
            Verdict::Found(None) | Verdict::Missing => {
                Err(Failure::Unauthenticated(Reason::ApiKey))
            }
            // Without its record a key proves nothing, whatever `on_error` says.
            Verdict::Error => Err(Failure::Unavailable("the API-key store is unavailable")),
        }
    }
}

/// The identity of a consumer: subject and `X-Consumer-Id` its name,
/// scopes and roles forwarded as `forward_identity` says.
fn consumer_identity(
    forward: &[(String, HeaderName)],
    name: String,
    scopes: Vec<String>,
    roles: Vec<String>,
) -> Option<Identity> {
    let mut headers = forward_headers(forward, &name, &scopes, &roles, &serde_json::Value::Null)?;
    headers.push((CONSUMER_HEADER, HeaderValue::try_from(name.as_str()).ok()?));
    Some(Identity {
        subject: name,
        scopes,
        roles,
        headers,
        expires_at: u64::MAX,
        session_key: None,
        consumer: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_in_their_sources_and_hashed() {
        let keys = ApiKeys::new(
            vec![
                KeySource::parse("header:X-Api-Key").unwrap(),
                KeySource::parse("authorization:ApiKey").unwrap(),
            ],
            vec![],
            None,
            &[],
        )
        .unwrap();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(keys.find(&req), None);
        req.insert_header("authorization", "ApiKey  k-2 ").unwrap();
        assert_eq!(keys.find(&req), Some("k-2"));
        req.insert_header("x-api-key", "k-1").unwrap();
        assert_eq!(keys.find(&req), Some("k-1"));
        req.insert_header("authorization", "Bearer eyJ").unwrap();
        req.remove_header("x-api-key");
        assert_eq!(keys.find(&req), None);
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(KeySource::parse("query:key"), None);
    }
}
