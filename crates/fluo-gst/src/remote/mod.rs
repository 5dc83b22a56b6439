//! Elements whose GStreamer pipeline runs in a media worker process (crates/fluo-worker,
//! docs/workers.md): the server keeps a proxy that is the element for the engine and a node
//! for the router, and runs the pipeline as a job (`crate::jobs`) on the worker that hosts the
//! element's pipeline.
//!
//! * [`Remote`]: the job as the proxy sees it: started when the element is created, its
//!   methods called through `Job::call` (the Kurento request answered when the reply or the
//!   worker's death arrives, never by a time-out), what it produces turned into the router's
//!   packets and the element's Kurento events, its worker's death into the element's `Error`
//!   event.
//! * [`RemoteNode`]: the element in the router: packets pushed into the job's media socket,
//!   what a pass of the router's loop gave it in one datagram built in the node's own buffer
//!   (no allocation), keyframe requests and end of stream as records.
//! * `proxy::Proxied`: the element for the engine, shared by every kind (routing, release,
//!   the stopping token); a kind adds its methods and properties as a `proxy::Face`.

pub(crate) mod proxy;

pub(crate) use crate::composite::remote::{
    AlphaBlendingFactory, CompositeFactory, HubPortFactory, MixerFactory,
};
pub(crate) use crate::filter::remote::create as create_filter;
pub(crate) use crate::filter::remote::probe as probe_filter;
pub(crate) use crate::player::remote::create as create_player;
pub(crate) use crate::recorder::remote::create as create_recorder;
#[cfg(feature = "test-elements")]
pub(crate) use crate::test_crash::TestCrashFactory;
pub(crate) use crate::transcoder::remote::create as create_transcoder;

use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{ElementCx, EventSink, FactoryCx, MediaError, MediaEvent, Stopping};
use fluo_sfu::{Codec, Header, MediaBus, MediaKind, Node, Packet, PortOutput, SinkCaps};
use fluo_worker::media::BatchError;
use fluo_worker::{Batch, Death, Job, JobError, JobSink, PacketRef, Supervisor};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the proxy knows of its job without asking it: kept from the job's events.
#[derive(Debug)]
pub(crate) struct Local {
    /// Kurento's UriEndpointState.
    pub state: &'static str,
    /// Per kind: the codec a recording's track started in (a recorder's caps).
    pub codecs: [Option<Codec>; 2],
    /// A recorder's media profile.
    pub profile: Option<crate::recorder::Profile>,
    /// The job encodes its own output, applying the element's forced formats (a player that
    /// decodes its file; a filter, of the kind it filters).
    pub encodes: bool,
    /// A GStreamerFilter's: the kind it filters (the other passes as it comes).
    pub filtered: Option<MediaKind>,
}

impl Default for Local {
    fn default() -> Local {
        Local {
            state: "STOP",
            codecs: [None, None],
            profile: None,
            encodes: false,
            filtered: None,
        }
    }
}

pub(crate) type Waiter = Box<dyn FnOnce(Result<&Job, KurentoError>) + Send>;

/// A job of a worker, as its element's proxy sees it.
pub(crate) struct Inner {
    /// The element's id.
    id: String,
    /// The type of the element's Error events.
    error: MediaError,
    job: OnceLock<Job>,
    /// Requests made while the job starts (`None` once it started or failed).
    waiting: Mutex<Option<Vec<Waiter>>>,
    /// Why the job cannot answer: it did not start, or its worker died.
    gone: Mutex<Option<KurentoError>>,
    local: Mutex<Local>,
    released: AtomicBool,
    out: OnceLock<PortOutput>,
    events: EventSink,
    bus: Arc<dyn MediaBus>,
    key: AtomicU64,
}

/// Proxies whose job may be asked for its DOT graph, by element id.
pub(crate) static REMOTES: Mutex<Vec<(String, Weak<Inner>)>> = Mutex::new(Vec::new());

/// What an element's job is.
pub(crate) struct Spec {
    /// The job's kind.
    pub kind: &'static str,
    /// Its parameters.
    pub params: Vec<u8>,
    /// The type of the element's Error events.
    pub error: MediaError,
    /// What the proxy knows at first.
    pub local: Local,
    /// What the element takes as a sink.
    pub caps: fn(&Local, MediaKind) -> SinkCaps,
    /// The job encodes with the element's output settings, which it is sent whenever they
    /// change (its `setOutput` method) before it gets more media of the kind it encodes.
    pub follows_settings: bool,
}

/// A handle on an element's job (cheap to clone).
#[derive(Clone)]
pub(crate) struct Remote(Arc<Inner>);

impl Remote {
    /// Makes the element `cx` creates a router node and starts its job as `spec` says on the
    /// worker hosting its pipeline; requests made before the job runs wait for it.
    pub(crate) fn start(
        workers: &Supervisor,
        media: &crate::Media,
        cx: &FactoryCx<'_>,
        spec: Spec,
    ) -> Remote {
        let Spec {
            kind,
            params,
            error,
            local,
            caps,
            follows_settings,
        } = spec;
        let id = cx.id;
        let group = cx.pipeline.unwrap_or(cx.id);
        let filtered = local.filtered;
        let inner = Arc::new(Inner {
            id: id.to_string(),
            error,
            job: OnceLock::new(),
            waiting: Mutex::new(Some(Vec::new())),
            gone: Mutex::new(None),
            local: Mutex::new(local),
            released: AtomicBool::new(false),
            out: OnceLock::new(),
            events: media.events.clone(),
            bus: media.bus.clone(),
            key: AtomicU64::new(0),
        });
        let node = RemoteNode {
            inner: inner.clone(),
            caps,
            feed: Feeder::new(),
            output: follows_settings.then(|| OutputSync::new(&media.settings, id)),
            filtered,
        };
        let for_node = inner.clone();
        let key = media.bus.add_port(
            id,
            Box::new(move |out| {
                let _ = for_node.out.set(out);
                Box::new(node) as Box<dyn Node>
            }),
        );
        inner.key.store(key, Ordering::Release);
        {
            let mut r = lock(&REMOTES);
            r.retain(|(_, w)| w.strong_count() > 0);
            r.push((id.to_string(), Arc::downgrade(&inner)));
        }
        let sink: Arc<dyn JobSink> = Arc::new(Sink(inner.clone()));
        let started = inner.clone();
        workers.start_job(group_of(group), kind, params, sink, move |r| {
            started.started(r);
        });
        Remote(inner)
    }

    /// The media worker running the job, once it started.
    pub(crate) fn worker(&self) -> Option<usize> {
        self.0.job.get().map(Job::worker)
    }

    /// The element's router key.
    pub(crate) fn key(&self) -> u64 {
        self.0.key.load(Ordering::Acquire)
    }

    /// What the proxy knows of its job.
    pub(crate) fn local(&self) -> MutexGuard<'_, Local> {
        lock(&self.0.local)
    }

    /// Calls `method` of the job; `done` gets its reply, or the Kurento error for its
    /// failure or its worker's death.
    pub(crate) fn call(
        &self,
        method: &str,
        args: Vec<u8>,
        done: impl FnOnce(Result<Vec<u8>, KurentoError>) + Send + 'static,
    ) {
        let method = method.to_owned();
        let inner = self.0.clone();
        self.0.with_job(Box::new(move |job| match job {
            Ok(job) => job.call(&method, args, move |r| {
                done(r.map_err(|e| inner.error_of(e)))
            }),
            Err(e) => done(Err(e)),
        }));
    }

    /// Answers the running request with `method`'s reply, read by `read`: later through the
    /// engine's deferral, or (where the request cannot wait: a transaction) by waiting here.
    pub(crate) fn answer(
        &self,
        cx: &mut ElementCx<'_>,
        method: &str,
        args: Vec<u8>,
        read: fn(&[u8]) -> Result<Value, KurentoError>,
    ) -> Result<Value, KurentoError> {
        match cx.defer() {
            Some(reply) => {
                self.call(method, args, move |r| {
                    reply.complete(r.and_then(|b| read(&b)));
                });
                Ok(Value::Null)
            }
            None => self.call_waiting(method, args).and_then(|b| read(&b)),
        }
    }

    /// [`Remote::call`], waiting for the reply or the worker's death (for what the engine
    /// asks synchronously: property reads, DOT graphs, requests in a transaction).
    pub(crate) fn call_waiting(
        &self,
        method: &str,
        args: Vec<u8>,
    ) -> Result<Vec<u8>, KurentoError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.call(method, args, move |r| {
            let _ = tx.send(r);
        });
        wait(rx).unwrap_or_else(|| {
            Err(KurentoError::new(
                ErrorCode::UnexpectedError,
                "The element's media worker did not answer",
            ))
        })
    }

    /// The element goes: its node leaves the router, and its job is released (a recorder's
    /// file is finalised by the worker), then stopped. The returned token is held until the
    /// job answered its release (or its worker died): the engine counts the element against
    /// its client's object limit until then.
    pub(crate) fn release(&self) -> Stopping {
        self.0.released.store(true, Ordering::Release);
        self.0.bus.remove_port(self.key());
        let token = Stopping::new();
        let held = token.clone();
        let inner = self.0.clone();
        self.call("release", Vec::new(), move |_| {
            if let Some(job) = inner.job.get() {
                job.stop();
            }
            drop(held);
        });
        token
    }
}

/// Waits for a reply on `rx` (which fires on the reply or the worker's death: never by a
/// time-out) without holding up the runtime's other tasks: on a multi-threaded tokio runtime
/// the thread's tasks move elsewhere while it waits. On a single-threaded one, which would
/// wait for itself, it gives up after 10 s.
pub(crate) fn wait<T>(rx: std::sync::mpsc::Receiver<T>) -> Option<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| rx.recv().ok()),
        Ok(_) => rx.recv_timeout(std::time::Duration::from_secs(10)).ok(),
        Err(_) => rx.recv().ok(),
    }
}

/// A pipeline id as a job group (jobs of one pipeline share a worker).
pub(crate) fn group_of(pipeline: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    pipeline.hash(&mut h);
    h.finish()
}

/// The text of a worker's death, as the element's Error event and its pending requests say
/// it.
pub(crate) fn death_text(d: &Death) -> String {
    format!("{} (media worker {}, pid {})", d.cause, d.worker, d.pid)
}

impl Inner {
    fn started(&self, r: Result<Job, JobError>) {
        match r {
            Ok(job) => {
                tracing::info!(
                    id = %self.id,
                    worker = job.worker(),
                    pid = job.pid(),
                    job = job.id(),
                    "element runs in media worker"
                );
                if self.released.load(Ordering::Acquire) {
                    job.stop();
                }
                let _ = self.job.set(job);
            }
            Err(e) => {
                tracing::warn!(id = %self.id, "the element's media job did not start: {e}");
                *lock(&self.gone) = Some(self.error_of(e));
            }
        }
        let waiting = lock(&self.waiting).take().unwrap_or_default();
        for w in waiting {
            self.hand(w);
        }
    }

    fn hand(&self, w: Waiter) {
        let gone = lock(&self.gone).clone();
        match (gone, self.job.get()) {
            (Some(e), _) => w(Err(e)),
            (None, Some(job)) => w(Ok(job)),
            (None, None) => w(Err(KurentoError::new(
                ErrorCode::UnexpectedError,
                "The element's media job did not start",
            ))),
        }
    }

    fn with_job(&self, w: Waiter) {
        {
            let mut waiting = lock(&self.waiting);
            if let Some(q) = waiting.as_mut() {
                q.push(w);
                return;
            }
        }
        self.hand(w);
    }

    /// The Kurento error a request gets for `e`.
    fn error_of(&self, e: JobError) -> KurentoError {
        match e {
            JobError::WorkerDied(d) => KurentoError::media_worker_died(death_text(&d)),
            JobError::Failed(text) => crate::jobs::kurento_error(&text),
            JobError::Unavailable(_) | JobError::Stopped => {
                KurentoError::new(ErrorCode::UnexpectedError, e.to_string())
            }
        }
    }

    fn raise(&self, ev: MediaEvent) {
        (self.events)(&self.id, ev);
    }
}

/// Where the job's output goes: the router, and the element's events.
pub(crate) struct Sink(Arc<Inner>);

impl JobSink for Sink {
    fn packet(&self, pkt: &PacketRef<'_>) {
        if let Some(out) = self.0.out.get() {
            out.send(pkt.to_packet());
        }
    }

    fn keyframe_request(&self) {
        self.0
            .bus
            .request_keyframe(self.0.key.load(Ordering::Acquire));
    }

    fn end_of_stream(&self) {
        self.0.bus.end_of_stream(self.0.key.load(Ordering::Acquire));
    }

    fn event(&self, name: &str, data: &[u8]) {
        let Some(ev) = crate::jobs::decode_event(name, data) else {
            tracing::warn!(id = %self.0.id, name, "a media worker sent an event no job raises");
            return;
        };
        {
            let mut l = lock(&self.0.local);
            match &ev {
                MediaEvent::UriEndpointState { state } => {
                    l.state = state;
                    if *state == "STOP" {
                        l.codecs = [None, None];
                    }
                }
                MediaEvent::EndOfStream => l.state = "STOP",
                _ => {}
            }
        }
        self.0.raise(ev);
    }

    fn failed(&self, error: &str) {
        if self.0.error == MediaError::Player {
            lock(&self.0.local).state = "STOP";
        }
        self.0.raise(crate::error_event(
            self.0.error,
            fluo_api::text::foreign(error),
        ));
    }

    fn worker_died(&self, death: &Death) {
        let text = death_text(death);
        tracing::warn!(id = %self.0.id, "the element's media worker ended: {text}");
        *lock(&self.0.gone) = Some(KurentoError::media_worker_died(&text));
        lock(&self.0.local).state = "STOP";
        self.0.raise(crate::error_event(self.0.error, text));
    }
}

/// An element of a worker in the router.
pub(crate) struct RemoteNode {
    inner: Arc<Inner>,
    caps: fn(&Local, MediaKind) -> SinkCaps,
    feed: Feeder,
    output: Option<OutputSync>,
    /// A filter's filtered kind (the kind its job encodes).
    filtered: Option<MediaKind>,
}

/// Keeps a job's output settings those of its element (a filter encodes with them).
pub(crate) struct OutputSync {
    table: Arc<fluo_sfu::SettingsTable>,
    /// The table's generation last looked at.
    seen: u64,
    /// What the job has (or is being sent).
    sent: fluo_sfu::OutputSettings,
    /// A `setOutput` call is on its way: media of the encoded kind waits (is dropped).
    waiting: Arc<AtomicBool>,
}

impl OutputSync {
    fn new(table: &Arc<fluo_sfu::SettingsTable>, id: &str) -> OutputSync {
        OutputSync {
            table: table.clone(),
            seen: table.generation(),
            sent: table.get(id),
            waiting: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the job has the element's current settings; if not, they are sent, and the
    /// job's source asked for a keyframe once it has them (its decoder starts again there).
    fn ready(&mut self, inner: &Arc<Inner>) -> bool {
        if self.waiting.load(Ordering::Acquire) {
            return false;
        }
        let generation = self.table.generation();
        if generation == self.seen {
            return true;
        }
        self.seen = generation;
        let now = self.table.get(&inner.id);
        if now == self.sent {
            return true;
        }
        self.sent = now;
        tracing::debug!(id = %inner.id, "the element's output settings go to its media job");
        self.waiting.store(true, Ordering::Release);
        let (waiting, bus, key) = (
            self.waiting.clone(),
            inner.bus.clone(),
            inner.key.load(Ordering::Acquire),
        );
        let args = fluo_worker::wire::encode(&crate::jobs::PlayParams::of(&now));
        Remote(inner.clone()).call("setOutput", args, move |_| {
            waiting.store(false, Ordering::Release);
            bus.request_keyframe(key);
        });
        false
    }
}

/// Packets on their way to a job, gathered for one datagram per pass of the router's loop
/// (audio with video, a whole frame or several): sent when the router ends the pass
/// ([`Node::flush`]), unless a video frame is still coming (its marker packet not yet there:
/// it goes with the pass that completes it, or when the next frame begins should its marker
/// have been lost upstream); at once before a keyframe request or an end of stream, and when
/// the datagram is full. Built in the feeder's own buffer (no allocation).
pub(crate) struct Feeder {
    batch: Batch,
    /// The timestamp of the video frame being gathered, until its marker packet.
    frame: Option<u32>,
}

impl Feeder {
    pub(crate) fn new() -> Feeder {
        Feeder {
            batch: Batch::new(),
            frame: None,
        }
    }

    /// Sends what was gathered to `job` (a full socket drops it, counted by the supervisor).
    pub(crate) fn flush(&mut self, job: &Job) {
        if !self.batch.is_empty() {
            let _ = job.push_batch(&self.batch);
            self.batch.clear();
        }
        self.frame = None;
    }

    /// The router's pass ended: what was gathered goes, unless a video frame is still coming.
    pub(crate) fn end_pass(&mut self, job: &Job) {
        if self.frame.is_none() {
            self.flush(job);
        }
    }

    /// Gathers `pkt` for `job`.
    pub(crate) fn push(&mut self, job: &Job, pkt: &Packet<'_>, header: Header) {
        let video = pkt.kind == MediaKind::Video;
        if video && self.frame.is_some_and(|ts| ts != header.ts) {
            // The frame before lost its marker upstream: it goes as it is.
            self.flush(job);
        }
        let p = PacketRef {
            kind: pkt.kind,
            codec: pkt.codec,
            seq: header.seq,
            timestamp: header.ts,
            ssrc: header.ssrc,
            marker: pkt.marker,
            payload: pkt.payload,
        };
        match self.batch.push_packet(job.id(), &p) {
            Ok(()) => {}
            Err(BatchError::Unsupported) => return,
            Err(BatchError::Full) => {
                self.flush(job);
                if self.batch.push_packet(job.id(), &p).is_err() {
                    return;
                }
            }
        }
        if video {
            self.frame = (!pkt.marker).then_some(header.ts);
        }
    }
}

impl Node for RemoteNode {
    fn caps(&self, kind: MediaKind) -> SinkCaps {
        (self.caps)(&lock(&self.inner.local), kind)
    }

    /// Gathered for one datagram per pass (see [`Feeder`]).
    fn push(&mut self, _now: std::time::Instant, pkt: &Packet<'_>, header: Header) {
        let Some(job) = self.inner.job.get() else {
            return;
        };
        let encoded = self.filtered.is_none_or(|k| k == pkt.kind);
        if let Some(o) = self.output.as_mut().filter(|_| encoded) {
            if !o.ready(&self.inner) {
                return;
            }
        }
        if self.inner.error == MediaError::Recorder {
            // A recording's track keeps the codec it started in (the router asks `caps`).
            let mut l = lock(&self.inner.local);
            if l.state == "START" && l.codecs[pkt.kind].is_none() {
                l.codecs[pkt.kind] = Some(pkt.codec);
            }
        }
        self.feed.push(job, pkt, header);
    }

    fn request_keyframe(&mut self, _kind: MediaKind) {
        if let Some(job) = self.inner.job.get() {
            self.feed.flush(job);
            let _ = job.request_keyframe();
        }
    }

    fn flush(&mut self) {
        if let Some(job) = self.inner.job.get() {
            self.feed.end_pass(job);
        }
    }

    fn end_of_stream(&mut self) {
        if let Some(job) = self.inner.job.get() {
            self.feed.flush(job);
            let _ = job.end_of_stream();
        }
    }

    fn applies_format(&self, kind: MediaKind) -> bool {
        let l = lock(&self.inner.local);
        l.encodes && l.filtered.is_none_or(|k| k == kind)
    }
}

/// The DOT graphs of the pipelines that the elements `owners` run in media workers, drawn
/// with `details` and cleaned as the server's own (a worker is untrusted).
pub(crate) fn graphs(owners: &[String], details: &str) -> Vec<String> {
    let remotes: Vec<Arc<Inner>> = {
        let r = lock(&REMOTES);
        owners
            .iter()
            .filter_map(|o| r.iter().find(|(id, _)| id == o))
            .filter_map(|(_, w)| w.upgrade())
            .collect()
    };
    let mut graphs: Vec<String> = remotes
        .into_iter()
        .filter(|i| !i.released.load(Ordering::Acquire) && lock(&i.gone).is_none())
        .filter_map(|i| {
            let bytes = Remote(i)
                .call_waiting("getGstreamerDot", details.as_bytes().to_vec())
                .ok()?;
            let dot: String = fluo_worker::wire::decode(&bytes).ok()?;
            (!dot.is_empty()).then(|| crate::dot::without_secrets(&dot))
        })
        .collect();
    graphs.extend(crate::transcoder::remote::graphs(owners, details));
    graphs
}
