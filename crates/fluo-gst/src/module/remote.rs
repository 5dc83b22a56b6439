//! A module element as the proxy of a `gst.module` job in a media worker: its class's own
//! methods go to the job's instance (JSON there and back).

use super::Hosted;
use crate::jobs::{self, ModuleParams, PlayParams};
use crate::remote::proxy::{bad_reply, Face, Proxied, Proxy};
use crate::remote::{Local, Remote, Spec};
use crate::Media;
use fluo_api::model::ClassDef;
use fluo_api::KurentoError;
use fluo_core::{Edge, Element, ElementCx, FactoryCx, MediaError, StatsQuery};
use fluo_sfu::{MediaKind, SinkCaps};
use fluo_worker::{wire, Supervisor};
use serde_json::{Map, Value};

fn caps(_: &Local, kind: MediaKind) -> SinkCaps {
    crate::filter::sink_caps(MediaKind::Video, kind)
}

/// The module element `cx` asks for, its instance a job on `workers`.
pub(crate) fn create(
    workers: &Supervisor,
    media: &Media,
    cx: &FactoryCx<'_>,
    hosted: &'static Hosted,
    class: &'static ClassDef,
) -> Box<dyn Element> {
    let params = ModuleParams {
        module: hosted.parsed.name.clone(),
        class: class.name.clone(),
        params: Value::Object(cx.params.clone()).to_string(),
        uris: media.uris.entries().to_vec(),
        output: PlayParams::of(&media.settings.get(cx.id)),
    };
    let remote = Remote::start(
        workers,
        media,
        cx,
        Spec {
            kind: jobs::MODULE,
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
    Proxied::boxed(cx.id, remote, media, ModuleFace { hosted, class })
}

struct ModuleFace {
    hosted: &'static Hosted,
    class: &'static ClassDef,
}

/// The job's answer to `invoke`: a JSON value.
fn json_reply(b: &[u8]) -> Result<Value, KurentoError> {
    serde_json::from_slice(b).map_err(bad_reply)
}

impl Face for ModuleFace {
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
        if !self.hosted.declares(self.class, method) {
            return None;
        }
        let args = vec![
            method.to_string(),
            Value::Object(params.clone()).to_string(),
        ];
        Some(
            p.remote
                .answer(cx, "invoke", wire::encode(&args), json_reply),
        )
    }

    fn property_set(
        &mut self,
        p: &Proxy,
        _cx: &mut ElementCx<'_>,
        name: &str,
        value: &Value,
    ) -> Result<(), KurentoError> {
        if !self.hosted.declares_property(self.class, name) {
            return Ok(());
        }
        // Answered before the engine keeps the value (as a player's position is).
        let args = vec![name.to_string(), value.to_string()];
        p.remote.call_waiting("property", wire::encode(&args))?;
        Ok(())
    }

    fn media_connected(&mut self, p: &Proxy, edge: &Edge) {
        if edge.sink == p.id {
            // The decoder starts at a keyframe.
            p.media.bus.request_keyframe(p.remote.key());
        }
    }
}
