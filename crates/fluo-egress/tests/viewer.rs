//! The egress fast path against an in-memory str0m viewer (fluo-testkit's `Browser`): the
//! server side is a str0m `Rtc` configured as Fluo's pool builds them (RTP mode, ICE lite),
//! whose crypto provider hands its DTLS-SRTP keys to the egress. Media never goes through the
//! server's str0m: the egress rewrites, protects and sends it; str0m keeps ICE, DTLS and RTCP.

use fluo_egress::{
    build_capturing, capturing_provider, Batch, Clock, ExtPlan, KeySlot, Profile, Rtx, Source,
    SourcePacket, SrtpContext, StreamOut, Viewer,
};
use fluo_sfu::nack::RetransmitCache;
use fluo_sfu::rtp::write_rtp;
use fluo_testkit::Browser;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::Extension;
use str0m::{Event, Input, Output, Rtc};

const AUDIO: usize = 0;
const VIDEO: usize = 1;

/// The publisher's SSRCs (the egress rewrites them).
const SRC_SSRC: [u32; 2] = [0x000a_0d10, 0x000f_1de0];

/// Decides whether the network drops a datagram from the egress to the browser.
type DropRule = Box<dyn FnMut(&[u8]) -> bool>;

struct Pair {
    now: Instant,
    server: Rtc,
    server_addr: SocketAddr,
    slot: KeySlot,
    browser: Browser,
    mids: [Mid; 2],
    egress: Option<Viewer>,
    batch: Batch,
    source: Source,
    keyframe_requests: Vec<(Mid, KeyframeRequestKind)>,
    /// SRTCP datagrams str0m wrote, and what they said before Fluo fixed them: (SSRC,
    /// packet count, RTP time) of each sender report.
    str0m_rtcp: usize,
    str0m_srs: Vec<(u32, u32, u32)>,
    /// RTP that str0m itself sent (there must be none).
    str0m_rtp: usize,
    /// Decides whether the network drops a datagram from the egress to the browser.
    drop_egress: DropRule,
    src_seq: [u16; 2],
    src_ts: [u32; 2],
}

fn is_rtcp(d: &[u8]) -> bool {
    d.len() >= 2 && (128..192).contains(&d[0]) && (192..224).contains(&d[1])
}

fn is_rtp(d: &[u8]) -> bool {
    d.len() >= 2 && (128..192).contains(&d[0]) && !(192..224).contains(&d[1])
}

impl Pair {
    fn new() -> Pair {
        let now = Instant::now();
        let server_addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let viewer_addr: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        let config = Rtc::builder()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .set_stats_interval(Some(Duration::from_secs(1)))
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
            source: Source {
                cache: RetransmitCache::new(1024, Duration::from_secs(1)),
            },
            keyframe_requests: vec![],
            str0m_rtcp: 0,
            str0m_srs: vec![],
            str0m_rtp: 0,
            drop_egress: Box::new(|_| false),
            src_seq: [40_000, 20_000],
            src_ts: [7_000, 90_000],
        }
    }

    /// Moves every datagram and timer up to `now`, then advances time by `step`.
    fn run(&mut self, step: Duration) {
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
                        let data = match (&mut self.egress, is_rtcp(&data)) {
                            (Some(v), true) => {
                                self.str0m_rtcp += 1;
                                let mut out = Vec::new();
                                // What str0m wrote, as str0m wrote it (for the assertions).
                                let tx = tx_keys(&self.slot);
                                let mut plain = vec![];
                                tx.unprotect_rtcp(&data, &mut plain).expect("str0m's SRTCP");
                                self.str0m_srs.extend(sender_reports(&plain));
                                v.reindex_str0m_rtcp(&data, &mut out)
                                    .expect("str0m's SRTCP under the captured keys");
                                out
                            }
                            _ => data,
                        };
                        self.browser.receive(self.now, self.server_addr, &data);
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
                if let (Some(v), true) = (&mut self.egress, is_rtcp(&data)) {
                    v.read_viewer_rtcp(self.now, &data, Some(&self.source), &mut self.batch)
                        .expect("the viewer's SRTCP under the captured keys");
                }
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

    fn flush_egress(&mut self) -> bool {
        let out: Vec<(SocketAddr, Vec<u8>)> =
            self.batch.iter().map(|(d, b)| (d, b.to_vec())).collect();
        self.batch.clear();
        for (dest, data) in &out {
            assert_eq!(*dest, self.browser.addr);
            if !(self.drop_egress)(data) {
                self.browser.receive(self.now, self.server_addr, data);
            }
        }
        !out.is_empty()
    }

    /// Once str0m's DTLS has exported its keys: the egress streams, on the SSRCs, payload
    /// types and header extension ids str0m negotiated for this viewer.
    fn start_egress(&mut self) {
        let Some(keys) = self.slot.lock().unwrap().clone() else {
            return;
        };
        let profile = Profile::from_dtls(keys.profile).expect("a known profile");
        let tx = SrtpContext::from_dtls(profile, &keys.material, keys.client).unwrap();
        let rx = SrtpContext::from_dtls(profile, &keys.material, !keys.client).unwrap();
        let mut v = Viewer::new(tx, rx, self.browser.addr, Clock::new());
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
                copy: [0; 15],
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
            v.streams[kind] = Some(StreamOut::new(*tx.ssrc(), *params.pt(), clock, rtx, plan));
        }
        self.egress = Some(v);
    }

    fn connect(&mut self) {
        for _ in 0..400 {
            self.run(Duration::from_millis(5));
            if self.egress.is_some() && self.browser.connected {
                return;
            }
        }
        panic!("no DTLS connection");
    }

    /// One source packet of `kind`: into the source's cache (video), then to the viewer.
    fn send(&mut self, kind: usize) {
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
        if kind == VIDEO {
            self.source.cache.insert(self.now, seq, &pkt);
        }
        let p = SourcePacket::parse(&pkt).unwrap();
        let v = self.egress.as_mut().expect("egress started");
        assert!(v.forward(self.now, kind, &p, &mut self.batch));
    }
}

fn tx_keys(slot: &KeySlot) -> SrtpContext {
    let k = slot.lock().unwrap().clone().unwrap();
    let p = Profile::from_dtls(k.profile).unwrap();
    SrtpContext::from_dtls(p, &k.material, k.client).unwrap()
}

/// (SSRC, packet count, RTP time) of the sender reports in a plain compound packet.
fn sender_reports(plain: &[u8]) -> Vec<(u32, u32, u32)> {
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

fn mids_of(sdp: &str) -> [Mid; 2] {
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

fn stream_ssrc(p: &Pair, kind: usize) -> u32 {
    p.egress.as_ref().unwrap().streams[kind]
        .as_ref()
        .unwrap()
        .ssrc
}

#[test]
fn captured_keys_protect_media_the_viewer_decodes_on_the_negotiated_mids() {
    let mut p = Pair::new();
    p.connect();
    let keys = p.slot.lock().unwrap().clone().unwrap();
    // What str0m's DTLS server picks with a str0m client (Chromium offers the same three).
    assert_eq!(
        Profile::from_dtls(keys.profile),
        Some(Profile::AeadAes256Gcm)
    );
    assert!(
        !keys.client,
        "ICE-lite Fluo answers, so it is the DTLS server"
    );
    for i in 0..60 {
        p.send(VIDEO);
        if i % 2 == 0 {
            p.send(AUDIO);
        }
        p.run(Duration::from_millis(10));
    }
    let seen = &p.browser.rtp_in;
    let video: Vec<_> = seen.iter().filter(|r| r.video).collect();
    let audio: Vec<_> = seen.iter().filter(|r| !r.video).collect();
    assert_eq!(
        video.len(),
        60,
        "every video packet decrypted and mapped to the video mid"
    );
    assert_eq!(audio.len(), 30);
    assert!(video.iter().all(|r| r.ssrc == stream_ssrc(&p, VIDEO)));
    assert!(audio.iter().all(|r| r.ssrc == stream_ssrc(&p, AUDIO)));
    // One continuous sequence per stream, 3000 ticks apart on video.
    for w in video.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
        assert_eq!(w[1].ts.wrapping_sub(w[0].ts), 3000);
    }
    assert_eq!(p.str0m_rtp, 0, "no RTP went through str0m");
}

#[test]
fn a_lost_packet_is_nacked_by_the_viewer_and_resent_from_the_shared_cache_as_rtx() {
    let mut p = Pair::new();
    p.connect();
    let video_ssrc = stream_ssrc(&p, VIDEO);
    assert!(
        p.egress.as_ref().unwrap().streams[VIDEO]
            .as_ref()
            .unwrap()
            .rtx
            .is_some(),
        "the viewer negotiated RTX"
    );
    // The network drops the 20th video packet once.
    let mut n = 0;
    p.drop_egress = Box::new(move |d| {
        if d.len() < 1000 || u32::from_be_bytes(d[8..12].try_into().unwrap()) != video_ssrc {
            return false;
        }
        n += 1;
        n == 20
    });
    for _ in 0..40 {
        p.send(VIDEO);
        p.run(Duration::from_millis(10));
    }
    for _ in 0..50 {
        p.run(Duration::from_millis(10));
    }
    let video: Vec<u64> = p
        .browser
        .rtp_in
        .iter()
        .filter(|r| r.video)
        .map(|r| r.seq)
        .collect();
    let first = *video.iter().min().unwrap();
    let mut sorted = video.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted,
        (first..first + 40).collect::<Vec<_>>(),
        "every packet arrived"
    );
    let s = p.egress.as_ref().unwrap().streams[VIDEO].as_ref().unwrap();
    assert!(s.nacked >= 1, "the viewer NACKed");
    assert_eq!(s.resent, 1, "one RTX answered it");
    // The resent one arrived after its successors.
    let pos = video.iter().position(|&q| q == first + 19).unwrap();
    assert!(pos > 20, "the 20th packet came back later, at {pos}");
}

#[test]
fn a_keyframe_request_from_the_viewer_reaches_str0m_although_it_sent_nothing() {
    let mut p = Pair::new();
    p.connect();
    for _ in 0..10 {
        p.send(VIDEO);
        p.run(Duration::from_millis(10));
    }
    let mid = p.mids[VIDEO];
    p.browser
        .rtc
        .direct_api()
        .stream_rx_by_mid(mid, None)
        .expect("the viewer's video stream")
        .request_keyframe(KeyframeRequestKind::Pli);
    for _ in 0..5 {
        p.run(Duration::from_millis(10));
    }
    assert_eq!(p.keyframe_requests, vec![(mid, KeyframeRequestKind::Pli)]);
}

#[test]
fn sender_reports_carry_what_the_egress_sent_and_reach_the_viewers_stats() {
    let mut p = Pair::new();
    p.connect();
    for i in 0..300 {
        p.send(VIDEO);
        if i % 2 == 0 {
            p.send(AUDIO);
        }
        p.run(Duration::from_millis(10));
    }
    let video_ssrc = stream_ssrc(&p, VIDEO);
    // str0m's own reports on Fluo's streams say nothing was sent.
    let str0m_video: Vec<_> = p.str0m_srs.iter().filter(|s| s.0 == video_ssrc).collect();
    assert!(str0m_video.len() >= 2, "str0m scheduled sender reports");
    assert!(
        str0m_video.iter().all(|s| s.1 == 0 && s.2 == 0),
        "{str0m_video:?}"
    );
    // What the viewer received instead: Fluo's counts, on Fluo's RTP clock.
    let srs: Vec<_> = p
        .browser
        .sender_reports
        .iter()
        .filter(|s| *s.ssrc == video_ssrc)
        .collect();
    assert_eq!(
        srs.len(),
        str0m_video.len(),
        "every report reached the viewer"
    );
    let last = srs.last().unwrap();
    assert!(last.sender_packet_count > 150, "{last:?}");
    assert_eq!(last.sender_octet_count, last.sender_packet_count * 1100);
    // RTP time of the report against the packets around it: 3000 ticks per 10 ms.
    let video: Vec<_> = p.browser.rtp_in.iter().filter(|r| r.video).collect();
    let at = video[last.sender_packet_count as usize - 1].ts;
    let rtp = last.rtp_time.numer() as u32;
    let diff = rtp.wrapping_sub(at) as i32;
    assert!(
        (0..=3000).contains(&diff),
        "SR RTP time {rtp} vs last packet {at}"
    );
    // The viewer's statistics show the remote (sender-side) counts from those reports.
    let stats = p
        .browser
        .ingress_stats
        .iter()
        .rev()
        .find(|s| s.mid == p.mids[VIDEO])
        .expect("receive statistics");
    let remote = stats
        .remote
        .as_ref()
        .expect("remote-outbound stats from sender reports");
    assert!(remote.packets > 150);
    // Round trip from the viewer's receiver reports on Fluo's reports.
    let rtt = p.egress.as_ref().unwrap().rtt.expect("a round trip");
    assert!(rtt < Duration::from_millis(50), "{rtt:?}");
    // One SRTCP index sequence: as many as str0m wrote, all accepted.
    assert_eq!(
        p.egress.as_ref().unwrap().srtcp_index() as usize,
        p.str0m_rtcp
    );
}
