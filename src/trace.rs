//! Request ids and W3C trace context.
//!
//! A client's `X-Request-Id` is kept when it is sane (1–128 characters of
//! `[A-Za-z0-9._:-]`), otherwise the gateway makes one. A valid incoming
//! `traceparent` keeps its trace id and flags and gets the gateway's own
//! span id as parent; without one, a new trace starts.

use std::fmt::Write;

/// Longest client request id kept.
const MAX_REQUEST_ID: usize = 128;

/// The request id to use: the client's if sane, else a new one.
pub fn request_id(client: Option<&[u8]>) -> String {
    match client {
        Some(id) if is_sane_id(id) => String::from_utf8_lossy(id).into_owned(),
        _ => hex_id(fastrand::u128(..), 32),
    }
}

fn is_sane_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn hex_id(v: u128, digits: usize) -> String {
    let mut s = String::with_capacity(digits);
    let _ = write!(s, "{v:0width$x}", width = digits);
    s
}

/// The trace context this hop forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 hex digits, shared by every hop of the trace.
    pub trace_id: String,
    /// 16 hex digits: the gateway's span, parent of the upstream's.
    pub span_id: String,
    /// Trace flags (`01` = sampled).
    pub flags: String,
}

impl TraceContext {
    /// Continues the client's trace if its `traceparent` is valid, else starts one.
    pub fn continue_or_start(traceparent: Option<&[u8]>) -> TraceContext {
        let span_id = hex_id(fastrand::u64(1..) as u128, 16);
        if let Some((trace_id, flags)) = traceparent.and_then(parse_traceparent) {
            return TraceContext {
                trace_id,
                span_id,
                flags,
            };
        }
        TraceContext {
            trace_id: hex_id(fastrand::u128(1..), 32),
            span_id,
            flags: "01".into(),
        }
    }

    /// The `traceparent` header value for the upstream request.
    pub fn header(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

/// Trace id and flags of a valid version-00 `traceparent`.
fn parse_traceparent(v: &[u8]) -> Option<(String, String)> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let mut parts = s.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |p: &str, n: usize| {
        p.len() == n && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let valid = version == "00"
        && parts.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then(|| (trace.to_string(), flags.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert_eq!(request_id(Some(b"abc-123")), "abc-123");
        let made = request_id(Some(b"has space"));
        assert_eq!(made.len(), 32);
        assert_ne!(request_id(None), request_id(None));
        assert_eq!(request_id(Some(&[b'a'; 129])).len(), 32);
    }

    #[test]
    fn traceparent_is_continued_or_started() {
        let incoming = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceContext::continue_or_start(Some(incoming));
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(t.span_id, "00f067aa0ba902b7");
        assert!(t
            .header()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"garbage",
        ] {
            let t = TraceContext::continue_or_start(Some(bad));
            assert_ne!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(t.header().len(), 55);
        }
    }
}
