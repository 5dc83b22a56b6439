//! Client connections through the entry closed as a KMS closes them (docs/cluster.md,
//! "Closing client connections, as a KMS would"): a mirror the owner's engine drops, a
//! client that does not read, and a client's end while the link's queue is full. Two fluo
//! nodes on a Redis of the test's own (skipped without redis-server, failing under
//! CI=true); one set of nodes for the three steps, each with pipelines of its own.
//!
//! The events come from `connect`/`disconnect` of two PassThroughs on node-b, driven by a
//! client connected to node-b directly (transactions of many pairs): each pair raises three
//! ElementConnected and three ElementDisconnected (AUDIO, VIDEO, DATA) on the source.
mod common;
#[path = "cluster_link/support.rs"]
mod support;

use common::{Client, Server};
use fluo_cluster::testing::RedisServer;
use fluo_cluster::{Coordinator, Ownership};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// The nodes' session grace period, in seconds. The first step's client resumes its session
/// only once node-a closed its connection, and node-b's word of the mirror it dropped (whose
/// grace period starts there and then) comes to node-a behind the events queued for the
/// link while node-a was stopped: 0.2-0.7 s later, 2.9 s under load (a 2 s grace period
/// ran out first: 40007).
const GRACE: u64 = 4;

/// What the engine logs when it ends a connection whose outbox (1024 messages) is full.
const ENGINE_DROPS: &str = "dropping connection:";

/// What the entry logs when a client does not read what comes through the link.
const ENTRY_CLOSES_UNREAD: &str = "closing a client connection that does not read";

/// What the entry logs when the owner tells it that it dropped a client's mirror.
const OWNER_DROPPED: &str = "the owner dropped this client's mirror";

/// The clients whose events fill the link in the first step.
const FILLERS: usize = 4;

/// The nodes' link silence limit (`--peer-silence-ms`; 3 s by default): a stop here must stay
/// shorter, or the link would count as broken (which would end every mirror, and prove
/// nothing about the paths tested here). Long, so that a loaded machine fills the queues in
/// time: the last step's flood took 0.8-2.3 s for 8900-19300 requests, but at a load of 6
/// to 13 it sent 10600 and 21600 in over 6.5 s (the limit with 8 s) without filling them.
const SILENCE_MS: u64 = 12000;

/// The longest a node may stay stopped here.
const STOPPED_AT_MOST: Duration = Duration::from_millis(SILENCE_MS - 1500);

struct Nodes {
    redis: RedisServer,
    a: Server,
    b: Server,
    port_a: u16,
    port_b: u16,
    da: tempfile::TempDir,
    db: tempfile::TempDir,
    probe: Coordinator,
}

/// How many times `needle` is in the log of the node whose files are in `dir`.
fn logged(dir: &Path, needle: &str) -> usize {
    let log = std::fs::read_to_string(dir.join("fluo.log")).unwrap_or_default();
    log.matches(needle).count()
}

/// `pairs` connect/disconnect pairs of `source` to `sink` in one transaction, by `d`
/// (6 events on `source` per pair).
async fn drive(d: &mut Client, source: &str, sink: &str, pairs: usize) {
    let mut ops = vec![];
    for i in 0..pairs {
        for (n, op) in [(0, "connect"), (1, "disconnect")] {
            ops.push(
                json!({"jsonrpc": "2.0", "id": 2 * i + n, "method": "invoke",
                "params": {"object": source, "operation": op, "operationParams": {"sink": sink}}}),
            );
        }
    }
    d.request("transaction", json!({"operations": ops}))
        .await
        .expect("connect/disconnect on node-b");
}

/// A client on node-a subscribed to `element`'s connect/disconnect events.
async fn listener(port: u16, element: &str) -> Client {
    let mut c = Client::connect(port).await;
    c.subscribe(element, "ElementConnected").await;
    c.subscribe(element, "ElementDisconnected").await;
    c
}

/// A pipeline on node-b that only `c`'s session holds, and that session.
async fn own_pipeline(c: &mut Client, probe: &Coordinator) -> (String, String) {
    let p = c
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .expect("a pipeline on node-b, through node-a");
    assert_eq!(owner_of(probe, &p).await, "node-b");
    let s = session_of(c, &p).await;
    (p, s)
}

/// Passthroughs made by `c` in a pipeline pinned to node-b.
async fn elements(c: &mut Client, n: usize) -> Vec<String> {
    let p = c
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .unwrap();
    let mut v = vec![];
    for _ in 0..n {
        v.push(
            c.create("PassThrough", json!({"mediaPipeline": p}))
                .await
                .unwrap(),
        );
    }
    v
}

/// `p` is still owned (not released) at once, and released (its session expired: nothing
/// else holds it) once the grace period is over, counted from when its client's close
/// reached the owner's engine: not before `earliest`, nor after `latest`. Watched in the
/// store, which references nothing (a `describe` would hold it).
async fn released_after_grace(
    probe: &Coordinator,
    p: &str,
    (earliest, latest): (Instant, Instant),
) {
    // Not released: its record is there (Live, or Gone while node-b's own record expired
    // during a stop; a release deletes it).
    assert!(
        !matches!(probe.owner(p).await, Ok(Ownership::Unowned)),
        "{p} released at once, not kept for the grace period"
    );
    loop {
        if unowned(probe, p).await {
            break;
        }
        assert!(
            latest.elapsed() < Duration::from_secs(GRACE + 4),
            "{p} still owned {:?} after its client's close reached the owner: its session did not enter its grace period",
            latest.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = earliest.elapsed();
    println!(
        "{p} released {after:?} after its client's connection closed ({:?} after its close reached the owner, at the latest)",
        latest.elapsed()
    );
    assert!(
        after >= Duration::from_millis(GRACE * 1000 - 300),
        "{after:?}"
    );
}

/// No link broke or went silent during a step (that would close every mirror anyway).
fn links_held(n: &Nodes) {
    assert_eq!(logged(n.da.path(), "link: lost"), 0, "a link broke");
    assert_eq!(logged(n.db.path(), "link: a node disconnected"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_entry_closes_client_connections_as_a_kms_would() {
    let Some(redis) = RedisServer::start("client connections through the entry") else {
        return;
    };
    let url = redis.url();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let grace = GRACE.to_string();
    let silence = SILENCE_MS.to_string();
    let flags = [
        "--session-grace-secs",
        grace.as_str(),
        "--peer-silence-ms",
        silence.as_str(),
    ];
    let (a, port_a) = node(da.path(), &url, "node-a", SECRET, &flags);
    let (b, port_b) = node(db.path(), &url, "node-b", SECRET, &flags);
    let probe = Coordinator::redis(&url).unwrap();
    until_listed(&probe, &["node-a", "node-b"]).await;
    let n = Nodes {
        redis,
        a,
        b,
        port_a,
        port_b,
        da,
        db,
        probe,
    };
    a_mirror_the_owner_drops_closes_its_client(&n).await;
    links_held(&n);
    a_client_that_does_not_read_is_closed_alone(&n).await;
    links_held(&n);
    a_close_waits_for_room_in_the_links_queue(&n).await;
    links_held(&n);
    a_link_rides_out_a_stop_shorter_than_its_silence_limit(&n).await;
    links_held(&n);
}

/// `--peer-silence-ms` in effect on both sides: each node stopped in turn for longer than
/// the default limit (3 s) and shorter than the one set, the link still stands (checked by
/// `links_held`) and carries a request and its answer.
async fn a_link_rides_out_a_stop_shorter_than_its_silence_limit(n: &Nodes) {
    let mut c = Client::connect(n.port_a).await;
    let el = elements(&mut c, 1).await;
    for (stopped, side) in [(&n.b, "the entry's"), (&n.a, "the owner's")] {
        c.value(&el[0], "getName").await;
        // node-b's record kept meanwhile, as in the other steps.
        assert_eq!(
            redis_command(&n.redis, "PEXPIRE fluo:node:node-b 60000"),
            ":1"
        );
        signal(stopped, libc::SIGSTOP);
        tokio::time::sleep(Duration::from_millis(3400)).await;
        signal(stopped, libc::SIGCONT);
        c.value(&el[0], "getName").await;
        println!("{side} side of the link kept it through a 3.4 s stop");
    }
}

/// Finding 7 (R38D): node-a stopped, so that the link's queue on node-b fills (with the
/// events of a client F); then the events of two more clients fill their mirrors' outboxes
/// on node-b, whose engine drops both mirrors. Once node-a runs again, node-b closes the
/// mirrors (their sessions start their grace period) and tells node-a, which closes the
/// clients' connections: one reconnects with its session within the grace period and finds
/// its objects, the other's expire after it.
async fn a_mirror_the_owner_drops_closes_its_client(n: &Nodes) {
    let mut f = Client::connect(n.port_a).await;
    let el = elements(&mut f, 4).await;
    let (x, x2, y, y2) = (&el[0], &el[1], &el[2], &el[3]);
    // Four listeners of x fill the link four times faster than one.
    let mut fillers = vec![];
    for _ in 0..FILLERS {
        fillers.push(listener(n.port_a, x).await);
    }
    let (mut v1, mut v2) = (listener(n.port_a, y).await, listener(n.port_a, y).await);
    let (p1, s1) = own_pipeline(&mut v1, &n.probe).await;
    let (p2, _) = own_pipeline(&mut v2, &n.probe).await;
    let mut d = Client::connect(n.port_b).await;
    let dropped = logged(n.db.path(), ENGINE_DROPS);
    // A round trip just before: both ends of the link heard each other now.
    f.value(x, "getName").await;
    signal(&n.a, libc::SIGSTOP);
    let t0 = Instant::now();
    let mut pairs = 0;
    for (source, sink, until) in [(x, x2, dropped + FILLERS), (y, y2, dropped + FILLERS + 2)] {
        while logged(n.db.path(), ENGINE_DROPS) < until {
            drive(&mut d, source, sink, 50).await;
            pairs += 50;
            if t0.elapsed() > STOPPED_AT_MOST {
                signal(&n.a, libc::SIGCONT);
                panic!("{pairs} pairs in {:?} did not fill the link", t0.elapsed());
            }
        }
    }
    signal(&n.a, libc::SIGCONT);
    let resumed = Instant::now();
    println!(
        "node-a stopped {:?}: {pairs} connect/disconnect pairs dropped {} mirrors on node-b",
        t0.elapsed(),
        FILLERS + 2
    );
    // Both victims' connections end; what they got before is less than their outbox on
    // node-a holds, so node-a did not close them for not reading: node-b told it to.
    for v in [&mut v1, &mut v2] {
        let got = drain(&mut v.ws).await;
        assert!(got.len() < 1000, "{} messages", got.len());
    }
    assert!(logged(n.da.path(), OWNER_DROPPED) >= 2);
    // Within the grace period, v1 reconnects with its session: bound again on node-b.
    let mut again = Client::connect(n.port_a).await;
    again.next = 100;
    let r = again
        .request("connect", json!({"sessionId": s1}))
        .await
        .expect("the dropped mirror's session, in its grace period");
    assert_eq!(r["sessionId"], s1.as_str(), "{r}");
    again
        .request("describe", json!({"object": p1}))
        .await
        .expect("its pipeline");
    // v2 does not come back: its pipeline goes at the end of the grace period, v1's stays.
    released_after_grace(&n.probe, &p2, (resumed, resumed)).await;
    assert!(matches!(n.probe.owner(&p1).await, Ok(Ownership::Live(_))));
}

/// Finding 8 (R38D): a client on node-a subscribed to events of node-b's element stops
/// reading; the events come in batches the link carries at once (node-b's mirror never has
/// a full outbox), so node-a's outbox for the client fills: node-a closes the connection,
/// node-b's session goes to its grace period (and expires), and another client of node-a
/// on the same link goes on with its requests and events.
async fn a_client_that_does_not_read_is_closed_alone(n: &Nodes) {
    let mut o = Client::connect(n.port_a).await;
    let el = elements(&mut o, 4).await;
    let (x, x2, z, z2) = (&el[0], &el[1], &el[2], &el[3]);
    o.subscribe(z, "ElementConnected").await;
    let mut v = listener(n.port_a, x).await;
    let (p, _) = own_pipeline(&mut v, &n.probe).await;
    let mut d = Client::connect(n.port_b).await;
    let (unread, dropped) = (
        logged(n.da.path(), ENTRY_CLOSES_UNREAD),
        logged(n.db.path(), ENGINE_DROPS),
    );
    // v reads nothing from now on.
    let t0 = Instant::now();
    let mut events = 0;
    while logged(n.da.path(), ENTRY_CLOSES_UNREAD) == unread {
        drive(&mut d, x, x2, 25).await;
        events += 150;
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{events} events, and node-a did not close the client that does not read them"
        );
    }
    let closed = Instant::now();
    println!(
        "node-a closed the client that did not read after {events} events ({:?})",
        t0.elapsed()
    );
    drain(&mut v.ws).await;
    assert_eq!(
        logged(n.db.path(), ENGINE_DROPS),
        dropped,
        "node-b dropped a mirror: the batches were too large for this step"
    );
    // The other client of node-a, on the same link: answers and events as before.
    o.value(x2, "getName").await;
    d.invoke(z, "connect", json!({"sink": z2})).await;
    o.event("ElementConnected", z, Duration::from_secs(5))
        .await
        .expect("the other client's event through node-a");
    released_after_grace(&n.probe, &p, (closed, closed)).await;
}

/// Sends up to `count` requests about `object` (each with `pad` bytes of padding) on `k`, 100
/// at a time, reading what came between them until nothing comes for 2 ms (a client that
/// does not read is closed once 1024 answers wait for it, and node-a refuses as fast as it
/// reads), until one is answered CONNECT_ERROR "congested" (node-a's queue for the link is
/// full: node-b is stopped, so nothing else answers); whether it was, and how many were sent.
async fn flood(k: &mut Client, object: &str, count: usize, pad: usize) -> (bool, usize) {
    let pad = "x".repeat(pad);
    let quiet = Duration::from_millis(2);
    let mut sent = 0;
    while sent < count {
        for _ in 0..100.min(count - sent) {
            k.next += 1;
            sent += 1;
            let req = json!({"jsonrpc": "2.0", "id": k.next, "method": "invoke",
                "params": {"object": object, "operation": "getName", "pad": pad}});
            k.ws.feed(Message::text(req.to_string())).await.unwrap();
        }
        k.ws.flush().await.unwrap();
        let mut full = false;
        while let Ok(Some(Ok(m))) = tokio::time::timeout(quiet, k.ws.next()).await {
            full |= congested(&m);
        }
        if full {
            return (true, sent);
        }
    }
    (false, sent)
}

/// Whether `m` is the entry's answer that the link's queue is full (CONNECT_ERROR, "the
/// link is congested"; not another reason for a 40004, such as node-b's record expired).
fn congested(m: &Message) -> bool {
    let Message::Text(t) = m else { return false };
    let v: Value = serde_json::from_str(t.as_str()).unwrap();
    let e = &v["error"];
    e["code"] == 40004
        && e["message"]
            .as_str()
            .is_some_and(|s| s.contains("congested"))
}

/// Finding 15 (R38D): node-b stopped, a client K fills node-a's queue for the link (its
/// requests answered CONNECT_ERROR "congested"); then client C, which used node-b, goes
/// away. Its `close` waits for room: once node-b runs again it gets it, after K's
/// requests, and C's session goes to its grace period and expires (a `close` dropped
/// would leave it bound for ever).
async fn a_close_waits_for_room_in_the_links_queue(n: &Nodes) {
    let mut c = Client::connect(n.port_a).await;
    let (p, _) = own_pipeline(&mut c, &n.probe).await;
    let mut k = Client::connect(n.port_a).await;
    let el = elements(&mut k, 1).await;
    k.value(&el[0], "getName").await;
    signal(&n.b, libc::SIGSTOP);
    // node-b's record kept meanwhile (as when only the link is stuck and node-b still
    // reaches Redis; its heartbeat rewrites it once it runs): without it, node-a would
    // answer for node-b's pipelines at once instead of queueing for the link.
    assert_eq!(
        redis_command(&n.redis, "PEXPIRE fluo:node:node-b 60000"),
        ":1"
    );
    let t0 = Instant::now();
    // Large requests fill the TCP buffers, small ones the queue (8192 frames).
    let (mut full, mut sent) = flood(&mut k, &el[0], 600, 8 << 10).await;
    while !full {
        let (f, more) = flood(&mut k, &el[0], 1000, 16).await;
        (full, sent) = (f, sent + more);
        if t0.elapsed() > STOPPED_AT_MOST {
            signal(&n.b, libc::SIGCONT);
            panic!(
                "{sent} requests in {:?} did not fill the link",
                t0.elapsed()
            );
        }
    }
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&n.b, libc::SIGCONT);
    let resumed = Instant::now();
    println!(
        "node-b stopped {:?}: {sent} requests filled node-a's queue for the link",
        t0.elapsed()
    );
    assert!(t0.elapsed() < STOPPED_AT_MOST, "{:?}", t0.elapsed());
    drop(k);
    // C's close reaches node-b's engine after K's requests (9000 to 20000 of them: how many
    // the TCP buffers took varies), which take node-b seconds on a loaded machine: the
    // grace period starts then, not at the SIGCONT. A request of a new client, which the
    // link queues after that close, is answered once it went through.
    let reached = behind_the_queue(n.port_a, &el[0]).await;
    println!(
        "C's close reached node-b's engine {:?} after node-b ran again, at the latest",
        reached - resumed
    );
    released_after_grace(&n.probe, &p, (resumed, reached)).await;
}

/// When a request about `object` (on node-b) through node-a, sent by a new client once
/// node-a's queue for the link has room again (it answers "congested" until then), is
/// answered: what was queued for the link before it has reached node-b's engine.
async fn behind_the_queue(port_a: u16, object: &str) -> Instant {
    let mut q = Client::connect(port_a).await;
    let t0 = Instant::now();
    loop {
        let params = json!({"object": object, "operation": "getName"});
        match q.request("invoke", params).await {
            Ok(_) => return Instant::now(),
            Err(e)
                if e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("congested")) =>
            {
                assert!(t0.elapsed() < Duration::from_secs(20), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("getName of {object} through node-a: {e}"),
        }
    }
}
