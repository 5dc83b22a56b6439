//! The in-memory browser as an SVC publisher, as Chromium is with one VP9 encoding and
//! `scalabilityMode: 'L3T3_KEY'`: one video stream whose pictures carry three spatial layers
//! (each picture's layers one after the other, each layer frame in its own packets) and three
//! temporal layers (the pattern T0 T2 T1 T2, U set on T1 and T2 pictures), in VP9's
//! non-flexible mode (RFC 9628: I with a 15-bit picture id, L with the layer indices and
//! TL0PICIDX, B and E on each layer frame's first and last packets, the marker bit on the
//! picture's last packet). A key picture (at the start and when asked: a PLI) has P clear on
//! every layer and its first packet carries the scalability structure with the layers' sizes;
//! the upper layers of other pictures are predicted from earlier pictures (P set), as in
//! `L3T3_KEY`.
//!
//! Or the same stream in AV1 ([`Browser::offer_svc_av1`]), its layers told by the dependency
//! descriptor header extension as Chromium's AV1 encoder tells them: the template dependency
//! structure of `L3T3_KEY` (with the layers' sizes) on a key picture's first packet, each
//! packet's template and frame number (one more per layer frame). Each layer frame is one OBU
//! (a frame OBU with its extension header: temporal and spatial id) in packets of at most
//! [`FRAGMENT`] bytes, the aggregation header's N bit on a key picture's first packet.

use crate::browser::Browser;
use std::time::Instant;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind};
use str0m::rtp::{Extension, ExtensionSerializer, ExtensionValues, RtpWrite, SeqNo};

/// The SVC stream a publisher sends.
#[derive(Debug, Clone)]
pub struct SvcSend {
    /// Each spatial layer's picture size and bytes per layer frame, lowest first.
    pub layers: Vec<((u16, u16), usize)>,
    /// Key pictures sent.
    pub keyframes: u64,
    /// Keyframe requests received.
    pub plis: u64,
    pub(crate) key_wanted: bool,
    /// AV1 with dependency descriptors rather than VP9.
    av1: bool,
    /// The next layer frame's number (AV1).
    frame_number: u16,
    seq: u64,
    picture: u64,
    picture_since_key: u64,
    tl0picidx: u8,
}

/// The temporal layer of each picture after a key picture, in turn.
pub const TEMPORAL_PATTERN: [u8; 4] = [0, 2, 1, 2];

/// Most bytes of a layer frame per packet.
const FRAGMENT: usize = 1000;

/// The packets of one layer frame: its descriptor (then the scalability structure of `sizes`
/// on a key picture's first packet) and the frame, in pieces of at most [`FRAGMENT`] bytes.
fn layer_packets(
    (sid, tid, key): (u8, u8, bool),
    (picture, tl0): (u16, u8),
    bytes: usize,
    sizes: &[((u16, u16), usize)],
) -> Vec<Vec<u8>> {
    let frame = vec![0x33u8; bytes.max(1)];
    let n = frame.chunks(FRAGMENT).count();
    (frame.chunks(FRAGMENT).enumerate())
        .map(|(i, piece)| {
            let structure = key && sid == 0 && i == 0;
            let b0 = 0xa0
                | if key { 0 } else { 0x40 }
                | if i == 0 { 0x08 } else { 0 }
                | if i + 1 == n { 0x04 } else { 0 }
                | if structure { 0x02 } else { 0 };
            let u = u8::from(tid > 0) << 4;
            let d = u8::from(sid > 0 && key);
            let id = picture & 0x7fff;
            let mut p = vec![b0, 0x80 | (id >> 8) as u8, id as u8];
            p.extend_from_slice(&[tid << 5 | u | sid << 1 | d, tl0]);
            if structure {
                // N_S, Y; no group of pictures (G clear).
                p.push(((sizes.len() as u8 - 1) << 5) | 0x10);
                for ((w, h), _) in sizes {
                    p.extend_from_slice(&w.to_be_bytes());
                    p.extend_from_slice(&h.to_be_bytes());
                }
            }
            p.extend_from_slice(piece);
            p
        })
        .collect()
}

/// The dependency descriptor of an `L3T3_KEY` key picture's first packet: template 0 of a
/// structure of id 0 (as `fluo_sfu::dependency_descriptor`'s tests write it, and
/// fuzz/seeds.py's `dd_key(0, 0)`): 9 decode targets, 12 templates, three chains, sizes
/// 320x180, 640x360, 1280x720. Its first three bytes are set per packet.
const L3T3_KEY_STRUCTURE: [u8; 76] = [
    0x80, 0x00, 0x00, 0x80, 0x08, 0x16, 0x16, 0x17, 0xaa, 0xaa, 0xaa, 0x00, 0x01, 0x80, 0x00, 0x10,
    0x00, 0x02, 0xaa, 0x80, 0xa8, 0x00, 0x06, 0x00, 0x00, 0x40, 0x00, 0x0a, 0x80, 0x02, 0xa0, 0x00,
    0x18, 0x00, 0x01, 0x6d, 0x54, 0x90, 0x6d, 0x54, 0x90, 0x6d, 0x54, 0x8c, 0x55, 0xf8, 0x00, 0x65,
    0xd3, 0x2a, 0x19, 0x08, 0x88, 0x8e, 0x5b, 0xb2, 0xa1, 0x91, 0x08, 0x90, 0xe4, 0x3b, 0x2a, 0x1c,
    0x04, 0xfc, 0x02, 0xcc, 0x09, 0xfc, 0x05, 0x9c, 0x13, 0xfc, 0x0b, 0x3c,
];

/// The template of a layer frame in that structure: per spatial layer, key T0, delta T0, T1,
/// T2.
fn av1_template(sid: u8, tid: u8, key: bool) -> u8 {
    let t = match (key, tid) {
        (true, _) => 0,
        (false, 0) => 1,
        (false, t) => 1 + t,
    };
    4 * sid + t
}

/// The packets of one AV1 layer frame with their dependency descriptors.
fn av1_layer_packets(
    (sid, tid, key): (u8, u8, bool),
    frame_number: u16,
    bytes: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut obu = vec![0x34, tid << 5 | sid << 3];
    obu.resize(bytes.max(3), 0x40 | sid);
    let n = obu.chunks(FRAGMENT).count();
    (obu.chunks(FRAGMENT).enumerate())
        .map(|(i, piece)| {
            let (first, last) = (i == 0, i + 1 == n);
            let z = if first { 0 } else { 0x80 };
            let y = if last { 0 } else { 0x40 };
            let n_bit = if key && sid == 0 && first { 0x08 } else { 0 };
            let agg = z | y | 0x10 | n_bit;
            let mut p = vec![agg];
            p.extend_from_slice(piece);
            let mut dd = if key && sid == 0 && first {
                L3T3_KEY_STRUCTURE.to_vec()
            } else {
                vec![0; 3]
            };
            dd[0] = u8::from(first) << 7 | u8::from(last) << 6 | av1_template(sid, tid, key);
            dd[1..3].copy_from_slice(&frame_number.to_be_bytes());
            (p, dd)
        })
        .collect()
}

/// A dependency descriptor to send, in a packet's `ExtensionValues::user_values`.
#[derive(Debug, Clone)]
struct DdOut(Vec<u8>);

/// Writes [`DdOut`]; reads a received one into it.
#[derive(Debug)]
struct DdWriter;

impl ExtensionSerializer for DdWriter {
    fn write_to(&self, buf: &mut [u8], ev: &ExtensionValues) -> usize {
        match ev.user_values.get::<DdOut>() {
            Some(d) if d.0.len() <= buf.len() => {
                buf[..d.0.len()].copy_from_slice(&d.0);
                d.0.len()
            }
            _ => 0,
        }
    }

    fn parse_value(&self, buf: &[u8], ev: &mut ExtensionValues) -> bool {
        ev.user_values.set(DdOut(buf.to_vec()));
        true
    }

    fn is_video(&self) -> bool {
        true
    }

    fn is_audio(&self) -> bool {
        false
    }

    fn requires_two_byte_form(&self, ev: &ExtensionValues) -> bool {
        ev.user_values
            .get::<DdOut>()
            .is_some_and(|d| d.0.len() > 16)
    }
}

/// The length of the dependency descriptor a packet carried (0: none).
pub(crate) fn dd_len(ev: &ExtensionValues) -> usize {
    ev.user_values.get::<DdOut>().map_or(0, |d| d.0.len())
}

/// The dependency descriptor extension as a publisher sends it (and a viewer reads it) (for
/// [`crate::World::add_browser_with`]: `set_extension(12, dd_extension())`).
pub fn dd_extension() -> Extension {
    Extension::with_serializer(fluo_sfu::dependency_descriptor::URI, DdWriter)
}

impl Browser {
    /// An offer with one audio and one video m-line in direction `dir`, the video an SVC
    /// stream of these spatial `layers` (picture size, bytes per layer frame), lowest first:
    /// frames sent with [`Browser::send_video_frame`] go out as its pictures.
    pub fn offer_svc(&mut self, dir: Direction, layers: &[((u16, u16), usize)]) -> String {
        self.svc = Some(SvcSend {
            layers: layers.to_vec(),
            keyframes: 0,
            plis: 0,
            key_wanted: true,
            av1: false,
            frame_number: 65_500,
            seq: 65_000,
            picture: 32_700,
            picture_since_key: 0,
            tl0picidx: 250,
        });
        self.offer(dir)
    }

    /// Like [`Browser::offer_svc`], the stream in AV1 with dependency descriptors (the
    /// browser made with [`dd_extension`] in its configuration).
    pub fn offer_svc_av1(&mut self, dir: Direction, layers: &[((u16, u16), usize)]) -> String {
        let offer = self.offer_svc(dir, layers);
        if let Some(s) = self.svc.as_mut() {
            s.av1 = true;
        }
        offer
    }

    /// The SVC stream this browser sends, if any.
    pub fn svc_send(&self) -> Option<&SvcSend> {
        self.svc.as_ref()
    }

    /// One picture of the SVC stream (frame mode): every layer's packets, in VP9.
    pub(crate) fn send_svc_picture(&mut self, now: Instant, ts: u64) -> bool {
        let Some(mid) = self.mid(MediaKind::Video) else {
            return false;
        };
        let Some(w) = self.rtc.writer(mid) else {
            return false;
        };
        let av1 = self.svc.as_ref().is_some_and(|s| s.av1);
        let codec = if av1 { Codec::Av1 } else { Codec::Vp9 };
        let Some(pt) = w
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
        else {
            return false;
        };
        let Some(s) = self.svc.as_mut() else {
            return false;
        };
        let key = std::mem::take(&mut s.key_wanted);
        if key {
            s.keyframes += 1;
            s.picture_since_key = 0;
        }
        let tid = TEMPORAL_PATTERN[(s.picture_since_key % 4) as usize];
        s.picture_since_key += 1;
        if tid == 0 {
            s.tl0picidx = s.tl0picidx.wrapping_add(1);
        }
        let ids = (s.picture as u16, s.tl0picidx);
        s.picture += 1;
        let mut packets = vec![];
        for (sid, (_, bytes)) in s.layers.iter().enumerate() {
            let layer = (sid as u8, tid, key);
            if s.av1 {
                packets.extend(av1_layer_packets(layer, s.frame_number, *bytes));
                s.frame_number = s.frame_number.wrapping_add(1);
            } else {
                let vp9 = layer_packets(layer, ids, *bytes, &s.layers);
                packets.extend(vp9.into_iter().map(|p| (p, vec![])));
            }
        }
        let first = s.seq;
        s.seq += packets.len() as u64;
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return false;
        };
        let n = packets.len();
        for (k, (payload, dd)) in packets.into_iter().enumerate() {
            let mut write =
                RtpWrite::new(pt, SeqNo::from(first + k as u64), ts as u32, now, payload);
            if !dd.is_empty() {
                let mut ev = ExtensionValues::default();
                ev.user_values.set(DdOut(dd));
                write = write.ext_vals(ev);
            }
            tx.write_rtp(write.marker(k + 1 == n).nackable(true));
        }
        true
    }
}
