//! PlayerEndpoint as a proxy of a `gst.player` job in a media worker.

use crate::jobs::{self, PlayParams, PlayerParams, VideoInfo};
use crate::remote::proxy::{bad_reply, dot, nothing, Face, Proxied, Proxy};
use crate::remote::{Local, Remote, Spec};
use crate::uri::MediaUri;
use crate::Media;
use fluo_api::KurentoError;
use fluo_core::{Element, ElementCx, FactoryCx, MediaError};
use fluo_sfu::{MediaKind, SinkCaps};
use fluo_worker::{wire, Supervisor};
use serde_json::{json, Map, Value};

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
            follows_settings: false,
        },
    );
    Proxied::boxed(cx.id, remote, media, PlayerFace { uri })
}

struct PlayerFace {
    uri: MediaUri,
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

/// The `position` of setPosition and of the property, in milliseconds.
fn position_arg(v: Option<&Value>) -> Result<Vec<u8>, KurentoError> {
    crate::player::position_param(v).map(|ms| wire::encode(&ms))
}

impl Face for PlayerFace {
    fn invoke(
        &mut self,
        p: &Proxy,
        cx: &mut ElementCx<'_>,
        method: &str,
        params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        let r = &p.remote;
        Some(match method {
            "play" => {
                let s = p.media.settings.get(&p.id);
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

    fn get_property(&self, p: &Proxy, name: &str) -> Option<Value> {
        match name {
            "state" => Some(json!(p.remote.local().state)),
            "position" => Some(p.read("getPosition", position)),
            "videoInfo" => Some(p.read("getVideoInfo", video_info)),
            "elementGstreamerDot" => Some(p.read("getGstreamerDot", dot)),
            "uri" => Some(json!(match &self.uri {
                MediaUri::File(_) => self.uri.gst_uri(),
                MediaUri::Remote(u) => u.clone(),
            })),
            _ => None,
        }
    }

    fn read_property(
        &mut self,
        p: &Proxy,
        cx: &mut ElementCx<'_>,
        name: &str,
    ) -> Option<Result<Value, KurentoError>> {
        let r = &p.remote;
        Some(match name {
            "position" => r.answer(cx, "getPosition", Vec::new(), position),
            "videoInfo" => r.answer(cx, "getVideoInfo", Vec::new(), video_info),
            "elementGstreamerDot" => r.answer(cx, "getGstreamerDot", Vec::new(), dot),
            _ => return None,
        })
    }

    fn property_set(
        &mut self,
        p: &Proxy,
        _cx: &mut ElementCx<'_>,
        name: &str,
        value: &Value,
    ) -> Result<(), KurentoError> {
        if name == "position" {
            let args = position_arg(Some(value))?;
            p.remote.call_waiting("setPosition", args)?;
        }
        Ok(())
    }
}
