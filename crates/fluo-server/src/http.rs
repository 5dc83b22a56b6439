//! Fluo's own HTTP listener (KMS's HttpEndpoint server): one listener, its routes per
//! feature in `fluo_core::http::HttpRoutes` (today HttpPostEndpoint's uploads at
//! `/post/<uuid>`). HTTP/1.1, one request per connection, written for hostile clients: the
//! request head is bounded in size and time, the body is streamed to the element as it comes
//! (never held whole: the listener stops reading while the element's demuxer has much
//! queued), its size is bounded, and a client that stops sending is cut off. The parsing
//! (head, token, framing, body decoding) is `fluo_core::http::request`, IO-free and fuzzed
//! (fuzz/fuzz_targets/http_request.rs); this module reads the socket, with its timeouts.

mod whip;

use crate::ws::Acceptor;
pub(crate) use fluo_core::http::request::{authorized, Head};
use fluo_core::http::request::{framing, too_big, Body, HEAD_READ, READ_SIZE};
use fluo_core::http::{HttpRefusal, HttpRoutes, Route, Upload, UploadCut, UploadState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long a client gets to send its request head (and a TLS handshake).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The listener stops reading a body while the element holds more than this, queued in
/// front of its demuxer, and reads again below half of it.
const HIGH_WATER: u64 = 1 << 20;
/// How long an upload may wait for the element's pipeline to take what it holds.
const STALL: Duration = Duration::from_secs(60);
/// Connections at once on the listener.
const MAX_CONNECTIONS: usize = 1024;

/// What the listener is told by the configuration.
#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    /// The WebSocket's token, required here too when set.
    pub token: Option<String>,
    /// The largest body taken.
    pub max_body: u64,
    /// A body that makes no progress this long is cut off.
    pub read_timeout: Duration,
}

/// Accepts connections until `shutdown`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    acceptor: Acceptor,
    routes: Arc<HttpRoutes>,
    settings: Arc<HttpSettings>,
    mut shutdown: watch::Receiver<bool>,
) {
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (stream, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("HTTP accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if live.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    tracing::warn!(%peer, "refusing an HTTP connection: {MAX_CONNECTIONS} open");
                    continue;
                }
                let _ = stream.set_nodelay(true);
                live.fetch_add(1, Ordering::Relaxed);
                let (routes, settings, live, acceptor) =
                    (routes.clone(), settings.clone(), live.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Acceptor::Plain => serve(stream, &routes, &settings).await,
                        Acceptor::Tls(tls) => {
                            match tokio::time::timeout(HEAD_TIMEOUT, tls.accept(stream)).await {
                                Ok(Ok(s)) => serve(s, &routes, &settings).await,
                                _ => tracing::debug!(%peer, "HTTP: TLS handshake failed"),
                            }
                        }
                    }
                    live.fetch_sub(1, Ordering::Relaxed);
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// An answer before, or instead of, the body.
type Answer = (u16, String);

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    routes: &HttpRoutes,
    settings: &HttpSettings,
) {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut s)).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => return,
        Ok(Err((status, text))) => return respond(&mut s, status, &text, &[]).await,
        Err(_) => {
            let text = "the request head did not arrive in time";
            return respond(&mut s, 408, text, &[]).await;
        }
    };
    if let Some(found) = whip::route(routes, &head.path) {
        return whip::serve(&mut s, head, found, settings).await;
    }
    let (status, text) = match handle(&mut s, head, routes, settings).await {
        Ok(ok) => ok,
        Err(e) => e,
    };
    // Browsers' pages on other origins may POST (a MediaRecorder's output): every answer
    // allows any origin, and a preflight gets what an upload needs.
    let mut extra = refusal_headers(status, "POST, OPTIONS");
    if status == 204 {
        extra.extend([
            ("Access-Control-Allow-Methods", "POST"),
            (
                "Access-Control-Allow-Headers",
                "authorization, content-type",
            ),
            ("Access-Control-Max-Age", "600"),
        ]);
    }
    respond(&mut s, status, &text, &extra).await;
}

/// Reads the request head (parsed by `fluo_core::http::request`); `None` when the client
/// closed before sending one.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Result<Option<Head>, Answer> {
    let mut buf = Vec::with_capacity(HEAD_READ);
    let mut chunk = [0u8; HEAD_READ];
    loop {
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|_| (400, "the request could not be read".to_string()))?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(head) = Head::parse(&buf).map_err(refused)? {
            return Ok(Some(head));
        }
    }
}

/// 401 unless the request carries the server's token (when one is set).
fn check_token(head: &Head, settings: &HttpSettings) -> Result<(), Answer> {
    match &settings.token {
        Some(token) if !authorized(head, token) => {
            let text = "this server requires a token (Authorization: Bearer <token> or ?access_token=<token>)";
            Err((401, text.into()))
        }
        _ => Ok(()),
    }
}

/// `Expect: 100-continue` answered before the body is read.
async fn expect_continue<S: AsyncWrite + Unpin>(s: &mut S, head: &Head) {
    if head
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        let _ = s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
    }
}

/// The headers of every answer (any origin may call) and those a 405 (`Allow: allow`) or a
/// 401 needs.
fn refusal_headers(status: u16, allow: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut extra = vec![("Access-Control-Allow-Origin", "*")];
    match status {
        405 => extra.push(("Allow", allow)),
        401 => extra.push(("WWW-Authenticate", "Bearer realm=\"fluo\"")),
        _ => {}
    }
    extra
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    head: Head,
    routes: &HttpRoutes,
    settings: &HttpSettings,
) -> Result<Answer, Answer> {
    let Some(Route::Upload(target)) = routes.find(&head.path) else {
        return Err((404, "nothing at this URL".into()));
    };
    if head.method == "OPTIONS" {
        return Ok((204, String::new()));
    }
    if head.method != "POST" {
        let m = &head.method;
        return Err((405, format!("{m} is not allowed here: POST the media")));
    }
    check_token(&head, settings)?;
    let framing = framing(&head, settings.max_body).map_err(refused);
    let mut upload = target.begin().map_err(|r| (r.status, r.text))?;
    let framing = match framing {
        Ok(f) => f,
        Err((status, text)) => {
            upload.cut(UploadCut::Refused(format!("an upload was refused: {text}")));
            return Err((status, text));
        }
    };
    expect_continue(s, &head).await;
    let mut body = Body::new(framing, head.rest);
    let r = stream_body(s, &mut body, upload.as_mut(), settings).await;
    if let Err((status, text)) = &r {
        match status {
            0 => upload.cut(UploadCut::Lost),
            415 | 500 => upload.cut(UploadCut::Failed),
            _ => upload.cut(UploadCut::Refused(format!(
                "the upload was cut off: {text}"
            ))),
        }
    }
    r
}

/// Hands the body to `upload` as it comes; at its end, waits until the media ended.
async fn stream_body<S: AsyncRead + Unpin>(
    s: &mut S,
    body: &mut Body,
    upload: &mut dyn Upload,
    settings: &HttpSettings,
) -> Result<Answer, Answer> {
    let mut total: u64 = 0;
    let mut buf = vec![0u8; READ_SIZE];
    let mut out = Vec::with_capacity(READ_SIZE);
    loop {
        out.clear();
        let done = body.decode(&mut out).map_err(|e| (400, e.to_string()))?;
        if !out.is_empty() {
            total += out.len() as u64;
            if total > settings.max_body {
                return Err((413, too_big(settings.max_body)));
            }
            let state = step(upload, std::mem::take(&mut out)).await?;
            if state.queued > HIGH_WATER {
                drain(upload, HIGH_WATER / 2).await?;
            }
            continue;
        }
        if done {
            break;
        }
        let n = match tokio::time::timeout(settings.read_timeout, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err((0, "the connection closed".into())),
            Ok(Ok(n)) => n,
            Err(_) => {
                let secs = settings.read_timeout.as_secs_f64();
                return Err((408, format!("the client sent nothing for {secs} s")));
            }
        };
        body.input(&buf[..n]);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    upload.finish(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    let mut state = rx.await.map_err(|_| gone())?.map_err(refused)?;
    let mut last = (state.queued, tokio::time::Instant::now());
    while !state.ended {
        tokio::time::sleep(Duration::from_millis(50)).await;
        state = step(upload, Vec::new()).await?;
        if state.queued != last.0 {
            last = (state.queued, tokio::time::Instant::now());
        } else if last.1.elapsed() > STALL {
            return Err((503, "the media pipeline stopped taking the upload".into()));
        }
    }
    Ok((200, format!("{total} bytes received; the media ended")))
}

fn refused(r: HttpRefusal) -> Answer {
    (r.status, r.text)
}

fn gone() -> Answer {
    (500, "the element went away".into())
}

/// One step of `upload`: `bytes` handed over (or none), the element's answer awaited.
async fn step(upload: &mut dyn Upload, bytes: Vec<u8>) -> Result<UploadState, Answer> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    upload.push(
        bytes,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.await.map_err(|_| gone())?.map_err(refused)
}

/// Waits until the element holds at most `low` bytes of the body.
async fn drain(upload: &mut dyn Upload, low: u64) -> Result<(), Answer> {
    let since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if step(upload, Vec::new()).await?.queued <= low {
            return Ok(());
        }
        if since.elapsed() > STALL {
            return Err((503, "the media pipeline stopped taking the upload".into()));
        }
    }
}

/// Writes the answer, then reads (and drops) what the client still sends for a moment, so
/// that closing does not reset the connection before the client read the answer.
async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    status: u16,
    text: &str,
    extra: &[(&str, &str)],
) {
    if status == 0 {
        return;
    }
    // A 204 has no body.
    let body = if status == 204 {
        String::new()
    } else {
        format!("{text}\n")
    };
    let plain = "text/plain; charset=utf-8";
    respond_typed(s, status, plain, body.as_bytes(), extra).await;
}

/// Writes an answer whose body is `body` of type `content_type`, then as [`respond`].
pub(crate) async fn respond_typed<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    status: u16,
    content_type: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) {
    // A 204 has neither body nor its headers (RFC 9110 8.6).
    let framing = match status {
        204 => String::new(),
        _ => format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        ),
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\n{framing}Connection: close\r\n",
        reason(status),
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let msg = [head.as_bytes(), body].concat();
    if s.write_all(&msg).await.is_err() {
        return;
    }
    let _ = s.flush().await;
    let _ = s.shutdown().await;
    let mut sink = [0u8; 16 * 1024];
    let mut left: usize = 16 << 20;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while left > 0 {
        match tokio::time::timeout_at(deadline, s.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        428 => "Precondition Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}
