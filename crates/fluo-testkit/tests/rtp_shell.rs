//! RtpEndpoint's sockets on tokio: twenty endpoints carrying media spawn no OS thread,
//! release under media frees the ports at once, and Fluo's SDES-SRTP is read by libsrtp
//! (gst-launch's srtpdec) in every suite Fluo offers.
//!
//! The thread count is of this whole process: the tests of this binary hold one lock so
//! that none starts threads while another counts.

use fluo_testkit::live::{rt, serial, start_server, Client};
use fluo_testkit::tmp;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn sdp_port(sdp: &str) -> u16 {
    sdp.lines()
        .find_map(|l| {
            l.strip_prefix("m=audio ")
                .or_else(|| l.strip_prefix("m=video "))
        })
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("an m= line with a port")
}

/// A PCMU offer from a peer at 127.0.0.1:`port`.
fn pcmu_offer(port: u16) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=peer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
}

/// One RtpEndpoint negotiated with a peer socket of this test: (endpoint, peer, Fluo's port).
async fn endpoint(c: &mut Client, pipe: &str) -> (String, UdpSocket, u16) {
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer socket");
    let port = peer.local_addr().expect("addr").port();
    let ep = c
        .create("RtpEndpoint", json!({"mediaPipeline": pipe}))
        .await
        .expect("RtpEndpoint");
    let answer = c
        .invoke(&ep, "processOffer", json!({"offer": pcmu_offer(port)}))
        .await
        .expect("processOffer");
    let fluo = sdp_port(answer.as_str().expect("sdp"));
    (ep, peer, fluo)
}

fn pcmu(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

/// `pairs` pairs of RtpEndpoints, the first of each connected to the second; `packets`
/// sent into every first one; returns how many came out of each second one.
async fn pairs_carry(c: &mut Client, pipe: &str, pairs: usize, packets: u16) -> Vec<usize> {
    let mut made = vec![];
    for _ in 0..pairs {
        let (a, pa, fa) = endpoint(c, pipe).await;
        let (b, pb, _) = endpoint(c, pipe).await;
        c.invoke(&a, "connect", json!({"sink": b}))
            .await
            .expect("connect");
        made.push((pa, fa, pb));
    }
    for seq in 0..packets {
        for (pa, fa, _) in &made {
            pa.send_to(&pcmu(seq), ("127.0.0.1", *fa))
                .await
                .expect("send");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut got = vec![];
    for (_, _, pb) in &made {
        let mut n = 0;
        let mut buf = [0u8; 2048];
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(300), pb.recv_from(&mut buf)).await
        {
            n += 1;
        }
        got.push(n);
    }
    got
}

#[test]
fn twenty_rtp_endpoints_carrying_media_spawn_no_os_thread() {
    let _serial = serial();
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        // Whatever the server starts once (its runtime's workers, the media thread) starts
        // with the first pair.
        let warm = pairs_carry(&mut c, &pipe, 1, 50).await;
        assert!(
            warm[0] >= 40,
            "{warm:?} of 50 packets crossed the first pair"
        );
        let before = threads();
        let got = pairs_carry(&mut c, &pipe, 10, 50).await;
        let after = threads();
        println!(
            "threads: {before} before 20 RtpEndpoints, {after} after; packets per pair {got:?}"
        );
        assert!(
            got.iter().all(|n| *n >= 40),
            "{got:?} of 50 packets per pair"
        );
        // Two receive threads per endpoint would be 40 more.
        assert!(
            after <= before + 2,
            "20 RtpEndpoints with media took {} threads ({before} -> {after})",
            after.saturating_sub(before)
        );
        c.request("release", json!({"object": pipe}))
            .await
            .expect("release");
    });
}

#[test]
fn release_under_media_frees_the_ports_at_once() {
    let _serial = serial();
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let (a, pa, fa) = endpoint(&mut c, &pipe).await;
        let (b, _pb, _) = endpoint(&mut c, &pipe).await;
        c.invoke(&a, "connect", json!({"sink": b}))
            .await
            .expect("connect");
        let sending = tokio::spawn(async move {
            for seq in 0u16.. {
                let _ = pa.send_to(&pcmu(seq), ("127.0.0.1", fa)).await;
                let _ = pa
                    .send_to(&[0x81, 0xc9, 0, 1, 0, 0, 0, 1], ("127.0.0.1", fa + 1))
                    .await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = c.invoke(&a, "getStats", json!({})).await.expect("stats");
        assert!(
            stats.to_string().contains("packetsReceived"),
            "media arrives: {stats}"
        );
        let t = Instant::now();
        c.request("release", json!({"object": a}))
            .await
            .expect("release");
        let freed = loop {
            let rtp = std::net::UdpSocket::bind(("127.0.0.1", fa));
            let rtcp = std::net::UdpSocket::bind(("127.0.0.1", fa + 1));
            if rtp.is_ok() && rtcp.is_ok() {
                break t.elapsed();
            }
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "ports {fa}-{} still bound 2 s after release",
                fa + 1
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        println!(
            "ports free {} ms after release under media",
            freed.as_millis()
        );
        assert!(freed < Duration::from_millis(500), "{freed:?}");
        sending.abort();
        // The other endpoint is undisturbed.
        let state = c
            .invoke(&b, "getConnectionState", json!({}))
            .await
            .expect("b still answers");
        assert_eq!(state, Value::from("CONNECTED"));
        c.request("release", json!({"object": pipe}))
            .await
            .expect("release");
    });
}

/// An SDES peer's packets reach the router; its replays and packets under another key are
/// dropped and counted (srtpAuthFailures, srtpReplays), and the stream goes on undisturbed
/// to the RtpEndpoint it feeds.
#[test]
fn sdes_replays_and_forgeries_are_dropped_and_counted_and_media_goes_on() {
    use fluo_egress::{Profile, SdesSender};
    let _serial = serial();
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let ours = [7u8; 30];
        let theirs: Vec<u8> = (0..30u8).map(|i| i.wrapping_mul(13).wrapping_add(1)).collect();
        let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer socket");
        let peer_port = peer.local_addr().expect("addr").port();
        let ep = c
            .create("RtpEndpoint", json!({"mediaPipeline": pipe, "crypto": {"crypto": "AES_128_CM_HMAC_SHA1_80", "keyBase64": b64(&ours)}}))
            .await
            .expect("RtpEndpoint");
        let offer = format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=peer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {peer_port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\na=sendonly\r\n", b64(&theirs));
        let answer = c.invoke(&ep, "processOffer", json!({"offer": offer})).await.expect("processOffer");
        let fluo = sdp_port(answer.as_str().expect("sdp"));
        let (plain, out, _) = endpoint(&mut c, &pipe).await;
        c.invoke(&ep, "connect", json!({"sink": plain})).await.expect("connect");

        let mut tx = SdesSender::new(Profile::Aes128CmSha1_80, &theirs).expect("peer key");
        let mut forger = SdesSender::new(Profile::Aes128CmSha1_80, &[0x42; 30]).expect("other key");
        let mut sent = vec![];
        for seq in 0..60u16 {
            let mut p = pcmu(seq);
            tx.protect_rtp(&mut p).expect("protect");
            peer.send_to(&p, ("127.0.0.1", fluo)).await.expect("send");
            sent.push(p);
            if seq % 2 == 1 {
                // A replay of the packet before, and one under a key that is not the peer's.
                peer.send_to(&sent[usize::from(seq) - 1], ("127.0.0.1", fluo)).await.expect("send");
                let mut f = pcmu(1000 + seq);
                forger.protect_rtp(&mut f).expect("protect");
                peer.send_to(&f, ("127.0.0.1", fluo)).await.expect("send");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut through = 0;
        let mut buf = [0u8; 2048];
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), out.recv_from(&mut buf)).await {
            through += 1;
        }
        let stats = c.invoke(&ep, "getStats", json!({})).await.expect("getStats");
        let inbound = stats
            .as_object()
            .and_then(|o| o.values().find(|v| v["type"] == "inboundrtp"))
            .cloned()
            .expect("an inbound entry");
        println!("SDES peer: {inbound}; {through} packets reached the plain endpoint's peer");
        assert_eq!(inbound["packetsReceived"], 60, "{inbound}");
        assert_eq!(inbound["srtpReplays"], 30, "{inbound}");
        assert_eq!(inbound["srtpAuthFailures"], 30, "{inbound}");
        assert_eq!(through, 60, "every authentic packet went on, nothing else");
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}

fn b64(k: &[u8]) -> String {
    let t = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in k.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            s.push(if i <= c.len() {
                t[(n >> (18 - 6 * i)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    s
}

/// Ends a gst-launch -e: SIGINT (it finishes its file), SIGKILL if it has not ended in 5 s.
async fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    for _ in 0..50 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn decoded_frames(file: &std::path::Path) -> usize {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Fluo protects, libsrtp (gst-launch's srtpdec, given Fluo's key in its caps) checks and
/// decrypts: a player's video through an SDES RtpEndpoint, in both AES-128 and AES-256.
#[test]
fn gst_launch_srtpdec_decrypts_what_an_sdes_rtp_endpoint_sends() {
    let _serial = serial();
    let dir = tmp::dir("rtp-shell-srtp");
    let clip = dir.join("in.webm");
    let made = Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-t",
            "30",
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-g",
            "30",
        ])
        .arg(&clip)
        .status()
        .expect("ffmpeg runs");
    assert!(made.success());
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        for (suite, sdp_suite, cipher, auth, len) in [
            ("AES_128_CM_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_80", "aes-128-icm", "hmac-sha1-80", 30),
            ("AES_256_CM_HMAC_SHA1_32", "AES_256_CM_HMAC_SHA1_32", "aes-256-icm", "hmac-sha1-32", 46),
        ] {
            let ours: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(11).wrapping_add(5)).collect();
            let theirs: Vec<u8> = ours.iter().map(|b| b ^ 0x33).collect();
            let hex: String = ours.iter().map(|b| format!("{b:02x}")).collect();
            let listen = {
                let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
                s.local_addr().expect("addr").port()
            };
            let out = dir.join(format!("{suite}.webm"));
            let ep = c
                .create("RtpEndpoint", json!({"mediaPipeline": pipe, "crypto": {"crypto": suite, "keyBase64": b64(&ours)}}))
                .await
                .expect("RtpEndpoint");
            let offer = format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=peer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video {listen} RTP/SAVP 96\r\na=rtpmap:96 VP8/90000\r\na=crypto:1 {sdp_suite} inline:{}\r\na=recvonly\r\n", b64(&theirs));
            let answer = c.invoke(&ep, "processOffer", json!({"offer": offer})).await.expect("processOffer");
            let answer = answer.as_str().unwrap_or_default().to_string();
            assert!(answer.contains(&format!("a=crypto:1 {sdp_suite} inline:{}", b64(&ours))), "{answer}");
            let player = c
                .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", clip.display())}))
                .await
                .expect("player");
            c.invoke(&player, "connect", json!({"sink": ep})).await.expect("connect");
            c.invoke(&player, "play", json!({})).await.expect("play");
            // srtpdec takes its key for one SSRC from its caps: Fluo's, from getStats once
            // media flows (the SDP has no a=ssrc).
            let mut ssrc = None;
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let stats = c.invoke(&ep, "getStats", json!({})).await.expect("getStats");
                ssrc = stats
                    .as_object()
                    .and_then(|o| o.values().find(|v| v["type"] == "outboundrtp"))
                    .and_then(|v| v["ssrc"].as_str().and_then(|s| s.parse::<u32>().ok()).or(v["ssrc"].as_u64().map(|s| s as u32)));
                if ssrc.is_some() {
                    break;
                }
            }
            let ssrc = ssrc.expect("an outbound entry with Fluo's SSRC");
            let caps = format!("application/x-srtp,media=video,encoding-name=VP8,clock-rate=90000,payload=96,ssrc=(uint){ssrc},srtp-key=(buffer){hex},srtp-cipher={cipher},srtp-auth={auth},srtcp-cipher={cipher},srtcp-auth={auth}");
            let mut receiver = Command::new("gst-launch-1.0")
                .args(["-q", "-e", "udpsrc"])
                .arg(format!("port={listen}"))
                .arg(format!("caps={caps}"))
                .args(["!", "srtpdec", "!", "rtpjitterbuffer", "latency=100", "!", "rtpvp8depay", "!", "webmmux", "!", "filesink"])
                .arg(format!("location={}", out.display()))
                .stdout(Stdio::null())
                .spawn()
                .expect("gst-launch runs");
            // Until Fluo has sent 200 packets (over 100 frames; at most 30 s): the player's
            // encode and gst-launch share the cores with the rest of a test run, which made
            // 26 frames in 8 s under load.
            let t = std::time::Instant::now();
            while t.elapsed() < Duration::from_secs(30) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let stats = c.invoke(&ep, "getStats", json!({})).await.expect("getStats");
                let sent = stats
                    .as_object()
                    .and_then(|o| o.values().find(|v| v["type"] == "outboundrtp"))
                    .and_then(|v| v["packetsSent"].as_u64())
                    .unwrap_or(0);
                if sent >= 200 {
                    break;
                }
            }
            stop(&mut receiver).await;
            let frames = decoded_frames(&out);
            println!("player -> SDES RtpEndpoint ({suite}) -> gst-launch srtpdec: {frames} frames");
            assert!(frames >= 60, "{suite}: {frames} frames decrypted by srtpdec of 200 packets sent");
            c.request("release", json!({"object": player})).await.expect("release");
            c.request("release", json!({"object": ep})).await.expect("release");
        }
        c.request("release", json!({"object": pipe}))
            .await
            .expect("release");
    });
}
