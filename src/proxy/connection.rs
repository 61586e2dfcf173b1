//! The proxy service's connection loop: an idle HTTP/1 keep-alive
//! connection holds its socket and nothing else.
//!
//! Pingora's own loop (its `ServerApp` for every `HttpServerApp`) starts the
//! next request's future as soon as a connection is accepted or a response
//! is done. That future is boxed and about 10 KB, it allocates a 4 KiB head
//! buffer before the first byte arrives, and the loop around it is 4 KB
//! more: 24 KB per idle client. [`ProxyApp`] first waits for the next
//! request's first bytes, reading them into a per-thread buffer and putting
//! them back in front of the stream, and only then hands the connection to
//! Pingora. nginx does the same: a keep-alive connection gives its buffers
//! back between requests.
//!
//! TLS connections (where ALPN picks HTTP/1 or HTTP/2) and HTTP/2 with
//! prior knowledge (h2c) keep Pingora's loop unchanged.

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream as PlainStream;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use tokio::io::{AsyncRead, ReadBuf};

use super::Gateway;
use crate::config::Runtime;

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes read while waiting for a request: Pingora's first head read is
/// this size, so it takes them all back in one read.
const FIRST_READ: usize = 4096;

thread_local! {
    /// The buffer the first bytes of a request land in before they are
    /// handed back to the stream; one per worker thread, not per connection.
    static FIRST_BYTES: RefCell<[u8; FIRST_READ]> = const { RefCell::new([0; FIRST_READ]) };
}

/// The proxy service's application: Pingora's [`HttpProxy`] around
/// [`Gateway`], with a lean wait between HTTP/1 requests.
pub struct ProxyApp {
    proxy: Arc<HttpProxy<Gateway>>,
    live: Arc<ArcSwap<Runtime>>,
}

impl ProxyApp {
    /// Serves connections with `proxy`; the idle limit between requests is
    /// `keepalive_timeout_seconds` of whatever config `live` holds.
    pub fn new(proxy: HttpProxy<Gateway>, live: Arc<ArcSwap<Runtime>>) -> ProxyApp {
        ProxyApp {
            proxy: Arc::new(proxy),
            live,
        }
    }

    /// The idle limit between requests, from the live config.
    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.live.load().settings.keepalive_timeout_seconds)
    }

    /// HTTP/1 requests on one plain connection whose first bytes have
    /// arrived, one after another, until the client closes, goes idle too
    /// long, a response ends keep-alive, or the service shuts down.
    async fn serve_http1(&self, mut stream: Box<PlainStream>, mut shutdown: ShutdownWatch) {
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive(Some(self.idle_timeout().as_secs()));
        session.set_keepalive_reuses_remaining(
            self.proxy
                .server_options
                .as_ref()
                .and_then(|o| o.keepalive_request_limit),
        );
        loop {
            let Some(reused) = self.proxy.process_new_http(session, &shutdown).await else {
                return;
            };
            // We never turn HTTP/1 pipelining on, so `settings` holds back
            // no bytes of the next request: they are all still in the
            // socket, where `next_request` waits for them.
            let (next, settings) = reused.consume();
            let Some(plain) = as_plain(next) else {
                return;
            };
            stream = plain;
            if next_request(&mut stream, self.idle_timeout(), &mut shutdown).await == Next::Closed {
                return;
            }
            session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
        }
    }
}

#[async_trait]
impl ServerApp for ProxyApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let options = self.proxy.server_options.as_ref();
        let h2c = options.is_some_and(|o| o.h2c);
        // `Stream` is itself an `IO`: deref to ask the connection inside.
        if options.is_some_and(|o| o.force_custom) || !(*stream).as_any().is::<PlainStream>() {
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        let mut plain = as_plain(stream)?;
        let mut watch = shutdown.clone();
        match next_request(&mut plain, self.idle_timeout(), &mut watch).await {
            Next::Closed => None,
            // Pingora's loop reads the preface again (the bytes were put
            // back) and runs the HTTP/2 connection.
            Next::MaybeH2 if h2c => ServerApp::process_new(&self.proxy, plain, shutdown).await,
            Next::Http1 | Next::MaybeH2 => {
                self.serve_http1(plain, watch).await;
                None
            }
        }
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.proxy).await;
    }
}

/// What the wait for a request saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The client closed or failed, stayed idle too long, or the service is
    /// shutting down: close the connection.
    Closed,
    /// Bytes that cannot start the HTTP/2 preface.
    Http1,
    /// Bytes that start (or may yet start) the HTTP/2 prior-knowledge preface.
    MaybeH2,
}

/// The concrete plain TCP (or Unix) stream behind `stream`, if it is one.
fn as_plain(stream: Stream) -> Option<Box<PlainStream>> {
    stream.into_any().downcast().ok()
}

/// Waits for the client's next bytes and puts them back in front of
/// `stream`, at most `idle`, and no longer than the service runs.
async fn next_request(
    stream: &mut PlainStream,
    idle: Duration,
    shutdown: &mut ShutdownWatch,
) -> Next {
    if *shutdown.borrow() {
        return Next::Closed;
    }
    let first_bytes = poll_fn(|cx| poll_first_bytes(stream, cx));
    tokio::select! {
        biased;
        read = pingora_timeout::timeout(idle, first_bytes) => read.ok().and_then(Result::ok).unwrap_or(Next::Closed),
        _ = shutdown.changed() => Next::Closed,
    }
}

/// Reads what the client has sent into the thread's buffer and rewinds it
/// into `stream`, so Pingora's next read returns it without a syscall.
fn poll_first_bytes(stream: &mut PlainStream, cx: &mut Context<'_>) -> Poll<std::io::Result<Next>> {
    FIRST_BYTES.with_borrow_mut(|bytes| {
        let mut buf = ReadBuf::new(bytes);
        ready!(Pin::new(&mut *stream).poll_read(cx, &mut buf))?;
        let read = buf.filled();
        stream.rewind(read);
        let n = read.len().min(H2_PREFACE.len());
        Poll::Ready(Ok(match read {
            [] => Next::Closed,
            _ if read[..n] == H2_PREFACE[..n] => Next::MaybeH2,
            _ => Next::Http1,
        }))
    })
}
