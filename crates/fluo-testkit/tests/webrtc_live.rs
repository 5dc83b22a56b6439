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
        let mut c = Client::connect(port).await.unwrap();
        let pipe = c.create("MediaPipeline", json!({})).await.unwrap();
        let ep = c
            .create("WebRtcEndpoint", json!({"mediaPipeline": pipe}))
            .await
            .unwrap();
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
        let mut c = Client::connect(port).await.unwrap();
        let pipe = c.create("MediaPipeline", json!({})).await.unwrap();
        let ep = c
            .create("WebRtcEndpoint", json!({"mediaPipeline": pipe}))
            .await
            .unwrap();
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
        let mut c = Client::connect(port).await.unwrap();
        let pipe = c.create("MediaPipeline", json!({})).await.unwrap();
        let ep = c
            .create("WebRtcEndpoint", json!({"mediaPipeline": pipe}))
            .await
            .unwrap();
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
