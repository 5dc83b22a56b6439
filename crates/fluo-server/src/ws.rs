//! The WebSocket endpoint: accepts connections, checks the path, reads text frames into the
//! core task and writes its replies back.

use crate::config::Config;
use crate::core_loop::{Core, CoreMsg, OUTBOX};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

pub(crate) async fn accept_loop(
    listener: TcpListener,
    config: Arc<Config>,
    core: Core,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let live = Arc::new(AtomicUsize::new(0));
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
                let _ = stream.set_nodelay(true);
                let (config, core, shutdown, live) = (config.clone(), core.clone(), shutdown.clone(), live.clone());
                live.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, config, core, shutdown).await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
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

#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
async fn serve(
    stream: TcpStream,
    config: Arc<Config>,
    core: Core,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let mut path_ok = false;
    let callback = |req: &Request, resp: Response| {
        let path = req.uri().path().trim_start_matches('/');
        path_ok = path == config.path;
        Ok(resp)
    };
    // Frames above the soft limit get an error reply; the hard limit protects memory.
    let hard = config.max_message_bytes.saturating_mul(4).max(64 * 1024);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(hard))
        .max_frame_size(Some(hard));
    let mut ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config)).await?;
    if !path_ok {
        ws.close(Some(CloseFrame {
            code: CloseCode::Protocol,
            reason: "Invalid path".into(),
        }))
        .await?;
        return Ok(());
    }
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (out_tx, mut out_rx) = mpsc::channel::<String>(OUTBOX);
    if core
        .tx
        .send(CoreMsg::Opened {
            conn,
            outbox: out_tx.clone(),
        })
        .await
        .is_err()
    {
        return Ok(());
    }
    let (mut sink, mut source) = ws.split();
    let writer = tokio::spawn(async move {
        while let Some(text) = out_rx.recv().await {
            if sink.send(Message::text(text)).await.is_err() {
                break;
            }
        }
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Away,
                reason: "".into(),
            })))
            .await;
    });
    let result = loop {
        let msg = tokio::select! {
            m = source.next() => m,
            _ = shutdown.changed() => break Ok(()),
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                if !forward(&core, &out_tx, &config, conn, t.as_str()).await {
                    break Ok(());
                }
            }
            Some(Ok(Message::Binary(b))) => {
                // kurento-client in Node (websocket-stream) sends its JSON as binary frames.
                let ok = match std::str::from_utf8(&b) {
                    Ok(text) => forward(&core, &out_tx, &config, conn, text).await,
                    Err(_) => out_tx
                        .try_send(error_reply(
                            -32700,
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
    let _ = core.tx.send(CoreMsg::Closed { conn }).await;
    drop(out_tx);
    let _ = writer.await;
    result
}

/// Hands one frame's text to the core (or answers at once when it is too big). `false` when
/// the connection should end.
async fn forward(
    core: &Core,
    out_tx: &mpsc::Sender<String>,
    config: &Config,
    conn: u64,
    text: &str,
) -> bool {
    if text.len() > config.max_message_bytes {
        return out_tx
            .try_send(too_big(text.len(), config.max_message_bytes))
            .is_ok();
    }
    core.tx
        .send(CoreMsg::Text {
            conn,
            text: text.to_owned(),
        })
        .await
        .is_ok()
}

fn too_big(len: usize, limit: usize) -> String {
    error_reply(
        -32600,
        &format!(
            "Invalid JSON-RPC request: message of {len} bytes exceeds the limit of {limit} bytes"
        ),
    )
}

fn error_reply(code: i64, message: &str) -> String {
    serde_json::json!({"id": null, "jsonrpc": "2.0", "error": {"code": code, "message": message}})
        .to_string()
}
