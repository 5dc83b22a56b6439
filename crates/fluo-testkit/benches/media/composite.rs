//! 3. **Composite**: N participants (N = 4 and 9) in one Composite of a real server (the
//!    release `fluo` binary with its media workers, started as `make run` starts it), each a
//!    str0m WebRTC peer sending 640x360 30 fps VP8 + Opus through a WebRtcEndpoint and a
//!    HubPort and receiving the grid and its mix back; against gst-launch-1.0 running the
//!    same compositor + audiomixer pipeline fed RTP over UDP (mixref.rs), in the same run,
//!    alternated. Figures: the server's CPU (its process plus its `fluo worker` children,
//!    from /proc) per participant, the added latency of white flashes from the moment the
//!    senders wrote them to the arrival of the first frame showing them in each cell at each
//!    receiver (flash.rs), and the frame rate and size received.

use super::flash::{self, Decoded};
use super::mixref::{self, Latency, Launched, RtpOut, Vp8In};
use fluo_testkit::live::Client;
use fluo_testkit::machine::load;
use fluo_testkit::procs::FluoProcess;
use fluo_testkit::stats;
use fluo_testkit::udp_peer::Peer;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The grid's size, rate and bitrate (Fluo's default encoder bitrate, 300 kbit/s).
const W: u32 = 640;
const H: u32 = 360;
const FPS: u32 = 30;
const BPS: u32 = 300_000;

/// What a run does: the participant counts, runs per count, warm-up and measured window.
pub struct Plan {
    pub ns: Vec<usize>,
    pub runs: usize,
    pub warmup: Duration,
    pub window: Duration,
    /// Where the plot goes (none: no plot).
    pub plot: Option<PathBuf>,
}

impl Plan {
    pub fn full() -> Plan {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/img");
        Plan {
            ns: vec![4, 9],
            runs: 3,
            warmup: Duration::from_secs(5),
            window: Duration::from_secs(15),
            plot: Some(docs.join("composite.svg")),
        }
    }

    /// A smoke check: N = 4, one run of each, short.
    pub fn quick() -> Plan {
        Plan {
            ns: vec![4],
            runs: 1,
            warmup: Duration::from_secs(4),
            window: Duration::from_secs(6),
            plot: None,
        }
    }
}

/// One measured run.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// CPU per participant, in % of one core.
    pub cpu_pct: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Video frames per second received, mean over the receivers.
    pub fps: f64,
    pub size: (u32, u32),
    /// Flashes seen and missed (each flash counts once per cell per receiver).
    pub seen: usize,
    pub missed: usize,
}

/// The participants' side of a run, Fluo's (str0m peers) or the reference's (plain RTP).
pub(super) trait Peers {
    fn connected(&self) -> bool;
    fn video(&mut self, frame: &[u8]);
    fn audio(&mut self, packet: &[u8]);
    /// Reads and sends what is due; stamps the frames that came.
    fn poll(&mut self);
    /// The frames each receiver got since the last call.
    fn take(&mut self) -> Vec<Vec<(Instant, Vec<u8>)>>;
}

struct Fluo {
    peers: Vec<Peer>,
    got: Vec<Vec<(Instant, Vec<u8>)>>,
}

impl Peers for Fluo {
    fn connected(&self) -> bool {
        self.peers.iter().all(|p| p.connected)
    }
    fn video(&mut self, frame: &[u8]) {
        for p in &mut self.peers {
            p.drive(Some(frame));
        }
    }
    fn audio(&mut self, packet: &[u8]) {
        for p in &mut self.peers {
            p.send_opus(packet);
        }
    }
    fn poll(&mut self) {
        for (p, got) in self.peers.iter_mut().zip(&mut self.got) {
            p.drive(None);
            let now = Instant::now();
            got.extend(p.frames.drain(..).map(|(_, f)| (now, f)));
        }
    }
    fn take(&mut self) -> Vec<Vec<(Instant, Vec<u8>)>> {
        self.got.iter_mut().map(std::mem::take).collect()
    }
}

struct Reference {
    /// Per participant: video and audio out, grid in, mix in (drained, not read).
    parts: Vec<(RtpOut, RtpOut, Vp8In, std::net::UdpSocket)>,
    gst: Launched,
}

impl Peers for Reference {
    fn connected(&self) -> bool {
        true
    }
    fn video(&mut self, frame: &[u8]) {
        for p in &mut self.parts {
            p.0.vp8(frame);
        }
    }
    fn audio(&mut self, packet: &[u8]) {
        for p in &mut self.parts {
            p.1.opus(packet);
        }
    }
    fn poll(&mut self) {
        self.gst.watch();
        let mut buf = [0u8; 2048];
        for p in &mut self.parts {
            p.2.poll();
            while p.3.recv(&mut buf).is_ok() {}
        }
    }
    fn take(&mut self) -> Vec<Vec<(Instant, Vec<u8>)>> {
        (self.parts.iter_mut())
            .map(|p| std::mem::take(&mut p.2.frames))
            .collect()
    }
}

/// What a run measured before decoding: CPU seconds per second over the window, the flashes'
/// send times, the frames each receiver got (from the start of the warm-up).
pub(super) struct Raw {
    pub(super) cpu: f64,
    pub(super) secs: f64,
    /// The window's start.
    pub(super) from: Instant,
    pub(super) sent: Vec<Instant>,
    pub(super) got: Vec<Vec<(Instant, Vec<u8>)>>,
}

/// Sends the clip and the tone to every participant in real time, for the warm-up and the
/// window, reading `cpu` (seconds) at the window's ends.
pub(super) fn drive(
    p: &mut dyn Peers,
    video: &[Vec<u8>],
    audio: &[Vec<u8>],
    (warmup, window): (Duration, Duration),
    cpu: &dyn Fn() -> f64,
) -> Raw {
    let start = Instant::now();
    let wait = start + Duration::from_secs(10);
    while !p.connected() && Instant::now() < wait {
        p.poll();
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(p.connected(), "every peer connected within 10 s");
    let start = Instant::now();
    let (from, end) = (start + warmup, start + warmup + window);
    let (mut k, mut ka, mut c0) = (0u64, 0u64, None);
    let mut sent = vec![];
    let frame = Duration::from_nanos(1_000_000_000 / u64::from(FPS));
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if c0.is_none() && now >= from {
            // The frames of the warm-up are kept: the decoder needs the key frame sent then.
            c0 = Some((cpu(), now));
        }
        if now >= start + frame * k as u32 {
            if k % flash::FLASH_PERIOD == flash::FLASH_AT
                && c0.is_some()
                && now + flash::SEEN_WITHIN < end
            {
                sent.push(now);
            }
            p.video(&video[k as usize % video.len()]);
            k += 1;
        }
        if now >= start + Duration::from_millis(20 * ka) {
            p.audio(&audio[ka as usize % audio.len()]);
            ka += 1;
        }
        p.poll();
        std::thread::sleep(Duration::from_millis(1));
    }
    let (c0, t0) = c0.expect("a window");
    let secs = t0.elapsed().as_secs_f64();
    Raw {
        cpu: (cpu() - c0) / secs,
        secs,
        from: t0,
        sent,
        got: p.take(),
    }
}

/// Decodes what each receiver got and reduces a run to its figures.
fn figures(raw: Raw, n: usize) -> Sample {
    let mut all = vec![];
    let (mut missed, mut frames, mut size) = (0, 0usize, (0, 0));
    for got in &raw.got {
        let d: Decoded = flash::decode(got, n);
        let (l, m) = flash::latencies(&d, &raw.sent, n);
        all.extend(l);
        missed += m;
        frames += got.iter().filter(|(at, _)| *at >= raw.from).count();
        if d.width > 0 {
            size = (d.width, d.height);
        }
    }
    Sample {
        cpu_pct: raw.cpu * 100.0 / n as f64,
        p50_ms: stats::percentile(&all, 50.0),
        p99_ms: stats::percentile(&all, 99.0),
        fps: frames as f64 / raw.secs / n as f64,
        size,
        seen: all.len(),
        missed,
    }
}

/// The release server, started as `make run` starts it, on a free port, host candidates on
/// `lo`.
struct Server {
    process: FluoProcess,
    port: u16,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let process = FluoProcess::start(&FluoProcess::release_bin(), &[], dir, "composite-fluo");
        let port = process.port;
        Server { process, port }
    }

    /// CPU seconds of the server's process and its workers so far.
    fn cpu(&self) -> f64 {
        fluo_testkit::procs::server_cpu_ticks(self.process.child.id())
            .expect("the server's /proc")
            .0 as f64
            / 100.0
    }
}

/// One Fluo run: a pipeline with a Composite and n (WebRtcEndpoint, HubPort) pairs, both
/// ways, released at the end.
fn fluo_run(
    s: &Server,
    rt: &tokio::runtime::Runtime,
    n: usize,
    media: &Media,
    plan: &Plan,
) -> Sample {
    let (mut c, pipe, peers) = rt.block_on(async {
        let mut c = Client::connect(s.port).await.expect("connect");
        let pipe = c
            .create("MediaPipeline", json!({}))
            .await
            .expect("pipeline");
        let hub = c
            .create(
                "Composite",
                json!({"mediaPipeline": pipe, "width": W, "height": H, "framerate": FPS}),
            )
            .await
            .expect("composite");
        let mut peers = vec![];
        for _ in 0..n {
            let ep = c
                .create("WebRtcEndpoint", json!({"mediaPipeline": pipe}))
                .await
                .expect("endpoint");
            let port = c
                .create("HubPort", json!({"hub": hub}))
                .await
                .expect("port");
            let mut peer = Peer::new(str0m::RtcConfig::new());
            peer.negotiate(&mut c, &ep, str0m::media::Direction::SendRecv)
                .await
                .expect("negotiated");
            c.invoke(&ep, "connect", json!({"sink": port}))
                .await
                .expect("in");
            c.invoke(&port, "connect", json!({"sink": ep}))
                .await
                .expect("out");
            peers.push(peer);
        }
        (c, pipe, peers)
    });
    let mut p = Fluo {
        got: vec![vec![]; n],
        peers,
    };
    let times = (plan.warmup, plan.window);
    let raw = drive(&mut p, &media.video, &media.audio, times, &|| s.cpu());
    rt.block_on(async {
        c.request("release", json!({"object": pipe}))
            .await
            .expect("release")
    });
    figures(raw, n)
}

/// One gst-launch run: the reference pipeline for n participants, with latencies `lat`; its
/// standard error in `dir`.
fn reference_run(n: usize, media: &Media, plan: &Plan, lat: Latency, dir: &Path) -> Sample {
    let ins: Vec<(u16, u16)> = (0..n)
        .map(|_| (mixref::free_port(), mixref::free_port()))
        .collect();
    let outs: Vec<(u16, u16)> = (0..n)
        .map(|_| (mixref::free_port(), mixref::free_port()))
        .collect();
    let parts = (ins.iter().zip(&outs).enumerate())
        .map(|(i, (inp, out))| {
            let a = std::net::UdpSocket::bind(("127.0.0.1", out.1)).expect("audio out port");
            a.set_nonblocking(true).expect("nonblocking");
            let ssrc = 0x1000 + i as u32 * 2;
            (
                RtpOut::new(inp.0, 96, ssrc),
                RtpOut::new(inp.1, 111, ssrc + 1),
                Vp8In::bind(out.0),
                a,
            )
        })
        .collect();
    let gst = Launched::start(
        &mixref::description(&ins, &outs, (W, H, FPS, BPS), lat),
        &dir.join(format!("composite-gst-{n}.stderr")),
        false,
        format!("Composite N={n} / gst-launch"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let pid = gst.pid().to_string();
    let cpu = || {
        fluo_testkit::procs::ProcUsage::read(&pid)
            .expect("gst-launch's /proc")
            .cpu_ticks as f64
            / 100.0
    };
    let mut r = Reference { parts, gst };
    let raw = drive(
        &mut r,
        &media.video,
        &media.audio,
        (plan.warmup, plan.window),
        &cpu,
    );
    r.gst.finish();
    figures(raw, n)
}

/// The senders' media.
struct Media {
    video: Vec<Vec<u8>>,
    audio: Vec<Vec<u8>>,
}

/// Runs the plan: per N, `runs` rounds of Fluo then gst-launch; prints each run, the medians
/// and the goal; writes the plot.
pub fn run(plan: &Plan, dir: &Path) {
    let t = Instant::now();
    let media = Media {
        video: flash::flash_clip(dir),
        audio: flash::opus_packets(),
    };
    let server = Server::start(dir);
    let rt = fluo_testkit::live::rt();
    let mut rows = vec![];
    for &n in &plan.ns {
        let (mut f, mut g) = (vec![], vec![]);
        for round in 1..=plan.runs {
            let s = fluo_run(&server, &rt, n, &media, plan);
            eprintln!(
                "composite N={n} round {round}: fluo {s:?} (load {})",
                load()
            );
            f.push(s);
            let s = reference_run(n, &media, plan, mixref::FLUO, dir);
            eprintln!(
                "composite N={n} round {round}: gst-launch {s:?} (load {})",
                load()
            );
            g.push(s);
        }
        rows.push((n, median(&f), median(&g)));
    }
    super::composite_report::print(&rows, plan, &load(), t.elapsed());
    if let Some(p) = &plan.plot {
        std::fs::write(p, super::composite_report::svg(&rows, plan.runs)).expect("the plot");
        println!("  plot: {}", p.display());
    }
}

/// The median of each figure over the runs (a latency over the runs that saw a flash).
fn median(v: &[Sample]) -> Sample {
    let m = |f: &dyn Fn(&Sample) -> f64| stats::median(&v.iter().map(f).collect::<Vec<_>>());
    Sample {
        cpu_pct: m(&|s| s.cpu_pct),
        p50_ms: m(&|s| s.p50_ms),
        p99_ms: m(&|s| s.p99_ms),
        fps: m(&|s| s.fps),
        size: v.iter().map(|s| s.size).max().unwrap_or_default(),
        seen: v.iter().map(|s| s.seen).sum(),
        missed: v.iter().map(|s| s.missed).sum(),
    }
}

/// How the latencies of the mix decide its added latency, on the reference pipeline (N = 9,
/// one run of `plan`'s length per setting): what lowering Fluo's would give.
pub fn sweep(plan: &Plan, dir: &Path) {
    let media = Media {
        video: flash::flash_clip(dir),
        audio: flash::opus_packets(),
    };
    println!("\nThe mix's latencies against its added latency (gst-launch-1.0, N = 9, one run of {} s each):", plan.window.as_secs());
    for (mix_ms, jitter_ms) in [
        (200u64, 50u32),
        (100, 50),
        (50, 20),
        (30, 20),
        (20, 10),
        (0, 0),
    ] {
        let lat = Latency {
            mix_ns: mix_ms * 1_000_000,
            jitter_ms,
        };
        let s = reference_run(9, &media, plan, lat, dir);
        println!(
            "  mixers {mix_ms:>3} ms, jitterbuffers {jitter_ms:>2} ms: p50 {:>4.0} ms, p99 {:>4.0} ms, {:.1} fps, flashes seen/missed {}/{}, CPU/part {:.1} %, load {}",
            s.p50_ms, s.p99_ms, s.fps, s.seen, s.missed, s.cpu_pct, load()
        );
    }
}
