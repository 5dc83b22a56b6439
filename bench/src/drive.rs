//! One measured run: a server, its publisher, N viewers joining at once, a warm-up, a
//! measured window, then the join storm (more viewers joining while the N watch, the
//! latency of the N's packets measured meanwhile), everyone leaving, and the server's CPU
//! once they have left.

use crate::feed::Feed;
use crate::janus::Janus;
use crate::link::Limit;
use crate::pacing::Pacing;
use crate::peer::{
    sdp_has_twcc, Group, GroupAdder, Latencies, Mode, Publisher, PublisherHandle, SendLog, Viewer,
    ViewerSnap, ViewerSpec,
};
use crate::server::{Kind, ProcSample, Server};
use crate::thin::ThinStats;
use fluo_testkit::live::Client;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::media::Direction;

/// Timing of a run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub warmup: Duration,
    pub window: Duration,
    /// Viewers joining concurrently at most (one signalling connection each).
    pub join_concurrency: usize,
    pub groups: usize,
    pub server_cpu: Option<usize>,
    /// Viewers that join while the run's viewers watch, after the window (0: none).
    pub storm: usize,
    /// Each viewer drops one video packet in this many on arrival (0: none), so that the
    /// loss measured after NACK repair shows the repair working.
    pub drop_every: u32,
    /// A share of the viewers behind virtual links (`--limit`).
    pub limit: Option<Limit>,
    /// How the publisher paces its video (`--pacing`; none: each frame at once).
    pub pacing: Option<Pacing>,
    /// Latency of every video packet by its place in its frame, and by viewers' join
    /// order (`--latency-detail`).
    pub latency_detail: bool,
    /// The rate of the stream an unlimited viewer gets, payload bits/s (the feed's video and
    /// audio): the smoke asks at least half of it as such a viewer's estimate.
    pub stream_bps: u64,
}

/// The figures of one group of viewers: those behind a virtual link, or the others.
#[derive(Debug, Clone, Default)]
pub struct LinkGroup {
    pub viewers: usize,
    pub expected: u64,
    pub lost: u64,
    pub fps: Vec<f64>,
    pub latency_ms: Vec<f64>,
    /// Datagrams their links dropped in the window.
    pub link_dropped: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub viewers: usize,
    /// Viewers that received media.
    pub joined: usize,
    pub join_ms: Vec<f64>,
    /// The parts of a join: signalling (until the answer is applied), then ICE + DTLS, then
    /// the first RTP packet.
    pub join_signalling_ms: Vec<f64>,
    pub join_connect_ms: Vec<f64>,
    pub join_media_ms: Vec<f64>,
    /// The tool's SDP work inside each join's clock (making or applying the answer).
    pub join_tool_sdp_ms: Vec<f64>,
    /// Viewers with media whose negotiated answer maps TWCC.
    pub viewers_with_twcc: usize,
    /// Signalling connections open before the first join's clock started, and those the
    /// tool had to open while viewers were joining (none, when the pool was large enough).
    pub signalling_connections: u64,
    pub connections_opened_in_joins: u64,
    pub latency_ms: Vec<f64>,
    pub server_cpu_secs: f64,
    pub window_secs: f64,
    pub packets: u64,
    /// Packets received per kind [audio, video].
    pub packets_by_kind: [u64; 2],
    /// Packets the sequence numbers say were sent, per kind.
    pub expected_by_kind: [u64; 2],
    pub expected: u64,
    pub lost: u64,
    pub published: u64,
    pub fps: Vec<f64>,
    pub rss_base_kib: u64,
    pub rss_kib: u64,
    pub threads: u64,
    pub tool_cpu_secs: f64,
    /// CPU of the viewers' threads alone (not the publisher's or the signalling's).
    pub viewer_threads_cpu_secs: f64,
    /// Server CPU, % of one core, from 2 s to 5 s after everyone left.
    pub idle_cpu_pct: f64,
    pub errors: Vec<String>,
    /// Datagrams the kernel dropped in the window for a full receive buffer: on the server's
    /// sockets, and on the tool's (all others in the namespace).
    pub udp_drops_server: u64,
    pub udp_drops_tool: u64,
    /// The viewers' implementation.
    pub viewer: Option<Mode>,
    /// The thin path's counters over the window, summed over the viewers.
    pub thin: Option<ThinStats>,
    /// str0m timer runs per viewer and second in the window.
    pub ticks_per_viewer_sec: f64,
    /// Video packets the viewers dropped on purpose in the window.
    pub dropped_on_purpose: u64,
    /// What the server reports of one viewer (Fluo: getStats of its WebRtcEndpoint).
    pub server_view: Option<Value>,
    /// The same of the first viewer behind a virtual link (`--limit`).
    pub limited_server_view: Option<Value>,
    pub storm: Option<Storm>,
    /// With `--limit`: [not limited, limited].
    pub by_link: Option<[LinkGroup; 2]>,
    /// With `--latency-detail`: latency by place in the frame and by join order.
    pub latency_detail: Option<Value>,
}

/// The join storm: `joiners` viewers joining at once while the run's viewers watch.
#[derive(Debug, Clone, Default)]
pub struct Storm {
    pub joiners: usize,
    pub joined: usize,
    pub join_ms: Vec<f64>,
    /// From the first join's clock until every joiner had media (or 15 s).
    pub secs: f64,
    /// Latencies of the packets of the viewers that were already in, meanwhile.
    pub latency_ms: Vec<f64>,
    /// Their packets expected and lost meanwhile.
    pub expected: u64,
    pub lost: u64,
    pub connections_opened_in_joins: u64,
}

/// The signalling of one server: publisher in, viewers in, everyone out.
enum Signal {
    Fluo {
        rt: tokio::runtime::Runtime,
        port: u16,
        client: Box<Client>,
        pipeline: String,
        publisher: String,
        viewers: Vec<String>,
        /// The viewers' signalling connections, open until everyone leaves.
        clients: Vec<Client>,
        /// The endpoints of viewers behind a virtual link, with the connection (in
        /// `clients`) that made each.
        limited: Vec<(String, usize)>,
        /// The first viewer not behind a link, and its connection.
        free: Option<(String, usize)>,
    },
    Janus {
        janus: Arc<Janus>,
        publisher_handle: u64,
        feed: u64,
        viewers: Vec<u64>,
        /// Whether the viewers accept the TWCC that Janus offers.
        twcc: bool,
    },
}

fn first_error<T>(errors: &mut Vec<String>, r: Result<T, String>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            if errors.len() < 20 {
                errors.push(e);
            }
            None
        }
    }
}

impl Signal {
    fn publish(kind: Kind, port: u16, p: &mut Publisher) -> Result<Signal, String> {
        let offer = p.offer()?;
        if kind.is_janus() {
            let janus = Janus::connect(port)?;
            let h = janus.attach()?;
            let (feed, answer) = janus.publish(h, &offer)?;
            p.session.accept_answer(&answer)?;
            return Ok(Signal::Janus {
                janus: Arc::new(janus),
                publisher_handle: h,
                feed,
                viewers: vec![],
                twcc: kind.viewers_accept_twcc() == Some(true),
            });
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (client, pipeline, publisher, answer) = rt.block_on(async {
            let (mut c, pipe, ep) = Client::with_endpoint(port).await?;
            let answer = c
                .invoke(&ep, "processOffer", json!({ "offer": offer }))
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((c, pipe, ep, answer))
        })?;
        p.session
            .accept_answer(answer.as_str().unwrap_or_default())?;
        Ok(Signal::Fluo {
            rt,
            port,
            client: Box::new(client),
            pipeline,
            publisher,
            viewers: vec![],
            clients: vec![],
            limited: vec![],
            free: None,
        })
    }

    /// Makes `n` viewers of `spec` (numbered from `first_id`) and the signalling connections
    /// for joining them `conc` at a time: everything a join needs before its clock starts.
    ///
    /// The same for both servers: `conc` signalling connections (Fluo: WebSockets; Janus:
    /// persistent HTTP/1.1 connections, plus the session's long poll) and the viewers' peers
    /// (str0m sessions with their DTLS certificates, and for Fluo their offers) are made
    /// before any clock starts: a join measures the server, not the tool. A viewer's clock
    /// starts when its first request is about to be written (`take_spare`) and stops when
    /// it has read its first RTP packet.
    fn prepare(
        &mut self,
        n: usize,
        conc: usize,
        spec: ViewerSpec,
        first_id: usize,
        errors: &mut Vec<String>,
    ) -> Prepared {
        let conc = conc.clamp(1, n.max(1));
        let (fluo, twcc) = match self {
            Signal::Fluo { .. } => (true, true),
            Signal::Janus { twcc, .. } => (false, *twcc),
        };
        let spec = ViewerSpec { twcc, ..spec };
        let mut made = Vec::with_capacity(n);
        for id in first_id..first_id + n {
            let spare = Viewer::new(Instant::now(), id, spec).and_then(|mut v| {
                let offer = if fluo {
                    Some(v.session.offer(Direction::RecvOnly)?)
                } else {
                    None
                };
                Ok((v, offer))
            });
            made.extend(first_error(errors, spare));
        }
        let mut p = Prepared {
            spares: Mutex::new(made),
            n,
            conc,
            conns: vec![],
            open_before: 0,
        };
        match self {
            Signal::Janus { janus, .. } => {
                if let Err(e) = janus.open_pool(conc) {
                    errors.push(e);
                }
                p.open_before = janus.connections_opened();
            }
            Signal::Fluo {
                rt, port, clients, ..
            } => {
                let port = *port;
                let conns = rt.block_on(futures_util::future::join_all(
                    (0..conc).map(|_| Client::connect(port)),
                ));
                for c in conns {
                    p.conns.extend(first_error(errors, c));
                }
                // The publisher's connection, those of earlier joins, and these.
                p.open_before = (1 + clients.len() + p.conns.len()) as u64;
            }
        }
        p
    }

    /// Joins the viewers of `p`, `p.conc` at a time, handing each to a group as soon as it
    /// is set up; returns the signalling connections opened while viewers were joining
    /// (none, when the prepared ones were enough).
    fn join(&mut self, p: Prepared, adders: &[GroupAdder], errors: &mut Vec<String>) -> u64 {
        let Prepared {
            spares,
            n,
            conc,
            conns,
            open_before,
        } = p;
        let spares = &spares;
        match self {
            Signal::Janus {
                janus,
                feed,
                viewers,
                ..
            } => {
                let results: Vec<Vec<Result<u64, String>>> = std::thread::scope(|s| {
                    let hs: Vec<_> = (0..conc)
                        .map(|w| {
                            let janus = janus.clone();
                            let (feed, adders) = (*feed, adders);
                            s.spawn(move || {
                                (w..n)
                                    .step_by(conc)
                                    .map(|i| {
                                        join_janus(&janus, feed, spares, &adders[i % adders.len()])
                                    })
                                    .collect()
                            })
                        })
                        .collect();
                    hs.into_iter()
                        .map(|h| h.join().unwrap_or_default())
                        .collect()
                });
                for r in results.into_iter().flatten() {
                    viewers.extend(first_error(errors, r));
                }
                janus.connections_opened() - open_before
            }
            Signal::Fluo {
                rt,
                pipeline,
                publisher,
                viewers,
                clients,
                limited,
                free,
                ..
            } => {
                let (pipeline, publisher) = (pipeline.clone(), publisher.clone());
                let conc = conns.len();
                if conc == 0 {
                    errors.push("no signalling connection to join over".into());
                    return 0;
                }
                let results = rt.block_on(async {
                    let tasks = conns.into_iter().enumerate().map(|(w, mut c)| {
                        let (pipeline, publisher) = (pipeline.clone(), publisher.clone());
                        async move {
                            let mut out = vec![];
                            for i in (w..n).step_by(conc) {
                                let a = &adders[i % adders.len()];
                                let r = join_fluo(&mut c, &pipeline, &publisher, spares, a);
                                out.push(r.await.map(|(ep, _, lim)| (ep, lim)));
                            }
                            (c, out)
                        }
                    });
                    futures_util::future::join_all(tasks).await
                });
                for (c, rs) in results {
                    clients.push(c);
                    for (ep, lim) in rs.into_iter().filter_map(|r| first_error(errors, r)) {
                        let here = (ep.clone(), clients.len() - 1);
                        if lim {
                            limited.push(here);
                        } else if free.is_none() {
                            *free = Some(here);
                        }
                        viewers.push(ep);
                    }
                }
                0
            }
        }
    }

    /// What the server itself reports of the first viewer: Fluo's getStats of its
    /// WebRtcEndpoint (video sent), the figures that come from the viewer's RTCP; with
    /// `limited`, of the first viewer behind a virtual link.
    fn server_view(&mut self, limited: bool) -> Option<Value> {
        let Signal::Fluo {
            rt,
            viewers,
            clients,
            limited: behind,
            free,
            ..
        } = self
        else {
            return None;
        };
        // The endpoint, on the connection that created it.
        let (ep, at) = match (limited, free) {
            (true, _) => behind.first()?.clone(),
            (false, Some(f)) => f.clone(),
            (false, None) => (viewers.first()?.clone(), 0),
        };
        let client = clients.get_mut(at)?;
        let stats = rt
            .block_on(client.invoke(&ep, "getStats", json!({"mediaType": "VIDEO"})))
            .ok()?;
        let out = stats
            .as_object()?
            .values()
            .find(|v| v["type"] == "outboundrtp")?;
        Some(json!({
            "round_trip_ms": out["roundTripTime"].as_f64().map(|s| s * 1e3),
            "nacks": out["nackCount"],
            "plis": out["pliCount"],
            "packets_lost_reported": out["packetsLost"],
            "packets_sent": out["packetsSent"],
            // `--bwe on`: the estimate from the viewer's TWCC feedback.
            "bandwidth_estimate_bps": out["fluoBandwidthEstimate"],
            "layer": out["fluoLayer"],
        }))
    }

    /// Every viewer leaves, then the publisher.
    fn leave(self, errors: &mut Vec<String>) {
        match self {
            Signal::Janus {
                janus,
                publisher_handle,
                viewers,
                ..
            } => {
                let conc = 32.min(viewers.len().max(1));
                let res: Vec<Result<(), String>> = std::thread::scope(|s| {
                    let hs: Vec<_> = viewers
                        .chunks(viewers.len().div_ceil(conc).max(1))
                        .map(|chunk| {
                            let janus = janus.clone();
                            s.spawn(move || {
                                chunk.iter().map(|h| janus.detach(*h)).collect::<Vec<_>>()
                            })
                        })
                        .collect();
                    hs.into_iter()
                        .flat_map(|h| h.join().unwrap_or_default())
                        .collect()
                });
                for r in res {
                    first_error(errors, r);
                }
                first_error(errors, janus.detach(publisher_handle));
            }
            Signal::Fluo {
                rt,
                mut client,
                pipeline,
                viewers,
                clients,
                ..
            } => {
                let res = rt.block_on(async {
                    let conc = clients.len().max(1);
                    let per = viewers.len().div_ceil(conc).max(1);
                    let tasks = clients
                        .into_iter()
                        .zip(
                            viewers
                                .chunks(per)
                                .map(<[String]>::to_vec)
                                .chain(std::iter::repeat(vec![])),
                        )
                        .map(|(mut c, eps)| async move {
                            let mut out = vec![];
                            for ep in eps {
                                out.push(release(&mut c, &ep).await);
                            }
                            out
                        });
                    let mut all: Vec<Result<(), String>> = futures_util::future::join_all(tasks)
                        .await
                        .into_iter()
                        .flatten()
                        .collect();
                    all.push(release(&mut client, &pipeline).await);
                    all
                });
                for r in res {
                    first_error(errors, r);
                }
            }
        }
    }
}

pub(crate) async fn release(c: &mut Client, object: &str) -> Result<(), String> {
    let r = c.request("release", json!({ "object": object })).await?;
    match r.get("error") {
        Some(e) => Err(format!("release: {e}")),
        None => Ok(()),
    }
}

pub(crate) type Spares = Mutex<Vec<(Viewer, Option<String>)>>;

/// Viewers and signalling connections made before the joins' clocks start.
struct Prepared {
    spares: Spares,
    n: usize,
    conc: usize,
    /// Fluo: the WebSockets the joins go over.
    conns: Vec<Client>,
    /// Signalling connections open before the first clock.
    open_before: u64,
}

/// A viewer made beforehand, its join starting now.
fn take_spare(spares: &Spares) -> Result<(Viewer, Option<String>), String> {
    let (mut v, offer) = spares
        .lock()
        .expect("spares")
        .pop()
        .ok_or("no spare viewer")?;
    v.join_began = Instant::now();
    Ok((v, offer))
}

/// A spare viewer joined: its endpoint made in `pipeline`, `publisher` connected to it, its
/// offer processed; the endpoint's id and the answer.
pub(crate) async fn join_fluo(
    c: &mut Client,
    pipeline: &str,
    publisher: &str,
    spares: &Spares,
    adder: &GroupAdder,
) -> Result<(String, String, bool), String> {
    let (mut v, offer) = take_spare(spares)?;
    let offer = offer.ok_or("no offer")?;
    let ep = c
        .create("WebRtcEndpoint", json!({ "mediaPipeline": pipeline }))
        .await?;
    let err = |e: Value| format!("{e}");
    c.invoke(publisher, "connect", json!({ "sink": ep }))
        .await
        .map_err(err)?;
    let answer = c
        .invoke(&ep, "processOffer", json!({ "offer": offer }))
        .await
        .map_err(err)?;
    let answer = answer.as_str().unwrap_or_default();
    let t = Instant::now();
    v.accept_answer(answer)?;
    v.sdp_work = t.elapsed();
    v.twcc = Some(sdp_has_twcc(answer));
    let limited = v.limited();
    adder.add(v);
    Ok((ep, answer.to_string(), limited))
}

fn join_janus(
    janus: &Janus,
    feed: u64,
    spares: &Spares,
    adder: &GroupAdder,
) -> Result<u64, String> {
    let (mut v, _) = take_spare(spares)?;
    let h = janus.attach()?;
    let offer = janus.subscribe(h, feed)?;
    let t = Instant::now();
    let answer = v.answer(&offer)?;
    v.sdp_work = t.elapsed();
    v.twcc = Some(sdp_has_twcc(&answer));
    janus.start(h, &answer)?;
    adder.add(v);
    Ok(h)
}

pub(crate) fn collect(groups: &[Group]) -> (Vec<ViewerSnap>, Latencies) {
    let mut snaps = vec![];
    let mut lat: Latencies = Default::default();
    for g in groups {
        let (s, l) = g.snapshot();
        snaps.extend(s);
        for (all, more) in lat.iter_mut().zip(l) {
            all.extend(more);
        }
    }
    (snaps, lat)
}

/// Runs `n` viewers of `mode` against a fresh `kind` server.
pub fn run(
    kind: Kind,
    mode: Mode,
    n: usize,
    plan: &Plan,
    feed: &Arc<Feed>,
    fluo_bin: &Path,
    tmp: &Path,
) -> Result<Outcome, String> {
    let server = Server::start(kind, fluo_bin, plan.server_cpu, tmp)?;
    let r = run_on(&server, mode, n, plan, feed);
    server.stop();
    r
}

/// Waits until every viewer of `cohort` that joined has media, at most 15 s; returns the
/// latencies the groups gave meanwhile.
pub(crate) fn wait_for_media(groups: &[Group], cohort: u8) -> Vec<f32> {
    let t = Instant::now();
    let mut lat = vec![];
    loop {
        let (snaps, l) = collect(groups);
        lat.extend(l.concat());
        let mine = snaps.iter().filter(|s| s.cohort == cohort);
        let (all, with_media) = mine.fold((0, 0), |(a, m), s| {
            (a + 1, m + usize::from(s.first_rtp.is_some()))
        });
        if with_media >= all || t.elapsed() > Duration::from_secs(15) {
            return lat;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Packets expected and received between two snapshots, per kind, over the viewers of
/// cohort 0 that had media at the first. Expected is from each viewer's own highest sequence
/// number: a kind that never arrives, or stops arriving, is not counted as lost (callers
/// that must see that check what was received against what was sent, as `fluo-bench
/// cluster` does).
pub(crate) fn delivered(
    a: &[ViewerSnap],
    b: &[ViewerSnap],
) -> ([u64; 2], [u64; 2], Vec<(u64, usize)>) {
    delivered_of(a, b, |_| true)
}

/// [`delivered`] over the viewers `keep` picks.
fn delivered_of(
    a: &[ViewerSnap],
    b: &[ViewerSnap],
    keep: impl Fn(&ViewerSnap) -> bool,
) -> ([u64; 2], [u64; 2], Vec<(u64, usize)>) {
    let before: HashMap<usize, &ViewerSnap> = a.iter().map(|s| (s.id, s)).collect();
    let (mut got, mut expected, mut frames) = ([0; 2], [0; 2], vec![]);
    for y in b.iter().filter(|s| s.cohort == 0 && keep(s)) {
        let Some(x) = before.get(&y.id).filter(|x| x.first_rtp.is_some()) else {
            continue;
        };
        for k in 0..2 {
            got[k] += y.counts.packets[k] - x.counts.packets[k];
            expected[k] += y.counts.top_seq[k].saturating_sub(x.counts.top_seq[k]);
        }
        frames.push((y.counts.frames - x.counts.frames, y.id));
    }
    (got, expected, frames)
}

pub(crate) fn thin_delta(a: &[ViewerSnap], b: &[ViewerSnap]) -> Option<ThinStats> {
    let before: HashMap<usize, ThinStats> =
        a.iter().filter_map(|s| Some((s.id, s.thin?))).collect();
    let mut sum = ThinStats::default();
    let mut any = false;
    for y in b {
        let (Some(t), Some(x)) = (y.thin, before.get(&y.id)) else {
            continue;
        };
        any = true;
        sum.decrypt_failures += t.decrypt_failures - x.decrypt_failures;
        sum.unknown += t.unknown - x.unknown;
        sum.padding += t.padding - x.padding;
        sum.duplicates += t.duplicates - x.duplicates;
        sum.repaired += t.repaired - x.repaired;
        sum.dropped += t.dropped - x.dropped;
        sum.rtcp_sent += t.rtcp_sent - x.rtcp_sent;
        sum.rtcp_received += t.rtcp_received - x.rtcp_received;
        sum.receiver_reports += t.receiver_reports - x.receiver_reports;
        sum.nacked += t.nacked - x.nacked;
        sum.plis += t.plis - x.plis;
        sum.sender_reports += t.sender_reports - x.sender_reports;
        sum.twcc_feedback += t.twcc_feedback - x.twcc_feedback;
        sum.twcc_reported += t.twcc_reported - x.twcc_reported;
    }
    any.then_some(sum)
}

fn run_on(
    server: &Server,
    mode: Mode,
    n: usize,
    plan: &Plan,
    feed: &Arc<Feed>,
) -> Result<Outcome, String> {
    let mut out = Outcome {
        viewers: n,
        viewer: Some(mode),
        ..Default::default()
    };
    let log = Arc::new(if plan.latency_detail {
        SendLog::with_detail()
    } else {
        SendLog::default()
    });
    let mut publisher = Publisher::of(feed)?.paced(plan.pacing);
    let signal = Signal::publish(server.kind, server.port, &mut publisher)?;
    let publisher: PublisherHandle = publisher.start(feed.clone(), log.clone());
    let t0 = Instant::now();
    while !publisher
        .connected
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        if t0.elapsed() > Duration::from_secs(10) {
            publisher.stop();
            return Err(format!(
                "{}: the publisher did not connect",
                server.kind.name()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs(1));
    out.rss_base_kib = server.sample().rss_kib;

    let groups: Vec<Group> = (0..plan.groups.max(1))
        .map(|i| Group::start(format!("viewers-{i}"), log.clone()))
        .collect();
    let adders: Vec<GroupAdder> = groups.iter().map(Group::adder).collect();
    let mut signal = signal;
    let spec = ViewerSpec {
        mode,
        twcc: true,
        cohort: 0,
        drop_every: plan.drop_every,
        limit: plan.limit,
    };
    let prepared = signal.prepare(n, plan.join_concurrency, spec, 0, &mut out.errors);
    out.signalling_connections = prepared.open_before;
    out.connections_opened_in_joins = signal.join(prepared, &adders, &mut out.errors);
    let _ = wait_for_media(&groups, 0);
    std::thread::sleep(plan.warmup);

    let (a, _) = collect(&groups);
    // The warm-up's samples by place (`--latency-detail`): dropped after the window.
    let warmup_detail = log.take_detail();
    let viewer_ticks_a = crate::server::own_threads_cpu_ticks("viewers-");
    let drops_a = crate::server::udp_drops(server.pid);
    let (sa, ta, pa) = (
        server.sample(),
        ProcSample::read(std::process::id()),
        publisher.sent(),
    );
    std::thread::sleep(plan.window);
    let (b, lat) = collect(&groups);
    // Its figures are worked out after the window's closing samples below, so that their
    // time (tens of ms for 500 viewers) is not counted in the window's length and CPU.
    let detail = log.take_detail();
    let viewer_ticks =
        crate::server::own_threads_cpu_ticks("viewers-").saturating_sub(viewer_ticks_a);
    out.viewer_threads_cpu_secs = viewer_ticks as f64 / crate::sys::clock_ticks();
    let drops_b = crate::server::udp_drops(server.pid);
    out.udp_drops_server = drops_b.0.saturating_sub(drops_a.0);
    out.udp_drops_tool = (drops_b.1 - drops_b.0).saturating_sub(drops_a.1 - drops_a.0);
    let (sb, tb, pb) = (
        server.sample(),
        ProcSample::read(std::process::id()),
        publisher.sent(),
    );

    if plan.latency_detail {
        let rounds = plan.join_concurrency.max(1);
        out.latency_detail = Some(crate::report::latency_detail(
            &detail,
            &by_viewer_mean(&a, &b),
            rounds,
        ));
    }
    drop((warmup_detail, detail));
    out.window_secs = sb.wall_secs_since(&sa);
    out.server_cpu_secs = sb.cpu_secs_since(&sa);
    out.tool_cpu_secs = tb.cpu_secs_since(&ta);
    out.rss_kib = sb.rss_kib;
    out.threads = sb.threads;
    out.published = pb - pa;
    out.latency_ms = lat.iter().flatten().map(|x| f64::from(*x)).collect();
    let ms = |a: Instant, b: Option<Instant>| {
        b.map(|b| b.saturating_duration_since(a).as_secs_f64() * 1e3)
    };
    for s in &b {
        if let Some(f) = s.first_rtp {
            out.joined += 1;
            out.join_ms
                .push(ms(s.join_began, Some(f)).unwrap_or_default());
            out.join_signalling_ms.extend(ms(s.join_began, s.signalled));
            out.join_connect_ms
                .extend(s.signalled.and_then(|x| ms(x, s.connected)));
            out.join_media_ms
                .extend(s.connected.and_then(|x| ms(x, Some(f))));
            out.join_tool_sdp_ms.push(s.sdp_work.as_secs_f64() * 1e3);
            out.viewers_with_twcc += usize::from(s.twcc == Some(true));
        }
    }
    let (got, expected, frames) = delivered(&a, &b);
    out.packets_by_kind = got;
    out.expected_by_kind = expected;
    for (g, e) in got.iter().zip(&expected) {
        out.packets += g;
        out.expected += e;
        out.lost += e.saturating_sub(*g);
    }
    out.fps = frames
        .iter()
        .map(|(f, _)| *f as f64 / out.window_secs.max(1e-3))
        .collect();
    out.thin = thin_delta(&a, &b);
    if plan.limit.is_some() {
        out.by_link = Some([false, true].map(|l| link_group(&a, &b, &lat, l, out.window_secs)));
    }
    let before: HashMap<usize, &ViewerSnap> = a.iter().map(|s| (s.id, s)).collect();
    let (mut ticks, mut with) = (0, 0);
    for y in &b {
        if let Some(x) = before.get(&y.id) {
            ticks += y.counts.ticks - x.counts.ticks;
            out.dropped_on_purpose += y.counts.dropped - x.counts.dropped;
            with += 1;
        }
    }
    out.ticks_per_viewer_sec = ticks as f64 / f64::from(with.max(1)) / out.window_secs.max(1e-3);
    if let Some(t) = out.thin {
        out.dropped_on_purpose += t.dropped;
    }
    out.server_view = signal.server_view(false);
    if plan.limit.is_some() {
        out.limited_server_view = signal.server_view(true);
    }

    if plan.storm > 0 {
        out.storm = Some(storm(
            &mut signal,
            &groups,
            &adders,
            mode,
            n,
            plan,
            &mut out.errors,
        ));
    }

    signal.leave(&mut out.errors);
    for g in &groups {
        g.clear();
    }
    drop(groups);
    publisher.stop();
    std::thread::sleep(Duration::from_secs(2));
    let i0 = server.sample();
    std::thread::sleep(Duration::from_secs(3));
    let i1 = server.sample();
    out.idle_cpu_pct = 100.0 * i1.cpu_secs_since(&i0) / i1.wall_secs_since(&i0).max(1e-3);
    Ok(out)
}

/// Each viewer of cohort 0's mean latency (frames' last packets) between two snapshots, by
/// viewer id.
fn by_viewer_mean(a: &[ViewerSnap], b: &[ViewerSnap]) -> Vec<(usize, f64)> {
    let before: HashMap<usize, &ViewerSnap> = a.iter().map(|s| (s.id, s)).collect();
    b.iter()
        .filter(|y| y.cohort == 0)
        .filter_map(|y| {
            let x = before.get(&y.id)?;
            let n = y.counts.latency_samples - x.counts.latency_samples;
            let sum = y.counts.latency_ms_sum - x.counts.latency_ms_sum;
            (n > 0).then(|| (y.id, sum / n as f64))
        })
        .collect()
}

/// `plan.storm` more viewers join at once while the `n` of the run watch: how long their
/// joins take, and the latency and loss of the packets of those already in meanwhile.
fn storm(
    signal: &mut Signal,
    groups: &[Group],
    adders: &[GroupAdder],
    mode: Mode,
    n: usize,
    plan: &Plan,
    errors: &mut Vec<String>,
) -> Storm {
    let spec = ViewerSpec {
        mode,
        twcc: true,
        cohort: 1,
        drop_every: plan.drop_every,
        limit: plan.limit,
    };
    let prepared = signal.prepare(plan.storm, plan.join_concurrency, spec, n, errors);
    // The latencies so far are not the storm's.
    let (a, _) = collect(groups);
    let t = Instant::now();
    let opened = signal.join(prepared, adders, errors);
    let mut lat = wait_for_media(groups, 1);
    let secs = t.elapsed().as_secs_f64();
    let (b, l) = collect(groups);
    lat.extend(l.concat());
    let (got, expected, _) = delivered(&a, &b);
    let mut s = Storm {
        joiners: plan.storm,
        secs,
        latency_ms: lat.iter().map(|x| f64::from(*x)).collect(),
        expected: expected[0] + expected[1],
        connections_opened_in_joins: opened,
        ..Default::default()
    };
    s.lost = s.expected.saturating_sub(got[0] + got[1]);
    for v in b.iter().filter(|v| v.cohort == 1) {
        if let Some(f) = v.first_rtp {
            s.joined += 1;
            s.join_ms
                .push(f.saturating_duration_since(v.join_began).as_secs_f64() * 1e3);
        }
    }
    s
}

/// The figures of the viewers behind a virtual link (`limited`) or of the others, between
/// the snapshots `a` and `b`.
fn link_group(
    a: &[ViewerSnap],
    b: &[ViewerSnap],
    lat: &Latencies,
    limited: bool,
    secs: f64,
) -> LinkGroup {
    let (got, expected, frames) = delivered_of(a, b, |s| s.limited == limited);
    let before: HashMap<usize, &ViewerSnap> = a.iter().map(|s| (s.id, s)).collect();
    let link_dropped = b
        .iter()
        .filter(|s| s.cohort == 0 && s.limited == limited)
        .filter_map(|y| Some(y.counts.link_dropped - before.get(&y.id)?.counts.link_dropped))
        .sum();
    let expected_all = expected[0] + expected[1];
    LinkGroup {
        viewers: frames.len(),
        expected: expected_all,
        lost: expected_all.saturating_sub(got[0] + got[1]),
        fps: frames
            .iter()
            .map(|(f, _)| *f as f64 / secs.max(1e-3))
            .collect(),
        latency_ms: lat[usize::from(limited)]
            .iter()
            .map(|x| f64::from(*x))
            .collect(),
        link_dropped,
    }
}
