//! The filter job: a GStreamerFilter's decode -> command -> encode pipeline
//! (`crate::filter::FilterPort`) in a worker. The command is checked again in the worker
//! against the operator's policy, as the server checked it at create.

use super::{event_sink, params};
use crate::filter::{self, FilterPort};
use crate::filter_policy::{Checked, FilterPolicy};
use fluo_sfu::{OutputSettings, PortOutput, SettingsTable};
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
    /// The encoder's bitrate, in bps (the filter's encoderBitrate).
    pub target_bps: u32,
}

impl Wire for FilterParams {
    fn put(&self, w: &mut Writer<'_>) {
        w.str(&self.command);
        w.str(&self.filter_type);
        w.put(&self.allow);
        w.u32(self.target_bps);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(FilterParams {
            command: r.str()?.to_owned(),
            filter_type: r.str()?.to_owned(),
            allow: r.get()?,
            target_bps: r.u32()?,
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
    command: String,
    checked: Arc<Checked>,
    policy: Arc<FilterPolicy>,
    shared: Arc<Mutex<filter::Shared>>,
}

pub(super) fn start(ctx: JobCtx, bytes: &[u8]) -> Result<Box<dyn Job>, String> {
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
    let settings = Arc::new(SettingsTable::new(OutputSettings::new(p.target_bps)));
    let port = FilterPort::new(
        kind,
        checked.clone(),
        policy.clone(),
        shared.clone(),
        out,
        (id, event_sink(&ctx)),
        settings,
    );
    Ok(Box::new(FilterJob {
        port,
        command: p.command,
        checked,
        policy,
        shared,
    }))
}

impl Job for FilterJob {
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        match method {
            "setElementProperty" => {
                let PropertyArgs { name, value } = params(args)?;
                let checked = (&*self.checked, self.command.as_str());
                filter::set_element_property(checked, &self.policy, &self.shared, &name, &value)
                    .map_err(|e| e.message)?;
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
