//! Why a request was refused authentication or authorization: the closed
//! set of reason codes. The `reason` label of
//! `gatehouse_auth_failures_total` and the text of the JSON refusal both
//! come from here, so [`crate::auth`] (which produces reasons) and
//! [`crate::metrics`] (which counts them) depend on this module and not on
//! each other.

/// Why authentication failed: the `reason` label of
/// `gatehouse_auth_failures_total`. The set is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No token.
    Missing,
    /// Not a parsable token, or too long.
    Malformed,
    /// Bad signature.
    Signature,
    /// `exp` passed.
    Expired,
    /// `nbf` or `iat` in the future.
    NotYetValid,
    /// Unknown `iss`.
    Issuer,
    /// `aud` not accepted.
    Audience,
    /// `alg` not allowed, or not the key's.
    Algorithm,
    /// No key with that `kid`.
    UnknownKey,
    /// Session or opaque token not in TokenginX.
    Session,
    /// A required scope is missing.
    Scope,
    /// No accepted role.
    Role,
    /// An API key no consumer has (or one revoked).
    ApiKey,
    /// Client IP refused.
    Ip,
}

impl Reason {
    /// How many reasons there are (`Reason::Ip` is the last; a reason
    /// added after it is still counted, by a lookup in the family).
    pub const COUNT: usize = Reason::Ip as usize + 1;

    /// The reasons a token check can give (every one but [`Reason::Ip`]).
    pub const TOKEN: [Reason; 12] = [
        Reason::Missing,
        Reason::Malformed,
        Reason::Signature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::Issuer,
        Reason::Audience,
        Reason::Algorithm,
        Reason::UnknownKey,
        Reason::Session,
        Reason::Scope,
        Reason::Role,
    ];

    /// Every reason, in declaration order (`ALL[r as usize] == r`).
    pub const ALL: [Reason; Reason::COUNT] = [
        Reason::Missing,
        Reason::Malformed,
        Reason::Signature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::Issuer,
        Reason::Audience,
        Reason::Algorithm,
        Reason::UnknownKey,
        Reason::Session,
        Reason::Scope,
        Reason::Role,
        Reason::ApiKey,
        Reason::Ip,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::Signature => "signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Issuer => "issuer",
            Reason::Audience => "audience",
            Reason::Algorithm => "algorithm",
            Reason::UnknownKey => "unknown_key",
            Reason::Session => "session",
            Reason::Scope => "scope",
            Reason::Role => "role",
            Reason::ApiKey => "api_key",
            Reason::Ip => "ip",
        }
    }

    /// Text for the JSON error's `message`.
    pub fn message(self) -> &'static str {
        match self {
            Reason::Missing => "no access token was presented",
            Reason::Malformed => "the access token is malformed",
            Reason::Signature => "the access token's signature is invalid",
            Reason::Expired => "the access token has expired",
            Reason::NotYetValid => "the access token is not valid yet",
            Reason::Issuer => "the access token's issuer is not trusted",
            Reason::Audience => "the access token is not meant for this gateway",
            Reason::Algorithm => "the access token's algorithm is not allowed",
            Reason::UnknownKey => "the access token's signing key is unknown",
            Reason::Session => "the session has ended",
            Reason::Scope => "the access token lacks a required scope",
            Reason::Role => "the caller lacks a required role",
            Reason::ApiKey => "the API key is unknown or revoked",
            Reason::Ip => "your address is not allowed on this route",
        }
    }
}
