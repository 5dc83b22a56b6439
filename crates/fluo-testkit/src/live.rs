//! A real Fluo server in this process (own thread and runtime, ICE on loopback) and a minimal
//! Kurento client call, shared by the storm and the soak.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// A client WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A single-threaded runtime for a test's client side (the server has its own).
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Holds the tests that encode or decode real video to one at a time, so that none starves
/// the others of CPU on a small machine (their assertions include real-time figures): hold the
/// guard for the whole test. The lock is across processes (an exclusive `flock` on this
/// crate's source folder, which exists wherever the tests were built), because make test runs
/// several test binaries at once (scripts/test-lanes.py); within one process, two threads'
/// locks exclude each other too (each call opens its own file description). Released when the
/// guard drops, or when the process dies.
pub fn serial() -> SerialGuard {
    let dir = std::fs::File::open(env!("CARGO_MANIFEST_DIR")).expect("fluo-testkit's folder");
    dir.lock().expect("flock on fluo-testkit's folder");
    SerialGuard(dir)
}

/// The lock [`serial`] took, released on drop (closing the file releases the `flock`).
#[must_use = "the lock is released when the guard drops"]
pub struct SerialGuard(#[allow(dead_code)] std::fs::File);

/// Starts Fluo on 127.0.0.1:0 with host candidates on `lo`; returns its port.
pub fn start_server(session_grace: Duration) -> u16 {
    start_server_with(fluo_server::Config {
        session_grace,
        net: fluo_rtc::NetSettings {
            network_interfaces: Some(vec!["lo".into()]),
            ..Default::default()
        },
        ..Default::default()
    })
}

/// [`start_server`] with the operations listener on 127.0.0.1:0, its port written to
/// `port_file` (see [`scrape_metrics`]).
pub fn start_server_with_metrics(session_grace: Duration, port_file: &std::path::Path) -> u16 {
    start_server_with(fluo_server::Config {
        session_grace,
        net: fluo_rtc::NetSettings {
            network_interfaces: Some(vec!["lo".into()]),
            ..Default::default()
        },
        metrics_port: Some(0),
        metrics_address: Some([127, 0, 0, 1].into()),
        metrics_port_file: Some(port_file.to_path_buf()),
        ..Default::default()
    })
}

/// The answer to `GET /metrics` (head and body) of the server whose operations listener's
/// port is in `port_file`; panics unless it is a 200.
pub async fn scrape_metrics(port_file: &std::path::Path) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port: u16 = std::fs::read_to_string(port_file)
        .expect("the metrics port file")
        .trim()
        .parse()
        .expect("a port");
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// Scrapes until `done` holds for the text (the listener reuses a render for up to 1 s), 5 s
/// at most; the last text.
pub async fn scrape_metrics_until(
    port_file: &std::path::Path,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = scrape_metrics(port_file).await;
        if done(&text) || std::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The value of the sample `series` (name and labels as written) in the `/metrics` of the
/// server whose operations listener's port is in `port_file`.
pub async fn metric(port_file: &std::path::Path, series: &str) -> Option<f64> {
    let text = scrape_metrics(port_file).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Starts Fluo on 127.0.0.1:0 with `config` (its bind address and port are ignored; its
/// HTTP listener, left at KMS's 9091, takes a free port too: tests bind port 0).
pub fn start_server_with(mut config: fluo_server::Config) -> u16 {
    if config.http_port == fluo_server::Config::default().http_port {
        config.http_port = 0;
    }
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
            let (_stop, srx) = tokio::sync::watch::channel(false);
            if let Err(e) = fluo_server::run(l, config, srx).await {
                // Its clients see a closed connection: say why.
                eprintln!("the test server ended: {e}");
            }
        });
    });
    rx.recv().expect("server port")
}

/// One request; returns its `result` (events arriving meanwhile are skipped).
pub async fn rpc(ws: &mut Ws, id: u64, method: &str, params: Value) -> Result<Value, String> {
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

/// A Kurento client for tests: requests by name, events kept until asked for.
pub struct Client {
    ws: Ws,
    id: u64,
    /// `onEvent` notifications not yet taken: (event type, value.data).
    pub events: Vec<(String, Value)>,
}

impl Client {
    /// Connects to `ws://127.0.0.1:{port}/kurento` and creates a pipeline with one
    /// WebRtcEndpoint: (client, pipeline, endpoint).
    pub async fn with_endpoint(port: u16) -> Result<(Client, String, String), String> {
        let (mut c, pipe) = Client::with_pipeline(port).await?;
        let ep = c
            .create("WebRtcEndpoint", json!({"mediaPipeline": pipe}))
            .await?;
        Ok((c, pipe, ep))
    }

    /// Connects to `ws://127.0.0.1:{port}/kurento` and creates a pipeline: (client,
    /// pipeline).
    pub async fn with_pipeline(port: u16) -> Result<(Client, String), String> {
        let mut c = Client::connect(port).await?;
        let pipe = c.create("MediaPipeline", json!({})).await?;
        Ok((c, pipe))
    }

    /// Connects to `ws://127.0.0.1:{port}/kurento`.
    pub async fn connect(port: u16) -> Result<Client, String> {
        Client::connect_url(&format!("ws://127.0.0.1:{port}/kurento")).await
    }

    /// Connects to a server's WebSocket URL (`ws://host:port/kurento`).
    pub async fn connect_url(url: &str) -> Result<Client, String> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Client {
            ws,
            id: 0,
            events: vec![],
        })
    }

    /// Sends a request; returns the whole response (`result` or `error`).
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.id += 1;
        let id = self.id;
        let req = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        self.ws
            .send(Message::text(req.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let v = self.next(Duration::from_secs(15)).await?;
            if !v.is_null() && v["id"] == json!(id) {
                return Ok(v);
            }
        }
    }

    async fn next(&mut self, wait: Duration) -> Result<Value, String> {
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
                    if v["method"] == "onEvent" {
                        let d = &v["params"]["value"];
                        self.events.push((
                            d["type"].as_str().unwrap_or_default().into(),
                            d["data"].clone(),
                        ));
                        return Ok(Value::Null);
                    }
                    return Ok(v);
                }
                Ok(Some(Ok(_))) => continue,
                Err(_) => return Err("timeout".into()),
                other => return Err(format!("connection ended: {other:?}")),
            }
        }
    }

    /// `create`; returns the new object's id.
    pub async fn create(&mut self, class: &str, params: Value) -> Result<String, String> {
        let r = self
            .request(
                "create",
                json!({"type": class, "constructorParams": params}),
            )
            .await?;
        r["result"]["value"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("create {class} failed: {r}"))
    }

    /// `create` of a RecorderEndpoint in `pipeline` writing to `file` (default profile).
    pub async fn recorder(
        &mut self,
        pipeline: &str,
        file: &std::path::Path,
    ) -> Result<String, String> {
        let uri = format!("file://{}", file.display());
        self.create(
            "RecorderEndpoint",
            json!({"mediaPipeline": pipeline, "uri": uri}),
        )
        .await
    }

    /// `invoke`; returns `result.value` or the error object.
    pub async fn invoke(&mut self, object: &str, op: &str, params: Value) -> Result<Value, Value> {
        let r = self
            .request(
                "invoke",
                json!({"object": object, "operation": op, "operationParams": params}),
            )
            .await
            .map_err(Value::from)?;
        match r.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(r["result"]["value"].clone()),
        }
    }

    /// `subscribe` to an event of an object.
    pub async fn subscribe(&mut self, object: &str, event: &str) -> Result<(), String> {
        let r = self
            .request("subscribe", json!({"object": object, "type": event}))
            .await?;
        match r.get("error") {
            Some(e) => Err(e.to_string()),
            None => Ok(()),
        }
    }

    /// Waits until an event of type `ty` from `source` arrived (or was kept); returns its data.
    pub async fn wait_event(&mut self, ty: &str, source: &str, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self
                .events
                .iter()
                .position(|(t, d)| t == ty && d["source"] == source)
            {
                return Some(self.events.remove(i).1);
            }
            let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
            match self.next(left).await {
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}
