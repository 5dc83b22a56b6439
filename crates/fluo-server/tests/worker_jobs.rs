//! The GStreamer job kinds (fluo_gst::jobs) in real `fluo worker` processes started by the
//! supervisor: a player job sends RTP and its end of stream, a recorder job records what it
//! is sent into a file that ffprobe reads back, a transcoder job turns VP8 into H.264; a
//! worker killed while recording leaves a playable file, every job's sink hears of the
//! death with its cause, and the next job on the restarted worker works.

use fluo_gst::jobs::{
    self, FilterParams, PlayParams, PlayerParams, PropertyArgs, RecorderParams, TranscoderParams,
};
use fluo_sfu::{CodecName, MediaEvent, MediaKind};
use fluo_worker::wire;
use fluo_worker::WorkerCommand;
use fluo_worker::{Death, DeathCause, Job, JobSink, PacketRef, Supervisor, SupervisorConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FLUO: &str = env!("CARGO_BIN_EXE_fluo");

/// These tests decode and encode real video: one at a time on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A temporary folder, removed when the test ends (passed or failed).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("fluo-jobs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A WebM clip of `secs` seconds (VP8 320x240 at 30 fps, Opus), made by gst-launch.
fn clip(dir: &Path, secs: u32) -> PathBuf {
    let file = dir.join("clip.webm");
    let st = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(format!("videotestsrc num-buffers={} ! video/x-raw,width=320,height=240,framerate=30/1 ! vp8enc deadline=1 ! webmmux name=m ! filesink", secs * 30).split(' '))
        .arg(format!("location={}", file.display()))
        .args(format!("audiotestsrc num-buffers={} samplesperbuffer=960 ! audio/x-raw,rate=48000,channels=2 ! opusenc ! m.", secs * 50).split(' '))
        .status()
        .expect("gst-launch-1.0 runs (a test dependency)");
    assert!(st.success(), "gst-launch made the clip");
    file
}

/// What ffprobe reads in a file: its codecs, its duration (0 when the header has none) and
/// the video frames it decodes.
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

#[derive(Debug, Clone, Copy)]
struct Pkt {
    kind: MediaKind,
    codec: CodecName,
    ssrc: u32,
    timestamp: u32,
    at: Instant,
}

/// A job's sink that keeps what it gets and can forward its packets to another job.
#[derive(Default)]
struct Sink {
    packets: Mutex<Vec<Pkt>>,
    events: Mutex<Vec<MediaEvent>>,
    bad_events: Mutex<Vec<String>>,
    failures: Mutex<Vec<String>>,
    eos: AtomicBool,
    died: Mutex<Option<Death>>,
    forward: Mutex<Option<Arc<Job>>>,
    push_errors: Mutex<Vec<fluo_worker::PushError>>,
}

impl JobSink for Sink {
    fn packet(&self, p: &PacketRef<'_>) {
        self.packets.lock().unwrap().push(Pkt {
            kind: p.kind,
            codec: p.codec.name,
            ssrc: p.ssrc,
            timestamp: p.timestamp,
            at: Instant::now(),
        });
        if let Some(j) = &*self.forward.lock().unwrap() {
            if let Err(e) = j.push(p) {
                self.push_errors.lock().unwrap().push(e);
            }
        }
    }
    fn end_of_stream(&self) {
        self.eos.store(true, Ordering::SeqCst);
        if let Some(j) = &*self.forward.lock().unwrap() {
            let _ = j.end_of_stream();
        }
    }
    fn event(&self, name: &str, data: &[u8]) {
        match jobs::decode_event(name, data) {
            Some(ev) => self.events.lock().unwrap().push(ev),
            None => self.bad_events.lock().unwrap().push(name.to_owned()),
        }
    }
    fn failed(&self, error: &str) {
        self.failures.lock().unwrap().push(error.to_owned());
    }
    fn worker_died(&self, death: &Death) {
        *self.died.lock().unwrap() = Some(death.clone());
    }
}

impl Sink {
    fn count(&self, kind: MediaKind) -> usize {
        self.packets
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.kind == kind)
            .count()
    }
    fn events(&self) -> Vec<MediaEvent> {
        self.events.lock().unwrap().clone()
    }
}

/// Waits until `cond` holds, at most `max`.
async fn until(max: Duration, what: &str, cond: impl Fn() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < max, "{what}: not within {max:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One `fluo worker`, sandboxed, allowed to read and write `dir`.
fn supervisor(dir: &Path) -> Supervisor {
    let mut cfg = SupervisorConfig::new(WorkerCommand::new(FLUO).arg("worker"));
    cfg.workers = 1;
    cfg.sandbox.read_paths = vec![dir.to_path_buf()];
    cfg.sandbox.write_paths = vec![dir.to_path_buf()];
    Supervisor::start(cfg, &tokio::runtime::Handle::current(), |ev| {
        eprintln!("supervisor: {ev:?}")
    })
}

async fn start_player(sup: &Supervisor, group: u64, file: &Path, sink: Arc<Sink>) -> Job {
    let params = PlayerParams {
        uri: format!("file://{}", file.display()),
        use_encoded: false,
        network_cache: 2000,
        guarded: true,
    };
    sup.start_job_async(group, jobs::PLAYER, wire::encode(&params), sink)
        .await
        .expect("the player job starts")
}

fn play_args() -> Vec<u8> {
    wire::encode(&PlayParams {
        target_bps: 300_000,
        min_bps: 0,
        max_bps: 0,
        video: None,
        audio: None,
    })
}

/// This process's CPU time (user and system).
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| {
        Duration::from_secs(v.tv_sec as u64) + Duration::from_micros(v.tv_usec as u64)
    };
    t(u.ru_utime) + t(u.ru_stime)
}

/// Every SSRC's timestamps go forward (never back), and span the clip.
fn assert_timeline(pkts: &[Pkt], kind: MediaKind, clock: u32, secs: f64) {
    let mut by_ssrc: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    for p in pkts.iter().filter(|p| p.kind == kind) {
        by_ssrc.entry(p.ssrc).or_default().push(p.timestamp);
    }
    assert_eq!(
        by_ssrc.len(),
        1,
        "{kind:?}: one stream, {:?}",
        by_ssrc.keys()
    );
    let ts = by_ssrc.into_values().next().unwrap();
    for w in ts.windows(2) {
        assert!(
            (w[1].wrapping_sub(w[0]) as i32) >= 0,
            "{kind:?}: timestamp {} after {}",
            w[1],
            w[0]
        );
    }
    let span = f64::from(ts[ts.len() - 1].wrapping_sub(ts[0])) / f64::from(clock);
    assert!(
        (span - secs).abs() < 0.5,
        "{kind:?}: the timestamps span {span:.2} s for a {secs} s clip"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_job_sends_vp8_and_opus_rtp_then_its_end_of_stream() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new("player");
    let file = clip(&dir.0, 2);
    let sup = supervisor(&dir.0);
    // The first job waits for the worker to start and initialise GStreamer; the second not.
    let mut starts = vec![];
    let mut held = vec![];
    for g in [1, 2] {
        let t = Instant::now();
        let job = start_player(&sup, g, &file, Arc::new(Sink::default())).await;
        starts.push(t.elapsed());
        held.push(job);
    }
    drop(held);
    let sink = Arc::new(Sink::default());
    let job = start_player(&sup, 3, &file, sink.clone()).await;
    // This process's CPU while the job is idle, to tell what its packets cost from the
    // runtime's own (pings, timers, this test's polling).
    let (idle0, i0) = (cpu_time(), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = (cpu_time() - idle0).as_secs_f64() / i0.elapsed().as_secs_f64();
    let (cpu0, t0) = (cpu_time(), Instant::now());
    job.call_async("play", play_args()).await.expect("play");
    until(Duration::from_secs(15), "end of stream", || {
        sink.eos.load(Ordering::SeqCst)
    })
    .await;
    let (cpu, wall) = (cpu_time() - cpu0, t0.elapsed());
    let pkts = sink.packets.lock().unwrap().clone();
    let (video, audio) = (sink.count(MediaKind::Video), sink.count(MediaKind::Audio));
    let first = pkts.first().map(|p| p.at.duration_since(t0));
    let per_packet = (cpu.as_secs_f64() - idle * wall.as_secs_f64()) / pkts.len().max(1) as f64;
    eprintln!(
        "player job: started in {starts:?}; first packet {first:?} after play; {video} video and {audio} audio packets in {wall:?}; the server's process spent {cpu:?} CPU ({:.1} ms a second idle), {:.1} us a packet above idle",
        idle * 1e3,
        per_packet * 1e6
    );
    assert!(pkts.iter().all(|p| match p.kind {
        MediaKind::Video => p.codec == CodecName::Vp8,
        MediaKind::Audio => p.codec == CodecName::Opus,
    }));
    assert!(
        video > 60 && audio > 80,
        "{video} video, {audio} audio packets"
    );
    assert_timeline(&pkts, MediaKind::Video, 90_000, 2.0);
    assert_timeline(&pkts, MediaKind::Audio, 48_000, 2.0);
    // The end of stream came after the packets, and played in real time (sync=true).
    assert!(wall >= Duration::from_millis(1800), "{wall:?}");
    let events = sink.events();
    assert_eq!(
        events,
        [
            MediaEvent::UriEndpointState { state: "START" },
            MediaEvent::EndOfStream,
            MediaEvent::UriEndpointState { state: "STOP" },
        ]
    );
    assert!(sink.bad_events.lock().unwrap().is_empty());
    assert!(sink.failures.lock().unwrap().is_empty());
    let state: String = wire::decode(&job.call_async("getState", vec![]).await.unwrap()).unwrap();
    assert_eq!(state, "STOP");
    // A method the job does not have is refused by the job, the worker goes on.
    let err = job.call_async("record", vec![]).await.unwrap_err();
    assert_eq!(err.to_string(), "the player has no method 'record'");
    drop(job);
    sup.shutdown(Duration::from_secs(5)).await;
}

/// A player job whose packets the test forwards to a recorder job of the same pipeline.
async fn player_into_recorder(
    sup: &Supervisor,
    file: &Path,
    out: &Path,
) -> (Job, Arc<Sink>, Arc<Job>, Arc<Sink>) {
    let rec_sink = Arc::new(Sink::default());
    let params = RecorderParams {
        uri: format!("file://{}", out.display()),
        profile: "WEBM".into(),
        stop_on_eos: false,
    };
    let rec = sup
        .start_job_async(7, jobs::RECORDER, wire::encode(&params), rec_sink.clone())
        .await
        .expect("the recorder job starts");
    let rec = Arc::new(rec);
    let sink = Arc::new(Sink::default());
    *sink.forward.lock().unwrap() = Some(rec.clone());
    let player = start_player(sup, 7, file, sink.clone()).await;
    assert_eq!(player.pid(), rec.pid(), "one pipeline, one worker");
    rec.call_async("record", vec![]).await.expect("record");
    player.call_async("play", play_args()).await.expect("play");
    (player, sink, rec, rec_sink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_job_records_what_a_player_job_sends_into_a_playable_file() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new("recorder");
    let file = clip(&dir.0, 3);
    let out = dir.0.join("rec/out.webm");
    let sup = supervisor(&dir.0);
    let (player, sink, rec, rec_sink) = player_into_recorder(&sup, &file, &out).await;
    until(Duration::from_secs(20), "end of stream", || {
        sink.eos.load(Ordering::SeqCst)
    })
    .await;
    let t = Instant::now();
    rec.call_async("stopAndWait", vec![])
        .await
        .expect("stopAndWait");
    eprintln!("stopAndWait answered in {:?}", t.elapsed());
    // stopAndWait answers once the file is finalised: Stopped came before its reply.
    assert_eq!(
        rec_sink.events(),
        [
            MediaEvent::UriEndpointState { state: "START" },
            MediaEvent::Recording,
            MediaEvent::UriEndpointState { state: "STOP" },
            MediaEvent::Stopped,
        ]
    );
    assert!(rec_sink.failures.lock().unwrap().is_empty());
    let (codecs, dur, frames) = probe(&out);
    eprintln!("recorded by a job: {codecs:?}, {dur:.2} s, {frames} video frames");
    assert_eq!(codecs, ["opus", "vp8"]);
    assert!(
        (dur - 3.0).abs() < 0.5,
        "duration {dur:.2} s for a 3 s clip"
    );
    assert!(frames >= 75, "{frames} decodable frames of 90");
    drop((player, rec));
    sup.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_worker_while_recording_leaves_a_playable_file_and_the_next_job_works() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new("kill");
    let file = clip(&dir.0, 10);
    let out = dir.0.join("killed.webm");
    let sup = supervisor(&dir.0);
    let (player, sink, rec, rec_sink) = player_into_recorder(&sup, &file, &out).await;
    until(Duration::from_secs(10), "media", || {
        sink.count(MediaKind::Video) > 0
    })
    .await;
    let first = sink.packets.lock().unwrap()[0].at;
    // The media the recorder has been fed (its video's RTP time): on a loaded machine the
    // player runs slower than the clock (1.47 s of video in 4 s was seen), so the kill comes
    // once 3 s of video went in, not after a fixed time.
    let fed = || {
        let p = sink.packets.lock().unwrap();
        let mut ts = p
            .iter()
            .filter(|p| p.kind == MediaKind::Video)
            .map(|p| p.timestamp);
        let first_ts = ts.next().unwrap_or(0);
        let last_ts = ts.next_back().unwrap_or(first_ts);
        f64::from(last_ts.wrapping_sub(first_ts)) / 90_000.0
    };
    until(Duration::from_secs(30), "3 s of video fed", || fed() >= 3.0).await;
    let pid = player.pid();
    let recorded = first.elapsed();
    let fed = fed();
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    until(
        Duration::from_secs(5),
        "both jobs hear of the death",
        || sink.died.lock().unwrap().is_some() && rec_sink.died.lock().unwrap().is_some(),
    )
    .await;
    for s in [&sink, &rec_sink] {
        let d = s.died.lock().unwrap().clone().unwrap();
        assert_eq!(d.pid, pid);
        assert!(
            matches!(d.cause, DeathCause::Signaled { signal: 9, .. }),
            "{:?}",
            d.cause
        );
        assert_eq!(
            d.cause.to_string(),
            "the worker process was killed (SIGKILL: out of memory, or killed by the operator)"
        );
        assert_eq!(d.jobs.len(), 2);
    }
    assert!(!player.is_alive() && !rec.is_alive());
    // Its requests fail with the death, not a time-out.
    let err = rec.call_async("getState", vec![]).await.unwrap_err();
    assert!(err.to_string().contains("SIGKILL"), "{err}");
    let (codecs, dur, frames) = probe(&out);
    let secs = frames as f64 / 30.0;
    eprintln!(
        "after kill -9 at {recorded:?} of recording ({fed:.2} s of video fed): {codecs:?}, header duration {dur:.2} s, {frames} decodable video frames ({secs:.2} s)"
    );
    assert_eq!(codecs, ["opus", "vp8"]);
    assert!(
        fed >= 1.5,
        "only {fed:.2} s of video reached the recorder in {recorded:?}"
    );
    assert!(
        secs >= fed - 1.0,
        "{secs:.2} s playable of {fed:.2} s of video fed ({recorded:?} of recording)"
    );
    // The next job, on the restarted worker, plays at once.
    let next = Arc::new(Sink::default());
    let t = Instant::now();
    let job = start_player(&sup, 8, &file, next.clone()).await;
    assert_ne!(job.pid(), pid);
    job.call_async("play", play_args()).await.expect("play");
    until(Duration::from_secs(10), "the next job's media", || {
        next.count(MediaKind::Video) > 10
    })
    .await;
    eprintln!(
        "the next player job sent media {:?} after its start",
        t.elapsed()
    );
    drop((player, rec, job));
    sup.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcoder_job_turns_vp8_into_h264_and_an_abort_is_reported_to_it() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new("transcoder");
    let file = clip(&dir.0, 3);
    let sup = supervisor(&dir.0);
    let params = TranscoderParams {
        from: CodecName::Vp8,
        to: CodecName::H264,
        output: PlayParams {
            target_bps: 300_000,
            min_bps: 0,
            max_bps: 0,
            video: None,
            audio: None,
        },
    };
    let out = Arc::new(Sink::default());
    let tc = sup
        .start_job_async(9, jobs::TRANSCODER, wire::encode(&params), out.clone())
        .await
        .expect("the transcoder job starts");
    let tc = Arc::new(tc);
    let sink = Arc::new(Sink::default());
    *sink.forward.lock().unwrap() = Some(tc.clone());
    let player = start_player(&sup, 9, &file, sink.clone()).await;
    player.call_async("play", play_args()).await.expect("play");
    // The router asks a transcoder's source for keyframes (PLI); the test asks the player job
    // every 500 ms, through Job::request_keyframe.
    let t = Instant::now();
    while !sink.eos.load(Ordering::SeqCst) {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the player's end of stream"
        );
        player
            .request_keyframe()
            .expect("the player job's worker is alive");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // H.264 frames come out, nearly all of the clip's 90. The sink forwards the player's
    // audio too: the job must take only its codec's packets (with Opus interleaved, its
    // jitter buffer read the two streams' sequence numbers as gaps and resets, and runs gave
    // 1 to 89 frames).
    let frames = |s: &Sink| {
        let pkts = s.packets.lock().unwrap();
        pkts.iter()
            .filter(|p| p.kind == MediaKind::Video)
            .map(|p| p.timestamp)
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    let t = Instant::now();
    while frames(&out) < 89 && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let not_pushed = sink.push_errors.lock().unwrap().clone();
    assert!(
        frames(&out) >= 80 && frames(&sink) >= 89,
        "{} H.264 frames out of the transcoder from {} VP8 frames in, {} packets not pushed: {:?}",
        frames(&out),
        frames(&sink),
        not_pushed.len(),
        not_pushed.first()
    );
    let pkts = out.packets.lock().unwrap().clone();
    assert!(pkts.iter().all(|p| p.codec == CodecName::H264), "{pkts:?}");
    eprintln!(
        "transcoder job: {} H.264 packets, {} frames, from {} VP8 frames in",
        pkts.len(),
        frames(&out),
        frames(&sink)
    );
    // A crash of the worker while it transcodes (SIGABRT, as a plugin's failed assertion
    // raises; a SIGSEGV sent by kill is not a fault, and Rust's handler lets the process go
    // on) reaches the transcoder's sink too.
    let pid = tc.pid();
    let st = Command::new("kill")
        .args(["-ABRT", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    until(Duration::from_secs(5), "the death", || {
        out.died.lock().unwrap().is_some()
    })
    .await;
    let cause = out.died.lock().unwrap().clone().unwrap().cause;
    assert_eq!(
        cause.to_string(),
        "the worker process aborted (SIGABRT: a plugin error, or its memory limit reached)"
    );
    // And a new transcoder on the restarted worker converts again.
    let out2 = Arc::new(Sink::default());
    let tc2 = Arc::new(
        sup.start_job_async(10, jobs::TRANSCODER, wire::encode(&params), out2.clone())
            .await
            .expect("a new transcoder job"),
    );
    let sink2 = Arc::new(Sink::default());
    *sink2.forward.lock().unwrap() = Some(tc2.clone());
    let player2 = start_player(&sup, 10, &file, sink2.clone()).await;
    player2.call_async("play", play_args()).await.expect("play");
    // As above: the whole clip, nearly every frame.
    let t = Instant::now();
    while !sink2.eos.load(Ordering::SeqCst) {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the new player's end of stream"
        );
        player2
            .request_keyframe()
            .expect("the player job's worker is alive");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let t = Instant::now();
    while frames(&out2) < 89 && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "new transcoder job: {} H.264 frames from {} VP8 frames in",
        frames(&out2),
        frames(&sink2)
    );
    assert!(
        frames(&out2) >= 80 && frames(&sink2) >= 89,
        "{} H.264 frames from the new transcoder, from {} VP8 frames in",
        frames(&out2),
        frames(&sink2)
    );
    drop((player, player2, tc, tc2));
    sup.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_job_runs_a_listed_command_and_refuses_an_unlisted_one() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new("filter");
    let file = clip(&dir.0, 3);
    let sup = supervisor(&dir.0);
    let params = |command: &str| FilterParams {
        command: command.into(),
        filter_type: "VIDEO".into(),
        allow: None,
        output: PlayParams {
            target_bps: 300_000,
            min_bps: 0,
            max_bps: 0,
            video: None,
            audio: None,
        },
    };
    // The worker checks the command against the policy as the server does.
    let err = sup
        .start_job_async(
            11,
            jobs::FILTER,
            wire::encode(&params("filesrc location=/etc/passwd")),
            Arc::new(Sink::default()),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("filesrc"), "{err}");
    let out = Arc::new(Sink::default());
    let f = sup
        .start_job_async(
            11,
            jobs::FILTER,
            wire::encode(&params("videoflip method=horizontal-flip")),
            out.clone(),
        )
        .await
        .expect("the filter job starts");
    let f = Arc::new(f);
    let set = |name: &str, value: &str| {
        wire::encode(&PropertyArgs {
            name: name.into(),
            value: value.into(),
        })
    };
    f.call_async("setElementProperty", set("method", "vertical-flip"))
        .await
        .expect("a property of the command's element");
    let err = f
        .call_async("setElementProperty", set("no-such-property", "1"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-property"), "{err}");
    let sink = Arc::new(Sink::default());
    *sink.forward.lock().unwrap() = Some(f.clone());
    let player = start_player(&sup, 11, &file, sink.clone()).await;
    player.call_async("play", play_args()).await.expect("play");
    until(
        Duration::from_secs(15),
        "filtered video and passed audio",
        || out.count(MediaKind::Video) > 60 && out.count(MediaKind::Audio) > 60,
    )
    .await;
    let pkts = out.packets.lock().unwrap().clone();
    assert!(pkts.iter().all(|p| match p.kind {
        MediaKind::Video => p.codec == CodecName::Vp8,
        MediaKind::Audio => p.codec == CodecName::Opus,
    }));
    // The filtered video is the filter's own encoding, not the player's packets passed on.
    let ssrcs = |s: &Sink| -> std::collections::HashSet<u32> {
        s.packets
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.kind == MediaKind::Video)
            .map(|p| p.ssrc)
            .collect()
    };
    assert!(ssrcs(&out).is_disjoint(&ssrcs(&sink)));
    assert!(out.failures.lock().unwrap().is_empty());
    drop((player, f));
    sup.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_job_refuses_a_missing_file_and_reports_a_broken_one_as_its_failure() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new("broken");
    let sup = supervisor(&dir.0);
    let missing = start_player(
        &sup,
        12,
        &dir.0.join("none.webm"),
        Arc::new(Sink::default()),
    )
    .await;
    let err = missing.call_async("play", play_args()).await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    let broken = dir.0.join("broken.webm");
    std::fs::write(&broken, vec![0x5a; 64 * 1024]).unwrap();
    let sink = Arc::new(Sink::default());
    let job = start_player(&sup, 12, &broken, sink.clone()).await;
    job.call_async("play", play_args())
        .await
        .expect("play starts");
    // GStreamer's bus error reaches the sink as the job's failure, once, with no address.
    until(Duration::from_secs(10), "the failure", || {
        !sink.failures.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let failures = sink.failures.lock().unwrap().clone();
    eprintln!("broken file: {failures:?}");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("in "), "{failures:?}");
    assert!(!failures[0].contains("0x"), "{failures:?}");
    let state: String = wire::decode(&job.call_async("getState", vec![]).await.unwrap()).unwrap();
    assert_eq!(state, "STOP");
    // The worker goes on: the job answers, and nothing died.
    assert!(job.is_alive() && sink.died.lock().unwrap().is_none());
    drop((missing, job));
    sup.shutdown(Duration::from_secs(5)).await;
}
