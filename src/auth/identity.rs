//! Who a verified token speaks for, and the upstream headers that say so.

use http::{HeaderName, HeaderValue};
use serde_json::Value;

/// A verified caller. Built once per token and shared from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub` of a JWT, `user_id` of an opaque token's record.
    pub subject: String,
    /// Granted scopes (`scope` string or `scp` array).
    pub scopes: Vec<String>,
    /// Roles (from the issuer's `roles_claim`).
    pub roles: Vec<String>,
    /// Headers forwarded upstream, per `forward_identity`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Unix time after which the identity must not be used.
    pub expires_at: u64,
    /// The TokenginX key of this JWT's session, when its claims name one.
    pub session_key: Option<String>,
    /// An API key's consumer (the subject is its name), not a user.
    pub consumer: bool,
}

impl Identity {
    /// Whether every scope in `required` was granted.
    pub fn has_scopes(&self, required: &[String]) -> bool {
        required.iter().all(|r| self.scopes.iter().any(|s| s == r))
    }

    /// Whether any role in `accepted` is held (an empty list accepts all).
    pub fn has_any_role(&self, accepted: &[String]) -> bool {
        accepted.is_empty() || accepted.iter().any(|r| self.roles.iter().any(|s| s == r))
    }
}

/// The scopes of a claim set: a space-separated `scope` string, or an `scp` array.
pub fn scopes_of(claims: &Value) -> Vec<String> {
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s.split_whitespace().map(str::to_string).collect(),
        (Some(Value::Array(a)), _) | (_, Some(Value::Array(a))) => strings(a),
        (_, Some(Value::String(s))) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// The roles at `path` (dot-separated, e.g. `realm_access.roles`): an array
/// of strings or one string.
pub fn roles_at(claims: &Value, path: &str) -> Vec<String> {
    let found = path.split('.').try_fold(claims, |v, part| v.get(part));
    match found {
        Some(Value::Array(a)) => strings(a),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn strings(a: &[Value]) -> Vec<String> {
    a.iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Identity headers for the upstream: each `(claim, header)` of
/// `forward_identity` whose claim has a value. `sub`, `scope` and `roles`
/// come from the identity (so opaque tokens forward them too); other claims
/// are read from the claim set as text.
///
/// `None` when the identity cannot be forwarded with one unambiguous
/// reading, and so must be refused rather than forwarded half-empty: an
/// empty subject, a control character (CR, LF, NUL, …) in any forwarded
/// value, or a role with a `,` (roles go upstream comma-separated).
pub fn forward_headers(
    forward: &[(String, HeaderName)],
    subject: &str,
    scopes: &[String],
    roles: &[String],
    claims: &Value,
) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let clean = |s: &str| !s.bytes().any(|b| b < 0x20 || b == 0x7f);
    if subject.is_empty()
        || !clean(subject)
        || !scopes.iter().all(|s| clean(s))
        || !roles
            .iter()
            .all(|r| clean(r) && !r.is_empty() && !r.contains(','))
    {
        return None;
    }
    forward
        .iter()
        .filter_map(|(claim, header)| {
            let text = match claim.as_str() {
                "sub" => Some(subject.to_string()),
                "scope" => (!scopes.is_empty()).then(|| scopes.join(" ")),
                "roles" => (!roles.is_empty()).then(|| roles.join(",")),
                other => match claims.get(other) {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    Some(Value::Bool(b)) => Some(b.to_string()),
                    _ => None,
                },
            }?;
            Some(
                HeaderValue::try_from(text)
                    .ok()
                    .map(|v| (header.clone(), v)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scopes_and_roles_from_claims() {
        assert_eq!(
            scopes_of(&json!({"scope": "read admin"})),
            ["read", "admin"]
        );
        assert_eq!(scopes_of(&json!({"scp": ["a", "b"]})), ["a", "b"]);
        assert!(scopes_of(&json!({})).is_empty());
        let kc = json!({"realm_access": {"roles": ["ops", 7, "dev"]}, "roles": "one"});
        assert_eq!(roles_at(&kc, "realm_access.roles"), ["ops", "dev"]);
        assert_eq!(roles_at(&kc, "roles"), ["one"]);
        assert!(roles_at(&kc, "missing.path").is_empty());
    }

    #[test]
    fn forwarded_headers_skip_missing_values_and_refuse_unsafe_ones() {
        let forward = vec![
            ("sub".to_string(), HeaderName::from_static("x-user-id")),
            (
                "scope".to_string(),
                HeaderName::from_static("x-user-scopes"),
            ),
            ("roles".to_string(), HeaderName::from_static("x-user-roles")),
            ("email".to_string(), HeaderName::from_static("x-user-email")),
            ("tenant".to_string(), HeaderName::from_static("x-tenant")),
        ];
        let claims = json!({"email": "a@b.c"});
        let h = forward_headers(&forward, "u1", &["read".into()], &[], &claims).unwrap();
        let names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-user-id", "x-user-scopes", "x-user-email"]);
        let evil = json!({"tenant": "evil\r\nx: y"});
        assert!(forward_headers(&forward, "u1", &[], &[], &evil).is_none());
        for sub in ["", "u1\r\nX-Admin: 1", "u\0"] {
            assert!(
                forward_headers(&forward, sub, &[], &[], &claims).is_none(),
                "{sub:?}"
            );
        }
        let comma = ["ops,admin".to_string()];
        assert!(forward_headers(&forward, "u1", &[], &comma, &claims).is_none());
    }

    #[test]
    fn scope_and_role_checks() {
        let id = Identity {
            subject: "u".into(),
            scopes: vec!["read".into(), "admin".into()],
            roles: vec!["ops".into()],
            headers: vec![],
            expires_at: 0,
            session_key: None,
            consumer: false,
        };
        assert!(id.has_scopes(&["admin".into()]));
        assert!(!id.has_scopes(&["admin".into(), "write".into()]));
        assert!(id.has_any_role(&[]));
        assert!(id.has_any_role(&["dev".into(), "ops".into()]));
        assert!(!id.has_any_role(&["dev".into()]));
    }
}
