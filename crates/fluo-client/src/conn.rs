//! The connection task: writes requests, routes answers and `onEvent` notifications, and
//! reconnects a dropped socket, sending `connect` with the old sessionId first (as
//! KurentoClient does) and then every request still waiting for its answer (the server's
//! replay cache answers a request it already ran without running it again).

use crate::client::{ConnectionEvent, Inner};
use crate::error::{Error, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::{Arc, Weak};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Orders from the handles to the task.
pub(crate) enum Cmd {
    /// Send the pending requests not yet sent on this socket.
    Flush,
    /// Send a fire-and-forget request text (unsubscribe on drop).
    Raw(String),
    /// Close the client.
    Close,
}

pub(crate) async fn open(url: &str) -> Result<Ws> {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| Error::Connect(e.to_string()))?;
    Ok(ws)
}

/// How one socket's life ended.
enum End {
    Dropped,
    Closed(String),
}

pub(crate) async fn run(inner: Weak<Inner>, mut ws: Ws, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
    let mut generation = 1u64;
    let mut reconnecting: Option<u64> = None;
    loop {
        let end = serve(&inner, &mut ws, &mut cmds, generation, reconnecting.take()).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let why = match end {
            End::Closed(why) => why,
            End::Dropped if strong.options.reconnect => {
                tracing::info!(url = %strong.url, "connection dropped, reconnecting");
                let _ = strong.events.send(ConnectionEvent::Disconnected);
                drop(strong);
                match reopen(&inner).await {
                    Some((new_ws, connect_id)) => {
                        ws = new_ws;
                        generation += 1;
                        reconnecting = Some(connect_id);
                        continue;
                    }
                    None => "reconnection failed".to_string(),
                }
            }
            End::Dropped => "the socket dropped".to_string(),
        };
        if let Some(strong) = inner.upgrade() {
            close_all(&strong, &why);
        }
        return;
    }
}

/// Reopens the socket with back-off and sends `connect {sessionId}` on it; `None` when the
/// client is gone or the attempts ran out.
async fn reopen(inner: &Weak<Inner>) -> Option<(Ws, u64)> {
    let mut attempt = 0u32;
    loop {
        let (url, opts) = {
            let s = inner.upgrade()?;
            (s.url.clone(), s.options.clone())
        };
        let delay = opts
            .reconnect_delay
            .saturating_mul(1 << attempt.min(16))
            .min(opts.reconnect_max_delay);
        tokio::time::sleep(delay).await;
        if let Ok(mut ws) = open(&url).await {
            let s = inner.upgrade()?;
            let id = s.next_id();
            let session = s.state().session_id.clone();
            let mut req = json!({"jsonrpc": "2.0", "method": "connect", "id": id});
            if let Some(session) = session {
                req["params"] = json!({"sessionId": session});
            }
            if ws.send(Message::text(req.to_string())).await.is_ok() {
                return Some((ws, id));
            }
        }
        attempt += 1;
        if opts.reconnect_attempts.is_some_and(|n| attempt >= n) {
            tracing::warn!(%url, attempt, "giving up reconnecting");
            return None;
        }
    }
}

/// Serves one socket until it drops or the client closes. While `connect_id` is set (a
/// reconnection's `connect` is unanswered) requests wait, so that none runs in a fresh
/// session.
async fn serve(
    inner: &Weak<Inner>,
    ws: &mut Ws,
    cmds: &mut mpsc::UnboundedReceiver<Cmd>,
    generation: u64,
    mut connect_id: Option<u64>,
) -> End {
    if connect_id.is_none() && flush(inner, ws, generation).await.is_err() {
        return End::Dropped;
    }
    loop {
        tokio::select! {
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { return End::Closed("client dropped".into()) };
                let sent = match cmd {
                    Cmd::Close => {
                        let _ = ws.close(None).await;
                        return End::Closed("closed by the application".into());
                    }
                    Cmd::Flush if connect_id.is_some() => Ok(()),
                    Cmd::Flush => flush(inner, ws, generation).await,
                    Cmd::Raw(text) => ws.send(Message::text(text)).await,
                };
                if sent.is_err() {
                    return End::Dropped;
                }
            }
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return End::Dropped,
                    Some(Ok(_)) => continue,
                };
                let Some(strong) = inner.upgrade() else { return End::Closed("client dropped".into()) };
                let Ok(msg) = serde_json::from_str::<Value>(&text) else {
                    tracing::warn!("ignoring a frame that is not JSON");
                    continue;
                };
                if connect_id.is_some() && msg.get("id").and_then(Value::as_u64) == connect_id {
                    connect_id = None;
                    reconnected(&strong, &msg);
                    drop(strong);
                    if flush(inner, ws, generation).await.is_err() {
                        return End::Dropped;
                    }
                    continue;
                }
                dispatch(&strong, msg);
            }
        }
    }
}

/// Sends every pending request not yet sent on this socket.
async fn flush(
    inner: &Weak<Inner>,
    ws: &mut Ws,
    generation: u64,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let texts: Vec<String> = {
        let Some(s) = inner.upgrade() else {
            return Ok(());
        };
        let mut st = s.state();
        let mut todo: Vec<_> = st
            .pending
            .iter_mut()
            .filter(|(_, p)| p.sent_on != generation)
            .map(|(id, p)| {
                p.sent_on = generation;
                (*id, p.text.clone())
            })
            .collect();
        todo.sort_by_key(|(id, _)| *id);
        todo.into_iter().map(|(_, t)| t).collect()
    };
    for t in texts {
        ws.send(Message::text(t)).await?;
    }
    Ok(())
}

/// The answer to a reconnection's `connect`.
fn reconnected(inner: &Arc<Inner>, msg: &Value) {
    let kept = msg.get("result").is_some();
    if let Some(s) = msg.pointer("/result/sessionId").and_then(Value::as_str) {
        inner.state().session_id = Some(s.to_string());
    }
    if !kept {
        let err = msg.get("error").map(Error::from_wire);
        tracing::warn!(?err, "the server did not keep the session");
        // 40007: the session's subscriptions are gone; their streams end.
        // Requests still unanswered named the old session: they fail rather than run in
        // another one.
        if err.as_ref().and_then(Error::code) == Some(crate::ErrorCode::InvalidSession) {
            let mut st = inner.state();
            st.subs.clear();
            st.session_id = None;
            for (_, mut p) in st.pending.drain() {
                if let Some(reply) = p.reply.take() {
                    let _ = reply.send(Err(Error::SessionLost));
                }
            }
        }
    }
    tracing::info!(session_kept = kept, "reconnected");
    let _ = inner
        .events
        .send(ConnectionEvent::Reconnected { session_kept: kept });
}

/// Routes one message: an answer to its request, an `onEvent` to its subscriptions.
fn dispatch(inner: &Arc<Inner>, msg: Value) {
    if msg.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        tracing::warn!("ignoring a message without jsonrpc 2.0");
        return;
    }
    if let Some(id) = msg.get("id").and_then(Value::as_u64) {
        let Some(mut p) = inner.state().pending.remove(&id) else {
            tracing::debug!(id, "answer to no pending request");
            return;
        };
        let r = answer(inner, msg);
        if let Some(reply) = p.reply.take() {
            let _ = reply.send(r);
        }
        return;
    }
    if msg.get("method").and_then(Value::as_str) == Some("onEvent") {
        crate::events::route(inner, msg);
    } else {
        tracing::warn!("unknown message type");
    }
}

/// A response's `result` (adopting its sessionId) or its error.
fn answer(inner: &Arc<Inner>, mut msg: Value) -> Result<Value> {
    let error = msg.get("error").cloned();
    match (msg.get_mut("result").map(Value::take), error) {
        (Some(r), None) => {
            if let Some(s) = r.get("sessionId").and_then(Value::as_str) {
                let mut st = inner.state();
                if st.session_id.as_deref() != Some(s) {
                    st.session_id = Some(s.to_string());
                }
            }
            Ok(r)
        }
        (None, Some(e)) => Err(Error::from_wire(&e)),
        _ => Err(Error::Protocol(
            "a response needs exactly one of result and error".into(),
        )),
    }
}

/// Fails every pending request and ends every subscription.
fn close_all(inner: &Arc<Inner>, why: &str) {
    let mut st = inner.state();
    st.closed = Some(why.to_string());
    for (_, mut p) in st.pending.drain() {
        if let Some(reply) = p.reply.take() {
            let _ = reply.send(Err(Error::Closed(why.to_string())));
        }
    }
    st.subs.clear();
    drop(st);
    let _ = inner.events.send(ConnectionEvent::Closed);
}
