//! GStreamerFilter create/release cycles with media flowing leave no thread behind (a test
//! binary of its own: it counts this process's threads, the server's included). Issue 14's
//! review saw `identity sleep-time=4294967295` add 5 threads per cycle that never ended.

use fluo_testkit::clips::testsrc_vp8;
use fluo_testkit::live::{rt, start_server, Client};
use fluo_testkit::udp_peer::{Pacer, Peer};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::media::Direction;
use str0m::RtcConfig;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits up to `secs` for the thread count to come down to `baseline`; the count seen.
async fn settle(baseline: usize, secs: u64) -> usize {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let n = threads();
        if n <= baseline || Instant::now() > until {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates a filter of `command`, connects the publisher to it, lets media flow 1.5 s and
/// releases it; the process's threads while it ran.
async fn cycle(c: &mut Client, pipe: &str, e_pub: &str, command: &str) -> Result<usize, String> {
    let f = c
        .create(
            "GStreamerFilter",
            json!({"mediaPipeline": pipe, "command": command, "filterType": "VIDEO"}),
        )
        .await?;
    c.invoke(e_pub, "connect", json!({"sink": f}))
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let running = threads();
    c.request("release", json!({"object": f}))
        .await
        .expect("release");
    Ok(running)
}

#[test]
fn filter_create_release_cycles_with_media_return_to_the_thread_baseline() {
    let dir = fluo_testkit::tmp::dir("gst-filter-threads");
    let frames = testsrc_vp8(&dir.join("in.ivf"), "320x240", 2, "400k", 30);
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let e_pub = c
            .create("WebRtcEndpoint", json!({"mediaPipeline": pipe}))
            .await
            .expect("ep");
        let mut publisher = Peer::new(RtcConfig::new());
        publisher
            .negotiate(&mut c, &e_pub, Direction::SendOnly)
            .await
            .expect("negotiated");
        let stop = Arc::new(AtomicBool::new(false));
        let driver = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut pace = Pacer::default();
                while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(120) {
                    publisher.drive(pace.frame(publisher.connected, &frames));
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        // GStreamer's and the decoders' own threads exist after a first filter, OpenCV's
        // worker pool (one per process, made at its first parallel filter) after a first
        // OpenCV filter.
        cycle(&mut c, &pipe, &e_pub, "videoflip")
            .await
            .expect("videoflip");
        cycle(
            &mut c,
            &pipe,
            &e_pub,
            "videoconvert ! cvsmooth kernel-width=31 kernel-height=31 ! videoconvert",
        )
        .await
        .expect("cvsmooth");
        let baseline = settle(0, 3).await;
        println!("baseline: {baseline} threads");
        for command in [
            "identity sleep-time=4294967295",
            "videoconvert ! cvsmooth kernel-width=2147483647 ! videoconvert",
            "identity sleep-time=100000",
            "videoconvert ! cvsmooth type=gaussian kernel-width=63 kernel-height=63 ! videoconvert",
        ] {
            let mut refused = None;
            for _ in 0..4 {
                match cycle(&mut c, &pipe, &e_pub, command).await {
                    Err(e) => {
                        refused = Some(e);
                        break;
                    }
                    // The filter's pipeline ran (its streaming threads existed).
                    Ok(running) => assert!(
                        running > baseline,
                        "{command:?}: {running} threads while it ran, {baseline} before"
                    ),
                }
            }
            if let Some(e) = refused {
                println!("refused {command:?}: {e}");
                assert!(e.contains("40107") && e.contains("out of the range"), "{e}");
                continue;
            }
            let n = settle(baseline, 5).await;
            println!("{command:?}: {n} threads 5 s after 4 create/release cycles");
            assert!(
                n <= baseline,
                "{command:?}: {n} threads after 4 cycles, {baseline} before"
            );
        }
        stop.store(true, Ordering::Relaxed);
        driver.join().expect("driver");
        c.request("release", json!({"object": pipe}))
            .await
            .expect("release");
    });
}
