//! The in-memory browser as a simulcast publisher (RFC 8853), as Chromium is with
//! `sendEncodings`: its video m-line offers one `a=rid` per layer and `a=simulcast:send` in the
//! given order; each video frame goes out on every active layer with its rid (str0m writes the
//! rid, and on retransmissions the repaired-rid, header extensions); a layer sends a keyframe
//! (a VP8 key frame announcing its size) at its start and when asked (a PLI on that layer's
//! SSRC), inter frames otherwise. As Chromium's, each layer's VP8 payload descriptors number
//! its frames on their own: a 15-bit picture id and a TL0PICIDX (every frame in temporal layer
//! 0), each layer from its own start, so a viewer moved between layers sees them jump unless
//! the server rewrites them.

use crate::browser::Browser;
use std::time::Instant;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Rid, Simulcast, SimulcastLayer};
use str0m::rtp::{RtpWrite, SeqNo};

/// One layer a simulcast publisher sends.
#[derive(Debug, Clone)]
pub struct SendLayer {
    /// Its rid.
    pub rid: String,
    /// The picture size its key frames announce.
    pub size: (u16, u16),
    /// Bytes per frame.
    pub bytes: usize,
    /// Whether it sends (a publisher may drop a layer, as Chromium does when its bandwidth
    /// cannot carry it).
    pub active: bool,
    /// Key frames sent on it.
    pub keyframes: u64,
    /// Keyframe requests (PLI, FIR) that named it.
    pub plis: u64,
    pub(crate) key_wanted: bool,
    /// Its next RTP sequence number, picture id and TL0PICIDX.
    pub(crate) seq: u64,
    pub(crate) picture_id: u16,
    pub(crate) tl0picidx: u8,
}

/// Most bytes of VP8 data per RTP packet.
const FRAGMENT: usize = 1000;

/// A VP8 frame's RTP payloads: each with a payload descriptor (X; I with a 15-bit
/// `picture_id`; L with `tl0picidx`; T with TID 0), S set on the first, the frame split
/// into pieces of at most [`FRAGMENT`] bytes.
pub fn vp8_packets(frame: &[u8], picture_id: u16, tl0picidx: u8) -> Vec<Vec<u8>> {
    frame
        .chunks(FRAGMENT)
        .enumerate()
        .map(|(i, piece)| {
            let s = if i == 0 { 0x10 } else { 0x00 };
            let id = picture_id & 0x7fff;
            let mut p = vec![
                0x80 | s,
                0xe0,
                0x80 | (id >> 8) as u8,
                id as u8,
                tl0picidx,
                0x00,
            ];
            p.extend_from_slice(piece);
            p
        })
        .collect()
}

/// A VP8 frame of `bytes` bytes (at least 10): a key frame announcing `size` (RFC 6386
/// §9.1: the frame tag, the start code, the sizes), or an inter frame.
pub fn vp8_frame(key: bool, size: (u16, u16), bytes: usize) -> Vec<u8> {
    let mut f = vec![0x55u8; bytes.max(10)];
    f[..3].copy_from_slice(&[if key { 0x50 } else { 0x51 }, 0x2d, 0x01]);
    f[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
    f[6..8].copy_from_slice(&size.0.to_le_bytes());
    f[8..10].copy_from_slice(&size.1.to_le_bytes());
    f
}

impl Browser {
    /// An offer with one audio and one video m-line in direction `dir`, the video sent as the
    /// simulcast `layers` (rid, picture size, bytes per frame), in this order. Frames sent with
    /// [`Browser::send_video_frame`] then go out on each active layer.
    pub fn offer_simulcast(
        &mut self,
        dir: Direction,
        layers: &[(&str, (u16, u16), usize)],
    ) -> String {
        let mut sim = Simulcast::new();
        for (rid, _, _) in layers {
            sim.add_send_layer(SimulcastLayer::new(rid));
        }
        // Each layer numbers from its own start (Chromium's are random), near a wrap for some.
        let starts = [
            (1000, 10, 100),
            (32_760, 250, 30_000),
            (20_000, 128, 65_000),
        ];
        self.send_layers = layers
            .iter()
            .enumerate()
            .map(|(i, (rid, size, bytes))| {
                let (picture_id, tl0picidx, seq) = starts[i % starts.len()];
                SendLayer {
                    rid: rid.to_string(),
                    size: *size,
                    bytes: *bytes,
                    active: true,
                    keyframes: 0,
                    plis: 0,
                    key_wanted: true,
                    seq,
                    picture_id,
                    tl0picidx,
                }
            })
            .collect();
        let mut api = self.rtc.sdp_api();
        let a = api.add_media(MediaKind::Audio, dir, None, None, None);
        let v = api.add_media(MediaKind::Video, dir, None, None, Some(sim));
        let (offer, pending) = api.apply().expect("an offer");
        self.mids = vec![a, v];
        self.pending = Some(pending);
        offer.to_sdp_string()
    }

    /// The layers this browser sends (empty: no simulcast).
    pub fn send_layers(&self) -> &[SendLayer] {
        &self.send_layers
    }

    /// Stops (`false`) or starts again the layer `rid`; a layer that starts again begins with
    /// a key frame.
    pub fn set_layer_active(&mut self, rid: &str, active: bool) {
        for l in self.send_layers.iter_mut().filter(|l| l.rid == rid) {
            if active && !l.active {
                l.key_wanted = true;
            }
            l.active = active;
        }
    }

    /// A keyframe was asked of layer `rid` (`None`: of every layer).
    pub(crate) fn layer_keyframe_asked(&mut self, rid: Option<Rid>) {
        for l in &mut self.send_layers {
            if rid.is_none_or(|r| &*r == l.rid.as_str()) {
                l.key_wanted = true;
                l.plis += 1;
            }
        }
    }

    /// One video frame on each active layer (frame mode): its RTP packets written on the
    /// layer's stream, with the layer's own sequence numbers and payload descriptors.
    pub(crate) fn send_simulcast_frame(&mut self, now: Instant, ts: u64) -> bool {
        let Some(mid) = self.mid(MediaKind::Video) else {
            return false;
        };
        let Some(w) = self.rtc.writer(mid) else {
            return false;
        };
        let Some(pt) = w
            .payload_params()
            .find(|p| p.spec().codec == Codec::Vp8)
            .map(|p| p.pt())
        else {
            return false;
        };
        let mut sent = false;
        for i in 0..self.send_layers.len() {
            let l = &mut self.send_layers[i];
            if !l.active {
                continue;
            }
            let key = std::mem::take(&mut l.key_wanted);
            l.keyframes += u64::from(key);
            let data = vp8_frame(key, l.size, l.bytes);
            let packets = vp8_packets(&data, l.picture_id, l.tl0picidx);
            l.picture_id = (l.picture_id + 1) & 0x7fff;
            l.tl0picidx = l.tl0picidx.wrapping_add(1);
            let rid = Rid::from(l.rid.as_str());
            let n = packets.len();
            let first_seq = l.seq;
            l.seq += n as u64;
            let mut api = self.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, Some(rid)) else {
                continue;
            };
            for (k, payload) in packets.into_iter().enumerate() {
                let seq = SeqNo::from(first_seq + k as u64);
                let write = RtpWrite::new(pt, seq, ts as u32, now, payload).marker(k + 1 == n);
                tx.write_rtp(write.nackable(true));
            }
            sent = true;
        }
        sent
    }
}
