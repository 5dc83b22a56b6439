//! GStreamerFilter as a proxy of a `gst.filter` job in a media worker. The command is checked
//! against the operator's policy in the server at create (as text: no element is made), then
//! built once by a `gst.filter.probe` job on the worker hosting the pipeline ([`probe`]: does
//! it link, what kind AUTODETECT filters), create answering when the probe did; then the
//! filter's job starts (and checks the command again). The filter's output settings (encoder
//! bitrates, setVideoFormat / setAudioFormat) follow it into the job
//! (`Spec::follows_settings`).

use crate::filter::check_element_property;
use crate::filter::policy::Checked;
use crate::jobs::{self, FilterParams, PlayParams, PropertyArgs};
use crate::remote::proxy::{nothing, Face, Proxied, Proxy};
use crate::remote::{death_text, group_of, wait, Local, Remote, Spec};
use crate::Media;
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{Edge, Element, ElementCx, FactoryCx, MediaError, StatsQuery};
use fluo_sfu::{MediaKind, SinkCaps};
use fluo_worker::{wire, Death, JobError, JobSink, PacketRef, Supervisor};
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

/// Builds `command` once in a short `gst.filter.probe` job on the worker hosting the
/// pipeline `cx` creates in, and waits for it (the engine's thread waits in
/// `block_in_place`): the kind the command filters, or why it cannot run: the Kurento error
/// the build gave, or, when building it ended the worker (a constructor that crashes),
/// 40107 saying so. The worker is restarted by its supervisor as after any death.
pub(crate) fn probe(
    workers: &Supervisor,
    media: &Media,
    cx: &FactoryCx<'_>,
    command: &str,
    filter_type: &str,
) -> Result<MediaKind, KurentoError> {
    let params = FilterParams {
        command: command.to_string(),
        filter_type: filter_type.to_string(),
        allow: media.filters.allow_list(),
        output: PlayParams::of(&media.settings.get(cx.id)),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let group = group_of(cx.pipeline.unwrap_or(cx.id));
    let params = wire::encode(&params);
    workers.start_job(
        group,
        jobs::FILTER_PROBE,
        params,
        Arc::new(Quiet),
        move |r| {
            let job = match r {
                Ok(job) => Arc::new(job),
                Err(e) => return drop(tx.send(Err(e))),
            };
            let held = job.clone();
            job.call("kind", Vec::new(), move |r| {
                // Stopped once it answered (or its worker died).
                drop(held);
                let _ = tx.send(r);
            });
        },
    );
    let reply = wait(rx).unwrap_or(Err(JobError::Stopped));
    let kind = reply.map_err(|e| probe_error(cx.id, e)).and_then(|bytes| {
        let name = String::from_utf8_lossy(&bytes);
        MediaKind::from_wire(&name).ok_or_else(|| {
            KurentoError::new(
                ErrorCode::UnexpectedError,
                format!(
                    "GStreamerFilter: the media worker's probe answered the kind '{}'",
                    fluo_api::text::foreign(&name)
                ),
            )
        })
    })?;
    Ok(kind)
}

/// The Kurento error of a probe that failed.
fn probe_error(id: &str, e: JobError) -> KurentoError {
    match e {
        JobError::WorkerDied(d) => {
            let text = death_text(&d);
            tracing::warn!(%id, "GStreamerFilter: building the command ended its media worker: {text}");
            KurentoError::illegal_param(format!(
                "GStreamerFilter: building the command ended the media worker that built it: {text}"
            ))
        }
        JobError::Failed(text) => jobs::kurento_error(&text),
        JobError::Unavailable(_) | JobError::Stopped => KurentoError::new(
            ErrorCode::UnexpectedError,
            format!("GStreamerFilter: the command could not be built: {e}"),
        ),
    }
}

/// The probe's sink: it produces nothing (its worker's death reaches its pending call).
struct Quiet;

impl JobSink for Quiet {
    fn packet(&self, _pkt: &PacketRef<'_>) {}
    fn worker_died(&self, _death: &Death) {}
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
