//! The ZBarFilter job (`gst.zbar`): the filter's decode -> zbar -> encode pipeline
//! (`crate::filter::FilterPort` with `crate::zbar::Scanner` as its stage) in a worker. Its
//! parameters are the element's output settings (as a player's `play` carries them); its
//! CodeFound events cross to the server as the job's events.

use crate::filter::job::{port_call, port_output};
use crate::filter::FilterPort;
use crate::jobs::{event_sink, params, PlayParams};
use crate::zbar::Scanner;
use fluo_core::Stopping;
use fluo_sfu::{MediaKind, SettingsTable};
use fluo_worker::worker::{Job, JobCtx};
use fluo_worker::PacketRef;
use std::sync::Arc;

struct ZBarJob {
    port: FilterPort,
    /// The job's output settings, under its id: the filter encodes with them.
    settings: Arc<SettingsTable>,
    id: String,
}

pub(crate) fn start(ctx: JobCtx, bytes: &[u8]) -> Result<Box<dyn Job>, String> {
    let output: PlayParams = params(bytes)?;
    crate::init()?;
    let id = format!("job-{}", ctx.id());
    let settings = Arc::new(SettingsTable::new(output.settings()));
    let port = FilterPort::new(
        MediaKind::Video,
        Arc::new(Scanner::default()),
        port_output(&ctx),
        (id.clone(), event_sink(&ctx)),
        settings.clone(),
        Stopping::new(),
    );
    Ok(Box::new(ZBarJob { port, settings, id }))
}

impl Job for ZBarJob {
    /// `getGstreamerDot` and `setOutput`, as a GStreamerFilter's job.
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        port_call(&self.id, &self.settings, method, args)
            .unwrap_or_else(|| Err(format!("the ZBarFilter has no method '{method}'")))
    }

    fn packet(&mut self, pkt: &PacketRef<'_>) {
        self.port.take(&pkt.to_packet());
    }

    fn keyframe_request(&mut self) {
        self.port.keyframe();
    }
}
