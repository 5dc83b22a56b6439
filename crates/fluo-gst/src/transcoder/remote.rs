//! The router's transcoders as proxies of `gst.transcoder` jobs in media workers, made by
//! [`crate::Transcoders`] when the server has workers: the job runs on the worker hosting the
//! source's pipeline, the node in the router feeds it a datagram per pass of the router's
//! loop ([`Feeder`]), and what it encodes enters the router as the transcoder's output.
//!
//! Its worker's death is the transcoder's failure: the router raises on each sink it fed the
//! Error event of a transcoder that cannot be made (CODEC_MISMATCH, with the worker's cause)
//! and drops it; other routes carry on, and a re-connect makes a new one on the restarted
//! worker.

use crate::jobs::{self, PlayParams, TranscoderParams};
use crate::remote::{death_text, group_of, Feeder};
use fluo_sfu::{
    Codec, Header, MediaBus, MediaKind, Node, OutputSettings, Packet, PortOutput, SinkCaps,
    SinkCodec,
};
use fluo_worker::{wire, Death, Job, JobError, JobSink, PacketRef, Supervisor};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Transcoders in workers by their source element's id: a source's DOT graphs show them.
static LIVE: Mutex<Vec<(String, Weak<Shared>)>> = Mutex::new(Vec::new());

/// The graphs of the transcoders of the elements `owners`, drawn by their jobs with
/// `details` and cleaned as the server's own (a worker is untrusted).
pub(crate) fn graphs(owners: &[String], details: &str) -> Vec<String> {
    let live: Vec<Arc<Shared>> = {
        let mut l = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        l.retain(|(_, w)| w.strong_count() > 0);
        l.iter()
            .filter(|(source, _)| owners.contains(source))
            .filter_map(|(_, w)| w.upgrade())
            .collect()
    };
    live.iter()
        .filter(|s| !s.dropped.load(Ordering::SeqCst))
        .filter_map(|s| {
            let job = s.job.get()?;
            let (tx, rx) = std::sync::mpsc::channel();
            job.call("getGstreamerDot", details.as_bytes().to_vec(), move |r| {
                let _ = tx.send(r);
            });
            let bytes = crate::remote::wait(rx)?.ok()?;
            let dot: String = wire::decode(&bytes).ok()?;
            (!dot.is_empty()).then(|| crate::dot::without_secrets(&dot))
        })
        .collect()
}

/// What the router's node and the job's sink share.
struct Shared {
    /// "VP8 -> H264 of <source>", for logs.
    name: String,
    kind: MediaKind,
    job: OnceLock<Job>,
    /// The router dropped the node: the job goes, its death is no one's concern.
    dropped: AtomicBool,
    /// The job did not start, or its worker died.
    failed: AtomicBool,
    out: PortOutput,
    bus: Arc<dyn MediaBus>,
}

impl Shared {
    /// The transcoder cannot go on: the router is told (its sinks get their Error event).
    fn fail(&self, why: &str) {
        self.failed.store(true, Ordering::SeqCst);
        if !self.dropped.load(Ordering::SeqCst) {
            tracing::warn!(name = %self.name, "transcoder in a media worker failed: {why}");
            self.bus.transcoder_failed(self.out.key(), why);
        }
    }

    fn started(&self, r: Result<Job, JobError>) {
        match r {
            Ok(job) => {
                tracing::info!(
                    name = %self.name,
                    worker = job.worker(),
                    pid = job.pid(),
                    job = job.id(),
                    "transcoder runs in media worker"
                );
                let job = self.job.get_or_init(|| job);
                if self.dropped.load(Ordering::SeqCst) {
                    job.stop();
                } else if self.kind == MediaKind::Video {
                    // Its decoder starts at a keyframe: what came before the job ran is
                    // sent from the backlog, and should that have overflowed, the keyframe
                    // asked for now starts it.
                    self.bus.request_keyframe(self.out.key());
                }
            }
            Err(JobError::WorkerDied(d)) => self.fail(&died(&d)),
            Err(e) => self.fail(&format!("its media job did not start: {e}")),
        }
    }
}

fn died(d: &Death) -> String {
    format!("its media worker ended: {}", death_text(d))
}

/// Where the job's output goes.
struct Sink(Arc<Shared>);

impl JobSink for Sink {
    fn packet(&self, pkt: &PacketRef<'_>) {
        self.0.out.send(pkt.to_packet());
    }

    fn keyframe_request(&self) {
        self.0.bus.request_keyframe(self.0.out.key());
    }

    fn event(&self, name: &str, _data: &[u8]) {
        tracing::warn!(name = %self.0.name, event = name, "a transcoder job sent an event no transcoder raises");
    }

    /// A GStreamer error in the job's pipeline: logged, as the transcoder in the server's
    /// process does.
    fn failed(&self, error: &str) {
        let error = fluo_api::text::foreign(error);
        tracing::warn!(name = %self.0.name, "transcoder error: {error}");
    }

    fn worker_died(&self, death: &Death) {
        self.0.fail(&died(death));
    }
}

/// A transcoder of the media of `kind` of the element `source` from `from` to `to`, encoding
/// with `settings`, as a job on the worker of `source`'s pipeline; what it makes goes to
/// `out`, its failure to `bus`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn create(
    workers: &Supervisor,
    bus: &Arc<dyn MediaBus>,
    live: &Arc<AtomicUsize>,
    kind: MediaKind,
    (from, to): (&Codec, &Codec),
    source: &str,
    settings: &OutputSettings,
    out: PortOutput,
) -> Box<dyn Node> {
    let shared = Arc::new(Shared {
        name: format!("{from} -> {to} of {source}"),
        kind,
        job: OnceLock::new(),
        dropped: AtomicBool::new(false),
        failed: AtomicBool::new(false),
        out,
        bus: bus.clone(),
    });
    {
        let mut l = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        l.retain(|(_, w)| w.strong_count() > 0);
        l.push((source.to_string(), Arc::downgrade(&shared)));
    }
    let params = TranscoderParams {
        from: from.name,
        to: to.name,
        output: PlayParams::of(settings),
    };
    // Element ids are "<pipeline>/<element>": the job shares the source's pipeline's worker.
    let pipeline = source.split('/').next().unwrap_or(source);
    let started = shared.clone();
    workers.start_job(
        group_of(pipeline),
        jobs::TRANSCODER,
        wire::encode(&params),
        Arc::new(Sink(shared.clone())),
        move |r| started.started(r),
    );
    live.fetch_add(1, Ordering::Relaxed);
    Box::new(RemoteTranscoder {
        shared,
        from: *from,
        feed: Feeder::new(),
        backlog: Vec::new(),
        live: live.clone(),
    })
}

/// Most packets kept for a job that has not started yet (a few seconds of video; a job on a
/// running worker starts within a millisecond, a restarting worker's within a few hundred).
const BACKLOG: usize = 512;

/// A packet kept until the job runs: its payload shared, not copied.
struct Kept {
    kind: MediaKind,
    codec: Codec,
    marker: bool,
    payload: Arc<[u8]>,
    header: Header,
}

/// The transcoder in the router.
struct RemoteTranscoder {
    shared: Arc<Shared>,
    from: Codec,
    feed: Feeder,
    /// What came before the job ran (its decoder starts at the keyframe that made the router
    /// insert it), sent first once it runs.
    backlog: Vec<Kept>,
    live: Arc<AtomicUsize>,
}

impl RemoteTranscoder {
    /// Sends the backlog to `job`.
    fn drain(&mut self, job: &Job) {
        for k in std::mem::take(&mut self.backlog) {
            let pkt = Packet {
                kind: k.kind,
                codec: k.codec,
                seq: k.header.seq,
                ts: k.header.ts,
                ssrc: k.header.ssrc,
                marker: k.marker,
                payload: &k.payload,
                entered: None,
                extensions: None,
                dd: None,
                layer: None,
            };
            self.feed.push(job, &pkt, k.header);
        }
    }
}

impl Node for RemoteTranscoder {
    fn caps(&self, _kind: MediaKind) -> SinkCaps {
        SinkCaps::codecs([SinkCodec::new(self.from)])
    }

    /// Kept until the job runs (at most [`BACKLOG`]; none once it failed to start).
    fn push(&mut self, _now: std::time::Instant, pkt: &Packet<'_>, header: Header) {
        let shared = self.shared.clone();
        match shared.job.get() {
            Some(job) => {
                if !self.backlog.is_empty() {
                    self.drain(job);
                }
                self.feed.push(job, pkt, header);
            }
            None if shared.failed.load(Ordering::SeqCst) => self.backlog.clear(),
            None if self.backlog.len() < BACKLOG => self.backlog.push(Kept {
                kind: pkt.kind,
                codec: pkt.codec,
                marker: pkt.marker,
                payload: pkt.payload.clone(),
                header,
            }),
            None => {}
        }
    }

    fn request_keyframe(&mut self, _kind: MediaKind) {
        if let Some(job) = self.shared.job.get() {
            self.feed.flush(job);
            let _ = job.request_keyframe();
        }
    }

    fn flush(&mut self) {
        if let Some(job) = self.shared.job.get() {
            self.feed.end_pass(job);
        }
    }
}

impl Drop for RemoteTranscoder {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
        self.shared.dropped.store(true, Ordering::SeqCst);
        if let Some(job) = self.shared.job.get() {
            job.stop();
        }
    }
}
