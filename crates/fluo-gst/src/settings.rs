//! Elements' output settings (encoder bitrates, forced formats), from the engine into the
//! table that the router and the encoders read (see [`fluo_sfu::settings`]).

use fluo_core::{OutputProps, SettingsSink};
use fluo_sfu::{AudioFormat, CodecName, OutputSettings, SettingsTable, VideoFormat};
use std::sync::Arc;

/// The media plane's form of an element's settings as the engine keeps them.
pub fn output_settings(p: &OutputProps) -> OutputSettings {
    let codec = |name: &str| match name {
        "VP8" => Some(CodecName::Vp8),
        "VP9" => Some(CodecName::Vp9),
        "H264" => Some(CodecName::H264),
        "OPUS" => Some(CodecName::Opus),
        "PCMU" => Some(CodecName::Pcmu),
        "PCMA" => Some(CodecName::Pcma),
        _ => None,
    };
    OutputSettings {
        target_bps: p.encoder_bitrate,
        min_bps: p.min_encoder_bitrate,
        max_bps: p.max_encoder_bitrate,
        audio: p.audio.as_ref().and_then(|(c, bitrate)| {
            Some(AudioFormat {
                codec: codec(c)?,
                bitrate: *bitrate,
            })
        }),
        video: p.video.as_ref().and_then(|(c, n, d)| {
            Some(VideoFormat {
                codec: codec(c)?,
                framerate: (*n > 0 && *d > 0).then_some((*n, *d)),
            })
        }),
    }
}

/// A table whose elements start with the engine's defaults.
pub fn settings_table() -> Arc<SettingsTable> {
    Arc::new(SettingsTable::new(output_settings(&OutputProps::default())))
}

/// What the engine calls with each element's settings: writes them into `table`.
pub fn settings_sink(table: Arc<SettingsTable>) -> SettingsSink {
    Arc::new(move |id, props| match props {
        Some(p) => table.set(id, output_settings(p)),
        None => table.remove(id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_settings_become_output_settings() {
        let t = settings_table();
        assert_eq!(t.get("x").video_bps(), fluo_core::DEFAULT_ENCODER_BITRATE);
        let sink = settings_sink(t.clone());
        let p = OutputProps {
            max_encoder_bitrate: 100_000,
            audio: Some(("PCMA".into(), 0)),
            video: Some(("H264".into(), 0, 1)),
            ..OutputProps::default()
        };
        sink("x", Some(&p));
        let s = t.get("x");
        assert_eq!(s.video_bps(), 100_000);
        assert_eq!(s.audio.map(|a| a.codec), Some(CodecName::Pcma));
        assert_eq!(
            s.video,
            Some(VideoFormat {
                codec: CodecName::H264,
                framerate: None
            })
        );
        sink("x", None);
        assert_eq!(t.get("x").video, None);
    }
}
