//! What the cluster link's tests share: a node on a cluster, waits on the store, the error
//! code of an answer, a connection drained to its end, a signal to a node, an answer and an
//! Error event awaited together.
#![allow(dead_code)]

use crate::common::{self, Client, Server};
use fluo_cluster::{Coordinator, Ownership};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

pub const FLUO: &str = env!("CARGO_BIN_EXE_fluo");

pub const SECRET: &str = "the test cluster's shared secret";

/// Longer than a node takes to list the nodes again (once a second, after its heartbeat).
pub const LISTED: Duration = Duration::from_millis(1300);

/// A browser-like offer: one Opus section, sending.
pub const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:8hhY\r\na=ice-pwd:asd88fgpdd777uzjYhagZg\r\n\
a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r\n\
a=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";

/// A fluo server (no media workers) on the cluster `url` as `id` with `secret` and `extra`
/// flags, its files in `dir`; its WebSocket port.
pub fn node(dir: &Path, url: &str, id: &str, secret: &str, extra: &[&str]) -> (Server, u16) {
    let log = dir.join("fluo.log");
    let mut flags = vec![
        "--cluster",
        url,
        "--node-id",
        id,
        "--advertise",
        "127.0.0.1",
        "--peer-port",
        "0",
    ];
    flags.extend_from_slice(extra);
    let env = [("FLUO_CLUSTER_SECRET", secret)];
    let (child, port) = common::start_server_with_env(FLUO, dir, 0, &flags, &log, &env);
    (Server(child), port)
}

/// Waits (5 s at most) until the store lists `ids` (each with its link's port published).
pub async fn until_listed(probe: &Coordinator, ids: &[&str]) -> Vec<fluo_cluster::NodeRecord> {
    let t0 = Instant::now();
    loop {
        let nodes = probe.nodes().await.unwrap_or_default();
        if ids
            .iter()
            .all(|id| nodes.iter().any(|n| n.info.id.as_str() == *id))
        {
            // The nodes' own lists have them too.
            tokio::time::sleep(LISTED).await;
            return nodes;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "not listed: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The node that owns `pipeline`, as the store says (5 s at most for its claim).
/// Whether the store says no node owns `pipeline` (released). `false` while the store
/// settles: a node whose heartbeat came over 3 s late (stopped, or a loaded machine) makes
/// it re-claim, and for that while a pipeline without a record reads as `Settling`.
pub async fn unowned(probe: &Coordinator, pipeline: &str) -> bool {
    match probe.owner(pipeline).await {
        Ok(Ownership::Unowned) => true,
        Ok(_) | Err(fluo_cluster::Error::Settling) => false,
        Err(e) => panic!("the store about {pipeline}: {e}"),
    }
}

pub async fn owner_of(probe: &Coordinator, pipeline: &str) -> String {
    let t0 = Instant::now();
    loop {
        if let Ok(Ownership::Live(o)) = probe.owner(pipeline).await {
            return o.node.to_string();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{pipeline}: no owner"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An error's code.
pub fn code(e: &Value) -> i64 {
    e["code"].as_i64().unwrap_or_else(|| panic!("no code: {e}"))
}

/// The answer to `method` on both clients: the same outcome (results equal but for the
/// session, or errors with the same code).
pub async fn same(
    a: &mut Client,
    b: &mut Client,
    method: &str,
    params: Value,
) -> Result<Value, Value> {
    let (ra, rb) = (
        a.request(method, params.clone()).await,
        b.request(method, params.clone()).await,
    );
    match (&ra, &rb) {
        (Ok(x), Ok(y)) => {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(o) = v.as_object_mut() {
                    o.remove("sessionId");
                }
                v
            };
            assert_eq!(strip(x), strip(y), "{method} {params}");
        }
        (Err(x), Err(y)) => assert_eq!(code(x), code(y), "{method} {params}: {x} / {y}"),
        _ => panic!("{method} {params}: through the entry {ra:?}, directly {rb:?}"),
    }
    ra
}

/// Reads frames until the connection ends (within 6 s); the text frames seen.
pub async fn drain<S>(ws: &mut S) -> Vec<String>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut texts = vec![];
    let t0 = Instant::now();
    loop {
        let left = Duration::from_secs(6).saturating_sub(t0.elapsed());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => texts.push(t.to_string()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return texts,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the link kept the connection open: {texts:?}"),
        }
    }
}

/// The session of `c`'s connection, as `describe` of `object` answers it.
pub async fn session_of(c: &mut Client, object: &str) -> String {
    let d = c
        .request("describe", json!({"object": object}))
        .await
        .unwrap();
    d["sessionId"].as_str().expect("a session").to_string()
}

/// Sends `sig` to the server.
pub fn signal(s: &Server, sig: libc::c_int) {
    // SAFETY: kill(2) on the test's own child process.
    assert_eq!(unsafe { libc::kill(s.0.id() as libc::pid_t, sig) }, 0);
}

/// Sends one command (inline form) to `redis`; its reply's first line.
pub fn redis_command(redis: &fluo_cluster::testing::RedisServer, cmd: &str) -> String {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(redis.socket()).expect("redis answers");
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

/// Two fluo nodes (node-a, node-b) with `flags` on a Redis of the test's own, listed; their
/// files in `da` and `db`. The nodes stop before their folders go and before Redis: kept
/// whole (`let Some(two) = two_nodes(..)`), its fields drop in the order declared here;
/// destructured, bind them in the reverse order (locals drop in reverse).
pub struct TwoNodes {
    pub a: Server,
    pub b: Server,
    pub port_a: u16,
    pub port_b: u16,
    /// The store's node records once both were listed.
    pub nodes: Vec<fluo_cluster::NodeRecord>,
    pub probe: Coordinator,
    pub db: tempfile::TempDir,
    pub da: tempfile::TempDir,
    pub redis: fluo_cluster::testing::RedisServer,
}

/// [`TwoNodes`] for the test `what`; `None` (the test skips, failing under CI=true) without
/// a redis-server.
pub async fn two_nodes(what: &str, flags: &[&str]) -> Option<TwoNodes> {
    let redis = fluo_cluster::testing::RedisServer::start(what)?;
    let url = redis.url();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, port_a) = node(da.path(), &url, "node-a", SECRET, flags);
    let (b, port_b) = node(db.path(), &url, "node-b", SECRET, flags);
    let probe = Coordinator::redis(&url).unwrap();
    let nodes = until_listed(&probe, &["node-a", "node-b"]).await;
    Some(TwoNodes {
        redis,
        da,
        db,
        probe,
        nodes,
        a,
        b,
        port_a,
        port_b,
    })
}

/// Sends SIGSTOP to the server and waits (2 s at most) until every thread of it is stopped:
/// a signal takes effect only once one of its threads handles it, which a loaded machine may
/// delay by milliseconds, during which the server still answers.
pub async fn stop(s: &Server) {
    signal(s, libc::SIGSTOP);
    let tasks = format!("/proc/{}/task", s.0.id());
    let t0 = Instant::now();
    loop {
        let states: Vec<String> = std::fs::read_dir(&tasks)
            .map(|d| {
                d.flatten()
                    .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
                    .collect()
            })
            .unwrap_or_default();
        // The state follows the command name in parentheses: "pid (comm) T ...".
        let stopped = |st: &String| {
            st.rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('T'))
        };
        if !states.is_empty() && states.iter().all(stopped) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "not stopped: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits (`within` at most) for the answer to request `id` and an `Error` event of `object`
/// on `ws`; when each came (since `t0`), and the two messages. Panics when the connection
/// closes or `within` passes.
pub async fn answer_and_event<S>(
    ws: &mut S,
    (id, object): (u64, &str),
    t0: Instant,
    within: Duration,
) -> ((Duration, Value), (Duration, Value))
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let (mut answer, mut event) = (None, None);
    while answer.is_none() || event.is_none() {
        let left = within.checked_sub(t0.elapsed()).unwrap_or_else(|| {
            panic!("within {within:?}: the answer {answer:?}, the event {event:?}")
        });
        let t = match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                panic!(
                    "the entry closed the connection: the answer {answer:?}, the event {event:?}"
                )
            }
            // A time-out: the next turn panics.
            _ => continue,
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["id"] == id {
            answer = Some((t0.elapsed(), v));
        } else if v["method"] == "onEvent"
            && v["params"]["value"]["type"] == "Error"
            && v["params"]["value"]["object"] == object
        {
            event = Some((t0.elapsed(), v));
        }
    }
    (answer.unwrap(), event.unwrap())
}

/// Makes `n` unpinned pipelines through `c` (each with a WebRtcEndpoint when `endpoint`:
/// placement's load), counts how many went to each node (as the store says), then releases
/// them; `through` names the entry in a failure.
pub async fn placed(
    c: &mut Client,
    probe: &Coordinator,
    n: usize,
    endpoint: bool,
    through: &str,
) -> std::collections::BTreeMap<String, usize> {
    let mut on = std::collections::BTreeMap::new();
    let mut made = vec![];
    for _ in 0..n {
        let p = c
            .create("MediaPipeline", json!({}))
            .await
            .unwrap_or_else(|e| panic!("an unpinned pipeline through {through}: {e}"));
        if endpoint {
            c.create("WebRtcEndpoint", json!({"mediaPipeline": p}))
                .await
                .unwrap_or_else(|e| panic!("an endpoint in it through {through}: {e}"));
        }
        *on.entry(owner_of(probe, &p).await).or_default() += 1;
        made.push(p);
    }
    for p in made {
        c.request("release", json!({"object": p}))
            .await
            .unwrap_or_else(|e| panic!("release through {through}: {e}"));
    }
    on
}

/// Through `c`: a pipeline pinned to `node` and a WebRtcEndpoint in it; (pipeline, endpoint).
pub async fn endpoint_on(c: &mut Client, node: &str) -> (String, String) {
    let p = c
        .create("MediaPipeline", json!({ "fluoNode": node }))
        .await
        .unwrap();
    let e = c
        .create("WebRtcEndpoint", json!({"mediaPipeline": p}))
        .await
        .unwrap();
    (p, e)
}

/// Fluo nodes on a Redis of the test's own, listed. Its fields drop in their order: the
/// nodes stop first, then their folders go, then Redis.
pub struct Nodes {
    pub servers: Vec<Server>,
    /// Each node's WebSocket port, in the order of the ids.
    pub ports: Vec<u16>,
    /// Each node's files (its log is `fluo.log`).
    pub dirs: Vec<tempfile::TempDir>,
    pub probe: Coordinator,
    pub redis: fluo_cluster::testing::RedisServer,
}

/// [`Nodes`] `ids` with `flags`, for the test `what`; `None` (the test skips, failing under
/// CI=true) without a redis-server.
pub async fn nodes(what: &str, ids: &[&str], flags: &[&str]) -> Option<Nodes> {
    let redis = fluo_cluster::testing::RedisServer::start(what)?;
    let url = redis.url();
    let (mut servers, mut ports, mut dirs) = (vec![], vec![], vec![]);
    for id in ids {
        let dir = tempfile::tempdir().unwrap();
        let (s, port) = node(dir.path(), &url, id, SECRET, flags);
        servers.push(s);
        ports.push(port);
        dirs.push(dir);
    }
    let probe = Coordinator::redis(&url).unwrap();
    until_listed(&probe, ids).await;
    Some(Nodes {
        servers,
        ports,
        dirs,
        probe,
        redis,
    })
}
