//! The owner's side of the link: the `--peer-port` listener, the secret handshake, and each
//! entry's client connections as connections of their own to the engine.

use super::auth::{self, Challenge, Hello, Proof, Welcome};
use super::{read_json, write_json, Frame, HANDSHAKE, LINK_QUEUE};
use crate::config::ClusterSecret;
use crate::core_loop::{Core, CoreMsg, OUTBOX};
use fluo_core::ConnId;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Serves the link on `listener` until `shutdown` turns `true`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    secret: Arc<ClusterSecret>,
    core: Core,
    mut shutdown: watch::Receiver<bool>,
) {
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
                let _ = stream.set_nodelay(true);
                let (secret, core, shutdown) = (secret.clone(), core.clone(), shutdown.clone());
                tokio::spawn(serve(stream, addr, secret, core, shutdown));
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    secret: Arc<ClusterSecret>,
    core: Core,
    shutdown: watch::Receiver<bool>,
) {
    let handshake = async {
        let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(super::ws_config()))
            .await
            .ok()?;
        let node = authenticate(&mut ws, &secret.0).await?;
        Some((ws, node))
    };
    let Ok(Some((ws, node))) = tokio::time::timeout(HANDSHAKE, handshake).await else {
        tracing::warn!(%addr, "link: refused a connection that did not prove it knows the cluster secret");
        return;
    };
    tracing::info!(%addr, %node, "link: a node connected");
    let (sink, source) = ws.split();
    let (tx, rx) = mpsc::channel::<Frame>(LINK_QUEUE);
    let writer = tokio::spawn(write_frames(sink, rx));
    let mirrors = relay(source, tx, &core, shutdown).await;
    for (_, local) in mirrors {
        let _ = core.tx.send(CoreMsg::Closed { conn: local }).await;
    }
    writer.abort();
    tracing::info!(%addr, %node, "link: a node disconnected");
}

/// The owner's half of the handshake ([`auth`]): the entry's node id once it proved it
/// knows the secret; `None` (and nothing sent) for anything that does not start with a
/// hello.
async fn authenticate<S>(ws: &mut WebSocketStream<S>, secret: &[u8]) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let hello: Hello = read_json(ws).await?;
    if hello.hello != auth::PROTOCOL
        || !auth::is_nonce(&hello.nonce)
        || fluo_cluster::NodeId::new(hello.node.as_str()).is_err()
    {
        return None;
    }
    let ns = auth::nonce();
    if ns.is_empty() {
        return None;
    }
    let challenge = Challenge {
        mac: auth::owner_mac(secret, &hello.nonce, &ns),
        nonce: ns.clone(),
    };
    if !write_json(ws, &challenge).await {
        return None;
    }
    let proof: Proof = read_json(ws).await?;
    let expected = auth::entry_mac(secret, &ns, &hello.nonce, &hello.node);
    if !auth::verify(&expected, &proof.mac) {
        return None;
    }
    write_json(ws, &Welcome { ok: true })
        .await
        .then_some(hello.node)
}

/// Sends the frames queued for the entry.
async fn write_frames<S>(mut sink: S, mut rx: mpsc::Receiver<Frame>)
where
    S: futures_util::Sink<Message> + Unpin,
{
    while let Some(f) = rx.recv().await {
        let Ok(text) = serde_json::to_string(&f) else {
            continue;
        };
        if sink.send(Message::text(text)).await.is_err() {
            break;
        }
    }
}

/// Hands the entry's frames to the engine until the link ends; returns the mirror
/// connections still open (entry connection -> engine connection).
async fn relay<S>(
    mut source: S,
    tx: mpsc::Sender<Frame>,
    core: &Core,
    mut shutdown: watch::Receiver<bool>,
) -> HashMap<u64, ConnId>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut mirrors: HashMap<u64, ConnId> = HashMap::new();
    loop {
        let m = tokio::select! {
            m = source.next() => m,
            _ = shutdown.changed() => break,
        };
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
            Frame::Open { conn, peer } => {
                if mirrors.contains_key(&conn) {
                    continue;
                }
                let local = crate::ws::NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                mirrors.insert(conn, local);
                let (outbox, kill) = mirror(conn, tx.clone());
                CoreMsg::Opened {
                    conn: local,
                    peer,
                    outbox,
                    kill,
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
/// the entry's connection `conn`.
fn mirror(
    conn: u64,
    link: mpsc::Sender<Frame>,
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
    });
    (out_tx, kill_tx)
}
