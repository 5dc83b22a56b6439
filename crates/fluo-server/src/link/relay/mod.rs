//! Cascade (docs/cluster.md, "Cascade"): in a cluster, `source.connect(sink)` where `sink`
//! is an element of another pipeline (a Fluo extension: KMS answers 40004) is answered by
//! the entry with a *relay*: two hidden WebRtcEndpoints, `relayOut` in the source's pipeline
//! fed by the source and `relayIn` in the sink's pipeline feeding the sink, negotiated with
//! each other (Fluo's descriptions carry their candidates: nothing to trickle; DTLS-SRTP,
//! NACK, PLI and RTCP come with WebRTC). Both pipelines on one node get a relay too.
//!
//! The entry drives it as a client of its own: a virtual connection ([`rpc::Rpc`]) whose
//! requests are routed as a client's are ([`Router::route`]: the owner's node over the link,
//! this node's engine for its own pipelines). One relay per (source element, sink pipeline)
//! made by this entry: a second sink in that pipeline only gets `relayIn.connect(sink)`.
//! The relays of one source form a tree ([`tree`]): an element feeds at most
//! `--relay-fanout` of them, further ones are fed from an existing relay's `relayIn`.
//! Requests about one relay are served in the order the router took them ([`Turns`]). A
//! janitor ([`janitor`]) asks every relay each second whether it still feeds something and
//! is still fed; a relay idle at two checks in a row, or with `relayIn` gone, is released;
//! one whose upstream went is fed again; ends whose release failed are released again. An
//! entry that stops releases its relays.

mod janitor;
pub(super) mod rpc;
mod service;
#[cfg(test)]
mod tests;
mod tree;

use super::entry::ClientHandle;
use super::route::{pipeline_of, Ask, Router};
use crate::core_loop::Core;
use crate::lock;
use fluo_api::{ErrorCode, KurentoError};
use janitor::Table;
use serde_json::{json, Map, Value};
use service::Service;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Connects waiting for the relay service.
const JOBS: usize = 1024;

/// How long a client's connect (or disconnect) may take from its queueing to its answer,
/// the wait for the requests before it on its relay included.
const JOB_WAIT: Duration = Duration::from_secs(8);

/// A client connection's requests in the relay service at once (waiting or running); more
/// are answered `40009` (finding 7 of review R40: one client cannot fill the service).
const PER_CONNECTION: usize = 32;

/// How long an entry that stops gives the release of its relays.
const STOP_WAIT: Duration = Duration::from_secs(3);

/// The spacing of the keyframe requests a relay's `relayIn` sends upstream (to `relayOut`,
/// and so to the source's node), in ms: one a second per edge (issue 22). Given as
/// `relayIn`'s constructor property `fluoKeyframeInterval` (docs/compatibility.md).
const EDGE_KEYFRAME_MS: u64 = 1000;

/// A `connect` or `disconnect` of a MediaElement whose sink is an element of another
/// pipeline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cross {
    source: String,
    sink: String,
    /// `connect` (else `disconnect`).
    connect: bool,
    /// The operation's other parameters (`mediaType`, the media descriptions).
    params: Map<String, Value>,
}

/// What one relay carries: a source element to the elements of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    source: String,
    pipeline: String,
}

impl Cross {
    fn key(&self) -> Key {
        Key {
            source: self.source.clone(),
            pipeline: pipeline_of(&self.sink).unwrap_or_default(),
        }
    }
}

/// The cross-pipeline `connect` or `disconnect` `req` is, if it is one. A Dispatcher's
/// `connect(source, sink)` (hub ports of one hub) is not.
pub(crate) fn cross(req: &Map<String, Value>) -> Option<Cross> {
    if req.get("method")?.as_str()? != "invoke" {
        return None;
    }
    let params = req.get("params")?;
    let connect = match params.get("operation")?.as_str()? {
        "connect" => true,
        "disconnect" => false,
        _ => return None,
    };
    let source = params.get("object")?.as_str()?;
    let mut args = params.get("operationParams")?.as_object()?.clone();
    if args.contains_key("source") || source.contains("_kurento.Dispatcher") {
        return None;
    }
    let sink = args.remove("sink")?.as_str()?.to_string();
    // A pipeline's id is not a sink (the engine answers such a connect as KMS does).
    if !sink.contains('/') {
        return None;
    }
    let (p, q) = (pipeline_of(source)?, pipeline_of(&sink)?);
    (p != q).then(|| Cross {
        source: source.to_string(),
        sink,
        connect,
        params: args,
    })
}

/// `e` (as it came, from an owner or this node) with its message prefixed by the relay it
/// is about, so that the client can tell it from an error of its own objects.
fn about(mut e: Value, c: &Cross) -> Value {
    let m = e["message"].as_str().unwrap_or_default();
    let m = format!("relay from {} to {}: {m}", c.source, c.sink);
    if let Some(o) = e.as_object_mut() {
        o.insert("message".into(), Value::from(m));
    }
    e
}

/// What a relay job is doing now (for the answer of a job that ran out of time), and
/// whether it ran out of time (its next step is then not taken).
#[derive(Clone)]
struct Step(Arc<Mutex<(&'static str, bool)>>, Arc<AtomicBool>);

impl Step {
    /// A job's steps, for a service that stops once `stopping` holds.
    fn new(stopping: &Arc<AtomicBool>) -> Step {
        let s = ("waiting for another request on this relay", false);
        Step(Arc::new(Mutex::new(s)), stopping.clone())
    }

    /// The job goes on with `what`, unless it ran out of time or the service stops: then the
    /// error to stop with (what it made is released as on any failure).
    fn at(&self, what: &'static str) -> Result<(), Value> {
        let mut s = lock(&self.0);
        if s.1 {
            let m = format!("stopped at its deadline, before {what}");
            return Err(KurentoError::new(ErrorCode::ConnectError, m).to_json());
        }
        if self.1.load(Ordering::SeqCst) {
            let m = format!("this node stops; stopped before {what}");
            return Err(KurentoError::new(ErrorCode::ConnectError, m).to_json());
        }
        s.0 = what;
        Ok(())
    }

    /// The `40004` answer of job `c` still running at its deadline; its next step is not
    /// taken.
    fn late(&self, c: &Cross) -> Value {
        let mut s = lock(&self.0);
        s.1 = true;
        let m = format!(
            "relay from {} to {}: no answer within {} s (while {})",
            c.source,
            c.sink,
            JOB_WAIT.as_secs(),
            s.0
        );
        KurentoError::new(ErrorCode::ConnectError, m).to_json()
    }
}

/// The requests waiting or running per relay, in the order the router took them: each
/// waits for the one before it on its relay (finding 4 of review R40: a `disconnect` sent
/// before a pending `connect`'s answer must not overtake it).
#[derive(Debug, Default)]
struct Turns {
    next: u64,
    /// Per relay: the last request taken (its number) and what tells that it is done.
    tails: HashMap<Key, (u64, oneshot::Receiver<()>)>,
}

/// A request's place in its relay's line: it runs once the request before it is done
/// ([`Turn::wait`]); dropping it lets the next one go.
#[derive(Debug)]
struct Turn {
    key: Key,
    seq: u64,
    before: Option<oneshot::Receiver<()>>,
    _done: oneshot::Sender<()>,
    turns: Arc<Mutex<Turns>>,
}

impl Turn {
    /// The last place in `k`'s line.
    fn take(turns: &Arc<Mutex<Turns>>, k: Key) -> Turn {
        let (done, rx) = oneshot::channel();
        let mut t = lock(turns);
        t.next += 1;
        let seq = t.next;
        let before = t.tails.insert(k.clone(), (seq, rx)).map(|(_, r)| r);
        Turn {
            key: k,
            seq,
            before,
            _done: done,
            turns: turns.clone(),
        }
    }

    /// Waits until the request before this one is done (a wait given up keeps the place).
    async fn wait(&mut self) {
        if let Some(b) = self.before.as_mut() {
            let _ = b.await;
            self.before = None;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut t = lock(&self.turns);
        if t.tails.get(&self.key).is_some_and(|(s, _)| *s == self.seq) {
            t.tails.remove(&self.key);
        }
    }
}

/// The requests each client connection has in the relay service.
type Busy = Arc<Mutex<HashMap<u64, usize>>>;

/// One of a client connection's [`PER_CONNECTION`] places in the relay service, given back
/// when dropped.
#[derive(Debug)]
struct Slot {
    conn: u64,
    busy: Busy,
}

impl Slot {
    /// A place for `conn`, if it has one left.
    fn take(busy: &Busy, conn: u64) -> Option<Slot> {
        let mut b = lock(busy);
        let n = b.entry(conn).or_insert(0);
        if *n >= PER_CONNECTION {
            return None;
        }
        *n += 1;
        Some(Slot {
            conn,
            busy: busy.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut b = lock(&self.busy);
        if let Some(n) = b.get_mut(&self.conn) {
            *n -= 1;
            if *n == 0 {
                b.remove(&self.conn);
            }
        }
    }
}

/// A client's cross-pipeline request, for the relay service.
struct Job {
    /// When the router handed it over.
    queued: Instant,
    conn: u64,
    client: ClientHandle,
    id: Option<Value>,
    session: Option<String>,
    cross: Cross,
    /// Its client connection's place in the service, given back once it is answered
    /// (finding 11 of review R41: not when the work of a job answered late ends).
    _slot: Option<Slot>,
}

impl Job {
    /// Answers the client: `Ok` as a void invoke, `Err` with the error as it came.
    fn answer(&self, r: Result<(), Value>) {
        let Some(id) = self.id.clone() else {
            return;
        };
        let mut m = Map::new();
        m.insert("id".into(), id);
        m.insert("jsonrpc".into(), Value::from("2.0"));
        match r {
            Ok(()) => {
                let mut result = json!({"value": null});
                if let Some(s) = &self.session {
                    result["sessionId"] = Value::from(s.clone());
                }
                m.insert("result".into(), result)
            }
            Err(e) => m.insert("error".into(), e),
        };
        self.client.send(self.conn, Value::Object(m).to_string());
    }
}

/// The router's side: hands cross-pipeline requests to the relay service.
pub(crate) struct Hook {
    tx: mpsc::Sender<(Job, Turn)>,
    rx: Mutex<Option<mpsc::Receiver<(Job, Turn)>>>,
    table: Arc<Mutex<Table>>,
    turns: Arc<Mutex<Turns>>,
    busy: Busy,
    /// How many relays of one source an element feeds at most (`--relay-fanout`).
    fanout: usize,
}

impl Default for Hook {
    fn default() -> Hook {
        Hook::new(super::RELAY_FANOUT)
    }
}

impl Hook {
    /// The hook of an entry whose relays of one source form a tree of fan-out `fanout`
    /// ([`tree`]; 1 at least).
    pub(crate) fn new(fanout: usize) -> Hook {
        let (tx, rx) = mpsc::channel(JOBS);
        Hook {
            tx,
            rx: Mutex::new(Some(rx)),
            table: Arc::default(),
            turns: Arc::default(),
            busy: Arc::default(),
            fanout: fanout.max(1),
        }
    }

    /// Takes `c`, the request `req` of `ask` (answered later by the service), unless it is a
    /// `disconnect` that no relay of this entry carries and no request waits for: then
    /// `false`, and it is routed as any.
    pub(crate) fn take(&self, ask: &Ask<'_>, req: &Map<String, Value>, c: Cross) -> bool {
        let key = c.key();
        if !c.connect
            && lock(&self.table).ends(&key).is_none()
            && !lock(&self.turns).tails.contains_key(&key)
        {
            return false;
        }
        let mut job = Job {
            conn: ask.conn,
            client: ask.client.clone(),
            id: req.get("id").cloned(),
            session: ask.session.clone(),
            cross: c,
            queued: Instant::now(),
            _slot: None,
        };
        let Some(slot) = Slot::take(&self.busy, ask.conn) else {
            let m = format!("this connection has {PER_CONNECTION} connects or disconnects across pipelines in progress; try again once one is answered");
            let e = KurentoError::new(ErrorCode::NotEnoughResources, m);
            job.answer(Err(about(e.to_json(), &job.cross)));
            return true;
        };
        job._slot = Some(slot);
        let turn = Turn::take(&self.turns, key);
        if let Err(e) = self.tx.try_send((job, turn)) {
            let (job, mut turn) = e.into_inner();
            job.answer(Err(about(not_running(), &job.cross)));
            // Its place goes once the request before it is done (the line keeps its order).
            tokio::spawn(async move { turn.wait().await });
        }
        true
    }
}

/// Starts the relay service of `router`'s entry (once; in a cluster only). The task ends
/// after `shutdown`, once the relays it made are released ([`STOP_WAIT`] at most).
pub(crate) fn start(
    router: Arc<Router>,
    core: Core,
    mut shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut jobs = lock(&router.relays.rx).take()?;
    let (table, fanout) = (router.relays.table.clone(), router.relays.fanout);
    Some(tokio::spawn(async move {
        let Some(svc) = Service::open(router, core, table, fanout).await else {
            refuse_queued(&mut jobs);
            return;
        };
        let (stop_janitor, stop) = watch::channel(false);
        let mut janitor = tokio::spawn(janitor::run(svc.clone(), stop));
        loop {
            tokio::select! {
                j = jobs.recv() => match j {
                    Some((job, turn)) => {
                        let svc = svc.clone();
                        tokio::spawn(async move { svc.serve(job, turn).await });
                    }
                    None => break,
                },
                _ = shutdown.changed() => break,
            }
        }
        // Running jobs take no further step (what they made is released as on any failure;
        // the table takes no relay once emptied below); the janitor stops after its pass;
        // queued jobs are answered; then every relay and leftover is released, and the
        // jobs and the janitor's pass are waited for (all within STOP_WAIT).
        svc.stopping.store(true, Ordering::SeqCst);
        let _ = stop_janitor.send(true);
        refuse_queued(&mut jobs);
        let all = async {
            let _ = tokio::join!(&mut janitor, svc.release_all(), svc.idle());
        };
        if tokio::time::timeout(STOP_WAIT, all).await.is_err() {
            janitor.abort();
            tracing::warn!(
                "relay: not every relay was released within {} s of the stop",
                STOP_WAIT.as_secs()
            );
        }
    }))
}

/// The answer to a request the relay service cannot take (its queue full, or it stops).
fn not_running() -> Value {
    let m = "the relays between pipelines are busy or not running; try again";
    KurentoError::new(ErrorCode::NotEnoughResources, m).to_json()
}

/// Closes the queue of `jobs` and answers those in it `40009` (the service stops).
fn refuse_queued(jobs: &mut mpsc::Receiver<(Job, Turn)>) {
    jobs.close();
    while let Ok((job, turn)) = jobs.try_recv() {
        job.answer(Err(about(not_running(), &job.cross)));
        drop(turn);
    }
}

/// Waits until the relay service started by [`start`] released its relays after the
/// shutdown (bounded by [`STOP_WAIT`] there; this wait by a little more).
pub(crate) async fn stopped(service: Option<tokio::task::JoinHandle<()>>) {
    if let Some(h) = service {
        let _ = tokio::time::timeout(STOP_WAIT + Duration::from_millis(500), h).await;
    }
}
