//! Zero-copy walking of RTCP compound packets (RFC 3550, RFC 4585, RFC 5104, REMB draft).
//!
//! [`RtcpCompound`] iterates over the packets of one compound datagram. Each item is a
//! validated [`RtcpPacket`]: its counts were checked against its length, so iterating
//! report blocks, BYE sources, FIR entries, NACK items or REMB SSRCs cannot go out of
//! bounds. The first malformed packet ends the walk with an error.
//!
//! Transport-wide congestion control feedback is recognised (kind only): its body is
//! handed over untouched for a congestion controller to parse.

use crate::error::{be16, be32, need, ParseError};

/// RTCP packet type: sender report.
pub const PT_SR: u8 = 200;
/// RTCP packet type: receiver report.
pub const PT_RR: u8 = 201;
/// RTCP packet type: source description.
pub const PT_SDES: u8 = 202;
/// RTCP packet type: goodbye.
pub const PT_BYE: u8 = 203;
/// RTCP packet type: transport-layer feedback (NACK, TWCC).
pub const PT_RTPFB: u8 = 205;
/// RTCP packet type: payload-specific feedback (PLI, FIR, REMB).
pub const PT_PSFB: u8 = 206;

/// One reception report block (24 bytes) of an SR or RR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// Source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed, sign-extended).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP time.
    pub last_sr: u32,
    /// Delay since the last SR in 1/65536 s.
    pub delay_since_last_sr: u32,
}

fn report_block(b: &[u8]) -> ReportBlock {
    let lost = be32(b, 4) & 0x00ff_ffff;
    let cumulative_lost = if lost & 0x0080_0000 != 0 {
        (lost | 0xff00_0000) as i32
    } else {
        lost as i32
    };
    ReportBlock {
        ssrc: be32(b, 0),
        fraction_lost: b[4],
        cumulative_lost,
        highest_seq: be32(b, 8),
        jitter: be32(b, 12),
        last_sr: be32(b, 16),
        delay_since_last_sr: be32(b, 20),
    }
}

/// Iterator over validated 24-byte report blocks.
#[derive(Debug, Clone)]
pub struct ReportBlocks<'a>(std::slice::ChunksExact<'a, u8>);

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;
    fn next(&mut self) -> Option<ReportBlock> {
        self.0.next().map(report_block)
    }
}

/// A sender report.
#[derive(Debug, Clone, Copy)]
pub struct SenderReport<'a> {
    body: &'a [u8],
    count: usize,
}

impl<'a> SenderReport<'a> {
    /// SSRC of the sender.
    pub fn ssrc(&self) -> u32 {
        be32(self.body, 0)
    }
    /// 64-bit NTP wall-clock time of the report.
    pub fn ntp_time(&self) -> u64 {
        (u64::from(be32(self.body, 4)) << 32) | u64::from(be32(self.body, 8))
    }
    /// RTP timestamp matching [`ntp_time`](Self::ntp_time).
    pub fn rtp_time(&self) -> u32 {
        be32(self.body, 12)
    }
    /// Packets sent so far.
    pub fn packet_count(&self) -> u32 {
        be32(self.body, 16)
    }
    /// Payload octets sent so far.
    pub fn octet_count(&self) -> u32 {
        be32(self.body, 20)
    }
    /// The reception report blocks.
    pub fn reports(&self) -> ReportBlocks<'a> {
        ReportBlocks(self.body[24..24 + 24 * self.count].chunks_exact(24))
    }
}

/// A receiver report.
#[derive(Debug, Clone, Copy)]
pub struct ReceiverReport<'a> {
    body: &'a [u8],
    count: usize,
}

impl<'a> ReceiverReport<'a> {
    /// SSRC of the receiver.
    pub fn ssrc(&self) -> u32 {
        be32(self.body, 0)
    }
    /// The reception report blocks.
    pub fn reports(&self) -> ReportBlocks<'a> {
        ReportBlocks(self.body[4..4 + 24 * self.count].chunks_exact(24))
    }
}

/// A source description packet; its chunks are read lazily by [`Sdes::items`].
#[derive(Debug, Clone, Copy)]
pub struct Sdes<'a> {
    body: &'a [u8],
    count: usize,
}

/// One SDES item: `(ssrc, item type, text)`; type 1 is CNAME.
pub type SdesItem<'a> = (u32, u8, &'a [u8]);

impl<'a> Sdes<'a> {
    /// Number of chunks announced in the header.
    pub fn chunk_count(&self) -> usize {
        self.count
    }
    /// The items of every chunk; a malformed chunk yields one error and ends the walk.
    pub fn items(&self) -> SdesItems<'a> {
        SdesItems {
            body: self.body,
            pos: 0,
            chunks_left: self.count,
            ssrc: None,
            failed: false,
        }
    }
}

/// Iterator over SDES items, see [`Sdes::items`].
#[derive(Debug, Clone)]
pub struct SdesItems<'a> {
    body: &'a [u8],
    pos: usize,
    chunks_left: usize,
    ssrc: Option<u32>,
    failed: bool,
}

impl<'a> Iterator for SdesItems<'a> {
    type Item = Result<SdesItem<'a>, ParseError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            let rest = &self.body[self.pos.min(self.body.len())..];
            let Some(ssrc) = self.ssrc else {
                if self.chunks_left == 0 {
                    return None;
                }
                if let Err(e) = need(rest, 4) {
                    self.failed = true;
                    return Some(Err(e));
                }
                self.ssrc = Some(be32(rest, 0));
                self.pos += 4;
                continue;
            };
            if let Err(e) = need(rest, 1) {
                self.failed = true;
                return Some(Err(e));
            }
            if rest[0] == 0 {
                // End of chunk: skip the null and pad to the next 32-bit boundary.
                self.pos = (self.pos + 4) & !3;
                self.ssrc = None;
                self.chunks_left -= 1;
                continue;
            }
            if let Err(e) = need(rest, 2).and_then(|()| need(rest, 2 + usize::from(rest[1]))) {
                self.failed = true;
                return Some(Err(e));
            }
            let len = usize::from(rest[1]);
            self.pos += 2 + len;
            return Some(Ok((ssrc, rest[0], &rest[2..2 + len])));
        }
    }
}

/// A goodbye packet.
#[derive(Debug, Clone, Copy)]
pub struct Bye<'a> {
    body: &'a [u8],
    count: usize,
}

impl<'a> Bye<'a> {
    /// The sources leaving.
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.body[..4 * self.count]
            .chunks_exact(4)
            .map(|c| be32(c, 0))
    }
    /// The optional reason text (absent or cut short when the packet is short).
    pub fn reason(&self) -> Option<&'a [u8]> {
        let rest = &self.body[4 * self.count..];
        let len = usize::from(*rest.first()?);
        rest.get(1..1 + len)
    }
}

/// Generic NACK (RTPFB fmt 1): the lost sequence numbers of one media source.
#[derive(Debug, Clone, Copy)]
pub struct Nack<'a> {
    /// SSRC of the packet sender (the receiver asking).
    pub sender_ssrc: u32,
    /// SSRC of the media source with losses.
    pub media_ssrc: u32,
    fci: &'a [u8],
}

impl<'a> Nack<'a> {
    /// Every lost sequence number, expanded from the PID + BLP pairs.
    pub fn lost(&self) -> impl Iterator<Item = u16> + 'a {
        self.fci.chunks_exact(4).flat_map(|c| {
            let pid = be16(c, 0);
            let blp = be16(c, 2);
            std::iter::once(pid).chain(
                (0..16u16)
                    .filter(move |i| blp & (1 << i) != 0)
                    .map(move |i| pid.wrapping_add(i + 1)),
            )
        })
    }
}

/// Full intra request (PSFB fmt 4).
#[derive(Debug, Clone, Copy)]
pub struct Fir<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    fci: &'a [u8],
}

impl<'a> Fir<'a> {
    /// `(media ssrc, command sequence number)` of each entry.
    pub fn entries(&self) -> impl Iterator<Item = (u32, u8)> + 'a {
        self.fci.chunks_exact(8).map(|c| (be32(c, 0), c[4]))
    }
}

/// Receiver estimated maximum bitrate (PSFB fmt 15, `REMB`).
#[derive(Debug, Clone, Copy)]
pub struct Remb<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// Estimated bitrate in bits per second (mantissa << exponent).
    pub bitrate_bps: u64,
    ssrcs: &'a [u8],
}

impl<'a> Remb<'a> {
    /// The media sources the estimate applies to.
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.ssrcs.chunks_exact(4).map(|c| be32(c, 0))
    }
}

/// One packet of a compound RTCP datagram.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum RtcpPacket<'a> {
    /// Sender report (PT 200).
    SenderReport(SenderReport<'a>),
    /// Receiver report (PT 201).
    ReceiverReport(ReceiverReport<'a>),
    /// Source description (PT 202).
    Sdes(Sdes<'a>),
    /// Goodbye (PT 203).
    Bye(Bye<'a>),
    /// Generic NACK (PT 205 fmt 1).
    Nack(Nack<'a>),
    /// Transport-wide congestion control feedback (PT 205 fmt 15), body not parsed.
    TransportCc {
        /// SSRC of the packet sender.
        sender_ssrc: u32,
        /// SSRC of the media source.
        media_ssrc: u32,
        /// The feedback control information, for a congestion controller.
        fci: &'a [u8],
    },
    /// Picture loss indication (PT 206 fmt 1).
    Pli {
        /// SSRC of the packet sender.
        sender_ssrc: u32,
        /// SSRC of the media source asked for a keyframe.
        media_ssrc: u32,
    },
    /// Full intra request (PT 206 fmt 4).
    Fir(Fir<'a>),
    /// Receiver estimated maximum bitrate (PT 206 fmt 15 with `REMB`).
    Remb(Remb<'a>),
    /// Anything else, with its header fields and body (padding removed).
    Other {
        /// The packet type byte.
        packet_type: u8,
        /// The 5-bit count / format field.
        format: u8,
        /// The bytes after the 4-byte header.
        body: &'a [u8],
    },
}

/// Iterator over the packets of a compound RTCP datagram.
#[derive(Debug, Clone)]
pub struct RtcpCompound<'a> {
    rest: &'a [u8],
}

impl<'a> RtcpCompound<'a> {
    /// Starts walking `buf`. Nothing is checked until the first `next()`.
    pub fn new(buf: &'a [u8]) -> Self {
        RtcpCompound { rest: buf }
    }
}

impl<'a> Iterator for RtcpCompound<'a> {
    type Item = Result<RtcpPacket<'a>, ParseError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let res = split_one(self.rest);
        match res {
            Ok((pkt, rest)) => {
                self.rest = rest;
                Some(Ok(pkt))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// Parses the first RTCP packet of `buf`; returns it and the bytes after it.
pub fn split_one(buf: &[u8]) -> Result<(RtcpPacket<'_>, &[u8]), ParseError> {
    need(buf, 4)?;
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(ParseError::BadVersion(version));
    }
    let len = (usize::from(be16(buf, 2)) + 1) * 4;
    need(buf, len)?;
    let (this, rest) = buf.split_at(len);
    let mut end = len;
    if buf[0] & 0x20 != 0 {
        let pad = usize::from(this[len - 1]);
        if pad == 0 || pad > len - 4 {
            return Err(ParseError::BadPadding);
        }
        end -= pad;
    }
    let count = usize::from(buf[0] & 0x1f);
    let body = &this[4..end];
    Ok((parse_body(buf[1], count, body)?, rest))
}

fn check(ok: bool) -> Result<(), ParseError> {
    if ok {
        Ok(())
    } else {
        Err(ParseError::BadLength)
    }
}

fn parse_body(pt: u8, count: usize, body: &[u8]) -> Result<RtcpPacket<'_>, ParseError> {
    Ok(match pt {
        PT_SR => {
            check(body.len() >= 24 + 24 * count)?;
            RtcpPacket::SenderReport(SenderReport { body, count })
        }
        PT_RR => {
            check(body.len() >= 4 + 24 * count)?;
            RtcpPacket::ReceiverReport(ReceiverReport { body, count })
        }
        PT_SDES => RtcpPacket::Sdes(Sdes { body, count }),
        PT_BYE => {
            check(body.len() >= 4 * count)?;
            RtcpPacket::Bye(Bye { body, count })
        }
        PT_RTPFB | PT_PSFB => {
            if body.len() < 8 {
                return Err(ParseError::BadFeedback);
            }
            let sender_ssrc = be32(body, 0);
            let media_ssrc = be32(body, 4);
            let fci = &body[8..];
            match (pt, count) {
                (PT_RTPFB, 1) => RtcpPacket::Nack(Nack {
                    sender_ssrc,
                    media_ssrc,
                    fci,
                }),
                (PT_RTPFB, 15) => RtcpPacket::TransportCc {
                    sender_ssrc,
                    media_ssrc,
                    fci,
                },
                (PT_PSFB, 1) => RtcpPacket::Pli {
                    sender_ssrc,
                    media_ssrc,
                },
                (PT_PSFB, 4) => RtcpPacket::Fir(Fir { sender_ssrc, fci }),
                (PT_PSFB, 15) if fci.starts_with(b"REMB") => {
                    if fci.len() < 8 {
                        return Err(ParseError::BadFeedback);
                    }
                    let n = usize::from(fci[4]);
                    let exp = u32::from(fci[5] >> 2);
                    let mantissa = (u64::from(fci[5] & 3) << 16)
                        | (u64::from(fci[6]) << 8)
                        | u64::from(fci[7]);
                    let ssrcs = fci.get(8..8 + 4 * n).ok_or(ParseError::BadFeedback)?;
                    RtcpPacket::Remb(Remb {
                        sender_ssrc,
                        bitrate_bps: mantissa.checked_shl(exp).unwrap_or(u64::MAX),
                        ssrcs,
                    })
                }
                _ => RtcpPacket::Other {
                    packet_type: pt,
                    format: count as u8,
                    body,
                },
            }
        }
        _ => RtcpPacket::Other {
            packet_type: pt,
            format: count as u8,
            body,
        },
    })
}

fn header(out: &mut Vec<u8>, fmt: u8, pt: u8, words_after_header: usize) {
    out.push(0x80 | (fmt & 0x1f));
    out.push(pt);
    out.extend_from_slice(&(words_after_header as u16).to_be_bytes());
}

/// Appends a PLI asking `media_ssrc` for a keyframe.
pub fn write_pli(out: &mut Vec<u8>, sender_ssrc: u32, media_ssrc: u32) {
    header(out, 1, PT_PSFB, 2);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
}

/// Appends a FIR with one entry for `media_ssrc` and command sequence number `seq_nr`.
pub fn write_fir(out: &mut Vec<u8>, sender_ssrc: u32, media_ssrc: u32, seq_nr: u8) {
    header(out, 4, PT_PSFB, 4);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
    out.extend_from_slice(&[seq_nr, 0, 0, 0]);
}

/// Appends a generic NACK for `lost` (any order; each PID + BLP item covers 17 numbers).
///
/// At most 255 items are written so the length field cannot overflow.
pub fn write_nack(out: &mut Vec<u8>, sender_ssrc: u32, media_ssrc: u32, lost: &[u16]) {
    let start = out.len();
    header(out, 1, PT_RTPFB, 2);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
    let mut items = 0usize;
    let mut i = 0;
    while i < lost.len() && items < 255 {
        let pid = lost[i];
        let mut blp = 0u16;
        for &s in &lost[i + 1..] {
            let d = s.wrapping_sub(pid);
            if (1..=16).contains(&d) {
                blp |= 1 << (d - 1);
            }
        }
        out.extend_from_slice(&pid.to_be_bytes());
        out.extend_from_slice(&blp.to_be_bytes());
        items += 1;
        // Skip the numbers this item covered.
        i += 1;
        while i < lost.len() && (1..=16).contains(&lost[i].wrapping_sub(pid)) {
            i += 1;
        }
    }
    let words = (2 + items) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(buf: &[u8]) -> Vec<Result<RtcpPacket<'_>, ParseError>> {
        RtcpCompound::new(buf).collect()
    }

    #[test]
    fn compound_sr_sdes_bye() {
        let mut b = vec![0x81, PT_SR, 0, 12];
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 3]); // NTP
        b.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6]);
        b.extend_from_slice(&[0, 0, 0, 7, 10, 0xff, 0xff, 0xfe]); // block: lost = -2
        b.extend_from_slice(&[0; 16]);
        // SDES: one chunk = ssrc + CNAME "ab" + null + 3 bytes padding = 3 words
        b.extend_from_slice(&[
            0x81, PT_SDES, 0, 3, 0, 0, 0, 1, 1, 2, b'a', b'b', 0, 0, 0, 0,
        ]);
        b.extend_from_slice(&[0x81, PT_BYE, 0, 1, 0, 0, 0, 1]);
        let v = all(&b);
        assert_eq!(v.len(), 3);
        let RtcpPacket::SenderReport(sr) = v[0].unwrap() else {
            panic!("not SR")
        };
        assert_eq!(sr.ssrc(), 1);
        assert_eq!(sr.ntp_time(), (2 << 32) | 3);
        assert_eq!(
            (sr.rtp_time(), sr.packet_count(), sr.octet_count()),
            (4, 5, 6)
        );
        let rb: Vec<_> = sr.reports().collect();
        assert_eq!(rb[0].ssrc, 7);
        assert_eq!(rb[0].fraction_lost, 10);
        assert_eq!(rb[0].cumulative_lost, -2);
        let RtcpPacket::Sdes(sdes) = v[1].unwrap() else {
            panic!("not SDES")
        };
        let items: Vec<_> = sdes.items().collect();
        assert_eq!(items, vec![Ok((1, 1, &b"ab"[..]))]);
        let RtcpPacket::Bye(bye) = v[2].unwrap() else {
            panic!("not BYE")
        };
        assert_eq!(bye.ssrcs().collect::<Vec<_>>(), vec![1]);
        assert_eq!(bye.reason(), None);
    }

    #[test]
    fn feedback_roundtrip() {
        let mut b = Vec::new();
        write_pli(&mut b, 1, 2);
        write_fir(&mut b, 1, 3, 9);
        write_nack(&mut b, 1, 4, &[65535, 0, 5, 40]);
        let v = all(&b);
        assert!(matches!(
            v[0],
            Ok(RtcpPacket::Pli {
                sender_ssrc: 1,
                media_ssrc: 2
            })
        ));
        let Ok(RtcpPacket::Fir(fir)) = v[1] else {
            panic!()
        };
        assert_eq!(fir.entries().collect::<Vec<_>>(), vec![(3, 9)]);
        let Ok(RtcpPacket::Nack(nack)) = v[2] else {
            panic!()
        };
        assert_eq!(nack.media_ssrc, 4);
        assert_eq!(nack.lost().collect::<Vec<_>>(), vec![65535, 0, 5, 40]);
    }

    #[test]
    fn remb_and_twcc() {
        // REMB: 1 ssrc, exp 3, mantissa 1000 -> 8000 bps
        let mut b = vec![0x8f, PT_PSFB, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0];
        b.extend_from_slice(b"REMB");
        let m = 1000u32;
        b.extend_from_slice(&[1, (3 << 2) | (m >> 16) as u8, (m >> 8) as u8, m as u8]);
        b.extend_from_slice(&7u32.to_be_bytes());
        b.extend_from_slice(&[0x8f, PT_RTPFB, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 1, 2, 3, 4]);
        let v = all(&b);
        let Ok(RtcpPacket::Remb(r)) = v[0] else {
            panic!("{:?}", v[0])
        };
        assert_eq!(r.bitrate_bps, 8000);
        assert_eq!(r.ssrcs().collect::<Vec<_>>(), vec![7]);
        assert!(matches!(
            v[1],
            Ok(RtcpPacket::TransportCc { media_ssrc: 2, .. })
        ));
    }

    #[test]
    fn hostile_input_is_an_error() {
        assert!(matches!(
            all(&[0x80, 200, 0])[0],
            Err(ParseError::Truncated { .. })
        ));
        assert!(matches!(
            all(&[0x40, 200, 0, 0])[0],
            Err(ParseError::BadVersion(1))
        ));
        // RR claiming 2 blocks with an empty body
        assert!(matches!(
            all(&[0x82, PT_RR, 0, 1, 0, 0, 0, 1])[0],
            Err(ParseError::BadLength)
        ));
        // length beyond the buffer
        assert!(matches!(
            all(&[0x80, PT_RR, 0, 9, 0, 0, 0, 1])[0],
            Err(ParseError::Truncated { .. })
        ));
        // zero padding count
        assert!(matches!(
            all(&[0xa0, PT_RR, 0, 1, 0, 0, 0, 0])[0],
            Err(ParseError::BadPadding)
        ));
        // feedback without media ssrc
        assert!(matches!(
            all(&[0x81, PT_PSFB, 0, 1, 0, 0, 0, 1])[0],
            Err(ParseError::BadFeedback)
        ));
        // REMB claiming 5 SSRCs with none present
        let mut b = vec![0x8f, PT_PSFB, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0];
        b.extend_from_slice(b"REMB");
        b.extend_from_slice(&[5, 0, 0, 1]);
        assert!(matches!(all(&b)[0], Err(ParseError::BadFeedback)));
        // the walk stops after an error
        let v = all(&[0x40, 0, 0, 0, 0x80, PT_RR, 0, 1, 0, 0, 0, 1]);
        assert_eq!(v.len(), 1);
        // SDES with a chunk cut short
        let v = all(&[0x81, PT_SDES, 0, 1, 0, 0, 0, 1]);
        let Ok(RtcpPacket::Sdes(s)) = v[0] else {
            panic!()
        };
        assert!(s.items().any(|r| r.is_err()));
    }
}
