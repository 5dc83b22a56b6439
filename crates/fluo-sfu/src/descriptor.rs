//! Video payload headers, read in one place: VP8's and VP9's payload descriptors (RFC 7741
//! §4.2, RFC 9628 §4.2), AV1's aggregation header (the AV1 RTP payload specification §4.4)
//! and the NAL units of an H.264 STAP-A (RFC 6184 §5.7.1).
//!
//! Keyframe detection ([`crate::keyframe`]), the picture size a keyframe announces
//! ([`crate::frame_size`]) and the picture ids of a viewer's line ([`crate::picture_id`]) read
//! them from here. Nothing here panics on any input: a header that does not fit its packet is
//! `None`.

/// A picture id: its value, whether it is written in 15 bits (M set) or 7, and the offset of
/// its first byte in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureId {
    /// The value (below 2^15, or 2^7 when not `wide`).
    pub value: u16,
    /// 15 bits (two bytes, M set) rather than 7 (one byte).
    pub wide: bool,
    /// Where its first byte is.
    pub at: usize,
}

impl PictureId {
    /// The largest value plus one: 2^15 or 2^7.
    pub fn modulus(&self) -> u16 {
        if self.wide {
            1 << 15
        } else {
            1 << 7
        }
    }

    /// Writes `value` (taken modulo [`modulus`](Self::modulus)) in its place in `payload`,
    /// in the same width.
    pub fn write(&self, payload: &mut [u8], value: u16) {
        let value = value % self.modulus();
        if self.wide {
            if let Some(b) = payload.get_mut(self.at..self.at + 2) {
                b[0] = 0x80 | (value >> 8) as u8;
                b[1] = value as u8;
            }
        } else if let Some(b) = payload.get_mut(self.at) {
            *b = value as u8;
        }
    }
}

/// The fields of a VP8 or VP9 payload descriptor an SFU reads or rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// The packet begins a frame: VP8's S bit with partition index 0, VP9's B bit.
    pub begins_frame: bool,
    /// The picture id, when the descriptor carries one.
    pub picture_id: Option<PictureId>,
    /// TL0PICIDX (VP8's L; VP9's in non-flexible mode with layer indices) and its offset.
    pub tl0picidx: Option<(u8, usize)>,
    /// Where what follows the descriptor begins: VP8's payload (on a frame's first packet,
    /// its frame tag), VP9's scalability structure when its V bit is set, else its payload.
    pub end: usize,
}

/// Reads a VP8 payload descriptor (RFC 7741 §4.2); `None` if it does not fit the packet.
pub fn vp8(p: &[u8]) -> Option<Descriptor> {
    let b0 = *p.first()?;
    let mut i = 1;
    let mut picture_id = None;
    let mut tl0picidx = None;
    if b0 & 0x80 != 0 {
        let x = *p.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            let id = picture_id_at(p, i)?;
            i += if id.wide { 2 } else { 1 };
            picture_id = Some(id);
        }
        if x & 0x40 != 0 {
            tl0picidx = Some((*p.get(i)?, i));
            i += 1;
        }
        if x & 0x30 != 0 {
            p.get(i)?; // TID / Y / KEYIDX
            i += 1;
        }
    }
    Some(Descriptor {
        begins_frame: b0 & 0x10 != 0 && b0 & 0x07 == 0,
        picture_id,
        tl0picidx,
        end: i,
    })
}

/// Reads a VP9 payload descriptor (RFC 9628 §4.2) up to its scalability structure; `None`
/// if it does not fit the packet.
pub fn vp9(p: &[u8]) -> Option<Descriptor> {
    let b0 = *p.first()?;
    let (inter, layers, flexible) = (b0 & 0x40 != 0, b0 & 0x20 != 0, b0 & 0x10 != 0);
    let mut i = 1;
    let mut picture_id = None;
    let mut tl0picidx = None;
    if b0 & 0x80 != 0 {
        let id = picture_id_at(p, i)?;
        i += if id.wide { 2 } else { 1 };
        picture_id = Some(id);
    }
    if layers {
        p.get(i)?; // TID U SID D
        i += 1;
        if !flexible {
            tl0picidx = Some((*p.get(i)?, i));
            i += 1;
        }
    }
    if inter && flexible {
        // Up to three reference indices, each saying whether another follows (N).
        for _ in 0..3 {
            let r = *p.get(i)?;
            i += 1;
            if r & 0x01 == 0 {
                break;
            }
        }
    }
    Some(Descriptor {
        begins_frame: b0 & 0x08 != 0,
        picture_id,
        tl0picidx,
        end: i,
    })
}

fn picture_id_at(p: &[u8], i: usize) -> Option<PictureId> {
    let b = *p.get(i)?;
    if b & 0x80 != 0 {
        let lo = *p.get(i + 1)?;
        Some(PictureId {
            value: u16::from(b & 0x7f) << 8 | u16::from(lo),
            wide: true,
            at: i,
        })
    } else {
        Some(PictureId {
            value: u16::from(b),
            wide: false,
            at: i,
        })
    }
}

/// The NAL units of an H.264 STAP-A packet (RFC 6184 §5.7.1), each cut to what the packet
/// holds. Nothing for another packet.
pub fn stap_a(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut i = if p.first().is_some_and(|b| b & 0x1f == 24) {
        1
    } else {
        usize::MAX
    };
    std::iter::from_fn(move || {
        if i.checked_add(2).is_none_or(|at| at >= p.len()) {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
        let start = i + 2;
        let end = start.saturating_add(len).min(p.len());
        i = start.saturating_add(len);
        Some(&p[start..end])
    })
}

/// AV1 (RTP payload specification §4.4): whether the packet begins a coded video sequence, a
/// key frame: its aggregation header's N bit, or (for a sender that leaves N clear) a first
/// OBU element that is a whole sequence header OBU.
pub fn av1_begins_sequence(p: &[u8]) -> bool {
    let Some(&agg) = p.first() else {
        return false;
    };
    if agg & 0x08 != 0 {
        return true;
    }
    if agg & 0x80 != 0 {
        // Z: it goes on with a fragment of the previous packet's OBU.
        return false;
    }
    // W = 1: one element, no length before it; else a LEB128 length comes first.
    let mut i = 1;
    if (agg >> 4) & 0x03 != 1 {
        loop {
            let Some(&b) = p.get(i) else {
                return false;
            };
            i += 1;
            if b & 0x80 == 0 || i > 8 {
                break;
            }
        }
    }
    p.get(i).is_some_and(|obu| (obu >> 3) & 0x0f == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_descriptors_are_read_in_each_form() {
        // No X: the payload right after the first byte.
        let d = vp8(&[0x10, 0x9d]).unwrap();
        assert_eq!(
            (d.begins_frame, d.picture_id, d.tl0picidx, d.end),
            (true, None, None, 1)
        );
        // X with a 7-bit picture id.
        let d = vp8(&[0x90, 0x80, 0x05, 0x00]).unwrap();
        let id = d.picture_id.unwrap();
        assert_eq!((id.value, id.wide, id.at, d.end), (5, false, 2, 3));
        // X with a 15-bit picture id, TL0PICIDX and TID.
        let d = vp8(&[0x90, 0xe0, 0x81, 0x02, 0x33, 0x40, 0x00]).unwrap();
        let id = d.picture_id.unwrap();
        assert_eq!((id.value, id.wide, id.at), (0x102, true, 2));
        assert_eq!((d.tl0picidx, d.end), (Some((0x33, 4)), 6));
        // Not the frame's first partition; a descriptor cut short.
        assert!(!vp8(&[0x11, 0x00]).unwrap().begins_frame);
        assert!(!vp8(&[0x00, 0x00]).unwrap().begins_frame);
        assert_eq!(vp8(&[0x90, 0xe0, 0x81]), None);
        assert_eq!(vp8(&[0x90, 0xe0, 0x81, 0x02, 0x33]), None);
        assert_eq!(vp8(&[]), None);
    }

    #[test]
    fn vp9_descriptors_are_read_in_each_form() {
        // I (15-bit), L in non-flexible mode: layer indices, then TL0PICIDX.
        let d = vp9(&[0xa8, 0x80, 0x07, 0x00, 0x09, 0xff]).unwrap();
        assert_eq!(
            d.picture_id.map(|p| (p.value, p.wide, p.at)),
            Some((7, true, 1))
        );
        assert_eq!(
            (d.tl0picidx, d.end, d.begins_frame),
            (Some((9, 4)), 5, true)
        );
        // Flexible mode, inter: two reference indices (N set on the first).
        let d = vp9(&[0xd0, 0x05, 0x03, 0x02, 0xff]).unwrap();
        assert_eq!(
            (d.picture_id.map(|p| p.value), d.tl0picidx, d.end),
            (Some(5), None, 4)
        );
        assert_eq!(vp9(&[0x80]), None);
        assert_eq!(vp9(&[0xa0, 0x05, 0x00]), None);
    }

    #[test]
    fn picture_ids_are_written_in_their_width() {
        let mut p = [0x90, 0x80, 0x81, 0x02, 0x00];
        let id = vp8(&p).unwrap().picture_id.unwrap();
        id.write(&mut p, 0x7fff + 3);
        assert_eq!(p, [0x90, 0x80, 0x80, 0x02, 0x00]);
        let mut p = [0x90, 0x80, 0x05, 0x00];
        let id = vp8(&p).unwrap().picture_id.unwrap();
        id.write(&mut p, 130);
        assert_eq!(p, [0x90, 0x80, 0x02, 0x00]);
    }

    #[test]
    fn stap_a_units_are_walked_and_cut_to_the_packet() {
        let p = [0x78, 0x00, 0x02, 0x09, 0xf0, 0x00, 0x03, 0x67, 0x42, 0x00];
        let units: Vec<&[u8]> = stap_a(&p).collect();
        assert_eq!(units, [&[0x09, 0xf0][..], &[0x67, 0x42, 0x00][..]]);
        let cut: Vec<&[u8]> = stap_a(&p[..8]).collect();
        assert_eq!(cut, [&[0x09, 0xf0][..], &[0x67][..]]);
        assert_eq!(stap_a(&[0x65, 0x00, 0x01, 0x02]).count(), 0);
        assert_eq!(stap_a(&[0x78, 0x00]).count(), 0);
        assert_eq!(stap_a(&[0x78, 0xff, 0xff, 0x67]).count(), 1);
    }

    #[test]
    fn av1_sequences_begin_at_n_or_a_sequence_header() {
        assert!(av1_begins_sequence(&[0x08, 0x30]));
        // W = 1: the element is the sequence header OBU (type 1).
        assert!(av1_begins_sequence(&[0x10, 0x0a, 0x0b]));
        // W = 0: a length first.
        assert!(av1_begins_sequence(&[0x00, 0x02, 0x0a, 0x0b]));
        // A frame OBU (type 6), a fragment going on, nothing.
        assert!(!av1_begins_sequence(&[0x10, 0x32, 0x00]));
        assert!(!av1_begins_sequence(&[0x90, 0x0a]));
        assert!(!av1_begins_sequence(&[]));
        assert!(!av1_begins_sequence(&[0x00, 0x80, 0x80]));
    }
}
