//! What a failed upstream connect says about the backend.
//!
//! A refusal (RST to the SYN) or an unreachable route is strong evidence
//! that the backend is down. A timeout is weak: a listen backlog that
//! overflows during a burst drops SYNs of a healthy backend just the same.
//! A failure on the gateway's own side (no file descriptor, no buffer, no
//! local port) says nothing about the backend at all, and is never held
//! against it.

use pingora_core::{Error, ErrorType};

/// The `kind` label values of `gatehouse_local_errors_total`.
pub const LOCAL_KINDS: [&str; 4] = ["fd_limit", "no_buffers", "no_memory", "no_local_port"];

/// How one connect attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Refused or unroutable: the backend is not there.
    Refused,
    /// Timed out, reset, TLS failed: maybe the backend, maybe the moment.
    Weak,
    /// The gateway could not even try; the index is into [`LOCAL_KINDS`].
    Local(usize),
}

impl ConnectFailure {
    /// Classifies the error Pingora's connector gave. Pingora wraps
    /// `socket()`, `setsockopt()` and `bind()` failures as internal errors;
    /// the OS error at the root of the chain tells whose fault it was.
    pub fn of(e: &Error) -> ConnectFailure {
        match e.etype() {
            ErrorType::ConnectRefused | ErrorType::ConnectNoRoute => ConnectFailure::Refused,
            _ => match os_error(e).and_then(local_kind) {
                Some(kind) => ConnectFailure::Local(kind),
                None => ConnectFailure::Weak,
            },
        }
    }
}

/// The OS error code at the bottom of `e`'s cause chain, if there is one.
fn os_error(e: &Error) -> Option<i32> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e.root_cause());
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        cause = c.source();
    }
    None
}

/// The [`LOCAL_KINDS`] index of an OS error that is the gateway's own.
fn local_kind(code: i32) -> Option<usize> {
    match code {
        libc::EMFILE | libc::ENFILE => Some(0),
        libc::ENOBUFS => Some(1),
        libc::ENOMEM => Some(2),
        libc::EADDRNOTAVAIL | libc::EADDRINUSE => Some(3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(etype: ErrorType, code: i32) -> Box<Error> {
        let inner = Error::because(etype, "inner", std::io::Error::from_raw_os_error(code));
        Error::because(ErrorType::InternalError, "Fail to connect", inner)
    }

    #[test]
    fn refusals_are_strong_timeouts_weak() {
        assert_eq!(
            ConnectFailure::of(&Error::new(ErrorType::ConnectRefused)),
            ConnectFailure::Refused
        );
        assert_eq!(
            ConnectFailure::of(&Error::new(ErrorType::ConnectNoRoute)),
            ConnectFailure::Refused
        );
        assert_eq!(
            ConnectFailure::of(&Error::new(ErrorType::ConnectTimedout)),
            ConnectFailure::Weak
        );
        assert_eq!(
            ConnectFailure::of(&Error::new(ErrorType::TLSHandshakeFailure)),
            ConnectFailure::Weak
        );
    }

    #[test]
    fn the_gateways_own_failures_are_local() {
        let emfile = wrapped(ErrorType::SocketError, libc::EMFILE);
        assert_eq!(ConnectFailure::of(&emfile), ConnectFailure::Local(0));
        let ports = wrapped(ErrorType::BindError, libc::EADDRNOTAVAIL);
        assert_eq!(ConnectFailure::of(&ports), ConnectFailure::Local(3));
        let bufs = Error::because(
            ErrorType::ConnectError,
            "connect",
            std::io::Error::from_raw_os_error(libc::ENOBUFS),
        );
        assert_eq!(ConnectFailure::of(&bufs), ConnectFailure::Local(1));
        let reset = Error::because(
            ErrorType::ConnectError,
            "connect",
            std::io::Error::from_raw_os_error(libc::ECONNRESET),
        );
        assert_eq!(ConnectFailure::of(&reset), ConnectFailure::Weak);
        let internal = Error::new(ErrorType::InternalError);
        assert_eq!(ConnectFailure::of(&internal), ConnectFailure::Weak);
    }
}
