//! 4. **Filters** (issue 18): one WebRTC peer (a str0m peer on UDP in this process, as the
//!    Composite part's) sends 640x360 30 fps VP8 to a WebRtcEndpoint of the release server
//!    (with its media workers) and gets it back through a filter connected both ways, the
//!    Magic Mirror's topology: PassThrough (no decoding: the baseline), GStreamerFilter
//!    `videoconvert` (decode + encode and nothing else), FaceOverlayFilter with an image (on
//!    testsrc2, where there is no face, and on a synthetic face), ChromaFilter with a
//!    calibration window and a background. Each filter case is alternated with gst-launch-1.0
//!    doing the same work on plain RTP (filters_media.rs), windows of the same length.
//!    Figures: the server's CPU (process + `fluo worker` children), the frames per second
//!    received, the latency of the clip's white flashes from the sender's write to the
//!    arrival of the first frame showing them (flash.rs; looked for in a band along the top,
//!    `FLASH_PROBE`), pooled over the rounds; "added" is a case's minus PassThrough's; the
//!    video bitrate received (VP8 payload). Each round must clear `fluo_testkit::floor::FILTERS`
//!    (27 fps, at most one flash missed, 640x360, the work in 95 % of the frames, no Error
//!    event from the pipeline or its elements; the reference: its facedetect found the face
//!    and gst-launch-1.0 ran to the end), or the bench ends naming the row and the figure.
//!    Within a case, rounds alternate which system goes first.
//!
//! Why WebRTC rather than RtpEndpoint: these filters serve WebRTC clients (Magic Mirror, the
//! chroma demo), and the peer and the flash probe are the Composite part's, unchanged. What
//! WebRTC adds (ICE, DTLS, SRTP, RTCP, the router) is in the PassThrough row, and the
//! reference has none of it.

use super::composite::{self, Peers, Raw};
use super::filters_media::{self as fm, Media, Work};
use super::flash;
use super::mixref::{self, Launched, RtpOut, Vp8In};
use fluo_testkit::floor::{Seen, FILTERS};
use fluo_testkit::gst_launch::facedetect_found;
use fluo_testkit::live::Client;
use fluo_testkit::machine;
use fluo_testkit::procs::FluoProcess;
use fluo_testkit::stats;
use fluo_testkit::udp_peer::Peer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Rounds per case and system, warm-up and measured window; where the plot and the results go.
pub struct Plan {
    pub runs: usize,
    pub warmup: Duration,
    pub window: Duration,
    pub plot: Option<PathBuf>,
    pub results: Option<PathBuf>,
}

impl Plan {
    pub fn full() -> Plan {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        Plan {
            runs: 3,
            warmup: Duration::from_secs(5),
            window: Duration::from_secs(15),
            plot: Some(root.join("docs/img/filters.svg")),
            results: Some(root.join("bench/results")),
        }
    }

    /// A smoke run: one round of each, short; nothing written.
    pub fn quick() -> Plan {
        Plan {
            runs: 1,
            warmup: Duration::from_secs(4),
            window: Duration::from_secs(6),
            plot: None,
            results: None,
        }
    }
}

/// What goes between the peer's endpoint and itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    PassThrough,
    Convert,
    Face,
    FaceClip,
    Chroma,
}

impl Case {
    pub const ALL: [Case; 5] = [
        Case::PassThrough,
        Case::Convert,
        Case::Face,
        Case::FaceClip,
        Case::Chroma,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Case::PassThrough => "PassThrough",
            Case::Convert => "GStreamerFilter videoconvert",
            Case::Face => "FaceOverlayFilter, testsrc2",
            Case::FaceClip => "FaceOverlayFilter, face",
            Case::Chroma => "ChromaFilter",
        }
    }

    /// The reference's work (none for PassThrough).
    pub fn work(self) -> Option<Work> {
        match self {
            Case::PassThrough => None,
            Case::Convert => Some(Work::Convert),
            Case::Face | Case::FaceClip => Some(Work::Face),
            Case::Chroma => Some(Work::Chroma),
        }
    }

    /// Where the received frames show the work done, and below which luma they do: the
    /// overlay on the face, the background in the green band.
    fn probe(self) -> Option<((u32, u32, u32, u32), f64)> {
        match self {
            Case::FaceClip => Some((fm::FACE_PROBE, fm::OVERLAID)),
            Case::Chroma => Some((fm::BAND_PROBE, fm::REPLACED)),
            _ => None,
        }
    }

    /// What [`Case::probe`] sees, as the table and the floor name it.
    fn shows(self) -> &'static str {
        match self {
            Case::FaceClip => "overlay on the face",
            _ => "background in the band",
        }
    }

    fn clip(self, m: &Media) -> &[Vec<u8>] {
        match self {
            Case::FaceClip => &m.face,
            _ => &m.testsrc,
        }
    }
}

/// One measured round.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// CPU seconds per second (1.0: one core).
    pub cpu: f64,
    /// Frames per second received.
    pub fps: f64,
    /// Every flash's latency (ms).
    pub lat: Vec<f64>,
    pub missed: usize,
    pub size: (u32, u32),
    /// Frames received in the window that show no flash, and those of them that show the
    /// work ([`Case::probe`]: the overlay on the face, the background in the band).
    pub plain: usize,
    pub shown: usize,
    /// Video received, kbit/s of VP8 payload over the window.
    pub kbps: f64,
    /// The reference's facedetect over the round: frames with a face, frames it got.
    pub faces: Option<(usize, usize)>,
    /// Error events of the pipeline and its elements (Fluo).
    pub errors: Vec<String>,
}

impl Run {
    /// What the floor is checked on: for the reference's face rows, the frames its
    /// facedetect found the face in, of those without a flash (27 of every 30 it got);
    /// elsewhere the received frames without a flash that show the work.
    fn seen(&self, case: Case, reference: bool) -> Seen {
        let shown = match (case, reference, self.faces) {
            (Case::FaceClip, true, Some((found, got))) => {
                Some((found, got * 27 / 30, "a face found by facedetect"))
            }
            (Case::FaceClip, true, None) => Some((0, 0, "a face found by facedetect")),
            _ => case.probe().map(|_| (self.shown, self.plain, case.shows())),
        };
        Seen {
            fps: self.fps,
            missed: self.missed,
            size: self.size,
            shown,
            errors: self.errors.clone(),
        }
    }
}

/// The peer's side: a str0m peer to Fluo.
struct Fluo {
    peer: Peer,
    got: Vec<(Instant, Vec<u8>)>,
}

impl Peers for Fluo {
    fn connected(&self) -> bool {
        self.peer.connected
    }
    fn video(&mut self, frame: &[u8]) {
        self.peer.drive(Some(frame));
    }
    fn audio(&mut self, _: &[u8]) {}
    fn poll(&mut self) {
        self.peer.drive(None);
        let now = Instant::now();
        let frames = self.peer.frames.drain(..);
        self.got.extend(frames.map(|(_, f)| (now, f)));
    }
    fn take(&mut self) -> Vec<Vec<(Instant, Vec<u8>)>> {
        vec![std::mem::take(&mut self.got)]
    }
}

/// The peer's side: plain RTP to and from gst-launch-1.0.
struct Reference {
    out: RtpOut,
    inp: Vp8In,
    gst: Launched,
}

impl Peers for Reference {
    fn connected(&self) -> bool {
        true
    }
    fn video(&mut self, frame: &[u8]) {
        self.out.vp8(frame);
    }
    fn audio(&mut self, _: &[u8]) {}
    fn poll(&mut self) {
        self.gst.watch();
        self.inp.poll();
    }
    fn take(&mut self) -> Vec<Vec<(Instant, Vec<u8>)>> {
        vec![std::mem::take(&mut self.inp.frames)]
    }
}

fn file_uri(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// Creates an object and subscribes to its Error events: its id.
async fn watched(c: &mut Client, class: &str, params: serde_json::Value) -> String {
    let id = c
        .create(class, params)
        .await
        .unwrap_or_else(|e| panic!("{class}: {e}"));
    c.subscribe(&id, "Error")
        .await
        .unwrap_or_else(|e| panic!("subscribe to {class}'s Error: {e}"));
    id
}

/// Creates the case's element in `pipe` (its Error events subscribed to) and gives it its
/// image: its id.
async fn element(c: &mut Client, pipe: &str, case: Case, m: &Media) -> String {
    let pp = json!({"mediaPipeline": pipe});
    match case {
        Case::PassThrough => watched(c, "PassThrough", pp).await,
        Case::Convert => {
            let p =
                json!({"mediaPipeline": pipe, "command": "videoconvert", "filterType": "VIDEO"});
            watched(c, "GStreamerFilter", p).await
        }
        Case::Face | Case::FaceClip => {
            let f = watched(c, "FaceOverlayFilter", pp).await;
            // Over the whole face (offsets 0, the face's size): the probe sees it.
            let place = json!({"uri": file_uri(&m.hat), "offsetXPercent": 0.0,
                "offsetYPercent": 0.0, "widthPercent": 1.0, "heightPercent": 1.0});
            c.invoke(&f, "setOverlayedImage", place)
                .await
                .expect("setOverlayedImage");
            f
        }
        Case::Chroma => {
            let (x, y, w, h) = fm::WINDOW;
            let window =
                json!({"topRightCornerX": x, "topRightCornerY": y, "width": w, "height": h});
            let p = json!({"mediaPipeline": pipe, "window": window});
            let f = watched(c, "ChromaFilter", p).await;
            c.invoke(&f, "setBackground", json!({"uri": file_uri(&m.background)}))
                .await
                .expect("setBackground");
            f
        }
    }
}

/// CPU seconds of the server's process and its workers so far.
fn server_cpu(s: &FluoProcess) -> f64 {
    let (ticks, _) =
        fluo_testkit::procs::server_cpu_ticks(s.child.id()).expect("the server's /proc");
    ticks as f64 / 100.0
}

/// One round on Fluo: a pipeline with the peer's WebRtcEndpoint and the case's element,
/// connected both ways, released at the end.
fn fluo_run(
    s: &FluoProcess,
    rt: &tokio::runtime::Runtime,
    case: Case,
    m: &Media,
    plan: &Plan,
) -> Run {
    let (mut c, pipe, peer) = rt.block_on(async {
        let mut c = Client::connect(s.port).await.expect("connect");
        let pipe = watched(&mut c, "MediaPipeline", json!({})).await;
        let ep = watched(&mut c, "WebRtcEndpoint", json!({"mediaPipeline": pipe})).await;
        let f = element(&mut c, &pipe, case, m).await;
        let mut peer = Peer::new(str0m::RtcConfig::new());
        peer.negotiate(&mut c, &ep, str0m::media::Direction::SendRecv)
            .await
            .expect("negotiated");
        c.invoke(&ep, "connect", json!({"sink": f}))
            .await
            .expect("in");
        c.invoke(&f, "connect", json!({"sink": ep}))
            .await
            .expect("out");
        (c, pipe, peer)
    });
    let mut p = Fluo { peer, got: vec![] };
    let times = (plan.warmup, plan.window);
    let raw = composite::drive(&mut p, case.clip(m), &[vec![]], times, &|| server_cpu(s));
    let errors = rt.block_on(async {
        // A request answered after every event raised so far: those are in `c.events`.
        c.request("describe", json!({"object": pipe}))
            .await
            .expect("describe");
        let errors = (c.events.iter())
            .filter(|(ty, _)| ty == "Error")
            .map(|(_, d)| format!("{} {}: {}", d["source"], d["errorCode"], d["description"]))
            .collect();
        c.request("release", json!({"object": pipe}))
            .await
            .expect("release");
        errors
    });
    Run {
        errors,
        ..figures(raw, case.probe())
    }
}

/// One round of the reference: gst-launch-1.0 doing `work` on the case's clip over plain RTP,
/// watched (an early exit ends the bench); its standard error in `dir`.
fn reference_run(case: Case, work: Work, m: &Media, plan: &Plan, row: String) -> Run {
    let (listen, to) = (mixref::free_port(), mixref::free_port());
    let stderr = m.dir.join(format!("filters-gst-{case:?}.stderr"));
    let desc = fm::reference(work, listen, to, m);
    let gst = Launched::start(&desc, &stderr, work == Work::Face, row);
    let mut p = Reference {
        out: RtpOut::new(listen, 96, 0x4242),
        inp: Vp8In::bind(to),
        gst,
    };
    std::thread::sleep(Duration::from_millis(500));
    let pid = p.gst.pid().to_string();
    let cpu = || {
        fluo_testkit::procs::ProcUsage::read(&pid)
            .expect("gst-launch's /proc")
            .cpu_ticks as f64
            / 100.0
    };
    let times = (plan.warmup, plan.window);
    let raw = composite::drive(&mut p, case.clip(m), &[vec![]], times, &cpu);
    let messages = p.gst.finish();
    let found: Vec<bool> = messages
        .iter()
        .filter_map(|l| facedetect_found(l))
        .collect();
    Run {
        faces: (work == Work::Face).then(|| (found.iter().filter(|f| **f).count(), found.len())),
        ..figures(raw, case.probe())
    }
}

/// The mean luma of a box of a GRAY8 frame (rows padded to 4 bytes).
fn mean_in(y: &[u8], (w, _): (u32, u32), (x0, y0, bw, bh): (u32, u32, u32, u32)) -> f64 {
    let stride = w.div_ceil(4) as usize * 4;
    let (mut sum, mut k) = (0u64, 0u64);
    for yy in y0 as usize..(y0 + bh) as usize {
        for xx in x0 as usize..(x0 + bw) as usize {
            if let Some(v) = y.get(yy * stride + xx) {
                sum += u64::from(*v);
                k += 1;
            }
        }
    }
    sum as f64 / k.max(1) as f64
}

/// Decodes what the peer got and reduces the round to its figures; `probe`: also whether each
/// frame without a flash shows the work there.
fn figures(raw: Raw, probe: Option<((u32, u32, u32, u32), f64)>) -> Run {
    let got = raw.got.into_iter().next().unwrap_or_default();
    let d = flash::decode_with(&got, &|y, size| {
        let mut v = vec![mean_in(y, size, fm::FLASH_PROBE)];
        if let Some((rect, _)) = probe {
            v.push(mean_in(y, size, rect));
        }
        v
    });
    let (lat, missed) = flash::latencies(&d, &raw.sent, 1);
    let window: Vec<&Vec<u8>> = (got.iter())
        .filter(|(at, _)| *at >= raw.from)
        .map(|(_, f)| f)
        .collect();
    let bytes: usize = window.iter().map(|f| f.len()).sum();
    let plain: Vec<&Vec<f64>> = (d.frames.iter())
        .filter(|(at, v)| *at >= raw.from && v[0] < flash::WHITE)
        .map(|(_, v)| v)
        .collect();
    let shown = match probe {
        Some((_, below)) => plain.iter().filter(|v| v[1] < below).count(),
        None => 0,
    };
    Run {
        cpu: raw.cpu,
        fps: window.len() as f64 / raw.secs,
        lat,
        missed,
        size: (d.width, d.height),
        plain: plain.len(),
        shown,
        kbps: bytes as f64 * 8.0 / raw.secs / 1000.0,
        faces: None,
        errors: vec![],
    }
}

/// A case's rounds on one system, pooled.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub runs: Vec<Run>,
}

impl Row {
    fn of(&self, f: impl Fn(&Run) -> f64) -> Vec<f64> {
        self.runs.iter().map(f).collect()
    }
    /// CPU in % of one core, the median of the rounds.
    pub fn cpu_pct(&self) -> f64 {
        stats::median(&self.of(|r| r.cpu * 100.0))
    }
    /// The rounds' smallest and largest CPU, % of one core.
    pub fn cpu_range(&self) -> (f64, f64) {
        stats::range(&self.of(|r| r.cpu * 100.0))
    }
    pub fn fps(&self) -> f64 {
        stats::median(&self.of(|r| r.fps))
    }
    pub fn fps_range(&self) -> (f64, f64) {
        stats::range(&self.of(|r| r.fps))
    }
    /// Video received, kbit/s, the median of the rounds.
    pub fn kbps(&self) -> f64 {
        stats::median(&self.of(|r| r.kbps))
    }
    pub fn kbps_range(&self) -> (f64, f64) {
        stats::range(&self.of(|r| r.kbps))
    }
    /// The `p`th percentile of every flash of every round.
    pub fn lat(&self, p: f64) -> f64 {
        let all: Vec<f64> = self.runs.iter().flat_map(|r| r.lat.clone()).collect();
        stats::percentile(&all, p)
    }
    pub fn seen(&self) -> usize {
        self.runs.iter().map(|r| r.lat.len()).sum()
    }
    pub fn missed(&self) -> usize {
        self.runs.iter().map(|r| r.missed).sum()
    }
    pub fn size(&self) -> (u32, u32) {
        self.runs.iter().map(|r| r.size).max().unwrap_or_default()
    }
    /// Frames without a flash that showed the work, of those received.
    pub fn shown(&self) -> (usize, usize) {
        let o = self.runs.iter().map(|r| r.shown).sum();
        (o, self.runs.iter().map(|r| r.plain).sum())
    }
    /// The reference's facedetect: frames with a face, frames it got, over the rounds.
    pub fn faces(&self) -> Option<(usize, usize)> {
        let f: Vec<(usize, usize)> = self.runs.iter().filter_map(|r| r.faces).collect();
        (!f.is_empty()).then(|| (f.iter().map(|x| x.0).sum(), f.iter().map(|x| x.1).sum()))
    }
}

/// A case, Fluo's row and the reference's (none for PassThrough).
pub type CaseRows = (Case, Row, Option<Row>);

/// Everything a run measured: the cases' rows; the load average before and after; the
/// machine ([`machine::facts`]).
pub struct Results {
    pub rows: Vec<CaseRows>,
    pub load: (String, String),
    pub took: Duration,
    pub machine: Value,
}

/// A round's row name, as the log and a failure give it.
fn row_name(case: Case, who: &str, round: usize) -> String {
    format!("{} / {who} round {round}", case.label())
}

/// Checks a round against the floor: ends the bench, naming the row, when it is short.
fn check(case: Case, who: &str, round: usize, r: &Run) {
    if let Err(e) = FILTERS.check(&row_name(case, who, round), &r.seen(case, who != "fluo")) {
        panic!("the filters bench measured nothing worth keeping: {e}");
    }
}

/// Runs the plan: per case, `runs` rounds of Fluo and gst-launch (Fluo first in odd rounds,
/// gst-launch first in even ones), each checked against the floor; prints and writes.
pub fn run(plan: &Plan, dir: &Path) {
    let t = Instant::now();
    let load_before = machine::load();
    // Before the plot and results change tracked files.
    machine::commit();
    let m = Media::make(dir);
    let server = FluoProcess::start(&FluoProcess::release_bin(), &[], dir, "filters-fluo");
    let rt = fluo_testkit::live::rt();
    let mut rows = vec![];
    for case in Case::ALL {
        let (mut f, mut g) = (Row::default(), case.work().map(|_| Row::default()));
        for round in 1..=plan.runs {
            let fluo_first = round % 2 == 1;
            for fluo in [fluo_first, !fluo_first] {
                let (who, row, work) = match fluo {
                    true => ("fluo", &mut f, None),
                    false => match (g.as_mut(), case.work()) {
                        (Some(g), Some(w)) => ("gst-launch", g, Some(w)),
                        _ => continue,
                    },
                };
                let r = match work {
                    None => fluo_run(&server, &rt, case, &m, plan),
                    Some(w) => reference_run(case, w, &m, plan, row_name(case, who, round)),
                };
                log_round(case, round, who, &r);
                check(case, who, round, &r);
                row.runs.push(r);
            }
        }
        rows.push((case, f, g));
    }
    drop(server);
    let res = Results {
        rows,
        machine: machine::facts(&load_before),
        load: (load_before, machine::load()),
        took: t.elapsed(),
    };
    let table = super::filters_report::table(&res, plan);
    println!("{table}");
    if let Some(p) = &plan.plot {
        std::fs::write(p, super::filters_report::svg(&res, plan.runs)).expect("the plot");
        println!("  plot: {}", p.display());
    }
    if let Some(d) = &plan.results {
        let json = super::filters_report::json(&res, plan);
        let out = super::filters_report::write(d, "filters", &json, &table);
        println!("  results: {out}");
    }
}

/// A row's figures as JSON (for the results file).
pub fn row_json(r: &Row) -> Value {
    let pair = |p: (f64, f64)| json!([p.0, p.1]);
    json!({
        "runs": r.runs.len(),
        "cpu_pct_median": r.cpu_pct(),
        "cpu_pct_range": pair(r.cpu_range()),
        "cpu_pct_runs": r.runs.iter().map(|x| x.cpu * 100.0).collect::<Vec<_>>(),
        "fps_median": r.fps(),
        "fps_range": pair(r.fps_range()),
        "video_kbps_median": r.kbps(),
        "video_kbps_range": pair(r.kbps_range()),
        "latency_p50_ms": r.lat(50.0),
        "latency_p95_ms": r.lat(95.0),
        "flashes_seen": r.seen(),
        "flashes_missed": r.missed(),
        "size": [r.size().0, r.size().1],
        "frames_showing_the_work": r.shown().0,
        "frames_without_flash": r.shown().1,
        "facedetect_frames_with_a_face": r.faces().map(|f| f.0),
        "facedetect_frames": r.faces().map(|f| f.1),
        "error_events": r.runs.iter().map(|x| x.errors.len()).sum::<usize>(),
    })
}

/// One round's figures for one system, as the run goes.
fn log_round(case: Case, round: usize, who: &str, r: &Run) {
    let mut work = String::new();
    if case.probe().is_some() {
        work += &format!(", {} in {}/{} frames", case.shows(), r.shown, r.plain);
    }
    if let Some((o, n)) = r.faces {
        work += &format!(", a face in {o}/{n} facedetect frames");
    }
    eprintln!(
        "filters {}: {:.1} % CPU, {:.1} fps, {:.0} kbit/s, {} flashes seen, {} missed{work}, {} Error events (load {})",
        row_name(case, who, round),
        r.cpu * 100.0,
        r.fps,
        r.kbps,
        r.lat.len(),
        r.missed,
        r.errors.len(),
        machine::load()
    );
}
