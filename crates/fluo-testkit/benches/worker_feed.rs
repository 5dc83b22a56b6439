//! `cargo bench -p fluo-testkit --bench worker_feed` (`make bench-worker-feed`): what the
//! router sends the media workers, per second, for a RecorderEndpoint in a worker, and what it
//! costs.
//!
//! Two pipelines, one after the other, each on a real server in this process with its default
//! media workers and a real client over the WebSocket:
//!
//! 1. **player**: a PlayerEndpoint (in a worker) playing a 640x360 VP8 + Opus WebM into a
//!    RecorderEndpoint (the same worker): the player's packets come back to the server, cross
//!    the router, and go to the recorder's job;
//! 2. **webrtc**: a WebRTC publisher (a str0m peer on UDP, on a thread named `bench-peer`)
//!    sending 1280x720 VP8 at 30 fps, ~1.5 Mbit/s (several packets a frame) to a
//!    WebRtcEndpoint connected to a RecorderEndpoint (in a worker).
//!
//! For each, over [`WINDOW`] after [`WARMUP`]: the media datagrams and records the server sent
//! to its workers per second (`fluo_worker::media_sent`), the server's CPU per second (this
//! process, less the `bench-*` threads) and the workers' (the child processes).
//!
//! Needs ffmpeg (the clips). Prints figures; asserts only that media reached the workers.

use fluo_testkit::clips;
use fluo_testkit::live::{rt, start_server, Client};
use fluo_testkit::tmp;
use fluo_testkit::udp_peer::{Pacer, Peer};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::media::Direction;

const WARMUP: Duration = Duration::from_secs(2);
const WINDOW: Duration = Duration::from_secs(8);

/// utime + stime (seconds) from a `/proc/.../stat` line.
fn stat_cpu(stat: &str) -> f64 {
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of this process's threads but the bench's own (`bench-*`), and of its child
/// processes (the media workers).
fn cpu() -> (f64, f64) {
    let (mut server, mut workers) = (0.0, 0.0);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0.0, 0.0);
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("bench-") {
            server += stat_cpu(&std::fs::read_to_string(t.path().join("stat")).unwrap_or_default());
        }
        let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            workers += stat_cpu(&stat);
        }
    }
    (server, workers)
}

/// Datagrams/s, records/s, server CPU ms/s, workers' CPU ms/s over [`WINDOW`].
fn measure() -> [f64; 4] {
    let (d0, r0) = fluo_worker::media_sent();
    let (s0, w0) = cpu();
    let t0 = Instant::now();
    std::thread::sleep(WINDOW);
    let secs = t0.elapsed().as_secs_f64();
    let (d1, r1) = fluo_worker::media_sent();
    let (s1, w1) = cpu();
    [
        (d1 - d0) as f64 / secs,
        (r1 - r0) as f64 / secs,
        (s1 - s0) * 1000.0 / secs,
        (w1 - w0) * 1000.0 / secs,
    ]
}

fn print(name: &str, m: [f64; 4]) {
    println!(
        "{name:7} datagrams/s {:7.1}  records/s {:7.1}  records/datagram {:5.2}  server CPU {:6.1} ms/s  workers CPU {:6.1} ms/s",
        m[0],
        m[1],
        m[1] / m[0].max(1.0),
        m[2],
        m[3]
    );
    assert!(m[1] > 10.0, "{name}: media reached the workers");
}

fn main() {
    let dir = tmp::dir("bench-worker-feed");
    let clip = clips::av_clip(&dir, "clip.webm", 14);
    let frames = clips::testsrc_vp8(&dir.join("pub.ivf"), "1280x720", 4, "1500k", 60);
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        // 1. player -> recorder.
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let uri = format!("file://{}", clip.display());
        let player = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": uri}))
            .await
            .expect("player");
        let file = dir.join("player.webm");
        let rec = c.recorder(&pipe, &file).await.expect("recorder");
        c.subscribe(&rec, "MediaFlowInStateChanged")
            .await
            .expect("subscribe");
        c.invoke(&player, "connect", json!({"sink": rec}))
            .await
            .expect("connect");
        c.invoke(&rec, "record", json!({})).await.expect("record");
        c.invoke(&player, "play", json!({})).await.expect("play");
        c.wait_event("MediaFlowInStateChanged", &rec, Duration::from_secs(15))
            .await
            .expect("media reaches the recorder");
        tokio::time::sleep(WARMUP).await;
        let m = tokio::task::spawn_blocking(measure)
            .await
            .expect("measured");
        print("player", m);
        c.request("release", json!({"object": pipe}))
            .await
            .expect("release");

        // 2. WebRTC publisher -> recorder.
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let pp = json!({"mediaPipeline": pipe});
        let ep = c.create("WebRtcEndpoint", pp).await.expect("endpoint");
        let file = dir.join("webrtc.webm");
        let rec = c.recorder(&pipe, &file).await.expect("recorder");
        c.subscribe(&rec, "MediaFlowInStateChanged")
            .await
            .expect("subscribe");
        let cfg = || {
            str0m::RtcConfig::new()
                .clear_codecs()
                .enable_vp8(true)
                .enable_opus(true, false)
        };
        let mut publisher = Peer::new(cfg());
        publisher
            .negotiate(&mut c, &ep, Direction::SendOnly)
            .await
            .expect("negotiated");
        c.invoke(&ep, "connect", json!({"sink": rec}))
            .await
            .expect("connect");
        c.invoke(&rec, "record", json!({})).await.expect("record");
        let stop = Arc::new(AtomicBool::new(false));
        let driver = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("bench-peer".into())
                .spawn(move || {
                    let mut pacer = Pacer::default();
                    while !stop.load(Ordering::Relaxed) {
                        let f = pacer.frame(publisher.connected, &frames);
                        publisher.drive(f);
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
                .expect("the peer's thread")
        };
        c.wait_event("MediaFlowInStateChanged", &rec, Duration::from_secs(15))
            .await
            .expect("media reaches the recorder");
        tokio::time::sleep(WARMUP).await;
        let m = tokio::task::spawn_blocking(measure)
            .await
            .expect("measured");
        print("webrtc", m);
        stop.store(true, Ordering::Relaxed);
        let _ = driver.join();
        c.request("release", json!({"object": pipe}))
            .await
            .expect("release");
    });
}
