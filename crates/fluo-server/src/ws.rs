//! The WebSocket endpoint: accepts connections, checks the path, reads text frames into the
//! core task and writes its replies back.

use crate::config::Config;
use crate::core_loop::{Core, CoreMsg, OUTBOX};
use fluo_api::jsonrpc::{Incoming, Response as RpcResponse};
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::http::request::carries_token;
use fluo_core::AddrKey;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

mod stall;
use stall::{Progress, Sent, Watched};

/// Connection ids, shared with the link's mirror connections (one engine, one id space).
pub(crate) static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// How a listener's connections start: plain, or with a TLS handshake.
#[derive(Clone)]
pub(crate) enum Acceptor {
    Plain,
    Tls(tokio_rustls::TlsAcceptor),
}

/// How long a client gets for its WebSocket handshake.
const HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// The read buffer a connection starts with. A Kurento request is usually below 1 KiB; a
/// larger frame grows the buffer to its size (tungstenite reserves a frame's length once its
/// header is read), up to the frame limit, and the buffer keeps that size.
const WS_READ_BUFFER: usize = 1024;

/// How long a client gets for its TLS handshake.
const TLS_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// The connections open on every listener of the server (`ws://` and `wss://` together): the
/// server's limit and each address's share count them all, whichever listener took them.
#[derive(Clone, Default)]
pub(crate) struct Connections {
    live: Arc<AtomicUsize>,
    per_address: Arc<Mutex<HashMap<AddrKey, usize>>>,
}

/// One connection counted against its client address (an IPv6 /64 counts as one, as for the
/// engine's limits per address); the count goes down when the slot is dropped.
struct AddressSlot {
    counts: Arc<Mutex<HashMap<AddrKey, usize>>>,
    key: AddrKey,
}

impl Connections {
    /// The count of open connections (the metrics read it).
    pub(crate) fn live(&self) -> Arc<AtomicUsize> {
        self.live.clone()
    }
}

impl AddressSlot {
    /// A slot for `ip`, or `None` when `max` connections from its address are open.
    fn take(
        counts: &Arc<Mutex<HashMap<AddrKey, usize>>>,
        ip: std::net::IpAddr,
        max: usize,
    ) -> Option<AddressSlot> {
        let key = AddrKey::of(ip);
        let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            counts: counts.clone(),
            key,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.remove(&self.key);
            }
        }
    }
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    acceptor: Acceptor,
    config: Arc<Config>,
    core: Core,
    connections: Connections,
    router: Option<Arc<crate::link::Router>>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let Connections { live, per_address } = connections;
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (stream, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and similar: wait a little, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if live.load(Ordering::Relaxed) >= config.max_connections {
                    tracing::warn!(%peer, "refusing connection: {} connections open", config.max_connections);
                    continue;
                }
                let Some(slot) = AddressSlot::take(&per_address, peer.ip(), config.max_connections_per_address) else {
                    tracing::warn!(%peer, "refusing connection: {} connections open from {}", config.max_connections_per_address, AddrKey::of(peer.ip()));
                    continue;
                };
                let _ = stream.set_nodelay(true);
                // Half-open TCP connections (a peer that vanished) are found by keepalive, so
                // their sessions start their grace period instead of living forever.
                let keepalive = socket2::TcpKeepalive::new()
                    .with_time(std::time::Duration::from_secs(60))
                    .with_interval(std::time::Duration::from_secs(10));
                let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                let (config, core, shutdown, live) = (config.clone(), core.clone(), shutdown.clone(), live.clone());
                let acceptor = acceptor.clone();
                let router = router.clone();
                live.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    connection(stream, peer, acceptor, config, core, router, shutdown).await;
                    drop(slot);
                    live.fetch_sub(1, Ordering::Relaxed);
                });
            }
            _ = shutdown.changed() => {
                tracing::info!("no longer accepting connections");
                return Ok(());
            }
        }
    }
}

/// One connection's life, from its TLS handshake (if any) to its end.
///
/// This future lives as long as the connection, so what only the handshakes need is in a
/// boxed future, freed when they are done: the TLS handshake's state and tungstenite's (each
/// holds the stream and its buffers), and the stream itself (an async fn keeps its arguments
/// for its whole life, so [`serve`] only gets the WebSocket's halves, which share it on the
/// heap). Unboxed, the future was 12.8 KiB per connection (issue 15).
async fn connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    acceptor: Acceptor,
    config: Arc<Config>,
    core: Core,
    router: Option<Arc<crate::link::Router>>,
    shutdown: watch::Receiver<bool>,
) {
    // What the socket accepts, seen below TLS: the writer's stall timeout reads it.
    let progress = Progress::new();
    let stream = Watched::new(stream, progress.clone());
    let result = match acceptor {
        Acceptor::Plain => match Box::pin(open(stream, &config)).await {
            Ok(Some(halves)) => {
                serve(halves, peer.ip(), progress, config, core, router, shutdown).await
            }
            other => other.map(|_| ()),
        },
        Acceptor::Tls(tls) => match Box::pin(open_tls(tls, stream, peer, &config)).await {
            Ok(Some(halves)) => {
                serve(halves, peer.ip(), progress, config, core, router, shutdown).await
            }
            other => other.map(|_| ()),
        },
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

/// The TLS handshake, then [`open`]'s.
#[allow(clippy::result_large_err)] // tungstenite's error type
async fn open_tls(
    tls: tokio_rustls::TlsAcceptor,
    stream: Watched<tokio::net::TcpStream>,
    peer: std::net::SocketAddr,
    config: &Config,
) -> Result<Option<Halves<tokio_rustls::server::TlsStream<Watched<tokio::net::TcpStream>>>>, WsError>
{
    match tokio::time::timeout(TLS_HANDSHAKE, tls.accept(stream)).await {
        Ok(Ok(s)) => open(s, config).await,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "TLS handshake failed: {e}");
            Ok(None)
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            Ok(None)
        }
    }
}

/// A connection's WebSocket, split: what goes out, what comes in.
type Halves<S> = (
    futures_util::stream::SplitSink<tokio_tungstenite::WebSocketStream<S>, Message>,
    futures_util::stream::SplitStream<tokio_tungstenite::WebSocketStream<S>>,
);

type WsError = tokio_tungstenite::tungstenite::Error;

/// The WebSocket handshake: the connection's WebSocket, or `None` when the client gave up,
/// took too long, or asked for another path (answered with a close frame).
#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
async fn open<S>(stream: S, config: &Config) -> Result<Option<Halves<S>>, WsError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut path_ok = false;
    let callback = |req: &Request, resp: Response| {
        let path = req.uri().path().trim_start_matches('/');
        path_ok = path == config.path;
        if let Some(token) = &config.auth_token {
            if !authorized(req, token) {
                tracing::warn!("refused a WebSocket upgrade without a valid token");
                let mut refusal = ErrorResponse::new(Some(
                    "401 Unauthorized: this Fluo server requires a token (Authorization: Bearer <token> or ?access_token=<token>)\n".into(),
                ));
                *refusal.status_mut() = StatusCode::UNAUTHORIZED;
                refusal.headers_mut().insert(
                    "WWW-Authenticate",
                    HeaderValue::from_static("Bearer realm=\"fluo\""),
                );
                return Err(refusal);
            }
        }
        Ok(resp)
    };
    // Frames above the soft limit get an error reply; the hard limit protects memory.
    let hard = config.max_message_bytes.saturating_mul(4).max(64 * 1024);
    // A small read buffer: tungstenite's default is 128 KiB per connection, held for the
    // connection's life, while JSON-RPC messages are mostly below 1 KiB (issue 15: 8 KiB
    // were 4 KiB per viewer at N=200 with the bench's 100 connections).
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .max_message_size(Some(hard))
        .max_frame_size(Some(hard));
    let handshake =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config));
    let Ok(ws) = tokio::time::timeout(HANDSHAKE, handshake).await else {
        tracing::debug!("WebSocket handshake timed out");
        return Ok(None);
    };
    let mut ws = ws?;
    if !path_ok {
        ws.close(Some(CloseFrame {
            code: CloseCode::Protocol,
            reason: "Invalid path".into(),
        }))
        .await?;
        return Ok(None);
    }
    Ok(Some(ws.split()))
}

/// Serves one connection's requests until it closes.
#[allow(clippy::result_large_err)] // tungstenite's error type
async fn serve<S>(
    (sink, mut source): Halves<S>,
    peer: std::net::IpAddr,
    progress: Progress,
    config: Arc<Config>,
    core: Core,
    router: Option<Arc<crate::link::Router>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), WsError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (out_tx, out_rx) = mpsc::channel::<String>(OUTBOX);
    let (kill_tx, mut kill_rx) = tokio::sync::oneshot::channel::<()>();
    if core
        .tx
        .send(CoreMsg::Opened {
            conn,
            peer,
            outbox: out_tx.clone(),
            kill: kill_tx,
            internal: false,
        })
        .await
        .is_err()
    {
        return Ok(());
    }
    let seen: Arc<Seen> = Arc::default();
    // Dropped when the writer ends: before the outbox closes, that is a socket that failed
    // or stalled, and the connection ends.
    let (writer_alive, mut writer_gone) = tokio::sync::oneshot::channel::<()>();
    let out = Writer {
        conn,
        seen: seen.clone(),
        progress,
        stall: config.ws_write_timeout,
        _alive: writer_alive,
    };
    let writer = tokio::spawn(out.run(sink, out_rx));
    let mut shutting_down = false;
    // In a cluster, the links close this connection as the engine would (see link/entry.rs).
    let handle = crate::link::entry::ClientHandle::new(out_tx.clone()).seeing(seen.clone());
    let client = Conn {
        core: &core,
        out: &out_tx,
        config: &config,
        seen: &seen,
        conn,
        peer,
        router: router.as_deref().map(|r| (r, &handle)),
    };
    let result = loop {
        let msg = tokio::select! {
            m = source.next() => m,
            _ = shutdown.changed() => {
                // Stop reading; the core releases everything, sends the last events to our
                // outbox and then drops it, which ends the writer with a close frame.
                shutting_down = true;
                break Ok(());
            }
            _ = &mut kill_rx => {
                tracing::warn!(conn, "closing a connection that does not read its replies");
                break Ok(());
            }
            _ = handle.close.now.notified() => break Ok(()),
            _ = &mut writer_gone => break Ok(()),
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                if !forward(&client, t.as_str()).await {
                    break Ok(());
                }
            }
            Some(Ok(Message::Binary(b))) => {
                // kurento-client in Node (websocket-stream) sends its JSON as binary frames.
                let ok = match std::str::from_utf8(&b) {
                    Ok(text) => forward(&client, text).await,
                    Err(_) => out_tx
                        .try_send(error_reply(
                            ErrorCode::ParseError,
                            "Parse error: binary frame is not UTF-8 JSON",
                        ))
                        .is_ok(),
                };
                if !ok {
                    break Ok(());
                }
            }
            Some(Ok(Message::Close(_))) | None => break Ok(()),
            Some(Ok(_)) => {}
            Some(Err(e)) => break Err(e),
        }
    };
    if let Some(r) = &router {
        r.closed(conn);
    }
    // What waited for an answer holds the connection's handle (and so this): let go.
    seen.stop_waiting();
    if !shutting_down {
        let _ = core.tx.send(CoreMsg::Closed { conn }).await;
    }
    drop(out_tx);
    drop(handle);
    // Bounded: the core drops its sender when it stops. A writer still waiting then is stuck
    // on a socket that takes nothing (the outbox's kill, a shutdown): ended, which drops the
    // socket, rather than left holding it until its write timeout.
    let mut writer = writer;
    if tokio::time::timeout(std::time::Duration::from_secs(5), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    result
}

/// A connection's writer: the core's frames to the socket, in order.
struct Writer {
    conn: u64,
    seen: Arc<Seen>,
    progress: Progress,
    /// How long the socket may accept nothing while a frame waits.
    stall: std::time::Duration,
    _alive: tokio::sync::oneshot::Sender<()>,
}

impl Writer {
    /// Sends until the outbox closes (then a close frame), the socket fails, or it accepts no
    /// byte for `stall` with a frame waiting: such a client is not reading, and its connection
    /// ends as one that vanished (its session waits out its grace period for a reconnection).
    async fn run<K>(self, mut sink: K, mut out_rx: mpsc::Receiver<String>)
    where
        K: futures_util::Sink<Message> + Unpin,
    {
        let stalled = |sent: &Sent| {
            if *sent == Sent::Stalled {
                tracing::warn!(
                    conn = self.conn,
                    timeout_s = self.stall.as_secs_f64(),
                    "closing a connection whose socket took nothing with replies waiting"
                );
            }
        };
        while let Some(text) = out_rx.recv().await {
            self.seen.learn(&text);
            let sent = stall::send(&mut sink, Message::text(text), &self.progress, self.stall);
            let sent = sent.await;
            if sent != Sent::Done {
                stalled(&sent);
                return;
            }
        }
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "".into(),
        }));
        stalled(&stall::send(&mut sink, close, &self.progress, self.stall).await);
    }
}

/// Whether the upgrade request carries the token, in the Authorization header or the
/// `access_token` query parameter. Compared in constant time.
fn authorized(req: &Request, token: &str) -> bool {
    let header = req.headers().get("authorization");
    let query = req.uri().query().unwrap_or("");
    carries_token(header.and_then(|v| v.to_str().ok()), query, token)
}

/// One client connection, as its frames are handed on.
struct Conn<'a> {
    core: &'a Core,
    out: &'a mpsc::Sender<String>,
    config: &'a Config,
    seen: &'a Seen,
    conn: u64,
    peer: std::net::IpAddr,
    /// In a cluster: requests for other nodes' pipelines go there (and this connection as
    /// the links know it).
    router: Option<(
        &'a crate::link::Router,
        &'a crate::link::entry::ClientHandle,
    )>,
}

/// Hands one frame's text to the core, or in a cluster to the node that owns what it is
/// about (or answers at once when it is too big). `false` when the connection should end.
async fn forward(c: &Conn<'_>, text: &str) -> bool {
    let limit = c.config.max_message_bytes;
    if text.len() > limit {
        return c.out.try_send(too_big(text.len(), limit)).is_ok();
    }
    if let Some(pong) = local_pong(c.seen, text) {
        return c.out.try_send(pong).is_ok();
    }
    let text = match c.router {
        Some((r, handle)) => {
            let ask = crate::link::route::Ask {
                conn: c.conn,
                peer: c.peer,
                client: handle,
                session: c.seen.session(),
                text,
            };
            // Boxed: the route future (store look-ups, the link) would otherwise sit in every
            // connection's future, cluster or not (issue 15: a_connections_future_stays_small).
            match Box::pin(r.route(ask)).await {
                Some(t) => t,
                None => return true,
            }
        }
        None => text.to_owned(),
    };
    c.core
        .tx
        .send(CoreMsg::Text { conn: c.conn, text })
        .await
        .is_ok()
}

fn too_big(len: usize, limit: usize) -> String {
    error_reply(
        ErrorCode::InvalidRequest,
        &format!(
            "Invalid JSON-RPC request: message of {len} bytes exceeds the limit of {limit} bytes"
        ),
    )
}

fn error_reply(code: ErrorCode, message: &str) -> String {
    RpcResponse::error(None, KurentoError::new(code, message)).to_text()
}

/// The session a connection speaks for, as last seen in a response sent on it (its writer
/// reads each one), and what waits for a response naming a session.
#[derive(Default)]
pub(crate) struct Seen {
    session: std::sync::Mutex<Option<String>>,
    /// Run (once) when a response names this session: a resume the entry acts on only once
    /// it is accepted (link/manager.rs).
    waiting: std::sync::Mutex<Option<(String, Waiting)>>,
}

/// What waits for a response naming a session.
pub(crate) type Waiting = Box<dyn FnOnce() + Send>;

impl Seen {
    /// The session of the last response that named one.
    pub(crate) fn session(&self) -> Option<String> {
        crate::lock(&self.session).clone()
    }

    /// Remembers the `sessionId` of a response (results list their keys in order, and the
    /// pattern cannot occur inside a JSON string, where quotes are escaped; an error names
    /// none), and runs what waited for it.
    pub(crate) fn learn(&self, text: &str) {
        if !text.starts_with("{\"id\"") {
            return;
        }
        const KEY: &str = "\"sessionId\":\"";
        let Some(i) = text.find(KEY) else {
            return;
        };
        let rest = &text[i + KEY.len()..];
        let Some(j) = rest.find('"') else {
            return;
        };
        let s = &rest[..j];
        *crate::lock(&self.session) = Some(s.to_string());
        let ready = {
            let mut w = crate::lock(&self.waiting);
            w.take_if(|(x, _)| x == s)
        };
        if let Some((_, then)) = ready {
            then();
        }
    }

    /// Nothing waits any more (the connection ended).
    pub(crate) fn stop_waiting(&self) {
        crate::lock(&self.waiting).take();
    }

    /// Runs `then` once a response names session `s` (replacing what waited before).
    pub(crate) fn when_answered_in(&self, s: &str, then: Waiting) {
        *crate::lock(&self.waiting) = Some((s.to_string(), then));
    }
}

/// Answers a plain keep-alive `ping` on the connection itself, so that pings stay fast
/// however busy the engine is (kurento-client gives up on a server whose ping takes 20 s).
/// Pings naming a session go to the engine, which binds it.
fn local_pong(seen: &Seen, text: &str) -> Option<String> {
    if text.len() > 256 || !text.contains("\"ping\"") {
        return None;
    }
    let Ok(Incoming::Request(req)) = fluo_api::jsonrpc::parse(text) else {
        return None;
    };
    let names_session = req
        .params
        .as_ref()
        .is_some_and(|p| p.get("sessionId").is_some());
    if req.method != "ping" || req.id.is_none() || names_session {
        return None;
    }
    let mut result = serde_json::json!({"value": "pong"});
    if let Some(s) = seen.session() {
        result["sessionId"] = serde_json::Value::from(s);
    }
    Some(RpcResponse::result(req.id, result).to_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15: a connection's task lives as long as the connection, so the handshakes'
    /// large states are boxed and freed when done. Unboxed, the future was 12.8 KiB per
    /// connection (heaptrack, at N=200); the type is the same for `ws://` and `wss://`.
    #[tokio::test]
    async fn a_connections_future_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let _client = tokio::net::TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (stream, peer) = listener.accept().await.expect("accept");
        let (tx, _rx) = mpsc::channel(1);
        let (_stop, shutdown) = watch::channel(false);
        let config = Arc::new(Config::default());
        let task = connection(
            stream,
            peer,
            Acceptor::Plain,
            config,
            Core { tx },
            None,
            shutdown,
        );
        let size = std::mem::size_of_val(&task);
        eprintln!("connection future: {size} bytes");
        // 1288 bytes in a release build (Rust 1.95): the select over the socket, the shutdown
        // and the engine's channel. The bound leaves room for a debug build's layout; a
        // handshake's state kept inline (12.8 KiB in all) is far above it.
        assert!(size <= 4096, "the connection's future is {size} bytes");
    }
}
