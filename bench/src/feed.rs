//! The publisher's media, encoded once with GStreamer and replayed to every server: VP8
//! 640x360@30 at about 1 Mbit/s, and Opus 64 kbit/s in 20 ms frames, as RTP payloads with
//! their send offsets. The same bytes go to every server. Its only keyframe is the loop's
//! first frame (`keyframe-mode=disabled`: `keyframe-max-dist` is not applied; read from the
//! cached feed's VP8 headers). `--simulcast` adds three video layers encoded alike but with
//! a keyframe every 60 frames ([`LAYERS`]).

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::path::Path;
use std::time::Duration;

/// One RTP packet of the feed.
#[derive(Clone)]
pub struct FeedPacket {
    /// When it is sent, from the start of the loop.
    pub at: Duration,
    pub video: bool,
    pub marker: bool,
    /// RTP timestamp from the start of the loop (90 kHz video, 48 kHz audio).
    pub ts: u32,
    pub payload: std::sync::Arc<[u8]>,
}

/// The whole loop, ordered by send time.
pub struct Feed {
    pub packets: Vec<FeedPacket>,
    /// Length of one loop.
    pub period: Duration,
    /// `--simulcast`: the video layers (rid, video only), sent instead of this feed's video
    /// (its audio stays). Empty: one video stream.
    pub layers: Vec<(String, Feed)>,
}

/// The simulcast layers (`--simulcast`): rid, size and bitrate, encoded as the main feed but
/// with a keyframe every 60 frames (a switch between layers waits for one: the replaying
/// publisher cannot answer a PLI), cached beside it. `f` is the main feed's size and rate.
pub const LAYERS: [(&str, u32, u32, u32); 3] = [
    ("q", 160, 90, 100_000),
    ("h", 320, 180, 300_000),
    ("f", 640, 360, 1_000_000),
];

const SECONDS: u32 = 10;
const MAGIC: &[u8; 8] = b"FLUOFD02";

impl Feed {
    /// Video frames per second (frames' last packets per second of the loop).
    pub fn fps(&self) -> f64 {
        let frames = self.packets.iter().filter(|p| p.video && p.marker).count();
        frames as f64 / self.period.as_secs_f64().max(1e-3)
    }

    /// Loads the feed cached at `cache`, or encodes it (a few seconds) and caches it there.
    pub fn load_or_encode(cache: &Path) -> Result<Feed, String> {
        if let Ok(bytes) = std::fs::read(cache) {
            if let Some(f) = Feed::decode(&bytes) {
                return Ok(f);
            }
        }
        let f = Feed::encode()?;
        if let Some(dir) = cache.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(cache, f.to_bytes()).map_err(|e| format!("{}: {e}", cache.display()))?;
        Ok(f)
    }

    /// Loads the lower layers' feeds (cached beside `cache`, encoded the first time) into
    /// `self.layers`.
    pub fn add_layers(&mut self, cache: &Path) -> Result<(), String> {
        for (rid, w, h, bps) in LAYERS {
            let path = cache.with_file_name(format!("bench-feed-{rid}.bin"));
            let layer = match std::fs::read(&path).ok().and_then(|b| Feed::decode(&b)) {
                Some(f) => f,
                None => {
                    let f = Feed::encode_sized(w, h, bps, false, "auto")?;
                    std::fs::write(&path, f.to_bytes())
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    f
                }
            };
            self.layers.push((rid.to_string(), layer));
        }
        Ok(())
    }

    fn encode() -> Result<Feed, String> {
        Feed::encode_sized(640, 360, 1_000_000, true, "disabled")
    }

    /// VP8 of `width` x `height` at `bps` (vp8enc's `keyframe-mode`: `disabled` gives the
    /// loop's first frame only, `auto` one every 60 frames), with the Opus track when `audio`.
    fn encode_sized(
        width: u32,
        height: u32,
        bps: u32,
        audio: bool,
        keyframes: &str,
    ) -> Result<Feed, String> {
        gst::init().map_err(|e| e.to_string())?;
        let frames = SECONDS * 30;
        let video = run_pipeline(&format!(
            "videotestsrc pattern=zone-plate kx2=12 ky2=8 kt=2 num-buffers={frames} \
             ! video/x-raw,width={width},height={height},framerate=30/1 \
             ! vp8enc target-bitrate={bps} end-usage=cbr keyframe-max-dist=60 keyframe-mode={keyframes} \
               deadline=1 cpu-used=4 threads=2 \
             ! rtpvp8pay mtu=1200 pt=96 picture-id-mode=15-bit ! appsink name=out sync=false"
        ))?;
        let audio = if audio {
            run_pipeline(&format!(
                "audiotestsrc wave=ticks num-buffers={} samplesperbuffer=960 \
                 ! audio/x-raw,rate=48000,channels=2 ! opusenc bitrate=64000 frame-size=20 \
                 ! rtpopuspay pt=111 ! appsink name=out sync=false",
                SECONDS * 50
            ))?
        } else {
            vec![]
        };
        let mut packets = vec![];
        for (list, video, clock) in [(video, true, 90_000u64), (audio, false, 48_000)] {
            if list.is_empty() && !video {
                continue;
            }
            let Some(first) = list.first().map(|p| p.1) else {
                return Err("the encoder produced nothing".into());
            };
            for (marker, ts, payload) in list {
                let rel = ts.wrapping_sub(first);
                packets.push(FeedPacket {
                    at: Duration::from_micros(u64::from(rel) * 1_000_000 / clock),
                    video,
                    marker,
                    ts: rel,
                    payload: payload.into(),
                });
            }
        }
        packets.sort_by_key(|p| (p.at, !p.video));
        Ok(Feed {
            packets,
            period: Duration::from_secs(u64::from(SECONDS)),
            layers: vec![],
        })
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for p in &self.packets {
            out.extend_from_slice(&(p.at.as_micros() as u64).to_le_bytes());
            out.push(u8::from(p.video) | (u8::from(p.marker) << 1));
            out.extend_from_slice(&p.ts.to_le_bytes());
            out.extend_from_slice(&(p.payload.len() as u32).to_le_bytes());
            out.extend_from_slice(&p.payload);
        }
        out
    }

    fn decode(b: &[u8]) -> Option<Feed> {
        let mut rest = b.strip_prefix(MAGIC)?;
        let mut packets = vec![];
        while !rest.is_empty() {
            let at = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
            let flags = *rest.get(8)?;
            let ts = u32::from_le_bytes(rest.get(9..13)?.try_into().ok()?);
            let len = u32::from_le_bytes(rest.get(13..17)?.try_into().ok()?) as usize;
            let payload = rest.get(17..17 + len)?;
            packets.push(FeedPacket {
                at: Duration::from_micros(at),
                video: flags & 1 != 0,
                marker: flags & 2 != 0,
                ts,
                payload: payload.into(),
            });
            rest = &rest[17 + len..];
        }
        (!packets.is_empty()).then_some(Feed {
            packets,
            period: Duration::from_secs(u64::from(SECONDS)),
            layers: vec![],
        })
    }

    /// Packets per second of one viewer's stream: (video, audio).
    pub fn rates(&self) -> (f64, f64) {
        let s = self.period.as_secs_f64();
        let v = self.packets.iter().filter(|p| p.video).count() as f64;
        (v / s, (self.packets.len() as f64 - v) / s)
    }

    /// Average bitrate of the payloads, bits per second.
    pub fn bitrate(&self) -> f64 {
        let bytes: usize = self.packets.iter().map(|p| p.payload.len()).sum();
        bytes as f64 * 8.0 / self.period.as_secs_f64()
    }

    /// Average bitrate of the video payloads the publisher sends, bits per second: the
    /// layers' together when it sends simulcast (what `--pacing` multiplies).
    pub fn video_bitrate(&self) -> f64 {
        if !self.layers.is_empty() {
            return self.layers.iter().map(|(_, f)| f.video_bitrate()).sum();
        }
        let bytes: usize = (self.packets.iter().filter(|p| p.video))
            .map(|p| p.payload.len())
            .sum();
        bytes as f64 * 8.0 / self.period.as_secs_f64().max(1e-3)
    }

    /// Each packet's place in its video frame (the video packets of one RTP timestamp):
    /// (index from 0, packets in the frame); (0, 0) for audio.
    pub fn frame_positions(&self) -> Vec<(u8, u8)> {
        let mut out = vec![(0u8, 0u8); self.packets.len()];
        let video: Vec<usize> = (0..self.packets.len())
            .filter(|&i| self.packets[i].video)
            .collect();
        for frame in video.chunk_by(|&a, &b| self.packets[a].ts == self.packets[b].ts) {
            let len = frame.len().min(255) as u8;
            for (k, &i) in frame.iter().enumerate() {
                out[i] = (k.min(255) as u8, len);
            }
        }
        out
    }
}

/// Runs a pipeline ending in an appsink named `out` to EOS; returns each RTP packet's
/// (marker, timestamp, payload).
fn run_pipeline(desc: &str) -> Result<Vec<(bool, u32, Vec<u8>)>, String> {
    let pipeline = gst::parse::launch(desc)
        .map_err(|e| format!("{desc}: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let sink = pipeline
        .by_name("out")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or("no appsink")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let mut out = vec![];
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
        let Some(buf) = sample.buffer() else { continue };
        let Ok(map) = buf.map_readable() else {
            continue;
        };
        let d = map.as_slice();
        if d.len() < 12 {
            continue;
        }
        let cc = usize::from(d[0] & 0x0f);
        let mut off = 12 + 4 * cc;
        if d[0] & 0x10 != 0 {
            let Some(h) = d.get(off..off + 4) else {
                continue;
            };
            off += 4 + 4 * usize::from(u16::from_be_bytes([h[2], h[3]]));
        }
        let Some(payload) = d.get(off..) else {
            continue;
        };
        let ts = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
        out.push((d[1] & 0x80 != 0, ts, payload.to_vec()));
    }
    let _ = pipeline.set_state(gst::State::Null);
    if out.is_empty() {
        return Err(format!("{desc}: no packets"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_format_round_trips_and_refuses_garbage() {
        let f = Feed {
            packets: vec![
                FeedPacket {
                    at: Duration::from_micros(0),
                    video: true,
                    marker: false,
                    ts: 0,
                    payload: vec![1u8, 2, 3].into(),
                },
                FeedPacket {
                    at: Duration::from_micros(20_000),
                    video: false,
                    marker: true,
                    ts: 960,
                    payload: vec![9u8; 100].into(),
                },
            ],
            period: Duration::from_secs(u64::from(SECONDS)),
            layers: vec![],
        };
        let b = f.to_bytes();
        let g = Feed::decode(&b).expect("decodes");
        assert_eq!(g.packets.len(), 2);
        assert_eq!(g.packets[1].at, Duration::from_micros(20_000));
        assert!(g.packets[1].marker && !g.packets[1].video);
        assert_eq!(g.packets[1].ts, 960);
        assert_eq!(&*g.packets[1].payload, &[9u8; 100][..]);
        assert!(Feed::decode(&b[..b.len() - 1]).is_none(), "truncated");
        assert!(Feed::decode(b"FLUOFD00").is_none(), "another version");
    }

    fn packet(at_us: u64, video: bool, marker: bool, ts: u32, len: usize) -> FeedPacket {
        FeedPacket {
            at: Duration::from_micros(at_us),
            video,
            marker,
            ts,
            payload: vec![0u8; len].into(),
        }
    }

    #[test]
    fn frame_positions_and_video_bitrate() {
        let f = Feed {
            packets: vec![
                packet(0, true, false, 0, 1000),
                packet(0, true, false, 0, 1000),
                packet(0, true, true, 0, 500),
                packet(0, false, false, 0, 100),
                packet(33_333, true, true, 3000, 700),
                packet(66_666, true, false, 6000, 1000),
                packet(66_666, true, true, 6000, 800),
            ],
            period: Duration::from_secs(1),
            layers: vec![],
        };
        assert_eq!(
            f.frame_positions(),
            vec![(0, 3), (1, 3), (2, 3), (0, 0), (0, 1), (0, 2), (1, 2)]
        );
        assert_eq!(f.video_bitrate(), 5000.0 * 8.0);
        assert_eq!(f.bitrate(), 5100.0 * 8.0);
    }
}
