//! ZBarFilter as a proxy of a `gst.zbar` job in a media worker (a GStreamerFilter's proxy
//! without a command: nothing to probe at create). The filter's output settings follow it
//! into the job (`Spec::follows_settings`); the job's CodeFound events become the element's.

use crate::jobs::{self, PlayParams};
use crate::remote::proxy::{Face, Proxied, Proxy};
use crate::remote::{Local, Remote, Spec};
use crate::Media;
use fluo_core::{Edge, Element, FactoryCx, MediaError, StatsQuery};
use fluo_sfu::{MediaKind, SinkCaps};
use fluo_worker::{wire, Supervisor};
use serde_json::{Map, Value};

/// The ZBarFilter `cx` asks for, as a job on `workers`.
pub(crate) fn create(workers: &Supervisor, media: &Media, cx: &FactoryCx<'_>) -> Box<dyn Element> {
    let params = PlayParams::of(&media.settings.get(cx.id));
    let remote = Remote::start(
        workers,
        media,
        cx,
        Spec {
            kind: jobs::ZBAR,
            params: wire::encode(&params),
            error: MediaError::ZBar,
            local: Local {
                encodes: true,
                filtered: Some(MediaKind::Video),
                ..Local::default()
            },
            caps,
            follows_settings: true,
        },
    );
    Proxied::boxed(cx.id, remote, media, ZBarFace)
}

fn caps(_: &Local, kind: MediaKind) -> SinkCaps {
    crate::filter::sink_caps(MediaKind::Video, kind)
}

/// A ZBarFilter has no methods or properties of its own.
struct ZBarFace;

impl Face for ZBarFace {
    fn stats(&mut self, p: &Proxy, q: &StatsQuery<'_>) -> Option<Map<String, Value>> {
        p.media.element_stats(q)
    }

    fn media_connected(&mut self, p: &Proxy, edge: &Edge) {
        if edge.sink == p.id {
            // The decoder starts at a keyframe.
            p.media.bus.request_keyframe(p.remote.key());
        }
    }
}
