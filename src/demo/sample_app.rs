//! A small HTTP/1.1 app standing in for one Next.js app: the demo runs five
//! of them, and the integration tests use them as real upstream servers.
//!
//! | path (under any prefix) | answer |
//! |---|---|
//! | `…/api/health` | `{"status":"ok"}` |
//! | `…/api/stream?events=N&interval_ms=M` | server-sent events, one every M ms |
//! | `…/api/slow?ms=N` | JSON after N ms |
//! | `…/ws` | WebSocket echo |
//! | `…/.well-known/jwks.json` | the app's JWKS, when it has one |
//! | anything else | JSON echo of method, path, headers, body size, and how many requests this connection has carried (upstream reuse shows as counts above 1) |
//!
//! Responses carry `Server` and `X-Powered-By` like a Next.js app does, so
//! tests can see the gateway remove them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::auth_server::{Answer, AuthServer};

/// GUID of RFC 6455 §1.3, mixed into `Sec-WebSocket-Accept`.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest request head the app reads.
const MAX_HEAD: usize = 64 * 1024;

/// What one app answers as.
#[derive(Debug, Clone)]
pub struct SampleApp {
    /// Name in every JSON answer (`admin-portal`, …).
    pub name: String,
    /// A JWKS document served at `…/.well-known/jwks.json` (the demo's
    /// OAuth service publishes its signing key this way).
    pub jwks: Option<String>,
    /// The demo's authorization server, answering under `/oauth/`.
    pub auth: Option<Arc<AuthServer>>,
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("/")
    }

    fn query(&self, key: &str) -> Option<u64> {
        let q = self.target.split_once('?')?.1;
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse().ok())
    }
}

/// Serves `app` on `listener` until the returned set is dropped or aborted:
/// dropping it closes the listener and every open connection, the way a
/// killed process would.
pub fn spawn(listener: TcpListener, app: SampleApp) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let app = Arc::new(app);
    set.spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        let _ = stream.set_nodelay(true);
                        conns.spawn(connection(stream, Arc::clone(&app)));
                    }
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    });
    set
}

async fn connection(stream: TcpStream, app: Arc<SampleApp>) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut served = 0u64;
    while let Some(head) = read_head(&mut r).await {
        served += 1;
        let path = head.path().to_string();
        let auth = app.auth.as_ref().filter(|_| path.starts_with("/oauth/"));
        let mut body = Vec::new();
        let body_len = match read_body(&mut r, &head, auth.map(|_| &mut body)).await {
            Some(n) => n,
            None => return,
        };
        let query = head.target.split_once('?').map_or("", |(_, q)| q);
        let answer = auth.and_then(|a| {
            a.handle(
                &head.method,
                &path,
                query,
                &body,
                head.header("authorization"),
            )
        });
        let keep_going = if let Some(answer) = answer {
            respond_with(&mut w, &answer).await
        } else if path.ends_with("/ws") && head.header("upgrade").is_some() {
            websocket(r, w, &head).await;
            return;
        } else if let (true, Some(jwks)) = (path.ends_with("/.well-known/jwks.json"), &app.jwks) {
            respond(&mut w, 200, "application/json", jwks.as_bytes()).await
        } else if path.ends_with("/api/health") {
            respond(&mut w, 200, "application/json", br#"{"status":"ok"}"#).await
        } else if path.ends_with("/api/stream") {
            stream_events(&mut w, &head).await;
            false
        } else {
            if path.ends_with("/api/slow") {
                tokio::time::sleep(Duration::from_millis(head.query("ms").unwrap_or(1000))).await;
            }
            let body = echo(&app, &head, body_len, served);
            respond(&mut w, 200, "application/json", &body).await
        };
        if !keep_going
            || head
                .header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close"))
        {
            return;
        }
    }
}

async fn read_head<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Option<Head> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let n = r.read_until(b'\n', &mut buf).await.ok()?;
        if n == 0 || buf.len() > MAX_HEAD {
            return None;
        }
        if buf.ends_with(b"\r\n\r\n") || buf == b"\r\n" {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(&buf).ok()?;
    Some(Head {
        method: req.method?.to_string(),
        target: req.path?.to_string(),
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
    })
}

/// Largest body kept for the authorization server (its forms are small).
const MAX_KEPT_BODY: u64 = 64 * 1024;

/// Reads the body, into `keep` when given (a `Content-Length` body of at
/// most [`MAX_KEPT_BODY`]), else discarding it; returns its size.
async fn read_body<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    head: &Head,
    keep: Option<&mut Vec<u8>>,
) -> Option<u64> {
    if head
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        let mut total = 0u64;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).await.ok()?;
            let size = u64::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
            if size == 0 {
                let mut end = String::new();
                while r.read_line(&mut end).await.ok()? > 2 {
                    end.clear();
                }
                return Some(total);
            }
            tokio::io::copy(&mut (&mut *r).take(size + 2), &mut tokio::io::sink())
                .await
                .ok()?;
            total += size;
        }
    }
    let len: u64 = head
        .header("content-length")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    match keep {
        Some(buf) if len <= MAX_KEPT_BODY => {
            (&mut *r).take(len).read_to_end(buf).await.ok()?;
        }
        _ => {
            tokio::io::copy(&mut (&mut *r).take(len), &mut tokio::io::sink())
                .await
                .ok()?;
        }
    }
    Some(len)
}

fn echo(app: &SampleApp, head: &Head, body_len: u64, conn_requests: u64) -> Vec<u8> {
    let headers: BTreeMap<&str, Vec<&str>> =
        head.headers.iter().fold(BTreeMap::new(), |mut m, (k, v)| {
            m.entry(k.as_str())
                .or_insert_with(Vec::new)
                .push(v.as_str());
            m
        });
    serde_json::json!({
        "app": app.name,
        "method": head.method,
        "path": head.path(),
        "target": head.target,
        "headers": headers,
        "body_bytes": body_len,
        "conn_requests": conn_requests,
    })
    .to_string()
    .into_bytes()
}

async fn respond<W: AsyncWrite + Unpin>(w: &mut W, status: u16, ctype: &str, body: &[u8]) -> bool {
    let head = format!(
        "HTTP/1.1 {status} OK\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nserver: sample-app\r\nx-powered-by: Next.js\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\n\r\n",
        body.len()
    );
    w.write_all(head.as_bytes()).await.is_ok() && w.write_all(body).await.is_ok()
}

/// Writes an answer of the authorization server.
async fn respond_with<W: AsyncWrite + Unpin>(w: &mut W, a: &Answer) -> bool {
    let mut head = format!(
        "HTTP/1.1 {} OK\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
        a.status,
        a.ctype,
        a.body.len()
    );
    for (name, value) in &a.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes()).await.is_ok() && w.write_all(&a.body).await.is_ok()
}

/// Server-sent events, each written as its own chunk, flushed at once.
async fn stream_events<W: AsyncWrite + Unpin>(w: &mut W, head: &Head) {
    let events = head.query("events").unwrap_or(5);
    let interval = Duration::from_millis(head.query("interval_ms").unwrap_or(500));
    let start = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
    if w.write_all(start.as_bytes()).await.is_err() {
        return;
    }
    for i in 0..events {
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        let event = format!("id: {i}\ndata: {{\"n\":{i}}}\n\n");
        let chunk = format!("{:x}\r\n{event}\r\n", event.len());
        if w.write_all(chunk.as_bytes()).await.is_err() || w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.write_all(b"0\r\n\r\n").await;
}

/// Accepts the upgrade and echoes text and binary frames until close.
async fn websocket<R, W>(mut r: BufReader<R>, mut w: W, head: &Head)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Some(key) = head.header("sec-websocket-key") else {
        return;
    };
    let digest = sha1_smol::Sha1::from(format!("{key}{WS_GUID}"))
        .digest()
        .bytes();
    let accept = base64::engine::general_purpose::STANDARD.encode(digest);
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
    );
    if w.write_all(reply.as_bytes()).await.is_err() {
        return;
    }
    while let Some((opcode, payload)) = read_frame(&mut r).await {
        let reply_op = match opcode {
            0x1 | 0x2 => opcode,
            0x9 => 0xA,
            0x8 => {
                let _ = write_frame(&mut w, 0x8, &payload).await;
                return;
            }
            _ => continue,
        };
        if write_frame(&mut w, reply_op, &payload).await.is_err() {
            return;
        }
    }
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h).await.ok()?;
    let opcode = h[0] & 0x0f;
    let masked = h[1] & 0x80 != 0;
    let len = match h[1] & 0x7f {
        126 => r.read_u16().await.ok()? as u64,
        127 => r.read_u64().await.ok()?,
        n => n as u64,
    };
    if len > 1 << 20 {
        return None;
    }
    let mut mask = [0u8; 4];
    if masked {
        r.read_exact(&mut mask).await.ok()?;
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await.ok()?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Some((opcode, payload))
}

async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    opcode: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= u16::MAX as usize => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    w.write_all(&frame).await
}
