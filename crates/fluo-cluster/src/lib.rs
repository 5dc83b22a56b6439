//! Cluster coordination (issue 22, docs/cluster.md): which nodes are up and how loaded, which
//! node owns which media pipeline, and where a new pipeline should go.
//!
//! One [`Coordinator`] is one node's handle on a store: [`Coordinator::in_process`] for a
//! single node (no Redis; what the server uses without `--cluster`), or
//! [`Coordinator::redis`] for many nodes sharing a Redis 7. Both keep the same rules:
//!
//! - a node [registers](Coordinator::register) and gets its *boot*, a number that grows each
//!   time a node of that id registers (a restarted node has a higher boot);
//! - it [heartbeats](Coordinator::heartbeat) every second with its load; a node record
//!   expires [`NODE_TTL`] after its last heartbeat, so [`Coordinator::nodes`] lists live
//!   nodes only;
//! - it [claims](Coordinator::claim) each pipeline it creates: the record holds its id and
//!   boot; another node's claim fails while the owner is live, and only the owner
//!   [releases](Coordinator::release) it. An owner whose node record is gone, or carries
//!   another boot, is [gone](Ownership::Gone): that node died or restarted;
//! - [`place`] picks a node from a list of live ones (a pure function);
//! - an entry [writes](Coordinator::write_sessions) which owners each of its clients'
//!   sessions lives on, and another entry [reads](Coordinator::session_owners) it when
//!   that client reconnects there; a session's record lives as long as it is written again
//!   (the writer's TTL), so a session whose clients left expires with it.
//!
//! Every call on Redis is bounded by a time-out (500 ms by default) and fails with a typed
//! [`Error`] when Redis is unreachable; the next call tries to connect again. Nothing here
//! runs per packet: the server calls it from a task of its own, never from the media path.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod memory_store;
mod place;
mod redis_store;
#[cfg(feature = "test-support")]
pub mod testing;

pub use memory_store::InProcess;
pub use place::place;

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a node record lives after its last heartbeat.
pub const NODE_TTL: Duration = Duration::from_secs(3);
/// How long a pipeline's ownership record lives on Redis after its owner's last heartbeat
/// (so a dead node's records do not stay for ever; until then they read as
/// [`Ownership::Gone`]).
pub const OWNED_TTL: Duration = Duration::from_secs(600);
/// How long after a node found the store without its records (Redis restarted without
/// persistence) a pipeline nobody claims reads as [`Error::Settling`] rather than
/// [`Ownership::Unowned`]: every live node heartbeats, and claims its pipelines again,
/// within that time (a node that does not has lost its record anyway).
pub const SETTLE: Duration = NODE_TTL;

/// What a heartbeat tells the store of this node's claims ([`Coordinator::heartbeat_with`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Beat {
    /// How many pipelines this node claimed (each claim written, and not released since)
    /// in this boot: the store holding fewer lost some.
    pub claimed: usize,
    /// The node is claiming its pipelines again after the store lost them: the settling
    /// marker is set again, so that a re-claim longer than [`SETTLE`] stays covered.
    pub reclaiming: bool,
}

/// How often a node should heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// The default bound on one call to the store.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest node id.
pub const NODE_ID_MAX: usize = 128;
/// The longest session id the store records or looks up (KMS's are 36-character UUIDs).
pub const SESSION_ID_MAX: usize = 128;
/// The most sessions one [`Coordinator::write_sessions`] call writes on Redis at once (a
/// longer list goes in several calls).
pub const SESSIONS_BATCH: usize = 500;

/// A client session and the owner nodes it lives on ([`Coordinator::write_sessions`]).
pub type SessionOwners = (String, Vec<Owner>);

/// A node's id: 1 to [`NODE_ID_MAX`] ASCII letters, digits, `.`, `-`, `_` or `:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    /// `id` if it is a valid node id.
    pub fn new(id: impl Into<String>) -> Result<NodeId, Error> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= NODE_ID_MAX
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
        if ok {
            Ok(NodeId(id))
        } else {
            Err(Error::BadNodeId(id.chars().take(NODE_ID_MAX + 1).collect()))
        }
    }

    /// `text` made into a node id: characters that may not be in one become `-`, and it is
    /// cut to [`NODE_ID_MAX`] (`node` when nothing is left).
    pub fn sanitized(text: &str) -> NodeId {
        let s: String = text
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_:".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .take(NODE_ID_MAX)
            .collect();
        NodeId::new(s).unwrap_or_else(|_| NodeId("node".into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeId {
    type Error = Error;
    fn try_from(s: String) -> Result<NodeId, Error> {
        NodeId::new(s)
    }
}

impl From<NodeId> for String {
    fn from(n: NodeId) -> String {
        n.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a node says about itself once, at registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id.
    pub id: NodeId,
    /// Where clients reach its Kurento WebSocket (`ws://host:port/path`).
    pub signalling: String,
    /// Where other nodes reach it (`host:port`); the node-to-node link is not built yet.
    pub peer: String,
    /// How many endpoints it takes at most (placement's measure of room).
    pub capacity: u64,
}

/// A node's load, sent with every heartbeat. Each field has a default when a record lacks
/// it, so a node of an older version reads a newer one's record (and the other way round).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeStats {
    /// CPU use of its processes, in percent of one core (so up to 100 times the cores).
    pub cpu_percent: f64,
    /// RTP packets it sends per second.
    pub egress_pps: u64,
    /// Endpoints it hosts.
    pub endpoints: u64,
    /// It takes no new pipelines.
    pub draining: bool,
}

/// A live node as the registry holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its boot (see [`Coordinator::register`]).
    pub boot: u64,
    /// What it said at registration.
    #[serde(flatten)]
    pub info: NodeInfo,
    /// Its last heartbeat's load.
    #[serde(flatten)]
    pub stats: NodeStats,
}

impl NodeRecord {
    /// Endpoints it can still take.
    pub fn spare(&self) -> u64 {
        self.info.capacity.saturating_sub(self.stats.endpoints)
    }
}

/// Who owns a pipeline: a node in one of its boots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The node.
    pub node: NodeId,
    /// Its boot when it claimed the pipeline.
    pub boot: u64,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {} (boot {})", self.node, self.boot)
    }
}

/// What the store says about a pipeline's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// No node claims it.
    Unowned,
    /// A live node owns it.
    Live(Owner),
    /// The node that claimed it is gone: no live record of that node in that boot (it died,
    /// or restarted and has another boot). Another node's claim takes it over.
    Gone(Owner),
}

/// Why a coordination call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The store's URL cannot be used.
    #[error("cluster URL '{url}': {why}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// Not a valid node id.
    #[error("node id '{0}': use 1 to 128 ASCII letters, digits, '.', '-', '_' or ':'")]
    BadNodeId(String),
    /// The store cannot be reached (refused, closed, reset).
    #[error("the coordination store is unreachable: {0}")]
    Unavailable(String),
    /// The store did not answer within the time-out.
    #[error("the coordination store did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// A live node owns the pipeline.
    #[error("pipeline {pipeline} is owned by {owner}")]
    Claimed {
        /// The pipeline.
        pipeline: String,
        /// Its owner.
        owner: Owner,
    },
    /// The pipeline is owned by another node (or another boot of this one).
    #[error("pipeline {pipeline} is not this node's: it is owned by {owner}")]
    NotOwner {
        /// The pipeline.
        pipeline: String,
        /// Its owner.
        owner: Owner,
    },
    /// A call that needs this node's boot came before [`Coordinator::register`].
    #[error("this node has not registered yet")]
    NotRegistered,
    /// A later boot of this node id registered: another process uses the same id, or this
    /// one was taken for dead and restarted elsewhere. This node's record was not written.
    #[error("node {node} was registered again (boot {current}, this process has boot {mine}): node ids must be unique")]
    Superseded {
        /// The node id.
        node: NodeId,
        /// This process's boot.
        mine: u64,
        /// The latest boot.
        current: u64,
    },
    /// The store lost its records moments ago (Redis restarted empty) and the nodes are
    /// writing theirs again: whether a pipeline has an owner is not known yet (for
    /// [`SETTLE`] after a node found its records gone, or while no node is listed).
    #[error(
        "the coordination store restarted empty and the nodes are writing their records again"
    )]
    Settling,
    /// The store answered something this crate did not write.
    #[error("unexpected answer from the coordination store: {0}")]
    Protocol(String),
}

impl Error {
    /// Whether the store could not be reached or did not answer (coordination is degraded;
    /// the call may work later).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Timeout(_))
    }
}

/// The store a coordinator works on.
enum Store {
    InProcess(InProcess),
    Redis(redis_store::RedisStore),
}

/// One node's handle on the coordination store.
pub struct Coordinator {
    store: Store,
    /// This node and its boot, once registered.
    me: Option<(NodeInfo, u64)>,
}

impl Coordinator {
    /// A single node's store in this process (nothing shared, nothing to reach).
    pub fn in_process() -> Coordinator {
        Coordinator::on(&InProcess::default())
    }

    /// A node on the in-process store `store` (tests: several nodes on one store).
    pub fn on(store: &InProcess) -> Coordinator {
        Coordinator {
            store: Store::InProcess(store.clone()),
            me: None,
        }
    }

    /// A node on the Redis at `url` (`redis://host:port[/db]` or `redis+unix:///path`), each
    /// call bounded by [`CALL_TIMEOUT`]. Only checks the URL: the connection is made by the
    /// first call (and made again after it fails), so a Redis that is down now is not an
    /// error here.
    pub fn redis(url: &str) -> Result<Coordinator, Error> {
        Coordinator::redis_with_timeout(url, CALL_TIMEOUT)
    }

    /// [`Coordinator::redis`] with each call bounded by `timeout`.
    pub fn redis_with_timeout(url: &str, timeout: Duration) -> Result<Coordinator, Error> {
        Ok(Coordinator {
            store: Store::Redis(redis_store::RedisStore::open(url, timeout)?),
            me: None,
        })
    }

    /// What the store is, for logs: `in-process` or `redis`.
    pub fn kind(&self) -> &'static str {
        match self.store {
            Store::InProcess(_) => "in-process",
            Store::Redis(_) => "redis",
        }
    }

    /// This node as owner of what it claims, once registered.
    pub fn me(&self) -> Option<Owner> {
        self.me.as_ref().map(|(i, boot)| Owner {
            node: i.id.clone(),
            boot: *boot,
        })
    }

    fn me_or_err(&self) -> Result<(&NodeInfo, u64), Error> {
        self.me
            .as_ref()
            .map(|(i, b)| (i, *b))
            .ok_or(Error::NotRegistered)
    }

    /// Registers this node: takes the next boot of its id and writes its record (with
    /// `stats`). Returns the boot.
    pub async fn register(&mut self, info: NodeInfo, stats: &NodeStats) -> Result<u64, Error> {
        let boot = match &self.store {
            Store::InProcess(s) => s.next_boot(&info.id),
            Store::Redis(s) => s.next_boot(&info.id).await?,
        };
        self.me = Some((info, boot));
        self.beat(stats, Beat::default(), true).await?;
        Ok(boot)
    }

    /// Writes this node's record with `stats`, alive for [`NODE_TTL`] more, telling nothing
    /// of its claims: [`Coordinator::heartbeat_with`] with [`Beat::default`].
    pub async fn heartbeat(&self, stats: &NodeStats) -> Result<bool, Error> {
        self.heartbeat_with(stats, Beat::default()).await
    }

    /// Writes this node's record with `stats`, alive for [`NODE_TTL`] more. `Ok(true)` when
    /// the store lost this node's records (Redis restarted without persistence, was emptied,
    /// reloaded an older snapshot, evicted keys): its record had expired or was gone, its
    /// boot counter was gone, or its set of owned pipelines holds fewer than
    /// `beat.claimed`. It depends on the store's state only, so a heartbeat run again (its
    /// answer lost) says so again until the claims are written again. Then, and while
    /// `beat.reclaiming`, pipelines nobody claims read as [`Error::Settling`] for
    /// [`SETTLE`] more.
    pub async fn heartbeat_with(&self, stats: &NodeStats, beat: Beat) -> Result<bool, Error> {
        self.beat(stats, beat, false).await
    }

    /// A heartbeat; `first` right after the registration (no record of this boot yet).
    async fn beat(&self, stats: &NodeStats, beat: Beat, first: bool) -> Result<bool, Error> {
        let (info, boot) = self.me_or_err()?;
        let record = NodeRecord {
            boot,
            info: info.clone(),
            stats: stats.clone(),
        };
        match &self.store {
            Store::InProcess(s) => s.heartbeat(record).map(|()| false),
            Store::Redis(s) => s.heartbeat(&record, beat, first).await,
        }
    }

    /// Removes this node's record at once (a clean stop), rather than letting it expire.
    pub async fn leave(&self) -> Result<(), Error> {
        let (info, boot) = self.me_or_err()?;
        match &self.store {
            Store::InProcess(s) => {
                s.leave(&info.id, boot);
                Ok(())
            }
            Store::Redis(s) => s.leave(&info.id, boot).await,
        }
    }

    /// The live nodes, sorted by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, Error> {
        let mut v = match &self.store {
            Store::InProcess(s) => s.nodes(),
            Store::Redis(s) => s.nodes().await?,
        };
        v.sort_by(|a, b| a.info.id.cmp(&b.info.id));
        Ok(v)
    }

    /// Claims `pipeline` for this node: succeeds when nobody owns it, when this node (in
    /// this boot) already does, or when its owner is gone; fails with [`Error::Claimed`]
    /// while another live node owns it.
    pub async fn claim(&self, pipeline: &str) -> Result<(), Error> {
        let me = self.me().ok_or(Error::NotRegistered)?;
        match &self.store {
            Store::InProcess(s) => s.claim(pipeline, me),
            Store::Redis(s) => s.claim(pipeline, &me).await,
        }
    }

    /// Who owns `pipeline`, and whether that node is still there; [`Error::Settling`] for a
    /// pipeline nobody claims while the store is being written again after it lost its
    /// records (the owner may not have claimed it again yet).
    pub async fn owner(&self, pipeline: &str) -> Result<Ownership, Error> {
        match &self.store {
            Store::InProcess(s) => Ok(s.owner(pipeline)),
            Store::Redis(s) => s.owner(pipeline).await,
        }
    }

    /// Records, for each session of `sessions`, that it lives on its owners (added to those
    /// recorded), each session's record living `ttl` more: written again before then it
    /// lives on, else it expires. Ids longer than [`SESSION_ID_MAX`], and sessions without
    /// owners, are skipped. On Redis, one call per [`SESSIONS_BATCH`] sessions.
    pub async fn write_sessions(
        &self,
        sessions: &[SessionOwners],
        ttl: Duration,
    ) -> Result<(), Error> {
        let fit: Vec<&SessionOwners> = sessions
            .iter()
            .filter(|(s, o)| !s.is_empty() && s.len() <= SESSION_ID_MAX && !o.is_empty())
            .collect();
        match &self.store {
            Store::InProcess(s) => {
                s.write_sessions(&fit, ttl);
                Ok(())
            }
            Store::Redis(s) => {
                for batch in fit.chunks(SESSIONS_BATCH) {
                    s.write_sessions(batch, ttl).await?;
                }
                Ok(())
            }
        }
    }

    /// The owners recorded for `session` (none when it is unknown, expired, or its id is
    /// longer than [`SESSION_ID_MAX`]).
    pub async fn session_owners(&self, session: &str) -> Result<Vec<Owner>, Error> {
        if session.is_empty() || session.len() > SESSION_ID_MAX {
            return Ok(vec![]);
        }
        match &self.store {
            Store::InProcess(s) => Ok(s.session_owners(session)),
            Store::Redis(s) => s.session_owners(session).await,
        }
    }

    /// Gives `pipeline` up: only its owner may ([`Error::NotOwner`] otherwise); releasing a
    /// pipeline nobody owns does nothing.
    pub async fn release(&self, pipeline: &str) -> Result<(), Error> {
        let me = self.me().ok_or(Error::NotRegistered)?;
        match &self.store {
            Store::InProcess(s) => s.release(pipeline, &me),
            Store::Redis(s) => s.release(pipeline, &me).await,
        }
    }
}

/// Whether `url` names a store [`Coordinator::redis`] can use (the scheme and the URL's
/// form; nothing is reached).
pub fn check_url(url: &str) -> Result<(), Error> {
    redis_store::RedisStore::open(url, CALL_TIMEOUT).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_checked_and_sanitized() {
        assert!(NodeId::new("media-1.example:8888").is_ok());
        for bad in ["", "a b", "ä", "x/y", &"n".repeat(NODE_ID_MAX + 1)] {
            assert!(
                matches!(NodeId::new(bad), Err(Error::BadNodeId(_))),
                "{bad}"
            );
        }
        assert_eq!(NodeId::sanitized("my host/1").as_str(), "my-host-1");
        assert_eq!(NodeId::sanitized("  ").as_str(), "node");
        let e = NodeId::new("a b").unwrap_err().to_string();
        assert!(e.contains("'a b'") && e.contains("letters"), "{e}");
    }

    #[test]
    fn urls_are_checked_without_reaching_anything() {
        assert!(check_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_url("redis+unix:///run/redis.sock").is_ok());
        for bad in [
            "http://x",
            "rediss://127.0.0.1",
            "redis://",
            "not a url",
            "",
        ] {
            let e = check_url(bad).expect_err(bad);
            assert!(matches!(e, Error::BadUrl { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn a_node_record_is_one_flat_json_object() {
        let r = NodeRecord {
            boot: 3,
            info: NodeInfo {
                id: NodeId::new("a").unwrap(),
                signalling: "ws://10.0.0.1:8888/kurento".into(),
                peer: "10.0.0.1:8888".into(),
                capacity: 100,
            },
            stats: NodeStats {
                endpoints: 7,
                ..NodeStats::default()
            },
        };
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!((v["id"].as_str(), v["boot"].as_u64()), (Some("a"), Some(3)));
        assert_eq!(v["endpoints"], 7);
        let back: NodeRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.spare(), 93);
        let bad = serde_json::json!({"id": "a b", "boot": 1, "signalling": "", "peer": "",
            "capacity": 1, "cpu_percent": 0.0, "egress_pps": 0, "endpoints": 0, "draining": false});
        assert!(serde_json::from_value::<NodeRecord>(bad).is_err());
    }
}
