//! Fluo's cluster mode (docs/cluster.md), measured with the load tool's own peers:
//!
//! - `fluo-bench cluster`: one publisher in a pipeline pinned to one node and thin viewers on
//!   every node, each node's in a pipeline of its own pinned there (the publisher's node's in
//!   the publisher's pipeline), every viewer's endpoint connected to the publisher's: across
//!   pipelines, so the entry makes a relay from the publisher's node to each other node. All
//!   signalling goes through one entry; each viewer's media comes from its own node (with
//!   `--nodes`, checked: every answer's candidates carry its node's address). Per node: viewers
//!   with media, loss after repair, the share of the publisher's video each viewer received,
//!   fps, latency, and a node's latency percentiles minus the publisher's node's. It fails
//!   when a viewer gets no media or no video, when a viewer's video stalls or stops (less than
//!   95 % of the video packets the publisher sent in the window), when a node's fps p50 is
//!   under 0.8 x the feed's, when a node has fewer latency samples than half its viewers'
//!   frames, when a viewer's video stops for longer than `--max-gap` (its count read every
//!   50 ms, `gaps.rs`), or when loss after repair is over its bounds. `--mark PATH` writes PATH
//!   when the window starts and `--hold PATH` keeps the window open until PATH exists (at
//!   least `--window`, at most 120 s more): scripts/cluster-test.sh kills and restarts Redis
//!   meanwhile.
//! - `fluo-bench recv`: one thin viewer for another program's signalling (an application that
//!   re-creates its pipeline in `make cluster-test`): it prints its offer, reads the answer and
//!   prints when its first media packet was decrypted.
//!
//! Run by scripts/cluster-test.sh in the namespace of its clients; the peers bind `--bind`.

mod gaps;

use crate::drive::{collect, delivered, join_fluo, release, thin_delta, wait_for_media, Spares};
use crate::feed::Feed;
use crate::peer::{
    Group, Mode, Publisher, PublisherHandle, SendLog, Viewer, ViewerSnap, ViewerSpec,
};
use crate::report::{pct, sorted};
use fluo_testkit::live::Client;
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::media::Direction;

const USAGE: &str = "usage: fluo-bench cluster --entry ws://HOST:PORT/kurento --publisher NODE \
--viewers NODE=N[,NODE=N...] [--nodes NODE=IP,...] [--bind IP] [--warmup SECS] [--window SECS] \
[--max-loss PCT] [--max-video-loss PCT] [--max-gap SECS] [--mark PATH] [--hold PATH]\n\
       fluo-bench recv [--bind IP] [--wait SECS]";

struct Args {
    entry: String,
    publisher: String,
    groups: Vec<(String, usize)>,
    /// Each node's media address: an answer made there carries it in its candidates.
    nodes: Vec<(String, IpAddr)>,
    bind: IpAddr,
    warmup: Duration,
    window: Duration,
    /// Bounds on a node's loss after repair, %: of all packets, of the video's (NACKed).
    max_loss_pct: f64,
    max_video_loss_pct: f64,
    /// Bound on the longest time a viewer goes without a video packet in the window.
    max_gap: Duration,
    /// Written when the window starts.
    mark: Option<PathBuf>,
    /// The window lasts until this exists (at least `window`, at most `MAX_HOLD` more).
    hold: Option<PathBuf>,
    wait: Duration,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        entry: String::new(),
        publisher: String::new(),
        groups: vec![],
        nodes: vec![],
        bind: std::net::Ipv4Addr::LOCALHOST.into(),
        warmup: Duration::from_secs(3),
        window: Duration::from_secs(10),
        max_loss_pct: 2.0,
        max_video_loss_pct: 0.2,
        max_gap: Duration::from_millis(500),
        mark: None,
        hold: None,
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
            "--nodes" => a.nodes = addresses(val)?,
            "--bind" => a.bind = val.parse().map_err(|_| format!("not an address: {val}"))?,
            "--warmup" => a.warmup = secs()?,
            "--window" => a.window = secs()?,
            "--wait" => a.wait = secs()?,
            "--max-gap" => a.max_gap = secs()?,
            "--mark" => a.mark = Some(PathBuf::from(val)),
            "--hold" => a.hold = Some(PathBuf::from(val)),
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

/// `node1=10.0.0.1,node2=10.0.0.2`: each node's media address.
fn addresses(text: &str) -> Result<Vec<(String, IpAddr)>, String> {
    text.split(',')
        .map(|kv| {
            let (node, ip) = kv.split_once('=').ok_or(format!("not NODE=IP: {kv}"))?;
            let ip = ip.parse().map_err(|_| format!("not an address in {kv}"))?;
            Ok((node.to_string(), ip))
        })
        .collect()
}

/// Whether an answer made on `node` says so: with `--nodes`, one of its candidates carries the
/// node's address and none another node's; Err says what it carries.
fn placed_on(a: &Args, node: &str, answer: &str) -> Result<(), String> {
    let Some(want) = a.nodes.iter().find(|(n, _)| n == node).map(|(_, ip)| *ip) else {
        return Ok(());
    };
    let found: Vec<IpAddr> = answer
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
        .filter_map(|c| c.split_whitespace().nth(4)?.parse().ok())
        .collect();
    let other = |ip: &IpAddr| a.nodes.iter().any(|(n, x)| n != node && x == ip);
    if found.contains(&want) && !found.iter().any(other) {
        Ok(())
    } else {
        Err(format!(
            "its answer's candidates are not {node}'s ({want}): {found:?}"
        ))
    }
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
    let pipeline =
        rt.block_on(owner.create("MediaPipeline", json!({ "fluoNode": a.publisher })))?;
    let mut pipelines = vec![pipeline.clone()];
    let outcome = match publish(&rt, &mut owner, &a, &pipeline, &feed, &log) {
        Ok((endpoint, handle)) => {
            let on = Publishing {
                pipeline: &pipeline,
                endpoint: &endpoint,
                handle: &handle,
                fps: feed.fps(),
            };
            let r = watch(&rt, &mut owner, &a, &on, &log, &mut pipelines);
            handle.stop();
            r
        }
        Err(e) => Err(e),
    };
    // The viewers' pipelines, then the publisher's (their relays' ends go with them).
    for p in pipelines.iter().rev() {
        if let Err(e) = rt.block_on(release(&mut owner, p)) {
            println!("broadcast: release of {p}: {e}");
        }
    }
    outcome
}

/// The publisher's endpoint in `pipeline` (pinned to its node, the caller's to release), its
/// peer connected and sending.
fn publish(
    rt: &tokio::runtime::Runtime,
    c: &mut Client,
    a: &Args,
    pipeline: &str,
    feed: &Arc<Feed>,
    log: &Arc<SendLog>,
) -> Result<(String, PublisherHandle), String> {
    let mut p = Publisher::new()?;
    let offer = p.offer()?;
    let (ep, answer) = rt.block_on(async {
        let ep = c
            .create("WebRtcEndpoint", json!({ "mediaPipeline": pipeline }))
            .await?;
        let answer = c
            .invoke(&ep, "processOffer", json!({ "offer": offer }))
            .await
            .map_err(|e| format!("the publisher's processOffer: {e}"))?;
        Ok::<_, String>((ep, answer))
    })?;
    let answer = answer.as_str().unwrap_or_default();
    placed_on(a, &a.publisher, answer).map_err(|e| format!("the publisher: {e}"))?;
    p.session.accept_answer(answer)?;
    let handle = p.start(feed.clone(), log.clone());
    let t = Instant::now();
    while !handle.connected.load(std::sync::atomic::Ordering::Relaxed) {
        if t.elapsed() > Duration::from_secs(10) {
            handle.stop();
            return Err("the publisher did not connect within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok((ep, handle))
}

/// The running publisher.
struct Publishing<'a> {
    pipeline: &'a str,
    endpoint: &'a str,
    handle: &'a PublisherHandle,
    /// The feed's video frames per second.
    fps: f64,
}

/// One node's viewers.
struct Node {
    node: String,
    n: usize,
    group: Group,
    /// Their signalling connections (to the entry), open until the end.
    clients: Vec<Client>,
    errors: Vec<String>,
    /// Viewers whose answer was not made on this node (`placed_on`).
    misplaced: Vec<String>,
}

/// What the viewers of every node got over the window, and the publisher's video meanwhile.
struct Window {
    before: Vec<ViewerSnap>,
    after: Vec<ViewerSnap>,
    latency: Vec<f32>,
    /// Each viewer's longest time without a video packet in the window.
    gaps: Vec<Duration>,
    video_sent: u64,
    secs: f64,
}

/// Joins every node's viewers, waits, measures; prints the figures and checks them.
fn watch(
    rt: &tokio::runtime::Runtime,
    owner: &mut Client,
    a: &Args,
    on: &Publishing,
    log: &Arc<SendLog>,
    pipelines: &mut Vec<String>,
) -> Result<bool, String> {
    let mut nodes = vec![];
    let mut first_id = 0;
    for (node, n) in &a.groups {
        let pipeline = if *node == a.publisher {
            on.pipeline.to_string()
        } else {
            let p = rt.block_on(owner.create("MediaPipeline", json!({ "fluoNode": node })))?;
            pipelines.push(p.clone());
            p
        };
        let t = Instant::now();
        let g = join_node(rt, a, node, *n, first_id, &pipeline, on.endpoint, log);
        println!(
            "broadcast: {} viewers of {node} (pipeline {pipeline}) signalled through the entry in {:.2} s{}",
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
    let sent_before = on.handle.video_sent();
    let before: Vec<_> = groups.iter().map(|g| snapshot(g).0).collect();
    let t = Instant::now();
    if let Some(mark) = &a.mark {
        std::fs::write(mark, b"window\n").map_err(|e| format!("--mark {}: {e}", mark.display()))?;
    }
    let (after, gaps) = sample_window(a, &groups, &before, t);
    let sent_after = on.handle.video_sent();
    let secs = t.elapsed().as_secs_f64();
    let figures: Vec<Figures> = nodes
        .iter()
        .zip(before.into_iter().zip(after.into_iter().zip(gaps)))
        .map(|(node, (before, ((after, latency), gaps)))| {
            let w = Window {
                before,
                after,
                latency,
                gaps,
                video_sent: sent_after.saturating_sub(sent_before),
                secs,
            };
            Figures::of(node, &w)
        })
        .collect();
    let ok = report(a, on.fps, &figures);
    for g in nodes {
        g.group.clear();
        drop(g.clients);
    }
    Ok(ok)
}

fn snapshot(g: &Group) -> (Vec<ViewerSnap>, Vec<f32>) {
    let (snaps, lat) = collect(std::slice::from_ref(g));
    (snaps, lat.concat())
}

/// One group's last snapshot in the window, with every latency sample of the window.
type Sampled = (Vec<ViewerSnap>, Vec<f32>);

/// How long `--hold` may keep the window open beyond `--window`.
const MAX_HOLD: Duration = Duration::from_secs(120);

/// The window from `t`: each group's counts read every `gaps::SAMPLE` until `--window` has
/// passed and `--hold`'s file exists; per group, its last snapshot with every latency sample
/// of the window, and each viewer's longest gap in its video.
fn sample_window(
    a: &Args,
    groups: &[&Group],
    before: &[Vec<ViewerSnap>],
    t: Instant,
) -> (Vec<Sampled>, Vec<Vec<Duration>>) {
    let mut gaps: Vec<gaps::Gaps> = before.iter().map(|b| gaps::Gaps::new(b, t)).collect();
    let mut last: Vec<Sampled> = vec![(vec![], vec![]); groups.len()];
    loop {
        std::thread::sleep(gaps::SAMPLE);
        let now = Instant::now();
        for ((g, gaps), last) in groups.iter().zip(&mut gaps).zip(&mut last) {
            let (snaps, latency) = snapshot(g);
            gaps.sample(&snaps, now);
            last.0 = snaps;
            last.1.extend(latency);
        }
        let held = a.hold.as_ref().is_some_and(|p| !p.exists());
        let elapsed = now.saturating_duration_since(t);
        if elapsed >= a.window && (!held || elapsed >= a.window + MAX_HOLD) {
            if held {
                println!(
                    "broadcast: --hold's file did not appear within {} s",
                    MAX_HOLD.as_secs()
                );
            }
            let longest = gaps.iter().map(|g| g.longest(now)).collect();
            return (last, longest);
        }
    }
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
        misplaced: vec![],
    };
    let spec = ViewerSpec {
        mode: Mode::Thin,
        twcc: true,
        cohort: 0,
        drop_every: 0,
        limit: None,
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
                let (mut errs, mut answers) = (vec![], vec![]);
                for _ in (w..n).step_by(conc) {
                    match join_fluo(&mut c, pipeline, publisher, spares, adder).await {
                        Ok((_, answer, _)) => answers.push(answer),
                        Err(e) => errs.push(e),
                    }
                }
                Ok::<_, String>((c, errs, answers))
            }
        });
        futures_util::future::join_all(tasks).await
    });
    for r in results {
        match r {
            Ok((c, errs, answers)) => {
                out.clients.push(c);
                out.errors.extend(errs);
                let wrong = answers.iter().filter_map(|x| placed_on(a, node, x).err());
                out.misplaced.extend(wrong);
            }
            Err(e) => out.errors.push(e),
        }
    }
    out
}

/// A viewer's video counts as flowing when it received at least this share of the video
/// packets the publisher sent over the window: loss after repair is a fraction of a percent,
/// and the window's two ends (the viewers' counts are read a few ms after the publisher's,
/// their packets a relay's latency behind) move a few packets, a keyframe's burst at most
/// (about 2 % of a viewer's 1,000 video packets in 10 s); a stall of about 0.5 s or more
/// fails it.
const MIN_VIDEO_SHARE: f64 = 0.95;
/// A node's fps p50 must be at least this share of the feed's.
const MIN_FPS_SHARE: f64 = 0.8;
/// A node's latency samples (one per frame received whole, not repaired) must be at least
/// this share of its viewers' frames over the window.
const MIN_LATENCY_SHARE: f64 = 0.5;

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
    /// The video packets each viewer received over the window, as a share of the publisher's.
    video_share: Vec<f64>,
    /// Viewers that received no video packet over the window.
    without_video: usize,
    /// Each viewer's longest time without a video packet over the window.
    gaps: Vec<Duration>,
    secs: f64,
    errors: Vec<String>,
    misplaced: Vec<String>,
}

impl Figures {
    fn of(node: &Node, w: &Window) -> Figures {
        let (a, b) = (&w.before, &w.after);
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
        let fps: Vec<f64> = frames.iter().map(|(f, _)| *f as f64 / w.secs).collect();
        let video = video_received(a, b);
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
            latency_ms: sorted(&w.latency.iter().map(|x| f64::from(*x)).collect::<Vec<_>>()),
            video_share: video
                .iter()
                .map(|n| *n as f64 / w.video_sent.max(1) as f64)
                .collect(),
            without_video: video.iter().filter(|n| **n == 0).count(),
            gaps: w.gaps.clone(),
            secs: w.secs,
            errors: node.errors.clone(),
            misplaced: node.misplaced.clone(),
        }
    }

    fn latency(&self, p: f64) -> Option<f64> {
        pct(&self.latency_ms, p)
    }

    fn longest_gap(&self) -> Option<Duration> {
        self.gaps.iter().copied().max()
    }

    fn least_video_share(&self) -> Option<f64> {
        self.video_share.iter().copied().reduce(f64::min)
    }

    /// What fails this node, given the feed's fps and the bounds.
    fn failures(&self, a: &Args, feed_fps: f64) -> Vec<String> {
        let mut out = vec![];
        let first = |v: &[String]| {
            v.first()
                .map_or(String::new(), |e| format!(" (first: {e})"))
        };
        if self.joined < self.viewers {
            out.push(format!(
                "{} of {} viewers got no media{}",
                self.viewers - self.joined,
                self.viewers,
                first(&self.errors)
            ));
        }
        if self.without_video > 0 || self.video_share.len() < self.viewers {
            let n = self.without_video + self.viewers.saturating_sub(self.video_share.len());
            out.push(format!(
                "{n} of {} viewers got no video in the window",
                self.viewers
            ));
        }
        let short = self.video_share.iter().filter(|s| **s < MIN_VIDEO_SHARE);
        let short = short.count() - self.without_video;
        if short > 0 {
            out.push(format!(
                "{short} viewers got less than {:.0} % of the video packets the publisher sent in the window (least {:.1} %): their video stalled or stopped",
                MIN_VIDEO_SHARE * 100.0,
                self.least_video_share().unwrap_or_default() * 100.0
            ));
        }
        let gapped = self.gaps.iter().filter(|g| **g > a.max_gap).count();
        if gapped > 0 {
            out.push(format!(
                "{gapped} viewers went without video for longer than {} ms (longest {:.0} ms)",
                a.max_gap.as_millis(),
                self.longest_gap().unwrap_or_default().as_secs_f64() * 1e3
            ));
        }
        if self.fps_p50.is_none_or(|f| f < MIN_FPS_SHARE * feed_fps) {
            out.push(format!(
                "fps p50 {} under {:.0} % of the feed's {feed_fps:.1}",
                show(self.fps_p50, 1),
                MIN_FPS_SHARE * 100.0
            ));
        }
        let want = MIN_LATENCY_SHARE * self.viewers as f64 * feed_fps * self.secs;
        if (self.latency_ms.len() as f64) < want {
            out.push(format!(
                "{} latency samples, fewer than {want:.0} (half its viewers' frames)",
                self.latency_ms.len()
            ));
        }
        if self.loss_pct[0] > a.max_loss_pct
            || self.loss_pct[2] > a.max_video_loss_pct
            || self.decrypt_failures > 0
        {
            out.push(format!(
                "loss after repair {:.2} % (bound {} %), of the video {:.2} % (bound {} %), {} decrypt failures",
                self.loss_pct[0], a.max_loss_pct, self.loss_pct[2], a.max_video_loss_pct, self.decrypt_failures
            ));
        }
        if !self.misplaced.is_empty() {
            out.push(format!(
                "{} viewers not placed on {}{}",
                self.misplaced.len(),
                self.node,
                first(&self.misplaced)
            ));
        }
        out
    }
}

/// The video packets each viewer of cohort 0 received between two snapshots (all it has for a
/// viewer missing from the first).
fn video_received(a: &[ViewerSnap], b: &[ViewerSnap]) -> Vec<u64> {
    let before: HashMap<usize, u64> = a.iter().map(|s| (s.id, s.counts.packets[1])).collect();
    b.iter()
        .filter(|s| s.cohort == 0)
        .map(|s| s.counts.packets[1].saturating_sub(before.get(&s.id).copied().unwrap_or(0)))
        .collect()
}

fn show(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".into(), |x| format!("{x:.digits$}"))
}

/// Prints each node's line and FIGURE lines (scripts/cluster-test.sh's report) and what fails
/// it (`Figures::failures`); whether nothing did.
fn report(a: &Args, feed_fps: f64, figures: &[Figures]) -> bool {
    let base = figures.iter().find(|f| f.node == a.publisher);
    let mut ok = true;
    for f in figures {
        let relayed = f.node != a.publisher;
        // A difference of two percentiles, not of per-packet figures: can be negative.
        let added = |p: f64| Some(f.latency(p)? - base?.latency(p)?);
        println!(
            "broadcast: {} ({}): {}/{} viewers with media (join p50 {} ms), loss after repair {:.2} % (audio {:.2} %, video {:.2} %; {} NACKed, {} repaired, {} decrypt failures), video received {} % of the publisher's at least (longest gap {} ms), fps p50 {} (feed {feed_fps:.1}), latency p50 {} / p99 {} ms ({} samples){}",
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
            show(f.least_video_share().map(|s| s * 100.0), 1),
            show(f.longest_gap().map(|g| g.as_secs_f64() * 1e3), 0),
            show(f.fps_p50, 1),
            show(f.latency(0.5), 2),
            show(f.latency(0.99), 2),
            f.latency_ms.len(),
            if relayed {
                format!(", minus the publisher's node's: p50 {} / p99 {} ms (a difference of percentiles)", show(added(0.5), 2), show(added(0.99), 2))
            } else {
                String::new()
            }
        );
        let name = |k: &str| format!("FIGURE broadcast_{}_{k}", f.node);
        println!("{} {}/{}", name("viewers_with_media"), f.joined, f.viewers);
        println!("{} {:.2}", name("loss_pct"), f.loss_pct[0]);
        println!("{} {:.2}", name("video_loss_pct"), f.loss_pct[2]);
        println!("{} {}", name("fps"), show(f.fps_p50, 1));
        println!(
            "{} {}",
            name("longest_video_gap_ms"),
            show(f.longest_gap().map(|g| g.as_secs_f64() * 1e3), 0)
        );
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
        for why in f.failures(a, feed_fps) {
            println!("broadcast: FAILED: {}: {why}", f.node);
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
        limit: None,
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
        assert_eq!(a.max_gap, Duration::from_millis(500));
        let held = parse(&args("--max-gap 0.25 --mark /tmp/m --hold /tmp/h")).expect("good");
        assert_eq!(held.max_gap, Duration::from_millis(250));
        assert_eq!(held.mark, Some(PathBuf::from("/tmp/m")));
        assert_eq!(held.hold, Some(PathBuf::from("/tmp/h")));
        for bad in ["node1=0", "node1=1001", "node1", "node1=x", "node1=2,"] {
            assert!(groups(bad).is_err(), "{bad}");
        }
        assert!(parse(&args("--viewers")).is_err());
        assert!(parse(&args("--max-loss 101")).is_err());
        assert!(parse(&args("--bind nowhere")).is_err());
        assert!(parse(&args("--nodes node1")).is_err());
        assert!(parse(&args("--nodes node1=nowhere")).is_err());
    }

    fn bounds() -> Args {
        parse(&args("--nodes node1=10.0.0.11,node2=10.0.0.12")).expect("good arguments")
    }

    /// A viewer that has received `audio` and `video` packets (its highest sequence numbers
    /// the same: nothing lost that it could see) and `frames` frames.
    fn viewer(id: usize, audio: u64, video: u64, frames: u64) -> ViewerSnap {
        let now = Instant::now();
        let counts = crate::peer::Counts {
            packets: [audio, video],
            top_seq: [audio, video],
            frames,
            ..Default::default()
        };
        ViewerSnap {
            id,
            cohort: 0,
            join_began: now,
            signalled: Some(now),
            connected: Some(now),
            first_rtp: Some(now),
            sdp_work: Duration::ZERO,
            twcc: Some(true),
            counts,
            thin: None,
            limited: false,
        }
    }

    /// The failures of a node of 10 viewers over a 10 s window of a 30 fps feed whose
    /// publisher sent 1,000 video packets, each viewer receiving `audio`, `video` and
    /// `frames` of it, the node's latency samples `samples`.
    fn failures(audio: u64, video: u64, frames: u64, samples: usize) -> Vec<String> {
        failures_with_gap(audio, video, frames, samples, Duration::from_millis(60))
    }

    /// `failures`, each viewer's longest gap in its video `gap`.
    fn failures_with_gap(
        audio: u64,
        video: u64,
        frames: u64,
        samples: usize,
        gap: Duration,
    ) -> Vec<String> {
        let node = Node {
            node: "node2".into(),
            n: 10,
            group: Group::start("test".into(), Arc::new(SendLog::default())),
            clients: vec![],
            errors: vec![],
            misplaced: vec![],
        };
        let w = Window {
            before: (0..10).map(|id| viewer(id, 100, 300, 90)).collect(),
            after: (0..10)
                .map(|id| viewer(id, 100 + audio, 300 + video, 90 + frames))
                .collect(),
            latency: vec![3.0; samples],
            gaps: vec![gap; 10],
            video_sent: 1000,
            secs: 10.0,
        };
        let f = Figures::of(&node, &w).failures(&bounds(), 30.0);
        node.group.clear();
        f
    }

    /// The broadcast fails a node whose viewers get audio but no video (a relay that carries
    /// the audio only: their own sequence numbers show no loss), or whose video stalls half
    /// the window; it passes one whose viewers get what the publisher sent.
    #[test]
    fn a_node_without_video_or_with_stalled_video_fails() {
        assert_eq!(failures(500, 1000, 300, 3000), Vec::<String>::new());
        assert_eq!(failures(500, 990, 297, 2900), Vec::<String>::new());
        let none = failures(500, 0, 0, 0).join("\n");
        assert!(none.contains("10 of 10 viewers got no video"), "{none}");
        assert!(none.contains("fps p50 0.0 under 80 %"), "{none}");
        assert!(none.contains("0 latency samples"), "{none}");
        let stalled = failures(500, 500, 150, 1500).join("\n");
        assert!(
            stalled.contains("10 viewers got less than 95 %"),
            "{stalled}"
        );
        assert!(stalled.contains("(least 50.0 %)"), "{stalled}");
        assert!(stalled.contains("fps p50 15.0"), "{stalled}");
        // 940 of 1000: a stall of 0.6 s; fps and latency samples within their bounds.
        let short = failures(500, 940, 290, 2900).join("\n");
        assert!(short.contains("10 viewers got less than 95 %"), "{short}");
        // A 0.6 s stop that the window's totals do not show (the relay sent what it held
        // back after it): the gap fails it; 0.5 s passes.
        let stopped = failures_with_gap(500, 1000, 300, 3000, Duration::from_millis(600));
        assert_eq!(
            stopped,
            vec!["10 viewers went without video for longer than 500 ms (longest 600 ms)"]
        );
        let brief = failures_with_gap(500, 1000, 300, 3000, Duration::from_millis(500));
        assert_eq!(brief, Vec::<String>::new());
    }

    /// With `--nodes`, an answer is placed on a node when one of its candidates carries the
    /// node's address and none another node's.
    #[test]
    fn an_answer_is_placed_by_its_candidates() {
        let a = bounds();
        let sdp = |ip: &str| {
            format!("v=0\r\na=mid:0\r\na=candidate:1 1 udp 2113937151 {ip} 40000 typ host\r\n")
        };
        assert!(placed_on(&a, "node2", &sdp("10.0.0.12")).is_ok());
        let wrong = placed_on(&a, "node2", &sdp("10.0.0.11")).unwrap_err();
        assert!(wrong.contains("not node2's (10.0.0.12)"), "{wrong}");
        assert!(placed_on(&a, "node2", "v=0\r\n").is_err());
        let both = format!("{}{}", sdp("10.0.0.12"), sdp("10.0.0.11"));
        assert!(placed_on(&a, "node2", &both).is_err());
        // A node --nodes does not name is not checked.
        assert!(placed_on(&a, "node3", &sdp("10.0.0.11")).is_ok());
    }
}
