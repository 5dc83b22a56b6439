//! The sans-IO media core: every WebRTC endpoint's str0m session, the demultiplexing of
//! datagrams to them, their timers, TURN/STUN queues and WebRTC events, around the one
//! router (`fluo_sfu::MediaRouter`) that routes every element's media. Driven by
//! `handle_receive` / `handle_timeout` / `control` with the time passed in, drained by
//! `poll_transmit` / `poll_event`; the shell (`shell/`) or an in-memory test network does
//! the IO.
//!
//! Every element is a router node: a WebRTC endpoint is a [`WebRtcSink`], another element's
//! port is the node it gave, a transcoder is made by the router through [`Maker`]. Signalling
//! and ports name elements by `u64` keys; the core maps them to node ids where commands and
//! port packets come in, once per packet at most, never per sink.

use fluo_sfu::{
    Codec, CodecName, MediaEvent, MediaKind, MediaPacket, MediaRouter, Node, NodeId,
    TranscoderFactory,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::format::CodecSpec;
use str0m::net::Protocol;

mod bwe;
mod demux;
mod drive;
mod egress;
mod ep;
mod events;
mod formats;
mod ice;
mod simulcast;
mod timers;
mod transcoders;
mod view;
mod webrtc_sink;

pub(crate) use egress::enabled as egress_enabled;
pub use egress::set_egress;
pub(crate) use ep::{lock, rtx_history, Ep, EpRef};
use ep::{OutStream, RtxCache, RTX_HISTORY_START, RTX_PACKETS};
pub(crate) use events::flow;
pub(crate) use ice::SocketChange;
pub(crate) use simulcast::layer_of;
use transcoders::{transcoder_node, Maker};
pub(crate) use view::StatsAsk;
pub use view::{Bytes, EndpointView, TranscoderReading, ViewAsk, ViewReading};
use webrtc_sink::{Outbox, WebRtcSink};

/// Fluo's media kind for str0m's: the one place str0m's kind is converted.
pub(crate) fn kind_of(k: str0m::media::MediaKind) -> MediaKind {
    match k {
        str0m::media::MediaKind::Audio => MediaKind::Audio,
        str0m::media::MediaKind::Video => MediaKind::Video,
    }
}

/// Fluo's codec for a str0m codec, when Fluo can route it.
pub(crate) fn codec_of(spec: &CodecSpec) -> Option<Codec> {
    use str0m::format::Codec as C;
    let name = match spec.codec {
        C::Opus => CodecName::Opus,
        C::PCMU => CodecName::Pcmu,
        C::PCMA => CodecName::Pcma,
        C::G722 => CodecName::G722,
        C::H264 => CodecName::H264,
        C::Vp8 => CodecName::Vp8,
        C::Vp9 => CodecName::Vp9,
        C::Av1 => CodecName::Av1,
        _ => return None,
    };
    Some(Codec {
        name,
        clock_rate: spec.clock_rate.get(),
        channels: spec.channels.unwrap_or(1),
        profile_level_id: spec.format.profile_level_id,
        packetization_mode: spec.format.packetization_mode,
    })
}

/// How long without packets before an output is reported NOT_FLOWING.
const FLOW_IDLE: Duration = fluo_sfu::media_router::FLOW_IDLE;

/// Most distinct peer addresses TURN relays give a permission to (they refresh them).
const MAX_PERMITS: usize = 4096;

/// How often an endpoint whose peer is gone (ICE lost after DTLS) is woken up.
const LOST_PEER_TICK: Duration = Duration::from_secs(5);

/// How often a publisher is told its target bitrate.
const REMB_EVERY: Duration = Duration::from_secs(1);

/// How often what bounds a publisher's REMB is looked at while none is sent (nothing bounds
/// it): a bound that appears (a viewer's first REMB, its estimate's first congestion) reaches
/// the publisher within this, where looking at every timer fire (~40 a second) went through
/// all its viewers each time.
const REMB_LOOK_EVERY: Duration = Duration::from_millis(100);

/// A command from signalling to the media core (opaque outside this crate).
pub struct Control(pub(crate) Ctl);

impl Control {
    /// What the command is, for the media thread's profile.
    pub(crate) fn kind(&self) -> &'static str {
        match &self.0 {
            Ctl::Add { .. } => "command add endpoint",
            Ctl::Remove { .. } => "command remove",
            Ctl::Wake { .. } => "command wake",
            Ctl::Route { .. } => "command route",
            Ctl::CapsChanged { .. } => "command negotiated",
            Ctl::Inject { .. } => "command port packet",
            Ctl::AddPort { .. } => "command add port",
            _ => "command other",
        }
    }
}

/// Commands from signalling to the media core.
pub(crate) enum Ctl {
    Add {
        key: u64,
        ep: EpRef,
    },
    Remove {
        key: u64,
    },
    /// Signalling changed the endpoint: drain its outputs now.
    Wake {
        key: u64,
    },
    /// Starts or stops `src`'s media of `kind` (`None`: its data channels) to `sink_id`.
    Route {
        src: u64,
        sink_id: String,
        kind: Option<MediaKind>,
        add: bool,
    },
    Keyframe {
        key: u64,
    },
    /// A port (player, recorder, plain RTP, ...) joins the router.
    AddPort {
        key: u64,
        id: String,
        port: Box<dyn Node>,
    },
    /// A packet produced by the port `key`; `slot` frees its place in the bounded queue of
    /// port packets when the message is handled (or dropped).
    Inject {
        key: u64,
        pkt: MediaPacket,
        slot: crate::InFlight,
    },
    /// An allocation made for an endpoint's own turnUrl (with its socket, for UDP).
    AddRelay {
        socket: Option<std::net::UdpSocket>,
        relay: Box<crate::turn::Relay>,
    },
    /// Sockets bound for endpoint `key` alone (their addresses only, in memory).
    OwnSockets {
        key: u64,
        sockets: Vec<(Option<std::net::UdpSocket>, SocketAddr)>,
    },
    /// An endpoint's own STUN server: the media thread asks it for the sockets' public
    /// addresses.
    Discover {
        server: SocketAddr,
    },
    /// Remote candidate addresses of an endpoint: TURN permissions are made for them on
    /// the server-wide relays and on the relays of the endpoint's own turnUrl (`owner`).
    Permit {
        ips: Vec<std::net::IpAddr>,
        owner: Option<String>,
    },
    /// Whatever feeds `key` must send a keyframe.
    KeyframeFor {
        key: u64,
    },
    /// The simulcast layers the element `key` may be sent (its `fluoMaxVideoLayer` /
    /// `fluoPreferredVideoLayer`).
    LayerLimits {
        key: u64,
        limits: fluo_sfu::LayerLimits,
    },
    /// The port `key` ended its stream.
    EndOfStream {
        key: u64,
    },
    /// The transcoder whose output has key `key` failed for good (see
    /// `MediaRouter::transcoder_failed`).
    TranscoderFailed {
        key: u64,
        why: String,
    },
    /// What the element `key` takes changed (an endpoint or RtpEndpoint negotiated): the
    /// routes to it are decided again.
    CapsChanged {
        key: u64,
    },
    /// Endpoint `key` restarted ICE: the peer's checks name its new local `ufrag`, no longer
    /// the `old` one.
    IceRestarted {
        key: u64,
        old: String,
        ufrag: String,
    },
    /// Transcoders become available.
    Transcoders(Arc<dyn TranscoderFactory>),
    /// How transcoders created by the core deliver their packets.
    Output(Arc<dyn Fn(u64, MediaPacket) + Send + Sync>),
    /// Where the input latencies of ports are kept.
    Latency(Arc<fluo_sfu::LatencyBoard>),
    /// Elements' output settings (forced formats, encoder bitrates) are in this table.
    Settings(Arc<fluo_sfu::SettingsTable>),
    /// The transcoders running (kind, input and output codec names), for the metrics.
    TranscoderReading(tokio::sync::oneshot::Sender<Vec<crate::TranscoderCodecs>>),
    /// The endpoints' figures for the metrics, read on the media thread (which locks the
    /// endpoints as it forwards anyway), not on the listener's threads.
    RtcReading(
        Arc<crate::metrics::Board>,
        tokio::sync::oneshot::Sender<crate::RtcReading>,
    ),
    /// The pipeline view of these elements (see `view.rs`).
    ViewReading(Arc<ViewAsk>, tokio::sync::oneshot::Sender<ViewReading>),
    /// getStats of a WebRTC endpoint for the pipeline view (`None`: no such endpoint).
    EndpointStats(
        StatsAsk,
        tokio::sync::oneshot::Sender<Option<serde_json::Map<String, serde_json::Value>>>,
    ),
}

/// Answers a reading for the metrics, unless the scrape that asked gave up waiting.
fn answer<T>(reply: tokio::sync::oneshot::Sender<T>, read: impl FnOnce() -> T) {
    if !reply.is_closed() {
        let _ = reply.send(read());
    }
}

/// An endpoint's timer.
struct Entry {
    ep: EpRef,
    deadline: Instant,
    /// The earliest time this endpoint is queued at in `MediaCore::timers` (never later than
    /// `deadline`), if it is queued.
    queued: Option<Instant>,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// UDP, or TCP for an ICE-TCP connection (RFC 4571 framing is the shell's).
    pub proto: Protocol,
    /// Local address to send from.
    pub source: SocketAddr,
    /// Remote address.
    pub destination: SocketAddr,
    /// Bytes.
    pub contents: Vec<u8>,
    /// IPv4 TOS / IPv6 traffic class byte to send it with (the endpoint's qosDscp); 0: none.
    pub tos: u8,
}

/// An event raised on an element: its id and the event.
pub type Raised = (String, MediaEvent);

/// The media core. See the module docs.
pub struct MediaCore {
    eps: HashMap<u64, Entry>,
    by_id: HashMap<String, u64>,
    by_remote: HashMap<(SocketAddr, SocketAddr), u64>,
    by_ufrag: HashMap<String, u64>,
    /// The router, and each element's node in it by key (and back).
    router: MediaRouter,
    nodes: HashMap<u64, NodeId>,
    keys: HashMap<NodeId, u64>,
    /// What the WebRTC nodes wrote and raised while the router ran them.
    outbox: Arc<Outbox>,
    /// Data-channel messages of an endpoint go to these endpoints.
    data_routes: HashMap<u64, Vec<u64>>,
    transmits: VecDeque<Datagram>,
    events: VecDeque<Raised>,
    /// Peer addresses that TURN relays must let in (the shell takes them), with the
    /// endpoint turnUrl they are for.
    permits: VecDeque<(std::net::IpAddr, Option<String>)>,
    /// Every permission ever asked (relays refresh them; bounded by [`MAX_PERMITS`]).
    permitted: HashSet<(std::net::IpAddr, Option<String>)>,
    /// STUN servers to ask (the shell takes them).
    discover: VecDeque<SocketAddr>,
    /// TURN allocations for the shell to take over.
    new_relays: VecDeque<(Option<std::net::UdpSocket>, Box<crate::turn::Relay>)>,
    now: Instant,
    /// The transcoder factory and how transcoders deliver their packets: the router gets
    /// its maker when both are known.
    factory: Option<Arc<dyn TranscoderFactory>>,
    output: Option<Arc<dyn Fn(u64, MediaPacket) + Send + Sync>>,
    /// Endpoints by the time their timer fires, earliest first. An endpoint whose deadline
    /// moved later keeps its earlier entry, which re-queues it when it comes up: finding the
    /// due endpoints costs a heap operation each, not a scan of all of them.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Endpoints media was written to since the last flush. str0m sends what was written on
    /// its next tick: one tick and one drain per endpoint after a batch of input (a video
    /// frame is several packets) costs less than one per packet.
    dirty: Vec<u64>,
    /// Inside `receive_batch`: flush once at its end, not after every datagram.
    batching: bool,
    /// Remote addresses endpoints running full ICE send checks to, by (local, remote): where
    /// their answers go when no check from that address named an endpoint (see `ice`).
    checked: HashMap<(SocketAddr, SocketAddr), u64>,
    /// Local addresses of the sockets bound for one endpoint alone (see `ice`).
    own_sockets: HashMap<u64, Vec<SocketAddr>>,
    /// Sockets for the shell to open or close.
    socket_changes: VecDeque<ice::SocketChange>,
    /// Elements' output settings (see `formats.rs`) and the table's generation last taken in.
    settings: Option<Arc<fluo_sfu::SettingsTable>>,
    settings_seen: u64,
    /// The packet the router forwards now, as WebRTC sinks take it (see `egress`).
    carried: egress::Carried,
    /// Viewers' bandwidth estimators by endpoint key (`--bwe on`, see `bwe`): here, on the
    /// media thread, not in the endpoints' shared state (they are not `Send`).
    bwe: HashMap<u64, bwe::ViewerBwe>,
    /// Whether an endpoint with its bandwidth estimated (`--bwe on`) ever joined: until then
    /// no estimator runs at timer fires and the router measures no layer rates.
    bwe_on: bool,
    /// The estimators' process step, for all of them at once (see `bwe::Tick`).
    bwe_tick: bwe::Tick,
}

impl MediaCore {
    /// An empty core.
    pub fn new(now: Instant) -> MediaCore {
        MediaCore {
            eps: HashMap::new(),
            by_id: HashMap::new(),
            by_remote: HashMap::new(),
            by_ufrag: HashMap::new(),
            router: MediaRouter::new(),
            nodes: HashMap::new(),
            keys: HashMap::new(),
            outbox: Arc::default(),
            data_routes: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            permits: VecDeque::new(),
            permitted: HashSet::new(),
            discover: VecDeque::new(),
            new_relays: VecDeque::new(),
            now,
            factory: None,
            output: None,
            timers: BinaryHeap::new(),
            dirty: vec![],
            batching: false,
            checked: HashMap::new(),
            own_sockets: HashMap::new(),
            socket_changes: VecDeque::new(),
            settings: None,
            settings_seen: 0,
            carried: egress::Carried::default(),
            bwe: HashMap::new(),
            bwe_on: false,
            bwe_tick: bwe::Tick::default(),
        }
    }

    /// The transcoders running, by kind and codec names (the metrics' reading).
    pub fn transcoder_reading(&self) -> Vec<crate::TranscoderCodecs> {
        let codecs = self.router.transcoder_codecs().into_iter();
        let names = codecs.map(|(kind, from, to)| crate::TranscoderCodecs {
            kind,
            from: from.name.sdp_name(),
            to: to.name.sdp_name(),
        });
        names.collect()
    }

    /// Number of transcoders running.
    pub fn transcoder_count(&self) -> usize {
        self.router.transcoder_count()
    }

    /// The next datagram to send.
    /// The next datagram to send (the egress fast path's too, when the shell did not send
    /// them itself with [`MediaCore::send_egress`]).
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        if self.transmits.is_empty() {
            self.egress_to_transmits();
        }
        self.transmits.pop_front()
    }

    /// An allocation made for an endpoint, for the shell to run.
    pub(crate) fn poll_new_relay(
        &mut self,
    ) -> Option<(Option<std::net::UdpSocket>, Box<crate::turn::Relay>)> {
        self.new_relays.pop_front()
    }

    /// A STUN server an endpoint wants the public addresses from.
    pub fn poll_discover(&mut self) -> Option<SocketAddr> {
        self.discover.pop_front()
    }

    /// A peer IP the TURN relays must give a permission to.
    pub fn poll_permit(&mut self) -> Option<(std::net::IpAddr, Option<String>)> {
        self.permits.pop_front()
    }

    /// The next event to report.
    pub fn poll_event(&mut self) -> Option<Raised> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let eps = self.timers.peek().map(|Reverse((t, _))| *t);
        (eps.into_iter().chain(self.router.poll_timeout()))
            .chain(self.bwe_tick.at)
            .min()
    }

    /// Number of WebRTC endpoints.
    pub fn endpoint_count(&self) -> usize {
        self.eps.len()
    }

    /// The router node of the element `key`: a transcoder's key names its node itself.
    fn node_of(&self, key: u64) -> Option<NodeId> {
        transcoder_node(key).or_else(|| self.nodes.get(&key).copied())
    }

    /// Adds the element `key`'s node to the router.
    fn add_node(&mut self, key: u64, id: &str, node: Box<dyn Node>) {
        let n = self.router.add_node(id, node);
        self.nodes.insert(key, n);
        self.keys.insert(n, key);
        self.by_id.insert(id.to_string(), key);
        self.settings_of_new(n, id);
    }

    fn forget(&mut self, key: u64) {
        self.by_remote.retain(|_, k| *k != key);
        self.checked.retain(|_, k| *k != key);
        self.by_ufrag.retain(|_, k| *k != key);
        self.by_id.retain(|_, k| *k != key);
        self.data_routes.remove(&key);
        self.bwe.remove(&key);
        for sinks in self.data_routes.values_mut() {
            sinks.retain(|k| *k != key);
        }
        if let Some(n) = self.nodes.remove(&key) {
            self.keys.remove(&n);
            self.forget_source(n);
            // Its routes both ways go, and the transcoders only it needed; dropping a port
            // stops its pipeline.
            drop(self.router.remove_node(n));
        }
    }

    /// Applies a command from signalling.
    pub fn control(&mut self, now: Instant, c: Control) {
        self.now = now;
        match c.0 {
            Ctl::Add { key, ep } => self.add_endpoint(now, key, ep),
            Ctl::Remove { key } => {
                // Send what closing queued (BYE, close_notify) before forgetting it.
                self.drive(key);
                self.eps.remove(&key);
                self.forget(key);
                self.close_own_sockets(key);
            }
            Ctl::Wake { key } => self.drive(key),
            Ctl::Route {
                src,
                sink_id,
                kind,
                add,
            } => self.route(src, &sink_id, kind, add),
            c @ (Ctl::Keyframe { .. }
            | Ctl::KeyframeFor { .. }
            | Ctl::LayerLimits { .. }
            | Ctl::EndOfStream { .. }) => self.signal(now, c),
            Ctl::AddPort { key, id, port } => self.add_node(key, &id, port),
            Ctl::Inject { key, pkt, slot } => {
                // Its place in the bounded queue is free again.
                drop(slot);
                self.inject(key, pkt);
            }
            Ctl::Discover { server } => self.discover.push_back(server),
            Ctl::AddRelay { socket, relay } => self.new_relays.push_back((socket, relay)),
            Ctl::OwnSockets { key, sockets } => self.add_own_sockets(key, sockets),
            Ctl::Permit { ips, owner } => self.permit(ips, owner),
            Ctl::TranscoderFailed { key, why } => {
                if let Some(t) = transcoder_node(key) {
                    self.router.transcoder_failed(t, &why);
                }
            }
            Ctl::CapsChanged { key } => {
                if let Some(n) = self.node_of(key) {
                    self.router.caps_changed(n);
                }
                self.drive(key);
            }
            Ctl::IceRestarted { key, old, ufrag } => self.ice_restarted(key, &old, ufrag),
            Ctl::Transcoders(f) => {
                self.factory = Some(f);
                self.set_maker();
            }
            Ctl::Output(o) => {
                self.output = Some(o);
                self.set_maker();
            }
            Ctl::Latency(board) => self.router.set_latency_board(board),
            Ctl::Settings(t) => self.set_settings(t),
            Ctl::TranscoderReading(reply) => answer(reply, || self.transcoder_reading()),
            Ctl::RtcReading(board, reply) => answer(reply, || board.read()),
            Ctl::ViewReading(ask, reply) => answer(reply, || self.view_reading(&ask)),
            Ctl::EndpointStats(ask, reply) => answer(reply, || self.endpoint_stats(&ask)),
        }
        if !self.batching {
            self.flush();
        }
    }

    /// What travels to the router besides packets: keyframe requests, layer limits, end of
    /// stream.
    fn signal(&mut self, now: Instant, c: Ctl) {
        let key = match &c {
            Ctl::Keyframe { key }
            | Ctl::KeyframeFor { key }
            | Ctl::LayerLimits { key, .. }
            | Ctl::EndOfStream { key } => *key,
            _ => return,
        };
        let Some(n) = self.node_of(key) else {
            return;
        };
        match c {
            Ctl::Keyframe { .. } => self.router.ask_keyframe(now, n, MediaKind::Video),
            Ctl::KeyframeFor { .. } => self.router.request_keyframe(now, n, MediaKind::Video),
            Ctl::LayerLimits { limits, .. } => {
                self.router.set_layer_limits(n, MediaKind::Video, limits)
            }
            Ctl::EndOfStream { .. } => self.router.end_of_stream(n),
            _ => {}
        }
    }

    /// TURN permissions `owner`'s relays may create for `ips` (at most MAX_PERMITS in all).
    fn permit(&mut self, ips: Vec<std::net::IpAddr>, owner: Option<String>) {
        for ip in ips {
            let key = (ip, owner.clone());
            if self.permitted.len() < MAX_PERMITS && self.permitted.insert(key.clone()) {
                self.permits.push_back(key);
            }
        }
    }

    /// A packet the port `key` produced, into the router.
    fn inject(&mut self, key: u64, pkt: MediaPacket) {
        let Some(n) = self.node_of(key) else {
            return;
        };
        let f = Forward {
            kind: pkt.kind,
            codec: pkt.codec,
            seq: pkt.seq,
            ts: pkt.timestamp,
            ssrc: pkt.ssrc,
            marker: pkt.marker,
            entered: fluo_sfu::latency::sampled(pkt.seq).then(Instant::now),
            payload: pkt.payload.into(),
            ext_vals: None,
            layer: None,
        };
        self.dispatch(n, f);
    }

    /// A WebRTC endpoint joins: its node in the router, its ufrag for the demux, its timer.
    fn add_endpoint(&mut self, now: Instant, key: u64, ep: EpRef) {
        let (id, ufrag, keyframes) = {
            let mut e = lock(&ep);
            let ufrag = e.rtc.direct_api().local_ice_credentials().ufrag;
            if e.settings.bwe.keeps_twcc() && !self.bwe_on {
                self.bwe_on = true;
                self.router.measure_layer_rates();
            }
            (e.id.clone(), ufrag, e.settings.keyframe_interval)
        };
        self.by_ufrag.insert(ufrag, key);
        let sink = WebRtcSink {
            key,
            ep: ep.clone(),
            outbox: self.outbox.clone(),
        };
        self.add_node(key, &id, Box::new(sink));
        if let (Some(interval), Some(n)) = (keyframes, self.node_of(key)) {
            self.router.set_keyframe_interval(n, interval);
        }
        let entry = Entry {
            ep,
            deadline: now,
            queued: None,
        };
        self.eps.insert(key, entry);
        self.set_deadline(key, now);
        self.drive(key);
    }

    /// The router makes transcoders once the factory and their output are both known.
    fn set_maker(&mut self) {
        if let (Some(factory), Some(output)) = (&self.factory, &self.output) {
            let maker = Maker::new(factory.clone(), output.clone());
            self.router.set_transcoders(Arc::new(maker));
        }
    }

    /// Starts (`add`) or stops `src`'s media of `kind` (`None`: its data channels) to the
    /// element `sink_id`.
    fn route(&mut self, src: u64, sink_id: &str, kind: Option<MediaKind>, add: bool) {
        let Some(&sink) = self.by_id.get(sink_id) else {
            return;
        };
        let Some(kind) = kind else {
            let sinks = self.data_routes.entry(src).or_default();
            sinks.retain(|k| *k != sink);
            if add {
                sinks.push(sink);
            }
            return;
        };
        let (Some(s), Some(k)) = (self.node_of(src), self.node_of(sink)) else {
            return;
        };
        if add && kind == MediaKind::Video {
            // An estimated viewer's estimate warms up again for a new publisher's REMB
            // (timers.rs), not for the same one.
            if let Some(e) = self.eps.get(&sink) {
                lock(&e.ep).video_from(src);
            }
        }
        // Unknown nodes cannot be: both were just found.
        let _ = if add {
            // A new viewer needs a keyframe to start decoding: the router asks the source.
            self.router.connect(self.now, s, kind, k)
        } else {
            self.router.disconnect(s, kind, k)
        };
    }

    /// Takes what the router and the WebRTC nodes left: events to raise, endpoints to flush.
    fn take_outbox(&mut self) {
        while let Some(ev) = self.router.poll_event() {
            self.events.push_back(ev);
        }
        self.outbox.take(&mut self.dirty, &mut self.events);
    }
}

/// One incoming packet to forward, with the codec its payload type means at its source.
struct Forward {
    kind: MediaKind,
    codec: Codec,
    /// When a timed packet entered the router (see `fluo_sfu::latency`).
    entered: Option<Instant>,
    seq: u16,
    ts: u32,
    ssrc: u32,
    marker: bool,
    payload: Arc<[u8]>,
    /// Header extensions, for packets from a WebRTC peer.
    ext_vals: Option<str0m::rtp::ExtensionValues>,
    /// The simulcast layer of a WebRTC publisher's video: the place of its rid among the
    /// offer's `a=rid` lines (see `simulcast`).
    layer: Option<u8>,
}
