//! GStreamer media plane against a real server: PlayerEndpoint, RecorderEndpoint in each
//! profile, and transcoding inserted (and removed) by the router.
//!
//! Fixtures are generated with ffmpeg into a temporary folder; results are checked with
//! ffprobe (both are test dependencies that `make test` installs).

use fluo_testkit::clips::{av_clip, testsrc_vp8};
use fluo_testkit::live::{
    metric, rt, scrape_metrics_until, serial, start_server, start_server_with_metrics, Client,
};
use fluo_testkit::tmp;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// (codec names of the streams, duration in seconds) as ffprobe reads them.
fn probe(file: &Path) -> (Vec<String>, f64) {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name:format=duration",
            "-of",
            "json",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    let mut codecs: Vec<String> = v["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["codec_name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    codecs.sort();
    let dur = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    (codecs, dur)
}

/// Counts decodable video frames with ffmpeg (0 when the file is broken).
fn decoded_frames(file: &Path) -> usize {
    let o = Command::new("ffprobe")
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
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_player_feeds_recorders_in_every_profile_and_mp4_gets_a_transcoder() {
    let _serial = serial();
    let dir = tmp::dir("gst-profiles");
    let input = av_clip(&dir, "in.webm", 4);
    let metrics = dir.join("metrics.port");
    let port = start_server_with_metrics(Duration::from_secs(30), &metrics);
    const REC: &str = "fluo_recorder_written_bytes_total";
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let player = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", input.display())}))
            .await
            .expect("player");
        for ev in ["EndOfStream", "MediaTranscodingStateChanged", "Error"] {
            c.subscribe(&player, ev).await.expect("subscribe");
        }
        let profiles = [
            ("WEBM", "webm", vec!["opus", "vp8"]),
            ("MKV", "mkv", vec!["opus", "vp8"]),
            ("MP4", "mp4", vec!["h264", "opus"]),
            ("WEBM_VIDEO_ONLY", "webm", vec!["vp8"]),
            ("MP4_AUDIO_ONLY", "mp4", vec!["opus"]),
        ];
        let mut recs = vec![];
        for (profile, ext, _) in &profiles {
            let file = dir.join(format!("out-{profile}.{ext}"));
            let r = c
                .create(
                    "RecorderEndpoint",
                    json!({"mediaPipeline": pipe, "uri": format!("file://{}", file.display()), "mediaProfile": profile}),
                )
                .await
                .expect("recorder");
            for ev in ["Recording", "Stopped", "Error"] {
                c.subscribe(&r, ev).await.expect("subscribe");
            }
            c.invoke(&player, "connect", json!({"sink": r})).await.expect("connect");
            c.invoke(&r, "record", json!({})).await.expect("record");
            let rec = c.wait_event("Recording", &r, Duration::from_secs(2)).await;
            assert!(rec.is_some(), "Recording: {:?}", c.events);
            recs.push((r, file));
        }
        c.invoke(&player, "play", json!({})).await.expect("play");
        assert!(
            c.wait_event("EndOfStream", &player, Duration::from_secs(15)).await.is_some(),
            "the 4 s clip ends: {:?}",
            c.events
        );
        // Exactly one transcoder (VP8 -> H.264, for the MP4 recorder), shared by nobody else.
        let t = c
            .wait_event("MediaTranscodingStateChanged", &player, Duration::from_secs(1))
            .await
            .expect("the player reports transcoding");
        assert_eq!(t["state"], "TRANSCODING");
        assert_eq!(t["mediaType"], "VIDEO");
        // The workers report what their recorders wrote with their pongs (every 2 s).
        let t0 = Instant::now();
        let mut seen = 0.0;
        while seen < 10_000.0 && t0.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            seen = metric(&metrics, REC).await.expect(REC);
        }
        assert!(seen >= 10_000.0, "{seen} bytes recorded");
        for (r, _) in &recs {
            c.invoke(r, "stopAndWait", json!({})).await.expect("stopAndWait");
            assert!(c.wait_event("Stopped", r, Duration::from_secs(5)).await.is_some());
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = metric(&metrics, REC).await.expect(REC);
        let files: u64 = recs.iter().map(|(_, f)| std::fs::metadata(f).map_or(0, |m| m.len())).sum();
        println!("fluo_recorder_written_bytes_total: {seen} while recording, {after} after; files {files}");
        assert!(after >= seen, "the counter keeps what stopped recorders wrote: {seen} -> {after}");
        // Every byte of the files passed the sinks' probes; the headers a muxer rewrites at
        // the end pass twice (a few kB here).
        let files = files as f64;
        assert!(after >= files && after <= files * 1.05, "{after} for {files} bytes in the files");
        assert!(
            !c.events.iter().any(|(t, _)| t == "Error"),
            "no errors: {:?}",
            c.events
        );
        for ((profile, _, want), (_, file)) in profiles.iter().zip(&recs) {
            let (codecs, dur) = probe(file);
            println!("{profile}: {codecs:?}, {dur:.2} s, {} bytes", std::fs::metadata(file).map(|m| m.len()).unwrap_or(0));
            assert_eq!(&codecs, want, "{profile}: streams");
            assert!(dur > 2.5 && dur < 6.0, "{profile}: duration {dur}");
            if want.iter().any(|c| *c == "vp8" || *c == "h264") {
                let frames = decoded_frames(file);
                assert!(frames > 60, "{profile}: {frames} decodable frames");
            }
        }
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}

/// A publisher peer sending `frames` as `send` to a viewer peer that only takes what
/// `viewer_cfg` enables, through Fluo: returns the client, the two endpoint ids and the video
/// frames the viewer received in about 4 s of media. Checks that the publisher reports
/// video transcoding and the flow / transcoding queries while it runs.
async fn transcode_between_peers(
    port: u16,
    frames: Vec<Vec<u8>>,
    send: str0m::format::Codec,
    pub_cfg: str0m::RtcConfig,
    viewer_cfg: str0m::RtcConfig,
) -> (Client, String, String, Vec<(str0m::format::Codec, Vec<u8>)>) {
    use fluo_testkit::udp_peer::Peer;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
    let params = json!({"mediaPipeline": pipe});
    let e_pub = c
        .create("WebRtcEndpoint", params.clone())
        .await
        .expect("endpoint");
    let e_view = c.create("WebRtcEndpoint", params).await.expect("endpoint");
    c.subscribe(&e_pub, "MediaTranscodingStateChanged")
        .await
        .expect("sub");
    let (mut publisher, mut viewer) =
        Peer::publisher_and_viewer(&mut c, &e_pub, &e_view, pub_cfg, viewer_cfg)
            .await
            .expect("negotiated");
    publisher.send_codec = send;
    c.invoke(&e_pub, "connect", json!({"sink": e_view}))
        .await
        .expect("connect");
    let stop = Arc::new(AtomicBool::new(false));
    let got = Arc::new(Mutex::new(vec![]));
    let driver = {
        let (stop, got) = (stop.clone(), got.clone());
        std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            let mut n = 0usize;
            let mut next = t0;
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(20) {
                let now = std::time::Instant::now();
                let send = now >= next;
                if send && publisher.connected {
                    next += Duration::from_millis(33);
                    n += 1;
                } else if send {
                    next = now;
                }
                let f = (send && publisher.connected).then(|| frames[n % frames.len()].as_slice());
                publisher.drive(f);
                viewer.drive(None);
                std::thread::sleep(Duration::from_millis(2));
            }
            *got.lock().unwrap() = std::mem::take(&mut viewer.frames);
        })
    };
    let t = c
        .wait_event(
            "MediaTranscodingStateChanged",
            &e_pub,
            Duration::from_secs(10),
        )
        .await
        .expect("transcoding starts");
    assert_eq!(t["state"], "TRANSCODING");
    assert_eq!(t["mediaType"], "VIDEO");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let q = json!({"mediaType": "VIDEO"});
    assert_eq!(
        c.invoke(&e_pub, "isMediaTranscoding", q.clone()).await,
        Ok(json!(true))
    );
    assert_eq!(
        c.invoke(&e_pub, "isMediaFlowingIn", q.clone()).await,
        Ok(json!(true))
    );
    assert_eq!(
        c.invoke(&e_view, "isMediaFlowingOut", q).await,
        Ok(json!(true))
    );
    let audio = json!({"mediaType": "AUDIO"});
    assert_eq!(
        c.invoke(&e_pub, "isMediaTranscoding", audio).await,
        Ok(json!(false))
    );
    stop.store(true, Ordering::Relaxed);
    driver.join().expect("driver");
    let got = std::mem::take(&mut *got.lock().unwrap());
    (c, e_pub, e_view, got)
}

/// The viewer leaves: nobody needs the transcoder any more and it goes.
async fn viewer_leaves_and_transcoder_goes(c: &mut Client, e_pub: &str, e_view: &str) {
    c.request("release", json!({"object": e_view}))
        .await
        .expect("release");
    let t = c
        .wait_event(
            "MediaTranscodingStateChanged",
            e_pub,
            Duration::from_secs(3),
        )
        .await
        .expect("transcoding stops");
    assert_eq!(t["state"], "NOT_TRANSCODING");
    let q = json!({"mediaType": "VIDEO"});
    assert_eq!(
        c.invoke(e_pub, "isMediaTranscoding", q).await,
        Ok(json!(false))
    );
}

#[test]
fn a_vp8_publisher_reaches_an_h264_only_viewer_through_a_transcoder_that_goes_when_it_leaves() {
    let _serial = serial();
    let dir = tmp::dir("gst-transcode");
    let frames = testsrc_vp8(&dir.join("in.ivf"), "640x360", 2, "800k", 30);
    assert!(frames.len() >= 60, "{} VP8 frames", frames.len());
    let metrics_file = dir.join("metrics.port");
    let port = start_server_with_metrics(Duration::from_secs(30), &metrics_file);
    rt().block_on(async {
        let (mut c, e_pub, e_view, got) = transcode_between_peers(
            port,
            frames,
            str0m::format::Codec::Vp8,
            str0m::RtcConfig::new(),
            str0m::RtcConfig::new()
                .clear_codecs()
                .enable_h264(true)
                .enable_opus(true, false),
        )
        .await;
        assert!(
            got.iter().all(|(c, _)| *c == str0m::format::Codec::H264),
            "only H.264 reaches the viewer"
        );
        // The received access units decode as H.264.
        let h264 = dir.join("got.h264");
        let bytes: Vec<u8> = got.iter().flat_map(|(_, f)| f.iter().copied()).collect();
        std::fs::write(&h264, bytes).expect("write");
        let decoded = decoded_frames(&h264);
        println!("viewer got {} H.264 frames, {decoded} decode", got.len());
        assert!(got.len() >= 60, "{} frames in ~4 s", got.len());
        assert!(decoded >= 60, "{decoded} frames decode");
        // /metrics counts the transcoder by its codec pair while it runs, and not after.
        let pair = r#"fluo_transcoders{kind="video",from="VP8",to="H264"} 1"#;
        let text = scrape_metrics_until(&metrics_file, |t| t.lines().any(|l| l == pair)).await;
        assert!(text.lines().any(|l| l == pair), "{pair} in:\n{text}");
        viewer_leaves_and_transcoder_goes(&mut c, &e_pub, &e_view).await;
        let text = scrape_metrics_until(&metrics_file, |t| !t.contains("fluo_transcoders{")).await;
        assert!(!text.contains("fluo_transcoders{"), "{text}");
        assert!(text.contains("fluo_media_thread_up 1"), "{text}");
    });
}

#[test]
fn an_h264_publisher_reaches_a_vp8_only_viewer_through_a_transcoder() {
    let _serial = serial();
    let dir = tmp::dir("gst-transcode-back");
    let annexb = dir.join("in.h264");
    let st = Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x360:rate=30",
            "-t",
            "2",
        ])
        .args([
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-pix_fmt",
            "yuv420p",
            "-x264-params",
            "aud=1:keyint=30",
            "-bsf:v",
            "h264_mp4toannexb",
            "-f",
            "h264",
        ])
        .arg(&annexb)
        .status()
        .expect("ffmpeg");
    assert!(st.success());
    let frames = fluo_testkit::udp_peer::h264_access_units(&std::fs::read(&annexb).expect("h264"));
    assert!(frames.len() >= 60, "{} H.264 access units", frames.len());
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, e_pub, e_view, got) = transcode_between_peers(
            port,
            frames,
            str0m::format::Codec::H264,
            str0m::RtcConfig::new()
                .clear_codecs()
                .enable_h264(true)
                .enable_opus(true, false),
            str0m::RtcConfig::new()
                .clear_codecs()
                .enable_vp8(true)
                .enable_opus(true, false),
        )
        .await;
        assert!(
            got.iter().all(|(c, _)| *c == str0m::format::Codec::Vp8),
            "only VP8 reaches the viewer"
        );
        // The received frames decode as VP8 (written as IVF for ffprobe).
        let ivf = dir.join("got.ivf");
        let mut bytes = b"DKIF\0\0\x20\0VP80".to_vec();
        for v in [640u16, 360] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        for v in [30u32, 1, got.len() as u32, 0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        for (i, (_, f)) in got.iter().enumerate() {
            bytes.extend_from_slice(&(f.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&(i as u64).to_le_bytes());
            bytes.extend_from_slice(f);
        }
        std::fs::write(&ivf, bytes).expect("write");
        let decoded = decoded_frames(&ivf);
        println!("viewer got {} VP8 frames, {decoded} decode", got.len());
        assert!(got.len() >= 60, "{} frames in ~4 s", got.len());
        assert!(decoded >= 60, "{decoded} frames decode");
        viewer_leaves_and_transcoder_goes(&mut c, &e_pub, &e_view).await;
    });
}

/// The port of the first m= line of `kind` in an SDP.
fn sdp_port(sdp: &str, kind: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix(&format!("m={kind} ")))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("an m= line with a port")
}

fn free_udp_port() -> u16 {
    // Even, with the next one free too (RTP, RTCP).
    loop {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let p = s.local_addr().expect("addr").port();
        if p.is_multiple_of(2) && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

#[test]
fn rtp_endpoints_interoperate_with_gst_launch_and_ffmpeg_both_ways() {
    let _serial = serial();
    let dir = tmp::dir("gst-rtp");
    let input = av_clip(&dir, "in.webm", 10);
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let pp = json!({"mediaPipeline": pipe});

        // 1. gst-launch and ffmpeg send VP8 to two RtpEndpoints; recorders keep what arrives.
        let offer_from = |port: u16| {
            format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=peer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video {port} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n")
        };
        let mut senders = vec![];
        for tool in ["gst-launch", "ffmpeg"] {
            let rtp = c.create("RtpEndpoint", pp.clone()).await.expect("rtp endpoint");
            let answer = c
                .invoke(&rtp, "processOffer", json!({"offer": offer_from(free_udp_port())}))
                .await
                .expect("processOffer");
            let answer = answer.as_str().expect("sdp").to_string();
            assert!(answer.contains("a=rtpmap:96 VP8/90000") && answer.contains("a=recvonly"), "{answer}");
            let fluo_port = sdp_port(&answer, "video");
            let file = dir.join(format!("from-{tool}.webm"));
            let rec = c
                .create("RecorderEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", file.display()), "mediaProfile": "WEBM_VIDEO_ONLY"}))
                .await
                .expect("recorder");
            c.invoke(&rtp, "connect", json!({"sink": rec})).await.expect("connect");
            c.invoke(&rec, "record", json!({})).await.expect("record");
            let child = if tool == "gst-launch" {
                Command::new("gst-launch-1.0")
                    .args(["-q", "videotestsrc", "is-live=true", "num-buffers=150", "!", "video/x-raw,width=320,height=240,framerate=30/1", "!", "vp8enc", "deadline=1", "keyframe-max-dist=30", "!", "rtpvp8pay", "pt=96", "!", "udpsink", "host=127.0.0.1"])
                    .arg(format!("port={fluo_port}"))
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("gst-launch runs")
            } else {
                Command::new("ffmpeg")
                    .args(["-loglevel", "error", "-re", "-i"])
                    .arg(&input)
                    .args(["-t", "5", "-an", "-c:v", "libvpx", "-deadline", "realtime", "-g", "30", "-f", "rtp", "-payload_type", "96"])
                    .arg(format!("rtp://127.0.0.1:{fluo_port}"))
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("ffmpeg runs")
            };
            senders.push((tool, child, rec, file));
        }
        for (_, child, _, _) in &mut senders {
            let _ = child.wait();
        }
        for (tool, _, rec, file) in &senders {
            c.invoke(rec, "stopAndWait", json!({})).await.expect("stopAndWait");
            let (codecs, _) = probe(file);
            let frames = decoded_frames(file);
            println!("{tool} -> RtpEndpoint -> recorder: {codecs:?}, {frames} frames");
            assert_eq!(codecs, vec!["vp8"], "{tool}");
            assert!(frames >= 90, "{tool}: {frames} of ~150 frames recorded");
        }

        // 2. A player sends through an RtpEndpoint to gst-launch, which records what it gets.
        let listen = free_udp_port();
        let out_file = dir.join("to-gst.webm");
        let mut receiver = Command::new("gst-launch-1.0")
            .args(["-q", "-e", "udpsrc"])
            .arg(format!("port={listen}"))
            .arg("caps=application/x-rtp,media=video,encoding-name=VP8,clock-rate=90000,payload=96")
            .args(["!", "rtpjitterbuffer", "latency=100", "!", "rtpvp8depay", "!", "webmmux", "!", "filesink"])
            .arg(format!("location={}", out_file.display()))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("gst-launch runs");
        let rtp = c.create("RtpEndpoint", pp.clone()).await.expect("rtp endpoint");
        let offer = format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=peer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video {listen} RTP/AVP 100 96\r\na=rtpmap:100 MP4V-ES/90000\r\na=rtpmap:96 VP8/90000\r\na=recvonly\r\n");
        let answer = c.invoke(&rtp, "processOffer", json!({"offer": offer})).await.expect("processOffer");
        assert!(answer.as_str().unwrap_or_default().contains("a=sendonly"), "{answer}");
        let player = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", input.display())}))
            .await
            .expect("player");
        c.invoke(&player, "connect", json!({"sink": rtp})).await.expect("connect");
        c.invoke(&player, "play", json!({})).await.expect("play");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let _ = Command::new("kill").args(["-INT", &receiver.id().to_string()]).status();
        let _ = receiver.wait();
        let frames = decoded_frames(&out_file);
        println!("player -> RtpEndpoint -> gst-launch: {frames} frames");
        assert!(frames >= 60, "{frames} frames reached gst-launch in ~5 s");

        // 3. Bad SDP gets an SDP error, not a crash.
        let bad = c.create("RtpEndpoint", pp.clone()).await.expect("rtp endpoint");
        let e = c.invoke(&bad, "processOffer", json!({"offer": "hello"})).await.expect_err("bad sdp");
        assert_eq!(e["code"], 40201, "{e}");
        let e = c
            .invoke(&bad, "processOffer", json!({"offer": "v=0\r\nm=video 5000 RTP/AVP 34\r\n"}))
            .await
            .expect_err("no usable codec");
        assert!(e["message"].as_str().unwrap_or_default().contains("codec"), "{e}");
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}

#[test]
fn sdes_srtp_rtp_endpoints_decrypt_gst_launch_and_talk_to_each_other() {
    let _serial = serial();
    let dir = tmp::dir("gst-srtp");
    let input = av_clip(&dir, "in.webm", 10);
    let port = start_server(Duration::from_secs(30));
    let key: Vec<u8> = (0..30u8)
        .map(|i| i.wrapping_mul(7).wrapping_add(3))
        .collect();
    let wrong: Vec<u8> = key.iter().map(|b| b ^ 0x5a).collect();
    let hex = |k: &[u8]| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let b64 = |k: &[u8]| {
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
    };
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let sdes = json!({"mediaPipeline": pipe, "crypto": {"crypto": "AES_128_CM_HMAC_SHA1_80", "keyBase64": b64(&[9u8; 30])}});

        // gst-launch encrypts with the key its SDP announced (and a second sender with a
        // different key than it announced: nothing of it may get through).
        let mut runs = vec![];
        for (name, announced, used) in [("right-key", &key, &key), ("wrong-key", &key, &wrong)] {
            let rtp = c.create("RtpEndpoint", sdes.clone()).await.expect("rtp endpoint");
            let offer = format!(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=peer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video {} RTP/SAVP 96\r\na=rtpmap:96 VP8/90000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\na=sendonly\r\n",
                free_udp_port(),
                b64(announced)
            );
            let answer = c.invoke(&rtp, "processOffer", json!({"offer": offer})).await.expect("processOffer");
            let answer = answer.as_str().expect("sdp").to_string();
            assert!(answer.contains("RTP/SAVP") && answer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"), "{answer}");
            let file = dir.join(format!("{name}.webm"));
            let rec = c
                .create("RecorderEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", file.display()), "mediaProfile": "WEBM_VIDEO_ONLY"}))
                .await
                .expect("recorder");
            c.invoke(&rtp, "connect", json!({"sink": rec})).await.expect("connect");
            c.invoke(&rec, "record", json!({})).await.expect("record");
            let child = Command::new("gst-launch-1.0")
                .args(["-q", "videotestsrc", "is-live=true", "num-buffers=120", "!", "video/x-raw,width=320,height=240,framerate=30/1", "!", "vp8enc", "deadline=1", "keyframe-max-dist=30", "!", "rtpvp8pay", "pt=96", "!", "srtpenc"])
                .arg(format!("key={}", hex(used)))
                .args(["rtp-cipher=aes-128-icm", "rtp-auth=hmac-sha1-80", "rtcp-cipher=aes-128-icm", "rtcp-auth=hmac-sha1-80", "!", "udpsink", "host=127.0.0.1"])
                .arg(format!("port={}", sdp_port(&answer, "video")))
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("gst-launch runs");
            runs.push((name, child, rec, file, rtp));
        }
        for (_, child, _, _, _) in &mut runs {
            let _ = child.wait();
        }
        for (name, _, rec, file, rtp) in &runs {
            c.invoke(rec, "stopAndWait", json!({})).await.expect("stopAndWait");
            let frames = decoded_frames(file);
            // Dropped packets are counted (Fluo's srtpAuthFailures in the inbound entry).
            let stats = c.invoke(rtp, "getStats", json!({})).await.expect("getStats");
            let inbound = stats_entry(&stats, "inboundrtp").expect("an inbound entry");
            let failed = inbound["srtpAuthFailures"].as_u64().expect("srtpAuthFailures");
            let received = inbound["packetsReceived"].as_u64().unwrap_or(0);
            println!("gst-launch SRTP ({name}) -> RtpEndpoint -> recorder: {frames} frames, {received} packets in, {failed} failed authentication");
            if *name == "right-key" {
                assert!(frames >= 80, "{frames} of 120 frames decrypted and recorded");
                assert_eq!(failed, 0, "{inbound}");
            } else {
                assert_eq!(frames, 0, "packets that fail authentication are dropped");
                assert_eq!(received, 0, "{inbound}");
                assert!(failed >= 100, "every packet of the wrong key counted: {inbound}");
            }
        }

        // Two SRTP RtpEndpoints negotiate with each other (generateOffer / processOffer /
        // processAnswer) and a player's media crosses the encrypted hop.
        let a = c.create("RtpEndpoint", sdes.clone()).await.expect("a");
        let b = c
            .create("RtpEndpoint", json!({"mediaPipeline": pipe, "crypto": {"crypto": "AES_128_CM_HMAC_SHA1_80"}}))
            .await
            .expect("b");
        for ep in [&a, &b] {
            c.subscribe(ep, "MediaSessionStarted").await.expect("subscribe");
        }
        let offer = c.invoke(&a, "generateOffer", json!({})).await.expect("offer");
        let answer = c.invoke(&b, "processOffer", json!({"offer": offer})).await.expect("answer");
        let started = c.wait_event("MediaSessionStarted", &b, Duration::from_secs(2)).await;
        assert!(started.is_some(), "MediaSessionStarted after processOffer");
        c.invoke(&a, "processAnswer", json!({"answer": answer})).await.expect("processAnswer");
        let started = c.wait_event("MediaSessionStarted", &a, Duration::from_secs(2)).await;
        assert!(started.is_some(), "MediaSessionStarted after processAnswer");
        let file = dir.join("hop.webm");
        let rec = c
            .create("RecorderEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", file.display()), "mediaProfile": "WEBM"}))
            .await
            .expect("recorder");
        let player = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", input.display())}))
            .await
            .expect("player");
        c.invoke(&player, "connect", json!({"sink": a})).await.expect("connect");
        c.invoke(&b, "connect", json!({"sink": rec})).await.expect("connect");
        c.invoke(&rec, "record", json!({})).await.expect("record");
        c.invoke(&player, "play", json!({})).await.expect("play");
        tokio::time::sleep(Duration::from_secs(4)).await;
        c.invoke(&rec, "stopAndWait", json!({})).await.expect("stopAndWait");
        let (codecs, _) = probe(&file);
        let frames = decoded_frames(&file);
        println!("player -> SRTP -> SRTP -> recorder: {codecs:?}, {frames} frames");
        assert_eq!(codecs, vec!["opus", "vp8"]);
        assert!(frames >= 60, "{frames} frames crossed the SRTP hop");
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}

/// Serves one file over HTTP/1.1 on 127.0.0.1:0 (whole file, any path); returns the port.
fn http_server(file: PathBuf) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let file = file.clone();
            std::thread::spawn(move || {
                let mut s = s;
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req);
                let body = std::fs::read(&file).unwrap_or_default();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: video/webm\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            });
        }
    });
    port
}

#[test]
fn players_take_files_http_and_mp4_seek_and_report_bad_sources() {
    let _serial = serial();
    let dir = tmp::dir("gst-player");
    let webm = av_clip(&dir, "in.webm", 4);
    let mp4 = av_clip(&dir, "in.mp4", 4);
    let text = dir.join("not-media.webm");
    std::fs::write(&text, "this is not a video").expect("write");
    let web = http_server(webm.clone());
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        // Bad URIs are refused at once.
        for bad in ["relative.webm", "file://x/y.webm", "file:///tmp/../etc/passwd", "ftp://host/x.webm"] {
            let r = c
                .request("create", json!({"type": "PlayerEndpoint", "constructorParams": {"mediaPipeline": pipe, "uri": bad}}))
                .await
                .expect("answer");
            assert_eq!(r["error"]["code"], 40107, "{bad}: {r}");
        }
        // A missing file fails at play(), with Kurento's code.
        let missing = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}/missing.webm", dir.display())}))
            .await
            .expect("player");
        let e = c.invoke(&missing, "play", json!({})).await.expect_err("missing file");
        assert_eq!(e["code"], 40600, "{e}");
        // Unreachable hosts and files that are not media give an Error event.
        for uri in [format!("file://{}", text.display()), "http://127.0.0.1:9/nothing.webm".to_string()] {
            let p = c.create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": uri})).await.expect("player");
            c.subscribe(&p, "Error").await.expect("subscribe");
            c.invoke(&p, "play", json!({})).await.expect("play starts");
            let err = c.wait_event("Error", &p, Duration::from_secs(10)).await;
            assert!(err.is_some(), "{uri}: an Error event");
            println!("{uri}: {}", err.unwrap_or_default()["description"]);
        }

        // Sources that work: WebM over HTTP, MP4 (H.264 + AAC) from a file, and WebM with
        // useEncodedMedia (VP8 passed through, nothing decoded or transcoded). Recorders stop
        // themselves at the end of the stream.
        let sources = [
            ("http", format!("http://127.0.0.1:{web}/clip.webm"), false),
            ("mp4", format!("file://{}", mp4.display()), false),
            ("encoded", format!("file://{}", webm.display()), true),
        ];
        let mut runs = vec![];
        for (name, uri, encoded) in &sources {
            let p = c
                .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": uri, "useEncodedMedia": encoded}))
                .await
                .expect("player");
            let file = dir.join(format!("from-{name}.webm"));
            let r = c
                .create("RecorderEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", file.display()), "stopOnEndOfStream": true}))
                .await
                .expect("recorder");
            for (o, ev) in [(&p, "EndOfStream"), (&p, "MediaTranscodingStateChanged"), (&p, "Error"), (&r, "Stopped")] {
                c.subscribe(o, ev).await.expect("subscribe");
            }
            c.invoke(&p, "connect", json!({"sink": r})).await.expect("connect");
            c.invoke(&r, "record", json!({})).await.expect("record");
            c.invoke(&p, "play", json!({})).await.expect("play");
            runs.push((name, p, r, file));
        }
        for (name, p, r, file) in &runs {
            assert!(c.wait_event("EndOfStream", p, Duration::from_secs(15)).await.is_some(), "{name}: end of stream");
            assert!(c.wait_event("Stopped", r, Duration::from_secs(5)).await.is_some(), "{name}: the recorder stopped itself");
            let (codecs, dur) = probe(file);
            let frames = decoded_frames(file);
            println!("{name}: {codecs:?} {dur:.2} s, {frames} frames");
            assert_eq!(codecs, vec!["opus", "vp8"], "{name}");
            assert!(frames >= 90, "{name}: {frames} frames");
        }
        let good: Vec<&String> = runs.iter().map(|(_, p, _, _)| p).collect();
        let bad: Vec<_> = c
            .events
            .iter()
            .filter(|(t, d)| {
                (t == "MediaTranscodingStateChanged" || t == "Error")
                    && good.iter().any(|p| d["source"] == p.as_str())
            })
            .collect();
        assert!(bad.is_empty(), "no transcoding, no errors: {bad:?}");

        // Video info, seeking and position.
        let p = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", webm.display())}))
            .await
            .expect("player");
        c.invoke(&p, "play", json!({})).await.expect("play");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let info = c.invoke(&p, "getVideoInfo", json!({})).await.expect("video info");
        assert_eq!(info["isSeekable"], true, "{info}");
        let d = info["duration"].as_i64().unwrap_or(0);
        assert!((3900..=4100).contains(&d), "duration {d} ms");
        c.invoke(&p, "setPosition", json!({"position": 3000})).await.expect("seek");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pos = c.invoke(&p, "getPosition", json!({})).await.expect("position");
        assert!(pos.as_i64().unwrap_or(0) >= 2900, "position after seeking to 3000: {pos}");
        let e = c.invoke(&p, "setPosition", json!({"position": -5})).await.expect_err("negative");
        assert_eq!(e["code"], 40107, "{e}");
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}

#[test]
fn a_player_plays_an_rtsp_stream() {
    let _serial = serial();
    use std::io::BufRead;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rtsp_server.py");
    let mut server = Command::new("/usr/bin/python3")
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("Debian's python3 runs the RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0)");
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the RTSP server prints its port");
    let rtsp_port: u16 = line.trim().parse().expect("a port");
    let dir = tmp::dir("gst-rtsp");
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let p = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("rtsp://127.0.0.1:{rtsp_port}/test"), "networkCache": 200}))
            .await
            .expect("player");
        c.subscribe(&p, "Error").await.expect("subscribe");
        let file = dir.join("from-rtsp.webm");
        let r = c
            .create("RecorderEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", file.display())}))
            .await
            .expect("recorder");
        c.invoke(&p, "connect", json!({"sink": r})).await.expect("connect");
        c.invoke(&r, "record", json!({})).await.expect("record");
        c.invoke(&p, "play", json!({})).await.expect("play");
        tokio::time::sleep(Duration::from_secs(5)).await;
        c.invoke(&r, "stopAndWait", json!({})).await.expect("stop");
        let (codecs, _) = probe(&file);
        let frames = decoded_frames(&file);
        println!("rtsp -> player -> recorder: {codecs:?}, {frames} frames");
        assert!(!c.events.iter().any(|(t, _)| t == "Error"), "{:?}", c.events);
        assert_eq!(codecs, vec!["opus", "vp8"]);
        assert!(frames >= 60, "{frames} frames from the RTSP stream in 5 s");
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
    drop(server.stdin.take());
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn legacy_codecs_h263_amr_speex_cross_rtp_endpoints_through_transcoders() {
    let _serial = serial();
    let dir = tmp::dir("gst-legacy");
    let input = av_clip(&dir, "in.webm", 20);
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let pp = json!({"mediaPipeline": pipe});
        // gst-launch sends H.263+ video with AMR or Speex audio; a WebM recorder needs VP8 and
        // Opus, so the router transcodes both.
        let cases = [
            ("speex", "speex/16000", "", "audiotestsrc is-live=true samplesperbuffer=320 num-buffers=300 ! audio/x-raw,rate=16000,channels=1 ! speexenc ! rtpspeexpay pt=101"),
            ("amr", "AMR/8000", "a=fmtp:101 octet-align=1\r\n", "audiotestsrc is-live=true samplesperbuffer=160 num-buffers=300 ! audio/x-raw,rate=8000,channels=1 ! amrnbenc ! rtpamrpay pt=101"),
        ];
        let mut runs = vec![];
        for (name, rtpmap, fmtp, audio) in cases {
            let rtp = c.create("RtpEndpoint", pp.clone()).await.expect("rtp endpoint");
            c.subscribe(&rtp, "MediaTranscodingStateChanged").await.expect("subscribe");
            let offer = format!(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=peer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {} RTP/AVP 101\r\na=rtpmap:101 {rtpmap}\r\n{fmtp}a=sendonly\r\n\
                 m=video {} RTP/AVP 100\r\na=rtpmap:100 H263-1998/90000\r\na=sendonly\r\n",
                free_udp_port(),
                free_udp_port()
            );
            let answer = c.invoke(&rtp, "processOffer", json!({"offer": offer})).await.expect("processOffer");
            let answer = answer.as_str().expect("sdp").to_string();
            assert!(answer.contains(&format!("a=rtpmap:101 {rtpmap}")) && answer.contains("H263-1998/90000"), "{answer}");
            let file = dir.join(format!("{name}.webm"));
            let rec = c
                .create("RecorderEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", file.display())}))
                .await
                .expect("recorder");
            c.invoke(&rtp, "connect", json!({"sink": rec})).await.expect("connect");
            c.invoke(&rec, "record", json!({})).await.expect("record");
            let desc = format!(
                "videotestsrc is-live=true num-buffers=180 ! video/x-raw,width=352,height=288,framerate=30/1 ! avenc_h263p gop-size=30 ! rtph263ppay pt=100 ! udpsink host=127.0.0.1 port={} {audio} ! udpsink host=127.0.0.1 port={}",
                sdp_port(&answer, "video"),
                sdp_port(&answer, "audio")
            );
            // One sender at a time: four codecs are encoded and decoded per case.
            let st = Command::new("gst-launch-1.0")
                .arg("-q")
                .args(desc.split_whitespace())
                .stdout(std::process::Stdio::null())
                .status()
                .expect("gst-launch");
            assert!(st.success(), "gst-launch sent {name}");
            runs.push((name, rtp, rec, file));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (name, rtp, rec, file) in &runs {
            c.invoke(rec, "stopAndWait", json!({})).await.expect("stop");
            let (codecs, _) = probe(file);
            let frames = decoded_frames(file);
            let mut transcoded = vec![];
            while let Some(t) = c.wait_event("MediaTranscodingStateChanged", rtp, Duration::from_millis(200)).await {
                transcoded.push(format!("{} {}", t["mediaType"].as_str().unwrap_or(""), t["state"].as_str().unwrap_or("")));
            }
            transcoded.sort();
            println!("{name}: {codecs:?}, {frames} frames, {transcoded:?}");
            assert_eq!(codecs, vec!["opus", "vp8"], "{name}");
            // The first second or so goes to starting the transcoder and waiting for an
            // H.263 keyframe (gst-launch ignores PLI); the rest must arrive.
            assert!(frames >= 110, "{name}: {frames} of 180 H.263 frames arrived as VP8");
            assert_eq!(transcoded, vec!["AUDIO TRANSCODING", "VIDEO TRANSCODING"], "{name}");
        }

        // The other way: a player's VP8 goes out as H.263 to a peer that only takes H.263.
        let listen = free_udp_port();
        let out_file = dir.join("h263-out.mkv");
        let mut receiver = Command::new("gst-launch-1.0")
            .args(["-q", "-e", "udpsrc"])
            .arg(format!("port={listen}"))
            .arg("caps=application/x-rtp,media=video,encoding-name=H263-1998,clock-rate=90000,payload=100")
            .args(["!", "rtpjitterbuffer", "latency=100", "!", "rtph263pdepay", "!", "avdec_h263", "!", "videoconvert", "!", "vp8enc", "deadline=1", "!", "matroskamux", "!", "filesink"])
            .arg(format!("location={}", out_file.display()))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("gst-launch");
        let rtp = c.create("RtpEndpoint", pp.clone()).await.expect("rtp");
        let offer = format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=peer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video {listen} RTP/AVP 100\r\na=rtpmap:100 H263-1998/90000\r\na=recvonly\r\n");
        c.invoke(&rtp, "processOffer", json!({"offer": offer})).await.expect("processOffer");
        let player = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", input.display())}))
            .await
            .expect("player");
        c.invoke(&player, "connect", json!({"sink": rtp})).await.expect("connect");
        c.invoke(&player, "play", json!({})).await.expect("play");
        tokio::time::sleep(Duration::from_secs(4)).await;
        let _ = Command::new("kill").args(["-INT", &receiver.id().to_string()]).status();
        let _ = receiver.wait();
        let frames = decoded_frames(&out_file);
        println!("player -> H.263 -> gst-launch: {frames} frames");
        assert!(frames >= 60, "{frames} H.263 frames decoded by gst-launch");
        // Its transcoder goes with it: the VP9 leg below is not sharing two cores with it.
        c.request("release", json!({"object": rtp})).await.expect("release the H.263 endpoint");

        // And to a peer that takes only VP9 and G.711 mu-law: two transcoders from the player.
        let (va, vv) = (free_udp_port(), free_udp_port());
        let out_file = dir.join("vp9-pcmu-out.mkv");
        let desc = format!(
            "matroskamux name=m ! filesink location={} \
             udpsrc port={vv} caps=application/x-rtp,media=video,encoding-name=VP9,clock-rate=90000,payload=99 ! rtpjitterbuffer latency=100 ! rtpvp9depay ! m. \
             udpsrc port={va} caps=application/x-rtp,media=audio,encoding-name=PCMU,clock-rate=8000,payload=0 ! rtpjitterbuffer latency=100 ! rtppcmudepay ! mulawdec ! audioconvert ! audioresample ! opusenc ! m.",
            out_file.display()
        );
        let mut receiver = Command::new("gst-launch-1.0")
            .args(["-q", "-e"])
            .args(desc.split_whitespace())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("gst-launch");
        let rtp = c.create("RtpEndpoint", pp.clone()).await.expect("rtp");
        let offer = format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=peer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {va} RTP/AVP 0\r\na=recvonly\r\nm=video {vv} RTP/AVP 99\r\na=rtpmap:99 VP9/90000\r\na=recvonly\r\n");
        c.invoke(&rtp, "processOffer", json!({"offer": offer})).await.expect("processOffer");
        c.invoke(&player, "connect", json!({"sink": rtp})).await.expect("connect");
        // 60 frames in 5 s: two transcoders' decode and encode on two shared cores may run
        // at half rate; what this asserts is that VP9 and PCMU reach the peer and decode.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let _ = Command::new("kill").args(["-INT", &receiver.id().to_string()]).status();
        let _ = receiver.wait();
        let (codecs, _) = probe(&out_file);
        let frames = decoded_frames(&out_file);
        println!("player -> VP9 + PCMU -> gst-launch: {codecs:?}, {frames} frames");
        assert_eq!(codecs, vec!["opus", "vp9"], "both tracks reached gst-launch");
        assert!(frames >= 60, "{frames} VP9 frames decoded by gst-launch");
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}

/// Accepts uploads (POST or PUT, chunked or with a length) on 127.0.0.1:0 and stores each
/// body under `dir` by the request path's last segment; returns the port.
fn upload_server(dir: PathBuf) -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().expect("clone"));
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    return;
                }
                let name = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.rsplit('/').next())
                    .unwrap_or("upload")
                    .to_string();
                let (mut chunked, mut len, mut expect) = (false, 0usize, false);
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    let h = h.to_ascii_lowercase();
                    chunked |= h.starts_with("transfer-encoding:") && h.contains("chunked");
                    expect |= h.starts_with("expect:") && h.contains("100-continue");
                    if let Some(v) = h.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut w = s;
                if expect {
                    let _ = w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                let mut body = vec![];
                if chunked {
                    loop {
                        let mut size = String::new();
                        if r.read_line(&mut size).unwrap_or(0) == 0 {
                            break;
                        }
                        let n =
                            usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                                .unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        let mut chunk = vec![0u8; n + 2];
                        if r.read_exact(&mut chunk).is_err() {
                            break;
                        }
                        body.extend_from_slice(&chunk[..n]);
                        // Keep what arrived so far, as a server streaming to disk would.
                        let _ = std::fs::write(dir.join(&name), &body);
                    }
                } else {
                    body.resize(len, 0);
                    let _ = r.read_exact(&mut body);
                }
                let _ = std::fs::write(dir.join(&name), &body);
                let _ = w.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    port
}

/// Chromium's MediaRecorder writes WebM whose VP8 track says it may carry alpha (AlphaMode 1)
/// and carries none: GStreamer's alpha VP8 decoder, which decodebin picks for such a track,
/// fails on its first frame. The player decodes it with the plain decoder and plays it.
#[test]
fn a_player_plays_a_webm_whose_vp8_track_says_it_may_carry_alpha() {
    let _serial = serial();
    let dir = tmp::dir("gst-alpha");
    let clip = dir.join("alpha.webm");
    let made = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-t",
            "2",
        ])
        .args([
            "-c:v",
            "libvpx",
            "-pix_fmt",
            "yuv420p",
            "-metadata:s:v:0",
            "alpha_mode=1",
        ])
        .arg(&clip)
        .status()
        .expect("ffmpeg");
    assert!(made.success(), "ffmpeg made the clip");
    let out = dir.join("out.webm");
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let p = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", clip.display())}))
            .await
            .expect("player");
        let r = c
            .create("RecorderEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", out.display()), "mediaProfile": "WEBM_VIDEO_ONLY", "stopOnEndOfStream": true}))
            .await
            .expect("recorder");
        for (o, ev) in [(&p, "EndOfStream"), (&p, "Error"), (&r, "Stopped"), (&r, "Error")] {
            c.subscribe(o, ev).await.expect("subscribe");
        }
        c.invoke(&p, "connect", json!({"sink": r})).await.expect("connect");
        c.invoke(&r, "record", json!({})).await.expect("record");
        c.invoke(&p, "play", json!({})).await.expect("play");
        assert!(c.wait_event("EndOfStream", &p, Duration::from_secs(15)).await.is_some(), "the clip plays to its end: {:?}", c.events);
        assert!(c.wait_event("Stopped", &r, Duration::from_secs(10)).await.is_some(), "the recording stops");
        assert!(!c.events.iter().any(|(t, _)| t == "Error"), "{:?}", c.events);
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
    let frames = decoded_frames(&out);
    println!("alpha-flagged WebM through a player: {frames} frames recorded");
    assert!(frames >= 45, "{frames} frames of the 2 s clip recorded");
}

#[test]
fn recorders_upload_to_http_and_players_read_mkv() {
    let _serial = serial();
    let dir = tmp::dir("gst-upload");
    let mkv = av_clip(&dir, "in.mkv", 4);
    let received = dir.join("received");
    std::fs::create_dir_all(&received).expect("dir");
    let up = upload_server(received.clone());
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let p = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", mkv.display())}))
            .await
            .expect("player");
        c.subscribe(&p, "EndOfStream").await.expect("subscribe");
        let mut recs = vec![];
        for (profile, name) in [("WEBM", "up.webm"), ("MP4", "up.mp4")] {
            let r = c
                .create("RecorderEndpoint", json!({"mediaPipeline": pipe, "uri": format!("http://127.0.0.1:{up}/rec/{name}"), "mediaProfile": profile, "stopOnEndOfStream": true}))
                .await
                .expect("recorder");
            for ev in ["Stopped", "Error"] {
                c.subscribe(&r, ev).await.expect("subscribe");
            }
            c.invoke(&p, "connect", json!({"sink": r})).await.expect("connect");
            c.invoke(&r, "record", json!({})).await.expect("record");
            recs.push((profile, r, received.join(name)));
        }
        c.invoke(&p, "play", json!({})).await.expect("play");
        assert!(c.wait_event("EndOfStream", &p, Duration::from_secs(15)).await.is_some(), "the MKV clip plays to its end");
        for (profile, r, file) in &recs {
            assert!(c.wait_event("Stopped", r, Duration::from_secs(10)).await.is_some(), "{profile}: stopped at the end of the stream");
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (codecs, _) = probe(file);
            let frames = decoded_frames(file);
            println!("MKV player -> {profile} upload: {codecs:?}, {frames} frames, {} bytes", std::fs::metadata(file).map(|m| m.len()).unwrap_or(0));
            assert_eq!(codecs.len(), 2, "{profile}: {codecs:?}");
            assert!(frames >= 90, "{profile}: {frames} frames uploaded");
        }
        assert!(!c.events.iter().any(|(t, _)| t == "Error"), "{:?}", c.events);
        // Uploads to a host that is not there give an Error event, not a hang.
        let r = c
            .create("RecorderEndpoint", json!({"mediaPipeline": pipe, "uri": "http://127.0.0.1:9/nowhere.webm"}))
            .await
            .expect("recorder");
        c.subscribe(&r, "Error").await.expect("subscribe");
        let p2 = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", mkv.display())}))
            .await
            .expect("player");
        c.invoke(&p2, "connect", json!({"sink": r})).await.expect("connect");
        c.invoke(&r, "record", json!({})).await.expect("record");
        c.invoke(&p2, "play", json!({})).await.expect("play");
        assert!(c.wait_event("Error", &r, Duration::from_secs(10)).await.is_some(), "an unreachable upload target raises Error");
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}

#[test]
fn a_publisher_switching_codecs_gets_its_transcoder_undone_and_redone_never_chained() {
    let _serial = serial();
    use fluo_testkit::udp_peer::{h264_access_units, ivf_frames, Peer};
    use str0m::format::Codec;
    let dir = tmp::dir("gst-switch");
    let ivf = dir.join("in.ivf");
    let annexb = dir.join("in.h264");
    let ff = |args: &[&str], out: &Path| {
        let st = Command::new("ffmpeg")
            .args([
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=30",
                "-t",
                "2",
            ])
            .args(args)
            .arg(out)
            .status()
            .expect("ffmpeg");
        assert!(st.success());
    };
    ff(&["-c:v", "libvpx", "-g", "30", "-f", "ivf"], &ivf);
    ff(
        &[
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-pix_fmt",
            "yuv420p",
            "-x264-params",
            "aud=1:keyint=30",
            "-bsf:v",
            "h264_mp4toannexb",
            "-f",
            "h264",
        ],
        &annexb,
    );
    let vp8 = ivf_frames(&std::fs::read(&ivf).expect("ivf"));
    let h264 = h264_access_units(&std::fs::read(&annexb).expect("h264"));
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let pp = json!({"mediaPipeline": pipe});
        let e_pub = c.create("WebRtcEndpoint", pp.clone()).await.expect("endpoint");
        let e_view = c.create("WebRtcEndpoint", pp).await.expect("endpoint");
        c.subscribe(&e_pub, "MediaTranscodingStateChanged").await.expect("sub");
        // The publisher negotiates VP8 and H.264; the viewer only H.264.
        let (mut publisher, mut viewer) = Peer::publisher_and_viewer(
            &mut c,
            &e_pub,
            &e_view,
            str0m::RtcConfig::new().clear_codecs().enable_vp8(true).enable_h264(true),
            str0m::RtcConfig::new().clear_codecs().enable_h264(true),
        )
        .await
        .expect("negotiated");
        viewer.keep_frames = false;
        c.invoke(&e_pub, "connect", json!({"sink": e_view})).await.expect("connect");
        // VP8 (3 s), H.264 (1.5 s), VP8 again (2.5 s).
        let driver = std::thread::spawn(move || {
            let mut per_phase = vec![];
            for (phase, codec) in [Codec::Vp8, Codec::H264, Codec::Vp8].into_iter().enumerate() {
                publisher.send_codec = codec;
                let frames = if codec == Codec::Vp8 { &vp8 } else { &h264 };
                let before = viewer.frames_in;
                let t0 = std::time::Instant::now();
                let (mut n, mut next) = (0usize, t0);
                while t0.elapsed() < Duration::from_millis([3000, 1500, 2500][phase]) {
                    let now = std::time::Instant::now();
                    let send = publisher.connected && now >= next;
                    if send {
                        next += Duration::from_millis(33);
                        n += 1;
                    }
                    publisher.drive(send.then(|| frames[n % frames.len()].as_slice()));
                    viewer.drive(None);
                    std::thread::sleep(Duration::from_millis(2));
                }
                per_phase.push(viewer.frames_in - before);
            }
            per_phase
        });
        let per_phase = tokio::task::spawn_blocking(move || driver.join().expect("driver")).await.expect("join");
        let mut states = vec![];
        while let Some(t) = c.wait_event("MediaTranscodingStateChanged", &e_pub, Duration::from_millis(300)).await {
            states.push(t["state"].as_str().unwrap_or_default().to_string());
        }
        println!("frames at the viewer per phase (VP8, H.264, VP8): {per_phase:?}; transcoding: {states:?}");
        assert_eq!(states, vec!["TRANSCODING", "NOT_TRANSCODING", "TRANSCODING"], "one transcoder at a time, undone while the source sends H.264");
        assert!(per_phase.iter().all(|n| *n >= 15), "the viewer gets video in every phase: {per_phase:?}");
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}

/// The latency entries of a getStats report: {(entry type, list, media type): avg ns}.
fn latencies(stats: &Value) -> Vec<(String, String, String, f64)> {
    let mut out = vec![];
    for e in stats.as_object().into_iter().flat_map(|m| m.values()) {
        for list in ["inputLatency", "E2ELatency"] {
            for l in e[list].as_array().into_iter().flatten() {
                out.push((
                    e["type"].as_str().unwrap_or_default().to_string(),
                    list.to_string(),
                    l["type"].as_str().unwrap_or_default().to_string(),
                    l["avg"].as_f64().unwrap_or(-1.0),
                ));
            }
        }
    }
    out
}

#[test]
fn stats_of_players_filters_recorders_and_pass_throughs_follow_latency_stats() {
    let _serial = serial();
    let dir = tmp::dir("gst-stats");
    let input = av_clip(&dir, "in.webm", 6);
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let pp = json!({"mediaPipeline": pipe});
        let player = c
            .create(
                "PlayerEndpoint",
                json!({"mediaPipeline": pipe, "uri": format!("file://{}", input.display())}),
            )
            .await
            .expect("player");
        let filter = c
            .create(
                "GStreamerFilter",
                json!({"mediaPipeline": pipe, "command": "videoflip method=horizontal-flip"}),
            )
            .await
            .expect("filter");
        let file = dir.join("out.webm");
        let rec = c.recorder(&pipe, &file).await.expect("recorder");
        let pass = c
            .create("PassThrough", pp.clone())
            .await
            .expect("pass through");
        c.invoke(&player, "connect", json!({"sink": filter}))
            .await
            .expect("connect");
        c.invoke(&filter, "connect", json!({"sink": rec}))
            .await
            .expect("connect");
        c.invoke(&player, "connect", json!({"sink": pass}))
            .await
            .expect("connect");
        c.invoke(&rec, "record", json!({})).await.expect("record");
        c.invoke(&player, "play", json!({})).await.expect("play");
        tokio::time::sleep(Duration::from_secs(2)).await;
        // As with KMS: without the pipeline's latencyStats, these elements report nothing.
        for e in [&player, &filter, &rec, &pass] {
            let s = c.invoke(e, "getStats", json!({})).await.expect("getStats");
            assert_eq!(s, json!({}), "{e}");
        }
        c.invoke(&pipe, "setLatencyStats", json!({"latencyStats": true}))
            .await
            .expect("latencyStats");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut all = vec![];
        for (name, e) in [
            ("player", &player),
            ("filter", &filter),
            ("recorder", &rec),
            ("pass", &pass),
        ] {
            let s = c.invoke(e, "getStats", json!({})).await.expect("getStats");
            println!("{name}: {s}");
            let entry = &s[e.as_str()];
            assert_eq!(entry["__type__"], "ElementStats", "{name}: {s}");
            assert_eq!(entry["type"], "element", "{name}");
            all.push((name, latencies(&s)));
        }
        let of = |name: &str| {
            all.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, l)| l.clone())
                .unwrap()
        };
        // What reaches the filter (video) and the recorder (audio from the player, video from
        // the filter), measured from where it entered the router: positive, and well under
        // a second.
        let filter_in = of("filter");
        let rec_in = of("recorder");
        for (what, list) in [("filter", &filter_in), ("recorder", &rec_in)] {
            for (_, l, _, avg) in list.iter() {
                assert_eq!(l, "inputLatency", "{what}");
                assert!(*avg > 0.0 && *avg < 1e9, "{what}: {avg} ns");
            }
        }
        let kinds =
            |l: &[(String, String, String, f64)]| l.iter().map(|x| x.2.clone()).collect::<Vec<_>>();
        assert_eq!(
            kinds(&filter_in),
            vec!["AUDIO", "VIDEO"],
            "the filter takes both, filters video"
        );
        assert_eq!(kinds(&rec_in), vec!["AUDIO", "VIDEO"]);
        // A player has no input; nothing crosses a PassThrough in Fluo's router.
        assert!(of("player").is_empty() && of("pass").is_empty());
        // mediaType filters the lists.
        let s = c
            .invoke(&rec, "getStats", json!({"mediaType": "AUDIO"}))
            .await
            .expect("getStats");
        assert_eq!(kinds(&latencies(&s)), vec!["AUDIO"]);
        c.request("release", json!({"object": pipe}))
            .await
            .expect("release");
    });
}

/// The first entry of a getStats report with this `type`.
fn stats_entry(stats: &Value, ty: &str) -> Option<Value> {
    stats
        .as_object()?
        .values()
        .find(|v| v["type"] == ty)
        .cloned()
}

/// Waits at most `limit` for a gst-launch sender that ends by itself (num-buffers), then
/// interrupts it: an rtpbin whose RTCP branch is still open may never reach its end of
/// stream (a run of make test hung here for 11 minutes).
async fn finish(child: &mut std::process::Child, limit: Duration) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[test]
fn rtp_endpoint_stats_and_media_state_follow_rtcp_with_gst_launch_rtpbin() {
    let _serial = serial();
    let dir = tmp::dir("gst-rtp-stats");
    let input = av_clip(&dir, "in.webm", 8);
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let pp = json!({"mediaPipeline": pipe});
        c.invoke(&pipe, "setLatencyStats", json!({"latencyStats": true})).await.expect("latencyStats");

        // 1. gst-launch's rtpbin sends VP8 with its RTCP and reads ours.
        let (their_rtp, their_rtcp) = {
            let p = free_udp_port();
            (p, p + 1)
        };
        let offer = format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=peer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video {their_rtp} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n");
        let inbound = c.create("RtpEndpoint", pp.clone()).await.expect("rtp endpoint");
        let answer = c.invoke(&inbound, "processOffer", json!({"offer": offer})).await.expect("processOffer");
        // Subscribed after processOffer, as applications do: the media state comes with
        // the sender's first RTCP report, later.
        c.subscribe(&inbound, "MediaStateChanged").await.expect("subscribe");
        assert_eq!(c.invoke(&inbound, "getMediaState", json!({})).await, Ok(json!("DISCONNECTED")));
        let fluo = sdp_port(answer.as_str().unwrap(), "video");
        let sender = Command::new("gst-launch-1.0")
            .args(["-q", "rtpbin", "name=rb", "videotestsrc", "is-live=true", "num-buffers=150", "!", "video/x-raw,width=320,height=240,framerate=30/1", "!", "vp8enc", "deadline=1", "!", "rtpvp8pay", "pt=96", "!", "rb.send_rtp_sink_0", "rb.send_rtp_src_0", "!", "udpsink", "host=127.0.0.1"])
            .arg(format!("port={fluo}"))
            .args(["rb.send_rtcp_src_0", "!", "udpsink", "host=127.0.0.1", "sync=false", "async=false"])
            .arg(format!("port={}", fluo + 1))
            .args(["udpsrc"])
            .arg(format!("port={their_rtcp}"))
            .args(["!", "rb.recv_rtcp_sink_0"])
            .stdout(std::process::Stdio::null())
            .spawn();
        let mut sender = sender.expect("gst-launch runs");
        let up = c.wait_event("MediaStateChanged", &inbound, Duration::from_secs(8)).await;
        println!("inbound media state: {up:?}");
        assert_eq!(up.as_ref().map(|e| e["newState"].clone()), Some(json!("CONNECTED")));
        assert_eq!(c.invoke(&inbound, "getMediaState", json!({})).await, Ok(json!("CONNECTED")));
        finish(&mut sender, Duration::from_secs(15)).await;
        let s = c.invoke(&inbound, "getStats", json!({})).await.expect("getStats");
        println!("inbound RtpEndpoint: {s}");
        let i = stats_entry(&s, "inboundrtp").expect("an inbound entry");
        assert_eq!(i["__type__"], "RTCInboundRTPStreamStats");
        let received = i["packetsReceived"].as_u64().unwrap();
        assert!(received > 150, "{received} packets for 150 frames");
        assert_eq!(i["packetsLost"], 0, "loopback loses nothing: {i}");
        let jitter = i["jitter"].as_f64().unwrap();
        assert!((0.0..0.1).contains(&jitter), "jitter {jitter} s");
        assert!(stats_entry(&s, "outboundrtp").is_none(), "it sends nothing");
        assert_eq!(s[inbound.as_str()]["type"], "endpoint", "{s}");

        // 2. A player sends through an RtpEndpoint to gst-launch's rtpbin, whose receiver
        // reports give the round trip and the loss.
        let listen = free_udp_port();
        let rtp = c.create("RtpEndpoint", pp.clone()).await.expect("rtp endpoint");
        let offer = format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=peer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video {listen} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=recvonly\r\n");
        let answer = c.invoke(&rtp, "processOffer", json!({"offer": offer})).await.expect("processOffer");
        c.subscribe(&rtp, "MediaStateChanged").await.expect("subscribe");
        let fluo = sdp_port(answer.as_str().unwrap(), "video");
        let mut receiver = Command::new("gst-launch-1.0")
            .args(["-q", "rtpbin", "name=rb", "udpsrc"])
            .arg(format!("port={listen}"))
            .arg("caps=application/x-rtp,media=video,encoding-name=VP8,clock-rate=90000,payload=96")
            .args(["!", "rb.recv_rtp_sink_0", "rb.", "!", "rtpvp8depay", "!", "fakesink", "udpsrc"])
            .arg(format!("port={}", listen + 1))
            .args(["!", "rb.recv_rtcp_sink_0", "rb.send_rtcp_src_0", "!", "udpsink", "host=127.0.0.1", "sync=false", "async=false"])
            .arg(format!("port={}", fluo + 1))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("gst-launch runs");
        let player = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", input.display())}))
            .await
            .expect("player");
        c.invoke(&player, "connect", json!({"sink": rtp})).await.expect("connect");
        c.invoke(&player, "play", json!({})).await.expect("play");
        let up = c.wait_event("MediaStateChanged", &rtp, Duration::from_secs(8)).await;
        assert_eq!(up.as_ref().map(|e| e["newState"].clone()), Some(json!("CONNECTED")), "{up:?}");
        // Reports come every few seconds each way: time for the receiver to answer ours.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let s = c.invoke(&rtp, "getStats", json!({"mediaType": "VIDEO"})).await.expect("getStats");
        let _ = Command::new("kill").args(["-INT", &receiver.id().to_string()]).status();
        let _ = receiver.wait();
        println!("outbound RtpEndpoint: {s}");
        let o = stats_entry(&s, "outboundrtp").expect("an outbound entry");
        assert!(o["packetsSent"].as_u64().unwrap() > 100, "{o}");
        let rtt = o["roundTripTime"].as_f64().unwrap();
        assert!(rtt > 0.0 && rtt < 0.5, "round trip {rtt} s on loopback, from rtpbin's reports");
        // rtpbin counts duplicates as negative loss (RFC 3550): none lost on loopback.
        assert!(o["packetsLost"].as_i64().unwrap().abs() <= 2, "{o}");
        assert!(o["targetBitrate"].as_f64().unwrap() > 10_000.0, "{o}");
        let e2e = &s[rtp.as_str()]["E2ELatency"];
        assert_eq!(e2e[0]["type"], "VIDEO", "{s}");
        assert!(e2e[0]["avg"].as_f64().unwrap() > 0.0, "{s}");
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}
