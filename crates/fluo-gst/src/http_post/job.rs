//! The HttpPostEndpoint job: an upload's pipeline ([`PostCore`]) in a media worker. The body
//! comes over the control socket, a call per chunk (`data`, at most the listener's read
//! size), each answered with the pipeline's status: the listener sends the next chunk once
//! the last one is answered and stops reading the body while the appsrc holds much, so what
//! the worker holds is bounded.

use super::{PostCore, PostStatus};
use crate::jobs::{event_sink, params, PlayParams};
use crate::player;
use fluo_sfu::PortOutput;
use fluo_worker::wire::{self, Reader, Wire, WireError, Writer};
use fluo_worker::worker::{Job, JobCtx};
use fluo_worker::PacketRef;
use std::sync::Arc;

/// What an HttpPostEndpoint job is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpPostParams {
    /// useEncodedMedia: VP8, VP9, H.264 and Opus payloaded without decoding.
    pub use_encoded: bool,
}

impl Wire for HttpPostParams {
    fn put(&self, w: &mut Writer<'_>) {
        w.bool(self.use_encoded);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(HttpPostParams {
            use_encoded: r.bool()?,
        })
    }
}

impl Wire for PostStatus {
    fn put(&self, w: &mut Writer<'_>) {
        w.u64(self.queued);
        w.bool(self.ended);
        w.bool(self.failed.is_some());
        if let Some(f) = &self.failed {
            w.str(f);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let (queued, ended) = (r.u64()?, r.bool()?);
        let failed = if r.bool()? {
            Some(r.str()?.to_owned())
        } else {
            None
        };
        Ok(PostStatus {
            queued,
            ended,
            failed,
        })
    }
}

struct HttpPostJob {
    core: PostCore,
}

pub(crate) fn start(ctx: JobCtx, bytes: &[u8]) -> Result<Box<dyn Job>, String> {
    let p: HttpPostParams = params(bytes)?;
    crate::init()?;
    let out = {
        let ctx = ctx.clone();
        PortOutput::new(
            ctx.id(),
            Arc::new(move |_, pkt| ctx.send_packet(&PacketRef::from(&pkt))),
        )
    };
    let eos = ctx.clone();
    let core = PostCore::new(
        format!("job-{}", ctx.id()),
        ctx.id(),
        p.use_encoded,
        player::new_shared(Some(out)),
        event_sink(&ctx),
        Arc::new(move || eos.end_of_stream()),
    );
    Ok(Box::new(HttpPostJob { core }))
}

impl Job for HttpPostJob {
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        let status = match method {
            // The argument: the element's output settings, as a player's `play` has them.
            "begin" => {
                let a: PlayParams = wire::decode(args).map_err(|e| e.to_string())?;
                self.core
                    .begin(a.settings())
                    .map_err(|e| crate::jobs::error_text(&e))?
            }
            "data" => self.core.push(args.to_vec()),
            "end" => self.core.end(),
            "abort" => {
                self.core.abort(&String::from_utf8_lossy(args));
                self.core.status()
            }
            "release" => {
                self.core.stop();
                return Ok(Vec::new());
            }
            "getGstreamerDot" => {
                let details = String::from_utf8_lossy(args);
                return Ok(wire::encode(&self.core.dot_with(&details)));
            }
            _ => return Err(format!("the HttpPostEndpoint has no method '{method}'")),
        };
        Ok(wire::encode(&status))
    }

    fn keyframe_request(&mut self) {
        self.core.request_keyframe();
    }

    fn stop(&mut self) {
        self.core.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_cross_the_wire() {
        for s in [
            PostStatus::default(),
            PostStatus {
                queued: 1 << 40,
                ended: true,
                failed: Some("Could not determine type of stream".into()),
            },
        ] {
            assert_eq!(wire::decode::<PostStatus>(&wire::encode(&s)).unwrap(), s);
        }
        let p = HttpPostParams { use_encoded: true };
        assert_eq!(
            wire::decode::<HttpPostParams>(&wire::encode(&p)).unwrap(),
            p
        );
    }
}
