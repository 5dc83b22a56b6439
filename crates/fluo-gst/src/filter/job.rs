//! The filter job: a GStreamerFilter's decode -> command -> encode pipeline
//! (`crate::filter::FilterPort`) in a worker. The command is checked again in the worker
//! against the operator's policy, as the server checked it at create.
//!
//! The probe job (`gst.filter.probe`): create's building of the command (does it link, what
//! kind does AUTODETECT filter), made in a worker so that a plugin that crashes in a
//! constructor ends the worker, not the server. It builds the bin once when it starts (a
//! failure is its start's, with the Kurento code), answers `kind`, and is stopped.

use crate::filter::policy::{Checked, FilterPolicy};
use crate::filter::{self, FilterPort};
use crate::jobs::{error_text, event_sink, params, PlayParams};
use fluo_sfu::{PortOutput, SettingsTable};
use fluo_worker::wire::{Reader, Wire, WireError, Writer};
use fluo_worker::worker::{Job, JobCtx};
use fluo_worker::PacketRef;
use std::sync::{Arc, Mutex};

/// What a filter job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterParams {
    /// The GStreamerFilter's command.
    pub command: String,
    /// filterType: VIDEO, AUDIO or AUTODETECT.
    pub filter_type: String,
    /// The operator's list of allowed elements (`None`: the default policy).
    pub allow: Option<Vec<String>>,
    /// The filter's output settings (encoder bitrates, forced formats), as a player's `play`
    /// carries them; changed later by the `setOutput` method.
    pub output: PlayParams,
}

impl Wire for FilterParams {
    fn put(&self, w: &mut Writer<'_>) {
        w.str(&self.command);
        w.str(&self.filter_type);
        w.put(&self.allow);
        self.output.put(w);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(FilterParams {
            command: r.str()?.to_owned(),
            filter_type: r.str()?.to_owned(),
            allow: r.get()?,
            output: PlayParams::get(r)?,
        })
    }
}

/// setElementProperty's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyArgs {
    /// propertyName.
    pub name: String,
    /// propertyValue.
    pub value: String,
}

impl Wire for PropertyArgs {
    fn put(&self, w: &mut Writer<'_>) {
        w.str(&self.name);
        w.str(&self.value);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(PropertyArgs {
            name: r.str()?.to_owned(),
            value: r.str()?.to_owned(),
        })
    }
}

struct FilterJob {
    port: FilterPort,
    /// The job's output settings, under its id: the filter encodes with them.
    settings: Arc<SettingsTable>,
    id: String,
    command: String,
    checked: Arc<Checked>,
    policy: Arc<FilterPolicy>,
    shared: Arc<Mutex<filter::Shared>>,
}

pub(crate) fn start(ctx: JobCtx, bytes: &[u8]) -> Result<Box<dyn Job>, String> {
    let p: FilterParams = params(bytes)?;
    crate::init()?;
    let policy = Arc::new(FilterPolicy::new(p.allow));
    let (checked, bin) = filter::parse_command(&p.command, &policy).map_err(|e| e.message)?;
    let kind = filter::filter_kind(&bin, &p.filter_type).map_err(|e| e.message)?;
    let checked = Arc::new(checked);
    let shared = filter::new_shared();
    let out = {
        let ctx = ctx.clone();
        PortOutput::new(
            ctx.id(),
            Arc::new(move |_, pkt| ctx.send_packet(&PacketRef::from(&pkt))),
        )
    };
    let id = format!("job-{}", ctx.id());
    let settings = Arc::new(SettingsTable::new(p.output.settings()));
    let stage = Arc::new(filter::Command {
        checked: checked.clone(),
        policy: policy.clone(),
    });
    let port = FilterPort::new(
        kind,
        stage,
        shared.clone(),
        out,
        (id.clone(), event_sink(&ctx)),
        settings.clone(),
    );
    Ok(Box::new(FilterJob {
        port,
        settings,
        id,
        command: p.command,
        checked,
        policy,
        shared,
    }))
}

/// A probe that built its command: the kind it filters.
struct ProbeJob(fluo_sfu::MediaKind);

pub(crate) fn probe(_ctx: JobCtx, bytes: &[u8]) -> Result<Box<dyn Job>, String> {
    let p: FilterParams = params(bytes)?;
    crate::init()?;
    let policy = FilterPolicy::new(p.allow);
    let kind = filter::check_command(&p.command, &policy)
        .and_then(|checked| filter::probe_command(&checked, &p.filter_type))
        .map_err(|e| error_text(&e))?;
    Ok(Box::new(ProbeJob(kind)))
}

impl Job for ProbeJob {
    /// `kind`: VIDEO or AUDIO.
    fn call(&mut self, method: &str, _args: &[u8]) -> Result<Vec<u8>, String> {
        match method {
            "kind" => Ok(self.0.wire_name().as_bytes().to_vec()),
            _ => Err(format!("the filter probe has no method '{method}'")),
        }
    }
}

impl Job for FilterJob {
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        match method {
            "setElementProperty" => {
                let PropertyArgs { name, value } = params(args)?;
                let checked = (&*self.checked, self.command.as_str());
                filter::set_element_property(checked, &self.policy, &self.shared, &name, &value)
                    .map_err(|e| error_text(&e))?;
                Ok(Vec::new())
            }
            // The argument: Kurento's GstreamerDotDetails (empty: SHOW_ALL).
            "getGstreamerDot" => {
                let details = String::from_utf8_lossy(args);
                Ok(fluo_worker::wire::encode(&crate::dot::owned_dot(
                    &self.id, &details,
                )))
            }
            // The element's output settings changed (setVideoFormat, encoder bitrates): the
            // filter's pipelines built from now on encode with them, as in the server.
            "setOutput" => {
                let out: PlayParams = params(args)?;
                self.settings.set(&self.id, out.settings());
                Ok(Vec::new())
            }
            _ => Err(format!("the filter has no method '{method}'")),
        }
    }

    fn packet(&mut self, pkt: &PacketRef<'_>) {
        self.port.take(&pkt.to_packet());
    }

    fn keyframe_request(&mut self) {
        self.port.keyframe();
    }
}
