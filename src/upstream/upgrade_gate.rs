//! Upstream connections for HTTP/1 upgrade requests (WebSocket) whose
//! response is not read before the request's own end has been sent.
//!
//! Pingora 0.9.1 (`proxy_handle_upstream`, cloudflare/pingora#946) queues
//! the end of an upgrade request's empty body (`Body(None, true)`) into the
//! body pipe before the upstream has answered, and its upstream half
//! `select!`s, in random order, between that pipe and reading the response.
//! If the `101` is already in the socket when that loop first runs and the
//! read is picked first, the queued end is handled with `was_upgraded()`
//! already true and taken for the end of the tunnel: the upstream half
//! quits, the client gets the `101` (and whatever came with it), then EOF.
//!
//! A [`Gated`] socket keeps its reads pending until Pingora has flushed the
//! connection twice: once after the request head, once when the request's
//! own (empty) body is finished, which is that queued end being handled.
//! Only then can the `101` be read, so the end always comes first and the
//! tunnel stays open, whatever order the `select!` polls in. Nothing can be
//! waiting to be read before that second flush: the upstream has only the
//! head, and the client sends nothing before it has the `101`. Should a
//! later Pingora flush only once, the gate opens [`GATE_FALLBACK`] after
//! the first flush anyway: a slower handshake, never a hung one
//! (`tests/integration/protocols.rs` fails on either). Remove this module
//! once Pingora ships the fix of cloudflare/pingora#946.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::connectors::L4Connect;
use pingora_core::protocols::l4::ext::{connect, set_tcp_keepalive};
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::protocols::l4::stream::Stream;
use pingora_core::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora_core::{Error, ErrorType, Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Flushes before the first read may complete: the request head, then the
/// request's own body end.
const FLUSHES_BEFORE_READ: u8 = 2;

/// Longest the gate stays shut after the request head was flushed.
const GATE_FALLBACK: Duration = Duration::from_millis(200);

/// The L4 connector of plain-text upgrade requests with an empty body.
#[derive(Debug)]
pub struct GatedConnect {
    /// The pool's `connect_timeout_ms` (Pingora does not time a custom
    /// connector).
    pub timeout: Duration,
}

impl GatedConnect {
    /// A connector that times each connect out after `timeout`.
    pub fn new(timeout: Duration) -> Arc<GatedConnect> {
        Arc::new(GatedConnect { timeout })
    }
}

#[async_trait]
impl L4Connect for GatedConnect {
    async fn connect(&self, addr: &SocketAddr) -> Result<Stream> {
        let SocketAddr::Inet(inet) = addr else {
            return Error::e_explain(ErrorType::ConnectError, "gated connect: not an inet peer");
        };
        let tcp = match tokio::time::timeout(self.timeout, connect(inet, None)).await {
            Ok(tcp) => tcp?,
            Err(_) => {
                return Error::e_explain(
                    ErrorType::ConnectTimedout,
                    format!("timeout {:?} connecting to server {inet}", self.timeout),
                )
            }
        };
        let gated = Gated {
            tcp,
            flushes: 0,
            reader: None,
            fallback: None,
        };
        Ok(VirtualSocketStream::new(Box::new(gated)).into())
    }
}

/// A TCP stream whose reads wait for [`FLUSHES_BEFORE_READ`] flushes.
#[derive(Debug)]
struct Gated {
    tcp: TcpStream,
    flushes: u8,
    /// A read that came too early, woken by the flush that opens the gate.
    reader: Option<Waker>,
    /// Opens the gate [`GATE_FALLBACK`] after the first flush.
    fallback: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Gated {
    fn open(&self) -> bool {
        self.flushes >= FLUSHES_BEFORE_READ
    }
}

impl VirtualSocket for Gated {
    fn set_socket_option(&self, opt: VirtualSockOpt) -> std::io::Result<()> {
        match opt {
            VirtualSockOpt::NoDelay => self.tcp.set_nodelay(true),
            VirtualSockOpt::KeepAlive(ka) => {
                set_tcp_keepalive(&self.tcp, &ka).map_err(std::io::Error::other)
            }
            _ => Ok(()),
        }
    }
}

impl AsyncRead for Gated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.open() {
            let timed_out = self
                .fallback
                .as_mut()
                .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
            if !timed_out {
                self.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            self.flushes = FLUSHES_BEFORE_READ;
            self.fallback = None;
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Gated {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(Pin::new(&mut self.tcp).poll_flush(cx))?;
        if !self.open() {
            self.flushes += 1;
            if self.flushes == 1 {
                self.fallback = Some(Box::pin(tokio::time::sleep(GATE_FALLBACK)));
            }
            if self.open() {
                self.fallback = None;
                if let Some(reader) = self.reader.take() {
                    reader.wake();
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
