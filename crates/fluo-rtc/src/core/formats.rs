//! Elements' output settings in the router: a source whose `setAudioFormat` /
//! `setVideoFormat` asks for another codec, a frame rate or an audio bitrate reaches its
//! sinks through a transcoder that makes it so; when an element's settings change, the
//! transcoders of its output are made again with the new ones.

use super::*;
use fluo_sfu::SettingsTable;

impl MediaCore {
    /// Follows `table` for elements' output settings.
    pub(super) fn set_settings(&mut self, table: Arc<SettingsTable>) {
        self.settings = Some(table);
        // Taken in at the first look, whatever the generation.
        self.settings_seen = u64::MAX;
        self.refresh_settings();
    }

    /// Takes in the settings that changed since last looked at (one atomic load when none
    /// did): sources with a forced format are noted, and the transcoders of a source whose
    /// settings changed go, to be made again with the new settings by its next packet.
    pub(super) fn refresh_settings(&mut self) {
        let Some(table) = self.settings.clone() else {
            return;
        };
        let generation = table.generation();
        if generation == self.settings_seen {
            return;
        }
        self.settings_seen = generation;
        let keys: Vec<(u64, String)> = self.by_id.iter().map(|(id, k)| (*k, id.clone())).collect();
        let mut changed = vec![];
        for (key, id) in keys {
            let s = table.get(&id);
            if self.outputs.get(&key).is_some_and(|old| *old != s) {
                changed.push(key);
            }
            self.note_settings(key, s);
        }
        for src in changed {
            self.remake_transcoders(src);
        }
    }

    /// Reads the settings of an element just added (`key`, `id`): a change made before
    /// this may have been taken in while it was not known yet.
    pub(super) fn settings_of_new(&mut self, key: u64, id: &str) {
        if let Some(table) = &self.settings {
            let s = table.get(id);
            self.note_settings(key, s);
        }
    }

    fn note_settings(&mut self, key: u64, s: fluo_sfu::OutputSettings) {
        self.outputs.insert(key, s);
        if s.audio.is_some() || s.video.is_some() {
            self.forced.insert(key, s);
        } else {
            self.forced.remove(&key);
        }
    }

    /// The codec `src`'s packet `f` must be re-encoded to before `sink` gets it, because a
    /// format forced on `src` asks for it; `None` when it goes as it is (or through the
    /// usual codec matching).
    pub(super) fn reformat_for(&mut self, src: u64, sink: u64, f: &Forward) -> Option<Codec> {
        self.refresh_settings();
        if self.forced.is_empty() {
            return None;
        }
        let s = *self.forced.get(&src)?;
        if self.ports.get(&sink).is_some_and(|p| p.upstream.is_some()) {
            // A transcoder of this source: it is how the format is applied.
            return None;
        }
        if let Some((codec, target)) = self.reformat.get(&(src, f.kind, sink)) {
            if *codec == f.codec {
                return *target;
            }
        }
        let kind = f.kind;
        let applied = self
            .ports
            .get(&src)
            .is_some_and(|p| p.port.applies_format(kind));
        let target = s
            .reformat(kind, &f.codec, applied)
            .and_then(|want| self.reformat_target(&s, sink, f, want, applied));
        self.reformat.insert((src, f.kind, sink), (f.codec, target));
        target
    }

    /// What `sink` gets instead of `f` when `want` is forced on its source: the forced
    /// codec if it takes it, else (only if a frame rate or bitrate is forced too) the first
    /// codec it takes, re-encoded; `None` leaves it to the usual codec matching.
    fn reformat_target(
        &self,
        s: &fluo_sfu::OutputSettings,
        sink: u64,
        f: &Forward,
        want: CodecName,
        applied: bool,
    ) -> Option<Codec> {
        let kind = f.kind;
        let wants = self.wants(sink, f.kind);
        let fac = self.factory.clone()?;
        let usable = |t: &&Codec| t.name.kind() == kind && fac.can(&f.codec, t);
        if let Some(t) = wants.iter().filter(usable).find(|t| t.name == want) {
            return Some(*t);
        }
        tracing::debug!(%sink, codec = ?want, "the sink does not take the codec forced on its source");
        let rate = s.reformat(kind, &Codec::new(want), applied).is_some();
        if rate {
            wants.iter().find(usable).copied()
        } else {
            None
        }
    }

    /// Removes the transcoders of `src`'s output; their sinks go back to `src`'s route and
    /// are matched again (with `src`'s current settings) from its next packet on.
    fn remake_transcoders(&mut self, src: u64) {
        let ts: Vec<(u64, MediaKind)> = self
            .ports
            .iter()
            .filter_map(|(k, p)| {
                p.upstream
                    .filter(|(s, _)| *s == src)
                    .map(|(_, kind)| (*k, kind))
            })
            .collect();
        for (t, kind) in ts {
            let sinks = self.routes.get(&(t, kind)).cloned().unwrap_or_default();
            self.drop_transcoder(t);
            let route = self.routes.entry((src, kind)).or_default();
            for s in &sinks {
                if !route.contains(s) {
                    route.push(*s);
                }
            }
            for s in sinks {
                self.mismatch_reported.remove(&(s, kind));
            }
        }
        self.reformat.retain(|(s, _, _), _| *s != src);
        self.no_transcoder.retain(|(s, _, _)| *s != src);
        tracing::info!(%src, "output settings changed: the source's media is matched again");
        self.request_keyframe(src, MediaKind::Video);
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use fluo_sfu::{OutputSettings, SettingsTable, VideoFormat};
    use std::sync::atomic::AtomicUsize;

    type Log = Arc<Mutex<Vec<String>>>;

    /// A port that logs what it is given and takes the codecs it is told.
    struct Sink {
        name: &'static str,
        takes: Vec<Codec>,
        log: Log,
    }

    impl Port for Sink {
        fn accepts(&self, _: MediaKind, codec: &Codec) -> bool {
            self.takes.iter().any(|t| t.compatible(codec))
        }
        fn wants(&self, _: MediaKind) -> Vec<Codec> {
            self.takes.clone()
        }
        fn push(&mut self, pkt: &MediaPacket) {
            let line = format!("{} got {}", self.name, pkt.codec.name.sdp_name());
            self.log.lock().unwrap().push(line);
        }
    }

    /// Transcoders that log their making and take their input codec only.
    struct Factory(Log);

    impl TranscoderFactory for Factory {
        fn create(
            &self,
            _: MediaKind,
            from: &Codec,
            to: &Codec,
            source: &str,
            _: PortOutput,
        ) -> Result<Box<dyn Port>, String> {
            let line = format!(
                "transcoder {} -> {} for {source}",
                from.name.sdp_name(),
                to.name.sdp_name()
            );
            self.0.lock().unwrap().push(line);
            Ok(Box::new(Sink {
                name: "transcoder",
                takes: vec![*from],
                log: self.0.clone(),
            }))
        }
        fn can(&self, _: &Codec, _: &Codec) -> bool {
            true
        }
    }

    fn ctl(core: &mut MediaCore, c: Ctl) {
        core.control(Instant::now(), Control(c));
    }

    fn inject(core: &mut MediaCore, key: u64, codec: CodecName) {
        let pkt = MediaPacket {
            kind: MediaKind::Video,
            codec: Codec::new(codec),
            seq: 1,
            timestamp: 0,
            ssrc: 7,
            marker: true,
            payload: vec![0; 10],
        };
        let slot = crate::InFlight(Arc::new(AtomicUsize::new(1)));
        ctl(core, Ctl::Inject { key, pkt, slot });
    }

    #[test]
    fn a_forced_format_puts_a_transcoder_in_and_a_change_remakes_it() {
        let log: Log = Arc::default();
        let table = Arc::new(SettingsTable::new(OutputSettings::new(300_000)));
        let mut core = MediaCore::new(Instant::now());
        ctl(&mut core, Ctl::Transcoders(Arc::new(Factory(log.clone()))));
        ctl(&mut core, Ctl::Output(Arc::new(|_, _| {})));
        ctl(&mut core, Ctl::Settings(table.clone()));
        let port = |name, takes: Vec<CodecName>| Sink {
            name,
            takes: takes.into_iter().map(Codec::new).collect(),
            log: log.clone(),
        };
        for (key, id, p) in [
            (1, "src", port("src", vec![])),
            (
                2,
                "vp8-h264",
                port("vp8-h264", vec![CodecName::Vp8, CodecName::H264]),
            ),
            (3, "vp8-only", port("vp8-only", vec![CodecName::Vp8])),
        ] {
            let port = Box::new(p);
            ctl(
                &mut core,
                Ctl::AddPort {
                    key,
                    id: id.into(),
                    port,
                },
            );
        }
        for sink in ["vp8-h264", "vp8-only"] {
            let sink_id = sink.to_string();
            ctl(
                &mut core,
                Ctl::Route {
                    src: 1,
                    sink_id,
                    kind: Some(MediaKind::Video),
                    add: true,
                },
            );
        }
        // What happened since last asked, in no particular order.
        let take = || {
            let mut v = std::mem::take(&mut *log.lock().unwrap());
            v.sort();
            v
        };
        inject(&mut core, 1, CodecName::Vp8);
        assert_eq!(take(), ["vp8-h264 got VP8", "vp8-only got VP8"]);

        // H.264 forced: who takes it gets it through a transcoder; who does not keeps VP8.
        let mut s = OutputSettings::new(300_000);
        s.video = Some(VideoFormat {
            codec: CodecName::H264,
            framerate: None,
        });
        table.set("src", s);
        inject(&mut core, 1, CodecName::Vp8);
        assert_eq!(
            take(),
            [
                "transcoder VP8 -> H264 for src",
                "transcoder got VP8",
                "vp8-only got VP8"
            ]
        );
        inject(&mut core, 1, CodecName::Vp8);
        assert_eq!(take(), ["transcoder got VP8", "vp8-only got VP8"]);
        assert_eq!(core.transcoder_count(), 1);

        // VP8 at 15 fps: the old transcoder goes, everyone gets VP8 re-encoded (one shared).
        s.video = Some(VideoFormat {
            codec: CodecName::Vp8,
            framerate: Some((15, 1)),
        });
        table.set("src", s);
        inject(&mut core, 1, CodecName::Vp8);
        assert_eq!(
            take(),
            [
                "transcoder VP8 -> VP8 for src",
                "transcoder got VP8",
                "transcoder got VP8"
            ]
        );
        assert_eq!(core.transcoder_count(), 1);

        // Settings back to the defaults: the media goes as it is again.
        table.set("src", OutputSettings::new(300_000));
        inject(&mut core, 1, CodecName::Vp8);
        let got = take();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got.iter()
                .all(|l| l.ends_with("got VP8") && !l.starts_with("transcoder")),
            "{got:?}"
        );
        assert_eq!(core.transcoder_count(), 0);
    }
}
