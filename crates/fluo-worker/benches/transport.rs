//! What the process boundary costs, printed (`cargo bench -p fluo-worker --bench transport`):
//!
//! * worker start-up time and memory (RSS, PSS and private memory of an idle worker, then
//!   after its first GStreamer job), and for comparison a fresh `gst-launch-1.0` process,
//!   the cost each extra worker would carry;
//! * round-trip latency p50/p99 of one 1200-byte packet, server -> worker -> server, against
//!   the same through an in-process channel and thread (the current design's hop);
//! * CPU per packet (server and worker together) for a stream of 1200-byte packets, one per
//!   datagram and batched by frame (8 packets), against the in-process channel.
//!
//! Each figure is taken over several runs; every run is printed. `-- RUNS` sets the count.

use fluo_sfu::{Codec, CodecName, MediaKind, MediaPacket};
use fluo_worker::{
    Batch, Death, JobSink, PacketRef, PushError, Supervisor, SupervisorConfig, WorkerCommand,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const PAYLOAD: usize = 1200;
const PINGS: usize = 5_000;
const STREAM: usize = 100_000;
const FRAME: usize = 8;

fn cpu_self() -> Duration {
    // SAFETY: getrusage writes the struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn packet(seq: u16, stamp: u64) -> MediaPacket {
    let mut payload = vec![0u8; PAYLOAD];
    payload[..8].copy_from_slice(&stamp.to_le_bytes());
    MediaPacket {
        kind: MediaKind::Video,
        codec: Codec::new(CodecName::Vp8),
        seq,
        timestamp: seq as u32 * 3000,
        ssrc: 1,
        marker: false,
        payload,
    }
}

struct Clock(Instant);

impl Clock {
    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// Counts what comes back and records round trips.
struct Back {
    clock: Arc<Clock>,
    count: AtomicU64,
    rtts: Mutex<Vec<u64>>,
}

impl JobSink for Back {
    fn packet(&self, pkt: &PacketRef<'_>) {
        let mut s = [0u8; 8];
        s.copy_from_slice(&pkt.payload[..8]);
        let rtt = self.clock.now().saturating_sub(u64::from_le_bytes(s));
        if let Ok(mut r) = self.rtts.lock() {
            if r.len() < r.capacity() {
                r.push(rtt);
            }
        }
        self.count.fetch_add(1, Ordering::Release);
    }
    fn worker_died(&self, death: &Death) {
        eprintln!("worker died during the bench: {}", death.cause);
        std::process::exit(1);
    }
}

/// A sink for jobs whose output is not measured.
struct Quiet;

impl JobSink for Quiet {
    fn packet(&self, _: &PacketRef<'_>) {}
    fn worker_died(&self, death: &Death) {
        eprintln!("worker died during the bench: {}", death.cause);
    }
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    v.sort_unstable();
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn wait_count(c: &AtomicU64, n: u64, spin: bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while c.load(Ordering::Acquire) < n {
        if Instant::now() > end {
            eprintln!(
                "lost packets: {} of {n} came back",
                c.load(Ordering::Acquire)
            );
            std::process::exit(1);
        }
        if spin {
            std::hint::spin_loop();
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn push_retry(job: &fluo_worker::Job, f: impl Fn(&fluo_worker::Job) -> Result<(), PushError>) {
    loop {
        match f(job) {
            Ok(()) => return,
            Err(PushError::Full) => std::thread::sleep(Duration::from_micros(50)),
            Err(e) => panic!("push: {e}"),
        }
    }
}

/// The in-process hop: a channel to an echo thread, a channel back to a receiving thread.
fn in_process_echo(clock: Arc<Clock>) -> (mpsc::Sender<Vec<MediaPacket>>, Arc<Back>) {
    let back = Arc::new(Back {
        clock,
        count: AtomicU64::new(0),
        rtts: Mutex::new(Vec::with_capacity(PINGS)),
    });
    let (to_echo, echo_rx) = mpsc::channel::<Vec<MediaPacket>>();
    let (to_sink, sink_rx) = mpsc::channel::<Vec<MediaPacket>>();
    std::thread::spawn(move || {
        for batch in echo_rx {
            if to_sink.send(batch).is_err() {
                return;
            }
        }
    });
    let b = back.clone();
    std::thread::spawn(move || {
        for batch in sink_rx {
            for p in &batch {
                b.packet(&PacketRef::from(p));
            }
        }
    });
    (to_echo, back)
}

fn gst_launch_cost() -> Option<(f64, u64)> {
    let t0 = Instant::now();
    let mut child = std::process::Command::new("gst-launch-1.0")
        .args(["-q", "fakesrc", "num-buffers=1", "!", "fakesink"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: wait4 on our own child, writing status and rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let _ = child.try_wait();
    Some((t0.elapsed().as_secs_f64() * 1000.0, ru.ru_maxrss as u64))
}

fn rollup_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn pss_kib(pid: u32) -> Option<u64> {
    rollup_kib(pid, "Pss:")
}

/// Memory of a GStreamer process decoding live video (what each extra worker hosting a
/// decoder would carry): RSS, PSS and private memory after a second of VP8 encode + decode.
fn gst_decoder_memory() -> Option<(u64, u64, u64)> {
    let mut child = std::process::Command::new("gst-launch-1.0")
        .args([
            "-q",
            "videotestsrc",
            "is-live=true",
            "!",
            "video/x-raw,width=640,height=360",
            "!",
            "vp8enc",
            "deadline=1",
            "!",
            "vp8dec",
            "!",
            "fakesink",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(1500));
    let pid = child.id();
    let rss = rollup_kib(pid, "Rss:");
    let pss = pss_kib(pid);
    let private = rollup_kib(pid, "Private_Clean:")
        .zip(rollup_kib(pid, "Private_Dirty:"))
        .map(|(a, b)| a + b);
    let _ = child.kill();
    let _ = child.wait();
    Some((rss?, pss?, private?))
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let clock = Arc::new(Clock(Instant::now()));
    let mut cfg = SupervisorConfig::new(WorkerCommand::new(env!("CARGO_BIN_EXE_fluo-test-worker")));
    cfg.workers = 1;

    println!("## worker start-up and memory ({runs} runs)");
    let mut starts = Vec::new();
    let mut gst_starts = Vec::new();
    for run in 0..runs {
        let (tx, rx) = mpsc::channel();
        let t0 = Instant::now();
        let sup = Supervisor::start(cfg.clone(), rt.handle(), move |ev| {
            if let fluo_worker::SupervisorEvent::Started { pid, .. } = ev {
                let _ = tx.send((t0.elapsed(), pid));
            }
        });
        let (took, pid) = rx.recv().expect("worker starts");
        let st = sup.stats();
        let pss = pss_kib(pid).unwrap_or(0);
        let private = rollup_kib(pid, "Private_Clean:").unwrap_or(0)
            + rollup_kib(pid, "Private_Dirty:").unwrap_or(0);
        println!(
            "run {run}: ready after {:.2} ms (spawn, exec, sandbox, handshake); RSS {} KiB, PSS {pss} KiB, private {private} KiB",
            took.as_secs_f64() * 1000.0,
            st[0].rss_bytes / 1024
        );
        starts.push(took.as_secs_f64() * 1000.0);
        // The same worker's first GStreamer job: GStreamer initialised inside the sandbox,
        // plugins loaded, a pipeline run to its end.
        let t1 = Instant::now();
        let gst = rt.block_on(async {
            let job = sup
                .start_job_async(
                    1,
                    "test.gst",
                    b"videotestsrc num-buffers=1 ! vp8enc ! vp8dec ! fakesink".to_vec(),
                    Arc::new(Quiet),
                )
                .await?;
            job.call_async("run", vec![]).await
        });
        let gst_ms = t1.elapsed().as_secs_f64() * 1000.0;
        let private = rollup_kib(pid, "Private_Clean:").unwrap_or(0)
            + rollup_kib(pid, "Private_Dirty:").unwrap_or(0);
        match gst {
            Ok(_) => println!(
                "run {run}: its first GStreamer job (init, plugins, videotestsrc ! vp8enc ! vp8dec ! fakesink, 1 frame) took {gst_ms:.1} ms; then RSS {} KiB, PSS {} KiB, private {private} KiB",
                rollup_kib(pid, "Rss:").unwrap_or(0),
                pss_kib(pid).unwrap_or(0)
            ),
            Err(e) => println!("run {run}: the GStreamer job failed: {e}"),
        }
        gst_starts.push(gst_ms);
        rt.block_on(sup.shutdown(Duration::from_secs(5)));
    }
    println!(
        "median ready time {:.2} ms, median first GStreamer job {:.1} ms",
        median(starts),
        median(gst_starts)
    );
    for run in 0..runs {
        match gst_launch_cost() {
            Some((ms, maxrss)) => println!(
                "run {run}: gst-launch-1.0 fakesrc ! fakesink (GStreamer init, registry loaded): {ms:.1} ms, peak RSS {maxrss} KiB"
            ),
            None => println!("gst-launch-1.0 not found: GStreamer start-up not measured"),
        }
        match gst_decoder_memory() {
            Some((rss, pss, private)) => println!(
                "run {run}: gst-launch-1.0 640x360 VP8 encode+decode after 1.5 s: RSS {rss} KiB, PSS {pss} KiB, private {private} KiB"
            ),
            None => println!("gst-launch-1.0 not found: decoder memory not measured"),
        }
    }

    let sup = Supervisor::start(cfg, rt.handle(), |_| {});
    let back = Arc::new(Back {
        clock: clock.clone(),
        count: AtomicU64::new(0),
        rtts: Mutex::new(Vec::with_capacity(PINGS)),
    });
    let job = rt
        .block_on(sup.start_job_async(1, "test.echo", vec![], back.clone()))
        .expect("echo job");
    let (chan, chan_back) = in_process_echo(clock.clone());

    println!(
        "\n## round trip of one {PAYLOAD}-byte packet, one at a time ({PINGS} pings, {runs} runs)"
    );
    let (mut p50s, mut p99s, mut c50s, mut c99s) = (vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        back.rtts.lock().unwrap().clear();
        let base = back.count.load(Ordering::Acquire);
        for i in 0..PINGS {
            let p = packet(i as u16, clock.now());
            push_retry(&job, |j| j.push(&PacketRef::from(&p)));
            wait_count(&back.count, base + i as u64 + 1, true);
        }
        let mut r = std::mem::take(&mut *back.rtts.lock().unwrap());
        let (p50, p99) = (pct(&mut r, 0.5), pct(&mut r, 0.99));
        back.rtts.lock().unwrap().reserve(PINGS);

        chan_back.rtts.lock().unwrap().clear();
        let base = chan_back.count.load(Ordering::Acquire);
        for i in 0..PINGS {
            let p = packet(i as u16, clock.now());
            chan.send(vec![p]).unwrap();
            wait_count(&chan_back.count, base + i as u64 + 1, true);
        }
        let mut c = std::mem::take(&mut *chan_back.rtts.lock().unwrap());
        let (c50, c99) = (pct(&mut c, 0.5), pct(&mut c, 0.99));
        chan_back.rtts.lock().unwrap().reserve(PINGS);
        println!(
            "run {run}: worker p50 {p50:.1} us p99 {p99:.1} us | in-process channel p50 {c50:.1} us p99 {c99:.1} us"
        );
        p50s.push(p50);
        p99s.push(p99);
        c50s.push(c50);
        c99s.push(c99);
    }
    let (p50, p99, c50, c99) = (median(p50s), median(p99s), median(c50s), median(c99s));
    println!(
        "median: worker p50 {p50:.1} us p99 {p99:.1} us, in-process p50 {c50:.1} us p99 {c99:.1} us; added one way ~ p50 {:.1} us, p99 {:.1} us",
        (p50 - c50) / 2.0,
        (p99 - c99) / 2.0
    );

    println!(
        "\n## CPU per packet, {STREAM} packets of {PAYLOAD} bytes there and back ({runs} runs)"
    );
    for batched in [false, true] {
        let label = if batched {
            format!("batched by frame ({FRAME} packets a datagram)")
        } else {
            "one packet a datagram".to_string()
        };
        let (mut worker_us, mut chan_us) = (vec![], vec![]);
        for run in 0..runs {
            let pkts: Vec<MediaPacket> = (0..STREAM).map(|i| packet(i as u16, 0)).collect();
            let base = back.count.load(Ordering::Acquire);
            let w0 = sup.stats()[0].cpu.total();
            let s0 = cpu_self();
            let t0 = Instant::now();
            let mut batch = Batch::new();
            for frame in pkts.chunks(FRAME) {
                if batched {
                    batch.clear();
                    for p in frame {
                        batch.push_packet(job.id(), &PacketRef::from(p)).unwrap();
                    }
                    push_retry(&job, |j| j.push_batch(&batch));
                } else {
                    for p in frame {
                        push_retry(&job, |j| j.push(&PacketRef::from(p)));
                    }
                }
            }
            wait_count(&back.count, base + STREAM as u64, false);
            let wall = t0.elapsed();
            let server = cpu_self() - s0;
            let worker = sup.stats()[0].cpu.total() - w0;
            let per = (server + worker).as_secs_f64() * 1e6 / STREAM as f64;

            let base = chan_back.count.load(Ordering::Acquire);
            let c0 = cpu_self();
            let ct0 = Instant::now();
            for frame in pkts.chunks(FRAME) {
                if batched {
                    chan.send(frame.to_vec()).unwrap();
                } else {
                    for p in frame {
                        chan.send(vec![p.clone()]).unwrap();
                    }
                }
            }
            wait_count(&chan_back.count, base + STREAM as u64, false);
            let cwall = ct0.elapsed();
            let cper = (cpu_self() - c0).as_secs_f64() * 1e6 / STREAM as f64;
            println!(
                "run {run}, {label}: worker {per:.2} CPU-us/packet (server {:.2}, worker {:.2}; {:.0} ms wall) | in-process {cper:.2} CPU-us/packet ({:.0} ms wall)",
                server.as_secs_f64() * 1e6 / STREAM as f64,
                worker.as_secs_f64() * 1e6 / STREAM as f64,
                wall.as_secs_f64() * 1000.0,
                cwall.as_secs_f64() * 1000.0
            );
            worker_us.push(per);
            chan_us.push(cper);
        }
        let (w, c) = (median(worker_us), median(chan_us));
        println!(
            "median, {label}: worker {w:.2} CPU-us/packet, in-process {c:.2}, the boundary adds {:.2} CPU-us/packet ({:.2} per {FRAME}-packet frame)",
            w - c,
            (w - c) * FRAME as f64
        );
    }
    drop(job);
    rt.block_on(sup.shutdown(Duration::from_secs(5)));
}
