//! Any-node entry (docs/cluster.md): fluo servers on one Redis, a client on one node using
//! pipelines another node owns, through the node-to-node link (`--peer-port`,
//! `--cluster-secret`): requests, answers and events forwarded, placement by spare room and
//! by pin, the link closed to anyone without the secret, and a dead owner answered for at
//! once. The Redis is a redis-server of the test's own on a unix socket; without it the
//! tests are skipped, and fail under CI=true.
mod common;
#[path = "cluster_link/support.rs"]
mod support;

use common::Client;
use fluo_cluster::testing::RedisServer;
use fluo_cluster::Coordinator;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// p50 and p99 of 200 `getName` requests on `object`, one at a time.
async fn latencies(c: &mut Client, object: &str) -> [Duration; 2] {
    let mut took = vec![];
    for _ in 0..200 {
        let t0 = Instant::now();
        c.value(object, "getName").await;
        took.push(t0.elapsed());
    }
    took.sort();
    [took[100], took[198]]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_on_one_node_uses_a_pipeline_pinned_to_another() {
    let Some(two) = two_nodes("forwarding between two fluo nodes", &[]).await else {
        return;
    };
    // Each record publishes its link's bound port (not the WebSocket's).
    for (n, ws) in two.nodes.iter().zip([two.port_a, two.port_b]) {
        let port: u16 = n
            .info
            .peer
            .strip_prefix("127.0.0.1:")
            .unwrap()
            .parse()
            .unwrap();
        assert!(port != 0 && port != ws, "{n:?}");
    }
    let (mut ca, mut cb) = (
        Client::connect(two.port_a).await,
        Client::connect(two.port_b).await,
    );
    let p = ca
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .expect("a pipeline pinned to node-b, through node-a");
    assert_eq!(owner_of(&two.probe, &p).await, "node-b");
    let e = ca
        .create("WebRtcEndpoint", json!({"mediaPipeline": p}))
        .await
        .expect("an endpoint in it, through node-a");
    assert!(e.starts_with(&format!("{p}/")), "{e}");
    ca.subscribe(&e, "IceCandidateFound").await;
    let answer = ca
        .request(
            "invoke",
            json!({"object": e, "operation": "processOffer", "operationParams": {"offer": OFFER}}),
        )
        .await
        .expect("processOffer through node-a");
    let answer = answer.as_str().expect("an SDP answer");
    assert!(
        answer.starts_with("v=0") && answer.contains("m=audio"),
        "{answer}"
    );
    ca.invoke(&e, "gatherCandidates", json!({})).await;
    let found = ca
        .event("IceCandidateFound", &e, Duration::from_secs(10))
        .await
        .expect("node-b's IceCandidateFound, through node-a");
    assert!(
        found["data"]["candidate"]["candidate"].is_string(),
        "{found}"
    );
    // Getters, describe and bad requests answer as on a direct connection to node-b.
    for op in [
        "getMediaState",
        "getConnectionState",
        "getLocalSessionDescriptor",
        "getName",
    ] {
        same(
            &mut ca,
            &mut cb,
            "invoke",
            json!({"object": e, "operation": op}),
        )
        .await
        .unwrap_or_else(|err| panic!("{op}: {err}"));
    }
    let d = same(&mut ca, &mut cb, "describe", json!({"object": e}))
        .await
        .unwrap();
    assert_eq!(d["type"], "WebRtcEndpoint", "{d}");
    let bad = [
        json!({"object": e, "operation": "noSuchOperation"}),
        json!({"object": format!("{p}/nothing_kurento.WebRtcEndpoint"), "operation": "getName"}),
        json!({"object": e, "operation": "processOffer", "operationParams": {"offer": 7}}),
    ];
    for params in bad {
        let err = same(&mut ca, &mut cb, "invoke", params.clone()).await;
        assert!(err.is_err(), "{params}: {err:?}");
    }
    // A Composite's port: HubPort's constructor names the hub (not the pipeline), so the
    // create goes to the hub's node; the port connects there.
    let hub = ca
        .create("Composite", json!({"mediaPipeline": p}))
        .await
        .expect("a Composite in node-b's pipeline, through node-a");
    let port = ca
        .create("HubPort", json!({"hub": hub}))
        .await
        .expect("createHubPort of node-b's Composite, through node-a");
    assert!(port.starts_with(&format!("{p}/")), "{port}");
    ca.invoke(&e, "connect", json!({"sink": port})).await;
    let sinks = cb.value(&e, "getSinkConnections").await;
    assert!(
        sinks
            .as_array()
            .is_some_and(|s| s.iter().any(|c| c["sink"] == port)),
        "{sinks}"
    );
    // A transaction about node-b's pipeline, through node-a (`newref` names what it made).
    let t = ca
        .request(
            "transaction",
            json!({"operations": [
                {"jsonrpc": "2.0", "id": 0, "method": "create",
                 "params": {"type": "PassThrough", "constructorParams": {"mediaPipeline": p}}},
                {"jsonrpc": "2.0", "id": 1, "method": "invoke",
                 "params": {"object": "newref:0", "operation": "getName"}},
            ]}),
        )
        .await
        .expect("a transaction on node-b's pipeline, through node-a");
    assert!(t.to_string().contains(&format!("{p}/")), "{t}");
    // The cost of the hop: the same getter through node-a and directly on node-b.
    let (through, direct) = (latencies(&mut ca, &e).await, latencies(&mut cb, &e).await);
    println!("getName p50/p99 through the entry {through:?}, directly {direct:?}");
    assert!(through[0] < Duration::from_millis(50), "{through:?}");
    // A pipeline of node-a in the same connection (one session on both nodes), and node-b's
    // objects still answer on it.
    let local = ca
        .create("MediaPipeline", json!({"fluoNode": "node-a"}))
        .await
        .expect("a pipeline on node-a");
    assert_eq!(owner_of(&two.probe, &local).await, "node-a");
    // An argument of that other pipeline (on another node than the called object's): 40004
    // as KMS answers for two pipelines' objects, not the owner's 40101 (it does not know
    // node-a's port). Both as an invoke and as a create.
    let foreign_hub = ca
        .create("Dispatcher", json!({"mediaPipeline": local}))
        .await
        .expect("a Dispatcher on node-a");
    let foreign = ca
        .create("HubPort", json!({"hub": foreign_hub}))
        .await
        .expect("its port");
    let dispatcher = ca
        .create("Dispatcher", json!({"mediaPipeline": p}))
        .await
        .expect("a Dispatcher on node-b");
    let mine = ca
        .create("HubPort", json!({"hub": dispatcher}))
        .await
        .expect("its port");
    let err = refused(
        &mut ca,
        "invoke",
        json!({"object": dispatcher, "operation": "connect",
                   "operationParams": {"source": foreign, "sink": mine}}),
        "a port of another pipeline",
    )
    .await;
    assert!(err["message"].as_str().unwrap().contains(&foreign), "{err}");
    // Both pipelines on node-b: its engine says so itself.
    let q2 = ca
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .expect("another pipeline on node-b");
    let hub2 = ca
        .create("Dispatcher", json!({"mediaPipeline": q2}))
        .await
        .expect("a Dispatcher there");
    let port2 = ca
        .create("HubPort", json!({"hub": hub2}))
        .await
        .expect("its port");
    refused(
        &mut ca,
        "invoke",
        json!({"object": dispatcher, "operation": "connect",
                   "operationParams": {"source": port2, "sink": mine}}),
        "a port of another pipeline of the same node",
    )
    .await;
    let one_to_many = ca
        .create("DispatcherOneToMany", json!({"mediaPipeline": p}))
        .await
        .expect("a DispatcherOneToMany on node-b");
    refused(
        &mut ca,
        "invoke",
        json!({"object": one_to_many, "operation": "setSource",
                   "operationParams": {"source": foreign}}),
        "setSource of another pipeline's port",
    )
    .await;
    refused(
        &mut ca,
        "create",
        json!({"type": "HubPort", "constructorParams": {"mediaPipeline": p, "hub": foreign_hub}}),
        "a create naming two pipelines",
    )
    .await;
    // The pin as the official kurento-client sends it (`create('MediaPipeline', {fluoNode})`:
    // a parameter MediaPipeline does not declare goes in `properties`).
    let q = ca
        .request(
            "create",
            json!({"type": "MediaPipeline", "properties": {"fluoNode": "node-b"}}),
        )
        .await
        .expect("a pipeline pinned in its properties");
    assert_eq!(owner_of(&two.probe, q.as_str().unwrap()).await, "node-b");
    ca.value(&e, "getName").await;
    // Release through the entry: gone on node-b as well.
    ca.request("release", json!({"object": e}))
        .await
        .expect("release");
    same(
        &mut ca,
        &mut cb,
        "invoke",
        json!({"object": e, "operation": "getName"}),
    )
    .await
    .expect_err("released");
    ca.request("release", json!({"object": p}))
        .await
        .expect("release");
    let t0 = Instant::now();
    while !unowned(&two.probe, &p).await {
        assert!(t0.elapsed() < Duration::from_secs(5), "{p} still owned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_pipeline_goes_to_the_node_with_more_room() {
    let room = ["--max-objects", "50"];
    let Some(two) = two_nodes("placement between two fluo nodes", &room).await else {
        return;
    };
    // A burst of unpinned creates through one node, on two empty nodes: spread over both
    // (the entry counts what it placed since the last listing, which does not show it yet).
    let mut c = Client::connect(two.port_a).await;
    let mut burst = vec![];
    for _ in 0..10 {
        burst.push(c.create("MediaPipeline", json!({})).await.unwrap());
    }
    let mut on_b = 0;
    for p in &burst {
        on_b += usize::from(owner_of(&two.probe, p).await == "node-b");
    }
    println!("10 pipelines created back to back through node-a: {on_b} on node-b");
    assert!((2..=8).contains(&on_b), "{on_b} of 10 on node-b");
    for p in burst {
        c.request("release", json!({"object": p})).await.unwrap();
    }
    // Fill one node with endpoints (pinned there), then create unpinned pipelines through
    // each node: they go to the other one.
    for (full, entry_port, other) in [
        ("node-a", two.port_b, "node-b"),
        ("node-b", two.port_a, "node-a"),
    ] {
        let mut c = Client::connect(entry_port).await;
        let p = c
            .create("MediaPipeline", json!({"fluoNode": full}))
            .await
            .unwrap();
        for _ in 0..5 {
            c.create("WebRtcEndpoint", json!({"mediaPipeline": p}))
                .await
                .unwrap();
        }
        let t0 = Instant::now();
        loop {
            let nodes = two.probe.nodes().await.unwrap();
            if nodes
                .iter()
                .any(|n| n.info.id.as_str() == full && n.stats.endpoints >= 5)
            {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "{nodes:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Each node reads the list once a second, after its heartbeat.
        tokio::time::sleep(LISTED).await;
        // Both entries place it on the other node, and the client uses it from either.
        for port in [two.port_a, two.port_b] {
            let mut c2 = Client::connect(port).await;
            let q = c2.create("MediaPipeline", json!({})).await.unwrap();
            assert_eq!(
                owner_of(&two.probe, &q).await,
                other,
                "created through {port}"
            );
            c2.create("PassThrough", json!({"mediaPipeline": q}))
                .await
                .expect("an element in the placed pipeline");
        }
        c.request("release", json!({"object": p})).await.unwrap();
        let t0 = Instant::now();
        loop {
            let nodes = two.probe.nodes().await.unwrap();
            if nodes.iter().all(|n| n.stats.endpoints == 0) {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "{nodes:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(LISTED).await;
    }
    // A pin to a node that is not serving is refused (NOT_ENOUGH_RESOURCES), not ignored.
    let mut c = Client::connect(two.port_a).await;
    let e = c
        .create("MediaPipeline", json!({"fluoNode": "node-z"}))
        .await
        .expect_err("no node-z");
    assert_eq!(code(&e), 40009, "{e}");
    // A pin that is not a node id: MARSHALL_ERROR, as for other bad constructor parameters.
    let e = c
        .create("MediaPipeline", json!({"fluoNode": 7}))
        .await
        .expect_err("a number");
    assert_eq!(code(&e), 40001, "{e}");
    // A pipeline node-a has never seen, made directly on node-b.
    let mut cb = Client::connect(two.port_b).await;
    let elsewhere = cb
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .unwrap();
    let el = cb
        .create("PassThrough", json!({"mediaPipeline": elsewhere}))
        .await
        .unwrap();
    // Redis paused long enough for the nodes' listings to fail: a pin still goes to its
    // node (the link needs no Redis), an unpinned create is answered at once, and a request
    // about that pipeline gets a transient CONNECT_ERROR (not "not found": node-a cannot
    // tell who holds it).
    two.redis.pause();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = Instant::now();
    let q = c
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .expect("a pipeline pinned to node-b while Redis is paused");
    cb.request("describe", json!({"object": q}))
        .await
        .expect("made on node-b");
    c.create("MediaPipeline", json!({}))
        .await
        .expect("an unpinned pipeline while Redis is paused");
    let err = c
        .request("invoke", json!({"object": el, "operation": "getName"}))
        .await
        .expect_err("its owner is unknown while Redis is paused");
    assert_eq!(code(&err), 40004, "{err}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    two.redis.resume();
    // Once Redis answers, the request is forwarded.
    c.value(&el, "getName").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_link_refuses_whoever_lacks_the_secret() {
    let Some(redis) = RedisServer::start("the link's authentication") else {
        return;
    };
    let url = redis.url();
    let (da, dc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_a, _) = node(da.path(), &url, "node-a", SECRET, &[]);
    let (_c, port_c) = node(dc.path(), &url, "node-c", "another cluster's secret", &[]);
    let probe = Coordinator::redis(&url).unwrap();
    let nodes = until_listed(&probe, &["node-a", "node-c"]).await;
    let peer_a = nodes[0].info.peer.clone();
    // A node with another secret cannot place a pipeline there.
    let mut c = Client::connect(port_c).await;
    let e = c
        .create("MediaPipeline", json!({"fluoNode": "node-a"}))
        .await
        .expect_err("refused");
    assert_eq!(code(&e), 40009, "{e}");
    assert!(e["message"].as_str().unwrap().contains("secret"), "{e}");
    // A Kurento client on the link's port gets nothing, and the connection ends.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{peer_a}/kurento"))
        .await
        .expect("the WebSocket handshake");
    let create =
        json!({"jsonrpc":"2.0","id":1,"method":"create","params":{"type":"MediaPipeline"}});
    ws.send(Message::text(create.to_string())).await.unwrap();
    assert_eq!(drain(&mut ws).await, Vec::<String>::new());
    // A hello meant for another node (or another boot of this one), as a relay of another
    // node's handshake would be: no answer at all.
    let boot_a = nodes[0].boot;
    for (to, boot) in [("node-c", boot_a), ("node-a", boot_a + 1)] {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{peer_a}/fluo-link"))
            .await
            .unwrap();
        let hello = json!({"hello": "fluo-link/1", "node": "mallory", "nonce": "ab".repeat(32),
            "to": to, "boot": boot});
        ws.send(Message::text(hello.to_string())).await.unwrap();
        assert_eq!(drain(&mut ws).await, Vec::<String>::new(), "{to} {boot}");
    }
    // A hello answered with a wrong MAC: the challenge, then nothing for the frames after.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{peer_a}/fluo-link"))
        .await
        .unwrap();
    let hello = json!({"hello": "fluo-link/1", "node": "mallory", "nonce": "ab".repeat(32),
        "to": "node-a", "boot": boot_a});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    let Some(Ok(Message::Text(ch))) = ws.next().await else {
        panic!("no challenge")
    };
    let ch: Value = serde_json::from_str(ch.as_str()).unwrap();
    assert_eq!(ch["mac"].as_str().map(str::len), Some(64), "{ch}");
    for f in [
        json!({"mac": "00".repeat(32)}),
        json!({"t": "open", "conn": 1, "peer": "127.0.0.1"}),
        json!({"t": "text", "conn": 1, "text": create.to_string()}),
    ] {
        let _ = ws.send(Message::text(f.to_string())).await;
    }
    assert_eq!(drain(&mut ws).await, Vec::<String>::new());
    let log = std::fs::read_to_string(da.path().join("fluo.log")).unwrap();
    assert!(
        log.contains("did not prove it knows the cluster secret"),
        "{log}"
    );
    for secret in [SECRET, "another cluster's secret"] {
        assert!(!log.contains(secret), "the secret in the log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_owner_is_answered_for_at_once() {
    let Some(mut two) = two_nodes("a dead owner", &[]).await else {
        return;
    };
    let mut ca = Client::connect(two.port_a).await;
    let (_p, e) = endpoint_on(&mut ca, "node-b").await;
    two.b.0.kill().unwrap(); // SIGKILL
    two.b.0.wait().unwrap();
    // Its link broke: the client's connection to node-a stays open (its pipelines on other
    // nodes go on), and it is sent nothing: it had no request in flight and no Error
    // subscription there (tests/cluster_link_closing.rs has those).
    let quiet = tokio::time::timeout(Duration::from_millis(1000), ca.ws.next()).await;
    assert!(quiet.is_err(), "{quiet:?}");
    // At once while node-b's record lives on (the link cannot be made: CONNECT_ERROR, to try
    // again, since its objects may be alive), and after it expired, while node-b has been
    // unlisted for less than 10 s (it may be frozen or cut off and come back); "not found"
    // after that is asserted in tests/cluster_link_closing.rs.
    for (wait, expected) in [(0, 40004), (0, 40004), (4000, 40004)] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let t0 = Instant::now();
        let err = ca
            .request("invoke", json!({"object": e, "operation": "getName"}))
            .await
            .expect_err("node-b is dead");
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(1), "answered in {took:?}");
        assert_eq!(code(&err), expected, "{err}");
        println!("after {wait} ms: answered in {took:?}: {}", err["message"]);
        // New pipelines are made on the live node.
        let t0 = Instant::now();
        let q = ca.create("MediaPipeline", json!({})).await.unwrap();
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(1), "created in {took:?}");
        assert_eq!(owner_of(&two.probe, &q).await, "node-a");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_reconnects_to_the_entry_keeps_its_session_on_the_owner() {
    let grace = ["--session-grace-secs", "2"];
    let Some(two) = two_nodes("a session kept through the entry", &grace).await else {
        return;
    };
    let mut ca = Client::connect(two.port_a).await;
    let (_p, e) = endpoint_on(&mut ca, "node-b").await;
    ca.subscribe(&e, "IceCandidateFound").await;
    // describe answers with the session (the one node-b made for this client).
    let session = session_of(&mut ca, &e).await;
    drop(ca);
    // Within the grace period, a new connection to the entry sends only `connect` with the
    // session, as kurento-client does when it reconnects (its request ids going on): the
    // session lives on node-b, which answers it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = Client::connect(two.port_a).await;
    again.next = 100;
    let r = again
        .request("connect", json!({"sessionId": session}))
        .await
        .expect("connect with the session, through node-a");
    assert_eq!(r["sessionId"], session.as_str(), "{r}");
    // Idle for longer than node-b's grace period (2 s): the session is bound to the new
    // connection there, so its objects live on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A direct client on node-b makes the endpoint gather candidates: the events go to the
    // subscribed session's connection, i.e. through node-a to the reconnected client.
    let mut cb = Client::connect(two.port_b).await;
    let offer =
        json!({"object": e, "operation": "processOffer", "operationParams": {"offer": OFFER}});
    cb.request("invoke", offer)
        .await
        .expect("node-b's endpoint outlived the grace period");
    cb.invoke(&e, "gatherCandidates", json!({})).await;
    let found = again
        .event("IceCandidateFound", &e, Duration::from_secs(10))
        .await
        .expect("the subscription made before the reconnect delivers on the new connection");
    assert!(
        found["data"]["candidate"]["candidate"].is_string(),
        "{found}"
    );
    // A client without that session gets none of them.
    let mut other = Client::connect(two.port_a).await;
    other.value(&e, "getName").await;
    assert!(
        other
            .event("IceCandidateFound", &e, Duration::from_millis(500))
            .await
            .is_none(),
        "{:?}",
        other.events
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_owners_requests_in_flight_are_answered_and_its_sessions_bound_again_when_it_thaws(
) {
    // A short grace period on the owner: the session must be bound again within it.
    let grace = ["--session-grace-secs", "2"];
    let Some(two) = two_nodes("a frozen owner", &grace).await else {
        return;
    };
    let mut ca = Client::connect(two.port_a).await;
    let (p, e) = endpoint_on(&mut ca, "node-b").await;
    ca.subscribe(&e, "IceCandidateFound").await;
    ca.subscribe(&p, "Error").await;
    let session = session_of(&mut ca, &e).await;
    // node-b frozen (its TCP connections stay up, nothing answers): a request in flight is
    // answered 40004 within the link's silence limit (3 s), not at the client's own
    // time-out, and the pipeline's Error subscriber gets an Error event; the connection
    // stays open. Its record is kept alive meanwhile (as when only the nodes' network is
    // cut and node-b still reaches Redis), then removed, so that each answer below is
    // known.
    stop(&two.b).await;
    assert_eq!(
        redis_command(&two.redis, "PEXPIRE fluo:node:node-b 60000"),
        ":1"
    );
    let t0 = Instant::now();
    let get = json!({"jsonrpc": "2.0", "id": 50, "method": "invoke",
        "params": {"object": e, "operation": "getName"}});
    ca.ws.send(Message::text(get.to_string())).await.unwrap();
    let within = Duration::from_millis(4500);
    let ((answered, a), (told, ev)) = answer_and_event(&mut ca.ws, (50, &p), t0, within).await;
    assert_eq!(a["error"]["code"], 40004, "{a}");
    assert_eq!(ev["params"]["value"]["data"]["type"], "NODE_DOWN", "{ev}");
    println!("node-b froze: the request in flight answered after {answered:?}, the Error event after {told:?}");
    // A client that reconnects meanwhile with `connect` (kurento-client does when its own
    // connection drops): node-b cannot be reached, but its objects may be alive, so the
    // answer is "try again" (40004), not 40007 (on which kurento-client drops every object
    // proxy).
    let mut c1 = Client::connect(two.port_a).await;
    c1.next = 90;
    let err = c1
        .request("connect", json!({"sessionId": session}))
        .await
        .expect_err("node-b is frozen");
    assert_eq!(code(&err), 40004, "{err}");
    // Requests after that are answered with CONNECT_ERROR ("try again") within 1.5 s: while
    // node-b's record lives (the link cannot be made), and also once it is gone from node-a's
    // listing, for less than the 10 s after which node-b counts as gone for good (a frozen
    // or cut-off owner may come back with its objects: never "not found" before).
    let mut c2 = Client::connect(two.port_a).await;
    c2.next = 100;
    for (i, expected) in [40004, 40004, 40004].into_iter().enumerate() {
        if i == 2 {
            assert_eq!(redis_command(&two.redis, "DEL fluo:node:node-b"), ":1");
            tokio::time::sleep(LISTED).await;
        }
        let t0 = Instant::now();
        let err = c2
            .request(
                "invoke",
                json!({"object": e, "operation": "getName", "sessionId": session}),
            )
            .await
            .expect_err("node-b is frozen");
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(1500), "answered in {took:?}");
        assert_eq!(code(&err), expected, "{err}");
    }
    // node-b thaws: it closes the old link's mirrors (starting the session's 2 s grace),
    // and ca, whose connection to node-a stayed open, does not reconnect (kurento-client's
    // pings carry no session): node-a links again by itself and binds the session on ca's
    // new mirror. ca stays idle past the grace period, then uses its objects on the same
    // connection, and their events still reach it.
    signal(&two.b, libc::SIGCONT);
    tokio::time::sleep(Duration::from_secs(4)).await;
    ca.next = 300;
    let name = ca
        .request("invoke", json!({"object": e, "operation": "getName"}))
        .await
        .expect("the endpoint outlived node-b's grace period, on the same connection");
    assert!(name.as_str().is_some_and(|n| !n.is_empty()), "{name}");
    let offer =
        json!({"object": e, "operation": "processOffer", "operationParams": {"offer": OFFER}});
    ca.request("invoke", offer).await.expect("processOffer");
    ca.invoke(&e, "gatherCandidates", json!({})).await;
    ca.event("IceCandidateFound", &e, Duration::from_secs(10))
        .await
        .expect("the subscription made before the freeze delivers on the same connection");
    // And the first connection still serves on node-a.
    ca.create("MediaPipeline", json!({"fluoNode": "node-a"}))
        .await
        .expect("the first connection still serves");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_does_not_answer_costs_one_connect_attempt_not_one_per_request() {
    let Some(redis) = RedisServer::start("a node that does not answer") else {
        return;
    };
    let url = redis.url();
    let da = tempfile::tempdir().unwrap();
    let (_a, port_a) = node(da.path(), &url, "node-a", SECRET, &[]);
    // A listed node whose link port accepts TCP connections and never answers (a host
    // that is up but stuck), kept alive by heartbeats.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = hole.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    let mut x = Coordinator::redis(&url).unwrap();
    let info = fluo_cluster::NodeInfo {
        id: fluo_cluster::NodeId::new("node-x").unwrap(),
        signalling: "ws://127.0.0.1:9/kurento".into(),
        peer,
        capacity: 1000,
    };
    let stats = fluo_cluster::NodeStats::default();
    x.register(info, &stats).await.unwrap();
    tokio::spawn(async move {
        loop {
            let _ = x.heartbeat(&stats).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let probe = Coordinator::redis(&url).unwrap();
    until_listed(&probe, &["node-a", "node-x"]).await;
    // Six clients pin a pipeline there at once: one connect attempt (1 s) fails, and the
    // requests queued behind it get its error without trying again (one after the other,
    // they would take 6 s).
    let mut clients = vec![];
    for _ in 0..6 {
        clients.push(Client::connect(port_a).await);
    }
    let t0 = Instant::now();
    let creates = clients
        .iter_mut()
        .map(|c| c.create("MediaPipeline", json!({"fluoNode": "node-x"})));
    let answers = futures_util::future::join_all(creates).await;
    let took = t0.elapsed();
    println!("6 creates pinned to a stuck node answered in {took:?}");
    for a in &answers {
        let e = a.as_ref().expect_err("node-x does not answer");
        assert_eq!(code(e), 40009, "{e}");
    }
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

/// `method` with `params` through `c` must be refused with 40004 (`what`: the request, in a
/// failure); the error.
async fn refused(c: &mut Client, method: &str, params: Value, what: &str) -> Value {
    let err = c.request(method, params).await.expect_err(what);
    assert_eq!(err["code"], 40004, "{err}");
    err
}
