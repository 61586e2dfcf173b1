//! The header names the gateway removes from a message, found in one pass.
//!
//! Removing by name costs a parse and a hash of the name in each of
//! Pingora's two header maps (values and case), whether or not the header
//! is there, and most messages carry none of the names the gateway
//! removes. So each direction walks the message's own names once, decides
//! per name with string compares, and removes only what it found (usually
//! nothing, and then nothing is allocated).

use http::header::{self, HeaderName};
use http::HeaderMap;

/// The tokens of `Connection` (RFC 9110 §7.6.1) that name a header to
/// remove: not the `close`/`keep-alive` options every client sends.
pub fn connection_tokens(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| {
            !t.is_empty()
                && !t.eq_ignore_ascii_case("close")
                && !t.eq_ignore_ascii_case("keep-alive")
        })
        .collect()
}

/// Whether `name` (lower case, as a [`HeaderName`] holds it) is one of
/// `tokens` and may be removed for it: framing headers are Pingora's to
/// manage, never removed by a `Connection` game.
pub fn listed(name: &str, tokens: &[&str]) -> bool {
    !matches!(name, "content-length" | "transfer-encoding" | "host")
        && tokens.iter().any(|t| t.eq_ignore_ascii_case(name))
}

/// The names in `headers` that `doomed` picks, to remove afterwards.
pub fn pick(headers: &HeaderMap, mut doomed: impl FnMut(&HeaderName) -> bool) -> Vec<HeaderName> {
    headers.keys().filter(|k| doomed(k)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_tokens_skip_the_options_every_client_sends() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, "keep-alive, X-Hop".parse().unwrap());
        h.append(header::CONNECTION, "close,, te".parse().unwrap());
        assert_eq!(connection_tokens(&h), ["X-Hop", "te"]);
    }

    #[test]
    fn listed_names_never_include_framing() {
        let tokens = ["X-Hop", "Content-Length", "host"];
        assert!(listed("x-hop", &tokens));
        assert!(!listed("content-length", &tokens));
        assert!(!listed("host", &tokens));
        assert!(!listed("x-other", &tokens));
    }
}
