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

use crate::browser::Browser;
use std::time::Instant;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind};
use str0m::rtp::{RtpWrite, SeqNo};

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
            seq: 65_000,
            picture: 32_700,
            picture_since_key: 0,
            tl0picidx: 250,
        });
        self.offer(dir)
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
        let Some(pt) = w
            .payload_params()
            .find(|p| p.spec().codec == Codec::Vp9)
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
            packets.extend(layer_packets((sid as u8, tid, key), ids, *bytes, &s.layers));
        }
        let first = s.seq;
        s.seq += packets.len() as u64;
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return false;
        };
        let n = packets.len();
        for (k, payload) in packets.into_iter().enumerate() {
            let write = RtpWrite::new(pt, SeqNo::from(first + k as u64), ts as u32, now, payload);
            tx.write_rtp(write.marker(k + 1 == n).nackable(true));
        }
        true
    }
}
