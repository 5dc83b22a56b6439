//! What an entry closes and answers when an owner goes away (docs/cluster.md, "Closing
//! client connections" and "Reconnecting"), and what cleanup costs through it: only the
//! clients that still hold something on a dead owner are disconnected; a reconnect for a
//! session on an owner gone for good is answered 40004 (try again) for a while, then 40007;
//! releasing a pipeline's elements after the pipeline waits for nothing. The Redis is a
//! redis-server of the test's own on a unix socket; without it the tests are skipped, and
//! fail under CI=true.
mod common;
#[path = "cluster_link/support.rs"]
mod support;

use common::Client;
use fluo_cluster::Coordinator;
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

/// The entry's bound before an owner missing from the listings counts as gone for good
/// (link/mod.rs GONE_AFTER).
const GONE_AFTER: Duration = Duration::from_secs(10);

/// A pipeline on `node` with 10 PassThrough elements, made through `c`.
async fn pipeline_of_ten(c: &mut Client, node: &str) -> (String, Vec<String>) {
    let p = c
        .create("MediaPipeline", json!({"fluoNode": node}))
        .await
        .expect("a pipeline");
    let mut elements = vec![];
    for _ in 0..10 {
        let e = c.create("PassThrough", json!({"mediaPipeline": p})).await;
        elements.push(e.expect("an element"));
    }
    (p, elements)
}

/// What `c` is answered for `method` on each of `elements` (a result's `None`, an error's
/// code), and the time they all took.
async fn each(c: &mut Client, method: &str, elements: &[String]) -> (Vec<Option<i64>>, Duration) {
    let mut outcomes = vec![];
    let t0 = Instant::now();
    for e in elements {
        let params = match method {
            "release" => json!({"object": e}),
            op => json!({"object": e, "operation": op}),
        };
        let method = if method == "release" {
            method
        } else {
            "invoke"
        };
        let r = c.request(method, params).await;
        outcomes.push(r.err().map(|e| code(&e)));
    }
    (outcomes, t0.elapsed())
}

/// Releases pipeline `p` through `c`, then asks `c` for each element's name and releases
/// each (the common cleanup order); the outcomes, each batch under 500 ms.
async fn clean_up(c: &mut Client, p: &str, elements: &[String]) -> Vec<Option<i64>> {
    c.request("release", json!({"object": p}))
        .await
        .expect("the pipeline released");
    let mut all = vec![];
    for method in ["getName", "release"] {
        let (outcomes, took) = each(c, method, elements).await;
        println!("10 {method} after their pipeline's release: {took:?}: {outcomes:?}");
        assert!(took < Duration::from_millis(500), "{method}: {took:?}");
        all.extend(outcomes);
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn releasing_a_pipeline_then_its_elements_through_an_entry_waits_for_nothing() {
    let Some(TwoNodes {
        redis: _redis,
        da: _da,
        db: _db,
        probe: _probe,
        nodes: _,
        a: _a,
        b: _b,
        port_a,
        port_b,
    }) = two_nodes("cleanup through the entry", &[]).await
    else {
        return;
    };
    let (mut ca, mut cb) = (Client::connect(port_a).await, Client::connect(port_b).await);
    // The common cleanup order, on node-b through node-a: the pipeline, then its elements.
    let (p, elements) = pipeline_of_ten(&mut ca, "node-b").await;
    let through = clean_up(&mut ca, &p, &elements).await;
    // As node-b answers them directly (not found, then a release that succeeds, as KMS).
    let (mut direct, _) = each(&mut cb, "getName", &elements).await;
    direct.extend(each(&mut cb, "release", &elements).await.0);
    assert_eq!(through, direct);
    assert_eq!(through[0], Some(40101), "{through:?}");
    // And on the entry's own node: the same answers, as fast.
    let (q, elements) = pipeline_of_ten(&mut ca, "node-a").await;
    assert_eq!(clean_up(&mut ca, &q, &elements).await, direct);
}

/// Whether `c`'s connection still serves (a pipeline made on node-a).
async fn serves(c: &mut Client) {
    c.create("MediaPipeline", json!({"fluoNode": "node-a"}))
        .await
        .expect("the connection still serves");
}

/// A new connection's `connect {session}` through the entry: its error code.
async fn reconnect(port: u16, session: &str) -> i64 {
    let mut c = Client::connect(port).await;
    c.next = 100;
    let err = c
        .request("connect", json!({"sessionId": session}))
        .await
        .expect_err("the session's owner is dead");
    code(&err)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_owner_closes_only_the_clients_holding_something_there_and_its_sessions_end() {
    let Some(TwoNodes {
        redis: _redis,
        da: _da,
        db: _db,
        probe,
        nodes: _,
        a: _a,
        mut b,
        port_a,
        port_b: _,
    }) = two_nodes("a dead owner's clients", &[]).await
    else {
        return;
    };
    // One client holds a pipeline on node-b; one released the one it made there; one only
    // asked about the first one's pipeline.
    let mut live = Client::connect(port_a).await;
    let p = live
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .unwrap();
    let e = live
        .create("PassThrough", json!({"mediaPipeline": p}))
        .await
        .unwrap();
    let session = session_of(&mut live, &e).await;
    let mut released = Client::connect(port_a).await;
    let q = released
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .unwrap();
    released
        .request("release", json!({"object": q}))
        .await
        .unwrap();
    let mut asked = Client::connect(port_a).await;
    asked
        .request("describe", json!({"object": p}))
        .await
        .unwrap();
    asked.value(&e, "getName").await;
    b.0.kill().unwrap(); // SIGKILL
    b.0.wait().unwrap();
    let t0 = Instant::now();
    drain(&mut live.ws).await;
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    // The others are left alone, as a KMS does not close a connection because another
    // server died.
    tokio::time::sleep(Duration::from_millis(700)).await;
    serves(&mut released).await;
    serves(&mut asked).await;
    // The client reconnects: "try again" while node-b may come back (its record lives, or
    // it has been missing for less than the bound).
    assert_eq!(reconnect(port_a, &session).await, 40004);
    assert_eq!(about(&mut asked, &e).await, 40004);
    let gone = until_unlisted(&probe, "node-b").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reconnect(port_a, &session).await, 40004);
    // Its objects too: "try again", not "not found", while it may come back.
    assert_eq!(about(&mut asked, &e).await, 40004);
    // Past the bound: the session is gone (kurento-client then drops its objects).
    loop {
        let c = reconnect(port_a, &session).await;
        let after = gone.elapsed();
        if c == 40007 {
            println!("40007 {after:?} after node-b's record expired");
            assert!(after > GONE_AFTER - Duration::from_millis(500), "{after:?}");
            // Gone for good: its objects are not found.
            assert_eq!(about(&mut asked, &e).await, 40101);
            break;
        }
        assert_eq!(c, 40004);
        assert!(after < GONE_AFTER + Duration::from_secs(3), "{after:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The error code of a `getName` of `object` by `c` (it must fail).
async fn about(c: &mut Client, object: &str) -> i64 {
    let e = c
        .request("invoke", json!({"object": object, "operation": "getName"}))
        .await
        .expect_err("the owner is dead");
    code(&e)
}

/// Waits (5 s at most) until the store no longer lists `id`; when it saw that.
async fn until_unlisted(probe: &Coordinator, id: &str) -> Instant {
    let t0 = Instant::now();
    loop {
        let nodes = probe.nodes().await.unwrap_or_default();
        if !nodes.iter().any(|n| n.info.id.as_str() == id) {
            return Instant::now();
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "{id} still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
