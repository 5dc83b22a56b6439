//! What the cascade's tests share (tests/cluster_cascade.rs, tests/cluster_tree.rs): peers
//! negotiated with endpoints, a publisher driven with its viewers, the relay ends a pipeline
//! holds and what they feed.
#![allow(dead_code)]

use crate::common::Client;
use crate::support::code;
use fluo_testkit::udp_peer::Peer;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use str0m::media::Direction;

/// A peer (str0m, on 127.0.0.1) negotiated with `endpoint` through `c` (processOffer).
pub async fn peer(c: &mut Client, endpoint: &str, dir: Direction) -> Peer {
    let mut p = Peer::new(str0m::RtcConfig::new());
    let offer = p.offer(dir);
    let answer = c
        .request(
            "invoke",
            json!({"object": endpoint, "operation": "processOffer", "operationParams": {"offer": offer}}),
        )
        .await
        .unwrap_or_else(|e| panic!("processOffer of {endpoint}: {e}"));
    p.accept(answer.as_str().expect("an SDP answer"));
    p
}

/// Drives the publisher (sending a 30 fps VP8 key frame of zeros) and its viewers for `d`,
/// or until `done` holds.
pub async fn drive_all(
    publisher: &mut Peer,
    viewers: &mut [Peer],
    d: Duration,
    done: impl Fn(&Peer, &[Peer]) -> bool,
) {
    let frame = vec![0u8; 800];
    let t0 = Instant::now();
    let mut next = Instant::now();
    while t0.elapsed() < d && !done(publisher, viewers) {
        let due = Instant::now() >= next;
        if due {
            next += Duration::from_millis(33);
        }
        publisher.drive(due.then_some(&frame[..]));
        for v in viewers.iter_mut() {
            v.drive(None);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// [`drive_all`] with one viewer.
pub async fn drive(
    publisher: &mut Peer,
    viewer: &mut Peer,
    d: Duration,
    done: impl Fn(&Peer, &Peer) -> bool,
) {
    let viewers = std::slice::from_mut(viewer);
    drive_all(publisher, viewers, d, |p, v| done(p, &v[0])).await;
}

/// The children of `pipeline` other than `known`, with their names (one released between
/// the two requests, e.g. by the janitor, is left out).
pub async fn others(c: &mut Client, pipeline: &str, known: &[&str]) -> Vec<(String, String)> {
    let children = c.value(pipeline, "getChildren").await;
    let mut out = vec![];
    for ch in children.as_array().expect("a list") {
        let id = ch.as_str().expect("an id").to_string();
        if !known.contains(&id.as_str()) {
            let name = c
                .request("invoke", json!({"object": id, "operation": "getName"}))
                .await;
            match name {
                Ok(n) => out.push((id, n.as_str().unwrap_or_default().to_string())),
                Err(e) if code(&e) == 40101 => {}
                Err(e) => panic!("getName of {id}: {e}"),
            }
        }
    }
    out
}

/// The relay ends (named `fluo-relay-*`) among `pipeline`'s children.
pub async fn relay_ends(c: &mut Client, pipeline: &str) -> Vec<(String, String)> {
    let all = others(c, pipeline, &[]).await;
    all.into_iter()
        .filter(|(_, n)| n.starts_with("fluo-relay-"))
        .collect()
}

/// The elements `element` feeds (one connection per media type each).
pub async fn sinks_of(c: &mut Client, element: &str) -> BTreeSet<String> {
    let sinks = c.value(element, "getSinkConnections").await;
    let sinks = sinks.as_array().expect("a list").iter();
    sinks
        .map(|s| s["sink"].as_str().expect("a sink").to_string())
        .collect()
}

/// The elements that feed `element` (one connection per media type each).
pub async fn sources_of(c: &mut Client, element: &str) -> BTreeSet<String> {
    let sources = c.value(element, "getSourceConnections").await;
    let sources = sources.as_array().expect("a list").iter();
    sources
        .map(|s| s["source"].as_str().expect("a source").to_string())
        .collect()
}

/// Waits (up to `within`) until `pipeline` has no children but `known`; how long it took.
pub async fn until_only(
    c: &mut Client,
    pipeline: &str,
    known: &[&str],
    within: Duration,
) -> Duration {
    let t0 = Instant::now();
    loop {
        let left = others(c, pipeline, known).await;
        if left.is_empty() {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < within, "{pipeline} still holds {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `relayOut` among `pipelines`' relay ends that `relay_in` was negotiated with (its
/// offer is `relay_in`'s remote description: the two ends of one relay), and its pipeline.
pub async fn feeder(c: &mut Client, relay_in: &str, pipelines: &[String]) -> (String, String) {
    let remote = c.value(relay_in, "getRemoteSessionDescriptor").await;
    let mut found = vec![];
    for p in pipelines {
        for (id, name) in relay_ends(c, p).await {
            if name.starts_with("fluo-relay-out:")
                && c.value(&id, "getLocalSessionDescriptor").await == remote
            {
                found.push((id, p.clone()));
            }
        }
    }
    assert_eq!(found.len(), 1, "the relayOut of {relay_in}: {found:?}");
    found.remove(0)
}
