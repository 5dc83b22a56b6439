//! Codecs, and the media faces of elements that are not WebRTC peers (players, recorders, plain
//! RTP endpoints, filters, transcoders): ports.
//!
//! A port is a router [`Node`] like any other, owned by the router and called only from its
//! thread: [`Node::push`] hands it a packet routed to it. What a port produces comes from
//! another thread (a GStreamer streaming thread, a socket): it sends its packets back through
//! the [`PortOutput`] it was given, which queues them to the router's thread. Ports never see
//! sockets or other ports.

use crate::media_router::{Header, Node, Packet};
use crate::MediaKind;
use std::fmt;
use std::sync::Arc;

/// A codec name, as SDP writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodecName {
    /// VP8.
    Vp8,
    /// VP9.
    Vp9,
    /// H.264.
    H264,
    /// AV1.
    Av1,
    /// Opus.
    Opus,
    /// G.711 mu-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// G.722.
    G722,
    /// H.263 (RFC 4629, `H263-1998`).
    H263,
    /// AMR narrowband (octet-aligned).
    Amr,
    /// Speex.
    Speex,
}

impl CodecName {
    /// Every codec Fluo knows.
    pub const ALL: [CodecName; 11] = [
        CodecName::Vp8,
        CodecName::Vp9,
        CodecName::H264,
        CodecName::Av1,
        CodecName::Opus,
        CodecName::Pcmu,
        CodecName::Pcma,
        CodecName::G722,
        CodecName::H263,
        CodecName::Amr,
        CodecName::Speex,
    ];

    /// The encoding name used in SDP `a=rtpmap`.
    pub fn sdp_name(self) -> &'static str {
        match self {
            CodecName::Vp8 => "VP8",
            CodecName::Vp9 => "VP9",
            CodecName::H264 => "H264",
            CodecName::Av1 => "AV1",
            CodecName::Opus => "opus",
            CodecName::Pcmu => "PCMU",
            CodecName::Pcma => "PCMA",
            CodecName::G722 => "G722",
            CodecName::H263 => "H263-1998",
            CodecName::Amr => "AMR",
            CodecName::Speex => "speex",
        }
    }

    /// The codec for an SDP encoding name (case-insensitive).
    pub fn from_sdp_name(name: &str) -> Option<CodecName> {
        CodecName::ALL
            .into_iter()
            .find(|c| c.sdp_name().eq_ignore_ascii_case(name))
    }

    /// Audio or video.
    pub fn kind(self) -> MediaKind {
        match self {
            CodecName::Vp8
            | CodecName::Vp9
            | CodecName::H264
            | CodecName::Av1
            | CodecName::H263 => MediaKind::Video,
            _ => MediaKind::Audio,
        }
    }
}

/// A codec as negotiated: what a packet's payload type means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Codec {
    /// The codec.
    pub name: CodecName,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Audio channels (1 for video).
    pub channels: u8,
    /// H.264 `profile-level-id`, when known.
    pub profile_level_id: Option<u32>,
    /// H.264 `packetization-mode`, when known.
    pub packetization_mode: Option<u8>,
}

impl Codec {
    /// A codec with its usual clock rate and channels (Opus 48 kHz stereo, G.711 8 kHz, video
    /// 90 kHz); H.264 is constrained baseline, packetization mode 1.
    pub fn new(name: CodecName) -> Codec {
        let (clock_rate, channels) = match name {
            CodecName::Opus => (48_000, 2),
            CodecName::Pcmu | CodecName::Pcma | CodecName::G722 | CodecName::Amr => (8_000, 1),
            CodecName::Speex => (16_000, 1),
            _ => (90_000, 1),
        };
        let h264 = name == CodecName::H264;
        Codec {
            name,
            clock_rate,
            channels,
            profile_level_id: h264.then_some(0x42e01f),
            packetization_mode: h264.then_some(1),
        }
    }

    /// Whether a sink that negotiated `self` can take packets of `other` unchanged: same name
    /// and clock rate, and for H.264 the same profile (the first byte of profile-level-id,
    /// ignoring the constraint flags of the level) and packetization mode where both say.
    pub fn compatible(&self, other: &Codec) -> bool {
        if self.name != other.name || self.clock_rate != other.clock_rate {
            return false;
        }
        if self.name != CodecName::H264 {
            return true;
        }
        let profile_ok = match (self.profile_level_id, other.profile_level_id) {
            (Some(a), Some(b)) => (a >> 16) == (b >> 16),
            _ => true,
        };
        let mode_ok = match (self.packetization_mode, other.packetization_mode) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        profile_ok && mode_ok
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name.sdp_name(), self.clock_rate)?;
        if let Some(p) = self.profile_level_id {
            write!(f, " profile-level-id={p:06x}")?;
        }
        Ok(())
    }
}

/// One RTP packet a port produced (or, owned, one routed to it), with what its payload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPacket {
    /// Audio or video.
    pub kind: MediaKind,
    /// The payload's codec.
    pub codec: Codec,
    /// RTP sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// RTP SSRC.
    pub ssrc: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// The RTP payload (no header).
    pub payload: Vec<u8>,
}

impl MediaPacket {
    /// A routed packet with the header of the sink's line, owned (its payload copied).
    pub fn routed(pkt: &Packet<'_>, header: Header) -> MediaPacket {
        MediaPacket {
            kind: pkt.kind,
            codec: pkt.codec,
            seq: header.seq,
            timestamp: header.ts,
            ssrc: header.ssrc,
            marker: pkt.marker,
            payload: pkt.payload.to_vec(),
        }
    }

    /// Pushes this packet into `node` as the router would, under its own header (no payload
    /// type rewrite): for nodes driven outside a router, such as a worker's transcoder job.
    /// Copies the payload once.
    pub fn push_to(&self, node: &mut dyn Node) {
        let payload: Arc<[u8]> = Arc::from(self.payload.as_slice());
        let pkt = Packet {
            kind: self.kind,
            codec: self.codec,
            seq: self.seq,
            ts: self.timestamp,
            ssrc: self.ssrc,
            marker: self.marker,
            payload: &payload,
            entered: None,
            extensions: None,
            dd: None,
            layer: None,
        };
        let header = Header {
            seq: self.seq,
            ts: self.timestamp,
            ssrc: self.ssrc,
            pt: None,
        };
        node.push(std::time::Instant::now(), &pkt, header);
    }
}

/// Where a port sends the packets it produces: into the router, as the port's own output.
#[derive(Clone)]
pub struct PortOutput {
    key: u64,
    send: Arc<dyn Fn(u64, MediaPacket) + Send + Sync>,
}

impl PortOutput {
    /// An output for the port with router key `key`, delivering through `send`.
    pub fn new(key: u64, send: Arc<dyn Fn(u64, MediaPacket) + Send + Sync>) -> PortOutput {
        PortOutput { key, send }
    }

    /// Sends a packet (from any thread).
    pub fn send(&self, pkt: MediaPacket) {
        (self.send)(self.key, pkt)
    }

    /// The port's router key.
    pub fn key(&self) -> u64 {
        self.key
    }
}

impl fmt::Debug for PortOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortOutput")
            .field("key", &self.key)
            .finish()
    }
}

/// Builds transcoders outside the router's crate: a port that takes `from` and produces `to`
/// and sends what it makes through `out`. The router's thread wraps it as its
/// [`TranscoderMaker`](crate::TranscoderMaker) (the output's key is derived from the
/// transcoder's node id).
pub trait TranscoderFactory: Send + Sync {
    /// A transcoder of the media of the element `source` (whose output settings its encoder
    /// follows), or why not.
    fn create(
        &self,
        kind: MediaKind,
        from: &Codec,
        to: &Codec,
        source: &str,
        out: PortOutput,
    ) -> Result<Box<dyn Node>, String>;

    /// Whether `to` can be produced from `from`.
    fn can(&self, from: &Codec, to: &Codec) -> bool;
}

/// The router as elements outside the WebRTC crate see it.
pub trait MediaBus: Send + Sync {
    /// Adds a port for the element `id`; `make` gets the port's output and returns the port's
    /// node. Returns the port's key.
    fn add_port(&self, id: &str, make: Box<dyn FnOnce(PortOutput) -> Box<dyn Node> + Send>) -> u64;

    /// Removes a port.
    fn remove_port(&self, key: u64);

    /// Starts (`add`) or stops media of `kind` from the element with key `src` to the element
    /// with id `sink_id`.
    fn route(&self, src: u64, sink_id: &str, kind: MediaKind, add: bool);

    /// Asks whoever feeds the port `key` for a keyframe.
    fn request_keyframe(&self, key: u64);

    /// The port `key` ended its stream: the ports it feeds are told.
    fn end_of_stream(&self, key: u64);

    /// What the port `key` takes changed (its [`Node::caps`]: an RtpEndpoint negotiated its
    /// SDP): the routes to it are decided again at their sources' next packets.
    fn caps_changed(&self, key: u64);

    /// The transcoder whose output has key `key` (its [`PortOutput`]'s) failed for good (its
    /// media worker died): the sinks it fed get an Error event saying `why` (see
    /// [`MediaRouter::transcoder_failed`](crate::MediaRouter::transcoder_failed)).
    fn transcoder_failed(&self, _key: u64, _why: &str) {}

    /// The average time media of each kind (`[audio, video]`) took from entering the router
    /// to reaching the element `id`'s port, in nanoseconds (see [`crate::latency`]).
    fn input_latency(&self, _id: &str) -> [Option<f64>; 2] {
        [None, None]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h264_profiles_and_modes_decide_compatibility() {
        let base = Codec::new(CodecName::H264);
        let mut main = base;
        main.profile_level_id = Some(0x4d001f);
        let mut high_level = base;
        high_level.profile_level_id = Some(0x42e034);
        let mut mode0 = base;
        mode0.packetization_mode = Some(0);
        assert!(base.compatible(&high_level));
        assert!(!base.compatible(&main));
        assert!(!base.compatible(&mode0));
        assert!(!base.compatible(&Codec::new(CodecName::Vp8)));
        assert!(Codec::new(CodecName::Opus).compatible(&Codec::new(CodecName::Opus)));
        assert_eq!(CodecName::from_sdp_name("OPUS"), Some(CodecName::Opus));
        assert_eq!(CodecName::from_sdp_name("h264"), Some(CodecName::H264));
        assert_eq!(CodecName::from_sdp_name("red"), None);
    }
}
