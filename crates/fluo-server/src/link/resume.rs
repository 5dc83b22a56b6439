//! Sessions known cluster-wide (docs/cluster.md, "Reconnecting"): the entry writes to the
//! store which owners each of its clients' sessions lives on, and another entry reads it
//! when such a client reconnects there (`connect {sessionId}`, its entry dead or its load
//! balancer sending it elsewhere), so that it binds the session on those owners as the
//! first entry would have.
//!
//! Written by the entry, not by the owners: the entry is where the client is, so it knows
//! when the session is in use and when it was left; the owners' mirrors only know their own
//! part. Only sessions a live client connection holds something for are written, with the
//! owners they hold it on, as the links know them ([`super::entry::Links::held_sessions`]:
//! a pipeline or subscription made there through this entry, or the session bound again
//! there by a reconnect; what the connection holds on this node's engine): a session a
//! client merely names is not, so random session ids make no records. Nothing is written per
//! request: after each heartbeat the cluster task wakes the publishing task
//! ([`publishing`]), which writes the sessions whose owners grew since (at most one tick
//! late), and every [`REFRESH_EVERY`] all those held, one write in flight at a time, in
//! one call per batch (the heartbeats do not wait for it). A record lives
//! `grace + 2 × REFRESH_EVERY` after its last write: once no connection holds the session
//! (the client left, or its entry died), it outlives the owners' grace period, within which
//! the owners keep the session for a reconnect, then expires. After a write that failed,
//! or once the store lost its records (Redis restarted empty), the next call writes every
//! session held here again.

use super::route::Router;
use fluo_cluster::{Owner, SessionOwners};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often the sessions in use at this entry are written again.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// What the entry writes, and when it last wrote everything.
pub(crate) struct Publish {
    /// How long a record lives after its last write.
    pub ttl: Duration,
    /// When every session held was last written (`None`: not yet).
    refreshed: Mutex<Option<Instant>>,
    /// The sessions written since the last refresh, with the owners written.
    written: Mutex<HashMap<String, Vec<Owner>>>,
    /// Wakes the publishing task (one write in flight; wakes meanwhile make one more).
    wake: Notify,
}

impl Publish {
    /// For owners whose sessions outlive their connections by `grace`.
    pub(crate) fn new(grace: Duration) -> Publish {
        Publish {
            ttl: grace + 2 * REFRESH_EVERY,
            refreshed: Mutex::new(None),
            written: Mutex::default(),
            wake: Notify::new(),
        }
    }

    /// Whether every session held is to be written again now.
    fn due(&self) -> bool {
        crate::lock(&self.refreshed).is_none_or(|at| at.elapsed() >= REFRESH_EVERY)
    }

    /// Has the publishing task write what changed (after a heartbeat that reached the
    /// store); returns at once.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The publishing task of `router`: a [`Router::publish`] each time it is woken, one at a
/// time. Ends when the router is dropped (or the task aborted with the cluster task).
pub(crate) async fn publishing(router: std::sync::Weak<Router>) {
    loop {
        let Some(r) = router.upgrade() else {
            return;
        };
        tokio::select! {
            _ = r.publish.wake.notified() => r.publish().await,
            // Not woken (the store is down): checks now and then that the router lives.
            _ = tokio::time::sleep(REFRESH_EVERY) => {}
        }
    }
}

impl Router {
    /// The sessions a client connection of this entry holds something for, with their
    /// owners: on other nodes as the links know them, on this node's engine as
    /// [`Router::holds_here`] recorded.
    fn held_sessions(&self) -> HashMap<String, Vec<Owner>> {
        let mut held = HashMap::new();
        self.links.held_sessions(&mut held);
        if let Some(boot) = self.view.boot() {
            let me = Owner {
                node: self.me.clone(),
                boot,
            };
            for s in crate::lock(&self.local).values() {
                let owners: &mut Vec<Owner> = held.entry(s.clone()).or_default();
                if !owners.contains(&me) {
                    owners.push(me.clone());
                }
            }
        }
        held
    }

    /// Writes to the store the sessions held here whose owners grew since they were last
    /// written, and every [`REFRESH_EVERY`] all of them. When the store does not answer,
    /// all are written with the next call.
    pub(crate) async fn publish(&self) {
        let due = self.publish.due();
        if !self.known.take_touched() && !due {
            return;
        }
        let held = self.held_sessions();
        let batch: Vec<SessionOwners> = {
            let written = crate::lock(&self.publish.written);
            let grew = |(s, o): &(&String, &Vec<Owner>)| {
                written
                    .get(*s)
                    .is_none_or(|w| o.iter().any(|x| !w.contains(x)))
            };
            held.iter()
                .filter(|e| due || grew(e))
                .map(|(s, o)| (s.clone(), o.clone()))
                .collect()
        };
        if !batch.is_empty() {
            if let Err(e) = self.store.write_sessions(&batch, self.publish.ttl).await {
                tracing::debug!("link: sessions not written to the store now: {e}");
                // The store may come back empty (restarted): all of them next time.
                self.republish();
                return;
            }
            tracing::debug!(
                sessions = batch.len(),
                refresh = due,
                "link: sessions written to the store"
            );
        }
        let mut written = crate::lock(&self.publish.written);
        if due {
            *written = held;
            *crate::lock(&self.publish.refreshed) = Some(Instant::now());
        } else {
            written.extend(batch);
        }
    }

    /// Wakes the publishing task ([`Publish::wake`]).
    pub(crate) fn wake_publish(&self) {
        self.publish.wake();
    }

    /// The next [`Router::publish`] writes every session held here (the store lost its
    /// records, or did not answer).
    pub(crate) fn republish(&self) {
        *crate::lock(&self.publish.refreshed) = None;
    }

    /// The owners the store records for session `s`, but this node (its engine answers for
    /// itself), one boot per node (the one listed, else the latest: a node that restarted
    /// left its earlier boot in the record); remembered as the entry's own.
    /// `Ok(empty)` when the store does not know it (asked again after
    /// [`super::sessions::MISS_KEPT`] only), `Err` when the store does not answer.
    pub(super) async fn owners_in_store_of(&self, s: &str) -> Result<Vec<Owner>, String> {
        if self.known.missed_lately(s) {
            return Ok(vec![]);
        }
        let found = self.store.session_owners(s).await;
        let mut owners: Vec<Owner> = Vec::new();
        for o in found.map_err(|e| e.to_string())? {
            if o.node == self.me {
                continue;
            }
            let listed = |o: &Owner| self.view.record(&o.node, o.boot).is_some();
            match owners.iter_mut().find(|x| x.node == o.node) {
                Some(x) if !listed(x) && (listed(&o) || o.boot > x.boot) => *x = o,
                Some(_) => {}
                None => owners.push(o),
            }
        }
        if owners.is_empty() {
            self.known.missed(s);
        }
        for o in &owners {
            self.known.session_on(s, o);
        }
        tracing::debug!(
            owners = owners.len(),
            "link: a reconnecting session looked up in the store"
        );
        Ok(owners)
    }
}

#[cfg(test)]
mod tests {
    use super::super::sessions::owner;
    use super::*;
    use crate::cluster::View;
    use crate::config::ClusterSecret;
    use fluo_cluster::{Coordinator, InProcess, NodeId};
    use std::sync::Arc;

    /// The router of entry `me` on `store`, for owners with a 5 s grace period.
    fn router(me: &str, store: Coordinator) -> Router {
        let secret = Arc::new(ClusterSecret(b"s".to_vec()));
        let link = (secret, Duration::from_secs(3));
        let view = Arc::new(View::default());
        Router::new(
            NodeId::new(me).unwrap(),
            view,
            store,
            link,
            GRACE,
            crate::link::RELAY_FANOUT,
        )
    }

    const GRACE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn only_sessions_held_here_are_written_and_another_entry_finds_them() {
        let store = InProcess::default();
        let probe = Coordinator::on(&store);
        let (a, b) = (
            router("node-a", Coordinator::on(&store)),
            router("node-b", Coordinator::on(&store)),
        );
        assert_eq!(a.publish.ttl, GRACE + 2 * REFRESH_EVERY);
        a.view.set_boot(7);
        let me = owner("node-a", 7);
        // A session an owner answered for (a client named it) but that holds nothing here:
        // not written.
        a.known.session_on("s0", &owner("node-o", 1));
        a.publish().await;
        assert!(probe.session_owners("s0").await.unwrap().is_empty());
        // A connection holding objects on this node's engine: written at the next call.
        crate::lock(&a.local).insert(1, "s1".into());
        a.known.touch();
        assert!(probe.session_owners("s1").await.unwrap().is_empty());
        a.publish().await;
        assert_eq!(probe.session_owners("s1").await.unwrap(), vec![me.clone()]);
        // Another entry finds it, and remembers it.
        assert_eq!(b.owners_in_store_of("s1").await.unwrap(), vec![me.clone()]);
        assert_eq!(b.known.session_owners("s1"), vec![me.clone()]);
        // An entry leaves itself out (its engine answers for itself).
        assert!(a.owners_in_store_of("s1").await.unwrap().is_empty());
        // A session the store does not know is not asked about again for a while: a record
        // written meanwhile is found only after that.
        assert!(b.owners_in_store_of("s4").await.unwrap().is_empty());
        crate::lock(&a.local).insert(4, "s4".into());
        a.known.touch();
        a.publish().await;
        assert!(b.owners_in_store_of("s4").await.unwrap().is_empty());
        assert!(b.known.missed_lately("s4"));
        // Nothing told new, the refresh not due: nothing is looked at; the refresh writes
        // every session held again.
        crate::lock(&a.local).insert(5, "s5".into());
        a.publish().await;
        assert!(probe.session_owners("s5").await.unwrap().is_empty());
        a.republish();
        a.publish().await;
        assert_eq!(probe.session_owners("s5").await.unwrap(), vec![me.clone()]);
        assert_eq!(probe.session_owners("s4").await.unwrap(), vec![me]);
        assert!(probe.session_owners("s0").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_store_that_does_not_answer_has_every_session_written_again_and_fails_the_look_up() {
        // A socket nothing listens on: each call fails at once as unreachable.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("redis+unix://{}", dir.path().join("none.sock").display());
        let a = router("node-a", Coordinator::redis(&url).unwrap());
        a.view.set_boot(1);
        crate::lock(&a.local).insert(1, "s1".into());
        a.known.touch();
        a.publish().await;
        assert!(
            crate::lock(&a.publish.refreshed).is_none(),
            "all again next time"
        );
        assert!(crate::lock(&a.publish.written).is_empty());
        let e = a.owners_in_store_of("s9").await.unwrap_err();
        assert!(e.contains("unreachable"), "{e}");
        assert!(!a.known.missed_lately("s9"), "a failure is not a miss");
    }

    /// A `connect` (or `ping`) of `session` for session `s` on connection 1.
    async fn owners_for(r: &Router, method: &str, session: Option<&str>, s: &str) -> Vec<Owner> {
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let client = super::super::entry::ClientHandle::new(tx);
        let text = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method,
            "params": {"sessionId": s}})
        .to_string();
        let ask = super::super::route::Ask {
            conn: 1,
            peer: std::net::IpAddr::from([127, 0, 0, 1]),
            client: &client,
            session: session.map(str::to_string),
            text: &text,
        };
        let req = serde_json::from_str(&text).unwrap();
        r.owners_of_session(&ask, &req, s).await.unwrap().0
    }

    #[tokio::test]
    async fn a_connect_reads_the_store_unless_its_connection_holds_the_session_and_merges() {
        let store = InProcess::default();
        let probe = Coordinator::on(&store);
        let b = router("node-b", Coordinator::on(&store));
        let (o1, o2) = (owner("node-o1", 1), owner("node-o2", 1));
        let ttl = Duration::from_secs(60);
        probe
            .write_sessions(&[("s1".into(), vec![o2.clone()])], ttl)
            .await
            .unwrap();
        // The connection was answered with s1 (by this node's engine, say) but holds
        // nothing through this entry: its connect still reads the store.
        assert_eq!(
            owners_for(&b, "connect", Some("s1"), "s1").await,
            vec![o2.clone()]
        );
        // What this entry remembers (another client of it) and what the store records
        // (an entry it moved to since) are both bound.
        probe
            .write_sessions(&[("s2".into(), vec![o2.clone()])], ttl)
            .await
            .unwrap();
        b.known.session_on("s2", &o1);
        let mut found = owners_for(&b, "keepAlive", None, "s2").await;
        found.sort_by(|x, y| x.node.cmp(&y.node));
        assert_eq!(found, vec![o1.clone(), o2.clone()]);
        // A connection holding the session here (connection 1 on this node's engine) is
        // answered from memory, and from the store once memory forgot it.
        probe
            .write_sessions(&[("s3".into(), vec![o2.clone()])], ttl)
            .await
            .unwrap();
        crate::lock(&b.local).insert(1, "s3".into());
        assert_eq!(
            owners_for(&b, "keepAlive", Some("s3"), "s3").await,
            vec![o2.clone()]
        );
        b.known.session_on("s3", &o1);
        let o3 = owner("node-o3", 1);
        probe
            .write_sessions(&[("s3".into(), vec![o3])], ttl)
            .await
            .unwrap();
        let own = owners_for(&b, "keepAlive", Some("s3"), "s3").await;
        assert_eq!(own, vec![o2, o1], "memory, the store not read again");
    }

    #[tokio::test]
    async fn of_the_boots_the_store_records_for_a_node_the_latest_is_kept() {
        let store = InProcess::default();
        let probe = Coordinator::on(&store);
        let b = router("node-b", Coordinator::on(&store));
        let ttl = Duration::from_secs(60);
        for boot in [3, 1, 2] {
            let o = owner("node-o", boot);
            probe
                .write_sessions(&[("s1".into(), vec![o])], ttl)
                .await
                .unwrap();
        }
        assert_eq!(
            b.owners_in_store_of("s1").await.unwrap(),
            vec![owner("node-o", 3)]
        );
        assert_eq!(b.known.session_owners("s1"), vec![owner("node-o", 3)]);
    }
}
