//! Response aggregation (route key `aggregate`): one GET fans out to
//! several upstream paths in parallel and is answered with one JSON
//! object, `{part: its JSON, …}`.
//!
//! Each part picks a backend of its upstream as proxied requests do (the
//! same pools, health, breakers and in-flight limits; one more backend is
//! tried after a failed connect) and carries the caller's identity headers,
//! request id, trace context and query. A part must answer 2xx JSON within
//! the aggregate's `timeout_ms`. An optional part that does not becomes
//! `null` and is named in `X-Gatehouse-Partial`; a required one fails the
//! request: 504 `gateway_timeout` when it ran out of time, else 502
//! `bad_gateway`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use pingora_http::ResponseHeader;
use prometheus::IntCounter;

use super::RequestCtx;
use crate::reject::Rejection;
use crate::upstream::{Pool, Tried};

/// The response header naming the optional parts that failed.
pub const PARTIAL_HEADER: &str = "x-gatehouse-partial";

/// The largest body one part may answer with.
const MAX_PART_BYTES: usize = 1 << 20;

/// The `result` label values of `gatehouse_aggregate_parts_total`, in
/// the order of [`Part::counters`].
pub const RESULTS: [&str; 3] = ["ok", "error", "timeout"];

/// One part of an aggregate.
pub struct Part {
    /// Its key in the answer.
    pub name: String,
    /// Where it is fetched.
    pub pool: Arc<Pool>,
    /// The upstream path (the caller's query is appended).
    pub path: String,
    /// Whether its failure fails the request.
    pub required: bool,
    /// `gatehouse_aggregate_parts_total{route, part, result}`, by [`RESULTS`] index.
    pub counters: [IntCounter; RESULTS.len()],
}

/// A route's `aggregate`.
pub struct Aggregate {
    /// Its parts, in answer order.
    pub parts: Vec<Part>,
    /// Longest the whole fan-out may take.
    pub timeout: Duration,
}

/// How one part ended.
enum Outcome {
    Ok(serde_json::Value),
    Failed,
    TimedOut,
}

/// The HTTP client of the parts: connections kept alive between requests,
/// no proxy from the environment.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        crate::http_client::builder()
            .no_proxy()
            .http1_only()
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain HTTP client builds")
    })
}

/// Fetches every part of `agg` for the request of `ctx` (its `query`),
/// and builds the answer's header and JSON body.
pub async fn answer(
    agg: &Aggregate,
    ctx: &RequestCtx,
    query: Option<&str>,
) -> Result<(ResponseHeader, Bytes), Rejection> {
    let deadline = Instant::now() + agg.timeout;
    let fetches = agg.parts.iter().map(|p| fetch(p, ctx, query, deadline));
    let outcomes = futures_util::future::join_all(fetches).await;
    let mut body = serde_json::Map::with_capacity(agg.parts.len());
    let mut partial = Vec::new();
    for (part, outcome) in agg.parts.iter().zip(outcomes) {
        let (index, value) = match outcome {
            Outcome::Ok(v) => (0, Some(v)),
            Outcome::Failed => (1, None),
            Outcome::TimedOut => (2, None),
        };
        part.counters[index].inc();
        match value {
            Some(v) => {
                body.insert(part.name.clone(), v);
            }
            None if part.required => {
                return Err(if index == 2 {
                    Rejection::GatewayTimeout
                } else {
                    Rejection::BadGateway
                });
            }
            None => {
                body.insert(part.name.clone(), serde_json::Value::Null);
                partial.push(part.name.as_str());
            }
        }
    }
    let body = Bytes::from(serde_json::Value::Object(body).to_string());
    let mut h = ResponseHeader::build(200, Some(4)).map_err(|_| Rejection::Internal)?;
    let _ = h.insert_header(http::header::CONTENT_TYPE, "application/json");
    let _ = h.insert_header(http::header::CONTENT_LENGTH, body.len());
    let _ = h.insert_header(http::header::CACHE_CONTROL, "no-store");
    if !partial.is_empty() {
        if let Ok(v) = HeaderValue::try_from(partial.join(", ")) {
            let _ = h.insert_header(PARTIAL_HEADER, v);
        }
    }
    Ok((h, body))
}

/// One part: a backend of its pool (another one after a failed connect),
/// until `deadline`.
async fn fetch(part: &Part, ctx: &RequestCtx, query: Option<&str>, deadline: Instant) -> Outcome {
    let mut tried = Tried::default();
    for _ in 0..2 {
        let Ok((lease, _)) = part.pool.select(b"", tried) else {
            return Outcome::Failed;
        };
        tried.add(lease.index());
        let url = match query {
            Some(q) => format!("http://{}{}?{q}", lease.backend().addr, part.path),
            None => format!("http://{}{}", lease.backend().addr, part.path),
        };
        let mut req = client()
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .header("x-request-id", ctx.request_id.as_str());
        if let Some(t) = &ctx.trace {
            req = req.header("traceparent", t.header());
        }
        if let Some(id) = &ctx.identity {
            for (name, value) in &id.headers {
                req = req.header(name, value);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let read_timeout = part.pool.settings.read_timeout.min(left);
        let sent = tokio::time::timeout(left, async {
            let resp = req.timeout(read_timeout).send().await?;
            let ok = resp.status().is_success();
            Ok::<_, reqwest::Error>((ok, read_limited(resp).await))
        })
        .await;
        let outcome = match sent {
            Err(_) => Outcome::TimedOut,
            Ok(Err(e)) if e.is_connect() => {
                // Never reached the backend: another one may do.
                lease.backend().record(true);
                continue;
            }
            Ok(Err(e)) if e.is_timeout() => Outcome::TimedOut,
            Ok(Err(_)) | Ok(Ok((false, _))) | Ok(Ok((_, None))) => Outcome::Failed,
            Ok(Ok((true, Some(body)))) => match serde_json::from_slice(&body) {
                Ok(v) => Outcome::Ok(v),
                Err(_) => Outcome::Failed,
            },
        };
        lease.backend().record(!matches!(outcome, Outcome::Ok(_)));
        return outcome;
    }
    Outcome::Failed
}

/// A part's body, if whole and at most [`MAX_PART_BYTES`].
async fn read_limited(mut resp: reqwest::Response) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.ok()? {
        if body.len() + chunk.len() > MAX_PART_BYTES {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}
