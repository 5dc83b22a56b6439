//! One measured run: a server, its publisher, N viewers joining at once, a warm-up, a
//! measured window, everyone leaving, and the server's CPU once they have left.

use crate::feed::Feed;
use crate::janus::Janus;
use crate::peer::{
    sdp_has_twcc, Group, GroupAdder, Publisher, PublisherHandle, SendLog, Viewer, ViewerSnap,
};
use crate::server::{Kind, ProcSample, Server};
use fluo_testkit::live::Client;
use serde_json::{json, Value};
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
    /// Server CPU, % of one core, from 2 s to 5 s after everyone left.
    pub idle_cpu_pct: f64,
    pub errors: Vec<String>,
    /// Datagrams the kernel dropped in the window for a full receive buffer: on the server's
    /// sockets, and on the tool's (all others in the namespace).
    pub udp_drops_server: u64,
    pub udp_drops_tool: u64,
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
        let offer = p.session.offer(Direction::SendOnly)?;
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
                twcc: kind.viewers_accept_twcc(),
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
        })
    }

    /// Joins `n` viewers, `conc` at a time, handing each to a group as soon as it is set up;
    /// returns (signalling connections open before the first clock started, connections
    /// opened while viewers were joining).
    ///
    /// The same for both servers: `conc` signalling connections (Fluo: WebSockets; Janus:
    /// persistent HTTP/1.1 connections, plus the session's long poll) and the viewers' peers
    /// (str0m sessions with their DTLS certificates, and for Fluo their offers) are made
    /// before any clock starts: a join measures the server, not the tool. A viewer's clock
    /// starts when its first request is about to be written (`take_spare`) and stops when
    /// it has read its first RTP packet.
    fn join(
        &mut self,
        n: usize,
        conc: usize,
        adders: &[GroupAdder],
        errors: &mut Vec<String>,
    ) -> (u64, u64) {
        let conc = conc.clamp(1, n.max(1));
        let (fluo, twcc) = match self {
            Signal::Fluo { .. } => (true, true),
            Signal::Janus { twcc, .. } => (false, *twcc),
        };
        let mut made = Vec::with_capacity(n);
        for _ in 0..n {
            let spare = Viewer::new(Instant::now(), twcc).and_then(|mut v| {
                let offer = if fluo {
                    Some(v.session.offer(Direction::RecvOnly)?)
                } else {
                    None
                };
                Ok((v, offer))
            });
            made.extend(first_error(errors, spare));
        }
        let spares = Mutex::new(made);
        let spares = &spares;
        match self {
            Signal::Janus {
                janus,
                feed,
                viewers,
                ..
            } => {
                if let Err(e) = janus.open_pool(conc) {
                    errors.push(e);
                }
                let before = janus.connections_opened();
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
                (before, janus.connections_opened() - before)
            }
            Signal::Fluo {
                rt,
                port,
                pipeline,
                publisher,
                viewers,
                clients,
                ..
            } => {
                let (port, pipeline, publisher) = (*port, pipeline.clone(), publisher.clone());
                let (results, open) = rt.block_on(async {
                    // The signalling connections first, then every join at once.
                    let conns = (0..conc).map(|_| Client::connect(port));
                    let conns = futures_util::future::join_all(conns).await;
                    // The publisher's connection and the viewers' (a join opens none).
                    let open = 1 + conns.iter().filter(|c| c.is_ok()).count() as u64;
                    let tasks = conns.into_iter().enumerate().map(|(w, c)| {
                        let (pipeline, publisher) = (pipeline.clone(), publisher.clone());
                        async move {
                            let mut c = match c {
                                Ok(c) => c,
                                Err(e) => return (None, vec![Err(e)]),
                            };
                            let mut out = vec![];
                            for i in (w..n).step_by(conc) {
                                let a = &adders[i % adders.len()];
                                let r = join_fluo(&mut c, &pipeline, &publisher, spares, a);
                                out.push(r.await);
                            }
                            (Some(c), out)
                        }
                    });
                    (futures_util::future::join_all(tasks).await, open)
                });
                for (c, rs) in results {
                    clients.extend(c);
                    for r in rs {
                        viewers.extend(first_error(errors, r));
                    }
                }
                (open, 0)
            }
        }
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

async fn release(c: &mut Client, object: &str) -> Result<(), String> {
    let r = c.request("release", json!({ "object": object })).await?;
    match r.get("error") {
        Some(e) => Err(format!("release: {e}")),
        None => Ok(()),
    }
}

type Spares = Mutex<Vec<(Viewer, Option<String>)>>;

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

async fn join_fluo(
    c: &mut Client,
    pipeline: &str,
    publisher: &str,
    spares: &Spares,
    adder: &GroupAdder,
) -> Result<String, String> {
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
    v.session.accept_answer(answer)?;
    v.sdp_work = t.elapsed();
    v.twcc = Some(sdp_has_twcc(answer));
    adder.add(v);
    Ok(ep)
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
    let answer = v.session.answer(&offer)?;
    v.sdp_work = t.elapsed();
    v.twcc = Some(sdp_has_twcc(&answer));
    janus.start(h, &answer)?;
    adder.add(v);
    Ok(h)
}

fn collect(groups: &[Group]) -> (Vec<ViewerSnap>, Vec<f32>) {
    let mut snaps = vec![];
    let mut lat = vec![];
    for g in groups {
        let (s, l) = g.snapshot();
        snaps.extend(s);
        lat.extend(l);
    }
    (snaps, lat)
}

/// Runs `n` viewers against a fresh `kind` server.
pub fn run(
    kind: Kind,
    n: usize,
    plan: &Plan,
    feed: &Arc<Feed>,
    fluo_bin: &Path,
    tmp: &Path,
) -> Result<Outcome, String> {
    let server = Server::start(kind, fluo_bin, plan.server_cpu, tmp)?;
    let r = run_on(&server, n, plan, feed);
    server.stop();
    r
}

fn run_on(server: &Server, n: usize, plan: &Plan, feed: &Arc<Feed>) -> Result<Outcome, String> {
    let mut out = Outcome {
        viewers: n,
        ..Default::default()
    };
    let log = Arc::new(SendLog::default());
    let mut publisher = Publisher::new()?;
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
    (out.signalling_connections, out.connections_opened_in_joins) =
        signal.join(n, plan.join_concurrency, &adders, &mut out.errors);
    // Until every viewer that joined has media, at most 15 s.
    let t1 = Instant::now();
    loop {
        let (snaps, _) = collect(&groups);
        let with_media = snaps.iter().filter(|s| s.first_rtp.is_some()).count();
        if with_media >= snaps.len() || t1.elapsed() > Duration::from_secs(15) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(plan.warmup);

    let (a, _) = collect(&groups);
    let drops_a = crate::server::udp_drops(server.pid);
    let (sa, ta, pa) = (
        server.sample(),
        ProcSample::read(std::process::id()),
        publisher.sent(),
    );
    std::thread::sleep(plan.window);
    let (b, lat) = collect(&groups);
    let drops_b = crate::server::udp_drops(server.pid);
    out.udp_drops_server = drops_b.0.saturating_sub(drops_a.0);
    out.udp_drops_tool = (drops_b.1 - drops_b.0).saturating_sub(drops_a.1 - drops_a.0);
    let (sb, tb, pb) = (
        server.sample(),
        ProcSample::read(std::process::id()),
        publisher.sent(),
    );

    out.window_secs = sb.wall_secs_since(&sa);
    out.server_cpu_secs = sb.cpu_secs_since(&sa);
    out.tool_cpu_secs = tb.cpu_secs_since(&ta);
    out.rss_kib = sb.rss_kib;
    out.threads = sb.threads;
    out.published = pb - pa;
    out.latency_ms = lat.iter().map(|x| f64::from(*x)).collect();
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
    for (x, y) in a.iter().zip(&b) {
        if x.first_rtp.is_none() {
            continue;
        }
        for k in 0..2 {
            let got = y.counts.packets[k] - x.counts.packets[k];
            let expected = y.counts.top_seq[k].saturating_sub(x.counts.top_seq[k]);
            out.packets += got;
            out.packets_by_kind[k] += got;
            out.expected_by_kind[k] += expected;
            out.expected += expected;
            out.lost += expected.saturating_sub(got);
        }
        out.fps
            .push((y.counts.frames - x.counts.frames) as f64 / out.window_secs.max(1e-3));
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
