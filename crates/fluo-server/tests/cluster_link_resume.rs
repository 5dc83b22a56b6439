//! A client whose entry died reconnects to another entry with `connect {sessionId}` and
//! keeps its session (docs/cluster.md, "Reconnecting"): the entry wrote where the session
//! lives to the store, the new entry reads it there and binds the session on its owner. A
//! session no node knows is answered 40007 as KMS does; while the store does not answer,
//! 40004 (try again). Three nodes (two entries, an owner) on a redis-server of the test's
//! own; without it the test is skipped, and fails under CI=true.
mod common;
#[path = "cluster_link/support.rs"]
mod support;

use common::Client;
use fluo_cluster::Coordinator;
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

/// The owner's grace period (`--session-grace-secs`): the reconnect must bind the session
/// within it, and the objects must outlive it once bound (8 s: room for a loaded machine's
/// link set-up, store time-out and 40007 round trip before the bind).
const GRACE_SECS: u64 = 8;

/// The owners the store records for `session` once it lists `node` (5 s at most: an entry
/// writes a session's owners after its next heartbeat).
async fn recorded(probe: &Coordinator, session: &str, node: &str) -> Vec<fluo_cluster::Owner> {
    let t0 = Instant::now();
    loop {
        let owners = probe.session_owners(session).await.unwrap_or_default();
        if owners.iter().any(|o| o.node.as_str() == node) {
            return owners;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the store does not record {session} on {node}: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The endpoint `e` answers an offer through `c`'s entry, and the subscription to its
/// `IceCandidateFound` made through another entry delivers there (KMS keeps subscriptions
/// with the session; kurento-client does not subscribe again after a reconnect).
async fn answers_through(c: &mut Client, e: &str, entry: &str) {
    let name = c.value(e, "getName").await;
    assert!(name.is_string(), "{name}");
    let offer =
        json!({"object": e, "operation": "processOffer", "operationParams": {"offer": OFFER}});
    let answer = c
        .request("invoke", offer)
        .await
        .unwrap_or_else(|err| panic!("the endpoint answers an offer through {entry}: {err}"));
    assert!(
        answer.as_str().is_some_and(|s| s.starts_with("v=0")),
        "{answer}"
    );
    c.invoke(e, "gatherCandidates", json!({})).await;
    let found = c
        .event("IceCandidateFound", e, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("the earlier subscription delivers through {entry}"));
    assert!(
        found["data"]["candidate"]["candidate"].is_string(),
        "{found}"
    );
}

/// When the record of `session` expires, as `PTTL` tells it now.
fn expiry(redis: &fluo_cluster::testing::RedisServer, session: &str) -> Instant {
    let pttl = redis_command(redis, &format!("PTTL fluo:session:{session}"));
    let ms: u64 = pttl.trim_start_matches(':').parse().expect(&pttl);
    Instant::now() + Duration::from_millis(ms)
}

/// What `c` gets before its session is bound: 40007 for a session no node knows, as KMS
/// answers it; 40004 (not 40007: the owner may hold it) for `session` while the store does
/// not answer.
async fn not_bound_yet(c: &mut Client, redis: &fluo_cluster::testing::RedisServer, session: &str) {
    let err = c
        .request("connect", json!({"sessionId": "no-such-session"}))
        .await
        .expect_err("an unknown session");
    assert_eq!(code(&err), 40007, "{err}");
    redis.pause();
    let err = c
        .request("connect", json!({"sessionId": session}))
        .await
        .expect_err("the store is paused");
    redis.resume();
    assert_eq!(code(&err), 40004, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_whose_entry_died_resumes_its_session_through_another_entry() {
    let Some(redis) = fluo_cluster::testing::RedisServer::start("a session resumed elsewhere")
    else {
        return;
    };
    let url = redis.url();
    let grace = GRACE_SECS.to_string();
    let flags = ["--session-grace-secs", grace.as_str()];
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, port_a) = node(dirs[0].path(), &url, "node-a", SECRET, &flags);
    let (_b, port_b) = node(dirs[1].path(), &url, "node-b", SECRET, &flags);
    let (_o, _) = node(dirs[2].path(), &url, "node-o", SECRET, &flags);
    let probe = Coordinator::redis(&url).unwrap();
    until_listed(&probe, &["node-a", "node-b", "node-o"]).await;

    // Through entry A: a pipeline on owner O with a WebRtcEndpoint, subscribed to.
    let mut ca = Client::connect(port_a).await;
    let (_p, e) = endpoint_on(&mut ca, "node-o").await;
    ca.subscribe(&e, "IceCandidateFound").await;
    let session = session_of(&mut ca, &e).await;
    let owners = recorded(&probe, &session, "node-o").await;
    assert_eq!(owners.len(), 1, "only the owner: {owners:?}");
    // The record outlives the owner's grace period, not much more (link/resume.rs).
    let written_by_a = expiry(&redis, &session);
    let left = written_by_a - Instant::now();
    let most = Duration::from_secs(GRACE_SECS + 60);
    assert!(
        left > Duration::from_secs(GRACE_SECS) && left <= most,
        "{left:?}"
    );

    // Entry A dies; the client reconnects to entry B (2 s later), which never saw its
    // session.
    signal(&a, libc::SIGKILL);
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut cb = Client::connect(port_b).await;
    cb.next = 100;
    not_bound_yet(&mut cb, &redis, &session).await;
    // The store answers again: the same session, answered by its owner through B.
    let r = cb
        .request("connect", json!({"sessionId": session}))
        .await
        .expect("connect with the session through node-b");
    assert_eq!(r["sessionId"], session.as_str(), "{r}");
    let bound_after = killed.elapsed();
    assert!(
        bound_after < Duration::from_secs(GRACE_SECS),
        "bound {bound_after:?} after the kill: past the owner's grace period"
    );
    // Past the owner's grace period: the session is bound to B's connection there, so its
    // objects live on and answer through B.
    tokio::time::sleep(Duration::from_secs(GRACE_SECS + 1)).await;
    answers_through(&mut cb, &e, "node-b").await;
    // B wrote the session since (A's record would expire over 2 s earlier), with O.
    let written_by_b = expiry(&redis, &session);
    assert!(
        written_by_b > written_by_a + Duration::from_millis(1500),
        "the record was not written again: it expires {:?} after A's",
        written_by_b.saturating_duration_since(written_by_a)
    );
    assert_eq!(recorded(&probe, &session, "node-o").await, owners);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_moved_to_another_entry_finds_its_session_on_the_entry_it_left() {
    let grace = GRACE_SECS.to_string();
    let flags = ["--session-grace-secs", grace.as_str()];
    let Some(two) = two_nodes("a session on the entry it left", &flags).await else {
        return;
    };
    // Through entry A, objects on A itself: A records itself as the session's owner.
    let mut ca = Client::connect(two.port_a).await;
    let (_p, e) = endpoint_on(&mut ca, "node-a").await;
    ca.subscribe(&e, "IceCandidateFound").await;
    let session = session_of(&mut ca, &e).await;
    let owners = recorded(&two.probe, &session, "node-a").await;
    assert_eq!(owners.len(), 1, "{owners:?}");
    // A load balancer sends the client's reconnection to B while A lives.
    drop(ca);
    let mut cb = Client::connect(two.port_b).await;
    cb.next = 100;
    let r = cb
        .request("connect", json!({"sessionId": session}))
        .await
        .expect("connect with the session through node-b");
    assert_eq!(r["sessionId"], session.as_str(), "{r}");
    tokio::time::sleep(Duration::from_secs(GRACE_SECS + 1)).await;
    answers_through(&mut cb, &e, "node-b").await;
}

/// How many session records the store holds.
fn session_keys(redis: &fluo_cluster::testing::RedisServer) -> usize {
    let reply = redis_command(redis, "KEYS fluo:session:*");
    reply.trim_start_matches('*').parse().expect(&reply)
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_a_client_names_at_random_are_not_written_to_the_store() {
    let Some(two) = two_nodes("random sessions are not recorded", &[]).await else {
        return;
    };
    // Through entry A, a pipeline on owner B: the client's session is recorded.
    let mut ca = Client::connect(two.port_a).await;
    let p = ca
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .unwrap();
    let session = session_of(&mut ca, &p).await;
    recorded(&two.probe, &session, "node-b").await;
    // Requests naming sessions of the client's choosing, answered by the owner (which
    // echoes them): none holds anything, none is written.
    for n in 0..20 {
        let params =
            json!({"object": p, "operation": "getName", "sessionId": format!("random-{n}")});
        ca.request("invoke", params).await.expect("getName");
    }
    // Two heartbeats (and writes) later: the client's one session only.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(session_keys(&two.redis), 1, "one record per session in use");
    assert!(two
        .probe
        .session_owners("random-3")
        .await
        .unwrap()
        .is_empty());
}
