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
//! Each request's head must arrive within `client_header_timeout_ms` of its
//! first byte ([`super::request_head`]); a slower client gets 408 and is
//! closed. TLS connections get the same loop through [`Rewound`]; HTTP/2
//! connections (h2c with prior knowledge, or ALPN h2) go to Pingora's own
//! once their preface and SETTINGS have arrived in time.
//!
//! Pipelined requests (RFC 9112 §9.3.2) are served in order: Pingora hands
//! the bytes it read past the end of a request to the next session on the
//! connection, and the lean wait is skipped when there are such bytes
//! (they would never arrive on the socket again).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream as PlainStream;
use pingora_core::protocols::{Stream, ALPN, IO};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use prometheus::IntCounter;
use tokio::io::AsyncWriteExt;

use super::request_head::{next_request, too_slow_response, Next, Patience, PutBack};
use super::rewound::Rewound;
use super::Gateway;
use crate::config::Runtime;

/// The proxy service's application: Pingora's [`HttpProxy`] around
/// [`Gateway`], with a lean, deadline-bounded wait for each HTTP/1 request.
pub struct ProxyApp {
    proxy: Arc<HttpProxy<Gateway>>,
    live: Arc<ArcSwap<Runtime>>,
    /// `gatehouse_client_timeouts_total{phase="header"}`.
    header_timeouts: IntCounter,
}

impl ProxyApp {
    /// Serves connections with `proxy`; the waits for requests come from
    /// whatever config `live` holds; `header_timeouts` counts heads that
    /// came too slowly.
    pub fn new(
        proxy: HttpProxy<Gateway>,
        live: Arc<ArcSwap<Runtime>>,
        header_timeouts: IntCounter,
    ) -> ProxyApp {
        ProxyApp {
            proxy: Arc::new(proxy),
            live,
            header_timeouts,
        }
    }

    /// How long the next request may take, from the live config.
    fn patience(&self, h2: bool) -> Patience {
        let settings = &self.live.load().settings;
        Patience {
            idle: Duration::from_secs(settings.keepalive_timeout_seconds),
            head: settings.client_header_timeout,
            h2,
        }
    }

    /// Answers a head that came too slowly: 408 for HTTP/1, then close.
    async fn too_slow<S: IO>(&self, stream: &mut S, http1: bool) {
        self.header_timeouts.inc();
        if http1 {
            let response = too_slow_response(&crate::trace::request_id(None));
            let _ = stream.write_all(&response).await;
            let _ = stream.flush().await;
        }
        pingora_core::protocols::Shutdown::shutdown(stream).await;
    }

    /// HTTP/1 requests on one connection whose first request head has
    /// arrived, one after another, until the client closes, goes idle too
    /// long, sends a head too slowly, a response ends keep-alive, or the
    /// service shuts down.
    async fn serve_http1<S: PutBack + IO + 'static>(
        &self,
        mut stream: Box<S>,
        mut shutdown: ShutdownWatch,
    ) {
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive(Some(self.patience(false).idle.as_secs()));
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
            let (next, settings) = reused.consume();
            let Ok(same) = next.into_any().downcast::<S>() else {
                return;
            };
            stream = same;
            // Bytes of a pipelined next request, already read, are in
            // `settings`: the next session parses them first. Otherwise
            // the next request is all still in the socket.
            let pipelined = settings
                .as_ref()
                .is_some_and(HttpPersistentSettings::has_pipelined_prefix);
            if !pipelined {
                match next_request(&mut *stream, self.patience(false), &mut shutdown).await {
                    Next::Http1 => {}
                    Next::TooSlow { http1 } => return self.too_slow(&mut *stream, http1).await,
                    Next::Closed | Next::H2 => return,
                }
            }
            session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
        }
    }

    /// The first request of a connection that Pingora would otherwise
    /// serve whole: waited for under the head deadline, then HTTP/1 here
    /// and HTTP/2 by Pingora's loop.
    async fn serve<S: PutBack + IO + 'static>(
        self: &Arc<Self>,
        mut stream: Box<S>,
        h2: bool,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut watch = shutdown.clone();
        match next_request(&mut *stream, self.patience(h2), &mut watch).await {
            Next::Closed => None,
            Next::TooSlow { http1 } => {
                self.too_slow(&mut *stream, http1).await;
                None
            }
            // Pingora's loop reads the preface again (it was put back).
            Next::H2 => ServerApp::process_new(&self.proxy, stream, shutdown).await,
            Next::Http1 => {
                self.serve_http1(stream, watch).await;
                None
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
        if options.is_some_and(|o| o.force_custom) {
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        // `Stream` is itself an `IO`: deref to ask the connection inside.
        if (*stream).as_any().is::<PlainStream>() {
            let plain: Box<PlainStream> = stream.into_any().downcast().ok()?;
            return self.serve(plain, h2c, shutdown).await;
        }
        if stream.get_ssl().is_some() {
            let h2 = stream.selected_alpn_proto() == Some(ALPN::H2);
            return self
                .serve(Box::new(Rewound::new(stream)), h2, shutdown)
                .await;
        }
        ServerApp::process_new(&self.proxy, stream, shutdown).await
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.proxy).await;
    }
}
