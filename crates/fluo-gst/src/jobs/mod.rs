//! The GStreamer elements' media work as jobs of a media worker (crates/fluo-worker,
//! docs/workers.md): `player`, `recorder`, `transcoder`, `filter` (GStreamerFilter), `zbar`, `overlay`
//! (ImageOverlayFilter, FaceOverlayFilter), `composite` and `http_post` (HttpPostEndpoint), each the same pipeline code as
//! the element that runs in the server's process, behind [`fluo_worker::worker::Job`].
//!
//! The jobs live here, in fluo-gst, rather than in fluo-worker: fluo-worker is the process
//! machinery and knows nothing of GStreamer's pipelines (it builds without GStreamer), and the
//! pipelines' builders are this crate's own; so fluo-gst depends on fluo-worker's `Job` trait
//! and wire encoding, and the fluo binary registers [`register`]'s kinds in its worker.
//!
//! Parameters, method arguments and replies are encoded with [`fluo_worker::wire::Wire`];
//! events cross as Kurento's event name with their fields encoded the same way
//! ([`encode_event`], [`decode_event`]).

pub use crate::composite::job::CompositeParams;
pub use crate::filter::job::{FilterParams, PropertyArgs};
pub use crate::http_post::job::HttpPostParams;
pub use crate::http_post::PostStatus;
pub use crate::module::job::ModuleParams;
pub use crate::overlay::job::OverlayParams;
pub use crate::player::job::{PlayParams, PlayerParams, VideoInfo};
pub use crate::recorder::job::RecorderParams;
pub use crate::transcoder::job::TranscoderParams;

use fluo_sfu::{CodecName, MediaEvent};
use fluo_worker::wire::{self, Reader, Wire, WireError, Writer};
use fluo_worker::worker::{JobCtx, Registry};
use std::sync::Arc;

/// The player job's kind.
pub const PLAYER: &str = "gst.player";
/// The recorder job's kind.
pub const RECORDER: &str = "gst.recorder";
/// The GStreamerFilter job's kind.
pub const FILTER: &str = "gst.filter";
/// The kind of the short job that builds a GStreamerFilter's command at create (its link
/// check and AUTODETECT's kind): see `remote::probe_filter`.
pub const FILTER_PROBE: &str = "gst.filter.probe";
/// The kind of a Composite's HubPort job (the ports of one Composite share its pipeline).
pub const COMPOSITE: &str = "gst.composite";
/// The transcoder job's kind.
pub const TRANSCODER: &str = "gst.transcoder";
/// The ZBarFilter job's kind.
pub const ZBAR: &str = "gst.zbar";
/// The ImageOverlayFilter / FaceOverlayFilter job's kind.
pub const OVERLAY: &str = "gst.overlay";
/// The HttpPostEndpoint job's kind (an upload's pipeline, its body over the control socket).
pub const HTTP_POST: &str = "gst.http_post";

/// The kind of a module element's job (docs/modules.md).
pub const MODULE: &str = "gst.module";

/// Registers the GStreamer job kinds in a worker's registry.
pub fn register(registry: &mut Registry) {
    registry.register(PLAYER, crate::player::job::start);
    registry.register(RECORDER, crate::recorder::job::start);
    registry.register(TRANSCODER, crate::transcoder::job::start);
    registry.register(FILTER, crate::filter::job::start);
    registry.register(FILTER_PROBE, crate::filter::job::probe);
    registry.register(COMPOSITE, crate::composite::job::start);
    registry.register(ZBAR, crate::zbar::job::start);
    registry.register(OVERLAY, crate::overlay::job::start);
    registry.register(HTTP_POST, crate::http_post::job::start);
    registry.register(MODULE, crate::module::job::start);
}

/// Decodes a job's parameters, or says why not.
pub(crate) fn params<T: Wire>(bytes: &[u8]) -> Result<T, String> {
    wire::decode(bytes).map_err(|e| format!("bad job parameters: {e}"))
}

/// An event sink that sends a job's events to the server.
pub(crate) fn event_sink(ctx: &JobCtx) -> fluo_sfu::EventSink {
    let ctx = ctx.clone();
    Arc::new(move |_id: &str, ev: MediaEvent| emit(&ctx, &ev))
}

/// Sends one event of a job to the server: an Error event as the job's failure
/// (`JobCtx::fail`, whose text the server's element raises as its Error event, of the
/// element's own type), the others as events.
pub(crate) fn emit(ctx: &JobCtx, ev: &MediaEvent) {
    if let MediaEvent::Error { description, .. } = ev {
        ctx.fail(description);
    } else if let Some((name, data)) = encode_event(ev) {
        ctx.emit(name, data);
    }
}

/// A Kurento error as a job's method fails with it: its code, a space, its message (the
/// server's element answers the request with the same code, [`kurento_error`]).
pub fn error_text(e: &fluo_api::KurentoError) -> String {
    format!("{} {}", e.code.code(), e.message)
}

/// The Kurento error a job's failure text stands for: the code it starts with when it is one
/// of the catalogue's (a worker is untrusted: anything else is 40003 with the whole text).
pub fn kurento_error(text: &str) -> fluo_api::KurentoError {
    use fluo_api::{ErrorCode, KurentoError};
    let coded = text.split_once(' ').and_then(|(n, m)| {
        let code = ErrorCode::from_code(n.parse().ok()?)?;
        Some(KurentoError::new(code, m))
    });
    coded.unwrap_or_else(|| KurentoError::new(ErrorCode::UnexpectedError, text))
}

/// The longest code value a worker's CodeFound may carry (a QR code holds at most 7089
/// characters).
pub(crate) const MAX_CODE_BYTES: usize = 8192;

/// The longest fields' text a module's event may carry from a worker.
pub(crate) const MAX_MODULE_EVENT_BYTES: usize = 64 << 10;

pub(crate) const STATES: [&str; 3] = ["STOP", "START", "PAUSE"];

/// A job's event as it crosses to the server: Kurento's event name and its fields (`None`
/// for the events no job raises as an event; Error events go as the job's failure).
pub fn encode_event(ev: &MediaEvent) -> Option<(&str, Vec<u8>)> {
    let mut data = Vec::new();
    let mut w = Writer::new(&mut data);
    match ev {
        MediaEvent::UriEndpointState { state } => w.str(state),
        MediaEvent::CodeFound { code_type, value } => {
            w.str(code_type);
            w.str(value);
        }
        MediaEvent::Module { fields, .. } => w.str(fields),
        MediaEvent::EndOfStream
        | MediaEvent::Recording
        | MediaEvent::Paused
        | MediaEvent::Stopped => {}
        _ => return None,
    }
    Some((fluo_core::event_name(ev), data))
}

/// A job's event from its name and fields; `None` for what no job sends (a worker is not
/// trusted: anything else is dropped).
pub fn decode_event(name: &str, data: &[u8]) -> Option<MediaEvent> {
    let mut r = Reader::new(data);
    let ev = match name {
        "UriEndpointStateChanged" => {
            let s = r.str().ok()?;
            MediaEvent::UriEndpointState {
                state: STATES.into_iter().find(|x| *x == s)?,
            }
        }
        "CodeFound" => {
            // A worker is untrusted: bounded (the value is the code's own text, passed as
            // it was read, as KMS does).
            let mut text = |max: usize| {
                let s = r.str().ok()?;
                (s.len() <= max).then(|| s.to_owned())
            };
            MediaEvent::CodeFound {
                code_type: text(64)?,
                value: text(MAX_CODE_BYTES)?,
            }
        }
        "EndOfStream" => MediaEvent::EndOfStream,
        "Recording" => MediaEvent::Recording,
        "Paused" => MediaEvent::Paused,
        "Stopped" => MediaEvent::Stopped,
        // A module's own event: a name some installed module declares (the element's host
        // dropped names its class does not declare; a client subscribes per class).
        name if crate::module::is_event_name(name) => {
            let fields = r.str().ok()?;
            if fields.len() > MAX_MODULE_EVENT_BYTES {
                return None;
            }
            MediaEvent::Module {
                name: name.to_owned(),
                fields: fields.to_owned(),
            }
        }
        _ => return None,
    };
    r.finish().ok()?;
    Some(ev)
}

pub(crate) const CODEC_NAMES: [CodecName; 11] = [
    CodecName::Vp8,
    CodecName::Vp9,
    CodecName::H264,
    CodecName::Av1,
    CodecName::Opus,
    CodecName::Pcmu,
    CodecName::Pcma,
    CodecName::G722,
    CodecName::H263,
    CodecName::Amr,
    CodecName::Speex,
];

pub(crate) fn put_codec(w: &mut Writer<'_>, c: CodecName) {
    w.str(c.sdp_name());
}

pub(crate) fn get_codec(r: &mut Reader<'_>) -> Result<CodecName, WireError> {
    let s = r.str()?;
    CODEC_NAMES
        .into_iter()
        .find(|c| c.sdp_name().eq_ignore_ascii_case(s))
        .ok_or(WireError::BadTag(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluo_sfu::MediaError;

    #[test]
    fn job_events_round_trip_and_hostile_ones_are_dropped() {
        let error = MediaEvent::Error {
            error: MediaError::Recorder,
            description: "Recording failed: disk full".into(),
        };
        assert_eq!(encode_event(&error), None);
        let evs = [
            MediaEvent::UriEndpointState { state: "PAUSE" },
            MediaEvent::EndOfStream,
            MediaEvent::Recording,
            MediaEvent::Paused,
            MediaEvent::Stopped,
            MediaEvent::CodeFound {
                code_type: "EAN-13".into(),
                value: "4006381333931".into(),
            },
        ];
        for ev in evs {
            let (name, data) = encode_event(&ev).unwrap();
            assert_eq!(decode_event(name, &data), Some(ev));
        }
        assert_eq!(
            decode_event("UriEndpointStateChanged", b"\x04\0\0\0PLAY"),
            None
        );
        assert_eq!(decode_event("Error", b""), None);
        assert_eq!(decode_event("Stopped", b"x"), None);
        assert_eq!(decode_event("OnKeySoftLimit", b""), None);
        // A module's event crosses only under a name an installed module declares (none
        // here).
        let module = MediaEvent::Module {
            name: "FramesProcessed".into(),
            fields: "{\"count\":1}".into(),
        };
        let (name, data) = encode_event(&module).unwrap();
        assert_eq!(name, "FramesProcessed");
        assert_eq!(decode_event(name, &data), None);
        let long = MediaEvent::CodeFound {
            code_type: "QR-Code".into(),
            value: "x".repeat(MAX_CODE_BYTES + 1),
        };
        let (name, data) = encode_event(&long).unwrap();
        assert_eq!(
            decode_event(name, &data),
            None,
            "an oversized code is dropped"
        );
    }

    #[test]
    fn job_failures_keep_their_kurento_code() {
        use fluo_api::{ErrorCode, KurentoError};
        let e = KurentoError::new(ErrorCode::UriPathFileNotFound, "The file /x does not exist");
        assert_eq!(kurento_error(&error_text(&e)), e);
        let other = kurento_error("bad job parameters: truncated");
        assert_eq!(other.code, ErrorCode::UnexpectedError);
        assert_eq!(other.message, "bad job parameters: truncated");
        assert_eq!(
            kurento_error("40002 no such code").code,
            ErrorCode::UnexpectedError
        );
    }
}
