//! The transcoder job: the router's GStreamer transcoder (`crate::Transcoders`) in a worker:
//! RTP of one codec in, RTP of another sent back.

use crate::jobs::{get_codec, params, put_codec, PlayParams};
use crate::Transcoders;
use fluo_sfu::{Codec, CodecName, MediaKind, Node, PortOutput, SettingsTable, TranscoderFactory};
use fluo_worker::wire::{self, Reader, Wire, WireError, Writer};
use fluo_worker::worker::{Job, JobCtx};
use fluo_worker::PacketRef;
use std::sync::Arc;

/// What a transcoder job converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranscoderParams {
    /// The codec of the packets it gets.
    pub from: CodecName,
    /// The codec of the packets it sends.
    pub to: CodecName,
    /// The encoder's settings: its source element's output settings (encoder bitrates,
    /// forced formats), as a player's `play` carries them.
    pub output: PlayParams,
}

impl Wire for TranscoderParams {
    fn put(&self, w: &mut Writer<'_>) {
        put_codec(w, self.from);
        put_codec(w, self.to);
        self.output.put(w);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(TranscoderParams {
            from: get_codec(r)?,
            to: get_codec(r)?,
            output: PlayParams::get(r)?,
        })
    }
}

struct TranscoderJob {
    port: Box<dyn Node>,
    /// The owner its pipeline is registered under.
    source: String,
    kind: MediaKind,
    /// The codec it converts: anything else is dropped.
    from: CodecName,
}

pub(crate) fn start(ctx: JobCtx, bytes: &[u8]) -> Result<Box<dyn Job>, String> {
    let p: TranscoderParams = params(bytes)?;
    crate::init()?;
    let (from, to) = (Codec::new(p.from), Codec::new(p.to));
    let factory = Transcoders::new(Arc::new(SettingsTable::new(p.output.settings())));
    if !factory.can(&from, &to) {
        return Err(format!(
            "no transcoder from {} to {}",
            from.name.sdp_name(),
            to.name.sdp_name()
        ));
    }
    let out = {
        let ctx = ctx.clone();
        PortOutput::new(
            ctx.id(),
            Arc::new(move |_, pkt| ctx.send_packet(&PacketRef::from(&pkt))),
        )
    };
    let source = format!("job-{}", ctx.id());
    let port = factory.create(p.from.kind(), &from, &to, &source, out)?;
    Ok(Box::new(TranscoderJob {
        port,
        source,
        kind: p.from.kind(),
        from: p.from,
    }))
}

impl Job for TranscoderJob {
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        match method {
            // The argument: Kurento's GstreamerDotDetails (empty: SHOW_ALL).
            "getGstreamerDot" => {
                let details = String::from_utf8_lossy(args);
                Ok(wire::encode(&crate::dot::owned_dot(&self.source, &details)))
            }
            _ => Err(format!("the transcoder has no method '{method}'")),
        }
    }

    /// Only packets of the codec it converts go in: the transcoder's pipeline takes one RTP
    /// stream, and another's packets (a player's audio beside its video) would interleave a
    /// second sequence of numbers that its jitter buffer reads as gaps and resets, dropping
    /// most frames.
    fn packet(&mut self, pkt: &PacketRef<'_>) {
        if pkt.codec.name != self.from {
            return;
        }
        pkt.to_packet().push_to(self.port.as_mut());
    }

    fn keyframe_request(&mut self) {
        self.port.request_keyframe(self.kind);
    }
}
