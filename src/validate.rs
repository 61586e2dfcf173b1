//! Request validation (route key `validate: {json_schema}`): a JSON body
//! is read whole, checked against the route's schema (compiled at load by
//! the `jsonschema` crate), and only then sent on, from the replay buffer
//! Pingora keeps for retries. A body that does not match gets 400
//! `invalid_request` naming the first violations (where, and what the
//! schema wanted, never the value sent).

use std::sync::Arc;

use jsonschema::Validator;
use pingora_proxy::Session;

use crate::reject::Rejection;

/// The largest validated body: Pingora's replay buffer (64 KiB) holds it
/// until it goes upstream.
pub const MAX_VALIDATED_BODY: usize = 64 * 1024;

/// Violations listed in a refusal, at most.
const MAX_VIOLATIONS: usize = 5;

/// A route's compiled schema.
#[derive(Clone)]
pub struct BodySchema {
    /// The validator.
    pub validator: Arc<Validator>,
}

impl std::fmt::Debug for BodySchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodySchema")
    }
}

/// One way a body fails its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON Pointer to the offending part of the body (`""` for the whole).
    pub path: String,
    /// What the schema wanted, without the value sent.
    pub message: String,
}

impl Violation {
    fn whole(message: impl Into<String>) -> Violation {
        Violation {
            path: String::new(),
            message: message.into(),
        }
    }
}

/// Reads `session`'s body (at most `limit` bytes) and checks it against
/// `schema`. A request without a body passes unless its method carries
/// one (POST, PUT, PATCH).
pub async fn check(
    session: &mut Session,
    schema: &BodySchema,
    limit: usize,
) -> Result<(), Rejection> {
    let req = session.req_header();
    let wants_body = matches!(
        req.method,
        http::Method::POST | http::Method::PUT | http::Method::PATCH
    );
    let is_json = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| {
            t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
        });
    let downstream = session.as_downstream_mut();
    if downstream.is_body_empty() {
        return if wants_body {
            Err(invalid(Violation::whole("a JSON body is required")))
        } else {
            Ok(())
        };
    }
    if !is_json {
        return Err(invalid(Violation::whole(
            "the body must be JSON (Content-Type: application/json)",
        )));
    }
    downstream.enable_retry_buffering();
    let limit = limit.min(MAX_VALIDATED_BODY);
    let mut body = Vec::new();
    loop {
        match downstream.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(Rejection::BodyTooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if e.etype() == &pingora_core::ErrorType::ReadTimedout => {
                return Err(Rejection::ClientTimeout)
            }
            Err(_) => return Err(Rejection::BadRequest),
        }
    }
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        invalid(Violation::whole(format!(
            "the body is not JSON: line {}, column {}",
            e.line(),
            e.column()
        )))
    })?;
    let violations: Vec<Violation> = schema
        .validator
        .iter_errors(&value)
        .take(MAX_VIOLATIONS)
        .map(|e| Violation {
            path: e.instance_path().to_string(),
            message: e.masked().to_string(),
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Rejection::InvalidRequest(violations))
    }
}

fn invalid(v: Violation) -> Rejection {
    Rejection::InvalidRequest(vec![v])
}
