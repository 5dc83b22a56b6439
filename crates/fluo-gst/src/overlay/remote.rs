//! ImageOverlayFilter and FaceOverlayFilter as proxies of a `gst.overlay` job in a media
//! worker: the methods' arguments are checked here (URIs against the allow-list), then sent
//! to the job as [`Op`]s; the filter's output settings follow it into the job, as a
//! GStreamerFilter's do.

use super::{parse_op, Which};
use crate::jobs::{self, PlayParams};
use crate::overlay::job::OverlayParams;
use crate::remote::proxy::{nothing, Face, Proxied, Proxy};
use crate::remote::{Local, Remote, Spec};
use crate::Media;
use fluo_api::KurentoError;
use fluo_core::{Edge, Element, ElementCx, FactoryCx, MediaError, StatsQuery};
use fluo_sfu::{MediaKind, SinkCaps};
use fluo_worker::{wire, Supervisor};
use serde_json::{Map, Value};

fn caps(_: &Local, kind: MediaKind) -> SinkCaps {
    crate::filter::sink_caps(MediaKind::Video, kind)
}

/// The overlay filter `cx` asks for, its pipeline a job on `workers`.
pub(crate) fn create(
    workers: &Supervisor,
    media: &Media,
    cx: &FactoryCx<'_>,
    which: Which,
) -> Box<dyn Element> {
    let params = OverlayParams {
        face: which == Which::Face,
        output: PlayParams::of(&media.settings.get(cx.id)),
    };
    let remote = Remote::start(
        workers,
        media,
        cx,
        Spec {
            kind: jobs::OVERLAY,
            params: wire::encode(&params),
            error: MediaError::Filter,
            local: Local {
                encodes: true,
                filtered: Some(MediaKind::Video),
                ..Local::default()
            },
            caps,
            follows_settings: true,
        },
    );
    Proxied::boxed(cx.id, remote, media, OverlayFace { which })
}

struct OverlayFace {
    which: Which,
}

impl Face for OverlayFace {
    fn stats(&mut self, p: &Proxy, q: &StatsQuery<'_>) -> Option<Map<String, Value>> {
        p.media.element_stats(q)
    }

    fn invoke(
        &mut self,
        p: &Proxy,
        cx: &mut ElementCx<'_>,
        method: &str,
        params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        let op = match parse_op(self.which, method, params, &p.media.uris)? {
            Ok(op) => op,
            Err(e) => return Some(Err(e)),
        };
        Some(p.remote.answer(cx, "op", wire::encode(&op), nothing))
    }

    fn media_connected(&mut self, p: &Proxy, edge: &Edge) {
        if edge.sink == p.id {
            // The decoder starts at a keyframe.
            p.media.bus.request_keyframe(p.remote.key());
        }
    }
}
