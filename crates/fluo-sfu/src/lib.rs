//! Fluo's sans-IO RTP forwarding plane.
//!
//! This crate decides what happens to every RTP packet between publishers and subscribers,
//! without sockets, threads or clocks: the caller passes packets and the current
//! [`Instant`](std::time::Instant) in, and takes packets, events and deadlines out.
//!
//! * [`rtp`] and [`rtcp`]: zero-copy, never-panicking views over RTP and RTCP bytes.
//! * [`rewrite`]: per-consumer sequence / timestamp / SSRC rewriting across source switches.
//! * [`picture_id`]: per-viewer VP8 / VP9 picture ids across simulcast layer switches.
//! * [`descriptor`]: video payload headers (VP8, VP9, AV1, H.264 STAP-A) read in one place.
//! * [`keyframe`]: keyframe-request throttling, and telling keyframes from their payload.
//! * [`frame_size`]: the picture size a keyframe announces.
//! * [`simulcast`]: which layer of a simulcast source each sink gets.
//! * [`nack`]: the retransmission cache.
//! * [`twcc`]: transport-wide congestion control feedback, read.
//! * [`latency`]: latency statistics (a pipeline's `latencyStats`).
//! * [`port`]: codecs; players, recorders, plain RTP and transcoders as the router sees them.
//! * [`settings`]: what an element's encoder settings and forced formats ask of its output.
//! * [`negotiate`]: forward, transcode or neither, for one source and one sink.
//! * [`media_router`]: the router of element nodes tying the above together.
//! * [`event`]: the typed events the media plane raises on elements.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use fluo_sfu::{Codec, CodecName, Header, MediaKind, MediaRouter, Node, Packet, SinkCaps};
//!
//! /// A sink that takes anything and keeps the sequence numbers of its line.
//! struct Viewer(Vec<u16>);
//! impl Node for Viewer {
//!     fn caps(&self, _: MediaKind) -> SinkCaps {
//!         SinkCaps::anything()
//!     }
//!     fn push(&mut self, _: Instant, _: &Packet<'_>, header: Header) {
//!         self.0.push(header.seq);
//!     }
//! }
//!
//! let now = Instant::now();
//! let mut router = MediaRouter::new();
//! let cam = router.add_node("cam", Box::new(Viewer(vec![])));
//! let viewer = router.add_node("viewer", Box::new(Viewer(vec![])));
//! router.connect(now, cam, MediaKind::Video, viewer).unwrap();
//! let payload: Arc<[u8]> = Arc::from(vec![0u8; 100]);
//! let pkt = Packet {
//!     kind: MediaKind::Video,
//!     codec: Codec::new(CodecName::Vp8),
//!     seq: 500,
//!     ts: 9000,
//!     ssrc: 0xabcd,
//!     marker: true,
//!     payload: &payload,
//!     entered: None,
//!     extensions: None,
//!     dd: None,
//!     layer: None,
//! };
//! assert_eq!(router.forward(now, cam, &pkt), 1);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod dependency_descriptor;
pub mod descriptor;
mod error;
pub mod event;
pub mod frame_size;
mod ids;
pub mod keyframe;
pub mod latency;
pub mod media_router;
pub mod nack;
pub mod negotiate;
pub mod picture_id;
pub mod port;
pub mod rewrite;
pub mod rtcp;
pub mod rtp;
pub mod settings;
pub mod simulcast;
pub mod svc;
pub mod twcc;

pub use error::ParseError;
pub use event::{EventSink, FlowDir, MediaError, MediaEvent};
pub use ids::{MediaKind, NodeId};
pub use keyframe::{starts_keyframe, KeyframeThrottle};
pub use latency::{LatencyAvg, LatencyBoard};
pub use media_router::{
    Header, MediaRouter, Node, NodeError, Packet, RouteMode, RouterView, TranscoderMaker,
    TranscoderView,
};
pub use nack::RetransmitCache;
pub use negotiate::{Decision, Forced, Impossible, SinkCaps, SinkCodec, Takes};
pub use picture_id::PictureIds;
pub use port::{Codec, CodecName, MediaBus, MediaPacket, PortOutput, TranscoderFactory};
pub use rewrite::{extend_seq, Rewriter, Rewritten};
pub use rtcp::{RtcpCompound, RtcpPacket};
pub use rtp::{RtpHeaderMut, RtpPacket};
pub use settings::{AudioFormat, OutputSettings, SettingsTable, VideoFormat, Watcher};
pub use simulcast::{ForwardedLayer, LayerLimits, LayerSelector, SwitchReason};
