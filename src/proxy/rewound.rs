//! A stream with bytes put back in front of it.
//!
//! Pingora's plain TCP stream can take back bytes it has read
//! (`Stream::rewind`); its TLS stream cannot. [`Rewound`] gives any stream
//! that ability, so the connection loop can read a TLS client's request
//! head under its deadline, or wait for a keep-alive request's first
//! bytes, and then hand everything to Pingora as if nothing had been read.
//! Every other property (TLS state, ALPN, digests, identity) is the inner
//! stream's.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner` with `front` to be read first.
#[derive(Debug)]
pub struct Rewound {
    front: Vec<u8>,
    inner: Stream,
}

impl Rewound {
    /// Wraps `inner`, with nothing put back yet.
    pub fn new(inner: Stream) -> Rewound {
        Rewound {
            front: Vec::new(),
            inner,
        }
    }

    /// Puts `bytes` back: the next reads return them before anything else.
    pub fn rewind(&mut self, bytes: &[u8]) {
        let mut front = bytes.to_vec();
        front.extend_from_slice(&self.front);
        self.front = front;
    }
}

impl AsyncRead for Rewound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.front.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.front.len().min(buf.remaining());
        buf.put_slice(&self.front[..n]);
        self.front.drain(..n);
        if self.front.is_empty() {
            // An idle connection holds no buffer.
            self.front = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Rewound {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Rewound {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Rewound {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Rewound {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Rewound {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Rewound {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Rewound {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        if self.front.len() >= buf.len() {
            buf.copy_from_slice(&self.front[..buf.len()]);
            return Ok(true);
        }
        // Not enough put back to answer from: say peeking is unsupported
        // rather than mixing the two sources.
        Ok(false)
    }
}
