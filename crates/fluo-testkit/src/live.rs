//! A real Fluo server in this process (own thread and runtime, ICE on loopback) and a minimal
//! Kurento client call, shared by the storm and the soak.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// A client WebSocket.
pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Starts Fluo on 127.0.0.1:0 with host candidates on `lo`; returns its port.
pub(crate) fn start_server(session_grace: Duration) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(l.local_addr().expect("addr").port()).expect("port");
            let config = fluo_server::Config {
                session_grace,
                net: fluo_rtc::NetSettings {
                    network_interfaces: Some(vec!["lo".into()]),
                    ..Default::default()
                },
                ..Default::default()
            };
            let (_stop, srx) = tokio::sync::watch::channel(false);
            let _ = fluo_server::run(l, config, srx).await;
        });
    });
    rx.recv().expect("server port")
}

/// One request; returns its `result` (events arriving meanwhile are skipped).
pub(crate) async fn rpc(
    ws: &mut Ws,
    id: u64,
    method: &str,
    params: Value,
) -> Result<Value, String> {
    let req = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
    ws.send(Message::text(req.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
                if v["id"] != json!(id) {
                    continue;
                }
                return match v.get("result") {
                    Some(r) => Ok(r.clone()),
                    None => Err(v["error"].to_string()),
                };
            }
            Ok(Some(Ok(_))) => continue,
            other => return Err(format!("no answer to {method}: {other:?}")),
        }
    }
}
