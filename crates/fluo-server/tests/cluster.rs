//! Two fluo servers on one Redis (`--cluster`, docs/cluster.md): each registers, and each owns
//! the pipelines created on it through the Kurento Protocol; a release gives a pipeline up;
//! while Redis is paused or down the servers go on serving, and once it is back (restarted
//! empty) their records are written again; a stop writes its releases and leave even when
//! Redis is slow then. The Redis is a redis-server this test spawns on a unix socket
//! of its own (no TCP port); without redis-server the test is skipped, and fails under
//! CI=true.
mod common;

use common::{start_server, Client, Server};
use fluo_cluster::testing::{node_ids, RedisServer};
use fluo_cluster::{Coordinator, Ownership};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const FLUO: &str = env!("CARGO_BIN_EXE_fluo");

/// A fluo server with no media workers on the cluster `url` as `node`, its files in `dir`.
fn node(dir: &Path, url: &str, node: &str) -> (Server, u16) {
    let log = dir.join("fluo.log");
    let extra = [
        "--cluster",
        url,
        "--node-id",
        node,
        "--advertise",
        "127.0.0.1",
        "--peer-port",
        "0",
        "--cluster-secret",
        "a secret of the test cluster",
    ];
    let (child, port) = start_server(FLUO, dir, 0, &extra, &log);
    (Server(child), port)
}

/// Waits (5 s at most) until `check` holds for what the store says about `pipeline`.
async fn until_owner(
    probe: &Coordinator,
    pipeline: &str,
    what: &str,
    check: impl Fn(&Ownership) -> bool,
) {
    let t0 = Instant::now();
    loop {
        let o = probe.owner(pipeline).await;
        if o.as_ref().is_ok_and(&check) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{pipeline}: not {what} within 5 s: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn owned_by(node: &'static str) -> impl Fn(&Ownership) -> bool {
    move |o| matches!(o, Ownership::Live(w) if w.node.as_str() == node)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_on_one_redis_own_the_pipelines_created_on_them() {
    let Some(mut redis) = RedisServer::start("two fluo servers on one Redis") else {
        return;
    };
    let url = redis.url();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_a, port_a) = node(dir_a.path(), &url, "node-a");
    let (b, port_b) = node(dir_b.path(), &url, "node-b");
    let (mut ca, mut cb) = (Client::connect(port_a).await, Client::connect(port_b).await);
    // Pinned to the node each client is on (placement would spread them: tests/cluster_link.rs).
    let pa = ca
        .create("MediaPipeline", json!({"fluoNode": "node-a"}))
        .await
        .expect("a pipeline on a");
    let pb = cb
        .create("MediaPipeline", json!({"fluoNode": "node-b"}))
        .await
        .expect("a pipeline on b");
    let probe = Coordinator::redis(&url).unwrap();
    until_owner(&probe, &pa, "owned by node-a", owned_by("node-a")).await;
    until_owner(&probe, &pb, "owned by node-b", owned_by("node-b")).await;
    // Both registered, with the address clients reach them at.
    let nodes = probe.nodes().await.unwrap();
    let seen: Vec<(&str, &str)> = nodes
        .iter()
        .map(|n| (n.info.id.as_str(), n.info.signalling.as_str()))
        .collect();
    let (wa, wb) = (
        format!("ws://127.0.0.1:{port_a}/kurento"),
        format!("ws://127.0.0.1:{port_b}/kurento"),
    );
    assert_eq!(seen, [("node-a", wa.as_str()), ("node-b", wb.as_str())]);
    assert!(nodes.iter().all(|n| n.boot == 1 && !n.stats.draining));
    // A release through the protocol gives the pipeline up.
    ca.request("release", json!({"object": pa}))
        .await
        .expect("release");
    until_owner(&probe, &pa, "unowned", |o| *o == Ownership::Unowned).await;

    // Redis paused (SIGSTOP: connections open, nothing answers, each call waits for its
    // time-out): a create answers at once all the same, also while the task waits on Redis.
    redis.pause();
    let mut made = vec![];
    for wait in [0, 700] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let t0 = Instant::now();
        let p = ca
            .create("MediaPipeline", json!({"fluoNode": "node-a"}))
            .await
            .expect("a pipeline while Redis is paused");
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(300), "create took {took:?}");
        made.push(p);
    }
    ca.request("release", json!({"object": made[0]}))
        .await
        .expect("release");
    redis.resume();
    // Once it answers again, what the paused Redis missed is written.
    until_owner(&probe, &made[1], "owned by node-a", owned_by("node-a")).await;
    until_owner(&probe, &made[0], "unowned", |o| *o == Ownership::Unowned).await;

    // Redis killed: the servers go on serving (a create answers at once).
    redis.kill();
    let t0 = Instant::now();
    let pc = ca
        .create("MediaPipeline", json!({"fluoNode": "node-a"}))
        .await
        .expect("a pipeline while Redis is down");
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(1), "create took {took:?}");
    // Restarted empty: the nodes come back by their heartbeats, and write their claims again.
    redis.restart();
    until_owner(&probe, &pc, "owned by node-a", owned_by("node-a")).await;
    until_owner(&probe, &pb, "owned by node-b", owned_by("node-b")).await;
    // Released before: unowned once the store settled (until then, not known yet).
    until_owner(&probe, &pa, "unowned", |o| *o == Ownership::Unowned).await;
    let ids = node_ids(&probe).await;
    assert_eq!(ids, ["node-a", "node-b"]);
    let log = std::fs::read_to_string(dir_a.path().join("fluo.log")).unwrap();
    for line in [
        "cluster: node registered",
        "did not answer within 500 ms",
        "unreachable",
        "coordination store is back",
    ] {
        assert!(log.contains(line), "no '{line}' in node-a's log:\n{log}");
    }

    // The heartbeat carries the node's load: an endpoint on a shows within 5 s.
    ca.create("WebRtcEndpoint", json!({"mediaPipeline": pc}))
        .await
        .expect("an endpoint on a");
    let t0 = Instant::now();
    loop {
        let nodes = probe.nodes().await.unwrap();
        let a = nodes.iter().find(|n| n.info.id.as_str() == "node-a");
        if a.is_some_and(|a| a.stats.endpoints == 1) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "{nodes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A clean stop (SIGTERM) releases b's pipelines and removes its record at once, well
    // before the record would expire; also when Redis is slow then (paused 300 ms): the
    // server waits for its releases and its leave (each bounded by 500 ms) before it exits.
    redis.pause();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &b.0.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.resume();
    // The record's last heartbeat was at most 1.3 s ago: it would expire 1.7 s from now at
    // the earliest, so a record gone within 1 s was removed by b's leave.
    let t0 = Instant::now();
    loop {
        let nodes = probe.nodes().await.unwrap();
        if nodes.iter().all(|n| n.info.id.as_str() != "node-b") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(1), "{nodes:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(probe.owner(&pb).await.unwrap(), Ownership::Unowned);
}
