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

/// What a VP9 packet says of its place in a scalable stream (RFC 9628 §4.2): its layer
/// indices (the L byte, in flexible and non-flexible mode alike) and the flags a layer
/// filter needs. A packet without layer indices is spatial and temporal layer 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp9Layers {
    /// The descriptor carries layer indices (L).
    pub layered: bool,
    /// Spatial layer (SID, 0 to 7).
    pub sid: u8,
    /// Temporal layer (TID, 0 to 7).
    pub tid: u8,
    /// Switching up point (U): later pictures of a higher temporal layer do not refer to
    /// pictures before this one above its TID.
    pub switch_up: bool,
    /// Predicted from the lower spatial layer of the same picture (D).
    pub inter_layer: bool,
    /// Predicted from an earlier picture (P): clear on a key picture's every layer.
    pub inter_picture: bool,
    /// The packet begins a layer frame (B).
    pub begins: bool,
    /// The packet ends a layer frame (E).
    pub ends: bool,
    /// It carries the scalability structure (V).
    pub structure: bool,
}

impl Vp9Layers {
    /// The packet begins a picture: the first packet of its lowest spatial layer's frame.
    pub fn begins_picture(&self) -> bool {
        self.begins && self.sid == 0
    }

    /// The packet begins a key picture (its base layer frame, not predicted from earlier
    /// pictures).
    pub fn begins_key_picture(&self) -> bool {
        self.begins_picture() && !self.inter_picture
    }
}

/// The layer indices and flags of a VP9 payload descriptor (see [`Vp9Layers`]); `None` if
/// the descriptor does not fit the packet.
pub fn vp9_layers(p: &[u8]) -> Option<Vp9Layers> {
    let b0 = *p.first()?;
    let layered = b0 & 0x20 != 0;
    let mut out = Vp9Layers {
        layered,
        inter_picture: b0 & 0x40 != 0,
        begins: b0 & 0x08 != 0,
        ends: b0 & 0x04 != 0,
        structure: b0 & 0x02 != 0,
        ..Vp9Layers::default()
    };
    if layered {
        let mut i = 1;
        if b0 & 0x80 != 0 {
            i += if *p.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        let l = *p.get(i)?;
        out.tid = l >> 5;
        out.switch_up = l & 0x10 != 0;
        out.sid = (l >> 1) & 0x07;
        out.inter_layer = l & 0x01 != 0;
    }
    // The whole descriptor must be there (a cut one is not forwarded as a layer of anything).
    vp9(p)?;
    Some(out)
}

/// The picture size of each spatial layer a VP9 scalability structure gives (RFC 9628
/// §4.2.1, when it carries sizes: Y), lowest first, and how many there are; `None` without
/// one or when it does not fit the packet.
pub fn vp9_layer_sizes(p: &[u8]) -> Option<([(u16, u16); 8], usize)> {
    if *p.first()? & 0x02 == 0 {
        return None;
    }
    let mut i = vp9(p)?.end;
    let ss = *p.get(i)?;
    i += 1;
    if ss & 0x10 == 0 {
        return None;
    }
    let n = usize::from(ss >> 5) + 1;
    let bytes = p.get(i..i + 4 * n)?;
    let mut sizes = [(0, 0); 8];
    for (at, c) in sizes.iter_mut().zip(bytes.chunks_exact(4)) {
        *at = (
            u16::from_be_bytes([c[0], c[1]]),
            u16::from_be_bytes([c[2], c[3]]),
        );
    }
    Some((sizes, n))
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
    fn vp9_layer_indices_are_read_in_both_modes() {
        // Non-flexible: I (15-bit), L, B, E; TID 2, U, SID 1, D; TL0PICIDX.
        let l = vp9_layers(&[0xac, 0x80, 0x07, 0x53, 0x09, 0xff]).unwrap();
        let want = Vp9Layers {
            layered: true,
            sid: 1,
            tid: 2,
            switch_up: true,
            inter_layer: true,
            inter_picture: false,
            begins: true,
            ends: true,
            structure: false,
        };
        assert_eq!(l, want);
        assert!(
            !l.begins_picture(),
            "SID 1 begins a layer frame, not the picture"
        );
        // Flexible, inter (P), 7-bit id, TID 0 SID 0, one reference index: a picture's start.
        let l = vp9_layers(&[0xf8, 0x05, 0x00, 0x02, 0xff]).unwrap();
        assert_eq!(
            (l.sid, l.tid, l.inter_picture, l.layered),
            (0, 0, true, true)
        );
        assert!(l.begins_picture() && !l.begins_key_picture());
        // No I: the layer byte right after the first; V set (the structure follows).
        let l = vp9_layers(&[0x2a, 0x04, 0x00, 0x00]).unwrap();
        assert_eq!((l.sid, l.tid, l.structure), (2, 0, true));
        assert!(!l.begins_picture());
        // No L: layer 0, the key picture's start.
        let l = vp9_layers(&[0x8c, 0x01, 0xff]).unwrap();
        assert_eq!((l.layered, l.sid, l.tid), (false, 0, 0));
        assert!(l.begins_key_picture());
        // Every bit pattern of the first two bytes, cut at every length: no panic, and a
        // descriptor that does not fit is refused.
        for b0 in 0..=255u8 {
            for b1 in 0..=255u8 {
                let p = [b0, b1, 0x81, 0x03, 0x05, 0x07];
                for n in 0..=p.len() {
                    let cut = &p[..n];
                    if vp9(cut).is_none() {
                        assert_eq!(vp9_layers(cut), None);
                    }
                    let _ = vp9_layer_sizes(cut);
                }
            }
        }
        assert_eq!(vp9_layers(&[0xa8, 0x80]), None, "cut in the picture id");
        assert_eq!(vp9_layers(&[0xa8, 0x05]), None, "no layer byte");
        assert_eq!(vp9_layers(&[0xa8, 0x05, 0x00]), None, "no TL0PICIDX");
        assert_eq!(vp9_layers(&[]), None);
    }

    #[test]
    fn vp9_scalability_structures_give_each_layers_size() {
        // I (7-bit), L non-flexible, B, V; SID 0 TID 0; TL0PICIDX; SS: N_S = 2 (three), Y, G
        // clear: 320x180, 640x360, 1280x720.
        let mut p = vec![0xaa, 0x12, 0x00, 0x07, 0x50];
        for (w, h) in [(320u16, 180u16), (640, 360), (1280, 720)] {
            p.extend_from_slice(&w.to_be_bytes());
            p.extend_from_slice(&h.to_be_bytes());
        }
        let (sizes, n) = vp9_layer_sizes(&p).unwrap();
        assert_eq!(n, 3);
        assert_eq!(&sizes[..3], &[(320, 180), (640, 360), (1280, 720)]);
        assert_eq!(vp9_layer_sizes(&p[..p.len() - 1]), None, "a size cut short");
        // No V; V without Y.
        let mut no_v = p.clone();
        no_v[0] &= !0x02;
        assert_eq!(vp9_layer_sizes(&no_v), None);
        assert_eq!(vp9_layer_sizes(&[0x8a, 0x12, 0x40]), None);
        // Eight layers (N_S = 7) fill the array; none past it.
        let mut all = vec![0x8a, 0x12, 0xf0];
        all.extend(std::iter::repeat_n([0, 1, 0, 1], 8).flatten());
        assert_eq!(vp9_layer_sizes(&all).unwrap().1, 8);
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
