//! GStreamerFilter create/release cycles with media flowing leave no thread behind in the
//! process that runs the filters: the media worker hosting the pipeline (found as an operator
//! finds it, in the server's log), or with `--workers 0` the server's own process (a test
//! binary of its own: it then counts this process's threads). Issue 14's review saw
//! `identity sleep-time=4294967295` add 5 threads per cycle that never ended.

use fluo_testkit::clips::testsrc_vp8;
use fluo_testkit::live::{rt, start_server, Client};
use fluo_testkit::udp_peer::{Pacer, Peer};
use fluo_testkit::workers::{operator_log, worker_pid};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::media::Direction;
use str0m::RtcConfig;

/// The threads of the process that runs the filters: `pid`, or this one.
fn threads(pid: Option<u32>) -> usize {
    let dir = pid.map_or("/proc/self/task".to_string(), |p| format!("/proc/{p}/task"));
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Waits up to `secs` for the thread count of `pid` to come down to `baseline`; the count
/// seen.
async fn settle(pid: Option<u32>, baseline: usize, secs: u64) -> usize {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let n = threads(pid);
        if n <= baseline || Instant::now() > until {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates a filter of `command`, connects the publisher to it, lets media flow 1.5 s and
/// releases it; the threads, while it ran, of the process that ran it, and that process (a
/// media worker's pid; `None`: the server's, this one).
async fn cycle(
    c: &mut Client,
    pipe: &str,
    e_pub: &str,
    command: &str,
) -> Result<(usize, Option<u32>), String> {
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
    let pid = worker_pid(operator_log(), &f);
    let running = threads(pid);
    c.request("release", json!({"object": f}))
        .await
        .expect("release");
    Ok((running, pid))
}

#[test]
fn filter_create_release_cycles_with_media_return_to_the_thread_baseline() {
    let dir = fluo_testkit::tmp::dir("gst-filter-threads");
    let frames = testsrc_vp8(&dir.join("in.ivf"), "320x240", 2, "400k", 30);
    let _ = operator_log();
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
        let (_, pid) = cycle(&mut c, &pipe, &e_pub, "videoflip")
            .await
            .expect("videoflip");
        // The server runs with its default media workers: a filter runs in the worker of
        // its pipeline (one for the whole test: it does not die).
        assert!(
            pid.is_some(),
            "the filter's media worker is in the log (the server runs with workers)"
        );
        let (_, again) = cycle(
            &mut c,
            &pipe,
            &e_pub,
            "videoconvert ! cvsmooth kernel-width=31 kernel-height=31 ! videoconvert",
        )
        .await
        .expect("cvsmooth");
        assert_eq!(again, pid, "a pipeline's filters share its worker");
        let baseline = settle(pid, 0, 3).await;
        println!("baseline: {baseline} threads in media worker {pid:?}");
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
                    Ok((running, p)) => assert!(
                        p == pid && running > baseline,
                        "{command:?}: {running} threads while it ran, {baseline} before"
                    ),
                }
            }
            if let Some(e) = refused {
                println!("refused {command:?}: {e}");
                assert!(e.contains("40107") && e.contains("out of the range"), "{e}");
                continue;
            }
            let n = settle(pid, baseline, 5).await;
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
