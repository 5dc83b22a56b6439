//! Fluo's cluster mode (docs/cluster.md), measured with the load tool's own peers:
//!
//! - `fluo-bench cluster`: one publisher in a pipeline pinned to one node and thin viewers on
//!   every node, each node's in a pipeline of its own pinned there (the publisher's node's in
//!   the publisher's pipeline), every viewer's endpoint connected to the publisher's: across
//!   pipelines, so the entry makes a relay from the publisher's node to each other node. All
//!   signalling goes through one entry; each viewer's media comes from its own node. Per node:
//!   viewers with media, loss after repair, fps, latency, and the latency a relay adds (a node's
//!   p50 / p99 minus the publisher's node's).
//! - `fluo-bench recv`: one thin viewer for another program's signalling (an application that
//!   re-creates its pipeline in `make cluster-test`): it prints its offer, reads the answer and
//!   prints when its first media packet was decrypted.
//!
//! Run by scripts/cluster-test.sh in the namespace of its clients; the peers bind `--bind`.

use crate::drive::{collect, delivered, join_fluo, release, thin_delta, wait_for_media, Spares};
use crate::feed::Feed;
use crate::peer::{Group, Mode, Publisher, SendLog, Viewer, ViewerSnap, ViewerSpec};
use crate::report::{pct, sorted};
use fluo_testkit::live::Client;
use serde_json::json;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::media::Direction;

const USAGE: &str = "usage: fluo-bench cluster --entry ws://HOST:PORT/kurento --publisher NODE \
--viewers NODE=N[,NODE=N...] [--bind IP] [--warmup SECS] [--window SECS] [--max-loss PCT] [--max-video-loss PCT]\n\
       fluo-bench recv [--bind IP] [--wait SECS]";

struct Args {
    entry: String,
    publisher: String,
    groups: Vec<(String, usize)>,
    bind: IpAddr,
    warmup: Duration,
    window: Duration,
    /// Bounds on a node's loss after repair, %: of all packets, of the video's (NACKed).
    max_loss_pct: f64,
    max_video_loss_pct: f64,
    wait: Duration,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        entry: String::new(),
        publisher: String::new(),
        groups: vec![],
        bind: std::net::Ipv4Addr::LOCALHOST.into(),
        warmup: Duration::from_secs(3),
        window: Duration::from_secs(10),
        max_loss_pct: 2.0,
        max_video_loss_pct: 0.5,
        wait: Duration::from_secs(20),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let val = it.next().ok_or(format!("{flag} needs a value\n{USAGE}"))?;
        let secs = || {
            val.parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0 && *s < 3600.0)
                .map(Duration::from_secs_f64)
                .ok_or(format!("not a duration in seconds: {val}"))
        };
        match flag.as_str() {
            "--entry" => a.entry = val.clone(),
            "--publisher" => a.publisher = val.clone(),
            "--viewers" => a.groups = groups(val)?,
            "--bind" => a.bind = val.parse().map_err(|_| format!("not an address: {val}"))?,
            "--warmup" => a.warmup = secs()?,
            "--window" => a.window = secs()?,
            "--wait" => a.wait = secs()?,
            "--max-loss" => a.max_loss_pct = percent(flag, val)?,
            "--max-video-loss" => a.max_video_loss_pct = percent(flag, val)?,
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn percent(flag: &str, val: &str) -> Result<f64, String> {
    val.parse()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
        .ok_or(format!("bad {flag} {val} (0-100)"))
}

/// `node1=10,node2=10`: viewers per node, in that order.
fn groups(text: &str) -> Result<Vec<(String, usize)>, String> {
    text.split(',')
        .map(|kv| {
            let (node, n) = kv.split_once('=').ok_or(format!("not NODE=N: {kv}"))?;
            let n = n
                .parse()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or(format!("bad count in {kv} (1-1000)"))?;
            Ok((node.to_string(), n))
        })
        .collect()
}

/// `fluo-bench cluster ...`: Ok(false) when a check failed.
pub fn broadcast_main(args: &[String]) -> Result<bool, String> {
    let a = parse(args)?;
    if a.entry.is_empty() || a.publisher.is_empty() || a.groups.is_empty() {
        return Err(USAGE.into());
    }
    crate::peer::set_local_ip(a.bind)?;
    let feed = Arc::new(Feed::load_or_encode(&PathBuf::from(
        "target/bench-feed.bin",
    ))?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let log = Arc::new(SendLog::default());
    let mut owner = rt.block_on(Client::connect_url(&a.entry))?;
    let started = publish(&rt, &mut owner, &a, &feed, &log);
    let (pipelines, outcome) = match started {
        Ok((pipeline, endpoint, handle)) => {
            let mut pipelines = vec![pipeline.clone()];
            let r = watch(
                &rt,
                &mut owner,
                &a,
                &pipeline,
                &endpoint,
                &log,
                &mut pipelines,
            );
            handle.stop();
            (pipelines, r)
        }
        Err(e) => (vec![], Err(e)),
    };
    // The viewers' pipelines, then the publisher's (their relays' ends go with them).
    for p in pipelines.iter().rev() {
        if let Err(e) = rt.block_on(release(&mut owner, p)) {
            println!("broadcast: release of {p}: {e}");
        }
    }
    outcome
}

/// The publisher's pipeline (pinned to its node) and endpoint, its peer connected and sending.
fn publish(
    rt: &tokio::runtime::Runtime,
    c: &mut Client,
    a: &Args,
    feed: &Arc<Feed>,
    log: &Arc<SendLog>,
) -> Result<(String, String, crate::peer::PublisherHandle), String> {
    let mut p = Publisher::new()?;
    let offer = p.session.offer(Direction::SendOnly)?;
    let (pipeline, ep, answer) = rt.block_on(async {
        let pipe = c
            .create("MediaPipeline", json!({ "fluoNode": a.publisher }))
            .await?;
        let ep = c
            .create("WebRtcEndpoint", json!({ "mediaPipeline": pipe }))
            .await?;
        let answer = c
            .invoke(&ep, "processOffer", json!({ "offer": offer }))
            .await
            .map_err(|e| format!("the publisher's processOffer: {e}"))?;
        Ok::<_, String>((pipe, ep, answer))
    })?;
    p.session
        .accept_answer(answer.as_str().unwrap_or_default())?;
    let handle = p.start(feed.clone(), log.clone());
    let t = Instant::now();
    while !handle.connected.load(std::sync::atomic::Ordering::Relaxed) {
        if t.elapsed() > Duration::from_secs(10) {
            handle.stop();
            return Err("the publisher did not connect within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok((pipeline, ep, handle))
}

/// One node's viewers.
struct Node {
    node: String,
    n: usize,
    group: Group,
    /// Their signalling connections (to the entry), open until the end.
    clients: Vec<Client>,
    errors: Vec<String>,
}

/// Joins every node's viewers, waits, measures; prints the figures and checks them.
fn watch(
    rt: &tokio::runtime::Runtime,
    owner: &mut Client,
    a: &Args,
    pub_pipeline: &str,
    publisher: &str,
    log: &Arc<SendLog>,
    pipelines: &mut Vec<String>,
) -> Result<bool, String> {
    let mut nodes = vec![];
    let mut first_id = 0;
    for (node, n) in &a.groups {
        let pipeline = if *node == a.publisher {
            pub_pipeline.to_string()
        } else {
            let p = rt.block_on(owner.create("MediaPipeline", json!({ "fluoNode": node })))?;
            pipelines.push(p.clone());
            p
        };
        let t = Instant::now();
        let g = join_node(rt, a, node, *n, first_id, &pipeline, publisher, log);
        println!(
            "broadcast: {} viewers of {node} signalled through the entry in {:.2} s{}",
            n,
            t.elapsed().as_secs_f64(),
            g.errors
                .first()
                .map_or(String::new(), |e| format!(" (error: {e})"))
        );
        first_id += n;
        nodes.push(g);
    }
    let groups: Vec<&Group> = nodes.iter().map(|g| &g.group).collect();
    for g in &groups {
        let _ = wait_for_media(std::slice::from_ref(*g), 0);
    }
    std::thread::sleep(a.warmup);
    let before: Vec<_> = groups.iter().map(|g| snapshot(g).0).collect();
    let t = Instant::now();
    std::thread::sleep(a.window);
    let after: Vec<_> = groups.iter().map(|g| snapshot(g)).collect();
    let secs = t.elapsed().as_secs_f64();
    let figures: Vec<Figures> = nodes
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(node, (b, (x, lat)))| Figures::of(node, b, x, lat, secs))
        .collect();
    let ok = report(a, &figures);
    for g in nodes {
        g.group.clear();
        drop(g.clients);
    }
    Ok(ok)
}

fn snapshot(g: &Group) -> (Vec<ViewerSnap>, Vec<f32>) {
    collect(std::slice::from_ref(g))
}

/// `n` thin viewers in `pipeline` (on `node`), each connected to `publisher`, joined through
/// the entry over up to 10 signalling connections.
#[allow(clippy::too_many_arguments)]
fn join_node(
    rt: &tokio::runtime::Runtime,
    a: &Args,
    node: &str,
    n: usize,
    first_id: usize,
    pipeline: &str,
    publisher: &str,
    log: &Arc<SendLog>,
) -> Node {
    let mut out = Node {
        node: node.to_string(),
        n,
        group: Group::start(format!("viewers-{node}"), log.clone()),
        clients: vec![],
        errors: vec![],
    };
    let spec = ViewerSpec {
        mode: Mode::Thin,
        twcc: true,
        cohort: 0,
        drop_every: 0,
    };
    let mut made = vec![];
    for id in first_id..first_id + n {
        match Viewer::new(Instant::now(), id, spec).and_then(|mut v| {
            let offer = v.session.offer(Direction::RecvOnly)?;
            Ok((v, Some(offer)))
        }) {
            Ok(v) => made.push(v),
            Err(e) => out.errors.push(e),
        }
    }
    let spares: Spares = Mutex::new(made);
    let conc = n.clamp(1, 10);
    let adder = out.group.adder();
    let results = rt.block_on(async {
        let conns =
            futures_util::future::join_all((0..conc).map(|_| Client::connect_url(&a.entry)));
        let tasks = conns.await.into_iter().enumerate().map(|(w, c)| {
            let (spares, adder) = (&spares, &adder);
            async move {
                let mut c = c?;
                let mut errs = vec![];
                for _ in (w..n).step_by(conc) {
                    if let Err(e) = join_fluo(&mut c, pipeline, publisher, spares, adder).await {
                        errs.push(e);
                    }
                }
                Ok::<_, String>((c, errs))
            }
        });
        futures_util::future::join_all(tasks).await
    });
    for r in results {
        match r {
            Ok((c, errs)) => {
                out.clients.push(c);
                out.errors.extend(errs);
            }
            Err(e) => out.errors.push(e),
        }
    }
    out
}

/// One node's figures over the window.
struct Figures {
    node: String,
    viewers: usize,
    joined: usize,
    join_ms_p50: Option<f64>,
    /// Loss after repair, % of the packets expected: all, audio, video.
    loss_pct: [f64; 3],
    nacked: u64,
    repaired: u64,
    decrypt_failures: u64,
    fps_p50: Option<f64>,
    latency_ms: Vec<f64>,
    errors: Vec<String>,
}

impl Figures {
    fn of(node: &Node, a: &[ViewerSnap], b: &[ViewerSnap], lat: &[f32], secs: f64) -> Figures {
        let (got, expected, frames) = delivered(a, b);
        let loss = |g: u64, e: u64| {
            if e > 0 {
                100.0 * e.saturating_sub(g) as f64 / e as f64
            } else {
                0.0
            }
        };
        let thin = thin_delta(a, b).unwrap_or_default();
        let with_media: Vec<&ViewerSnap> = b.iter().filter(|s| s.first_rtp.is_some()).collect();
        let join: Vec<f64> = with_media
            .iter()
            .filter_map(|s| {
                let f = s.first_rtp?;
                Some(f.saturating_duration_since(s.join_began).as_secs_f64() * 1e3)
            })
            .collect();
        let fps: Vec<f64> = frames.iter().map(|(f, _)| *f as f64 / secs).collect();
        Figures {
            node: node.node.clone(),
            viewers: node.n,
            joined: with_media.len(),
            join_ms_p50: pct(&sorted(&join), 0.5),
            loss_pct: [
                loss(got[0] + got[1], expected[0] + expected[1]),
                loss(got[0], expected[0]),
                loss(got[1], expected[1]),
            ],
            nacked: thin.nacked,
            repaired: thin.repaired,
            decrypt_failures: thin.decrypt_failures,
            fps_p50: pct(&sorted(&fps), 0.5),
            latency_ms: sorted(&lat.iter().map(|x| f64::from(*x)).collect::<Vec<_>>()),
            errors: node.errors.clone(),
        }
    }

    fn latency(&self, p: f64) -> Option<f64> {
        pct(&self.latency_ms, p)
    }
}

fn show(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".into(), |x| format!("{x:.digits$}"))
}

/// Prints each node's line and FIGURE lines (scripts/cluster-test.sh's report); whether every
/// viewer got media and every node's loss after repair is within the bound.
fn report(a: &Args, figures: &[Figures]) -> bool {
    let base = figures.iter().find(|f| f.node == a.publisher);
    let mut ok = true;
    for f in figures {
        let relayed = f.node != a.publisher;
        let added = |p: f64| Some(f.latency(p)? - base?.latency(p)?);
        println!(
            "broadcast: {} ({}): {}/{} viewers with media (join p50 {} ms), loss after repair {:.2} % (audio {:.2} %, video {:.2} %; {} NACKed, {} repaired, {} decrypt failures), fps p50 {}, latency p50 {} / p99 {} ms ({} samples){}",
            f.node,
            if relayed { "across a relay" } else { "the publisher's node" },
            f.joined,
            f.viewers,
            show(f.join_ms_p50, 0),
            f.loss_pct[0],
            f.loss_pct[1],
            f.loss_pct[2],
            f.nacked,
            f.repaired,
            f.decrypt_failures,
            show(f.fps_p50, 1),
            show(f.latency(0.5), 2),
            show(f.latency(0.99), 2),
            f.latency_ms.len(),
            if relayed {
                format!(", added by the relay p50 {} / p99 {} ms", show(added(0.5), 2), show(added(0.99), 2))
            } else {
                String::new()
            }
        );
        let name = |k: &str| format!("FIGURE broadcast_{}_{k}", f.node);
        println!("{} {}/{}", name("viewers_with_media"), f.joined, f.viewers);
        println!("{} {:.2}", name("loss_pct"), f.loss_pct[0]);
        println!("{} {}", name("fps"), show(f.fps_p50, 1));
        println!(
            "{} {}/{}",
            name("latency_p50_p99_ms"),
            show(f.latency(0.5), 2),
            show(f.latency(0.99), 2)
        );
        if relayed {
            println!(
                "{} {}/{}",
                name("added_p50_p99_ms"),
                show(added(0.5), 2),
                show(added(0.99), 2)
            );
        }
        if f.joined < f.viewers {
            println!(
                "broadcast: FAILED: {} of {} viewers on {} got no media{}",
                f.viewers - f.joined,
                f.viewers,
                f.node,
                f.errors
                    .first()
                    .map_or(String::new(), |e| format!(" (first error: {e})"))
            );
            ok = false;
        }
        if f.loss_pct[0] > a.max_loss_pct
            || f.loss_pct[2] > a.max_video_loss_pct
            || f.decrypt_failures > 0
        {
            println!(
                "broadcast: FAILED: {}: loss after repair {:.2} % (bound {} %), of the video {:.2} % (bound {} %), {} decrypt failures",
                f.node, f.loss_pct[0], a.max_loss_pct, f.loss_pct[2], a.max_video_loss_pct, f.decrypt_failures
            );
            ok = false;
        }
    }
    ok
}

/// `fluo-bench recv ...`: prints `OFFER <SDP as a JSON string>`, reads the answer (a JSON
/// string, one line) from stdin, prints `FIRST_MEDIA_WALL_MS <ms since the epoch>` once its
/// first media packet is decrypted; Ok(false) (`NO_MEDIA`) after `--wait` without one.
pub fn recv_main(args: &[String]) -> Result<bool, String> {
    let a = parse(args)?;
    crate::peer::set_local_ip(a.bind)?;
    let spec = ViewerSpec {
        mode: Mode::Thin,
        twcc: true,
        cohort: 1,
        drop_every: 0,
    };
    let mut v = Viewer::new(Instant::now(), 0, spec)?;
    let offer = v.session.offer(Direction::RecvOnly)?;
    println!("OFFER {}", json!(offer));
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("stdin: {e}"))?;
    let answer: String = serde_json::from_str(line.trim())
        .map_err(|e| format!("the answer is not a JSON string: {e}"))?;
    v.accept_answer(&answer)?;
    let group = Group::start("recv".into(), Arc::new(SendLog::default()));
    group.adder().add(v);
    let t = Instant::now();
    while t.elapsed() < a.wait {
        let (snaps, _) = group.snapshot();
        if let Some(first) = snaps.first().and_then(|s| s.first_rtp) {
            let ago = Instant::now().saturating_duration_since(first);
            let wall = crate::sys::wall_ns().saturating_sub(ago.as_nanos() as u64);
            println!("FIRST_MEDIA_WALL_MS {:.3}", wall as f64 / 1e6);
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("NO_MEDIA");
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    /// `--viewers` keeps the nodes in order with their counts; a count out of 1-1000 or a pair
    /// without `=` is refused, as is a flag without its value.
    #[test]
    fn the_viewers_per_node_are_parsed_and_checked() {
        let a = parse(&args(
            "--entry ws://10.0.0.1:8888/kurento --publisher node1 --viewers node1=10,node3=2 --bind 10.0.0.2 --window 4 --max-loss 1.5 --max-video-loss 0.2",
        ))
        .expect("good arguments");
        assert_eq!(
            a.groups,
            vec![("node1".to_string(), 10), ("node3".to_string(), 2)]
        );
        assert_eq!(a.bind, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(a.window, Duration::from_secs(4));
        assert_eq!(a.max_loss_pct, 1.5);
        assert_eq!(a.max_video_loss_pct, 0.2);
        for bad in ["node1=0", "node1=1001", "node1", "node1=x", "node1=2,"] {
            assert!(groups(bad).is_err(), "{bad}");
        }
        assert!(parse(&args("--viewers")).is_err());
        assert!(parse(&args("--max-loss 101")).is_err());
        assert!(parse(&args("--bind nowhere")).is_err());
    }
}
