//! One viewer's egress: its outgoing streams, its SRTP keys, and the three places where it
//! meets str0m's RTCP:
//!
//! - media: [`Viewer::forward`] rewrites a source packet's header into a reused buffer of a
//!   [`Batch`], copies the payload, protects it in place; nothing reaches str0m;
//! - the viewer's RTCP: [`Viewer::read_viewer_rtcp`] decrypts it (the viewer's keys, a replay
//!   window), answers NACKs from the source's shared cache as RTX (within the RTX ratio cap),
//!   keeps the viewer's reports, PLI/FIR/NACK counts and round trip per stream. It gives back
//!   what str0m should read: the same datagram, less the report blocks about Fluo's streams
//!   (str0m would otherwise keep one loss entry per report for ever on a stream it never sent:
//!   `StreamTxStats::fill` returns before clearing them while its byte count is 0);
//! - str0m's RTCP: [`Viewer::reindex_str0m_rtcp`] decrypts what str0m wrote (Fluo holds the
//!   same write keys), puts the counts and RTP time of what Fluo sent into the sender reports
//!   of Fluo's streams, and protects it again with Fluo's SRTCP index: one index sequence per
//!   key, whatever SSRC str0m puts first.

use crate::batch::{Batch, Path};
use crate::clock::{from_ntp, Clock};
use crate::packet::{write_header, Header, SourcePacket};
use crate::replay::{estimate_index, ReplayWindow};
use crate::sent::SentLog;
use crate::source::Source;
use crate::srtp::{SrtpContext, SrtpError};
use crate::stream::StreamOut;
use fluo_sfu::rtcp::{ReportBlock, RtcpCompound, RtcpPacket, PT_RR, PT_SR};
use fluo_sfu::{MediaKind, Rewriter};
use std::time::{Duration, Instant};

mod padding;
pub use padding::{MAX_PADDING, MIN_PADDING};

fn slot(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

/// What one RTCP datagram from the viewer contained.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ViewerRtcp {
    /// Sequence numbers NACKed on Fluo's video stream.
    pub nacked: usize,
    /// RTX packets queued in answer.
    pub resent: usize,
    /// PLIs and FIRs on Fluo's streams (str0m raises them as `KeyframeRequest`).
    pub keyframe_requests: usize,
    /// Report blocks about Fluo's streams (taken out of what str0m reads).
    pub reports: usize,
    /// Transport-wide feedback messages read into the sent-packet log (only with one).
    pub feedback: usize,
    /// The bitrate (bit/s) of the last REMB naming one of Fluo's streams or their RTX
    /// streams anywhere in its list. str0m looks at a REMB's first SSRC only, and Chromium
    /// lists the SSRCs it receives in ascending order, the RTX stream's among them while
    /// retransmissions arrive: when that one is the lower, str0m drops every REMB.
    pub remb: Option<u64>,
}

/// What the viewer's egress sent and read, for the transport statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ViewerStats {
    /// Datagrams queued (media, RTX, Fluo's SRTCP).
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The viewer's SRTCP datagrams read.
    pub rtcp_read: u64,
    /// The viewer's SRTCP datagrams refused (authentication, replay, malformed).
    pub rtcp_refused: u64,
}

/// One viewer's egress state.
pub struct Viewer {
    tx: SrtpContext,
    rx: SrtpContext,
    path: Path,
    streams: [Option<StreamOut>; 2],
    clock: Clock,
    /// NTP middle 32 bits and send time of recent sender reports (round trip).
    srs: [(u32, Instant); 4],
    srs_at: usize,
    rtt: Option<Duration>,
    /// The viewer's SRTCP indices.
    replay: ReplayWindow,
    scratch: Vec<u8>,
    stats: ViewerStats,
    /// The last transport-wide sequence number written (one sequence for all streams).
    twcc: u16,
    /// No transport-wide sequence number is written, even where the extension was agreed
    /// (see [`Viewer::write_transport_cc`]).
    twcc_off: bool,
    /// What was sent by transport-wide sequence number, when the viewer's bandwidth is
    /// estimated (see [`Viewer::log_sent`]).
    log: Option<Box<SentLog>>,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("path", &self.path)
            .field("streams", &self.streams)
            .field("rtt", &self.rtt)
            .finish_non_exhaustive()
    }
}

impl Viewer {
    /// `tx`: the keys this side writes with (the same str0m uses); `rx`: the viewer's; `path`:
    /// where its datagrams go.
    pub fn new(tx: SrtpContext, rx: SrtpContext, path: Path, clock: Clock) -> Viewer {
        let now = Instant::now();
        Viewer {
            tx,
            rx,
            path,
            streams: [None, None],
            clock,
            srs: [(0, now); 4],
            srs_at: 0,
            rtt: None,
            replay: ReplayWindow::new(),
            scratch: Vec::with_capacity(1500),
            stats: ViewerStats::default(),
            twcc: 0,
            twcc_off: false,
            log: None,
        }
    }

    /// Records from now on what is sent with a transport-wide sequence number, and reads the
    /// viewer's transport-wide feedback against it ([`SentLog`], 8 KiB): for its send-side
    /// bandwidth estimate. Without this the feedback is not even parsed.
    pub fn log_sent(&mut self, epoch: Instant) {
        self.log
            .get_or_insert_with(|| Box::new(SentLog::new(epoch)));
    }

    /// Whether its packets carry the transport-wide sequence number, where the viewer agreed
    /// on the extension (they do unless told otherwise). Without it a browser returns no
    /// transport-wide feedback for them and, for video, REMB instead: Fluo's `--bwe auto`
    /// writes it only while the viewer's bandwidth is estimated.
    pub fn write_transport_cc(&mut self, on: bool) {
        self.twcc_off = !on;
    }

    /// Records no more (the estimate that read the log is gone).
    pub fn stop_logging_sent(&mut self) {
        self.log = None;
    }

    /// The sent-packet log, when [`Viewer::log_sent`] made one.
    pub fn sent_log(&mut self) -> Option<&mut SentLog> {
        self.log.as_deref_mut()
    }

    /// Where the viewer's datagrams go now.
    pub fn path(&self) -> Path {
        self.path
    }

    /// The viewer's selected pair changed (ICE), or its DSCP: later datagrams take `path`.
    pub fn set_path(&mut self, path: Path) {
        self.path = path;
    }

    /// The stream of `kind`, once set.
    pub fn stream(&self, kind: MediaKind) -> Option<&StreamOut> {
        self.streams[slot(kind)].as_ref()
    }

    /// The stream of `kind`, to change its plan after a renegotiation.
    pub fn stream_mut(&mut self, kind: MediaKind) -> Option<&mut StreamOut> {
        self.streams[slot(kind)].as_mut()
    }

    /// Sets (or removes) the stream of `kind`.
    pub fn set_stream(&mut self, kind: MediaKind, stream: Option<StreamOut>) {
        self.streams[slot(kind)] = stream;
    }

    /// The round trip from the viewer's last report on one of Fluo's sender reports.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// What the egress sent and read for this viewer.
    pub fn stats(&self) -> ViewerStats {
        self.stats
    }

    /// The SRTCP index Fluo's next RTCP packet gets.
    pub fn srtcp_index(&self) -> Option<u32> {
        self.tx.srtcp_index()
    }

    fn queued(&mut self, bytes: usize) {
        self.stats.datagrams += 1;
        self.stats.bytes += bytes as u64;
    }

    /// Sends `src` on this viewer's `kind` stream: header rewritten into the next buffer of
    /// `batch`, payload copied, protected in place. False if the viewer has no such stream,
    /// the rewriter drops the packet (old, or from before a source switch), or it is a
    /// duplicate of one already sent (protecting it again would reuse a nonce).
    pub fn forward(
        &mut self,
        now: Instant,
        kind: MediaKind,
        src: &SourcePacket,
        batch: &mut Batch,
    ) -> bool {
        let Some(s) = self.streams[slot(kind)].as_mut() else {
            return false;
        };
        let rw = s.rewriter.get_or_insert_with(|| {
            // Start low so the extended sequence never implies a rollover at the receiver.
            Rewriter::new(s.clock, s.ssrc, src.seq & 0x3fff, src.ts)
        });
        let Some(r) = rw.rewrite(now, src.ssrc, src.seq, src.ts) else {
            return false;
        };
        let index = estimate_index(s.ext_seq, r.seq);
        if !s.sent.check(index) {
            return false;
        }
        let buf = batch.next(self.path);
        let header = Header {
            marker: src.marker,
            pt: s.pt,
            seq: r.seq,
            ts: r.ts,
            ssrc: s.ssrc,
        };
        let abs = s.exts.abs_send_time.map(|_| self.clock.abs_send_time(now));
        let twcc = next_twcc(&mut self.twcc, self.twcc_off, s.exts.transport_cc);
        let hlen = write_header(buf, header, &s.exts, !s.acked, abs, twcc, src.ext);
        buf.extend_from_slice(src.payload);
        s.sent_marker(index, src.marker);
        s.ids_codec = src.picture_ids;
        if let Some(codec) = src.picture_ids {
            s.ids.rewrite(codec, &mut buf[hlen..]);
        }
        if self.tx.protect_rtp(buf, hlen, index).is_err() {
            batch.undo();
            return false;
        }
        let bytes = buf.len();
        record(&mut self.log, now, twcc, bytes);
        s.sent.accept(index);
        s.ext_seq = Some(s.ext_seq.map_or(index, |e| e.max(index)));
        s.stats.packets += 1;
        s.stats.bytes += src.payload.len() as u64;
        s.budget.sent(now, src.payload.len());
        s.last = Some((r.ts, now));
        self.queued(bytes);
        true
    }

    /// Reads an SRTCP datagram from the viewer. NACKs of the video stream are answered from
    /// `video_source`'s cache into `batch` (as RTX, when negotiated: str0m never resends
    /// without RTX either), reports and PLI/FIR/NACK counts are kept per stream, the round
    /// trip goes to the source's cache sizing. `for_str0m` gets what to hand str0m: the
    /// datagram without the report blocks about Fluo's streams (see the module).
    ///
    /// Refused (an `Err`, nothing changed) when it does not authenticate, replays an SRTCP
    /// index, or is malformed; hand str0m the datagram as it came then, str0m refuses it too.
    pub fn read_viewer_rtcp(
        &mut self,
        now: Instant,
        datagram: &[u8],
        video_source: Option<&mut Source>,
        batch: &mut Batch,
        for_str0m: &mut Vec<u8>,
    ) -> Result<ViewerRtcp, SrtpError> {
        let all = &mut |_: u32| true;
        self.read_viewer_rtcp_for(now, datagram, video_source, batch, for_str0m, all)
    }

    /// [`Viewer::read_viewer_rtcp`], where `for_str0m` also goes without the SDES packets
    /// that describe none of the sources `str0m_receives` names: str0m keeps a CNAME only for
    /// a stream it receives, and its parse of an SDES packet is costly (about 64 k
    /// instructions, then as much again to dispatch it: docs/perf.md, "Per-peer timers").
    pub fn read_viewer_rtcp_for(
        &mut self,
        now: Instant,
        datagram: &[u8],
        mut video_source: Option<&mut Source>,
        batch: &mut Batch,
        for_str0m: &mut Vec<u8>,
        str0m_receives: &mut dyn FnMut(u32) -> bool,
    ) -> Result<ViewerRtcp, SrtpError> {
        let mut plain = std::mem::take(&mut self.scratch);
        let result = self.read_plain(now, datagram, &mut plain, &mut video_source, batch);
        let result = result.and_then(|(index, seen)| {
            let ours = |ssrc: u32| self.is_ours(ssrc);
            if strip_report_blocks(&plain, ours, str0m_receives, for_str0m) > 0 {
                self.rx.seal_rtcp_at(for_str0m, index)?;
            } else {
                for_str0m.clear();
                for_str0m.extend_from_slice(datagram);
            }
            Ok(seen)
        });
        self.scratch = plain;
        match result {
            Ok(_) => self.stats.rtcp_read += 1,
            Err(_) => self.stats.rtcp_refused += 1,
        }
        result
    }

    fn is_ours(&self, ssrc: u32) -> bool {
        self.streams
            .iter()
            .flatten()
            .any(|s| s.ssrc == ssrc || s.rtx.is_some_and(|r| r.ssrc == ssrc))
    }

    fn read_plain(
        &mut self,
        now: Instant,
        datagram: &[u8],
        plain: &mut Vec<u8>,
        video_source: &mut Option<&mut Source>,
        batch: &mut Batch,
    ) -> Result<(u32, ViewerRtcp), SrtpError> {
        let index = self.rx.unprotect_rtcp(datagram, plain)?;
        if !self.replay.accept(u64::from(index)) {
            return Err(SrtpError::Replayed);
        }
        let mut seen = ViewerRtcp::default();
        for pkt in RtcpCompound::new(plain).map_while(Result::ok) {
            match pkt {
                RtcpPacket::ReceiverReport(rr) => {
                    for b in rr.reports() {
                        seen.reports += usize::from(self.report(now, &b, video_source));
                    }
                }
                RtcpPacket::SenderReport(sr) => {
                    for b in sr.reports() {
                        seen.reports += usize::from(self.report(now, &b, video_source));
                    }
                }
                RtcpPacket::Nack(n) => {
                    let source = video_source.as_deref();
                    let (asked, resent) =
                        self.answer_nack(now, n.media_ssrc, n.lost(), source, batch);
                    seen.nacked += asked;
                    seen.resent += resent;
                }
                RtcpPacket::Pli { media_ssrc, .. } => {
                    if let Some(s) = self
                        .streams
                        .iter_mut()
                        .flatten()
                        .find(|s| s.ssrc == media_ssrc)
                    {
                        s.stats.plis += 1;
                        seen.keyframe_requests += 1;
                    }
                }
                RtcpPacket::Fir(fir) => {
                    for s in self.streams.iter_mut().flatten() {
                        if fir.entries().any(|(ssrc, _)| ssrc == s.ssrc) {
                            s.stats.firs += 1;
                            seen.keyframe_requests += 1;
                        }
                    }
                }
                RtcpPacket::Remb(r) if r.ssrcs().any(|ssrc| self.is_ours(ssrc)) => {
                    seen.remb = Some(r.bitrate_bps);
                }
                RtcpPacket::TransportCc { fci, .. } => {
                    // Parsed only for an estimate: malformed feedback is left to str0m.
                    if let Some(log) = self.log.as_mut() {
                        seen.feedback += usize::from(log.feedback(now, fci).is_ok());
                    }
                }
                _ => {}
            }
        }
        Ok((index, seen))
    }

    /// A report block from the viewer: kept on its stream; the round trip when it answers one
    /// of Fluo's sender reports. True if it was about one of Fluo's streams.
    fn report(&mut self, now: Instant, b: &ReportBlock, source: &mut Option<&mut Source>) -> bool {
        let mut ours = false;
        let rtt = self.rtt_of(now, b);
        for s in self.streams.iter_mut().flatten() {
            if b.ssrc == s.ssrc {
                s.record_report(b);
                if rtt.is_some() {
                    s.stats.rtt = rtt;
                }
                ours = true;
            }
            if let Some(rtx) = s.rtx.as_mut().filter(|r| r.ssrc == b.ssrc) {
                rtx.acked = true;
                ours = true;
            }
        }
        if let (true, Some(rtt)) = (ours, rtt) {
            self.rtt = Some(rtt);
            if let Some(source) = source.as_deref_mut() {
                source.viewer_rtt(now, rtt);
            }
        }
        ours
    }

    /// RFC 3550 §6.4.1: now - LSR - DLSR, in 1/65536 s, for a block naming one of the
    /// sender reports Fluo sent recently.
    fn rtt_of(&self, now: Instant, b: &ReportBlock) -> Option<Duration> {
        if b.last_sr == 0 || !self.srs.iter().any(|(m, _)| *m == b.last_sr) {
            return None;
        }
        let now_mid = (self.clock.ntp_of(now) >> 16) as u32;
        let rtt = now_mid
            .wrapping_sub(b.last_sr)
            .wrapping_sub(b.delay_since_last_sr);
        (rtt < 0x8000_0000).then(|| Duration::from_micros(u64::from(rtt) * 1_000_000 / 65_536))
    }

    fn answer_nack(
        &mut self,
        now: Instant,
        media_ssrc: u32,
        lost: impl Iterator<Item = u16>,
        source: Option<&Source>,
        batch: &mut Batch,
    ) -> (usize, usize) {
        let Some(s) = self.streams[slot(MediaKind::Video)]
            .as_mut()
            .filter(|s| s.ssrc == media_ssrc)
        else {
            return (0, 0);
        };
        s.stats.nacks += 1;
        let (mut asked, mut resent, mut bytes_queued) = (0, 0, 0);
        for out_seq in lost {
            asked += 1;
            s.stats.nacked_packets += 1;
            let (Some(source), Some(rw), Some(mut rtx)) = (source, s.rewriter.as_ref(), s.rtx)
            else {
                continue;
            };
            let Some(p) = rw
                .original_seq(out_seq)
                .and_then(|orig| source.get(now, orig))
                .and_then(SourcePacket::parse)
            else {
                continue;
            };
            let Some(r) = rw.rewrite_retransmission(p.ssrc, p.seq, p.ts) else {
                continue;
            };
            if let Some(cap) = s.rtx_ratio_cap {
                if !s.budget.allows(now, cap) {
                    s.stats.resends_capped += 1;
                    continue;
                }
            }
            rtx.ext_seq += 1;
            let buf = batch.next(self.path);
            let header = Header {
                marker: p.marker || s.marker_of(estimate_index(s.ext_seq, out_seq)),
                pt: rtx.pt,
                seq: rtx.ext_seq as u16,
                ts: r.ts,
                ssrc: rtx.ssrc,
            };
            let abs = s.exts.abs_send_time.map(|_| self.clock.abs_send_time(now));
            let twcc = next_twcc(&mut self.twcc, self.twcc_off, s.exts.transport_cc);
            let hlen = write_header(buf, header, &s.exts, !rtx.acked, abs, twcc, p.ext);
            // RFC 4588 §4: the original sequence number, then the original payload (its
            // picture ids as they were sent).
            buf.extend_from_slice(&r.seq.to_be_bytes());
            buf.extend_from_slice(p.payload);
            if let Some(codec) = s.ids_codec {
                s.ids.rewrite_again(codec, &mut buf[hlen + 2..]);
            }
            if self.tx.protect_rtp(buf, hlen, rtx.ext_seq).is_err() {
                batch.undo();
                continue;
            }
            bytes_queued += buf.len();
            record(&mut self.log, now, twcc, buf.len());
            s.stats.packets += 1;
            s.stats.packets_resent += 1;
            s.stats.bytes += p.payload.len() as u64 + 2;
            s.stats.bytes_resent += p.payload.len() as u64 + 2;
            s.budget.resent(now, p.payload.len() + 2);
            s.rtx = Some(rtx);
            resent += 1;
        }
        self.stats.datagrams += resent as u64;
        self.stats.bytes += bytes_queued as u64;
        (asked, resent)
    }

    /// Takes an SRTCP datagram str0m wrote for this viewer and queues it in `batch` as Fluo
    /// sends it: sender reports of Fluo's streams carry Fluo's packet and octet counts and
    /// the RTP time of str0m's NTP time on Fluo's stream clock; everything is protected
    /// again under Fluo's SRTCP index. An `Err` (nothing queued) if it is not str0m's SRTCP
    /// for these keys.
    pub fn reindex_str0m_rtcp(
        &mut self,
        datagram: &[u8],
        batch: &mut Batch,
    ) -> Result<(), SrtpError> {
        let out = batch.next(self.path);
        if let Err(e) = self.tx.unprotect_rtcp(datagram, out) {
            batch.undo();
            return Err(e);
        }
        let mut at = 0;
        while at + 8 <= out.len() {
            let len = (usize::from(u16::from_be_bytes([out[at + 2], out[at + 3]])) + 1) * 4;
            if at + len > out.len() {
                break;
            }
            if out[at + 1] == PT_SR && len >= 28 {
                let word =
                    |i: usize| u32::from_be_bytes([out[i], out[i + 1], out[i + 2], out[i + 3]]);
                let ssrc = word(at + 4);
                let ntp_time = (u64::from(word(at + 8)) << 32) | u64::from(word(at + 12));
                if let Some(s) = self.streams.iter().flatten().find(|s| s.ssrc == ssrc) {
                    if let Some((ts, sent)) = s.last {
                        let us = self.clock.micros_to(sent, from_ntp(ntp_time));
                        let ticks = (i128::from(us) * i128::from(s.clock) / 1_000_000) as i64;
                        let rtp = ts.wrapping_add(ticks as u32);
                        out[at + 16..at + 20].copy_from_slice(&rtp.to_be_bytes());
                        out[at + 20..at + 24]
                            .copy_from_slice(&(s.stats.packets as u32).to_be_bytes());
                        out[at + 24..at + 28]
                            .copy_from_slice(&(s.stats.bytes as u32).to_be_bytes());
                    }
                    self.srs[self.srs_at % self.srs.len()] =
                        ((ntp_time >> 16) as u32, Instant::now());
                    self.srs_at = self.srs_at.wrapping_add(1);
                }
            }
            at += len;
        }
        if let Err(e) = self.tx.protect_rtcp(out) {
            batch.undo();
            return Err(e);
        }
        let bytes = out.len();
        self.queued(bytes);
        Ok(())
    }
}

/// The next transport-wide sequence number after `last`, for a packet of a stream whose plan
/// has the extension at `planned`: none without it, or while the numbers are `off`
/// ([`Viewer::write_transport_cc`]).
fn next_twcc(last: &mut u16, off: bool, planned: Option<u8>) -> Option<u16> {
    planned.filter(|_| !off)?;
    *last = last.wrapping_add(1);
    Some(*last)
}

/// A packet of `bytes` sent at `now` with transport-wide sequence number `twcc`, into the
/// sent-packet log when there is one.
fn record(log: &mut Option<Box<SentLog>>, now: Instant, twcc: Option<u16>, bytes: usize) {
    if let (Some(log), Some(seq)) = (log.as_mut(), twcc) {
        log.sent(now, seq, bytes);
    }
}

/// Copies the compound RTCP packet `plain` into `out` without the report blocks (of SRs and
/// RRs) about SSRCs `ours` names, fixing counts and lengths, and without the SDES packets
/// whose chunks all describe sources `keep_sdes` does not name (unless nothing else is left);
/// returns how many blocks and packets went. What does not parse as RTCP is copied unchanged
/// (str0m judges it).
fn strip_report_blocks(
    plain: &[u8],
    ours: impl Fn(u32) -> bool,
    keep_sdes: &mut dyn FnMut(u32) -> bool,
    out: &mut Vec<u8>,
) -> usize {
    out.clear();
    let mut at = 0;
    let mut removed = 0;
    while let Some(head) = plain.get(at..at + 4) {
        let len = (usize::from(u16::from_be_bytes([head[2], head[3]])) + 1) * 4;
        let Some(pkt) = plain.get(at..at + len) else {
            break;
        };
        let count = usize::from(pkt[0] & 0x1f);
        if pkt[1] == PT_SDES && sdes_ssrcs(pkt).is_some_and(|mut s| !s.any(&mut *keep_sdes)) {
            removed += 1;
            at += len;
            continue;
        }
        let fixed = match pkt[1] {
            PT_SR => 28,
            PT_RR => 8,
            _ => 0,
        };
        let blocks_end = fixed + 24 * count;
        if fixed == 0 || pkt.len() < blocks_end {
            out.extend_from_slice(pkt);
            at += len;
            continue;
        }
        let start = out.len();
        out.extend_from_slice(&pkt[..fixed]);
        let mut kept = 0u8;
        for b in pkt[fixed..blocks_end].chunks_exact(24) {
            if ours(u32::from_be_bytes([b[0], b[1], b[2], b[3]])) {
                removed += 1;
            } else {
                out.extend_from_slice(b);
                kept += 1;
            }
        }
        // Profile-specific extensions and padding stay.
        out.extend_from_slice(&pkt[blocks_end..]);
        out[start] = (pkt[0] & 0xe0) | kept;
        let words = ((out.len() - start) / 4 - 1) as u16;
        out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
        at += len;
    }
    out.extend_from_slice(plain.get(at..).unwrap_or_default());
    if out.is_empty() && !plain.is_empty() {
        // Only SDES (a reduced-size packet, RFC 5506): an empty SRTCP packet would not seal;
        // str0m gets it as it came.
        out.extend_from_slice(plain);
        return 0;
    }
    removed
}

/// RTCP's SDES packet type (RFC 3550, 6.5).
const PT_SDES: u8 = 202;

/// The SSRCs of the chunks of the SDES packet `pkt` (its header included), or `None` when
/// it does not parse (the packet is kept then).
fn sdes_ssrcs(pkt: &[u8]) -> Option<impl Iterator<Item = u32> + '_> {
    let count = usize::from(pkt[0] & 0x1f);
    let mut at = 4;
    let mut ssrcs = [0u32; 31];
    for slot in ssrcs.iter_mut().take(count) {
        let ssrc = pkt.get(at..at + 4)?;
        *slot = u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]);
        at += 4;
        // Items (type, length, text) up to the null item, then padding to a word.
        loop {
            match *pkt.get(at)? {
                0 => break,
                _ => at += 2 + usize::from(*pkt.get(at + 1)?),
            }
        }
        at = (at + 4) & !3;
    }
    (count > 0 && at <= pkt.len()).then(move || ssrcs.into_iter().take(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rr(sender: u32, blocks: &[u32]) -> Vec<u8> {
        let mut v = vec![0x80 | blocks.len() as u8, PT_RR, 0, 0];
        v.extend_from_slice(&sender.to_be_bytes());
        for &b in blocks {
            v.extend_from_slice(&b.to_be_bytes());
            v.extend_from_slice(&[7; 20]);
        }
        let words = (v.len() / 4 - 1) as u16;
        v[2..4].copy_from_slice(&words.to_be_bytes());
        v
    }

    #[test]
    fn report_blocks_about_fluos_streams_are_taken_out_and_the_rest_kept() {
        let mut plain = rr(9, &[1, 2, 3]);
        plain.extend_from_slice(&[0x81, 206, 0, 2, 0, 0, 0, 9, 0, 0, 0, 1]); // PLI on 1
        let mut out = vec![];
        assert_eq!(
            strip_report_blocks(&plain, |s| s == 1 || s == 3, &mut |_| true, &mut out),
            2
        );
        let pkts: Vec<_> = RtcpCompound::new(&out).map(Result::unwrap).collect();
        assert_eq!(pkts.len(), 2);
        let RtcpPacket::ReceiverReport(r) = pkts[0] else {
            panic!("{:?}", pkts[0])
        };
        assert_eq!(r.reports().map(|b| b.ssrc).collect::<Vec<_>>(), vec![2]);
        assert!(matches!(pkts[1], RtcpPacket::Pli { media_ssrc: 1, .. }));
        // Nothing of ours: unchanged. Garbage: copied as it came.
        assert_eq!(
            strip_report_blocks(&plain, |_| false, &mut |_| true, &mut out),
            0
        );
        assert_eq!(out, plain);
        let junk = [0x81, 201, 0xff, 0xff, 1, 2];
        assert_eq!(
            strip_report_blocks(&junk, |_| true, &mut |_| true, &mut out),
            0
        );
        assert_eq!(out, junk);
    }

    /// An SDES packet: one chunk per (SSRC, CNAME), padded as RFC 3550 6.5 says.
    fn sdes(chunks: &[(u32, &str)]) -> Vec<u8> {
        let mut v = vec![0x80 | chunks.len() as u8, PT_SDES, 0, 0];
        for (ssrc, cname) in chunks {
            v.extend_from_slice(&ssrc.to_be_bytes());
            v.extend_from_slice(&[1, cname.len() as u8]);
            v.extend_from_slice(cname.as_bytes());
            v.push(0);
            while v.len() % 4 != 0 {
                v.push(0);
            }
        }
        let words = (v.len() / 4 - 1) as u16;
        v[2..4].copy_from_slice(&words.to_be_bytes());
        v
    }

    #[test]
    fn sdes_goes_unless_it_describes_a_source_str0m_receives() {
        let report = rr(9, &[2]);
        let pli = [0x81, 206, 0, 2, 0, 0, 0, 9, 0, 0, 0, 1];
        for cname in ["", "abc", "abcd", "a-longer-cname-of-the-viewer"] {
            let mut plain = report.clone();
            plain.extend_from_slice(&sdes(&[(9, cname), (10, "x")]));
            plain.extend_from_slice(&pli);
            let mut out = vec![];
            // The viewer's own sources only (a receive-only peer): the SDES goes, the rest stays.
            let n = strip_report_blocks(&plain, |_| false, &mut |s| s == 7, &mut out);
            assert_eq!(n, 1, "cname {cname:?}");
            let mut expected = report.clone();
            expected.extend_from_slice(&pli);
            assert_eq!(out, expected, "cname {cname:?}");
            // One chunk names a source str0m receives (the peer sends media): all of it stays.
            let n = strip_report_blocks(&plain, |_| false, &mut |s| s == 10, &mut out);
            assert_eq!((n, &out), (0, &plain), "cname {cname:?}");
        }
        // An SDES packet alone (reduced-size RTCP): kept, an empty packet would not seal.
        let alone = sdes(&[(9, "abc")]);
        let mut out = vec![];
        let n = strip_report_blocks(&alone, |_| false, &mut |_| false, &mut out);
        assert_eq!((n, &out), (0, &alone));
        // A chunk that runs past its packet: kept for str0m to judge.
        let mut bad = sdes(&[(9, "abcdefg")]);
        bad[9] = 40;
        let mut plain = report.clone();
        plain.extend_from_slice(&bad);
        let mut out = vec![];
        assert_eq!(
            strip_report_blocks(&plain, |_| false, &mut |_| false, &mut out),
            0
        );
        assert_eq!(out, plain);
    }
}
