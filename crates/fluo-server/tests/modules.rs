//! The module system with the test module (crates/fluo-module-test, linked only by the
//! `test-elements` build): FluoModuleTestFilter, a compiled-in module's type, is listed by
//! getInfo and getKmd, is created and described as a built-in one, processes a player's
//! video (its FramesProcessed events, its getFrames method); when its processing panics, an
//! Error event comes within 1 s, its methods answer errors, and the server goes on serving
//! another client whose recording keeps growing. Run with media workers (the instance in a
//! worker's job) and with `--workers 0` (in the server's process).
//!
//! Run by `make test` (`unit`): `cargo test -p fluo-server --features test-elements --test
//! modules`.
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A Kurento client on one WebSocket: requests, and the events that come meanwhile.
struct Client {
    ws: Ws,
    next: u64,
    events: Vec<Value>,
}

impl Client {
    async fn connect(port: u16) -> Client {
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
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, Value> {
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

    async fn create(&mut self, class: &str, params: Value) -> Result<String, Value> {
        let v = self
            .request(
                "create",
                json!({"type": class, "constructorParams": params}),
            )
            .await?;
        Ok(v.as_str().expect("an object id").to_string())
    }

    async fn invoke(&mut self, object: &str, op: &str, params: Value) {
        let r = self
            .request(
                "invoke",
                json!({"object": object, "operation": op, "operationParams": params}),
            )
            .await;
        r.unwrap_or_else(|e| panic!("{op} of {object}: {e}"));
    }

    async fn subscribe(&mut self, object: &str, event: &str) {
        let r = self
            .request("subscribe", json!({"object": object, "type": event}))
            .await;
        r.unwrap_or_else(|e| panic!("subscribe to {event}: {e}"));
    }

    /// Waits for `object`'s MediaFlowInStateChanged FLOWING.
    async fn wait_flowing(&mut self, object: &str, within: Duration) {
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

/// A `fluo-test-elements` server of its own on 127.0.0.1 (port 0) with `workers` media
/// workers, its log in `log`.
fn start_server(dir: &Path, workers: usize, log: &Path) -> (Child, u16) {
    let port_file = dir.join(format!("port-{workers}"));
    let out = std::fs::File::create(log).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fluo-test-elements"))
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
        .env("KMS_NETWORK_INTERFACES", "lo")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .spawn()
        .expect("fluo-test-elements starts");
    let t0 = Instant::now();
    let port = loop {
        if let Some(p) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            break p;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("fluo-test-elements exited at start: {st}");
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "fluo did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    (child, port)
}

/// A 30 s VP8 WebM clip made by ffmpeg (small and fast to encode: the machine may be loaded).
fn clip(dir: &Path) -> PathBuf {
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

fn size(file: &Path) -> u64 {
    std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)
}

impl Client {
    /// The result of `op` (without parameters) on `object`.
    async fn value(&mut self, object: &str, op: &str) -> Value {
        let r = self
            .request("invoke", json!({"object": object, "operation": op}))
            .await;
        r.unwrap_or_else(|e| panic!("{op} of {object}: {e}"))
    }

    /// The first event of `ty` from `source` (already received or arriving within `within`).
    async fn event(&mut self, ty: &str, source: &str, within: Duration) -> Option<Value> {
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
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn player_to_recorder(c: &mut Client, uri: &str, file: &Path) -> (String, String, String) {
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

async fn a_module_works_and_its_panic_stops_its_element_only(workers: usize) {
    let tmp = tempfile::Builder::new()
        .prefix("fluo-modules-")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path();
    let clip = clip(dir);
    let uri = format!("file://{}", clip.display());
    let log = dir.join("fluo.log");
    let (child, port) = start_server(dir, workers, &log);
    let mut server = Server(child);
    let mut a = Client::connect(port).await;

    // getInfo lists the module with its factory; getKmd describes it.
    let info = a
        .request(
            "invoke",
            json!({"object": "manager_ServerManager", "operation": "getInfo"}),
        )
        .await
        .expect("getInfo");
    let module = info["modules"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "fluomodtest"))
        .unwrap_or_else(|| panic!("fluomodtest in getInfo: {info}"));
    assert_eq!(module["version"], "0.1.0");
    assert_eq!(module["factories"], json!(["FluoModuleTestFilter"]));
    let kmd = a
        .request(
            "invoke",
            json!({"object": "manager_ServerManager", "operation": "getKmd",
                   "operationParams": {"moduleName": "fluomodtest"}}),
        )
        .await
        .expect("getKmd");
    let kmd: Value = serde_json::from_str(kmd.as_str().expect("text")).expect("kmd JSON");
    assert_eq!(kmd["remoteClasses"][0]["name"], "FluoModuleTestFilter");
    assert_eq!(kmd["remoteClasses"][0]["extends"], "Filter");
    assert_eq!(kmd["events"][0]["name"], "FramesProcessed");

    // Client B records a player of its own throughout.
    let mut b = Client::connect(port).await;
    let b_file = dir.join("b.webm");
    let (_, b_player, b_rec) = player_to_recorder(&mut b, &uri, &b_file).await;
    b.subscribe(&b_rec, "MediaFlowInStateChanged").await;
    b.invoke(&b_player, "connect", json!({"sink": b_rec})).await;
    b.invoke(&b_rec, "record", json!({})).await;
    b.invoke(&b_player, "play", json!({})).await;
    b.wait_flowing(&b_rec, Duration::from_secs(20)).await;

    // Client A: player -> FluoModuleTestFilter -> recorder.
    let (p, player, rec) = player_to_recorder(&mut a, &uri, &dir.join("a.webm")).await;
    let filter = a
        .create("FluoModuleTestFilter", json!({"mediaPipeline": p}))
        .await
        .expect("the module's filter");
    let d = a
        .request("describe", json!({"object": filter}))
        .await
        .expect("describe");
    assert_eq!(d["type"], "FluoModuleTestFilter", "{d}");
    assert_eq!(
        d["qualifiedType"], "fluomodtest.FluoModuleTestFilter",
        "{d}"
    );
    assert_eq!(d["hierarchy"][0], "kurento.Filter", "{d}");
    a.subscribe(&filter, "FramesProcessed").await;
    a.subscribe(&filter, "Error").await;
    a.invoke(&player, "connect", json!({"sink": filter})).await;
    a.invoke(&filter, "connect", json!({"sink": rec})).await;
    a.invoke(&rec, "record", json!({})).await;
    a.invoke(&player, "play", json!({})).await;
    let ev = a
        .event("FramesProcessed", &filter, Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("no FramesProcessed in 20 s: {:?}", a.events));
    assert_eq!(ev["data"]["count"], 1, "{ev}");
    assert_eq!(ev["data"]["type"], "FramesProcessed", "{ev}");
    let frames = a
        .request(
            "invoke",
            json!({"object": filter, "operation": "getFrames"}),
        )
        .await
        .expect("getFrames");
    assert!(
        frames.as_u64().is_some_and(|n| n >= 1),
        "getFrames: {frames}"
    );
    // A property: its default read, a value the instance refuses (its error, its code
    // kept; the value stays), one it takes.
    assert_eq!(a.value(&filter, "getMode").await, "invert");
    let e = a
        .request(
            "invoke",
            json!({"object": filter, "operation": "setMode", "operationParams": {"mode": "x"}}),
        )
        .await
        .expect_err("a bad mode");
    assert_eq!(e["code"], 40107, "{e}");
    assert!(
        e["message"].as_str().unwrap_or("").contains("mode must be"),
        "{e}"
    );
    assert_eq!(a.value(&filter, "getMode").await, "invert");

    // The processing panics: an Error event within 1 s, methods answer errors.
    a.invoke(&filter, "setMode", json!({"mode": "panic"})).await;
    assert_eq!(a.value(&filter, "getMode").await, "panic");
    let t = Instant::now();
    let err = a
        .event("Error", &filter, Duration::from_secs(1))
        .await
        .unwrap_or_else(|| panic!("no Error within 1 s of the panic: {:?}", a.events));
    println!("Error {:?} after setMode(panic): {err}", t.elapsed());
    let text = err["data"]["description"].as_str().unwrap_or_default();
    assert!(
        text.contains("FluoModuleTestFilter: the module panicked"),
        "{err}"
    );
    assert!(text.contains("panics on purpose"), "{err}");
    assert!(!text.contains("0x"), "no addresses: {err}");
    let e = a
        .request(
            "invoke",
            json!({"object": filter, "operation": "getFrames"}),
        )
        .await
        .expect_err("no answer from a panicked module");
    assert_eq!(e["code"], 40003, "{e}");

    // The server serves B meanwhile: B's recording grows, a new pipeline is made.
    let before = size(&b_file);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let after = size(&b_file);
    assert!(
        after > before,
        "B's recording grows after the panic: {before} -> {after}"
    );
    b.create("MediaPipeline", json!({}))
        .await
        .expect("B is served");
    assert!(
        !b.events.iter().any(|e| e["type"] == "Error"),
        "no Error for B: {:?}",
        b.events
    );
    assert!(
        server.0.try_wait().expect("status").is_none(),
        "the server is alive"
    );
    // A's other elements still answer.
    a.request("invoke", json!({"object": rec, "operation": "getName"}))
        .await
        .expect("A's recorder answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_media_worker() {
    a_module_works_and_its_panic_stops_its_element_only(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_server_process() {
    a_module_works_and_its_panic_stops_its_element_only(0).await;
}
