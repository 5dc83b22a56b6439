//! An endpoint's state shared between signalling (its element) and the media thread: its
//! str0m session, its descriptions, what it sends per kind (sequence line extension, resend
//! cache), its media-flow flags and getStats' counters.

use fluo_sfu::MediaKind;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use str0m::change::SdpPendingOffer;
use str0m::channel::ChannelId;
use str0m::media::Mid;
use str0m::net::Protocol;
use str0m::{Candidate, Rtc};

/// One outgoing stream of an endpoint: the extended sequence number str0m wants for the line
/// the router keeps for it (one SSRC, continuous sequence and timestamps across source
/// switches), and its resend cache.
pub(crate) struct OutStream {
    pub(crate) ext: u64,
    /// The stream's resend cache; `None` until the first packet sizes it.
    pub(crate) rtx: Option<RtxCache>,
    /// The router's line as last seen (the source's SSRC, the line's sequence offset): when
    /// it changes, a simulcast layer's picture ids resynchronise as the line did.
    pub(crate) line: Option<(u32, u16)>,
    /// Its VP8 / VP9 picture ids across simulcast layer switches.
    pub(crate) ids: fluo_sfu::PictureIds,
}

/// A video stream's resend cache: how long it keeps video, and the round-trip reports in a
/// row that would have let it halve.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RtxCache {
    len: Duration,
    short: u8,
}

impl RtxCache {
    pub(crate) fn new() -> RtxCache {
        RtxCache {
            len: RTX_HISTORY_START,
            short: 0,
        }
    }

    /// A round-trip report calling for `wanted` (see `rtx_history`): the length to give the
    /// cache when it changes (see `resize_rtx`).
    pub(crate) fn report(&mut self, wanted: Duration) -> Option<Duration> {
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
pub(crate) const RTX_HISTORY_START: Duration = Duration::from_secs(1);

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
pub(crate) const RTX_PACKETS: usize = 2000;

/// The state of one endpoint shared between signalling (its element) and the media thread.
pub(crate) struct Ep {
    pub id: String,
    pub rtc: Rtc,
    /// The SDP negotiation: the element's (signalling's) to change, through its methods.
    pub sdp: Negotiation,
    /// What the application set: the element's to write, the media thread's to read.
    pub settings: EpSettings,
    // Below: the session's state as the media thread drives it. The element reads some of it
    // and changes it only through methods (`set_keys`, `learn_mids`, `pair::remember` and
    // `pair::announced` for the candidates), never field by field.
    pub connected: bool,
    /// DTLS completed once (so an ICE recovery means media can flow again).
    pub was_connected: bool,
    /// The last ICE component state reported (Kurento's IceComponentState).
    pub ice_state: &'static str,
    /// ICE restarted after DTLS completed and has not come back yet: the pair it comes back
    /// on is reported (NewCandidatePairSelected), as DTLS reports the first one.
    pub(crate) ice_restarted: bool,
    /// The m-line of each kind carrying Kurento's audio / video track (set at negotiation).
    pub mids: [Option<Mid>; 2],
    pub flowing_in: [bool; 2],
    pub flowing_out: [bool; 2],
    pub(crate) out: [Option<OutStream>; 2],
    /// Media was written to it that str0m has not sent yet (the media core flushes it).
    pub(crate) written: bool,
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
    pub(crate) last_out_at: [Option<Instant>; 2],
    /// The latest bitrate this endpoint's browser said it can receive (REMB), in bps.
    pub receive_estimate: Option<u64>,
    /// When its first estimate (a REMB's `receive_estimate`, or `bwe_estimate`) was seen:
    /// its warm-up, `timers::ESTIMATE_WARM_UP`, counts from there (see `warm_up_since`).
    estimate_since: Option<Instant>,
    /// The source (endpoint key) whose video its own estimate (`--bwe on`, `auto`) is made of.
    estimated_from: Option<u64>,
    pub(crate) last_remb_at: Option<Instant>,
    /// When what bounds its REMB was last looked at (`MediaCore::update_remb`: every 100 ms
    /// while no REMB goes, once a second after one went).
    pub(crate) remb_looked_at: Option<Instant>,
    /// Whether the rembOnConnect bound sent at connection is in force (see `settings`).
    pub(crate) remb_start: crate::settings::RembStart,
    /// Where its session's DTLS exports the SRTP keys, when media goes out through the
    /// egress fast path (see `egress`); `None`: through str0m.
    pub(crate) keys: Option<fluo_egress::KeySlot>,
    /// The egress, from the first packet or SRTCP after the keys are there.
    pub(crate) egress: Option<fluo_egress::Viewer>,
    /// The egress's plan of a kind must be read again from the session (renegotiated).
    pub(crate) egress_stale: [bool; 2],
    /// The router's line of each kind as last seen (the source's SSRC, the line's sequence
    /// offset): when it changes the egress's stream resynchronises as the line did.
    pub(crate) egress_line: [Option<(u32, u16)>; 2],
    /// The source node (and simulcast layer) whose video the egress sent last (its resend
    /// cache answers NACKs).
    pub(crate) egress_source: Option<(fluo_sfu::NodeId, u8)>,
    /// The simulcast layer of its video the router forwards to it (getStats).
    pub(crate) layer_out: Option<fluo_sfu::ForwardedLayer>,
    /// Its send-side bandwidth estimate in bit/s, once warm (getStats, REMB to its
    /// publisher); `None` without one.
    pub(crate) bwe_estimate: Option<u64>,
    /// Whether that estimate has ever shown congestion: only then does it count in its
    /// publisher's REMB (core/bwe.rs, `ViewerBwe::has_been_congested`; the layer cap follows
    /// the congestion as it is, expiry included).
    pub(crate) bwe_congested: bool,
    /// With `--bwe auto`: it gets a layered source's video, so its bandwidth is estimated now
    /// (see [`Ep::estimated`]; the media core's `bwe` module sets it).
    pub(crate) bwe_layered: bool,
    /// Transport, local and remote address of what the session sends on its selected pair.
    pub(crate) send_path: Option<(Protocol, SocketAddr, SocketAddr)>,
    /// During an ICE restart, the pair (transport, local socket, remote) of the last nomination
    /// (a USE-CANDIDATE check str0m accepted, or sent when controlling): the pair ICE comes
    /// back on, which the egress takes at once (else only at str0m's next RTCP).
    pub(crate) nominated: Option<(Protocol, SocketAddr, SocketAddr)>,
    /// `send_path` moved to the restarted ICE's pair: the egress takes it with its next packet.
    pub(crate) repath: bool,
    /// RTP packets the session wrote while the egress sends its media (must stay 0).
    pub(crate) str0m_rtp: u64,
    /// Bytes of str0m's SRTCP the egress re-indexed and sent: str0m counted them already
    /// (getStats' transport bytesSent counts them once).
    pub(crate) str0m_rtcp_bytes: u64,
}

/// An endpoint's settings, written by its element (the application's requests) and read by
/// the media thread.
#[derive(Default)]
pub(crate) struct EpSettings {
    /// Kurento bandwidth settings in kbps (0 = not set).
    pub bandwidth: Bandwidth,
    /// rembParams.rembOnConnect in bps, when the application set rembParams.
    pub remb_on_connect: Option<u64>,
    /// The TOS byte of this endpoint's datagrams (qosDscp; 0: none).
    pub tos: u8,
    /// useDataChannels: data channels are negotiated and relayed.
    pub data_channels: bool,
    /// When its bandwidth is estimated from its transport-wide feedback (`--bwe`; see the
    /// media core's `bwe` and [`Ep::estimated`]).
    pub bwe: crate::BweMode,
    /// The spacing of the keyframe requests it sends its peer, when not the router's
    /// (`fluoKeyframeInterval`: a cascade relay's receiving end).
    pub keyframe_interval: Option<std::time::Duration>,
    /// (local socket, announced address) where externalIPv4/6 differ from the socket: str0m
    /// sees the announced address, the sockets the local one.
    pub nat: Vec<(SocketAddr, SocketAddr)>,
}

/// Where an endpoint's SDP negotiation stands: the descriptions, the offer it generated and
/// awaits an answer to, the peer's candidates that came before the negotiation.
#[derive(Default)]
pub(crate) struct Negotiation {
    done: bool,
    /// The session was negotiated by answering the peer's offer (`remote` is that offer).
    answered: bool,
    pending_offer: Option<SdpPendingOffer>,
    local: Option<String>,
    remote: Option<String>,
    early: Vec<Candidate>,
}

impl Negotiation {
    /// An offer was processed or an answer to ours: the session is negotiated.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Negotiated, or an offer generated: settings of the session can no longer change.
    pub(crate) fn started(&self) -> bool {
        self.done || self.pending_offer.is_some()
    }

    pub(crate) fn local(&self) -> Option<&str> {
        self.local.as_deref()
    }

    pub(crate) fn remote(&self) -> Option<&str> {
        self.remote.as_deref()
    }

    /// The peer's `offer` answered with `answer`: the candidates it sent before, for the
    /// session now.
    pub(crate) fn answered(&mut self, offer: &str, answer: &str) -> Vec<Candidate> {
        self.done = true;
        self.answered = true;
        self.remote = Some(offer.to_string());
        self.local = Some(answer.to_string());
        std::mem::take(&mut self.early)
    }

    /// The peer's offer answered, which an ICE restart renews (`None`: the session was not
    /// negotiated by answering an offer).
    pub(crate) fn answered_offer(&self) -> Option<&str> {
        self.remote.as_deref().filter(|_| self.answered)
    }

    /// ICE restarted: the peer's offer as it now stands (its new credentials) and our answer.
    pub(crate) fn restarted(&mut self, offer: String, answer: String) {
        self.remote = Some(offer);
        self.local = Some(answer);
    }

    /// Our `offer`, generated, awaits the peer's answer.
    pub(crate) fn offered(&mut self, pending: SdpPendingOffer, offer: &str) {
        self.pending_offer = Some(pending);
        self.local = Some(offer.to_string());
    }

    /// The offer awaiting an answer, taken to apply one.
    pub(crate) fn take_pending(&mut self) -> Option<SdpPendingOffer> {
        self.pending_offer.take()
    }

    /// The peer's `answer` to our offer was applied: the candidates it sent before, for the
    /// session now.
    pub(crate) fn answer_applied(&mut self, answer: &str) -> Vec<Candidate> {
        self.done = true;
        self.remote = Some(answer.to_string());
        std::mem::take(&mut self.early)
    }

    /// A peer's candidate: for the session now (`Some`) once negotiated, else kept for then
    /// (Kurento tutorials send candidates before the offer).
    pub(crate) fn candidate(&mut self, c: Candidate) -> Option<Candidate> {
        if self.done {
            return Some(c);
        }
        self.early.push(c);
        None
    }
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
            sdp: Negotiation::default(),
            settings: EpSettings::default(),
            connected: false,
            was_connected: false,
            ice_state: "DISCONNECTED",
            ice_restarted: false,
            mids: [None, None],
            flowing_in: [false; 2],
            flowing_out: [false; 2],
            out: [None, None],
            written: false,
            channels: HashMap::new(),
            stats: Default::default(),
            candidates: Default::default(),
            channels_opened: 0,
            channels_closed: 0,
            path: None,
            path_proto: Protocol::Udp,
            last_out_at: [None, None],
            receive_estimate: None,
            estimate_since: None,
            estimated_from: None,
            last_remb_at: None,
            remb_looked_at: None,
            remb_start: Default::default(),
            keys: None,
            egress: None,
            egress_stale: [true; 2],
            egress_line: [None; 2],
            egress_source: None,
            layer_out: None,
            bwe_estimate: None,
            bwe_congested: false,
            bwe_layered: false,
            send_path: None,
            nominated: None,
            repath: false,
            str0m_rtp: 0,
            str0m_rtcp_bytes: 0,
        }
    }

    /// When its estimate's warm-up (`timers::ESTIMATE_WARM_UP`) started: at `now` if it had
    /// not, the first estimate seen (a REMB, or with `--bwe on` its own estimate).
    pub(crate) fn warm_up_since(&mut self, now: Instant) -> Instant {
        *self.estimate_since.get_or_insert(now)
    }

    /// Whether its bandwidth is estimated now: always with `--bwe on`, never with `off`, with
    /// `auto` while it gets a layered source's video. Its egress writes transport-wide
    /// sequence numbers and records what it sends only then.
    pub(crate) fn estimated(&self) -> bool {
        match self.settings.bwe {
            crate::BweMode::On => true,
            crate::BweMode::Off => false,
            crate::BweMode::Auto => self.bwe_layered,
        }
    }

    /// Whether the packets it is sent carry a transport-wide sequence number where its
    /// session agreed on the extension: always, but with `--bwe auto` only while its bandwidth
    /// is estimated (its browser returns REMB for video without the number: that bounds a
    /// plain publisher, as KMS's viewers' REMB does).
    pub(crate) fn twcc_numbers(&self) -> bool {
        self.settings.bwe != crate::BweMode::Auto || self.bwe_layered
    }

    /// Its estimate changes hands (`--bwe auto`: its own estimate starts or stops): what it
    /// had, its own estimate and its browser's last REMB, is forgotten and the next one warms
    /// up (`timers::ESTIMATE_WARM_UP`) before it counts alone in its publisher's REMB.
    pub(crate) fn estimate_changes_hands(&mut self) {
        self.estimate_since = None;
        self.receive_estimate = None;
        self.bwe_estimate = None;
        self.bwe_congested = false;
    }

    /// Its video comes from source `src` now: while its bandwidth is estimated (`estimated`)
    /// its own estimate, made of another source's media before, warms up again from the next
    /// one (a browser's REMB is its own: kept, as with `--bwe off`). The same source again
    /// changes nothing.
    pub(crate) fn video_from(&mut self, src: u64) {
        if self.estimated() && self.estimated_from.replace(src) != Some(src) {
            self.estimate_since = None;
        }
    }

    /// The session (new, or rebuilt for another MTU) exports its keys into `keys`: its media
    /// goes out through the egress fast path when that is on (see `egress`).
    pub(crate) fn set_keys(&mut self, keys: fluo_egress::KeySlot) {
        self.keys = super::egress_enabled().then_some(keys);
        for k in MediaKind::ALL {
            let resent = self
                .egress
                .as_ref()
                .and_then(|v| v.stream(k))
                .map_or(0, |s| s.stats().packets_resent);
            self.stats.kinds[k].retire_session(resent);
        }
        self.egress = None;
        self.str0m_rtcp_bytes = 0;
        self.send_path = None;
        self.nominated = None;
        self.repath = false;
    }

    pub(crate) fn mid_of_kind(&self, kind: MediaKind) -> Option<Mid> {
        self.mids[kind]
    }

    /// Records which m-line carries audio and which video, from the local description.
    pub fn learn_mids(&mut self) {
        let Some(sdp) = self.sdp.local() else {
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
        // Renegotiated: the egress reads its streams' SSRCs, payload and extension ids again.
        self.egress_stale = [true; 2];
    }
}

pub(crate) type EpRef = Arc<Mutex<Ep>>;

pub(crate) fn lock(ep: &EpRef) -> MutexGuard<'_, Ep> {
    // A panic while holding an endpoint lock is a bug; keep serving the others.
    ep.lock().unwrap_or_else(|p| p.into_inner())
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
