//! RecorderEndpoint as a proxy of a `gst.recorder` job in a media worker.

use super::{Local, Remote, Spec};
use crate::jobs::{self, RecorderParams};
use crate::recorder::{self, Profile};
use crate::Media;
use fluo_api::KurentoError;
use fluo_core::{Edge, Element, ElementCx, FactoryCx, MediaError, Stopping};
use fluo_sfu::{MediaKind, SinkCaps};
use fluo_worker::{wire, Supervisor};
use serde_json::{json, Map, Value};

struct RecorderProxy {
    id: String,
    /// Held until the job answered its release (see `Remote::release`).
    stopping: Option<Stopping>,
    remote: Remote,
    media: Media,
}

/// The RecorderEndpoint `cx` asks for (its URI and profile checked), its recording a job on
/// `workers`.
pub(crate) fn create(
    workers: &Supervisor,
    media: &Media,
    cx: &FactoryCx<'_>,
    profile: Profile,
    params: RecorderParams,
) -> Box<dyn Element> {
    let remote = Remote::start(
        workers,
        media,
        cx,
        Spec {
            kind: jobs::RECORDER,
            params: wire::encode(&params),
            error: MediaError::Recorder,
            local: Local {
                profile: Some(profile),
                ..Local::default()
            },
            caps,
        },
    );
    Box::new(RecorderProxy {
        id: cx.id.to_string(),
        stopping: None,
        remote,
        media: media.clone(),
    })
}

fn caps(local: &Local, kind: MediaKind) -> SinkCaps {
    match local.profile {
        Some(p) => recorder::sink_caps(&p, kind, local.codecs[kind]),
        None => SinkCaps::anything(),
    }
}

fn nothing(_: &[u8]) -> Result<Value, KurentoError> {
    Ok(Value::Null)
}

impl Element for RecorderProxy {
    fn has_output(&self) -> bool {
        false
    }

    fn stats(&mut self, q: &fluo_core::StatsQuery<'_>) -> Option<Map<String, Value>> {
        self.media.element_stats(q)
    }

    fn invoke(
        &mut self,
        cx: &mut ElementCx<'_>,
        method: &str,
        _params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        match method {
            "record" | "pause" | "stop" | "stopAndWait" => {
                Some(self.remote.answer(cx, method, Vec::new(), nothing))
            }
            _ => None,
        }
    }

    fn get_property(&self, name: &str) -> Option<Value> {
        match name {
            "state" => Some(json!(self.remote.local().state)),
            _ => None,
        }
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
