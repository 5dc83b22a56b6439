//! Padding for the viewer's bandwidth probes (`--bwe on`; docs/simulcast.md, "Probing"):
//! padding-only RTP packets on the video stream's RTX SSRC, each with a transport-wide
//! sequence number, recorded in the sent-packet log with the probe cluster's id so that the
//! estimator's probe estimator can measure the link with them.
//!
//! A padding-only RTX packet (RFC 3550 §5.1 padding, no payload) is what libwebrtc sends
//! itself when it has no media to resend: a receiver counts it for its transport-wide
//! feedback and drops it (libwebrtc's `RtxReceiveStream` ignores an RTX payload shorter
//! than the original sequence number; str0m drops "RTX packets that are just empty
//! padding"); it never reaches the media stream's jitter buffer or NACK list, whose
//! sequence numbers it does not take. Without RTX nothing is sent (see [`Viewer::pad`]).

use super::{record, slot, Viewer};
use crate::batch::Batch;
use crate::packet::{write_header, ExtBlock, Header};
use fluo_sfu::MediaKind;
use std::time::Instant;

/// The most padding one packet carries (its last byte counts them: RFC 3550 §5.1).
pub const MAX_PADDING: usize = 255;

/// The least: the count byte and a few more (a packet much smaller is mostly header).
pub const MIN_PADDING: usize = 16;

impl Viewer {
    /// Whether [`Viewer::pad`] can send: the viewer has a video stream with RTX and the
    /// transport-wide sequence number extension, written ([`Viewer::write_transport_cc`];
    /// else no probe can be measured).
    pub fn can_pad(&self) -> bool {
        self.streams[slot(MediaKind::Video)]
            .as_ref()
            .is_some_and(|s| s.rtx.is_some() && s.exts.transport_cc.is_some() && !self.twcc_off)
    }

    /// Queues into `batch` one padding-only packet of `padding` bytes of padding (clamped to
    /// [`MIN_PADDING`]-[`MAX_PADDING`]) on the video stream's RTX SSRC, recorded in the
    /// sent-packet log (when there is one) as part of probe cluster `cluster`. Its size on
    /// the wire, or `None` when the viewer cannot take one ([`Viewer::can_pad`]) or it could
    /// not be protected. Nothing is allocated (the batch's buffers are reused).
    pub fn pad(
        &mut self,
        now: Instant,
        padding: usize,
        cluster: Option<i32>,
        batch: &mut Batch,
    ) -> Option<usize> {
        if self.twcc_off {
            return None;
        }
        let s = self.streams[slot(MediaKind::Video)].as_mut()?;
        s.exts.transport_cc?;
        let mut rtx = s.rtx?;
        let padding = padding.clamp(MIN_PADDING, MAX_PADDING);
        rtx.ext_seq += 1;
        let header = Header {
            marker: false,
            pt: rtx.pt,
            seq: rtx.ext_seq as u16,
            // The last media packet's time (libwebrtc's choice too); any would do.
            ts: s.last.map_or(0, |(ts, _)| ts),
            ssrc: rtx.ssrc,
        };
        let abs = s.exts.abs_send_time.map(|_| self.clock.abs_send_time(now));
        self.twcc = self.twcc.wrapping_add(1);
        let twcc = self.twcc;
        let buf = batch.next(self.path);
        let hlen = write_header(
            buf,
            header,
            &s.exts,
            !rtx.acked,
            abs,
            Some(twcc),
            ExtBlock::default(),
        );
        buf[0] |= 0x20;
        buf.resize(hlen + padding - 1, 0);
        buf.push(padding as u8);
        if self.tx.protect_rtp(buf, hlen, rtx.ext_seq).is_err() {
            batch.undo();
            return None;
        }
        let bytes = buf.len();
        s.rtx = Some(rtx);
        record(&mut self.log, now, Some(twcc), bytes);
        if let (Some(log), Some(id)) = (self.log.as_mut(), cluster) {
            log.mark_probe(twcc, id);
        }
        self.queued(bytes);
        Some(bytes)
    }
}
