//! `cargo bench -p fluo-testkit --bench media` (`make bench-media`): the GStreamer media plane.
//!
//! 1. **Transcoding cost**: one 1280x720 30 fps VP8 stream (about 2 Mbit/s) transcoded to
//!    H.264 by Fluo (RtpEndpoint -> router transcoder -> RtpEndpoint) and by a gst-launch-1.0
//!    pipeline doing the same work (same decoder, same x264 settings), in the same run,
//!    alternated, each measured over the same window. Fluo runs in this process (its CPU is
//!    the process's); the sender and the reference are separate processes; packets are
//!    counted on plain UDP sockets here.
//! 2. **One player, many viewers**: a PlayerEndpoint feeding N WebRTC viewers (str0m peers on
//!    UDP in this process, on threads named `bench-*` whose CPU is left out): Fluo's CPU for
//!    N = 1, 10, 100, to show that the file is decoded and encoded once, whatever N.
//! 3. **Composite** (media/composite.rs): N WebRTC participants in one Composite of the release
//!    server with its media workers, against gst-launch-1.0 running the same mix.
//! 4. **Filters** (media/filters.rs): FaceOverlayFilter and ChromaFilter (and PassThrough,
//!    GStreamerFilter videoconvert) at 640x360 30 fps on the release server, CPU per stream and
//!    added latency, against gst-launch-1.0 doing the same work, alternated; a round short of
//!    the floor (fluo_testkit::floor) ends the bench.
//! 5. **WebAssembly** (media/wasm.rs): PointerDetectorFilter's per-frame time compiled in and
//!    as WebAssembly, the module the server loads (opt-level "s", `make wasm-modules`) and the
//!    same at opt-level 3 (profile wasm-module-o3); `make bench-media` builds both.
//!
//! Arguments (after `--`, or `BENCH_MEDIA_ARGS` with `make bench-media`): `transcode`,
//! `fanout`, `composite`, `filters`, `wasm` run those parts only; `quick` makes the named
//! Composite or Filters part a short smoke run (one round each, nothing written; `quick` alone
//! is `composite quick`); none: every part in full. `sweep` (only when named): the
//! Composite's reference pipeline at N = 9 under several mixer and jitterbuffer latencies.
//!
//! Needs ffmpeg and gst-launch-1.0 (installed by `make test`'s dependencies).

#[path = "media/composite.rs"]
mod composite;
#[path = "media/composite_report.rs"]
mod composite_report;
#[path = "media/filters.rs"]
mod filters;
#[path = "media/filters_media.rs"]
mod filters_media;
#[path = "media/filters_report.rs"]
mod filters_report;
#[path = "media/flash.rs"]
mod flash;
#[path = "media/mixref.rs"]
mod mixref;
#[path = "media/wasm.rs"]
mod wasm;

use fluo_testkit::live::{start_server, Client};
use fluo_testkit::stats::median;
use fluo_testkit::udp_peer::Peer;
use serde_json::json;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WARMUP: Duration = Duration::from_secs(4);
const WINDOW: Duration = Duration::from_secs(15);

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command: state is index 0, utime 11, stime 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of this process's threads, leaving out the load tool's own threads (named
/// `bench-*`), plus its media workers' (the server in this process runs its players and
/// transcoders there): what the Fluo server spent.
fn fluo_cpu_secs() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut total = 0.0;
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.starts_with("bench-") {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        total += (ticks(11) + ticks(12)) / 100.0;
    }
    for w in fluo_testkit::procs::worker_children().0 {
        total += fluo_testkit::procs::cpu_ticks_of(w).unwrap_or(0) as f64 / 100.0;
    }
    total
}

/// Counts datagrams arriving on a fresh even UDP port (with the next port free for RTCP).
struct Counter {
    port: u16,
    packets: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Counter {
    fn new() -> Counter {
        let sock = loop {
            let s = UdpSocket::bind("127.0.0.1:0").expect("udp");
            let p = s.local_addr().expect("addr").port();
            if p.is_multiple_of(2) && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
                break s;
            }
        };
        let port = sock.local_addr().expect("addr").port();
        let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
        let packets = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (packets.clone(), stop.clone());
        let _ = std::thread::Builder::new()
            .name("bench-count".into())
            .spawn(move || {
                let mut buf = [0u8; 2048];
                while !s.load(Ordering::Relaxed) {
                    if sock.recv_from(&mut buf).is_ok() {
                        p.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        Counter {
            port,
            packets,
            stop,
        }
    }

    fn count(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn clip_720p(dir: &Path) -> PathBuf {
    let out = dir.join("720p.webm");
    if !out.exists() {
        eprintln!("making a 60 s 720p30 VP8 clip with ffmpeg (once)...");
        let st = Command::new("ffmpeg")
            .args([
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1280x720:rate=30",
            ])
            .args([
                "-t",
                "60",
                "-c:v",
                "libvpx",
                "-b:v",
                "2M",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-g",
                "60",
            ])
            .arg(&out)
            .status()
            .expect("ffmpeg");
        assert!(st.success());
    }
    out
}

fn clip_av(dir: &Path) -> PathBuf {
    let out = dir.join("av.webm");
    if !out.exists() {
        let st = Command::new("ffmpeg")
            .args([
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x360:rate=30",
            ])
            .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "60"])
            .args([
                "-c:v",
                "libvpx",
                "-b:v",
                "1M",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-c:a",
                "libopus",
            ])
            .arg(&out)
            .status()
            .expect("ffmpeg");
        assert!(st.success());
    }
    out
}

/// Sends the clip's VP8 as RTP (payload type 96) to `port`, paced in real time.
fn sender(clip: &Path, port: u16) -> Child {
    Command::new("gst-launch-1.0")
        .args(["-q", "filesrc"])
        .arg(format!("location={}", clip.display()))
        .args([
            "!",
            "matroskademux",
            "!",
            "rtpvp8pay",
            "pt=96",
            "mtu=1200",
            "!",
            "udpsink",
            "host=127.0.0.1",
            "sync=true",
        ])
        .arg(format!("port={port}"))
        .stdout(Stdio::null())
        .spawn()
        .expect("gst-launch")
}

/// The reference: gst-launch doing Fluo's transcoder's work, RTP in, RTP out.
fn reference(listen: u16, to: u16) -> Child {
    let desc = format!(
        "udpsrc port={listen} caps=application/x-rtp,media=video,encoding-name=VP8,clock-rate=90000,payload=96 \
         ! rtpjitterbuffer latency=20 ! rtpvp8depay ! vp8dec ! queue max-size-buffers=30 max-size-time=0 max-size-bytes=0 leaky=downstream \
         ! videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=1000 key-int-max=60 threads=2 \
         ! video/x-h264,profile=constrained-baseline ! h264parse ! rtph264pay pt=96 mtu=1200 config-interval=-1 aggregate-mode=zero-latency \
         ! udpsink host=127.0.0.1 port={to}"
    );
    Command::new("gst-launch-1.0")
        .arg("-q")
        .args(desc.split_whitespace())
        .stdout(Stdio::null())
        .spawn()
        .expect("gst-launch")
}

fn free_port() -> u16 {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let p = s.local_addr().expect("addr").port();
        if p.is_multiple_of(2) && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

fn sdp(kind_line: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{kind_line}"
    )
}

fn sdp_port(s: &str) -> u16 {
    s.lines()
        .find_map(|l| l.strip_prefix("m=video "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("an m=video port")
}

/// (CPU seconds per second of media, packets out per second) over the window; `cpu` reads
/// the CPU seconds of what is measured.
fn measure(cpu: impl Fn() -> f64, out: &Counter) -> (f64, f64) {
    std::thread::sleep(WARMUP);
    let (c0, p0, t0) = (cpu(), out.count(), Instant::now());
    std::thread::sleep(WINDOW);
    let secs = t0.elapsed().as_secs_f64();
    ((cpu() - c0) / secs, (out.count() - p0) as f64 / secs)
}

fn bar(v: f64, max: f64) -> String {
    "#".repeat(((v / max.max(1e-9)) * 40.0).round() as usize)
}

fn main() {
    // `cargo bench` passes `--bench`: only the bare words are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let parts = ["transcode", "fanout", "composite", "filters", "wasm"];
    let known = [&parts[..], &["quick", "sweep"]].concat();
    if let Some(a) = args.iter().find(|a| !known.contains(&a.as_str())) {
        eprintln!("unknown argument {a:?}: expected some of {known:?}");
        std::process::exit(2);
    }
    let all = args.is_empty();
    let named = |w: &str| args.iter().any(|a| a == w);
    let quick = named("quick");
    let none_named = !parts.iter().any(|p| named(p));
    // `quick` alone: the Composite part's smoke run, as before the filters part.
    let want = |w: &str| all || named(w) || (w == "composite" && quick && none_named);
    let dir = fluo_testkit::tmp::dir("bench-media");
    if want("transcode") || want("fanout") {
        let port = start_server(Duration::from_secs(60));
        let rt = fluo_testkit::live::rt();
        if want("transcode") {
            transcode(&dir, port, &rt);
        }
        if want("fanout") {
            fanout(&dir, port, &rt);
        }
    }
    if args.iter().any(|a| a == "sweep") {
        composite::sweep(&composite::Plan::full(), &dir);
    }
    if want("composite") {
        let plan = match quick {
            true => composite::Plan::quick(),
            false => composite::Plan::full(),
        };
        composite::run(&plan, &dir);
    }
    if want("filters") {
        let plan = match quick {
            true => filters::Plan::quick(),
            false => filters::Plan::full(),
        };
        filters::run(&plan, &dir);
    }
    if want("wasm") {
        let results = filters::Plan::full().results;
        wasm::run(results.as_deref().filter(|_| !quick));
    }
}

/// 1. Transcoding: Fluo vs gst-launch, alternated, 2 rounds.
fn transcode(dir: &Path, port: u16, rt: &tokio::runtime::Runtime) {
    let clip = clip_720p(dir);
    let mut fluo = vec![];
    let mut gst = vec![];
    for round in 1..=2 {
        // Fluo
        let out = Counter::new();
        let (a, b, pipe, mut c) = rt.block_on(async {
            let mut c = Client::connect(port).await.expect("connect");
            let pipe = c.create("MediaPipeline", json!({})).await.expect("pipeline");
            let pp = json!({"mediaPipeline": pipe});
            let a = c.create("RtpEndpoint", pp.clone()).await.expect("a");
            let b = c.create("RtpEndpoint", pp).await.expect("b");
            let ans = c
                .invoke(&a, "processOffer", json!({"offer": sdp(&format!("m=video {} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n", free_port()))}))
                .await
                .expect("offer a");
            c.invoke(&b, "processOffer", json!({"offer": sdp(&format!("m=video {} RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1;profile-level-id=42e01f\r\na=recvonly\r\n", out.port))}))
                .await
                .expect("offer b");
            c.invoke(&a, "connect", json!({"sink": b})).await.expect("connect");
            (sdp_port(ans.as_str().unwrap_or_default()), b, pipe, c)
        });
        let _ = b;
        let mut tx = sender(&clip, a);
        let (cpu, pps) = measure(fluo_cpu_secs, &out);
        let _ = tx.kill();
        let _ = tx.wait();
        rt.block_on(async {
            c.request("release", json!({"object": pipe}))
                .await
                .expect("release")
        });
        eprintln!(
            "round {round}: Fluo transcoding {:.1} % of a core, {pps:.0} H.264 packets/s out",
            cpu * 100.0
        );
        fluo.push((cpu, pps));

        // gst-launch reference
        let out = Counter::new();
        let listen = free_port();
        let mut r = reference(listen, out.port);
        std::thread::sleep(Duration::from_millis(300));
        let mut tx = sender(&clip, listen);
        let pid = r.id();
        let (cpu, pps) = measure(|| cpu_secs(pid), &out);
        let _ = tx.kill();
        let _ = r.kill();
        let _ = tx.wait();
        let _ = r.wait();
        eprintln!(
            "round {round}: gst-launch transcoding {:.1} % of a core, {pps:.0} H.264 packets/s out",
            cpu * 100.0
        );
        gst.push((cpu, pps));
    }
    let med = |v: &[(f64, f64)]| {
        let c: Vec<f64> = v.iter().map(|x| x.0).collect();
        let p: Vec<f64> = v.iter().map(|x| x.1).collect();
        (median(&c), median(&p))
    };
    let (fc, fp) = med(&fluo);
    let (gc, gp) = med(&gst);
    let max = fc.max(gc);
    println!("\nTranscoding 1280x720 30 fps VP8 (~2 Mbit/s) to H.264 (x264 ultrafast, 1 Mbit/s); CPU in % of one core, median of 2 rounds of {} s:", WINDOW.as_secs());
    println!(
        "  fluo        {:6.1} %  {:5.0} pkt/s  {}",
        fc * 100.0,
        fp,
        bar(fc, max)
    );
    println!(
        "  gst-launch  {:6.1} %  {:5.0} pkt/s  {}",
        gc * 100.0,
        gp,
        bar(gc, max)
    );
    println!(
        "  ratio fluo / gst-launch: {:.2} (goal <= 1.10)",
        fc / gc.max(1e-9)
    );
}

/// 2. One player, N WebRTC viewers.
fn fanout(dir: &Path, port: u16, rt: &tokio::runtime::Runtime) {
    let av = clip_av(dir);
    println!("\nOne PlayerEndpoint (640x360 VP8 + Opus decoded and re-encoded once) to N WebRTC viewers (str0m peers on UDP in this process; their CPU is left out); Fluo CPU in % of one core over {} s:", WINDOW.as_secs());
    let mut rows = vec![];
    for n in [1usize, 10, 100] {
        let (pipe, mut c, mut peers) = rt.block_on(async {
            let mut c = Client::connect(port).await.expect("connect");
            let pipe = c
                .create("MediaPipeline", json!({}))
                .await
                .expect("pipeline");
            let pp = json!({"mediaPipeline": pipe});
            let player = c
                .create(
                    "PlayerEndpoint",
                    json!({"mediaPipeline": pipe, "uri": format!("file://{}", av.display())}),
                )
                .await
                .expect("player");
            let mut peers = vec![];
            for _ in 0..n {
                let v = c
                    .create("WebRtcEndpoint", pp.clone())
                    .await
                    .expect("viewer");
                let mut peer = Peer::new(str0m::RtcConfig::new());
                peer.keep_frames = false;
                let offer = peer.offer(str0m::media::Direction::RecvOnly);
                let answer = c
                    .invoke(&v, "processOffer", json!({"offer": offer}))
                    .await
                    .expect("offer");
                peer.accept(answer.as_str().unwrap_or_default());
                c.invoke(&player, "connect", json!({"sink": v}))
                    .await
                    .expect("connect");
                peers.push(peer);
            }
            c.invoke(&player, "play", json!({})).await.expect("play");
            (pipe, c, peers)
        });
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(AtomicU64::new(0));
        let driver = {
            let (stop, frames) = (stop.clone(), frames.clone());
            std::thread::Builder::new()
                .name("bench-peers".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        for p in &mut peers {
                            p.drive(None);
                        }
                        frames.store(peers.iter().map(|p| p.frames_in).sum(), Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
                .expect("thread")
        };
        std::thread::sleep(WARMUP);
        let (c0, f0, t0) = (
            fluo_cpu_secs(),
            frames.load(Ordering::Relaxed),
            Instant::now(),
        );
        std::thread::sleep(WINDOW);
        let secs = t0.elapsed().as_secs_f64();
        let cpu = (fluo_cpu_secs() - c0) / secs;
        let fps = (frames.load(Ordering::Relaxed) - f0) as f64 / secs / n as f64;
        stop.store(true, Ordering::Relaxed);
        let _ = driver.join();
        rt.block_on(async {
            c.request("release", json!({"object": pipe}))
                .await
                .expect("release")
        });
        eprintln!(
            "N={n}: {:.1} %, {fps:.1} video frames/s per viewer",
            cpu * 100.0
        );
        rows.push((n, cpu, fps));
    }
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    for (n, cpu, pps) in &rows {
        println!(
            "  N={n:<4} {:6.1} %  {pps:5.1} video frames/s per viewer  {}",
            cpu * 100.0,
            bar(*cpu, max)
        );
    }
    let (c1, c100) = (rows[0].1, rows[rows.len() - 1].1);
    println!(
        "  CPU at 100 viewers / CPU at 1 viewer: {:.2} (encoding per viewer would be ~100)",
        c100 / c1.max(1e-9)
    );
}
