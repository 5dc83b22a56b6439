//! GStreamerFilter against a real server: a WebRTC publisher's VP8 goes through a client's
//! command to a WebRTC viewer and comes out changed as the command says (and changed again by
//! setElementProperty while it flows); commands that could read or write files or reach the
//! network are refused (before any element exists: one that aborts the process in its
//! constructor leaves the server up), and the operator's allow-list adds elements.

use fluo_testkit::clips::testsrc_vp8;
use fluo_testkit::live::{rt, start_server, start_server_with, Client};
use fluo_testkit::tmp;
use fluo_testkit::udp_peer::{Pacer, Peer};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::RtcConfig;

/// Writes VP8 frames as an IVF file.
fn write_ivf(path: &Path, frames: &[Vec<u8>]) {
    let mut b = b"DKIF\0\0\x20\0VP80".to_vec();
    b.extend_from_slice(&640u16.to_le_bytes());
    b.extend_from_slice(&360u16.to_le_bytes());
    b.extend_from_slice(&30u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    for (i, f) in frames.iter().enumerate() {
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&(i as u64).to_le_bytes());
        b.extend_from_slice(f);
    }
    std::fs::write(path, b).expect("write ivf");
}

/// Decodes a VP8 IVF file with ffmpeg; per decoded frame, the mean distance of its chroma
/// samples from grey (128): 0 for a black-and-white picture.
fn chroma_per_frame(ivf: &Path) -> Vec<f64> {
    let out = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-i"])
        .arg(ivf)
        .args([
            "-vf",
            "scale=64:36",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-",
        ])
        .output()
        .expect("ffmpeg runs (a test dependency)");
    let (y, c) = (64 * 36, 32 * 18);
    out.stdout
        .chunks_exact(y + 2 * c)
        .map(|f| {
            let chroma = &f[y..];
            chroma
                .iter()
                .map(|&v| (f64::from(v) - 128.0).abs())
                .sum::<f64>()
                / chroma.len() as f64
        })
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// A video frame the viewer got, and when.
type Received = (Instant, Vec<u8>);

fn code(e: &Value) -> i64 {
    e["code"].as_i64().unwrap_or(0)
}

/// Waits until `n` frames came after `since`, counted from the first keyframe among them (a
/// decode starts there), or `max` passed: the filter decodes and encodes, which on a loaded
/// machine runs slower than the clock.
async fn wait_frames(got: &Mutex<Vec<Received>>, n: usize, since: Instant, max: Duration) {
    let t = Instant::now();
    while t.elapsed() < max {
        let count = got
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at > since)
            .skip_while(|(_, f)| f.first().is_none_or(|b| b & 1 != 0))
            .count();
        if count >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_filter_changes_the_video_between_two_peers_and_takes_new_properties_while_it_flows() {
    let dir = tmp::dir("gst-filter-media");
    let ivf = dir.join("in.ivf");
    let frames = testsrc_vp8(&ivf, "640x360", 2, "800k", 30);
    let source_chroma = mean(&chroma_per_frame(&ivf));
    assert!(
        source_chroma > 20.0,
        "the test pattern is colourful: {source_chroma:.1}"
    );

    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let p = json!({"mediaPipeline": pipe});
        let e_pub = c.create("WebRtcEndpoint", p.clone()).await.expect("ep");
        let e_view = c.create("WebRtcEndpoint", p.clone()).await.expect("ep");
        let cmd = "videobalance saturation=0.0";
        let filter = c
            .create(
                "GStreamerFilter",
                json!({"mediaPipeline": pipe, "command": cmd, "filterType": "VIDEO"}),
            )
            .await
            .expect("GStreamerFilter");
        assert_eq!(c.invoke(&filter, "getCommand", json!({})).await, Ok(json!(cmd)));
        let (mut publisher, mut viewer) =
            Peer::publisher_and_viewer(&mut c, &e_pub, &e_view, RtcConfig::new(), RtcConfig::new())
                .await
                .expect("negotiated");
        c.invoke(&e_pub, "connect", json!({"sink": filter}))
            .await
            .expect("connect");
        c.invoke(&filter, "connect", json!({"sink": e_view}))
            .await
            .expect("connect");
        let stop = Arc::new(AtomicBool::new(false));
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let driver = {
            let (stop, got) = (stop.clone(), got.clone());
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut pace = Pacer::default();
                while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(90) {
                    let now = Instant::now();
                    publisher.drive(pace.frame(publisher.connected, &frames));
                    viewer.drive(None);
                    let mut g = got.lock().unwrap();
                    g.extend(viewer.frames.drain(..).map(|(_, f)| (now, f)));
                    drop(g);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let began = Instant::now();
        wait_frames(&got, 25, began, Duration::from_secs(30)).await;
        let first: Vec<Vec<u8>> = got.lock().unwrap().drain(..).map(|(_, f)| f).collect();
        // While media flows: wrong values are refused, then the colour comes back.
        let bad = c
            .invoke(&filter, "setElementProperty", json!({"propertyName": "saturation", "propertyValue": "lots"}))
            .await
            .expect_err("a value that is not a number");
        assert_eq!(code(&bad), 40107, "{bad}");
        let bad = c
            .invoke(&filter, "setElementProperty", json!({"propertyName": "nosuch", "propertyValue": "1"}))
            .await
            .expect_err("a property no element has");
        assert_eq!(code(&bad), 40107, "{bad}");
        c.invoke(&filter, "setElementProperty", json!({"propertyName": "saturation", "propertyValue": "1.0"}))
            .await
            .expect("saturation 1.0");
        let settled = Instant::now() + Duration::from_millis(500);
        tokio::time::sleep(Duration::from_millis(500)).await;
        wait_frames(&got, 45, settled, Duration::from_secs(45)).await;
        // While media flows: the source is marked as flowing into the filter, the filter out.
        let q = json!({"mediaType": "VIDEO"});
        assert_eq!(c.invoke(&filter, "isMediaFlowingIn", q.clone()).await, Ok(json!(true)));
        assert_eq!(c.invoke(&filter, "isMediaFlowingOut", q.clone()).await, Ok(json!(true)));
        let audio = json!({"mediaType": "AUDIO"});
        assert_eq!(c.invoke(&filter, "isMediaFlowingIn", audio).await, Ok(json!(false)));
        stop.store(true, Ordering::Relaxed);
        driver.join().expect("driver");
        let later: Vec<Vec<u8>> = got
            .lock()
            .unwrap()
            .drain(..)
            .filter(|(at, _)| *at > settled)
            .map(|(_, f)| f)
            .collect();

        // The keyframe that starts each decode: from the first one the viewer got.
        let from_key = |v: &[Vec<u8>]| {
            let k = v.iter().position(|f| f.first().is_some_and(|b| b & 1 == 0));
            v[k.unwrap_or(v.len())..].to_vec()
        };
        let a = dir.join("grey.ivf");
        write_ivf(&a, &first);
        let grey = chroma_per_frame(&a);
        println!(
            "filtered (saturation 0): {} frames received, {} decode, chroma {:.2} (source {source_chroma:.1})",
            first.len(),
            grey.len(),
            mean(&grey)
        );
        assert!(first.len() >= 20, "{} frames within 30 s", first.len());
        assert!(grey.len() + 5 >= first.len(), "they decode: {}", grey.len());
        assert!(mean(&grey) < 2.0, "saturation 0 gives grey: {:.2}", mean(&grey));
        let b = dir.join("colour.ivf");
        let later = from_key(&later);
        write_ivf(&b, &later);
        let colour = chroma_per_frame(&b);
        println!(
            "after setElementProperty saturation 1.0: {} frames, {} decode, chroma {:.2}",
            later.len(),
            colour.len(),
            mean(&colour)
        );
        assert!(colour.len() >= 30, "{} frames decode", colour.len());
        assert!(
            mean(&colour) > source_chroma * 0.7,
            "the colour came back: {:.2}",
            mean(&colour)
        );
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}

#[test]
fn commands_that_reach_files_or_the_network_are_refused_and_an_allow_list_adds_elements() {
    let port = start_server(Duration::from_secs(30));
    let narrow = start_server_with(fluo_server::Config {
        gst_filter_allow: Some(vec!["queue2".into()]),
        ..Default::default()
    });
    let any = start_server_with(fluo_server::Config {
        gst_filter_allow: Some(vec!["*".into()]),
        ..Default::default()
    });
    rt().block_on(async {
        let try_create = |port: u16, command: &'static str| async move {
            let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
            c.create(
                "GStreamerFilter",
                json!({"mediaPipeline": pipe, "command": command}),
            )
            .await
        };
        let refused = [
            "filesink location=/tmp/fluo-should-not-exist",
            "filesrc location=/etc/passwd ! decodebin",
            "tee name=t t. ! queue ! multifilesink location=/tmp/x%d t. ! queue",
            "videoflip ! udpsink host=127.0.0.1 port=9",
            "( souphttpsrc location=http://127.0.0.1:9/ ! fakesink ) videoflip",
            "uridecodebin uri=file:///etc/passwd",
            "tee name=t ! queue ! splitmuxsink location=/tmp/fluo-should-not-exist%02d.mp4 t. ! queue",
            "videoflip ! decodebin",
            "videoconvert ! matroskamux ! matroskademux",
            "videoflip ! (",
            "nosuchelement",
            "",
            "videotestsrc",
        ];
        for cmd in refused {
            let e = try_create(port, cmd).await.expect_err(cmd);
            assert!(e.contains("40107"), "{cmd:?}: {e}");
            println!("refused {cmd:?}: {e}");
        }
        assert!(!Path::new("/tmp/fluo-should-not-exist").exists());
        for cmd in [
            "videoflip method=horizontal-flip",
            "videoconvert ! videobalance saturation=0.0 ! videoflip method=vertical-flip",
            "capsfilter caps=video/x-raw,format=I420",
            "volume volume=0.5",
        ] {
            try_create(port, cmd)
                .await
                .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        }
        // The operator's list adds to the built-in one: edgetv is built in, queue2 is not.
        try_create(
            narrow,
            "videoflip method=clockwise ! video/x-raw ! videobalance ! edgetv",
        )
        .await
        .expect("built in");
        try_create(narrow, "queue2 max-size-buffers=10")
            .await
            .expect("listed");
        let e = try_create(port, "queue2").await.expect_err("not listed");
        assert!(
            e.contains("40107") && e.contains("queue2") && e.contains("--gst-filter-allow"),
            "{e}"
        );
        // "*" is KMS's behaviour: anything goes (created, not run), sinks included.
        let with_sink = "videoflip ! tee name=t ! queue ! fakesink t. ! queue";
        let e = try_create(port, with_sink)
            .await
            .expect_err("a sink, by default");
        assert!(e.contains("fakesink"), "{e}");
        try_create(any, with_sink).await.expect("anything with *");
        // getCommand and setElementProperty checks on an element with an enum property.
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let f = c
            .create(
                "GStreamerFilter",
                json!({"mediaPipeline": pipe, "command": "videoflip"}),
            )
            .await
            .expect("filter");
        c.invoke(
            &f,
            "setElementProperty",
            json!({"propertyName": "method", "propertyValue": "vertical-flip"}),
        )
        .await
        .expect("an enum nick");
        let e = c
            .invoke(
                &f,
                "setElementProperty",
                json!({"propertyName": "method", "propertyValue": "sideways"}),
            )
            .await
            .expect_err("not a nick");
        assert_eq!(code(&e), 40107, "{e}");
        // File, URI and device properties are out of reach of setElementProperty.
        let e = c
            .invoke(
                &f,
                "setElementProperty",
                json!({"propertyName": "location", "propertyValue": "/etc/passwd"}),
            )
            .await
            .expect_err("a file property");
        assert_eq!(code(&e), 40107, "{e}");
    });
}

/// The three commands of issue 14 and their setElementProperty forms: each refused with
/// 40107 naming the element and the property, nothing written, and the server still answers
/// (facedetect with a file that is not a cascade aborts the process as soon as GStreamer's
/// parser creates it).
#[test]
fn commands_and_properties_that_name_files_are_refused_and_the_server_stays_up() {
    let dir = tmp::dir("gst-filter-hostile");
    let port = start_server(Duration::from_secs(30));
    // An operator who listed queue2 and motioncells (but none of their file properties).
    let extended = start_server_with(fluo_server::Config {
        gst_filter_allow: Some(vec!["queue2".into(), "motioncells".into()]),
        ..Default::default()
    });
    let d = dir.display();
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        for (command, element, property) in [
            (
                format!("queue2 temp-template={d}/XXXXXX temp-remove=false"),
                "queue2",
                "temp-template",
            ),
            (
                format!("videoconvert ! motioncells datafile={d}/x datafileextension=y ! videoconvert"),
                "motioncells",
                "datafile",
            ),
            ("facedetect profile=/etc/hostname".to_string(), "facedetect", "profile"),
        ] {
            let e = c
                .create(
                    "GStreamerFilter",
                    json!({"mediaPipeline": pipe, "command": command}),
                )
                .await
                .expect_err(&command);
            assert!(
                e.contains("40107") && e.contains(element) && e.contains(property),
                "{command:?}: {e}"
            );
            println!("refused {command:?}: {e}");
        }
        // The server is up: the same connection still creates objects.
        let face = c
            .create(
                "GStreamerFilter",
                json!({"mediaPipeline": pipe, "command": "videoconvert ! facedetect ! videoconvert"}),
            )
            .await
            .expect("facedetect with its own cascades");
        for name in ["profile", "eyes-profile"] {
            let e = c
                .invoke(
                    &face,
                    "setElementProperty",
                    json!({"propertyName": name, "propertyValue": "/etc/hostname"}),
                )
                .await
                .expect_err(name);
            assert_eq!(code(&e), 40107, "{e}");
            let msg = e["message"].as_str().unwrap_or_default();
            assert!(msg.contains("facedetect") && msg.contains(name), "{e}");
        }
        c.invoke(
            &face,
            "setElementProperty",
            json!({"propertyName": "display", "propertyValue": "false"}),
        )
        .await
        .expect("a boolean property");

        let mut x = Client::connect(extended).await.expect("connect");
        let pipe2 = x.create("MediaPipeline", json!({})).await.expect("pipeline");
        for (command, element, property, value) in [
            ("queue2", "queue2", "temp-template", format!("{d}/XXXXXX")),
            (
                "videoconvert ! motioncells ! videoconvert",
                "motioncells",
                "datafile",
                format!("{d}/x"),
            ),
        ] {
            let f = x
                .create(
                    "GStreamerFilter",
                    json!({"mediaPipeline": pipe2, "command": command}),
                )
                .await
                .expect(command);
            let e = x
                .invoke(
                    &f,
                    "setElementProperty",
                    json!({"propertyName": property, "propertyValue": value}),
                )
                .await
                .expect_err(property);
            assert_eq!(code(&e), 40107, "{e}");
            let msg = e["message"].as_str().unwrap_or_default();
            assert!(msg.contains(property) && msg.contains(element), "{e}");
        }
        c.create("MediaPipeline", json!({})).await.expect("still up");
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
    let left: Vec<_> = std::fs::read_dir(&dir).expect("dir").flatten().collect();
    assert!(left.is_empty(), "files written: {left:?}");
}

/// Values issue 14's review found crashing, hanging or dumping (an OpenCV assertion aborts
/// the whole server when media flows through cvsobel x-order=0 y-order=0), picture sizes
/// that allocate gigabytes, and Fluo's own element names: refused at create and by
/// setElementProperty with 40107 naming the element and property, and the server keeps
/// serving.
#[test]
fn values_that_crash_or_exhaust_the_server_are_refused_and_it_keeps_serving() {
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        for (command, element, property) in [
            ("videoconvert ! cvsobel x-order=0 y-order=0 ! videoconvert", "cvsobel", "--gst-filter-allow"),
            ("videoconvert ! edgedetect aperture=4 ! videoconvert", "edgedetect", "aperture"),
            ("videoconvert ! cvdilate iterations=100000 ! videoconvert", "cvdilate", "iterations"),
            ("videoconvert ! retinex sigma=1e308 ! videoconvert", "retinex", "sigma"),
            ("identity dump=true", "identity", "dump"),
            ("identity sleep-time=4294967295", "identity", "sleep-time"),
            ("videoscale ! video/x-raw,width=16383,height=16383", "width", "16383"),
            ("videoflip name=pre", "pre", "reserved"),
        ] {
            let e = c
                .create(
                    "GStreamerFilter",
                    json!({"mediaPipeline": pipe, "command": command}),
                )
                .await
                .expect_err(command);
            assert!(
                e.contains("40107") && e.contains(element) && e.contains(property),
                "{command:?}: {e}"
            );
            println!("refused {command:?}: {e}");
        }
        let f = c
            .create(
                "GStreamerFilter",
                json!({"mediaPipeline": pipe, "command": "videoconvert ! edgedetect ! videoconvert"}),
            )
            .await
            .expect("edgedetect");
        for (name, value) in [("aperture", "4"), ("aperture", "9")] {
            let e = c
                .invoke(
                    &f,
                    "setElementProperty",
                    json!({"propertyName": name, "propertyValue": value}),
                )
                .await
                .expect_err(value);
            assert_eq!(code(&e), 40107, "{e}");
            let msg = e["message"].as_str().unwrap_or_default();
            assert!(msg.contains("edgedetect") && msg.contains(name), "{e}");
        }
        c.invoke(
            &f,
            "setElementProperty",
            json!({"propertyName": "aperture", "propertyValue": "5"}),
        )
        .await
        .expect("an allowed aperture");
        // Still serving: a new pipeline and filter on the same connection and another one.
        c.create("GStreamerFilter", json!({"mediaPipeline": pipe, "command": "videoflip"}))
            .await
            .expect("still up");
        let mut d = Client::connect(port).await.expect("connect again");
        d.create("MediaPipeline", json!({})).await.expect("another client");
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}

fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        >> 10
}

/// A command that grows the picture beyond the media bounds while media flows (videobox
/// adds 10 000 lines: 10 MB frames, which the filter's 30-frame queue would hold) gets an
/// Error event naming the bound, and the server's memory stays bounded.
#[test]
fn a_filter_that_grows_the_picture_beyond_the_bounds_raises_an_error_instead_of_allocating() {
    let dir = tmp::dir("gst-filter-grow");
    let frames = testsrc_vp8(&dir.join("in.ivf"), "640x360", 2, "800k", 30);
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let p = json!({"mediaPipeline": pipe});
        let e_pub = c.create("WebRtcEndpoint", p.clone()).await.expect("ep");
        let e_view = c.create("WebRtcEndpoint", p.clone()).await.expect("ep");
        let filter = c
            .create(
                "GStreamerFilter",
                json!({"mediaPipeline": pipe, "command": "videobox top=-10000 ! videoconvert", "filterType": "VIDEO"}),
            )
            .await
            .expect("videobox is allowed; its output size is known only at run time");
        c.subscribe(&filter, "Error").await.expect("subscribe");
        let (mut publisher, mut viewer) =
            Peer::publisher_and_viewer(&mut c, &e_pub, &e_view, RtcConfig::new(), RtcConfig::new())
                .await
                .expect("negotiated");
        c.invoke(&e_pub, "connect", json!({"sink": filter}))
            .await
            .expect("connect");
        c.invoke(&filter, "connect", json!({"sink": e_view}))
            .await
            .expect("connect");
        let before = rss_mib();
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(Mutex::new(before));
        let driver = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut pace = Pacer::default();
                while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(30) {
                    publisher.drive(pace.frame(publisher.connected, &frames));
                    viewer.drive(None);
                    let mut p = peak.lock().unwrap();
                    *p = (*p).max(rss_mib());
                    drop(p);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let error = c
            .wait_event("Error", &filter, Duration::from_secs(10))
            .await;
        // Media keeps coming for a while: nothing may pile up.
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::Relaxed);
        driver.join().expect("driver");
        let peak = *peak.lock().unwrap();
        println!("Error event: {error:?}; RSS {before} MiB before media, peak {peak} MiB");
        let error = error.expect("an Error event within 10 s of media");
        let text = error.to_string();
        assert!(text.contains("height 10360") && text.contains("bound"), "{text}");
        assert!(
            peak < before + 150,
            "RSS grew from {before} to {peak} MiB"
        );
        c.create("MediaPipeline", json!({})).await.expect("still serving");
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}

/// A long command (an overlay text of 200 000 characters) is logged at create in a line of
/// at most a few hundred characters, not in full.
#[test]
fn a_long_command_is_logged_shortened() {
    let log = fluo_server::log_capture::capture_operator_log();
    let port = start_server(Duration::from_secs(30));
    let text = "x".repeat(200_000);
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        c.create(
            "GStreamerFilter",
            json!({"mediaPipeline": pipe, "command": format!("textoverlay text={text}")}),
        )
        .await
        .expect("a long text is allowed");
    });
    let log = log.text();
    let line = log
        .lines()
        .find(|l| l.contains("GStreamerFilter created"))
        .expect("the create is logged");
    println!(
        "{} characters: {}",
        line.len(),
        &line[..line.len().min(300)]
    );
    // The message itself (the line also carries the request's span with its ids).
    let message = &line[line.find("GStreamerFilter created").unwrap_or(0)..];
    assert!(
        message.len() < 450,
        "a log message of {} characters",
        message.len()
    );
    assert!(line.contains("textoverlay text=xxx"), "{line}");
}
