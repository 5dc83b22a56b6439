//! Which simulcast layer a WebRtcEndpoint is sent (docs/simulcast.md), as a Fluo extension
//! that the official clients can set without knowing it: `fluoMaxVideoLayer` and
//! `fluoPreferredVideoLayer`, layer numbers counted from the lowest picture (0), and
//! `fluoMaxTemporalLayer`, the highest temporal layer (frame rate) of a source that sends
//! temporal layers, counted from the lowest frame rate (0).
//!
//! They are given like Fluo's other extensions: as `create` properties (kurento-client sends
//! create parameters its model does not know as `properties`, and KMS ignores them), which
//! become the endpoint's tags of the same names; at run time as tags (`addTag` sets a limit,
//! `removeTag` lifts it, `getTag` reads it). A value that is no layer number is refused (40107)
//! and not kept. On other elements such tags are plain tags: they get the top layer.

use crate::engine::Engine;
use fluo_api::KurentoError;
use fluo_sfu::LayerLimits;
use serde_json::{Map, Value};

/// The highest layer a WebRtcEndpoint is sent while a lower one flows.
pub const MAX_LAYER: &str = "fluoMaxVideoLayer";
/// The layer a WebRtcEndpoint should be sent (see [`fluo_sfu::LayerLimits`]).
pub const PREFERRED_LAYER: &str = "fluoPreferredVideoLayer";

/// The highest temporal layer a WebRtcEndpoint is sent (an SVC stream's, docs/simulcast.md).
pub const MAX_TEMPORAL_LAYER: &str = "fluoMaxTemporalLayer";

const KEYS: [&str; 3] = [MAX_LAYER, PREFERRED_LAYER, MAX_TEMPORAL_LAYER];

/// The class that takes them.
const CLASS: &str = "WebRtcEndpoint";

/// At most 32 characters of a client's value, for an error message.
fn clip(v: &str) -> String {
    let mut out: String = v.chars().take(32).collect();
    if out.len() < v.len() {
        out.push_str("...");
    }
    out
}

fn refused(key: &str, what: &str) -> KurentoError {
    KurentoError::illegal_param(format!(
        "'{key}' must be a layer number from 0 (the lowest) to 255, not {what}"
    ))
}

/// A tag's value as a layer number: written as a number is ("7", not "007" or "+7").
fn parse(key: &str, value: &str) -> Result<u8, KurentoError> {
    let n = value.parse::<u8>().ok().filter(|n| n.to_string() == value);
    n.ok_or_else(|| refused(key, &format!("'{}'", clip(value))))
}

/// The limits the tags of an element set.
pub(crate) fn limits(tags: &[(String, String)]) -> LayerLimits {
    let get = |key: &str| {
        let v = tags.iter().find(|(k, _)| k == key)?;
        parse(key, &v.1).ok()
    };
    LayerLimits {
        max: get(MAX_LAYER),
        preferred: get(PREFERRED_LAYER),
        max_temporal: get(MAX_TEMPORAL_LAYER),
    }
}

impl Engine {
    /// The layer properties of a `class` object's `create` (checked before it is made), as
    /// the tags it starts with.
    pub(crate) fn layer_properties(
        &self,
        class: &str,
        properties: &Map<String, Value>,
    ) -> Result<Vec<(String, String)>, KurentoError> {
        let mut tags = vec![];
        for key in KEYS {
            let Some(v) = properties.get(key).filter(|v| !v.is_null()) else {
                continue;
            };
            if !self.model.is_a(class, CLASS) {
                return Err(KurentoError::illegal_param(format!(
                    "'{key}' is for a {CLASS}, not a {class}"
                )));
            }
            let n = v.as_u64().and_then(|n| u8::try_from(n).ok());
            let n = n.ok_or_else(|| refused(key, &clip(&v.to_string())))?;
            tags.push((key.to_string(), n.to_string()));
        }
        Ok(tags)
    }

    /// Whether tag `key` of object `id` is a layer limit there (a WebRtcEndpoint's), checking
    /// the value it is about to get (`None`: removed).
    pub(crate) fn check_layer_tag(
        &self,
        id: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<bool, KurentoError> {
        let applies = KEYS.contains(&key)
            && (self.registry.get(id)).is_some_and(|o| self.model.is_a(&o.class, CLASS));
        if let (true, Some(v)) = (applies, value) {
            parse(key, v)?;
        }
        Ok(applies)
    }

    /// The layer tags of object `id` changed: its element applies the limits they set.
    pub(crate) fn layer_tags_changed(&mut self, id: &str) {
        let Some(limits) = self.registry.get(id).map(|o| limits(&o.tags)) else {
            return;
        };
        self.with_element(id, |el, _| el.set_layer_limits(limits));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_numbers_are_digits_within_a_byte() {
        assert_eq!(parse(MAX_LAYER, "0").unwrap(), 0);
        assert_eq!(parse(MAX_LAYER, "2").unwrap(), 2);
        assert_eq!(parse(MAX_LAYER, "255").unwrap(), 255);
        for bad in [
            "", "-1", "+1", "256", "1.0", " 1", "top", "0x1", "0001", "007", "00",
        ] {
            let e = parse(MAX_LAYER, bad).unwrap_err();
            assert_eq!(e.code, fluo_api::ErrorCode::MediaObjectIllegalParamError);
            assert!(e.message.contains("fluoMaxVideoLayer"), "{}", e.message);
        }
        let e = parse(MAX_TEMPORAL_LAYER, "-1").unwrap_err();
        assert!(e.message.contains("fluoMaxTemporalLayer"), "{}", e.message);
        let tags = vec![
            (MAX_LAYER.to_string(), "1".to_string()),
            ("other".to_string(), "x".to_string()),
            (MAX_TEMPORAL_LAYER.to_string(), "0".to_string()),
        ];
        assert_eq!(
            limits(&tags),
            LayerLimits {
                max: Some(1),
                preferred: None,
                max_temporal: Some(0),
            }
        );
    }
}
