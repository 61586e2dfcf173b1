//! The real deployment end to end: two Next.js apps (basePath `/admin` and
//! `/kline`), an OAuth-service stand-in and TokenginX (redis-server) behind
//! the gatehouse binary, driven by headless Chromium.
//!
//! The fixture lives in `tests/e2e/` (`run.mjs` orchestrates it; see its
//! header). This test runs it against the binary cargo just built, as its
//! own test target so that its `next build`s never share the cores with the
//! rate-measuring integration tests. Screenshots, logs and the generated
//! gateway config land in `target/e2e-artifacts/`.

use std::path::Path;
use std::process::Command;

#[test]
fn nextjs_apps_behind_gatehouse_in_a_real_browser() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let artifacts = repo.join("target/e2e-artifacts");
    let status = Command::new("node")
        .arg(repo.join("tests/e2e/run.mjs"))
        .env("GATEHOUSE_BIN", env!("CARGO_BIN_EXE_gatehouse"))
        .env("E2E_ARTIFACTS", &artifacts)
        .status()
        .expect("node is needed for the Next.js end-to-end test: apt-get install -y nodejs npm");
    assert!(
        status.success(),
        "the Next.js end-to-end run failed ({status}); its steps are printed above, \
         screenshots and logs are in {}",
        artifacts.display()
    );
}
