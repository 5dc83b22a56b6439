//! What the module tests share: a Kurento client on a WebSocket, a server of their own, a
//! generated clip, a player to a recorder.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A Kurento client on one WebSocket: requests, and the events that come meanwhile.
pub struct Client {
    pub ws: Ws,
    pub next: u64,
    pub events: Vec<Value>,
}

impl Client {
    pub async fn connect(port: u16) -> Client {
        let (ws, _) = connect_async(format!("ws://127.0.0.1:{port}/kurento"))
            .await
            .expect("the server accepts a WebSocket");
        Client {
            ws,
            next: 1,
            events: Vec::new(),
        }
    }

    /// The request's result, or its error.
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next += 1;
        let id = self.next;
        let req = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        self.ws
            .send(Message::text(req.to_string()))
            .await
            .expect("send");
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} in 30 s"));
            let Some(Ok(Message::Text(t))) = m else {
                panic!("the connection ended before {method} was answered: {m:?}");
            };
            let v: Value = serde_json::from_str(&t).expect("json");
            if v["method"] == "onEvent" {
                self.events.push(v["params"]["value"].clone());
            } else if v["id"] == id {
                return match v.get("error") {
                    Some(e) => Err(e.clone()),
                    // describe answers without a `value`.
                    None => Ok(v["result"]
                        .get("value")
                        .cloned()
                        .unwrap_or_else(|| v["result"].clone())),
                };
            }
        }
    }

    pub async fn create(&mut self, class: &str, params: Value) -> Result<String, Value> {
        let v = self
            .request(
                "create",
                json!({"type": class, "constructorParams": params}),
            )
            .await?;
        Ok(v.as_str().expect("an object id").to_string())
    }

    pub async fn invoke(&mut self, object: &str, op: &str, params: Value) {
        let r = self
            .request(
                "invoke",
                json!({"object": object, "operation": op, "operationParams": params}),
            )
            .await;
        r.unwrap_or_else(|e| panic!("{op} of {object}: {e}"));
    }

    pub async fn subscribe(&mut self, object: &str, event: &str) {
        let r = self
            .request("subscribe", json!({"object": object, "type": event}))
            .await;
        r.unwrap_or_else(|e| panic!("subscribe to {event}: {e}"));
    }

    /// Waits for `object`'s MediaFlowInStateChanged FLOWING.
    pub async fn wait_flowing(&mut self, object: &str, within: Duration) {
        let is_it = |e: &Value| {
            e["type"] == "MediaFlowInStateChanged"
                && e["data"]["source"] == object
                && e["data"]["state"] == "FLOWING"
        };
        let t0 = Instant::now();
        while !self.events.iter().any(is_it) {
            assert!(
                t0.elapsed() < within,
                "no media reached {object} in {within:?}: {:?}",
                self.events
            );
            let left = within.saturating_sub(t0.elapsed());
            if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(left, self.ws.next()).await
            {
                let v: Value = serde_json::from_str(&t).expect("json");
                if v["method"] == "onEvent" {
                    self.events.push(v["params"]["value"].clone());
                }
            }
        }
    }
}

/// A server of its own (`program`) on 127.0.0.1 (port 0) with `workers` media workers and
/// `extra` flags, its log in `log`.
pub fn start_server(
    program: &str,
    dir: &Path,
    workers: usize,
    extra: &[&str],
    log: &Path,
) -> (Child, u16) {
    start_server_with_env(program, dir, workers, extra, log, &[])
}

/// [`start_server`] with `env` set in its environment (`OPENCV_LOG_LEVEL`, which `make test`
/// sets for the tests, is left to the server unless given here).
pub fn start_server_with_env(
    program: &str,
    dir: &Path,
    workers: usize,
    extra: &[&str],
    log: &Path,
    env: &[(&str, &str)],
) -> (Child, u16) {
    let port_file = dir.join(format!("port-{workers}"));
    let out = std::fs::File::create(log).expect("log file");
    let mut child = Command::new(program)
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--http-port",
            "0",
            "--port-file",
        ])
        .arg(&port_file)
        .args(["--workers", &workers.to_string()])
        .args(extra)
        .env("KMS_NETWORK_INTERFACES", "lo")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("OPENCV_LOG_LEVEL")
        .envs(env.iter().copied())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("{program} starts: {e}"));
    let t0 = Instant::now();
    let port = loop {
        if let Some(p) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            break p;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{program} exited at start: {st}");
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "fluo did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    (child, port)
}

/// A 30 s VP8 WebM clip made by ffmpeg (small and fast to encode: the machine may be loaded).
pub fn clip(dir: &Path) -> PathBuf {
    let clip = dir.join("in.webm");
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "testsrc=size=160x120:rate=15", "-t", "30"])
        .args(["-c:v", "libvpx", "-b:v", "100k", "-deadline", "realtime"])
        .args(["-cpu-used", "8"])
        .arg(&clip)
        .status()
        .expect("ffmpeg runs (a test dependency)");
    assert!(st.success(), "ffmpeg made the clip");
    clip
}

pub fn size(file: &Path) -> u64 {
    std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)
}

impl Client {
    /// The result of `op` (without parameters) on `object`.
    pub async fn value(&mut self, object: &str, op: &str) -> Value {
        let r = self
            .request("invoke", json!({"object": object, "operation": op}))
            .await;
        r.unwrap_or_else(|e| panic!("{op} of {object}: {e}"))
    }

    /// The first event of `ty` from `source` (already received or arriving within `within`).
    pub async fn event(&mut self, ty: &str, source: &str, within: Duration) -> Option<Value> {
        let is_it = |e: &Value| e["type"] == ty && e["data"]["source"] == source;
        let t0 = Instant::now();
        loop {
            if let Some(e) = self.events.iter().find(|e| is_it(e)) {
                return Some(e.clone());
            }
            let left = within.checked_sub(t0.elapsed())?;
            match tokio::time::timeout(left, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).expect("json");
                    if v["method"] == "onEvent" {
                        self.events.push(v["params"]["value"].clone());
                    }
                }
                Ok(Some(Ok(_))) => {}
                _ => return None,
            }
        }
    }
}

/// Ends the server and waits for it.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn player_to_recorder(
    c: &mut Client,
    uri: &str,
    file: &Path,
) -> (String, String, String) {
    let p = c
        .create("MediaPipeline", json!({}))
        .await
        .expect("pipeline");
    let player = c
        .create("PlayerEndpoint", json!({"mediaPipeline": p, "uri": uri}))
        .await
        .expect("player");
    let rec = c
        .create(
            "RecorderEndpoint",
            json!({"mediaPipeline": p, "uri": format!("file://{}", file.display())}),
        )
        .await
        .expect("recorder");
    (p, player, rec)
}
