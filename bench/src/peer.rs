//! The load: a publisher that replays the feed and viewers that receive it, each a real
//! WebRTC peer on its own UDP socket. A *full* viewer is a str0m session in RTP mode (ICE,
//! DTLS, SRTP, its RTCP and NACKs); a *thin* one (crate::thin) leaves str0m ICE and DTLS
//! only and decrypts, counts and reports itself. Viewers live in a few [`Group`] threads,
//! each waiting on all its sockets with one epoll and reading them with `recvmmsg`, so that a
//! thousand viewers cost the tool less than the servers they measure.

use crate::feed::{Feed, FeedPacket};
use crate::keys::{self, KeySlot};
use crate::link::{Limit, Link};
use crate::pacing::{Pacer, Pacing};
use crate::sys::{self, Epoll, RecvBatch};
use crate::thin::{is_rtcp, is_rtp_or_rtcp, Delivered, PtMap, Thin, ThinStats};
use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// The address the peers' sockets bind (127.0.0.1 unless [`set_local_ip`] said otherwise).
static LOCAL_IP: std::sync::OnceLock<std::net::IpAddr> = std::sync::OnceLock::new();

/// Makes every peer made afterwards bind `ip` (its host candidate) instead of 127.0.0.1: the
/// cluster broadcast's peers, in a namespace whose servers are elsewhere. Once per process.
pub fn set_local_ip(ip: std::net::IpAddr) -> Result<(), String> {
    LOCAL_IP
        .set(ip)
        .map_err(|_| "the peers' address is set already".to_string())
}

/// A str0m session on its own UDP socket on 127.0.0.1 (or [`set_local_ip`]'s address).
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
    /// The payload types of the remote SDP (its offer or answer).
    pub pts: PtMap,
    /// A thin viewer's str0m sends ICE and DTLS only: its RTP/RTCP output is dropped (the
    /// thin path writes the viewer's RTCP, with the SRTCP index of its own).
    block_media_out: bool,
}

/// The URI of the transport-wide sequence number header extension (TWCC).
const TWCC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Whether an SDP maps the TWCC header extension: for an answer, whether TWCC was
/// negotiated.
pub fn sdp_has_twcc(sdp: &str) -> bool {
    sdp_twcc_id(sdp).is_some()
}

/// The id an SDP maps the TWCC header extension to (`a=extmap:ID[/direction] URI`).
pub fn sdp_twcc_id(sdp: &str) -> Option<u8> {
    sdp.lines().find_map(|l| {
        let (id, uri) = l.trim_end().strip_prefix("a=extmap:")?.split_once(' ')?;
        let id = id.split('/').next()?.parse().ok()?;
        (uri.trim() == TWCC_URI).then_some(id)
    })
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
        Session::build(twcc, false).map(|s| s.0)
    }

    /// A session whose SDP maps TWCC only when `twcc` is true; with `capture`, its DTLS
    /// keys land in the returned slot (a thin viewer's).
    fn build(twcc: bool, capture: bool) -> Result<(Session, Option<KeySlot>), String> {
        let ip = *LOCAL_IP.get_or_init(|| std::net::Ipv4Addr::LOCALHOST.into());
        let sock = UdpSocket::bind((ip, 0)).map_err(|e| e.to_string())?;
        sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        let addr = sock.local_addr().map_err(|e| e.to_string())?;
        let now = Instant::now();
        let mut config = Rtc::builder().set_rtp_mode(true);
        if !twcc {
            config = config.set_extension_map(extensions_without_twcc());
        }
        let (mut rtc, slot) = if capture {
            let (rtc, slot) = keys::build_capturing(config, now);
            (rtc, Some(slot))
        } else {
            (config.build(now), None)
        };
        let cand = Candidate::host(addr, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(cand);
        let session = Session {
            rtc,
            sock,
            addr,
            deadline: now,
            pending: None,
            connected_at: None,
            mids: vec![],
            connected: false,
            pts: PtMap::default(),
            block_media_out: capture,
        };
        Ok((session, slot))
    }

    /// An offer with one audio and one video m-line.
    pub fn offer(&mut self, dir: Direction) -> Result<String, String> {
        self.offer_simulcast(dir, &[])
    }

    /// An offer with one audio and one video m-line, the video sent as the simulcast
    /// layers `rids` (RFC 8853) when there are any.
    pub fn offer_simulcast(&mut self, dir: Direction, rids: &[String]) -> Result<String, String> {
        let sim = (!rids.is_empty()).then(|| {
            let mut sim = Simulcast::new();
            for r in rids {
                sim.add_send_layer(SimulcastLayer::new(r));
            }
            sim
        });
        let mut api = self.rtc.sdp_api();
        let a = api.add_media(MediaKind::Audio, dir, None, None, None);
        let v = api.add_media(MediaKind::Video, dir, None, None, sim);
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
            .map_err(|e| format!("answer: {e}"))?;
        self.pts = PtMap::parse(sdp);
        Ok(())
    }

    pub fn answer(&mut self, offer: &str) -> Result<String, String> {
        let o = SdpOffer::from_sdp_string(offer).map_err(|e| format!("offer: {e}"))?;
        let a = self
            .rtc
            .sdp_api()
            .accept_offer(o)
            .map_err(|e| format!("offer: {e}"))?;
        self.pts = PtMap::parse(offer);
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
                    if !(self.block_media_out && is_rtp_or_rtcp(&t.contents)) {
                        let _ = self.sock.send_to(&t.contents, t.destination);
                    }
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

/// Send times of the feed's video frames (wall clock, ns since the epoch: the clock of the
/// kernel's receive timestamps), by a hash of their last packet's payload (which servers
/// forward untouched), for the end-to-end latency seen by viewers. With `--latency-detail`,
/// every video packet's, with its place in its frame, and the latencies by that place.
#[derive(Default)]
pub struct SendLog {
    map: Mutex<HashMap<u64, Sent>>,
    /// `--latency-detail`: (place in the frame, packets in the frame, ms) of every video
    /// packet the viewers of cohort 0 received (not retransmissions).
    detail: Option<Mutex<Vec<PlaceSample>>>,
}

/// A video packet's send time and place in its frame.
#[derive(Debug, Clone, Copy)]
struct Sent {
    at_ns: u64,
    place: (u8, u8),
}

/// A latency sample by place: (index in the frame, packets in the frame, ms).
pub type PlaceSample = (u8, u8, f32);

impl SendLog {
    /// A log that also keeps every video packet's latency by its place in its frame.
    pub fn with_detail() -> SendLog {
        SendLog {
            detail: Some(Mutex::default()),
            ..SendLog::default()
        }
    }

    /// Whether every video packet is logged (`--latency-detail`), not only frames' last.
    fn detailed(&self) -> bool {
        self.detail.is_some()
    }

    fn put(&self, key: u64, at_ns: u64, place: (u8, u8)) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 4096 {
            m.retain(|_, t| at_ns.saturating_sub(t.at_ns) < 3_000_000_000);
        }
        m.insert(key, Sent { at_ns, place });
    }

    fn get(&self, key: u64) -> Option<Sent> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied()
    }

    fn record(&self, place: (u8, u8), ms: f32) {
        if let Some(d) = &self.detail {
            d.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((place.0, place.1, ms));
        }
    }

    /// The samples by place recorded since the last call (`--latency-detail`).
    pub fn take_detail(&self) -> Vec<PlaceSample> {
        self.detail.as_ref().map_or_else(Vec::new, |d| {
            std::mem::take(&mut *d.lock().unwrap_or_else(|p| p.into_inner()))
        })
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

/// The publisher: replays the feed, looping, from the moment it is connected; with the
/// feed's simulcast layers, the feed's audio and the layers' video (`q`, `h`, `f`). Each
/// video frame's packets are written at one instant unless it is paced (`--pacing`).
pub struct Publisher {
    pub session: Session,
    /// The simulcast rids it offers (none: one video stream).
    rids: Vec<String>,
    /// How its video is paced (none: each frame's packets at once).
    pacing: Option<Pacing>,
}

/// One stream set a publisher replays: a feed, its place in it, its sequence numbers.
struct Replay<'f> {
    feed: &'f Feed,
    /// Each packet's place in its video frame (`Feed::frame_positions`).
    places: Vec<(u8, u8)>,
    rid: Option<Rid>,
    /// What of its feed it sends [audio, video].
    sends: [bool; 2],
    next: usize,
    lap: u32,
    seq: [u64; 2],
    /// Whether its packets count as the publisher's (the top layer's and the audio: what
    /// one viewer of the top layer gets).
    counted: bool,
}

impl Replay<'_> {
    /// When its next packet is due.
    fn due(&self, start: Instant) -> Instant {
        start + self.feed.period * self.lap + self.feed.packets[self.next].at
    }

    /// The RTP timestamp of packet `p` of the current lap (continued over the loops).
    fn ts_of(&self, p: &FeedPacket) -> u32 {
        let clock = if p.video { 90_000u64 } else { 48_000 };
        (u64::from(p.ts) + u64::from(self.lap) * self.feed.period.as_secs() * clock) as u32
    }

    fn advance(&mut self) {
        self.next += 1;
        if self.next == self.feed.packets.len() {
            self.next = 0;
            self.lap += 1;
        }
    }
}

/// A packet numbered and stamped, to be written now or, paced, at `at`.
struct Numbered {
    replay: usize,
    index: usize,
    seq: u64,
    ts: u32,
    at: Instant,
}

/// A running publisher.
pub struct PublisherHandle {
    stop: Arc<AtomicBool>,
    /// RTP packets sent so far, per kind [audio, video].
    sent: Arc<[AtomicU64; 2]>,
    thread: Option<JoinHandle<u64>>,
    pub connected: Arc<AtomicBool>,
}

impl PublisherHandle {
    /// RTP packets sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// Video RTP packets sent so far.
    pub fn video_sent(&self) -> u64 {
        self.sent[1].load(Ordering::Relaxed)
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
            rids: vec![],
            pacing: None,
        })
    }

    /// A publisher of `feed`: simulcast when it has layers.
    pub fn of(feed: &Feed) -> Result<Publisher, String> {
        let mut p = Publisher::new()?;
        if !feed.layers.is_empty() {
            p.rids = feed.layers.iter().map(|l| l.0.clone()).collect();
        }
        Ok(p)
    }

    /// The same, its video paced as `pacing` says (`None`: each frame at once).
    pub fn paced(mut self, pacing: Option<Pacing>) -> Publisher {
        self.pacing = pacing;
        self
    }

    /// Its offer (send-only).
    pub fn offer(&mut self) -> Result<String, String> {
        self.session
            .offer_simulcast(Direction::SendOnly, &self.rids)
    }

    /// Runs it in a thread of its own.
    pub fn start(self, feed: Arc<Feed>, log: Arc<SendLog>) -> PublisherHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicBool::new(false));
        let sent = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
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
        count: &[AtomicU64; 2],
    ) -> u64 {
        let mut pacer = self.pacing.map(|p| p.pacer(feed.video_bitrate()));
        let s = &mut self.session;
        let mut buf = vec![0u8; 2048];
        let mut tracks: Option<[(Mid, Pt); 2]> = None;
        let mut replays = replays_of(feed);
        // Paced video packets waiting for their time, in order.
        let mut held: VecDeque<Numbered> = VecDeque::new();
        let mut start = Instant::now();
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
            for (i, r) in replays.iter_mut().enumerate() {
                for p in take_due(i, r, start, now, pacer.as_mut()) {
                    if (p.at <= now && held.is_empty()) || !r.feed.packets[p.index].video {
                        sent += write(s, r, &p, tr, now, log, count);
                    } else {
                        held.push_back(p);
                    }
                }
            }
            while held.front().is_some_and(|p| p.at <= now) {
                if let Some(p) = held.pop_front() {
                    sent += write(s, &replays[p.replay], &p, tr, now, log, count);
                }
            }
            s.drain(|_, _| {});
            let due = replays.iter().map(|r| r.due(start)).min().unwrap_or(now);
            let due = held.front().map_or(due, |p| p.at.min(due));
            let wake = due.min(s.deadline).min(now + Duration::from_millis(5));
            if let Some(d) = wake.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        sent
    }
}

/// The stream sets of `feed`: its audio and, when it has no layers, its video; then each
/// layer's video. The last layer (the top one) counts with the audio.
fn replays_of(feed: &Feed) -> Vec<Replay<'_>> {
    let layers = feed.layers.len();
    [(feed, None, [true, layers == 0])]
        .into_iter()
        .chain(
            (feed.layers.iter()).map(|(rid, f)| (f, Some(Rid::from(rid.as_str())), [false, true])),
        )
        .enumerate()
        .map(|(i, (feed, rid, sends))| Replay {
            feed,
            places: feed.frame_positions(),
            rid,
            sends,
            next: 0,
            lap: 0,
            seq: [1; 2],
            counted: i == 0 || i == layers,
        })
        .collect()
}

/// The packets of replay `i` that are due: numbered, stamped (sequence numbers and
/// timestamps continued over the loops) and, when a pacer is given, video given the time
/// it lets them out (audio is not paced).
fn take_due(
    i: usize,
    r: &mut Replay,
    start: Instant,
    now: Instant,
    mut pacer: Option<&mut Pacer>,
) -> Vec<Numbered> {
    let mut out = vec![];
    while r.due(start) <= now {
        let ready = r.due(start);
        let p = &r.feed.packets[r.next];
        let k = usize::from(p.video);
        if r.sends[k] {
            let at = match pacer.as_deref_mut().filter(|_| p.video) {
                Some(pc) => start + pc.schedule(ready - start, p.payload.len()),
                None => ready,
            };
            out.push(Numbered {
                replay: i,
                index: r.next,
                seq: r.seq[k],
                ts: r.ts_of(p),
                at,
            });
            r.seq[k] += 1;
        }
        r.advance();
    }
    out
}

/// Writes packet `n` of `r`; the send time of a video frame's last packet (of every video
/// packet with `--latency-detail`) goes into the log. Returns 1 when it counts as the
/// publisher's.
fn write(
    s: &mut Session,
    r: &Replay,
    n: &Numbered,
    tr: [(Mid, Pt); 2],
    now: Instant,
    log: &SendLog,
    count: &[AtomicU64; 2],
) -> u64 {
    let p = &r.feed.packets[n.index];
    let k = usize::from(p.video);
    let (mid, pt) = tr[k];
    let mut api = s.rtc.direct_api();
    let Some(tx) = api.stream_tx_by_mid(mid, r.rid) else {
        return 0;
    };
    let w = RtpWrite::new(pt, SeqNo::from(n.seq), n.ts, now, p.payload.clone())
        .marker(p.marker)
        .nackable(p.video);
    tx.write_rtp(w);
    if p.video && (p.marker || log.detailed()) {
        log.put(payload_key(&p.payload), sys::wall_ns(), r.places[n.index]);
    }
    if !r.counted {
        return 0;
    }
    count[k].fetch_add(1, Ordering::Relaxed);
    1
}

/// What a viewer has received, per kind [audio, video].
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Distinct packets received (for the full viewer: the packets str0m handed over).
    pub packets: [u64; 2],
    /// Highest extended sequence number seen, per kind.
    pub top_seq: [u64; 2],
    pub frames: u64,
    /// UDP datagrams read from the socket (RTP, RTCP, STUN, DTLS).
    pub datagrams: u64,
    /// Times str0m was driven by its timer.
    pub ticks: u64,
    /// Video packets dropped on purpose (`--drop-every`), before str0m or the thin path.
    pub dropped: u64,
    /// Datagrams its virtual link dropped (`--limit`).
    pub link_dropped: u64,
    /// Its latency samples (frames' last packets, cohort 0) and their sum in ms.
    pub latency_samples: u64,
    pub latency_ms_sum: f64,
}

/// The viewer's implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// ICE and DTLS by str0m, then decrypt-and-count and its own RTCP (crate::thin).
    Thin,
    /// A str0m session that receives, reports and NACKs by itself.
    Full,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Thin => "thin",
            Mode::Full => "full",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        [Mode::Thin, Mode::Full].into_iter().find(|m| m.name() == s)
    }
}

/// How a viewer is made.
#[derive(Debug, Clone, Copy)]
pub struct ViewerSpec {
    pub mode: Mode,
    /// Whether its SDP offers or accepts TWCC.
    pub twcc: bool,
    /// 0: joined with the run; 1: joined while the others were watching (the join storm).
    pub cohort: u8,
    /// Drop one video packet in this many on arrival, so that NACK repair is exercised (0:
    /// none).
    pub drop_every: u32,
    /// The viewers behind a virtual link (`--limit`), picked by id.
    pub limit: Option<Limit>,
}

/// Latency samples (ms) of the viewers of cohort 0: [not limited, behind a virtual link].
pub type Latencies = [Vec<f32>; 2];

/// One viewer.
pub struct Viewer {
    pub session: Session,
    pub id: usize,
    pub spec: ViewerSpec,
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
    thin: Option<Box<Thin>>,
    video_seen: u64,
    /// Its virtual link, when the limit applies to it.
    link: Option<Link>,
}

/// Counts a received packet; a video frame's last packet gives a latency sample (not a
/// retransmission's, which is late by design) when `lat` is given.
fn count(
    counts: &mut Counts,
    first: &mut Option<Instant>,
    now: Instant,
    arrival_ns: u64,
    d: &Delivered<'_>,
    log: &SendLog,
    lat: Option<&mut Vec<f32>>,
) {
    first.get_or_insert(now);
    counts.packets[d.kind] += 1;
    counts.top_seq[d.kind] = counts.top_seq[d.kind].max(d.ext);
    if d.kind != 1 {
        return;
    }
    counts.frames += u64::from(d.marker);
    let Some(lat) = lat.filter(|_| !d.repair && (d.marker || log.detailed())) else {
        return;
    };
    let Some(sent) = log.get(payload_key(d.payload)) else {
        return;
    };
    let ms = arrival_ns.saturating_sub(sent.at_ns) as f32 / 1e6;
    if d.marker {
        lat.push(ms);
        counts.latency_ms_sum += f64::from(ms);
        counts.latency_samples += 1;
    }
    log.record(sent.place, ms);
}

impl Viewer {
    pub fn new(join_began: Instant, id: usize, spec: ViewerSpec) -> Result<Viewer, String> {
        let (session, slot) = Session::build(spec.twcc, spec.mode == Mode::Thin)?;
        sys::enable_timestamps(&session.sock).map_err(|e| format!("SO_TIMESTAMPNS: {e}"))?;
        let thin = slot.map(|s| Box::new(Thin::new(s, spec.drop_every)));
        let link = spec.limit.filter(|l| l.applies(id)).map(|l| Link::new(&l));
        Ok(Viewer {
            session,
            id,
            spec,
            join_began,
            signalled: None,
            first_rtp: None,
            sdp_work: Duration::ZERO,
            twcc: None,
            counts: Counts::default(),
            kinds: vec![],
            thin,
            video_seen: 0,
            link,
        })
    }

    /// Whether it is behind a virtual link.
    pub fn limited(&self) -> bool {
        self.link.is_some()
    }

    /// Applies the server's answer to our offer.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), String> {
        self.session.accept_answer(sdp)?;
        self.negotiated(sdp_twcc_id(sdp));
        Ok(())
    }

    /// Our answer to the server's offer.
    pub fn answer(&mut self, offer: &str) -> Result<String, String> {
        let a = self.session.answer(offer)?;
        self.negotiated(sdp_twcc_id(&a));
        Ok(a)
    }

    /// The payload types, and TWCC's extension id when the answer kept it.
    fn negotiated(&mut self, twcc: Option<u8>) {
        if let Some(t) = &mut self.thin {
            t.set_payload_types(self.session.pts.clone());
            t.set_twcc(twcc);
        }
    }

    /// The next time [`Viewer::on_timer`] has work.
    fn deadline(&self) -> Instant {
        let d = self.session.deadline;
        match self.thin.as_deref().and_then(Thin::next_timer) {
            Some(t) => t.min(d),
            None => d,
        }
    }

    /// Whether a datagram is a video packet (not a retransmission) by its clear header.
    fn is_video_media(&self, data: &[u8]) -> bool {
        is_rtp_or_rtcp(data)
            && !is_rtcp(data)
            && self
                .session
                .pts
                .get(data[1] & 0x7f)
                .is_some_and(|i| i.kind == 1 && !i.rtx)
    }

    /// One datagram from `src`, received at `arrival_ns`.
    fn on_datagram(
        &mut self,
        now: Instant,
        src: SocketAddr,
        data: &mut [u8],
        arrival_ns: u64,
        log: &SendLog,
        lat: &mut Vec<f32>,
    ) {
        self.counts.datagrams += 1;
        let mut arrival_ns = arrival_ns;
        if let (Some(l), true) = (self.link.as_mut(), is_rtp_or_rtcp(data)) {
            match l.pass(arrival_ns, data.len()) {
                Some(at) => arrival_ns = at,
                None => {
                    self.counts.link_dropped += 1;
                    return;
                }
            }
        }
        let record = (self.spec.cohort == 0).then_some(lat);
        if let Some(t) = self.thin.as_deref_mut() {
            t.remote = Some(src);
            if is_rtp_or_rtcp(data) && t.keys(now) {
                if let Some(d) = t.on_datagram(now, arrival_ns, data) {
                    count(
                        &mut self.counts,
                        &mut self.first_rtp,
                        now,
                        arrival_ns,
                        &d,
                        log,
                        record,
                    );
                }
                return;
            }
            // ICE and DTLS (and media before the keys are in hand: dropped by str0m's
            // session output below).
            self.session.receive(now, src, data);
            self.session.drain(|_, _| {});
            t.keys(now);
            return;
        }
        if self.spec.drop_every > 0 && self.is_video_media(data) {
            self.video_seen += 1;
            let k = u64::from(self.spec.drop_every);
            if self.video_seen % k == k / 2 {
                self.counts.dropped += 1;
                return;
            }
        }
        self.session.receive(now, src, data);
        self.on_event(now, arrival_ns, log, record);
    }

    /// Takes str0m's output (a full viewer's packets are counted here).
    fn on_event(
        &mut self,
        now: Instant,
        arrival_ns: u64,
        log: &SendLog,
        lat: Option<&mut Vec<f32>>,
    ) {
        let (counts, kinds, first) = (&mut self.counts, &mut self.kinds, &mut self.first_rtp);
        let mut lat = lat;
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
            let d = Delivered {
                kind: k,
                ext: *p.seq_no,
                marker: p.header.marker,
                payload: &p.payload,
                repair: false,
            };
            count(counts, first, now, arrival_ns, &d, log, lat.as_deref_mut());
        });
    }

    /// str0m's timer when due; a thin viewer's RTCP when due.
    fn on_timer(&mut self, now: Instant, log: &SendLog, lat: &mut Vec<f32>) {
        if now >= self.session.deadline {
            self.counts.ticks += 1;
            let _ = self.session.rtc.handle_input(Input::Timeout(now));
            if self.thin.is_some() {
                self.session.drain(|_, _| {});
            } else {
                let record = (self.spec.cohort == 0).then_some(lat);
                self.on_event(now, sys::wall_ns(), log, record);
            }
            // str0m may ask to be driven again at the very instant it was driven (while it
            // connects, and now and then after): once per millisecond is enough, and the
            // group does not spin.
            self.session.deadline = self.session.deadline.max(now + Duration::from_millis(1));
        }
        if let Some(t) = self.thin.as_deref_mut() {
            if let (true, Some(dst)) = (t.keys(now), t.remote) {
                let sock = &self.session.sock;
                t.poll_rtcp(now, |p| {
                    let _ = sock.send_to(p, dst);
                });
            }
        }
    }
}

/// A viewer's figures as a group reports them.
#[derive(Debug, Clone, Copy)]
pub struct ViewerSnap {
    pub id: usize,
    pub cohort: u8,
    pub join_began: Instant,
    pub signalled: Option<Instant>,
    pub connected: Option<Instant>,
    pub first_rtp: Option<Instant>,
    pub sdp_work: Duration,
    pub twcc: Option<bool>,
    pub counts: Counts,
    /// The thin path's own counters (thin viewers).
    pub thin: Option<ThinStats>,
    /// Behind a virtual link (`--limit`).
    pub limited: bool,
}

enum Cmd {
    Add(Box<Viewer>),
    /// Reply with every viewer's figures and the latencies (ms) of the viewers of cohort 0
    /// seen since the last snapshot.
    Snapshot(Sender<(Vec<ViewerSnap>, Latencies)>),
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

    pub fn snapshot(&self) -> (Vec<ViewerSnap>, Latencies) {
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

fn snap(v: &Viewer) -> ViewerSnap {
    ViewerSnap {
        id: v.id,
        cohort: v.spec.cohort,
        join_began: v.join_began,
        signalled: v.signalled,
        connected: v.session.connected_at,
        first_rtp: v.first_rtp,
        sdp_work: v.sdp_work,
        twcc: v.twcc,
        counts: v.counts,
        thin: v.thin.as_deref().map(|t| t.stats),
        limited: v.limited(),
    }
}

/// The shortest time between two reads of a group's sockets. Datagrams wait in their
/// sockets meanwhile (their latency is the kernel's receive time, which this does not
/// change): fewer wake-ups, more datagrams per `recvmmsg`.
const MIN_WAKE: Duration = Duration::from_millis(1);

fn group_loop(rx: &Receiver<Cmd>, log: &SendLog, stop: &AtomicBool) {
    let Ok(mut epoll) = Epoll::new() else { return };
    let mut viewers: Vec<Viewer> = vec![];
    let mut batch = RecvBatch::new(32);
    let mut lat: Latencies = Default::default();
    let mut ready = vec![];
    // The earliest timer of any viewer: the viewers' timers are scanned only then (and a
    // viewer's after its datagrams), not at every wake-up.
    let mut next_timer = Instant::now();
    let mut woke = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Cmd::Add(v) => {
                    let _ = epoll.add(&v.session.sock, viewers.len() as u64);
                    next_timer = next_timer.min(v.deadline());
                    viewers.push(*v);
                }
                Cmd::Snapshot(reply) => {
                    let snaps = viewers.iter().map(snap).collect();
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
        let pace = (woke + MIN_WAKE).min(next_timer);
        if let Some(d) = pace.checked_duration_since(now) {
            std::thread::sleep(d);
        }
        let now = Instant::now();
        let wait = next_timer
            .saturating_duration_since(now)
            .min(Duration::from_millis(5));
        epoll.wait(&mut ready, wait);
        woke = Instant::now();
        for &i in &ready {
            let Some(v) = viewers.get_mut(i as usize) else {
                continue;
            };
            let lat = &mut lat[usize::from(v.limited())];
            while let Some(n) = batch.recv(&v.session.sock) {
                let now = Instant::now();
                for k in 0..n {
                    let (src, data, arrival) = batch.get_mut(k);
                    v.on_datagram(now, src, data, arrival, log, lat);
                }
                if n < batch.capacity() {
                    break;
                }
            }
            next_timer = next_timer.min(v.deadline());
        }
        let now = Instant::now();
        if now >= next_timer {
            let mut next = now + Duration::from_millis(5);
            for v in &mut viewers {
                if now >= v.deadline() {
                    v.on_timer(now, log, &mut lat[usize::from(v.limited())]);
                }
                next = next.min(v.deadline());
            }
            next_timer = next;
        }
    }
}

#[cfg(test)]
mod tests;
