//! A WebRTC peer (str0m, frame mode) that is itself behind TURN: its only candidate is the
//! address it allocated on a TURN server, and all its traffic goes through that allocation,
//! as a browser's does when its network allows nothing else.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use turn_client_proto::api::{TurnClientApi, TurnConfig, TurnEvent, TurnRecvRet};
use turn_client_proto::stun::agent::Transmit;
use turn_client_proto::types::{TransportType, TurnCredentials};
use turn_client_proto::udp::TurnClientUdp;

pub struct TurnPeer {
    pub rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    server: SocketAddr,
    /// The relayed address: this peer's one candidate.
    pub relayed: SocketAddr,
    client: TurnClientUdp,
    epoch: Instant,
    video: Option<Mid>,
    pending: Option<SdpPendingOffer>,
    pub connected: bool,
    pub frames_in: u64,
    ts: u64,
}

impl TurnPeer {
    fn t(epoch: Instant, now: Instant) -> turn_client_proto::stun::Instant {
        let n = now.saturating_duration_since(epoch).as_nanos();
        turn_client_proto::stun::Instant::from_nanos(i64::try_from(n).unwrap_or(i64::MAX))
    }

    /// Allocates on `server` from `sock` (non-blocking afterwards), within 5 s.
    pub fn allocate(
        sock: UdpSocket,
        server: SocketAddr,
        user: &str,
        password: &str,
    ) -> Result<TurnPeer, String> {
        let local = sock.local_addr().map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(|e| e.to_string())?;
        let config = TurnConfig::new(TurnCredentials::new(user, password));
        let mut client = TurnClientUdp::allocate(local, server, config);
        let epoch = Instant::now();
        let mut buf = [0u8; 2048];
        let relayed = loop {
            let now = Instant::now();
            if now > epoch + Duration::from_secs(5) {
                return Err("no TURN allocation within 5 s".into());
            }
            let _ = client.poll(Self::t(epoch, now));
            while let Some(tr) = client.poll_transmit(Self::t(epoch, now)) {
                let _ = sock.send_to(tr.data.as_ref(), tr.to);
            }
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let tr = Transmit::new(&buf[..n], TransportType::Udp, from, local);
                let _ = client.recv(tr, Self::t(epoch, Instant::now()));
            }
            let mut got = None;
            while let Some(ev) = client.poll_event() {
                match ev {
                    TurnEvent::AllocationCreated(TransportType::Udp, a) => got = Some(a),
                    TurnEvent::AllocationCreateFailed(f) => {
                        return Err(format!("allocation refused ({f:?})"))
                    }
                    _ => {}
                }
            }
            if let Some(a) = got {
                break a;
            }
        };
        sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut rtc = RtcConfig::new().build(Instant::now());
        rtc.add_local_candidate(
            Candidate::relayed(relayed, local, "udp").map_err(|e| e.to_string())?,
        );
        Ok(TurnPeer {
            rtc,
            sock,
            local,
            server,
            relayed,
            client,
            epoch,
            video: None,
            pending: None,
            connected: false,
            frames_in: 0,
            ts: 0,
        })
    }

    /// An offer with audio and video both ways; its one candidate is the relayed address.
    pub fn offer(&mut self) -> String {
        let mut api = self.rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        self.video = Some(api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None));
        let (offer, pending) = api.apply().expect("an offer");
        self.pending = Some(pending);
        offer.to_sdp_string()
    }

    pub fn accept(&mut self, answer: &str) {
        let a = SdpAnswer::from_sdp_string(answer).expect("the answer parses");
        let p = self.pending.take().expect("an offer is pending");
        // TURN lets in only the peers it was told about: every candidate of the answer.
        let now = Self::t(self.epoch, Instant::now());
        for l in answer.lines().filter(|l| l.starts_with("a=candidate:")) {
            if let Some(Ok(ip)) = l.split_whitespace().nth(4).map(str::parse::<IpAddr>) {
                if !self.client.have_permission(TransportType::Udp, ip) {
                    let _ = self.client.create_permission(TransportType::Udp, ip, now);
                }
            }
        }
        self.rtc
            .sdp_api()
            .accept_answer(p, a)
            .expect("the answer is accepted");
    }

    /// Reads, sends (through the relay), fires timers; sends a VP8 `frame` once connected.
    pub fn drive(&mut self, frame: Option<&[u8]>) {
        let mut buf = [0u8; 2048];
        let now = Instant::now();
        let t = Self::t(self.epoch, now);
        while let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            let tr = Transmit::new(&buf[..n], TransportType::Udp, from, self.local);
            let mut data = vec![];
            if let TurnRecvRet::PeerData(d) = self.client.recv(tr, t) {
                data.push((d.peer, d.data().to_vec()));
            }
            while let Some(d) = self.client.poll_recv(t) {
                data.push((d.peer, d.data().to_vec()));
            }
            for (peer, bytes) in data {
                if let Ok(contents) = bytes.as_slice().try_into() {
                    let _ = self.rtc.handle_input(Input::Receive(
                        now,
                        Receive {
                            proto: Protocol::Udp,
                            source: peer,
                            destination: self.relayed,
                            contents,
                        },
                    ));
                }
            }
        }
        if let (Some(data), true) = (frame, self.connected) {
            self.ts += 3000;
            if let Some(w) = self.video.and_then(|m| self.rtc.writer(m)) {
                let pt = w
                    .payload_params()
                    .find(|p| p.spec().codec == Codec::Vp8)
                    .map(|p| p.pt());
                if let Some(pt) = pt {
                    let mt = MediaTime::new(self.ts, Frequency::NINETY_KHZ);
                    let _ = w.write(pt, now, mt, data.to_vec());
                }
            }
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(tr)) => {
                    let sent = self.client.send_to(
                        TransportType::Udp,
                        tr.destination,
                        &tr.contents[..],
                        t,
                    );
                    if let Ok(Some(b)) = sent {
                        let _ = self.sock.send_to(&b.build().data, self.server);
                    }
                }
                Ok(Output::Event(Event::Connected)) => self.connected = true,
                Ok(Output::Event(Event::MediaData(d))) => {
                    if d.params.spec().codec.is_video() {
                        self.frames_in += 1;
                    }
                }
                Ok(Output::Event(_)) => {}
                Ok(Output::Timeout(_)) | Err(_) => break,
            }
        }
        let _ = self.client.poll(t);
        while let Some(tr) = self.client.poll_transmit(t) {
            let _ = self.sock.send_to(tr.data.as_ref(), tr.to);
        }
        while self.client.poll_event().is_some() {}
    }
}
