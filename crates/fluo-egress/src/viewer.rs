//! One viewer's egress: its outgoing streams (SSRC, payload type, rewriter, SRTP index, RTX),
//! its SRTP keys, and the three places where it meets str0m's RTCP:
//!
//! - media: [`Viewer::forward`] rewrites a source packet's header into a reused buffer of a
//!   [`Batch`], copies the payload, protects it in place; nothing reaches str0m;
//! - the viewer's RTCP: [`Viewer::read_viewer_rtcp`] decrypts it (the viewer's keys), answers
//!   NACKs from the source's shared [`RetransmitCache`] as RTX, reads receiver reports (round
//!   trip, loss, the SSRC bound so the MID extension can stop). The same datagram still goes to
//!   str0m, which raises keyframe requests and REMB as before;
//! - str0m's RTCP: [`Viewer::reindex_str0m_rtcp`] decrypts what str0m wrote (Fluo holds the
//!   same write keys), puts the counts and RTP time of what Fluo sent into the sender reports of
//!   Fluo's streams, and protects it again with Fluo's SRTCP index: one index sequence per
//!   key, whatever SSRC str0m puts first.

use crate::srtp::SrtpContext;
use crate::Batch;
use fluo_sfu::rtcp::{RtcpCompound, RtcpPacket};
use fluo_sfu::rtp::RtpPacket;
use fluo_sfu::{RetransmitCache, Rewriter};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Audio and video, as Fluo indexes them.
pub const AUDIO: usize = 0;
pub const VIDEO: usize = 1;

/// One packet of a source, parsed once and shared by all its viewers.
#[derive(Debug, Clone, Copy)]
pub struct SourcePacket<'a> {
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
    pub marker: bool,
    pub payload: &'a [u8],
    /// The publisher's one-byte header extension elements (after `0xBEDE` and the length),
    /// empty if none.
    pub ext: &'a [u8],
}

impl<'a> SourcePacket<'a> {
    /// A plain RTP packet (e.g. from a source's resend cache).
    pub fn parse(buf: &'a [u8]) -> Option<SourcePacket<'a>> {
        let p = RtpPacket::parse(buf).ok()?;
        let ext = match p.extension() {
            Some((0xbede, data)) => data,
            _ => &[],
        };
        Some(SourcePacket {
            ssrc: p.ssrc(),
            seq: p.sequence(),
            ts: p.timestamp(),
            marker: p.marker(),
            payload: p.payload(),
            ext,
        })
    }
}

/// What is shared per source and kind: the packets kept for retransmission, once for every
/// viewer (today each viewer's str0m keeps its own copy).
#[derive(Debug)]
pub struct Source {
    pub cache: RetransmitCache,
}

/// The header extensions of one viewer stream: the ids the viewer negotiated.
#[derive(Debug, Clone, Default)]
pub struct ExtPlan {
    /// The viewer's id for the MID extension and the stream's mid, sent until a receiver
    /// report names the SSRC (as str0m and libwebrtc do).
    pub mid: Option<(u8, Vec<u8>)>,
    /// The viewer's id for abs-send-time, if negotiated.
    pub abs_send_time: Option<u8>,
    /// Publisher id -> viewer id (0: not forwarded) for the extensions copied as they came
    /// (audio level, video orientation, ...).
    pub copy: [u8; 15],
}

/// The RTX stream of a video stream (RFC 4588), when the viewer negotiated one.
#[derive(Debug, Clone, Copy)]
pub struct Rtx {
    pub ssrc: u32,
    pub pt: u8,
    ext_seq: u64,
    acked: bool,
}

impl Rtx {
    pub fn new(ssrc: u32, pt: u8) -> Rtx {
        Rtx {
            ssrc,
            pt,
            ext_seq: 1,
            acked: false,
        }
    }
}

/// One outgoing stream of a viewer.
#[derive(Debug)]
pub struct StreamOut {
    pub ssrc: u32,
    pub pt: u8,
    pub clock: u32,
    pub rtx: Option<Rtx>,
    pub exts: ExtPlan,
    rewriter: Option<Rewriter>,
    /// Extended sequence number (ROC << 16 | SEQ) of the last packet.
    ext_seq: u64,
    acked: bool,
    /// Media packets and payload octets sent (for sender reports), retransmissions included.
    pub packets: u64,
    pub octets: u64,
    /// RTP time and send time of the last packet.
    last: Option<(u32, Instant)>,
    pub nacked: u64,
    pub resent: u64,
    pub fraction_lost: u8,
}

impl StreamOut {
    pub fn new(ssrc: u32, pt: u8, clock: u32, rtx: Option<Rtx>, exts: ExtPlan) -> StreamOut {
        StreamOut {
            ssrc,
            pt,
            clock,
            rtx,
            exts,
            rewriter: None,
            ext_seq: 0,
            acked: false,
            packets: 0,
            octets: 0,
            last: None,
            nacked: 0,
            resent: 0,
            fraction_lost: 0,
        }
    }

    /// The extended sequence number of the last packet sent.
    pub fn ext_seq(&self) -> u64 {
        self.ext_seq
    }
}

/// Maps between `Instant` and wall-clock (NTP) time: one pair taken once.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    mono: Instant,
    wall: SystemTime,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    fn wall_of(&self, t: Instant) -> SystemTime {
        if t >= self.mono {
            self.wall + (t - self.mono)
        } else {
            self.wall - (self.mono - t)
        }
    }

    fn ntp_of(&self, t: Instant) -> u64 {
        ntp(self.wall_of(t))
    }

    /// Signed microseconds from `t` to the wall-clock time `wall`.
    fn micros_to(&self, t: Instant, wall: SystemTime) -> i64 {
        let w = self.wall_of(t);
        match wall.duration_since(w) {
            Ok(d) => d.as_micros() as i64,
            Err(e) => -(e.duration().as_micros() as i64),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

const NTP_UNIX: u64 = 2_208_988_800;

fn ntp(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    ((d.as_secs() + NTP_UNIX) << 32) | frac
}

fn from_ntp(n: u64) -> SystemTime {
    let secs = (n >> 32).saturating_sub(NTP_UNIX);
    let nanos = ((n & 0xffff_ffff) * 1_000_000_000) >> 32;
    UNIX_EPOCH + Duration::new(secs, nanos as u32)
}

/// Extends a 16-bit sequence number to the value nearest to `last`.
fn extend_seq(last: u64, seq: u16) -> u64 {
    let cand = (last & !0xffff) | u64::from(seq);
    if cand > last + 0x8000 && cand >= 0x1_0000 {
        cand - 0x1_0000
    } else if cand + 0x8000 < last {
        cand + 0x1_0000
    } else {
        cand
    }
}

/// What one RTCP datagram from the viewer contained, for the caller's bookkeeping.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ViewerRtcp {
    pub nacked: usize,
    pub resent: usize,
    pub keyframe_requests: usize,
    pub reports: usize,
}

/// One viewer's egress state.
pub struct Viewer {
    tx: SrtpContext,
    rx: SrtpContext,
    pub dest: SocketAddr,
    pub streams: [Option<StreamOut>; 2],
    clock: Clock,
    /// NTP middle 32 bits and send time of recent sender reports (round trip).
    srs: [(u32, Instant); 4],
    srs_at: usize,
    pub rtt: Option<Duration>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("dest", &self.dest)
            .field("streams", &self.streams)
            .field("rtt", &self.rtt)
            .finish_non_exhaustive()
    }
}

impl Viewer {
    /// `tx`: the keys this side writes with (the same str0m uses); `rx`: the viewer's.
    pub fn new(tx: SrtpContext, rx: SrtpContext, dest: SocketAddr, clock: Clock) -> Viewer {
        let now = Instant::now();
        Viewer {
            tx,
            rx,
            dest,
            streams: [None, None],
            clock,
            srs: [(0, now); 4],
            srs_at: 0,
            rtt: None,
            scratch: Vec::with_capacity(1500),
        }
    }

    /// The next SRTCP index Fluo will use.
    pub fn srtcp_index(&self) -> u32 {
        self.tx.srtcp_index()
    }

    /// Sends `src` on this viewer's `kind` stream: header rewritten into the next buffer of
    /// `batch`, payload copied, protected in place. False if the viewer has no such stream or
    /// the rewriter drops the packet (old, or from before a source switch).
    pub fn forward(
        &mut self,
        now: Instant,
        kind: usize,
        src: &SourcePacket,
        batch: &mut Batch,
    ) -> bool {
        let Some(s) = self.streams.get_mut(kind).and_then(|s| s.as_mut()) else {
            return false;
        };
        let rw = s.rewriter.get_or_insert_with(|| {
            // Start low so the extended sequence never implies a rollover at the receiver.
            Rewriter::new(s.clock, s.ssrc, src.seq & 0x3fff, src.ts)
        });
        let Some(r) = rw.rewrite(now, src.ssrc, src.seq, src.ts) else {
            return false;
        };
        s.ext_seq = if s.packets == 0 && s.ext_seq == 0 {
            u64::from(r.seq)
        } else {
            extend_seq(s.ext_seq, r.seq)
        };
        let buf = batch.next(self.dest);
        let mid = if s.acked { None } else { s.exts.mid.as_ref() };
        let hlen = write_header(
            buf,
            src.marker,
            s.pt,
            r.seq,
            r.ts,
            s.ssrc,
            mid,
            s.exts
                .abs_send_time
                .map(|id| (id, abs_send_time(&self.clock, now))),
            &s.exts.copy,
            src.ext,
        );
        buf.extend_from_slice(src.payload);
        if self.tx.protect_rtp(buf, hlen, s.ext_seq).is_none() {
            batch.undo();
            return false;
        }
        s.packets += 1;
        s.octets += src.payload.len() as u64;
        s.last = Some((r.ts, now));
        true
    }

    /// Reads an SRTCP datagram from the viewer (it also goes to str0m, unchanged): NACKs of
    /// the video stream are answered from `video_source`'s cache into `batch` (as RTX, when
    /// negotiated: str0m never resends without RTX either), receiver reports update the round
    /// trip and stop the MID extension. `None` if it does not authenticate.
    pub fn read_viewer_rtcp(
        &mut self,
        now: Instant,
        datagram: &[u8],
        video_source: Option<&Source>,
        batch: &mut Batch,
    ) -> Option<ViewerRtcp> {
        let mut plain = std::mem::take(&mut self.scratch);
        let res = self.rx.unprotect_rtcp(datagram, &mut plain).map(|_| {
            let mut seen = ViewerRtcp::default();
            for pkt in RtcpCompound::new(&plain).map_while(Result::ok) {
                match pkt {
                    RtcpPacket::ReceiverReport(rr) => {
                        for b in rr.reports() {
                            self.report(now, b);
                            seen.reports += 1;
                        }
                    }
                    RtcpPacket::SenderReport(sr) => {
                        for b in sr.reports() {
                            self.report(now, b);
                            seen.reports += 1;
                        }
                    }
                    RtcpPacket::Nack(n) => {
                        let (asked, resent) =
                            self.answer_nack(now, n.media_ssrc, n.lost(), video_source, batch);
                        seen.nacked += asked;
                        seen.resent += resent;
                    }
                    RtcpPacket::Pli { .. } | RtcpPacket::Fir(_) => seen.keyframe_requests += 1,
                    _ => {}
                }
            }
            seen
        });
        self.scratch = plain;
        res
    }

    fn report(&mut self, now: Instant, b: fluo_sfu::rtcp::ReportBlock) {
        for s in self.streams.iter_mut().flatten() {
            if b.ssrc == s.ssrc {
                s.acked = true;
                s.fraction_lost = b.fraction_lost;
            }
            if let Some(rtx) = s.rtx.as_mut().filter(|r| r.ssrc == b.ssrc) {
                rtx.acked = true;
            }
        }
        if b.last_sr == 0 || !self.srs.iter().any(|(m, _)| *m == b.last_sr) {
            return;
        }
        // RFC 3550 §6.4.1: now - LSR - DLSR, in 1/65536 s.
        let now_mid = (self.clock.ntp_of(now) >> 16) as u32;
        let rtt = now_mid
            .wrapping_sub(b.last_sr)
            .wrapping_sub(b.delay_since_last_sr);
        if rtt < 0x8000_0000 {
            self.rtt = Some(Duration::from_micros(u64::from(rtt) * 1_000_000 / 65_536));
        }
    }

    fn answer_nack(
        &mut self,
        now: Instant,
        media_ssrc: u32,
        lost: impl Iterator<Item = u16>,
        source: Option<&Source>,
        batch: &mut Batch,
    ) -> (usize, usize) {
        let Some(s) = self.streams[VIDEO]
            .as_mut()
            .filter(|s| s.ssrc == media_ssrc)
        else {
            return (0, 0);
        };
        let (mut asked, mut n) = (0, 0);
        for out_seq in lost {
            asked += 1;
            s.nacked += 1;
            let (Some(source), Some(rw), Some(mut rtx)) = (source, s.rewriter.as_ref(), s.rtx)
            else {
                continue;
            };
            let Some(orig) = rw.original_seq(out_seq) else {
                continue;
            };
            let Some(p) = source.cache.get(now, orig).and_then(SourcePacket::parse) else {
                continue;
            };
            let Some(r) = rw.rewrite_retransmission(p.ssrc, p.seq, p.ts) else {
                continue;
            };
            rtx.ext_seq += 1;
            let buf = batch.next(self.dest);
            let mid = if rtx.acked { None } else { s.exts.mid.as_ref() };
            let hlen = write_header(
                buf,
                p.marker,
                rtx.pt,
                rtx.ext_seq as u16,
                r.ts,
                rtx.ssrc,
                mid,
                s.exts
                    .abs_send_time
                    .map(|id| (id, abs_send_time(&self.clock, now))),
                &s.exts.copy,
                p.ext,
            );
            // RFC 4588 §4: the original sequence number, then the original payload.
            buf.extend_from_slice(&r.seq.to_be_bytes());
            buf.extend_from_slice(p.payload);
            if self.tx.protect_rtp(buf, hlen, rtx.ext_seq).is_none() {
                batch.undo();
                continue;
            }
            s.packets += 1;
            s.octets += p.payload.len() as u64 + 2;
            s.resent += 1;
            s.rtx = Some(rtx);
            n += 1;
        }
        (asked, n)
    }

    /// Takes an SRTCP datagram str0m wrote for this viewer and returns it in `out` as Fluo
    /// sends it: sender reports of Fluo's streams carry Fluo's packet and octet counts and
    /// the RTP time of str0m's NTP time on Fluo's stream clock; everything is protected
    /// again under Fluo's SRTCP index. `None` if it is not str0m's SRTCP for these keys.
    pub fn reindex_str0m_rtcp(&mut self, datagram: &[u8], out: &mut Vec<u8>) -> Option<()> {
        self.tx.unprotect_rtcp(datagram, out)?;
        let mut at = 0;
        while at + 8 <= out.len() {
            let len = (usize::from(u16::from_be_bytes([out[at + 2], out[at + 3]])) + 1) * 4;
            if at + len > out.len() {
                return None;
            }
            if out[at + 1] == fluo_sfu::rtcp::PT_SR && len >= 28 {
                let ssrc = u32::from_be_bytes(out[at + 4..at + 8].try_into().ok()?);
                let ntp_bytes: [u8; 8] = out[at + 8..at + 16].try_into().ok()?;
                let ntp_time = u64::from_be_bytes(ntp_bytes);
                if let Some(s) = self.streams.iter().flatten().find(|s| s.ssrc == ssrc) {
                    if let Some((ts, sent)) = s.last {
                        let us = self.clock.micros_to(sent, from_ntp(ntp_time));
                        let ticks = us * i64::from(s.clock) / 1_000_000;
                        let rtp = ts.wrapping_add(ticks as i32 as u32);
                        out[at + 16..at + 20].copy_from_slice(&rtp.to_be_bytes());
                        out[at + 20..at + 24].copy_from_slice(&(s.packets as u32).to_be_bytes());
                        out[at + 24..at + 28].copy_from_slice(&(s.octets as u32).to_be_bytes());
                    }
                    self.srs[self.srs_at % 4] = ((ntp_time >> 16) as u32, Instant::now());
                    self.srs_at += 1;
                }
            }
            at += len;
        }
        self.tx.protect_rtcp(out)
    }
}

/// abs-send-time: 6.18 fixed-point seconds of the wall clock, 24 bits.
fn abs_send_time(clock: &Clock, now: Instant) -> [u8; 3] {
    let v = ((clock.ntp_of(now) >> 14) & 0x00ff_ffff) as u32;
    let b = v.to_be_bytes();
    [b[1], b[2], b[3]]
}

/// Writes an RTP header with one-byte extensions into `buf` (cleared); returns its length.
#[allow(clippy::too_many_arguments)]
fn write_header(
    buf: &mut Vec<u8>,
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    mid: Option<&(u8, Vec<u8>)>,
    abs: Option<(u8, [u8; 3])>,
    copy: &[u8; 15],
    src_ext: &[u8],
) -> usize {
    buf.clear();
    buf.extend_from_slice(&[0x80, (u8::from(marker) << 7) | (pt & 0x7f)]);
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(&ts.to_be_bytes());
    buf.extend_from_slice(&ssrc.to_be_bytes());
    let has_copy = !src_ext.is_empty() && copy.iter().any(|&c| c != 0);
    if mid.is_none() && abs.is_none() && !has_copy {
        return 12;
    }
    buf[0] |= 0x10;
    buf.extend_from_slice(&[0xbe, 0xde, 0, 0]);
    if let Some((id, m)) = mid {
        let len = m.len().clamp(1, 16);
        buf.push((id << 4) | (len as u8 - 1));
        buf.extend_from_slice(&m[..len]);
    }
    if let Some((id, v)) = abs {
        buf.push((id << 4) | 2);
        buf.extend_from_slice(&v);
    }
    if has_copy {
        // RFC 8285 one-byte elements: id (4 bits), len - 1 (4 bits), data; 0 is padding.
        let mut i = 0;
        while i < src_ext.len() {
            let b = src_ext[i];
            if b == 0 {
                i += 1;
                continue;
            }
            let (id, len) = (b >> 4, usize::from(b & 0xf) + 1);
            if id == 15 || i + 1 + len > src_ext.len() {
                break;
            }
            let to = copy[usize::from(id)];
            if to != 0 {
                buf.push((to << 4) | (b & 0xf));
                buf.extend_from_slice(&src_ext[i + 1..i + 1 + len]);
            }
            i += 1 + len;
        }
    }
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
    let words = ((buf.len() - 16) / 4) as u16;
    buf[14..16].copy_from_slice(&words.to_be_bytes());
    buf.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_with_mid_abs_send_time_and_a_copied_extension_parses_back() {
        let mut buf = Vec::with_capacity(1500);
        let mut copy = [0u8; 15];
        copy[1] = 3; // publisher's audio level (1) -> viewer's 3
        let src_ext = [0x10, 0x85, 0x50, 0xaa, 0, 0, 0, 0]; // id 1 len 1; id 5 len 1
        let mid = (9, b"1".to_vec());
        let n = write_header(
            &mut buf,
            true,
            111,
            7,
            9000,
            0xabcd,
            Some(&mid),
            Some((2, [1, 2, 3])),
            &copy,
            &src_ext,
        );
        assert_eq!(n % 4, 0);
        buf.extend_from_slice(b"payload");
        let p = RtpPacket::parse(&buf).unwrap();
        assert!(p.marker());
        assert_eq!(
            (p.payload_type(), p.sequence(), p.timestamp(), p.ssrc()),
            (111, 7, 9000, 0xabcd)
        );
        assert_eq!(p.payload(), b"payload");
        let (profile, data) = p.extension().unwrap();
        assert_eq!(profile, 0xbede);
        // mid "1" (id 9), abs-send-time (id 2), audio level remapped to 3; id 5 dropped.
        assert_eq!(data, &[0x90, b'1', 0x22, 1, 2, 3, 0x30, 0x85]);
    }

    #[test]
    fn ntp_round_trips_within_a_microsecond() {
        let t = SystemTime::now();
        let back = from_ntp(ntp(t));
        let d = t.duration_since(back).unwrap_or_else(|e| e.duration());
        assert!(d < Duration::from_micros(1), "{d:?}");
    }
}
