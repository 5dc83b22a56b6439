//! A source's RTP packet as the egress reads it (parsed once, shared by every viewer), and the
//! header the egress writes for one viewer: its payload type, SSRC, sequence number and
//! timestamp, and the header extensions (RFC 8285) that viewer negotiated: MID while it has
//! not bound the SSRC, abs-send-time, and the publisher's own extensions copied by id.
//! One-byte elements (`0xBEDE`) unless an element needs the two-byte form (an id above 14,
//! more than 16 bytes, or none) and the viewer accepts it (`a=extmap-allow-mixed`).

use fluo_sfu::rtp::RtpPacket;

/// The two header extension forms (RFC 8285 §4.2, §4.3).
const ONE_BYTE: u16 = 0xbede;
const TWO_BYTE: u16 = 0x1000;

/// The header extension block of a packet: its profile (`0xBEDE`, `0x100X`, or another one,
/// which is not read) and its data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtBlock<'a> {
    /// The "defined by profile" field.
    pub profile: u16,
    /// The extension data (without the 4-byte block header).
    pub data: &'a [u8],
}

impl<'a> ExtBlock<'a> {
    /// The elements `(id, data)` of a one- or two-byte block; nothing for another profile.
    /// Stops at the first element that does not fit (never panics on any input).
    pub fn elements(&self) -> Elements<'a> {
        let form = match self.profile {
            ONE_BYTE => Some(false),
            p if p & 0xfff0 == TWO_BYTE => Some(true),
            _ => None,
        };
        Elements {
            data: self.data,
            at: 0,
            two_byte: form,
        }
    }
}

/// The elements of an [`ExtBlock`].
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    data: &'a [u8],
    at: usize,
    /// `None`: not an RFC 8285 block.
    two_byte: Option<bool>,
}

impl<'a> Iterator for Elements<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let two = self.two_byte?;
        loop {
            let &b = self.data.get(self.at)?;
            if b == 0 {
                // Padding between elements.
                self.at += 1;
                continue;
            }
            let (id, len, head) = if two {
                (b, usize::from(*self.data.get(self.at + 1)?), 2)
            } else {
                if b >> 4 == 15 {
                    // id 15: stop reading (RFC 8285 §4.2).
                    return None;
                }
                (b >> 4, usize::from(b & 0x0f) + 1, 1)
            };
            let start = self.at + head;
            let data = self.data.get(start..start + len)?;
            self.at = start + len;
            return Some((id, data));
        }
    }
}

/// One packet of a source, parsed once and shared by all its viewers.
#[derive(Debug, Clone, Copy)]
pub struct SourcePacket<'a> {
    /// The publisher's SSRC.
    pub ssrc: u32,
    /// The publisher's sequence number.
    pub seq: u16,
    /// The publisher's RTP timestamp.
    pub ts: u32,
    /// The marker bit.
    pub marker: bool,
    /// The payload, without padding.
    pub payload: &'a [u8],
    /// The publisher's header extensions.
    pub ext: ExtBlock<'a>,
    /// The codec whose picture ids the viewer's stream keeps continuous across its switches
    /// (a simulcast layer's VP8 or VP9, see [`fluo_sfu::picture_id`]); `None` (what `parse`
    /// gives): the payload goes as it is.
    pub picture_ids: Option<fluo_sfu::CodecName>,
}

impl<'a> SourcePacket<'a> {
    /// A plain RTP packet (as str0m hands it over decrypted, or from a resend cache); `None`
    /// if it is not valid RTP.
    pub fn parse(buf: &'a [u8]) -> Option<SourcePacket<'a>> {
        let p = RtpPacket::parse(buf).ok()?;
        let ext = p
            .extension()
            .map(|(profile, data)| ExtBlock { profile, data })
            .unwrap_or_default();
        Some(SourcePacket {
            ssrc: p.ssrc(),
            seq: p.sequence(),
            ts: p.timestamp(),
            marker: p.marker(),
            payload: p.payload(),
            ext,
            picture_ids: None,
        })
    }
}

/// Most publisher extensions copied to a viewer.
pub const MAX_COPIED: usize = 8;

/// The header extensions of one viewer stream: the ids that viewer negotiated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtPlan {
    /// The viewer's id for the MID extension and the stream's mid, sent until a receiver
    /// report names the SSRC (as str0m and libwebrtc do).
    pub mid: Option<(u8, Vec<u8>)>,
    /// The viewer's id for abs-send-time, if negotiated.
    pub abs_send_time: Option<u8>,
    /// The viewer's id for the transport-wide sequence number (TWCC), if negotiated: the
    /// viewer's feedback on it is its congestion control's input (send-receive sections).
    pub transport_cc: Option<u8>,
    /// `(publisher id, viewer id)` of the extensions copied as they came (audio level, video
    /// orientation, ...); pairs with a 0 are unused.
    pub copy: [(u8, u8); MAX_COPIED],
    /// The viewer accepts two-byte elements (`a=extmap-allow-mixed`, RFC 8285 §6).
    pub two_byte: bool,
}

impl ExtPlan {
    /// Adds a copied extension; false when [`MAX_COPIED`] are already set or an id is 0.
    pub fn copy_extension(&mut self, publisher_id: u8, viewer_id: u8) -> bool {
        if publisher_id == 0 || viewer_id == 0 {
            return false;
        }
        match self.copy.iter_mut().find(|(from, _)| *from == 0) {
            Some(slot) => {
                *slot = (publisher_id, viewer_id);
                true
            }
            None => false,
        }
    }

    fn viewer_id(&self, publisher_id: u8) -> Option<u8> {
        self.copy
            .iter()
            .find(|(from, to)| *from == publisher_id && *to != 0)
            .map(|(_, to)| *to)
    }
}

/// The fixed header fields of a packet the egress writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
}

/// Whether one element can be written in the one-byte form.
fn fits_one_byte(id: u8, len: usize) -> bool {
    (1..=14).contains(&id) && (1..=16).contains(&len)
}

/// Whether an element can be written at all (two-byte form: id 1-255, 0-255 bytes).
fn fits_two_byte(id: u8, len: usize) -> bool {
    id != 0 && len <= 255
}

/// Writes an RTP header with the extensions of `plan` into `buf` (cleared); returns its
/// length. `mid` says whether the MID element goes in, `abs` is abs-send-time's value,
/// `twcc` the transport-wide sequence number.
pub(crate) fn write_header(
    buf: &mut Vec<u8>,
    h: Header,
    plan: &ExtPlan,
    mid: bool,
    abs: Option<[u8; 3]>,
    twcc: Option<u16>,
    src: ExtBlock<'_>,
) -> usize {
    buf.clear();
    buf.extend_from_slice(&[0x80, (u8::from(h.marker) << 7) | (h.pt & 0x7f)]);
    buf.extend_from_slice(&h.seq.to_be_bytes());
    buf.extend_from_slice(&h.ts.to_be_bytes());
    buf.extend_from_slice(&h.ssrc.to_be_bytes());
    let mid = plan.mid.as_ref().filter(|_| mid);
    let abs = plan.abs_send_time.zip(abs);
    let twcc = plan.transport_cc.zip(twcc.map(u16::to_be_bytes));
    let copied = || {
        src.elements()
            .filter_map(move |(id, data)| plan.viewer_id(id).map(|to| (to, data)))
    };
    // The form: one-byte unless an element needs two bytes and the viewer takes them.
    let mut need_two = mid.is_some_and(|(id, m)| !fits_one_byte(*id, m.len()))
        || abs.is_some_and(|(id, _)| !fits_one_byte(id, 3))
        || twcc.is_some_and(|(id, _)| !fits_one_byte(id, 2));
    if plan.copy[0].0 != 0 {
        need_two |= copied().any(|(id, d)| !fits_one_byte(id, d.len()));
    }
    let two = need_two && plan.two_byte;
    let fits = |id: u8, len: usize| {
        if two {
            fits_two_byte(id, len)
        } else {
            fits_one_byte(id, len)
        }
    };
    let start = buf.len();
    buf.extend_from_slice(&if two { TWO_BYTE } else { ONE_BYTE }.to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
    let put = |buf: &mut Vec<u8>, id: u8, data: &[u8]| {
        if !fits(id, data.len()) {
            return;
        }
        if two {
            buf.extend_from_slice(&[id, data.len() as u8]);
        } else {
            buf.push((id << 4) | (data.len() as u8 - 1));
        }
        buf.extend_from_slice(data);
    };
    if let Some((id, m)) = mid {
        put(buf, *id, m);
    }
    if let Some((id, v)) = abs {
        put(buf, id, &v);
    }
    if let Some((id, v)) = twcc {
        put(buf, id, &v);
    }
    if plan.copy[0].0 != 0 {
        for (id, data) in copied() {
            put(buf, id, data);
        }
    }
    if buf.len() == start + 4 {
        // Nothing to carry: no extension block.
        buf.truncate(start);
        return buf.len();
    }
    buf[0] |= 0x10;
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
    let words = ((buf.len() - start - 4) / 4) as u16;
    buf[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    buf.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            marker: true,
            pt: 111,
            seq: 7,
            ts: 9000,
            ssrc: 0xabcd,
        }
    }

    fn written(plan: &ExtPlan, mid: bool, src: ExtBlock<'_>) -> (Vec<u8>, usize) {
        let mut buf = Vec::with_capacity(1500);
        let n = write_header(&mut buf, header(), plan, mid, Some([1, 2, 3]), None, src);
        assert_eq!(n % 4, 0);
        buf.extend_from_slice(b"payload");
        (buf, n)
    }

    #[test]
    fn one_byte_header_with_mid_abs_send_time_and_a_copied_extension_parses_back() {
        let mut plan = ExtPlan {
            mid: Some((9, b"1".to_vec())),
            abs_send_time: Some(2),
            ..ExtPlan::default()
        };
        plan.copy_extension(1, 3); // the publisher's audio level (1) as the viewer's 3
        let src_ext = [0x10, 0x85, 0x50, 0xaa, 0, 0, 0, 0]; // id 1 len 1; id 5 len 1
        let src = ExtBlock {
            profile: ONE_BYTE,
            data: &src_ext,
        };
        let (buf, _) = written(&plan, true, src);
        let p = RtpPacket::parse(&buf).unwrap();
        assert!(p.marker());
        assert_eq!(
            (p.payload_type(), p.sequence(), p.timestamp(), p.ssrc()),
            (111, 7, 9000, 0xabcd)
        );
        assert_eq!(p.payload(), b"payload");
        let (profile, data) = p.extension().unwrap();
        assert_eq!(profile, ONE_BYTE);
        // mid "1" (id 9), abs-send-time (id 2), audio level remapped to 3; id 5 dropped.
        assert_eq!(data, &[0x90, b'1', 0x22, 1, 2, 3, 0x30, 0x85]);
        // Without MID, abs-send-time or copies: no extension block at all.
        let (buf, n) = written(&ExtPlan::default(), true, src);
        assert_eq!(n, 12);
        assert_eq!(buf[0], 0x80);
    }

    #[test]
    fn two_byte_elements_are_read_and_written_when_the_viewer_takes_them() {
        // The publisher's two-byte block: id 20 with 20 bytes (say, color space), id 1 with 1.
        let mut src_ext = vec![20, 20];
        src_ext.extend(1..=20u8);
        src_ext.extend_from_slice(&[1, 1, 0x85, 0]);
        let src = ExtBlock {
            profile: 0x1000,
            data: &src_ext,
        };
        let els: Vec<_> = src.elements().collect();
        assert_eq!(els.len(), 2);
        assert_eq!(
            (els[0].0, els[0].1.len(), els[1]),
            (20, 20, (1, &[0x85u8][..]))
        );
        let mut plan = ExtPlan {
            abs_send_time: Some(2),
            two_byte: true,
            ..ExtPlan::default()
        };
        plan.copy_extension(20, 30);
        plan.copy_extension(1, 3);
        let (buf, _) = written(&plan, false, src);
        let p = RtpPacket::parse(&buf).unwrap();
        let (profile, data) = p.extension().unwrap();
        assert_eq!(profile, 0x1000);
        let got: Vec<_> = ExtBlock { profile, data }.elements().collect();
        assert_eq!(got[0], (2, &[1u8, 2, 3][..]));
        assert_eq!((got[1].0, got[1].1), (30, &src_ext[2..22]));
        assert_eq!(got[2], (3, &[0x85u8][..]));
        // A viewer without two-byte support gets the one-byte form without that element.
        plan.two_byte = false;
        let (buf, _) = written(&plan, false, src);
        let p = RtpPacket::parse(&buf).unwrap();
        let (profile, data) = p.extension().unwrap();
        assert_eq!(profile, ONE_BYTE);
        assert_eq!(data, &[0x22, 1, 2, 3, 0x30, 0x85, 0, 0]);
    }

    #[test]
    fn malformed_extension_blocks_end_the_elements_without_panicking() {
        let cases: [(u16, &[u8]); 5] = [
            (ONE_BYTE, &[0x1f]),        // says 16 bytes, has none
            (ONE_BYTE, &[0xf0, 1, 2]),  // id 15: stop
            (0x1000, &[5]),             // no length byte
            (0x1000, &[5, 200, 1]),     // longer than the block
            (0x1234, &[0x10, 1, 0, 0]), // another profile
        ];
        for (profile, data) in cases {
            assert_eq!(ExtBlock { profile, data }.elements().count(), 0);
        }
    }
}
