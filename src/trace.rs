//! Request ids and W3C trace context.
//!
//! A client's `X-Request-Id` is kept when it is sane (1–128 characters of
//! `[A-Za-z0-9._:-]`), otherwise the gateway makes one. A valid incoming
//! `traceparent` keeps its trace id and flags and gets the gateway's own
//! span id as parent; without one, a new trace starts.

use http::HeaderValue;

/// Longest client request id kept.
const MAX_REQUEST_ID: usize = 128;

/// The request id to use: the client's if sane, else a new one.
pub fn request_id(client: Option<&[u8]>) -> String {
    match client {
        Some(id) if is_sane_id(id) => String::from_utf8_lossy(id).into_owned(),
        _ => {
            let mut hex = [0u8; 32];
            write_hex(&mut hex, fastrand::u128(..));
            ascii(&hex).to_string()
        }
    }
}

fn is_sane_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Writes the low `out.len()` hex digits of `v`, lower case, zero-padded.
fn write_hex(out: &mut [u8], mut v: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(v & 15) as usize];
        v >>= 4;
    }
}

/// The bytes that the lower-case hex digits `hex` write (two per byte),
/// the inverse of [`write_hex`].
fn unhex<const N: usize>(hex: &[u8]) -> [u8; N] {
    let nibble = |d: u8| match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        _ => 0,
    };
    let mut bytes = [0; N];
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = nibble(pair[0]) << 4 | nibble(pair[1]);
    }
    bytes
}

/// `bytes` as text: only ever called on ASCII hex digits.
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// The trace context this hop forwards, held inline (no heap): it is made
/// for every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 32],
    span_id: [u8; 16],
    flags: [u8; 2],
    /// The caller's span id, when the trace was continued.
    parent: Option<[u8; 16]>,
}

impl TraceContext {
    /// Continues the client's trace if its `traceparent` is valid, else starts one.
    pub fn continue_or_start(traceparent: Option<&[u8]>, sample_ratio: f64) -> TraceContext {
        let mut span_id = [0u8; 16];
        write_hex(&mut span_id, u128::from(fastrand::u64(1..)));
        if let Some((trace_id, parent, flags)) = traceparent.and_then(parse_traceparent) {
            return TraceContext {
                trace_id,
                span_id,
                flags,
                parent: Some(parent),
            };
        }
        let mut trace_id = [0u8; 32];
        write_hex(&mut trace_id, fastrand::u128(1..));
        let sampled = sample_ratio >= 1.0 || fastrand::f64() < sample_ratio;
        TraceContext {
            trace_id,
            span_id,
            flags: if sampled { *b"01" } else { *b"00" },
            parent: None,
        }
    }

    /// Whether the trace is sampled (the `sampled` flag): only then are
    /// its spans exported.
    pub fn sampled(&self) -> bool {
        // The low bit of the last hex digit.
        matches!(
            self.flags[1],
            b'1' | b'3' | b'5' | b'7' | b'9' | b'b' | b'd' | b'f'
        )
    }

    /// The caller's span id (hex), when the trace was continued.
    pub fn parent_id(&self) -> Option<&str> {
        self.parent.as_ref().map(|p| ascii(p))
    }

    /// 32 hex digits: the trace's id.
    pub fn trace_id(&self) -> &str {
        ascii(&self.trace_id)
    }

    /// 16 hex digits: the gateway's span, parent of the upstream's.
    pub fn span_id(&self) -> &str {
        ascii(&self.span_id)
    }

    /// The trace id's 16 bytes, the gateway's span id's 8 and the caller's
    /// span id's 8 (when continued): the ids as an exported span carries them.
    pub fn id_bytes(&self) -> ([u8; 16], [u8; 8], Option<[u8; 8]>) {
        (
            unhex(&self.trace_id),
            unhex(&self.span_id),
            self.parent.as_ref().map(|p| unhex(p)),
        )
    }

    /// The `traceparent` header value for the upstream request.
    pub fn header(&self) -> HeaderValue {
        let mut v = [0u8; 55];
        v[..3].copy_from_slice(b"00-");
        v[3..35].copy_from_slice(&self.trace_id);
        v[35] = b'-';
        v[36..52].copy_from_slice(&self.span_id);
        v[52] = b'-';
        v[53..].copy_from_slice(&self.flags);
        HeaderValue::from_bytes(&v).expect("hex digits and dashes are a valid header value")
    }
}

/// Trace id and flags of a valid version-00 `traceparent`.
fn parse_traceparent(v: &[u8]) -> Option<([u8; 32], [u8; 16], [u8; 2])> {
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
    Some((
        trace.as_bytes().try_into().ok()?,
        parent.as_bytes().try_into().ok()?,
        flags.as_bytes().try_into().ok()?,
    ))
    .filter(|_| valid)
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
        let t = TraceContext::continue_or_start(Some(incoming), 1.0);
        assert_eq!(t.parent_id(), Some("00f067aa0ba902b7"));
        assert!(t.sampled());
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(t.span_id(), "00f067aa0ba902b7");
        let header = t.header();
        let header = header.to_str().unwrap();
        assert!(header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_eq!(&header[36..52], t.span_id());
        assert!(header.ends_with("-01"));
        let (trace, span, parent) = t.id_bytes();
        assert_eq!(trace[..2], [0x4b, 0xf9]);
        assert_eq!(trace[15], 0x36);
        assert_eq!(
            span,
            u64::from_str_radix(t.span_id(), 16).unwrap().to_be_bytes()
        );
        assert_eq!(
            parent,
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"garbage",
        ] {
            let t = TraceContext::continue_or_start(Some(bad), 1.0);
            assert_ne!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(t.trace_id().len(), 32);
            assert_eq!(t.header().len(), 55);
        }
    }
}
