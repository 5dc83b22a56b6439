//! A small fake Kurento server: a tokio WebSocket on 127.0.0.1 port 0 whose answers a test
//! scripts, recording every request it gets with the index of the connection it came on.
#![allow(dead_code)] // each test binary uses part of it

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// What the fake does with a request.
pub enum Act {
    /// Send this message.
    Send(Value),
    /// Close the socket (without answering).
    Drop,
}

/// A `result` answer to `req` with `result`.
pub fn ok(req: &Value, result: Value) -> Act {
    Act::Send(json!({"jsonrpc": "2.0", "id": req["id"], "result": result}))
}

/// An `error` answer to `req`.
pub fn err(req: &Value, error: Value) -> Act {
    Act::Send(json!({"jsonrpc": "2.0", "id": req["id"], "error": error}))
}

/// An `onEvent` notification.
pub fn event(object: &str, ty: &str, data: Value) -> Act {
    Act::Send(json!({"jsonrpc": "2.0", "method": "onEvent",
        "params": {"value": {"data": data, "object": object, "type": ty}}}))
}

pub type Log = Arc<Mutex<Vec<(usize, Value)>>>;

/// Starts the fake; `script(connection index, request)` says what to do. Returns its URL
/// and the request log.
pub async fn start<F>(script: F) -> (String, Log)
where
    F: Fn(usize, &Value) -> Vec<Act> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/kurento", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let script = Arc::new(script);
    let log2 = log.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        while let Ok((tcp, _)) = listener.accept().await {
            let conn = n;
            n += 1;
            let (script, log) = (script.clone(), log2.clone());
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    let Message::Text(t) = msg else { continue };
                    let req: Value = serde_json::from_str(&t).unwrap();
                    log.lock().unwrap().push((conn, req.clone()));
                    for act in script(conn, &req) {
                        match act {
                            Act::Send(v) => {
                                if ws.send(Message::text(v.to_string())).await.is_err() {
                                    return;
                                }
                            }
                            Act::Drop => return,
                        }
                    }
                }
            });
        }
    });
    (url, log)
}
