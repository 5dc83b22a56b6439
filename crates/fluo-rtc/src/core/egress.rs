//! The per-viewer egress fast path in the media core (issue 15, docs/egress-fast-path.md):
//! a WebRTC endpoint's outgoing media does not go through its str0m session. The router's
//! packet is rewritten for the viewer, SRTP-protected with the keys its DTLS handshake
//! exported (captured by `fluo_egress::keys`) and queued in one [`Batch`] that the shell sends
//! with `sendmmsg` after each receive batch (TURN and ICE-TCP paths through the shell).
//!
//! str0m keeps ICE, DTLS, SCTP, the whole receive path, RTCP scheduling and composition and
//! the keyframe-request and REMB events; it writes no RTP on an endpoint with an egress. Its
//! SRTCP is re-indexed by Fluo on the way out (sender reports with Fluo's counts), the
//! viewer's SRTCP is read by Fluo first (NACKs answered as RTX from one resend cache per
//! source, reports kept for getStats) and then handed to str0m without the report blocks on
//! Fluo's streams.
//!
//! On by default; `FLUO_EGRESS=off` (or `0`, `false`) in the environment sends through str0m
//! as before, for every endpoint created after the process started.

use super::{lock, Ep, Forward, MediaCore, Outbox};
use fluo_egress::{
    Batch, Clock, ExtPlan, Path, Rtx, SocketId, Source, SourcePacket, StreamOut, Viewer,
};
use fluo_sfu::{Header, MediaKind, NodeId, Packet};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;
use str0m::net::Protocol;
use str0m::rtp::{Extension, ExtensionValues};

/// Whether the process's WebRTC endpoints send through the egress fast path: set once, by
/// [`set_egress`] or at the first endpoint from `FLUO_EGRESS`.
static ON: OnceLock<bool> = OnceLock::new();

/// Whether new endpoints send through the egress fast path (see the module).
pub(crate) fn enabled() -> bool {
    *ON.get_or_init(|| {
        let off = std::env::var("FLUO_EGRESS")
            .is_ok_and(|v| matches!(v.trim(), "0" | "off" | "false" | "no"));
        if off {
            tracing::info!("egress fast path off (FLUO_EGRESS): media is sent through str0m");
        }
        !off
    })
}

/// Whether the router started a sink's line afresh since its last packet (a new route, a
/// source or layer switch, a transcoder put in or taken out): the source's SSRC or the offset
/// from its sequence numbers to the line's changed. `last` keeps them.
pub(super) fn line_restarted(
    last: &mut Option<(u32, u16)>,
    pkt: &Packet<'_>,
    header: &Header,
) -> bool {
    let line = (pkt.ssrc, header.seq.wrapping_sub(pkt.seq));
    last.replace(line).is_some_and(|l| l != line)
}

/// Sets whether this process's WebRTC endpoints send through the egress fast path, in place of
/// `FLUO_EGRESS`: it takes effect only before the first endpoint is made (the choice is made
/// once per process). Whether the process has `on` now. For tests that run on str0m's path.
pub fn set_egress(on: bool) -> bool {
    let _ = ON.set(on);
    ON.get() == Some(&on)
}

/// The ids the plain source packet gives the publisher's extensions that viewers take
/// (written from what str0m parsed; the viewer's own ids replace them).
const EXT_AUDIO_LEVEL: u8 = 1;
const EXT_VIDEO_ORIENTATION: u8 = 2;
const EXT_CONTENT_TYPE: u8 = 3;
const EXT_DD: u8 = 4;

/// What a packet carries through the router to WebRTC sinks: the publisher's parsed header
/// extensions (for sessions that send through str0m) and the packet as plain RTP with the
/// extensions viewers take (for the egress, and its resend cache). Written once per source
/// packet into a reused buffer.
#[derive(Default)]
pub(crate) struct Carried {
    pub(crate) ext_vals: Option<ExtensionValues>,
    pub(crate) plain: Vec<u8>,
    /// The packet's dependency descriptor, for the router (see [`Carried::take_dd`]).
    dd: Vec<u8>,
    has_dd: bool,
}

impl Carried {
    /// Copies the dependency descriptor of `ext_vals` into `dd` (its buffer kept for the next
    /// packet); unless `keep`, takes it out of `ext_vals` (the egress writes it from `plain`,
    /// and the sinks' copies of `ext_vals` then carry no user values to clone).
    pub(crate) fn take_dd(&mut self, keep: bool) {
        self.dd.clear();
        self.has_dd = false;
        let Some(e) = self.ext_vals.as_mut() else {
            return;
        };
        if let Some(d) = crate::dd::bytes(Some(e)) {
            self.dd.extend_from_slice(d);
            self.has_dd = true;
            if !keep {
                // The descriptor is the only user value Fluo parses.
                e.user_values = Default::default();
            }
        }
    }

    /// The packet's dependency descriptor, if it had one.
    pub(crate) fn dd(&self) -> Option<&[u8]> {
        self.has_dd.then_some(self.dd.as_slice())
    }

    /// Takes `f`'s extensions (and its dependency descriptor, see [`Carried::take_dd`]) and
    /// writes it as plain RTP.
    pub(crate) fn fill(&mut self, f: &mut Forward) {
        self.ext_vals = f.ext_vals.take();
        self.take_dd(false);
        let b = &mut self.plain;
        b.clear();
        // One-byte elements (id, value), then the descriptor.
        let mut one = [(0u8, 0u8); 3];
        let mut n = 0;
        if let Some(e) = &self.ext_vals {
            if let (Some(level), Some(voice)) = (e.audio_level, e.voice_activity) {
                let v = if voice { 0x80 } else { 0 } | (level.unsigned_abs() & 0x7f);
                one[n] = (EXT_AUDIO_LEVEL, v);
                n += 1;
            }
            if let Some(o) = e.video_orientation {
                one[n] = (EXT_VIDEO_ORIENTATION, o as u8);
                n += 1;
            }
            if let Some(c) = e.video_content_type {
                one[n] = (EXT_CONTENT_TYPE, c);
                n += 1;
            }
        }
        // Viewers get an AV1 stream's (see `dd`); another codec's is the router's only.
        let av1 = f.codec.name == fluo_sfu::CodecName::Av1;
        let dd = (self.has_dd && av1)
            .then_some(&self.dd[..])
            .filter(|d| d.len() <= 255);
        let x = if n > 0 || dd.is_some() { 0x10 } else { 0 };
        b.push(0x80 | x);
        b.push(if f.marker { 0x80 } else { 0 } | 96);
        b.extend_from_slice(&f.seq.to_be_bytes());
        b.extend_from_slice(&f.ts.to_be_bytes());
        b.extend_from_slice(&f.ssrc.to_be_bytes());
        if x != 0 {
            // The two-byte form when there is a descriptor (it may be longer than 16 bytes).
            let two = dd.is_some();
            let at = b.len();
            b.extend_from_slice(if two {
                &[0x10, 0x00, 0, 0]
            } else {
                &[0xbe, 0xde, 0, 0]
            });
            for &(id, v) in &one[..n] {
                if two {
                    b.extend_from_slice(&[id, 1, v]);
                } else {
                    b.extend_from_slice(&[id << 4, v]);
                }
            }
            if let Some(d) = dd {
                b.extend_from_slice(&[EXT_DD, d.len() as u8]);
                b.extend_from_slice(d);
            }
            while !(b.len() - at).is_multiple_of(4) {
                b.push(0);
            }
            let words = ((b.len() - at - 4) / 4) as u16;
            b[at + 2..at + 4].copy_from_slice(&words.to_be_bytes());
        }
        b.extend_from_slice(&f.payload);
    }
}

/// What the media core shares with its WebRTC nodes for the egress (in the [`Outbox`]).
#[derive(Default)]
pub(crate) struct Egress {
    /// Datagrams for the shell: media, RTX, and str0m's SRTCP re-indexed.
    pub(crate) batch: Batch,
    /// One resend cache per source (and simulcast layer: each has its own sequence numbers)
    /// whose video an egress sink takes.
    pub(crate) sources: HashMap<(NodeId, u8), Source>,
    /// The node (and layer) whose packet the router forwards now, and whether an egress sink
    /// took it.
    pub(crate) current: Option<(NodeId, u8)>,
    pub(crate) used: bool,
    /// The shell's sockets by [`SocketId`]: transport and local address (a TURN allocation
    /// by its relayed address).
    pub(crate) sockets: Vec<(Protocol, SocketAddr)>,
    /// The viewer's SRTCP as str0m reads it (reused).
    pub(crate) for_str0m: Vec<u8>,
    pub(crate) clock: Clock,
}

impl Egress {
    fn socket_id(&mut self, proto: Protocol, local: SocketAddr) -> SocketId {
        let at = match self.sockets.iter().position(|s| *s == (proto, local)) {
            Some(i) => i,
            None => {
                self.sockets.push((proto, local));
                self.sockets.len() - 1
            }
        };
        SocketId(at as u32)
    }

    /// The path of an endpoint's datagrams from `local` to `remote`.
    fn path(&mut self, proto: Protocol, local: SocketAddr, remote: SocketAddr, tos: u8) -> Path {
        Path {
            socket: self.socket_id(proto, local),
            to: remote,
            tos,
        }
    }
}

/// Whether a datagram is RTP or RTCP (RFC 5761 demultiplexing: first byte 128-191), and
/// RTCP (second byte 192-223).
pub(super) fn rtp_or_rtcp(d: &[u8]) -> Option<bool> {
    match d {
        [128..=191, b, ..] => Some((192..=223).contains(b)),
        _ => None,
    }
}

/// Starts the endpoint's egress once its keys are there (DTLS completed), on the path its
/// datagrams take. Nothing when the fast path is off for it or it runs already.
pub(super) fn start(ep: &mut Ep, eg: &mut Egress) {
    if ep.egress.is_some() {
        return;
    }
    let Some(slot) = &ep.keys else {
        return;
    };
    let keys = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some((proto, local, remote)) = ep.send_path else {
        return;
    };
    let Some(keys) = keys else {
        return;
    };
    match keys.contexts() {
        Ok((tx, rx)) => {
            let path = eg.path(proto, local, remote, ep.settings.tos);
            ep.egress = Some(Viewer::new(tx, rx, path, eg.clock));
            ep.egress_stale = [true; 2];
            tracing::debug!(id = %ep.id, ?keys, "egress fast path started");
        }
        Err(e) => {
            // A profile Fluo does not implement: str0m sends, as without the fast path.
            tracing::warn!(id = %ep.id, ?keys, "no egress fast path: {e}");
            ep.keys = None;
        }
    }
}

/// str0m sends a datagram of endpoint `ep` from `local` to `remote`: its path is the one the
/// egress follows (ICE's selected pair; STUN answers go wherever checks came from and are not
/// followed). An SRTCP datagram is re-indexed into the batch: true when it was taken.
pub(super) fn on_transmit(
    ep: &mut Ep,
    eg: &mut Egress,
    proto: Protocol,
    local: SocketAddr,
    remote: SocketAddr,
    contents: &[u8],
) -> bool {
    let kind = rtp_or_rtcp(contents);
    let dtls = matches!(contents.first(), Some(20..=63));
    if ep.keys.is_some() && (kind.is_some() || dtls) {
        ep.send_path = Some((proto, local, remote));
        if let Some(v) = ep.egress.as_mut() {
            let path = eg.path(proto, local, remote, ep.settings.tos);
            if v.path() != path {
                v.set_path(path);
            }
        }
    }
    match kind {
        Some(true) => {
            start(ep, eg);
            let Some(v) = ep.egress.as_mut() else {
                return false;
            };
            let before = v.stats().bytes;
            if let Err(e) = v.reindex_str0m_rtcp(contents, &mut eg.batch) {
                // Never str0m's index on the wire: the packet is dropped.
                tracing::debug!(id = %ep.id, "str0m's RTCP not re-indexed: {e}");
            }
            ep.str0m_rtcp_bytes += v.stats().bytes - before;
            true
        }
        Some(false) if ep.egress.is_some() => {
            // str0m must write no RTP on an endpoint whose egress sends its media.
            ep.str0m_rtp += 1;
            false
        }
        _ => false,
    }
}

/// The viewer's plan for `kind`: its send stream's SSRC and RTX as str0m announced them, the
/// payload type negotiation chose (and its RTX payload type), the extension ids the viewer
/// accepted. Kept (with its numbering) while the SSRC stays.
fn plan(ep: &mut Ep, kind: MediaKind, pt: u8, clock: u32) -> Option<()> {
    let mid = ep.mid_of_kind(kind)?;
    let (ssrc, rtx_ssrc) = {
        let mut api = ep.rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None)?;
        (*tx.ssrc(), tx.rtx().map(|s| *s))
    };
    let rtx_pt = ep
        .rtc
        .codec_config()
        .params()
        .iter()
        .find(|p| *p.pt() == pt)
        .and_then(|p| p.resend())
        .map(|p| *p);
    let mut exts = ExtPlan::default();
    if let Some(media) = ep.rtc.media(mid) {
        let map = media.remote_extmap();
        exts.mid = map
            .id_of(Extension::RtpMid)
            .map(|id| (id, mid.as_bytes().to_vec()));
        exts.abs_send_time = map.id_of(Extension::AbsoluteSendTime);
        exts.transport_cc = map.id_of(Extension::TransportSequenceNumber);
        for (from, e) in [
            (EXT_AUDIO_LEVEL, Extension::AudioLevel),
            (EXT_VIDEO_ORIENTATION, Extension::VideoOrientation),
            (EXT_CONTENT_TYPE, Extension::VideoContentType),
        ] {
            if let Some(id) = map.id_of(e) {
                exts.copy_extension(from, id);
            }
        }
        // The dependency descriptor, in the two-byte form when longer than 16 bytes: a peer
        // that negotiates it takes that form (Chromium sends and takes the descriptor only
        // with `a=extmap-allow-mixed`, which str0m always writes).
        if let Some(id) = map.id_of(crate::dd::extension()) {
            exts.copy_extension(EXT_DD, id);
            exts.two_byte = true;
        }
    }
    let rtx = match (kind, rtx_ssrc, rtx_pt) {
        (MediaKind::Video, Some(s), Some(p)) => Some((s, p)),
        _ => None,
    };
    let v = ep.egress.as_mut()?;
    match v.stream_mut(kind).filter(|s| s.ssrc == ssrc) {
        Some(s) => {
            s.pt = pt;
            s.clock = clock;
            s.exts = exts;
            match (rtx, s.rtx.as_mut()) {
                (Some((rs, rp)), Some(r)) if r.ssrc == rs => r.pt = rp,
                (r, _) => s.rtx = r.map(|(rs, rp)| Rtx::new(rs, rp)),
            }
        }
        None => {
            let rtx = rtx.map(|(rs, rp)| Rtx::new(rs, rp));
            v.set_stream(kind, Some(StreamOut::new(ssrc, pt, clock, rtx, exts)));
        }
    }
    Some(())
}

/// The router's packet to the viewer `ep` through its egress: `None` when the fast path is
/// off for it (the caller sends through str0m), else whether it was sent.
pub(super) fn push(
    ep: &mut Ep,
    outbox: &Outbox,
    now: Instant,
    pkt: &Packet<'_>,
    header: Header,
) -> Option<bool> {
    ep.keys.as_ref()?;
    let kind = pkt.kind;
    let Some(pt) = header.pt else {
        return Some(false);
    };
    let Some(carried) = pkt.extensions.and_then(|e| e.downcast_ref::<Carried>()) else {
        return Some(false);
    };
    let Some(mut src) = SourcePacket::parse(&carried.plain) else {
        return Some(false);
    };
    // The router's marker: an SVC sink's is set where the layers it gets end.
    src.marker = pkt.marker;
    // A simulcast layer's picture ids go on across the viewer's switches.
    if fluo_sfu::picture_id::rewritten(pkt) {
        src.picture_ids = Some(pkt.codec.name);
    }
    let mut eg = outbox.egress();
    if ep.egress.is_none() {
        start(ep, &mut eg);
    }
    let Some(v) = ep.egress.as_ref() else {
        return Some(false);
    };
    let stale = ep.egress_stale[kind] || v.stream(kind).is_none_or(|s| s.pt != pt);
    if stale {
        ep.egress_stale[kind] = false;
        if plan(ep, kind, pt, pkt.codec.clock_rate).is_none() {
            return Some(false);
        }
    }
    for_estimate(ep, now);
    let Some(v) = ep.egress.as_mut() else {
        return Some(false);
    };
    if std::mem::take(&mut ep.repath) {
        // ICE restarted: the pair it came back on (see `Ep::nominated`).
        if let Some((proto, local, remote)) = ep.send_path {
            v.set_path(eg.path(proto, local, remote, ep.settings.tos));
        }
    }
    if v.path().tos != ep.settings.tos {
        let mut p = v.path();
        p.tos = ep.settings.tos;
        v.set_path(p);
    }
    // The router started its line for this viewer afresh: so does the egress's stream, with
    // its own numbering.
    if line_restarted(&mut ep.egress_line[kind], pkt, &header) {
        if let Some(s) = v.stream_mut(kind) {
            s.resync();
        }
    }
    if !v.forward(now, kind, &src, &mut eg.batch) {
        return Some(false);
    }
    if kind == MediaKind::Video {
        eg.used = true;
        ep.egress_source = eg.current;
    }
    let first = v.stream(kind).and_then(StreamOut::ext_seq);
    drop(eg);
    let c = &mut ep.stats.kinds[kind];
    c.out_packets += 1;
    if let Some(first) = first {
        c.out_first.get_or_insert(first);
    }
    c.out_bytes += pkt.payload.len() as u64;
    Some(true)
}

/// While the viewer's bandwidth is estimated (`bwe`) what it is sent is recorded; with
/// `--bwe auto` it carries transport-wide sequence numbers only then (else its browser sends
/// REMB).
fn for_estimate(ep: &mut Ep, now: Instant) {
    let (estimated, numbered) = (ep.estimated(), ep.twcc_numbers());
    if let Some(v) = ep.egress.as_mut() {
        v.write_transport_cc(numbered);
        if estimated && v.sent_log().is_none() {
            v.log_sent(now);
        }
    }
}

/// The router skipped `pkt` for the viewer `ep` (an SVC layer above its own): the egress's
/// own numbering skips it too, and where the router's line went one lower (`shifted`) the
/// line it follows is moved with it, so that this is not taken for a restart.
pub(super) fn skipped(ep: &mut Ep, pkt: &Packet<'_>, shifted: bool) {
    let kind = pkt.kind;
    if let Some(s) = ep.egress.as_mut().and_then(|v| v.stream_mut(kind)) {
        s.skip(pkt.ssrc, pkt.seq);
    }
    let lines = [
        ep.egress_line[kind].as_mut(),
        ep.out[kind].as_mut().and_then(|o| o.line.as_mut()),
    ];
    for line in lines.into_iter().flatten() {
        if shifted && line.0 == pkt.ssrc {
            line.1 = line.1.wrapping_sub(1);
        }
    }
}

/// A datagram from the endpoint's peer, before str0m reads it: SRTCP goes through the
/// egress (NACKs answered, reports kept) and str0m gets what the egress leaves of it.
/// Returns what str0m must read, when it differs from `data`.
pub(super) fn on_receive<'a>(
    ep: &mut Ep,
    eg: &'a mut Egress,
    now: Instant,
    data: &[u8],
) -> Option<&'a [u8]> {
    if rtp_or_rtcp(data) != Some(true) {
        return None;
    }
    let Ep {
        egress,
        egress_source,
        rtc,
        ..
    } = ep;
    let v = egress.as_mut()?;
    let Egress {
        batch,
        sources,
        for_str0m,
        ..
    } = eg;
    let source = egress_source.and_then(|s| sources.get_mut(&s));
    // The peer's SDES reaches str0m only when it describes a stream str0m receives (a
    // receive-only viewer's does not): str0m keeps nothing else of it.
    let mut receives = |ssrc: u32| rtc.direct_api().stream_rx(&ssrc.into()).is_some();
    let read = v.read_viewer_rtcp_for(now, data, source, batch, for_str0m, &mut receives);
    crate::stats::egress_streams(ep);
    match read {
        Ok(seen) => {
            // The viewer's REMB, whichever of Fluo's SSRCs it lists first (str0m's event
            // comes only when that is the media stream's: `ViewerRtcp::remb`).
            if let Some(bps) = seen.remb {
                tracing::trace!(id = %ep.id, bps, "REMB from the peer (egress)");
                ep.receive_estimate = Some(bps);
            }
            Some(for_str0m.as_slice())
        }
        Err(e) => {
            tracing::trace!(id = %ep.id, "viewer RTCP refused by the egress: {e}");
            None
        }
    }
}

impl MediaCore {
    /// Sends a packet of the element `src` to its sinks, then keeps its video in the
    /// source's resend cache if an egress sink took it.
    pub(super) fn dispatch(&mut self, src: NodeId, mut f: Forward) {
        // Settings that changed may move sinks between routes: before they are looked at.
        self.refresh_settings();
        let egress = enabled();
        if egress {
            self.carried.fill(&mut f);
            let mut eg = self.outbox.egress();
            eg.current = Some((src, f.layer.unwrap_or(0)));
            eg.used = false;
        } else {
            self.carried.ext_vals = f.ext_vals.take();
            // str0m writes an AV1 stream's for the sinks (`dd`'s serializer).
            self.carried
                .take_dd(f.codec.name == fluo_sfu::CodecName::Av1);
        }
        let pkt = Packet {
            kind: f.kind,
            codec: f.codec,
            seq: f.seq,
            ts: f.ts,
            ssrc: f.ssrc,
            marker: f.marker,
            payload: &f.payload,
            entered: f.entered,
            extensions: Some(&self.carried as &(dyn std::any::Any + Send + Sync)),
            layer: f.layer,
            dd: self.carried.dd(),
        };
        self.router.forward(self.now, src, &pkt);
        if egress {
            let mut eg = self.outbox.egress();
            eg.current = None;
            if std::mem::take(&mut eg.used) {
                let source = eg.sources.entry((src, f.layer.unwrap_or(0))).or_default();
                source.insert(self.now, f.seq, &self.carried.plain);
            }
        }
        // `--bwe auto`: a source that became layered has its viewers estimated from now.
        while let Some(layered) = self.router.take_newly_layered() {
            self.bwe_source_layered(layered);
        }
    }

    /// Sends the egress batch: `send` gets the datagrams and the shell's sockets by
    /// [`SocketId`]; the batch is empty afterwards.
    pub fn send_egress(&mut self, send: impl FnOnce(&Batch, &[(Protocol, SocketAddr)])) {
        let mut eg = self.outbox.egress();
        if eg.batch.is_empty() {
            return;
        }
        let Egress { batch, sockets, .. } = &mut *eg;
        send(batch, sockets);
        batch.clear();
    }

    /// Datagrams of the egress fast path waiting for [`MediaCore::send_egress`].
    pub fn egress_pending(&self) -> usize {
        self.outbox.egress().batch.len()
    }

    /// Moves the egress batch into the datagrams [`MediaCore::poll_transmit`] hands out (for
    /// callers that move datagrams themselves: the in-memory network of tests).
    pub(super) fn egress_to_transmits(&mut self) {
        let mut eg = self.outbox.egress();
        let Egress { batch, sockets, .. } = &mut *eg;
        for (path, bytes) in batch.iter() {
            let Some(&(proto, source)) = sockets.get(path.socket.0 as usize) else {
                continue;
            };
            self.transmits.push_back(super::Datagram {
                proto,
                source,
                destination: path.to,
                contents: bytes.to_vec(),
                tos: path.tos,
            });
        }
        batch.clear();
    }

    /// A source node is gone: its resend cache goes with it.
    pub(super) fn forget_source(&mut self, n: NodeId) {
        self.outbox.egress().sources.retain(|(s, _), _| *s != n);
    }

    /// Whether the WebRTC endpoint `id` sends through the egress fast path, and how many RTP
    /// packets its str0m session wrote since (none: str0m writes no RTP on egress streams).
    pub fn egress_of(&self, id: &str) -> Option<(bool, u64)> {
        let e = self.eps.get(self.by_id.get(id)?)?;
        let ep = lock(&e.ep);
        Some((ep.egress.is_some(), ep.str0m_rtp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluo_egress::SourcePacket;
    use fluo_sfu::{Codec, CodecName};
    use std::sync::Arc;
    use str0m::rtp::{ExtensionValues, VideoOrientation};

    fn forward(codec: CodecName, ext: ExtensionValues) -> Forward {
        Forward {
            kind: MediaKind::Video,
            codec: Codec::new(codec),
            entered: None,
            seq: 7,
            ts: 9000,
            ssrc: 0x1234,
            marker: true,
            payload: Arc::from(&[0xaa, 0xbb][..]),
            ext_vals: Some(ext),
            layer: None,
        }
    }

    /// The plain packet as the egress reads it: its extension profile and elements.
    fn read(c: &Carried) -> (u16, Vec<(u8, Vec<u8>)>) {
        let p = SourcePacket::parse(&c.plain).expect("valid RTP");
        assert_eq!((p.seq, p.ts, p.ssrc, p.marker), (7, 9000, 0x1234, true));
        assert_eq!(p.payload, [0xaa, 0xbb]);
        let els = p.ext.elements().map(|(id, d)| (id, d.to_vec())).collect();
        (p.ext.profile, els)
    }

    #[test]
    fn the_plain_packet_carries_the_publishers_extensions_in_the_form_they_need() {
        let ext = ExtensionValues {
            audio_level: Some(-42),
            voice_activity: Some(true),
            video_orientation: Some(VideoOrientation::Deg90),
            video_content_type: Some(1),
            ..Default::default()
        };
        let three = vec![
            (EXT_AUDIO_LEVEL, vec![0x80 | 42]),
            (EXT_VIDEO_ORIENTATION, vec![VideoOrientation::Deg90 as u8]),
            (EXT_CONTENT_TYPE, vec![1]),
        ];
        let mut c = Carried::default();
        c.fill(&mut forward(CodecName::Vp8, ext.clone()));
        assert_eq!(read(&c), (0xbede, three.clone()));
        assert_eq!(c.dd(), None);
        // An AV1 packet with a descriptor longer than 16 bytes: the two-byte form, the
        // descriptor after the others, as received; the router gets it too.
        let dd: Vec<u8> = (1..=20).collect();
        let mut with = ext.clone();
        with.user_values.set(crate::dd::DdBytes(dd.clone()));
        c.fill(&mut forward(CodecName::Av1, with.clone()));
        let mut all = three.clone();
        all.push((EXT_DD, dd.clone()));
        assert_eq!(read(&c), (0x1000, all));
        assert_eq!(c.dd(), Some(&dd[..]));
        // Another codec's descriptor is the router's only: the one-byte form as without it.
        c.fill(&mut forward(CodecName::Vp8, with));
        assert_eq!(read(&c), (0xbede, three));
        assert_eq!(c.dd(), Some(&dd[..]));
        // Audio level without voice activity, and nothing else: no extension block at all.
        let level = ExtensionValues {
            audio_level: Some(-10),
            ..Default::default()
        };
        c.fill(&mut forward(CodecName::Opus, level));
        assert_eq!(c.plain[0], 0x80, "no X bit");
        assert_eq!(read(&c), (0, vec![]));
        assert_eq!(c.dd(), None);
    }
}
