//! A WebRtcEndpoint's statistics and media state: counters kept as media passes, what str0m
//! reports every second (its MediaIngressStats, MediaEgressStats and PeerStats, from the RTCP
//! both sides send), and getStats in Kurento's shapes.
//!
//! Units and sources follow KMS: `fractionLost` is RTCP's 8-bit fraction (0-255, as KMS copies
//! it from the report block), `jitter` and `roundTripTime` are in seconds, `remb` and
//! `targetBitrate` in bits per second; inbound entries describe what Fluo receives and
//! reports back (its receiver reports, the NACKs, PLIs and REMB it sends), outbound entries
//! what it sends and what the peer reports about it.

use crate::core::{kind_of, Ep};
use crate::metrics::Figure;
use fluo_core::StatsQuery;
use fluo_sfu::LatencyAvg;
use fluo_sfu::MediaKind;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};
use str0m::media::Mid;
use str0m::stats::{MediaEgressStats, MediaIngressStats, PeerStats};

/// How long without RTCP from the peer before the media state goes back to DISCONNECTED
/// (browsers send reports every second or so; five missed reports of a 5 s interval).
pub(crate) const RTCP_TIMEOUT: Duration = Duration::from_secs(25);

/// Everything getStats reports about an endpoint, and its media state.
#[derive(Debug, Default)]
pub(crate) struct EpStats {
    pub kinds: [KindStats; 2],
    /// Bytes over the connection (every datagram: ICE, DTLS, RTP, RTCP, SCTP), as str0m last
    /// reported them: (received, sent).
    transport: (u64, u64),
    /// Kurento's MediaState: CONNECTED once RTCP from the peer arrived.
    pub media_connected: bool,
    /// When RTCP from the peer last arrived.
    last_rtcp: Option<Instant>,
}

/// Incoming streams of one kind kept apart: the one stream, or each simulcast layer.
const STREAMS: usize = fluo_sfu::simulcast::MAX_LAYERS;

/// The slot of simulcast layer `layer` (`None`: the one stream, slot 0); `None` for a layer
/// the router drops (an id past [`STREAMS`]), which no slot counts.
fn slot_of(layer: Option<u8>) -> Option<usize> {
    let slot = usize::from(layer.unwrap_or(0));
    (slot < STREAMS).then_some(slot)
}

/// One incoming stream of a kind (the kind's one stream, or one simulcast layer).
#[derive(Debug, Default, Clone, Copy)]
struct InStream {
    ssrc: u32,
    /// Extended sequence numbers: the first and the highest seen.
    seq: Option<(u64, u64)>,
    /// Packets received since the stream began.
    packets: u64,
    /// The most packets it had lost at once: loss (expected minus received) goes down when a
    /// retransmission fills a gap, the metrics' counter must not.
    lost_high: u64,
    /// What str0m last reported about it (Fluo's own receiver reports).
    ingress: Option<Ingress>,
}

impl InStream {
    /// Packets lost so far, as RFC 3550 counts them: expected minus received (retransmitted
    /// packets that arrived count as received).
    fn lost(&self) -> i64 {
        let Some((first, max)) = self.seq else {
            return 0;
        };
        let expected = max - first + 1;
        // Duplicates would make it negative.
        expected.saturating_sub(self.packets) as i64
    }
}

/// One media kind of an endpoint.
#[derive(Debug, Default, Clone)]
pub(crate) struct KindStats {
    pub in_packets: u64,
    pub in_bytes: u64,
    /// The incoming streams, by simulcast layer (the one stream is layer 0).
    streams: [InStream; STREAMS],
    /// What the metrics' counters had from streams and sessions that were replaced (their
    /// own counts restart), in [`crate::metrics::Figure`]'s order.
    carried: [u64; crate::metrics::FIGURES],
    /// The clock rate of the incoming codec (jitter is counted in its units).
    in_clock: u32,
    pub out_packets: u64,
    pub out_bytes: u64,
    /// The extended sequence number of the first packet sent.
    pub out_first: Option<u64>,
    egress: Option<Egress>,
    /// The rate sent over the last report interval (bps), and where it was measured from.
    out_rate: f64,
    rate_mark: Option<(Instant, u64)>,
    /// The last REMB sent to the peer for this stream (bps).
    pub remb_sent: u64,
    /// From entering the router to this endpoint (handed to its session, which sends it).
    pub latency: LatencyAvg,
}

/// What str0m last reported about an incoming stream (our own receiver reports).
#[derive(Debug, Clone, Copy)]
struct Ingress {
    plis: u64,
    firs: u64,
    nacks: u64,
    jitter: u32,
    loss: Option<f32>,
}

/// What str0m last reported about an outgoing stream (the peer's receiver reports).
#[derive(Debug, Clone, Copy)]
struct Egress {
    plis: u64,
    firs: u64,
    nacks: u64,
    rtt: Option<Duration>,
    loss: Option<f32>,
    /// The peer's last report: cumulative packets lost, highest sequence number received.
    report: Option<(u64, u64)>,
}

impl KindStats {
    /// An RTP packet of simulcast layer `layer` (`None` without simulcast) arrived (extended
    /// sequence number `seq`, codec clock rate `clock`). A packet of a layer the router drops
    /// counts in the kind's packets and bytes, in no stream's loss.
    pub fn received(&mut self, layer: Option<u8>, ssrc: u32, seq: u64, bytes: usize, clock: u32) {
        self.in_packets += 1;
        self.in_bytes += bytes as u64;
        let Some(slot) = slot_of(layer) else {
            return;
        };
        if ssrc != self.streams[slot].ssrc {
            // A new stream (the peer restarted its sender): loss counts from here, and so do
            // str0m's counters of it; the metrics keep what the old stream had.
            self.retire_stream(slot);
            self.streams[slot].ssrc = ssrc;
        }
        self.in_clock = clock;
        let s = &mut self.streams[slot];
        s.packets += 1;
        s.seq = Some(match s.seq {
            None => (seq, seq),
            Some((first, max)) => (first.min(seq), max.max(seq)),
        });
        s.lost_high = s.lost_high.max(u64::try_from(s.lost()).unwrap_or(0));
    }

    /// The incoming stream in `slot` ends: the metrics keep what it counted.
    fn retire_stream(&mut self, slot: usize) {
        let s = std::mem::take(&mut self.streams[slot]);
        self.carried[Figure::LostIn as usize] += s.lost_high;
        self.carry_ingress(s.ingress);
    }

    fn carry_ingress(&mut self, i: Option<Ingress>) {
        if let Some(i) = i {
            self.carried[Figure::NacksSent as usize] += i.nacks;
            self.carried[Figure::PlisSent as usize] += i.plis;
            self.carried[Figure::FirsSent as usize] += i.firs;
        }
    }

    /// str0m's counters of the incoming streams restart (a new session): keep them.
    fn retire_ingress(&mut self) {
        for slot in 0..STREAMS {
            let i = self.streams[slot].ingress.take();
            self.carry_ingress(i);
        }
    }

    /// The session is rebuilt and the egress fast path restarted (`resent` is what its stream
    /// had retransmitted): every counter of str0m and of the fast path restarts from zero.
    pub(crate) fn retire_session(&mut self, resent: u64) {
        self.retire_ingress();
        if let Some(e) = self.egress.take() {
            self.carried[Figure::NacksReceived as usize] += e.nacks;
            self.carried[Figure::PlisReceived as usize] += e.plis;
            self.carried[Figure::FirsReceived as usize] += e.firs;
        }
        self.carried[Figure::Retransmitted as usize] += resent;
    }

    /// Packets lost so far over the incoming streams.
    fn lost(&self) -> i64 {
        self.streams.iter().map(InStream::lost).sum()
    }

    /// The SSRC the inbound entry names: the lowest layer's that arrived (the one stream's).
    pub(crate) fn in_ssrc(&self) -> u32 {
        self.streams
            .iter()
            .find(|s| s.packets > 0)
            .map_or(0, |s| s.ssrc)
    }

    /// str0m's reports on the incoming streams together: the feedback Fluo sent on all of
    /// them, the worst jitter and loss.
    fn ingress(&self) -> Option<Ingress> {
        let reports = self.streams.iter().filter_map(|s| s.ingress);
        reports.reduce(|a, b| Ingress {
            plis: a.plis + b.plis,
            firs: a.firs + b.firs,
            nacks: a.nacks + b.nacks,
            jitter: a.jitter.max(b.jitter),
            loss: match (a.loss, b.loss) {
                (Some(x), Some(y)) => Some(x.max(y)),
                (x, y) => x.or(y),
            },
        })
    }
}

/// An 8-bit RTCP loss fraction (as KMS reports it), from str0m's fraction (which divides it
/// by 255).
fn fraction_255(loss: Option<f32>) -> f64 {
    f64::from((loss.unwrap_or(0.0) * 255.0).round())
}

fn kind_of_mid(ep: &Ep, mid: Mid) -> Option<MediaKind> {
    ep.rtc.media(mid).map(|m| kind_of(m.kind()))
}

/// str0m's report on an incoming stream (a simulcast layer's, by its rid).
pub(crate) fn ingress(ep: &mut Ep, st: &MediaIngressStats) {
    if let Some(k) = kind_of_mid(ep, st.mid) {
        let layer = st.rid.and_then(|r| crate::core::layer_of(ep, st.mid, r));
        let Some(slot) = slot_of(layer) else {
            return;
        };
        ep.stats.kinds[k].streams[slot].ingress = Some(Ingress {
            plis: st.plis,
            firs: st.firs,
            nacks: st.nacks,
            jitter: st.jitter,
            loss: st.loss,
        });
    }
}

/// str0m's report on an outgoing stream.
pub(crate) fn egress(ep: &mut Ep, st: &MediaEgressStats) {
    if let Some(k) = kind_of_mid(ep, st.mid) {
        let previous = ep.stats.kinds[k].egress;
        let report = st
            .remote
            .as_ref()
            .map(|r| (r.packets_lost, *r.maximum_sequence_number));
        let loss = interval_loss(ep, k, previous, report);
        ep.stats.kinds[k].egress = Some(Egress {
            plis: st.plis,
            firs: st.firs,
            nacks: st.nacks,
            // An interval without a receiver report keeps the last figures.
            rtt: st.rtt.or(previous.and_then(|p| p.rtt)),
            loss: loss.or(previous.and_then(|p| p.loss)),
            report: report.or(previous.and_then(|p| p.report)),
        });
    }
}

/// The egress fast path's figures of each outgoing stream (the peer's reports on it, PLI /
/// FIR / NACK counts, round trip), in place of str0m's report, which a stream str0m never
/// wrote to does not get: read after each RTCP datagram of the peer.
pub(crate) fn egress_streams(ep: &mut Ep) {
    for k in MediaKind::ALL {
        let Some(st) = ep
            .egress
            .as_ref()
            .and_then(|v| v.stream(k))
            .map(|s| s.stats())
        else {
            continue;
        };
        let previous = ep.stats.kinds[k].egress;
        let report = st
            .report
            .map(|r| (u64::try_from(r.packets_lost).unwrap_or(0), r.highest_seq));
        let unchanged = previous.is_some_and(|p| {
            (p.plis, p.firs, p.nacks, p.report) == (st.plis, st.firs, st.nacks, report)
        }) && st.rtt == previous.and_then(|p| p.rtt);
        if unchanged {
            continue;
        }
        let loss = interval_loss(ep, k, previous, report);
        ep.stats.kinds[k].egress = Some(Egress {
            plis: st.plis,
            firs: st.firs,
            nacks: st.nacks,
            rtt: st.rtt.or(previous.and_then(|p| p.rtt)),
            loss: loss.or(previous.and_then(|p| p.loss)),
            report: report.or(previous.and_then(|p| p.report)),
        });
    }
}

/// The fraction lost between the peer's last two reports (RFC 3550 6.4.1), the first one
/// counting from the first packet sent.
fn interval_loss(
    ep: &Ep,
    k: MediaKind,
    previous: Option<Egress>,
    report: Option<(u64, u64)>,
) -> Option<f32> {
    let start = ep.stats.kinds[k]
        .out_first
        .map(|s| (0, s.saturating_sub(1)));
    let before = previous.and_then(|p| p.report).or(start);
    match (before, report) {
        (Some((l0, s0)), Some((l1, s1))) if s1 > s0 => {
            Some(l1.saturating_sub(l0) as f32 / (s1 - s0) as f32)
        }
        _ => None,
    }
}

/// str0m's report on the whole connection (once per interval): transport bytes, and the
/// rate each kind was sent at since the last one.
pub(crate) fn peer(ep: &mut Ep, st: &PeerStats) {
    ep.stats.transport = (st.peer_bytes_rx, st.peer_bytes_tx);
    for k in &mut ep.stats.kinds {
        if let Some((t, bytes)) = k.rate_mark {
            let secs = st.timestamp.saturating_duration_since(t).as_secs_f64();
            if secs > 0.0 {
                k.out_rate = (k.out_bytes - bytes) as f64 * 8.0 / secs;
            }
        }
        k.rate_mark = Some((st.timestamp, k.out_bytes));
    }
}

/// Whether a datagram is an RTCP sender or receiver report (RTP version 2, packet type 200 or
/// 201 first, as a compound packet starts; the first bytes of SRTCP are not encrypted).
/// Feedback alone (NACK, PLI, transport-wide reports) is not: KMS counts reports only.
pub(crate) fn is_report(d: &[u8]) -> bool {
    d.len() >= 8 && (128..192).contains(&d[0]) && (200..=201).contains(&d[1])
}

/// An RTCP report from the peer arrived on a connected endpoint: true when that makes the
/// media state CONNECTED (KMS raises MediaStateChanged when the peer's first report arrives,
/// and DISCONNECTED when its reports stop or the session goes down).
pub(crate) fn rtcp_arrived(ep: &mut Ep, now: Instant) -> bool {
    if !ep.connected {
        return false;
    }
    ep.stats.last_rtcp = Some(now);
    !std::mem::replace(&mut ep.stats.media_connected, true)
}

/// Whether the media state goes back to DISCONNECTED because no RTCP came for
/// [`RTCP_TIMEOUT`] (a session that goes down takes it down too: see `core`).
pub(crate) fn media_lost(ep: &mut Ep, now: Instant) -> bool {
    let quiet = ep
        .stats
        .last_rtcp
        .is_some_and(|t| now.saturating_duration_since(t) > RTCP_TIMEOUT);
    if ep.stats.media_connected && quiet {
        ep.stats.media_connected = false;
        return true;
    }
    false
}

/// The transport entry: bytes over the connection both ways.
fn transport(ep: &Ep, q: &StatsQuery<'_>, id: &str) -> Value {
    let mut t = q.base(id, "transport", "RTCTransportStats");
    t["bytesReceived"] = json!(ep.stats.transport.0);
    // str0m counts what it sent (ICE, DTLS, SCTP, and its RTCP before the egress re-indexed
    // it); the egress what it sent, that re-indexed RTCP included, which counts once.
    let egress_bytes = ep.egress.as_ref().map_or(0, |v| v.stats().bytes);
    let own = egress_bytes.saturating_sub(ep.str0m_rtcp_bytes);
    t["bytesSent"] = json!(ep.stats.transport.1 + own);
    t["activeConnection"] = json!(ep.connected);
    for k in [
        "rtcpTransportStatsId",
        "selectedCandidatePairId",
        "localCertificateId",
        "remoteCertificateId",
    ] {
        t[k] = json!("");
    }
    t
}

/// An inbound RTP entry's figures: what arrived of `c`'s kind and the feedback sent for it.
fn fill_inbound(v: &mut Value, c: &KindStats) {
    let i = c.ingress();
    v["packetsReceived"] = json!(c.in_packets);
    v["bytesReceived"] = json!(c.in_bytes);
    v["packetsLost"] = json!(c.lost());
    v["fractionLost"] = json!(fraction_255(i.and_then(|i| i.loss)));
    let jitter = i.map_or(0, |i| i.jitter);
    v["jitter"] = json!(if c.in_clock > 0 {
        f64::from(jitter) / f64::from(c.in_clock)
    } else {
        0.0
    });
    v["pliCount"] = json!(i.map_or(0, |i| i.plis));
    v["firCount"] = json!(i.map_or(0, |i| i.firs));
    v["nackCount"] = json!(i.map_or(0, |i| i.nacks));
    v["remb"] = json!(c.remb_sent);
}

/// An outbound RTP entry's figures for `kind`: what was sent and what the peer reported on it.
fn fill_outbound(v: &mut Value, ep: &Ep, kind: MediaKind) {
    let c = &ep.stats.kinds[kind];
    let e = c.egress;
    // The round trip of the connection, from the peer's reports on this stream or, without
    // one yet, on the other.
    let rtt = e
        .and_then(|e| e.rtt)
        .or(ep.stats.kinds[kind.other()].egress.and_then(|e| e.rtt));
    v["packetsSent"] = json!(c.out_packets);
    v["bytesSent"] = json!(c.out_bytes);
    v["packetsLost"] = json!(e.and_then(|e| e.report).map_or(0, |r| r.0));
    v["fractionLost"] = json!(fraction_255(e.and_then(|e| e.loss)));
    v["roundTripTime"] = json!(rtt.map_or(0.0, |r| r.as_secs_f64()));
    v["targetBitrate"] = json!(c.out_rate);
    v["pliCount"] = json!(e.map_or(0, |e| e.plis));
    v["firCount"] = json!(e.map_or(0, |e| e.firs));
    v["nackCount"] = json!(e.map_or(0, |e| e.nacks));
    v["remb"] = json!(if kind == MediaKind::Video {
        ep.receive_estimate.unwrap_or(0)
    } else {
        0
    });
}

/// getStats in Kurento's shapes: one inbound and one outbound RTP entry per media kind that
/// carried packets, the transport, the session (data channels) and, with latencyStats, the
/// endpoint's latencies.
pub(crate) fn report(ep: &mut Ep, q: &StatsQuery<'_>) -> Map<String, Value> {
    let short = ep.id.rsplit('/').next().unwrap_or(&ep.id).to_string();
    let mut out = Map::new();
    let transport_id = format!("{short}_transport");
    for kind in MediaKind::ALL {
        let name = kind.wire_name();
        if !q.wants(name) {
            continue;
        }
        let out_ssrc = ep.mid_of_kind(kind).and_then(|mid| {
            ep.rtc
                .direct_api()
                .stream_tx_by_mid(mid, None)
                .map(|s| *s.ssrc())
        });
        let c = &ep.stats.kinds[kind];
        let rtp = |dir: &str, inbound: bool, ssrc: u32| {
            let id = format!("{short}_{dir}_{}", name.to_lowercase());
            let v = q.rtp_entry(&id, inbound, ssrc, name, &transport_id);
            (id, v)
        };
        if c.in_packets > 0 {
            let (id, mut v) = rtp("in", true, c.in_ssrc());
            fill_inbound(&mut v, c);
            out.insert(id, v);
        }
        if c.out_packets > 0 {
            let (id, mut v) = rtp("out", false, out_ssrc.unwrap_or_default());
            fill_outbound(&mut v, ep, kind);
            if let Some(layer) = ep.layer_out.as_ref().filter(|_| kind == MediaKind::Video) {
                // Fluo's extension: the simulcast layer this endpoint is sent.
                v["fluoLayer"] = Value::Object(fluo_core::layer_json(layer));
            }
            if let Some(bps) = ep.bwe_estimate.filter(|_| kind == MediaKind::Video) {
                // Fluo's extension: its send-side bandwidth estimate (`--bwe on`).
                v["fluoBandwidthEstimate"] = json!(bps);
            }
            out.insert(id, v);
        }
    }
    let t = transport(ep, q, &transport_id);
    out.insert(transport_id, t);
    if q.wants("DATA") {
        let id = format!("{short}_session");
        let mut pc = q.base(&id, "session", "RTCPeerConnectionStats");
        pc["dataChannelsOpened"] = json!(ep.channels_opened);
        pc["dataChannelsClosed"] = json!(ep.channels_closed);
        out.insert(id, pc);
    }
    let lat = MediaKind::ALL.map(|k| ep.stats.kinds[k].latency.get());
    // Media is handed to the session, which sends it, when it reaches the endpoint: the end
    // to end latency is the input latency.
    q.endpoint_entry(&mut out, &lat, &lat);
    out
}

/// An endpoint's counters for the server's metrics, per kind, in
/// [`crate::metrics::Figure`]'s order.
pub(crate) fn figures(ep: &Ep) -> [[u64; crate::metrics::FIGURES]; 2] {
    let mut out = [[0; crate::metrics::FIGURES]; 2];
    for k in MediaKind::ALL {
        let c = &ep.stats.kinds[k];
        let (i, e) = (c.ingress(), c.egress);
        let resent = ep
            .egress
            .as_ref()
            .and_then(|v| v.stream(k))
            .map_or(0, |s| s.stats().packets_resent);
        let now = [
            c.in_packets,
            c.in_bytes,
            c.out_packets,
            c.out_bytes,
            c.streams.iter().map(|s| s.lost_high).sum(),
            i.map_or(0, |i| i.nacks),
            i.map_or(0, |i| i.plis),
            i.map_or(0, |i| i.firs),
            e.map_or(0, |e| e.nacks),
            e.map_or(0, |e| e.plis),
            e.map_or(0, |e| e.firs),
            resent,
        ];
        for ((o, n), carried) in out[k].iter_mut().zip(now).zip(c.carried) {
            *o = n + carried;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_expected_minus_received_and_restarts_with_a_new_stream() {
        let mut k = KindStats::default();
        for seq in [100, 101, 103, 104, 107] {
            k.received(None, 7, seq, 10, 90_000);
        }
        assert_eq!(k.lost(), 3, "102, 105 and 106 missing");
        // 102 comes back (a retransmission): one fewer lost.
        k.received(None, 7, 102, 10, 90_000);
        assert_eq!(k.lost(), 2);
        // A new SSRC: counting starts again.
        k.received(None, 8, 5000, 10, 90_000);
        k.received(None, 8, 5001, 10, 90_000);
        assert_eq!((k.lost(), k.in_ssrc()), (0, 8));
        assert_eq!(
            k.carried[Figure::LostIn as usize],
            3,
            "the metrics keep the old loss"
        );
        // Simulcast layers interleaved, each with its own numbers: nothing lost, nothing
        // restarted.
        let mut k = KindStats::default();
        for i in 0..100u64 {
            k.received(None, 10, 1000 + i, 100, 90_000);
            k.received(Some(1), 11, 50_000 + i, 300, 90_000);
            k.received(Some(2), 12, 7 + 3 * i, 1000, 90_000);
            k.received(Some(2), 12, 8 + 3 * i, 1000, 90_000);
            k.received(Some(2), 12, 9 + 3 * i, 1000, 90_000);
        }
        assert_eq!((k.lost(), k.in_packets, k.in_ssrc()), (0, 500, 10));
        assert_eq!(k.carried, [0; crate::metrics::FIGURES]);
        k.received(Some(1), 11, 50_101, 300, 90_000);
        assert_eq!(k.lost(), 1, "one of layer 1's");
        // Layer 7, the last told apart, with packets of layers the router drops (ids past
        // 7, other SSRCs) between its own: those count in no stream, so layer 7's is not
        // restarted at each of them (they used to share its slot).
        for i in 0..10u64 {
            k.received(Some(7), 17, 300 + i, 100, 90_000);
            k.received(Some(8), 18, 9000 + i, 100, 90_000);
            k.received(Some(u8::MAX), 19, 60_000 + i, 100, 90_000);
        }
        assert_eq!((k.lost(), k.in_packets), (1, 531));
        assert_eq!(k.carried, [0; crate::metrics::FIGURES], "nothing restarted");
        assert_eq!(fraction_255(Some(25.0 / 255.0)), 25.0);
        assert_eq!(fraction_255(None), 0.0);
    }

    #[test]
    fn reports_are_told_from_rtp_and_feedback_by_their_packet_type() {
        assert!(is_report(&[0x80, 200, 0, 6, 1, 2, 3, 4]), "SR");
        assert!(is_report(&[0x81, 201, 0, 7, 1, 2, 3, 4]), "RR");
        assert!(
            !is_report(&[0x81, 205, 0, 4, 1, 2, 3, 4]),
            "transport feedback alone"
        );
        assert!(
            !is_report(&[0x80, 96, 0, 1, 1, 2, 3, 4]),
            "RTP, payload type 96"
        );
        assert!(!is_report(&[0x80, 0xc8, 0, 1, 1, 2, 3, 4][..4]));
        assert!(!is_report(&[0x00, 200, 0, 1, 1, 2, 3, 4]), "STUN");
        assert!(!is_report(&[0x80, 200]));
    }
}
