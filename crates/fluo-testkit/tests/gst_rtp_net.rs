//! RtpEndpoint networking against a real server: the port range, the interface list and
//! externalIPv4 decide where its sockets are bound and what its SDP says; useIpv6 carries
//! media over ::1 to and from gst-launch-1.0.

use fluo_testkit::live::{rt, start_server_with, Client};
use fluo_testkit::tmp;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A server with media on `lo`, in `ports` (min, max), announcing `external` for IPv4.
fn server(ports: Option<(u16, u16)>, external: Option<Ipv4Addr>) -> u16 {
    let mut net = fluo_rtc::NetSettings {
        network_interfaces: Some(vec!["lo".into()]),
        external_ipv4: external,
        ..Default::default()
    };
    if let Some((min, max)) = ports {
        net.min_port = min;
        net.max_port = max;
    }
    start_server_with(fluo_server::Config {
        session_grace: Duration::from_secs(30),
        net,
        ..Default::default()
    })
}

/// (m= port, a=rtcp port) of every section with a port, and the c= line.
fn sdp_ports(sdp: &str) -> (Vec<(u16, u16)>, String) {
    let mut out = vec![];
    let mut m: Option<u16> = None;
    for l in sdp.lines() {
        if let Some(rest) = l.strip_prefix("m=") {
            m = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        } else if let (Some(p), Some(r)) = (m, l.strip_prefix("a=rtcp:")) {
            out.push((p, r.trim().parse().expect("rtcp port")));
        }
    }
    let c = sdp
        .lines()
        .find(|l| l.starts_with("c="))
        .unwrap_or_default()
        .to_string();
    (out, c)
}

/// The local addresses UDP port `port` is bound on (from /proc/net/udp and udp6).
fn bound_on(port: u16) -> Vec<IpAddr> {
    let mut out = vec![];
    for (file, v6) in [("/proc/net/udp", false), ("/proc/net/udp6", true)] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let Some(local) = line.split_whitespace().nth(1) else {
                continue;
            };
            let Some((ip, p)) = local.split_once(':') else {
                continue;
            };
            if u16::from_str_radix(p, 16).ok() != Some(port) {
                continue;
            }
            // The kernel prints each 32-bit word of the address in host (little-endian) order.
            let bytes: Vec<u8> = (0..ip.len() / 8)
                .flat_map(|w| {
                    let word = u32::from_str_radix(&ip[w * 8..w * 8 + 8], 16).unwrap_or(0);
                    word.to_le_bytes()
                })
                .collect();
            out.push(if v6 {
                let b: [u8; 16] = bytes.try_into().unwrap_or([0; 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            } else {
                let b: [u8; 4] = bytes.try_into().unwrap_or([0; 4]);
                IpAddr::V4(Ipv4Addr::from(b))
            });
        }
    }
    out
}

fn offer(family: &str, addr: &str, dir: &str, media: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN {family} {addr}\r\ns=peer\r\nc=IN {family} {addr}\r\nt=0 0\r\n{media}a={dir}\r\n"
    )
}

#[test]
fn rtp_endpoints_bind_in_the_port_range_on_the_interfaces_and_announce_external_ipv4() {
    // A range of its own per run: 20 ports, so that it can run out.
    let min = 30_000 + (std::process::id() % 500) as u16 * 40;
    let max = min + 19;
    let port = server(Some((min, max)), None);
    let external = server(None, Some(Ipv4Addr::new(198, 51, 100, 7)));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let pp = json!({"mediaPipeline": pipe});
        // The remote is elsewhere; the address announced is lo's, as configured.
        let media =
            "m=audio 5000 RTP/AVP 0\r\nm=video 5002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n";
        let rtp = c
            .create("RtpEndpoint", pp.clone())
            .await
            .expect("rtp endpoint");
        let answer = c
            .invoke(
                &rtp,
                "processOffer",
                json!({"offer": offer("IP4", "198.51.100.1", "sendrecv", media)}),
            )
            .await
            .expect("processOffer");
        let answer = answer.as_str().expect("sdp");
        let (pairs, cline) = sdp_ports(answer);
        assert_eq!(cline, "c=IN IP4 127.0.0.1", "{answer}");
        assert!(answer.contains("o=- ") && answer.contains(" IN IP4 127.0.0.1\r\n"));
        assert_eq!(pairs.len(), 2, "{answer}");
        let mut seen = vec![];
        for (rtp_port, rtcp_port) in &pairs {
            assert!(rtp_port % 2 == 0 && *rtcp_port == rtp_port + 1, "{answer}");
            assert!(
                (min..=max).contains(rtp_port) && (min..=max).contains(rtcp_port),
                "{rtp_port} not in {min}-{max}"
            );
            for p in [*rtp_port, *rtcp_port] {
                assert_eq!(
                    bound_on(p),
                    vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                    "port {p}: on lo's address only, not 0.0.0.0"
                );
                seen.push(p);
            }
        }
        // More endpoints until the range runs out: every pair in it, then a clear error.
        let mut error = None;
        for _ in 0..12 {
            let e = c
                .create("RtpEndpoint", pp.clone())
                .await
                .expect("rtp endpoint");
            match c.invoke(&e, "generateOffer", json!({})).await {
                Ok(sdp) => {
                    let (pairs, cline) = sdp_ports(sdp.as_str().expect("sdp"));
                    assert_eq!(cline, "c=IN IP4 127.0.0.1");
                    for (p, r) in pairs {
                        assert!(
                            p % 2 == 0 && r == p + 1 && p >= min && r <= max,
                            "{p}/{r} in {min}-{max}"
                        );
                        seen.push(p);
                        seen.push(r);
                    }
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let e = error.expect("the range runs out");
        println!("{} ports of {min}-{max} taken, then: {e}", seen.len());
        assert_eq!(e["code"], 40009, "{e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("{min}-{max}")),
            "{e}"
        );
        seen.sort_unstable();
        seen.dedup();
        assert!(seen.len() >= 12, "{seen:?}");
        c.request("release", json!({"object": pipe}))
            .await
            .expect("release");

        // externalIPv4: announced in c= and o=, the sockets still on lo.
        let mut c = Client::connect(external).await.expect("connect");
        let pipe = c
            .create("MediaPipeline", json!({}))
            .await
            .expect("pipeline");
        let rtp = c
            .create("RtpEndpoint", json!({"mediaPipeline": pipe}))
            .await
            .expect("rtp endpoint");
        let sdp = c
            .invoke(&rtp, "generateOffer", json!({}))
            .await
            .expect("generateOffer");
        let sdp = sdp.as_str().expect("sdp");
        let (pairs, cline) = sdp_ports(sdp);
        assert_eq!(cline, "c=IN IP4 198.51.100.7", "{sdp}");
        assert!(sdp.contains(" IN IP4 198.51.100.7\r\ns="), "{sdp}");
        assert_eq!(bound_on(pairs[0].0), vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        c.request("release", json!({"object": pipe}))
            .await
            .expect("release");
    });
}

/// Video frames ffprobe decodes in a file.
fn decoded_frames(file: &std::path::Path) -> usize {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn use_ipv6_carries_media_over_ipv6_to_and_from_gst_launch() {
    let dir = tmp::dir("rtp-net-ipv6");
    let port = server(None, None);
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let v6 = json!({"mediaPipeline": pipe, "useIpv6": true});
        let video = "m=video 9 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n";

        // 1. gst-launch sends VP8 over ::1; a recorder keeps what arrives.
        let rtp = c.create("RtpEndpoint", v6.clone()).await.expect("rtp endpoint");
        let answer = c
            .invoke(&rtp, "processOffer", json!({"offer": offer("IP6", "::1", "sendonly", video)}))
            .await
            .expect("processOffer");
        let answer = answer.as_str().expect("sdp").to_string();
        let (pairs, cline) = sdp_ports(&answer);
        assert_eq!(cline, "c=IN IP6 ::1", "{answer}");
        let fluo_port = pairs[0].0;
        assert_eq!(bound_on(fluo_port), vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]);
        let file = dir.join("from-gst.webm");
        let rec = c
            .create("RecorderEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", file.display()), "mediaProfile": "WEBM_VIDEO_ONLY"}))
            .await
            .expect("recorder");
        c.invoke(&rtp, "connect", json!({"sink": rec})).await.expect("connect");
        c.invoke(&rec, "record", json!({})).await.expect("record");
        let st = Command::new("gst-launch-1.0")
            .args(["-q", "videotestsrc", "is-live=true", "num-buffers=150", "!"])
            .args(["video/x-raw,width=320,height=240,framerate=30/1", "!", "vp8enc", "deadline=1"])
            .args(["keyframe-max-dist=30", "!", "rtpvp8pay", "pt=96", "!", "udpsink", "host=::1"])
            .arg(format!("port={fluo_port}"))
            .stdout(Stdio::null())
            .status()
            .expect("gst-launch runs");
        assert!(st.success());
        c.invoke(&rec, "stopAndWait", json!({})).await.expect("stopAndWait");
        let frames = decoded_frames(&file);
        println!("gst-launch -> [::1] RtpEndpoint -> recorder: {frames} frames");
        assert!(frames >= 90, "{frames} of 150 frames recorded");

        // 2. Fluo sends over ::1 to gst-launch, which records what it gets.
        let listen = loop {
            let s = std::net::UdpSocket::bind("[::1]:0").expect("udp6");
            let p = s.local_addr().expect("addr").port();
            if p.is_multiple_of(2) {
                break p;
            }
        };
        let out_file = dir.join("to-gst.webm");
        let mut receiver = Command::new("gst-launch-1.0")
            .args(["-q", "-e", "udpsrc", "address=::1"])
            .arg(format!("port={listen}"))
            .arg("caps=application/x-rtp,media=video,encoding-name=VP8,clock-rate=90000,payload=96")
            .args(["!", "rtpjitterbuffer", "latency=100", "!", "rtpvp8depay", "!", "webmmux", "!", "filesink"])
            .arg(format!("location={}", out_file.display()))
            .stdout(Stdio::null())
            .spawn()
            .expect("gst-launch runs");
        let out = c.create("RtpEndpoint", v6.clone()).await.expect("rtp endpoint");
        let video = format!("m=video {listen} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n");
        let answer = c
            .invoke(&out, "processOffer", json!({"offer": offer("IP6", "::1", "recvonly", &video)}))
            .await
            .expect("processOffer");
        assert!(answer.as_str().unwrap_or_default().contains("c=IN IP6 ::1"), "{answer}");
        let src = c.create("RtpEndpoint", json!({"mediaPipeline": pipe})).await.expect("rtp endpoint");
        let (_, cl) = sdp_ports(
            c.invoke(&src, "generateOffer", json!({})).await.expect("offer").as_str().expect("sdp"),
        );
        assert_eq!(cl, "c=IN IP4 127.0.0.1", "without useIpv6: IPv4");
        // A player feeds it (the clip is made here).
        let clip = dir.join("clip.webm");
        let st = Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-t", "6"])
            .args(["-c:v", "libvpx"])
            .arg(&clip)
            .status()
            .expect("ffmpeg runs");
        assert!(st.success());
        let player = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", clip.display())}))
            .await
            .expect("player");
        c.invoke(&player, "connect", json!({"sink": out})).await.expect("connect");
        c.invoke(&player, "play", json!({})).await.expect("play");
        tokio::time::sleep(Duration::from_secs(4)).await;
        let _ = Command::new("kill").args(["-INT", &receiver.id().to_string()]).status();
        let _ = receiver.wait();
        let frames = decoded_frames(&out_file);
        println!("player -> [::1] RtpEndpoint -> gst-launch: {frames} frames");
        assert!(frames >= 60, "{frames} frames reached gst-launch over IPv6 in ~4 s");

        // 3. An IPv4 offer to an IPv6 endpoint is refused with an SDP error.
        let bad = c.create("RtpEndpoint", v6).await.expect("rtp endpoint");
        let e: Value = c
            .invoke(&bad, "processOffer", json!({"offer": offer("IP4", "127.0.0.1", "sendonly", "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n")}))
            .await
            .expect_err("an IPv4 offer");
        assert!(e["message"].as_str().unwrap_or_default().contains("useIpv6"), "{e}");
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}
