//! A viewer's VP8 / VP9 picture ids across simulcast layer switches.
//!
//! Each simulcast layer numbers its pictures on its own: Chromium starts every layer's
//! picture id (RFC 7741 §4.2, RFC 9628 §4.2) and TL0PICIDX at a random value. A viewer moved
//! from one layer to another would see both jump, backwards half the time, and its decoder
//! take the jump for lost or reordered pictures. [`PictureIds`] keeps them continuous for one
//! viewer stream, as [`crate::Rewriter`] keeps its sequence numbers: after a switch point
//! ([`PictureIds::resync`], called where the viewer's sequence line resynchronises) the first
//! packet that carries a picture id gets the last one written plus one, and its TL0PICIDX the
//! last one plus one (a switch is at a keyframe, which starts a temporal-layer-0 picture);
//! every later packet moves by the same offsets. The descriptor keeps its width (7 or 15 bits:
//! another would change the payload's length), the value taken modulo that width.
//!
//! ```text
//! layer q: ids 1000 1001 1002 | layer f (from its keyframe): 20 500 20 501 ...
//! viewer:  ids 1000 1001 1002 |                             1003   1004   ...
//! ```

use crate::descriptor::{self, Descriptor};
use crate::port::CodecName;

/// Whether a packet's picture ids are rewritten per viewer: a simulcast layer's VP8 or VP9
/// packet (each layer numbers its pictures on its own). Any other packet goes as it is.
pub fn rewritten(pkt: &crate::Packet<'_>) -> bool {
    pkt.layer.is_some() && matches!(pkt.codec.name, CodecName::Vp8 | CodecName::Vp9)
}

/// What a packet's picture id and TL0PICIDX become (`None`: it has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rewritten {
    /// The picture id to write (below the descriptor's modulus).
    pub picture_id: Option<u16>,
    /// The TL0PICIDX to write.
    pub tl0picidx: Option<u8>,
}

/// One viewer stream's picture id line (see the [module](self)).
#[derive(Debug, Clone, Copy, Default)]
pub struct PictureIds {
    /// Added to the source's picture ids (modulo 2^15) and TL0PICIDX (modulo 2^8).
    offsets: (u16, u8),
    /// The newest picture id and TL0PICIDX written.
    last: Option<u16>,
    last_tl0: Option<u8>,
    /// The next packet with a picture id is a switch point.
    resync: bool,
}

/// The payload descriptor of a codec with picture ids (VP8, VP9).
fn read(codec: CodecName, payload: &[u8]) -> Option<Descriptor> {
    match codec {
        CodecName::Vp8 => descriptor::vp8(payload),
        CodecName::Vp9 => descriptor::vp9(payload),
        _ => None,
    }
}

/// Whether `a` is after `b` on a circle of `modulus` values.
fn newer(a: u16, b: u16, modulus: u16) -> bool {
    let d = a.wrapping_sub(b) % modulus;
    d != 0 && d < modulus / 2
}

impl PictureIds {
    /// Makes the next packet with a picture id a switch point (the stream's source or layer
    /// changed).
    pub fn resync(&mut self) {
        self.resync = true;
    }

    /// What the packet `payload` of `codec` carries becomes, learning it as written: the
    /// first packet with a picture id after [`resync`](Self::resync) sets the offsets.
    pub fn map(&mut self, codec: CodecName, payload: &[u8]) -> Rewritten {
        let Some(d) = read(codec, payload) else {
            return Rewritten::default();
        };
        if let Some(id) = d.picture_id.filter(|_| self.resync) {
            self.resync = false;
            self.offsets.0 = self
                .last
                .map_or(0, |l| l.wrapping_add(1).wrapping_sub(id.value) & 0x7fff);
            self.offsets.1 = match (self.last_tl0, d.tl0picidx) {
                (Some(l), Some((t, _))) => l.wrapping_add(1).wrapping_sub(t),
                _ => 0,
            };
        }
        let out = self.apply(&d);
        if let (Some(id), Some(v)) = (d.picture_id, out.picture_id) {
            if self.last.is_none_or(|l| newer(v, l, id.modulus())) {
                self.last = Some(v);
            }
        }
        if let Some(v) = out.tl0picidx {
            if self.last_tl0.is_none_or(|l| newer(v.into(), l.into(), 256)) {
                self.last_tl0 = Some(v);
            }
        }
        out
    }

    /// [`map`](Self::map), written into `payload`.
    pub fn rewrite(&mut self, codec: CodecName, payload: &mut [u8]) {
        let out = self.map(codec, payload);
        write(codec, payload, out);
    }

    /// A retransmission of a packet sent since the last switch point: rewritten with the
    /// same offsets as when it was first sent, nothing learnt.
    pub fn rewrite_again(&self, codec: CodecName, payload: &mut [u8]) {
        if let Some(d) = read(codec, payload) {
            write(codec, payload, self.apply(&d));
        }
    }

    fn apply(&self, d: &Descriptor) -> Rewritten {
        Rewritten {
            picture_id: d
                .picture_id
                .map(|id| id.value.wrapping_add(self.offsets.0) % id.modulus()),
            tl0picidx: d.tl0picidx.map(|(t, _)| t.wrapping_add(self.offsets.1)),
        }
    }
}

/// Writes `out` into the descriptor of `payload` (of `codec`), in place.
pub fn write(codec: CodecName, payload: &mut [u8], out: Rewritten) {
    let Some(d) = read(codec, payload) else {
        return;
    };
    if let (Some(id), Some(v)) = (d.picture_id, out.picture_id) {
        id.write(payload, v);
    }
    if let (Some((_, at)), Some(v)) = (d.tl0picidx, out.tl0picidx) {
        if let Some(b) = payload.get_mut(at) {
            *b = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CodecName::*;

    /// A VP8 packet: X, a picture id (15-bit when `wide`), TL0PICIDX when given, TID.
    fn vp8(start: bool, id: u16, wide: bool, tl0: Option<u8>) -> Vec<u8> {
        let l = if tl0.is_some() { 0x40 } else { 0 };
        let mut p = vec![0x80 | if start { 0x10 } else { 0 }, 0xa0 | l];
        if wide {
            p.extend_from_slice(&[0x80 | (id >> 8) as u8, id as u8]);
        } else {
            p.push(id as u8 & 0x7f);
        }
        p.extend(tl0);
        p.extend_from_slice(&[0x00, 0x9d]);
        p
    }

    fn ids(codec: CodecName, p: &[u8]) -> (Option<u16>, Option<u8>) {
        let d = read(codec, p).unwrap();
        (d.picture_id.map(|i| i.value), d.tl0picidx.map(|t| t.0))
    }

    /// Sends `packets` of one layer (start, id, tl0) through `line`; what went out.
    fn run(
        line: &mut PictureIds,
        wide: bool,
        packets: &[(bool, u16, Option<u8>)],
    ) -> Vec<(Option<u16>, Option<u8>)> {
        packets
            .iter()
            .map(|&(s, id, tl0)| {
                let mut p = vp8(s, id, wide, tl0);
                line.rewrite(Vp8, &mut p);
                ids(Vp8, &p)
            })
            .collect()
    }

    #[test]
    fn fifteen_bit_ids_and_tl0picidx_go_on_across_a_switch() {
        let mut line = PictureIds::default();
        // Layer q, untouched before any switch.
        let q = [
            (true, 1000, Some(7)),
            (false, 1000, Some(7)),
            (true, 1001, Some(8)),
        ];
        assert_eq!(
            run(&mut line, true, &q),
            [
                (Some(1000), Some(7)),
                (Some(1000), Some(7)),
                (Some(1001), Some(8))
            ]
        );
        // Layer f from its keyframe: ids 32 767 (about to wrap) and TL0PICIDX 255.
        line.resync();
        let f = [
            (true, 32_767, Some(255)),
            (false, 32_767, Some(255)),
            (true, 0, Some(0)),
            (true, 1, Some(0)),
        ];
        assert_eq!(
            run(&mut line, true, &f),
            [
                (Some(1002), Some(9)),
                (Some(1002), Some(9)),
                (Some(1003), Some(10)),
                (Some(1004), Some(10))
            ]
        );
        // A retransmission of f's first packet: as it was sent.
        let mut again = vp8(true, 32_767, true, Some(255));
        line.rewrite_again(Vp8, &mut again);
        assert_eq!(ids(Vp8, &again), (Some(1002), Some(9)));
        // A late packet of the same segment does not move the last id back.
        assert_eq!(
            run(&mut line, true, &[(false, 32_767, Some(255))]),
            [(Some(1002), Some(9))]
        );
        line.resync();
        assert_eq!(
            run(&mut line, true, &[(true, 500, Some(3))]),
            [(Some(1005), Some(11))]
        );
    }

    #[test]
    fn seven_bit_ids_keep_their_width_and_wrap_at_128() {
        let mut line = PictureIds::default();
        assert_eq!(
            run(&mut line, false, &[(true, 126, None), (true, 127, None)]),
            [(Some(126), None), (Some(127), None)]
        );
        line.resync();
        let out = run(&mut line, false, &[(true, 40, None), (true, 41, None)]);
        assert_eq!(out, [(Some(0), None), (Some(1), None)]);
        // To a 15-bit layer: it goes on from the last 7-bit id; back to 7 bits, modulo 128.
        line.resync();
        assert_eq!(
            run(&mut line, true, &[(true, 20_000, None)]),
            [(Some(2), None)]
        );
        line.resync();
        assert_eq!(run(&mut line, false, &[(true, 5, None)]), [(Some(3), None)]);
    }

    #[test]
    fn packets_without_a_picture_id_pass_and_keep_the_switch_point_pending() {
        let mut line = PictureIds::default();
        run(&mut line, true, &[(true, 10, Some(1))]);
        line.resync();
        // No X at all: nothing to rewrite, the switch point waits for an id.
        let mut bare = vec![0x10, 0x00, 0x9d];
        line.rewrite(Vp8, &mut bare);
        assert_eq!(bare, [0x10, 0x00, 0x9d]);
        // TL0PICIDX absent on the new layer: the picture id goes on, TL0PICIDX stays absent.
        assert_eq!(
            run(&mut line, true, &[(true, 9000, None)]),
            [(Some(11), None)]
        );
        // Other codecs and short payloads are left as they are.
        let mut h264 = vec![0x65, 0x88];
        line.rewrite(H264, &mut h264);
        assert_eq!(h264, [0x65, 0x88]);
        let mut cut = vec![0x90, 0x80];
        line.rewrite(Vp8, &mut cut);
        assert_eq!(cut, [0x90, 0x80]);
    }

    #[test]
    fn vp9_picture_ids_and_tl0picidx_go_on_too() {
        // I (15-bit), L in non-flexible mode, B: layer indices then TL0PICIDX.
        let vp9 = |id: u16, tl0: u8| vec![0xa8, 0x80 | (id >> 8) as u8, id as u8, 0x00, tl0, 0xff];
        let mut line = PictureIds::default();
        let mut a = vp9(300, 40);
        line.rewrite(Vp9, &mut a);
        assert_eq!(ids(Vp9, &a), (Some(300), Some(40)));
        line.resync();
        let mut b = vp9(12, 200);
        line.rewrite(Vp9, &mut b);
        assert_eq!(ids(Vp9, &b), (Some(301), Some(41)));
        assert_eq!(b[5], 0xff, "the payload after the descriptor is untouched");
    }
}
