//! The sans-IO media core: every WebRTC endpoint's `Rtc`, the routes between them, and RTP
//! forwarding. Driven by `handle_receive` / `handle_timeout` / `control` with the time passed
//! in, drained by `poll_transmit` / `poll_event`; the shell (`shell.rs`) or an in-memory test
//! network does the IO.

use fluo_sfu::{
    Codec, CodecName, KeyframeThrottle, MediaKind, MediaPacket, Port, PortOutput, Rewriter,
    TranscoderFactory,
};
use fluo_sfu::{FlowDir, MediaEvent};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use str0m::channel::ChannelId;
use str0m::format::CodecSpec;
use str0m::media::{KeyframeRequestKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};

mod formats;
mod forward;
mod ice;
mod ports;

pub(crate) use ice::SocketChange;

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

/// One outgoing stream of an endpoint: the rewriter that keeps it continuous across source
/// changes, and its extended sequence number for str0m.
struct OutStream {
    rewriter: Rewriter,
    ext: u64,
    /// The stream's resend cache; `None` until the first packet sizes it.
    rtx: Option<RtxCache>,
}

/// A video stream's resend cache: how long it keeps video, and the round-trip reports in a
/// row that would have let it halve.
#[derive(Debug, Clone, Copy)]
struct RtxCache {
    len: Duration,
    short: u8,
}

impl RtxCache {
    fn new() -> RtxCache {
        RtxCache {
            len: RTX_HISTORY_START,
            short: 0,
        }
    }

    /// A round-trip report calling for `wanted` (see `rtx_history`): the length to give the
    /// cache when it changes (see `resize_rtx`).
    fn report(&mut self, wanted: Duration) -> Option<Duration> {
        let resized = resize_rtx(self.len, wanted, self.short);
        self.short = match resized {
            None if wanted * 2 <= self.len => self.short.saturating_add(1),
            _ => 0,
        };
        self.len = resized.unwrap_or(self.len);
        resized
    }
}

/// How long sent video stays available for retransmission on a NACK, before the first
/// round-trip estimate: str0m keeps 3 s by default, and one second covers round trips of
/// several hundred milliseconds with a retry.
const RTX_HISTORY_START: Duration = Duration::from_secs(1);

/// The history the round trip calls for, as Janus sizes its NACK queue: the round trip plus
/// 100 ms, at least 200 ms, at most 1 s (a viewer's NACK comes one round trip after the
/// loss at the earliest; the margin covers the receiver's wait before asking). On a LAN that
/// is 200 ms of video instead of a second: the cache holds a copy of every packet sent to
/// that viewer, the largest part of a viewer's memory.
pub(crate) fn rtx_history(rtt: Duration) -> Duration {
    let ms = (rtt.as_millis() as u64 + 100).clamp(200, 1000);
    // In steps of 50 ms.
    Duration::from_millis(ms.div_ceil(50) * 50)
}

/// Reports in a row (one a second) that must allow a cache half as long before it shrinks.
const RTX_SHRINK_AFTER: u8 = 5;

/// The new length of a resend cache that keeps `kept`, after a report calling for `wanted`,
/// given `short` earlier reports in a row that would have let it halve; `None` keeps it.
/// Resizing drops what the cache held, so it is rare: it grows at once, with headroom (to
/// twice its length, within 1 s), since a longer round trip makes a NACK for an old packet
/// likely; it shrinks only after `RTX_SHRINK_AFTER` reports in a row allow half the length
/// (the first time about five seconds after the start, long after the first keyframe).
pub(crate) fn resize_rtx(kept: Duration, wanted: Duration, short: u8) -> Option<Duration> {
    if wanted > kept {
        Some(wanted.max(kept * 2).min(RTX_HISTORY_START.max(wanted)))
    } else if wanted * 2 <= kept && short + 1 >= RTX_SHRINK_AFTER {
        Some(wanted)
    } else {
        None
    }
}

/// Most packets kept for retransmission per video stream: the age limit above is the one
/// that applies (2000 is a second of about 20 Mbit/s).
const RTX_PACKETS: usize = 2000;

/// How long without packets before an output is reported NOT_FLOWING.
const FLOW_IDLE: Duration = Duration::from_secs(2);

/// Most distinct peer addresses TURN relays give a permission to (they refresh them).
const MAX_PERMITS: usize = 4096;

/// How often an endpoint whose peer is gone (ICE lost after DTLS) is woken up.
const LOST_PEER_TICK: Duration = Duration::from_secs(5);

/// How often a publisher is told its target bitrate.
const REMB_EVERY: Duration = Duration::from_secs(1);

/// Interval of keyframe requests to one source.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(300);

/// The state of one endpoint shared between signalling and the media thread.
pub(crate) struct Ep {
    pub id: String,
    pub rtc: Rtc,
    pub negotiated: bool,
    pub pending_offer: Option<str0m::change::SdpPendingOffer>,
    pub local_sdp: Option<String>,
    pub remote_sdp: Option<String>,
    pub early_candidates: Vec<str0m::Candidate>,
    pub connected: bool,
    /// DTLS completed once (so an ICE recovery means media can flow again).
    pub was_connected: bool,
    /// The last ICE component state reported (Kurento's IceComponentState).
    pub ice_state: &'static str,
    /// The m-line of each kind carrying Kurento's audio / video track (set at negotiation).
    pub mids: [Option<Mid>; 2],
    /// The payload type last mapped for a codec on each kind's m-line (see `forward`).
    pt_cache: [Option<(Codec, str0m::media::Pt)>; 2],
    pub flowing_in: [bool; 2],
    pub flowing_out: [bool; 2],
    out: [Option<OutStream>; 2],
    /// Open data channels: label and SCTP stream id.
    pub channels: HashMap<ChannelId, (String, u16)>,
    /// getStats' counters and reports, and the media state.
    pub stats: crate::stats::EpStats,
    /// Our candidates as announced and the peer's as it sent them (see `pair`).
    pub candidates: crate::pair::Known,
    /// Data channels opened / closed so far.
    pub channels_opened: u64,
    pub channels_closed: u64,
    /// Local and remote address of the path in use.
    pub path: Option<(SocketAddr, SocketAddr)>,
    /// Its transport: UDP, or TCP (ICE-TCP).
    pub path_proto: Protocol,
    last_out_at: [Option<Instant>; 2],
    /// Kurento bandwidth settings in kbps (0 = not set).
    pub bandwidth: Bandwidth,
    /// The latest bitrate this endpoint's browser said it can receive (REMB), in bps.
    pub receive_estimate: Option<u64>,
    last_remb_at: Option<Instant>,
    /// rembParams.rembOnConnect and whether its bound is in force (see `settings`).
    pub remb_start: crate::settings::RembStart,
    /// The TOS byte of this endpoint's datagrams (qosDscp; 0: none).
    pub tos: u8,
    /// useDataChannels: data channels are negotiated and relayed.
    pub data_channels: bool,
    /// (local socket, announced address) where externalIPv4/6 differ from the socket: str0m
    /// sees the announced address, the sockets the local one.
    pub nat: Vec<(SocketAddr, SocketAddr)>,
}

/// Kurento's bandwidth properties of an endpoint, in kbps; 0 means "not set".
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Bandwidth {
    pub min_video_recv: u64,
    pub max_video_recv: u64,
    pub min_video_send: u64,
    pub max_video_send: u64,
}

impl Ep {
    pub fn new(id: String, rtc: Rtc) -> Ep {
        Ep {
            id,
            rtc,
            negotiated: false,
            pending_offer: None,
            local_sdp: None,
            remote_sdp: None,
            early_candidates: vec![],
            connected: false,
            was_connected: false,
            ice_state: "DISCONNECTED",
            mids: [None, None],
            pt_cache: [None, None],
            flowing_in: [false; 2],
            flowing_out: [false; 2],
            out: [None, None],
            channels: HashMap::new(),
            stats: Default::default(),
            candidates: Default::default(),
            channels_opened: 0,
            channels_closed: 0,
            path: None,
            path_proto: Protocol::Udp,
            last_out_at: [None, None],
            bandwidth: Bandwidth::default(),
            receive_estimate: None,
            last_remb_at: None,
            remb_start: Default::default(),
            tos: 0,
            data_channels: false,
            nat: vec![],
        }
    }

    pub(crate) fn mid_of_kind(&self, kind: MediaKind) -> Option<Mid> {
        self.mids[kind]
    }

    /// Records which m-line carries audio and which video, from the local description.
    pub fn learn_mids(&mut self) {
        let Some(sdp) = self.local_sdp.as_deref() else {
            return;
        };
        let mut mids = [None, None];
        let mut cur: Option<MediaKind> = None;
        for l in sdp.lines() {
            if let Some(m) = l.strip_prefix("m=") {
                // A rejected section (port 0) carries nothing.
                let rejected = m.split_whitespace().nth(1) == Some("0");
                cur = if rejected {
                    None
                } else if m.starts_with("audio") {
                    Some(MediaKind::Audio)
                } else if m.starts_with("video") {
                    Some(MediaKind::Video)
                } else {
                    None
                };
            } else if let Some(mid) = l.trim_end().strip_prefix("a=mid:") {
                if let Some(k) = cur.filter(|k| mids[*k].is_none()) {
                    mids[k] = Some(Mid::from(mid));
                }
            }
        }
        self.mids = mids;
        self.pt_cache = [None, None];
    }
}

pub(crate) type EpRef = Arc<Mutex<Ep>>;

pub(crate) fn lock(ep: &EpRef) -> MutexGuard<'_, Ep> {
    // A panic while holding an endpoint lock is a bug; keep serving the others.
    ep.lock().unwrap_or_else(|p| p.into_inner())
}

/// A command from signalling to the media core (opaque outside this crate).
pub struct Control(pub(crate) Ctl);

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
        port: Box<dyn Port>,
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
    /// The port `key` ended its stream.
    EndOfStream {
        key: u64,
    },
    /// Transcoders become available.
    Transcoders(Arc<dyn TranscoderFactory>),
    /// How transcoders created by the core deliver their packets.
    Output(Arc<dyn Fn(u64, MediaPacket) + Send + Sync>),
    /// Where the input latencies of ports are kept.
    Latency(Arc<fluo_sfu::LatencyBoard>),
    /// Elements' output settings (forced formats, encoder bitrates) are in this table.
    Settings(Arc<fluo_sfu::SettingsTable>),
}

/// A port in the router.
struct PortEntry {
    id: String,
    port: Box<dyn Port>,
    /// For a transcoder: the source it transcodes, and the kind.
    upstream: Option<(u64, MediaKind)>,
    /// Media flow of an element's port, per direction (in, out) and kind (audio, video):
    /// when the last packet passed, and whether FLOWING was reported.
    flow: [[(Option<Instant>, bool); 2]; 2],
}

/// First key of the transcoders the core creates itself (elements use small keys).
const TRANSCODER_KEYS: u64 = 1 << 48;

struct Entry {
    ep: EpRef,
    deadline: Instant,
    /// The earliest time this endpoint is queued at in `MediaCore::timers` (never later than
    /// `deadline`), if it is queued.
    queued: Option<Instant>,
    /// Media was written to it that str0m has not sent yet (see `MediaCore::dirty`).
    dirty: bool,
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
    routes: HashMap<(u64, MediaKind), Vec<u64>>,
    /// Data-channel messages of an endpoint go to these endpoints.
    data_routes: HashMap<u64, Vec<u64>>,
    throttles: HashMap<u64, KeyframeThrottle>,
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
    ports: HashMap<u64, PortEntry>,
    /// Transcoders in use: (source, kind, target codec) -> transcoder key.
    transcoders: HashMap<(u64, MediaKind, Codec), u64>,
    /// Sinks fed through a transcoder: (source, kind, sink) -> transcoder key.
    via: HashMap<(u64, MediaKind, u64), u64>,
    factory: Option<Arc<dyn TranscoderFactory>>,
    output: Option<Arc<dyn Fn(u64, MediaPacket) + Send + Sync>>,
    next_transcoder: u64,
    /// Ports already told that a source's codec cannot reach them: (sink, kind).
    mismatch_reported: HashSet<(u64, MediaKind)>,
    /// What a port receives is one continuous stream per kind, whatever source feeds it.
    port_out: HashMap<(u64, MediaKind), Rewriter>,
    /// Routes for which no transcoder could be made: (source, kind, sink).
    no_transcoder: HashSet<(u64, MediaKind, u64)>,
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
    latency: Arc<fluo_sfu::LatencyBoard>,
    /// Elements' output settings (see `formats.rs`), the table's generation last taken in,
    /// the settings of each element then, those of sources with a forced format, and the
    /// codec each (source, kind, sink) must be re-encoded to for it, by source codec.
    settings: Option<Arc<fluo_sfu::SettingsTable>>,
    settings_seen: u64,
    outputs: HashMap<u64, fluo_sfu::OutputSettings>,
    forced: HashMap<u64, fluo_sfu::OutputSettings>,
    reformat: HashMap<(u64, MediaKind, u64), (Codec, Option<Codec>)>,
}

impl MediaCore {
    /// An empty core.
    pub fn new(now: Instant) -> MediaCore {
        MediaCore {
            eps: HashMap::new(),
            by_id: HashMap::new(),
            by_remote: HashMap::new(),
            by_ufrag: HashMap::new(),
            routes: HashMap::new(),
            data_routes: HashMap::new(),
            throttles: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            permits: VecDeque::new(),
            permitted: HashSet::new(),
            discover: VecDeque::new(),
            new_relays: VecDeque::new(),
            now,
            ports: HashMap::new(),
            transcoders: HashMap::new(),
            via: HashMap::new(),
            factory: None,
            output: None,
            next_transcoder: TRANSCODER_KEYS,
            mismatch_reported: HashSet::new(),
            port_out: HashMap::new(),
            no_transcoder: HashSet::new(),
            timers: BinaryHeap::new(),
            dirty: vec![],
            batching: false,
            checked: HashMap::new(),
            own_sockets: HashMap::new(),
            socket_changes: VecDeque::new(),
            latency: Arc::default(),
            settings: None,
            settings_seen: 0,
            outputs: HashMap::new(),
            forced: HashMap::new(),
            reformat: HashMap::new(),
        }
    }

    /// Number of transcoders running.
    pub fn transcoder_count(&self) -> usize {
        self.transcoders.len()
    }

    /// Number of ports (transcoders included).
    pub fn port_count(&self) -> usize {
        self.ports.len()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
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
        let thr = self.throttles.values().filter_map(|t| t.poll_timeout());
        let flows = self.ports.values().flat_map(|p| p.flow.iter().flatten());
        let idle = flows
            .filter(|(_, flowing)| *flowing)
            .filter_map(|(last, _)| last.map(|t| t + FLOW_IDLE + Duration::from_millis(1)));
        eps.into_iter().chain(thr).chain(idle).min()
    }

    /// Number of WebRTC endpoints.
    pub fn endpoint_count(&self) -> usize {
        self.eps.len()
    }

    /// The element id of a key.
    fn id_of(&self, key: u64) -> Option<String> {
        if let Some(p) = self.ports.get(&key) {
            return Some(p.id.clone());
        }
        self.eps.get(&key).map(|e| lock(&e.ep).id.clone())
    }

    fn forget(&mut self, key: u64) {
        self.by_remote.retain(|_, k| *k != key);
        self.checked.retain(|_, k| *k != key);
        self.by_ufrag.retain(|_, k| *k != key);
        self.by_id.retain(|_, k| *k != key);
        self.throttles.remove(&key);
        self.mismatch_reported.retain(|(k, _)| *k != key);
        self.port_out.retain(|(k, _), _| *k != key);
        self.no_transcoder
            .retain(|(s, _, k)| *s != key && *k != key);
        // Transcoders that fed this sink lose it; those transcoding this source go.
        let fed: Vec<(u64, MediaKind, u64)> = self
            .via
            .keys()
            .filter(|(s, _, sink)| *sink == key || *s == key)
            .copied()
            .collect();
        for (src, kind, sink) in fed {
            self.unroute_via(src, kind, sink);
        }
        self.routes.retain(|(s, _), _| *s != key);
        for sinks in self.routes.values_mut() {
            sinks.retain(|k| *k != key);
        }
        self.data_routes.remove(&key);
        for sinks in self.data_routes.values_mut() {
            sinks.retain(|k| *k != key);
        }
        if let Some(p) = self.ports.remove(&key) {
            self.latency.forget(&p.id);
        }
        self.outputs.remove(&key);
        self.forced.remove(&key);
        self.reformat.retain(|(s, _, k), _| *s != key && *k != key);
    }

    /// Applies a command from signalling.
    pub fn control(&mut self, now: Instant, c: Control) {
        self.now = now;
        let c = c.0;
        match c {
            Ctl::Add { key, ep } => {
                let (id, ufrag) = {
                    let mut e = lock(&ep);
                    let ufrag = e.rtc.direct_api().local_ice_credentials().ufrag;
                    (e.id.clone(), ufrag)
                };
                self.by_id.insert(id.clone(), key);
                self.by_ufrag.insert(ufrag, key);
                self.settings_of_new(key, &id);
                let entry = Entry {
                    ep,
                    deadline: now,
                    queued: None,
                    dirty: false,
                };
                self.eps.insert(key, entry);
                self.set_deadline(key, now);
                self.drive(key);
            }
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
            } => {
                let Some(&sink) = self.by_id.get(&sink_id) else {
                    return;
                };
                match kind {
                    Some(kind) => self.set_route(src, kind, sink, add),
                    None => {
                        let sinks = self.data_routes.entry(src).or_default();
                        sinks.retain(|k| *k != sink);
                        if add {
                            sinks.push(sink);
                        }
                    }
                }
            }
            Ctl::Keyframe { key } => {
                self.request_keyframe(key, MediaKind::Video);
            }
            Ctl::AddPort { key, id, port } => {
                self.by_id.insert(id.clone(), key);
                self.settings_of_new(key, &id);
                self.ports.insert(
                    key,
                    PortEntry {
                        id,
                        port,
                        upstream: None,
                        flow: Default::default(),
                    },
                );
            }
            Ctl::Inject { key, pkt, slot } => {
                drop(slot);
                if !self.ports.contains_key(&key) {
                    return;
                }
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
                };
                self.port_flowed(key, FlowDir::Out, f.kind);
                self.dispatch(key, &f);
            }
            Ctl::KeyframeFor { key } => self.keyframe_for(key, MediaKind::Video),
            Ctl::Discover { server } => self.discover.push_back(server),
            Ctl::AddRelay { socket, relay } => self.new_relays.push_back((socket, relay)),
            Ctl::OwnSockets { key, sockets } => self.add_own_sockets(key, sockets),
            Ctl::Permit { ips, owner } => {
                for ip in ips {
                    let key = (ip, owner.clone());
                    if self.permitted.len() < MAX_PERMITS && self.permitted.insert(key.clone()) {
                        self.permits.push_back(key);
                    }
                }
            }
            Ctl::EndOfStream { key } => self.end_of_stream(key),
            Ctl::Transcoders(f) => self.factory = Some(f),
            Ctl::Output(o) => self.output = Some(o),
            Ctl::Latency(board) => self.latency = board,
            Ctl::Settings(t) => self.set_settings(t),
        }
        self.flush();
    }

    /// Starts (`add`) or stops `src`'s media of `kind` to `sink`.
    fn set_route(&mut self, src: u64, kind: MediaKind, sink: u64, add: bool) {
        if !add {
            if let Some(sinks) = self.routes.get_mut(&(src, kind)) {
                sinks.retain(|k| *k != sink);
            }
            self.unroute_via(src, kind, sink);
            self.mismatch_reported.remove(&(sink, kind));
            self.no_transcoder.remove(&(src, kind, sink));
            return;
        }
        self.no_transcoder.remove(&(src, kind, sink));
        if self.via.contains_key(&(src, kind, sink)) {
            // Already fed through a transcoder.
            return;
        }
        if let Some(rw) = self.port_out.get_mut(&(sink, kind)) {
            rw.resync();
        }
        let sinks = self.routes.entry((src, kind)).or_default();
        sinks.retain(|k| *k != sink);
        sinks.push(sink);
        // Whatever reaches this output next continues its sequence without a gap.
        if let Some(e) = self.eps.get(&sink) {
            if let Some(o) = lock(&e.ep).out[kind].as_mut() {
                o.rewriter.resync();
            }
        }
        // A new viewer needs a keyframe to start decoding.
        self.request_keyframe(src, kind);
    }

    /// Asks every source feeding `key` with `kind` for a keyframe.
    fn keyframe_for(&mut self, key: u64, kind: MediaKind) {
        let sources: Vec<u64> = self
            .routes
            .iter()
            .filter(|((_, k), sinks)| *k == kind && sinks.contains(&key))
            .map(|((s, _), _)| *s)
            .collect();
        for s in sources {
            self.request_keyframe(s, kind);
        }
    }

    /// Sends a packet from `src` to every sink of its kind.
    fn dispatch(&mut self, src: u64, f: &Forward) {
        // Settings that changed may move sinks between routes: before they are looked at.
        self.refresh_settings();
        let sinks = self.routes.get(&(src, f.kind)).cloned().unwrap_or_default();
        for sink in sinks {
            self.forward(src, sink, f);
        }
    }

    /// A UDP datagram arrived on local address `destination` from `source`.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        destination: SocketAddr,
        source: SocketAddr,
        data: &[u8],
    ) {
        self.handle_receive_on(now, Protocol::Udp, destination, source, data);
    }

    /// A datagram (UDP) or a frame of an ICE-TCP connection (TCP) arrived on local address
    /// `destination` from `source`.
    pub fn handle_receive_on(
        &mut self,
        now: Instant,
        proto: Protocol,
        destination: SocketAddr,
        source: SocketAddr,
        data: &[u8],
    ) {
        self.now = now;
        // The endpoint's view of the local address (its announced external address, if any).
        let seen_as = |ep: &Ep| {
            ep.nat
                .iter()
                .find(|(local, _)| *local == destination)
                .map_or(destination, |(_, public)| *public)
        };
        let input_for = |dest: SocketAddr| {
            let contents = data.try_into().ok()?;
            Some(Input::Receive(
                now,
                Receive {
                    proto,
                    source,
                    destination: dest,
                    contents,
                },
            ))
        };
        let known = self
            .by_remote
            .get(&(destination, source))
            .copied()
            .filter(|k| self.eps.contains_key(k));
        let key = match known {
            // This address already passed an ICE check for that endpoint: its DTLS may arrive
            // before the endpoint's own checks made the pair viable (str0m's `accepts` would
            // say no and the handshake would wait for a retransmission), so hand it over. A
            // check itself names its endpoint (below).
            Some(k) if !ice::is_binding_request(data) => k,
            _ => {
                // A new remote address must introduce itself with an ICE check, whose
                // USERNAME names our endpoint (and whose integrity its password proves): one
                // lookup, no scan over all endpoints.
                let found = ice::stun_local_ufrag(data)
                    .and_then(|u| self.by_ufrag.get(u).copied())
                    .filter(|k| {
                        self.eps.get(k).is_some_and(|e| {
                            let ep = lock(&e.ep);
                            input_for(seen_as(&ep)).is_some_and(|i| ep.rtc.accepts(&i))
                        })
                    });
                match found {
                    Some(k) => {
                        self.by_remote.insert((destination, source), k);
                        k
                    }
                    // Else the endpoint that checks this address (full ICE): the answers to
                    // its checks, and what follows, carry nothing that names it.
                    None => match known.or_else(|| self.checked_by(destination, source)) {
                        Some(k) => k,
                        None => {
                            tracing::trace!(%source, "no endpoint accepts this datagram");
                            return;
                        }
                    },
                }
            }
        };
        if let Some(e) = self.eps.get(&key) {
            let mut ep = lock(&e.ep);
            ep.path = Some((destination, source));
            ep.path_proto = proto;
            if let Some(input) = input_for(seen_as(&ep)) {
                if let Err(err) = ep.rtc.handle_input(input) {
                    tracing::debug!(id = %ep.id, "input rejected: {err}");
                } else if crate::stats::is_report(data) && crate::stats::rtcp_arrived(&mut ep, now)
                {
                    let ev = MediaEvent::MediaState { connected: true };
                    self.events.push_back((ep.id.clone(), ev));
                }
            }
        }
        self.drive(key);
        if !self.batching {
            self.flush();
        }
    }

    /// Drives timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.ports_idle(now);
        let due: Vec<u64> = self
            .throttles
            .iter_mut()
            .filter(|(_, t)| t.poll_timeout().is_some_and(|d| d <= now))
            .filter_map(|(k, t)| t.handle_timeout(now).then_some(*k))
            .collect();
        for k in due {
            self.send_keyframe_request(k);
        }
        let mut due: Vec<u64> = vec![];
        while let Some(Reverse((t, key))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(e) = self.eps.get_mut(&key) else {
                continue;
            };
            if e.queued == Some(t) {
                e.queued = None;
            }
            if e.deadline <= now {
                due.push(key);
            } else if e.queued.is_none() {
                e.queued = Some(e.deadline);
                self.timers.push(Reverse((e.deadline, key)));
            }
        }
        due.sort_unstable();
        due.dedup();
        for k in due {
            if let Some(e) = self.eps.get(&k) {
                let mut ep = lock(&e.ep);
                if ep.rtc.is_alive() {
                    let _ = ep.rtc.handle_input(Input::Timeout(now));
                }
                if crate::stats::media_lost(&mut ep, now) {
                    let ev = MediaEvent::MediaState { connected: false };
                    self.events.push_back((ep.id.clone(), ev));
                }
                for kind in MediaKind::ALL {
                    let idle = ep.last_out_at[kind]
                        .is_some_and(|t| now.saturating_duration_since(t) > FLOW_IDLE);
                    if ep.flowing_out[kind] && idle {
                        ep.flowing_out[kind] = false;
                        self.events
                            .push_back((ep.id.clone(), flow(FlowDir::Out, false, kind)));
                    }
                }
            }
            self.update_remb(k);
            self.drive(k);
        }
        self.flush();
    }

    /// Tells a publisher how much video to send (REMB), once per second: the least of its
    /// own `maxVideoRecvBandwidth` and what each of its viewers can take (their REMB, capped
    /// by their `maxVideoSendBandwidth`), never below `minVideoRecvBandwidth`.
    fn update_remb(&mut self, key: u64) {
        let now = self.now;
        let sinks = self
            .routes
            .get(&(key, MediaKind::Video))
            .cloned()
            .unwrap_or_default();
        let mut limits: Vec<u64> = vec![];
        for s in sinks {
            if let Some(e) = self.eps.get(&s) {
                let ep = lock(&e.ep);
                let cap = ep.bandwidth.max_video_send * 1000;
                match (ep.receive_estimate, cap) {
                    (Some(est), 0) => limits.push(est),
                    (Some(est), cap) => limits.push(est.min(cap)),
                    (None, 0) => {}
                    (None, cap) => limits.push(cap),
                }
            }
        }
        let Some(e) = self.eps.get(&key) else {
            return;
        };
        let mut ep = lock(&e.ep);
        if !ep.flowing_in[MediaKind::Video]
            || ep
                .last_remb_at
                .is_some_and(|t| now.duration_since(t) < REMB_EVERY)
        {
            return;
        }
        let own = ep.bandwidth.max_video_recv * 1000;
        if own > 0 {
            limits.push(own);
        }
        let first = ep.last_remb_at.is_none();
        let lowest = limits.into_iter().min();
        let Some(mut target) = ep.remb_start.target(lowest, first) else {
            return;
        };
        target = target.max(ep.bandwidth.min_video_recv * 1000);
        let Some(mid) = ep.mid_of_kind(MediaKind::Video) else {
            return;
        };
        ep.last_remb_at = Some(now);
        ep.stats.kinds[MediaKind::Video].remb_sent = target;
        if let Some(rx) = ep.rtc.direct_api().stream_rx_by_mid(mid, None) {
            rx.request_remb(str0m::bwe::Bitrate::bps(target));
        }
    }

    /// When endpoint `key`'s timer must fire next.
    fn set_deadline(&mut self, key: u64, deadline: Instant) {
        // Entries of removed endpoints, and entries left behind by deadlines that moved
        // later, stay until they come up; some never would (a dead session's timer is far
        // away). When they outnumber the live endpoints, rebuild the heap from each
        // endpoint's earliest queued time, which is all it needs (amortised O(1) per call).
        if self.timers.len() > 2 * self.eps.len() + 64 {
            self.timers = self
                .eps
                .iter()
                .filter_map(|(k, e)| e.queued.map(|q| Reverse((q, *k))))
                .collect();
        }
        let Some(e) = self.eps.get_mut(&key) else {
            return;
        };
        e.deadline = deadline;
        if e.queued.is_none_or(|q| deadline < q) {
            e.queued = Some(deadline);
            self.timers.push(Reverse((deadline, key)));
        }
    }

    /// Drains an endpoint's outputs: sends datagrams, raises events, forwards media.
    fn drive(&mut self, key: u64) {
        let Some(entry) = self.eps.get(&key) else {
            return;
        };
        let ep_ref = entry.ep.clone();
        let mut forwards: Vec<Forward> = vec![];
        let mut keyframe_asks: Vec<MediaKind> = vec![];
        let mut messages: Vec<DataMessage> = vec![];
        let (was_connected, deadline, lost, connected);
        {
            let mut ep = lock(&ep_ref);
            was_connected = ep.connected;
            loop {
                if !ep.rtc.is_alive() {
                    deadline = self.now + Duration::from_secs(3600);
                    break;
                }
                match ep.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => {
                        deadline = t;
                        break;
                    }
                    Ok(Output::Transmit(t)) => {
                        // A peer that went away (ICE lost after DTLS had completed) gets no
                        // more RTP or RTCP (str0m keeps writing sender reports): only ICE and
                        // DTLS, which is how it can come back.
                        let lost = ep.was_connected && !ep.connected;
                        if lost && matches!(t.contents.first(), Some(128..=191)) {
                            continue;
                        }
                        // Back from the announced address to the local socket: the one the
                        // peer's packets arrive on when several share the announced address.
                        let path_local = ep.path.filter(|(_, r)| *r == t.destination).map(|p| p.0);
                        let mut locals = ep.nat.iter().filter(|(_, public)| *public == t.source);
                        let source = match path_local {
                            Some(l) if ep.nat.iter().any(|(x, p)| *x == l && *p == t.source) => l,
                            _ => locals.next().map_or(t.source, |(local, _)| *local),
                        };
                        let contents: Vec<u8> = t.contents.into();
                        if ice::is_binding_request(&contents) {
                            self.note_check(key, source, t.destination);
                        }
                        self.transmits.push_back(Datagram {
                            proto: t.proto,
                            source,
                            destination: t.destination,
                            contents,
                            tos: ep.tos,
                        });
                    }
                    Ok(Output::Event(ev)) => Self::event(
                        &mut self.events,
                        &mut ep,
                        ev,
                        &mut forwards,
                        &mut keyframe_asks,
                        &mut messages,
                    ),
                    Err(e) => {
                        tracing::warn!(id = %ep.id, "endpoint failed: {e}");
                        ep.rtc.disconnect();
                        if std::mem::take(&mut ep.connected) {
                            for ev in state_change(&mut ep, false) {
                                self.events.push_back((ep.id.clone(), ev));
                            }
                        }
                    }
                }
            }
            // A lost peer costs a timer every few seconds, not every few milliseconds; a
            // datagram from it drives the endpoint at once.
            lost = ep.was_connected && !ep.connected && ep.rtc.is_alive();
            connected = ep.connected;
        }

        let deadline = if lost {
            deadline.max(self.now + LOST_PEER_TICK)
        } else {
            deadline
        };
        self.set_deadline(key, deadline);
        if !was_connected && connected {
            // Media can flow to this endpoint now: whatever feeds its video must start with a
            // keyframe (a request made when the route was added may predate the connection).
            keyframe_asks.push(MediaKind::Video);
        }
        for kind in keyframe_asks {
            // A viewer asked for a keyframe: ask whoever feeds it.
            self.keyframe_for(key, kind);
        }
        if !messages.is_empty() {
            let sinks = self.data_routes.get(&key).cloned().unwrap_or_default();
            for sink in sinks {
                self.relay(sink, &messages);
            }
        }
        for f in forwards {
            self.dispatch(key, &f);
        }
    }

    fn event(
        events: &mut VecDeque<Raised>,
        ep: &mut Ep,
        ev: Event,
        forwards: &mut Vec<Forward>,
        keyframe_asks: &mut Vec<MediaKind>,
        messages: &mut Vec<DataMessage>,
    ) {
        let id = ep.id.clone();
        let mut emit = |ev: MediaEvent| events.push_back((id.clone(), ev));
        match ev {
            Event::IceConnectionStateChange(s) => {
                let state = match s {
                    IceConnectionState::New => "GATHERING",
                    IceConnectionState::Checking => "CONNECTING",
                    IceConnectionState::Connected => "CONNECTED",
                    IceConnectionState::Completed => "READY",
                    IceConnectionState::Disconnected => "DISCONNECTED",
                };
                ep.ice_state = state;
                emit(MediaEvent::IceComponentState { state });
                let up = matches!(
                    s,
                    IceConnectionState::Connected | IceConnectionState::Completed
                );
                if up && !ep.connected && ep.rtc.is_connected() && ep.was_connected {
                    // ICE came back after a drop: media flows again.
                    ep.connected = true;
                    state_change(ep, true).into_iter().for_each(&mut emit);
                }
                if s == IceConnectionState::Disconnected && ep.connected {
                    ep.connected = false;
                    state_change(ep, false).into_iter().for_each(&mut emit);
                }
            }
            Event::Connected => {
                ep.connected = true;
                ep.was_connected = true;
                emit(MediaEvent::DtlsConnected);
                if let Some((local, remote)) = crate::pair::selected(ep) {
                    emit(MediaEvent::CandidatePairSelected { local, remote });
                }
                state_change(ep, true).into_iter().for_each(&mut emit);
            }
            Event::RtpPacket(pkt) => {
                let ssrc = pkt.header.ssrc;
                let kind = ep
                    .rtc
                    .direct_api()
                    .stream_rx(&ssrc)
                    .map(|s| s.mid())
                    .and_then(|mid| ep.rtc.media(mid).map(|m| kind_of(m.kind())));
                let Some(kind) = kind else {
                    return;
                };
                let clock = pkt.time.frequency().get();
                let c = &mut ep.stats.kinds[kind];
                c.received(*ssrc, *pkt.seq_no, pkt.payload.len(), clock);
                if !ep.flowing_in[kind] {
                    ep.flowing_in[kind] = true;
                    emit(flow(FlowDir::In, true, kind));
                }
                let pt = pkt.header.payload_type;
                let codec = ep
                    .rtc
                    .codec_config()
                    .params()
                    .iter()
                    .find(|p| p.pt() == pt)
                    .map(|p| p.spec());
                let Some(codec) = codec.as_ref().and_then(codec_of) else {
                    tracing::trace!(id = %ep.id, %pt, "RTP with an unknown payload type dropped");
                    return;
                };
                forwards.push(Forward {
                    kind,
                    codec,
                    entered: fluo_sfu::latency::sampled(*pkt.seq_no as u16).then(Instant::now),
                    seq: *pkt.seq_no as u16,
                    ts: pkt.header.timestamp,
                    ssrc: *pkt.header.ssrc,
                    marker: pkt.header.marker,
                    payload: pkt.payload,
                    ext_vals: Some(pkt.header.ext_vals),
                });
            }
            Event::StreamPaused(p) => {
                if let Some(kind) = ep.rtc.media(p.mid).map(|m| kind_of(m.kind())) {
                    if p.paused && ep.flowing_in[kind] {
                        ep.flowing_in[kind] = false;
                        emit(flow(FlowDir::In, false, kind));
                    }
                }
            }
            Event::MediaIngressStats(st) => crate::stats::ingress(ep, &st),
            Event::PeerStats(st) => crate::stats::peer(ep, &st),
            Event::MediaEgressStats(st) => {
                crate::stats::egress(ep, &st);
                // A round-trip estimate from the viewer's receiver reports on the video this
                // endpoint forwards: its resend cache follows it.
                let forwarded = ep.mid_of_kind(MediaKind::Video) == Some(st.mid);
                let cache = ep.out[MediaKind::Video]
                    .as_mut()
                    .and_then(|o| o.rtx.as_mut());
                if let (true, Some(rtt), Some(cache)) = (forwarded, st.rtt, cache) {
                    if let Some(len) = cache.report(rtx_history(rtt)) {
                        if let Some(tx) = ep.rtc.direct_api().stream_tx_by_mid(st.mid, None) {
                            tx.set_rtx_cache(RTX_PACKETS, len, Some(0.15));
                            tracing::debug!(id = %ep.id, ?rtt, ?len, "video resend history");
                        }
                    }
                }
            }
            Event::EgressBitrateEstimate(str0m::bwe::BweKind::Remb { estimate, .. }) => {
                tracing::trace!(id = %ep.id, bps = estimate.as_u64(), "REMB from the peer");
                ep.receive_estimate = Some(estimate.as_u64());
            }
            Event::KeyframeRequest(r) => {
                if let Some(kind) = ep.rtc.media(r.mid).map(|m| kind_of(m.kind())) {
                    keyframe_asks.push(kind);
                }
            }
            // A peer that opens a channel the answer declined (useDataChannels unset) is ignored.
            Event::ChannelOpen(cid, label) if ep.data_channels => {
                let sid = ep
                    .rtc
                    .direct_api()
                    .sctp_stream_id_by_channel_id(cid)
                    .unwrap_or_default();
                ep.channels.insert(cid, (label, sid));
                ep.channels_opened += 1;
                emit(MediaEvent::DataChannelOpened { channel: sid });
            }
            Event::ChannelClose(cid) => {
                if let Some((_, sid)) = ep.channels.remove(&cid) {
                    ep.channels_closed += 1;
                    emit(MediaEvent::DataChannelClosed { channel: sid });
                }
            }
            Event::ChannelData(d) => {
                if let Some((label, _)) = ep.channels.get(&d.id) {
                    messages.push(DataMessage {
                        label: label.clone(),
                        binary: d.binary,
                        data: d.data,
                    });
                }
            }
            Event::Closed => {
                tracing::debug!(id = %ep.id, "peer closed the connection");
            }
            _ => {}
        }
    }

    /// Relays data-channel messages to a sink: on its open channel of the same label, else on
    /// its first open channel.
    fn relay(&mut self, sink: u64, messages: &[DataMessage]) {
        let Some(e) = self.eps.get(&sink) else {
            return;
        };
        {
            let mut ep = lock(&e.ep);
            for m in messages {
                let target = ep
                    .channels
                    .iter()
                    .find(|(_, (l, _))| *l == m.label)
                    .or_else(|| ep.channels.iter().min_by_key(|(_, (_, sid))| *sid))
                    .map(|(c, _)| *c);
                let Some(cid) = target else {
                    tracing::debug!(id = %ep.id, "no open data channel to relay to");
                    continue;
                };
                if let Some(mut ch) = ep.rtc.channel(cid) {
                    if !matches!(ch.write(m.binary, &m.data), Ok(true)) {
                        tracing::debug!(id = %ep.id, "data channel full; message dropped");
                    }
                }
            }
        }
        self.drive(sink);
    }

    /// Asks a source for a keyframe, at most once per throttle interval however many
    /// viewers ask; a request inside the interval is sent when it ends.
    fn request_keyframe(&mut self, src: u64, kind: MediaKind) {
        if kind != MediaKind::Video
            || !(self.eps.contains_key(&src) || self.ports.contains_key(&src))
        {
            return;
        }
        let now = self.now;
        let t = self
            .throttles
            .entry(src)
            .or_insert_with(|| KeyframeThrottle::new(KEYFRAME_INTERVAL));
        if t.handle_request(now) {
            self.send_keyframe_request(src);
        }
    }

    fn send_keyframe_request(&mut self, src: u64) {
        if let Some(p) = self.ports.get_mut(&src) {
            p.port.request_keyframe();
            return;
        }
        let Some(e) = self.eps.get(&src) else {
            return;
        };
        {
            let mut ep = lock(&e.ep);
            let Some(mid) = ep.mid_of_kind(MediaKind::Video) else {
                return;
            };
            if let Some(rx) = ep.rtc.direct_api().stream_rx_by_mid(mid, None) {
                rx.request_keyframe(KeyframeRequestKind::Pli);
            }
        }
        self.drive(src);
    }
}

/// A data-channel message to relay along DATA connections.
struct DataMessage {
    label: String,
    binary: bool,
    data: Vec<u8>,
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
}

impl Forward {
    fn packet(&self) -> MediaPacket {
        MediaPacket {
            kind: self.kind,
            codec: self.codec,
            seq: self.seq,
            timestamp: self.ts,
            ssrc: self.ssrc,
            marker: self.marker,
            payload: self.payload.to_vec(),
        }
    }
}

/// ConnectionStateChanged for a session that came up or went down, and MediaStateChanged if
/// media was connected (media comes up later, with the peer's RTCP: see `stats`).
fn state_change(ep: &mut Ep, up: bool) -> Vec<MediaEvent> {
    let mut out = vec![MediaEvent::ConnectionState { connected: up }];
    if !up && std::mem::take(&mut ep.stats.media_connected) {
        out.push(MediaEvent::MediaState { connected: false });
    }
    out
}

pub(crate) fn flow(dir: FlowDir, flowing: bool, kind: MediaKind) -> MediaEvent {
    MediaEvent::Flow { dir, kind, flowing }
}

#[cfg(test)]
mod tests {
    use super::{resize_rtx, rtx_history, RtxCache};
    use std::time::Duration;

    #[test]
    fn video_resend_history_follows_the_round_trip_within_bounds() {
        let ms = Duration::from_millis;
        // A LAN keeps the floor, a long round trip adds 100 ms, the ceiling holds.
        assert_eq!(rtx_history(Duration::from_micros(300)), ms(200));
        assert_eq!(rtx_history(ms(180)), ms(300));
        assert_eq!(rtx_history(ms(230)), ms(350));
        assert_eq!(rtx_history(ms(5000)), ms(1000));
    }

    #[test]
    fn the_resend_cache_grows_at_once_with_headroom_and_shrinks_only_when_steadily_short() {
        let ms = Duration::from_millis;
        // Longer: at once, to twice the length, within a second unless more is wanted.
        assert_eq!(resize_rtx(ms(200), ms(250), 0), Some(ms(400)));
        assert_eq!(resize_rtx(ms(600), ms(650), 0), Some(ms(1000)));
        assert_eq!(resize_rtx(ms(1000), ms(1000), 0), None);
        // Shorter: only to half or less, and only on the fifth report in a row.
        assert_eq!(resize_rtx(ms(400), ms(250), 4), None);
        for short in 0..4 {
            assert_eq!(resize_rtx(ms(1000), ms(200), short), None);
        }
        assert_eq!(resize_rtx(ms(1000), ms(200), 4), Some(ms(200)));
        // A round trip swinging between 90 and 310 ms: one growth, then never a resize.
        let mut cache = RtxCache {
            len: ms(200),
            short: 0,
        };
        let mut resizes = 0;
        for i in 0..60 {
            let wanted = rtx_history(ms(if i % 2 == 0 { 90 } else { 310 }));
            resizes += u32::from(cache.report(wanted).is_some());
        }
        let kept = cache.len;
        assert_eq!((resizes, kept), (1, ms(450)));
    }
}
