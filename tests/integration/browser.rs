//! CORS as a real browser enforces it: headless Chromium (driven by
//! `tests/browser/cors.mjs`) on a page of one origin calls the gateway on
//! another with fetch().

use std::path::Path;
use std::process::Command;

use crate::common::{eventually, npm_installed, route_file, Gateway, Upstream};
use crate::fault_peers::ServerProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_reads_allowed_origins_only_and_caches_the_preflight() {
    npm_installed("tests/browser", "playwright-core");
    let up = Upstream::start("api").await;
    // One page server, two origins: 127.0.0.1 is allowed, localhost not.
    let pages = ServerProcess::start();
    let port = pages.addr.port();
    let routes = route_file(
        &[up.addr],
        "",
        &[
            (
                "api",
                "/api",
                &format!("cors:\n  allow_origins: ['http://127.0.0.1:{port}']\n  allow_methods: [GET, PUT]\n  allow_headers: [x-trace]\n  expose_headers: [x-request-id]\n  allow_credentials: true\n  max_age_seconds: 120"),
            ),
            ("open", "/open", "cors: {allow_origins: ['*']}"),
        ],
    );
    let gw = Gateway::start("access_log: {path: access.log}", &[("r.yaml", &routes)]);
    let urls = serde_json::json!({
        "allowedPage": format!("http://127.0.0.1:{port}/"),
        "refusedPage": format!("http://localhost:{port}/"),
        "api": format!("http://{}", gw.addr),
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/cors.mjs");
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("CORS_URLS", urls.to_string())
            .output()
            .expect("node is needed: apt-get install -y nodejs npm")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "cors.mjs failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for allowed in [
        "simple",
        "credentialed",
        "preflighted",
        "preflightedAgain",
        "wildcard",
    ] {
        assert_eq!(
            got[allowed]["status"],
            200,
            "{allowed}: {got}\n{}",
            gw.log()
        );
    }
    assert!(
        got["simple"]["exposed"]
            .as_str()
            .is_some_and(|id| id.len() == 32),
        "expose_headers lets the script read X-Request-Id: {got}"
    );
    for blocked in [
        "refusedSimple",
        "refusedPreflighted",
        "wildcardCredentialed",
    ] {
        assert!(got[blocked]["blocked"].is_string(), "{blocked}: {got}");
    }
    // Two preflights reached the gateway: the allowed origin's first (its
    // second was cached for max_age_seconds) and the refused origin's.
    let path = gw.dir.path().join("access.log");
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    eventually(5, async || {
        read().matches(r#""method":"OPTIONS""#).count() >= 2
    })
    .await;
    let log = read();
    let preflights: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(r#""method":"OPTIONS""#))
        .collect();
    assert_eq!(preflights.len(), 2, "{preflights:#?}");
    assert_eq!(
        preflights
            .iter()
            .filter(|l| l.contains(r#""status":204"#))
            .count(),
        1
    );
}
