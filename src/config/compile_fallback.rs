//! Validation and compilation of a route's degraded answers: `fallback`
//! (a static answer read from a file at load) and `fallback_upstream`.

use std::hash::Hash;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::compile::{resolve, Compiler, Parsed};
use super::file::{FallbackFile, RouteEntry, RouteFile};
use crate::metrics::Metrics;
use crate::proxy::fallback::{Fallback, FallbackAnswer, REASONS};
use crate::upstream::Pool;

/// The largest fallback body: it is held in memory by every config.
const MAX_BODY_BYTES: u64 = 1 << 20;

impl Compiler<'_> {
    /// Route `key`'s fallbacks, if it has any. `upstream` is its
    /// `fallback_upstream`, already looked up (`None` when it has none or
    /// the name is wrong); the file read for `fallback.body_file` joins
    /// the config's version and its watched files.
    pub(super) fn route_fallback(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        e: &RouteEntry,
        upstream: Option<Arc<Pool>>,
        metrics: &Metrics,
    ) -> Option<Fallback> {
        if e.fallback.is_none() && e.fallback_upstream.is_none() {
            return None;
        }
        if e.fallback_upstream.is_some() && e.fallback_upstream == e.upstream {
            self.errors.push(f.err(
                &format!("{key}.fallback_upstream"),
                "is the route's own upstream: name another one",
            ));
        }
        let answer = e
            .fallback
            .as_ref()
            .and_then(|a| self.fallback_answer(f, &format!("{key}.fallback"), a));
        Some(Fallback {
            answer,
            upstream,
            counters: REASONS.map(|r| metrics.fallbacks.with_label_values(&[&e.name, r])),
        })
    }

    fn fallback_answer(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        a: &FallbackFile,
    ) -> Option<FallbackAnswer> {
        let status = match StatusCode::from_u16(a.status) {
            Ok(s) if (200..=599).contains(&a.status) => Some(s),
            _ => {
                self.errors.push(f.err(
                    &format!("{key}.status"),
                    format!("{} is not a final status (200-599)", a.status),
                ));
                None
            }
        };
        let body = match &a.body_file {
            Some(p) => self.fallback_body(f, &format!("{key}.body_file"), p),
            None => Some(Bytes::new()),
        };
        let bodyless = matches!(a.status, 204 | 304);
        if bodyless && body.as_ref().is_some_and(|b| !b.is_empty()) {
            self.errors.push(f.err(
                &format!("{key}.body_file"),
                format!("a {} answer has no body", a.status),
            ));
        }
        let guessed = a
            .body_file
            .as_deref()
            .map_or("text/plain; charset=utf-8", guess_type);
        let content_type = match HeaderValue::try_from(a.content_type.as_deref().unwrap_or(guessed))
        {
            Ok(v) => Some(v),
            Err(_) => {
                self.errors
                    .push(f.err(&format!("{key}.content_type"), "not a valid header value"));
                None
            }
        };
        Some(FallbackAnswer {
            status: status?,
            content_type: content_type?,
            body: body?,
        })
    }

    /// The bytes of a fallback body file, at most [`MAX_BODY_BYTES`].
    fn fallback_body(&mut self, f: &Parsed<RouteFile>, key: &str, p: &str) -> Option<Bytes> {
        let path = resolve(&self.base, p);
        let read = std::fs::metadata(&path).and_then(|m| {
            if m.len() > MAX_BODY_BYTES {
                return Err(std::io::Error::other(format!(
                    "{} bytes, over the {MAX_BODY_BYTES}-byte limit",
                    m.len()
                )));
            }
            std::fs::read(&path)
        });
        match read {
            Ok(bytes) => {
                bytes.hash(&mut self.hasher);
                self.extra_files.push(path);
                Some(Bytes::from(bytes))
            }
            Err(err) => {
                self.errors
                    .push(f.err(key, format!("cannot read {}: {err}", path.display())));
                None
            }
        }
    }
}

/// The media type of a body file, from its extension.
fn guess_type(path: &str) -> &'static str {
    let ext = Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("json") => "application/json",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}
