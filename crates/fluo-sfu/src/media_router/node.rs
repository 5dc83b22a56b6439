//! What the router sees of an element: one [`Node`] trait for every kind (WebRTC endpoint,
//! RtpEndpoint, player, recorder, filter, transcoder; hub ports, worker-process proxies and
//! cross-node relays to come), the [`Packet`] a node produces and the [`Header`] of the line
//! the router keeps for each sink.

use crate::negotiate::SinkCaps;
use crate::port::Codec;
use crate::simulcast::ForwardedLayer;
use crate::{MediaKind, NodeId};
use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// One RTP packet a node produced, parsed, as it crosses the router: borrowed, never copied
/// per sink.
#[derive(Clone, Copy)]
pub struct Packet<'a> {
    /// Audio or video.
    pub kind: MediaKind,
    /// What its payload type means at its source.
    pub codec: Codec,
    /// RTP sequence number at the source.
    pub seq: u16,
    /// RTP timestamp at the source.
    pub ts: u32,
    /// RTP SSRC at the source.
    pub ssrc: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// The payload (no RTP header), shared by every sink.
    pub payload: &'a Arc<[u8]>,
    /// When a timed packet entered the router (see [`crate::latency`]).
    pub entered: Option<Instant>,
    /// What the source's transport parsed that a sink of the same transport may carry on (a
    /// WebRTC peer's header extensions). The router never looks at it.
    pub extensions: Option<&'a (dyn Any + Send + Sync)>,
    /// For simulcast video, the layer it belongs to, by the id the source gives its layers
    /// (for WebRTC, the place of its rid among the offer's `a=rid` lines); `None`: not
    /// layered. Each sink gets one layer at a time (see [`crate::simulcast`]).
    pub layer: Option<u8>,
    /// The dependency descriptor header extension's bytes (see
    /// [`crate::dependency_descriptor`]), when the source's transport negotiated it and the
    /// packet carries one: an AV1 stream's layers are read from it.
    pub dd: Option<&'a [u8]>,
}

impl fmt::Debug for Packet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("kind", &self.kind)
            .field("codec", &self.codec)
            .field("seq", &self.seq)
            .field("ts", &self.ts)
            .field("ssrc", &self.ssrc)
            .field("layer", &self.layer)
            .field("len", &self.payload.len())
            .finish()
    }
}

/// The header a packet goes to one sink with: the sink's continuous line (one SSRC, sequence
/// numbers and timestamps that go on across source switches and seeks) and the payload type
/// negotiation chose for it. A transcoder gets its source's own numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Sequence number on the line.
    pub seq: u16,
    /// Timestamp on the line.
    pub ts: u32,
    /// The line's SSRC (a WebRTC sink uses its session's own).
    pub ssrc: u32,
    /// The sink's payload type for the codec, when it numbers codecs.
    pub pt: Option<u8>,
}

/// An element's media face in the router: its sink side (what the router pushes to it) and
/// its source side (what it is asked for). What a node produces enters the router through
/// [`MediaRouter::forward`](super::MediaRouter::forward) with the node's id.
///
/// Called only from the router's thread. A node living elsewhere (another process, another
/// server) is a proxy that sends what it is given on and returns at once.
pub trait Node: Send {
    /// What this node takes of `kind` as a sink. Asked when a route to it is decided (a new
    /// route, a source's new codec, forced formats or its negotiated codecs changed), never per
    /// packet.
    fn caps(&self, kind: MediaKind) -> SinkCaps;

    /// Whether this node, as a sink of `kind`, gets a packet's dependency descriptor (see
    /// [`crate::dependency_descriptor`]): a WebRTC viewer that negotiated the extension. One
    /// that does not cannot be told an AV1 stream's layer structure and decodes it as a
    /// single-layer stream: the router gives it the lowest spatial layer of an AV1 SVC stream
    /// ([`crate::simulcast::SwitchReason::NoDependencyDescriptor`]). Asked with
    /// [`caps`](Self::caps), when a route to it is decided for AV1. By default `true`: the
    /// node takes the whole stream.
    fn reads_dependency_descriptor(&self, _kind: MediaKind) -> bool {
        true
    }

    /// A packet routed to this node at `now`, with its line's header.
    fn push(&mut self, now: Instant, pkt: &Packet<'_>, header: Header);

    /// A sink of this node's media needs a keyframe of `kind` (throttled by the router): a
    /// WebRTC peer gets a PLI, an encoder (player, transcoder, filter) is forced to make one.
    fn request_keyframe(&mut self, _kind: MediaKind) {}

    /// A sink of this node's simulcast video needs a keyframe of its layer `layer` (the id the
    /// node gave it in [`Packet::layer`]; throttled per layer by the router). By default the
    /// node is asked for a keyframe of `kind`.
    fn request_layer_keyframe(&mut self, kind: MediaKind, _layer: u8) {
        self.request_keyframe(kind)
    }

    /// The layers of simulcast `kind` this node announced, by id (a WebRTC publisher's rids,
    /// in the order of its `a=rid` lines); asked when its first packet of a layer not known yet
    /// arrives. Empty: not announced (its layers are known as they send).
    fn layer_names(&self, _kind: MediaKind) -> Vec<String> {
        Vec::new()
    }

    /// As a sink: the layer of simulcast `kind` it gets changed (its line goes on
    /// continuously; the packet just pushed was that layer's keyframe, the first of it), or it
    /// gets no layer any more (`None`: disconnected from that source, or switched to another).
    fn layer_changed(&mut self, _kind: MediaKind, _layer: Option<&ForwardedLayer>) {}

    /// As a sink: `pkt`, of the SVC stream it gets, is not for it (a layer above its own,
    /// see [`crate::svc`]); `shifted`: its line's numbers after it went one lower
    /// ([`crate::Rewriter::skip`]). A node that numbers the packets it sends on its own does
    /// the same with its numbering.
    fn skipped(&mut self, _pkt: &Packet<'_>, _shifted: bool) {}

    /// A source feeding this node ended its stream (a player reached its end).
    fn end_of_stream(&mut self) {}

    /// The end of a pass over the router's inputs (a batch of datagrams, of ports' packets, a
    /// timer) in which this node was pushed to: a node that gathers what it is given (a proxy
    /// of another process) sends it now. Called once per pass, and only for the nodes pushed to
    /// in it ([`MediaRouter::flush`](super::MediaRouter::flush)); a node about to leave the
    /// router is flushed first.
    fn flush(&mut self) {}

    /// Whether this node encodes its own output of `kind` and applied its element's forced
    /// frame rate or bitrate while doing so (the router then need not re-encode it).
    fn applies_format(&self, _kind: MediaKind) -> bool {
        false
    }

    /// Whether the router raises this element's media-flow events and measures its input
    /// latency: media it produces flows out of the element, media pushed to it flows in.
    /// `false` for nodes that report their own (a WebRTC endpoint, whose in and out face the
    /// network).
    fn reports_flow(&self) -> bool {
        true
    }
}

/// Makes transcoders: nodes that take `from` and produce `to`, which the router inserts
/// between a source and the sinks that need them.
pub trait TranscoderMaker: Send + Sync {
    /// Whether `to` can be made from `from`.
    fn can(&self, from: &Codec, to: &Codec) -> bool;

    /// A transcoder that will be node `id` (its output enters the router with that id), of
    /// the media of `kind` of the element `source` (whose output settings its encoder
    /// follows), or why not.
    fn make(
        &self,
        id: NodeId,
        kind: MediaKind,
        from: &Codec,
        to: &Codec,
        source: &str,
    ) -> Result<Box<dyn Node>, String>;
}
