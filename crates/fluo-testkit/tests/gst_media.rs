//! GStreamer media plane against a real server: PlayerEndpoint, RecorderEndpoint in each
//! profile, and transcoding inserted (and removed) by the router.
//!
//! Fixtures are generated with ffmpeg into a temporary folder; results are checked with
//! ffprobe (both are test dependencies that `make test` installs).

use fluo_testkit::live::{start_server, Client};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fluo-gst-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A 640x360 30 fps test pattern with a 440 Hz tone, `secs` long, VP8 + Opus in WebM (or
/// H.264 + AAC in MP4 when the name ends in .mp4).
fn clip(dir: &Path, name: &str, secs: u32) -> PathBuf {
    let out = dir.join(name);
    let codecs: &[&str] = if name.ends_with(".mp4") {
        &["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    } else {
        &["-c:v", "libvpx", "-b:v", "1M", "-c:a", "libopus"]
    };
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=640x360:rate=30")
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-t",
            &secs.to_string(),
        ])
        .args(codecs)
        .arg(&out)
        .status()
        .expect("ffmpeg runs (a test dependency)");
    assert!(st.success(), "ffmpeg made {name}");
    out
}

/// (codec names of the streams, duration in seconds) as ffprobe reads them.
fn probe(file: &Path) -> (Vec<String>, f64) {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name:format=duration",
            "-of",
            "json",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    let mut codecs: Vec<String> = v["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["codec_name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    codecs.sort();
    let dur = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    (codecs, dur)
}

/// Counts decodable video frames with ffmpeg (0 when the file is broken).
fn decoded_frames(file: &Path) -> usize {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_player_feeds_recorders_in_every_profile_and_mp4_gets_a_transcoder() {
    let dir = tmpdir("profiles");
    let input = clip(&dir, "in.webm", 4);
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let mut c = Client::connect(port).await.expect("connect");
        let pipe = c.create("MediaPipeline", json!({})).await.expect("pipeline");
        let player = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", input.display())}))
            .await
            .expect("player");
        for ev in ["EndOfStream", "MediaTranscodingStateChanged", "Error"] {
            c.subscribe(&player, ev).await.expect("subscribe");
        }
        let profiles = [
            ("WEBM", "webm", vec!["opus", "vp8"]),
            ("MKV", "mkv", vec!["opus", "vp8"]),
            ("MP4", "mp4", vec!["h264", "opus"]),
            ("WEBM_VIDEO_ONLY", "webm", vec!["vp8"]),
            ("MP4_AUDIO_ONLY", "mp4", vec!["opus"]),
        ];
        let mut recs = vec![];
        for (profile, ext, _) in &profiles {
            let file = dir.join(format!("out-{profile}.{ext}"));
            let r = c
                .create(
                    "RecorderEndpoint",
                    json!({"mediaPipeline": pipe, "uri": format!("file://{}", file.display()), "mediaProfile": profile}),
                )
                .await
                .expect("recorder");
            for ev in ["Recording", "Stopped", "Error"] {
                c.subscribe(&r, ev).await.expect("subscribe");
            }
            c.invoke(&player, "connect", json!({"sink": r})).await.expect("connect");
            c.invoke(&r, "record", json!({})).await.expect("record");
            let rec = c.wait_event("Recording", &r, Duration::from_secs(2)).await;
            assert!(rec.is_some(), "Recording: {:?}", c.events);
            recs.push((r, file));
        }
        c.invoke(&player, "play", json!({})).await.expect("play");
        assert!(
            c.wait_event("EndOfStream", &player, Duration::from_secs(15)).await.is_some(),
            "the 4 s clip ends: {:?}",
            c.events
        );
        // Exactly one transcoder (VP8 -> H.264, for the MP4 recorder), shared by nobody else.
        let t = c
            .wait_event("MediaTranscodingStateChanged", &player, Duration::from_secs(1))
            .await
            .expect("the player reports transcoding");
        assert_eq!(t["state"], "TRANSCODING");
        assert_eq!(t["mediaType"], "VIDEO");
        for (r, _) in &recs {
            c.invoke(r, "stopAndWait", json!({})).await.expect("stopAndWait");
            assert!(c.wait_event("Stopped", r, Duration::from_secs(5)).await.is_some());
        }
        assert!(
            !c.events.iter().any(|(t, _)| t == "Error"),
            "no errors: {:?}",
            c.events
        );
        for ((profile, _, want), (_, file)) in profiles.iter().zip(&recs) {
            let (codecs, dur) = probe(file);
            println!("{profile}: {codecs:?}, {dur:.2} s, {} bytes", std::fs::metadata(file).map(|m| m.len()).unwrap_or(0));
            assert_eq!(&codecs, want, "{profile}: streams");
            assert!(dur > 2.5 && dur < 6.0, "{profile}: duration {dur}");
            if want.iter().any(|c| *c == "vp8" || *c == "h264") {
                let frames = decoded_frames(file);
                assert!(frames > 60, "{profile}: {frames} decodable frames");
            }
        }
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}
