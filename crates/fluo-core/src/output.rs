//! MediaElement output settings: `encoderBitrate`, `minEncoderBitrate`, `maxEncoderBitrate`,
//! `setAudioFormat` and `setVideoFormat`. The engine checks and keeps them (the bitrates
//! read back as properties) and hands each element's settings to the media plane through
//! a [`SettingsSink`] whenever they change.

use crate::engine::Engine;
use fluo_api::{ErrorCode, KurentoError};
use serde_json::{Map, Value};
use std::sync::Arc;

/// KMS's default `encoderBitrate` (bps), what an element's video encoders start at.
pub const DEFAULT_ENCODER_BITRATE: u32 = 300_000;

/// Most frames per second a forced video format may ask for.
const MAX_FRAMERATE: u32 = 120;

/// An element's output settings as the media plane needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputProps {
    /// Where its video encoders start, bps (`encoderBitrate`; 0 reads as the default).
    pub encoder_bitrate: u32,
    /// `minEncoderBitrate`, bps.
    pub min_encoder_bitrate: u32,
    /// `maxEncoderBitrate`, bps (0: no limit).
    pub max_encoder_bitrate: u32,
    /// `setAudioFormat`: (AudioCodec name, bitrate in bps, 0 for the encoder's own).
    pub audio: Option<(String, u32)>,
    /// `setVideoFormat`: (VideoCodec name, frame rate as numerator and denominator; a zero
    /// numerator keeps the source's rate).
    pub video: Option<(String, u32, u32)>,
}

impl Default for OutputProps {
    fn default() -> Self {
        OutputProps {
            encoder_bitrate: DEFAULT_ENCODER_BITRATE,
            min_encoder_bitrate: 0,
            max_encoder_bitrate: 0,
            audio: None,
            video: None,
        }
    }
}

/// Where the engine hands an element's output settings after they changed (element id,
/// settings), and `None` when the element is released.
pub type SettingsSink = Arc<dyn Fn(&str, Option<&OutputProps>) + Send + Sync>;

/// Whether `name` is one of the bitrate properties kept here.
pub(crate) fn is_bitrate(name: &str) -> bool {
    matches!(
        name,
        "encoderBitrate" | "minEncoderBitrate" | "maxEncoderBitrate"
    )
}

fn stored(props: &Map<String, Value>, name: &str, default: u32) -> u32 {
    props
        .get(name)
        .and_then(Value::as_u64)
        .map_or(default, |v| v as u32)
}

/// Stores bitrate property `name` = `v` into `props` the way KMS does: the target stays
/// within [min, max] (a max of 0 is no limit), a min above the max becomes the max, a max
/// below the min becomes the min, and moving a bound drags the target along.
pub(crate) fn set_bitrate(
    props: &mut Map<String, Value>,
    name: &str,
    v: &Value,
) -> Result<(), KurentoError> {
    let v = v
        .as_i64()
        .filter(|n| *n >= 0)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            KurentoError::illegal_param(format!("'{name}' must be a number of bps >= 0"))
        })?;
    let mut target = stored(props, "encoderBitrate", DEFAULT_ENCODER_BITRATE);
    let mut min = stored(props, "minEncoderBitrate", 0);
    let mut max = stored(props, "maxEncoderBitrate", 0);
    let limited = |max: u32, x: u32| if max > 0 { x.min(max) } else { x };
    match name {
        "encoderBitrate" => target = limited(max, v).max(min),
        "minEncoderBitrate" => {
            min = limited(max, v);
            target = target.max(min);
        }
        _ => {
            max = if v > 0 { v.max(min) } else { 0 };
            target = limited(max, target);
        }
    }
    props.insert("encoderBitrate".into(), Value::from(target));
    props.insert("minEncoderBitrate".into(), Value::from(min));
    props.insert("maxEncoderBitrate".into(), Value::from(max));
    Ok(())
}

/// Checks `setAudioFormat`'s caps (already checked against the model's AudioCaps). As in
/// KMS, RAW cannot be asked for; Fluo also takes PCMA, which KMS refuses.
pub(crate) fn check_audio_caps(caps: &Value) -> Result<(String, u32), KurentoError> {
    let codec = caps["codec"].as_str().unwrap_or_default().to_string();
    let bitrate = caps["bitrate"].as_i64().unwrap_or(0);
    let range = match codec.as_str() {
        "OPUS" => 4_000..=650_000,
        "PCMU" | "PCMA" => 64_000..=64_000,
        _ => return Err(invalid(&codec)),
    };
    if bitrate != 0 && !range.contains(&bitrate) {
        return Err(KurentoError::illegal_param(format!(
            "Invalid parameter provided: bitrate {bitrate} for {codec} (0 for the encoder's own, or {} to {} bps)",
            range.start(),
            range.end()
        )));
    }
    // G.711 has one bitrate: asking for it asks for nothing.
    let bitrate = if codec == "OPUS" { bitrate as u32 } else { 0 };
    Ok((codec, bitrate))
}

/// Checks `setVideoFormat`'s caps. As in KMS, H265, AV1 and RAW cannot be asked for (Fluo
/// does not encode them).
pub(crate) fn check_video_caps(caps: &Value) -> Result<(String, u32, u32), KurentoError> {
    let codec = caps["codec"].as_str().unwrap_or_default().to_string();
    if !matches!(codec.as_str(), "VP8" | "VP9" | "H264") {
        return Err(invalid(&codec));
    }
    let f = &caps["framerate"];
    let num = f["numerator"].as_i64().unwrap_or(-1);
    let den = f["denominator"].as_i64().unwrap_or(0);
    let ok = num >= 0 && den >= 1 && num <= i64::from(MAX_FRAMERATE) * den;
    if !ok {
        return Err(KurentoError::illegal_param(format!(
            "Invalid parameter provided: framerate {num}/{den} (a positive denominator, at most {MAX_FRAMERATE} frames per second; 0/1 keeps the source's rate)"
        )));
    }
    let (num, den) = if num == 0 { (0, 1) } else { (num, den) };
    Ok((codec, num as u32, den as u32))
}

fn invalid(codec: &str) -> KurentoError {
    KurentoError::new(
        ErrorCode::MediaObjectIllegalParamError,
        format!("Invalid parameter provided: {codec}"),
    )
}

/// The output settings stored in an element's properties.
pub(crate) fn output_props(props: &Map<String, Value>) -> OutputProps {
    let target = stored(props, "encoderBitrate", DEFAULT_ENCODER_BITRATE);
    OutputProps {
        encoder_bitrate: if target == 0 {
            DEFAULT_ENCODER_BITRATE
        } else {
            target
        },
        min_encoder_bitrate: stored(props, "minEncoderBitrate", 0),
        max_encoder_bitrate: stored(props, "maxEncoderBitrate", 0),
        audio: props.get("audioFormat").and_then(|a| {
            Some((
                a["codec"].as_str()?.to_string(),
                a["bitrate"].as_u64().unwrap_or(0) as u32,
            ))
        }),
        video: props.get("videoFormat").and_then(|v| {
            Some((
                v["codec"].as_str()?.to_string(),
                v["framerate"]["numerator"].as_u64().unwrap_or(0) as u32,
                v["framerate"]["denominator"].as_u64().unwrap_or(1) as u32,
            ))
        }),
    }
}

impl Engine {
    /// Hands every element's output settings to `sink` whenever they change (see
    /// [`SettingsSink`]).
    pub fn set_settings_sink(&mut self, sink: SettingsSink) {
        self.settings_sink = Some(sink);
    }

    /// Tells the settings sink about element `id`'s current settings.
    pub(crate) fn settings_changed(&self, id: &str) {
        let (Some(sink), Some(o)) = (&self.settings_sink, self.registry.get(id)) else {
            return;
        };
        sink(id, Some(&output_props(&o.props)));
    }

    /// Tells the settings sink that element `id` is gone.
    pub(crate) fn settings_released(&self, id: &str) {
        if let Some(sink) = &self.settings_sink {
            sink(id, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(p: &Map<String, Value>) -> (u64, u64, u64) {
        let g = |k: &str| p[k].as_u64().unwrap();
        (
            g("encoderBitrate"),
            g("minEncoderBitrate"),
            g("maxEncoderBitrate"),
        )
    }

    #[test]
    fn bitrates_keep_kms_order() {
        let mut p = Map::new();
        set_bitrate(&mut p, "maxEncoderBitrate", &json!(200_000)).unwrap();
        // The default target (300 kbps) comes down to the new max.
        assert_eq!(get(&p), (200_000, 0, 200_000));
        set_bitrate(&mut p, "encoderBitrate", &json!(500_000)).unwrap();
        assert_eq!(get(&p), (200_000, 0, 200_000));
        set_bitrate(&mut p, "minEncoderBitrate", &json!(300_000)).unwrap();
        assert_eq!(get(&p), (200_000, 200_000, 200_000));
        set_bitrate(&mut p, "maxEncoderBitrate", &json!(0)).unwrap();
        set_bitrate(&mut p, "encoderBitrate", &json!(1_000_000)).unwrap();
        assert_eq!(get(&p), (1_000_000, 200_000, 0));
        set_bitrate(&mut p, "maxEncoderBitrate", &json!(100_000)).unwrap();
        assert_eq!(get(&p), (200_000, 200_000, 200_000));
        assert!(set_bitrate(&mut p, "encoderBitrate", &json!(-1)).is_err());
        let o = output_props(&p);
        assert_eq!(
            (
                o.encoder_bitrate,
                o.min_encoder_bitrate,
                o.max_encoder_bitrate
            ),
            (200_000, 200_000, 200_000)
        );
        assert_eq!(output_props(&Map::new()), OutputProps::default());
    }

    #[test]
    fn formats_are_checked() {
        let a = |c: &str, b: i64| json!({"codec": c, "bitrate": b});
        assert_eq!(
            check_audio_caps(&a("OPUS", 32_000)).unwrap(),
            ("OPUS".into(), 32_000)
        );
        assert_eq!(
            check_audio_caps(&a("PCMU", 64_000)).unwrap(),
            ("PCMU".into(), 0)
        );
        for (c, b) in [("OPUS", 100), ("OPUS", -5), ("PCMA", 32_000), ("RAW", 0)] {
            let e = check_audio_caps(&a(c, b)).unwrap_err();
            assert_eq!(e.code, ErrorCode::MediaObjectIllegalParamError, "{c} {b}");
        }
        let v = |c: &str, n: i64, d: i64| json!({"codec": c, "framerate": {"numerator": n, "denominator": d}});
        assert_eq!(
            check_video_caps(&v("H264", 15, 1)).unwrap(),
            ("H264".into(), 15, 1)
        );
        assert_eq!(
            check_video_caps(&v("VP8", 0, 0)).unwrap_err().code,
            ErrorCode::MediaObjectIllegalParamError
        );
        assert_eq!(
            check_video_caps(&v("VP8", 0, 5)).unwrap(),
            ("VP8".into(), 0, 1)
        );
        for (c, n, d) in [
            ("H265", 30, 1),
            ("AV1", 30, 1),
            ("RAW", 30, 1),
            ("VP8", 30, 0),
            ("VP8", -1, 1),
            ("VP8", 1000, 1),
        ] {
            assert!(check_video_caps(&v(c, n, d)).is_err(), "{c} {n}/{d}");
        }
    }
}
