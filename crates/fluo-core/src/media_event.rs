//! Media-plane events ([`MediaEvent`], typed, from fluo-sfu) as Kurento sends them: the one
//! place their names, fields and error codes are written. The engine adds the base fields
//! (source, timestamps, tags) when it delivers them.

use fluo_api::ErrorCode;
use fluo_sfu::{FlowDir, MediaError, MediaEvent};
use serde_json::{json, Map, Value};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn connected(on: bool) -> Map<String, Value> {
    let (old, new) = if on {
        ("DISCONNECTED", "CONNECTED")
    } else {
        ("CONNECTED", "DISCONNECTED")
    };
    obj(json!({"oldState": old, "newState": new}))
}

/// Kurento's `IceCandidatePair` for a pair of candidate lines (the selected pair's event and
/// an endpoint's `ICECandidatePairs`).
pub fn candidate_pair_json(local: &str, remote: &str) -> Value {
    json!({
        "__module__": "kurento",
        "__type__": "IceCandidatePair",
        "streamId": "1",
        "componentId": 1,
        "localCandidate": local,
        "remoteCandidate": remote,
    })
}

/// The code (from the catalogue) and `type` of an `Error` event.
pub fn error_code(e: MediaError) -> (ErrorCode, &'static str) {
    match e {
        MediaError::CodecMismatch => (ErrorCode::UnsupportedMediaType, "CODEC_MISMATCH"),
        MediaError::Player => (ErrorCode::UnexpectedError, "PLAYER_ERROR"),
        MediaError::Recorder => (ErrorCode::UnexpectedError, "RECORDER_ERROR"),
        MediaError::Filter => (ErrorCode::UnexpectedError, "GSTREAMER_FILTER_ERROR"),
        MediaError::Srtp => (ErrorCode::UnexpectedError, "SRTP_ERROR"),
        MediaError::Hub => (ErrorCode::UnexpectedError, "HUB_ERROR"),
        MediaError::ZBar => (ErrorCode::UnexpectedError, "ZBAR_FILTER_ERROR"),
        MediaError::HttpPost => (ErrorCode::UnexpectedError, "HTTP_POST_ERROR"),
        _ => (ErrorCode::UnexpectedError, "UNEXPECTED_ERROR"),
    }
}

/// Kurento's name of the event.
pub fn event_name(ev: &MediaEvent) -> &str {
    match ev {
        MediaEvent::Flow {
            dir: FlowDir::In, ..
        } => "MediaFlowInStateChanged",
        MediaEvent::Flow {
            dir: FlowDir::Out, ..
        } => "MediaFlowOutStateChanged",
        MediaEvent::Transcoding { .. } => "MediaTranscodingStateChanged",
        MediaEvent::MediaState { .. } => "MediaStateChanged",
        MediaEvent::ConnectionState { .. } => "ConnectionStateChanged",
        MediaEvent::IceComponentState { .. } => "IceComponentStateChanged",
        MediaEvent::DtlsConnected => "DtlsConnectionStateChange",
        MediaEvent::CandidatePairSelected { .. } => "NewCandidatePairSelected",
        MediaEvent::DataChannelOpened { .. } => "DataChannelOpened",
        MediaEvent::DataChannelClosed { .. } => "DataChannelClosed",
        MediaEvent::Error { .. } => "Error",
        MediaEvent::EndOfStream => "EndOfStream",
        MediaEvent::UriEndpointState { .. } => "UriEndpointStateChanged",
        MediaEvent::Recording => "Recording",
        MediaEvent::Paused => "Paused",
        MediaEvent::Stopped => "Stopped",
        MediaEvent::KeySoftLimit { .. } => "OnKeySoftLimit",
        MediaEvent::CodeFound { .. } => "CodeFound",
        MediaEvent::MediaSession { started: true } => "MediaSessionStarted",
        MediaEvent::MediaSession { started: false } => "MediaSessionTerminated",
        MediaEvent::LayerChanged { .. } => "FluoLayerChanged",
        MediaEvent::Module { name, .. } => name,
    }
}

/// A simulcast layer a sink gets, as Fluo's `FluoLayerChanged` event and getStats (the
/// `fluoLayer` of a WebRtcEndpoint's outbound video entry) write it: its rid (empty when the
/// source does not name its layers), its rank (`layer`, 0 the lowest picture), its picture
/// size (0 when not known yet), why the sink moved to it, and of a source that sends temporal
/// layers the highest it gets (`temporalLayer`, 0 the lowest frame rate; absent otherwise).
pub fn layer_json(layer: &fluo_sfu::ForwardedLayer) -> Map<String, Value> {
    let (width, height) = layer.size.unwrap_or_default();
    let mut m = obj(json!({
        "rid": layer.rid.as_deref().unwrap_or_default(),
        "layer": layer.rank,
        "width": width,
        "height": height,
        "reason": layer.reason.wire_name(),
    }));
    if let Some(t) = layer.temporal {
        m.insert("temporalLayer".into(), t.into());
    }
    m
}

/// The event's own fields, as Kurento sends them.
pub fn event_fields(ev: &MediaEvent) -> Map<String, Value> {
    match ev {
        MediaEvent::Flow { kind, flowing, .. } => obj(json!({
            "state": if *flowing { "FLOWING" } else { "NOT_FLOWING" },
            "padName": "default",
            "mediaType": kind.wire_name(),
        })),
        MediaEvent::Transcoding { kind, on, bin } => obj(json!({
            "state": if *on { "TRANSCODING" } else { "NOT_TRANSCODING" },
            "binName": bin,
            "mediaType": kind.wire_name(),
        })),
        MediaEvent::MediaState { connected: on }
        | MediaEvent::ConnectionState { connected: on } => connected(*on),
        MediaEvent::IceComponentState { state } => {
            obj(json!({"streamId": 1, "componentId": 1, "state": state}))
        }
        MediaEvent::DtlsConnected => obj(json!({
            "streamId": "1",
            "componentId": "1",
            "connectionId": "1",
            "state": "CONNECTED",
        })),
        MediaEvent::CandidatePairSelected { local, remote } => {
            obj(json!({"candidatePair": candidate_pair_json(local, remote)}))
        }
        MediaEvent::DataChannelOpened { channel } | MediaEvent::DataChannelClosed { channel } => {
            obj(json!({"channelId": channel}))
        }
        MediaEvent::Error { error, description } => {
            let (code, ty) = error_code(*error);
            obj(json!({
                "description": description,
                "errorCode": code.code(),
                "type": ty,
            }))
        }
        MediaEvent::UriEndpointState { state } => obj(json!({"state": state})),
        MediaEvent::KeySoftLimit { kind } => obj(json!({"mediaType": kind.wire_name()})),
        MediaEvent::CodeFound { code_type, value } => {
            obj(json!({"codeType": code_type, "value": value}))
        }
        MediaEvent::Module { fields, .. } => {
            serde_json::from_str::<Map<String, Value>>(fields).unwrap_or_default()
        }
        MediaEvent::LayerChanged { kind, layer } => {
            let mut m = layer_json(layer);
            m.insert("mediaType".into(), Value::from(kind.wire_name()));
            m
        }
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluo_sfu::MediaKind;

    fn fields(ev: &MediaEvent) -> Value {
        Value::Object(event_fields(ev))
    }

    #[test]
    fn events_take_kurentos_names_fields_and_codes() {
        let e = MediaEvent::Flow {
            dir: FlowDir::Out,
            kind: MediaKind::Video,
            flowing: false,
        };
        assert_eq!(event_name(&e), "MediaFlowOutStateChanged");
        assert_eq!(
            fields(&e),
            json!({"state": "NOT_FLOWING", "padName": "default", "mediaType": "VIDEO"})
        );
        let e = MediaEvent::Transcoding {
            kind: MediaKind::Audio,
            on: true,
            bin: "transcoder_audio_opus_PCMU".into(),
        };
        assert_eq!(event_name(&e), "MediaTranscodingStateChanged");
        assert_eq!(
            fields(&e),
            json!({"state": "TRANSCODING", "binName": "transcoder_audio_opus_PCMU", "mediaType": "AUDIO"})
        );
        let e = MediaEvent::Error {
            error: MediaError::CodecMismatch,
            description: "no".into(),
        };
        assert_eq!(
            fields(&e),
            json!({"description": "no", "errorCode": 40005, "type": "CODEC_MISMATCH"})
        );
        let e = MediaEvent::Error {
            error: MediaError::Player,
            description: "gone".into(),
        };
        assert_eq!(fields(&e)["errorCode"], 40003);
        assert_eq!(fields(&e)["type"], "PLAYER_ERROR");
        assert_eq!(
            fields(&MediaEvent::MediaState { connected: true }),
            json!({"oldState": "DISCONNECTED", "newState": "CONNECTED"})
        );
        assert_eq!(
            event_name(&MediaEvent::ConnectionState { connected: false }),
            "ConnectionStateChanged"
        );
        assert_eq!(
            fields(&MediaEvent::IceComponentState { state: "READY" }),
            json!({"streamId": 1, "componentId": 1, "state": "READY"})
        );
        assert_eq!(
            fields(&MediaEvent::DataChannelClosed { channel: 3 }),
            json!({"channelId": 3})
        );
        assert_eq!(
            fields(&MediaEvent::KeySoftLimit {
                kind: MediaKind::Audio
            }),
            json!({"mediaType": "AUDIO"})
        );
        let pair = MediaEvent::CandidatePairSelected {
            local: "candidate:1 1 udp 1 10.0.0.1 5000 typ host".into(),
            remote: "candidate:2 1 udp 1 10.0.0.2 6000 typ host".into(),
        };
        assert_eq!(
            fields(&pair)["candidatePair"]["localCandidate"],
            "candidate:1 1 udp 1 10.0.0.1 5000 typ host"
        );
        assert_eq!(
            fields(&pair)["candidatePair"]["__type__"],
            "IceCandidatePair"
        );
        let code = MediaEvent::CodeFound {
            code_type: "QR-Code".into(),
            value: "fluo".into(),
        };
        assert_eq!(event_name(&code), "CodeFound");
        assert_eq!(
            fields(&code),
            json!({"codeType": "QR-Code", "value": "fluo"})
        );
        assert!(event_fields(&MediaEvent::Stopped).is_empty());
        assert_eq!(event_name(&MediaEvent::Stopped), "Stopped");
        let layer = fluo_sfu::ForwardedLayer {
            rank: 1,
            rid: Some("h".into()),
            size: Some((640, 360)),
            reason: fluo_sfu::SwitchReason::LayerStopped,
            temporal: None,
        };
        let e = MediaEvent::LayerChanged {
            kind: MediaKind::Video,
            layer: layer.clone(),
        };
        assert_eq!(event_name(&e), "FluoLayerChanged");
        assert_eq!(
            fields(&e),
            json!({"mediaType": "VIDEO", "rid": "h", "layer": 1, "width": 640, "height": 360, "reason": "LAYER_STOPPED"})
        );
        // Not named, size not known yet.
        let bare = fluo_sfu::ForwardedLayer {
            rid: None,
            size: None,
            ..layer
        };
        assert_eq!(
            Value::Object(layer_json(&bare)),
            json!({"rid": "", "layer": 1, "width": 0, "height": 0, "reason": "LAYER_STOPPED"})
        );
        // Of a source with temporal layers: the highest the sink gets.
        let svc = fluo_sfu::ForwardedLayer {
            temporal: Some(1),
            ..bare
        };
        assert_eq!(layer_json(&svc)["temporalLayer"], 1);
    }
}
