//! The relay service: a client's cross-pipeline connect or disconnect served through this
//! entry's relays, made, fed and released over the entry's own connection.

use super::janitor::{gone, Ends, Table};
use super::rpc::Rpc;
use super::{about, Cross, Job, Key, Step, Turn, EDGE_KEYFRAME_MS, JOB_WAIT};
use crate::core_loop::Core;
use crate::link::route::{pipeline_of, Router};
use crate::lock;
use fluo_api::{ErrorCode, KurentoError};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a new relay's two ends get to connect (ICE and DTLS) before the client's
/// `connect` is answered with an error.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// The relay service: the entry's virtual connection and its relays.
pub(super) struct Service {
    router: Arc<Router>,
    pub(super) rpc: Rpc,
    pub(super) table: Arc<Mutex<Table>>,
    /// One lock per relay: a client's request on it and the janitor's look do not
    /// interleave (requests wait for each other in their [`Turn`]s before).
    keys: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    /// Set when the entry stops: jobs take no further step ([`Step::at`]).
    pub(super) stopping: Arc<AtomicBool>,
    /// The jobs whose work runs (an undo included), for the stop to wait for.
    running: Arc<AtomicUsize>,
    /// How many relays of one source an element feeds at most ([`super::tree`]).
    pub(super) fanout: usize,
}

/// A job's work that runs, counted in [`Service::running`] until dropped.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn new(n: &Arc<AtomicUsize>) -> Running {
        n.fetch_add(1, Ordering::SeqCst);
        Running(n.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Service {
    /// The service of `router`'s entry, its connection opened on `core` (`None` when the
    /// engine is gone).
    pub(super) async fn open(
        router: Arc<Router>,
        core: Core,
        table: Arc<Mutex<Table>>,
        fanout: usize,
    ) -> Option<Arc<Service>> {
        let rpc = Rpc::open(core).await?;
        Some(Arc::new(Service {
            router,
            rpc,
            table,
            keys: Mutex::default(),
            stopping: Arc::default(),
            running: Arc::default(),
            fanout,
        }))
    }

    pub(super) fn key_lock(&self, k: &Key) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.keys).entry(k.clone()).or_default().clone()
    }

    /// Forgets `k`'s lock when no one else holds it and its relay is gone.
    pub(super) fn unlock(&self, k: &Key, l: Arc<tokio::sync::Mutex<()>>) {
        let mut keys = lock(&self.keys);
        drop(l);
        let idle = keys.get(k).is_some_and(|a| Arc::strong_count(a) == 1);
        if idle && lock(&self.table).ends(k).is_none() {
            keys.remove(k);
        }
    }

    /// Serves `job` in its `turn`, answered within [`JOB_WAIT`] of its queueing: a job still
    /// running then is answered `40004` naming its step and takes no further step (what it
    /// made is released as on any failure); a connect it completes anyway is undone (the
    /// janitor then releases the relay if it feeds nothing else). The next request on the
    /// relay waits until all that is done.
    pub(super) async fn serve(self: Arc<Self>, job: Job, mut turn: Turn) {
        let step = Step::new(&self.stopping);
        let mut work = {
            let (svc, c, step) = (self.clone(), job.cross.clone(), step.clone());
            let running = Running::new(&self.running);
            tokio::spawn(async move {
                let _running = running;
                turn.wait().await;
                let r = svc.run(&c, &step).await;
                (r, turn)
            })
        };
        let deadline = tokio::time::Instant::from_std(job.queued + JOB_WAIT);
        let r = tokio::select! {
            r = &mut work => r,
            _ = tokio::time::sleep_until(deadline) => {
                let late = step.late(&job.cross);
                tracing::info!(source = %job.cross.source, sink = %job.cross.sink, "relay: {}", late["message"]);
                job.answer(Err(late));
                let connect = job.cross.connect;
                let undo = Cross { connect: false, ..job.cross.clone() };
                let running = Running::new(&self.running);
                tokio::spawn(async move {
                    let _running = running;
                    if let Ok((r, turn)) = work.await {
                        // Undone only if it fed the sink anew (a connect repeated is not).
                        if connect && r == Ok(true) {
                            let _ = self.run(&undo, &Step::new(&self.stopping)).await;
                        }
                        drop(turn);
                    }
                });
                return;
            }
        };
        match r {
            Ok((r, turn)) => {
                job.answer(r.map(drop).map_err(|e| about(e, &job.cross)));
                drop(turn);
            }
            Err(_) => {
                let e = KurentoError::new(ErrorCode::ConnectError, "the relay service failed");
                job.answer(Err(about(e.to_json(), &job.cross)));
            }
        }
    }

    /// `c`, under its relay's lock; whether it connected the sink anew (a connect of a sink
    /// the relay fed before did not).
    async fn run(&self, c: &Cross, step: &Step) -> Result<bool, Value> {
        let key = c.key();
        step.at("waiting for the janitor's check of this relay")?;
        let l = self.key_lock(&key);
        let guard = l.lock().await;
        let t0 = Instant::now();
        let r = if c.connect {
            self.connect(&key, c, step).await
        } else {
            self.disconnect(&key, c, step).await.map(|()| false)
        };
        drop(guard);
        self.unlock(&key, l);
        match &r {
            Ok(_) => {
                tracing::info!(source = %c.source, sink = %c.sink, connect = c.connect, ms = t0.elapsed().as_millis() as u64, "relay: done")
            }
            Err(e) => {
                tracing::info!(source = %c.source, sink = %c.sink, connect = c.connect, "relay: failed: {}", e["message"])
            }
        }
        r
    }

    /// `c.source.connect(c.sink)` through this entry's relay for `k`, made now if there is
    /// none (or its ends are gone).
    async fn connect(&self, k: &Key, c: &Cross, step: &Step) -> Result<bool, Value> {
        let existing = lock(&self.table).ends(k);
        if let Some(e) = existing {
            step.at("asking the relay what it feeds")?;
            let fed = self.invoke(&e.inp, "getSinkConnections", json!({})).await;
            let fed = fed.as_ref().ok().and_then(Value::as_array);
            // The sink fed before (of the type asked, if one is): a connect repeated.
            let kind = c.params.get("mediaType");
            let same = |s: &Value| {
                s["sink"] == c.sink.as_str() && kind.is_none_or(|t| s.get("type") == Some(t))
            };
            let again = fed.is_some_and(|f| f.iter().any(same));
            step.at("connecting the sink to the relay")?;
            let Err(err) = self.feed(&e, c).await else {
                return Ok(!again);
            };
            step.at("checking the relay's ends")?;
            if !self.an_end_gone(&e).await {
                return Err(err);
            }
            tracing::info!(source = %c.source, "relay: an end is gone; making it again");
            lock(&self.table).remove(k);
            self.release(&e).await;
        }
        // Both ends named before anything is made (finding 7 of review R40): a source or a
        // sink that does not exist is answered as the owner answers (40101), nothing built.
        step.at("checking the source")?;
        self.invoke(&c.source, "getName", json!({})).await?;
        step.at("checking the sink")?;
        self.invoke(&c.sink, "getName", json!({})).await?;
        // Fed by the source, or by another relay of it when the source feeds enough.
        let (e, place) = self
            .grow(k, &HashSet::from([k.clone()]), step, true)
            .await?;
        let fed = match step.at("connecting the sink to the relay") {
            Ok(()) => self.feed(&e, c).await,
            Err(late) => Err(late),
        };
        if let Err(err) = fed {
            self.release(&e).await;
            return Err(err);
        }
        let added = lock(&self.table).add(k.clone(), e.clone());
        drop(place);
        if !added {
            // The entry stopped meanwhile (its relays were released): this one goes too.
            self.release(&e).await;
            let m = "this node stops; the relay made meanwhile is released";
            return Err(KurentoError::new(ErrorCode::ConnectError, m).to_json());
        }
        Ok(true)
    }

    /// `relayIn.connect(sink)` with the client's other parameters.
    async fn feed(&self, e: &Ends, c: &Cross) -> Result<(), Value> {
        let mut args = c.params.clone();
        args.insert("sink".into(), Value::from(c.sink.clone()));
        self.invoke(&e.inp, "connect", Value::Object(args))
            .await
            .map(drop)
    }

    async fn disconnect(&self, k: &Key, c: &Cross, step: &Step) -> Result<(), Value> {
        let ends = lock(&self.table).ends(k);
        let Some(e) = ends else {
            // Released by the janitor meanwhile, or the connect before it failed: nothing
            // carries the pair.
            return Ok(());
        };
        step.at("disconnecting the sink from the relay")?;
        let mut args = c.params.clone();
        args.insert("sink".into(), Value::from(c.sink.clone()));
        self.invoke(&e.inp, "disconnect", Value::Object(args))
            .await
            .map(drop)
    }

    /// Whether an end of `e` is gone (answered 40101, as the janitor counts it); an end that
    /// does not answer now (its node unreachable) is not.
    async fn an_end_gone(&self, e: &Ends) -> bool {
        for o in [&e.inp, &e.out] {
            if gone(&self.invoke(o, "getName", json!({})).await) {
                return true;
            }
        }
        false
    }

    /// Makes a relay of `source` to pipeline `q`, its `relayOut` fed by `from` (the source,
    /// or another relay's `relayIn`) in `from`'s pipeline; what was made is released on
    /// failure.
    pub(super) async fn build(
        &self,
        source: &str,
        from: &str,
        q: &str,
        step: &Step,
    ) -> Result<Ends, Value> {
        let mut made = Ends::new(String::new(), String::new(), None);
        let r = self.assemble((source, from), q, &mut made, step).await;
        if r.is_err() {
            self.release(&made).await;
        }
        r.map(|()| made)
    }

    async fn assemble(
        &self,
        (source, from): (&str, &str),
        q: &str,
        made: &mut Ends,
        step: &Step,
    ) -> Result<(), Value> {
        let p = pipeline_of(from).unwrap_or_default();
        step.at("creating relayOut")?;
        let name = format!("fluo-relay-out:{source}");
        let ctor = json!({"mediaPipeline": p});
        made.out = self.endpoint(ctor, &name).await?;
        step.at("connecting the source to relayOut")?;
        self.invoke(from, "connect", json!({"sink": made.out}))
            .await?;
        step.at("creating relayIn")?;
        let name = format!("fluo-relay-in:{source}");
        // Its keyframe requests upstream: one a second at most (issue 22).
        let ctor = json!({"mediaPipeline": q, "fluoKeyframeInterval": EDGE_KEYFRAME_MS});
        made.inp = self.endpoint(ctor, &name).await?;
        step.at("negotiating the relay's ends")?;
        let offer = self.invoke(&made.out, "generateOffer", json!({})).await?;
        let answer = self
            .invoke(&made.inp, "processOffer", json!({"offer": offer}))
            .await?;
        self.invoke(&made.out, "processAnswer", json!({"answer": answer}))
            .await?;
        step.at("waiting for the relay's ends to connect")?;
        self.until_connected(&made.inp, &p, q).await
    }

    /// A hidden WebRtcEndpoint named `name`, made with the constructor parameters `ctor`
    /// (its pipeline's among them).
    async fn endpoint(&self, ctor: Value, name: &str) -> Result<String, Value> {
        let params = json!({"type": "WebRtcEndpoint", "constructorParams": ctor});
        let made = self.rpc.call(&self.router, "create", params).await?;
        let id = made["value"].as_str().unwrap_or_default().to_string();
        if let Err(e) = self.invoke(&id, "setName", json!({"name": name})).await {
            self.release_or_queue(&id).await;
            return Err(e);
        }
        Ok(id)
    }

    /// Waits until `inp`'s DTLS session with the other end is up ([`CONNECT_WAIT`] at most).
    async fn until_connected(&self, inp: &str, p: &str, q: &str) -> Result<(), Value> {
        let t0 = Instant::now();
        loop {
            let state = self.invoke(inp, "getConnectionState", json!({})).await?;
            if state == "CONNECTED" {
                return Ok(());
            }
            if t0.elapsed() >= CONNECT_WAIT {
                let message = format!(
                    "the relay from pipeline {p} to pipeline {q} did not connect within {} s (can their nodes reach each other's media ports?)",
                    CONNECT_WAIT.as_secs()
                );
                return Err(KurentoError::new(ErrorCode::ConnectError, message).to_json());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `object.op(params)`'s value.
    pub(super) async fn invoke(
        &self,
        object: &str,
        op: &str,
        params: Value,
    ) -> Result<Value, Value> {
        let p = json!({"object": object, "operation": op, "operationParams": params});
        let r = self.rpc.call(&self.router, "invoke", p).await?;
        Ok(r.get("value").cloned().unwrap_or(Value::Null))
    }

    pub(super) async fn release_one(&self, object: &str) -> Result<Value, Value> {
        let p = json!({"object": object});
        self.rpc.call(&self.router, "release", p).await
    }

    /// Releases `object`; one whose release failed but for being gone (40101) is queued
    /// for the janitor ([`super::janitor::Leftovers`]).
    async fn release_or_queue(&self, object: &str) {
        let r = self.release_one(object).await;
        if gone(&r) {
            return;
        }
        if let Err(e) = r {
            tracing::info!(
                object,
                "relay: release failed; the janitor tries again: {}",
                e["message"]
            );
            lock(&self.rpc.inbox.leftovers).add(object.to_string(), Instant::now());
        }
    }

    /// Releases both ends of `e` (those made), at once.
    pub(super) async fn release(&self, e: &Ends) {
        let one = |o: &str| {
            let o = o.to_string();
            async move {
                if !o.is_empty() {
                    self.release_or_queue(&o).await;
                }
            }
        };
        tokio::join!(one(&e.inp), one(&e.out));
    }

    /// Waits until no job's work runs (polled every 20 ms).
    pub(super) async fn idle(&self) {
        while self.running.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Releases every relay (the entry stops): the table's and the leftovers, all at once;
    /// the table takes no relay after this ([`Table::add`]).
    pub(super) async fn release_all(&self) {
        let all = lock(&self.table).take_all();
        let left = lock(&self.rpc.inbox.leftovers).take();
        tracing::info!(
            relays = all.len(),
            leftovers = left.len(),
            "relay: releasing every relay (stopping)"
        );
        let relays = all.iter().map(|e| self.release(e));
        let left = left.iter().map(|(o, _)| self.release_one(o));
        tokio::join!(
            futures_util::future::join_all(relays),
            futures_util::future::join_all(left)
        );
    }
}
