//! Zero-copy views over RTP packets (RFC 3550 section 5.1) and in-place header setters.
//!
//! [`RtpPacket::parse`] validates the whole layout once (version, CSRC list, header
//! extension, padding); after that every accessor is a plain indexed read that cannot
//! go out of bounds. [`RtpHeaderMut`] rewrites the fixed header fields of a packet in
//! place, which is all a forwarding plane needs: payload bytes are never touched.

use std::ops::Range;

use crate::error::{be16, be32, need, ParseError};

/// Size of the fixed RTP header, without CSRCs or extension.
pub const RTP_FIXED_HEADER_LEN: usize = 12;

/// Tells RTP from RTCP on a multiplexed port (RFC 5761 section 4): RTCP packet types
/// 192..=223 land in the second byte where RTP has marker + payload type.
///
/// Returns `false` for buffers too short to be either.
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 4 && buf[0] >> 6 == 2 && (192..=223).contains(&buf[1])
}

/// A validated, borrowed RTP packet.
#[derive(Debug, Clone, Copy)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    header_len: usize,
    payload_end: usize,
}

impl<'a> RtpPacket<'a> {
    /// Validates `buf` as one RTP packet.
    ///
    /// Checks: at least 12 bytes, version 2, the CSRC list and the header extension
    /// fit, and the padding count (when the P bit is set) is non-zero and fits after
    /// the header. RTCP on a muxed port is rejected with [`ParseError::WrongProtocol`].
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        need(buf, RTP_FIXED_HEADER_LEN)?;
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(ParseError::BadVersion(version));
        }
        if is_rtcp(buf) {
            return Err(ParseError::WrongProtocol);
        }
        let csrc_count = usize::from(buf[0] & 0x0f);
        let mut header_len = RTP_FIXED_HEADER_LEN + 4 * csrc_count;
        need(buf, header_len)?;
        if buf[0] & 0x10 != 0 {
            need(buf, header_len + 4)?;
            let words = usize::from(be16(buf, header_len + 2));
            header_len += 4 + 4 * words;
            need(buf, header_len)?;
        }
        let mut payload_end = buf.len();
        if buf[0] & 0x20 != 0 {
            let pad = usize::from(buf[buf.len() - 1]);
            if pad == 0 || pad > buf.len() - header_len {
                return Err(ParseError::BadPadding);
            }
            payload_end -= pad;
        }
        Ok(RtpPacket {
            buf,
            header_len,
            payload_end,
        })
    }

    /// The whole packet as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The marker bit (for video, usually "last packet of a frame").
    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }

    /// The 7-bit payload type.
    pub fn payload_type(&self) -> u8 {
        self.buf[1] & 0x7f
    }

    /// The 16-bit sequence number.
    pub fn sequence(&self) -> u16 {
        be16(self.buf, 2)
    }

    /// The 32-bit media timestamp.
    pub fn timestamp(&self) -> u32 {
        be32(self.buf, 4)
    }

    /// The synchronisation source.
    pub fn ssrc(&self) -> u32 {
        be32(self.buf, 8)
    }

    /// Number of contributing sources listed after the fixed header.
    pub fn csrc_count(&self) -> usize {
        usize::from(self.buf[0] & 0x0f)
    }

    /// The `i`-th contributing source, if there is one.
    pub fn csrc(&self, i: usize) -> Option<u32> {
        (i < self.csrc_count()).then(|| be32(self.buf, RTP_FIXED_HEADER_LEN + 4 * i))
    }

    /// The header extension as `(profile, body)`, e.g. `0xBEDE` for one-byte extensions.
    pub fn extension(&self) -> Option<(u16, &'a [u8])> {
        if self.buf[0] & 0x10 == 0 {
            return None;
        }
        let at = RTP_FIXED_HEADER_LEN + 4 * self.csrc_count();
        Some((be16(self.buf, at), &self.buf[at + 4..self.header_len]))
    }

    /// Length of the header including CSRCs and extension.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Number of padding bytes at the end (0 when the P bit is clear).
    pub fn padding_len(&self) -> usize {
        self.buf.len() - self.payload_end
    }

    /// Where the payload sits inside [`as_bytes`](Self::as_bytes).
    pub fn payload_range(&self) -> Range<usize> {
        self.header_len..self.payload_end
    }

    /// The payload, without header and padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..self.payload_end]
    }
}

/// In-place writer for the fixed RTP header of a packet.
///
/// Only the 12-byte fixed header is required: setters never look past it.
#[derive(Debug)]
pub struct RtpHeaderMut<'a> {
    buf: &'a mut [u8],
}

impl<'a> RtpHeaderMut<'a> {
    /// Wraps `buf` after checking it has a fixed header with version 2.
    pub fn new(buf: &'a mut [u8]) -> Result<Self, ParseError> {
        need(buf, RTP_FIXED_HEADER_LEN)?;
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(ParseError::BadVersion(version));
        }
        Ok(RtpHeaderMut { buf })
    }

    /// Sets the sequence number.
    pub fn set_sequence(&mut self, seq: u16) {
        self.buf[2..4].copy_from_slice(&seq.to_be_bytes());
    }

    /// Sets the media timestamp.
    pub fn set_timestamp(&mut self, ts: u32) {
        self.buf[4..8].copy_from_slice(&ts.to_be_bytes());
    }

    /// Sets the SSRC.
    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }

    /// Sets the 7-bit payload type, keeping the marker bit (values above 127 are masked).
    pub fn set_payload_type(&mut self, pt: u8) {
        self.buf[1] = (self.buf[1] & 0x80) | (pt & 0x7f);
    }

    /// Sets or clears the marker bit.
    pub fn set_marker(&mut self, marker: bool) {
        self.buf[1] = (self.buf[1] & 0x7f) | if marker { 0x80 } else { 0 };
    }
}

/// Writes a minimal RTP header (no CSRC, no extension, no padding) followed by `payload`
/// into `out`, replacing its contents. Meant for tests, benches and generators.
pub fn write_rtp(
    out: &mut Vec<u8>,
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: &[u8],
) {
    out.clear();
    out.push(0x80);
    out.push(if marker { 0x80 } else { 0 } | (pt & 0x7f));
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet() -> Vec<u8> {
        let mut v = Vec::new();
        write_rtp(&mut v, 96, true, 0xfffe, 0xffff_fff0, 0x1234_5678, b"hello");
        v
    }

    #[test]
    fn parses_fields() {
        let v = packet();
        let p = RtpPacket::parse(&v).unwrap();
        assert!(p.marker());
        assert_eq!(p.payload_type(), 96);
        assert_eq!(p.sequence(), 0xfffe);
        assert_eq!(p.timestamp(), 0xffff_fff0);
        assert_eq!(p.ssrc(), 0x1234_5678);
        assert_eq!(p.payload(), b"hello");
        assert_eq!(p.payload_range(), 12..17);
        assert_eq!(p.extension(), None);
        assert_eq!(p.csrc(0), None);
    }

    #[test]
    fn csrc_extension_and_padding() {
        // V=2 P=1 X=1 CC=1
        let mut v = vec![0xb1, 111, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        v.extend_from_slice(&[0, 0, 0, 9]); // CSRC
        v.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]); // ext, 1 word
        v.extend_from_slice(b"ab"); // payload
        v.extend_from_slice(&[0, 0, 3]); // 3 bytes padding
        let p = RtpPacket::parse(&v).unwrap();
        assert_eq!(p.csrc(0), Some(9));
        assert_eq!(p.extension(), Some((0xbede, &[0x10, 0xff, 0, 0][..])));
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.payload(), b"ab");
        assert_eq!(p.padding_len(), 3);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            RtpPacket::parse(&[0x80; 5]),
            Err(ParseError::Truncated { .. })
        ));
        let mut v = packet();
        v[0] = 0x40;
        assert_eq!(RtpPacket::parse(&v).unwrap_err(), ParseError::BadVersion(1));
        let mut v = packet();
        v[0] |= 0x20;
        *v.last_mut().unwrap() = 0;
        assert_eq!(RtpPacket::parse(&v).unwrap_err(), ParseError::BadPadding);
        *v.last_mut().unwrap() = 6;
        assert_eq!(RtpPacket::parse(&v).unwrap_err(), ParseError::BadPadding);
        let mut v = packet();
        v[0] |= 0x0f; // 15 CSRCs do not fit
        assert!(RtpPacket::parse(&v).is_err());
        let mut v = packet();
        v[0] |= 0x10; // extension header does not fit
        assert!(RtpPacket::parse(&v).is_err());
        let mut v = packet();
        v[1] = 200; // RTCP SR on a muxed port
        assert_eq!(RtpPacket::parse(&v).unwrap_err(), ParseError::WrongProtocol);
    }

    #[test]
    fn setters_rewrite_in_place() {
        let mut v = packet();
        let mut h = RtpHeaderMut::new(&mut v).unwrap();
        h.set_sequence(7);
        h.set_timestamp(8);
        h.set_ssrc(9);
        h.set_payload_type(100);
        let p = RtpPacket::parse(&v).unwrap();
        assert_eq!(
            (p.sequence(), p.timestamp(), p.ssrc(), p.payload_type()),
            (7, 8, 9, 100)
        );
        assert!(p.marker());
        let mut h = RtpHeaderMut::new(&mut v).unwrap();
        h.set_marker(false);
        assert!(!RtpPacket::parse(&v).unwrap().marker());
        assert!(RtpHeaderMut::new(&mut [0x80; 11]).is_err());
    }
}
