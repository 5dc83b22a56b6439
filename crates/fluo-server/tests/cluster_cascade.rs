//! Cascade (docs/cluster.md, "Cascade"): in a cluster, `source.connect(sink)` across two
//! pipelines on two nodes builds a relay (two hidden WebRtcEndpoints negotiated with each
//! other); real RTP from a publisher over WebRTC reaches a viewer on the other node, a
//! viewer's keyframe request reaches the publisher, the relay goes once it feeds nothing,
//! and without `--cluster` the same connect is KMS's 40004. The Redis is a redis-server of
//! the test's own; without it the test is skipped, and fails under CI=true.
mod common;
#[path = "cluster_link/support.rs"]
mod support;

use common::Client;
use fluo_testkit::udp_peer::Peer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use str0m::media::Direction;
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// A peer (str0m, on 127.0.0.1) negotiated with `endpoint` through `c` (processOffer).
async fn peer(c: &mut Client, endpoint: &str, dir: Direction) -> Peer {
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

/// Drives both peers (the publisher sending a 30 fps VP8 key frame of zeros) for `d`, or
/// until `done` holds.
async fn drive(
    publisher: &mut Peer,
    viewer: &mut Peer,
    d: Duration,
    done: impl Fn(&Peer, &Peer) -> bool,
) {
    let frame = vec![0u8; 800];
    let t0 = Instant::now();
    let mut next = Instant::now();
    while t0.elapsed() < d && !done(publisher, viewer) {
        let due = Instant::now() >= next;
        if due {
            next += Duration::from_millis(33);
        }
        publisher.drive(due.then_some(&frame[..]));
        viewer.drive(None);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `source.connect(sink)` for both `sinks`, sent at once; the two answers.
async fn connect_both(c: &mut Client, source: &str, sinks: [&str; 2]) -> Vec<Value> {
    let mut ids = vec![];
    for sink in sinks {
        c.next += 1;
        ids.push(c.next);
        let params =
            json!({"object": source, "operation": "connect", "operationParams": {"sink": sink}});
        let req = json!({"jsonrpc": "2.0", "id": c.next, "method": "invoke", "params": params});
        c.ws.send(Message::text(req.to_string())).await.unwrap();
    }
    let mut answers = vec![];
    while answers.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(30), c.ws.next()).await;
        let Ok(Some(Ok(Message::Text(t)))) = m else {
            panic!("no answer to the connects: {m:?}");
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        if ids.iter().any(|id| v["id"] == *id) {
            answers.push(v);
        }
    }
    answers
}

/// The children of `pipeline` other than `known`, with their names (one released between
/// the two requests, e.g. by the janitor, is left out).
async fn others(c: &mut Client, pipeline: &str, known: &[&str]) -> Vec<(String, String)> {
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

/// The elements `element` feeds (one connection per media type each).
async fn sinks_of(c: &mut Client, element: &str) -> std::collections::BTreeSet<String> {
    let sinks = c.value(element, "getSinkConnections").await;
    let sinks = sinks.as_array().expect("a list").iter();
    sinks
        .map(|s| s["sink"].as_str().expect("a sink").to_string())
        .collect()
}

/// Waits (up to `within`) until `pipeline` has no children but `known`; how long it took.
async fn until_only(c: &mut Client, pipeline: &str, known: &[&str], within: Duration) -> Duration {
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

#[tokio::test(flavor = "multi_thread")]
async fn a_connect_across_nodes_builds_a_relay_that_carries_media_and_goes_when_unused() {
    let Some(TwoNodes {
        redis: _redis,
        da: _da,
        db: _db,
        probe,
        a: _a,
        b: _b,
        port_a,
        ..
    }) = two_nodes("cascade between two fluo nodes", &[]).await
    else {
        return;
    };
    // One entry (node-a) for everything: P is its own, Q node-b's.
    let mut c = Client::connect(port_a).await;
    let p = c
        .create("MediaPipeline", json!({"fluoNode": "node-a"}))
        .await
        .unwrap();
    let q = c
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .unwrap();
    assert_eq!(owner_of(&probe, &p).await, "node-a");
    assert_eq!(owner_of(&probe, &q).await, "node-b");
    let web = json!({"mediaPipeline": p});
    let e_pub = c.create("WebRtcEndpoint", web).await.unwrap();
    let web = json!({"mediaPipeline": q});
    let e_view = c.create("WebRtcEndpoint", web.clone()).await.unwrap();
    let e_view2 = c.create("WebRtcEndpoint", web).await.unwrap();
    let mut publisher = peer(&mut c, &e_pub, Direction::SendOnly).await;
    let mut viewer = peer(&mut c, &e_view, Direction::RecvOnly).await;

    // Two sinks in Q connected at once: both answered, one relay.
    let t0 = Instant::now();
    let answers = connect_both(&mut c, &e_pub, [&e_view, &e_view2]).await;
    println!("two connects across nodes answered in {:?}", t0.elapsed());
    for a in answers {
        assert!(a.get("error").is_none() && a["result"].is_object(), "{a}");
    }
    // The relay's ends, named after the source.
    let out = others(&mut c, &p, &[&e_pub]).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].1, format!("fluo-relay-out:{e_pub}"));
    let inp = others(&mut c, &q, &[&e_view, &e_view2]).await;
    assert_eq!(inp.len(), 1, "{inp:?}");
    assert_eq!(inp[0].1, format!("fluo-relay-in:{e_pub}"));
    let relay_in = inp[0].0.clone();

    // The publisher's media reaches the viewer on the other node (decrypted frames).
    let t1 = Instant::now();
    drive(
        &mut publisher,
        &mut viewer,
        Duration::from_secs(10),
        |_, v| v.frames_in >= 1,
    )
    .await;
    println!(
        "the first frame through the relay {:?} after the connects",
        t1.elapsed()
    );
    drive(
        &mut publisher,
        &mut viewer,
        Duration::from_secs(10),
        |_, v| v.frames_in >= 30,
    )
    .await;
    println!(
        "30 frames through the relay {:?} after the connects",
        t1.elapsed()
    );
    assert!(
        viewer.frames_in >= 30,
        "frames through the relay: {}",
        viewer.frames_in
    );

    // A keyframe request of the viewer reaches the publisher: none in a quiet second and a
    // half, one within 2 s of the viewer's PLI.
    drive(
        &mut publisher,
        &mut viewer,
        Duration::from_millis(1000),
        |_, _| false,
    )
    .await;
    let quiet = publisher.keyframe_requests;
    drive(
        &mut publisher,
        &mut viewer,
        Duration::from_millis(1500),
        |_, _| false,
    )
    .await;
    assert_eq!(
        publisher.keyframe_requests, quiet,
        "keyframe requests nobody asked for"
    );
    assert!(viewer.request_keyframe(), "the viewer can send a PLI");
    let t2 = Instant::now();
    drive(
        &mut publisher,
        &mut viewer,
        Duration::from_secs(2),
        |p, _| p.keyframe_requests > quiet,
    )
    .await;
    println!(
        "the viewer's PLI reached the publisher in {:?}",
        t2.elapsed()
    );
    assert!(
        publisher.keyframe_requests > quiet,
        "the PLI did not reach the publisher"
    );

    // Both sinks on one relay; disconnecting one leaves the viewer fed; connected again
    // (the relay reused), and disconnected again.
    assert_eq!(
        others(&mut c, &q, &[&e_view, &e_view2]).await.len(),
        1,
        "one relay"
    );
    assert_eq!(others(&mut c, &p, &[&e_pub]).await.len(), 1, "one relay");
    assert_eq!(
        sinks_of(&mut c, &relay_in).await,
        [&e_view, &e_view2].map(|s| s.to_string()).into()
    );
    let disconnect =
        json!({"object": e_pub, "operation": "disconnect", "operationParams": {"sink": e_view2}});
    c.request("invoke", disconnect.clone())
        .await
        .expect("a disconnect across nodes");
    assert_eq!(sinks_of(&mut c, &relay_in).await, [e_view.clone()].into());
    let before = viewer.frames_in;
    drive(
        &mut publisher,
        &mut viewer,
        Duration::from_secs(3),
        |_, v| v.frames_in >= before + 10,
    )
    .await;
    assert!(viewer.frames_in >= before + 10, "the viewer is still fed");
    let connect2 =
        json!({"object": e_pub, "operation": "connect", "operationParams": {"sink": e_view2}});
    c.request("invoke", connect2).await.expect("a sink again");
    assert_eq!(others(&mut c, &q, &[&e_view, &e_view2]).await.len(), 1);
    assert_eq!(others(&mut c, &p, &[&e_pub]).await.len(), 1);
    let both = [&e_view, &e_view2].map(|s| s.to_string()).into();
    assert_eq!(sinks_of(&mut c, &relay_in).await, both);
    c.request("invoke", disconnect)
        .await
        .expect("disconnected again");

    // The viewer goes: both ends of the relay go (two idle checks, a second apart).
    c.request("release", json!({"object": e_view}))
        .await
        .unwrap();
    let took = until_only(&mut c, &q, &[&e_view2], Duration::from_secs(4)).await;
    until_only(&mut c, &p, &[&e_pub], Duration::from_secs(1)).await;
    println!("relay released {took:?} after the viewer");
    // A relay made again after that carries media as the first did.
    let connect =
        json!({"object": e_pub, "operation": "connect", "operationParams": {"sink": e_view2}});
    c.request("invoke", connect)
        .await
        .expect("a relay made again");
    assert_eq!(others(&mut c, &q, &[&e_view2]).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connect_across_pipelines_fails_as_on_kms_without_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (child, port) =
        common::start_server(FLUO, dir.path(), 0, &[], &dir.path().join("fluo.log"));
    let _server = common::Server(child);
    let mut c = Client::connect(port).await;
    let p = c.create("MediaPipeline", json!({})).await.unwrap();
    let q = c.create("MediaPipeline", json!({})).await.unwrap();
    let a = c
        .create("WebRtcEndpoint", json!({"mediaPipeline": p}))
        .await
        .unwrap();
    let b = c
        .create("WebRtcEndpoint", json!({"mediaPipeline": q}))
        .await
        .unwrap();
    let connect = json!({"object": a, "operation": "connect", "operationParams": {"sink": b}});
    let err = c
        .request("invoke", connect)
        .await
        .expect_err("different pipelines");
    assert_eq!(code(&err), 40004, "{err}");
    assert_eq!(c.value(&p, "getChildren").await, json!([a]));
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelines_of_one_node_get_a_relay_too_and_it_goes_with_the_sink_pipeline() {
    let Some(TwoNodes {
        redis: _redis,
        da: _da,
        db: _db,
        probe,
        a: _a,
        b: _b,
        port_a,
        ..
    }) = two_nodes("cascade within one fluo node", &[]).await
    else {
        return;
    };
    // The entry (node-a) holds neither pipeline: both are node-b's.
    let mut c = Client::connect(port_a).await;
    let pin = json!({"fluoNode": "node-b"});
    let p = c.create("MediaPipeline", pin.clone()).await.unwrap();
    let r = c.create("MediaPipeline", pin).await.unwrap();
    assert_eq!(owner_of(&probe, &p).await, "node-b");
    assert_eq!(owner_of(&probe, &r).await, "node-b");
    let e_pub = c
        .create("WebRtcEndpoint", json!({"mediaPipeline": p}))
        .await;
    let e_pub = e_pub.unwrap();
    let e_view = c
        .create("WebRtcEndpoint", json!({"mediaPipeline": r}))
        .await;
    let e_view = e_view.unwrap();
    let mut publisher = peer(&mut c, &e_pub, Direction::SendOnly).await;
    let mut viewer = peer(&mut c, &e_view, Direction::RecvOnly).await;
    let connect =
        json!({"object": e_pub, "operation": "connect", "operationParams": {"sink": e_view}});
    c.request("invoke", connect)
        .await
        .expect("a connect across pipelines");
    let inp = others(&mut c, &r, &[&e_view]).await;
    assert_eq!(inp.len(), 1, "{inp:?}");
    assert_eq!(inp[0].1, format!("fluo-relay-in:{e_pub}"));
    drive(
        &mut publisher,
        &mut viewer,
        Duration::from_secs(10),
        |_, v| v.frames_in >= 30,
    )
    .await;
    assert!(
        viewer.frames_in >= 30,
        "frames through the relay: {}",
        viewer.frames_in
    );
    // The sink's pipeline goes: relayIn with it (40101 to the janitor), relayOut after.
    c.request("release", json!({"object": r})).await.unwrap();
    let took = until_only(&mut c, &p, &[&e_pub], Duration::from_secs(3)).await;
    println!("relayOut released {took:?} after the sink's pipeline");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_does_not_keep_the_pipelines_of_a_client_that_went_away() {
    // A short grace period on both nodes: the client's sessions expire 2 s after it goes.
    let grace = ["--session-grace-secs", "2"];
    let Some(TwoNodes {
        redis: _redis,
        da,
        db: _db,
        probe,
        a: _a,
        b: _b,
        port_a,
        ..
    }) = two_nodes("a relay and a client that went away", &grace).await
    else {
        return;
    };
    let mut c = Client::connect(port_a).await;
    let p = c
        .create("MediaPipeline", json!({"fluoNode": "node-a"}))
        .await
        .unwrap();
    let q = c
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .unwrap();
    let web = json!({"mediaPipeline": p});
    let e_pub = c.create("WebRtcEndpoint", web).await.unwrap();
    let web = json!({"mediaPipeline": q});
    let e_view = c.create("WebRtcEndpoint", web).await.unwrap();
    let connect =
        json!({"object": e_pub, "operation": "connect", "operationParams": {"sink": e_view}});
    c.request("invoke", connect)
        .await
        .expect("a connect across nodes");
    let out = others(&mut c, &p, &[&e_pub]).await;
    let inp = others(&mut c, &q, &[&e_view]).await;
    assert_eq!((out.len(), inp.len()), (1, 1), "{out:?} {inp:?}");
    let (out, inp) = (out[0].0.clone(), inp[0].0.clone());
    // The client goes without releasing anything (the relay's connection stays open, and
    // its janitor keeps asking the ends every second).
    drop(c);
    let closed = Instant::now();
    // Both pipelines are released once the client's sessions expire (watched in the store,
    // which holds nothing).
    for pipeline in [&p, &q] {
        while !unowned(&probe, pipeline).await {
            assert!(
                closed.elapsed() < Duration::from_secs(8),
                "{pipeline} still owned {:?} after its only client went away: the relay keeps it",
                closed.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!(
        "both pipelines released {:?} after the client went",
        closed.elapsed()
    );
    // Nothing of them is left on either node, the relay's ends included.
    let mut fresh = Client::connect(port_a).await;
    for o in [&p, &q, &e_pub, &e_view, &out, &inp] {
        let err = fresh
            .request("invoke", json!({"object": o, "operation": "getName"}))
            .await
            .expect_err("gone");
        assert_eq!(code(&err), 40101, "{o}: {err}");
    }
    // The entry's janitor forgot the relay (an end answered 40101: `Probe::Gone`).
    let t0 = Instant::now();
    loop {
        let log = std::fs::read_to_string(da.path().join("fluo.log")).unwrap_or_default();
        let released = |l: &&str| l.contains("relay: released") && l.contains("Gone");
        if log.lines().any(|l| released(&l)) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "the janitor kept the relay"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
