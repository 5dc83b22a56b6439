//! Elements' output settings in the router: the media core follows the settings table
//! (forced formats from `setAudioFormat` / `setVideoFormat`, encoder bitrates) and hands each
//! element's settings to the router, which decides its routes again when they change (a
//! transcoder to the forced codec, frame rate or bitrate; the transcoders of its output made
//! again with the new settings).

use super::MediaCore;
use fluo_sfu::{NodeId, SettingsTable};
use std::sync::Arc;

impl MediaCore {
    /// Follows `table` for elements' output settings.
    pub(super) fn set_settings(&mut self, table: Arc<SettingsTable>) {
        self.settings = Some(table);
        // Taken in at the first look, whatever the generation.
        self.settings_seen = u64::MAX;
        self.refresh_settings();
    }

    /// Takes in the settings that changed since last looked at (one atomic load when none
    /// did): the router compares each element's with what it had.
    pub(super) fn refresh_settings(&mut self) {
        let Some(table) = self.settings.clone() else {
            return;
        };
        let generation = table.generation();
        if generation == self.settings_seen {
            return;
        }
        self.settings_seen = generation;
        for (id, key) in &self.by_id {
            if let Some(&n) = self.nodes.get(key) {
                self.router.set_output_settings(self.now, n, table.get(id));
            }
        }
    }

    /// Reads the settings of an element just added (node `n`, id `id`): a change made before
    /// this may have been taken in while it was not known yet.
    pub(super) fn settings_of_new(&mut self, n: NodeId, id: &str) {
        if let Some(table) = &self.settings {
            self.router.set_output_settings(self.now, n, table.get(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Control, Ctl, MediaCore};
    use fluo_sfu::{
        Codec, CodecName, Header, MediaKind, MediaPacket, Node, OutputSettings, Packet, PortOutput,
        SettingsTable, SinkCaps, SinkCodec, TranscoderFactory, VideoFormat,
    };
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    type Log = Arc<Mutex<Vec<String>>>;

    /// A port that logs what it is given and takes the codecs it is told.
    struct Sink {
        name: &'static str,
        takes: Vec<Codec>,
        log: Log,
    }

    impl Node for Sink {
        fn caps(&self, _: MediaKind) -> SinkCaps {
            SinkCaps::codecs(self.takes.iter().map(|c| SinkCodec::new(*c)))
        }
        fn push(&mut self, _: Instant, pkt: &Packet<'_>, _: Header) {
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
        ) -> Result<Box<dyn Node>, String> {
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
            // A VP8 key frame's first packet (S set, PID 0, P clear): a sink whose source
            // changed (a transcoder in or out) goes on at a key frame.
            payload: vec![0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0],
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

        // VP8 at 15 fps: the old transcoder goes, everyone gets VP8 re-encoded (one shared,
        // which gets each packet once however many sinks it feeds).
        s.video = Some(VideoFormat {
            codec: CodecName::Vp8,
            framerate: Some((15, 1)),
        });
        table.set("src", s);
        inject(&mut core, 1, CodecName::Vp8);
        assert_eq!(
            take(),
            ["transcoder VP8 -> VP8 for src", "transcoder got VP8"]
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

    /// A sink whose codecs change (an RtpEndpoint that negotiates after being connected).
    struct Renegotiating {
        takes: Arc<Mutex<Vec<Codec>>>,
        log: Log,
    }

    impl Node for Renegotiating {
        fn caps(&self, _: MediaKind) -> SinkCaps {
            let takes = self.takes.lock().unwrap();
            SinkCaps::codecs(takes.iter().map(|c| SinkCodec::new(*c)))
        }
        fn push(&mut self, _: Instant, pkt: &Packet<'_>, _: Header) {
            let line = format!("sink got {}", pkt.codec.name.sdp_name());
            self.log.lock().unwrap().push(line);
        }
    }

    #[test]
    fn a_sink_whose_codecs_change_has_its_route_decided_again_when_it_says_so() {
        let log: Log = Arc::default();
        let mut core = MediaCore::new(Instant::now());
        ctl(&mut core, Ctl::Transcoders(Arc::new(Factory(log.clone()))));
        ctl(&mut core, Ctl::Output(Arc::new(|_, _| {})));
        let src = Sink {
            name: "src",
            takes: vec![],
            log: log.clone(),
        };
        let takes = Arc::new(Mutex::new(vec![Codec::new(CodecName::Vp8)]));
        let sink = Renegotiating {
            takes: takes.clone(),
            log: log.clone(),
        };
        for (key, id, port) in [
            (1, "src", Box::new(src) as Box<dyn Node>),
            (2, "sink", Box::new(sink)),
        ] {
            ctl(
                &mut core,
                Ctl::AddPort {
                    key,
                    id: id.into(),
                    port,
                },
            );
        }
        let kind = Some(MediaKind::Video);
        let (src, sink_id, add) = (1, "sink".to_string(), true);
        ctl(
            &mut core,
            Ctl::Route {
                src,
                sink_id,
                kind,
                add,
            },
        );
        let take = || std::mem::take(&mut *log.lock().unwrap());
        inject(&mut core, 1, CodecName::Vp8);
        assert_eq!(take(), ["sink got VP8"]);

        // It now takes H.264 only: decisions are not made per packet, so nothing changes
        // until it says its codecs changed; then its VP8 comes through a transcoder.
        *takes.lock().unwrap() = vec![Codec::new(CodecName::H264)];
        ctl(&mut core, Ctl::CapsChanged { key: 2 });
        inject(&mut core, 1, CodecName::Vp8);
        assert_eq!(
            take(),
            ["transcoder VP8 -> H264 for src", "transcoder got VP8"]
        );
        assert_eq!(core.transcoder_count(), 1);

        // Back to VP8: the transcoder goes with its last sink, the media goes as it is.
        *takes.lock().unwrap() = vec![Codec::new(CodecName::Vp8)];
        ctl(&mut core, Ctl::CapsChanged { key: 2 });
        inject(&mut core, 1, CodecName::Vp8);
        assert_eq!(take(), ["sink got VP8"]);
        assert_eq!(core.transcoder_count(), 0);
    }
}
