//! Cascade (docs/cluster.md, "Cascade"): in a cluster, `source.connect(sink)` across two
//! pipelines on two nodes builds a relay (two hidden WebRtcEndpoints negotiated with each
//! other); real RTP from a publisher over WebRTC reaches a viewer on the other node, a
//! viewer's keyframe request reaches the publisher, the relay goes once it feeds nothing,
//! and without `--cluster` the same connect is KMS's 40004. The Redis is a redis-server of
//! the test's own; without it the test is skipped, and fails under CI=true.
mod common;
#[path = "cluster_link/relays.rs"]
mod relays;
#[path = "cluster_link/support.rs"]
mod support;

use common::Client;
use fluo_testkit::udp_peer::Peer;
use futures_util::{SinkExt, StreamExt};
use relays::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use str0m::media::Direction;
use support::*;
use tokio_tungstenite::tungstenite::Message;

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

#[tokio::test(flavor = "multi_thread")]
async fn a_connect_across_nodes_builds_a_relay_that_carries_media_and_goes_when_unused() {
    let Some(two) = two_nodes("cascade between two fluo nodes", &[]).await else {
        return;
    };
    // One entry (node-a) for everything: P is its own, Q node-b's.
    let mut c = Client::connect(two.port_a).await;
    let (p, q) = p_and_q(&mut c).await;
    assert_eq!(owner_of(&two.probe, &p).await, "node-a");
    assert_eq!(owner_of(&two.probe, &q).await, "node-b");
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

/// Drives both peers for `d`; each keyframe request that reached the publisher meanwhile
/// is added to `seen` as of the end of `d` (since `t0`).
async fn asked_during(
    publisher: &mut Peer,
    viewer: &mut Peer,
    d: Duration,
    t0: Instant,
    seen: &mut Vec<Duration>,
) {
    let before = publisher.keyframe_requests;
    drive(publisher, viewer, d, |_, _| false).await;
    for _ in before..publisher.keyframe_requests {
        seen.push(t0.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewers_keyframe_requests_cross_a_relay_at_most_once_a_second() {
    let Some(two) = two_nodes("cascade: keyframe requests across a relay", &[]).await else {
        return;
    };
    let (mut c, [_p, _q, e_pub, e_view]) = across(two.port_a).await;
    let mut publisher = peer(&mut c, &e_pub, Direction::SendOnly).await;
    let mut viewer = peer(&mut c, &e_view, Direction::RecvOnly).await;
    let connect = json!({"sink": e_view});
    let connect = json!({"object": e_pub, "operation": "connect", "operationParams": connect});
    c.request("invoke", connect).await.expect("a relay");
    drive(
        &mut publisher,
        &mut viewer,
        Duration::from_secs(10),
        |_, v| v.frames_in >= 30,
    )
    .await;
    assert!(viewer.frames_in >= 30, "frames: {}", viewer.frames_in);
    // A keyframe request of the viewer reaches the publisher: none in a quiet second and a
    // half, one within 2 s of the viewer's PLI.
    let wait = |d| Duration::from_millis(d);
    drive(&mut publisher, &mut viewer, wait(1000), |_, _| false).await;
    let quiet = publisher.keyframe_requests;
    drive(&mut publisher, &mut viewer, wait(1500), |_, _| false).await;
    assert_eq!(
        publisher.keyframe_requests, quiet,
        "requests nobody asked for"
    );
    assert!(viewer.request_keyframe(), "the viewer can send a PLI");
    let t2 = Instant::now();
    let asked = |p: &Peer, _: &Peer| p.keyframe_requests > quiet;
    drive(&mut publisher, &mut viewer, wait(2000), asked).await;
    println!(
        "the viewer's PLI reached the publisher in {:?}",
        t2.elapsed()
    );
    assert!(
        publisher.keyframe_requests > quiet,
        "the PLI did not arrive"
    );
    // Issue 22: at most one keyframe request a second per edge. After a quiet second and a
    // half, the viewer asks every 50 ms until 2.5 s after the first request reached the
    // publisher: relayIn sends one at once, then one at the end of each of its seconds in
    // which it was asked (4; 5 when the last PLIs are late by half a second, as on a busy
    // machine). Without the edge's limit, the source's 300 ms let about ten through, under
    // 500 ms apart.
    drive(&mut publisher, &mut viewer, wait(1500), |_, _| false).await;
    let (t3, mut seen) = (Instant::now(), vec![]);
    while seen.first().is_none_or(|f| t3.elapsed() < *f + wait(2500)) {
        let late = seen.is_empty() && t3.elapsed() > Duration::from_secs(5);
        assert!(!late, "no keyframe request reached the publisher");
        assert!(viewer.request_keyframe(), "the viewer can send a PLI");
        asked_during(&mut publisher, &mut viewer, wait(50), t3, &mut seen).await;
    }
    // The one deferred to the end of the edge's last second, if any (timed to 50 ms).
    for _ in 0..30 {
        asked_during(&mut publisher, &mut viewer, wait(50), t3, &mut seen).await;
    }
    println!("PLIs every 50 ms for 2.5 s after the first request: requests reached the publisher at {seen:?}");
    assert!(seen[0] < wait(500), "the first came after {:?}", seen[0]);
    assert!(
        (3..=5).contains(&seen.len()),
        "{} requests: {seen:?}",
        seen.len()
    );
    let closest = seen.windows(2).map(|w| w[1] - w[0]).min();
    assert!(
        closest >= Some(wait(500)),
        "requests {closest:?} apart: {seen:?}"
    );
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
    let Some(two) = two_nodes("cascade within one fluo node", &[]).await else {
        return;
    };
    // The entry (node-a) holds neither pipeline: both are node-b's.
    let mut c = Client::connect(two.port_a).await;
    let pin = json!({"fluoNode": "node-b"});
    let p = c.create("MediaPipeline", pin.clone()).await.unwrap();
    let r = c.create("MediaPipeline", pin).await.unwrap();
    assert_eq!(owner_of(&two.probe, &p).await, "node-b");
    assert_eq!(owner_of(&two.probe, &r).await, "node-b");
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
    let Some(two) = two_nodes("a relay and a client that went away", &grace).await else {
        return;
    };
    let mut c = Client::connect(two.port_a).await;
    let (p, q) = p_and_q(&mut c).await;
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
        while !unowned(&two.probe, pipeline).await {
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
    let mut fresh = Client::connect(two.port_a).await;
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
        let log = std::fs::read_to_string(two.da.path().join("fluo.log")).unwrap_or_default();
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

/// Sends `invoke(object.op(params))` on `c` without waiting; its request id.
async fn send_invoke(c: &mut Client, object: &str, op: &str, params: Value) -> u64 {
    c.next += 1;
    let params = json!({"object": object, "operation": op, "operationParams": params});
    let req = json!({"jsonrpc": "2.0", "id": c.next, "method": "invoke", "params": params});
    c.ws.send(Message::text(req.to_string())).await.unwrap();
    c.next
}

/// The answers to requests `ids` on `c`, in the order they came, each with when it came
/// (since `t0`); panics after `within`.
async fn answers(
    c: &mut Client,
    ids: &[u64],
    t0: Instant,
    within: Duration,
) -> Vec<(u64, Value, Duration)> {
    let mut got = vec![];
    while got.len() < ids.len() {
        let left = within.saturating_sub(t0.elapsed());
        let m = tokio::time::timeout(left, c.ws.next()).await;
        let Ok(Some(Ok(Message::Text(t)))) = m else {
            panic!("no answer to {ids:?} within {within:?} (got {got:?}): {m:?}");
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        if let Some(id) = v["id"].as_u64().filter(|id| ids.contains(id)) {
            got.push((id, v, t0.elapsed()));
        }
    }
    got
}

/// [`TwoNodes`] whose links wait 20 s for a silent peer (`--peer-silence-ms`), with
/// [`across`] through node-a; `None` without a redis-server.
async fn silent_owner(what: &str) -> Option<(TwoNodes, Client, [String; 4])> {
    let two = two_nodes(what, &["--peer-silence-ms", "20000"]).await?;
    let (c, ends) = across(two.port_a).await;
    Some((two, c, ends))
}

/// Through `c`: P pinned to node-a and Q to node-b.
async fn p_and_q(c: &mut Client) -> (String, String) {
    let p = c
        .create("MediaPipeline", json!({"fluoNode": "node-a"}))
        .await
        .unwrap();
    let q = c
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .unwrap();
    (p, q)
}

/// A client on node-a with P pinned to node-a and Q to node-b, a WebRtcEndpoint in each.
async fn across(port_a: u16) -> (Client, [String; 4]) {
    let mut c = Client::connect(port_a).await;
    let (p, q) = p_and_q(&mut c).await;
    let a = c
        .create("WebRtcEndpoint", json!({"mediaPipeline": p}))
        .await;
    let b = c
        .create("WebRtcEndpoint", json!({"mediaPipeline": q}))
        .await;
    (c, [p, q, a.unwrap(), b.unwrap()])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disconnect_sent_right_after_its_connect_waits_for_it() {
    let Some(two) = two_nodes("cascade: connect then disconnect at once", &[]).await else {
        return;
    };
    let (mut c, [p, q, e_pub, e_view]) = across(two.port_a).await;
    // Sent back to back: the disconnect reaches the entry while the relay is being made.
    let t0 = Instant::now();
    let sink = json!({"sink": e_view});
    let connect = send_invoke(&mut c, &e_pub, "connect", sink.clone()).await;
    let disconnect = send_invoke(&mut c, &e_pub, "disconnect", sink).await;
    let got = answers(&mut c, &[connect, disconnect], t0, Duration::from_secs(20)).await;
    println!(
        "connect and disconnect answered after {:?} and {:?}",
        got[0].2, got[1].2
    );
    assert_eq!(
        (got[0].0, got[1].0),
        (connect, disconnect),
        "answered in order"
    );
    for (_, v, _) in &got {
        assert!(v.get("error").is_none(), "{v}");
    }
    // Disconnected after it was connected: the sink is fed by nothing, and the relay idle
    // goes (two checks of the janitor).
    let fed = c.value(&e_view, "getSourceConnections").await;
    assert_eq!(fed, json!([]), "the connect overtook the disconnect");
    let t1 = Instant::now();
    loop {
        let (o, i) = (relay_ends(&mut c, &p).await, relay_ends(&mut c, &q).await);
        if o.is_empty() && i.is_empty() {
            break;
        }
        assert!(t1.elapsed() < Duration::from_secs(5), "{o:?} {i:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_fails_cleanly_for_a_missing_source_or_sink_and_carries_audio_alone() {
    let Some(two) = two_nodes("cascade failure paths", &[]).await else {
        return;
    };
    let (mut c, [p, q, e_pub, e_view]) = across(two.port_a).await;
    // A source that does not exist: the owner's 40101, named after the relay; nothing made.
    let ghost = format!("{p}/00000000-0000-4000-8000-000000000000_kurento.WebRtcEndpoint");
    let err = c
        .request(
            "invoke",
            json!({"object": ghost, "operation": "connect", "operationParams": {"sink": e_view}}),
        )
        .await
        .expect_err("no such source");
    assert_eq!(code(&err), 40101, "{err}");
    let m = err["message"].as_str().unwrap_or_default();
    assert!(
        m.starts_with(&format!("relay from {ghost} to {e_view}: ")),
        "{m}"
    );
    // A sink in a pipeline released meanwhile: 40101, and no relay end left behind.
    let gone_q = c
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .unwrap();
    let gone_sink = c
        .create("WebRtcEndpoint", json!({"mediaPipeline": gone_q}))
        .await
        .unwrap();
    c.request("release", json!({"object": gone_q}))
        .await
        .unwrap();
    let err = c
        .request(
            "invoke",
            json!({"object": e_pub, "operation": "connect", "operationParams": {"sink": gone_sink}}),
        )
        .await
        .expect_err("no such sink");
    assert_eq!(code(&err), 40101, "{err}");
    assert_eq!(relay_ends(&mut c, &p).await, vec![], "relay ends in P");
    assert_eq!(relay_ends(&mut c, &q).await, vec![], "relay ends in Q");
    // AUDIO alone through the relay: relayIn feeds the sink audio only.
    let audio = json!({"sink": e_view, "mediaType": "AUDIO"});
    c.request(
        "invoke",
        json!({"object": e_pub, "operation": "connect", "operationParams": audio}),
    )
    .await
    .expect("an AUDIO connect across nodes");
    let inp = relay_ends(&mut c, &q).await;
    assert_eq!(inp.len(), 1, "{inp:?}");
    let fed = c.value(&inp[0].0, "getSinkConnections").await;
    let fed = fed.as_array().expect("a list");
    assert!(!fed.is_empty(), "relayIn feeds nothing");
    for f in fed {
        assert_eq!(
            (f["sink"].as_str(), f["type"].as_str()),
            (Some(e_view.as_str()), Some("AUDIO")),
            "{f}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connect_to_an_owner_that_does_not_answer_is_answered_within_8_s() {
    // The link waits 20 s for a silent peer: the relay's own deadline answers first.
    let Some((two, mut c, [p, q, e_pub, e_view])) = silent_owner("cascade deadline").await else {
        return;
    };
    let b = &two.b;
    stop(b).await;
    let t0 = Instant::now();
    let err = c
        .request(
            "invoke",
            json!({"object": e_pub, "operation": "connect", "operationParams": {"sink": e_view}}),
        )
        .await
        .expect_err("node-b does not answer");
    let took = t0.elapsed();
    signal(b, libc::SIGCONT);
    println!("a connect to a stopped owner answered after {took:?}: {err}");
    assert_eq!(code(&err), 40004, "{err}");
    let m = err["message"].as_str().unwrap_or_default();
    assert!(m.contains("no answer within 8 s (while "), "{m}");
    assert!(
        took >= Duration::from_millis(7900) && took < Duration::from_secs(12),
        "{took:?}"
    );
    // Once node-b answers again, nothing of the relay is left (its next step was not taken).
    let t1 = Instant::now();
    loop {
        let (o, i) = (relay_ends(&mut c, &p).await, relay_ends(&mut c, &q).await);
        if o.is_empty() && i.is_empty() && t1.elapsed() > Duration::from_secs(3) {
            break;
        }
        assert!(t1.elapsed() < Duration::from_secs(20), "{o:?} {i:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(c.value(&e_view, "getSourceConnections").await, json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_that_does_not_answer_does_not_delay_the_janitor_for_other_relays() {
    // The link waits 20 s for a silent peer: a check of a relay on node-b takes 10 s (the
    // relay's own wait for an answer) while node-b is stopped.
    let what = "cascade: a silent owner and the janitor";
    // Relay X from P (node-a) to Q (node-b); relay Y from P to R, both node-a's.
    let Some((two, mut c, [p, _q, e_pub, e_view])) = silent_owner(what).await else {
        return;
    };
    let b = &two.b;
    let r = c
        .create("MediaPipeline", json!({"fluoNode": "node-a"}))
        .await
        .unwrap();
    let k = c
        .create("PassThrough", json!({"mediaPipeline": r}))
        .await
        .unwrap();
    for sink in [&e_view, &k] {
        let connect =
            json!({"object": e_pub, "operation": "connect", "operationParams": {"sink": sink}});
        c.request("invoke", connect).await.expect("a relay");
    }
    assert_eq!(relay_ends(&mut c, &p).await.len(), 2);
    assert_eq!(relay_ends(&mut c, &r).await.len(), 1);
    // node-b stops answering; Y feeds nothing from now on: it goes after two idle checks
    // (X's checks, waiting for node-b, hold up none of Y's; before R41 finding 3 was fixed
    // every pass waited for them, 10 s).
    stop(b).await;
    let disconnect =
        json!({"object": e_pub, "operation": "disconnect", "operationParams": {"sink": k}});
    c.request("invoke", disconnect).await.expect("a disconnect");
    let t0 = Instant::now();
    while !relay_ends(&mut c, &r).await.is_empty() {
        let took = t0.elapsed();
        if took > Duration::from_secs(6) {
            signal(b, libc::SIGCONT);
            panic!("relay Y still there {took:?} after it went idle");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "an idle relay released {:?} after it went idle, while another relay's owner was stopped",
        t0.elapsed()
    );
    signal(b, libc::SIGCONT);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_relays_of_an_entry_that_stops_are_released() {
    let Some(two) = two_nodes("cascade: the entry stops", &[]).await else {
        return;
    };
    // Through node-a, a relay between two pipelines of node-b.
    let mut c = Client::connect(two.port_a).await;
    let pin = json!({"fluoNode": "node-b"});
    let p = c.create("MediaPipeline", pin.clone()).await.unwrap();
    let q = c.create("MediaPipeline", pin).await.unwrap();
    let e_pub = c
        .create("WebRtcEndpoint", json!({"mediaPipeline": p}))
        .await
        .unwrap();
    let e_view = c
        .create("WebRtcEndpoint", json!({"mediaPipeline": q}))
        .await
        .unwrap();
    c.request(
        "invoke",
        json!({"object": e_pub, "operation": "connect", "operationParams": {"sink": e_view}}),
    )
    .await
    .expect("a relay");
    let mut fresh = Client::connect(two.port_b).await;
    assert_eq!(relay_ends(&mut fresh, &p).await.len(), 1);
    assert_eq!(relay_ends(&mut fresh, &q).await.len(), 1);
    // node-a stops gracefully: its relays go with it; the client's pipelines stay (its
    // sessions on node-b wait for it for the grace period).
    signal(&two.a, libc::SIGTERM);
    let t0 = Instant::now();
    loop {
        let (o, i) = (
            relay_ends(&mut fresh, &p).await,
            relay_ends(&mut fresh, &q).await,
        );
        if o.is_empty() && i.is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "left after the entry stopped: {o:?} {i:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "relay ends released {:?} after SIGTERM to the entry",
        t0.elapsed()
    );
    assert_eq!(fresh.value(&p, "getChildren").await, json!([e_pub]));
    assert_eq!(fresh.value(&q, "getChildren").await, json!([e_view]));
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_relays_and_what_a_janitor_check_takes() {
    let Some(two) = two_nodes("cascade: fifty relays", &[]).await else {
        return;
    };
    let mut c = Client::connect(two.port_a).await;
    let (p, q) = p_and_q(&mut c).await;
    // Fifty sources in P, a sink each in Q: fifty relays (one per source and pipeline).
    let mut pairs = vec![];
    for _ in 0..50 {
        let s = c
            .create("PassThrough", json!({"mediaPipeline": p}))
            .await
            .unwrap();
        let k = c
            .create("PassThrough", json!({"mediaPipeline": q}))
            .await
            .unwrap();
        pairs.push((s, k));
    }
    let t0 = Instant::now();
    for batch in pairs.chunks(10) {
        let mut ids = vec![];
        for (s, k) in batch {
            ids.push(send_invoke(&mut c, s, "connect", json!({"sink": k})).await);
        }
        for (_, v, _) in answers(&mut c, &ids, Instant::now(), Duration::from_secs(30)).await {
            assert!(v.get("error").is_none(), "{v}");
        }
    }
    println!("50 relays made in {:?}", t0.elapsed());
    assert_eq!(relay_ends(&mut c, &q).await.len(), 50);
    // The janitor's figures (logged every 10 s while it has relays): the second report
    // logged after the fifty were made covers only checks while all fifty existed.
    let reports = || {
        let log = std::fs::read_to_string(two.da.path().join("fluo.log")).unwrap_or_default();
        let fifty = |l: &&str| l.contains("relay: janitor checks") && l.contains("relays=50");
        log.lines()
            .filter(fifty)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let known = reports().len();
    let t1 = Instant::now();
    let line = loop {
        if let Some(l) = reports().get(known + 1) {
            break l.clone();
        }
        assert!(t1.elapsed() < Duration::from_secs(40), "no janitor figures");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("janitor with 50 relays: {line}");
    let field = |name: &str| -> f64 {
        let v = line.split(&format!("{name}=")).nth(1).unwrap_or_default();
        v.split_whitespace()
            .next()
            .unwrap_or_default()
            .parse()
            .unwrap_or(f64::MAX)
    };
    // A check fits in the janitor's second on average, none takes seconds (bounds with room
    // for a loaded machine running debug builds; the figures are printed above).
    assert!(field("mean_ms") < 1000.0, "{line}");
    assert!(field("slowest_ms") < 5000.0, "{line}");
    // Every relay still feeds its sink (none was taken for idle).
    assert_eq!(relay_ends(&mut c, &p).await.len(), 50);
}
