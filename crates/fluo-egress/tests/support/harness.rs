//! Test and bench support (included by tests/*.rs and benches/memory.rs with `#[path]`): a
//! str0m `Rtc` configured as Fluo's pool builds them (RTP mode, ICE lite, key capture) facing
//! fluo-testkit's in-memory `Browser` as a receive-only viewer, wired by a zero-delay
//! in-memory network, with the egress between them. Media goes either through the egress
//! (str0m never sees it) or, for comparison, through str0m's `write_rtp` as Fluo's media core
//! does today.

#![allow(dead_code)]

use fluo_egress::{
    build_capturing, capturing_provider, Batch, Clock, ExtPlan, KeySlot, Path, Rtx, SocketId,
    Source, SourcePacket, SrtpContext, StreamOut, Viewer,
};
use fluo_sfu::rtp::write_rtp;
use fluo_sfu::MediaKind;
use fluo_testkit::Browser;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, RtpWrite, SeqNo};
use str0m::{Event, Input, Output, Rtc};

pub const AUDIO: usize = 0;
pub const VIDEO: usize = 1;

/// The media kind of an index of the harness's arrays.
pub fn media_kind(i: usize) -> MediaKind {
    if i == VIDEO {
        MediaKind::Video
    } else {
        MediaKind::Audio
    }
}

/// The publisher's SSRCs (the egress rewrites them).
const SRC_SSRC: [u32; 2] = [0x000a_0d10, 0x000f_1de0];

/// Decides whether the network drops a datagram from the egress to the browser.
pub type DropRule = Box<dyn FnMut(&[u8]) -> bool>;

pub struct Pair {
    pub now: Instant,
    pub server: Rtc,
    pub server_addr: SocketAddr,
    pub slot: KeySlot,
    pub browser: Browser,
    pub mids: [Mid; 2],
    pub egress: Option<Viewer>,
    pub batch: Batch,
    pub source: Source,
    pub keyframe_requests: Vec<(Mid, KeyframeRequestKind)>,
    /// The viewer's SRTCP datagrams as they came, and as Fluo passed them on to str0m.
    pub viewer_rtcp: Vec<Vec<u8>>,
    pub viewer_rtcp_to_str0m: Vec<Vec<u8>>,
    /// SRTCP datagrams str0m wrote, and what they said before Fluo fixed them: (SSRC,
    /// packet count, RTP time) of each sender report.
    pub str0m_rtcp: usize,
    pub str0m_srs: Vec<(u32, u32, u32)>,
    /// RTP that str0m itself sent (there must be none).
    pub str0m_rtp: usize,
    /// Decides whether the network drops a datagram from the egress to the browser.
    pub drop_egress: DropRule,
    pub src_seq: [u16; 2],
    pub src_ts: [u32; 2],
    /// Media written through str0m's `write_rtp` as Fluo's media core does today (the
    /// comparison), with this video resend history; `None`: through the egress.
    pub via_str0m: Option<Duration>,
    str0m_seq: [u64; 2],
}

impl Default for Pair {
    fn default() -> Self {
        Self::new()
    }
}

fn is_rtcp(d: &[u8]) -> bool {
    d.len() >= 2 && (128..192).contains(&d[0]) && (192..224).contains(&d[1])
}

fn is_rtp(d: &[u8]) -> bool {
    d.len() >= 2 && (128..192).contains(&d[0]) && !(192..224).contains(&d[1])
}

impl Pair {
    pub fn new() -> Pair {
        let now = Instant::now();
        let server_addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let viewer_addr: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        let config = Rtc::builder()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            // As Fluo's pool (its getStats needs them); STATS_OFF=1 turns them off, to show
            // what they keep (docs/egress-fast-path.md, "Risks").
            .set_stats_interval(
                std::env::var_os("STATS_OFF")
                    .is_none()
                    .then_some(Duration::from_secs(1)),
            )
            // As Fluo answers a receive-only viewer: no transport-wide congestion control
            // (fluo-rtc's sdp::without_egress_feedback declines it there).
            .clear_extension_map()
            .set_extension(1, Extension::AudioLevel)
            .set_extension(2, Extension::AbsoluteSendTime)
            .set_extension(4, Extension::RtpMid)
            .set_extension(10, Extension::RtpStreamId)
            .set_extension(11, Extension::RepairedRtpStreamId)
            .set_extension(13, Extension::VideoOrientation)
            .set_crypto_provider(capturing_provider(str0m::crypto::from_feature_flags()));
        let (mut server, slot) = build_capturing(config, now);
        server.add_local_candidate(str0m::Candidate::host(server_addr, "udp").unwrap());
        let mut browser = Browser::with_config("viewer", viewer_addr, true, now, |c| {
            c.set_stats_interval(Some(Duration::from_millis(500)))
                .enable_raw_packets(true)
        });
        let offer = browser.offer(Direction::RecvOnly);
        let answer = server
            .sdp_api()
            .accept_offer(str0m::change::SdpOffer::from_sdp_string(&offer).unwrap())
            .unwrap()
            .to_sdp_string();
        browser.accept_answer(&answer);
        let mids = mids_of(&answer);
        Pair {
            now,
            server,
            server_addr,
            slot,
            browser,
            mids,
            egress: None,
            batch: Batch::new(),
            source: Source::new(),
            keyframe_requests: vec![],
            viewer_rtcp: vec![],
            viewer_rtcp_to_str0m: vec![],
            str0m_rtcp: 0,
            str0m_srs: vec![],
            str0m_rtp: 0,
            drop_egress: Box::new(|_| false),
            src_seq: [40_000, 20_000],
            src_ts: [7_000, 90_000],
            via_str0m: None,
            str0m_seq: [0; 2],
        }
    }

    /// Moves every datagram and timer up to `now`, then advances time by `step`.
    pub fn run(&mut self, step: Duration) {
        for _ in 0..20 {
            let mut moved = false;
            // Server -> browser.
            loop {
                match self.server.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        moved = true;
                        let data: Vec<u8> = t.contents.to_vec();
                        if is_rtp(&data) {
                            self.str0m_rtp += 1;
                        }
                        let egress = self.egress.as_mut().filter(|_| self.via_str0m.is_none());
                        match (egress, is_rtcp(&data)) {
                            (Some(v), true) => {
                                self.str0m_rtcp += 1;
                                // What str0m wrote, as str0m wrote it (for the assertions).
                                let tx = tx_keys(&self.slot);
                                let mut plain = vec![];
                                tx.unprotect_rtcp(&data, &mut plain).expect("str0m's SRTCP");
                                self.str0m_srs.extend(sender_reports(&plain));
                                // Re-indexed into the batch, sent with the media.
                                v.reindex_str0m_rtcp(&data, &mut self.batch)
                                    .expect("str0m's SRTCP under the captured keys");
                            }
                            _ => self.browser.receive(self.now, self.server_addr, &data),
                        }
                    }
                    Ok(Output::Event(e)) => match e {
                        Event::KeyframeRequest(r) => self.keyframe_requests.push((r.mid, r.kind)),
                        Event::Connected => {}
                        _ => {}
                    },
                    Ok(Output::Timeout(_)) => break,
                    Err(e) => panic!("server failed: {e}"),
                }
            }
            if self.egress.is_none() {
                self.start_egress();
            }
            // Browser -> server (and the egress reads the viewer's RTCP first).
            for (src, dst, data) in self.browser.take_outbox(self.now) {
                moved = true;
                let egress = self.egress.as_mut().filter(|_| self.via_str0m.is_none());
                let data = match (egress, is_rtcp(&data)) {
                    (Some(v), true) => {
                        self.viewer_rtcp.push(data.clone());
                        let mut for_str0m = vec![];
                        v.read_viewer_rtcp(
                            self.now,
                            &data,
                            Some(&mut self.source),
                            &mut self.batch,
                            &mut for_str0m,
                        )
                        .expect("the viewer's SRTCP under the captured keys");
                        self.viewer_rtcp_to_str0m.push(for_str0m.clone());
                        // KEEP_REPORTS=1 hands str0m the datagram as it came (the report
                        // blocks on Fluo's streams included), to measure what they cost it.
                        if std::env::var_os("KEEP_REPORTS").is_some() {
                            data
                        } else {
                            for_str0m
                        }
                    }
                    _ => data,
                };
                let input = Input::Receive(
                    self.now,
                    Receive {
                        proto: Protocol::Udp,
                        source: src,
                        destination: dst,
                        contents: data.as_slice().try_into().unwrap(),
                    },
                );
                self.server.handle_input(input).unwrap();
            }
            moved |= self.flush_egress();
            if !moved {
                break;
            }
        }
        self.now += step;
        self.server.handle_input(Input::Timeout(self.now)).unwrap();
    }

    /// Lets the server's str0m send what its last timer queued (reports), discarding it, so
    /// that nothing transient is counted as its state.
    pub fn settle(&mut self) {
        while let Ok(o) = self.server.poll_output() {
            if matches!(o, Output::Timeout(_)) {
                break;
            }
        }
    }

    pub fn flush_egress(&mut self) -> bool {
        let out: Vec<(Path, Vec<u8>)> = self.batch.iter().map(|(d, b)| (d, b.to_vec())).collect();
        self.batch.clear();
        for (path, data) in &out {
            assert_eq!(path.to, self.browser.addr);
            if !(self.drop_egress)(data) {
                self.browser.receive(self.now, self.server_addr, data);
            }
        }
        !out.is_empty()
    }

    /// Once str0m's DTLS has exported its keys: the egress streams, on the SSRCs, payload
    /// types and header extension ids str0m negotiated for this viewer.
    pub fn start_egress(&mut self) {
        let Some(keys) = self.slot.lock().unwrap().clone() else {
            return;
        };
        let (tx, rx) = keys.contexts().expect("a profile Fluo implements");
        let path = Path {
            socket: SocketId(0),
            to: self.browser.addr,
            tos: 0,
        };
        let mut v = Viewer::new(tx, rx, path, Clock::new());
        for (kind, codec, clock) in [(AUDIO, Codec::Opus, 48_000), (VIDEO, Codec::Vp8, 90_000)] {
            let mid = self.mids[kind];
            let media = self.server.media(mid).expect("negotiated media");
            let accepted = media.remote_pts().to_vec();
            let exts = media.remote_extmap();
            let plan = ExtPlan {
                mid: exts
                    .id_of(Extension::RtpMid)
                    .map(|id| (id, mid.to_string().into_bytes())),
                abs_send_time: exts.id_of(Extension::AbsoluteSendTime),
                ..ExtPlan::default()
            };
            let params = self
                .server
                .codec_config()
                .params()
                .iter()
                .find(|p| p.spec().codec == codec && accepted.contains(&p.pt()))
                .copied()
                .expect("a codec");
            let mut api = self.server.direct_api();
            let tx = api.stream_tx_by_mid(mid, None).expect("a send stream");
            let rtx = tx
                .rtx()
                .zip(params.resend())
                .map(|(s, pt)| Rtx::new(*s, *pt));
            let stream = StreamOut::new(*tx.ssrc(), *params.pt(), clock, rtx, plan);
            v.set_stream(media_kind(kind), Some(stream));
        }
        self.egress = Some(v);
    }

    pub fn connect(&mut self) {
        for _ in 0..400 {
            self.run(Duration::from_millis(5));
            if self.egress.is_some() && self.browser.connected {
                return;
            }
        }
        panic!("no DTLS connection");
    }

    /// One source packet of `kind`: into the source's cache (video), then to the viewer.
    pub fn send(&mut self, kind: usize) {
        self.src_seq[kind] = self.src_seq[kind].wrapping_add(1);
        self.src_ts[kind] = self.src_ts[kind].wrapping_add(if kind == VIDEO { 3000 } else { 960 });
        let payload: Vec<u8> = if kind == VIDEO {
            let mut p = vec![0x10u8; 1100];
            p[0] = 0x10; // VP8 descriptor: start of partition
            p
        } else {
            vec![0xf8; 80]
        };
        let mut pkt = Vec::new();
        let seq = self.src_seq[kind];
        write_rtp(
            &mut pkt,
            96,
            true,
            seq,
            self.src_ts[kind],
            SRC_SSRC[kind],
            &payload,
        );
        if let Some(history) = self.via_str0m {
            // As fluo-rtc's core/forward.rs writes a packet for one viewer.
            let s = self
                .egress
                .as_ref()
                .expect("streams known")
                .stream(media_kind(kind))
                .expect("a stream");
            let pt = s.pt.into();
            let mut api = self.server.direct_api();
            let tx = api
                .stream_tx_by_mid(self.mids[kind], None)
                .expect("a send stream");
            if kind == VIDEO && self.str0m_seq[kind] == 0 {
                tx.set_rtx_cache(2000, history, Some(0.15));
            }
            self.str0m_seq[kind] += 1;
            let seq = SeqNo::from(1000 + self.str0m_seq[kind]);
            let w = RtpWrite::new(pt, seq, self.src_ts[kind], self.now, payload)
                .marker(true)
                .nackable(kind == VIDEO);
            tx.write_rtp(w);
            self.server.handle_input(Input::Timeout(self.now)).unwrap();
            return;
        }
        if kind == VIDEO {
            self.source.insert(self.now, seq, &pkt);
        }
        let p = SourcePacket::parse(&pkt).unwrap();
        let v = self.egress.as_mut().expect("egress started");
        assert!(v.forward(self.now, media_kind(kind), &p, &mut self.batch));
    }
}

pub fn tx_keys(slot: &KeySlot) -> SrtpContext {
    let k = slot.lock().unwrap().clone().unwrap();
    k.contexts().unwrap().0
}

/// (SSRC, packet count, RTP time) of the sender reports in a plain compound packet.
pub fn sender_reports(plain: &[u8]) -> Vec<(u32, u32, u32)> {
    fluo_sfu::rtcp::RtcpCompound::new(plain)
        .map_while(Result::ok)
        .filter_map(|p| match p {
            fluo_sfu::rtcp::RtcpPacket::SenderReport(sr) => {
                Some((sr.ssrc(), sr.packet_count(), sr.rtp_time()))
            }
            _ => None,
        })
        .collect()
}

pub fn mids_of(sdp: &str) -> [Mid; 2] {
    let mut mids = [None, None];
    let mut kind = None;
    for l in sdp.lines() {
        if l.starts_with("m=audio") {
            kind = Some(AUDIO);
        } else if l.starts_with("m=video") {
            kind = Some(VIDEO);
        } else if let (Some(k), Some(m)) = (kind, l.strip_prefix("a=mid:")) {
            mids[k] = Some(Mid::from(m.trim()));
        }
    }
    [mids[0].unwrap(), mids[1].unwrap()]
}

pub fn stream_ssrc(p: &Pair, k: usize) -> u32 {
    p.egress
        .as_ref()
        .unwrap()
        .stream(media_kind(k))
        .unwrap()
        .ssrc
}
