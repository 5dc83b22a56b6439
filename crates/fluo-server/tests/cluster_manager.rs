//! The ServerManager through an entry spans the cluster (docs/cluster.md, "ServerManager"):
//! `getPipelines` and `getSessions` list every node's, and `ObjectCreated` /
//! `ObjectDestroyed` subscribed through one node announce objects made on another, as one
//! KMS announces its own. Two nodes on a redis-server of the test's own; without it the test
//! is skipped, and fails under CI=true.
mod common;
#[path = "cluster_link/support.rs"]
mod support;

use common::Client;
use serde_json::{json, Value};
use std::time::Duration;
use support::*;

const MANAGER: &str = "manager_ServerManager";

/// The strings of a list answer.
fn strings(v: &Value) -> Vec<String> {
    let items = v.as_array().unwrap_or_else(|| panic!("a list: {v}"));
    items
        .iter()
        .map(|x| x.as_str().unwrap_or_else(|| panic!("{v}")).to_string())
        .collect()
}

/// The first event of `ty` from the ServerManager about `object` (`ObjectCreated` names it
/// in `object`, `ObjectDestroyed` in `objectId`), within 5 s.
async fn manager_event(c: &mut Client, ty: &str, object: &str) -> Value {
    let about = |e: &Value| {
        e["type"] == ty
            && e["data"]["source"] == MANAGER
            && (e["data"]["object"] == object || e["data"]["objectId"] == object)
    };
    let t0 = std::time::Instant::now();
    loop {
        if let Some(e) = c.events.iter().find(|e| about(e)) {
            return e.clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no {ty} about {object} within 5 s: {:?}",
            c.events
        );
        // Events come in while a request waits for its answer.
        c.value(MANAGER, "getCpuCount").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_manager_of_an_entry_lists_and_announces_every_nodes_objects() {
    let Some(TwoNodes {
        redis: _redis,
        da: _da,
        db: _db,
        probe,
        nodes: _nodes,
        a: _a,
        b: _b,
        port_a,
        port_b,
    }) = two_nodes("the ServerManager across two nodes", &[]).await
    else {
        return;
    };
    let (mut ca, mut cb) = (Client::connect(port_a).await, Client::connect(port_b).await);
    // Subscribed through node-a before anything is made (a round trip after, as
    // kurento-client's users do, so that the subscriptions are in place).
    ca.subscribe(MANAGER, "ObjectCreated").await;
    ca.subscribe(MANAGER, "ObjectDestroyed").await;
    ca.value(MANAGER, "getCpuCount").await;
    // One pipeline on each node, both made through node-a.
    let on_b = ca
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .expect("a pipeline pinned to node-b");
    let on_a = ca
        .create("MediaPipeline", json!({"fluoNode": "node-a"}))
        .await
        .expect("a pipeline pinned to node-a");
    assert_eq!(owner_of(&probe, &on_b).await, "node-b");
    assert_eq!(owner_of(&probe, &on_a).await, "node-a");
    let pass = ca
        .create("PassThrough", json!({"mediaPipeline": on_b}))
        .await
        .expect("an element on node-b");
    // Announced through node-a, wherever they were made.
    for o in [&on_b, &on_a, &pass] {
        let e = manager_event(&mut ca, "ObjectCreated", o).await;
        assert!(e["data"]["timestampMillis"].is_string(), "{e}");
    }
    // Every node's pipelines, through either entry, each once.
    for (c, entry) in [(&mut ca, "node-a"), (&mut cb, "node-b")] {
        let listed = strings(&c.value(MANAGER, "getPipelines").await);
        for p in [&on_a, &on_b] {
            let n = listed.iter().filter(|x| *x == p).count();
            assert_eq!(n, 1, "{p} listed once through {entry}: {listed:?}");
        }
    }
    // A later subscription is made on node-b once: the earlier ones are not made again
    // (each object announced once).
    ca.subscribe(MANAGER, "Error").await;
    let pass2 = ca
        .create("PassThrough", json!({"mediaPipeline": on_b}))
        .await
        .expect("a second element on node-b");
    manager_event(&mut ca, "ObjectCreated", &pass2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ca.value(MANAGER, "getCpuCount").await;
    let n = (ca.events.iter())
        .filter(|e| e["type"] == "ObjectCreated" && e["data"]["object"] == pass2.as_str())
        .count();
    assert_eq!(n, 1, "{pass2} announced once: {:?}", ca.events);
    // The session that made them holds objects on both nodes: listed once.
    let session = session_of(&mut ca, &on_b).await;
    let sessions = strings(&cb.value(MANAGER, "getSessions").await);
    assert_eq!(
        sessions.iter().filter(|s| **s == session).count(),
        1,
        "{session} in {sessions:?}"
    );
    // A release on node-b is announced through node-a, the cascade to its element too.
    ca.request("release", json!({"object": on_b}))
        .await
        .expect("release");
    manager_event(&mut ca, "ObjectDestroyed", &on_b).await;
    manager_event(&mut ca, "ObjectDestroyed", &pass).await;
    let listed = strings(&cb.value(MANAGER, "getPipelines").await);
    assert!(!listed.contains(&on_b), "released: {listed:?}");
    assert!(listed.contains(&on_a), "{listed:?}");
    // What describes the node itself stays the entry's (not summed over the cluster).
    let cpus = ca.value(MANAGER, "getCpuCount").await;
    assert!(cpus.as_i64().is_some_and(|n| n >= 1), "{cpus}");
}
