//! The JSON access log: one line per request.
//!
//! The request path only formats the line and hands it to a bounded
//! channel; a dedicated thread wakes every 20 ms, writes what queued up
//! (stdout or a file) and flushes. A full channel drops the line and counts it
//! (`gatehouse_access_log_dropped_total`) rather than slow requests down.
//! SIGUSR1 makes the writer reopen its file (logrotate's `postrotate`).
//! Tokens, cookies and Authorization values are never written: the line
//! holds no header, and the query values of `redact_query` parameters are
//! replaced by `REDACTED`.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::warn;
use prometheus::IntCounter;

/// Lines that may wait for the writer before new ones are dropped.
const QUEUE: usize = 65_536;

/// How often the writer wakes to write what has queued up.
const DRAIN_EVERY: Duration = Duration::from_millis(20);

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Standard output.
    Stdout,
    /// A file, appended to and reopened on SIGUSR1.
    File(PathBuf),
}

/// The access log of one config.
pub struct AccessLog {
    tx: SyncSender<String>,
    /// Query parameters whose values are never written.
    pub redact_query: Vec<String>,
    dropped: IntCounter,
}

/// Set by SIGUSR1, cleared by the writer once it has reopened its file.
#[derive(Default)]
pub struct Reopen(AtomicBool);

impl Reopen {
    /// Asks every writer to reopen its file.
    pub fn request(&self) {
        self.0.store(true, Relaxed);
    }
}

impl AccessLog {
    /// Starts the writer thread for `dest`.
    pub fn start(
        dest: Destination,
        redact_query: Vec<String>,
        dropped: IntCounter,
        reopen: Arc<Reopen>,
    ) -> std::io::Result<AccessLog> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let out = open(&dest)?;
        std::thread::Builder::new()
            .name("access log".into())
            .spawn(move || write_lines(rx, out, dest, reopen))?;
        Ok(AccessLog {
            tx,
            redact_query,
            dropped,
        })
    }

    /// Queues one line (without its newline).
    pub fn write(&self, line: String) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
            self.dropped.inc();
        }
    }
}

fn open(dest: &Destination) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match dest {
        Destination::Stdout => Box::new(std::io::stdout()),
        Destination::File(p) => {
            Box::new(OpenOptions::new().create(true).append(true).open(p)?) as Box<dyn Write + Send>
        }
    })
}

fn write_lines(
    rx: Receiver<String>,
    out: Box<dyn Write + Send>,
    dest: Destination,
    reopen: Arc<Reopen>,
) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    loop {
        if reopen.0.swap(false, Relaxed) {
            if let Destination::File(p) = &dest {
                let _ = out.flush();
                match OpenOptions::new().create(true).append(true).open(p) {
                    Ok(f) => {
                        out = BufWriter::with_capacity(
                            64 * 1024,
                            Box::new(f) as Box<dyn Write + Send>,
                        )
                    }
                    Err(e) => warn!("access log: cannot reopen {}: {e}", p.display()),
                }
            }
        }
        // Sleep, then drain: request tasks never have to wake this thread
        // (a wake-up per line would cost a context switch per request).
        std::thread::sleep(DRAIN_EVERY);
        loop {
            match rx.try_recv() {
                Ok(line) => {
                    let _ = out.write_all(line.as_bytes());
                    let _ = out.write_all(b"\n");
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        let _ = out.flush();
    }
}

/// Builds one JSON object field by field, escaping as it goes.
pub struct Line(String);

impl Line {
    /// An empty object.
    pub fn new() -> Line {
        let mut s = String::with_capacity(512);
        s.push('{');
        Line(s)
    }

    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(k);
        self.0.push_str("\":");
    }

    /// A string field.
    pub fn str(&mut self, k: &str, v: &str) -> &mut Line {
        self.key(k);
        escape(&mut self.0, v);
        self
    }

    /// A string field, or `null`.
    pub fn opt(&mut self, k: &str, v: Option<&str>) -> &mut Line {
        match v {
            Some(v) => self.str(k, v),
            None => {
                self.key(k);
                self.0.push_str("null");
                self
            }
        }
    }

    /// A number field.
    pub fn num(&mut self, k: &str, v: impl std::fmt::Display) -> &mut Line {
        self.key(k);
        let _ = write!(self.0, "{v}");
        self
    }

    /// The finished line.
    pub fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

fn escape(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `path?query` with the values of `secret` parameters replaced. A name
/// is read the way applications read it: percent-decoded (`access%5Ftoken`),
/// without a `[…]` suffix (`access_token[]`), and `;` separates pairs as
/// `&` does (`;access_token=…`).
pub fn redacted_target(path: &str, query: Option<&str>, secret: &[String]) -> String {
    let Some(q) = query else {
        return path.to_string();
    };
    let mut out = String::with_capacity(path.len() + q.len() + 1);
    out.push_str(path);
    out.push('?');
    let mut rest = q;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let pair = &rest[..end];
        match pair.split_once('=') {
            Some((name, _)) if is_secret(name, secret) => {
                out.push_str(name);
                out.push_str("=REDACTED");
            }
            _ => out.push_str(pair),
        }
        let Some(sep) = rest[end..].chars().next() else {
            break;
        };
        out.push(sep);
        rest = &rest[end + 1..];
    }
    out
}

/// Whether the raw parameter name `name` is one of `secret`.
fn is_secret(name: &str, secret: &[String]) -> bool {
    let decoded = percent_decoded(name);
    let base = decoded.split('[').next().unwrap_or("").trim();
    secret.iter().any(|s| s.eq_ignore_ascii_case(base))
}

/// `text` with `%XX` escapes decoded and `+` read as a space (lossy: only
/// compared, never written).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |i: usize| {
        bytes
            .get(i)
            .and_then(|&b| (b as char).to_digit(16))
            .map(|d| d as u8)
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Now as RFC 3339 UTC with milliseconds (`2026-11-22T01:02:03.456Z`).
pub fn rfc3339_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_millis())
}

fn rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_escape() {
        let mut l = Line::new();
        l.str("a", "q\"\n\u{1}").num("n", 5).opt("none", None);
        assert_eq!(l.finish(), r#"{"a":"q\"\n\u0001","n":5,"none":null}"#);
    }

    #[test]
    fn redaction() {
        let secret = vec!["token".to_string(), "code".to_string()];
        assert_eq!(
            redacted_target("/a", Some("x=1&token=abc&Code=9&y"), &secret),
            "/a?x=1&token=REDACTED&Code=REDACTED&y"
        );
        assert_eq!(redacted_target("/a", None, &secret), "/a");
        assert_eq!(
            redacted_target(
                "/a",
                Some("tok%65n=1&token[]=2&x=1;token=3&code[0]=4&%74oken=5&token"),
                &secret
            ),
            "/a?tok%65n=REDACTED&token[]=REDACTED&x=1;token=REDACTED&code[0]=REDACTED&%74oken=REDACTED&token"
        );
        assert_eq!(
            redacted_target("/a", Some("x=%zz&y=%"), &secret),
            "/a?x=%zz&y=%"
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_832_523, 456), "2026-11-28T02:22:03.456Z");
        assert_eq!(rfc3339(951_782_400, 1), "2000-02-29T00:00:00.001Z");
    }
}
