//! A recording survives `kill -9` of the server: what was recorded up to the last second or
//! so is playable (Matroska clusters and MP4 fragments of one second, unbuffered writes).
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn call(ws: &mut Ws, id: u64, method: &str, params: Value) -> Value {
    let req = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
    ws.send(Message::text(req.to_string())).await.expect("send");
    loop {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("an answer in time");
        if let Some(Ok(Message::Text(t))) = m {
            let v: Value = serde_json::from_str(&t).expect("json");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"]["value"].clone();
            }
        }
    }
}

fn probe(file: &Path) -> (Vec<String>, f64, usize) {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries"])
        .args([
            "stream=codec_name,nb_read_frames:format=duration",
            "-of",
            "json",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs (a test dependency)");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let mut codecs: Vec<String> = streams
        .iter()
        .filter_map(|s| s["codec_name"].as_str().map(String::from))
        .collect();
    codecs.sort();
    let frames = streams
        .iter()
        .filter(|s| s["codec_name"] == "vp8" || s["codec_name"] == "h264")
        .filter_map(|s| s["nb_read_frames"].as_str()?.parse().ok())
        .next()
        .unwrap_or(0);
    let dur = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    (codecs, dur, frames)
}

/// Both tests encode and decode real video in a server of their own: one at a time, so that
/// neither starves the other of CPU on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts fluo, records a playing clip into WEBM, MKV and MP4 for 4 s, ends fluo with
/// `signal`; returns the folder (removed when dropped), (profile, file) pairs in it and how
/// long fluo took to exit.
async fn record_then(
    signal: &str,
) -> (
    tempfile::TempDir,
    Vec<(&'static str, std::path::PathBuf)>,
    Duration,
) {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("fluo-rec{signal}-"))
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path();
    let clip = dir.join("in.webm");
    let st = Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x360:rate=30",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "20"])
        .args(["-c:v", "libvpx", "-b:v", "1M", "-c:a", "libopus"])
        .arg(&clip)
        .status()
        .expect("ffmpeg runs (a test dependency)");
    assert!(st.success());
    let port_file = dir.join("port");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fluo"))
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
    let port: u16 = loop {
        if let Some(p) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            break p;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "fluo did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut ws, _) = connect_async(format!("ws://127.0.0.1:{port}/kurento"))
        .await
        .unwrap();
    let p = call(&mut ws, 1, "create", json!({"type":"MediaPipeline"})).await;
    let player = call(&mut ws, 2, "create", json!({"type":"PlayerEndpoint","constructorParams":{"mediaPipeline":p,"uri":format!("file://{}", clip.display())}})).await;
    let mut id = 10;
    let mut files = vec![];
    for (profile, ext) in [("WEBM", "webm"), ("MKV", "mkv"), ("MP4", "mp4")] {
        let file = dir.join(format!("killed.{ext}"));
        let rec = call(&mut ws, id, "create", json!({"type":"RecorderEndpoint","constructorParams":{"mediaPipeline":p,"uri":format!("file://{}", file.display()),"mediaProfile":profile}})).await;
        call(
            &mut ws,
            id + 1,
            "invoke",
            json!({"object":player,"operation":"connect","operationParams":{"sink":rec}}),
        )
        .await;
        call(
            &mut ws,
            id + 2,
            "invoke",
            json!({"object":rec,"operation":"record"}),
        )
        .await;
        id += 3;
        files.push((profile, file));
    }
    call(
        &mut ws,
        id,
        "invoke",
        json!({"object":player,"operation":"play"}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let t = Instant::now();
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let _ = child.wait();
    let took = t.elapsed();
    (tmp, files, took)
}

#[tokio::test]
async fn recordings_stay_playable_after_kill_9() {
    let _serial = SERIAL.lock().await;
    let (_dir, files, _) = record_then("-KILL").await;
    for (profile, file) in files {
        let (codecs, dur, frames) = probe(&file);
        println!(
            "{profile} after kill -9: {codecs:?}, {dur:.2} s, {frames} decodable video frames"
        );
        assert!(
            codecs.len() == 2,
            "{profile}: both tracks are there: {codecs:?}"
        );
        // An unfinished Matroska file has no duration in its header (ffprobe says 0); the
        // frames it decodes tell how much survived: at least 2 of the 4 s at 30 fps.
        assert!(
            frames >= 60,
            "{profile}: {frames} decodable frames, {dur} s"
        );
    }
}

#[tokio::test]
async fn sigterm_finalises_recordings_before_exiting() {
    let _serial = SERIAL.lock().await;
    let (_dir, files, took) = record_then("-TERM").await;
    println!("fluo exited {took:?} after SIGTERM");
    assert!(took < Duration::from_secs(8), "bounded shutdown: {took:?}");
    for (profile, file) in files {
        let (codecs, dur, frames) = probe(&file);
        println!(
            "{profile} after SIGTERM: {codecs:?}, {dur:.2} s, {frames} decodable video frames"
        );
        assert_eq!(codecs.len(), 2, "{profile}: {codecs:?}");
        // A finalised file knows its duration (an unfinished Matroska file does not).
        assert!(
            dur >= 3.0,
            "{profile}: duration {dur} s in the finalised file"
        );
        assert!(frames >= 90, "{profile}: {frames} decodable frames");
    }
}
