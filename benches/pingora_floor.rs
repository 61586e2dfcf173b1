//! The framework's floor: the smallest Pingora HTTP proxy there is, built
//! from the same Pingora version, features, allocator (mimalloc) and release
//! profile as gatehouse (it is an example of this crate, so
//! `cargo build --release --example pingora-floor` shares gatehouse's
//! `Cargo.lock` and `[profile.release]`).
//!
//! One `ProxyHttp` with one callback, `upstream_peer`, returning the same
//! plain HTTP/1.1 peer for every request; Pingora's defaults for everything
//! else (upstream keep-alive pool, timeouts, header handling). The bench
//! harness (`benches/bench.py`) measures it beside gatehouse so that what
//! gatehouse adds on a plain route can be told apart from what Pingora costs.
//! It shares gatehouse's allocator so that the difference is gatehouse's
//! work: with glibc's malloc the same proxy spent 21 % of its CPU in libc
//! against gatehouse's 15 % in mimalloc and libc together (benches/README.md).
//!
//! Usage: `pingora-floor <listen addr> <upstream addr> [threads]`.

use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};

/// gatehouse's allocator (see `src/main.rs`), so the floor is Pingora's alone.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Proxies every request to one upstream address.
struct Floor {
    /// Where every request goes.
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> pingora_core::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

/// The command line: listen address, upstream address, worker threads.
struct Args {
    /// Address of the proxy's listener.
    listen: SocketAddr,
    /// Address every request is sent to.
    upstream: SocketAddr,
    /// Pingora worker threads of the proxy service.
    threads: usize,
}

/// Reads [`Args`] from the command line, or says what is wrong.
fn parse_args() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(2..=3).contains(&args.len()) {
        return Err("usage: pingora-floor <listen addr> <upstream addr> [threads]".into());
    }
    let addr = |what: &str, s: &str| {
        s.parse::<SocketAddr>()
            .map_err(|e| format!("{what} address {s:?}: {e}"))
    };
    let threads = match args.get(2) {
        None => 1,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("threads {s:?}: must be a positive integer")),
        },
    };
    Ok(Args {
        listen: addr("listen", &args[0])?,
        upstream: addr("upstream", &args[1])?,
        threads,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pingora-floor: {e}");
            return ExitCode::from(2);
        }
    };
    // A bench stops it with SIGTERM: no grace period to wait out.
    let conf = ServerConf {
        threads: args.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(
        &server.configuration,
        Floor {
            upstream: args.upstream,
        },
    );
    proxy.add_tcp(&args.listen.to_string());
    server.add_service(proxy);
    server.run_forever()
}
