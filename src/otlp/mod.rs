//! Trace export over OTLP/HTTP (protobuf), conf.yaml `tracing`: one
//! server span per sampled request and a client span per upstream
//! attempt, retries included, with the OpenTelemetry HTTP semantic
//! conventions' attributes. The spans' trace id is the one of the request's
//! `traceparent` and of the access log.
//!
//! `logging` hands finished spans to a bounded queue (`try_send`: a full
//! queue drops them, counted in `gatehouse_trace_spans_dropped_total`, and
//! never blocks a request); one task batches them and POSTs
//! `ExportTraceServiceRequest`s (up to 512 spans, gathered for 25 ms
//! when the queue runs dry), protobuf-encoded by [`wire`], to
//! `otlp_endpoint`.

pub mod wire;

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use log::warn;
use prometheus::IntCounter;
use tokio::sync::mpsc;

pub use wire::encode;

/// Spans sent in one export at most.
const BATCH: usize = 512;

/// How long an idle exporter lets spans gather once the first one came
/// (the queue holds `queue_size` of them meanwhile).
const COLLECT: Duration = Duration::from_millis(25);

/// conf.yaml's `tracing`, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSpec {
    /// `http://host:4318/v1/traces`.
    pub endpoint: String,
    /// Share of new traces sampled (a caller's sampled flag always wins).
    pub sample_ratio: f64,
    /// Spans the queue holds before dropping.
    pub queue: usize,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Longest one export may take.
    pub timeout: Duration,
}

/// An attribute value.
#[derive(Debug, Clone)]
pub enum Attr {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// The trace id's 16 bytes.
    pub trace_id: [u8; 16],
    /// The span id's 8 bytes.
    pub span_id: [u8; 8],
    /// The parent's 8 bytes, if any.
    pub parent_id: Option<[u8; 8]>,
    /// Its name.
    pub name: String,
    /// Server (the request) or client (an upstream attempt).
    pub server: bool,
    /// Start and end.
    pub start: SystemTime,
    /// End.
    pub end: SystemTime,
    /// Attributes.
    pub attrs: Vec<(&'static str, Attr)>,
    /// Whether it failed (status ERROR).
    pub error: bool,
}

/// The exporter of one `tracing` config.
pub struct Exporter {
    /// Its settings.
    pub spec: TracingSpec,
    tx: mpsc::Sender<SpanRecord>,
    rx: Mutex<Option<mpsc::Receiver<SpanRecord>>>,
    dropped: IntCounter,
    exports: [IntCounter; 2],
}

impl Exporter {
    /// An exporter whose task starts with [`Exporter::start`]; `dropped`
    /// counts spans the full queue refused, `exports` ok and failed POSTs.
    pub fn new(spec: TracingSpec, dropped: IntCounter, exports: [IntCounter; 2]) -> Exporter {
        let (tx, rx) = mpsc::channel(spec.queue.max(1));
        Exporter {
            spec,
            tx,
            rx: Mutex::new(Some(rx)),
            dropped,
            exports,
        }
    }

    /// Queues `span` for export, or drops it (counted) when the queue is full.
    pub fn submit(&self, span: SpanRecord) {
        if self.tx.try_send(span).is_err() {
            self.dropped.inc();
        }
    }

    /// Starts the export task on the current Tokio runtime (once).
    pub fn start(&self) {
        let Some(rx) = self.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let client = match crate::http_client::builder()
            .no_proxy()
            .timeout(self.spec.timeout)
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                warn!("tracing: no HTTP client ({e}); spans are not exported");
                return;
            }
        };
        tokio::spawn(export_loop(
            rx,
            client,
            self.spec.clone(),
            self.exports.clone(),
        ));
    }
}

async fn export_loop(
    mut rx: mpsc::Receiver<SpanRecord>,
    client: reqwest::Client,
    spec: TracingSpec,
    [ok, failed]: [IntCounter; 2],
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut behind = false;
    loop {
        // Idle, the task sleeps until a span comes, then lets a batch fill
        // for COLLECT: it wakes a few times a second, not once per span
        // (each wake-up is a context switch a request pays for). Behind
        // (the last batch was full), it goes on at once.
        if !behind {
            let Some(first) = rx.recv().await else {
                return;
            };
            batch.push(first);
            tokio::time::sleep(COLLECT).await;
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        behind = batch.len() == BATCH;
        if batch.is_empty() {
            continue;
        }
        let body = encode(&spec.service_name, batch.drain(..));
        let sent = client
            .post(&spec.endpoint)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => ok.inc(),
            other => {
                failed.inc();
                // Logged at 1, 2, 4, 8, … failures.
                if failed.get().is_power_of_two() {
                    let why = match other {
                        Ok(r) => format!("status {}", r.status()),
                        Err(e) => e.to_string(),
                    };
                    warn!(
                        "tracing: export to {} failed ({why}; {} so far)",
                        spec.endpoint,
                        failed.get()
                    );
                }
            }
        }
    }
}

/// A new span id, never zero.
pub fn new_span_id() -> [u8; 8] {
    fastrand::u64(1..).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_span_ids_are_never_zero() {
        assert_ne!(new_span_id(), [0; 8]);
    }
}
