//! Churn soak: cycles of pipeline + two WebRtcEndpoints negotiated with real str0m peers over
//! real UDP on 127.0.0.1, real VP8 for a moment (recorded to WebM in two cycles out of three),
//! then teardown in one of three ways (clean release, WebSocket dropped, peer vanished without
//! DTLS close), against a real Fluo server in this process with two media workers (the
//! recorders run in them). Several cycles run at once (`lanes`). Before and after, across
//! the server's process and its workers (found as its children in /proc, `crate::procs`):
//! RSS, file descriptors, threads, UDP sockets, GStreamer pipelines and elements (each
//! worker counts its own and reports them in its pongs), pipelines and sessions; then the
//! CPU of all of them once everyone has left.

use crate::clips::testsrc_vp8;
use crate::live::{rpc, Ws};
use crate::udp_peer::Peer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use str0m::media::Direction;
use str0m::RtcConfig;
use tokio_tungstenite::connect_async_with_config;

/// How many media workers the soak's server runs.
pub const WORKERS: usize = 2;

/// The server's figures, its process's and its workers' added up (`crate::procs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcFigures {
    pub rss_kib: u64,
    pub fds: usize,
    pub threads: usize,
    /// UDP sockets among their descriptors (found in /proc/net/udp and udp6).
    pub udp_sockets: usize,
    /// GStreamer pipelines Fluo made that GLib has not finalised, in the server's process and
    /// in each worker (as it reported them after the reading began).
    pub gst_pipelines: usize,
    /// Elements inside them, at any depth.
    pub gst_elements: usize,
    /// The workers' share of the process figures.
    pub workers: crate::procs::ProcUsage,
}

impl From<&crate::procs::ServerProcs> for ProcFigures {
    fn from(p: &crate::procs::ServerProcs) -> ProcFigures {
        ProcFigures {
            rss_kib: p.total.rss_kib,
            fds: p.total.fds,
            threads: p.total.threads,
            udp_sockets: p.total.udp_sockets,
            gst_pipelines: p.gst_pipelines,
            gst_elements: p.gst_elements,
            workers: p.workers,
        }
    }
}

/// The server's and workers' figures, waiting up to 5 s for every worker's fresh pipeline
/// count (a pong asked for at once).
fn read_procs() -> crate::procs::ServerProcs {
    crate::procs::ServerProcs::read(Duration::from_secs(5))
}

/// CPU ticks (user + system, 1/100 s) of each live thread of the server's process and of its
/// workers, by name (a worker's threads prefixed with its pid).
fn thread_ticks() -> std::collections::HashMap<String, u64> {
    let mut out = std::collections::HashMap::new();
    let mut procs = vec![("self".to_string(), String::new())];
    procs.extend(
        crate::procs::worker_children()
            .0
            .into_iter()
            .map(|p| (p.to_string(), format!("worker {p}: "))),
    );
    for (pid, prefix) in procs {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in dir.flatten() {
            let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
                continue;
            };
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let name = head.split_once('(').map_or("", |(_, n)| n).to_string();
            let ticks: u64 = rest
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|x| x.parse::<u64>().ok())
                .sum();
            *out.entry(format!(
                "{prefix}{name} ({})",
                t.file_name().to_string_lossy()
            ))
            .or_default() += ticks;
        }
    }
    out
}

/// What a soak measured.
#[derive(Debug)]
pub struct SoakReport {
    pub cycles: usize,
    pub lanes: usize,
    pub media_ok: usize,
    pub failures: Vec<String>,
    pub warm: ProcFigures,
    pub end: ProcFigures,
    /// The workers' pids at the baseline and at the end: the same processes (a worker that
    /// died and was restarted in between is a failure of the soak).
    pub warm_workers: Vec<u32>,
    pub end_workers: Vec<u32>,
    pub pipelines_left: usize,
    pub sessions_left: usize,
    /// Recordings started, and the files found non-empty at the end.
    pub recordings: usize,
    pub recordings_written: usize,
    /// The recording files kept for checks: the folder goes when the report is dropped.
    pub recordings_dir: crate::tmp::TmpDir,
    /// The CPU of the server's process and its workers, in % of one core, over 5 s starting
    /// 2 s after the last client left (dropped WebSockets count as left when their grace
    /// period ends).
    pub idle_cpu_percent: f64,
    /// The threads that used CPU in that window, the server's and the workers': (name (tid),
    /// ticks of 10 ms).
    pub idle_threads: Vec<(String, u64)>,
    /// RSS (server and workers) at each tenth of the cycles (under load), in KiB.
    pub rss_steps: Vec<u64>,
    /// The most GStreamer pipelines and elements seen alive at the end of a cycle's media
    /// (in the server's process, plus what each worker last reported).
    pub gst_peak: (usize, usize),
    pub wall: Duration,
}

impl SoakReport {
    pub fn rss_growth_percent(&self) -> f64 {
        if self.warm.rss_kib == 0 {
            return f64::NAN;
        }
        (self.end.rss_kib as f64 / self.warm.rss_kib as f64 - 1.0) * 100.0
    }

    pub fn print(&self) {
        println!(
            "soak: {} cycles ({} at once) in {:.1} s, media reached the viewer in {}, {} failures",
            self.cycles,
            self.lanes,
            self.wall.as_secs_f64(),
            self.media_ok,
            self.failures.len()
        );
        println!(
            "  RSS after warm-up {} KiB -> end {} KiB ({:+.1}%)",
            self.warm.rss_kib,
            self.end.rss_kib,
            self.rss_growth_percent()
        );
        let (w, e) = (self.warm, self.end);
        println!(
            "  file descriptors {} -> {}, threads {} -> {}, UDP sockets {} -> {}",
            w.fds, e.fds, w.threads, e.threads, w.udp_sockets, e.udp_sockets
        );
        println!(
            "  of which in the workers {:?} -> {:?}: RSS {} -> {} KiB, descriptors {} -> {}, \
             threads {} -> {}",
            self.warm_workers,
            self.end_workers,
            w.workers.rss_kib,
            e.workers.rss_kib,
            w.workers.fds,
            e.workers.fds,
            w.workers.threads,
            e.workers.threads
        );
        println!(
            "  GStreamer pipelines {} -> {}, elements {} -> {}",
            w.gst_pipelines, e.gst_pipelines, w.gst_elements, e.gst_elements
        );
        println!(
            "  GStreamer peak during the soak: {} pipelines, {} elements",
            self.gst_peak.0, self.gst_peak.1
        );
        println!(
            "  Kurento pipelines left {}, sessions left {}",
            self.pipelines_left, self.sessions_left
        );
        println!(
            "  recordings: {} started, {} files written",
            self.recordings, self.recordings_written
        );
        println!(
            "  CPU 2-7 s after the last client left: {:.2} % of one core{}",
            self.idle_cpu_percent,
            if self.idle_threads.is_empty() {
                String::new()
            } else {
                let top: Vec<String> = self
                    .idle_threads
                    .iter()
                    .take(4)
                    .map(|(n, t)| format!("{n}: {} ms", t * 10))
                    .collect();
                format!(" ({})", top.join(", "))
            }
        );
        if let (Some(mid), Some(last)) = (
            self.rss_steps
                .get((self.rss_steps.len() / 2).saturating_sub(1)),
            self.rss_steps.last(),
        ) {
            println!(
                "  RSS under load at each tenth: {:?} KiB; second half {:+.1}%",
                self.rss_steps,
                (*last as f64 / *mid as f64 - 1.0) * 100.0
            );
        }
        for f in self.failures.iter().take(5) {
            println!("  failure: {f}");
        }
    }
}

/// The next request on a cycle's connection; returns `result.value`.
async fn call(ws: &mut Ws, id: &mut u64, method: &str, params: Value) -> Result<Value, String> {
    *id += 1;
    Ok(rpc(ws, *id, method, params).await?["value"].clone())
}

/// Does cycle `i` record (modes 0 and 1)?
fn records(i: usize) -> bool {
    i % 3 != 2
}

fn recording_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("cycle-{i}.webm"))
}

/// One cycle; `i % 3` picks the teardown: 0 = clean release, 1 = WebSocket dropped,
/// 2 = peers vanish.
async fn cycle(
    url: &str,
    i: usize,
    media_for: Duration,
    frames: &[Vec<u8>],
    dir: &Path,
    peak: &Mutex<(usize, usize)>,
) -> Result<bool, String> {
    let (mut ws, _) = connect_async_with_config(url, None, true)
        .await
        .map_err(|e| e.to_string())?;
    let mut id = 0;
    let p = call(&mut ws, &mut id, "create", json!({"type":"MediaPipeline"})).await?;
    let mut eps = vec![];
    for _ in 0..2 {
        let e = call(
            &mut ws,
            &mut id,
            "create",
            json!({"type":"WebRtcEndpoint","constructorParams":{"mediaPipeline": p}}),
        )
        .await?;
        eps.push(e);
    }
    if records(i) {
        let uri = format!("file://{}", recording_path(dir, i).display());
        let rec = call(
            &mut ws,
            &mut id,
            "create",
            json!({"type":"RecorderEndpoint","constructorParams":{
                "mediaPipeline": p, "uri": uri, "mediaProfile": "WEBM_VIDEO_ONLY"}}),
        )
        .await?;
        call(
            &mut ws,
            &mut id,
            "invoke",
            json!({"object": eps[0], "operation":"connect","operationParams":{"sink": rec}}),
        )
        .await?;
        call(
            &mut ws,
            &mut id,
            "invoke",
            json!({"object": rec, "operation":"record"}),
        )
        .await?;
    }
    let mut a = Peer::new(RtcConfig::new());
    let mut b = Peer::new(RtcConfig::new());
    a.keep_frames = false;
    b.keep_frames = false;
    for (peer, ep, dir) in [
        (&mut a, &eps[0], Direction::SendOnly),
        (&mut b, &eps[1], Direction::RecvOnly),
    ] {
        let offer = peer.offer(dir);
        let answer = call(
            &mut ws,
            &mut id,
            "invoke",
            json!({"object": ep, "operation":"processOffer","operationParams":{"offer": offer}}),
        )
        .await?;
        peer.try_accept(answer.as_str().unwrap_or_default())?;
    }
    call(
        &mut ws,
        &mut id,
        "invoke",
        json!({"object": eps[0], "operation":"connect","operationParams":{"sink": eps[1]}}),
    )
    .await?;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) && !(a.connected && b.connected) {
        a.drive(None);
        b.drive(None);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Frames at 30 fps from the first (a keyframe), until `media_for` has passed and the
    // viewer has had one, at most 5 s.
    let t1 = Instant::now();
    let mut sent = 0;
    while t1.elapsed() < media_for || (b.frames_in == 0 && t1.elapsed() < Duration::from_secs(5)) {
        let due = (t1.elapsed().as_millis() / 33) as usize + 1;
        let frame = (sent < due).then(|| frames[sent % frames.len()].as_slice());
        if frame.is_some() {
            sent += 1;
        }
        a.drive(frame);
        b.drive(None);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let flowed = b.frames_in > 0;
    {
        let (pipelines, elements) = crate::procs::gst_now(Duration::from_secs(1)).await;
        let mut p = peak.lock().unwrap();
        p.0 = p.0.max(pipelines);
        p.1 = p.1.max(elements);
    }
    match i % 3 {
        0 => {
            call(&mut ws, &mut id, "release", json!({"object": p})).await?;
            let _ = ws.close(None).await;
        }
        1 => drop(ws), // no release, no close: the session's grace period cleans up
        _ => {
            // The peers vanish without DTLS close; the app releases later.
            drop(a);
            drop(b);
            call(&mut ws, &mut id, "release", json!({"object": p})).await?;
            let _ = ws.close(None).await;
        }
    }
    Ok(flowed)
}

/// VP8 frames of a 320x180 test pattern with a keyframe every 10 frames, made by ffmpeg.
fn vp8_frames(dir: &Path) -> Vec<Vec<u8>> {
    testsrc_vp8(&dir.join("clip.ivf"), "320x180", 2, "300k", 10)
}

/// Runs `cycles` cycles, `lanes` at a time. The baseline is taken after a warm-up of at
/// least `warmup` cycles and at least `warmup_min` (at most half the cycles): the server's
/// time-bounded state, such as the 20 s request replay cache, must have reached its steady
/// size first, or its filling would count as growth.
pub fn run(
    cycles: usize,
    warmup: usize,
    warmup_min: Duration,
    media_for: Duration,
    lanes: usize,
) -> SoakReport {
    let lanes = lanes.max(1);
    let dir = crate::tmp::dir("soak");
    let frames = vp8_frames(&dir);
    let grace = 1;
    // Two media workers: the recorders run in them, and the figures count them with the
    // server's process.
    let port = crate::live::start_server_with(fluo_server::Config {
        session_grace: Duration::from_secs(grace),
        net: fluo_rtc::NetSettings {
            network_interfaces: Some(vec!["lo".into()]),
            ..Default::default()
        },
        workers: WORKERS,
        ..Default::default()
    });
    let url = format!("ws://127.0.0.1:{port}/kurento");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async move {
        let t0 = Instant::now();
        let failures = Mutex::new(vec![]);
        let media_ok = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let peak = Mutex::new((0, 0));
        let rss_steps = Mutex::new(vec![]);
        // Cycles from `from` on over `lanes` concurrent lanes, while `more(i)`; returns
        // where the next phase starts.
        let phase = |from: usize, more: Box<dyn Fn(usize) -> bool>| {
            let next = AtomicUsize::new(from);
            let (url, frames, dir) = (&url, &frames, &dir);
            let (failures, media_ok, done, peak) = (&failures, &media_ok, &done, &peak);
            let rss_steps = &rss_steps;
            async move {
                let more = &more;
                let lane = || async {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if !more(i) {
                            return;
                        }
                        match cycle(url, i, media_for, frames, dir, peak).await {
                            Ok(true) => {
                                media_ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(false) => failures
                                .lock()
                                .unwrap()
                                .push(format!("cycle {i}: no media reached the viewer")),
                            Err(e) => failures.lock().unwrap().push(format!("cycle {i}: {e}")),
                        }
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if cycles >= 100 && n % (cycles / 10) == 0 {
                            let rss = crate::procs::total_rss_kib();
                            rss_steps.lock().unwrap().push(rss);
                            eprintln!(
                                "soak: {n}/{cycles} cycles, {:.0} s, RSS {rss} KiB",
                                t0.elapsed().as_secs_f64(),
                            );
                        }
                    }
                };
                futures_util::future::join_all((0..lanes).map(|_| lane())).await;
                // Each lane stopped at the first index refused, so this one was not run.
                next.load(Ordering::Relaxed) - lanes
            }
        };
        let warm_until = t0 + warmup_min;
        let warmed = phase(
            0,
            Box::new(move |i| i < cycles / 2 && (i < warmup || Instant::now() < warm_until)),
        )
        .await;
        // Let the warm-up's dropped sessions expire and recordings finish before the baseline.
        tokio::time::sleep(Duration::from_secs(grace + 2)).await;
        let warm_procs = read_procs();
        let warm = ProcFigures::from(&warm_procs);
        eprintln!(
            "soak: baseline after {warmed} warm-up cycles, {:.1} s: {warm:?}",
            t0.elapsed().as_secs_f64()
        );
        phase(warmed, Box::new(move |i| i < cycles)).await;
        // Sessions dropped in the last cycles expire after the grace period.
        tokio::time::sleep(Duration::from_secs(grace + 2)).await;
        let cpu0 = crate::procs::total_cpu_ticks();
        let threads0 = thread_ticks();
        let w0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let idle_cpu_percent = crate::procs::total_cpu_ticks().saturating_sub(cpu0) as f64
            / 100.0
            / w0.elapsed().as_secs_f64()
            * 100.0;
        let mut idle_threads: Vec<(String, u64)> = thread_ticks()
            .into_iter()
            .map(|(name, t)| {
                let before = threads0.get(&name).copied().unwrap_or(0);
                (name, t.saturating_sub(before))
            })
            .filter(|(_, t)| *t > 0)
            .collect();
        idle_threads.sort_by_key(|t| std::cmp::Reverse(t.1));
        let end_procs = read_procs();
        let end = ProcFigures::from(&end_procs);
        let mut failures = failures.into_inner().unwrap();
        for (when, p) in [("baseline", &warm_procs), ("end", &end_procs)] {
            failures.extend(p.problems.iter().map(|e| format!("{when}: {e}")));
            if !p.zombies.is_empty() {
                failures.push(format!("{when}: unreaped worker processes {:?}", p.zombies));
            }
            if p.worker_pids.len() != WORKERS {
                failures.push(format!(
                    "{when}: {} worker processes, not {WORKERS}: {:?}",
                    p.worker_pids.len(),
                    p.worker_pids
                ));
            }
        }
        if warm_procs.worker_pids != end_procs.worker_pids {
            failures.push(format!(
                "the workers changed during the soak (a death and restart): {:?} -> {:?}",
                warm_procs.worker_pids, end_procs.worker_pids
            ));
        }
        let (mut ws, _) = connect_async_with_config(url, None, true)
            .await
            .expect("final connection");
        let mut id = 0;
        let ask = |op: &'static str| json!({"object":"manager_ServerManager","operation": op});
        let pipes = call(&mut ws, &mut id, "invoke", ask("getPipelines"))
            .await
            .unwrap_or_default();
        let sessions = call(&mut ws, &mut id, "invoke", ask("getSessions"))
            .await
            .unwrap_or_default();
        let recordings = (0..cycles).filter(|&i| records(i)).count();
        let recordings_written = (0..cycles)
            .filter(|&i| records(i))
            .filter(|&i| std::fs::metadata(recording_path(&dir, i)).is_ok_and(|m| m.len() > 0))
            .count();
        SoakReport {
            cycles,
            lanes,
            media_ok: media_ok.into_inner(),
            failures,
            warm,
            end,
            warm_workers: warm_procs.worker_pids,
            end_workers: end_procs.worker_pids,
            pipelines_left: pipes.as_array().map_or(0, |a| a.len()),
            // The final connection's own session may appear once it references something.
            sessions_left: sessions.as_array().map_or(0, |a| a.len()),
            recordings,
            recordings_written,
            recordings_dir: dir,
            idle_cpu_percent,
            idle_threads,
            rss_steps: rss_steps.into_inner().unwrap(),
            gst_peak: peak.into_inner().unwrap(),
            wall: t0.elapsed(),
        }
    })
}
