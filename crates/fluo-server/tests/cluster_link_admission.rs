//! Admission to the link's port (docs/cluster.md, "The link"): messages of at most 4 KiB
//! before the handshake is done, 8 connections authenticating at once from one address (more
//! closed at once), and the owner's 2 s handshake deadline that frees the slots idle
//! connections hold, so that a real entry gets through again. The Redis is a redis-server of
//! the test's own on a unix socket; without it the tests are skipped, and fail under CI=true.
mod common;
#[path = "cluster_link/support.rs"]
mod support;

use common::Client;
use fluo_cluster::testing::RedisServer;
use fluo_cluster::{Coordinator, NodeRecord};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// The largest message the owner reads before the handshake is done.
const HANDSHAKE_FRAME: usize = 4096;

/// Connections authenticating at once from one address.
const PER_ADDRESS: usize = 8;

/// The link's address of `id`, as its record publishes it.
fn peer_of(nodes: &[NodeRecord], id: &str) -> String {
    let n = nodes.iter().find(|n| n.info.id.as_str() == id);
    n.unwrap_or_else(|| panic!("{id} not listed: {nodes:?}"))
        .info
        .peer
        .clone()
}

/// A hello from "mallory" meant for `to` in its `boot`, padded with an unknown field to
/// exactly `len` bytes.
fn hello_of_len(to: &str, boot: u64, len: usize) -> String {
    let mut hello = json!({"hello": "fluo-link/1", "node": "mallory", "nonce": "ab".repeat(32),
        "to": to, "boot": boot, "pad": ""});
    let bare = hello.to_string().len();
    hello["pad"] = Value::from("x".repeat(len - bare));
    let text = hello.to_string();
    assert_eq!(text.len(), len);
    text
}

/// Waits (`within` at most) until the owner closes `s`, which sends nothing; when it did.
async fn closed_by_owner(s: &mut TcpStream, within: Duration) -> Instant {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(within, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Instant::now(),
        Ok(Ok(n)) => panic!("the owner sent {n} bytes to a connection that sent nothing"),
        Err(_) => panic!("the owner kept an idle connection open for {within:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_over_4_kib_before_the_handshake_closes_the_connection() {
    let Some(redis) = RedisServer::start("the link's handshake message limit") else {
        return;
    };
    let url = redis.url();
    let db = tempfile::tempdir().unwrap();
    let (_b, _) = node(db.path(), &url, "node-b", SECRET, &[]);
    let probe = Coordinator::redis(&url).unwrap();
    let nodes = until_listed(&probe, &["node-b"]).await;
    let (peer_b, boot) = (peer_of(&nodes, "node-b"), nodes[0].boot);
    // One byte over: closed at once (not at the deadline), and nothing answered.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{peer_b}/fluo-link"))
        .await
        .expect("the WebSocket handshake");
    let t0 = Instant::now();
    let _ = ws
        .send(Message::text(hello_of_len(
            "node-b",
            boot,
            HANDSHAKE_FRAME + 1,
        )))
        .await;
    assert_eq!(drain(&mut ws).await, Vec::<String>::new());
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    // The same hello at the limit is read: the owner answers with its challenge.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{peer_b}/fluo-link"))
        .await
        .unwrap();
    ws.send(Message::text(hello_of_len("node-b", boot, HANDSHAKE_FRAME)))
        .await
        .unwrap();
    let Ok(Some(Ok(Message::Text(ch)))) = tokio::time::timeout(LISTED, ws.next()).await else {
        panic!("no challenge to a hello of {HANDSHAKE_FRAME} bytes")
    };
    let ch: Value = serde_json::from_str(ch.as_str()).unwrap();
    assert_eq!(ch["mac"].as_str().map(str::len), Some(64), "{ch}");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_hold_an_address_s_slots_for_2_s_only() {
    let Some(TwoNodes {
        redis: _redis,
        da: _da,
        db: _db,
        probe,
        nodes,
        a: _a,
        b: _b,
        port_a,
        port_b: _,
    }) = two_nodes("the link's handshake slots", &[]).await
    else {
        return;
    };
    let peer_b = peer_of(&nodes, "node-b");
    // Eight connections from 127.0.0.1 that send nothing hold its slots...
    let t0 = Instant::now();
    let mut idle = vec![];
    for _ in 0..PER_ADDRESS {
        idle.push(TcpStream::connect(&peer_b).await.unwrap());
    }
    // ...so a ninth from it is closed at once (accepted after them, refused)...
    let mut ninth = TcpStream::connect(&peer_b).await.unwrap();
    let at = closed_by_owner(&mut ninth, Duration::from_secs(1)).await;
    assert!(at - t0 < Duration::from_secs(1), "{:?}", at - t0);
    // ...and so is node-a's link to node-b (from the same address): its request fails.
    let mut ca = Client::connect(port_a).await;
    let refused = ca.create("MediaPipeline", json!({"fluoNode": "node-b"}));
    let e = refused.await.expect_err("node-b's link port is full");
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "too slow to tell"
    );
    println!("while full: {e}");
    // The owner drops the idle ones at its handshake deadline (about 2 s)...
    for s in &mut idle {
        let at = closed_by_owner(s, Duration::from_secs(4)).await - t0;
        assert!(at > Duration::from_millis(1500), "dropped after {at:?}");
        assert!(at < Duration::from_millis(3500), "dropped after {at:?}");
    }
    println!("idle connections dropped after {:?}", t0.elapsed());
    // ...and node-a's link is made again: a pipeline pinned to node-b, and a request on it,
    // through node-a.
    let p = ca
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .expect("a pipeline on node-b through node-a, once the slots are free");
    assert_eq!(owner_of(&probe, &p).await, "node-b");
    let d = ca.request("describe", json!({"object": p})).await.unwrap();
    assert_eq!(d["type"], "MediaPipeline", "{d}");
}
