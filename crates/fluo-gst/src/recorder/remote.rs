//! RecorderEndpoint as a proxy of a `gst.recorder` job in a media worker.

use crate::jobs::{self, RecorderParams};
use crate::recorder::{self, Profile};
use crate::remote::proxy::{nothing, Face, Proxied, Proxy};
use crate::remote::{Local, Remote, Spec};
use crate::Media;
use fluo_api::KurentoError;
use fluo_core::{Element, ElementCx, FactoryCx, MediaError, StatsQuery};
use fluo_sfu::{MediaKind, SinkCaps};
use fluo_worker::{wire, Supervisor};
use serde_json::{json, Map, Value};

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
            follows_settings: false,
        },
    );
    Proxied::boxed(cx.id, remote, media, RecorderFace)
}

fn caps(local: &Local, kind: MediaKind) -> SinkCaps {
    match local.profile {
        Some(p) => recorder::sink_caps(&p, kind, local.codecs[kind]),
        None => SinkCaps::anything(),
    }
}

struct RecorderFace;

impl Face for RecorderFace {
    fn has_output(&self) -> bool {
        false
    }

    fn stats(&mut self, p: &Proxy, q: &StatsQuery<'_>) -> Option<Map<String, Value>> {
        p.media.element_stats(q)
    }

    fn invoke(
        &mut self,
        p: &Proxy,
        cx: &mut ElementCx<'_>,
        method: &str,
        _params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        match method {
            "record" | "pause" | "stop" | "stopAndWait" => {
                Some(p.remote.answer(cx, method, Vec::new(), nothing))
            }
            _ => None,
        }
    }

    fn get_property(&self, p: &Proxy, name: &str) -> Option<Value> {
        match name {
            "state" => Some(json!(p.remote.local().state)),
            _ => None,
        }
    }
}
