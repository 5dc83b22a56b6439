//! The overlay job (`gst.overlay`): an ImageOverlayFilter's or FaceOverlayFilter's
//! decode -> overlay -> encode pipeline (`crate::filter::FilterPort` with the overlay's
//! stage) in a worker, its images loaded there. The server checks the methods' arguments
//! (URIs against the allow-list); the job gets them as [`Op`]s (its `op` method).

use super::{Op, Overlays, Which};
use crate::filter::job::{port_call, port_output};
use crate::filter::FilterPort;
use crate::jobs::{event_sink, params, PlayParams};
use fluo_core::Stopping;
use fluo_sfu::{MediaKind, SettingsTable};
use fluo_worker::wire::{Reader, Wire, WireError, Writer};
use fluo_worker::worker::{Job, JobCtx};
use fluo_worker::PacketRef;
use std::sync::Arc;

/// What an overlay job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayParams {
    /// FaceOverlayFilter (else ImageOverlayFilter).
    pub face: bool,
    /// The filter's output settings, as a GStreamerFilter's job has them.
    pub output: PlayParams,
}

impl Wire for OverlayParams {
    fn put(&self, w: &mut Writer<'_>) {
        w.bool(self.face);
        self.output.put(w);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(OverlayParams {
            face: r.bool()?,
            output: PlayParams::get(r)?,
        })
    }
}

impl Wire for Op {
    fn put(&self, w: &mut Writer<'_>) {
        match self {
            Op::Add {
                id,
                uri,
                guarded,
                place,
                keep_aspect,
                center,
            } => {
                w.u8(0);
                w.str(id);
                w.str(uri);
                w.bool(*guarded);
                for v in place {
                    w.u32(v.to_bits());
                }
                w.bool(*keep_aspect);
                w.bool(*center);
            }
            Op::Remove(id) => {
                w.u8(1);
                w.str(id);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        match r.u8()? {
            0 => {
                let id = r.str()?.to_owned();
                let uri = r.str()?.to_owned();
                let guarded = r.bool()?;
                let mut place = [0f32; 4];
                for v in &mut place {
                    *v = f32::from_bits(r.u32()?);
                }
                Ok(Op::Add {
                    id,
                    uri,
                    guarded,
                    place,
                    keep_aspect: r.bool()?,
                    center: r.bool()?,
                })
            }
            1 => Ok(Op::Remove(r.str()?.to_owned())),
            t => Err(WireError::BadTag(t)),
        }
    }
}

struct OverlayJob {
    port: FilterPort,
    overlays: Overlays,
    settings: Arc<SettingsTable>,
    id: String,
}

pub(crate) fn start(ctx: JobCtx, bytes: &[u8]) -> Result<Box<dyn Job>, String> {
    let p: OverlayParams = params(bytes)?;
    crate::init()?;
    let which = if p.face { Which::Face } else { Which::Image };
    let id = format!("job-{}", ctx.id());
    let events = event_sink(&ctx);
    let overlays = Overlays::new(which, id.clone(), events.clone());
    let settings = Arc::new(SettingsTable::new(p.output.settings()));
    let port = FilterPort::new(
        MediaKind::Video,
        overlays.stage(),
        port_output(&ctx),
        (id.clone(), events),
        settings.clone(),
        Stopping::new(),
    );
    Ok(Box::new(OverlayJob {
        port,
        overlays,
        settings,
        id,
    }))
}

impl Job for OverlayJob {
    /// `op` (addImage, removeImage, setOverlayedImage, unsetOverlayedImage), and
    /// `getGstreamerDot` and `setOutput` as a GStreamerFilter's job.
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        if method == "op" {
            let op: Op = params(args)?;
            self.overlays
                .apply(op)
                .map_err(|e| crate::jobs::error_text(&e))?;
            return Ok(Vec::new());
        }
        port_call(&self.id, &self.settings, method, args)
            .unwrap_or_else(|| Err(format!("the overlay filter has no method '{method}'")))
    }

    fn packet(&mut self, pkt: &PacketRef<'_>) {
        self.port.take(&pkt.to_packet());
    }

    fn keyframe_request(&mut self) {
        self.port.keyframe();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluo_worker::wire;

    #[test]
    fn ops_cross_to_the_worker_unchanged() {
        let ops = [
            Op::Add {
                id: "logo".into(),
                uri: "file:///srv/a.png".into(),
                guarded: true,
                place: [-0.35, -1.2, 1.6, 0.0],
                keep_aspect: true,
                center: false,
            },
            Op::Remove("logo".into()),
        ];
        for op in ops {
            assert_eq!(wire::decode::<Op>(&wire::encode(&op)), Ok(op));
        }
        assert!(wire::decode::<Op>(&[7]).is_err());
    }
}
