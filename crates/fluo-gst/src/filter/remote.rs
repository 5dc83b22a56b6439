//! GStreamerFilter as a proxy of a `gst.filter` job in a media worker. The command is checked
//! against the operator's policy in the server at create, before the job starts (the job
//! checks it again); the filter's output settings (encoder bitrates, setVideoFormat /
//! setAudioFormat) follow it into the job (`Spec::follows_settings`).

use crate::filter::check_element_property;
use crate::filter::policy::Checked;
use crate::jobs::{self, FilterParams, PlayParams, PropertyArgs};
use crate::remote::proxy::{nothing, Face, Proxied, Proxy};
use crate::remote::{Local, Remote, Spec};
use crate::Media;
use fluo_api::KurentoError;
use fluo_core::{Edge, Element, ElementCx, FactoryCx, MediaError, StatsQuery};
use fluo_sfu::{MediaKind, SinkCaps};
use fluo_worker::{wire, Supervisor};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The GStreamerFilter `cx` asks for, running `command` (checked) on `kind` media as a job on
/// `workers`.
pub(crate) fn create(
    workers: &Supervisor,
    media: &Media,
    cx: &FactoryCx<'_>,
    (command, checked): (String, Arc<Checked>),
    kind: MediaKind,
) -> Box<dyn Element> {
    let params = FilterParams {
        command: command.clone(),
        filter_type: kind.wire_name().to_string(),
        allow: media.filters.allow_list(),
        output: PlayParams::of(&media.settings.get(cx.id)),
    };
    let remote = Remote::start(
        workers,
        media,
        cx,
        Spec {
            kind: jobs::FILTER,
            params: wire::encode(&params),
            error: MediaError::Filter,
            local: Local {
                encodes: true,
                filtered: Some(kind),
                ..Local::default()
            },
            caps,
            follows_settings: true,
        },
    );
    Proxied::boxed(cx.id, remote, media, FilterFace { command, checked })
}

fn caps(local: &Local, kind: MediaKind) -> SinkCaps {
    match local.filtered {
        Some(filtered) => crate::filter::sink_caps(filtered, kind),
        None => SinkCaps::anything(),
    }
}

struct FilterFace {
    command: String,
    /// The command as the policy passed it: setElementProperty is checked against it here
    /// before the job is asked (which checks it again).
    checked: Arc<Checked>,
}

impl Face for FilterFace {
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
        if method != "setElementProperty" {
            return None;
        }
        let text = |k: &str| {
            params
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let args = PropertyArgs {
            name: text("propertyName"),
            value: text("propertyValue"),
        };
        let checked = (&*self.checked, self.command.as_str());
        let policy = &p.media.filters;
        if let Err(e) = check_element_property(checked, policy, &args.name, &args.value) {
            return Some(Err(e));
        }
        Some(
            p.remote
                .answer(cx, "setElementProperty", wire::encode(&args), nothing),
        )
    }

    fn get_property(&self, _p: &Proxy, name: &str) -> Option<Value> {
        (name == "command").then(|| Value::from(self.command.clone()))
    }

    fn media_connected(&mut self, p: &Proxy, edge: &Edge) {
        if edge.sink == p.id {
            // The decoder starts at a keyframe.
            p.media.bus.request_keyframe(p.remote.key());
        }
    }
}
