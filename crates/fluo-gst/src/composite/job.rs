//! The composite job: one HubPort of a Composite in a worker. The ports of one Composite run
//! on the worker hosting its pipeline (the job group is the pipeline), and share the hub's
//! GStreamer pipeline there (`crate::composite::Core`, found by the hub's id); the first port
//! makes it, the last one's end stops it.

use crate::composite::{Core, Format, Layout, Placement, PortCmd, PortHandle, Route};
use crate::jobs::params;
use fluo_worker::wire::{self, Reader, Wire, WireError, Writer};
use fluo_worker::worker::{Job, JobCtx};
use fluo_worker::PacketRef;
use std::sync::Arc;

/// What a composite port job runs: the hub it belongs to and the hub's output format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompositeParams {
    /// The Composite's id.
    pub hub: String,
    /// The grid's width in pixels.
    pub width: u32,
    /// The grid's height in pixels.
    pub height: u32,
    /// The grid's frame rate.
    pub fps: u32,
    /// The grid's encoder bitrate, in bps.
    pub target_bps: u32,
    /// The hub's layout: a Composite's grid, an AlphaBlending's blend, a Mixer's routes.
    pub layout: Layout,
    /// The HubPort's id (a Mixer's routes name ports by it).
    pub port: String,
}

impl CompositeParams {
    pub(crate) fn format(&self) -> Format {
        Format {
            width: self.width,
            height: self.height,
            fps: self.fps,
            bps: self.target_bps,
            layout: self.layout,
        }
    }
}

impl Wire for CompositeParams {
    fn put(&self, w: &mut Writer<'_>) {
        w.str(&self.hub);
        w.u32(self.width);
        w.u32(self.height);
        w.u32(self.fps);
        w.u32(self.target_bps);
        w.u32(self.layout.code());
        w.str(&self.port);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(CompositeParams {
            hub: r.str()?.to_owned(),
            width: r.u32()?,
            height: r.u32()?,
            fps: r.u32()?,
            target_bps: r.u32()?,
            layout: Layout::from_code(r.u32()?).ok_or(WireError::BadTag(0))?,
            port: r.str()?.to_owned(),
        })
    }
}

struct CompositeJob {
    port: Option<PortHandle>,
}

pub(crate) fn start(ctx: JobCtx, bytes: &[u8]) -> Result<Box<dyn Job>, String> {
    let p: CompositeParams = params(bytes)?;
    let f = p.format();
    if !crate::composite::format_ok(&f) {
        return Err(format!(
            "bad composite format {}x{} at {}",
            f.width, f.height, f.fps
        ));
    }
    let core = Core::get(&p.hub, f)?;
    let out = {
        let ctx = ctx.clone();
        Arc::new(move |pkt: &PacketRef<'_>| ctx.send_packet(pkt))
    };
    let up = {
        let ctx = ctx.clone();
        Arc::new(move || ctx.request_keyframe())
    };
    let port = PortHandle::new(core, &p.port, out, up)?;
    Ok(Box::new(CompositeJob { port: Some(port) }))
}

impl Job for CompositeJob {
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        match method {
            "getGstreamerDot" => {
                let details = String::from_utf8_lossy(args);
                let dot = self.port.as_ref().map(|p| p.dot(&details));
                Ok(wire::encode(&dot.unwrap_or_default()))
            }
            "setOutput" => {
                let settings = params::<crate::jobs::PlayParams>(args)?.settings();
                match self.port.as_ref() {
                    Some(p) => p.set_output(&settings)?,
                    None => return Err("the port was released".into()),
                }
                Ok(Vec::new())
            }
            "setPlacement" | "setRoute" => {
                let text: String = params(args)?;
                let cmd = match method {
                    "setPlacement" => PortCmd::Place(Placement::parse(&text)?),
                    _ => PortCmd::Route(Route::parse(&text)?),
                };
                match self.port.as_ref() {
                    Some(p) => p.command(cmd)?,
                    None => return Err("the port was released".into()),
                }
                Ok(Vec::new())
            }
            "release" => {
                self.port = None;
                Ok(Vec::new())
            }
            _ => Err(format!("the composite has no method '{method}'")),
        }
    }

    fn packet(&mut self, pkt: &PacketRef<'_>) {
        if let Some(p) = self.port.as_mut() {
            p.push(pkt);
        }
    }

    fn keyframe_request(&mut self) {
        if let Some(p) = self.port.as_ref() {
            p.keyframe();
        }
    }

    fn stop(&mut self) {
        self.port = None;
    }
}
