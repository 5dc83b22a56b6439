//! One outgoing stream of a viewer: its identity on the wire (SSRC, payload type, RTX), the
//! rewriter from the source's numbering, the bound on resends, and the statistics getStats
//! reports for it (what str0m's `MediaEgressStats` would say, which str0m never emits for a
//! stream it did not send).

use crate::packet::ExtPlan;
use crate::replay::ReplayWindow;
use fluo_sfu::{CodecName, PictureIds, Rewriter};
use std::time::{Duration, Instant};

/// The RTX stream of a video stream (RFC 4588), when the viewer negotiated one.
#[derive(Debug, Clone, Copy)]
pub struct Rtx {
    /// The RTX SSRC str0m announced.
    pub ssrc: u32,
    /// The RTX payload type the viewer accepted for the stream's codec.
    pub pt: u8,
    pub(crate) ext_seq: u64,
    pub(crate) acked: bool,
}

impl Rtx {
    /// An RTX stream starting at sequence number 1.
    pub fn new(ssrc: u32, pt: u8) -> Rtx {
        Rtx {
            ssrc,
            pt,
            ext_seq: 0,
            acked: false,
        }
    }
}

/// str0m's default bound on resends: none once they are more than 15 % of the bytes sent in
/// the last second (`DEFAULT_RTX_RATIO_CAP`, the value fluo-rtc gives `set_rtx_cache`).
pub const DEFAULT_RTX_RATIO_CAP: f32 = 0.15;

const BUCKETS: usize = 10;
const BUCKET: Duration = Duration::from_millis(100);

/// Bytes sent and resent over the last second, in ten 100 ms buckets (no allocation).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RtxBudget {
    sent: [u32; BUCKETS],
    resent: [u32; BUCKETS],
    at: usize,
    since: Option<Instant>,
}

impl RtxBudget {
    fn roll(&mut self, now: Instant) {
        let Some(since) = self.since else {
            self.since = Some(now);
            return;
        };
        let steps = (now.saturating_duration_since(since).as_millis() / BUCKET.as_millis()) as u64;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(BUCKETS as u64) {
            self.at = (self.at + 1) % BUCKETS;
            self.sent[self.at] = 0;
            self.resent[self.at] = 0;
        }
        self.since = Some(since + BUCKET * steps as u32);
    }

    pub(crate) fn sent(&mut self, now: Instant, bytes: usize) {
        self.roll(now);
        self.sent[self.at] = self.sent[self.at].saturating_add(bytes as u32);
    }

    pub(crate) fn resent(&mut self, now: Instant, bytes: usize) {
        self.roll(now);
        self.resent[self.at] = self.resent[self.at].saturating_add(bytes as u32);
    }

    /// Whether resends are below `cap` of what was sent and resent in the last second.
    pub(crate) fn allows(&mut self, now: Instant, cap: f32) -> bool {
        self.roll(now);
        let sent: u64 = self.sent.iter().map(|&b| u64::from(b)).sum();
        let resent: u64 = self.resent.iter().map(|&b| u64::from(b)).sum();
        let total = sent + resent;
        total == 0 || (resent as f32 / total as f32) <= cap
    }
}

/// The peer's last reception report on a stream (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerReport {
    /// Cumulative packets lost (24-bit signed on the wire).
    pub packets_lost: i32,
    /// Highest sequence number received, extended against what Fluo sent.
    pub highest_seq: u64,
    /// Interarrival jitter, in the stream's RTP clock units.
    pub jitter: u32,
    /// The fraction lost since the previous report, 0-255.
    pub fraction_lost: u8,
}

/// What getStats reports about one outgoing stream ([`StreamOut::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Packets sent, retransmissions included.
    pub packets: u64,
    /// Payload bytes sent, retransmissions included.
    pub bytes: u64,
    /// Retransmitted packets (RTX).
    pub packets_resent: u64,
    /// Retransmitted payload bytes.
    pub bytes_resent: u64,
    /// NACK packets received for the stream (as str0m counts them).
    pub nacks: u64,
    /// Sequence numbers those NACKs asked for.
    pub nacked_packets: u64,
    /// Asked-for packets not resent because resends were above the ratio cap.
    pub resends_capped: u64,
    /// PLIs received.
    pub plis: u64,
    /// FIRs received.
    pub firs: u64,
    /// Round trip from the peer's last report on this stream with a sender report time.
    pub rtt: Option<Duration>,
    /// The peer's last reception report.
    pub report: Option<PeerReport>,
}

/// One outgoing stream of a viewer.
#[derive(Debug)]
pub struct StreamOut {
    /// The SSRC str0m announced for the viewer's m-section.
    pub ssrc: u32,
    /// The payload type the viewer accepted.
    pub pt: u8,
    /// The RTP clock rate.
    pub clock: u32,
    /// The RTX stream, if negotiated.
    pub rtx: Option<Rtx>,
    /// The header extensions the viewer negotiated.
    pub exts: ExtPlan,
    /// Resends stop above this share of the bytes of the last second (`None`: no bound).
    pub rtx_ratio_cap: Option<f32>,
    pub(crate) rewriter: Option<Rewriter>,
    /// Its VP8 / VP9 picture ids across simulcast layer switches, and the codec they were
    /// rewritten for since the last switch point (`None`: the source's are sent as they are).
    pub(crate) ids: PictureIds,
    pub(crate) ids_codec: Option<CodecName>,
    /// Extended sequence number (ROC << 16 | SEQ) of the last packet; `None` before the
    /// first.
    pub(crate) ext_seq: Option<u64>,
    /// The indices protected so far: one is never protected twice (a duplicate from the
    /// source would otherwise reuse a nonce).
    pub(crate) sent: ReplayWindow,
    pub(crate) acked: bool,
    /// RTP time and send time of the last packet (for sender reports).
    pub(crate) last: Option<(u32, Instant)>,
    pub(crate) budget: RtxBudget,
    pub(crate) stats: StreamStats,
    /// The marker bit of the last 512 packets sent, by sequence number: a resend carries the
    /// marker the packet was sent with (an SVC viewer's is set where its layers end, not
    /// where the source's was).
    pub(crate) markers: [u64; 8],
}

/// How many of the last packets sent [`StreamOut`] keeps the marker bit of.
const MARKERS_KEPT: u64 = 512;

impl StreamOut {
    /// A stream that has sent nothing yet.
    pub fn new(ssrc: u32, pt: u8, clock: u32, rtx: Option<Rtx>, exts: ExtPlan) -> StreamOut {
        StreamOut {
            ssrc,
            pt,
            clock,
            rtx,
            exts,
            rtx_ratio_cap: Some(DEFAULT_RTX_RATIO_CAP),
            rewriter: None,
            ids: PictureIds::default(),
            ids_codec: None,
            ext_seq: None,
            sent: ReplayWindow::new(),
            acked: false,
            last: None,
            budget: RtxBudget::default(),
            stats: StreamStats::default(),
            markers: [0; 8],
        }
    }

    /// The extended sequence number of the last packet sent.
    pub fn ext_seq(&self) -> Option<u64> {
        self.ext_seq
    }

    /// The statistics of the stream.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Whether the viewer has bound the SSRC (a receiver report named it): MID is no
    /// longer sent.
    pub fn acked(&self) -> bool {
        self.acked
    }

    /// Maps the source's numbering afresh from the next packet (a new source, or the
    /// publisher restarted): sequence and timestamp continue without a jump for the viewer.
    pub fn resync(&mut self) {
        if let Some(r) = self.rewriter.as_mut() {
            r.resync();
        }
        self.ids.resync();
    }

    /// The source's packet `seq` (of `ssrc`) is not sent to this viewer (an SVC layer above
    /// its own): the packets after it go out one lower ([`Rewriter::skip`]), NACKs still map
    /// to the packets sent.
    pub fn skip(&mut self, ssrc: u32, seq: u16) -> bool {
        self.rewriter.as_mut().is_some_and(|r| r.skip(ssrc, seq))
    }

    /// The packet of extended sequence number `index` is being sent with `marker` (before
    /// [`StreamOut::ext_seq`] moves to it). The numbers passed over since the highest sent (a
    /// hole) hold no marker: their slots are cleared, so that none says what the packet 512
    /// numbers before said.
    pub(crate) fn sent_marker(&mut self, index: u64, marker: bool) {
        if let Some(top) = self.ext_seq {
            for i in (top + 1..index).take(MARKERS_KEPT as usize) {
                self.set_marker(i, false);
            }
        }
        self.set_marker(index, marker);
    }

    fn set_marker(&mut self, index: u64, marker: bool) {
        let (word, bit) = ((index >> 6) as usize & 7, index & 63);
        self.markers[word] = self.markers[word] & !(1 << bit) | u64::from(marker) << bit;
    }

    /// Whether the packet of extended sequence number `index` went with the marker bit; false
    /// for one more than [`MARKERS_KEPT`] behind the highest sent (its slot is a later one's).
    pub(crate) fn marker_of(&self, index: u64) -> bool {
        let kept = self
            .ext_seq
            .is_some_and(|top| index <= top && top - index < MARKERS_KEPT);
        kept && self.markers[(index >> 6) as usize & 7] & (1 << (index & 63)) != 0
    }

    pub(crate) fn record_report(&mut self, block: &fluo_sfu::rtcp::ReportBlock) {
        // The receiver's extended highest sequence number counts cycles from the first packet
        // it got, which Fluo sends with a ROC of 0 (see `Viewer::forward`): the same numbering
        // as `ext_seq`.
        self.stats.report = Some(PeerReport {
            packets_lost: block.cumulative_lost,
            highest_seq: u64::from(block.highest_seq),
            jitter: block.jitter,
            fraction_lost: block.fraction_lost,
        });
        self.acked = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_told_only_of_a_packet_sent_among_the_last_512() {
        let mut s = StreamOut::new(1, 96, 90_000, None, ExtPlan::default());
        let send = |s: &mut StreamOut, i: u64| {
            s.sent_marker(i, i % 10 == 7);
            s.ext_seq = Some(i);
        };
        (0..=600).for_each(|i| send(&mut s, i));
        assert!(s.marker_of(597) && !s.marker_of(598) && s.marker_of(97));
        // 5's slot is 517's (a marker): 5 is too old to say.
        assert!(!s.marker_of(5), "another packet's marker");
        // A hole (605-609 not sent): no marker, though 97's slot is 609's.
        send(&mut s, 604);
        send(&mut s, 610);
        assert!(!s.marker_of(609) && !s.marker_of(607), "a number not sent");
        assert!(!s.marker_of(611), "not sent yet");
    }

    #[test]
    fn resends_stop_above_the_cap_and_resume_as_the_second_passes() {
        let t0 = Instant::now();
        let mut b = RtxBudget::default();
        for i in 0..10u64 {
            b.sent(t0 + Duration::from_millis(i * 100), 10_000);
        }
        let t = t0 + Duration::from_millis(950);
        assert!(b.allows(t, 0.15));
        b.resent(t, 15_000); // 15 000 / 115 000 = 13 %
        assert!(b.allows(t, 0.15));
        b.resent(t, 5_000); // 20 000 / 120 000 = 16.7 %
        assert!(!b.allows(t, 0.15));
        // A second later those resends have left the window.
        let later = t + Duration::from_millis(1100);
        b.sent(later, 1000);
        assert!(b.allows(later, 0.15));
        assert_eq!(b.resent.iter().sum::<u32>(), 0);
    }

    #[test]
    fn the_peers_report_is_kept_with_its_sequence_extended() {
        let mut s = StreamOut::new(1, 96, 90_000, None, ExtPlan::default());
        let block = fluo_sfu::rtcp::ReportBlock {
            ssrc: 1,
            fraction_lost: 25,
            cumulative_lost: -2,
            highest_seq: 0x0001_0003,
            jitter: 40,
            last_sr: 0,
            delay_since_last_sr: 0,
        };
        s.record_report(&block);
        let r = s.stats().report.unwrap();
        assert_eq!(
            (r.packets_lost, r.highest_seq, r.jitter, r.fraction_lost),
            (-2, 0x1_0003, 40, 25)
        );
        assert!(s.acked());
    }
}
