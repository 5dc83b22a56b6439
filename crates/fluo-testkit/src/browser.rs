//! An in-memory browser: a str0m peer that offers or answers audio+video, sends frames and
//! records what it receives.

use fluo_sfu::CodecName;
use std::net::SocketAddr;
use std::time::Instant;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// One RTP packet as a receiving browser saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpSeen {
    pub video: bool,
    pub ssrc: u32,
    pub seq: u64,
    pub ts: u32,
    /// Payload bytes.
    pub len: usize,
    /// For the first packet of a VP8 key frame, the picture size it announces.
    pub size: Option<(u16, u16)>,
    /// VP8: whether the packet begins a frame, and its payload descriptor's picture id and
    /// TL0PICIDX.
    pub begins_frame: bool,
    pub picture_id: Option<u16>,
    pub tl0picidx: Option<u8>,
    /// The marker bit.
    pub marker: bool,
    /// The length of its dependency descriptor (0: none; read only by a browser made with
    /// `svc::dd_extension` in its configuration).
    pub dd_len: usize,
    /// The payload's first bytes (zeros past its end): a VP9 payload descriptor's layer
    /// indices are read from them (`fluo_sfu::descriptor::vp9_layers`).
    pub head: [u8; 8],
}

/// RTCP congestion feedback a browser sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackSent {
    /// REMB packets.
    pub remb: u64,
    /// Transport-wide congestion control feedback packets.
    pub twcc: u64,
}

/// The congestion feedback an answer's m-line `mid` agreed on: (`goog-remb`, transport-wide
/// congestion control: `transport-cc` feedback and its header extension).
pub fn agreed_feedback(answer: &str, mid: &str) -> (bool, bool) {
    let mut sections = answer.split("\nm=").skip(1);
    let Some(section) = sections.find(|s| {
        s.lines()
            .any(|l| l.trim_end().strip_prefix("a=mid:") == Some(mid))
    }) else {
        return (false, false);
    };
    let fb = |what: &str| {
        section.lines().any(|l| {
            let l = l.trim_end();
            l.starts_with("a=rtcp-fb:") && l.ends_with(&format!(" {what}"))
        })
    };
    let twcc_ext = section.lines().any(|l| {
        l.starts_with("a=extmap:") && l.trim_end().ends_with("transport-wide-cc-extensions-01")
    });
    (fb("goog-remb"), fb("transport-cc") && twcc_ext)
}

pub struct Browser {
    pub name: String,
    pub addr: SocketAddr,
    pub rtc: Rtc,
    pub rtp_mode: bool,
    pub(crate) pending: Option<SdpPendingOffer>,
    pub(crate) mids: Vec<Mid>,
    /// The simulcast layers it sends, when it offered them (see `simulcast`).
    pub(crate) send_layers: Vec<crate::simulcast::SendLayer>,
    /// The SVC stream it sends, when it offered one (see `svc`).
    pub(crate) svc: Option<crate::svc::SvcSend>,
    pub connected: bool,
    /// The remote closed the session (DTLS close_notify).
    pub closed: bool,
    pub ice_state: Option<IceConnectionState>,
    /// Frames (frame mode) received per kind: [audio, video].
    pub frames_in: [u64; 2],
    /// RTP packets received (RTP mode).
    pub rtp_in: Vec<RtpSeen>,
    /// Keyframe requests received from Fluo.
    pub keyframe_requests: u64,
    /// Bitrates Fluo asked this browser to send at most (REMB), in bps.
    pub remb_in: Vec<u64>,
    /// Congestion feedback this browser sent, counted when its str0m configuration has
    /// `enable_raw_packets(true)`.
    pub feedback_sent: FeedbackSent,
    /// RTP packets received that carried only padding (bandwidth probes), counted with
    /// `enable_raw_packets(true)`.
    pub padding_in: u64,
    /// RTP packets received (RTP mode) that carried a transport-wide sequence number.
    pub twcc_numbered_in: u64,
    /// Whether the last video received carried a transport-wide sequence number (`None`:
    /// no video yet): what chooses its congestion feedback (see [`Browser::sends_remb`]).
    pub video_twcc: Option<bool>,
    /// The answer of the negotiation (received, or made here): what was agreed.
    answer: Option<String>,
    /// The open data channel, if any.
    pub channel: Option<str0m::channel::ChannelId>,
    /// Data-channel messages received.
    pub channel_in: Vec<Vec<u8>>,
    video_ts: u64,
    audio_ts: u64,
    /// Datagrams produced, to be moved by the world.
    pub(crate) outbox: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    pub(crate) deadline: Instant,
    /// Drop every datagram this browser would receive while true.
    pub deaf: bool,
    /// str0m's receive statistics (with `set_stats_interval`), oldest first.
    pub ingress_stats: Vec<str0m::stats::MediaIngressStats>,
    /// Sender reports received (with `enable_raw_packets`), oldest first.
    pub sender_reports: Vec<str0m::rtp::rtcp::SenderInfo>,
}

impl Browser {
    pub fn new(name: &str, addr: SocketAddr, rtp_mode: bool, now: Instant) -> Browser {
        Self::with_config(name, addr, rtp_mode, now, |c| c)
    }

    /// A browser whose str0m configuration is adjusted first (e.g. to limit its codecs).
    pub fn with_config(
        name: &str,
        addr: SocketAddr,
        rtp_mode: bool,
        now: Instant,
        f: impl FnOnce(str0m::RtcConfig) -> str0m::RtcConfig,
    ) -> Browser {
        let mut rtc = f(Rtc::builder().set_rtp_mode(rtp_mode)).build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("host candidate"));
        Browser {
            name: name.into(),
            addr,
            rtc,
            rtp_mode,
            pending: None,
            mids: vec![],
            send_layers: vec![],
            svc: None,
            connected: false,
            closed: false,
            ice_state: None,
            frames_in: [0; 2],
            rtp_in: vec![],
            keyframe_requests: 0,
            remb_in: vec![],
            feedback_sent: FeedbackSent::default(),
            padding_in: 0,
            twcc_numbered_in: 0,
            video_twcc: None,
            answer: None,
            channel: None,
            channel_in: vec![],
            video_ts: 0,
            audio_ts: 0,
            outbox: vec![],
            deadline: now,
            deaf: false,
            ingress_stats: vec![],
            sender_reports: vec![],
        }
    }

    /// An offer with one audio and one video m-line in the given directions.
    pub fn offer(&mut self, dir: Direction) -> String {
        self.offer_with_channel(dir, None)
    }

    /// Like [`Browser::offer`], plus a data channel with this label.
    pub fn offer_with_channel(&mut self, dir: Direction, label: Option<&str>) -> String {
        let mut api = self.rtc.sdp_api();
        if let Some(l) = label {
            api.add_channel(l.to_string());
        }
        let a = api.add_media(MediaKind::Audio, dir, None, None, None);
        let v = api.add_media(MediaKind::Video, dir, None, None, None);
        self.mids = vec![a, v];
        let (offer, pending) = api.apply().expect("an offer");
        self.pending = Some(pending);
        offer.to_sdp_string()
    }

    pub fn accept_answer(&mut self, sdp: &str) {
        let answer = SdpAnswer::from_sdp_string(sdp).expect("Fluo's answer parses");
        let pending = self.pending.take().expect("an offer was made");
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("Fluo's answer is accepted");
        self.answer = Some(sdp.to_string());
    }

    pub fn answer(&mut self, offer: &str) -> String {
        self.mids = offer
            .lines()
            .filter_map(|l| l.trim_end().strip_prefix("a=mid:"))
            .map(Mid::from)
            .collect();
        let offer = SdpOffer::from_sdp_string(offer).expect("Fluo's offer parses");
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .expect("Fluo's offer is accepted")
            .to_sdp_string();
        self.answer = Some(answer.clone());
        answer
    }

    /// Whether this browser sends REMB for its incoming video, as Chromium does: where the
    /// answer did not agree on transport-wide congestion control for that m-line (with TWCC
    /// the sender estimates from the TWCC feedback), whether or not it agreed on `goog-remb`,
    /// and where it did but the last video came without a transport-wide sequence number.
    /// Measured with Chromium 156 against Fluo: REMB from receive-only viewers whose answer
    /// had TWCC declined, both with `goog-remb` in that answer and without; none from
    /// send-receive peers with TWCC agreed (whose video carried the number); libwebrtc's
    /// receive side chooses per packet (`ReceiveSideCongestionController`).
    pub fn sends_remb(&self) -> bool {
        let (Some(mid), Some(answer)) = (self.mid(MediaKind::Video), self.answer.as_deref()) else {
            return false;
        };
        let (_remb, twcc) = agreed_feedback(answer, &mid.to_string());
        // Chromium chooses per packet: video without the sequence number gets REMB even where
        // TWCC was agreed (str0m, which this browser is, returns TWCC feedback only for
        // packets that carry one).
        !twcc || self.video_twcc == Some(false)
    }

    /// This browser's host candidate as a Kurento IceCandidate.
    pub fn candidate_json(&self) -> serde_json::Value {
        let c = Candidate::host(self.addr, "udp").expect("host candidate");
        let line = c.to_sdp_string();
        serde_json::json!({
            "__module__": "kurento", "__type__": "IceCandidate",
            "candidate": line.strip_prefix("a=").unwrap_or(&line),
            "sdpMid": "0", "sdpMLineIndex": 0,
        })
    }

    pub(crate) fn mid(&self, kind: MediaKind) -> Option<Mid> {
        self.mids
            .iter()
            .copied()
            .find(|m| self.rtc.media(*m).is_some_and(|x| x.kind() == kind))
    }

    /// Sends one video frame (frame mode only). `size` bytes, split into RTP by str0m.
    pub fn send_video_frame(&mut self, now: Instant, size: usize) -> bool {
        self.video_ts += 3000;
        if !self.send_layers.is_empty() {
            return self.send_simulcast_frame(now, self.video_ts);
        }
        if self.svc.is_some() {
            return self.send_svc_picture(now, self.video_ts);
        }
        let Some(mid) = self.mid(MediaKind::Video) else {
            return false;
        };
        let Some(w) = self.rtc.writer(mid) else {
            return false;
        };
        let Some(pt) = w
            .payload_params()
            .find(|p| p.spec().codec == Codec::Vp8)
            .map(|p| p.pt())
        else {
            return false;
        };
        // A VP8 payload header byte for a key frame (P bit clear), then filler.
        let mut data = vec![0x10u8; size.max(16)];
        data[0] = 0x00;
        w.write(
            pt,
            now,
            MediaTime::new(self.video_ts, Frequency::NINETY_KHZ),
            data,
        )
        .is_ok()
    }

    /// Sends one 20 ms Opus frame (frame mode only).
    pub fn send_audio_frame(&mut self, now: Instant) -> bool {
        self.audio_ts += 960;
        let Some(mid) = self.mid(MediaKind::Audio) else {
            return false;
        };
        let Some(w) = self.rtc.writer(mid) else {
            return false;
        };
        let Some(pt) = w
            .payload_params()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt())
        else {
            return false;
        };
        w.write(
            pt,
            now,
            MediaTime::new(self.audio_ts, Frequency::FORTY_EIGHT_KHZ),
            vec![0xf8u8; 80],
        )
        .is_ok()
    }

    /// Takes the datagrams this browser produced by `now` (for benches that feed them by hand).
    pub fn take_outbox(&mut self, now: Instant) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
        let _ = self.rtc.handle_input(Input::Timeout(now));
        self.drain();
        std::mem::take(&mut self.outbox)
    }

    /// Tells the sender of this browser's incoming video to send at most `bps` (REMB), where
    /// this browser sends REMB at all (see [`Browser::sends_remb`]); whether it was sent.
    /// (str0m sends no REMB of its own: a test asks for it.)
    pub fn ask_for_bitrate(&mut self, bps: u64) -> bool {
        let Some(mid) = self.mid(MediaKind::Video) else {
            return false;
        };
        if !self.sends_remb() {
            return false;
        }
        let sent = match self.rtc.direct_api().stream_rx_by_mid(mid, None) {
            Some(rx) => {
                rx.request_remb(str0m::bwe::Bitrate::bps(bps));
                true
            }
            None => false,
        };
        self.drain();
        sent
    }

    /// Asks the sender of this browser's incoming video for a keyframe (RTCP PLI).
    pub fn request_keyframe(&mut self) {
        let Some(mid) = self.mid(MediaKind::Video) else {
            return;
        };
        if let Some(rx) = self.rtc.direct_api().stream_rx_by_mid(mid, None) {
            rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
        }
        self.drain();
    }

    /// Sends a text message on the open data channel.
    pub fn send_text(&mut self, text: &str) -> bool {
        let Some(id) = self.channel else {
            return false;
        };
        let ok = self
            .rtc
            .channel(id)
            .is_some_and(|mut c| matches!(c.write(false, text.as_bytes()), Ok(true)));
        self.drain();
        ok
    }

    /// A datagram from `source` arrives.
    pub fn receive(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        if self.deaf {
            return;
        }
        let Ok(contents) = data.try_into() else {
            return;
        };
        let _ = self.rtc.handle_input(Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.addr,
                contents,
            },
        ));
        self.drain();
    }

    pub(crate) fn timeout(&mut self, now: Instant) {
        if now >= self.deadline {
            let _ = self.rtc.handle_input(Input::Timeout(now));
        }
        self.drain();
    }

    pub(crate) fn drain(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.deadline = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    self.outbox
                        .push((t.source, t.destination, t.contents.to_vec()));
                }
                Ok(Output::Event(e)) => self.event(e),
                Err(_) => return,
            }
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Connected => self.connected = true,
            Event::Closed => self.closed = true,
            Event::IceConnectionStateChange(s) => self.ice_state = Some(s),
            Event::MediaData(d) => {
                let video = self.rtc.media(d.mid).map(|m| m.kind()) == Some(MediaKind::Video);
                self.frames_in[usize::from(video)] += 1;
                if video {
                    self.video_twcc = Some(d.ext_vals.transport_cc.is_some());
                }
            }
            Event::RtpPacket(p) => {
                let video = self
                    .rtc
                    .direct_api()
                    .stream_rx(&p.header.ssrc)
                    .map(|s| s.mid())
                    .and_then(|m| self.rtc.media(m))
                    .map(|m| m.kind())
                    == Some(MediaKind::Video);
                let size = video
                    .then(|| fluo_sfu::frame_size::keyframe_size(CodecName::Vp8, &p.payload))
                    .flatten();
                // str0m's reader, not Fluo's (whose rewriting these check).
                let d = video
                    .then(|| str0m::rtp::Vp8Descriptor::parse(&p.payload).ok())
                    .flatten();
                // RFC 7741: S set and partition index 0.
                let begins = p.payload.first().is_some_and(|b| b & 0x17 == 0x10);
                let numbered = p.header.ext_vals.transport_cc.is_some();
                self.twcc_numbered_in += u64::from(numbered);
                if video {
                    self.video_twcc = Some(numbered);
                }
                self.rtp_in.push(RtpSeen {
                    video,
                    ssrc: *p.header.ssrc,
                    seq: *p.seq_no,
                    ts: p.header.timestamp,
                    len: p.payload.len(),
                    size,
                    begins_frame: d.is_some() && begins,
                    picture_id: d.and_then(|d| d.picture_id()),
                    tl0picidx: d.and_then(|d| d.tl0_pic_idx()),
                    marker: p.header.marker,
                    dd_len: crate::svc::dd_len(&p.header.ext_vals),
                    head: {
                        let mut head = [0; 8];
                        let n = p.payload.len().min(8);
                        head[..n].copy_from_slice(&p.payload[..n]);
                        head
                    },
                });
            }
            Event::KeyframeRequest(r) => {
                self.keyframe_requests += 1;
                self.layer_keyframe_asked(r.rid);
                if let Some(s) = self.svc.as_mut() {
                    s.key_wanted = true;
                    s.plis += 1;
                }
            }
            Event::EgressBitrateEstimate(str0m::bwe::BweKind::Remb { estimate, .. }) => {
                self.remb_in.push(estimate.as_u64())
            }
            Event::ChannelOpen(id, _) => self.channel = Some(id),
            Event::ChannelData(d) => self.channel_in.push(d.data),
            Event::ChannelClose(_) => self.channel = None,
            Event::MediaIngressStats(s) => self.ingress_stats.push(s),
            Event::RawPacket(p) => {
                use str0m::rtp::rtcp::Rtcp;
                match *p {
                    str0m::rtp::RawPacket::RtcpTx(Rtcp::Remb(_)) => self.feedback_sent.remb += 1,
                    str0m::rtp::RawPacket::RtcpTx(Rtcp::Twcc(_)) => self.feedback_sent.twcc += 1,
                    str0m::rtp::RawPacket::RtcpRx(Rtcp::SenderReport(sr)) => {
                        self.sender_reports.push(sr.sender_info);
                    }
                    // str0m hands the payload without its padding: nothing left.
                    str0m::rtp::RawPacket::RtpRx(h, data) if h.has_padding && data.is_empty() => {
                        self.padding_in += 1;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}
