//! WHIP (RFC 9725) and WHEP on the HTTP listener: `/whip/<uuid>` and `/whep/<uuid>` are a
//! WebRtcEndpoint's URL (see `fluo_core::whip`), `<url>/<session>` the session resource the
//! POST's Location names. POST an SDP offer (201 with the answer, its ICE candidates in it),
//! PATCH a trickle-ICE fragment to the session (204; 200 with the server's new credentials
//! when the fragment restarts ICE), DELETE the session (200: the endpoint
//! is released; a `fluoWhepSource` URL answers each POST from a new endpoint, whose own URL
//! the Location is under). The HTTP is checked here (method, token, content type, size); what the
//! endpoint makes of the SDP is the engine's answer.

use super::{
    check_token, expect_continue, framing, refusal_headers, refused, respond, respond_typed,
    Answer, Body, Head, HttpSettings,
};
use fluo_core::http::{HttpRoutes, Route};
use fluo_core::whip::{SignalOp, SignalReply, SignalTarget};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// The largest SDP offer or fragment taken.
const MAX_SDP: u64 = 64 * 1024;
/// The longest an SDP offer or fragment may take to arrive, whatever its pace (on top of
/// the per-read timeout): a slow trickle of bytes holds a connection no longer.
const BODY_DEADLINE: Duration = Duration::from_secs(15);
/// How long the engine may take to answer.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(10);
/// The methods a WHIP/WHEP URL takes.
const ALLOW: &str = "POST, PATCH, DELETE, OPTIONS";

/// A WHIP/WHEP path: its endpoint, and the session named after it.
pub(super) struct Found {
    target: Arc<SignalTarget>,
    session: Option<String>,
}

/// The WHIP/WHEP endpoint `path` leads to (its own URL or a session under it).
pub(super) fn route(routes: &HttpRoutes, path: &str) -> Option<Found> {
    if let Some(Route::Signal(target)) = routes.find(path) {
        return Some(Found {
            target,
            session: None,
        });
    }
    let (parent, last) = path.rsplit_once('/')?;
    match routes.find(parent) {
        Some(Route::Signal(target)) if !last.is_empty() => Some(Found {
            target,
            session: Some(last.to_string()),
        }),
        _ => None,
    }
}

/// Answers one request to a WHIP/WHEP URL.
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    head: Head,
    found: Found,
    settings: &HttpSettings,
) {
    let expose = (
        "Access-Control-Expose-Headers",
        "Location, ETag, Accept-Patch",
    );
    let patch = ("Accept-Patch", "application/trickle-ice-sdpfrag");
    if head.method == "OPTIONS" {
        let mut extra = refusal_headers(204, ALLOW);
        extra.push(expose);
        extra.extend([
            ("Access-Control-Allow-Methods", ALLOW),
            (
                "Access-Control-Allow-Headers",
                "authorization, content-type, if-match",
            ),
            ("Access-Control-Max-Age", "600"),
            ("Allow", ALLOW),
            ("Accept-Post", "application/sdp"),
            patch,
        ]);
        return respond_typed(s, 204, "text/plain; charset=utf-8", b"", &extra).await;
    }
    if head.method == "HEAD" {
        let mut extra = refusal_headers(405, ALLOW);
        extra.push(expose);
        return respond_typed(s, 405, "text/plain; charset=utf-8", b"", &extra).await;
    }
    match exchange(s, head, &found, settings).await {
        Ok(a) => {
            let mut extra = refusal_headers(a.status, ALLOW);
            extra.push(expose);
            if let Some(l) = &a.location {
                extra.push(("Location", l));
            }
            if let Some(e) = &a.etag {
                extra.push(("ETag", e));
            }
            if a.status == 201 {
                extra.push(patch);
            }
            let (ty, body) = match (&a.sdp, &a.frag) {
                (Some(sdp), _) => ("application/sdp", sdp.as_bytes()),
                // An ICE restart's answer (RFC 9725 4.3.2).
                (None, Some(frag)) => ("application/trickle-ice-sdpfrag", frag.as_bytes()),
                (None, None) => ("text/plain; charset=utf-8", &b""[..]),
            };
            respond_typed(s, a.status, ty, body, &extra).await;
        }
        Err((status, text)) => {
            let mut extra = refusal_headers(status, ALLOW);
            extra.push(expose);
            respond(s, status, &text, &extra).await;
        }
    }
}

/// The request checked, its body read, the engine's answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    head: Head,
    found: &Found,
    settings: &HttpSettings,
) -> Result<fluo_core::whip::SignalAnswer, Answer> {
    let wanted = match head.method.as_str() {
        "POST" => Some("application/sdp"),
        "PATCH" => Some("application/trickle-ice-sdpfrag"),
        "DELETE" => None,
        m => return Err((405, format!("{m} is not allowed here ({ALLOW})"))),
    };
    check_token(&head, settings)?;
    let op = match wanted {
        None => SignalOp::Delete,
        Some(ty) => {
            let given = head.header("content-type").unwrap_or("");
            let base = given.split(';').next().unwrap_or("").trim();
            if !base.eq_ignore_ascii_case(ty) {
                return Err((415, format!("the body must be {ty}, not '{given}'")));
            }
            expect_continue(s, &head).await;
            let text = read_body(s, &head, settings).await?;
            if head.method == "POST" {
                SignalOp::Offer(text)
            } else {
                // Several If-Match lines are one list (RFC 9110 5.3).
                let lines: Vec<&str> = (head.headers.iter())
                    .filter(|(k, _)| k.eq_ignore_ascii_case("if-match"))
                    .map(|(_, v)| v.as_str())
                    .collect();
                let if_match = (!lines.is_empty()).then(|| lines.join(", "));
                SignalOp::Patch {
                    frag: text,
                    if_match,
                }
            }
        }
    };
    let offer = match &op {
        SignalOp::Offer(o) => Some(o.clone()),
        _ => None,
    };
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let t = tx.clone();
    let open = move || {
        let t = t.lock().unwrap_or_else(|p| p.into_inner());
        t.as_ref().is_some_and(|t| !t.is_closed())
    };
    let send = move |r| {
        let t = tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        t.is_some_and(|t| t.send(r).is_ok())
    };
    let reply = SignalReply::new(open, send);
    // A client that wrote its request and closed at once has gone already: nothing to do.
    if futures_util::FutureExt::now_or_never(client_gone(s)).is_some() {
        return Err((0, "the client went away".to_string()));
    }
    found.target.call(found.session.clone(), op, reply);
    // The answer, unless the client goes (one request per connection: the read ends) or the
    // engine is late.
    let answer = async {
        tokio::select! {
            biased;
            _ = client_gone(s) => None,
            r = &mut rx => Some(r),
        }
    };
    let given_up = match tokio::time::timeout(ENGINE_TIMEOUT, answer).await {
        Ok(Some(Ok(r))) => return r.map_err(|e| (e.status, e.text)),
        Ok(Some(Err(_))) => return Err((500, "the endpoint went away".into())),
        Ok(None) => (0, "the client went away".to_string()),
        Err(_) => (503, "the media server did not answer in time".to_string()),
    };
    // The engine sees the closed reply (and does nothing, or undoes its 201); a 201 that
    // came just now is handed back to be undone.
    rx.close();
    if let (Ok(Ok(answer)), Some(offer)) = (rx.try_recv(), offer) {
        if answer.status == 201 {
            let op = SignalOp::Undelivered { offer, answer };
            found
                .target
                .call(None, op, SignalReply::new(|| false, |_| false));
        }
    }
    Err(given_up)
}

/// Resolves when the client closed its side (or broke the connection).
async fn client_gone<S: AsyncRead + Unpin>(s: &mut S) {
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte).await {
            Ok(0) | Err(_) => return,
            // Nothing more is expected on this connection: ignored.
            Ok(_) => {}
        }
    }
}

/// The whole body (at most [`MAX_SDP`] bytes) as text, within [`BODY_DEADLINE`] (408).
async fn read_body<S: AsyncRead + Unpin>(
    s: &mut S,
    head: &Head,
    settings: &HttpSettings,
) -> Result<String, Answer> {
    read_body_within(s, head, settings, BODY_DEADLINE).await
}

async fn read_body_within<S: AsyncRead + Unpin>(
    s: &mut S,
    head: &Head,
    settings: &HttpSettings,
    deadline: Duration,
) -> Result<String, Answer> {
    match tokio::time::timeout(deadline, read_all(s, head, settings)).await {
        Ok(r) => r,
        Err(_) => {
            let secs = deadline.as_secs_f64();
            Err((408, format!("the body did not arrive within {secs} s")))
        }
    }
}

async fn read_all<S: AsyncRead + Unpin>(
    s: &mut S,
    head: &Head,
    settings: &HttpSettings,
) -> Result<String, Answer> {
    let mut body = Body::new(framing(head, MAX_SDP).map_err(refused)?, head.rest.clone());
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    loop {
        out.clear();
        let done = body.decode(&mut out).map_err(|e| (400, e.to_string()))?;
        got.extend_from_slice(&out);
        if got.len() as u64 > MAX_SDP {
            return Err((413, format!("the body exceeds {MAX_SDP} bytes")));
        }
        if done {
            break;
        }
        if !out.is_empty() {
            continue;
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
    String::from_utf8(got).map_err(|_| (400, "the body is not UTF-8 text".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_body_that_trickles_in_too_slowly_is_408_though_each_read_is_in_time() {
        assert_eq!(BODY_DEADLINE, Duration::from_secs(15));
        let settings = HttpSettings {
            token: None,
            max_body: MAX_SDP,
            read_timeout: Duration::from_secs(5),
        };
        let head = |len: usize| Head {
            method: "POST".into(),
            path: "/whip/x".into(),
            query: String::new(),
            headers: vec![("Content-Length".into(), len.to_string())],
            rest: vec![],
        };
        // One byte every 100 ms: each read is in time, the whole is not.
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for _ in 0..20 {
                if client.write_all(b"v").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let deadline = Duration::from_millis(500);
        let r = read_body_within(&mut server, &head(20), &settings, deadline).await;
        assert_eq!(r.unwrap_err().0, 408);
        writer.abort();
        // In time, the same pace is fine.
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::spawn(async move {
            for _ in 0..3 {
                let _ = client.write_all(b"v").await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let r = read_body_within(&mut server, &head(3), &settings, deadline).await;
        assert_eq!(r.unwrap(), "vvv");
    }
}
