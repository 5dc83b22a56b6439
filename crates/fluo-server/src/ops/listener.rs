//! The operations listener (`--metrics-port`): `GET /metrics`, `GET /health/live`,
//! `GET /health/ready`, `POST` / `DELETE /admin/drain`, and the pipeline view (`GET
//! /admin/pipelines`, `GET /admin/pipelines/{elementId}`, the page at `/admin/view/`).
//! HTTP/1.1, one request per connection, no bodies; the request head (read by `http.rs`) is
//! bounded in size and time, and so are the connections, in all and per address (the last one
//! kept for health probes). With a token set (`--auth-token`), `/metrics` and `/admin/*`
//! require it as the WebSocket does, except the page's own files (they hold no data, and a
//! browser opening the page cannot send the token); without one, `/admin/*` is refused
//! (403). The health paths answer without it (probes), and say no more than up or not.

use super::Ops;
use crate::http::{authorized, read_head, respond_typed, Head};
use crate::ws::Acceptor;
use fluo_core::http::request::percent_decode;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long a client gets for its request head (and a TLS handshake).
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections at once: a monitoring system needs a few; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Connections at once from one address.
pub const MAX_PER_ADDRESS: usize = 8;
/// The Content-Type of the OpenMetrics text `prometheus-client` writes.
const METRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// At most one warning about refused connections per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The open connections, in all and per address. The last of the global slots is kept for
/// a request that turns out to be a health probe (see [`serve`]).
#[derive(Default)]
struct Slots {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One open connection, counted until dropped; `reserved` when it took the last slot.
struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
    reserved: bool,
}

impl Slots {
    fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (all, per) = &mut *open;
        if *all >= MAX_CONNECTIONS {
            return Err("all connections in use");
        }
        let mine = per.entry(ip).or_insert(0);
        if *mine >= MAX_PER_ADDRESS {
            return Err("this address's connections in use");
        }
        *mine += 1;
        *all += 1;
        Ok(Slot {
            slots: self.clone(),
            ip,
            reserved: *all == MAX_CONNECTIONS,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        let (all, per) = &mut *open;
        *all -= 1;
        if let Some(n) = per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
    }
}

/// Warns about refused connections at most once per [`WARN_EVERY`], with how many.
#[derive(Default)]
struct RefusedLog {
    last: Option<Instant>,
    since: u64,
}

impl RefusedLog {
    fn refused(&mut self, peer: SocketAddr, why: &str) {
        self.since += 1;
        if self.last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        tracing::warn!(%peer, refused = self.since, "refusing operations connections: {why}");
        self.last = Some(Instant::now());
        self.since = 0;
    }
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
    let slots = Arc::new(Slots::default());
    let mut log = RefusedLog::default();
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((stream, peer)) = r else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let slot = match slots.take(peer.ip()) {
                    Ok(s) => s,
                    Err(why) => {
                        log.refused(peer, why);
                        continue;
                    }
                };
                let (ops, token, acceptor) = (ops.clone(), token.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Acceptor::Plain => serve(stream, &ops, token.as_deref(), slot).await,
                        Acceptor::Tls(tls) => {
                            if let Ok(Ok(s)) = tokio::time::timeout(HEAD_TIMEOUT, tls.accept(stream)).await {
                                serve(s, &ops, token.as_deref(), slot).await
                            }
                        }
                    }
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    ops: &Ops,
    token: Option<&str>,
    slot: Slot,
) {
    let req = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut s)).await {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => return,
        Ok(Err((status, text))) => return respond(&mut s, status, TEXT, &text).await,
        Err(_) => {
            let text = "the request head did not arrive in time";
            return respond(&mut s, 408, TEXT, text).await;
        }
    };
    // The last slot is kept for the health probes: a scrape or admin call there waits its
    // turn elsewhere.
    if slot.reserved && !req.path.starts_with("/health/") {
        let text = "too many connections: only /health/* is answered on this one";
        return respond(&mut s, 503, TEXT, text).await;
    }
    if req.path == "/admin/view" {
        // The page's files are named relative to the folder.
        let extra = [
            ("Cache-Control", "no-store"),
            ("Location", "/admin/view/"),
            NOSNIFF,
        ];
        return respond_typed(&mut s, 308, TEXT, b"/admin/view/", &extra).await;
    }
    let (status, ctype, body) = answer(&req, ops, token).await;
    if status == 200 && ctype == HTML {
        let extra = [
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy", PAGE_POLICY),
            NOSNIFF,
        ];
        return respond_typed(&mut s, status, ctype, body.as_bytes(), &extra).await;
    }
    respond(&mut s, status, ctype, &body).await;
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";
/// The page loads its own script and style sheet and asks this listener only (no inline
/// script or style); it cannot be framed.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

async fn answer(req: &Head, ops: &Ops, token: Option<&str>) -> (u16, &'static str, String) {
    let admin = req.path.starts_with("/admin/");
    if admin && token.is_none() {
        // Whoever reaches the port could otherwise take the server out of service, or see
        // every pipeline's element ids (which let a WebSocket client act on them).
        let text =
            "the admin paths need --auth-token set on the server: without it they are refused";
        return (403, TEXT, text.into());
    }
    if let Some(file) = req.path.strip_prefix("/admin/view/") {
        // The page's files: no data in them, and a browser cannot send a token with them.
        return match (req.method.as_str(), super::view::page_file(&req.path)) {
            ("GET", Some((ctype, text))) => (200, ctype, text.into()),
            ("GET", None) => (404, TEXT, format!("the page has no file '{file}'")),
            (m, _) => (405, TEXT, format!("{m} is not allowed here")),
        };
    }
    let guarded = req.path == "/metrics" || admin;
    if let (true, Some(t)) = (guarded, token) {
        if !authorized(req, t) {
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
        ("GET", "/admin/pipelines") => {
            match ops.pipelines_text(req.query_param("pipeline")).await {
                Ok(text) => (200, JSON, text),
                Err(super::view::NoView::Busy) => (503, TEXT, BUSY.into()),
                Err(super::view::NoView::NoAnswer) => (503, TEXT, NO_ANSWER.into()),
            }
        }
        ("GET", p) if p.starts_with("/admin/pipelines/") => {
            let id = percent_decode(&p["/admin/pipelines/".len()..]);
            match ops.element_text(&id).await {
                Some(Some(text)) => (200, JSON, text),
                Some(None) => (404, TEXT, format!("no element '{id}' in a media pipeline")),
                None => (503, TEXT, NO_ANSWER.into()),
            }
        }
        (_, p) if p == "/admin/pipelines" || p.starts_with("/admin/pipelines/") => {
            (405, TEXT, format!("{} is not allowed here", req.method))
        }
        (_, "/metrics" | "/health/live" | "/health/ready" | "/admin/drain") => {
            (405, TEXT, format!("{} is not allowed here", req.method))
        }
        _ => (
            404,
            TEXT,
            "nothing at this URL (/metrics, /health/live, /health/ready, /admin/drain, /admin/pipelines, /admin/view/)".into(),
        ),
    }
}

/// Browsers take an answer as its Content-Type says, never as what its text looks like.
const NOSNIFF: (&str, &str) = ("X-Content-Type-Options", "nosniff");

/// The answer when the core task or the media thread is too busy to answer in time.
const NO_ANSWER: &str = "the server did not answer in time; try again";
/// The answer to a request for a view while another request makes one.
const BUSY: &str = "a view is being made for another request; try again in a moment";

/// The answer, as http.rs writes its own (then reading what the client still sends for a
/// moment, so that a request with a body does not get a reset instead of the answer).
async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    status: u16,
    ctype: &str,
    body: &str,
) {
    // Answers may echo what the request named (a path, an id): never read as anything but
    // their type.
    let mut extra = vec![("Cache-Control", "no-store"), NOSNIFF];
    if status == 401 {
        extra.push(("WWW-Authenticate", "Bearer realm=\"fluo\""));
    }
    respond_typed(s, status, ctype, body.as_bytes(), &extra).await;
}
