//! Waiting for a client's next request: first for its first bytes (as long
//! as the connection may idle), then for the rest of its head, at most
//! `client_header_timeout_ms` from that first byte.
//!
//! Pingora times each read of a request head but not the whole: a client
//! that drips one header line a second (Slowloris) keeps its connection
//! forever. Here the head is read under one deadline before Pingora sees
//! it, then put back in front of the stream, so Pingora parses it from
//! memory. In the common case the whole head comes in the first read and
//! the check is one search of those bytes; only a head that arrives in
//! pieces is gathered in a buffer of its own. For HTTP/2 the same deadline
//! covers the client preface and its first SETTINGS frame.

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pingora_core::protocols::l4::stream::Stream as PlainStream;
use pingora_core::server::ShutdownWatch;
use pingora_timeout::fast_timeout::fast_timeout;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::time::Instant;

use super::rewound::Rewound;
use crate::reject::Rejection;

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/2 frame header: 3 bytes of length, type, flags, stream id.
const H2_FRAME_HEADER: usize = 9;

/// Bytes read while waiting for a request: Pingora's first head read is
/// this size, so it takes them all back in one read.
const FIRST_READ: usize = 4096;

/// Past this much, a head that has not ended is handed to Pingora, whose
/// limits refuse it; it is not gathered here any longer.
const MAX_GATHERED: usize = 128 * 1024;

thread_local! {
    /// The buffer the first bytes of a request land in before they are
    /// handed back to the stream; one per worker thread, not per connection.
    static FIRST_BYTES: RefCell<[u8; FIRST_READ]> = const { RefCell::new([0; FIRST_READ]) };
}

/// A stream that can take back bytes read from it.
pub trait PutBack: AsyncRead + Unpin + Send {
    /// The next reads return `bytes` first.
    fn put_back(&mut self, bytes: &[u8]);
}

impl PutBack for PlainStream {
    fn put_back(&mut self, bytes: &[u8]) {
        self.rewind(bytes);
    }
}

impl PutBack for Rewound {
    fn put_back(&mut self, bytes: &[u8]) {
        self.rewind(bytes);
    }
}

/// What the wait for a request saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The client closed or failed, stayed idle too long, or the service is
    /// shutting down: close the connection.
    Closed,
    /// A whole HTTP/1 request head is ready to be read.
    Http1,
    /// A whole HTTP/2 client preface and SETTINGS frame are ready.
    H2,
    /// The head did not arrive within the deadline: answer 408 (when it
    /// was an HTTP/1 head) and close.
    TooSlow {
        /// The bytes so far began an HTTP/1 request, not the HTTP/2 preface.
        http1: bool,
    },
}

/// What the request bytes so far are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// An HTTP/1 head; `true` once it has ended.
    Http1(bool),
    /// The HTTP/2 preface (or a prefix of it); `true` once its SETTINGS
    /// frame is complete.
    H2(bool),
}

impl Seen {
    /// Reads `bytes` from the start of a request; `h2` says whether the
    /// HTTP/2 preface counts as one.
    fn of(bytes: &[u8], h2: bool) -> Seen {
        Seen::of_scanning(bytes, h2, 0)
    }

    /// [`Seen::of`], looking for the end of an HTTP/1 head only from
    /// `from` on (what earlier calls have not scanned, less a line end's
    /// length: an empty line may straddle two reads).
    fn of_scanning(bytes: &[u8], h2: bool, from: usize) -> Seen {
        let n = bytes.len().min(H2_PREFACE.len());
        if h2 && bytes[..n] == H2_PREFACE[..n] {
            let frame = &bytes[n..];
            let complete = n == H2_PREFACE.len()
                && frame.len() >= H2_FRAME_HEADER
                && frame.len()
                    >= H2_FRAME_HEADER
                        + (usize::from(frame[0]) << 16
                            | usize::from(frame[1]) << 8
                            | usize::from(frame[2]));
            return Seen::H2(complete);
        }
        Seen::Http1(head_ended(&bytes[from.min(bytes.len())..]))
    }

    fn complete(self) -> bool {
        matches!(self, Seen::Http1(true) | Seen::H2(true))
    }

    fn next(self) -> Next {
        match self {
            Seen::Http1(_) => Next::Http1,
            Seen::H2(_) => Next::H2,
        }
    }
}

/// Whether `bytes` hold the end of a request head: an empty line, with or
/// without CR (Pingora's parser accepts both).
fn head_ended(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, b"\n\r\n").is_some()
        || memchr::memmem::find(bytes, b"\n\n").is_some()
}

/// How long a request may take to come.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// Before its first byte.
    pub idle: Duration,
    /// From its first byte to the end of its head.
    pub head: Duration,
    /// Whether the HTTP/2 preface starts a request (h2c, or ALPN h2).
    pub h2: bool,
}

/// Waits for the client's next request and puts what it read back in
/// front of `stream`: its first bytes within `patience.idle`, its whole
/// head within `patience.head` of them, and never past shutdown.
pub async fn next_request<S: PutBack>(
    stream: &mut S,
    patience: Patience,
    shutdown: &mut ShutdownWatch,
) -> Next {
    if *shutdown.borrow() {
        return Next::Closed;
    }
    let first = poll_fn(|cx| poll_first_bytes(stream, patience.h2, cx));
    // Pingora's timer: armed only if the bytes are not there at the first
    // poll, and shared by every wait that ends in the same 10 ms tick.
    let seen = tokio::select! {
        biased;
        read = fast_timeout(patience.idle, first) => match read {
            Ok(Ok(Some(seen))) => seen,
            _ => return Next::Closed,
        },
        _ = shutdown.changed() => return Next::Closed,
    };
    if seen.complete() {
        return seen.next();
    }
    let deadline = Instant::now() + patience.head;
    tokio::select! {
        biased;
        rest = tokio::time::timeout_at(deadline, gather(stream, patience)) => match rest {
            Ok(next) => next,
            Err(_) => Next::TooSlow {
                http1: seen.next() == Next::Http1,
            },
        },
        _ = shutdown.changed() => Next::Closed,
    }
}

/// Reads what the client has sent into the thread's buffer and puts it
/// back into `stream`, so Pingora's next read returns it without a
/// syscall. `None`: the client closed.
fn poll_first_bytes<S: PutBack>(
    stream: &mut S,
    h2: bool,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<Option<Seen>>> {
    FIRST_BYTES.with_borrow_mut(|bytes| {
        let mut buf = ReadBuf::new(bytes);
        ready!(Pin::new(&mut *stream).poll_read(cx, &mut buf))?;
        let read = buf.filled();
        if read.is_empty() {
            return Poll::Ready(Ok(None));
        }
        stream.put_back(read);
        Poll::Ready(Ok(Some(Seen::of(read, h2))))
    })
}

/// Reads the rest of a head that did not come whole, gathering it (with
/// the bytes put back before) until it ends, then puts it all back. Each
/// read may also wait only as long as the connection may idle.
async fn gather<S: PutBack>(stream: &mut S, patience: Patience) -> Next {
    let h2 = patience.h2;
    let mut head = Vec::with_capacity(2 * FIRST_READ);
    loop {
        let before = head.len();
        head.reserve(FIRST_READ);
        match tokio::time::timeout(patience.idle, stream.read_buf(&mut head)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return Next::Closed,
            Ok(Ok(_)) => {}
        }
        // What was put back comes out first, so `head` is the whole head so
        // far; only its new part (and the two bytes before) can end it.
        let seen = Seen::of_scanning(&head, h2, before.saturating_sub(2));
        if seen.complete() || head.len() > MAX_GATHERED {
            stream.put_back(&head);
            return seen.next();
        }
    }
}

/// The 408 written to a client whose head was too slow, on the wire
/// (Pingora has no session for it yet), with `Connection: close`.
pub fn too_slow_response(request_id: &str) -> Vec<u8> {
    let (header, body) = Rejection::HeaderTimeout.response(request_id);
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 408 Request Timeout\r\n");
    for (name, value) in header.headers.iter() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_at_an_empty_line() {
        assert_eq!(
            Seen::of(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            Seen::Http1(true)
        );
        assert_eq!(
            Seen::of(b"GET / HTTP/1.1\nHost: a\n\n", true),
            Seen::Http1(true)
        );
        assert_eq!(
            Seen::of(b"GET / HTTP/1.1\r\nHost: a\r\n", true),
            Seen::Http1(false)
        );
        assert_eq!(
            Seen::of(b"GET / HTTP/1.1\r\nHost: a\r\n\r", true),
            Seen::Http1(false)
        );
        let split = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            Seen::of_scanning(split, true, split.len() - 3),
            Seen::Http1(true)
        );
    }

    #[test]
    fn an_h2_preface_ends_with_its_settings_frame() {
        let mut bytes = H2_PREFACE.to_vec();
        assert_eq!(Seen::of(&bytes[..10], true), Seen::H2(false));
        assert_eq!(Seen::of(&bytes, true), Seen::H2(false));
        // SETTINGS with one 6-byte setting.
        bytes.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0]);
        assert_eq!(Seen::of(&bytes, true), Seen::H2(false));
        bytes.extend_from_slice(&[0, 3, 0, 0, 0, 100]);
        assert_eq!(Seen::of(&bytes, true), Seen::H2(true));
        // Without h2c the preface is just a (complete, bad) HTTP/1 head.
        assert_eq!(Seen::of(H2_PREFACE, false), Seen::Http1(true));
    }

    #[test]
    fn the_408_closes_and_carries_json() {
        let wire = String::from_utf8(too_slow_response("rid")).unwrap();
        assert!(
            wire.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{wire}"
        );
        assert!(wire.contains("connection: close\r\n\r\n{"), "{wire}");
        assert!(wire.contains("\"error\":\"request_timeout\""), "{wire}");
        assert!(wire.contains("x-request-id: rid\r\n"), "{wire}");
    }
}
