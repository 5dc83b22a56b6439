//! The module job (`gst.module`): a module element's instance and its decode -> module ->
//! encode pipeline (`crate::filter::FilterPort` with the module's stage) in a media worker.
//! The server checked the constructor parameters (and made the module check them); the job
//! makes the instance again from the same JSON, with the server's URI allow-list, and
//! answers `invoke` (the method's name and its parameters as JSON; the result as JSON) and
//! `property` (a property set).

use super::host::{Slot, Who};
use super::stage::ModuleStage;
use crate::filter::job::{port_call, port_output};
use crate::filter::FilterPort;
use crate::jobs::{error_text, event_sink, params, PlayParams};
use crate::UriPolicy;
use fluo_core::Stopping;
use fluo_module::{Map, Value};
use fluo_sfu::{MediaKind, SettingsTable};
use fluo_worker::wire::{Reader, Wire, WireError, Writer};
use fluo_worker::worker::{Job, JobCtx};
use fluo_worker::PacketRef;
use std::sync::Arc;

/// What a module job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleParams {
    /// The module's name.
    pub module: String,
    /// The element's class.
    pub class: String,
    /// The constructor parameters (checked by the server): a JSON object's text.
    pub params: String,
    /// The server's URI allow-list (empty: everything allowed).
    pub uris: Vec<String>,
    /// The element's output settings, as a GStreamerFilter's job has them.
    pub output: PlayParams,
}

impl Wire for ModuleParams {
    fn put(&self, w: &mut Writer<'_>) {
        w.str(&self.module);
        w.str(&self.class);
        w.str(&self.params);
        w.put(&self.uris);
        self.output.put(w);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ModuleParams {
            module: r.str()?.to_owned(),
            class: r.str()?.to_owned(),
            params: r.str()?.to_owned(),
            uris: r.get()?,
            output: PlayParams::get(r)?,
        })
    }
}

struct ModuleJob {
    port: FilterPort,
    slot: Arc<Slot>,
    settings: Arc<SettingsTable>,
    id: String,
}

pub(crate) fn start(ctx: JobCtx, bytes: &[u8]) -> Result<Box<dyn Job>, String> {
    let p: ModuleParams = params(bytes)?;
    crate::init()?;
    let hosted = super::hosted(&p.module).ok_or_else(|| format!("no module {}", p.module))?;
    let class = hosted
        .class(&p.class)
        .ok_or_else(|| format!("the module {} has no type {}", p.module, p.class))?;
    let ctor: Map<String, Value> =
        serde_json::from_str(&p.params).map_err(|e| format!("bad constructor parameters: {e}"))?;
    let id = format!("job-{}", ctx.id());
    let events = event_sink(&ctx);
    let who = Who {
        id: id.clone(),
        class: class.name.as_str(),
        events: class.events.clone(),
        sink: events.clone(),
        uris: Arc::new(UriPolicy::new(p.uris)),
    };
    let slot = Slot::create(&*hosted.module, who, &ctor).map_err(|e| error_text(&e))?;
    let settings = Arc::new(SettingsTable::new(p.output.settings()));
    let stage = Arc::new(ModuleStage {
        format: slot.format(),
        slot: slot.clone(),
    });
    let port = FilterPort::new(
        MediaKind::Video,
        stage,
        port_output(&ctx),
        (id.clone(), events),
        settings.clone(),
        Stopping::new(),
    );
    Ok(Box::new(ModuleJob {
        port,
        slot,
        settings,
        id,
    }))
}

impl Job for ModuleJob {
    /// `invoke` ([method, parameters as JSON] -> the result as JSON), `property` ([name,
    /// value as JSON]: a property set), and `getGstreamerDot`
    /// and `setOutput` as a GStreamerFilter's job.
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        if method == "invoke" {
            let [name, json]: [String; 2] = params::<Vec<String>>(args)?
                .try_into()
                .map_err(|_| "bad invoke arguments".to_string())?;
            let ps: Map<String, Value> =
                serde_json::from_str(&json).map_err(|e| format!("bad parameters: {e}"))?;
            let result = self.slot.invoke(&name, &ps).map_err(|e| error_text(&e))?;
            return Ok(result.to_string().into_bytes());
        }
        if method == "property" {
            let [name, json]: [String; 2] = params::<Vec<String>>(args)?
                .try_into()
                .map_err(|_| "bad property arguments".to_string())?;
            let value: Value =
                serde_json::from_str(&json).map_err(|e| format!("bad value: {e}"))?;
            self.slot
                .property_set(&name, &value)
                .map_err(|e| error_text(&e))?;
            return Ok(Vec::new());
        }
        port_call(&self.id, &self.settings, method, args)
            .unwrap_or_else(|| Err(format!("the module element has no method '{method}'")))
    }

    fn packet(&mut self, pkt: &PacketRef<'_>) {
        self.port.take(&pkt.to_packet());
    }

    fn keyframe_request(&mut self) {
        self.port.keyframe();
    }
}
