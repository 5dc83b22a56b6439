//! MediaElement output settings against a real server with real media: the encoder bitrate
//! bounds of a player and of a transcoder (measured in bytes on the wire), formats forced
//! with setVideoFormat / setAudioFormat (checked in the recorded files), and the GStreamer
//! DOT graphs of a pipeline (parsed by graphviz) and where dumpGstreamerDot writes them.

use fluo_testkit::clips::av_clip;
use fluo_testkit::live::{rt, serial, start_server, Client};
use fluo_testkit::tmp;
use serde_json::{json, Value};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A 320x240 30 fps clip of moving noise (nothing an encoder can squeeze below its target)
/// with a tone, VP8 + Opus in WebM.
fn noisy_clip(dir: &Path, secs: u32) -> PathBuf {
    let out = dir.join("noise.webm");
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=320x240:rate=30,noise=alls=60:allf=t+u")
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-t",
            &secs.to_string(),
        ])
        .args([
            "-c:v",
            "libvpx",
            "-b:v",
            "3M",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
        ])
        .args(["-c:a", "libopus"])
        .arg(&out)
        .status()
        .expect("ffmpeg runs (a test dependency)");
    assert!(st.success(), "ffmpeg made the clip");
    out
}

/// ffprobe's view of a file's first stream of `kind` ("v" or "a"): (codec, frames per second
/// of media: its packets over the time their timestamps span, so that a slow start of the
/// recording does not count).
fn stream(file: &Path, kind: &str) -> (String, f64) {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", &format!("{kind}:0")])
        .args(["-show_entries", "stream=codec_name", "-of", "json"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    let codec = v["streams"][0]["codec_name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", &format!("{kind}:0")])
        .args(["-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    let times: Vec<f64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let (first, last) = (
        times.iter().copied().fold(f64::MAX, f64::min),
        times.iter().copied().fold(f64::MIN, f64::max),
    );
    let fps = if times.len() > 1 && last > first {
        (times.len() - 1) as f64 / (last - first)
    } else {
        0.0
    };
    (codec, fps)
}

/// A UDP socket on an even port of 127.0.0.1 counting the RTP bytes it receives, and the
/// media time they cover (by their 90 kHz timestamps), while `counting` is set.
struct Meter {
    port: u16,
    /// (bytes, first timestamp, last timestamp) of the packets counted.
    seen: Arc<Mutex<(u64, Option<u32>, u32)>>,
    counting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Meter {
    fn new() -> Meter {
        let sock = loop {
            let s = UdpSocket::bind("127.0.0.1:0").expect("udp");
            if s.local_addr().expect("addr").port().is_multiple_of(2) {
                break s;
            }
        };
        let port = sock.local_addr().expect("addr").port();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let seen = Arc::new(Mutex::new((0, None, 0)));
        let (counting, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (m, c, s) = (seen.clone(), counting.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                let Ok(n) = sock.recv(&mut buf) else { continue };
                if n < 12 || !c.load(Ordering::Relaxed) {
                    continue;
                }
                let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                let mut m = m.lock().unwrap();
                m.0 += n as u64;
                m.1.get_or_insert(ts);
                m.2 = ts;
            }
        });
        Meter {
            port,
            seen,
            counting,
            stop,
        }
    }

    /// Bits per second of media received over about `window`: the bytes divided by the
    /// media time their RTP timestamps span (a busy machine that encodes slower than real
    /// time does not lower it).
    async fn measure(&self, window: Duration) -> f64 {
        *self.seen.lock().unwrap() = (0, None, 0);
        self.counting.store(true, Ordering::Relaxed);
        tokio::time::sleep(window).await;
        self.counting.store(false, Ordering::Relaxed);
        let (bytes, first, last) = *self.seen.lock().unwrap();
        let span = f64::from(last.wrapping_sub(first.unwrap_or(last))) / 90_000.0;
        assert!(span > 1.0, "{span:.2} s of media in {window:?}");
        bytes as f64 * 8.0 / span
    }

    /// An offer from this socket that only receives `codec` video.
    fn offer(&self, rtpmap: &str) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=meter\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video {} RTP/AVP 96\r\na=rtpmap:96 {rtpmap}\r\na=recvonly\r\n",
            self.port
        )
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn sdp_port(sdp: &str, kind: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix(&format!("m={kind} ")))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("an m= line with a port")
}

/// gst-launch sending `secs` of 320x240 30 fps VP8 noise at about 2 Mbps to `port`.
fn vp8_sender(port: u16, secs: u32) -> Child {
    Command::new("gst-launch-1.0")
        .args(["-q", "videotestsrc", "is-live=true", "pattern=snow"])
        .arg(format!("num-buffers={}", secs * 30))
        .args([
            "!",
            "video/x-raw,width=320,height=240,framerate=30/1",
            "!",
            "vp8enc",
        ])
        .args([
            "deadline=1",
            "target-bitrate=2000000",
            "keyframe-max-dist=30",
            "!",
        ])
        .args(["rtpvp8pay", "pt=96", "!", "udpsink", "host=127.0.0.1"])
        .arg(format!("port={port}"))
        .stdout(Stdio::null())
        .spawn()
        .expect("gst-launch runs (a test dependency)")
}

/// An RtpEndpoint receiving VP8 from gst-launch: (endpoint, the sender).
async fn vp8_from_gst(c: &mut Client, pipe: &str, secs: u32) -> (String, Child) {
    let rtp = c
        .create("RtpEndpoint", json!({"mediaPipeline": pipe}))
        .await
        .expect("rtp endpoint");
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=gst\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 9 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n";
    let answer = c
        .invoke(&rtp, "processOffer", json!({"offer": offer}))
        .await
        .expect("processOffer");
    let port = sdp_port(answer.as_str().expect("sdp"), "video");
    (rtp, vp8_sender(port, secs))
}

/// An RtpEndpoint sending what it gets to `meter` as `rtpmap`.
async fn to_meter(c: &mut Client, pipe: &str, meter: &Meter, rtpmap: &str) -> String {
    let rtp = c
        .create("RtpEndpoint", json!({"mediaPipeline": pipe}))
        .await
        .expect("rtp endpoint");
    let answer = c
        .invoke(&rtp, "processOffer", json!({"offer": meter.offer(rtpmap)}))
        .await
        .expect("processOffer");
    assert!(
        answer.as_str().unwrap_or_default().contains(rtpmap),
        "{answer}"
    );
    rtp
}

/// `set{setting}` (EncoderBitrate, MaxEncoderBitrate...) of `object` to `value`.
async fn set_bitrate(c: &mut Client, object: &str, setting: &str, value: i64) {
    let prop = format!("{}{}", setting[..1].to_lowercase(), &setting[1..]);
    c.invoke(
        object,
        &format!("set{setting}"),
        json!({ prop.as_str(): value }),
    )
    .await
    .expect("set bitrate");
}

/// Releases `objects`, in that order.
async fn release(c: &mut Client, objects: &[&str]) {
    for o in objects {
        c.request("release", json!({ "object": o }))
            .await
            .expect("release");
    }
}

#[test]
fn a_player_encodes_within_its_bitrate_bounds() {
    let _serial = serial();
    let dir = tmp::dir("gst-settings-player-rate");
    let clip = noisy_clip(&dir, 12);
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let mut rates = vec![];
        for (setting, value) in [("MaxEncoderBitrate", 150_000), ("EncoderBitrate", 600_000)] {
            let meter = Meter::new();
            let sink = to_meter(&mut c, &pipe, &meter, "VP8/90000").await;
            let player = c
                .create(
                    "PlayerEndpoint",
                    json!({"mediaPipeline": pipe, "uri": format!("file://{}", clip.display())}),
                )
                .await
                .expect("player");
            set_bitrate(&mut c, &player, setting, value).await;
            assert_eq!(
                c.invoke(&player, &format!("get{setting}"), json!({})).await,
                Ok(json!(value))
            );
            c.invoke(
                &player,
                "connect",
                json!({"sink": sink, "mediaType": "VIDEO"}),
            )
            .await
            .expect("connect");
            c.invoke(&player, "play", json!({})).await.expect("play");
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let bps = meter.measure(Duration::from_secs(4)).await;
            println!(
                "player with {setting} = {value}: {:.0} kbps of media",
                bps / 1000.0
            );
            rates.push(bps);
            release(&mut c, &[&player, &sink]).await;
        }
        // Within the maximum (RTP headers included); at the target when only that is set.
        assert!(
            rates[0] > 60_000.0 && rates[0] < 150_000.0 * 1.25,
            "{rates:?}"
        );
        assert!(
            rates[1] > 450_000.0 && rates[1] < 600_000.0 * 1.3,
            "{rates:?}"
        );
        c.request("release", json!({"object": pipe}))
            .await
            .expect("release");
    });
}

#[test]
fn a_transcoder_encodes_within_its_source_bitrate_bounds() {
    let _serial = serial();
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let mut rates = vec![];
        for (setting, value) in [("MaxEncoderBitrate", 200_000), ("EncoderBitrate", 800_000)] {
            let meter = Meter::new();
            // The sink takes H.264 only: the router puts a VP8 -> H.264 transcoder in.
            let sink = to_meter(&mut c, &pipe, &meter, "H264/90000").await;
            let (src, mut sender) = vp8_from_gst(&mut c, &pipe, 9).await;
            c.subscribe(&src, "MediaTranscodingStateChanged")
                .await
                .expect("subscribe");
            set_bitrate(&mut c, &src, setting, value).await;
            c.invoke(&src, "connect", json!({"sink": sink, "mediaType": "VIDEO"}))
                .await
                .expect("connect");
            let t = c
                .wait_event("MediaTranscodingStateChanged", &src, Duration::from_secs(5))
                .await
                .expect("a transcoder is put in");
            assert_eq!(t["state"], "TRANSCODING");
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let bps = meter.measure(Duration::from_secs(4)).await;
            println!(
                "transcoder of a source with {setting} = {value}: {:.0} kbps of media",
                bps / 1000.0
            );
            rates.push(bps);
            let _ = sender.kill();
            let _ = sender.wait();
            release(&mut c, &[&src, &sink]).await;
        }
        assert!(
            rates[0] > 60_000.0 && rates[0] < 200_000.0 * 1.25,
            "{rates:?}"
        );
        assert!(
            rates[1] > 500_000.0 && rates[1] < 800_000.0 * 1.3,
            "{rates:?}"
        );
        c.request("release", json!({"object": pipe}))
            .await
            .expect("release");
    });
}

/// Bits per second of a file's audio stream (its packets over its duration).
fn audio_bps(file: &Path) -> f64 {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0", "-show_entries"])
        .args(["packet=size,pts_time", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&o.stdout);
    let (mut bytes, mut first, mut last) = (0u64, None::<f64>, 0f64);
    for line in text.lines() {
        let mut f = line.split(',');
        let (Some(t), Some(size)) = (f.next(), f.next()) else {
            continue;
        };
        let (Ok(t), Ok(size)) = (t.parse::<f64>(), size.trim().parse::<u64>()) else {
            continue;
        };
        bytes += size;
        first.get_or_insert(t);
        last = t;
    }
    let span = last - first.unwrap_or(last);
    if span > 0.0 {
        bytes as f64 * 8.0 / span
    } else {
        0.0
    }
}

/// A recorder of `pipe` writing MKV (VP8, VP9 or H.264 video, Opus audio: every codec in
/// play here fits, so what it records is what it was sent).
async fn mkv_recorder(c: &mut Client, pipe: &str, file: &Path) -> String {
    let r = c
        .create("RecorderEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", file.display()), "mediaProfile": "MKV"}))
        .await
        .expect("recorder");
    c.subscribe(&r, "Stopped").await.expect("subscribe");
    r
}

#[test]
fn forced_formats_reach_the_recorded_files() {
    let _serial = serial();
    let dir = tmp::dir("gst-settings-formats");
    let input = av_clip(&dir, "clip.webm", 6);
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        // 1. Players as they are, and with H.264 at 10 fps and Opus at 16 kbps forced: the
        //    player encodes so itself (no transcoder).
        let mut files = vec![];
        for forced in [false, true] {
            let file = dir.join(format!("player-{forced}.mkv"));
            let rec = mkv_recorder(&mut c, &pipe, &file).await;
            let player = c
                .create(
                    "PlayerEndpoint",
                    json!({"mediaPipeline": pipe, "uri": format!("file://{}", input.display())}),
                )
                .await
                .expect("player");
            c.subscribe(&player, "MediaTranscodingStateChanged")
                .await
                .expect("subscribe");
            if forced {
                let video =
                    json!({"codec": "H264", "framerate": {"numerator": 10, "denominator": 1}});
                c.invoke(&player, "setVideoFormat", json!({"caps": video}))
                    .await
                    .expect("setVideoFormat");
                let audio = json!({"codec": "OPUS", "bitrate": 16000});
                c.invoke(&player, "setAudioFormat", json!({"caps": audio}))
                    .await
                    .expect("setAudioFormat");
            }
            c.invoke(&player, "connect", json!({"sink": rec}))
                .await
                .expect("connect");
            c.invoke(&rec, "record", json!({})).await.expect("record");
            c.invoke(&player, "play", json!({})).await.expect("play");
            tokio::time::sleep(Duration::from_secs(4)).await;
            c.invoke(&rec, "stopAndWait", json!({}))
                .await
                .expect("stopAndWait");
            let t = c
                .wait_event(
                    "MediaTranscodingStateChanged",
                    &player,
                    Duration::from_millis(200),
                )
                .await;
            assert!(
                t.is_none(),
                "the player encodes the forced format itself: {t:?}"
            );
            c.request("release", json!({"object": player}))
                .await
                .expect("release");
            files.push(file);
        }
        let (plain_v, forced_v) = (stream(&files[0], "v"), stream(&files[1], "v"));
        let (plain_a, forced_a) = (audio_bps(&files[0]), audio_bps(&files[1]));
        println!(
            "player: {plain_v:?} {plain_a:.0} bps as it is; {forced_v:?} {forced_a:.0} bps forced"
        );
        assert_eq!(plain_v.0, "vp8");
        assert!(plain_v.1 > 20.0, "{plain_v:?}");
        assert_eq!(forced_v.0, "h264");
        assert!(forced_v.1 > 7.0 && forced_v.1 < 12.5, "{forced_v:?}");
        assert!(plain_a > 40_000.0, "{plain_a}");
        assert!(forced_a > 8_000.0 && forced_a < 24_000.0, "{forced_a}");

        // 2. An RtpEndpoint's VP8 with H.264 at 15 fps forced: the router transcodes it.
        let file = dir.join("rtp-forced.mkv");
        let rec = mkv_recorder(&mut c, &pipe, &file).await;
        let (src, mut sender) = vp8_from_gst(&mut c, &pipe, 7).await;
        c.subscribe(&src, "MediaTranscodingStateChanged")
            .await
            .expect("subscribe");
        let video = json!({"codec": "H264", "framerate": {"numerator": 15, "denominator": 1}});
        c.invoke(&src, "setVideoFormat", json!({"caps": video}))
            .await
            .expect("setVideoFormat");
        c.invoke(&src, "connect", json!({"sink": rec, "mediaType": "VIDEO"}))
            .await
            .expect("connect");
        c.invoke(&rec, "record", json!({})).await.expect("record");
        let t = c
            .wait_event("MediaTranscodingStateChanged", &src, Duration::from_secs(5))
            .await
            .expect("a transcoder makes the forced format");
        assert_eq!(t["state"], "TRANSCODING");
        tokio::time::sleep(Duration::from_secs(4)).await;
        c.invoke(&rec, "stopAndWait", json!({}))
            .await
            .expect("stopAndWait");
        let _ = sender.kill();
        let _ = sender.wait();
        let v = stream(&file, "v");
        println!("RtpEndpoint with H.264 at 15 fps forced: {v:?}");
        assert_eq!(v.0, "h264");
        assert!(v.1 > 10.0 && v.1 < 17.5, "{v:?}");

        // 3. A GStreamerFilter with VP9 at 12 fps forced encodes its output so itself.
        let file = dir.join("filter-forced.mkv");
        let rec = mkv_recorder(&mut c, &pipe, &file).await;
        let player = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", input.display())}))
            .await
            .expect("player");
        let filter = c
            .create("GStreamerFilter", json!({"mediaPipeline": pipe, "command": "videobalance saturation=0.0", "filterType": "VIDEO"}))
            .await
            .expect("filter");
        c.subscribe(&filter, "MediaTranscodingStateChanged").await.expect("subscribe");
        let video = json!({"codec": "VP9", "framerate": {"numerator": 12, "denominator": 1}});
        c.invoke(&filter, "setVideoFormat", json!({"caps": video})).await.expect("setVideoFormat");
        c.invoke(&player, "connect", json!({"sink": filter, "mediaType": "VIDEO"})).await.expect("connect");
        c.invoke(&filter, "connect", json!({"sink": rec, "mediaType": "VIDEO"})).await.expect("connect");
        c.invoke(&rec, "record", json!({})).await.expect("record");
        c.invoke(&player, "play", json!({})).await.expect("play");
        tokio::time::sleep(Duration::from_secs(4)).await;
        c.invoke(&rec, "stopAndWait", json!({})).await.expect("stopAndWait");
        let t = c.wait_event("MediaTranscodingStateChanged", &filter, Duration::from_millis(200)).await;
        assert!(t.is_none(), "the filter encodes the forced format itself: {t:?}");
        let v = stream(&file, "v");
        println!("GStreamerFilter with VP9 at 12 fps forced: {v:?}");
        assert_eq!(v.0, "vp9");
        assert!(v.1 > 8.0 && v.1 < 14.5, "{v:?}");
        c.request("release", json!({"object": pipe}))
            .await
            .expect("release");
    });
}

/// Braces `{` `}` outside quoted strings are balanced.
fn braces_balance(dot: &str) -> bool {
    let (mut depth, mut quoted, mut escaped) = (0i64, false, false);
    for ch in dot.chars() {
        match ch {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0 && !quoted
}

/// graphviz parses and lays out `dot` (a test dependency, `dot` from graphviz).
fn graphviz_takes(dot: &str) -> bool {
    use std::io::Write;
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("graphviz's dot runs (a test dependency)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(dot.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("dot ends");
    if !out.status.success() {
        println!("dot: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

fn dot_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn dot_graphs_show_the_gstreamer_pipelines_and_dumps_go_only_to_the_dump_dir() {
    let _serial = serial();
    let dir = tmp::dir("gst-settings-dot");
    let input = av_clip(&dir, "clip.webm", 8);
    let dumps = dir.join("dumps");
    std::fs::create_dir_all(&dumps).expect("dump dir");
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let player = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", input.display())}))
            .await
            .expect("player");
        // MP4 takes H.264: a VP8 -> H.264 transcoder of the player's output.
        let file = dir.join("out.mp4");
        let rec = c
            .create("RecorderEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", file.display()), "mediaProfile": "MP4_VIDEO_ONLY"}))
            .await
            .expect("recorder");
        c.subscribe(&player, "MediaTranscodingStateChanged").await.expect("subscribe");
        c.invoke(&player, "connect", json!({"sink": rec})).await.expect("connect");
        c.invoke(&rec, "record", json!({})).await.expect("record");
        c.invoke(&player, "play", json!({})).await.expect("play");
        c.wait_event("MediaTranscodingStateChanged", &player, Duration::from_secs(5))
            .await
            .expect("a transcoder runs");
        tokio::time::sleep(Duration::from_secs(2)).await;

        let whole = c.invoke(&pipe, "getGstreamerDot", json!({})).await.expect("dot");
        let whole = whole.as_str().expect("a string");
        // GStreamer labels elements with their type names (GstVP8Enc, GstURIDecodeBin...).
        let has = |dot: &str, e: &str| dot.to_lowercase().contains(e);
        for e in ["uridecodebin", "vp8enc", "x264enc", "mp4mux", "appsrc", "appsink"] {
            assert!(has(whole, e), "the pipeline's graph shows {e}");
        }
        assert!(whole.starts_with("digraph"), "{}", &whole[..80.min(whole.len())]);
        assert!(braces_balance(whole));
        assert!(graphviz_takes(whole), "graphviz parses the pipeline's graph");
        // One element: its own pipelines (the player's and its output's transcoder).
        let own = c.invoke(&player, "getGstreamerDot", json!({})).await.expect("dot");
        let own = own.as_str().expect("a string");
        assert!(has(own, "uridecodebin") && has(own, "x264enc"), "player's graph");
        assert!(!has(own, "mp4mux"), "the recorder's pipeline is not the player's");
        assert!(graphviz_takes(own));
        let rec_dot = c.invoke(&rec, "getGstreamerDot", json!({})).await.expect("dot");
        let rec_dot = rec_dot.as_str().expect("a string");
        assert!(has(rec_dot, "mp4mux") && !has(rec_dot, "uridecodebin"));
        // Fewer details, a smaller graph.
        let small = c
            .invoke(&pipe, "getGstreamerDot", json!({"details": "SHOW_MEDIA_TYPE"}))
            .await
            .expect("dot");
        let small = small.as_str().expect("a string");
        println!("graph: {} bytes with SHOW_ALL, {} with SHOW_MEDIA_TYPE", whole.len(), small.len());
        assert!(small.len() < whole.len() && has(small, "x264enc"));
        assert!(graphviz_takes(small));
        let e = c.invoke(&pipe, "getGstreamerDot", json!({"details": "SHOW_NOTHING"})).await;
        assert_eq!(e.expect_err("a bad details value")["code"], 40001);
        let prop = c.invoke(&player, "getElementGstreamerDot", json!({})).await.expect("prop");
        assert!(has(prop.as_str().unwrap_or_default(), "uridecodebin"));
        // An SDES RtpEndpoint has no GStreamer pipeline (its SRTP is Fluo's own): its graph
        // is an empty one that graphviz takes, and its key is nowhere in it.
        let key = "0123456789abcdefghijklmnopqrst";
        let sdes = json!({"mediaPipeline": pipe, "crypto": {"crypto": "AES_128_CM_HMAC_SHA1_80", "key": key}});
        let a = c.create("RtpEndpoint", sdes.clone()).await.expect("a");
        let b = c.create("RtpEndpoint", sdes).await.expect("b");
        let offer = c.invoke(&a, "generateOffer", json!({})).await.expect("offer");
        c.invoke(&b, "processOffer", json!({"offer": offer})).await.expect("answer");
        let srtp = c.invoke(&b, "getGstreamerDot", json!({})).await.expect("dot");
        let srtp = srtp.as_str().expect("a string");
        assert!(srtp.starts_with("digraph") && !has(srtp, "srtpdec") && !has(srtp, "srtpenc"), "{srtp}");
        assert!(graphviz_takes(srtp));
        assert!(!srtp.contains(key), "the SRTP key never drawn: {srtp}");
        // Any client may read these graphs: no memory addresses, no SRTP key, no URI
        // credentials (GStreamer draws all three).
        for g in [whole, own, rec_dot, small, srtp] {
            assert!(!fluo_api::text::leaks(g), "an address in {g}");
        }
        let rtsp = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": "rtsp://admin:s3cret@127.0.0.1:9/cam"}))
            .await
            .expect("rtsp player");
        c.invoke(&rtsp, "play", json!({})).await.expect("play");
        let rtsp_dot = c.invoke(&rtsp, "getGstreamerDot", json!({})).await.expect("dot");
        let rtsp_dot = rtsp_dot.as_str().expect("a string");
        assert!(!rtsp_dot.contains("s3cret") && !rtsp_dot.contains("admin"), "{rtsp_dot}");
        assert!(rtsp_dot.contains("rtsp://***@127.0.0.1:9/cam"), "the URI drawn without its user: {rtsp_dot}");

        // dumpGstreamerDot: nothing written without GST_DEBUG_DUMP_DOT_DIR (as KMS), one file
        // in that directory with it.
        std::env::remove_var("GST_DEBUG_DUMP_DOT_DIR");
        c.invoke(&pipe, "dumpGstreamerDot", json!({})).await.expect("dump without a dir");
        assert!(dot_files(&dumps).is_empty());
        std::env::set_var("GST_DEBUG_DUMP_DOT_DIR", &dumps);
        c.invoke(&pipe, "dumpGstreamerDot", json!({})).await.expect("dump");
        c.invoke(&player, "dumpGstreamerDot", json!({"details": "SHOW_STATES"})).await.expect("dump");
        // A directory that is not there: an error naming the file, nothing written.
        std::env::set_var("GST_DEBUG_DUMP_DOT_DIR", dumps.join("missing"));
        let e = c.invoke(&pipe, "dumpGstreamerDot", json!({})).await.expect_err("no such dir");
        assert_eq!(e["code"], 40003, "{e}");
        assert!(e["message"].as_str().unwrap_or_default().contains("missing"), "{e}");
        std::env::remove_var("GST_DEBUG_DUMP_DOT_DIR");
        let files = dot_files(&dumps);
        println!("dumped: {files:?}");
        assert_eq!(files.len(), 2, "{files:?}");
        for f in &files {
            assert_eq!(f.parent(), Some(dumps.as_path()));
            assert!(f.extension().is_some_and(|x| x == "dot"), "{f:?}");
            let text = std::fs::read_to_string(f).expect("read dump");
            assert!(has(&text, "uridecodebin"), "{f:?}");
            assert!(graphviz_takes(&text));
        }
        // A client dumping in a loop stops at the bound (files Fluo wrote that are still
        // there), with NOT_ENOUGH_RESOURCES; a file the operator removes makes room again.
        std::env::set_var("GST_DEBUG_DUMP_DOT_DIR", &dumps);
        let empty = c.create("MediaPipeline", json!({})).await.expect("pipeline");
        for n in files.len()..fluo_gst::DUMP_BOUND.files {
            c.invoke(&empty, "dumpGstreamerDot", json!({}))
                .await
                .unwrap_or_else(|e| panic!("dump {n} under the bound: {e}"));
        }
        let e = c.invoke(&empty, "dumpGstreamerDot", json!({})).await.expect_err("the bound");
        assert_eq!(e["code"], 40009, "{e}");
        let msg = e["message"].as_str().unwrap_or_default();
        assert!(msg.contains("GST_DEBUG_DUMP_DOT_DIR") && msg.contains("remove some"), "{msg}");
        assert_eq!(dot_files(&dumps).len(), fluo_gst::DUMP_BOUND.files);
        std::fs::remove_file(&files[0]).expect("the operator removes one");
        c.invoke(&empty, "dumpGstreamerDot", json!({})).await.expect("room for one more");
        assert_eq!(dot_files(&dumps).len(), fluo_gst::DUMP_BOUND.files);
        std::env::remove_var("GST_DEBUG_DUMP_DOT_DIR");
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}
