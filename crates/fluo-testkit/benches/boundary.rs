//! `cargo bench -p fluo-testkit --bench boundary` (`make bench-boundary`, part of
//! `make bench-media`): what the media worker process boundary costs (docs/workers.md), in
//! CPU and in latency, against the same work in the server's process (`--workers 0`).
//!
//! The release server (`target/release/fluo`, or `FLUO_BIN`) is started as `make run` starts
//! it, on 127.0.0.1 with a free port, once with its default media workers and once with
//! `--workers 0`, alternated (the first mode of each run alternates too), `BOUNDARY_RUNS`
//! runs of each (default 3). Each server runs two scenarios, driven over the Kurento
//! protocol by a client here:
//!
//! - **player**: a PlayerEndpoint playing a 640x360 30 fps VP8 + Opus WebM (decoded and
//!   re-encoded to VP8 + Opus, as a player does) to 10 RtpEndpoint viewers whose plain RTP
//!   arrives on UDP sockets here.
//! - **transcode**: an RtpEndpoint fed 640x360 30 fps VP8 by this bench (plain RTP, paced in
//!   real time) connected to an RtpEndpoint whose viewer offers H.264 only, so that the
//!   router's transcoder (a job in a worker, or a pipeline in the server's process) runs.
//!
//! Over a window of `BOUNDARY_SECS` (default 15) after a warm-up: the CPU time (utime +
//! stime from /proc) of the server's process plus its children running `fluo worker`, per
//! second, per packet received here, per decoded video frame; and latency:
//!
//! - transcode: from the send of a VP8 frame's last packet to the arrival of the last packet
//!   of the H.264 frame made from it. The frames are matched by RTP timestamp: the
//!   transcoder keeps the spacing of its input's timestamps (its jitter buffer times packets
//!   by them), and a 0.5 s pause in the sending during the warm-up (the timestamps jump with
//!   it) marks one frame on both sides, which fixes the offset between the two timelines.
//! - player: the player's output has no sent time to compare with, so what is measured is
//!   each video frame's delay above the best frame of its stream: arrival time minus RTP
//!   timestamp, less the smallest such difference of the viewer's window. A constant delay
//!   added by the boundary does not show in it (the transcode scenario measures that); the
//!   delay's variation does.
//!
//! A row whose media fell behind real time (a viewer got fewer than 90 % of the frames the
//! window should hold, or the transcoder's output fewer than 90 % of its input) is invalid,
//! printed as such and left out of the medians. Needs ffmpeg (the clips).

use fluo_testkit::live::{rt, Client};
use fluo_testkit::procs::{server_cpu_ticks, FluoProcess};
use fluo_testkit::stats::{median, percentile};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VIEWERS: usize = 10;
const FPS: f64 = 30.0;
const WARMUP: Duration = Duration::from_secs(5);
/// When, in the transcode scenario's warm-up, the sending pauses (and for how long).
const PAUSE_AT_FRAME: usize = 90;
const PAUSE_TICKS: u32 = 45_000;
const MTU: usize = 1200;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `fluo` server process (release build) and whether it runs media workers.
struct Server {
    process: FluoProcess,
    port: u16,
    workers: bool,
}

impl Server {
    fn start(bin: &Path, workers: bool, dir: &Path) -> Server {
        let extra: &[&str] = if workers { &[] } else { &["--workers", "0"] };
        let process = FluoProcess::start(
            bin,
            extra,
            dir,
            if workers { "server-w" } else { "server-0" },
        );
        let port = process.port;
        Server {
            process,
            port,
            workers,
        }
    }

    /// CPU ticks (1/100 s) of the server's process and its media workers, and how many
    /// workers there are.
    fn cpu_ticks(&self) -> (u64, usize) {
        server_cpu_ticks(self.process.child.id()).expect("the server's /proc/PID/stat")
    }
}

/// One RTP packet as it arrived here.
#[derive(Clone, Copy)]
struct Arrival {
    at: Instant,
    ts: u32,
    marker: bool,
}

/// A UDP socket on an even port (its RTCP port, the next one, held too) whose RTP arrivals
/// a thread named `bench-rx` keeps.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Arrival>>>,
    stop: Arc<AtomicBool>,
}

fn even_pair() -> (UdpSocket, UdpSocket) {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let p = s.local_addr().expect("addr").port();
        if p.is_multiple_of(2) {
            if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", p + 1)) {
                return (s, rtcp);
            }
        }
    }
}

impl Receiver {
    fn new() -> Receiver {
        let (sock, rtcp) = even_pair();
        let port = sock.local_addr().expect("addr").port();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let got = Arc::new(Mutex::new(Vec::with_capacity(16_384)));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        std::thread::Builder::new()
            .name("bench-rx".into())
            .spawn(move || {
                let _rtcp = rtcp;
                let mut buf = [0u8; 2048];
                while !s.load(Ordering::Relaxed) {
                    let Ok(n) = sock.recv(&mut buf) else { continue };
                    let at = Instant::now();
                    if n >= 12 && buf[0] >> 6 == 2 && !(200..=206).contains(&buf[1]) {
                        let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                        let marker = buf[1] & 0x80 != 0;
                        g.lock().expect("lock").push(Arrival { at, ts, marker });
                    }
                }
            })
            .expect("a receiver thread");
        Receiver { port, got, stop }
    }

    /// The arrivals within `[from, to]`.
    fn take(&self, from: Instant, to: Instant) -> Vec<Arrival> {
        self.stop.store(true, Ordering::Relaxed);
        let got = self.got.lock().expect("lock");
        got.iter()
            .filter(|a| a.at >= from && a.at <= to)
            .copied()
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Each video frame's arrival (its marker packet's), by RTP timestamp, in arrival order.
fn frames_of(arrivals: &[Arrival]) -> Vec<Arrival> {
    arrivals.iter().filter(|a| a.marker).copied().collect()
}

fn sdp(media: &str) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{media}")
}

fn sdp_video_port(s: &str) -> u16 {
    s.lines()
        .find_map(|l| l.strip_prefix("m=video "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("an m=video port in the answer")
}

/// What one scenario measured on one server.
#[derive(Clone, Debug)]
struct Row {
    /// CPU of the server's process and its workers, ms per second.
    cpu_ms_s: f64,
    packets_s: f64,
    frames_s: f64,
    /// Delivered frames over the frames the window should hold (worst viewer).
    delivered: f64,
    p50_ms: f64,
    p99_ms: f64,
    workers: usize,
    load: String,
    /// Why the row does not count, if it does not.
    invalid: Option<String>,
}

impl Row {
    fn us_per_packet(&self) -> f64 {
        self.cpu_ms_s * 1000.0 / self.packets_s.max(1e-9)
    }
    fn us_per_frame(&self) -> f64 {
        self.cpu_ms_s * 1000.0 / self.frames_s.max(1e-9)
    }
}

/// Sleeps through the window; returns (start, end, CPU ms/s, workers).
fn window(server: &Server, secs: u64) -> (Instant, Instant, f64, usize) {
    let (c0, _) = server.cpu_ticks();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let (c1, workers) = server.cpu_ticks();
    let t1 = Instant::now();
    let ms_s = (c1 - c0) as f64 * 10.0 / (t1 - t0).as_secs_f64();
    (t0, t1, ms_s, workers)
}

async fn call(c: &mut Client, object: &str, op: &str, params: Value) -> Value {
    c.invoke(object, op, params)
        .await
        .unwrap_or_else(|e| panic!("{op} on {object}: {e}"))
}

/// A player to [`VIEWERS`] RtpEndpoint viewers.
fn player_run(server: &Server, clip: &Path, secs: u64) -> Row {
    let rt = rt();
    let viewers: Vec<(Receiver, Receiver)> = (0..VIEWERS)
        .map(|_| (Receiver::new(), Receiver::new()))
        .collect();
    let (mut c, pipe) = rt.block_on(async {
        let (mut c, pipe) = Client::with_pipeline(server.port).await.expect("pipeline");
        let uri = format!("file://{}", clip.display());
        let player = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": uri}))
            .await
            .expect("player");
        for (audio, video) in &viewers {
            let ep = c
                .create("RtpEndpoint", json!({"mediaPipeline": pipe}))
                .await
                .expect("viewer");
            let offer = sdp(&format!(
                "m=audio {} RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\na=recvonly\r\n\
                 m=video {} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=recvonly\r\n",
                audio.port, video.port
            ));
            call(&mut c, &ep, "processOffer", json!({ "offer": offer })).await;
            call(&mut c, &player, "connect", json!({ "sink": ep })).await;
        }
        call(&mut c, &player, "play", json!({})).await;
        (c, pipe)
    });
    std::thread::sleep(WARMUP);
    let (t0, t1, cpu_ms_s, workers) = window(server, secs);
    let span = (t1 - t0).as_secs_f64();
    let (mut packets, mut worst, mut delays) = (0usize, f64::MAX, vec![]);
    for (audio, video) in &viewers {
        let v = video.take(t0, t1);
        packets += audio.take(t0, t1).len() + v.len();
        let frames = frames_of(&v);
        worst = worst.min(frames.len() as f64 / (span * FPS));
        delays.extend(delays_above_best(&frames));
    }
    rt.block_on(c.request("release", json!({ "object": pipe })))
        .expect("release");
    let invalid =
        (worst < 0.9).then(|| format!("a viewer got {:.0} % of the frames", worst * 100.0));
    Row {
        cpu_ms_s,
        packets_s: packets as f64 / span,
        frames_s: worst * FPS,
        delivered: worst,
        p50_ms: percentile(&delays, 50.0),
        p99_ms: percentile(&delays, 99.0),
        workers,
        load: fluo_testkit::machine::load(),
        invalid,
    }
}

/// Each frame's arrival minus its RTP time, less the smallest of them, in ms.
fn delays_above_best(frames: &[Arrival]) -> Vec<f64> {
    let Some(first) = frames.first() else {
        return vec![];
    };
    let d: Vec<f64> = frames
        .iter()
        .map(|f| {
            let at = (f.at - first.at).as_secs_f64();
            let ts = f.ts.wrapping_sub(first.ts) as i32 as f64 / 90_000.0;
            (at - ts) * 1000.0
        })
        .collect();
    let best = d.iter().copied().fold(f64::MAX, f64::min);
    d.iter().map(|x| x - best).collect()
}

/// The RTP timestamp of frame `i` as the bench sends it: 30 fps, with the pause's jump.
fn send_ts(i: usize) -> u32 {
    let ts = i as u32 * 3000;
    if i >= PAUSE_AT_FRAME {
        ts + PAUSE_TICKS
    } else {
        ts
    }
}

/// Sends `frames` (VP8) as plain RTP from `sock` to `to`, frame `i` at `start +
/// send_ts(i)`, until `stop`; returns when each frame's last packet left, by timestamp.
fn send_vp8(
    sock: UdpSocket,
    to: u16,
    frames: Vec<Vec<u8>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<HashMap<u32, Instant>> {
    std::thread::Builder::new()
        .name("bench-tx".into())
        .spawn(move || {
            let (mut sent, mut seq) = (HashMap::new(), 0u16);
            let start = Instant::now();
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let ts = send_ts(i);
                let due = start + Duration::from_secs_f64(ts as f64 / 90_000.0);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let frame = &frames[i % frames.len()];
                let chunks: Vec<&[u8]> = frame.chunks(MTU).collect();
                for (k, chunk) in chunks.iter().enumerate() {
                    let mut pkt = Vec::with_capacity(13 + chunk.len());
                    let marker = if k + 1 == chunks.len() { 0x80 } else { 0 };
                    pkt.extend_from_slice(&[0x80, marker | 96]);
                    pkt.extend_from_slice(&seq.to_be_bytes());
                    pkt.extend_from_slice(&ts.to_be_bytes());
                    pkt.extend_from_slice(&0x0B0D_A1E5u32.to_be_bytes());
                    pkt.push(if k == 0 { 0x10 } else { 0x00 }); // VP8 descriptor: S, PID 0
                    pkt.extend_from_slice(chunk);
                    let _ = sock.send_to(&pkt, ("127.0.0.1", to));
                    seq = seq.wrapping_add(1);
                }
                sent.insert(ts, Instant::now());
            }
            sent
        })
        .expect("a sender thread")
}

/// The transcoded stream: VP8 in, H.264 out.
fn transcode_run(server: &Server, frames: &[Vec<u8>], secs: u64) -> Row {
    let rt = rt();
    let out = Receiver::new();
    let (tx, _tx_rtcp) = even_pair();
    let (mut c, pipe, a_port) = rt.block_on(async {
        let (mut c, pipe) = Client::with_pipeline(server.port).await.expect("pipeline");
        let pp = json!({ "mediaPipeline": pipe });
        let a = c.create("RtpEndpoint", pp.clone()).await.expect("a");
        let b = c.create("RtpEndpoint", pp).await.expect("b");
        let tx_port = tx.local_addr().expect("addr").port();
        let offer_a = sdp(&format!(
            "m=video {tx_port} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n"
        ));
        let ans = call(&mut c, &a, "processOffer", json!({ "offer": offer_a })).await;
        let offer_b = sdp(&format!(
            "m=video {} RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n\
             a=fmtp:97 packetization-mode=1;profile-level-id=42e01f\r\na=recvonly\r\n",
            out.port
        ));
        call(&mut c, &b, "processOffer", json!({ "offer": offer_b })).await;
        call(&mut c, &a, "connect", json!({ "sink": b })).await;
        (c, pipe, sdp_video_port(ans.as_str().unwrap_or_default()))
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_vp8(tx, a_port, frames.to_vec(), stop.clone());
    std::thread::sleep(WARMUP);
    let (t0, t1, cpu_ms_s, workers) = window(server, secs);
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("the sender");
    rt.block_on(c.request("release", json!({ "object": pipe })))
        .expect("release");
    let span = (t1 - t0).as_secs_f64();
    let all = frames_of(&out.got.lock().expect("lock"));
    let in_window: Vec<Arrival> = out.take(t0, t1);
    let got = frames_of(&in_window);
    let sent_in_window = sent.values().filter(|at| **at >= t0 && **at <= t1).count();
    let delivered = got.len() as f64 / (sent_in_window.max(1) as f64);
    let (lat, invalid) = match latencies(&all, &got, &sent) {
        Ok(l) => (l, None),
        Err(e) => (vec![], Some(e)),
    };
    let invalid = invalid.or_else(|| {
        (delivered < 0.9).then(|| format!("{:.0} % of the frames came out", delivered * 100.0))
    });
    Row {
        cpu_ms_s,
        packets_s: in_window.len() as f64 / span,
        frames_s: got.len() as f64 / span,
        delivered,
        p50_ms: percentile(&lat, 50.0),
        p99_ms: percentile(&lat, 99.0),
        workers,
        load: fluo_testkit::machine::load(),
        invalid,
    }
}

/// Each output frame's latency (ms) from the send of its input frame. `all` is every output
/// frame, in which the pause is found; `got` the window's.
fn latencies(
    all: &[Arrival],
    got: &[Arrival],
    sent: &HashMap<u32, Instant>,
) -> Result<Vec<f64>, String> {
    // The pause: the first output frame whose timestamp follows its predecessor's by at least
    // the pause's jump is the input's frame PAUSE_AT_FRAME.
    let anchor = all
        .windows(2)
        .find(|w| {
            w[1].ts.wrapping_sub(w[0].ts) >= PAUSE_TICKS && w[1].ts.wrapping_sub(w[0].ts) < 1 << 31
        })
        .map(|w| w[1])
        .ok_or("the pause was not seen in the output (no anchor for the timestamps)")?;
    let offset = anchor.ts.wrapping_sub(send_ts(PAUSE_AT_FRAME));
    let mut lat = vec![];
    let mut unmatched = 0;
    for f in got {
        let ts = f.ts.wrapping_sub(offset);
        // The timestamps may go through nanoseconds and back: allow a tick or two.
        let at = (0..=4u32).find_map(|d| sent.get(&ts.wrapping_add(d).wrapping_sub(2)));
        match at {
            Some(at) if f.at >= *at => lat.push((f.at - *at).as_secs_f64() * 1000.0),
            _ => unmatched += 1,
        }
    }
    if unmatched * 10 > got.len().max(1) {
        return Err(format!(
            "{unmatched} of {} output frames match no input frame",
            got.len()
        ));
    }
    Ok(lat)
}

/// Prints one scenario's rows and their medians, workers against in process.
fn report(name: &str, rows: &[(bool, Row)]) {
    println!("\n### {name}\n");
    println!("| run | mode | workers | CPU ms/s | packets/s | µs CPU/packet | frames/s | µs CPU/frame | delivered | p50 ms | p99 ms | load | |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, (w, r)) in rows.iter().enumerate() {
        println!(
            "| {} | {} | {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.0} | {:.0} % | {:.2} | {:.2} | {} | {} |",
            i / 2 + 1,
            if *w { "workers" } else { "in process" },
            r.workers,
            r.cpu_ms_s,
            r.packets_s,
            r.us_per_packet(),
            r.frames_s,
            r.us_per_frame(),
            r.delivered * 100.0,
            r.p50_ms,
            r.p99_ms,
            r.load,
            r.invalid.as_deref().map_or(String::new(), |e| format!("INVALID: {e}"))
        );
    }
    let med = |w: bool| -> Option<(usize, [f64; 5])> {
        let v: Vec<&Row> = rows
            .iter()
            .filter(|(m, r)| *m == w && r.invalid.is_none())
            .map(|(_, r)| r)
            .collect();
        let m = |f: &dyn Fn(&Row) -> f64| median(&v.iter().map(|r| f(r)).collect::<Vec<_>>());
        (!v.is_empty()).then(|| {
            (
                v.len(),
                [
                    m(&|r| r.cpu_ms_s),
                    m(&|r| r.us_per_packet()),
                    m(&|r| r.us_per_frame()),
                    m(&|r| r.p50_ms),
                    m(&|r| r.p99_ms),
                ],
            )
        })
    };
    println!("\nMedians of the valid runs:\n");
    println!("| mode | runs | CPU ms/s | µs CPU/packet | µs CPU/frame | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    let total = rows.len() / 2;
    for (w, label) in [(true, "workers"), (false, "in process")] {
        match med(w) {
            Some((n, m)) => println!(
                "| {label} | {n} of {total} | {:.1} | {:.1} | {:.0} | {:.2} | {:.2} |",
                m[0], m[1], m[2], m[3], m[4]
            ),
            None => println!("| {label} | 0 of {total} | no valid run | | | | |"),
        }
    }
    match (med(true), med(false)) {
        (Some((_, w)), Some((_, p))) => println!(
            "\nworkers against in process: CPU {:+.1} % (goal < +5 %), latency p50 {:+.2} ms, p99 {:+.2} ms (goal < +2 ms)",
            (w[0] / p[0].max(1e-9) - 1.0) * 100.0,
            w[3] - p[3],
            w[4] - p[4]
        ),
        _ => println!("\nno ratio: a mode has no valid run"),
    }
}

fn main() {
    let runs = env_or("BOUNDARY_RUNS", 3) as usize;
    let secs = env_or("BOUNDARY_SECS", 15);
    let bin = FluoProcess::release_bin();
    let dir = fluo_testkit::tmp::dir("bench-boundary");
    let clip_secs = (WARMUP.as_secs() + secs + 10) as u32;
    eprintln!("making the clips with ffmpeg...");
    let clip = fluo_testkit::clips::av_clip(&dir, "player.webm", clip_secs);
    let frames =
        fluo_testkit::clips::testsrc_vp8(&dir.join("tx.ivf"), "640x360", clip_secs, "800k", 60);
    let started = Instant::now();
    let (mut player, mut transcode) = (vec![], vec![]);
    for run in 0..runs {
        let order = if run % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for workers in order {
            let server = Server::start(&bin, workers, &dir);
            let mode = if server.workers {
                "workers"
            } else {
                "in process"
            };
            let p = player_run(&server, &clip, secs);
            eprintln!("run {}: player, {mode}: {p:?}", run + 1);
            let t = transcode_run(&server, &frames, secs);
            eprintln!("run {}: transcode, {mode}: {t:?}", run + 1);
            player.push((workers, p));
            transcode.push((workers, t));
        }
    }
    let sort = |v: &mut Vec<(bool, Row)>| {
        // Pair the rows by run: workers first in each pair.
        let (w, p): (Vec<_>, Vec<_>) = v.drain(..).partition(|(m, _)| *m);
        *v = w.into_iter().zip(p).flat_map(|(a, b)| [a, b]).collect();
    };
    sort(&mut player);
    sort(&mut transcode);
    println!(
        "\nThe worker boundary: {runs} runs per mode, {secs} s windows after {} s of warm-up, {:.0} s in all; load average (1, 5, 15 min) at each row's end.",
        WARMUP.as_secs(),
        started.elapsed().as_secs_f64()
    );
    report(
        &format!("PlayerEndpoint (640x360 VP8 + Opus, 30 fps) to {VIEWERS} RtpEndpoint viewers; frames: video frames decoded by the player; latency: delay above the stream's best frame"),
        &player,
    );
    report(
        "One transcoded stream (640x360 30 fps VP8 -> H.264); frames: frames decoded and encoded; latency: VP8 frame sent to H.264 frame received",
        &transcode,
    );
}
