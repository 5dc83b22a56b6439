//! A GStreamerFilter's command is built at create in a media worker, never in the server
//! (docs/workers.md, "GStreamerFilter"): a command whose element aborts in its constructor
//! (`fluotestcrash abort=true`, the test-elements build's crashing element) answers create
//! with a clear error and ends that worker only. The server (a `fluo-test-elements` process
//! of its own) stays up, a player recording in another pipeline on the other worker goes on
//! recording, and a new GStreamerFilter created right after passes media.
//!
//! Run by `make test` (`unit`): `cargo test -p fluo-server --features test-elements --test
//! filter_probe`.
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
                    None => Ok(v["result"]["value"].clone()),
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

/// The pids of the lines of `log` that contain `what` (`pid=N`).
fn pids(log: &Path, what: &str) -> Vec<u32> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains(what))
        .filter_map(|l| {
            let rest = &l[l.find("pid=")? + 4..];
            let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
            n.parse().ok()
        })
        .collect()
}

/// Ends the server and waits for it.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_aborts_in_its_constructor_ends_one_worker_not_the_server() {
    let tmp = tempfile::Builder::new()
        .prefix("fluo-filter-probe-")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path();
    let clip = clip(dir);
    let uri = format!("file://{}", clip.display());
    let log = dir.join("fluo.log");
    let (child, port) = start_server(dir, 2, &log);
    let mut server = Server(child);
    let mut c = Client::connect(port).await;

    // Pipeline A: a player recorded (its elements on one worker).
    let a = c
        .create("MediaPipeline", json!({}))
        .await
        .expect("pipeline A");
    let player = c
        .create("PlayerEndpoint", json!({"mediaPipeline": a, "uri": uri}))
        .await
        .expect("player");
    let recorded = dir.join("a.webm");
    let rec = c
        .create(
            "RecorderEndpoint",
            json!({"mediaPipeline": a, "uri": format!("file://{}", recorded.display())}),
        )
        .await
        .expect("recorder");
    c.subscribe(&rec, "MediaFlowInStateChanged").await;
    c.subscribe(&rec, "Error").await;
    c.invoke(&player, "connect", json!({"sink": rec})).await;
    c.invoke(&rec, "record", json!({})).await;
    c.invoke(&player, "play", json!({})).await;
    c.wait_flowing(&rec, Duration::from_secs(20)).await;
    let rec_pid = *pids(&log, "element runs in media worker")
        .first()
        .expect("the recorder's worker in the log");

    // Pipeline B: a GStreamerFilter whose command aborts when it is built.
    let b = c
        .create("MediaPipeline", json!({}))
        .await
        .expect("pipeline B");
    let t = Instant::now();
    let e = c
        .create(
            "GStreamerFilter",
            json!({"mediaPipeline": b, "command": "fluotestcrash abort=true"}),
        )
        .await
        .expect_err("a command that aborts cannot be created");
    let answered = t.elapsed();
    assert_eq!(e["code"], 40107, "{e}");
    let msg = e["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(
            "GStreamerFilter: building the command ended the media worker that built it: "
        ),
        "{e}"
    );
    assert!(msg.contains("SIGABRT"), "the cause is said: {e}");
    assert!(!msg.contains("0x"), "no addresses: {e}");
    println!("the aborting command's create: {e}");

    // The server lives and answers; the worker that died was not pipeline A's.
    assert!(
        server.0.try_wait().expect("the server's status").is_none(),
        "the server is alive"
    );
    c.request("ping", json!({"interval": 240000}))
        .await
        .expect("the server answers a ping");
    let mut died = pids(&log, "media worker died");
    died.dedup();
    assert_eq!(died.len(), 1, "one worker died: {died:?}");
    assert_ne!(died[0], rec_pid, "the dead worker was not the recorder's");

    // Pipeline A's media goes on being recorded.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = size(&recorded);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = size(&recorded);
    assert!(
        after > before,
        "the recording grows after the crash: {before} -> {after} bytes"
    );
    assert!(
        !c.events.iter().any(|e| e["type"] == "Error"),
        "no Error on pipeline A: {:?}",
        c.events
    );

    // A valid filter in pipeline B, right after: created on the restarted worker, it passes
    // a player's media to a recorder.
    let t = Instant::now();
    let filter = c
        .create(
            "GStreamerFilter",
            json!({"mediaPipeline": b, "command": "videoflip method=horizontal-flip"}),
        )
        .await
        .expect("a valid filter after the crash");
    let valid_created = t.elapsed();
    let p2 = c
        .create("PlayerEndpoint", json!({"mediaPipeline": b, "uri": uri}))
        .await
        .expect("player B");
    let r2 = c
        .create(
            "RecorderEndpoint",
            json!({"mediaPipeline": b, "uri": format!("file://{}", dir.join("b.webm").display())}),
        )
        .await
        .expect("recorder B");
    c.subscribe(&r2, "MediaFlowInStateChanged").await;
    c.invoke(&p2, "connect", json!({"sink": filter})).await;
    c.invoke(&filter, "connect", json!({"sink": r2})).await;
    c.invoke(&r2, "record", json!({})).await;
    c.invoke(&p2, "play", json!({})).await;
    c.wait_flowing(&r2, Duration::from_secs(20)).await;
    let new_pids = pids(&log, "element runs in media worker");
    assert!(
        !new_pids.contains(&died[0]),
        "no element in the dead worker: {new_pids:?}"
    );
    assert!(
        server.0.try_wait().expect("the server's status").is_none(),
        "the server is alive at the end"
    );
    println!(
        "the aborting command's create answered in {answered:?}; the valid filter's, next, in {valid_created:?}"
    );
}

/// The p50 and the largest of `n` creates of a valid GStreamerFilter (AUTODETECT) in a
/// server with `workers` media workers (0: the command is built in the server's process).
async fn create_times(dir: &Path, workers: usize, n: usize) -> (Duration, Duration) {
    let log = dir.join(format!("fluo-{workers}.log"));
    let (child, port) = start_server(dir, workers, &log);
    let _server = Server(child);
    let mut c = Client::connect(port).await;
    let p = c
        .create("MediaPipeline", json!({}))
        .await
        .expect("pipeline");
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let f = c
            .create(
                "GStreamerFilter",
                json!({"mediaPipeline": p, "command": "videoflip method=horizontal-flip"}),
            )
            .await
            .unwrap_or_else(|e| panic!("a valid filter with {workers} workers: {e}"));
        times.push(t.elapsed());
        c.request("release", json!({"object": f}))
            .await
            .expect("release");
    }
    times.sort();
    (times[n / 2], times[n - 1])
}

/// What the probe costs a create: 20 creates of a valid filter with two media workers (the
/// command built in one) and with none (built in the server), one server after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_latency_with_and_without_workers() {
    let tmp = tempfile::Builder::new()
        .prefix("fluo-filter-create-")
        .tempdir()
        .expect("temp dir");
    let (p50_w, max_w) = create_times(tmp.path(), 2, 20).await;
    let (p50_0, max_0) = create_times(tmp.path(), 0, 20).await;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "GStreamerFilter create, 20 each: workers 2: p50 {p50_w:?}, max {max_w:?}; workers 0: p50 {p50_0:?}, max {max_0:?} (load {})",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
}
