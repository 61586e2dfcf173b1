//! Alerts delivered end to end: Debian's `prometheus` scrapes the gateway
//! with the shipped rules (deploy/prometheus/alerts.yml, their `for:`
//! shortened) and hands firing alerts to Debian's `prometheus-alertmanager`
//! running the shipped deploy/alertmanager/alertmanager.yml, whose webhook
//! points at a receiver in this test. Stopping the only backend of an
//! upstream must reach the webhook as GatehouseUpstreamNoHealthyBackend,
//! and bringing it back must resolve it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{eventually, free_port, route_file, Gateway, Killed, Upstream};

/// Every notification the webhook received, as JSON.
type Inbox = Arc<Mutex<Vec<serde_json::Value>>>;

/// An HTTP receiver on loopback that keeps each POSTed JSON body.
async fn webhook() -> (u16, Inbox) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let inbox: Inbox = Arc::default();
    let keep = Arc::clone(&inbox);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let keep = Arc::clone(&keep);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let n = match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    if let Ok(v) = serde_json::from_slice(&buf[end + 4..end + 4 + len]) {
                        keep.lock().unwrap().push(v);
                    }
                    buf.drain(..end + 4 + len);
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    (port, inbox)
}

/// A shipped file of the repository, as text.
fn shipped(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// Starts `program` with `args`, its output in `dir/<log>`.
fn spawn(program: &str, args: &[String], dir: &Path, log: &str) -> Killed {
    let out = std::fs::File::create(dir.join(log)).unwrap();
    Killed(
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{program} is needed (apt-get install -y prometheus prometheus-alertmanager): {e}")),
    )
}

/// Whether the inbox holds a notification of `status` for the upstream alert.
fn notified(inbox: &Inbox, status: &str) -> bool {
    inbox.lock().unwrap().iter().any(|n| {
        n["alerts"].as_array().into_iter().flatten().any(|a| {
            a["status"] == status
                && a["labels"]["alertname"] == "GatehouseUpstreamNoHealthyBackend"
                && a["labels"]["upstream"] == "app"
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backend_going_down_reaches_the_webhook_and_its_recovery_resolves_it() {
    let mut app = Upstream::start("app").await;
    let addr = app.addr;
    let routes = route_file(
        &[addr],
        "health_check: {interval_ms: 200, timeout_ms: 200}",
        &[("all", "/", "")],
    );
    let gw = Gateway::start("", &[("r.yaml", &routes)]);
    let (hook, inbox) = webhook().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Alertmanager with the shipped config: the webhook is this test's, the
    // mail relay a closed loopback port (nothing leaves the machine), and
    // notifications are not batched for long.
    let am_port = free_port();
    let am = shipped("deploy/alertmanager/alertmanager.yml")
        .replace(
            "http://127.0.0.1:9095/alerts",
            &format!("http://127.0.0.1:{hook}/alerts"),
        )
        .replace(
            "mail.example.com:587",
            &format!("127.0.0.1:{}", free_port()),
        )
        .replace("group_wait: 30s", "group_wait: 1s")
        .replace("group_interval: 5m", "group_interval: 1s");
    std::fs::write(d.join("alertmanager.yml"), am).unwrap();
    let _alertmanager = spawn(
        "prometheus-alertmanager",
        &[
            format!("--config.file={}", d.join("alertmanager.yml").display()),
            format!("--storage.path={}", d.join("am-data").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
        ],
        d,
        "alertmanager.log",
    );

    // Prometheus with the shipped rules, every `for:` at 1 s, scraping the
    // gateway's admin service every second.
    let rules = regex::Regex::new(r"for: \d+[smh]")
        .unwrap()
        .replace_all(&shipped("deploy/prometheus/alerts.yml"), "for: 1s")
        .into_owned();
    std::fs::write(d.join("alerts.yml"), rules).unwrap();
    let prom = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [alerts.yml]\nalerting:\n  alertmanagers:\n    - static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]\nscrape_configs:\n  - job_name: gatehouse\n    static_configs: [{{targets: ['{}']}}]\n",
        gw.admin
    );
    std::fs::write(d.join("prometheus.yml"), prom).unwrap();
    let _prometheus = spawn(
        "prometheus",
        &[
            format!("--config.file={}", d.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", d.join("prom-data").display()),
            format!("--web.listen-address=127.0.0.1:{}", free_port()),
        ],
        d,
        "prometheus.log",
    );
    let logs = || {
        ["alertmanager.log", "prometheus.log"]
            .iter()
            .map(|f| std::fs::read_to_string(d.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };

    // Healthy for a few scrapes: nothing is sent.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert!(!notified(&inbox, "firing"), "{:?}", inbox.lock().unwrap());

    app.kill().await;
    let fired = eventually(60, async || notified(&inbox, "firing")).await;
    assert!(
        fired,
        "no firing notification\n{:?}\n{}",
        inbox.lock().unwrap(),
        logs()
    );

    let _back = Upstream::start_at(addr, "app").await;
    let resolved = eventually(60, async || notified(&inbox, "resolved")).await;
    assert!(
        resolved,
        "no resolved notification\n{:?}\n{}",
        inbox.lock().unwrap(),
        logs()
    );
}
