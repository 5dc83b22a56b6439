//! The thin viewer's media path, sans IO: once str0m has done ICE and the DTLS handshake,
//! every RTP and RTCP datagram bypasses it. RTP is checked and decrypted in place with the
//! exported keys, its kind found from the negotiated payload types, retransmissions (RFC
//! 4588 RTX) folded back into their stream, and each distinct packet handed to the counting
//! once. The viewer sends what a browser's receiver sends: a receiver report with SDES CNAME
//! every second (RFC 3550, statistics of appendix A.3 / A.8, LSR / DLSR from the server's
//! sender reports), generic NACKs for video gaps, retried until repaired, and a PLI when video
//! starts (RFC 4585), and when the answer kept transport-wide congestion control, TWCC
//! feedback every 50 ms (crate::twcc). str0m keeps ICE (consent included) and DTLS; nothing
//! else of it runs per packet.

use crate::keys::KeySlot;
use crate::rtcp::{self, RecvStats};
use crate::twcc::{TwccRecv, TWCC_INTERVAL};
use fluo_egress::{ExtBlock, Profile, SrtpContext};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Between two receiver reports.
pub const RR_INTERVAL: Duration = Duration::from_secs(1);
/// Between two NACKs of the same missing packet.
const NACK_RETRY: Duration = Duration::from_millis(25);
/// NACKs per missing packet before it counts as lost.
const NACK_TRIES: u8 = 10;
/// A missing packet older than this is given up.
const NACK_MAX_AGE: Duration = Duration::from_secs(1);
/// Missing packets asked for at once per stream. A gap that does not fit is not NACKed: the
/// viewer asks for a keyframe instead, as a browser does when its NACK list overflows (a
/// saturated server is not sent a flood of NACKs by every viewer).
const MAX_MISSING: u64 = 64;
/// Between two keyframe requests for overflowing gaps.
const PLI_INTERVAL: Duration = Duration::from_secs(1);
/// The window of sequence numbers that duplicates are recognized in.
const SEEN_BITS: u64 = 4096;

const VIDEO: usize = 1;

/// What the negotiated SDP says of a payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtInfo {
    /// 0 audio, 1 video.
    pub kind: usize,
    pub clock: u32,
    /// An RTX payload type (RFC 4588).
    pub rtx: bool,
}

/// The payload types of the audio and video m-lines of an SDP.
#[derive(Debug, Clone)]
pub struct PtMap([Option<PtInfo>; 128]);

impl Default for PtMap {
    fn default() -> Self {
        PtMap([None; 128])
    }
}

impl PtMap {
    pub fn parse(sdp: &str) -> PtMap {
        let mut map = PtMap::default();
        let mut kind = None;
        for line in sdp.lines().map(str::trim_end) {
            if let Some(m) = line.strip_prefix("m=") {
                kind = match m.split(' ').next() {
                    Some("audio") => Some(0),
                    Some("video") => Some(VIDEO),
                    _ => None,
                };
            } else if let (Some(kind), Some(r)) = (kind, line.strip_prefix("a=rtpmap:")) {
                let Some((pt, rest)) = r.split_once(' ') else {
                    continue;
                };
                let mut enc = rest.split('/');
                let name = enc.next().unwrap_or_default();
                let clock = enc.next().and_then(|c| c.parse().ok());
                if let (Ok(pt), Some(clock)) = (pt.parse::<usize>(), clock) {
                    if pt < 128 {
                        map.0[pt] = Some(PtInfo {
                            kind,
                            clock,
                            rtx: name.eq_ignore_ascii_case("rtx"),
                        });
                    }
                }
            }
        }
        map
    }

    pub fn get(&self, pt: u8) -> Option<PtInfo> {
        self.0.get(usize::from(pt)).copied().flatten()
    }
}

/// Whether a datagram is RTP or RTCP (RFC 7983: first byte 128-191), not STUN or DTLS.
pub fn is_rtp_or_rtcp(data: &[u8]) -> bool {
    data.first().is_some_and(|b| (128..=191).contains(b))
}

/// Whether an RTP/RTCP datagram is RTCP (RFC 5761: payload types 192-223).
pub fn is_rtcp(data: &[u8]) -> bool {
    data.get(1).is_some_and(|b| (192..=223).contains(b))
}

/// Distinct extended sequence numbers seen, over the last [`SEEN_BITS`].
#[derive(Debug, Clone)]
struct Seen {
    bits: Box<[u64; (SEEN_BITS / 64) as usize]>,
    max: Option<u64>,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            bits: Box::new([0; (SEEN_BITS / 64) as usize]),
            max: None,
        }
    }

    fn bit(s: u64) -> (usize, u64) {
        let i = s % SEEN_BITS;
        ((i / 64) as usize, 1 << (i % 64))
    }

    /// Records `s`; false when it was seen already or is too old to tell.
    fn insert(&mut self, s: u64) -> bool {
        match self.max {
            Some(m) if s > m => {
                if s - m >= SEEN_BITS {
                    self.bits.fill(0);
                } else {
                    for x in m + 1..s {
                        let (w, b) = Seen::bit(x);
                        self.bits[w] &= !b;
                    }
                }
                self.max = Some(s);
            }
            Some(m) if m - s >= SEEN_BITS => return false,
            Some(_) => {
                let (w, b) = Seen::bit(s);
                if self.bits[w] & b != 0 {
                    return false;
                }
            }
            None => self.max = Some(s),
        }
        let (w, b) = Seen::bit(s);
        self.bits[w] |= b;
        true
    }
}

/// A packet the viewer has asked for again.
#[derive(Debug, Clone, Copy)]
struct Missing {
    ext: u64,
    since: Instant,
    next: Instant,
    tries: u8,
}

/// What the viewer receives on one SSRC.
#[derive(Debug, Clone)]
struct Stream {
    ssrc: u32,
    kind: usize,
    rtx: bool,
    clock: u32,
    /// RFC 3711 §3.3.1: the rollover counter and highest sequence number so far.
    roc: u32,
    s_l: u16,
    started: bool,
    stats: RecvStats,
    seen: Seen,
    missing: Vec<Missing>,
}

impl Stream {
    fn new(ssrc: u32, info: PtInfo) -> Stream {
        Stream {
            ssrc,
            kind: info.kind,
            rtx: info.rtx,
            clock: info.clock,
            roc: 0,
            s_l: 0,
            started: false,
            stats: RecvStats::default(),
            seen: Seen::new(),
            missing: vec![],
        }
    }

    /// The packet index of `seq` (RFC 3711 §3.3.1): `ROC << 16 | SEQ` with the ROC guessed
    /// from the highest number so far; the first packet of a stream has ROC 0.
    fn index(&self, seq: u16) -> u64 {
        if !self.started {
            return u64::from(seq);
        }
        let (s_l, s) = (i32::from(self.s_l), i32::from(seq));
        let v = if s_l < 32768 {
            if s - s_l > 32768 && self.roc > 0 {
                self.roc - 1
            } else {
                self.roc
            }
        } else if s_l - 32768 > s {
            self.roc.wrapping_add(1)
        } else {
            self.roc
        };
        (u64::from(v) << 16) | u64::from(seq)
    }

    /// After the packet of `index` was authenticated.
    fn authenticated(&mut self, index: u64) {
        let (v, seq) = ((index >> 16) as u32, index as u16);
        if !self.started || v > self.roc || (v == self.roc && seq > self.s_l) {
            self.started = true;
            self.roc = v;
            self.s_l = seq;
        }
    }

    /// A media packet of extended number `ext`; returns whether it is new (not seen
    /// already), whether it left a gap before it (video: to be NACKed) and whether it
    /// filled one.
    fn accept(&mut self, ext: u64, now: Instant) -> Accepted {
        if !self.seen.insert(ext) {
            return Accepted::default();
        }
        let mut a = Accepted {
            new: true,
            ..Default::default()
        };
        if self.stats.received > 0 && ext > self.stats.max + 1 && self.kind == VIDEO {
            let first = self.stats.max + 1;
            if self.missing.len() as u64 + (ext - first) <= MAX_MISSING {
                for s in first..ext {
                    self.missing.push(Missing {
                        ext: s,
                        since: now,
                        next: now,
                        tries: 0,
                    });
                }
                a.gap = true;
            } else {
                a.overflow = true;
            }
        } else if ext < self.stats.max {
            let before = self.missing.len();
            self.missing.retain(|m| m.ext != ext);
            a.filled = self.missing.len() < before;
        }
        self.stats.record(ext);
        a
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Accepted {
    new: bool,
    gap: bool,
    /// A gap too large to NACK.
    overflow: bool,
    filled: bool,
}

/// The extended number nearest to `max` whose low 16 bits are `seq`.
fn extend_near(max: u64, seq: u16) -> u64 {
    let base = max & !0xffff;
    let c = base | u64::from(seq);
    [c.wrapping_sub(0x1_0000), c, c + 0x1_0000]
        .into_iter()
        .filter(|x| *x < 1 << 62)
        .min_by_key(|x| x.abs_diff(max))
        .unwrap_or(c)
}

/// A packet handed to the counting.
#[derive(Debug)]
pub struct Delivered<'a> {
    /// 0 audio, 1 video.
    pub kind: usize,
    /// Extended sequence number (ROC << 16 | SEQ of the original stream).
    pub ext: u64,
    pub marker: bool,
    /// The payload as the publisher sent it (RTX's original sequence number removed).
    pub payload: &'a [u8],
    /// It came as a retransmission.
    pub repair: bool,
}

/// An RTP packet opened: where its payload is in the buffer, and what it is.
struct Opened {
    payload: (usize, usize),
    kind: usize,
    /// Extended number in the original stream.
    ext: u64,
    marker: bool,
    /// It filled a gap.
    repair: bool,
}

/// What the thin path did, for the run's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThinStats {
    pub decrypt_failures: u64,
    /// RTP of a payload type the SDP did not negotiate, or malformed.
    pub unknown: u64,
    pub duplicates: u64,
    /// Packets received as retransmissions that filled a gap.
    pub repaired: u64,
    /// Video packets dropped on purpose (`--drop-every`) so that NACK repair is exercised.
    pub dropped: u64,
    pub rtcp_sent: u64,
    pub rtcp_received: u64,
    pub receiver_reports: u64,
    /// Sequence numbers named in NACKs (each retry counted).
    pub nacked: u64,
    pub plis: u64,
    pub sender_reports: u64,
    /// Transport-wide feedback messages sent, and the packets they reported received.
    pub twcc_feedback: u64,
    pub twcc_reported: u64,
    /// Padding-only RTX packets (the server's bandwidth probes): counted for the
    /// transport-wide feedback, nothing else.
    pub padding: u64,
}

/// One thin viewer's receive state.
pub struct Thin {
    slot: KeySlot,
    rx: Option<SrtpContext>,
    tx: Option<SrtpContext>,
    pts: PtMap,
    streams: Vec<Stream>,
    ssrc: u32,
    cname: String,
    /// Where the server sends from (where RTCP goes).
    pub remote: Option<SocketAddr>,
    next_rr: Option<Instant>,
    nack_at: Option<Instant>,
    /// Video SSRC to send a PLI for, and since when.
    pli: Option<(u32, Instant)>,
    last_keyframe_request: Option<Instant>,
    /// (SSRC, LSR, when) of each sender's last report.
    srs: Vec<(u32, u32, Instant)>,
    out: Vec<u8>,
    scratch: Vec<u8>,
    seqs: Vec<u64>,
    drop_every: u32,
    video_seen: u64,
    /// Transport-wide feedback, when the negotiation kept it.
    twcc: Option<TwccRecv>,
    next_twcc: Option<Instant>,
    pub stats: ThinStats,
}

fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

impl Thin {
    /// A viewer whose DTLS keys will land in `slot`; it drops one video packet in
    /// `drop_every` on purpose (0: none).
    pub fn new(slot: KeySlot, drop_every: u32) -> Thin {
        let r = random_u64();
        Thin {
            slot,
            rx: None,
            tx: None,
            pts: PtMap::default(),
            streams: Vec::with_capacity(4),
            ssrc: (r as u32).max(1),
            cname: format!("bench-{:08x}", r >> 32),
            remote: None,
            next_rr: None,
            nack_at: None,
            pli: None,
            last_keyframe_request: None,
            srs: vec![],
            out: Vec::with_capacity(1500),
            scratch: Vec::with_capacity(1500),
            seqs: vec![],
            drop_every,
            video_seen: 0,
            twcc: None,
            next_twcc: None,
            stats: ThinStats::default(),
        }
    }

    /// The payload types of the negotiation (the server's SDP).
    pub fn set_payload_types(&mut self, pts: PtMap) {
        self.pts = pts;
    }

    /// The id of the transport-wide sequence number extension when the negotiation kept
    /// TWCC: the viewer then sends feedback.
    pub fn set_twcc(&mut self, ext_id: Option<u8>) {
        self.twcc = ext_id.map(TwccRecv::new);
    }

    /// Whether the handshake's keys are in hand (taken from the slot the first time).
    pub fn keys(&mut self, now: Instant) -> bool {
        if self.rx.is_some() {
            return true;
        }
        let Some(k) = self.slot.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return false;
        };
        let Some(profile) = Profile::from_dtls(k.profile) else {
            return false;
        };
        // The server writes with the other side's half of the material.
        self.rx = SrtpContext::from_dtls(profile, &k.material, !k.client).ok();
        self.tx = SrtpContext::from_dtls(profile, &k.material, k.client).ok();
        // Viewers' reports spread over the second.
        let phase = Duration::from_micros(u64::from(self.ssrc) % 1_000_000);
        self.next_rr = Some(now + phase);
        self.rx.is_some() && self.tx.is_some()
    }

    /// When [`Thin::poll_rtcp`] has something to send.
    pub fn next_timer(&self) -> Option<Instant> {
        let soon = self.pli.map(|_| Instant::now());
        [self.next_rr, self.nack_at, self.next_twcc, soon]
            .into_iter()
            .flatten()
            .min()
    }

    fn stream(&mut self, ssrc: u32, info: PtInfo) -> usize {
        if let Some(i) = self.streams.iter().position(|s| s.ssrc == ssrc) {
            return i;
        }
        self.streams.push(Stream::new(ssrc, info));
        self.streams.len() - 1
    }

    /// An RTP or RTCP datagram (see [`is_rtp_or_rtcp`]) that arrived at `arrival_ns`
    /// (wall clock, ns since the epoch); decrypted in place. Returns the packet to count,
    /// if it is one.
    pub fn on_datagram<'d>(
        &mut self,
        now: Instant,
        arrival_ns: u64,
        data: &'d mut [u8],
    ) -> Option<Delivered<'d>> {
        if is_rtcp(data) {
            self.on_rtcp(now, data);
            return None;
        }
        let o = self.open_rtp(now, arrival_ns, data)?;
        Some(Delivered {
            kind: o.kind,
            ext: o.ext,
            marker: o.marker,
            payload: &data[o.payload.0..o.payload.1],
            repair: o.repair,
        })
    }

    /// Decrypts and accounts an RTP packet.
    fn open_rtp(&mut self, now: Instant, arrival_ns: u64, data: &mut [u8]) -> Option<Opened> {
        let Some(hl) = header_len(data) else {
            self.stats.unknown += 1;
            return None;
        };
        let (pt, marker) = (data[1] & 0x7f, data[1] & 0x80 != 0);
        let Some(info) = self.pts.get(pt) else {
            self.stats.unknown += 1;
            return None;
        };
        let seq = u16::from_be_bytes([data[2], data[3]]);
        let ts = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let si = self.stream(ssrc, info);
        let index = self.streams[si].index(seq);
        let Some(n) = self
            .rx
            .as_ref()
            .and_then(|rx| rx.unprotect_rtp_in(data, hl, index).ok())
        else {
            self.stats.decrypt_failures += 1;
            return None;
        };
        self.streams[si].authenticated(index);
        // The transport-wide number, noted unless the packet is dropped on purpose below.
        let tseq = self
            .twcc
            .as_ref()
            .and_then(|t| ext_element(data, hl, t.ext_id))
            .filter(|e| e.len() >= 2)
            .map(|e| u16::from_be_bytes([e[0], e[1]]));
        let mut end = n;
        if data[0] & 0x20 != 0 {
            let pad = usize::from(data[n - 1]);
            if pad == 0 || hl + pad > n {
                self.stats.unknown += 1;
                return None;
            }
            end = n - pad;
        }
        if info.rtx {
            // RFC 4588: the original sequence number, then the original payload. A packet
            // of padding alone (a bandwidth probe) has neither; its transport-wide number
            // still counts as received, as Chromium and str0m count it.
            if end < hl + 2 {
                self.note_twcc(now, tseq, arrival_ns, ssrc);
                self.stats.padding += 1;
                return None;
            }
            let osn = u16::from_be_bytes([data[hl], data[hl + 1]]);
            let oi = self
                .streams
                .iter()
                .position(|s| s.kind == info.kind && !s.rtx)?;
            let ext = extend_near(self.streams[oi].stats.max, osn);
            self.note_twcc(now, tseq, arrival_ns, ssrc);
            if !self.streams[oi].accept(ext, now).new {
                self.stats.duplicates += 1;
                return None;
            }
            self.stats.repaired += 1;
            return Some(Opened {
                payload: (hl + 2, end),
                kind: info.kind,
                ext,
                marker,
                repair: true,
            });
        }
        if info.kind == VIDEO && self.drop_every > 0 {
            self.video_seen += 1;
            if self.video_seen % u64::from(self.drop_every) == u64::from(self.drop_every / 2) {
                self.stats.dropped += 1;
                return None;
            }
        }
        self.note_twcc(now, tseq, arrival_ns, ssrc);
        let s = &mut self.streams[si];
        let first = s.stats.received == 0;
        let a = s.accept(index, now);
        if !a.new {
            self.stats.duplicates += 1;
            return None;
        }
        if a.filled {
            // Retransmitted on the stream itself (no RTX negotiated).
            self.stats.repaired += 1;
        } else {
            let arrival = (u128::from(arrival_ns) * u128::from(s.clock) / 1_000_000_000) as u32;
            s.stats.jitter_sample(arrival, ts);
        }
        if a.gap {
            self.nack_at = Some(self.nack_at.map_or(now, |t| t.min(now)));
        }
        let overflow_pli = a.overflow
            && self
                .last_keyframe_request
                .is_none_or(|t| now.saturating_duration_since(t) >= PLI_INTERVAL);
        if (first && info.kind == VIDEO) || overflow_pli {
            self.pli = Some((ssrc, now));
            self.last_keyframe_request = Some(now);
        }
        Some(Opened {
            payload: (hl, end),
            kind: info.kind,
            ext: index,
            marker,
            repair: a.filled,
        })
    }

    /// Notes a packet's transport-wide number for the next feedback.
    fn note_twcc(&mut self, now: Instant, tseq: Option<u16>, arrival_ns: u64, ssrc: u32) {
        if let (Some(t), Some(seq)) = (self.twcc.as_mut(), tseq) {
            t.record(seq, arrival_ns / 1000, ssrc);
            self.next_twcc.get_or_insert(now + TWCC_INTERVAL);
        }
    }

    fn on_rtcp(&mut self, now: Instant, data: &[u8]) {
        let Some(rx) = &self.rx else { return };
        let mut plain = std::mem::take(&mut self.scratch);
        if rx.unprotect_rtcp(data, &mut plain).is_ok() {
            self.stats.rtcp_received += 1;
            let (srs, stats) = (&mut self.srs, &mut self.stats);
            rtcp::sender_reports(&plain, |ssrc, lsr| {
                stats.sender_reports += 1;
                match srs.iter_mut().find(|s| s.0 == ssrc) {
                    Some(s) => *s = (ssrc, lsr, now),
                    None => srs.push((ssrc, lsr, now)),
                }
            });
        } else {
            self.stats.decrypt_failures += 1;
        }
        self.scratch = plain;
    }

    /// The compound RTCP packets due now, protected, each handed to `send`. One per media
    /// stream, as a browser's receive streams send them: a receiver report whose block is
    /// that stream's (the interval's report once a second; the interval so far before
    /// feedback otherwise), SDES CNAME, then for video a PLI and NACKs when due. A server
    /// that tells media by the first report block's SSRC (Janus) finds the video's
    /// feedback under the video.
    pub fn poll_rtcp(&mut self, now: Instant, mut send: impl FnMut(&[u8])) {
        if self.remote.is_none() || self.tx.is_none() {
            return;
        }
        if self.next_twcc.is_some_and(|t| now >= t) {
            self.send_twcc(now, &mut send);
        }
        let rr_due = self.next_rr.is_some_and(|t| now >= t);
        let mut nack_due = false;
        if self.nack_at.is_some_and(|t| now >= t) {
            for s in &mut self.streams {
                s.missing.retain(|m| {
                    m.tries < NACK_TRIES && now.saturating_duration_since(m.since) < NACK_MAX_AGE
                });
                nack_due |= s.missing.iter().any(|m| m.next <= now);
            }
        }
        if !(rr_due || nack_due || self.pli.is_some()) {
            self.nack_at = self.next_nack();
            return;
        }
        if rr_due {
            self.next_rr = Some(now + RR_INTERVAL);
            self.stats.receiver_reports += 1;
        }
        let pli = self.pli.take().map(|p| p.0);
        let Thin {
            streams,
            out,
            seqs,
            tx,
            stats,
            srs,
            ssrc,
            cname,
            ..
        } = self;
        let Some(tx) = tx.as_mut() else { return };
        for s in streams.iter_mut().filter(|s| !s.rtx) {
            let nack_here = nack_due && s.missing.iter().any(|m| m.next <= now);
            let pli_here = pli == Some(s.ssrc);
            if !(rr_due || nack_here || pli_here) {
                continue;
            }
            let (lsr, dlsr) = match srs.iter().find(|x| x.0 == s.ssrc) {
                Some(&(_, lsr, at)) => {
                    let d = now.saturating_duration_since(at).as_secs_f64();
                    (lsr, (d * 65536.0) as u32)
                }
                None => (0, 0),
            };
            let block = if rr_due {
                s.stats.report(s.ssrc, lsr, dlsr)
            } else {
                s.stats.peek(s.ssrc, lsr, dlsr)
            };
            out.clear();
            rtcp::write_rr(out, *ssrc, block.as_slice());
            rtcp::write_sdes_cname(out, *ssrc, cname.as_bytes());
            if pli_here {
                rtcp::write_pli(out, *ssrc, s.ssrc);
                stats.plis += 1;
            }
            if nack_here {
                seqs.clear();
                for m in s.missing.iter_mut().filter(|m| m.next <= now) {
                    seqs.push(m.ext);
                    m.tries += 1;
                    m.next = now + NACK_RETRY;
                }
                stats.nacked += rtcp::write_nack(out, *ssrc, s.ssrc, seqs, 64) as u64;
            }
            if tx.protect_rtcp(out).is_ok() {
                stats.rtcp_sent += 1;
                send(out);
            }
        }
        self.nack_at = self.next_nack();
    }

    /// The transport-wide feedback due: what arrived up to now (a limited viewer's later
    /// virtual arrivals wait), in as many messages as it takes; the next one an interval on
    /// while arrivals wait.
    fn send_twcc(&mut self, now: Instant, send: &mut impl FnMut(&[u8])) {
        let (Some(t), Some(tx)) = (self.twcc.as_mut(), self.tx.as_mut()) else {
            self.next_twcc = None;
            return;
        };
        let now_us = crate::sys::wall_ns() / 1000;
        // On a fixed grid of TWCC_INTERVAL from the first due time (not from the next arrival
        // after a send, which made it about 60 ms apart).
        let due = self.next_twcc.unwrap_or(now) + TWCC_INTERVAL;
        let next = if due > now { due } else { now + TWCC_INTERVAL };
        let mut wrote = false;
        // At most a few messages a round (1500 statuses each).
        for _ in 0..8 {
            self.out.clear();
            let n = t.write(now_us, &mut self.out, self.ssrc);
            if n == 0 {
                break;
            }
            wrote = true;
            self.stats.twcc_feedback += 1;
            self.stats.twcc_reported += n as u64;
            if tx.protect_rtcp(&mut self.out).is_ok() {
                self.stats.rtcp_sent += 1;
                send(&self.out);
            }
        }
        // Kept while packets come (an idle viewer's timer stops after one empty round).
        self.next_twcc = (wrote || t.pending()).then_some(next);
    }

    /// When the next NACK is due.
    fn next_nack(&self) -> Option<Instant> {
        self.streams
            .iter()
            .flat_map(|s| s.missing.iter().map(|m| m.next))
            .min()
    }
}

/// The value of header extension `id` of an RTP packet whose header is `hl` bytes long
/// (RFC 8285, one-byte and two-byte forms).
fn ext_element(data: &[u8], hl: usize, id: u8) -> Option<&[u8]> {
    if data[0] & 0x10 == 0 {
        return None;
    }
    let at = 12 + 4 * usize::from(data[0] & 0x0f);
    let block = ExtBlock {
        profile: u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]),
        data: data.get(at + 4..hl)?,
    };
    block.elements().find(|e| e.0 == id).map(|e| e.1)
}

/// The length of an RTP packet's header (fixed part, CSRCs, extension), if it is one.
fn header_len(data: &[u8]) -> Option<usize> {
    if data.len() < 12 || data[0] >> 6 != 2 {
        return None;
    }
    let mut hl = 12 + 4 * usize::from(data[0] & 0x0f);
    if data[0] & 0x10 != 0 {
        let words = data.get(hl + 2..hl + 4)?;
        hl += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (data.len() >= hl).then_some(hl)
}

#[cfg(test)]
mod tests;
