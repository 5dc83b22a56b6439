//! WebRtcEndpoint on str0m.
//!
//! [`WebRtc::start`] binds the media sockets (one UDP port per local address, shared by every
//! endpoint and demultiplexed with `Rtc::accepts`) and starts the media thread. Its
//! [`WebRtc::factory`] is registered with the engine for the `WebRtcEndpoint` class.
//!
//! Signalling (processOffer, addIceCandidate, ...) runs on the engine's thread and touches an
//! endpoint's `Rtc` under that endpoint's own lock, held only for the call; the media thread
//! takes the same lock to feed packets and timers. No code holds two endpoint locks at once.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod core;
mod dd;
mod dtls;
mod element;
mod learnt;
mod metrics;
mod net;
mod pair;
mod pool;
mod profile;
mod sdp;
mod sections;
mod settings;
mod shell;
mod stats;
mod stun;
mod turn;

pub use crate::core::{
    set_egress, Bytes, Control, Datagram, EndpointView, MediaCore, Raised, TranscoderReading,
    ViewAsk, ViewReading,
};

pub use metrics::{Figure, RtcReading, FIGURES};
pub use net::{BweMode, NetSettings};
pub use turn::TurnUrl;

use crate::core::Ctl;
use fluo_core::EventSink;
use fluo_sfu::{MediaBus, MediaKind, MediaPacket, Node, PortOutput, TranscoderFactory};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A transcoder the router runs: its media kind, input and output codec names (SDP's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscoderCodecs {
    /// Audio or video.
    pub kind: MediaKind,
    /// The codec it decodes.
    pub from: &'static str,
    /// The codec it encodes.
    pub to: &'static str,
}

/// The running WebRTC media plane.
#[derive(Clone)]
pub struct WebRtc {
    pub(crate) ctl: mpsc::UnboundedSender<Control>,
    pub(crate) locals: Arc<Vec<std::net::SocketAddr>>,
    /// Local addresses of the ICE-TCP listeners (passive candidates).
    pub(crate) tcp_locals: Arc<Vec<std::net::SocketAddr>>,
    /// TURN allocations: (local socket, relayed address).
    pub(crate) relayed: Arc<Vec<(std::net::SocketAddr, std::net::SocketAddr)>>,
    /// Public addresses learnt from endpoints' own STUN servers.
    pub(crate) stun_cache: Arc<stun::StunCache>,
    /// Relayed addresses allocated for endpoints' own turnUrl.
    pub(crate) relay_cache: Arc<turn::RelayCache>,
    /// The TURN clients' clock.
    pub(crate) clock: turn::Clock,
    /// The server-wide STUN server (its answers are in `srflx`).
    pub(crate) stun_server: Option<std::net::SocketAddr>,
    /// Default external addresses (externalIPv4 / externalIPv6) of new endpoints.
    pub(crate) external: (Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>),
    /// Public addresses of the sockets, learnt from the STUN server: (local, mapped).
    pub(crate) srflx: Arc<Vec<(std::net::SocketAddr, std::net::SocketAddr)>>,
    next_key: Arc<AtomicU64>,
    /// Where endpoints get sockets of their own.
    pub(crate) own_ports: net::OwnPorts,
    pub(crate) pool: Arc<pool::RtcPool>,
    /// Port packets waiting for the media thread.
    port_packets: Arc<AtomicUsize>,
    /// The network interface of each media socket (networkInterfaces per endpoint).
    pub(crate) interfaces: Arc<Vec<(std::net::SocketAddr, String)>>,
    /// Input latencies of ports, measured by the media thread.
    latency: Arc<fluo_sfu::LatencyBoard>,
    /// The media thread's runtime (none in memory).
    media_runtime: Option<tokio::runtime::Handle>,
    /// Every endpoint, for the metrics.
    pub(crate) board: Arc<metrics::Board>,
    /// When receive-only viewers' bandwidth is estimated (`--bwe`; docs/simulcast.md).
    pub(crate) bwe: net::BweMode,
}

fn generate_cert() -> Option<str0m::config::DtlsCert> {
    match str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
    {
        Some(c) => Some(c),
        None => {
            tracing::warn!("could not generate a shared DTLS certificate; one per endpoint");
            None
        }
    }
}

impl WebRtc {
    /// Binds the sockets and starts the media thread.
    pub fn start(settings: NetSettings, events: EventSink) -> std::io::Result<WebRtc> {
        let sockets = net::bind(&settings)?;
        let locals: Vec<_> = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
        let interfaces = net::interfaces_of(&locals);
        for a in &locals {
            tracing::info!("WebRTC media on udp {a}");
        }
        let listeners = net::bind_tcp(&settings, &sockets);
        let tcp_locals: Vec<_> = listeners
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect();
        for a in &tcp_locals {
            tracing::info!("WebRTC media on tcp {a} (ICE-TCP, passive)");
        }
        // At most 3 requests 500 ms apart per socket: a missing STUN server delays the start
        // by 1.5 s and leaves host candidates only.
        let srflx = match settings.stun_server {
            Some(server) => {
                stun::discover(&sockets, server, 3, std::time::Duration::from_millis(500))
            }
            None => vec![],
        };
        let clock = turn::Clock::new();
        // At most 3 s for the TURN allocations; without them, no relay candidates.
        let relays = match &settings.turn {
            Some(url) => turn::allocate(&sockets, url, std::time::Duration::from_secs(3), clock),
            None => vec![],
        };
        let relayed: Vec<_> = relays
            .iter()
            .map(|r| (locals[r.socket], r.relayed))
            .collect();
        let (ctl, rx) = mpsc::unbounded_channel();
        let stun_cache = Arc::new(stun::StunCache::new(64));
        let media_runtime = shell::spawn(
            sockets,
            listeners,
            relays,
            clock,
            stun_cache.clone(),
            rx,
            events,
        )?;
        let w = WebRtc {
            ctl,
            locals: Arc::new(locals),
            tcp_locals: Arc::new(tcp_locals),
            relayed: Arc::new(relayed),
            stun_cache,
            stun_server: settings.stun_server,
            relay_cache: Arc::new(turn::RelayCache::new(16)),
            clock,
            external: (settings.external_ipv4, settings.external_ipv6),
            srflx: Arc::new(srflx),
            next_key: Arc::new(AtomicU64::new(1)),
            own_ports: net::OwnPorts::Bind {
                min: settings.min_port,
                max: settings.max_port,
            },
            pool: Arc::new(pool::RtcPool::new(generate_cert(), true)),
            port_packets: Arc::default(),
            interfaces: Arc::new(interfaces),
            latency: Arc::default(),
            media_runtime: Some(media_runtime),
            board: Arc::default(),
            bwe: settings.bwe,
        };
        w.send(Ctl::Output(w.output()));
        w.send(Ctl::Latency(w.latency.clone()));
        Ok(w)
    }

    /// The media thread's runtime: what reads the media of worker processes runs there, so
    /// that a worker's packet reaches the router without a hop through another thread.
    /// `None` for the in-memory plane.
    pub fn media_runtime(&self) -> Option<tokio::runtime::Handle> {
        self.media_runtime.clone()
    }

    /// A media plane without sockets or threads, for tests: signalling sends its commands to
    /// the returned receiver; feed them to a [`MediaCore`] with [`MediaCore::control`] and move
    /// its datagrams yourself.
    pub fn in_memory(
        locals: Vec<std::net::SocketAddr>,
    ) -> (WebRtc, mpsc::UnboundedReceiver<Control>) {
        let named = locals.iter().map(|a| (*a, "lo".to_string())).collect();
        Self::in_memory_on(named)
    }

    /// [`WebRtc::in_memory`] with local addresses on the named network interfaces.
    pub fn in_memory_on(
        interfaces: Vec<(std::net::SocketAddr, String)>,
    ) -> (WebRtc, mpsc::UnboundedReceiver<Control>) {
        let locals = interfaces.iter().map(|(a, _)| *a).collect();
        let (ctl, rx) = mpsc::unbounded_channel();
        let w = WebRtc {
            ctl,
            locals: Arc::new(locals),
            tcp_locals: Arc::new(vec![]),
            relayed: Arc::new(vec![]),
            stun_cache: Arc::new(stun::StunCache::new(64)),
            stun_server: None,
            relay_cache: Arc::new(turn::RelayCache::new(16)),
            clock: turn::Clock::new(),
            external: (None, None),
            srflx: Arc::new(vec![]),
            next_key: Arc::new(AtomicU64::new(1)),
            own_ports: net::OwnPorts::Virtual(Arc::new(std::sync::atomic::AtomicU16::new(
                IN_MEMORY_OWN_PORTS,
            ))),
            pool: Arc::new(pool::RtcPool::new(generate_cert(), false)),
            port_packets: Arc::default(),
            interfaces: Arc::new(interfaces),
            latency: Arc::default(),
            media_runtime: None,
            board: Arc::default(),
            bwe: net::BweMode::Off,
        };
        w.send(Ctl::Output(w.output()));
        w.send(Ctl::Latency(w.latency.clone()));
        (w, rx)
    }

    /// The same plane with each receive-only viewer's bandwidth estimated (`--bwe on`) or
    /// not (`off`, what the in-memory plane starts with): for the endpoints created from now on.
    pub fn with_bwe(self, on: bool) -> WebRtc {
        self.with_bwe_mode(if on {
            net::BweMode::On
        } else {
            net::BweMode::Off
        })
    }

    /// The same plane with the server's `--bwe` mode: for the endpoints created from now on.
    pub fn with_bwe_mode(mut self, mode: net::BweMode) -> WebRtc {
        self.bwe = mode;
        self
    }

    /// The local media addresses (host candidates).
    pub fn local_addrs(&self) -> &[std::net::SocketAddr] {
        &self.locals
    }

    /// What the endpoints counted (for the server's metrics, not per packet), read by the
    /// media thread between two of its steps; `None` when it does not answer within `wait`.
    pub async fn reading(&self, wait: std::time::Duration) -> Option<RtcReading> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Ctl::RtcReading(self.board.clone(), tx));
        tokio::time::timeout(wait, rx).await.ok()?.ok()
    }

    /// The transcoders the media thread's router runs now, asked from the media thread
    /// (answered between two of its steps; `None` when it does not answer within `wait`).
    pub async fn transcoders(&self, wait: std::time::Duration) -> Option<Vec<TranscoderCodecs>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Ctl::TranscoderReading(tx));
        tokio::time::timeout(wait, rx).await.ok()?.ok()
    }

    /// The pipeline view's reading of what `ask` asks about (byte counts, endpoints' states,
    /// routes, transcoders), from the media thread; `None` when it does not answer within
    /// `wait`.
    pub async fn view_reading(
        &self,
        ask: Arc<ViewAsk>,
        wait: std::time::Duration,
    ) -> Option<ViewReading> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Ctl::ViewReading(ask, tx));
        tokio::time::timeout(wait, rx).await.ok()?.ok()
    }

    /// getStats of the WebRTC endpoint `id` (the pipeline `latency`Stats property as given),
    /// read by the media thread; `Some(None)`: it is not a WebRTC endpoint; `None`: the
    /// media thread did not answer within `wait`.
    pub async fn endpoint_stats(
        &self,
        id: &str,
        wall_ms: u64,
        latency: bool,
        wait: std::time::Duration,
    ) -> Option<Option<serde_json::Map<String, serde_json::Value>>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let ask = crate::core::StatsAsk {
            id: id.to_string(),
            wall_ms,
            latency,
        };
        self.send(Ctl::EndpointStats(ask, tx));
        tokio::time::timeout(wait, rx).await.ok()?.ok()
    }

    /// The factory for `WebRtcEndpoint`.
    pub fn factory(&self) -> Box<dyn fluo_core::Factory> {
        Box::new(element::WebRtcFactory { rtc: self.clone() })
    }

    pub(crate) fn next_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    fn send(&self, c: Ctl) {
        // The media thread only ends with the process.
        let _ = self.ctl.send(Control(c));
    }

    /// How ports deliver their packets to the media thread: through the control queue, but
    /// at most [`MAX_PORT_PACKETS_QUEUED`] at a time. Past that (the media thread is behind,
    /// or an RtpEndpoint is flooded) packets are dropped, as a congested network would, and
    /// memory stays bounded.
    fn output(&self) -> Arc<dyn Fn(u64, MediaPacket) + Send + Sync> {
        let ctl = self.ctl.clone();
        let queued = self.port_packets.clone();
        let dropped = Arc::new(AtomicU64::new(0));
        Arc::new(move |key, pkt| {
            if queued.fetch_add(1, Ordering::AcqRel) >= MAX_PORT_PACKETS_QUEUED {
                queued.fetch_sub(1, Ordering::AcqRel);
                let n = dropped.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    tracing::warn!(
                        dropped = n + 1,
                        "the media thread is behind: port packets dropped"
                    );
                }
                return;
            }
            let slot = InFlight(queued.clone());
            let _ = ctl.send(Control(Ctl::Inject { key, pkt, slot }));
        })
    }

    /// Makes transcoders available to the router: a sink that cannot take a source's codec
    /// is then fed through one instead of getting nothing.
    pub fn set_transcoders(&self, factory: Arc<dyn TranscoderFactory>) {
        self.send(Ctl::Transcoders(factory));
    }

    /// Makes the router follow elements' output settings (forced formats; the transcoders
    /// of an element's output are remade when its settings change).
    pub fn set_output_settings(&self, table: Arc<fluo_sfu::SettingsTable>) {
        self.send(Ctl::Settings(table));
    }
}

/// In memory, the first port of the addresses endpoints get for themselves (on the IP
/// addresses given to [`WebRtc::in_memory`]).
pub const IN_MEMORY_OWN_PORTS: u16 = 50_000;

/// Port packets (players, transcoders, filters, RtpEndpoints) that may wait for the media
/// thread at once: about 20 MB of 1200-byte packets, seconds of media at any real rate.
pub const MAX_PORT_PACKETS_QUEUED: usize = 16_384;

/// A port packet's place in the bounded queue, freed when dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl MediaBus for WebRtc {
    fn add_port(&self, id: &str, make: Box<dyn FnOnce(PortOutput) -> Box<dyn Node> + Send>) -> u64 {
        let key = self.next_key();
        let port = make(PortOutput::new(key, self.output()));
        self.send(Ctl::AddPort {
            key,
            id: id.to_string(),
            port,
        });
        key
    }

    fn remove_port(&self, key: u64) {
        self.send(Ctl::Remove { key });
    }

    fn route(&self, src: u64, sink_id: &str, kind: MediaKind, add: bool) {
        self.send(Ctl::Route {
            src,
            sink_id: sink_id.to_string(),
            kind: Some(kind),
            add,
        });
    }

    fn request_keyframe(&self, key: u64) {
        self.send(Ctl::KeyframeFor { key });
    }

    fn end_of_stream(&self, key: u64) {
        self.send(Ctl::EndOfStream { key });
    }

    fn caps_changed(&self, key: u64) {
        self.send(Ctl::CapsChanged { key });
    }

    fn transcoder_failed(&self, key: u64, why: &str) {
        self.send(Ctl::TranscoderFailed {
            key,
            why: why.to_string(),
        });
    }

    fn input_latency(&self, id: &str) -> [Option<f64>; 2] {
        self.latency.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluo_sfu::{Codec, CodecName};

    fn packet(seq: u16) -> MediaPacket {
        MediaPacket {
            kind: MediaKind::Video,
            codec: Codec::new(CodecName::Vp8),
            seq,
            timestamp: 0,
            ssrc: 1,
            marker: false,
            payload: vec![0; 1200],
        }
    }

    /// A port that produces faster than the media thread takes (a flooded RtpEndpoint) fills
    /// a bounded queue; what is taken frees room again.
    #[test]
    fn port_packets_queue_is_bounded() {
        let (w, mut rx) = WebRtc::in_memory(vec![]);
        while rx.try_recv().is_ok() {}
        let out = w.output();
        for i in 0..(MAX_PORT_PACKETS_QUEUED + 5000) {
            out(7, packet(i as u16));
        }
        let mut queued = vec![];
        while let Ok(c) = rx.try_recv() {
            queued.push(c);
        }
        assert_eq!(
            queued.len(),
            MAX_PORT_PACKETS_QUEUED,
            "the rest were dropped"
        );
        // The media thread handles (drops) 100 of them: 100 more fit, not 101.
        queued.truncate(queued.len() - 100);
        for i in 0..101 {
            out(7, packet(i));
        }
        let mut more = 0;
        while rx.try_recv().is_ok() {
            more += 1;
        }
        assert_eq!(more, 100);
        // Everything handled: the queue is empty again.
        drop(queued);
        assert_eq!(w.port_packets.load(Ordering::Acquire), 0);
    }
}
