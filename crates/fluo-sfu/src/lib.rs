//! Fluo's sans-IO RTP forwarding plane.
//!
//! This crate decides what happens to every RTP packet between publishers and subscribers,
//! without sockets, threads or clocks: the caller passes packets and the current
//! [`Instant`](std::time::Instant) in, and takes packets, events and deadlines out.
//!
//! * [`rtp`] and [`rtcp`]: zero-copy, never-panicking views over RTP and RTCP bytes.
//! * [`rewrite`]: per-consumer sequence / timestamp / SSRC rewriting across source switches.
//! * [`keyframe`]: keyframe-request throttling.
//! * [`nack`]: the retransmission cache.
//! * [`latency`]: latency statistics (a pipeline's `latencyStats`).
//! * [`port`]: codecs; players, recorders, plain RTP and transcoders as the router sees them.
//! * [`settings`]: what an element's encoder settings and forced formats ask of its output.
//! * [`negotiate`]: forward, transcode or neither, for one source and one sink.
//! * [`router`]: the producer -> consumers table tying the above together.
//! * [`media_router`]: the router of element nodes (to replace the above and fluo-rtc's tables).
//! * [`event`]: the typed events the media plane raises on elements.
//!
//! ```
//! use std::time::Instant;
//! use fluo_sfu::{ConsumerConfig, ProducerConfig, Router, rtp::write_rtp};
//!
//! let now = Instant::now();
//! let mut router = Router::new();
//! let cam = router.add_producer(ProducerConfig::video());
//! let viewer = router.add_consumer(ConsumerConfig::video(0x1234));
//! router.attach(now, viewer, cam).unwrap();
//! let mut pkt = Vec::new();
//! write_rtp(&mut pkt, 96, true, 500, 9000, 0xabcd, &[0; 100]);
//! let mut sent = Vec::new();
//! router.forward(now, cam, &pkt, |c, bytes| sent.push((c, bytes.to_vec()))).unwrap();
//! assert_eq!(sent.len(), 1);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod event;
mod ids;
pub mod keyframe;
pub mod latency;
pub mod media_router;
pub mod nack;
pub mod negotiate;
pub mod port;
pub mod rewrite;
pub mod router;
pub mod rtcp;
pub mod rtp;
pub mod settings;

pub use error::ParseError;
pub use event::{EventSink, FlowDir, MediaError, MediaEvent};
pub use ids::{ConsumerId, MediaKind, NodeId, ProducerId};
pub use keyframe::KeyframeThrottle;
pub use latency::{LatencyAvg, LatencyBoard};
pub use media_router::{Header, MediaRouter, Node, NodeError, Packet, TranscoderMaker};
pub use nack::RetransmitCache;
pub use negotiate::{Decision, Forced, Impossible, SinkCaps, SinkCodec, Takes};
pub use port::{Codec, CodecName, MediaBus, MediaPacket, PortOutput, TranscoderFactory};
pub use rewrite::{extend_seq, Rewriter, Rewritten};
pub use router::{
    ConsumerConfig, ForwardBatch, PayloadMap, ProducerConfig, Router, RouterError, RouterEvent,
    RouterStats, TimeoutReason,
};
pub use rtcp::{RtcpCompound, RtcpPacket};
pub use rtp::{RtpHeaderMut, RtpPacket};
pub use settings::{AudioFormat, OutputSettings, SettingsTable, VideoFormat};
