//! The load: a publisher that replays the feed and viewers that receive it, each a real
//! WebRTC peer (str0m in RTP mode: ICE, DTLS, SRTP decrypt) on its own UDP socket. Viewers
//! live in a few [`Group`] threads, each waiting on all its sockets with one epoll and
//! reading them with `recvmmsg`, so that a thousand viewers cost the tool less than the
//! servers they measure.

use crate::feed::Feed;
use crate::sys::{Epoll, RecvBatch};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// A str0m session on its own UDP socket on 127.0.0.1.
pub struct Session {
    pub rtc: Rtc,
    pub sock: UdpSocket,
    addr: SocketAddr,
    deadline: Instant,
    pending: Option<SdpPendingOffer>,
    /// When ICE and DTLS completed.
    pub connected_at: Option<Instant>,
    /// The m-lines of our offer: [audio, video].
    mids: Vec<Mid>,
    pub connected: bool,
}

/// The URI of the transport-wide sequence number header extension (TWCC).
const TWCC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Whether an SDP maps the TWCC header extension: for an answer, whether TWCC was
/// negotiated.
pub fn sdp_has_twcc(sdp: &str) -> bool {
    sdp.lines()
        .any(|l| l.starts_with("a=extmap:") && l.trim_end().ends_with(TWCC_URI))
}

/// str0m's standard header extensions without TWCC.
fn extensions_without_twcc() -> ExtensionMap {
    let mut map = ExtensionMap::empty();
    for (id, ext) in ExtensionMap::standard().iter() {
        if *ext != Extension::TransportSequenceNumber {
            map.set(id, ext.clone());
        }
    }
    map
}

impl Session {
    pub fn new() -> Result<Session, String> {
        Session::with_twcc(true)
    }

    /// A session whose SDP maps TWCC only when `twcc` is true.
    pub fn with_twcc(twcc: bool) -> Result<Session, String> {
        let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        let addr = sock.local_addr().map_err(|e| e.to_string())?;
        let now = Instant::now();
        let mut builder = Rtc::builder().set_rtp_mode(true);
        if !twcc {
            builder = builder.set_extension_map(extensions_without_twcc());
        }
        let mut rtc = builder.build(now);
        let cand = Candidate::host(addr, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(cand);
        Ok(Session {
            rtc,
            sock,
            addr,
            deadline: now,
            pending: None,
            connected_at: None,
            mids: vec![],
            connected: false,
        })
    }

    /// An offer with one audio and one video m-line.
    pub fn offer(&mut self, dir: Direction) -> Result<String, String> {
        let mut api = self.rtc.sdp_api();
        let a = api.add_media(MediaKind::Audio, dir, None, None, None);
        let v = api.add_media(MediaKind::Video, dir, None, None, None);
        let (offer, pending) = api.apply().ok_or("no offer")?;
        self.mids = vec![a, v];
        self.pending = Some(pending);
        Ok(offer.to_sdp_string())
    }

    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), String> {
        let a = SdpAnswer::from_sdp_string(sdp).map_err(|e| format!("answer: {e}"))?;
        let p = self.pending.take().ok_or("no offer is pending")?;
        self.rtc
            .sdp_api()
            .accept_answer(p, a)
            .map_err(|e| format!("answer: {e}"))
    }

    pub fn answer(&mut self, offer: &str) -> Result<String, String> {
        let o = SdpOffer::from_sdp_string(offer).map_err(|e| format!("offer: {e}"))?;
        let a = self
            .rtc
            .sdp_api()
            .accept_offer(o)
            .map_err(|e| format!("offer: {e}"))?;
        Ok(a.to_sdp_string())
    }

    fn receive(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        if let Ok(contents) = data.try_into() {
            let _ = self.rtc.handle_input(Input::Receive(
                now,
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: self.addr,
                    contents,
                },
            ));
        }
    }

    /// Sends what str0m has to send and hands its events to `on_event`.
    fn drain(&mut self, mut on_event: impl FnMut(&mut Rtc, Event)) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.deadline = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    let _ = self.sock.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::Connected)) => {
                    self.connected = true;
                    self.connected_at = Some(Instant::now());
                }
                Ok(Output::Event(e)) => on_event(&mut self.rtc, e),
                Err(_) => {
                    // A broken session waits for nothing more.
                    self.deadline = Instant::now() + Duration::from_secs(3600);
                    return;
                }
            }
        }
    }
}

/// Send times of the feed's video frames, by a hash of their last packet's payload (which
/// servers forward untouched), for the end-to-end latency seen by viewers.
#[derive(Default)]
pub struct SendLog {
    map: Mutex<HashMap<u64, Instant>>,
}

impl SendLog {
    fn put(&self, key: u64, at: Instant) {
        let mut m = self.map.lock().expect("send log");
        if m.len() > 4096 {
            m.retain(|_, t| at.duration_since(*t) < Duration::from_secs(3));
        }
        m.insert(key, at);
    }

    fn get(&self, key: u64) -> Option<Instant> {
        self.map.lock().expect("send log").get(&key).copied()
    }
}

fn payload_key(p: &[u8]) -> u64 {
    // FNV-1a over the last 32 bytes and the length.
    let tail = &p[p.len().saturating_sub(32)..];
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ p.len() as u64;
    for b in tail {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The payload type negotiated for `codec` on `mid`.
fn pt_of(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let accepted = rtc.media(mid)?.remote_pts().to_vec();
    rtc.codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == codec && accepted.contains(&p.pt()))
        .map(|p| p.pt())
}

/// The publisher: replays the feed, looping, from the moment it is connected.
pub struct Publisher {
    pub session: Session,
}

/// A running publisher.
pub struct PublisherHandle {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<u64>>,
    pub connected: Arc<AtomicBool>,
}

impl PublisherHandle {
    /// RTP packets sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops it; returns the packets it sent.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Publisher {
    pub fn new() -> Result<Publisher, String> {
        Ok(Publisher {
            session: Session::new()?,
        })
    }

    /// Runs it in a thread of its own.
    pub fn start(self, feed: Arc<Feed>, log: Arc<SendLog>) -> PublisherHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (s, c, n) = (stop.clone(), connected.clone(), sent.clone());
        let thread = std::thread::Builder::new()
            .name("publisher".into())
            .spawn(move || self.run(&feed, &log, &s, &c, &n))
            .expect("publisher thread");
        PublisherHandle {
            stop,
            sent,
            thread: Some(thread),
            connected,
        }
    }

    fn run(
        mut self,
        feed: &Feed,
        log: &SendLog,
        stop: &AtomicBool,
        up: &AtomicBool,
        count: &AtomicU64,
    ) -> u64 {
        let s = &mut self.session;
        let mut buf = vec![0u8; 2048];
        let mut tracks: Option<[(Mid, Pt); 2]> = None;
        let mut seq = [1u64; 2];
        let (mut start, mut next, mut lap) = (Instant::now(), 0usize, 0u32);
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            while let Ok((n, src)) = s.sock.recv_from(&mut buf) {
                s.receive(now, src, &buf[..n]);
                s.drain(|_, _| {});
            }
            if now >= s.deadline {
                let _ = s.rtc.handle_input(Input::Timeout(now));
            }
            s.drain(|_, _| {});
            if tracks.is_none() && s.connected {
                let find = |i: usize, c: Codec| {
                    let mid = *s.mids.get(i)?;
                    Some((mid, pt_of(&s.rtc, mid, c)?))
                };
                if let (Some(a), Some(v)) = (find(0, Codec::Opus), find(1, Codec::Vp8)) {
                    tracks = Some([a, v]);
                    up.store(true, Ordering::Relaxed);
                    start = now;
                }
            }
            let Some(tr) = tracks else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            // Every packet that is due, with sequence numbers and timestamps continued over
            // the loops of the feed.
            loop {
                let p = &feed.packets[next];
                let at = start + feed.period * lap + p.at;
                if at > now {
                    break;
                }
                let k = usize::from(p.video);
                let (clock, (mid, pt)) = if p.video {
                    (90_000u64, tr[1])
                } else {
                    (48_000, tr[0])
                };
                let ts = (u64::from(p.ts) + u64::from(lap) * feed.period.as_secs() * clock) as u32;
                if let Some(tx) = s.rtc.direct_api().stream_tx_by_mid(mid, None) {
                    let w = RtpWrite::new(pt, SeqNo::from(seq[k]), ts, now, p.payload.clone())
                        .marker(p.marker)
                        .nackable(p.video);
                    tx.write_rtp(w);
                    seq[k] += 1;
                    sent += 1;
                    count.store(sent, Ordering::Relaxed);
                    if p.video && p.marker {
                        log.put(payload_key(&p.payload), now);
                    }
                }
                next += 1;
                if next == feed.packets.len() {
                    next = 0;
                    lap += 1;
                }
            }
            s.drain(|_, _| {});
            let due = start + feed.period * lap + feed.packets[next].at;
            let wake = due.min(s.deadline).min(now + Duration::from_millis(5));
            if let Some(d) = wake.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        sent
    }
}

/// What a viewer has received, per kind [audio, video].
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub packets: [u64; 2],
    /// Highest extended sequence number seen, per kind.
    pub top_seq: [u64; 2],
    pub frames: u64,
    /// UDP datagrams read from the socket (RTP, RTCP, STUN, DTLS).
    pub datagrams: u64,
}

/// One viewer.
pub struct Viewer {
    pub session: Session,
    /// When its join began: just before the tool wrote its first request, on a signalling
    /// connection already open.
    pub join_began: Instant,
    /// When the signalling of its join was over (answer applied).
    pub signalled: Option<Instant>,
    pub first_rtp: Option<Instant>,
    /// The tool's own SDP work inside the join's clock (making or applying the answer).
    pub sdp_work: Duration,
    /// Whether the answer of its negotiation maps TWCC.
    pub twcc: Option<bool>,
    pub counts: Counts,
    kinds: Vec<(u32, usize)>,
}

impl Viewer {
    /// A viewer whose SDP offers or accepts TWCC when `twcc` is true.
    pub fn new(join_began: Instant, twcc: bool) -> Result<Viewer, String> {
        Ok(Viewer {
            session: Session::with_twcc(twcc)?,
            join_began,
            signalled: None,
            first_rtp: None,
            sdp_work: Duration::ZERO,
            twcc: None,
            counts: Counts::default(),
            kinds: vec![],
        })
    }

    fn on_event(&mut self, now: Instant, log: &SendLog, lat: &mut Vec<f32>) {
        let (counts, kinds, first) = (&mut self.counts, &mut self.kinds, &mut self.first_rtp);
        self.session.drain(|rtc, e| {
            let Event::RtpPacket(p) = e else { return };
            let ssrc = *p.header.ssrc;
            let k = match kinds.iter().find(|x| x.0 == ssrc) {
                Some(x) => x.1,
                None => {
                    let video = rtc
                        .direct_api()
                        .stream_rx(&p.header.ssrc)
                        .map(|s| s.mid())
                        .and_then(|m| rtc.media(m))
                        .is_some_and(|m| m.kind() == MediaKind::Video);
                    kinds.push((ssrc, usize::from(video)));
                    usize::from(video)
                }
            };
            first.get_or_insert(now);
            counts.packets[k] += 1;
            counts.top_seq[k] = counts.top_seq[k].max(*p.seq_no);
            if k == 1 && p.header.marker {
                counts.frames += 1;
                if let Some(sent) = log.get(payload_key(&p.payload)) {
                    lat.push(now.saturating_duration_since(sent).as_secs_f32() * 1e3);
                }
            }
        });
    }
}

/// A viewer's figures as a group reports them.
#[derive(Debug, Clone, Copy)]
pub struct ViewerSnap {
    pub join_began: Instant,
    pub signalled: Option<Instant>,
    pub connected: Option<Instant>,
    pub first_rtp: Option<Instant>,
    pub sdp_work: Duration,
    pub twcc: Option<bool>,
    pub counts: Counts,
}

enum Cmd {
    Add(Box<Viewer>),
    /// Reply with every viewer's figures and the latencies (ms) seen since the last snapshot.
    Snapshot(Sender<(Vec<ViewerSnap>, Vec<f32>)>),
    /// Drop every viewer.
    Clear(Sender<()>),
}

/// A thread that carries many viewers.
pub struct Group {
    tx: Sender<Cmd>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Group {
    pub fn start(name: String, log: Arc<SendLog>) -> Group {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || group_loop(&rx, &log, &s))
            .expect("viewer group thread");
        Group {
            tx,
            stop,
            thread: Some(thread),
        }
    }

    /// A handle that adds viewers (from any thread).
    pub fn adder(&self) -> GroupAdder {
        GroupAdder(self.tx.clone())
    }

    pub fn snapshot(&self) -> (Vec<ViewerSnap>, Vec<f32>) {
        let (tx, rx) = mpsc::channel();
        let _ = self.tx.send(Cmd::Snapshot(tx));
        rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default()
    }

    pub fn clear(&self) {
        let (tx, rx) = mpsc::channel();
        let _ = self.tx.send(Cmd::Clear(tx));
        let _ = rx.recv_timeout(Duration::from_secs(10));
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone)]
pub struct GroupAdder(Sender<Cmd>);

impl GroupAdder {
    pub fn add(&self, mut v: Viewer) {
        v.signalled = Some(Instant::now());
        let _ = self.0.send(Cmd::Add(Box::new(v)));
    }
}

fn group_loop(rx: &Receiver<Cmd>, log: &SendLog, stop: &AtomicBool) {
    let Ok(mut epoll) = Epoll::new() else { return };
    let mut viewers: Vec<Viewer> = vec![];
    let mut batch = RecvBatch::new(32);
    let mut lat: Vec<f32> = vec![];
    let mut ready = vec![];
    while !stop.load(Ordering::Relaxed) {
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Cmd::Add(v) => {
                    let _ = epoll.add(&v.session.sock, viewers.len() as u64);
                    viewers.push(*v);
                }
                Cmd::Snapshot(reply) => {
                    let snaps = viewers
                        .iter()
                        .map(|v| ViewerSnap {
                            join_began: v.join_began,
                            signalled: v.signalled,
                            connected: v.session.connected_at,
                            first_rtp: v.first_rtp,
                            sdp_work: v.sdp_work,
                            twcc: v.twcc,
                            counts: v.counts,
                        })
                        .collect();
                    let _ = reply.send((snaps, std::mem::take(&mut lat)));
                }
                Cmd::Clear(reply) => {
                    for v in viewers.drain(..) {
                        epoll.remove(&v.session.sock);
                    }
                    let _ = reply.send(());
                }
            }
        }
        let now = Instant::now();
        let next = viewers
            .iter()
            .map(|v| v.session.deadline)
            .min()
            .unwrap_or(now + Duration::from_millis(5));
        let wait = next
            .saturating_duration_since(now)
            .min(Duration::from_millis(5));
        epoll.wait(&mut ready, wait);
        let now = Instant::now();
        for &i in &ready {
            let Some(v) = viewers.get_mut(i as usize) else {
                continue;
            };
            while let Some(n) = batch.recv(&v.session.sock) {
                v.counts.datagrams += n as u64;
                for k in 0..n {
                    let (src, data) = batch.get(k);
                    v.session.receive(now, src, data);
                    // str0m wants its output taken after every input.
                    v.on_event(now, log, &mut lat);
                }
                if n < batch.capacity() {
                    break;
                }
            }
        }
        for v in &mut viewers {
            if now >= v.session.deadline {
                let _ = v.session.rtc.handle_input(Input::Timeout(now));
                v.on_event(now, log, &mut lat);
            }
        }
    }
}
