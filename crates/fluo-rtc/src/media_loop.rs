//! The media thread: sockets in, timers, str0m outputs out, RTP forwarded along the routes.

use crate::EventSink;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};
use str0m::format::CodecSpec;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::mpsc;

/// Audio or video, as an index.
pub(crate) type Kind = usize;
pub(crate) const AUDIO: Kind = 0;
pub(crate) const VIDEO: Kind = 1;

pub(crate) fn kind_of(k: MediaKind) -> Kind {
    if k == MediaKind::Audio {
        AUDIO
    } else {
        VIDEO
    }
}

pub(crate) fn kind_name(k: Kind) -> &'static str {
    if k == AUDIO {
        "AUDIO"
    } else {
        "VIDEO"
    }
}

/// Continuity of one outgoing stream across source changes.
#[derive(Debug, Clone, Copy)]
struct OutRewrite {
    /// (source endpoint key, source SSRC) currently feeding this output.
    source: (u64, u32),
    seq_offset: i64,
    ts_offset: u32,
    last_seq: u64,
    last_ts: u32,
    last_at: Instant,
}

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
    pub flowing_in: [bool; 2],
    pub flowing_out: [bool; 2],
    out: [Option<OutRewrite>; 2],
    last_keyframe_request: [Option<Instant>; 2],
    mismatch_reported: [bool; 2],
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
            flowing_in: [false; 2],
            flowing_out: [false; 2],
            out: [None, None],
            last_keyframe_request: [None, None],
            mismatch_reported: [false; 2],
        }
    }

    fn mid_of_kind(&self, kind: Kind) -> Option<Mid> {
        // The first negotiated m-line of that kind carries Kurento's single audio/video track.
        let sdp = self.local_sdp.as_deref()?;
        let mut cur_kind: Option<Kind> = None;
        for l in sdp.lines() {
            if let Some(m) = l.strip_prefix("m=") {
                cur_kind = if m.starts_with("audio") {
                    Some(AUDIO)
                } else if m.starts_with("video") {
                    Some(VIDEO)
                } else {
                    None
                };
            } else if let Some(mid) = l.trim_end().strip_prefix("a=mid:") {
                if cur_kind == Some(kind) {
                    return Some(Mid::from(mid));
                }
            }
        }
        None
    }
}

pub(crate) type EpRef = Arc<Mutex<Ep>>;

pub(crate) fn lock(ep: &EpRef) -> MutexGuard<'_, Ep> {
    // A panic while holding an endpoint lock is a bug; keep serving the others.
    ep.lock().unwrap_or_else(|p| p.into_inner())
}

/// Commands from signalling to the media thread.
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
    Route {
        src: u64,
        sink_id: String,
        kind: Kind,
        add: bool,
    },
    Keyframe {
        key: u64,
    },
}

struct Entry {
    ep: EpRef,
    deadline: Instant,
}

struct Loop {
    sockets: Vec<tokio::net::UdpSocket>,
    locals: Vec<SocketAddr>,
    eps: HashMap<u64, Entry>,
    by_id: HashMap<String, u64>,
    by_remote: HashMap<(usize, SocketAddr), u64>,
    routes: HashMap<(u64, Kind), Vec<u64>>,
    events: EventSink,
}

pub(crate) fn spawn(
    sockets: Vec<UdpSocket>,
    ctl: mpsc::UnboundedReceiver<Ctl>,
    events: EventSink,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("fluo-media".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the media runtime starts");
            rt.block_on(async move {
                let locals = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
                let sockets = sockets
                    .into_iter()
                    .filter_map(|s| tokio::net::UdpSocket::from_std(s).ok())
                    .collect();
                let mut l = Loop {
                    sockets,
                    locals,
                    eps: HashMap::new(),
                    by_id: HashMap::new(),
                    by_remote: HashMap::new(),
                    routes: HashMap::new(),
                    events,
                };
                l.run(ctl).await;
            });
        })?;
    Ok(())
}

/// Receives one datagram from whichever socket has one.
async fn recv_any(sockets: &[tokio::net::UdpSocket]) -> (usize, Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    std::future::poll_fn(|cx| {
        for (i, s) in sockets.iter().enumerate() {
            let mut rb = tokio::io::ReadBuf::new(&mut buf);
            match s.poll_recv_from(cx, &mut rb) {
                Poll::Ready(Ok(src)) => return Poll::Ready((i, rb.filled().to_vec(), src)),
                Poll::Ready(Err(e)) => {
                    tracing::debug!("udp receive error: {e}");
                    cx.waker().wake_by_ref();
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

impl Loop {
    async fn run(&mut self, mut ctl: mpsc::UnboundedReceiver<Ctl>) {
        loop {
            let next = self
                .eps
                .values()
                .map(|e| e.deadline)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                c = ctl.recv() => match c {
                    Some(c) => self.control(c),
                    None => return,
                },
                (i, data, src) = recv_any(&self.sockets) => self.receive(i, &data, src),
                _ = tokio::time::sleep_until(next.into()) => self.timeouts(),
            }
        }
    }

    fn control(&mut self, c: Ctl) {
        match c {
            Ctl::Add { key, ep } => {
                let id = lock(&ep).id.clone();
                self.by_id.insert(id, key);
                self.eps.insert(
                    key,
                    Entry {
                        ep,
                        deadline: Instant::now(),
                    },
                );
                self.drive(key);
            }
            Ctl::Remove { key } => {
                if let Some(e) = self.eps.remove(&key) {
                    let id = lock(&e.ep).id.clone();
                    self.by_id.remove(&id);
                }
                self.by_remote.retain(|_, k| *k != key);
                self.routes.retain(|(s, _), _| *s != key);
                for sinks in self.routes.values_mut() {
                    sinks.retain(|k| *k != key);
                }
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
                let sinks = self.routes.entry((src, kind)).or_default();
                sinks.retain(|k| *k != sink);
                if add {
                    sinks.push(sink);
                    // A new viewer needs a keyframe to start decoding.
                    self.request_keyframe(src, kind, true);
                }
            }
            Ctl::Keyframe { key } => {
                self.request_keyframe(key, VIDEO, true);
            }
        }
    }

    fn receive(&mut self, sock: usize, data: &[u8], source: SocketAddr) {
        let destination = self.locals[sock];
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        let key = match self.by_remote.get(&(sock, source)) {
            Some(k)
                if self
                    .eps
                    .get(k)
                    .is_some_and(|e| lock(&e.ep).rtc.accepts(&input)) =>
            {
                *k
            }
            _ => {
                let found = self
                    .eps
                    .iter()
                    .find(|(_, e)| lock(&e.ep).rtc.accepts(&input))
                    .map(|(k, _)| *k);
                let Some(k) = found else {
                    tracing::trace!(%source, "no endpoint accepts this datagram");
                    return;
                };
                self.by_remote.insert((sock, source), k);
                k
            }
        };
        if let Some(e) = self.eps.get(&key) {
            let mut ep = lock(&e.ep);
            if let Err(err) = ep.rtc.handle_input(input) {
                tracing::debug!(id = %ep.id, "input rejected: {err}");
            }
        }
        self.drive(key);
    }

    fn timeouts(&mut self) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .eps
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            if let Some(e) = self.eps.get(&k) {
                let mut ep = lock(&e.ep);
                if ep.rtc.is_alive() {
                    let _ = ep.rtc.handle_input(Input::Timeout(now));
                }
            }
            self.drive(k);
        }
    }

    /// Drains an endpoint's outputs: sends datagrams, raises events, forwards media.
    fn drive(&mut self, key: u64) {
        let Some(entry) = self.eps.get(&key) else {
            return;
        };
        let ep_ref = entry.ep.clone();
        let mut forwards: Vec<Forward> = vec![];
        let mut keyframe_asks: Vec<Kind> = vec![];
        let deadline;
        {
            let mut ep = lock(&ep_ref);
            loop {
                if !ep.rtc.is_alive() {
                    deadline = Instant::now() + Duration::from_secs(3600);
                    break;
                }
                match ep.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => {
                        deadline = t;
                        break;
                    }
                    Ok(Output::Transmit(t)) => {
                        if let Some(i) = self.locals.iter().position(|a| *a == t.source) {
                            let _ = self.sockets[i].try_send_to(&t.contents, t.destination);
                        }
                    }
                    Ok(Output::Event(ev)) => {
                        self.event(&mut ep, ev, &mut forwards, &mut keyframe_asks)
                    }
                    Err(e) => {
                        tracing::warn!(id = %ep.id, "endpoint failed: {e}");
                        ep.rtc.disconnect();
                    }
                }
            }
        }
        if let Some(e) = self.eps.get_mut(&key) {
            e.deadline = deadline;
        }
        for kind in keyframe_asks {
            // A viewer asked for a keyframe: ask whoever feeds it.
            let sources: Vec<u64> = self
                .routes
                .iter()
                .filter(|((_, k), sinks)| *k == kind && sinks.contains(&key))
                .map(|((s, _), _)| *s)
                .collect();
            for s in sources {
                self.request_keyframe(s, kind, false);
            }
        }
        for f in forwards {
            let sinks = self.routes.get(&(key, f.kind)).cloned().unwrap_or_default();
            for sink in sinks {
                self.forward(key, sink, &f);
            }
        }
    }

    fn event(
        &self,
        ep: &mut Ep,
        ev: Event,
        forwards: &mut Vec<Forward>,
        keyframe_asks: &mut Vec<Kind>,
    ) {
        let emit = |name: &str, fields: Map<String, Value>| (self.events)(&ep.id, name, fields);
        match ev {
            Event::IceConnectionStateChange(s) => {
                let state = match s {
                    IceConnectionState::New => "GATHERING",
                    IceConnectionState::Checking => "CONNECTING",
                    IceConnectionState::Connected => "CONNECTED",
                    IceConnectionState::Completed => "READY",
                    IceConnectionState::Disconnected => "FAILED",
                };
                emit(
                    "IceComponentStateChanged",
                    obj(json!({"streamId": 1, "componentId": 1, "state": state})),
                );
                if s == IceConnectionState::Disconnected && ep.connected {
                    ep.connected = false;
                    emit(
                        "ConnectionStateChanged",
                        obj(json!({"oldState": "CONNECTED", "newState": "DISCONNECTED"})),
                    );
                    emit(
                        "MediaStateChanged",
                        obj(json!({"oldState": "CONNECTED", "newState": "DISCONNECTED"})),
                    );
                }
            }
            Event::Connected => {
                ep.connected = true;
                emit(
                    "ConnectionStateChanged",
                    obj(json!({"oldState": "DISCONNECTED", "newState": "CONNECTED"})),
                );
                emit(
                    "MediaStateChanged",
                    obj(json!({"oldState": "DISCONNECTED", "newState": "CONNECTED"})),
                );
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
                if !ep.flowing_in[kind] {
                    ep.flowing_in[kind] = true;
                    emit("MediaFlowInStateChanged", flow(true, kind));
                }
                let pt = pkt.header.payload_type;
                let codec = ep
                    .rtc
                    .codec_config()
                    .params()
                    .iter()
                    .find(|p| p.pt() == pt)
                    .map(|p| p.spec());
                let Some(codec) = codec else {
                    tracing::trace!(id = %ep.id, %pt, "RTP with an unknown payload type dropped");
                    return;
                };
                forwards.push(Forward { kind, codec, pkt });
            }
            Event::StreamPaused(p) => {
                if let Some(kind) = ep.rtc.media(p.mid).map(|m| kind_of(m.kind())) {
                    if p.paused && ep.flowing_in[kind] {
                        ep.flowing_in[kind] = false;
                        emit("MediaFlowInStateChanged", flow(false, kind));
                    }
                }
            }
            Event::KeyframeRequest(r) => {
                if let Some(kind) = ep.rtc.media(r.mid).map(|m| kind_of(m.kind())) {
                    keyframe_asks.push(kind);
                }
            }
            Event::Closed => {
                tracing::debug!(id = %ep.id, "peer closed the connection");
            }
            _ => {}
        }
    }

    fn request_keyframe(&mut self, src: u64, kind: Kind, force: bool) {
        if kind != VIDEO {
            return;
        }
        let Some(e) = self.eps.get(&src) else {
            return;
        };
        {
            let mut ep = lock(&e.ep);
            let now = Instant::now();
            // At most one request per 500 ms per source, however many viewers ask.
            if let Some(last) = ep.last_keyframe_request[kind] {
                if !force && now.duration_since(last) < Duration::from_millis(500) {
                    return;
                }
                if force && now.duration_since(last) < Duration::from_millis(100) {
                    return;
                }
            }
            let Some(mid) = ep.mid_of_kind(kind) else {
                return;
            };
            ep.last_keyframe_request[kind] = Some(now);
            if let Some(rx) = ep.rtc.direct_api().stream_rx_by_mid(mid, None) {
                rx.request_keyframe(KeyframeRequestKind::Pli);
            }
        }
        self.drive(src);
    }

    fn forward(&mut self, src: u64, sink: u64, f: &Forward) {
        let (kind, pkt) = (f.kind, &f.pkt);
        let Some(e) = self.eps.get(&sink) else {
            return;
        };
        {
            let mut ep = lock(&e.ep);
            if !ep.connected {
                return;
            }
            let Some(mid) = ep.mid_of_kind(kind) else {
                return;
            };
            // Map the payload type by codec: the two sides may number them differently.
            let Some(pt) = map_pt(&ep.rtc, &f.codec) else {
                if !ep.mismatch_reported[kind] {
                    ep.mismatch_reported[kind] = true;
                    tracing::warn!(id = %ep.id, codec = ?f.codec.codec, "sink did not negotiate the source's codec; transcoding is not available yet, media not forwarded");
                    (self.events)(
                        &ep.id,
                        "Error",
                        obj(json!({
                            "description": format!("The {} codec {:?} of the source was not negotiated by this endpoint and transcoding is not available", kind_name(kind), f.codec.codec),
                            "errorCode": 40005,
                            "type": "CODEC_MISMATCH",
                        })),
                    );
                }
                return;
            };
            let now = Instant::now();
            let in_seq = *pkt.seq_no;
            let in_ts = pkt.header.timestamp;
            let source = (src, *pkt.header.ssrc);
            let clock = if kind == AUDIO { 48_000u64 } else { 90_000 };
            let rw = match ep.out[kind] {
                Some(r) if r.source == source => r,
                prev => {
                    // A new source: continue right after what this output last sent.
                    let (next_seq, next_ts) = match prev {
                        Some(p) => {
                            let gap = now.duration_since(p.last_at).as_millis() as u64;
                            (
                                p.last_seq + 1,
                                p.last_ts.wrapping_add(((gap * clock) / 1000).max(1) as u32),
                            )
                        }
                        None => (u64::from(in_seq as u16 & 0x3fff) + 1, in_ts),
                    };
                    OutRewrite {
                        source,
                        seq_offset: next_seq as i64 - in_seq as i64,
                        ts_offset: next_ts.wrapping_sub(in_ts),
                        last_seq: 0,
                        last_ts: 0,
                        last_at: now,
                    }
                }
            };
            let out_seq = in_seq as i64 + rw.seq_offset;
            if out_seq <= 0 {
                return;
            }
            let out_seq = out_seq as u64;
            let out_ts = in_ts.wrapping_add(rw.ts_offset);
            let mut next = rw;
            if out_seq >= rw.last_seq {
                next.last_seq = out_seq;
                next.last_ts = out_ts;
                next.last_at = now;
            }
            ep.out[kind] = Some(next);
            let mut api = ep.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, None) else {
                return;
            };
            let write = RtpWrite::new(pt, SeqNo::from(out_seq), out_ts, now, pkt.payload.clone())
                .marker(pkt.header.marker)
                .ext_vals(pkt.header.ext_vals.clone())
                .nackable(kind == VIDEO);
            tx.write_rtp(write);
            if !ep.flowing_out[kind] {
                ep.flowing_out[kind] = true;
                (self.events)(&ep.id, "MediaFlowOutStateChanged", flow(true, kind));
            }
        }
        self.drive(sink);
    }
}

/// One incoming packet to forward, with the codec its payload type means at its source.
struct Forward {
    kind: Kind,
    codec: CodecSpec,
    pkt: str0m::rtp::RtpPacket,
}

/// The sink's payload type for a codec (matched by name, clock rate and, for H.264, profile
/// and packetization mode), never by number: the two sides may number codecs differently.
fn map_pt(sink: &Rtc, codec: &CodecSpec) -> Option<str0m::media::Pt> {
    let params = sink.codec_config().params();
    let same = |p: &&str0m::format::PayloadParams| {
        let s = p.spec();
        s.codec == codec.codec && s.clock_rate == codec.clock_rate
    };
    let exact = params.iter().filter(same).find(|p| {
        let (a, b) = (p.spec().format, codec.format);
        a.profile_level_id == b.profile_level_id && a.packetization_mode == b.packetization_mode
    });
    exact.or_else(|| params.iter().find(same)).map(|p| p.pt())
}

fn flow(flowing: bool, kind: Kind) -> Map<String, Value> {
    obj(json!({
        "state": if flowing { "FLOWING" } else { "NOT_FLOWING" },
        "padName": "default",
        "mediaType": kind_name(kind),
    }))
}

pub(crate) fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
