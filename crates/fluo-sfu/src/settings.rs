//! What Kurento's MediaElement settings ask of the media an element sends: the bitrate of
//! the video encoders that produce it (`encoderBitrate`, kept within `minEncoderBitrate` ..
//! `maxEncoderBitrate`) and the formats it is forced into (`setAudioFormat`,
//! `setVideoFormat`). The engine writes them per element into a [`SettingsTable`]; the router
//! and the encoders (transcoders, players, filters) read them.
//!
//! As in KMS, the settings belong to the element whose output is encoded: a transcoder that
//! the router inserts between a source and its sinks encodes with the source's settings.

use crate::port::{Codec, CodecName};
use crate::MediaKind;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// An element's output settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputSettings {
    /// The bitrate a video encoder of this output starts at (`encoderBitrate`), in bps.
    pub target_bps: u32,
    /// The least it may go to (`minEncoderBitrate`), in bps.
    pub min_bps: u32,
    /// The most it may go to (`maxEncoderBitrate`), in bps; 0 for no limit.
    pub max_bps: u32,
    /// The forced audio format (`setAudioFormat`).
    pub audio: Option<AudioFormat>,
    /// The forced video format (`setVideoFormat`).
    pub video: Option<VideoFormat>,
}

/// A forced audio format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioFormat {
    /// The codec the element's audio must be in.
    pub codec: CodecName,
    /// The encoder's bitrate in bps (0: the encoder's own; G.711 is always 64 kbps).
    pub bitrate: u32,
}

/// A forced video format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoFormat {
    /// The codec the element's video must be in.
    pub codec: CodecName,
    /// The frame rate as (numerator, denominator), if one is forced.
    pub framerate: Option<(u32, u32)>,
}

impl OutputSettings {
    /// Settings with a target bitrate, no bounds and no forced format.
    pub fn new(target_bps: u32) -> OutputSettings {
        OutputSettings {
            target_bps,
            min_bps: 0,
            max_bps: 0,
            audio: None,
            video: None,
        }
    }

    /// `bps` within [`min_bps`](Self::min_bps), [`max_bps`](Self::max_bps).
    pub fn clamp(&self, bps: u64) -> u32 {
        let mut b = bps.min(u64::from(u32::MAX)) as u32;
        if self.max_bps > 0 {
            b = b.min(self.max_bps);
        }
        b.max(self.min_bps)
    }

    /// The bitrate a video encoder of this output starts at: the target, within the range.
    pub fn video_bps(&self) -> u32 {
        self.clamp(u64::from(self.target_bps))
    }

    /// The codec that media of `kind` in `codec` sent by this element must be re-encoded to
    /// before any sink gets it, if it must: it is not in the forced codec, or a frame rate
    /// or audio bitrate is forced that the element did not apply itself (`applied`: the
    /// element encodes its own output and honours these settings while doing so).
    pub fn reformat(&self, kind: MediaKind, codec: &Codec, applied: bool) -> Option<CodecName> {
        let (want, reencode) = match kind {
            MediaKind::Audio => {
                let a = self.audio?;
                (a.codec, a.bitrate != 0)
            }
            MediaKind::Video => {
                let v = self.video?;
                (v.codec, v.framerate.is_some())
            }
        };
        (codec.name != want || (reencode && !applied)).then_some(want)
    }
}

/// Told an element's new settings whenever they change (see [`SettingsTable::watch`]).
pub type Watcher = Arc<dyn Fn(&OutputSettings) + Send + Sync>;

#[derive(Default)]
struct Watchers(Mutex<Vec<(String, Watcher)>>);

impl std::fmt::Debug for Watchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watchers")
    }
}

/// Output settings by element id, shared between the engine, which writes them, and the
/// media plane. Elements never configured read as the table's defaults.
#[derive(Debug)]
pub struct SettingsTable {
    defaults: OutputSettings,
    map: RwLock<HashMap<String, OutputSettings>>,
    generation: AtomicU64,
    watchers: Watchers,
}

impl SettingsTable {
    /// An empty table whose elements have `defaults` until told otherwise.
    pub fn new(defaults: OutputSettings) -> SettingsTable {
        SettingsTable {
            defaults,
            map: RwLock::default(),
            generation: AtomicU64::new(0),
            watchers: Watchers::default(),
        }
    }

    /// Calls `f` with element `id`'s settings whenever they change from now on (an element
    /// that applies them to media already flowing: a hub's port), until [`unwatch`](Self::unwatch).
    pub fn watch(&self, id: &str, f: Watcher) {
        let mut w = self.watchers.0.lock().unwrap_or_else(|p| p.into_inner());
        w.push((id.to_string(), f));
    }

    /// Stops telling element `id`'s changes.
    pub fn unwatch(&self, id: &str) {
        let mut w = self.watchers.0.lock().unwrap_or_else(|p| p.into_inner());
        w.retain(|(k, _)| k != id);
    }

    /// The settings of element `id`.
    pub fn get(&self, id: &str) -> OutputSettings {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(id).copied().unwrap_or(self.defaults)
    }

    /// Sets the settings of element `id`; the generation moves on when they changed.
    pub fn set(&self, id: &str, s: OutputSettings) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let old = map.get(id).copied().unwrap_or(self.defaults);
        if s == self.defaults {
            map.remove(id);
        } else {
            map.insert(id.to_string(), s);
        }
        drop(map);
        if old != s {
            self.generation.fetch_add(1, Ordering::Release);
            let told: Vec<Watcher> = (self.watchers.0.lock())
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(k, _)| k == id)
                .map(|(_, f)| f.clone())
                .collect();
            for f in told {
                f(&s);
            }
        }
    }

    /// Forgets element `id` (released).
    pub fn remove(&self, id: &str) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.remove(id).is_some() {
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// A number that changes whenever some element's settings change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether no element has settings other than the defaults.
    pub fn is_empty(&self) -> bool {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates_are_clamped_and_formats_decide_reencoding() {
        let mut s = OutputSettings::new(300_000);
        assert_eq!(s.video_bps(), 300_000);
        s.max_bps = 100_000;
        assert_eq!(s.video_bps(), 100_000);
        s.min_bps = 50_000;
        assert_eq!(s.clamp(10_000), 50_000);
        assert_eq!(s.clamp(u64::MAX), 100_000);
        s.max_bps = 0;
        assert_eq!(s.clamp(5_000_000), 5_000_000);

        let vp8 = Codec::new(CodecName::Vp8);
        assert_eq!(s.reformat(MediaKind::Video, &vp8, false), None);
        s.video = Some(VideoFormat {
            codec: CodecName::H264,
            framerate: None,
        });
        assert_eq!(
            s.reformat(MediaKind::Video, &vp8, true),
            Some(CodecName::H264)
        );
        let h264 = Codec::new(CodecName::H264);
        assert_eq!(s.reformat(MediaKind::Video, &h264, false), None);
        s.video = Some(VideoFormat {
            codec: CodecName::H264,
            framerate: Some((15, 1)),
        });
        // A frame rate forces a re-encode unless the element applied it itself.
        assert_eq!(
            s.reformat(MediaKind::Video, &h264, false),
            Some(CodecName::H264)
        );
        assert_eq!(s.reformat(MediaKind::Video, &h264, true), None);
        assert_eq!(
            s.reformat(MediaKind::Audio, &Codec::new(CodecName::Opus), false),
            None
        );
    }

    #[test]
    fn watchers_are_told_changes_until_unwatched() {
        let t = SettingsTable::new(OutputSettings::new(300_000));
        let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
        let s2 = seen.clone();
        t.watch("x", Arc::new(move |s| s2.lock().unwrap().push(s.max_bps)));
        let mut s = OutputSettings::new(300_000);
        s.max_bps = 100_000;
        t.set("x", s);
        t.set("x", s);
        t.set("y", OutputSettings::new(1));
        t.set("x", OutputSettings::new(300_000));
        assert_eq!(*seen.lock().unwrap(), vec![100_000, 0]);
        t.unwatch("x");
        t.set("x", s);
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn the_generation_moves_only_on_changes() {
        let d = OutputSettings::new(300_000);
        let t = SettingsTable::new(d);
        let g = t.generation();
        t.set("a", d);
        assert_eq!(t.generation(), g);
        assert!(t.is_empty());
        let s = OutputSettings { max_bps: 1, ..d };
        t.set("a", s);
        assert_eq!(t.generation(), g + 1);
        t.set("a", s);
        assert_eq!(t.generation(), g + 1);
        assert_eq!(t.get("a"), s);
        assert_eq!(t.get("b"), d);
        t.remove("a");
        assert_eq!(t.generation(), g + 2);
        assert!(t.is_empty());
    }
}
