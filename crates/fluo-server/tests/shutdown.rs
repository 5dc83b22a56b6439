//! The real `fluo` binary and SIGTERM: objects are released (peers and clients are told),
//! connections close, the process exits cleanly within a bounded time.
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// The server, its port and its folder (removed when dropped).
fn start() -> (std::process::Child, u16, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("fluo-shutdown-")
        .tempdir()
        .expect("temp dir");
    let port_file = dir.path().join("port");
    let child = Command::new(env!("CARGO_BIN_EXE_fluo"))
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
        .env("KMS_NETWORK_INTERFACES", "lo")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fluo starts");
    let t0 = Instant::now();
    let port = loop {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            if let Ok(p) = p.trim().parse() {
                break p;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "fluo did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    (child, port, dir)
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

fn wait_exit(child: &mut std::process::Child, max: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > max {
            let _ = child.kill();
            panic!("fluo did not exit within {max:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn sigterm_releases_objects_closes_clients_and_exits_cleanly() {
    let (mut child, port, _dir) = start();
    let (mut ws, _) = connect_async(format!("ws://127.0.0.1:{port}/kurento"))
        .await
        .unwrap();
    for v in [
        json!({"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"object":"manager_ServerManager","type":"ObjectDestroyed"}}),
        json!({"jsonrpc":"2.0","id":2,"method":"create","params":{"type":"MediaPipeline"}}),
    ] {
        ws.send(Message::text(v.to_string())).await.unwrap();
    }
    let mut pipeline = None;
    while pipeline.is_none() {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"] == 2 {
                pipeline = v["result"]["value"].as_str().map(String::from);
            }
        }
    }
    let pipeline = pipeline.unwrap();
    let t0 = Instant::now();
    signal(child.id(), "-TERM");
    let mut destroyed = vec![];
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["params"]["value"]["type"] == "ObjectDestroyed" {
                    destroyed.push(v["params"]["value"]["data"]["objectId"].clone());
                }
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection closed after SIGTERM");
    assert_eq!(
        destroyed,
        vec![json!(pipeline)],
        "the pipeline was released first"
    );
    let status = wait_exit(&mut child, Duration::from_secs(5));
    assert!(status.success(), "clean exit: {status:?}");
    println!("SIGTERM -> exit in {:?}", t0.elapsed());
}

#[test]
fn a_second_signal_exits_at_once() {
    let (mut child, _, _dir) = start();
    signal(child.id(), "-TERM");
    signal(child.id(), "-TERM");
    let status = wait_exit(&mut child, Duration::from_secs(3));
    assert!(status.code().is_some(), "exited by itself: {status:?}");
}
