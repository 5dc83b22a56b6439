//! The picture size a keyframe announces, read from its first RTP packet: simulcast layers are
//! ordered by it (a publisher may list its encodings in any order) and getStats reports the
//! size of the layer a viewer gets.
//!
//! * VP8 (RFC 7741, RFC 6386 §9.1): a key frame's first partition starts with the frame tag,
//!   the start code `9d 01 2a` and two 16-bit little-endian sizes (14 bits each).
//! * VP9 (RFC 9628 §4.2): the payload descriptor's scalability structure (its V bit, sent with
//!   key frames) lists each spatial layer's size; the largest is taken.
//! * H.264 (RFC 6184, ITU-T H.264 §7.3.2.1.1): the sequence parameter set sent before an IDR,
//!   alone or in a STAP-A: macroblocks across and down, less the cropping.

use crate::descriptor;
use crate::port::CodecName;

/// The width and height a keyframe's first packet announces; `None` for another packet, a
/// codec it cannot read (audio, AV1, H.263) or a malformed header.
pub fn keyframe_size(codec: CodecName, payload: &[u8]) -> Option<(u16, u16)> {
    match codec {
        CodecName::Vp8 => vp8(payload),
        CodecName::Vp9 => vp9(payload),
        CodecName::H264 => h264(payload),
        _ => None,
    }
}

fn vp8(p: &[u8]) -> Option<(u16, u16)> {
    // The start of partition 0 (S set, PID 0), after the payload descriptor.
    let d = descriptor::vp8(p).filter(|d| d.begins_frame)?;
    let f = p.get(d.end..d.end + 10)?;
    // A key frame (bit 0 of the tag clear), then the start code.
    if f[0] & 0x01 != 0 || f[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([f[6], f[7]]) & 0x3fff;
    let h = u16::from_le_bytes([f[8], f[9]]) & 0x3fff;
    (w > 0 && h > 0).then_some((w, h))
}

fn vp9(p: &[u8]) -> Option<(u16, u16)> {
    let b0 = *p.first()?;
    // I P L F B E V Z: a key frame's first packet carrying the scalability structure.
    if b0 & 0x40 != 0 || b0 & 0x08 == 0 || b0 & 0x02 == 0 {
        return None;
    }
    let mut i = descriptor::vp9(p)?.end;
    let ss = *p.get(i)?;
    i += 1;
    if ss & 0x10 == 0 {
        return None;
    }
    let layers = usize::from(ss >> 5) + 1;
    let sizes = p.get(i..i + 4 * layers)?;
    sizes
        .chunks_exact(4)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u16::from_be_bytes([c[2], c[3]]),
            )
        })
        .filter(|(w, h)| *w > 0 && *h > 0)
        .max_by_key(|(w, h)| u32::from(*w) * u32::from(*h))
}

fn h264(p: &[u8]) -> Option<(u16, u16)> {
    let b0 = *p.first()?;
    match b0 & 0x1f {
        7 => sps_size(&p[1..]),
        24 => descriptor::stap_a(p)
            .find(|nal| nal.first().is_some_and(|h| h & 0x1f == 7))
            .and_then(|sps| sps_size(&sps[1..])),
        _ => None,
    }
}

/// Reads an RBSP bit by bit, skipping emulation-prevention bytes (`00 00 03`).
struct Bits<'a> {
    data: &'a [u8],
    byte: usize,
    bit: u8,
    zeros: u8,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        if self.bit == 0 {
            if self.zeros >= 2 && self.data.get(self.byte) == Some(&3) {
                self.byte += 1;
                self.zeros = 0;
            }
            let b = *self.data.get(self.byte)?;
            self.zeros = if b == 0 { self.zeros + 1 } else { 0 };
        }
        let b = self.data[self.byte];
        let v = (b >> (7 - self.bit)) & 1;
        self.bit += 1;
        if self.bit == 8 {
            self.bit = 0;
            self.byte += 1;
        }
        Some(u32::from(v))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0, |acc, _| Some(acc << 1 | self.bit()?))
    }

    /// Exp-Golomb, unsigned (values beyond 2^31 are refused).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        let v = k.div_ceil(2) as i32;
        Some(if k % 2 == 1 { v } else { -v })
    }
}

/// Most macroblocks across or down an SPS may say (2^12: 65 536 pixels, past what a
/// 16-bit size holds; H.264's levels allow at most 8 192 pixels).
const MAX_MBS: u64 = 1 << 12;

/// Profiles whose SPS carries chroma format and bit depths (H.264 §7.3.2.1.1).
const HIGH_PROFILES: [u32; 13] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

/// Reads past an SPS's scaling lists (H.264 §7.3.2.1.1.1); `None` when one is malformed.
fn skip_scaling_lists(r: &mut Bits<'_>, chroma: u32) -> Option<()> {
    let lists = if chroma == 3 { 12 } else { 8 };
    for i in 0..lists {
        if r.bit()? == 1 {
            let size = if i < 6 { 16 } else { 64 };
            let (mut last, mut next) = (8i64, 8i64);
            for _ in 0..size {
                if next != 0 {
                    // delta_scale is -128..=127; an SPS saying more is refused.
                    let delta = i64::from(r.se()?);
                    if !(-128..=127).contains(&delta) {
                        return None;
                    }
                    next = (last + delta).rem_euclid(256);
                }
                last = if next == 0 { last } else { next };
            }
        }
    }
    Some(())
}

fn sps_size(rbsp: &[u8]) -> Option<(u16, u16)> {
    let mut r = Bits {
        data: rbsp,
        byte: 0,
        bit: 0,
        zeros: 0,
    };
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma = 1;
    if HIGH_PROFILES.contains(&profile) {
        chroma = r.ue()?;
        if chroma == 3 {
            r.bit()?; // separate_colour_plane_flag
        }
        r.ue()?; // bit depths
        r.ue()?;
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            skip_scaling_lists(&mut r, chroma)?;
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
              // Exp-Golomb values go up to 2^32 - 2: sizes are worked out in 64 bits, and more than
              // MAX_MBS macroblocks across or down (65 536 pixels) is refused.
    let mbs_w = u64::from(r.ue()?) + 1;
    let map_units_h = u64::from(r.ue()?) + 1;
    if mbs_w > MAX_MBS || map_units_h > MAX_MBS {
        return None;
    }
    let frame_mbs_only = u64::from(r.bit()?);
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let mut crop = [0u64; 4];
    if r.bit()? == 1 {
        for c in &mut crop {
            *c = u64::from(r.ue()?);
        }
    }
    let (unit_x, unit_y) = match chroma {
        0 | 3 => (1, 2 - frame_mbs_only),
        2 => (2, 2 - frame_mbs_only),
        _ => (2, 2 * (2 - frame_mbs_only)),
    };
    let w = (mbs_w * 16).checked_sub(unit_x * (crop[0] + crop[1]))?;
    let h = ((2 - frame_mbs_only) * map_units_h * 16).checked_sub(unit_y * (crop[2] + crop[3]))?;
    // (Each term is below 2^36: no product or sum above overflows 64 bits.)
    let (w, h) = (u16::try_from(w).ok()?, u16::try_from(h).ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use CodecName::*;

    #[test]
    fn vp8_key_frames_give_their_size() {
        // Descriptor S=1, then a key frame tag, start code, 640 x 480 (scale bits set).
        let key = [
            0x10, 0x50, 0x2d, 0x01, 0x9d, 0x01, 0x2a, 0x80, 0x42, 0xe0, 0xc1,
        ];
        assert_eq!(keyframe_size(Vp8, &key), Some((640, 480)));
        // With X, a 15-bit picture id, TL0PICIDX and TID.
        let ext = [
            0x90, 0xe0, 0x80, 0x01, 0x05, 0x20, 0x50, 0x2d, 0x01, 0x9d, 0x01, 0x2a, 0xa0, 0x00,
            0x5a, 0x00,
        ];
        assert_eq!(keyframe_size(Vp8, &ext), Some((160, 90)));
        let mut inter = key;
        inter[1] |= 1;
        assert_eq!(keyframe_size(Vp8, &inter), None);
        let mut no_start = key;
        no_start[4] = 0;
        assert_eq!(keyframe_size(Vp8, &no_start), None);
        assert_eq!(keyframe_size(Vp8, &key[..9]), None, "truncated");
        assert_eq!(
            keyframe_size(Vp8, &[0x00, 0x50]),
            None,
            "not a partition start"
        );
    }

    #[test]
    fn vp9_scalability_structures_give_the_largest_layer() {
        // I=1 (7-bit id), B=1, V=1; SS: N_S=1 (two layers), Y=1.
        let key = [
            0x8a, 0x12, 0x30, 0x01, 0x40, 0x00, 0xb4, 0x02, 0x80, 0x01, 0x68,
        ];
        assert_eq!(keyframe_size(Vp9, &key), Some((640, 360)));
        // L set in non-flexible mode: layer indices and TL0PICIDX before the structure.
        let layered = [0xaa, 0x12, 0x00, 0x07, 0x10, 0x05, 0x00, 0x02, 0xd0];
        assert_eq!(keyframe_size(Vp9, &layered), Some((1280, 720)));
        assert_eq!(
            keyframe_size(Vp9, &[0xca, 0x12, 0x10, 0, 1, 0, 1]),
            None,
            "P set"
        );
        assert_eq!(keyframe_size(Vp9, &[0x88, 0x12]), None, "no structure");
        assert_eq!(keyframe_size(Vp9, &key[..8]), None, "truncated");
    }

    #[test]
    fn h264_sequence_parameter_sets_give_the_cropped_size() {
        // Constrained baseline 640x480 (40x30 macroblocks), as x264 writes it.
        let sps = [0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xf6, 0x84, 0x00];
        assert_eq!(keyframe_size(H264, &sps), Some((640, 480)));
        // High profile 1920x1080: 1088 lines cropped by 8 (frame_crop_bottom_offset 4).
        let high = [
            0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0x84, 0x00, 0x00,
            0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc6, 0x58,
        ];
        assert_eq!(keyframe_size(H264, &high), Some((1920, 1080)));
        // In a STAP-A (an AUD first), and a slice that is no SPS.
        let mut stap = vec![0x78, 0x00, 0x02, 0x09, 0xf0, 0x00, sps.len() as u8];
        stap.extend_from_slice(&sps);
        assert_eq!(keyframe_size(H264, &stap), Some((640, 480)));
        assert_eq!(keyframe_size(H264, &[0x65, 0x88, 0x84]), None);
        assert_eq!(keyframe_size(H264, &sps[..5]), None, "truncated");
        for garbage in [
            &[0x67][..],
            &[0x67, 0xff, 0xff, 0xff, 0xff],
            &[0x78, 0xff, 0xff],
        ] {
            assert_eq!(keyframe_size(H264, garbage), None);
        }
        assert_eq!(keyframe_size(Opus, &sps), None);
    }

    /// Writes an SPS bit by bit (exp-Golomb as H.264 §9.1 reads it).
    #[derive(Default)]
    struct BitWriter(Vec<bool>);

    impl BitWriter {
        fn bits(&mut self, v: u64, n: u32) -> &mut Self {
            for i in (0..n).rev() {
                self.0.push(v >> i & 1 == 1);
            }
            self
        }
        fn ue(&mut self, v: u64) -> &mut Self {
            let n = 64 - (v + 1).leading_zeros();
            self.bits(0, n - 1).bits(v + 1, n)
        }
        fn se(&mut self, v: i64) -> &mut Self {
            let k = if v > 0 { 2 * v - 1 } else { -2 * v };
            self.ue(k as u64)
        }
        /// The NAL unit: header 0x67, the bits, a stop bit, zero bits to the byte.
        fn sps(&self) -> Vec<u8> {
            let mut bits = self.0.clone();
            bits.push(true);
            while bits.len() % 8 != 0 {
                bits.push(false);
            }
            let mut out = vec![0x67];
            out.extend(
                bits.chunks(8)
                    .map(|c| c.iter().fold(0u8, |b, x| b << 1 | u8::from(*x))),
            );
            out
        }
    }

    /// A baseline SPS up to its size fields: `w_minus1` / `h_minus1` macroblocks less one.
    fn baseline(w_minus1: u64, h_minus1: u64) -> BitWriter {
        let mut b = BitWriter::default();
        b.bits(66, 8).bits(0, 8).bits(30, 8); // profile, constraints, level
        b.ue(0).ue(0).ue(2).ue(1).bits(0, 1); // id, frame num, poc type 2, refs, gaps
        b.ue(w_minus1).ue(h_minus1);
        b.bits(1, 1).bits(1, 1); // frame_mbs_only, direct_8x8
        b
    }

    #[test]
    fn crafted_sizes_are_refused_without_overflowing() {
        let ok = baseline(39, 29);
        let mut ok = ok;
        ok.bits(0, 1); // no cropping
        assert_eq!(keyframe_size(H264, &ok.sps()), Some((640, 480)));
        // 29 zero bits before pic_width_in_mbs_minus1: 2^29 - 1 and more macroblocks, whose
        // width in pixels is past 32 bits.
        let mut wide = baseline((1 << 29) - 1, 29);
        wide.bits(0, 1);
        assert_eq!(keyframe_size(H264, &wide.sps()), None);
        let mut wider = baseline((1 << 32) - 2, (1 << 32) - 2);
        wider.bits(0, 1);
        assert_eq!(keyframe_size(H264, &wider.sps()), None);
        // More than 2^12 macroblocks across is refused; 2^12 is read (past u16: None too).
        let mut edge = baseline(4095, 29);
        edge.bits(0, 1);
        assert_eq!(keyframe_size(H264, &edge.sps()), None);
        // Cropping offsets whose sum is past 32 bits.
        let mut crop = baseline(39, 29);
        crop.bits(1, 1)
            .ue((1 << 32) - 2)
            .ue((1 << 32) - 2)
            .ue(0)
            .ue(0);
        assert_eq!(keyframe_size(H264, &crop.sps()), None);
        // Field coding (frame_mbs_only 0) doubles the height: 30 map units, 960 lines.
        let mut field = BitWriter::default();
        field
            .bits(66, 8)
            .bits(0, 8)
            .bits(30, 8)
            .ue(0)
            .ue(0)
            .ue(2)
            .ue(1)
            .bits(0, 1);
        field
            .ue(39)
            .ue(29)
            .bits(0, 1)
            .bits(0, 1)
            .bits(1, 1)
            .bits(0, 1);
        assert_eq!(keyframe_size(H264, &field.sps()), Some((640, 960)));
    }

    #[test]
    fn crafted_scaling_lists_are_refused_without_overflowing() {
        // High profile with a scaling matrix whose first delta is the largest se() reads.
        let mut b = BitWriter::default();
        b.bits(100, 8).bits(0, 8).bits(40, 8).ue(0); // profile 100, level, id
        b.ue(1).ue(0).ue(0).bits(0, 1); // chroma 4:2:0, bit depths, bypass
        b.bits(1, 1).bits(1, 1); // scaling matrix present, list 0 present
        b.se(i64::from(i32::MAX));
        assert_eq!(keyframe_size(H264, &b.sps()), None);
        let mut b = BitWriter::default();
        b.bits(100, 8)
            .bits(0, 8)
            .bits(40, 8)
            .ue(0)
            .ue(1)
            .ue(0)
            .ue(0)
            .bits(0, 1);
        b.bits(1, 1).bits(1, 1).se(-i64::from(i32::MAX));
        assert_eq!(keyframe_size(H264, &b.sps()), None);
        // A well-formed list (every delta 0: flat 8s) goes on to the size.
        let mut b = BitWriter::default();
        b.bits(100, 8)
            .bits(0, 8)
            .bits(40, 8)
            .ue(0)
            .ue(1)
            .ue(0)
            .ue(0)
            .bits(0, 1);
        b.bits(1, 1).bits(1, 1);
        for _ in 0..16 {
            b.se(0);
        }
        b.bits(0, 7); // lists 1-7 absent
        b.ue(0)
            .ue(2)
            .ue(1)
            .bits(0, 1)
            .ue(39)
            .ue(29)
            .bits(1, 1)
            .bits(1, 1)
            .bits(0, 1);
        assert_eq!(keyframe_size(H264, &b.sps()), Some((640, 480)));
    }
}
