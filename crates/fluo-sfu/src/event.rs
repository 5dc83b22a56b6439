//! The events the media plane raises on elements (WebRTC endpoints, the router, GStreamer
//! elements), typed. They become Kurento's JSON events in one place, fluo-core's
//! `media_event` module, which also adds the base fields (source, timestamps, tags).

use crate::MediaKind;
use std::sync::Arc;

/// Where the media plane raises its events, from any thread: the element's id and the event.
pub type EventSink = Arc<dyn Fn(&str, MediaEvent) + Send + Sync>;

/// Which way media passes an element: into it (what it receives) or out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowDir {
    /// Media reaching the element (`MediaFlowInStateChanged`).
    In,
    /// Media leaving the element (`MediaFlowOutStateChanged`).
    Out,
}

impl FlowDir {
    /// Both directions, in then out (the order of per-direction arrays).
    pub const ALL: [FlowDir; 2] = [FlowDir::In, FlowDir::Out];

    /// The direction's place in a per-direction array: 0 in, 1 out.
    pub const fn index(self) -> usize {
        match self {
            FlowDir::In => 0,
            FlowDir::Out => 1,
        }
    }
}

/// What failed, for an `Error` event: decides its Kurento code and `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MediaError {
    /// A sink did not negotiate its source's codec and no transcoder can convert it.
    CodecMismatch,
    /// A PlayerEndpoint's pipeline failed.
    Player,
    /// A RecorderEndpoint's pipeline failed.
    Recorder,
    /// A GStreamerFilter's pipeline failed.
    Filter,
    /// An RtpEndpoint's SRTP could not be set up.
    Srtp,
    /// A Composite's pipeline failed, or the worker hosting it ended.
    Hub,
    /// A ZBarFilter's pipeline failed, or the worker hosting it ended.
    ZBar,
    /// An HttpPostEndpoint's upload or pipeline failed.
    HttpPost,
}

/// An event of the media plane on one element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// Media of a kind started or stopped passing the element's default pad in one direction.
    Flow {
        /// In or out.
        dir: FlowDir,
        /// Audio or video.
        kind: MediaKind,
        /// FLOWING or NOT_FLOWING.
        flowing: bool,
    },
    /// A transcoder of the element's output of a kind appeared or went.
    Transcoding {
        /// Audio or video.
        kind: MediaKind,
        /// TRANSCODING or NOT_TRANSCODING.
        on: bool,
        /// The transcoder's name.
        bin: String,
    },
    /// `MediaStateChanged`: media connected (the peer's first RTCP report) or disconnected.
    MediaState {
        /// Connected now.
        connected: bool,
    },
    /// `ConnectionStateChanged`: the session (ICE + DTLS) came up or went down.
    ConnectionState {
        /// Connected now.
        connected: bool,
    },
    /// `IceComponentStateChanged` (Kurento's IceComponentState name).
    IceComponentState {
        /// GATHERING, CONNECTING, CONNECTED, READY, DISCONNECTED, FAILED.
        state: &'static str,
    },
    /// `DtlsConnectionStateChange` to CONNECTED.
    DtlsConnected,
    /// `NewCandidatePairSelected`.
    CandidatePairSelected {
        /// Fluo's candidate, as its SDP announced it (without `a=`).
        local: String,
        /// The peer's candidate, as the peer sent it.
        remote: String,
    },
    /// `DataChannelOpened`.
    DataChannelOpened {
        /// The SCTP stream id.
        channel: u16,
    },
    /// `DataChannelClosed`.
    DataChannelClosed {
        /// The SCTP stream id.
        channel: u16,
    },
    /// `Error`.
    Error {
        /// What failed.
        error: MediaError,
        /// What happened (no addresses, no debug dumps).
        description: String,
    },
    /// `EndOfStream` (a player reached the end of its media).
    EndOfStream,
    /// `UriEndpointStateChanged`.
    UriEndpointState {
        /// STOP, START or PAUSE.
        state: &'static str,
    },
    /// `Recording`.
    Recording,
    /// `Paused`.
    Paused,
    /// `Stopped`.
    Stopped,
    /// `MediaSessionStarted` (true) or `MediaSessionTerminated` (false): an HTTP endpoint's
    /// first request of a session came, or no request came within its disconnection
    /// timeout after the last one ended.
    MediaSession {
        /// Started now.
        started: bool,
    },
    /// `OnKeySoftLimit`: an SRTP key of a kind nears its end of life.
    KeySoftLimit {
        /// Audio or video.
        kind: MediaKind,
    },
    /// `CodeFound`: a ZBarFilter saw a code (a QR code, a barcode) in the video.
    CodeFound {
        /// The code's type, as zbar names it ("QR-Code", "EAN-13", ...).
        code_type: String,
        /// What the code says.
        value: String,
    },
    /// The simulcast layer a sink gets of `kind` changed (a Fluo extension:
    /// `FluoLayerChanged`).
    LayerChanged {
        /// Audio or video.
        kind: MediaKind,
        /// The layer it gets now, and why.
        layer: crate::simulcast::ForwardedLayer,
    },
    /// An event a module's element raises (docs/modules.md), one its class declares.
    Module {
        /// The event's name.
        name: String,
        /// Its own fields: a JSON object's text.
        fields: String,
    },
}
