//! The recorder job: a RecorderEndpoint's recording (`crate::recorder::RecorderPort` and its
//! pipeline) in a worker, fed the packets the server routes to it.

use crate::jobs::{emit, event_sink, params};
use crate::recorder::{self, RecorderPort, SharedRef};
use crate::uri;
use fluo_sfu::EventSink;
use fluo_worker::wire::{self, Reader, Wire, WireError, Writer};
use fluo_worker::worker::{Job, JobCtx};
use fluo_worker::PacketRef;
use std::time::Duration;

/// What a recorder job is made of (the server has checked the URI against its allow-list; the
/// worker's sandbox holds it to the list's paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderParams {
    /// Where to record (`file://`, a path, or `http(s)://` for an upload).
    pub uri: String,
    /// mediaProfile (WEBM, MKV, MP4 and their _AUDIO_ONLY / _VIDEO_ONLY variants).
    pub profile: String,
    /// stopOnEndOfStream.
    pub stop_on_eos: bool,
}

impl Wire for RecorderParams {
    fn put(&self, w: &mut Writer<'_>) {
        w.str(&self.uri);
        w.str(&self.profile);
        w.bool(self.stop_on_eos);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(RecorderParams {
            uri: r.str()?.to_owned(),
            profile: r.str()?.to_owned(),
            stop_on_eos: r.bool()?,
        })
    }
}

/// How long `stopAndWait` (and the job's end) waits for the file to be finalised.
const FINALISE: Duration = Duration::from_secs(5);

struct RecorderJob {
    port: RecorderPort,
    ctx: JobCtx,
}

pub(crate) fn start(ctx: JobCtx, bytes: &[u8]) -> Result<Box<dyn Job>, String> {
    let p: RecorderParams = params(bytes)?;
    crate::init()?;
    let path = uri::parse(&p.uri, &["http", "https"]).map_err(|e| e.message)?;
    let profile = recorder::profile_named(&p.profile).map_err(|e| e.message)?;
    let port = RecorderPort {
        stop_on_eos: p.stop_on_eos,
        shared: recorder::new_shared(),
        profile,
        path,
        id: format!("job-{}", ctx.id()),
        events: event_sink(&ctx),
    };
    Ok(Box::new(RecorderJob { port, ctx }))
}

impl RecorderJob {
    fn shared(&self) -> &SharedRef {
        &self.port.shared
    }

    fn events(&self) -> &EventSink {
        &self.port.events
    }
}

impl Job for RecorderJob {
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        let ctx = self.ctx.clone();
        let mut raise = |ev| emit(&ctx, &ev);
        let (shared, id) = (self.shared(), self.port.id.as_str());
        match method {
            "record" => {
                if recorder::start_recording(shared, &self.port.path, id, &mut raise)
                    .map_err(|e| crate::jobs::error_text(&e))?
                {
                    self.ctx.request_keyframe();
                }
            }
            "pause" => recorder::pause_recording(shared, &mut raise),
            "stop" => {
                let _ = recorder::stop_recording(shared, id, self.events());
            }
            // Answers once the file is finalised: the worker's control thread waits, the
            // server's request does not block anything else.
            "stopAndWait" => {
                if let Some(done) = recorder::stop_recording(shared, id, self.events()) {
                    let _ = done.recv_timeout(FINALISE);
                }
            }
            "getState" => return Ok(wire::encode(&recorder::state_name(shared).to_owned())),
            // The element was released: a recording in progress is finalised, and the
            // answer comes once it is (at most 5 s), so that the server counts it until then.
            "release" => {
                if let Some(done) = recorder::release_recording(shared, id, self.events()) {
                    let _ = done.recv_timeout(FINALISE);
                }
            }
            // The argument: Kurento's GstreamerDotDetails (empty: SHOW_ALL).
            "getGstreamerDot" => {
                let details = String::from_utf8_lossy(args);
                return Ok(wire::encode(&recorder::dot(shared, &details)));
            }
            _ => return Err(format!("the recorder has no method '{method}'")),
        }
        Ok(Vec::new())
    }

    fn packet(&mut self, pkt: &PacketRef<'_>) {
        self.port.take(&pkt.to_packet());
    }

    fn end_of_stream(&mut self) {
        self.port.source_ended();
    }

    fn stop(&mut self) {
        // A recording in progress is finalised before the job goes (the worker waits for it,
        // within its stop grace).
        let (shared, id) = (self.shared(), self.port.id.as_str());
        if let Some(done) = recorder::release_recording(shared, id, self.events()) {
            let _ = done.recv_timeout(FINALISE);
        }
    }
}
