//! A WebRTC peer on a real UDP socket (str0m, frame mode) that sends real VP8 frames and
//! keeps the video frames it receives (tests and benches of the media plane).
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

pub struct Peer {
    pub rtc: Rtc,
    sock: UdpSocket,
    addr: SocketAddr,
    video: Option<Mid>,
    audio: Option<Mid>,
    pending: Option<SdpPendingOffer>,
    /// The last answer applied (an ICE restart's answer is built from it).
    answer: Option<String>,
    pub connected: bool,
    /// When ICE last came up (connected or completed), since the last ICE restart.
    pub ice_up_at: Option<Instant>,
    /// Video frames received: (codec, bytes), while `keep_frames` is set.
    pub frames: Vec<(Codec, Vec<u8>)>,
    /// Keep received frames (else only count them).
    pub keep_frames: bool,
    /// Video frames received.
    pub frames_in: u64,
    /// Keyframe requests (PLI or FIR) received for what it sends.
    pub keyframe_requests: u64,
    /// The codec `drive` sends frames as.
    pub send_codec: Codec,
    ts: u64,
    audio_ts: u64,
}

impl Peer {
    pub fn new(cfg: RtcConfig) -> Peer {
        Peer::bind("127.0.0.1:0".parse().expect("an address"), cfg)
    }

    /// A peer whose one host candidate is a socket bound to `addr` (e.g. `[::1]:0`).
    pub fn bind(addr: SocketAddr, cfg: RtcConfig) -> Peer {
        Peer::from_socket(UdpSocket::bind(addr).expect("udp"), cfg)
    }

    /// A peer on a socket made elsewhere (e.g. inside another network namespace).
    pub fn from_socket(sock: UdpSocket, cfg: RtcConfig) -> Peer {
        sock.set_nonblocking(true).expect("nonblocking");
        let addr = sock.local_addr().expect("addr");
        let mut rtc = cfg.build(Instant::now());
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        Peer {
            rtc,
            sock,
            addr,
            video: None,
            audio: None,
            pending: None,
            answer: None,
            connected: false,
            ice_up_at: None,
            frames: vec![],
            keep_frames: true,
            frames_in: 0,
            keyframe_requests: 0,
            send_codec: Codec::Vp8,
            ts: 0,
            audio_ts: 0,
        }
    }

    pub fn offer(&mut self, dir: Direction) -> String {
        let mut api = self.rtc.sdp_api();
        self.audio = Some(api.add_media(MediaKind::Audio, dir, None, None, None));
        self.video = Some(api.add_media(MediaKind::Video, dir, None, None, None));
        let (offer, pending) = api.apply().expect("an offer");
        self.pending = Some(pending);
        offer.to_sdp_string()
    }

    /// Offers `dir` to a WebRtcEndpoint of `c` (processOffer) and applies its answer.
    #[cfg(feature = "live")]
    pub async fn negotiate(
        &mut self,
        c: &mut crate::live::Client,
        endpoint: &str,
        dir: Direction,
    ) -> Result<(), String> {
        let offer = self.offer(dir);
        let answer = c
            .invoke(
                endpoint,
                "processOffer",
                serde_json::json!({"offer": offer}),
            )
            .await
            .map_err(|e| format!("processOffer: {e}"))?;
        self.try_accept(answer.as_str().ok_or("processOffer gave no SDP")?)
    }

    /// A publisher (`pub_cfg`) sending to `e_pub` and a viewer (`viewer_cfg`) receiving from
    /// `e_view`, two WebRtcEndpoints of `c`, both negotiated.
    #[cfg(feature = "live")]
    pub async fn publisher_and_viewer(
        c: &mut crate::live::Client,
        e_pub: &str,
        e_view: &str,
        pub_cfg: RtcConfig,
        viewer_cfg: RtcConfig,
    ) -> Result<(Peer, Peer), String> {
        let mut publisher = Peer::new(pub_cfg);
        publisher.negotiate(c, e_pub, Direction::SendOnly).await?;
        let mut viewer = Peer::new(viewer_cfg);
        viewer.negotiate(c, e_view, Direction::RecvOnly).await?;
        Ok((publisher, viewer))
    }

    pub fn accept(&mut self, answer: &str) {
        if let Err(e) = self.try_accept(answer) {
            panic!("answer not accepted: {e}");
        }
    }

    /// Applies the server's answer to the pending offer.
    pub fn try_accept(&mut self, answer: &str) -> Result<(), String> {
        let a = SdpAnswer::from_sdp_string(answer).map_err(|e| e.to_string())?;
        let p = self.pending.take().ok_or("no offer is pending")?;
        self.rtc
            .sdp_api()
            .accept_answer(p, a)
            .map_err(|e| e.to_string())?;
        self.answer = Some(answer.to_string());
        Ok(())
    }

    /// Restarts ICE as the offerer would, on a new socket at the same IP (the old one closes:
    /// the peer moved): its new ICE credentials (ufrag, pwd) and host candidate (`a=...`),
    /// for the signalling (a WHIP/WHEP PATCH); [`Peer::accept_restart`] applies the answer.
    pub fn restart_ice(&mut self) -> (String, String, String) {
        let sock = UdpSocket::bind(SocketAddr::new(self.addr.ip(), 0)).expect("udp");
        sock.set_nonblocking(true).expect("nonblocking");
        let mut api = self.rtc.sdp_api();
        let creds = api.ice_restart(false);
        let (_, pending) = api.apply().expect("an ICE restart offer");
        self.pending = Some(pending);
        self.addr = sock.local_addr().expect("addr");
        self.sock = sock;
        self.ice_up_at = None;
        let cand = Candidate::host(self.addr, "udp").expect("candidate");
        (
            creds.ufrag,
            creds.pass,
            format!("a={}", cand.to_sdp_string()),
        )
    }

    /// Applies the answer to an ICE restart given as a trickle-ICE fragment (RFC 8840: the
    /// remote's new `ice-ufrag`, `ice-pwd` and candidates): the last answer with those.
    pub fn accept_restart(&mut self, frag: &str) -> Result<(), String> {
        let value = |name: &str| {
            frag.lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(str::to_string)
                .ok_or(format!("no {name} in the fragment"))
        };
        let (ufrag, pwd) = (value("a=ice-ufrag:")?, value("a=ice-pwd:")?);
        let cands: Vec<&str> = (frag.lines().map(str::trim))
            .filter(|l| l.starts_with("a=candidate:"))
            .collect();
        let before = self.answer.clone().ok_or("no answer applied before")?;
        let mut answer = String::new();
        for line in before.lines().map(str::trim_end) {
            if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
                continue;
            }
            if line.starts_with("a=ice-ufrag:") {
                answer.push_str(&format!("a=ice-ufrag:{ufrag}\r\n"));
            } else if line.starts_with("a=ice-pwd:") {
                answer.push_str(&format!("a=ice-pwd:{pwd}\r\n"));
                cands
                    .iter()
                    .for_each(|c| answer.push_str(&format!("{c}\r\n")));
            } else {
                answer.push_str(line);
                answer.push_str("\r\n");
            }
        }
        self.try_accept(&answer)?;
        // The restart dropped the local candidates: the new socket's.
        let cand = Candidate::host(self.addr, "udp").map_err(|e| e.to_string())?;
        self.rtc.add_local_candidate(cand);
        Ok(())
    }

    /// Queues one 20 ms Opus frame for sending (once connected); [`Peer::drive`] sends it.
    pub fn send_opus(&mut self, data: &[u8]) {
        if !self.connected {
            return;
        }
        self.audio_ts += 960;
        let Some(w) = self.audio.and_then(|m| self.rtc.writer(m)) else {
            return;
        };
        let pt = w
            .payload_params()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt());
        if let Some(pt) = pt {
            let t = MediaTime::new(self.audio_ts, Frequency::FORTY_EIGHT_KHZ);
            let _ = w.write(pt, Instant::now(), t, data.to_vec());
        }
    }

    /// Asks the sender of the video it receives for a keyframe (a PLI, sent by the next
    /// [`Peer::drive`]); whether it could.
    pub fn request_keyframe(&mut self) -> bool {
        let Some(mut w) = self.video.and_then(|m| self.rtc.writer(m)) else {
            return false;
        };
        w.request_keyframe(None, str0m::media::KeyframeRequestKind::Pli)
            .is_ok()
    }

    /// Reads, sends, fires timers; sends `frame` (as `send_codec`) if given.
    pub fn drive(&mut self, frame: Option<&[u8]>) {
        let mut buf = [0u8; 2048];
        let now = Instant::now();
        while let Ok((n, src)) = self.sock.recv_from(&mut buf) {
            if let Ok(contents) = buf[..n].try_into() {
                let _ = self.rtc.handle_input(Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source: src,
                        destination: self.addr,
                        contents,
                    },
                ));
            }
        }
        if let (Some(data), true) = (frame, self.connected) {
            self.ts += 3000;
            if let Some(w) = self.video.and_then(|m| self.rtc.writer(m)) {
                let pt = w
                    .payload_params()
                    .find(|p| p.spec().codec == self.send_codec)
                    .map(|p| p.pt());
                if let Some(pt) = pt {
                    let t = MediaTime::new(self.ts, Frequency::NINETY_KHZ);
                    let _ = w.write(pt, now, t, data.to_vec());
                }
            }
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = self.sock.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::Connected)) => self.connected = true,
                Ok(Output::Event(Event::IceConnectionStateChange(s))) => {
                    let up = matches!(
                        s,
                        IceConnectionState::Connected | IceConnectionState::Completed
                    );
                    if up && self.ice_up_at.is_none() {
                        self.ice_up_at = Some(now);
                    }
                }
                Ok(Output::Event(Event::MediaData(d))) => {
                    let codec = d.params.spec().codec;
                    if codec.is_video() {
                        self.frames_in += 1;
                        if self.keep_frames {
                            self.frames.push((codec, d.data.to_vec()));
                        }
                    }
                }
                Ok(Output::Event(Event::KeyframeRequest(_))) => self.keyframe_requests += 1,
                Ok(Output::Event(_)) => {}
                Ok(Output::Timeout(_)) | Err(_) => break,
            }
        }
    }
}

/// Paces a publisher's frames at 30 fps: the next frame (in a loop over `frames`) when one is
/// due and the publisher is connected, else `None`; for [`Peer::drive`] called every few ms.
#[derive(Debug)]
pub struct Pacer {
    next: Instant,
    n: usize,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            next: Instant::now(),
            n: 0,
        }
    }
}

impl Pacer {
    /// The frame to send now, if any.
    pub fn frame<'a>(&mut self, connected: bool, frames: &'a [Vec<u8>]) -> Option<&'a [u8]> {
        let now = Instant::now();
        if !connected || now < self.next || frames.is_empty() {
            return None;
        }
        self.next = now.max(self.next) + std::time::Duration::from_millis(33);
        self.n += 1;
        Some(frames[self.n % frames.len()].as_slice())
    }
}

/// The frames of an IVF file.
pub fn ivf_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![];
    let Some(h) = bytes.get(6..8) else { return out };
    let mut i = usize::from(u16::from_le_bytes([h[0], h[1]]));
    while let Some(sz) = bytes.get(i..i + 4) {
        let n = u32::from_le_bytes([sz[0], sz[1], sz[2], sz[3]]) as usize;
        let Some(f) = bytes.get(i + 12..i + 12 + n) else {
            break;
        };
        out.push(f.to_vec());
        i += 12 + n;
    }
    out
}

/// The access units of an H.264 Annex-B stream written with access unit delimiters
/// (x264 `aud=1`): each starts at a delimiter NAL (type 9).
pub fn h264_access_units(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut starts = vec![];
    let mut i = 0;
    while i + 4 < bytes.len() {
        if bytes[i..i + 4] == [0, 0, 0, 1] && bytes[i + 4] & 0x1f == 9 {
            starts.push(i);
        }
        i += 1;
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &a)| bytes[a..*starts.get(k + 1).unwrap_or(&bytes.len())].to_vec())
        .collect()
}
