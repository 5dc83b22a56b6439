//! GStreamerFilter commands while media flows, without a server (one test at a time: they
//! count this process's threads, memory and elements): a filter left behind holds no thread
//! after its pipeline stops, a command that grows the picture beyond the media bounds fails
//! with an error instead of allocating, and setElementProperty's check creates no element.

use fluo_gst::fuzzing::{gst_filter_build, gst_filter_property};
use gstreamer as gst;
use gstreamer::prelude::*;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `SRC ! CONVERT ! bin ! fakesink` around a filter bin.
fn pipeline(bin: &gst::Bin, audio: bool, buffers: Option<i32>) -> gst::Pipeline {
    let (src, conv) = if audio {
        ("audiotestsrc", "audioconvert")
    } else {
        ("videotestsrc", "videoconvert")
    };
    let p = gst::Pipeline::new();
    let mut b = gst::ElementFactory::make(src).property("is-live", true);
    if let Some(n) = buffers {
        b = b.property("num-buffers", n);
    }
    let src = b.build().expect("source");
    let conv = gst::ElementFactory::make(conv).build().expect("convert");
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()
        .expect("fakesink");
    p.add_many([&src, &conv, bin.upcast_ref(), &sink])
        .expect("add");
    gst::Element::link_many([&src, &conv, bin.upcast_ref(), &sink]).expect("link");
    p
}

/// Plays the filter for a moment, then stops it from another thread as Fluo does when the
/// filter is released (the engine does not wait for it).
fn play_and_release(bin: gst::Bin) {
    let p = pipeline(&bin, false, None);
    p.set_state(gst::State::Playing).expect("playing");
    std::thread::sleep(Duration::from_millis(400));
    std::thread::spawn(move || {
        let _ = p.set_state(gst::State::Null);
    });
}

/// Waits up to `secs` for the thread count to come down to `baseline`; the count seen.
fn settle(baseline: usize, secs: u64) -> usize {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let n = threads();
        if n <= baseline || Instant::now() > until {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const OPENCV_WARM_UP: &str =
    "videoconvert ! cvsmooth kernel-width=31 kernel-height=31 ! videoconvert";

#[test]
fn released_filters_leave_no_thread_behind() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // GStreamer's own threads (clock, pools) exist after a first run, and OpenCV's worker
    // pool (one per process, made at its first parallel filter) after a first OpenCV filter.
    play_and_release(gst_filter_build(None, "videoflip").expect("videoflip"));
    play_and_release(gst_filter_build(None, OPENCV_WARM_UP).expect("cvsmooth"));
    std::thread::sleep(Duration::from_millis(500));
    let baseline = settle(0, 3);
    println!("baseline: {baseline} threads");
    // What issue 14's review left running (a sleep of 71 minutes per buffer, a kernel of
    // 2^31 - 1 pixels), and the most the policy allows of each.
    for command in [
        "identity sleep-time=4294967295",
        "cvsmooth type=blur kernel-width=2147483647",
        "identity sleep-time=100000",
        "videoconvert ! cvsmooth type=gaussian kernel-width=31 kernel-height=31 ! videoconvert",
    ] {
        match gst_filter_build(None, command) {
            Err(e) => {
                println!("refused {command:?}: {e}");
                assert!(
                    e.contains("out of the range") || e.contains("is not a value"),
                    "{command:?}: {e}"
                );
            }
            Ok(_) => {
                for _ in 0..4 {
                    play_and_release(gst_filter_build(None, command).expect("built"));
                }
                let n = settle(baseline, 5);
                println!("{command:?}: {n} threads 5 s after 4 create/release cycles");
                assert!(
                    n <= baseline,
                    "{command:?}: {n} threads after 4 cycles, {baseline} before"
                );
            }
        }
    }
}

#[test]
fn a_picture_grown_beyond_the_bounds_fails_with_an_error_instead_of_allocating() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // Written as caps, refused before anything runs.
    for command in [
        "videoscale ! video/x-raw,width=16383,height=16383",
        "videoscale ! video/x-raw,width=4097",
        "videoscale ! video/x-raw,width=4096,height=4096",
        "videorate ! video/x-raw,framerate=1000/1",
        "capsfilter caps=video/x-raw,height=[5000,20000]",
        "audioresample ! audio/x-raw,rate=1000000",
        "audioconvert ! audio/x-raw,channels=64",
    ] {
        let e = gst_filter_build(None, command).expect_err(command);
        assert!(e.contains("bound"), "{command:?}: {e}");
        println!("refused {command:?}: {e}");
    }
    gst_filter_build(None, "videoscale ! video/x-raw,width=3840,height=2160").expect("4K");
    gst_filter_build(None, "audioresample ! audio/x-raw,rate=48000,channels=2").expect("48 kHz");

    // Grown by a property, 20 000 lines taller than its input: stopped when the caps leave
    // the element, with an error on the bus; with the operator's "*" too.
    for allow in [None, Some(vec!["*".to_string()])] {
        grown_beyond_the_bounds(allow);
    }
}

fn grown_beyond_the_bounds(allow: Option<Vec<String>>) {
    let command = "videobox top=-20000 ! videoconvert";
    let bin = gst_filter_build(allow.clone(), command).expect("videobox");
    let before = rss_kib();
    let p = pipeline(&bin, false, Some(30));
    let bus = p.bus().expect("bus");
    p.set_state(gst::State::Playing).expect("playing");
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        )
        .expect("an error or the end within 10 s");
    let peak = rss_kib();
    let _ = p.set_state(gst::State::Null);
    let gst::MessageView::Error(e) = msg.view() else {
        panic!("{command:?} ({allow:?}) ran to its end: no bound held it");
    };
    let text = e.error().to_string();
    println!("{command:?} ({allow:?}): error {text:?}, RSS {before} -> {peak} KiB");
    assert!(
        text.contains("height 20240") && text.contains("bound"),
        "{text}"
    );
    assert!(
        peak < before + 64 * 1024,
        "RSS grew from {before} to {peak} KiB"
    );
}

#[test]
fn set_element_property_is_checked_without_creating_elements() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let command = "videoconvert ! facedetect ! videoconvert";
    let next = || {
        gst::ElementFactory::make("facedetect")
            .build()
            .expect("facedetect")
            .name()
            .to_string()
    };
    gst_filter_build(None, command).expect("facedetect");
    let first = next();
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(
            gst_filter_property(None, command, "min-size-width", "40"),
            Ok(1)
        );
    }
    let took = started.elapsed();
    let after = next();
    let index = |n: &str| {
        n.trim_start_matches("facedetect")
            .parse::<u64>()
            .expect("numbered")
    };
    println!("20 checks in {took:?}; elements {first} then {after}");
    assert_eq!(
        index(&after),
        index(&first) + 1,
        "the checks created facedetect elements ({first}, then {after})"
    );
    // The check still refuses what create refuses.
    assert!(gst_filter_property(None, command, "profile", "/etc/hostname").is_err());
    assert!(gst_filter_property(None, command, "min-size-width", "x").is_err());
    assert_eq!(
        gst_filter_property(None, command, "no-such-property", "1"),
        Ok(0)
    );
}
