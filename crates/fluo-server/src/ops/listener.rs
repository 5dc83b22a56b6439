//! The operations listener (`--metrics-port`): `GET /metrics`, `GET /health/live`,
//! `GET /health/ready`, and `POST` / `DELETE /admin/drain`. HTTP/1.1, one request per
//! connection, no bodies; the request head is bounded in size and time. With a token set
//! (`--auth-token`), `/metrics` and `/admin/*` require it as the WebSocket does; without one,
//! `/admin/*` is refused (403). The health paths answer without it (probes), and say no more
//! than up or not.

use super::Ops;
use crate::ws::{constant_time_eq, percent_decode, Acceptor};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The largest request head taken.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client gets for its request head (and a TLS handshake).
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections at once: a monitoring system needs a few; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// The Content-Type of the OpenMetrics text `prometheus-client` writes.
const METRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A request: method, path, query, the bearer token given (header or `access_token`).
struct Request {
    method: String,
    path: String,
    token: Option<String>,
}

/// Serves the operations listener on `listener` until `shutdown`; `token` as the
/// WebSocket's.
pub async fn serve_on(
    ops: Arc<Ops>,
    listener: TcpListener,
    token: Option<String>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Ok(a) = listener.local_addr() {
        *ops.address.lock().unwrap_or_else(|p| p.into_inner()) = Some(a);
    }
    let acceptor = match tls {
        Some(t) => Acceptor::Tls(t),
        None => Acceptor::Plain,
    };
    let token: Arc<Option<String>> = Arc::new(token);
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((stream, peer)) = r else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if live.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    tracing::warn!(%peer, "refusing an operations connection: {MAX_CONNECTIONS} open");
                    continue;
                }
                live.fetch_add(1, Ordering::Relaxed);
                let slot = Slot(live.clone());
                let (ops, token, acceptor) = (ops.clone(), token.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    match acceptor {
                        Acceptor::Plain => serve(stream, &ops, token.as_deref()).await,
                        Acceptor::Tls(tls) => {
                            if let Ok(Ok(s)) = tokio::time::timeout(HEAD_TIMEOUT, tls.accept(stream)).await {
                                serve(s, &ops, token.as_deref()).await
                            }
                        }
                    }
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// One open connection, counted until dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, ops: &Ops, token: Option<&str>) {
    let req = match tokio::time::timeout(HEAD_TIMEOUT, read_request(&mut s)).await {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => return,
        Ok(Err(text)) => return respond(&mut s, 400, "text/plain; charset=utf-8", &text).await,
        Err(_) => {
            return respond(
                &mut s,
                408,
                "text/plain; charset=utf-8",
                "the request head did not arrive in time",
            )
            .await
        }
    };
    let (status, ctype, body) = answer(&req, ops, token).await;
    respond(&mut s, status, ctype, &body).await;
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

async fn answer(req: &Request, ops: &Ops, token: Option<&str>) -> (u16, &'static str, String) {
    let admin = req.path.starts_with("/admin/");
    if admin && token.is_none() {
        // Whoever reaches the port could otherwise take the server out of service.
        let text =
            "the admin paths need --auth-token set on the server: without it they are refused";
        return (403, TEXT, text.into());
    }
    let guarded = req.path == "/metrics" || admin;
    if let (true, Some(t)) = (guarded, token) {
        let ok = req
            .token
            .as_deref()
            .is_some_and(|g| constant_time_eq(g.as_bytes(), t.as_bytes()));
        if !ok {
            let text = "this server requires a token (Authorization: Bearer <token> or ?access_token=<token>)";
            return (401, TEXT, text.into());
        }
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/metrics") => (200, METRICS_TYPE, ops.metrics_text().await),
        ("GET", "/health/live") => (200, JSON, r#"{"status":"live"}"#.into()),
        ("GET", "/health/ready") => {
            let r = ops.readiness();
            let body = serde_json::json!({
                "status": if r.ready() { "ready" } else { "not ready" },
                "accepting": r.accepting,
                "mediaSockets": r.media_sockets,
                "gstreamer": r.gstreamer,
                "draining": r.draining,
            });
            (if r.ready() { 200 } else { 503 }, JSON, body.to_string())
        }
        ("POST", "/admin/drain") => {
            ops.set_draining(true);
            (200, JSON, r#"{"draining":true}"#.into())
        }
        ("DELETE", "/admin/drain") => {
            ops.set_draining(false);
            (200, JSON, r#"{"draining":false}"#.into())
        }
        (_, "/metrics" | "/health/live" | "/health/ready" | "/admin/drain") => {
            (405, TEXT, format!("{} is not allowed here", req.method))
        }
        _ => (
            404,
            TEXT,
            "nothing at this URL (/metrics, /health/live, /health/ready, /admin/drain)".into(),
        ),
    }
}

/// Reads a request head; `None` when the client closed before sending one.
async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> Result<Option<Request>, String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|_| "the request could not be read")?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let target = req.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let header = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|v| v.trim().strip_prefix("Bearer "))
                    .map(|v| v.trim().to_string());
                let query = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("access_token=").map(percent_decode));
                return Ok(Some(Request {
                    method: req.method.unwrap_or("").to_string(),
                    path: path.to_string(),
                    token: header.or(query),
                }));
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(format!("the request head exceeds {MAX_HEAD} bytes"))
            }
            Err(e) => return Err(format!("malformed request: {e}")),
        }
    }
}

async fn respond<S: AsyncWrite + Unpin>(s: &mut S, status: u16, ctype: &str, body: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    if status == 401 {
        head.push_str("WWW-Authenticate: Bearer realm=\"fluo\"\r\n");
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body.as_bytes()).await;
    let _ = s.flush().await;
    let _ = s.shutdown().await;
}
