//! `gatehouse demo`: the shipped config in front of five sample apps on
//! the reference ports, with a dev signing key and curl lines to paste.

pub mod sample_app;

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use sample_app::SampleApp;

/// The reference deployment: app name and port.
pub const APPS: [(&str, u16); 5] = [
    ("oauth-service", 3001),
    ("admin-portal", 3002),
    ("kline-service", 3003),
    ("flow-service", 3004),
    ("test-service", 3005),
];

/// Runs the demo until the gateway stops.
pub fn run(conf: &Path) -> ExitCode {
    let listeners = match bind_apps() {
        Ok(l) => l,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::var_os("JWT_SECRET").is_none() {
        let key = format!("{:032x}{:032x}", fastrand::u128(..), fastrand::u128(..));
        // Single-threaded here: no other thread reads the environment yet.
        unsafe { std::env::set_var("JWT_SECRET", &key) };
    }
    std::thread::spawn(move || serve_apps(listeners));

    let metrics = crate::metrics::Metrics::new();
    let (public, admin) = match crate::config::load(conf, &metrics) {
        Ok(rt) => (rt.server.listeners.first().map(|l| l.addr), rt.server.admin),
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let server = match crate::build_server(conf, crate::RunFlags::default()) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    print_guide(public, admin);
    server.run_forever()
}

fn bind_apps() -> Result<Vec<(std::net::TcpListener, SampleApp)>, String> {
    APPS.iter()
        .map(|(name, port)| {
            let addr = SocketAddr::from(([127, 0, 0, 1], *port));
            let l = std::net::TcpListener::bind(addr).map_err(|e| {
                format!("demo: cannot start sample app {name} on {addr}: {e} (is something already running there?)")
            })?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok((l, SampleApp { name: name.to_string() }))
        })
        .collect()
}

fn serve_apps(listeners: Vec<(std::net::TcpListener, SampleApp)>) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: cannot start sample apps: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let mut servers = Vec::new();
        for (l, app) in listeners {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => servers.push(sample_app::spawn(l, app)),
                Err(e) => eprintln!("demo: sample app: {e}"),
            }
        }
        std::future::pending::<()>().await;
    });
}

fn print_guide(public: Option<SocketAddr>, admin: Option<SocketAddr>) {
    let gw = public.map_or("127.0.0.1:6188".to_string(), |a| loopback(a).to_string());
    let admin = admin.map_or("(no admin address configured)".to_string(), |a| {
        loopback(a).to_string()
    });
    println!(
        "\ngatehouse demo: sample apps on :3001-:3005, gateway on {gw}, admin on {admin}\n\
         dev signing key (HS256, JWT_SECRET): set in this process's environment\n\n\
         Routing (each prefix reaches its app):\n\
         \x20 curl -i http://{gw}/admin/dashboard\n\
         \x20 curl -i http://{gw}/kline/api/candles?symbol=BTC\n\
         \x20 curl -N http://{gw}/flow/api/stream        # server-sent events, streamed\n\
         \x20 curl -i http://{gw}/nowhere                # 404 JSON from the gateway\n\
         \x20 curl -i 'http://{gw}/admin/%2e%2e/x'        # 400: ambiguous path\n\n\
         Authentication (401): not configured yet — JWT checks arrive with the auth work.\n\
         Rate limiting (429): not configured yet — limits arrive with the rate-limit work.\n\n\
         Operations:\n\
         \x20 curl http://{admin}/health/ready\n\
         \x20 curl http://{admin}/metrics\n\
         \x20 curl http://{admin}/status\n\n\
         Ctrl-C stops everything.\n"
    );
}

/// `0.0.0.0:6188` is reachable as `127.0.0.1:6188`.
fn loopback(a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], a.port()))
    } else {
        a
    }
}
