//! The server's part in cluster coordination (crates/fluo-cluster, docs/cluster.md).
//!
//! A task of its own registers this node, heartbeats every second with its load, claims each
//! media pipeline when the engine creates it and releases it when the engine destroys it. The
//! engine only sends it messages and never waits on it, so a Redis that is slow or down delays
//! nothing but coordination: the task logs when Redis becomes unreachable and when it is back,
//! and then writes again what it could not (its claims and releases: a Redis restarted empty
//! has lost them). Without `--cluster` the same task runs on the in-process store.

use crate::config::Config;
use crate::host::ProcHost;
use crate::lock;
use crate::Ops;
use fluo_cluster::{Coordinator, Error, NodeId, NodeInfo, NodeRecord, NodeStats};
use fluo_core::{Element, Factory, FactoryCx, Host};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the engine tells the task.
pub(crate) enum Change {
    /// A pipeline was created.
    Claim(String),
    /// A pipeline was destroyed.
    Release(String),
}

/// Where the engine's changes go.
pub(crate) type Changes = mpsc::UnboundedSender<Change>;

/// How many claims a re-claim after an outage writes between two heartbeats.
const SYNC_BATCH: usize = 200;

/// How long a heartbeat waits for the engine's and the media plane's readings.
const READING_WAIT: Duration = Duration::from_millis(200);

/// What the request routing reads of coordination, kept up to date by the task and the
/// pipeline factory: this engine's pipelines, and the live nodes as last listed.
#[derive(Default)]
pub(crate) struct View {
    local: Mutex<HashSet<String>>,
    /// The nodes of the last listing; `None` while the store does not answer.
    nodes: Mutex<Option<Arc<Vec<NodeRecord>>>>,
    /// The last listing that succeeded (where nodes are reached while the store is down).
    known: Mutex<Arc<Vec<NodeRecord>>>,
    /// This node's boot once registered (0 before).
    boot: std::sync::atomic::AtomicU64,
    /// How many listings were taken (each tells the nodes' load afresh).
    listings: std::sync::atomic::AtomicU64,
    /// The nodes (in a boot) a listing no longer showed, and since when.
    vanished: Mutex<HashMap<NodeId, (u64, Instant)>>,
    /// Pipelines released through this node (on its engine, or through a link).
    released: Mutex<Recent>,
}

/// How long a vanished node is remembered (past that, it counts as missing for long).
const VANISHED_KEPT: Duration = Duration::from_secs(3600);

/// How many released pipelines are remembered.
const RELEASED_KEPT: usize = 4096;

/// A bounded set of ids: past its limit, the oldest is forgotten.
#[derive(Default)]
struct Recent {
    set: HashSet<String>,
    order: std::collections::VecDeque<String>,
}

impl Recent {
    fn add(&mut self, id: &str, limit: usize) {
        if self.set.contains(id) {
            return;
        }
        while self.order.len() >= limit.max(1) {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(id.to_string());
        self.order.push_back(id.to_string());
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }
}

impl View {
    /// Whether this node's engine holds pipeline `p`.
    pub(crate) fn is_local(&self, p: &str) -> bool {
        lock(&self.local).contains(p)
    }

    /// The live nodes, `None` while the store does not answer.
    pub(crate) fn nodes(&self) -> Option<Arc<Vec<NodeRecord>>> {
        lock(&self.nodes).clone()
    }

    /// The record of `node` in its `boot`, if that boot is live (while the store does not
    /// answer: as last listed).
    pub(crate) fn record(&self, node: &NodeId, boot: u64) -> Option<NodeRecord> {
        let nodes = self.nodes().unwrap_or_else(|| lock(&self.known).clone());
        nodes
            .iter()
            .find(|n| n.info.id == *node && n.boot == boot)
            .cloned()
    }

    /// The last listing that succeeded.
    pub(crate) fn last_listed(&self) -> Arc<Vec<NodeRecord>> {
        lock(&self.known).clone()
    }

    /// This node's boot, once it registered.
    pub(crate) fn boot(&self) -> Option<u64> {
        let b = self.boot.load(std::sync::atomic::Ordering::Acquire);
        (b != 0).then_some(b)
    }

    /// Sets this node's boot (as registering does).
    #[cfg(test)]
    pub(crate) fn set_boot(&self, boot: u64) {
        self.boot.store(boot, std::sync::atomic::Ordering::Release);
    }

    /// The count of listings taken so far.
    pub(crate) fn listings(&self) -> u64 {
        self.listings.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Pipeline `p` was released here (its id is never used again).
    pub(crate) fn released(&self, p: &str) {
        lock(&self.released).add(p, RELEASED_KEPT);
    }

    /// Whether pipeline `p` was released here lately.
    pub(crate) fn was_released(&self, p: &str) -> bool {
        lock(&self.released).contains(p)
    }

    /// `None` while `node` in `boot` is listed (or, while the store does not answer, was
    /// in the last listing); else how long the listings have not shown it (`Duration::MAX`
    /// when that is not remembered).
    pub(crate) fn unlisted_for(&self, node: &NodeId, boot: u64) -> Option<Duration> {
        if self.record(node, boot).is_some() {
            return None;
        }
        match lock(&self.vanished).get(node) {
            Some((b, at)) if *b == boot => Some(at.elapsed()),
            _ => Some(Duration::MAX),
        }
    }

    pub(crate) fn listed(&self, nodes: Option<Vec<NodeRecord>>) {
        self.listings
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let nodes = nodes.map(Arc::new);
        if let Some(n) = &nodes {
            let before = std::mem::replace(&mut *lock(&self.known), n.clone());
            self.vanish(&before, n);
        }
        *lock(&self.nodes) = nodes;
    }

    /// Notes the nodes of `before` that `now` lacks (and forgets those listed again).
    fn vanish(&self, before: &[NodeRecord], now: &[NodeRecord]) {
        let listed = |r: &NodeRecord| {
            now.iter()
                .any(|n| n.info.id == r.info.id && n.boot == r.boot)
        };
        let mut vanished = lock(&self.vanished);
        vanished.retain(|id, (_, at)| {
            at.elapsed() < VANISHED_KEPT && !now.iter().any(|n| n.info.id == *id)
        });
        for r in before.iter().filter(|r| !listed(r)) {
            vanished
                .entry(r.info.id.clone())
                .or_insert((r.boot, Instant::now()));
        }
    }
}

/// The node this server is, on its store.
pub(crate) struct Plan {
    coordinator: Coordinator,
    info: NodeInfo,
    /// On a cluster (its load is measured for the heartbeat), not in process.
    clustered: bool,
    view: Arc<View>,
    router: Option<Arc<crate::link::Router>>,
}

impl Plan {
    /// The plan from the configuration: the WebSocket listener is on `local`, the
    /// node-to-node link's on `peer_port` (in a cluster).
    pub(crate) fn new(
        config: &Config,
        local: SocketAddr,
        peer_port: Option<u16>,
    ) -> std::io::Result<Plan> {
        let (coordinator, clustered) = match &config.cluster {
            Some(url) => (
                Coordinator::redis(url).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--cluster: {e}"))
                })?,
                true,
            ),
            None => (Coordinator::in_process(), false),
        };
        let host = match &config.advertise {
            Some(a) => a.clone(),
            None => crate::announced(config.bind).to_string(),
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let port = local.port();
        let id = config
            .node_id
            .clone()
            .unwrap_or_else(|| default_node_id(port));
        let info = NodeInfo {
            id,
            signalling: format!("ws://{host}:{port}/{}", config.path),
            peer: format!("{}:{}", peer_host(config, &host), peer_port.unwrap_or(port)),
            capacity: config.max_objects as u64,
        };
        let view = Arc::new(View::default());
        let router = match (&config.cluster, &config.cluster_secret) {
            (Some(url), Some(secret)) => Some(Arc::new(crate::link::Router::new(
                info.id.clone(),
                view.clone(),
                Coordinator::redis(url).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--cluster: {e}"))
                })?,
                (Arc::new(secret.clone()), config.peer_silence),
                config.session_grace,
                config.relay_fanout,
            ))),
            _ => None,
        };
        Ok(Plan {
            coordinator,
            info,
            clustered,
            view,
            router,
        })
    }

    /// What routing reads.
    pub(crate) fn view(&self) -> Arc<View> {
        self.view.clone()
    }

    /// What the pipeline factory keeps up to date: the view, in a cluster only (nothing
    /// routes without one).
    pub(crate) fn routed_view(&self) -> Option<Arc<View>> {
        self.clustered.then(|| self.view.clone())
    }

    /// This node's id.
    pub(crate) fn me(&self) -> NodeId {
        self.info.id.clone()
    }

    /// The request router (in a cluster only).
    pub(crate) fn router(&self) -> Option<Arc<crate::link::Router>> {
        self.router.clone()
    }
}

/// Where other nodes reach the link: `--peer-bind`'s address when it is one, else the
/// advertised host.
fn peer_host(config: &Config, advertised: &str) -> String {
    match config.peer_bind {
        Some(std::net::IpAddr::V6(ip)) if !ip.is_unspecified() => format!("[{ip}]"),
        Some(ip) if !ip.is_unspecified() => ip.to_string(),
        _ => advertised.to_string(),
    }
}

/// `<host name>:<port>`, as a node id.
fn default_node_id(port: u16) -> NodeId {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    NodeId::sanitized(&format!(
        "{}:{port}",
        if host.is_empty() { "fluo" } else { host }
    ))
}

/// Starts the task; it ends once every sender of its changes is gone (the engine and its
/// pipelines dropped), after removing this node's record.
pub(crate) fn start(
    plan: Plan,
    host: ProcHost,
    ops: Arc<Ops>,
) -> (Changes, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let node = Node {
        router: plan.router,
        view: plan.view,
        c: plan.coordinator,
        info: plan.info,
        clustered: plan.clustered,
        registered: false,
        reachable: true,
        superseded: false,
        owned: HashSet::new(),
        unreleased: HashSet::new(),
        unsynced: false,
        written: HashSet::new(),
        reclaiming: false,
        load: Load::default(),
    };
    let done = tokio::spawn(run(node, rx, host, ops));
    (tx, done)
}

/// MediaPipeline's factory: each pipeline is claimed when created, released when the
/// engine drops it (destroyed, or never added after a failed create).
pub(crate) fn pipeline_factory(changes: Changes, view: Option<Arc<View>>) -> Box<dyn Factory> {
    Box::new(
        move |cx: &FactoryCx<'_>| -> Result<Box<dyn Element>, fluo_api::KurentoError> {
            if let Some(v) = &view {
                lock(&v.local).insert(cx.id.to_string());
            }
            let _ = changes.send(Change::Claim(cx.id.to_string()));
            Ok(Box::new(OwnedPipeline {
                id: cx.id.to_string(),
                changes: changes.clone(),
                view: view.clone(),
            }))
        },
    )
}

/// A pipeline's behaviour: none of its own (as the engine's built-in one), and its release
/// told to the task when it goes.
struct OwnedPipeline {
    id: String,
    changes: Changes,
    view: Option<Arc<View>>,
}

impl Element for OwnedPipeline {}

impl Drop for OwnedPipeline {
    fn drop(&mut self) {
        if let Some(v) = &self.view {
            lock(&v.local).remove(&self.id);
            v.released(&self.id);
        }
        let _ = self
            .changes
            .send(Change::Release(std::mem::take(&mut self.id)));
    }
}

async fn run(
    mut node: Node,
    mut rx: mpsc::UnboundedReceiver<Change>,
    host: ProcHost,
    ops: Arc<Ops>,
) {
    if !node.clustered {
        // In process nothing reads the record: registered once, no heartbeats.
        let stats = node.load.read(false, &host, &ops).await;
        node.beat(&stats).await;
        while let Some(c) = rx.recv().await {
            node.apply(c).await;
        }
        return;
    }
    // Clients' sessions are written by a task of their own, woken after each heartbeat that
    // reached the store (a slow write delays neither heartbeats nor claims).
    let publisher =
        (node.router.as_ref()).map(|r| tokio::spawn(crate::link::publishing(Arc::downgrade(r))));
    let mut tick = tokio::time::interval(fluo_cluster::HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = rx.recv() => match change {
                Some(c) => node.apply(c).await,
                None => break,
            },
            // A drain that starts or ends is published at once (placement on the other
            // nodes sees it at their next listing), not at the next tick.
            _ = tick.tick() => node.tick(&host, &ops).await,
            _ = ops.drain_changed() => node.tick(&host, &ops).await,
        }
    }
    if let Some(p) = publisher {
        p.abort();
    }
    if node.registered && node.reachable {
        if let Err(e) = node.c.leave().await {
            tracing::debug!("cluster: leaving: {e}");
        }
    }
    tracing::debug!("cluster task stopped");
}

/// The task's state.
struct Node {
    /// The request router (in a cluster): its clients' sessions are written (by a task of
    /// their own) after each heartbeat that reached the store.
    router: Option<Arc<crate::link::Router>>,
    view: Arc<View>,
    c: Coordinator,
    info: NodeInfo,
    clustered: bool,
    registered: bool,
    /// The store answered the last call.
    reachable: bool,
    /// A later boot of this node id registered (logged once).
    superseded: bool,
    /// The pipelines this node has.
    owned: HashSet<String>,
    /// Pipelines destroyed whose release was not written.
    unreleased: HashSet<String>,
    /// Some claims were not written.
    unsynced: bool,
    /// The pipelines whose claim was written (and not released since) since the store last
    /// lost this node's records: a heartbeat tells their number, and the store holding fewer
    /// says it lost some.
    written: HashSet<String>,
    /// Claiming again after the store lost this node's records (the settling marker is set
    /// again by each heartbeat meanwhile).
    reclaiming: bool,
    load: Load,
}

impl Node {
    /// A heartbeat with the load, then a listing.
    async fn tick(&mut self, host: &ProcHost, ops: &Ops) {
        let stats = self.load.read(self.clustered, host, ops).await;
        self.beat(&stats).await;
        self.list().await;
        if let (Some(r), true) = (&self.router, self.registered && self.reachable) {
            r.wake_publish();
        }
    }

    /// Lists the live nodes for routing (none while the store does not answer).
    async fn list(&mut self) {
        let nodes = if self.registered && self.reachable {
            self.c.nodes().await.ok()
        } else {
            None
        };
        self.view.listed(nodes);
    }

    /// The store failed with `e`: logged once per outage.
    fn failed(&mut self, what: &str, e: &Error) {
        if e.is_unreachable() {
            if self.reachable {
                tracing::warn!(
                    store = self.c.kind(),
                    "cluster: {what}: {e}; serving on, coordination resumes when it is back"
                );
            }
            self.reachable = false;
        } else if let Error::Superseded { .. } = e {
            if !self.superseded {
                tracing::error!("cluster: {e}");
            }
            self.superseded = true;
        } else {
            tracing::warn!("cluster: {what}: {e}");
        }
    }

    /// The store answered. After an outage, every claim is written again: Redis may have
    /// restarted without its data.
    fn answered(&mut self) {
        if !self.reachable {
            tracing::info!(
                store = self.c.kind(),
                "cluster: the coordination store is back"
            );
            self.reachable = true;
            self.unsynced = true;
        }
    }

    /// The store had lost this node's records (Redis restarted empty; its connection may
    /// have been made again without a call failing, so [`Node::answered`] may not have seen
    /// an outage): every claim is written again.
    fn lost(&mut self) {
        if !self.reclaiming {
            tracing::info!(
                store = self.c.kind(),
                "cluster: the coordination store lost this node's records (restarted empty, or keys removed); claiming its pipelines again"
            );
        }
        self.unsynced = true;
        self.reclaiming = true;
        self.written.clear();
        if let Some(r) = &self.router {
            r.republish();
        }
    }

    /// A heartbeat telling this node's written claims; `Ok(true)` when the store lost
    /// records (then [`Node::lost`] was called).
    async fn heartbeat(&mut self, stats: &NodeStats) -> Result<bool, Error> {
        let beat = fluo_cluster::Beat {
            claimed: self.written.len(),
            reclaiming: self.reclaiming,
        };
        let lost = self.c.heartbeat_with(stats, beat).await?;
        if lost {
            self.lost();
        }
        Ok(lost)
    }

    async fn apply(&mut self, change: Change) {
        match change {
            Change::Claim(p) => {
                self.owned.insert(p.clone());
                if !(self.registered && self.reachable) {
                    self.unsynced = true;
                    return;
                }
                match self.c.claim(&p).await {
                    Ok(()) => {
                        tracing::debug!(pipeline = %p, "cluster: claimed");
                        self.written.insert(p);
                    }
                    Err(e) => {
                        self.unsynced |= e.is_unreachable();
                        self.failed("claiming a pipeline", &e);
                    }
                }
            }
            Change::Release(p) => {
                self.owned.remove(&p);
                self.written.remove(&p);
                if !(self.registered && self.reachable) {
                    self.unreleased.insert(p);
                    return;
                }
                if let Err(e) = self.c.release(&p).await {
                    if e.is_unreachable() {
                        self.unreleased.insert(p);
                    }
                    self.failed("releasing a pipeline", &e);
                }
            }
        }
    }

    /// A heartbeat (a registration until one succeeds), then what could not be written.
    async fn beat(&mut self, stats: &NodeStats) {
        let r = if self.registered {
            self.heartbeat(stats).await.map(|_| ())
        } else {
            match self.c.register(self.info.clone(), stats).await {
                Ok(boot) if !self.clustered => {
                    // A single node: nothing to say at INFO (clustering is off).
                    tracing::debug!(node = %self.info.id, boot, "in-process coordination");
                    self.registered = true;
                    Ok(())
                }
                Ok(boot) => {
                    self.view
                        .boot
                        .store(boot, std::sync::atomic::Ordering::Release);
                    tracing::info!(
                        node = %self.info.id,
                        boot,
                        store = self.c.kind(),
                        signalling = %self.info.signalling,
                        "cluster: node registered"
                    );
                    self.registered = true;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        match r {
            Ok(()) => {
                self.answered();
                if self.unsynced || !self.unreleased.is_empty() {
                    self.sync(stats).await;
                }
            }
            Err(e) if self.registered => self.failed("heartbeat", &e),
            Err(e) => self.failed("registering", &e),
        }
    }

    /// Writes the releases and claims that were not written; stops at the first failure to
    /// reach the store (the next heartbeat tries again). A heartbeat goes between batches of
    /// [`SYNC_BATCH`] claims, so that a long re-claim on a slow link does not let this node's
    /// record expire.
    async fn sync(&mut self, stats: &NodeStats) {
        for p in self.unreleased.clone() {
            match self.c.release(&p).await {
                Err(e) if e.is_unreachable() => return self.failed("releasing a pipeline", &e),
                Err(e) => self.failed("releasing a pipeline", &e),
                Ok(()) => {}
            }
            self.unreleased.remove(&p);
        }
        if !self.unsynced {
            return;
        }
        // Again from the start when a heartbeat between batches finds records lost anew
        // (Redis restarted again during the re-claim); after a few times, at the next tick.
        let mut starts = 0;
        'again: loop {
            starts += 1;
            for (i, p) in self.owned.clone().into_iter().enumerate() {
                if i > 0 && i % SYNC_BATCH == 0 {
                    match self.heartbeat(stats).await {
                        Err(e) => return self.failed("heartbeat", &e),
                        Ok(true) if starts < 3 => continue 'again,
                        Ok(true) => return,
                        Ok(false) => {}
                    }
                }
                match self.c.claim(&p).await {
                    Err(e) if e.is_unreachable() => return self.failed("claiming a pipeline", &e),
                    Err(e) => self.failed("claiming a pipeline", &e),
                    Ok(()) => {
                        self.written.insert(p);
                    }
                }
            }
            break;
        }
        tracing::info!(
            pipelines = self.owned.len(),
            "cluster: this node's pipelines claimed again"
        );
        self.unsynced = false;
        self.reclaiming = false;
    }
}

/// The load a heartbeat tells: read from what the server already counts (the engine's
/// elements, the WebRTC endpoints' sent packets, the CPU sampler), once a second.
#[derive(Default)]
struct Load {
    endpoints: u64,
    /// The last reading of RTP packets sent, and when.
    sent: Option<(Instant, u64)>,
    pps: u64,
}

impl Load {
    async fn read(&mut self, clustered: bool, host: &ProcHost, ops: &Ops) -> NodeStats {
        if clustered {
            let (endpoints, sent) = ops.load_reading(READING_WAIT).await;
            if let Some(n) = endpoints {
                self.endpoints = n;
            }
            if let Some(total) = sent {
                let now = Instant::now();
                if let Some((at, before)) = self.sent {
                    let secs = now.duration_since(at).as_secs_f64();
                    if secs > 0.0 {
                        self.pps = (total.saturating_sub(before) as f64 / secs).round() as u64;
                    }
                }
                self.sent = Some((now, total));
            }
        }
        NodeStats {
            cpu_percent: host.used_cpu_percent(1000),
            egress_pps: self.pps,
            endpoints: self.endpoints,
            draining: ops.draining(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, boot: u64) -> NodeRecord {
        NodeRecord {
            boot,
            info: NodeInfo {
                id: NodeId::new(id).unwrap(),
                signalling: "ws://127.0.0.1:9/kurento".into(),
                peer: "127.0.0.1:9".into(),
                capacity: 10,
            },
            stats: NodeStats::default(),
        }
    }

    #[test]
    fn a_node_missing_from_the_listings_counts_from_the_first_listing_without_it() {
        let v = View::default();
        let b = NodeId::new("node-b").unwrap();
        v.listed(Some(vec![record("node-a", 1), record("node-b", 4)]));
        assert_eq!(v.unlisted_for(&b, 4), None);
        v.listed(Some(vec![record("node-a", 1)]));
        let first = v.unlisted_for(&b, 4).expect("not listed");
        assert!(first < Duration::from_secs(1), "{first:?}");
        std::thread::sleep(Duration::from_millis(30));
        // Later listings without it do not start the count again.
        v.listed(Some(vec![record("node-a", 1)]));
        assert!(v.unlisted_for(&b, 4).unwrap() >= first + Duration::from_millis(30));
        // The store not answering: as last listed.
        v.listed(None);
        assert!(v.unlisted_for(&b, 4).unwrap() >= Duration::from_millis(30));
        // An earlier boot, or a node never seen: missing for longer than remembered.
        assert_eq!(v.unlisted_for(&b, 3), Some(Duration::MAX));
        let c = NodeId::new("node-c").unwrap();
        assert_eq!(v.unlisted_for(&c, 1), Some(Duration::MAX));
        // Listed again (a freeze that ended): not missing, and a later loss counts afresh.
        v.listed(Some(vec![record("node-a", 1), record("node-b", 4)]));
        assert_eq!(v.unlisted_for(&b, 4), None);
        v.listed(Some(vec![record("node-a", 1)]));
        assert!(v.unlisted_for(&b, 4).unwrap() < Duration::from_millis(30));
    }

    #[test]
    fn released_pipelines_are_remembered_up_to_a_bound() {
        let v = View::default();
        for n in 0..RELEASED_KEPT + 10 {
            v.released(&format!("p{n}"));
        }
        v.released(&format!("p{}", RELEASED_KEPT + 9));
        assert!(!v.was_released("p0") && !v.was_released("p9"));
        assert!(v.was_released("p10") && v.was_released(&format!("p{}", RELEASED_KEPT + 9)));
        assert_eq!(lock(&v.released).order.len(), RELEASED_KEPT);
        assert_eq!(lock(&v.released).set.len(), RELEASED_KEPT);
    }
}
