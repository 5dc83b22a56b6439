//! A HubPort's face on its Composite's pipeline ([`PortHandle`]), and what its element keeps
//! of it ([`PortControl`]).

use super::{Core, Out, PortCmd, Upstream};
use crate::codecs;
use fluo_sfu::rtp::write_rtp;
use fluo_sfu::{Codec, CodecName, MediaKind, OutputSettings};
use fluo_worker::PacketRef;
use gstreamer as gst;
use gstreamer_app as gst_app;
use std::sync::Arc;

/// A HubPort's face on its Composite's pipeline: packets in, the grid and its mix out.
/// Dropping it removes the port (off the caller's thread: the router's must not wait).
pub(crate) struct PortHandle {
    core: Arc<Core>,
    id: u64,
    out: Out,
    up: Upstream,
    inputs: [Option<(Codec, gst_app::AppSrc)>; 2],
    /// An input that could not be made: not tried again for every packet.
    failed: [Option<Codec>; 2],
    buf: Vec<u8>,
}

impl PortHandle {
    /// A new port of `core` (HubPort `name`) whose output goes to `out`; `up` asks its
    /// sources for keyframes.
    pub(crate) fn new(
        core: Arc<Core>,
        name: &str,
        out: Out,
        up: Upstream,
    ) -> Result<PortHandle, String> {
        let id = core.add_port(name, out.clone())?;
        Ok(PortHandle {
            core,
            id,
            out,
            up,
            inputs: [None, None],
            failed: [None, None],
            buf: Vec::with_capacity(1500),
        })
    }

    /// A packet of the port's input.
    pub(crate) fn push(&mut self, pkt: &PacketRef<'_>) {
        let kind = pkt.kind;
        let codec = pkt.codec;
        let fits = |c: &Codec| c.name == codec.name && c.clock_rate == codec.clock_rate;
        if !self.inputs[kind].as_ref().is_some_and(|(c, _)| fits(c)) {
            if self.failed[kind].as_ref().is_some_and(fits) {
                return;
            }
            match self.core.input(self.id, codec) {
                Ok(src) => {
                    self.inputs[kind] = Some((codec, src));
                    if kind == MediaKind::Video {
                        (self.up)();
                    }
                }
                Err(e) => {
                    tracing::warn!(hub = %self.core.key, "composite input of {codec}: {e}");
                    self.failed[kind] = Some(codec);
                    return;
                }
            }
        }
        let Some((_, src)) = &self.inputs[kind] else {
            return;
        };
        self.buf.clear();
        write_rtp(
            &mut self.buf,
            codecs::PT,
            pkt.marker,
            pkt.seq,
            pkt.timestamp,
            pkt.ssrc,
            pkt.payload,
        );
        let _ = src.push_buffer(gst::Buffer::from_slice(self.buf.clone()));
    }

    /// A sink of the port wants a keyframe of the grid.
    pub(crate) fn keyframe(&self) {
        self.core.keyframe(self.id);
    }

    /// The port's output follows `settings` from now on.
    pub(crate) fn set_output(&self, settings: &OutputSettings) -> Result<(), String> {
        self.control().set_output(settings)
    }

    /// What its hub asks of the port: where an AlphaBlending draws it (setMaster,
    /// setPortProperties), what a Mixer routes to it (connect, disconnect).
    pub(crate) fn command(&self, c: PortCmd) -> Result<(), String> {
        self.control().command(c)
    }

    /// A handle on the port for its element (output settings), the node owning the port.
    pub(crate) fn control(&self) -> PortControl {
        PortControl {
            core: self.core.clone(),
            id: self.id,
            out: self.out.clone(),
        }
    }

    /// The DOT graph of the port's pipeline.
    pub(crate) fn dot(&self, details: &str) -> String {
        self.core.dot(details)
    }
}

impl Drop for PortHandle {
    fn drop(&mut self) {
        let core = self.core.clone();
        let id = self.id;
        let gone = move || core.remove_port(id);
        if std::thread::Builder::new()
            .name("fluo-composite-port".into())
            .spawn(gone.clone())
            .is_err()
        {
            gone();
        }
    }
}

/// What the element of a port in this process keeps to change the port's output.
#[derive(Clone)]
pub(crate) struct PortControl {
    core: Arc<Core>,
    id: u64,
    out: Out,
}

impl PortControl {
    /// See [`PortHandle::command`].
    pub(crate) fn command(&self, c: PortCmd) -> Result<(), String> {
        match c {
            PortCmd::Place(p) => {
                self.core.place(self.id, p);
                Ok(())
            }
            PortCmd::Route(r) => self.core.route(self.id, r),
        }
    }

    /// See [`PortHandle::set_output`].
    pub(crate) fn set_output(&self, settings: &OutputSettings) -> Result<(), String> {
        self.core.set_output(self.id, settings, self.out.clone())
    }

    /// The DOT graph of the port's pipeline.
    pub(crate) fn dot(&self, details: &str) -> String {
        self.core.dot(details)
    }
}

/// Codecs a port's input may come in (what the pipeline can decode; GStreamer is initialised
/// for the question in a server whose pipelines all run in workers).
pub(crate) fn decodable(kind: MediaKind) -> Vec<Codec> {
    CodecName::ALL
        .into_iter()
        .filter(|n| n.kind() == kind)
        .map(|n| Codec {
            profile_level_id: None,
            packetization_mode: None,
            ..Codec::new(n)
        })
        .filter(|c| crate::init().is_ok() && codecs::available(c))
        .collect()
}
