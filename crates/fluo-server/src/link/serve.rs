//! The owner's side of the link: the `--peer-port` listener, the secret handshake, and each
//! entry's client connections as connections of their own to the engine.

use super::admission::{Admission, Ticket};
use super::auth::{self, Challenge, Hello, Proof, Welcome};
use super::{read_json, write_frames, write_json, Frame, HANDSHAKE, LINK_QUEUE};
use crate::cluster::View;
use crate::config::ClusterSecret;
use crate::core_loop::{Core, CoreMsg, OUTBOX};
use fluo_cluster::NodeId;
use fluo_core::ConnId;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Who answers on the link: this node (its id, and its boot as registered) and the
/// cluster's secret.
#[derive(Clone)]
pub(crate) struct Owner {
    pub me: NodeId,
    pub view: Arc<View>,
    pub secret: Arc<ClusterSecret>,
    /// How long a link may stay silent before it counts as broken (`--peer-silence-ms`).
    pub silence: std::time::Duration,
}

/// The largest message before the handshake is done (a hello is about 200 bytes).
const HANDSHAKE_FRAME: usize = 4 << 10;

/// Serves the link on `listener` until `shutdown` turns `true`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    owner: Owner,
    core: Core,
    mut shutdown: watch::Receiver<bool>,
) {
    let admission = Admission::default();
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (stream, addr) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("link: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(ticket) = admission.admit(addr.ip()) else {
                    refused(addr, "too many connections are authenticating");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (owner, core, shutdown) = (owner.clone(), core.clone(), shutdown.clone());
                tokio::spawn(serve(stream, addr, ticket, owner, core, shutdown));
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Logs a refused connection, at most once a second (with how many were refused since),
/// so that a scanner cannot flood the log.
fn refused(addr: SocketAddr, why: &str) {
    static LAST: std::sync::Mutex<Option<(Instant, u64)>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    match &mut *last {
        Some((at, n)) if at.elapsed() < std::time::Duration::from_secs(1) => *n += 1,
        _ => {
            let since = last.map_or(0, |(_, n)| n);
            tracing::warn!(%addr, refused_since = since, "link: refused a connection: {why}");
            *last = Some((Instant::now(), 0));
        }
    }
}

/// The TCP stream of a link, handed from the handshake's WebSocket (small messages only)
/// to the authenticated one.
struct Handover(Option<TcpStream>);

impl Handover {
    fn stream(&mut self) -> std::io::Result<&mut TcpStream> {
        self.0
            .as_mut()
            .ok_or_else(|| std::io::ErrorKind::NotConnected.into())
    }
}

impl AsyncRead for Handover {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Handover {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// The handshake on `stream` with small messages only; the authenticated link's WebSocket
/// (full-size messages) and the entry's node id. The entry sends nothing between its proof
/// and the owner's welcome, so no byte of the link is left in the handshake's buffers.
async fn handshake(
    stream: TcpStream,
    owner: &Owner,
) -> Option<(WebSocketStream<TcpStream>, String)> {
    let small = super::ws_config()
        .max_message_size(Some(HANDSHAKE_FRAME))
        .max_frame_size(Some(HANDSHAKE_FRAME));
    let mut ws = tokio_tungstenite::accept_async_with_config(Handover(Some(stream)), Some(small))
        .await
        .ok()?;
    let node = authenticate(&mut ws, owner).await?;
    let tcp = ws.get_mut().0.take()?;
    let ws = WebSocketStream::from_raw_socket(tcp, Role::Server, Some(super::ws_config())).await;
    Some((ws, node))
}

async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    ticket: Ticket,
    owner: Owner,
    core: Core,
    shutdown: watch::Receiver<bool>,
) {
    let done = tokio::time::timeout(HANDSHAKE, handshake(stream, &owner)).await;
    drop(ticket);
    let Ok(Some((ws, node))) = done else {
        refused(addr, "it did not prove it knows the cluster secret");
        return;
    };
    tracing::info!(%addr, %node, "link: a node connected");
    let (sink, source) = ws.split();
    let (tx, rx) = mpsc::channel::<Frame>(LINK_QUEUE);
    let writer = tokio::spawn(write_frames(sink, rx));
    let mirrors = relay(source, (tx, owner.silence), &core, shutdown).await;
    for (_, local) in mirrors {
        let _ = core.tx.send(CoreMsg::Closed { conn: local }).await;
    }
    writer.abort();
    tracing::info!(%addr, %node, "link: a node disconnected");
}

/// The owner's half of the handshake ([`auth`]): the entry's node id once it proved it
/// knows the secret; `None` (and nothing sent) for anything that does not start with a
/// hello meant for this node in its current boot.
async fn authenticate<S>(ws: &mut WebSocketStream<S>, owner: &Owner) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let hello: Hello = read_json(ws).await?;
    let boot = owner.view.boot()?;
    if hello.hello != auth::PROTOCOL
        || !auth::is_nonce(&hello.nonce)
        || NodeId::new(hello.node.as_str()).is_err()
        || hello.to != owner.me.as_str()
        || hello.boot != boot
    {
        return None;
    }
    let to = auth::Target {
        id: owner.me.as_str(),
        boot,
    };
    let secret = &owner.secret.0;
    let ns = auth::nonce();
    if ns.is_empty() {
        return None;
    }
    let challenge = Challenge {
        mac: auth::owner_mac(secret, &hello.nonce, &ns, &to),
        nonce: ns.clone(),
    };
    if !write_json(ws, &challenge).await {
        return None;
    }
    let proof: Proof = read_json(ws).await?;
    let expected = auth::entry_mac(secret, &ns, &hello.nonce, &hello.node, &to);
    if !auth::verify(&expected, &proof.mac) {
        return None;
    }
    write_json(ws, &Welcome { ok: true })
        .await
        .then_some(hello.node)
}

/// A mirror that ended: the entry's connection and the engine connection it had.
type Ended = (u64, ConnId);

/// Hands the entry's frames to the engine until the link ends (or stays silent for
/// `silence`: the entry pings every second); returns the mirror connections still open
/// (entry connection -> engine connection). A mirror the engine ended (a client that does
/// not read) is closed in the engine, and the entry is told to close its client.
async fn relay<S>(
    mut source: S,
    (tx, silence): (mpsc::Sender<Frame>, std::time::Duration),
    core: &Core,
    mut shutdown: watch::Receiver<bool>,
) -> HashMap<u64, ConnId>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut mirrors: HashMap<u64, ConnId> = HashMap::new();
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<Ended>();
    let mut heard = tokio::time::Instant::now();
    loop {
        let m = tokio::select! {
            m = source.next() => m,
            Some((conn, local)) = ended.recv() => {
                if mirrors.get(&conn) == Some(&local) {
                    mirrors.remove(&conn);
                    let _ = core.tx.send(CoreMsg::Closed { conn: local }).await;
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(Frame::Close { conn }).await;
                    });
                }
                continue;
            }
            _ = tokio::time::sleep_until(heard + silence) => {
                tracing::warn!("link: nothing received from the entry for {} ms", silence.as_millis());
                break;
            }
            _ = shutdown.changed() => break,
        };
        heard = tokio::time::Instant::now();
        let text = match m {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => continue,
        };
        let frame = match serde_json::from_str::<Frame>(text.as_str()) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!("link: an unreadable frame: {e}");
                continue;
            }
        };
        let msg = match frame {
            Frame::Open {
                conn,
                peer,
                internal,
            } => {
                if mirrors.contains_key(&conn) {
                    continue;
                }
                let local = crate::ws::NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                mirrors.insert(conn, local);
                let (outbox, kill) = mirror(conn, local, tx.clone(), ended_tx.clone());
                CoreMsg::Opened {
                    conn: local,
                    peer,
                    outbox,
                    kill,
                    internal,
                }
            }
            Frame::Text { conn, text } => match mirrors.get(&conn) {
                Some(&local) => CoreMsg::Text { conn: local, text },
                None => continue,
            },
            Frame::Close { conn } => match mirrors.remove(&conn) {
                Some(local) => CoreMsg::Closed { conn: local },
                None => continue,
            },
        };
        if core.tx.send(msg).await.is_err() {
            break;
        }
    }
    mirrors
}

/// A mirror connection's outbox: what the engine sends it goes to the entry, tagged with
/// the entry's connection `conn`; its end is reported on `ended`.
fn mirror(
    conn: u64,
    local: ConnId,
    link: mpsc::Sender<Frame>,
    ended: mpsc::UnboundedSender<Ended>,
) -> (mpsc::Sender<String>, tokio::sync::oneshot::Sender<()>) {
    let (out_tx, mut out_rx) = mpsc::channel::<String>(OUTBOX);
    let (kill_tx, mut kill_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        // The engine drops the kill sender with the outbox: only a sent kill ends the mirror
        // before its queued messages are sent.
        let mut kill_open = true;
        loop {
            tokio::select! {
                text = out_rx.recv() => match text {
                    Some(text) => {
                        if link.send(Frame::Text { conn, text }).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                r = &mut kill_rx, if kill_open => {
                    if r.is_ok() {
                        tracing::warn!(conn, "link: dropping a mirror connection the entry does not read");
                        break;
                    }
                    kill_open = false;
                }
            }
        }
        let _ = ended.send((conn, local));
    });
    (out_tx, kill_tx)
}
