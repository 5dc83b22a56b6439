//! Sessions known cluster-wide (docs/cluster.md, "Reconnecting"): the entry writes to the
//! store which owners each of its clients' sessions lives on, and another entry reads it
//! when such a client reconnects there (`connect {sessionId}`, its entry dead or its load
//! balancer sending it elsewhere), so that it binds the session on those owners as the
//! first entry would have.
//!
//! Written by the entry, from the owners' answers (only those are trusted for it, as for
//! the entry's own memory, [`super::sessions`]), not by the owners: the entry is where the
//! client is, so it knows when the session is in use (a connection speaks for it) and
//! when it was left; the owners' mirrors only know their own part. Nothing is written per
//! request: the cluster task calls [`Router::publish`] after each heartbeat, which writes
//! the sessions whose owners changed since (at most one tick late), and every
//! [`REFRESH_EVERY`] all those in use here, in one call per batch. A record lives
//! `grace + 2 × REFRESH_EVERY` after its last write: once no connection speaks for the
//! session (the client left, or its entry died), it outlives the owners' grace period,
//! within which the owners keep the session for a reconnect, then expires. After a write
//! that failed, or once the store lost its records (Redis restarted empty), the next call
//! writes every session in use here again.

use super::route::Router;
use fluo_cluster::Owner;
use std::time::{Duration, Instant};

/// How often the sessions in use at this entry are written again.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// What the entry writes, and when it last wrote everything.
pub(crate) struct Publish {
    /// How long a record lives after its last write.
    pub ttl: Duration,
    /// When every session in use was last written (`None`: not yet).
    pub refreshed: std::sync::Mutex<Option<Instant>>,
}

impl Publish {
    /// For owners whose sessions outlive their connections by `grace`.
    pub(crate) fn new(grace: Duration) -> Publish {
        Publish {
            ttl: grace + 2 * REFRESH_EVERY,
            refreshed: std::sync::Mutex::new(None),
        }
    }

    /// Whether every session in use is to be written again now.
    fn due(&self) -> bool {
        crate::lock(&self.refreshed).is_none_or(|at| at.elapsed() >= REFRESH_EVERY)
    }
}

impl Router {
    /// Writes to the store the sessions whose owners changed since the last call, and
    /// every [`REFRESH_EVERY`] all those in use here. When the store does not answer, the
    /// changed ones are written with the next call.
    pub(crate) async fn publish(&self) {
        let fresh = self.known.take_fresh();
        let due = self.publish.due();
        let mut batch = fresh.clone();
        if due {
            let mut live = self.links.live_sessions();
            live.extend(crate::lock(&self.local).values().cloned());
            let more = live
                .into_iter()
                .filter(|s| !fresh.iter().any(|(f, _)| f == s))
                .map(|s| {
                    let owners = self.known.session_owners(&s);
                    (s, owners)
                });
            batch.extend(more);
        }
        if batch.is_empty() {
            if due {
                *crate::lock(&self.publish.refreshed) = Some(Instant::now());
            }
            return;
        }
        match self.store.write_sessions(&batch, self.publish.ttl).await {
            Ok(()) => {
                tracing::debug!(
                    sessions = batch.len(),
                    refresh = due,
                    "link: sessions written to the store"
                );
                if due {
                    *crate::lock(&self.publish.refreshed) = Some(Instant::now());
                }
            }
            Err(e) => {
                tracing::debug!("link: sessions not written to the store now: {e}");
                self.known.unwritten(fresh.into_iter().map(|(s, _)| s));
                // The store may come back empty (restarted): all of them next time.
                self.republish();
            }
        }
    }

    /// The next [`Router::publish`] writes every session in use here (the store lost its
    /// records, or did not answer).
    pub(crate) fn republish(&self) {
        *crate::lock(&self.publish.refreshed) = None;
    }

    /// The owners the store records for session `s`, but this node (its engine answers for
    /// itself); remembered as the entry's own (and written again while in use here).
    /// `Ok(empty)` when the store does not know it (asked again after
    /// [`super::sessions::MISS_KEPT`] only), `Err` when the store does not answer.
    pub(super) async fn owners_in_store_of(&self, s: &str) -> Result<Vec<Owner>, String> {
        if self.known.missed_lately(s) {
            return Ok(vec![]);
        }
        let found = self.store.session_owners(s).await;
        let owners: Vec<Owner> = found
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|o| o.node != self.me)
            .collect();
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
    use super::*;
    use crate::cluster::View;
    use crate::config::ClusterSecret;
    use fluo_cluster::{Coordinator, InProcess, NodeId};
    use std::sync::Arc;

    fn owner(node: &str, boot: u64) -> Owner {
        Owner {
            node: NodeId::new(node).unwrap(),
            boot,
        }
    }

    /// The router of entry `me` on `store`, for owners with a 5 s grace period.
    fn router(me: &str, store: Coordinator) -> Router {
        let secret = Arc::new(ClusterSecret(b"s".to_vec()));
        let link = (secret, Duration::from_secs(3));
        let view = Arc::new(View::default());
        Router::new(NodeId::new(me).unwrap(), view, store, link, GRACE)
    }

    const GRACE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn sessions_learnt_by_one_entry_are_written_at_its_next_tick_and_found_by_another() {
        let store = InProcess::default();
        let probe = Coordinator::on(&store);
        let (a, b) = (
            router("node-a", Coordinator::on(&store)),
            router("node-b", Coordinator::on(&store)),
        );
        assert_eq!(a.publish.ttl, GRACE + 2 * REFRESH_EVERY);
        let o = owner("node-o", 1);
        a.known.session_on("s1", &o);
        assert!(probe.session_owners("s1").await.unwrap().is_empty());
        a.publish().await;
        assert_eq!(probe.session_owners("s1").await.unwrap(), vec![o.clone()]);
        // Another entry finds it, and remembers it as its own (and writes it in turn).
        assert_eq!(b.owners_in_store_of("s1").await.unwrap(), vec![o.clone()]);
        assert_eq!(b.known.session_owners("s1"), vec![o.clone()]);
        assert_eq!(
            b.known.take_fresh(),
            vec![("s1".to_string(), vec![o.clone()])]
        );
        // An entry leaves itself out (its engine answers for itself).
        a.known.session_on("s2", &owner("node-b", 1));
        a.known.session_on("s2", &o);
        a.publish().await;
        assert_eq!(b.owners_in_store_of("s2").await.unwrap(), vec![o.clone()]);
        a.known.session_on("s3", &owner("node-b", 1));
        a.publish().await;
        assert!(b.owners_in_store_of("s3").await.unwrap().is_empty());
        // A session the store does not know is not asked about again for a while: a record
        // written meanwhile is found only after that.
        assert!(b.owners_in_store_of("s4").await.unwrap().is_empty());
        a.known.session_on("s4", &o);
        a.publish().await;
        assert!(b.owners_in_store_of("s4").await.unwrap().is_empty());
        assert!(b.known.missed_lately("s4"));
        // Nothing new: nothing written (the refresh was done; no session is in use here).
        assert!(a.known.take_fresh().is_empty());
        a.publish().await;
    }

    #[tokio::test]
    async fn a_store_that_does_not_answer_keeps_the_sessions_to_write_and_fails_the_look_up() {
        // A socket nothing listens on: each call fails at once as unreachable.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("redis+unix://{}", dir.path().join("none.sock").display());
        let a = router("node-a", Coordinator::redis(&url).unwrap());
        let o = owner("node-o", 1);
        a.known.session_on("s1", &o);
        a.publish().await;
        assert_eq!(a.known.take_fresh(), vec![("s1".to_string(), vec![o])]);
        assert!(
            crate::lock(&a.publish.refreshed).is_none(),
            "all again next time"
        );
        let e = a.owners_in_store_of("s9").await.unwrap_err();
        assert!(e.contains("unreachable"), "{e}");
        assert!(!a.known.missed_lately("s9"), "a failure is not a miss");
    }
}
