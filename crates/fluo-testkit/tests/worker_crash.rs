//! Crash containment seen by a Kurento client: `kill -9` of the media worker that hosts a
//! pipeline's PlayerEndpoint and RecorderEndpoint while they record. The client gets both
//! elements' Error events (40003, the death's cause), requests to them fail at once with the
//! same text, the file plays up to within a second of the kill, a WebRTC loopback in another
//! pipeline keeps receiving video across the kill, and a new PlayerEndpoint plays at once on
//! the restarted worker.
//!
//! The worker's pid is found as an operator finds it: in the server's log ("element runs in
//! media worker", with the element's id and the worker's pid).

use fluo_testkit::clips;
use fluo_testkit::live::{rt, serial, start_server, Client};
use fluo_testkit::tmp;
use fluo_testkit::udp_peer::Peer;
use fluo_testkit::workers::{assert_killed_event, kill_9, operator_log, worker_pid};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::media::Direction;

/// ffprobe's codecs and decodable video frames of `file`.
fn probe(file: &Path) -> (Vec<String>, usize) {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries"])
        .args(["stream=codec_name,nb_read_frames", "-of", "json"])
        .arg(file)
        .output()
        .expect("ffprobe runs (a test dependency)");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let mut codecs: Vec<String> = streams
        .iter()
        .filter_map(|s| s["codec_name"].as_str().map(String::from))
        .collect();
    codecs.sort();
    let frames = streams
        .iter()
        .filter(|s| s["codec_name"] == "vp8")
        .filter_map(|s| s["nb_read_frames"].as_str()?.parse().ok())
        .next()
        .unwrap_or(0);
    (codecs, frames)
}

#[test]
fn a_media_worker_killed_while_recording_raises_errors_and_touches_nothing_else() {
    let _serial = serial();
    let log = operator_log();
    let dir = tmp::dir("worker-crash");
    let clip = clips::av_clip(&dir, "clip.webm", 12);
    let frames = clips::testsrc_vp8(&dir.join("loop.ivf"), "320x240", 2, "300k", 30);
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        // Another pipeline: a WebRTC loopback, its peer sending and receiving video.
        let (mut cb, _pipe_b, ep) = Client::with_endpoint(port).await.expect("endpoint");
        let mut peer = Peer::new(str0m::RtcConfig::new());
        peer.keep_frames = false;
        peer.negotiate(&mut cb, &ep, Direction::SendRecv)
            .await
            .expect("negotiated");
        cb.invoke(&ep, "connect", json!({"sink": ep}))
            .await
            .expect("loopback");
        let stop = Arc::new(AtomicBool::new(false));
        let arrivals = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let driver = {
            let (stop, arrivals) = (stop.clone(), arrivals.clone());
            std::thread::spawn(move || {
                let mut pacer = fluo_testkit::udp_peer::Pacer::default();
                while !stop.load(Ordering::Relaxed) {
                    let before = peer.frames_in;
                    let f = pacer.frame(peer.connected, &frames);
                    peer.drive(f);
                    if peer.frames_in > before {
                        arrivals.lock().unwrap().push(Instant::now());
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };

        // This pipeline: a player recorded into WebM.
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let uri = format!("file://{}", clip.display());
        let player = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": uri}))
            .await
            .expect("player");
        let file = dir.join("killed.webm");
        let rec = c.recorder(&pipe, &file).await
            .expect("recorder");
        for (id, ev) in [
            (&player, "Error"),
            (&rec, "Error"),
            (&rec, "MediaFlowInStateChanged"),
        ] {
            c.subscribe(id, ev).await.expect("subscribe");
        }
        c.invoke(&player, "connect", json!({"sink": rec}))
            .await
            .expect("connect");
        c.invoke(&rec, "record", json!({})).await.expect("record");
        c.invoke(&player, "play", json!({})).await.expect("play");
        let flowing = c
            .wait_event("MediaFlowInStateChanged", &rec, Duration::from_secs(15))
            .await
            .expect("media reaches the recorder");
        assert_eq!(flowing["state"], "FLOWING");
        let flow_at = Instant::now();
        tokio::time::sleep(Duration::from_secs(4)).await;

        let pid = worker_pid(log, &rec).expect("the recorder's worker in the log");
        assert_eq!(
            worker_pid(log, &player),
            Some(pid),
            "a pipeline's elements share a worker"
        );
        assert_ne!(pid, std::process::id(), "the worker is not the server");
        let killed_at = Instant::now();
        let recorded = killed_at - flow_at;
        kill_9(pid);

        let ev = c
            .wait_event("Error", &rec, Duration::from_secs(5))
            .await
            .expect("the recorder's Error event");
        let text = assert_killed_event(&ev, "RECORDER_ERROR");
        let noticed = killed_at.elapsed();
        let ev = c
            .wait_event("Error", &player, Duration::from_secs(5))
            .await
            .expect("the player's Error event");
        assert_eq!(assert_killed_event(&ev, "PLAYER_ERROR"), text);
        assert!(text.contains(&format!("pid {pid}")), "{text}");
        // Requests to the dead elements fail at once with the same text.
        let t = Instant::now();
        let e = c
            .invoke(&player, "getVideoInfo", json!({}))
            .await
            .expect_err("the player's worker is gone");
        assert_eq!(e["code"], 40003, "{e}");
        assert!(e["message"].as_str().unwrap_or_default().contains(&text), "{e}");
        let e = c
            .invoke(&rec, "stopAndWait", json!({}))
            .await
            .expect_err("the recorder's worker is gone");
        assert!(e["message"].as_str().unwrap_or_default().contains(&text), "{e}");
        let answered = t.elapsed();

        // A new player, in a new pipeline, plays at once on the restarted worker.
        let (mut cn, pipe_n) = Client::with_pipeline(port).await.expect("pipeline");
        let t = Instant::now();
        let p2 = cn
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe_n, "uri": uri}))
            .await
            .expect("a new player");
        let r2 = cn
            .create(
                "RecorderEndpoint",
                json!({"mediaPipeline": pipe_n, "uri": format!("file://{}", dir.join("after.webm").display())}),
            )
            .await
            .expect("a new recorder");
        cn.subscribe(&r2, "MediaFlowInStateChanged")
            .await
            .expect("subscribe");
        cn.invoke(&p2, "connect", json!({"sink": r2}))
            .await
            .expect("connect");
        cn.invoke(&r2, "record", json!({})).await.expect("record");
        cn.invoke(&p2, "play", json!({})).await.expect("play");
        let ev = cn
            .wait_event("MediaFlowInStateChanged", &r2, Duration::from_secs(10))
            .await
            .expect("the new player's media flows");
        assert_eq!(ev["state"], "FLOWING");
        let new_media = t.elapsed();
        let new_pid = worker_pid(log, &p2).expect("the new player's worker in the log");
        assert_ne!(new_pid, pid, "a live worker hosts the new player");

        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        driver.join().expect("the loopback's driver");
        let arrivals = arrivals.lock().unwrap().clone();
        let after: Vec<Instant> = arrivals
            .iter()
            .copied()
            .filter(|a| *a >= killed_at)
            .collect();
        let before = arrivals
            .iter()
            .filter(|a| **a < killed_at && **a + Duration::from_secs(3) >= killed_at)
            .count();
        let window: Vec<Instant> = arrivals
            .iter()
            .copied()
            .filter(|a| *a + Duration::from_secs(1) >= killed_at)
            .collect();
        let gap = window
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        let since = killed_at.elapsed();

        let (codecs, decoded) = probe(&file);
        println!(
            "worker {pid} killed after {recorded:?} of recording; Error event after {noticed:?}; \
             requests to the dead elements answered in {answered:?}; a new player's media at \
             the recorder {new_media:?} after its create (worker {new_pid}); the loopback got \
             {before} frames in the 3 s before the kill, {} in the {since:?} after, longest gap \
             {gap:?} (from 1 s before); \
             the file: {codecs:?}, {decoded} decodable video frames",
            after.len()
        );
        assert_eq!(codecs, ["opus", "vp8"], "both tracks in the file");
        let playable = Duration::from_secs_f64(decoded as f64 / 30.0);
        assert!(
            playable + Duration::from_secs(1) >= recorded,
            "{playable:?} of video playable of {recorded:?} recorded"
        );
        // As many frames a second after the kill as before it (within half: the machine's
        // load varies, and the test runs in a debug build).
        let rate_before = before as f64 / 3.0;
        let rate_after = after.len() as f64 / since.as_secs_f64();
        assert!(
            rate_before > 0.0 && rate_after >= rate_before / 2.0,
            "the loopback keeps receiving: {rate_before:.1} frames/s before, {rate_after:.1} after"
        );
        assert!(
            gap < Duration::from_millis(500),
            "the loopback's video never stops: longest gap {gap:?}"
        );
    });
}

/// A released recorder whose worker has not yet finalised its file still counts against its
/// client address's object limit (as in the server's process): here its worker is stopped
/// (SIGSTOP) while the recorder is released, so the release cannot finish until it goes on.
#[test]
fn a_released_recorder_counts_against_the_limit_until_its_worker_has_released_it() {
    let _serial = serial();
    let log = operator_log();
    let dir = tmp::dir("worker-release");
    let port = fluo_testkit::live::start_server_with(fluo_server::Config {
        session_grace: Duration::from_secs(30),
        net: fluo_rtc::NetSettings {
            network_interfaces: Some(vec!["lo".into()]),
            ..Default::default()
        },
        max_objects_per_address: 2,
        ..Default::default()
    });
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let file = dir.join("released.webm");
        let rec = c.recorder(&pipe, &file).await.expect("recorder");
        c.invoke(&rec, "record", json!({})).await.expect("record");
        let pid = worker_pid(log, &rec).expect("the recorder's worker in the log");
        let signal = |sig: &str| {
            assert!(Command::new("kill")
                .args([sig, &pid.to_string()])
                .status()
                .expect("kill")
                .success())
        };
        signal("-STOP");
        let released = c.request("release", json!({"object": rec})).await;
        let refused = c
            .create("PassThrough", json!({"mediaPipeline": pipe}))
            .await;
        signal("-CONT");
        assert!(
            released.is_ok_and(|r| r.get("error").is_none()),
            "release answers at once"
        );
        let e = refused.expect_err("the stopping recorder fills the limit of 2 with the pipeline");
        assert!(e.contains("40009"), "{e}");
        // Once the worker has finalised the file and answered, there is room again.
        let t = Instant::now();
        let pass = loop {
            match c
                .create("PassThrough", json!({"mediaPipeline": pipe}))
                .await
            {
                Ok(id) => break id,
                Err(e) if t.elapsed() < Duration::from_secs(5) => {
                    assert!(e.contains("40009"), "{e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("no room 5 s after the worker went on: {e}"),
            }
        };
        println!("room again {:?} after SIGCONT ({pass})", t.elapsed());
        assert!(file.is_file(), "the recording's file is there");
    });
}

/// The pid of the media worker running the transcoder of element `source`'s media, from the
/// server's log (the last one started).
fn transcoder_pid(log: &fluo_server::log_capture::LogBuffer, source: &str) -> Option<u32> {
    log.lines()
        .iter()
        .rev()
        .filter(|l| l.contains("transcoder runs in media worker") && l.contains(source))
        .filter_map(|l| {
            let at = l.find(" pid=")? + 5;
            l[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .next()
}

/// `kill -9` of the media worker running a WebRTC publisher's VP8 -> H.264 transcoder for an
/// H.264-only viewer: the viewer gets the Error event of a transcoder that cannot be made
/// (CODEC_MISMATCH, the death's cause), a VP8 viewer of the same publisher keeps receiving,
/// and a re-connect of the H.264 viewer makes a new transcoder on the restarted worker.
#[test]
fn a_media_worker_killed_while_transcoding_errs_on_its_sinks_and_a_reconnect_transcodes_again() {
    use std::sync::atomic::AtomicU64;
    let _serial = serial();
    let log = operator_log();
    let dir = tmp::dir("worker-crash-transcoder");
    let frames = clips::testsrc_vp8(&dir.join("pub.ivf"), "320x240", 2, "300k", 30);
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let pp = json!({"mediaPipeline": pipe});
        let e_pub = c
            .create("WebRtcEndpoint", pp.clone())
            .await
            .expect("endpoint");
        let e_h264 = c
            .create("WebRtcEndpoint", pp.clone())
            .await
            .expect("endpoint");
        let e_vp8 = c.create("WebRtcEndpoint", pp).await.expect("endpoint");
        c.subscribe(&e_pub, "MediaTranscodingStateChanged")
            .await
            .expect("subscribe");
        for e in [&e_h264, &e_vp8] {
            c.subscribe(e, "Error").await.expect("subscribe");
        }
        let vp8_only = || {
            str0m::RtcConfig::new()
                .clear_codecs()
                .enable_vp8(true)
                .enable_opus(true, false)
        };
        let h264_only = str0m::RtcConfig::new()
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false);
        let (mut publisher, mut h264) =
            Peer::publisher_and_viewer(&mut c, &e_pub, &e_h264, vp8_only(), h264_only)
                .await
                .expect("negotiated");
        publisher.send_codec = str0m::format::Codec::Vp8;
        let mut vp8 = Peer::new(vp8_only());
        vp8.negotiate(&mut c, &e_vp8, Direction::RecvOnly)
            .await
            .expect("negotiated");
        for sink in [&e_h264, &e_vp8] {
            c.invoke(&e_pub, "connect", json!({"sink": sink}))
                .await
                .expect("connect");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (got_h264, got_vp8) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let vp8_arrivals = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let driver = {
            let (stop, got_h264, got_vp8) = (stop.clone(), got_h264.clone(), got_vp8.clone());
            let vp8_arrivals = vp8_arrivals.clone();
            std::thread::spawn(move || {
                h264.keep_frames = false;
                vp8.keep_frames = false;
                let mut pacer = fluo_testkit::udp_peer::Pacer::default();
                while !stop.load(Ordering::Relaxed) {
                    let f = pacer.frame(publisher.connected, &frames);
                    publisher.drive(f);
                    h264.drive(None);
                    let before = vp8.frames_in;
                    vp8.drive(None);
                    if vp8.frames_in > before {
                        vp8_arrivals.lock().unwrap().push(Instant::now());
                    }
                    got_h264.store(h264.frames_in, Ordering::Relaxed);
                    got_vp8.store(vp8.frames_in, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let on = c
            .wait_event(
                "MediaTranscodingStateChanged",
                &e_pub,
                Duration::from_secs(10),
            )
            .await
            .expect("transcoding starts");
        assert_eq!(on["state"], "TRANSCODING", "{on}");
        let until = |n: &Arc<AtomicU64>, want: u64, max: Duration| {
            let n = n.clone();
            async move {
                let t = Instant::now();
                while n.load(Ordering::Relaxed) < want && t.elapsed() < max {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                n.load(Ordering::Relaxed)
            }
        };
        let first = until(&got_h264, 30, Duration::from_secs(15)).await;
        assert!(
            first >= 30,
            "{first} H.264 frames reach the viewer; the log: {:#?}",
            log.lines()
                .iter()
                .filter(|l| l.contains("transcod") || l.contains("worker"))
                .collect::<Vec<_>>()
        );

        let pid = transcoder_pid(log, &e_pub).expect("the transcoder's worker in the log");
        assert_ne!(pid, std::process::id(), "the transcoder runs in a worker");
        let killed_at = Instant::now();
        kill_9(pid);
        let ev = c
            .wait_event("Error", &e_h264, Duration::from_secs(5))
            .await
            .expect("the H.264 viewer's Error event");
        let noticed = killed_at.elapsed();
        assert_eq!(ev["type"], "CODEC_MISMATCH", "{ev}");
        assert_eq!(ev["errorCode"], 40005, "{ev}");
        let d = ev["description"].as_str().unwrap_or_default();
        assert!(
            d.contains("the worker process was killed (SIGKILL")
                && d.contains(&format!("pid {pid}")),
            "the death's cause: {ev}"
        );
        assert!(!fluo_api::text::leaks(d), "no address in {d}");
        let off = c
            .wait_event(
                "MediaTranscodingStateChanged",
                &e_pub,
                Duration::from_secs(5),
            )
            .await
            .expect("the publisher's transcoding ends");
        assert_eq!(off["state"], "NOT_TRANSCODING", "{off}");
        // Nothing more reaches the H.264 viewer; the VP8 viewer's route carries on.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stalled = got_h264.load(Ordering::Relaxed);
        let vp8_at = got_vp8.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            got_h264.load(Ordering::Relaxed),
            stalled,
            "no transcoder by itself"
        );
        let vp8_after = got_vp8.load(Ordering::Relaxed) - vp8_at;
        assert!(
            vp8_after >= 20,
            "{vp8_after} VP8 frames in 2 s after the kill"
        );
        assert!(
            c.wait_event("Error", &e_vp8, Duration::from_millis(10))
                .await
                .is_none(),
            "no Error on the VP8 viewer"
        );

        // A re-connect makes a new transcoder, on a live worker.
        let t = Instant::now();
        c.invoke(&e_pub, "disconnect", json!({"sink": e_h264}))
            .await
            .expect("disconnect");
        c.invoke(&e_pub, "connect", json!({"sink": e_h264}))
            .await
            .expect("connect");
        let on = c
            .wait_event(
                "MediaTranscodingStateChanged",
                &e_pub,
                Duration::from_secs(10),
            )
            .await
            .expect("transcoding starts again");
        assert_eq!(on["state"], "TRANSCODING", "{on}");
        let again = until(&got_h264, stalled + 30, Duration::from_secs(15)).await - stalled;
        let resumed = t.elapsed();
        let new_pid = transcoder_pid(log, &e_pub).expect("the new transcoder's worker");
        assert_ne!(new_pid, pid, "a live worker runs the new transcoder");
        stop.store(true, Ordering::Relaxed);
        driver.join().expect("driver");
        let window: Vec<Instant> = vp8_arrivals
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|a| *a + Duration::from_secs(1) >= killed_at)
            .collect();
        let gap = window
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        println!(
            "transcoder worker {pid} killed after {first} H.264 frames; the viewer's Error event \
             after {noticed:?}; the VP8 viewer got {vp8_after} frames in the 2 s after it, \
             longest gap {gap:?} (from 1 s before); after the re-connect {again} H.264 frames \
             within {resumed:?} (worker {new_pid})"
        );
        assert!(again >= 30, "{again} H.264 frames after the re-connect");
        assert!(
            gap < Duration::from_millis(500),
            "the VP8 viewer's longest gap {gap:?}"
        );
    });
}

/// `kill -9` of the media worker running a GStreamerFilter between a WebRTC publisher and a
/// viewer: the filter raises its Error event (40003, GSTREAMER_FILTER_ERROR, the death's
/// cause) and its requests fail at once, a viewer fed by the publisher directly keeps
/// receiving, and a new filter in its place filters again on a live worker.
#[test]
fn a_media_worker_killed_while_filtering_raises_the_filters_error_and_a_new_filter_works() {
    use std::sync::atomic::AtomicU64;
    let _serial = serial();
    let log = operator_log();
    let dir = tmp::dir("worker-crash-filter");
    let frames = clips::testsrc_vp8(&dir.join("pub.ivf"), "320x240", 2, "300k", 30);
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let pp = json!({"mediaPipeline": pipe});
        let e_pub = c.create("WebRtcEndpoint", pp.clone()).await.expect("endpoint");
        let e_view = c.create("WebRtcEndpoint", pp.clone()).await.expect("endpoint");
        let e_direct = c.create("WebRtcEndpoint", pp.clone()).await.expect("endpoint");
        let filter_params = json!({"mediaPipeline": pipe, "command": "videobalance saturation=0.0", "filterType": "VIDEO"});
        let filter = c
            .create("GStreamerFilter", filter_params.clone())
            .await
            .expect("GStreamerFilter");
        c.subscribe(&filter, "Error").await.expect("subscribe");
        let (mut publisher, mut viewer) = Peer::publisher_and_viewer(
            &mut c,
            &e_pub,
            &e_view,
            str0m::RtcConfig::new(),
            str0m::RtcConfig::new(),
        )
        .await
        .expect("negotiated");
        let mut direct = Peer::new(str0m::RtcConfig::new());
        direct
            .negotiate(&mut c, &e_direct, Direction::RecvOnly)
            .await
            .expect("negotiated");
        for (src, sink) in [(&e_pub, &filter), (&filter, &e_view), (&e_pub, &e_direct)] {
            c.invoke(src, "connect", json!({"sink": sink}))
                .await
                .expect("connect");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (got_view, got_direct) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let direct_arrivals = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let driver = {
            let (stop, got_view, got_direct) =
                (stop.clone(), got_view.clone(), got_direct.clone());
            let direct_arrivals = direct_arrivals.clone();
            std::thread::spawn(move || {
                viewer.keep_frames = false;
                direct.keep_frames = false;
                let mut pacer = fluo_testkit::udp_peer::Pacer::default();
                while !stop.load(Ordering::Relaxed) {
                    publisher.drive(pacer.frame(publisher.connected, &frames));
                    viewer.drive(None);
                    let before = direct.frames_in;
                    direct.drive(None);
                    if direct.frames_in > before {
                        direct_arrivals.lock().unwrap().push(Instant::now());
                    }
                    got_view.store(viewer.frames_in, Ordering::Relaxed);
                    got_direct.store(direct.frames_in, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let until = |n: &Arc<AtomicU64>, want: u64, max: Duration| {
            let n = n.clone();
            async move {
                let t = Instant::now();
                while n.load(Ordering::Relaxed) < want && t.elapsed() < max {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                n.load(Ordering::Relaxed)
            }
        };
        let first = until(&got_view, 30, Duration::from_secs(15)).await;
        assert!(first >= 30, "{first} filtered frames reach the viewer");

        let pid = worker_pid(log, &filter).expect("the filter's worker in the log");
        assert_ne!(pid, std::process::id(), "the filter runs in a worker");
        let killed_at = Instant::now();
        kill_9(pid);
        let ev = c
            .wait_event("Error", &filter, Duration::from_secs(5))
            .await
            .expect("the filter's Error event");
        let noticed = killed_at.elapsed();
        let text = assert_killed_event(&ev, "GSTREAMER_FILTER_ERROR");
        assert!(text.contains(&format!("pid {pid}")), "{text}");
        let t = Instant::now();
        let e = c
            .invoke(
                &filter,
                "setElementProperty",
                json!({"propertyName": "saturation", "propertyValue": "1.0"}),
            )
            .await
            .expect_err("the filter's worker is gone");
        let answered = t.elapsed();
        assert_eq!(e["code"], 40003, "{e}");
        assert!(e["message"].as_str().unwrap_or_default().contains(&text), "{e}");
        // The publisher's direct viewer carries on.
        let direct_at = got_direct.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let direct_after = got_direct.load(Ordering::Relaxed) - direct_at;
        assert!(direct_after >= 20, "{direct_after} frames in 2 s after the kill");

        // A new filter in the dead one's place filters again, on a live worker.
        let t = Instant::now();
        c.request("release", json!({"object": filter}))
            .await
            .expect("release");
        let filter2 = c
            .create("GStreamerFilter", filter_params)
            .await
            .expect("a new GStreamerFilter");
        for (src, sink) in [(&e_pub, &filter2), (&filter2, &e_view)] {
            c.invoke(src, "connect", json!({"sink": sink}))
                .await
                .expect("connect");
        }
        let stalled = got_view.load(Ordering::Relaxed);
        let again = until(&got_view, stalled + 30, Duration::from_secs(15)).await - stalled;
        let resumed = t.elapsed();
        let new_pid = worker_pid(log, &filter2).expect("the new filter's worker in the log");
        assert_ne!(new_pid, pid, "a live worker runs the new filter");
        stop.store(true, Ordering::Relaxed);
        driver.join().expect("driver");
        let window: Vec<Instant> = direct_arrivals
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|a| *a + Duration::from_secs(1) >= killed_at)
            .collect();
        let gap = window.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
        println!(
            "filter worker {pid} killed after {first} filtered frames; the filter's Error event \
             after {noticed:?}; its request answered in {answered:?}; the direct viewer got \
             {direct_after} frames in the 2 s after, longest gap {gap:?} (from 1 s before); a \
             new filter's {again} frames within {resumed:?} (worker {new_pid})"
        );
        assert!(again >= 30, "{again} frames through the new filter");
        assert!(gap < Duration::from_millis(500), "the direct viewer's longest gap {gap:?}");
    });
}

/// `kill -9` of the media worker running an ImageOverlayFilter between a WebRTC publisher
/// and a viewer while it draws an image: the filter raises its Error event (40003, the
/// death's cause) and its next addImage fails at once with the same text.
#[test]
fn a_media_worker_killed_while_overlaying_raises_the_overlays_error() {
    use std::sync::atomic::AtomicU64;
    let _serial = serial();
    let log = operator_log();
    let dir = tmp::dir("worker-crash-overlay");
    let frames = clips::testsrc_vp8(&dir.join("pub.ivf"), "320x240", 2, "300k", 30);
    let png = dir.join("red.png");
    let made = Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=c=red:s=8x8",
        ])
        .args(["-frames:v", "1"])
        .arg(&png)
        .status()
        .map(|s| s.success());
    assert_eq!(
        made.ok(),
        Some(true),
        "ffmpeg writes a PNG (a test dependency)"
    );
    let uri = format!("file://{}", png.display());
    let add = json!({"id": "red", "uri": uri, "offsetXPercent": 0.1, "offsetYPercent": 0.1,
        "widthPercent": 0.5, "heightPercent": 0.5, "keepAspectRatio": false, "center": false});
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let pp = json!({"mediaPipeline": pipe});
        let e_pub = c
            .create("WebRtcEndpoint", pp.clone())
            .await
            .expect("endpoint");
        let e_view = c
            .create("WebRtcEndpoint", pp.clone())
            .await
            .expect("endpoint");
        let filter = c
            .create("ImageOverlayFilter", pp.clone())
            .await
            .expect("ImageOverlayFilter");
        c.subscribe(&filter, "Error").await.expect("subscribe");
        c.invoke(&filter, "addImage", add.clone())
            .await
            .expect("addImage");
        let (mut publisher, mut viewer) = Peer::publisher_and_viewer(
            &mut c,
            &e_pub,
            &e_view,
            str0m::RtcConfig::new(),
            str0m::RtcConfig::new(),
        )
        .await
        .expect("negotiated");
        for (src, sink) in [(&e_pub, &filter), (&filter, &e_view)] {
            c.invoke(src, "connect", json!({"sink": sink}))
                .await
                .expect("connect");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(AtomicU64::new(0));
        let driver = {
            let (stop, got) = (stop.clone(), got.clone());
            std::thread::spawn(move || {
                viewer.keep_frames = false;
                let mut pacer = fluo_testkit::udp_peer::Pacer::default();
                while !stop.load(Ordering::Relaxed) {
                    publisher.drive(pacer.frame(publisher.connected, &frames));
                    viewer.drive(None);
                    got.store(viewer.frames_in, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let t = Instant::now();
        while got.load(Ordering::Relaxed) < 30 && t.elapsed() < Duration::from_secs(15) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let first = got.load(Ordering::Relaxed);
        assert!(first >= 30, "{first} overlaid frames reach the viewer");
        let pid = worker_pid(log, &filter).expect("the overlay's worker in the log");
        assert_ne!(pid, std::process::id(), "the overlay runs in a worker");
        let killed_at = Instant::now();
        kill_9(pid);
        let ev = c
            .wait_event("Error", &filter, Duration::from_secs(5))
            .await
            .expect("the overlay's Error event");
        let noticed = killed_at.elapsed();
        let text = assert_killed_event(&ev, "GSTREAMER_FILTER_ERROR");
        assert!(text.contains(&format!("pid {pid}")), "{text}");
        let e = c
            .invoke(&filter, "addImage", add)
            .await
            .expect_err("the overlay's worker is gone");
        assert_eq!(e["code"], 40003, "{e}");
        assert!(
            e["message"].as_str().unwrap_or_default().contains(&text),
            "{e}"
        );
        stop.store(true, Ordering::Relaxed);
        driver.join().expect("driver");
        println!("overlay worker {pid} killed after {first} frames; Error event after {noticed:?}");
    });
}
