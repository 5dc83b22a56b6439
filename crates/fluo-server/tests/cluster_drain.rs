//! Graceful drain of a cluster node (docs/cluster.md, "Graceful drain"; docs/operations.md,
//! "Draining"): node-b made draining (SIGUSR1) gets no new pipeline, through either node,
//! while its pipeline (held by a client of node-a) keeps working and takes new elements; it
//! stays up while anything is left (its own pipeline, or a client of node-b holding a
//! pipeline on node-a through it), says "drained" once nothing is, and with
//! `--exit-when-drained` stops by itself (exit status 0, its record removed at once). The
//! Redis is a redis-server of the test's own on a unix socket; without it the test is
//! skipped, and fails under CI=true.
mod common;
#[path = "cluster_link/support.rs"]
mod support;

use common::Client;
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

/// Waits (5 s at most) until the store lists node-b as draining, then for the nodes' own
/// listings; how long the store took.
async fn until_draining(probe: &fluo_cluster::Coordinator) -> Duration {
    let t0 = Instant::now();
    loop {
        let nodes = probe.nodes().await.unwrap_or_default();
        if nodes
            .iter()
            .any(|n| n.info.id.as_str() == "node-b" && n.stats.draining)
        {
            let took = t0.elapsed();
            tokio::time::sleep(LISTED).await;
            return took;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "{nodes:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Six unpinned pipelines through `c`: each on node-a (as the store says); released.
async fn all_on_a(c: &mut Client, probe: &fluo_cluster::Coordinator, through: &str) {
    let on = placed(c, probe, 6, false, through).await;
    assert_eq!(
        on.into_iter().collect::<Vec<_>>(),
        [("node-a".to_owned(), 6)],
        "through {through}"
    );
}

/// Whether node-b's log says it is drained.
fn says_drained(t: &TwoNodes) -> bool {
    let log = std::fs::read_to_string(t.db.path().join("fluo.log")).unwrap_or_default();
    log.contains("drained: no media pipelines left")
}

/// node-b stays up and not drained for `during`.
async fn stays_up(t: &mut TwoNodes, during: Duration, why: &str) {
    tokio::time::sleep(during).await;
    assert!(
        matches!(t.b.0.try_wait(), Ok(None)),
        "node-b stopped: {why}"
    );
    assert!(!says_drained(t), "node-b said drained: {why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_draining_node_takes_no_new_pipeline_and_stops_once_drained() {
    let Some(mut t) = two_nodes("graceful drain", &["--exit-when-drained"]).await else {
        return;
    };
    let (mut ca, mut cb) = (
        Client::connect(t.port_a).await,
        Client::connect(t.port_b).await,
    );
    let pb = ca
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .expect("a pipeline on node-b, through node-a");
    let ep = ca
        .create("WebRtcEndpoint", json!({"mediaPipeline": pb}))
        .await
        .expect("an endpoint");
    // A client of node-b holding a pipeline on node-a, through node-b.
    let pa = cb
        .create("MediaPipeline", json!({"fluoNode": "node-a"}))
        .await
        .expect("a pipeline on node-a, through node-b");
    signal(&t.b, libc::SIGUSR1);
    let took = until_draining(&t.probe).await;
    eprintln!("drain: node-b's record says draining {took:?} after SIGUSR1");
    // Published at once, not at the next heartbeat (up to 1 s later).
    assert!(took < Duration::from_millis(400), "{took:?}");
    // No new pipeline on node-b, whichever node the client is on; a pin there is refused.
    all_on_a(&mut ca, &t.probe, "node-a").await;
    all_on_a(&mut cb, &t.probe, "node-b").await;
    let e = ca
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .expect_err("a pin to a draining node");
    assert_eq!(code(&e), 40009, "{e}");
    // Its pipeline goes on: requests, and new elements in it.
    ca.value(&ep, "getMediaState").await;
    let pt = ca
        .create("PassThrough", json!({"mediaPipeline": pb}))
        .await
        .expect("a new element in a draining node's pipeline");
    ca.invoke(&ep, "connect", json!({"sink": pt})).await;
    stays_up(&mut t, Duration::from_millis(1500), "its pipeline is there").await;
    // Its pipeline released: node-b still has a client holding a pipeline on node-a.
    ca.request("release", json!({"object": pb}))
        .await
        .expect("release");
    stays_up(
        &mut t,
        Duration::from_millis(2500),
        "its client holds a pipeline on node-a",
    )
    .await;
    // That one released too: drained, and node-b stops by itself.
    cb.request("release", json!({"object": pa}))
        .await
        .expect("release through node-b");
    let t0 = Instant::now();
    let status = loop {
        if let Ok(Some(st)) = t.b.0.try_wait() {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "node-b did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "drain: node-b stopped {:?} after the last release",
        t0.elapsed()
    );
    assert!(status.success(), "{status}");
    assert!(says_drained(&t), "no 'drained' line in node-b's log");
    // Its record was removed by its leave (not by its expiry, 3 s after the last heartbeat).
    let ids = fluo_cluster::testing::node_ids(&t.probe).await;
    assert_eq!(ids, ["node-a"]);
    // node-a serves on.
    ca.create("MediaPipeline", json!({}))
        .await
        .expect("node-a serves on");
}
