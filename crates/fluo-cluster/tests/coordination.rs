//! The coordination rules on both stores: in process, and on a real redis-server each test
//! spawns on a unix socket of its own (testing.rs). Without redis-server the Redis tests are
//! skipped with a SKIPPED line, and fail under CI=true.

use fluo_cluster::testing::{node_ids, RedisServer};
use fluo_cluster::{
    Coordinator, Error, InProcess, NodeId, NodeInfo, NodeStats, Owner, Ownership, NODE_TTL,
};
use std::time::{Duration, Instant};

/// Coordinators of several nodes on one store.
enum Store {
    Mem(InProcess),
    Redis(String),
}

impl Store {
    fn node(&self) -> Coordinator {
        match self {
            Store::Mem(s) => Coordinator::on(s),
            Store::Redis(url) => Coordinator::redis(url).expect("a good URL"),
        }
    }
}

fn info(id: &str, capacity: u64) -> NodeInfo {
    NodeInfo {
        id: NodeId::new(id).unwrap(),
        signalling: format!("ws://{id}.example:8888/kurento"),
        peer: format!("{id}.example:8888"),
        capacity,
    }
}

fn owner(id: &str, boot: u64) -> Owner {
    Owner {
        node: NodeId::new(id).unwrap(),
        boot,
    }
}

async fn registered(store: &Store, id: &str) -> (Coordinator, u64) {
    let mut c = store.node();
    let boot = c
        .register(info(id, 100), &NodeStats::default())
        .await
        .unwrap_or_else(|e| panic!("{id} registers: {e}"));
    (c, boot)
}

async fn registries_see_each_other(store: Store) {
    let (a, boot_a) = registered(&store, "a").await;
    let (b, boot_b) = registered(&store, "b").await;
    assert_eq!((boot_a, boot_b), (1, 1), "first boots");
    let load = NodeStats {
        cpu_percent: 12.5,
        egress_pps: 3000,
        endpoints: 7,
        draining: true,
    };
    a.heartbeat(&load).await.unwrap();
    for c in [&a, &b] {
        let nodes = c.nodes().await.unwrap();
        let ids: Vec<&str> = nodes.iter().map(|n| n.info.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(nodes[0].stats, load, "a's last heartbeat");
        assert_eq!(nodes[0].info, info("a", 100));
        assert_eq!(nodes[0].spare(), 93);
        assert_eq!(nodes[1].stats, NodeStats::default());
    }
    // A clean stop removes the record at once.
    b.leave().await.unwrap();
    let ids = node_ids(&a).await;
    assert_eq!(ids, ["a"]);
}

async fn claims_are_exclusive_and_released_by_their_owner_only(store: Store) {
    let (a, _) = registered(&store, "a").await;
    let (b, _) = registered(&store, "b").await;
    let p = "0f6e-pipeline_kurento.MediaPipeline";
    assert_eq!(a.owner(p).await.unwrap(), Ownership::Unowned);
    a.claim(p).await.unwrap();
    a.claim(p)
        .await
        .expect("claiming its own pipeline again holds");
    assert_eq!(a.owner(p).await.unwrap(), Ownership::Live(owner("a", 1)));
    let e = b.claim(p).await.expect_err("a live node owns it");
    assert_eq!(
        e,
        Error::Claimed {
            pipeline: p.into(),
            owner: owner("a", 1)
        }
    );
    let e = b.release(p).await.expect_err("b does not own it");
    assert!(
        matches!(e, Error::NotOwner { ref owner, .. } if owner.node.as_str() == "a"),
        "{e}"
    );
    assert_eq!(b.owner(p).await.unwrap(), Ownership::Live(owner("a", 1)));
    a.release(p).await.unwrap();
    assert_eq!(b.owner(p).await.unwrap(), Ownership::Unowned);
    a.release(p)
        .await
        .expect("releasing what nobody owns does nothing");
    b.claim(p).await.expect("free again");
    assert_eq!(a.owner(p).await.unwrap(), Ownership::Live(owner("b", 1)));
    // Before registering, a node owns nothing.
    let c = store.node();
    assert_eq!(c.claim("x").await, Err(Error::NotRegistered));
    assert_eq!(c.release(p).await, Err(Error::NotRegistered));
}

async fn a_restarted_node_has_a_higher_boot_and_its_old_pipelines_are_gone(store: Store) {
    let (old, boot1) = registered(&store, "a").await;
    let (watcher, _) = registered(&store, "w").await;
    old.claim("p1").await.unwrap();
    old.claim("p2").await.unwrap();
    // The process restarts: same id, a new registration.
    let (new, boot2) = registered(&store, "a").await;
    assert!(boot2 > boot1, "boot {boot2} after {boot1}");
    assert_eq!(
        watcher.owner("p1").await.unwrap(),
        Ownership::Gone(owner("a", boot1)),
        "a's live record has another boot: the owner of p1 is gone"
    );
    // Another node may take a gone owner's pipeline; the new boot may take back its own.
    watcher.claim("p1").await.unwrap();
    assert_eq!(
        new.owner("p1").await.unwrap(),
        Ownership::Live(owner("w", 1))
    );
    new.claim("p2").await.unwrap();
    assert_eq!(
        watcher.owner("p2").await.unwrap(),
        Ownership::Live(owner("a", boot2))
    );
    // The old process, still running, may not write its record over the new one's.
    let e = old.heartbeat(&NodeStats::default()).await.unwrap_err();
    assert_eq!(
        e,
        Error::Superseded {
            node: NodeId::new("a").unwrap(),
            mine: boot1,
            current: boot2
        }
    );
    let a = watcher.nodes().await.unwrap();
    assert_eq!(
        a.iter().find(|n| n.info.id.as_str() == "a").unwrap().boot,
        boot2
    );
}

async fn a_silent_node_disappears_within_3_to_4_s(store: Store) {
    let (a, _) = registered(&store, "a").await;
    let (w, _) = registered(&store, "w").await;
    a.claim("p").await.unwrap();
    a.heartbeat(&NodeStats::default()).await.unwrap();
    // a stops heartbeating now; w keeps going.
    let silent = Instant::now();
    let gone = loop {
        let nodes = w.nodes().await.unwrap();
        if !nodes.iter().any(|n| n.info.id.as_str() == "a") {
            break silent.elapsed();
        }
        assert!(silent.elapsed() < Duration::from_secs(5), "a still listed");
        w.heartbeat(&NodeStats::default()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        gone >= NODE_TTL - Duration::from_millis(300) && gone <= Duration::from_secs(4),
        "a disappeared {gone:?} after its last heartbeat"
    );
    assert_eq!(w.owner("p").await.unwrap(), Ownership::Gone(owner("a", 1)));
    // Its heartbeat brings it back, with its pipeline.
    a.heartbeat(&NodeStats::default()).await.unwrap();
    assert_eq!(w.owner("p").await.unwrap(), Ownership::Live(owner("a", 1)));
}

/// Redis for one test, or `None` (skipped) when redis-server is missing outside CI.
fn redis(what: &str) -> Option<(RedisServer, Store)> {
    let r = RedisServer::start(what)?;
    let url = r.url();
    Some((r, Store::Redis(url)))
}

#[tokio::test]
async fn in_process_registries_see_each_other() {
    registries_see_each_other(Store::Mem(InProcess::default())).await;
}

#[tokio::test]
async fn redis_registries_see_each_other() {
    let Some((_r, store)) = redis("two registries on Redis") else {
        return;
    };
    registries_see_each_other(store).await;
}

#[tokio::test]
async fn in_process_claims_are_exclusive() {
    claims_are_exclusive_and_released_by_their_owner_only(Store::Mem(InProcess::default())).await;
}

#[tokio::test]
async fn redis_claims_are_exclusive() {
    let Some((_r, store)) = redis("exclusive claims on Redis") else {
        return;
    };
    claims_are_exclusive_and_released_by_their_owner_only(store).await;
}

#[tokio::test]
async fn in_process_restarts() {
    a_restarted_node_has_a_higher_boot_and_its_old_pipelines_are_gone(Store::Mem(
        InProcess::default(),
    ))
    .await;
}

#[tokio::test]
async fn redis_restarts() {
    let Some((_r, store)) = redis("a restarted node on Redis") else {
        return;
    };
    a_restarted_node_has_a_higher_boot_and_its_old_pipelines_are_gone(store).await;
}

#[tokio::test]
async fn in_process_silent_node_expires() {
    a_silent_node_disappears_within_3_to_4_s(Store::Mem(InProcess::default())).await;
}

#[tokio::test]
async fn redis_silent_node_expires() {
    let Some((_r, store)) = redis("node expiry on Redis") else {
        return;
    };
    a_silent_node_disappears_within_3_to_4_s(store).await;
}

/// Every call of `c` fails as unreachable within the time-out (and some margin).
async fn all_calls_fail_fast(c: &Coordinator, timeout: Duration) {
    let bound = timeout + Duration::from_millis(400);
    let t0 = Instant::now();
    let e = c.heartbeat(&NodeStats::default()).await.unwrap_err();
    assert!(e.is_unreachable(), "heartbeat: {e}");
    let e = c.claim("q").await.unwrap_err();
    assert!(e.is_unreachable(), "claim: {e}");
    let e = c.nodes().await.unwrap_err();
    assert!(e.is_unreachable(), "nodes: {e}");
    let e = c.owner("p").await.unwrap_err();
    assert!(e.is_unreachable(), "owner: {e}");
    let took = t0.elapsed();
    assert!(took < bound * 4, "4 calls took {took:?}");
}

#[tokio::test]
async fn redis_restarted_between_two_calls_costs_no_failed_call() {
    let Some((mut r, store)) = redis("Redis restarted between two calls") else {
        return;
    };
    let (a, boot) = registered(&store, "a").await;
    a.claim("p").await.unwrap();
    // Killed and started again, empty, with no call meanwhile: the coordinator's connection
    // is broken, which only the next call finds out.
    r.restart();
    // That call connects again at once (within its time-out) rather than failing, and the
    // heartbeat says the node's records were lost (its claims must be written again), once.
    let t0 = Instant::now();
    let lost = a
        .heartbeat(&NodeStats::default())
        .await
        .expect("the first call after the restart");
    let took = t0.elapsed();
    assert!(took < fluo_cluster::CALL_TIMEOUT, "{took:?}");
    assert!(
        lost,
        "the heartbeat did not see that Redis lost the records"
    );
    assert!(!a.heartbeat(&NodeStats::default()).await.unwrap());
    a.claim("p").await.unwrap();
    assert_eq!(
        a.owner("p").await.unwrap(),
        Ownership::Live(owner("a", boot))
    );
}

#[tokio::test]
async fn a_heartbeat_says_lost_while_the_owned_set_is_short_of_the_claims() {
    let Some((r, store)) = redis("lost records found by the owned set") else {
        return;
    };
    let (a, boot) = registered(&store, "a").await;
    let (b, _) = registered(&store, "b").await;
    a.claim("p").await.unwrap();
    a.claim("q").await.unwrap();
    let beat = |claimed, reclaiming| fluo_cluster::Beat {
        claimed,
        reclaiming,
    };
    let stats = NodeStats::default();
    assert!(!a.heartbeat_with(&stats, beat(2, false)).await.unwrap());
    // One claim removed behind the node's back (the boot counter and the record in place).
    r.command(&["SREM", &format!("fluo:owned:a:{boot}"), "q"]);
    r.command(&["DEL", "fluo:pipeline:q"]);
    // Said lost, and again when run again (as a retry whose first answer was lost would).
    assert!(a.heartbeat_with(&stats, beat(2, false)).await.unwrap());
    assert!(a.heartbeat_with(&stats, beat(2, false)).await.unwrap());
    // Meanwhile (settling) a pipeline without a record is not said to be unowned.
    assert_eq!(b.owner("q").await, Err(Error::Settling));
    // Claimed again: not lost. While the node says it re-claims, the marker is set again.
    a.claim("q").await.unwrap();
    assert!(!a.heartbeat_with(&stats, beat(2, true)).await.unwrap());
    tokio::time::sleep(fluo_cluster::SETTLE / 2).await;
    assert!(!a.heartbeat_with(&stats, beat(2, true)).await.unwrap());
    tokio::time::sleep(fluo_cluster::SETTLE / 2 + Duration::from_millis(300)).await;
    assert_eq!(b.owner("x").await, Err(Error::Settling));
    // Done re-claiming: settled once the marker expires.
    assert!(!a.heartbeat_with(&stats, beat(2, false)).await.unwrap());
    tokio::time::sleep(fluo_cluster::SETTLE + Duration::from_millis(100)).await;
    assert_eq!(b.owner("x").await.unwrap(), Ownership::Unowned);
    // The node's record gone (its key deleted or expired): lost, its claims written again.
    r.command(&["DEL", "fluo:node:a"]);
    assert!(a.heartbeat(&stats).await.unwrap());
}

#[tokio::test]
async fn redis_down_calls_fail_within_the_timeout_and_work_again_after_a_restart() {
    let Some((mut r, store)) = redis("Redis killed and restarted") else {
        return;
    };
    let (a, boot) = registered(&store, "a").await;
    a.claim("p").await.unwrap();
    // Killed: refused at once (the socket is gone).
    r.kill();
    all_calls_fail_fast(&a, fluo_cluster::CALL_TIMEOUT).await;
    // A coordinator made while Redis is down connects later.
    let mut late = store.node();
    let e = late
        .register(info("late", 10), &NodeStats::default())
        .await
        .unwrap_err();
    assert!(e.is_unreachable(), "{e}");
    // Restarted on the same socket, empty: the next calls work again.
    r.restart();
    let t0 = Instant::now();
    while let Err(e) = a.heartbeat(&NodeStats::default()).await {
        assert!(e.is_unreachable(), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(3), "still failing: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Redis lost everything: the node is back by its heartbeat, its claims by claiming again,
    // and its boot counter is raised to its boot (a restart of it gets a higher one). Until
    // the nodes had the time to claim again, a pipeline without a record is not said to be
    // unowned: its owner may not have claimed it again yet.
    assert_eq!(a.owner("p").await, Err(fluo_cluster::Error::Settling));
    a.claim("p").await.unwrap();
    assert_eq!(
        a.owner("p").await.unwrap(),
        Ownership::Live(owner("a", boot))
    );
    late.register(info("late", 10), &NodeStats::default())
        .await
        .unwrap();
    let ids = node_ids(&a).await;
    assert_eq!(ids, ["a", "late"]);
    // Settled (every live node had the time to claim again): unclaimed is unowned. (The
    // node heartbeats meanwhile: a record left to expire would read as lost again.)
    tokio::time::sleep(fluo_cluster::SETTLE / 2).await;
    assert!(!a.heartbeat(&NodeStats::default()).await.unwrap());
    tokio::time::sleep(fluo_cluster::SETTLE / 2 + Duration::from_millis(100)).await;
    assert!(!a.heartbeat(&NodeStats::default()).await.unwrap());
    assert_eq!(a.owner("q").await.unwrap(), Ownership::Unowned);
    let (_, boot2) = registered(&store, "a").await;
    assert!(boot2 > boot, "boot {boot2} after {boot}");
}

#[tokio::test]
async fn a_redis_that_does_not_answer_costs_each_call_its_timeout_only() {
    let Some((r, store)) = redis("an unresponsive Redis") else {
        return;
    };
    let Store::Redis(url) = &store else {
        unreachable!()
    };
    let timeout = Duration::from_millis(300);
    let mut a = Coordinator::redis_with_timeout(url, timeout).unwrap();
    a.register(info("a", 10), &NodeStats::default())
        .await
        .unwrap();
    // Stopped, not killed: the connection stays open and nothing answers.
    r.pause();
    for _ in 0..3 {
        let t0 = Instant::now();
        let e = a.claim("p").await.unwrap_err();
        let took = t0.elapsed();
        assert_eq!(e, Error::Timeout(timeout));
        assert!(
            took >= timeout - Duration::from_millis(20) && took < timeout * 2,
            "{took:?}"
        );
    }
    r.resume();
    let t0 = Instant::now();
    while let Err(e) = a.claim("p").await {
        assert!(t0.elapsed() < Duration::from_secs(3), "still failing: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.owner("p").await.unwrap(), Ownership::Live(owner("a", 1)));
}

/// Writes `record` as node `id`'s record, as another program (or version) could.
async fn write_raw_record(url: &str, id: &str, record: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("fluo:node:{id}"))
        .arg(record)
        .arg("PX")
        .arg(10_000)
        .query_async(&mut c)
        .await
        .unwrap();
    let _: i64 = redis::cmd("SADD")
        .arg("fluo:nodes")
        .arg(id)
        .query_async(&mut c)
        .await
        .unwrap();
}

#[tokio::test]
async fn redis_records_that_do_not_parse_hide_only_themselves() {
    let Some((r, store)) = redis("unreadable node records") else {
        return;
    };
    let (a, _) = registered(&store, "a").await;
    let (_b, _) = registered(&store, "b").await;
    write_raw_record(&r.url(), "evil", "not json").await;
    write_raw_record(&r.url(), "evil2", r#"{"id":"evil2","boot":1}"#).await;
    // A newer version's record: a field this one does not know, a load field it lacks.
    write_raw_record(
        &r.url(),
        "c",
        r#"{"id":"c","boot":2,"signalling":"ws://c:1/kurento","peer":"c:1","capacity":5,
            "endpoints":1,"draining":false,"egress_pps":0,"gpu_percent":3}"#,
    )
    .await;
    let nodes = a.nodes().await.expect("the readable records listed");
    let ids: Vec<&str> = nodes.iter().map(|n| n.info.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!((nodes[2].boot, nodes[2].spare()), (2, 4));
    assert_eq!(nodes[2].stats.cpu_percent, 0.0, "a missing field's default");
}

/// The PTTL of `key` in ms (-2: no key, -1: no TTL).
async fn pttl(url: &str, key: &str) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn redis_ownership_records_expire_unless_their_owner_heartbeats() {
    let Some((r, store)) = redis("ownership records' TTL") else {
        return;
    };
    let url = r.url();
    let (a, boot) = registered(&store, "a").await;
    a.claim("p").await.unwrap();
    a.claim("q").await.unwrap();
    let ttl = fluo_cluster::OWNED_TTL.as_millis() as i64;
    let set = format!("fluo:owned:a:{boot}");
    for key in ["fluo:pipeline:p", "fluo:pipeline:q", set.as_str()] {
        let t = pttl(&url, key).await;
        assert!(t > ttl - 5_000 && t <= ttl, "{key}: PTTL {t}");
    }
    // A record about to expire lives on while its owner heartbeats.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("PEXPIRE")
        .arg("fluo:pipeline:p")
        .arg(2_000)
        .query_async(&mut c)
        .await
        .unwrap();
    a.heartbeat(&NodeStats::default()).await.unwrap();
    let t = pttl(&url, "fluo:pipeline:p").await;
    assert!(t > ttl - 5_000, "refreshed by the heartbeat: PTTL {t}");
    // A released pipeline leaves its owner's set: the heartbeat no longer refreshes it.
    a.release("q").await.unwrap();
    let left: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&set)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(left, ["p"]);
    assert_eq!(pttl(&url, "fluo:pipeline:q").await, -2);
}

/// Session records: owners are added (a restarted owner's new boot beside the old), a
/// record lives the TTL of its last write, unknown and overlong ids have none, and a node
/// that never registered (a router's handle) reads and writes them.
async fn session_records_gather_owners_and_expire_unless_written_again(store: Store) {
    let (a, b) = (store.node(), store.node());
    let ttl = Duration::from_millis(1500);
    let (o1, o2, o3) = (owner("o1", 1), owner("o2", 4), owner("o1", 2));
    a.write_sessions(&[("s1".into(), vec![o1.clone()])], ttl)
        .await
        .unwrap();
    b.write_sessions(
        &[
            ("s1".into(), vec![o2.clone(), o1.clone()]),
            ("s2".into(), vec![o2.clone()]),
            ("s3".into(), vec![]),
            (
                "x".repeat(fluo_cluster::SESSION_ID_MAX + 1),
                vec![o1.clone()],
            ),
        ],
        ttl,
    )
    .await
    .unwrap();
    let sorted = |mut v: Vec<Owner>| {
        v.sort_by(|x, y| (&x.node, x.boot).cmp(&(&y.node, y.boot)));
        v
    };
    let got = sorted(a.session_owners("s1").await.unwrap());
    assert_eq!(got, vec![o1.clone(), o2.clone()]);
    assert_eq!(b.session_owners("s2").await.unwrap(), vec![o2.clone()]);
    assert!(a.session_owners("s3").await.unwrap().is_empty());
    assert!(a.session_owners("unknown").await.unwrap().is_empty());
    let long = "x".repeat(fluo_cluster::SESSION_ID_MAX + 1);
    assert!(a.session_owners(&long).await.unwrap().is_empty());
    // s1 written again (its owner restarted); s2 not: s2 expires, s1 lives on.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    a.write_sessions(&[("s1".into(), vec![o3.clone()])], ttl)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(b.session_owners("s2").await.unwrap().is_empty(), "expired");
    let got = sorted(b.session_owners("s1").await.unwrap());
    assert_eq!(got, vec![o1, o3, o2]);
}

#[tokio::test]
async fn in_process_session_records() {
    session_records_gather_owners_and_expire_unless_written_again(Store::Mem(InProcess::default()))
        .await;
}

#[tokio::test]
async fn redis_session_records() {
    let Some((r, store)) = redis("session records on Redis") else {
        return;
    };
    session_records_gather_owners_and_expire_unless_written_again(store).await;
    // Many sessions in one call go in batches; Redis down: the calls fail as unreachable.
    let c = Coordinator::redis(&r.url()).unwrap();
    let many: Vec<_> = (0..fluo_cluster::SESSIONS_BATCH * 2 + 3)
        .map(|i| (format!("m{i}"), vec![owner("o9", 1)]))
        .collect();
    c.write_sessions(&many, Duration::from_secs(60))
        .await
        .unwrap();
    let last = format!("m{}", many.len() - 1);
    assert_eq!(c.session_owners(&last).await.unwrap(), vec![owner("o9", 1)]);
    drop(r);
    let e = c.session_owners("m0").await.unwrap_err();
    assert!(e.is_unreachable(), "{e}");
    let e = c
        .write_sessions(&many[..1], Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(e.is_unreachable(), "{e}");
}
