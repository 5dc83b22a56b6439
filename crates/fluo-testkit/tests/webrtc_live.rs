//! WebRTC against a real server on 127.0.0.1 with real UDP: STUN discovery of the
//! server-reflexive address at start (with a STUN server the test runs, one that answers
//! garbage first, and one that never answers), and IPv6 host candidates.
use fluo_testkit::live::{start_server_with, Client};
use fluo_testkit::udp_peer::Peer;
use serde_json::json;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// A STUN server on 127.0.0.1 that answers every Binding request (after one garbage reply)
/// with `mapped` as XOR-MAPPED-ADDRESS; returns its address.
fn fake_stun(mapped: SocketAddr) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            if n < 20 {
                continue;
            }
            let _ = s.send_to(b"\x01\x01\x00\x00garbage", from);
            let SocketAddr::V4(m) = mapped else { return };
            let mut attr = vec![0x00, 0x20, 0x00, 0x08, 0x00, 0x01];
            attr.extend_from_slice(&(m.port() ^ 0x2112).to_be_bytes());
            for (b, k) in m.ip().octets().iter().zip([0x21u8, 0x12, 0xa4, 0x42]) {
                attr.push(b ^ k);
            }
            let mut r = vec![0x01, 0x01, 0x00, attr.len() as u8];
            r.extend_from_slice(&buf[4..20]);
            r.extend_from_slice(&attr);
            let _ = s.send_to(&r, from);
        }
    });
    addr
}

fn config(stun: Option<SocketAddr>) -> fluo_server::Config {
    fluo_server::Config {
        net: fluo_rtc::NetSettings {
            network_interfaces: Some(vec!["lo".into()]),
            stun_server: stun,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn stun_adds_the_public_address_and_media_still_flows_on_the_local_path() {
    let mapped: SocketAddr = "203.0.113.9:61000".parse().unwrap();
    let port = start_server_with(config(Some(fake_stun(mapped))));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut c, _, ep) = Client::with_endpoint(port).await.unwrap();
        c.subscribe(&ep, "IceCandidateFound").await.unwrap();
        c.invoke(&ep, "connect", json!({"sink": ep})).await.unwrap();
        let mut peer = Peer::new(str0m::RtcConfig::new());
        let offer = peer.offer(str0m::media::Direction::SendRecv);
        let answer = c
            .invoke(&ep, "processOffer", json!({"offer": offer}))
            .await
            .unwrap();
        let answer = answer.as_str().unwrap().to_string();
        let cands: Vec<&str> = answer
            .lines()
            .filter(|l| l.starts_with("a=candidate"))
            .collect();
        println!("candidates: {cands:?}");
        assert!(
            cands.iter().any(|c| c.contains("203.0.113.9 61000")),
            "the STUN-learnt address: {cands:?}"
        );
        assert!(
            cands.iter().any(|c| c.contains("127.0.0.1")),
            "the host address too: {cands:?}"
        );
        c.invoke(&ep, "gatherCandidates", json!({})).await.unwrap();
        let mut found = vec![];
        while let Some(d) = c
            .wait_event("IceCandidateFound", &ep, Duration::from_millis(500))
            .await
        {
            found.push(
                d["candidate"]["candidate"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        assert!(
            found.iter().any(|c| c.contains("203.0.113.9 61000")),
            "{found:?}"
        );
        peer.accept(&answer);
        let t0 = Instant::now();
        let frame = vec![0u8; 800];
        while t0.elapsed() < Duration::from_secs(5) && peer.frames_in < 20 {
            peer.drive(Some(&frame));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            peer.frames_in >= 20,
            "media loops back over the local path: {} frames",
            peer.frames_in
        );
    });
}

#[test]
fn a_silent_stun_server_delays_the_start_boundedly_and_leaves_host_candidates() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t0 = Instant::now();
    let port = start_server_with(config(Some(silent.local_addr().unwrap())));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut c, _, ep) = Client::with_endpoint(port).await.unwrap();
        println!(
            "ready {:?} after start with a silent STUN server",
            t0.elapsed()
        );
        assert!(t0.elapsed() < Duration::from_secs(4));
        let mut peer = Peer::new(str0m::RtcConfig::new());
        let answer = c
            .invoke(
                &ep,
                "processOffer",
                json!({"offer": peer.offer(str0m::media::Direction::SendRecv)}),
            )
            .await
            .unwrap();
        let cands: Vec<String> = answer
            .as_str()
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("a=candidate"))
            .map(String::from)
            .collect();
        assert!(
            !cands.is_empty()
                && cands.iter().all(|c| {
                    (c.contains(" 127.0.0.1 ") || c.contains(" ::1 ")) && c.contains("typ host")
                }),
            "{cands:?}"
        );
    });
    drop(silent);
}

#[test]
fn ipv6_host_candidates_carry_media_to_a_peer_that_has_only_ipv6() {
    let port = start_server_with(config(None));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut c, _, ep) = Client::with_endpoint(port).await.unwrap();
        c.subscribe(&ep, "NewCandidatePairSelected").await.unwrap();
        c.invoke(&ep, "connect", json!({"sink": ep})).await.unwrap();
        let mut peer = Peer::bind("[::1]:0".parse().unwrap(), str0m::RtcConfig::new());
        let offer = peer.offer(str0m::media::Direction::SendRecv);
        let answer = c
            .invoke(&ep, "processOffer", json!({"offer": offer}))
            .await
            .unwrap();
        let answer = answer.as_str().unwrap().to_string();
        let cands: Vec<&str> = answer
            .lines()
            .filter(|l| l.starts_with("a=candidate"))
            .collect();
        println!("candidates: {cands:?}");
        assert!(
            cands
                .iter()
                .any(|c| c.contains(" ::1 ") && c.contains("typ host")),
            "an IPv6 host candidate on lo: {cands:?}"
        );
        assert!(cands.iter().any(|c| c.contains(" 127.0.0.1 ")), "{cands:?}");
        peer.accept(&answer);
        let t0 = Instant::now();
        let frame = vec![0u8; 800];
        while t0.elapsed() < Duration::from_secs(5) && peer.frames_in < 20 {
            peer.drive(Some(&frame));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            peer.frames_in >= 20,
            "media loops back over IPv6: {} frames",
            peer.frames_in
        );
        let pair = c
            .wait_event("NewCandidatePairSelected", &ep, Duration::from_secs(2))
            .await
            .expect("a selected pair");
        println!("selected pair: {pair}");
        assert!(pair.to_string().contains("::1"), "{pair}");
    });
}

/// A WebRTC peer whose only candidate is an active ICE-TCP one (its UDP is "blocked"): it
/// connects to the server's passive candidates and speaks RFC 4571 frames.
struct TcpPeer {
    rtc: str0m::Rtc,
    /// The candidate str0m sends from; the real connection has an ephemeral port.
    local: SocketAddr,
    conns: Vec<(SocketAddr, std::net::TcpStream, Vec<u8>)>,
    video: Option<str0m::media::Mid>,
    pending: Option<str0m::change::SdpPendingOffer>,
    connected: bool,
    frames_in: u64,
    ts: u64,
}

impl TcpPeer {
    fn new() -> TcpPeer {
        let local: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut rtc = str0m::RtcConfig::new().build(Instant::now());
        let cand = str0m::Candidate::builder()
            .tcp()
            .host(local)
            .tcptype(str0m::net::TcpType::Active)
            .build()
            .unwrap();
        rtc.add_local_candidate(cand);
        TcpPeer {
            rtc,
            local,
            conns: vec![],
            video: None,
            pending: None,
            connected: false,
            frames_in: 0,
            ts: 0,
        }
    }

    fn offer(&mut self) -> String {
        use str0m::media::{Direction, MediaKind};
        let mut api = self.rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        self.video = Some(api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None));
        let (offer, pending) = api.apply().unwrap();
        self.pending = Some(pending);
        offer.to_sdp_string()
    }

    fn accept(&mut self, answer: &str) {
        let a = str0m::change::SdpAnswer::from_sdp_string(answer).unwrap();
        let p = self.pending.take().unwrap();
        self.rtc.sdp_api().accept_answer(p, a).unwrap();
    }

    fn drive(&mut self, frame: Option<&[u8]>) {
        use std::io::{Read, Write};
        use str0m::net::{Protocol, Receive};
        use str0m::{Event, Input, Output};
        let now = Instant::now();
        let mut frames = vec![];
        for (server, conn, buf) in &mut self.conns {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = conn.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            while buf.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                if buf.len() < 2 + len {
                    break;
                }
                frames.push((*server, buf[2..2 + len].to_vec()));
                buf.drain(..2 + len);
            }
        }
        for (server, f) in frames {
            if let Ok(contents) = f.as_slice().try_into() {
                let _ = self.rtc.handle_input(Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Tcp,
                        source: server,
                        destination: self.local,
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
                    .find(|p| p.spec().codec == str0m::format::Codec::Vp8)
                    .map(|p| p.pt());
                if let Some(pt) = pt {
                    let t =
                        str0m::media::MediaTime::new(self.ts, str0m::media::Frequency::NINETY_KHZ);
                    let _ = w.write(pt, now, t, data.to_vec());
                }
            }
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    assert_eq!(t.proto, Protocol::Tcp, "this peer has no UDP");
                    if !self.conns.iter().any(|(a, _, _)| *a == t.destination) {
                        if let Ok(c) = std::net::TcpStream::connect(t.destination) {
                            c.set_nonblocking(true).unwrap();
                            self.conns.push((t.destination, c, vec![]));
                        }
                    }
                    if let Some((_, c, _)) =
                        self.conns.iter_mut().find(|(a, _, _)| *a == t.destination)
                    {
                        let mut out = (t.contents.len() as u16).to_be_bytes().to_vec();
                        out.extend_from_slice(&t.contents);
                        c.set_nonblocking(false).unwrap();
                        let _ = c.write_all(&out);
                        c.set_nonblocking(true).unwrap();
                    }
                }
                Ok(Output::Event(Event::Connected)) => self.connected = true,
                Ok(Output::Event(Event::MediaData(d))) if d.params.spec().codec.is_video() => {
                    self.frames_in += 1
                }
                Ok(Output::Event(_)) => {}
                Ok(Output::Timeout(_)) | Err(_) => break,
            }
        }
    }
}

#[test]
fn a_peer_without_udp_connects_over_ice_tcp_and_ice_tcp_can_be_switched_off() {
    let port = start_server_with(config(None));
    let off = start_server_with(fluo_server::Config {
        net: fluo_rtc::NetSettings {
            network_interfaces: Some(vec!["lo".into()]),
            ice_tcp: false,
            ..Default::default()
        },
        ..Default::default()
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut c, pipe, ep) = Client::with_endpoint(port).await.unwrap();
        assert_eq!(c.invoke(&ep, "getIceTcp", json!({})).await, Ok(json!(true)));
        c.subscribe(&ep, "NewCandidatePairSelected").await.unwrap();
        c.invoke(&ep, "connect", json!({"sink": ep})).await.unwrap();
        let mut peer = TcpPeer::new();
        let offer = peer.offer();
        let answer = c
            .invoke(&ep, "processOffer", json!({"offer": offer}))
            .await
            .unwrap();
        let answer = answer.as_str().unwrap().to_string();
        let cands: Vec<&str> = answer
            .lines()
            .filter(|l| l.starts_with("a=candidate"))
            .collect();
        println!("candidates: {cands:?}");
        assert!(
            cands.iter().any(|c| c.contains(" tcp ")
                && c.contains("127.0.0.1")
                && c.contains("tcptype passive")),
            "a passive ICE-TCP candidate: {cands:?}"
        );
        peer.accept(&answer);
        let t0 = Instant::now();
        let frame = vec![0u8; 800];
        while t0.elapsed() < Duration::from_secs(8) && peer.frames_in < 20 {
            peer.drive(Some(&frame));
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "ICE-TCP: connected {} after {:?}, {} frames back",
            peer.connected,
            t0.elapsed(),
            peer.frames_in
        );
        assert!(peer.connected, "ICE and DTLS over TCP");
        assert!(
            peer.frames_in >= 20,
            "media loops back over TCP: {} frames",
            peer.frames_in
        );
        let pair = c
            .wait_event("NewCandidatePairSelected", &ep, Duration::from_secs(2))
            .await
            .expect("a selected pair");
        println!("selected pair: {pair}");
        assert!(
            pair["candidatePair"]["localCandidate"]
                .as_str()
                .unwrap_or_default()
                .contains(" tcp "),
            "{pair}"
        );

        // iceTcp=false on an endpoint, and KMS_ICE_TCP=0 on a server: UDP candidates only.
        let ep2 = c
            .create("WebRtcEndpoint", json!({"mediaPipeline": pipe}))
            .await
            .unwrap();
        c.invoke(&ep2, "setIceTcp", json!({"iceTcp": false}))
            .await
            .unwrap();
        let (mut c_off, _, ep3) = Client::with_endpoint(off).await.unwrap();
        assert_eq!(
            c_off.invoke(&ep3, "getIceTcp", json!({})).await,
            Ok(json!(false))
        );
        for (cl, e) in [(&mut c, &ep2), (&mut c_off, &ep3)] {
            let a = cl
                .invoke(e, "processOffer", json!({"offer": TcpPeer::new().offer()}))
                .await
                .unwrap();
            let a = a.as_str().unwrap();
            let cands: Vec<&str> = a.lines().filter(|l| l.starts_with("a=candidate")).collect();
            assert!(
                !cands.is_empty() && cands.iter().all(|l| l.contains(" udp ")),
                "{cands:?}"
            );
        }
    });
}

#[test]
fn hostile_ice_tcp_connections_are_closed_and_do_not_disturb_the_server() {
    use std::io::{Read, Write};
    let port = start_server_with(config(None));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut c, pipe, ep) = Client::with_endpoint(port).await.unwrap();
        let answer = c
            .invoke(
                &ep,
                "processOffer",
                json!({"offer": TcpPeer::new().offer()}),
            )
            .await
            .unwrap();
        let tcp: SocketAddr = answer
            .as_str()
            .unwrap()
            .lines()
            .find(|l| l.contains(" tcp ") && l.contains(" 127.0.0.1 "))
            .and_then(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                format!("{}:{}", f[4], f[5]).parse().ok()
            })
            .expect("a TCP candidate");
        // A connection that does not start with an ICE check (STUN) is closed.
        let mut g = std::net::TcpStream::connect(tcp).unwrap();
        for n in [0usize, 1, 20, 1500] {
            let mut f = (n as u16).to_be_bytes().to_vec();
            f.extend(std::iter::repeat_n(0xab, n));
            let _ = g.write_all(&f);
        }
        g.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut b = [0u8; 16];
        assert!(
            matches!(g.read(&mut b), Ok(0) | Err(_)),
            "a connection without STUN is closed"
        );
        // A frame longer than any packet: the connection is closed at once.
        let mut big = std::net::TcpStream::connect(tcp).unwrap();
        big.write_all(&[0xff, 0xff, 1, 2, 3]).unwrap();
        big.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut b = [0u8; 16];
        assert!(
            matches!(big.read(&mut b), Ok(0)),
            "an oversized frame ends the connection"
        );
        // Many connections that send half a frame.
        let half: Vec<_> = (0..50)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(tcp).unwrap();
                s.write_all(&[0x05]).unwrap();
                s
            })
            .collect();
        // The server still answers, and a real ICE-TCP peer still connects.
        let ep2 = c
            .create("WebRtcEndpoint", json!({"mediaPipeline": pipe}))
            .await
            .unwrap();
        c.invoke(&ep2, "connect", json!({"sink": ep2}))
            .await
            .unwrap();
        let mut peer = TcpPeer::new();
        let a = c
            .invoke(&ep2, "processOffer", json!({"offer": peer.offer()}))
            .await
            .unwrap();
        peer.accept(a.as_str().unwrap());
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(8) && peer.frames_in < 10 {
            peer.drive(Some(&[0u8; 500]));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(peer.frames_in >= 10, "{} frames", peer.frames_in);
        drop((g, half));
    });
}

/// qosDscp on real sockets: every datagram the endpoint sends carries the DSCP in its IP
/// header (the shared media socket marks it per datagram), and another endpoint's do not. A
/// raw socket (root) sees the IP headers of the UDP datagrams arriving on loopback.
#[test]
fn qos_dscp_marks_the_ip_header_of_the_endpoint_datagrams() {
    let raw = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::UDP),
    )
    .expect("a raw socket (the tests run as root)");
    raw.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let port = start_server_with(config(None));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = Client::connect(port).await.unwrap();
        let p = c.create("MediaPipeline", json!({})).await.unwrap();
        let mut peers = vec![];
        for dscp in ["EF", "NO_VALUE"] {
            let ep = c
                .create(
                    "WebRtcEndpoint",
                    json!({"mediaPipeline": p, "qosDscp": dscp}),
                )
                .await
                .unwrap();
            c.invoke(&ep, "connect", json!({"sink": ep})).await.unwrap();
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let at = sock.local_addr().unwrap().port();
            let mut peer = Peer::from_socket(sock, str0m::RtcConfig::new());
            let offer = peer.offer(str0m::media::Direction::SendRecv);
            let answer = c
                .invoke(&ep, "processOffer", json!({"offer": offer}))
                .await
                .unwrap();
            peer.accept(answer.as_str().unwrap());
            peers.push((at, peer));
        }
        // TOS bytes seen per peer port, from the server's media port.
        let mut tos: std::collections::HashMap<u16, std::collections::BTreeSet<u8>> =
            Default::default();
        let mut counts: std::collections::HashMap<u16, usize> = Default::default();
        let frame = vec![0u8; 800];
        let t0 = Instant::now();
        let mut buf = [0u8; 2048];
        while t0.elapsed() < Duration::from_secs(4) {
            for (_, peer) in peers.iter_mut() {
                peer.drive(Some(&frame));
            }
            // The raw socket sees every UDP datagram on loopback, other tests' media too:
            // read for a while, then drive the peers again.
            let until = Instant::now() + Duration::from_millis(20);
            while Instant::now() < until {
                let Ok(n) = std::io::Read::read(&mut &raw, &mut buf) else {
                    break;
                };
                let ihl = usize::from(buf[0] & 0x0f) * 4;
                if n < ihl + 8 {
                    continue;
                }
                let dst = u16::from_be_bytes([buf[ihl + 2], buf[ihl + 3]]);
                if peers.iter().any(|(at, _)| *at == dst) {
                    tos.entry(dst).or_default().insert(buf[1]);
                    *counts.entry(dst).or_default() += 1;
                }
            }
            if peers.iter().all(|(_, p)| p.frames_in >= 20) {
                break;
            }
        }
        let (ef, plain) = (peers[0].0, peers[1].0);
        println!(
            "TOS to the EF peer: {:?} ({} datagrams); to the other: {:?} ({})",
            tos.get(&ef),
            counts.get(&ef).copied().unwrap_or(0),
            tos.get(&plain),
            counts.get(&plain).copied().unwrap_or(0)
        );
        assert!(
            peers.iter().all(|(_, p)| p.frames_in >= 20),
            "media flowed both"
        );
        assert_eq!(tos.get(&ef).cloned().unwrap_or_default(), [0xb8].into());
        assert_eq!(tos.get(&plain).cloned().unwrap_or_default(), [0].into());
        assert!(counts.get(&ef).copied().unwrap_or(0) > 20);
    });
}

/// Ports of the UDP candidates of a description.
fn udp_ports(sdp: &str) -> Vec<u16> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate") && l.contains(" udp "))
        .filter_map(|l| l.split_whitespace().nth(5)?.parse().ok())
        .collect()
}

#[test]
fn two_fluo_servers_connect_back_to_back_and_two_links_between_them_carry_media() {
    // Server X: a peer publishes into `input`, which feeds two endpoints `a`; server Y: each
    // `a` is negotiated with an endpoint `b` there (X offers, Y answers), which feeds an
    // `output` a viewer watches. Two sessions between the same two servers.
    let (x, y) = (
        start_server_with(config(None)),
        start_server_with(config(None)),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut cx, px, input) = Client::with_endpoint(x).await.unwrap();
        let mut cy = Client::connect(y).await.unwrap();
        let py = cy.create("MediaPipeline", json!({})).await.unwrap();
        let mut outputs = vec![];
        let mut ports = vec![];
        for _ in 0..2 {
            let a = cx
                .create("WebRtcEndpoint", json!({"mediaPipeline": px}))
                .await
                .unwrap();
            let b = cy
                .create("WebRtcEndpoint", json!({"mediaPipeline": py}))
                .await
                .unwrap();
            let output = cy
                .create("WebRtcEndpoint", json!({"mediaPipeline": py}))
                .await
                .unwrap();
            cy.subscribe(&b, "NewCandidatePairSelected").await.unwrap();
            cx.invoke(&input, "connect", json!({"sink": a}))
                .await
                .unwrap();
            cy.invoke(&b, "connect", json!({"sink": output}))
                .await
                .unwrap();
            let offer = cx.invoke(&a, "generateOffer", json!({})).await.unwrap();
            let offer = offer.as_str().unwrap().to_string();
            assert!(offer.contains("a=ice-lite"), "{offer}");
            let answer = cy
                .invoke(&b, "processOffer", json!({"offer": offer}))
                .await
                .unwrap();
            let answer = answer.as_str().unwrap().to_string();
            assert!(!answer.contains("a=ice-lite"), "{answer}");
            println!("B's candidates: {:?}", udp_ports(&answer));
            ports.extend(udp_ports(&answer));
            cx.invoke(&a, "processAnswer", json!({"answer": answer}))
                .await
                .unwrap();
            outputs.push((b, output));
        }
        // Each B answers from sockets of its own: no two share a port, nor Y's shared one.
        let browser_facing = cy
            .create("WebRtcEndpoint", json!({"mediaPipeline": py}))
            .await
            .unwrap();
        let offer = Peer::new(str0m::RtcConfig::new()).offer(str0m::media::Direction::SendRecv);
        let shared = cy
            .invoke(&browser_facing, "processOffer", json!({ "offer": offer }))
            .await
            .unwrap();
        let shared = udp_ports(shared.as_str().unwrap());
        let mut all = ports.clone();
        all.extend(&shared);
        all.sort_unstable();
        all.dedup();
        assert_eq!(
            all.len(),
            ports.len() + shared.len(),
            "own ports {ports:?}, shared {shared:?}"
        );

        let mut publisher = Peer::new(str0m::RtcConfig::new());
        let answer = cx
            .invoke(
                &input,
                "processOffer",
                json!({"offer": publisher.offer(str0m::media::Direction::SendOnly)}),
            )
            .await
            .unwrap();
        publisher.accept(answer.as_str().unwrap());
        let mut viewers = vec![];
        for (_, output) in &outputs {
            let mut v = Peer::new(str0m::RtcConfig::new());
            let answer = cy
                .invoke(
                    output,
                    "processOffer",
                    json!({"offer": v.offer(str0m::media::Direction::RecvOnly)}),
                )
                .await
                .unwrap();
            v.accept(answer.as_str().unwrap());
            viewers.push(v);
        }
        let t0 = Instant::now();
        let frame = vec![0u8; 800];
        while t0.elapsed() < Duration::from_secs(10) && viewers.iter().any(|v| v.frames_in < 30) {
            publisher.drive(Some(&frame));
            for v in &mut viewers {
                v.drive(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let got: Vec<u64> = viewers.iter().map(|v| v.frames_in).collect();
        println!(
            "frames through the two links after {:?}: {got:?}",
            t0.elapsed()
        );
        assert!(got.iter().all(|n| *n >= 30), "{got:?}");
        for (b, _) in &outputs {
            let pair = cy
                .wait_event("NewCandidatePairSelected", b, Duration::from_secs(2))
                .await
                .expect("a selected pair");
            println!("B's selected pair: {pair}");
        }
    });
}
