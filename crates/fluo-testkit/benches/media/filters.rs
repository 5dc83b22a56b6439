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
//!    `FLASH_PROBE`), pooled over the rounds; "added" is a case's minus PassThrough's.
//!
//! Why WebRTC rather than RtpEndpoint: these filters serve WebRTC clients (Magic Mirror, the
//! chroma demo), and the peer and the flash probe are the Composite part's, unchanged. What
//! WebRTC adds (ICE, DTLS, SRTP, RTCP, the router) is in the PassThrough row, and the
//! reference has none of it.

use super::composite::{self, Peers, Raw};
use super::filters_media::{self as fm, Media, Work};
use super::flash;
use super::mixref::{self, RtpOut, Vp8In};
use fluo_testkit::live::Client;
use fluo_testkit::procs::FluoProcess;
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
        self.inp.poll();
    }
    fn take(&mut self) -> Vec<Vec<(Instant, Vec<u8>)>> {
        vec![std::mem::take(&mut self.inp.frames)]
    }
}

fn file_uri(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// Creates the case's element in `pipe` and gives it its image: its id.
async fn element(c: &mut Client, pipe: &str, case: Case, m: &Media) -> String {
    let pp = json!({"mediaPipeline": pipe});
    match case {
        Case::PassThrough => c.create("PassThrough", pp).await.expect("PassThrough"),
        Case::Convert => c
            .create(
                "GStreamerFilter",
                json!({"mediaPipeline": pipe, "command": "videoconvert", "filterType": "VIDEO"}),
            )
            .await
            .expect("GStreamerFilter"),
        Case::Face | Case::FaceClip => {
            let f = c.create("FaceOverlayFilter", pp).await.expect("face");
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
            let f = c
                .create(
                    "ChromaFilter",
                    json!({"mediaPipeline": pipe, "window": window}),
                )
                .await
                .expect("ChromaFilter");
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
        let pipe = c
            .create("MediaPipeline", json!({}))
            .await
            .expect("pipeline");
        let ep = c
            .create("WebRtcEndpoint", json!({"mediaPipeline": pipe}))
            .await
            .expect("endpoint");
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
    rt.block_on(async {
        c.request("release", json!({"object": pipe}))
            .await
            .expect("release")
    });
    figures(raw, case.probe())
}

/// One round of the reference: gst-launch-1.0 doing `work` on the case's clip over plain RTP.
fn reference_run(case: Case, work: Work, m: &Media, plan: &Plan) -> Run {
    let (listen, to) = (mixref::free_port(), mixref::free_port());
    let mut p = Reference {
        out: RtpOut::new(listen, 96, 0x4242),
        inp: Vp8In::bind(to),
    };
    let mut child = mixref::launch(&fm::reference(work, listen, to, m));
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id().to_string();
    let cpu = || {
        fluo_testkit::procs::ProcUsage::read(&pid)
            .expect("gst-launch's /proc")
            .cpu_ticks as f64
            / 100.0
    };
    let times = (plan.warmup, plan.window);
    let raw = composite::drive(&mut p, case.clip(m), &[vec![]], times, &cpu);
    let _ = child.kill();
    let _ = child.wait();
    figures(raw, case.probe())
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
    let frames = got.iter().filter(|(at, _)| *at >= raw.from).count();
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
        fps: frames as f64 / raw.secs,
        lat,
        missed,
        size: (d.width, d.height),
        plain: plain.len(),
        shown,
    }
}

/// A case's rounds on one system, pooled.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub runs: Vec<Run>,
}

impl Row {
    fn median(&self, f: impl Fn(&Run) -> f64) -> f64 {
        let mut v: Vec<f64> = self.runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
    /// CPU in % of one core, the median of the rounds.
    pub fn cpu_pct(&self) -> f64 {
        self.median(|r| r.cpu * 100.0)
    }
    pub fn fps(&self) -> f64 {
        self.median(|r| r.fps)
    }
    /// The `p`th percentile of every flash of every round.
    pub fn lat(&self, p: f64) -> f64 {
        let mut all: Vec<f64> = self.runs.iter().flat_map(|r| r.lat.clone()).collect();
        all.sort_by(f64::total_cmp);
        flash::pct(&all, p)
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
}

/// A case, Fluo's row and the reference's (none for PassThrough).
pub type CaseRows = (Case, Row, Option<Row>);

/// Everything a run measured: the cases' rows; the load average before and after.
pub struct Results {
    pub rows: Vec<CaseRows>,
    pub load: (String, String),
    pub took: Duration,
}

/// Runs the plan: per case, `runs` rounds of Fluo then gst-launch; prints and writes.
pub fn run(plan: &Plan, dir: &Path) {
    let t = Instant::now();
    let load_before = composite::load();
    let m = Media::make(dir);
    let server = FluoProcess::start(&FluoProcess::release_bin(), &[], dir, "filters-fluo");
    let rt = fluo_testkit::live::rt();
    let mut rows = vec![];
    for case in Case::ALL {
        let (mut f, mut g) = (Row::default(), case.work().map(|_| Row::default()));
        for round in 1..=plan.runs {
            let r = fluo_run(&server, &rt, case, &m, plan);
            log_round(case, round, "fluo", &r);
            f.runs.push(r);
            if let (Some(work), Some(g)) = (case.work(), g.as_mut()) {
                let r = reference_run(case, work, &m, plan);
                log_round(case, round, "gst-launch", &r);
                g.runs.push(r);
            }
        }
        rows.push((case, f, g));
    }
    drop(server);
    let res = Results {
        rows,
        load: (load_before, composite::load()),
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
    json!({
        "runs": r.runs.len(),
        "cpu_pct_median": r.cpu_pct(),
        "cpu_pct_runs": r.runs.iter().map(|x| x.cpu * 100.0).collect::<Vec<_>>(),
        "fps_median": r.fps(),
        "latency_p50_ms": r.lat(50.0),
        "latency_p95_ms": r.lat(95.0),
        "flashes_seen": r.seen(),
        "flashes_missed": r.missed(),
        "size": [r.size().0, r.size().1],
        "frames_showing_the_work": r.shown().0,
        "frames_without_flash": r.shown().1,
    })
}

/// One round's figures for one system, as the run goes.
fn log_round(case: Case, round: usize, who: &str, r: &Run) {
    eprintln!(
        "filters {} round {round}: {who} {:.1} % CPU, {:.1} fps, {} flashes seen, {} missed, work shown in {}/{} frames (load {})",
        case.label(),
        r.cpu * 100.0,
        r.fps,
        r.lat.len(),
        r.missed,
        r.shown,
        r.plain,
        composite::load()
    );
}
