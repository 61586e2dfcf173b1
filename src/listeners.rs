//! Whether the gateway's listening addresses can be had before it starts,
//! and whether this process holds them once it runs.
//!
//! Pingora binds each service's listeners on that service's own thread,
//! after the server has announced that it runs, and retries an address in
//! use for half a minute before that thread panics while the process lives
//! on. So the gateway tries each address itself first (a clear error and a
//! non-zero exit at once), and calls itself ready only when it sees a
//! listening socket of its own on every address.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};

/// Fails with a message naming the first address that cannot be bound.
pub fn ensure_free(addrs: &[SocketAddr]) -> Result<(), String> {
    for addr in addrs {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            let hint = match e.kind() {
                std::io::ErrorKind::AddrInUse => " (another process listens there)",
                std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
                _ => "",
            };
            return Err(format!("cannot listen on {addr}: {e}{hint}"));
        }
    }
    Ok(())
}

/// The addresses `addrs` of which this process has no listening socket.
pub fn missing(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let bound = own_listening_addrs();
    addrs
        .iter()
        .filter(|a| !bound.contains(a))
        .copied()
        .collect()
}

/// Local addresses of this process's listening TCP sockets.
fn own_listening_addrs() -> Vec<SocketAddr> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| is_listening(fd))
        .filter_map(|fd| {
            // SAFETY: `fd` is an open socket of this process; the listener
            // is turned back into the raw descriptor without closing it.
            let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
            let addr = listener.local_addr().ok();
            let _ = listener.into_raw_fd();
            addr
        })
        .collect()
}

/// Whether descriptor `fd` is a socket in the listening state.
fn is_listening(fd: i32) -> bool {
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `accepting`; on a
    // descriptor that is not a socket it fails and writes nothing.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            &mut accepting as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    rc == 0 && accepting == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_address_is_named_and_own_listeners_are_seen() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let err = ensure_free(&[addr]).unwrap_err();
        assert!(
            err.contains(&addr.to_string()) && err.contains("another process"),
            "{err}"
        );
        assert!(missing(&[addr]).is_empty());
        drop(held);
        assert_eq!(missing(&[addr]), [addr]);
        assert!(ensure_free(&[addr]).is_ok());
    }
}
