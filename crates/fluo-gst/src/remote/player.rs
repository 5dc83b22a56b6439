//! PlayerEndpoint as a proxy of a `gst.player` job in a media worker.

use super::{Local, Remote, Spec};
use crate::jobs::{self, PlayParams, PlayerParams, VideoInfo};
use crate::uri::MediaUri;
use crate::Media;
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{Edge, Element, ElementCx, FactoryCx, MediaError, Stopping};
use fluo_sfu::{MediaKind, SinkCaps};
use fluo_worker::{wire, Supervisor};
use serde_json::{json, Map, Value};

struct PlayerProxy {
    id: String,
    /// Held until the job answered its release (see `Remote::release`).
    stopping: Option<Stopping>,
    uri: MediaUri,
    remote: Remote,
    media: Media,
}

/// A player takes nothing: it is a source only.
fn caps(_: &Local, _: MediaKind) -> SinkCaps {
    SinkCaps::codecs([])
}

/// The PlayerEndpoint `cx` asks for (its URI checked), its pipeline a job on `workers`.
pub(crate) fn create(
    workers: &Supervisor,
    media: &Media,
    cx: &FactoryCx<'_>,
    uri: MediaUri,
    params: PlayerParams,
) -> Box<dyn Element> {
    let remote = Remote::start(
        workers,
        media,
        cx,
        Spec {
            kind: jobs::PLAYER,
            params: wire::encode(&params),
            error: MediaError::Player,
            local: Local {
                encodes: !params.use_encoded,
                ..Local::default()
            },
            caps,
        },
    );
    Box::new(PlayerProxy {
        id: cx.id.to_string(),
        stopping: None,
        uri,
        remote,
        media: media.clone(),
    })
}

fn nothing(_: &[u8]) -> Result<Value, KurentoError> {
    Ok(Value::Null)
}

fn bad_reply(e: impl std::fmt::Display) -> KurentoError {
    KurentoError::new(
        ErrorCode::UnexpectedError,
        format!("The media worker answered something unreadable: {e}"),
    )
}

fn position(b: &[u8]) -> Result<Value, KurentoError> {
    wire::decode::<u64>(b)
        .map(|ms| json!(ms))
        .map_err(bad_reply)
}

fn video_info(b: &[u8]) -> Result<Value, KurentoError> {
    let v: VideoInfo = wire::decode(b).map_err(bad_reply)?;
    Ok(json!({
        "__module__": "kurento",
        "__type__": "VideoInfo",
        "isSeekable": v.seekable,
        "seekableInit": v.seekable_init,
        "seekableEnd": v.seekable_end,
        "duration": v.duration,
    }))
}

fn dot(b: &[u8]) -> Result<Value, KurentoError> {
    let d: String = wire::decode(b).map_err(bad_reply)?;
    Ok(json!(crate::dot::without_secrets(&d)))
}

/// The `position` of setPosition and of the property, in milliseconds.
fn position_arg(v: Option<&Value>) -> Result<Vec<u8>, KurentoError> {
    crate::player::position_param(v).map(|ms| wire::encode(&ms))
}

impl PlayerProxy {
    /// A synchronous read of the job (property getters), `fallback` when it cannot answer.
    fn read(&self, method: &str, read: fn(&[u8]) -> Result<Value, KurentoError>) -> Value {
        self.remote
            .call_waiting(method, Vec::new())
            .and_then(|b| read(&b))
            .unwrap_or_else(|e| {
                tracing::debug!(id = %self.id, "{method}: {e}");
                Value::Null
            })
    }
}

impl Element for PlayerProxy {
    fn invoke(
        &mut self,
        cx: &mut ElementCx<'_>,
        method: &str,
        params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        let r = &self.remote;
        Some(match method {
            "play" => {
                let s = self.media.settings.get(&self.id);
                let args = wire::encode(&PlayParams::of(&s));
                r.answer(cx, "play", args, nothing)
            }
            "pause" | "stop" => r.answer(cx, method, Vec::new(), nothing),
            "setPosition" => position_arg(params.get("position"))
                .and_then(|a| r.answer(cx, "setPosition", a, nothing)),
            "getPosition" => r.answer(cx, "getPosition", Vec::new(), position),
            "getVideoInfo" => r.answer(cx, "getVideoInfo", Vec::new(), video_info),
            "getState" => Ok(json!(r.local().state)),
            _ => return None,
        })
    }

    fn get_property(&self, name: &str) -> Option<Value> {
        match name {
            "state" => Some(json!(self.remote.local().state)),
            "position" => Some(self.read("getPosition", position)),
            "videoInfo" => Some(self.read("getVideoInfo", video_info)),
            "elementGstreamerDot" => Some(self.read("getGstreamerDot", dot)),
            "uri" => Some(json!(match &self.uri {
                MediaUri::File(_) => self.uri.gst_uri(),
                MediaUri::Remote(u) => u.clone(),
            })),
            _ => None,
        }
    }

    fn read_property(
        &mut self,
        cx: &mut ElementCx<'_>,
        name: &str,
    ) -> Option<Result<Value, KurentoError>> {
        let r = &self.remote;
        Some(match name {
            "position" => r.answer(cx, "getPosition", Vec::new(), position),
            "videoInfo" => r.answer(cx, "getVideoInfo", Vec::new(), video_info),
            "elementGstreamerDot" => r.answer(cx, "getGstreamerDot", Vec::new(), dot),
            _ => return None,
        })
    }

    fn property_set(
        &mut self,
        _cx: &mut ElementCx<'_>,
        name: &str,
        value: &Value,
    ) -> Result<(), KurentoError> {
        if name == "position" {
            let args = position_arg(Some(value))?;
            self.remote.call_waiting("setPosition", args)?;
        }
        Ok(())
    }

    fn media_connected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.media.route(self.remote.key(), &self.id, edge, true);
    }

    fn media_disconnected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.media.route(self.remote.key(), &self.id, edge, false);
    }

    fn released(&mut self) {
        self.stopping = Some(self.remote.release());
    }

    fn stopping(&self) -> Option<Stopping> {
        self.stopping.clone()
    }
}
