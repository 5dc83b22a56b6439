//! TURN relay candidates against a real coturn, across network namespaces this test makes:
//!
//! ```text
//!   this process (Fluo)          netns T (coturn)                 netns P (peer)
//!   veth A0 10.N.1.1  <------>  A1 10.N.1.2   B1 10.N.2.1  <------>  B2 10.N.2.2
//!
//!   veth C0 10.N.3.1  <------>  C1 10.N.3.2 [netns R: NAT] D1 10.N.4.1  <------>  D2 10.N.4.2 (T)
//! ```
//!
//! Through R (a masquerading router), coturn's STUN sees Fluo as 10.N.4.1: a server-reflexive
//! address, gathered and announced beside the host one.
//!
//! The peer can reach only coturn's relay side (10.N.2.1): media flows only through the
//! relayed address Fluo allocated, with Fluo reaching coturn over UDP and over TCP; the server's
//! log at its default level stays a few lines for such a call. A peer that is relayed itself
//! (its one candidate allocated on coturn) is reported in NewCandidatePairSelected with that
//! relay candidate. Wrong credentials and an unreachable TURN server leave the host candidates
//! and a server that starts within its bound. Needs root, `ip netns`, `nft` and coturn's
//! `turnserver` (`make test` installs them); without them the test fails under `CI=true` and
//! otherwise says what it did not check (fluo_testkit::skip).

mod turn_peer;

use fluo_testkit::live::{start_server_with, Client};
use fluo_testkit::udp_peer::Peer;
use serde_json::json;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces, links and coturn; all removed on drop.
struct Net {
    t: String,
    p: String,
    r: String,
    a0: String,
    c0: String,
    n: u32,
    coturn: Option<Child>,
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(mut c) = self.coturn.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = sh(&["ip", "link", "del", &self.a0]);
        let _ = sh(&["ip", "link", "del", &self.c0]);
        for ns in [&self.t, &self.p, &self.r] {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

impl Net {
    fn ip(&self, side: u32, host: u32) -> String {
        format!("10.{}.{side}.{host}", self.n)
    }

    fn setup() -> Result<Net, String> {
        let pid = std::process::id();
        let tag = pid % 100_000;
        let mut net = Net {
            t: format!("fluo{tag}t"),
            p: format!("fluo{tag}p"),
            r: format!("fluo{tag}r"),
            a0: format!("fv{tag}a0"),
            c0: format!("fv{tag}c0"),
            n: 200 + pid % 50,
            coturn: None,
        };
        let (r, c0, c1, d1, d2) = (
            net.r.clone(),
            net.c0.clone(),
            format!("fv{tag}c1"),
            format!("fv{tag}d1"),
            format!("fv{tag}d2"),
        );
        let (t, p) = (net.t.clone(), net.p.clone());
        let (a0, a1, b1, b2) = (
            net.a0.clone(),
            format!("fv{tag}a1"),
            format!("fv{tag}b1"),
            format!("fv{tag}b2"),
        );
        let cidr = |side, host| format!("{}/24", net.ip(side, host));
        for cmd in [
            vec!["ip", "netns", "add", &t],
            vec!["ip", "netns", "add", &p],
            vec![
                "ip", "link", "add", &a0, "type", "veth", "peer", "name", &a1,
            ],
            vec!["ip", "link", "set", &a1, "netns", &t],
            vec!["ip", "addr", "add", &cidr(1, 1), "dev", &a0],
            vec!["ip", "link", "set", &a0, "up"],
            vec!["ip", "-n", &t, "addr", "add", &cidr(1, 2), "dev", &a1],
            vec!["ip", "-n", &t, "link", "set", &a1, "up"],
            vec!["ip", "-n", &t, "link", "set", "lo", "up"],
            vec![
                "ip", "link", "add", &b1, "type", "veth", "peer", "name", &b2,
            ],
            vec!["ip", "link", "set", &b1, "netns", &t],
            vec!["ip", "link", "set", &b2, "netns", &p],
            vec!["ip", "-n", &t, "addr", "add", &cidr(2, 1), "dev", &b1],
            vec!["ip", "-n", &t, "link", "set", &b1, "up"],
            vec!["ip", "-n", &p, "addr", "add", &cidr(2, 2), "dev", &b2],
            vec!["ip", "-n", &p, "link", "set", &b2, "up"],
            vec!["ip", "-n", &p, "link", "set", "lo", "up"],
            // The NAT path: this process -> R (masquerade) -> T.
            vec!["ip", "netns", "add", &r],
            vec![
                "ip", "link", "add", &c0, "type", "veth", "peer", "name", &c1,
            ],
            vec!["ip", "link", "set", &c1, "netns", &r],
            vec!["ip", "addr", "add", &cidr(3, 1), "dev", &c0],
            vec!["ip", "link", "set", &c0, "up"],
            vec!["ip", "-n", &r, "addr", "add", &cidr(3, 2), "dev", &c1],
            vec!["ip", "-n", &r, "link", "set", &c1, "up"],
            vec![
                "ip", "link", "add", &d1, "type", "veth", "peer", "name", &d2,
            ],
            vec!["ip", "link", "set", &d1, "netns", &r],
            vec!["ip", "link", "set", &d2, "netns", &t],
            vec!["ip", "-n", &r, "addr", "add", &cidr(4, 1), "dev", &d1],
            vec!["ip", "-n", &r, "link", "set", &d1, "up"],
            vec!["ip", "-n", &t, "addr", "add", &cidr(4, 2), "dev", &d2],
            vec!["ip", "-n", &t, "link", "set", &d2, "up"],
        ] {
            sh(&cmd)?;
        }
        let net4 = format!("{}/24", net.ip(4, 0));
        let via = net.ip(3, 2);
        let nft = ["ip", "netns", "exec", &r, "nft"];
        let hook = "{ type nat hook postrouting priority 100 ; }";
        let forward = ["ip", "netns", "exec", &r, "sysctl", "-q", "-w"];
        for cmd in [
            vec!["ip", "route", "add", &net4, "via", &via, "dev", &c0],
            [&forward[..], &["net.ipv4.ip_forward=1"]].concat(),
            [&nft[..], &["add", "table", "ip", "nat"]].concat(),
            [&nft[..], &["add", "chain", "ip", "nat", "post", hook]].concat(),
            [
                &nft[..],
                &[
                    "add",
                    "rule",
                    "ip",
                    "nat",
                    "post",
                    "oifname",
                    &d1,
                    "masquerade",
                ],
            ]
            .concat(),
        ] {
            sh(&cmd)?;
        }
        let (listen, relay, behind_nat) = (net.ip(1, 2), net.ip(2, 1), net.ip(4, 2));
        let coturn = Command::new("ip")
            .args([
                "netns",
                "exec",
                &t,
                "turnserver",
                "-n",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
            ])
            .args([
                "--listening-ip",
                &listen,
                "--listening-ip",
                &behind_nat,
                // For the peer's own allocation (it reaches nothing else).
                "--listening-ip",
                &relay,
                "--relay-ip",
                &relay,
                "--listening-port",
                "3478",
            ])
            .args([
                "--min-port",
                "50000",
                "--max-port",
                "50100",
                "--fingerprint",
            ])
            .args([
                "--lt-cred-mech",
                "--user",
                "fluo:secret",
                "--realm",
                "fluo.test",
            ])
            .args([
                "--log-file",
                "stdout",
                "--simple-log",
                "--pidfile",
                "/dev/null",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("turnserver: {e}"))?;
        net.coturn = Some(coturn);
        // Wait until coturn listens (its STUN answers a Binding request).
        let probe =
            std::net::UdpSocket::bind(format!("{}:0", net.ip(1, 1))).map_err(|e| e.to_string())?;
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .ok();
        let req = [
            0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        let server: SocketAddr = format!("{listen}:3478").parse().unwrap();
        let t0 = Instant::now();
        loop {
            let _ = probe.send_to(&req, server);
            let mut b = [0u8; 512];
            if probe.recv_from(&mut b).is_ok() {
                break;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                return Err("coturn did not start within 10 s".into());
            }
        }
        Ok(net)
    }

    /// A UDP socket bound to `addr` inside the peer's namespace.
    fn peer_socket(&self, addr: SocketAddr) -> std::net::UdpSocket {
        let ns = format!("/var/run/netns/{}", self.p);
        std::thread::spawn(move || {
            let f = std::fs::File::open(&ns).expect("the peer namespace");
            // SAFETY: setns(2) on a valid descriptor; it changes this thread's network
            // namespace only, and the thread ends right after binding the socket.
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            std::net::UdpSocket::bind(addr).expect("a socket in the peer namespace")
        })
        .join()
        .expect("the setns thread")
    }
}

fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (network namespaces need CAP_NET_ADMIN)".into());
    }
    if Command::new("turnserver").arg("--help").output().is_err() {
        return Some("coturn's turnserver is not installed (scripts/deps.sh test)".into());
    }
    if Command::new("nft").arg("--version").output().is_err() {
        return Some("nft (nftables) is not installed (scripts/deps.sh test)".into());
    }
    sh(&["ip", "netns", "list"]).err()
}

fn candidates(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate"))
        .map(String::from)
        .collect()
}

#[test]
fn coturn_relays_media_over_udp_and_tcp_and_stun_through_a_nat_gives_a_reflexive_candidate() {
    if let Some(why) = missing_prerequisite() {
        fluo_testkit::skip::or_fail(
            "TURN relay over UDP and TCP and STUN through a NAT (coturn in network namespaces)",
            &why,
        );
        return;
    }
    let net = Net::setup().expect("namespaces and coturn");
    let log = fluo_server::log_capture::capture_operator_log();
    let turn = |creds: &str, host: &str| {
        fluo_rtc::TurnUrl::parse(&format!("{creds}@{host}:3478")).expect("a turn URL")
    };
    let server = |turn: Option<fluo_rtc::TurnUrl>| {
        start_server_with(fluo_server::Config {
            net: fluo_rtc::NetSettings {
                network_interfaces: Some(vec![net.a0.clone()]),
                ice_tcp: false,
                turn,
                ..Default::default()
            },
            ..Default::default()
        })
    };
    let (host, relay_ip) = (net.ip(1, 1), net.ip(2, 1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Fluo reaches coturn over UDP, then over TCP; the relayed side is UDP both times.
        // Then an endpoint names the TURN server itself (turnUrl) on a server without one.
        // Last, an ICE-lite peer (as mediasoup): it sends no checks, so Fluo's own checks
        // (full ICE, as every endpoint with relayed candidates runs) must go through coturn.
        for (transport, per_endpoint, lite_peer) in [
            ("udp", false, false),
            ("tcp", false, false),
            ("udp", true, false),
            ("udp", false, true),
        ] {
            let logged = log.lines().len();
            let text = format!("fluo:secret@{}:3478?transport={transport}", net.ip(1, 2));
            let url = fluo_rtc::TurnUrl::parse(&text).expect("a turn URL");
            let port = server((!per_endpoint).then_some(url));
            let (mut c, _, ep) = Client::with_endpoint(port).await.unwrap();
            let transport = if lite_peer {
                "udp, an ICE-lite peer"
            } else if per_endpoint {
                for bad in ["fluo@10.0.0.1:3478", "fluo:secret@turn.example:3478"] {
                    let e = c
                        .invoke(&ep, "setTurnUrl", json!({"turnUrl": bad}))
                        .await
                        .expect_err(bad);
                    assert_eq!(e["code"], 40107, "{bad}: {e}");
                }
                c.invoke(&ep, "setTurnUrl", json!({"turnUrl": text}))
                    .await
                    .unwrap();
                "udp, the endpoint's turnUrl"
            } else {
                transport
            };
            c.subscribe(&ep, "NewCandidatePairSelected").await.unwrap();
            c.invoke(&ep, "connect", json!({"sink": ep})).await.unwrap();
            let sock = net.peer_socket(format!("{}:0", net.ip(2, 2)).parse().unwrap());
            let mut peer = Peer::from_socket(sock, str0m::RtcConfig::new().set_ice_lite(lite_peer));
            let offer = peer.offer(str0m::media::Direction::SendRecv);
            let answer = c
                .invoke(&ep, "processOffer", json!({"offer": offer}))
                .await
                .unwrap();
            let answer = answer.as_str().unwrap().to_string();
            let cands = candidates(&answer);
            println!("TURN over {transport}, Fluo's candidates: {cands:#?}");
            assert!(cands.iter().any(|c| c.contains(&format!(" {host} "))), "host: {cands:?}");
            assert!(
                cands
                    .iter()
                    .any(|c| c.contains(&format!(" {relay_ip} ")) && c.contains(" typ relay")),
                "the relayed address on coturn: {cands:?}"
            );
            assert!(!answer.contains("a=ice-lite"), "full ICE with relayed candidates");
            peer.accept(&answer);
            let t0 = Instant::now();
            let frame = vec![0u8; 800];
            while t0.elapsed() < Duration::from_secs(10) && peer.frames_in < 20 {
                peer.drive(Some(&frame));
                std::thread::sleep(Duration::from_millis(20));
            }
            println!(
                "TURN over {transport}: connected {} after {:?}, {} frames back",
                peer.connected,
                t0.elapsed(),
                peer.frames_in
            );
            assert!(
                peer.frames_in >= 20,
                "media through the relay ({transport}): {} frames",
                peer.frames_in
            );
            let pair = c
                .wait_event("NewCandidatePairSelected", &ep, Duration::from_secs(2))
                .await
                .expect("a selected pair");
            println!("selected pair: {pair}");
            assert!(pair.to_string().contains(&relay_ip), "{pair}");
            // What an operator reads at the default level: the start, the allocation, not a
            // line per packet or per poll of the TURN client.
            let lines = log.lines()[logged..].to_vec();
            println!("TURN over {transport}: {} log lines for the server and its call:\n{}", lines.len(), lines.join("\n"));
            assert!(lines.len() <= 30, "{} log lines at the default level", lines.len());
        }

        // A peer that is relayed itself: its only candidate is on coturn, which it reaches on
        // the relay side; Fluo reaches it through its own relayed address on the same coturn.
        // The selected pair names the peer's candidate as the peer sent it: typ relay.
        let url = fluo_rtc::TurnUrl::parse(&format!("fluo:secret@{}:3478", net.ip(1, 2))).unwrap();
        let (mut c, _, ep) = Client::with_endpoint(server(Some(url))).await.unwrap();
        c.subscribe(&ep, "NewCandidatePairSelected").await.unwrap();
        c.invoke(&ep, "connect", json!({"sink": ep})).await.unwrap();
        let sock = net.peer_socket(format!("{}:0", net.ip(2, 2)).parse().unwrap());
        let coturn_inside: SocketAddr = format!("{relay_ip}:3478").parse().unwrap();
        let mut peer = turn_peer::TurnPeer::allocate(sock, coturn_inside, "fluo", "secret")
            .expect("the peer's own allocation");
        let offer = peer.offer();
        let theirs: Vec<String> = candidates(&offer);
        println!("the relayed peer's candidates: {theirs:#?}");
        assert!(theirs.len() == 1 && theirs[0].contains(" typ relay"), "{theirs:?}");
        let answer = c.invoke(&ep, "processOffer", json!({"offer": offer})).await.unwrap();
        peer.accept(answer.as_str().unwrap());
        let t0 = Instant::now();
        let frame = vec![0u8; 800];
        while t0.elapsed() < Duration::from_secs(10) && peer.frames_in < 20 {
            peer.drive(Some(&frame));
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("relayed peer: connected {} after {:?}, {} frames back", peer.connected, t0.elapsed(), peer.frames_in);
        assert!(peer.frames_in >= 20, "media with a relayed peer: {} frames", peer.frames_in);
        let pair = c
            .wait_event("NewCandidatePairSelected", &ep, Duration::from_secs(2))
            .await
            .expect("a selected pair");
        println!("selected pair with a relayed peer: {pair}");
        let remote = pair["candidatePair"]["remoteCandidate"].as_str().unwrap_or_default();
        let sent = theirs[0].strip_prefix("a=").unwrap_or(&theirs[0]);
        assert_eq!(remote, sent, "the peer's candidate as it sent it");
        assert!(remote.contains(&format!(" {} typ relay", peer.relayed.port())), "{remote}");
        // Fluo's side: the relayed candidate it announced, as it announced it.
        let local = pair["candidatePair"]["localCandidate"].as_str().unwrap_or_default();
        let ours = candidates(answer.as_str().unwrap());
        assert!(local.contains(" typ relay") && local.contains(&relay_ip), "{local}");
        assert!(ours.iter().any(|c| c.strip_prefix("a=") == Some(local)), "{local} in {ours:?}");

        // Wrong credentials and an unreachable server: host candidates only, and the server
        // is ready (its first answer given) within a bound.
        for (what, url) in [
            ("wrong credentials", turn("fluo:wrong", &net.ip(1, 2))),
            ("an unreachable TURN server", turn("fluo:secret", &net.ip(1, 99))),
        ] {
            let t0 = Instant::now();
            let p = server(Some(url));
            let (mut c, _, ep) = Client::with_endpoint(p).await.unwrap();
            let a = c
                .invoke(&ep, "processOffer", json!({"offer": Peer::new(str0m::RtcConfig::new()).offer(str0m::media::Direction::SendRecv)}))
                .await
                .unwrap();
            let cands = candidates(a.as_str().unwrap());
            println!("{what}: first answer after {:?}, candidates {cands:?}", t0.elapsed());
            assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
            assert!(!cands.is_empty(), "gathering completes with what is possible");
            assert!(cands.iter().all(|c| !c.contains(&relay_ip)), "{cands:?}");
        }

        // STUN through a NAT: coturn sees Fluo at R's address, announced beside the host one.
        let stun: SocketAddr = format!("{}:3478", net.ip(4, 2)).parse().unwrap();
        let p = start_server_with(fluo_server::Config {
            net: fluo_rtc::NetSettings {
                network_interfaces: Some(vec![net.c0.clone()]),
                ice_tcp: false,
                stun_server: Some(stun),
                ..Default::default()
            },
            ..Default::default()
        });
        let (mut c, _, ep) = Client::with_endpoint(p).await.unwrap();
        let offer = Peer::new(str0m::RtcConfig::new()).offer(str0m::media::Direction::SendRecv);
        let a = c
            .invoke(&ep, "processOffer", json!({"offer": offer}))
            .await
            .unwrap();
        let cands = candidates(a.as_str().unwrap());
        println!("STUN behind a NAT, Fluo's candidates: {cands:#?}");
        let (inside, outside) = (net.ip(3, 1), net.ip(4, 1));
        assert!(cands.iter().any(|c| c.contains(&format!(" {inside} "))), "host: {cands:?}");
        assert!(
            cands.iter().any(|c| c.contains(&format!(" {outside} "))),
            "the server-reflexive address (the NAT's): {cands:?}"
        );

        // The same from an endpoint's own stunServerAddress / stunServerPort, on a server
        // without a STUN server of its own.
        let p = start_server_with(fluo_server::Config {
            net: fluo_rtc::NetSettings {
                network_interfaces: Some(vec![net.c0.clone()]),
                ice_tcp: false,
                ..Default::default()
            },
            ..Default::default()
        });
        let (mut c, _, ep) = Client::with_endpoint(p).await.unwrap();
        let bad = c
            .invoke(&ep, "setStunServerAddress", json!({"stunServerAddress": "stun.example"}))
            .await;
        assert!(bad.is_err(), "an IP address is needed: {bad:?}");
        c.invoke(&ep, "setStunServerAddress", json!({"stunServerAddress": net.ip(4, 2)}))
            .await
            .unwrap();
        c.invoke(&ep, "setStunServerPort", json!({"stunServerPort": 3478}))
            .await
            .unwrap();
        let offer = Peer::new(str0m::RtcConfig::new()).offer(str0m::media::Direction::SendRecv);
        let a = c
            .invoke(&ep, "processOffer", json!({"offer": offer}))
            .await
            .unwrap();
        let cands = candidates(a.as_str().unwrap());
        println!("an endpoint's own STUN server behind a NAT: {cands:#?}");
        assert!(
            cands.iter().any(|c| c.contains(&format!(" {outside} "))),
            "the endpoint's STUN server gave the NAT's address: {cands:?}"
        );
    });
    drop(net);
}
