//! Trace export: spans decoded by a receiver built on the official
//! OpenTelemetry protos (PyPI `opentelemetry-proto`, tests/otlp/receiver.py).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{client, eventually, free_port, route_file, Gateway, Killed, Upstream};
use crate::fault_peers::{FlakyApp, FAILING};
use crate::oauth_support::JsonBody;

/// The receiver and the file it writes one JSON line per span to.
struct Receiver {
    port: u16,
    out: PathBuf,
    _process: Killed,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start() -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("spans.jsonl");
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp/receiver.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&out)
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 with opentelemetry-proto is needed (pip install opentelemetry-proto)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the OTLP receiver did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Receiver {
            port,
            out,
            _process: Killed(child),
            _dir: dir,
        }
    }

    fn spans(&self, trace_id: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|s| s["trace_id"] == trace_id)
            .collect()
    }
}

fn conf(receiver: &Receiver, ratio: f64) -> String {
    format!(
        "tracing: {{otlp_endpoint: 'http://127.0.0.1:{}/v1/traces', sample_ratio: {ratio}, service_name: edge}}\naccess_log: {{path: access.log}}",
        receiver.port
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_exports_its_server_span_and_a_client_span_per_attempt() {
    let receiver = Receiver::start();
    let up = Upstream::start("app").await;
    // A backend answering 503 beside a live one: a request that starts on
    // it is retried on the other.
    let failing = FlakyApp::start(FAILING).await;
    let dead = failing.addr;
    let routes = route_file(
        &[dead, up.addr],
        "health_check: {interval_ms: 3600000}\nretry: {on: [503], max: 1}",
        &[("api", "/api", "")],
    );
    let gw = Gateway::start(&conf(&receiver, 1.0), &[("r.yaml", &routes)]);
    // Round robin: one of two requests starts on the failing backend.
    let mut sent = Vec::new();
    for trace in [
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "4bf92f3577b34da6a3ce929d0e0e4737",
    ] {
        let r = client()
            .get(gw.url("/api/orders?x=1"))
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = r.json_value().await;
        let header = body["headers"]["traceparent"][0]
            .as_str()
            .unwrap()
            .to_string();
        sent.push((trace, header));
    }
    let got = eventually(10, async || {
        sent.iter()
            .map(|(t, _)| receiver.spans(t).len())
            .sum::<usize>()
            >= 5
    })
    .await;
    assert!(
        got,
        "failing got {} requests; {:?}\n{}",
        failing.hits(),
        sent.iter()
            .map(|(t, _)| receiver.spans(t))
            .collect::<Vec<_>>(),
        gw.log()
    );
    let (trace, sent) = sent
        .iter()
        .find(|(t, _)| receiver.spans(t).len() == 3)
        .expect("a trace with two attempts");
    let trace = *trace;
    let spans = receiver.spans(trace);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let server = spans
        .iter()
        .find(|s| s["kind"] == 2)
        .expect("a server span");
    assert_eq!(server["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(server["name"], "GET /api");
    assert_eq!(server["resource"]["service.name"], "edge");
    assert_eq!(server["content_type"], "application/x-protobuf");
    let a = &server["attributes"];
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["http.route"], "/api");
    assert_eq!(a["url.path"], "/api/orders");
    assert_eq!(a["http.response.status_code"], 200);
    // The upstream's parent is the server span.
    assert_eq!(&sent[36..52], server["span_id"].as_str().unwrap(), "{sent}");
    let mut clients: Vec<&Value> = spans.iter().filter(|s| s["kind"] == 3).collect();
    clients.sort_by_key(|s| s["start"].as_u64());
    assert_eq!(clients.len(), 2, "one per attempt: {spans:#?}");
    for c in &clients {
        assert_eq!(c["parent_span_id"], server["span_id"]);
    }
    assert_eq!(clients[0]["attributes"]["network.peer.port"], dead.port());
    assert_eq!(clients[0]["status"], 2, "the retried attempt is an error");
    assert_eq!(
        clients[1]["attributes"]["network.peer.port"],
        up.addr.port()
    );
    assert_eq!(clients[1]["attributes"]["http.request.resend_count"], 1);
    assert_eq!(clients[1]["attributes"]["http.response.status_code"], 200);
    // The access log names the same trace.
    let log = std::fs::read_to_string(gw.dir.path().join("access.log")).unwrap_or_default();
    assert!(log.contains(&format!(r#""trace_id":"{trace}""#)), "{log}");

    // A caller's unsampled trace is not exported.
    let unsampled = "5bf92f3577b34da6a3ce929d0e0e4736";
    client()
        .get(gw.url("/api/x"))
        .header("traceparent", format!("00-{unsampled}-00f067aa0ba902b7-00"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(receiver.spans(unsampled).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sample_ratio_zero_exports_no_new_trace() {
    let receiver = Receiver::start();
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("api", "/api", "")]);
    let gw = Gateway::start(&conf(&receiver, 0.0), &[("r.yaml", &routes)]);
    for _ in 0..5 {
        let r = client().get(gw.url("/api/x")).send().await.unwrap();
        let sent = r.json_value().await["headers"]["traceparent"][0]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            sent.ends_with("-00"),
            "the upstream learns it is not sampled: {sent}"
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let exported = std::fs::read_to_string(&receiver.out).unwrap_or_default();
    assert_eq!(exported, "", "nothing exported");
}
