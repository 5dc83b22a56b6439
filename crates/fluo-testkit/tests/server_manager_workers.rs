//! ServerManager's getUsedMemory and getUsedCpu count the media workers: a worker is part of
//! the media server. A real server with one worker, a real client over the WebSocket, a
//! PlayerEndpoint recorded into WebM; the workers found as an operator finds them, as the
//! server's children in /proc.

use fluo_testkit::clips;
use fluo_testkit::live::{rt, serial, start_server_with, Client};
use fluo_testkit::procs::{worker_children, ProcUsage};
use fluo_testkit::tmp;
use serde_json::json;
use std::time::{Duration, Instant};

const SM: &str = "manager_ServerManager";

/// This process's RSS (the server's, here) and the workers' sum, in KiB.
fn own_and_workers_kib() -> (u64, u64) {
    let own = ProcUsage::read("self").expect("own figures").rss_kib;
    let pids = worker_children().0;
    assert_eq!(pids.len(), 1, "one media worker, a child of the server");
    let workers = pids
        .iter()
        .map(|p| ProcUsage::read(&p.to_string()).expect("the worker's figures"))
        .map(|u| u.rss_kib)
        .sum();
    (own, workers)
}

/// getUsedMemory, with the server's and the workers' RSS read from /proc just before and just
/// after it; checks that it is their sum (within what RSS moves meanwhile). Returns (the
/// answer, the workers' RSS).
async fn used_memory_is_the_sum(c: &mut Client) -> (i64, u64) {
    let (own_a, workers_a) = own_and_workers_kib();
    let m = c
        .invoke(SM, "getUsedMemory", json!({}))
        .await
        .expect("getUsedMemory");
    let (own_b, workers_b) = own_and_workers_kib();
    let m = m.as_i64().expect("an int64 of KiB");
    let (own_lo, own_hi) = (own_a.min(own_b), own_a.max(own_b));
    let (w_lo, w_hi) = (workers_a.min(workers_b), workers_a.max(workers_b));
    println!("getUsedMemory {m} KiB; the server's RSS {own_lo}-{own_hi} KiB, the worker's {w_lo}-{w_hi} KiB");
    // 2 MiB of slack for what the allocator does between the readings.
    let (lo, hi) = (own_lo + w_lo - 2048, own_hi + w_hi + 2048);
    assert!(
        (lo as i64..=hi as i64).contains(&m),
        "getUsedMemory {m} KiB is the server's RSS ({own_lo}-{own_hi} KiB) plus its worker's \
         ({w_lo}-{w_hi} KiB)"
    );
    (m, w_lo)
}

/// CPU ticks (1/100 s) of this process and its worker.
fn ticks() -> u64 {
    let mut t = ProcUsage::read("self").expect("own").cpu_ticks;
    for p in worker_children().0 {
        t += ProcUsage::read(&p.to_string()).expect("worker").cpu_ticks;
    }
    t
}

/// CPU ticks of the worker alone.
fn worker_ticks() -> u64 {
    worker_children()
        .0
        .iter()
        .map(|p| ProcUsage::read(&p.to_string()).expect("worker").cpu_ticks)
        .sum()
}

#[test]
fn used_memory_and_cpu_count_the_media_workers() {
    let _serial = serial();
    let dir = tmp::dir("sm-workers");
    let clip = clips::av_clip(&dir, "clip.webm", 10);
    let port = start_server_with(fluo_server::Config {
        session_grace: Duration::from_secs(5),
        net: fluo_rtc::NetSettings {
            network_interfaces: Some(vec!["lo".into()]),
            ..Default::default()
        },
        workers: 1,
        ..Default::default()
    });
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        // The worker is started with the server: wait until it is ready (its supervisor
        // knows its pid) and /proc shows it.
        let t0 = Instant::now();
        let ready = || fluo_worker::all_stats().iter().any(|s| s.pid.is_some());
        while (!ready() || worker_children().0.is_empty()) && t0.elapsed() < Duration::from_secs(20)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (idle, idle_worker) = used_memory_is_the_sum(&mut c).await;
        assert!(
            idle_worker >= 4096,
            "a worker with GStreamer loaded holds MiBs ({idle_worker} KiB)"
        );

        // A player decoding and encoding into a recorder, in the worker.
        let uri = format!("file://{}", clip.display());
        let player = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": uri}))
            .await
            .expect("player");
        let file = dir.join("out.webm");
        let rec = c
            .create(
                "RecorderEndpoint",
                json!({"mediaPipeline": pipe, "uri": format!("file://{}", file.display())}),
            )
            .await
            .expect("recorder");
        c.subscribe(&rec, "MediaFlowInStateChanged")
            .await
            .expect("subscribe");
        c.invoke(&player, "connect", json!({"sink": rec}))
            .await
            .expect("connect");
        c.invoke(&rec, "record", json!({})).await.expect("record");
        c.invoke(&player, "play", json!({})).await.expect("play");
        c.wait_event("MediaFlowInStateChanged", &rec, Duration::from_secs(20))
            .await
            .expect("media reaches the recorder");
        tokio::time::sleep(Duration::from_secs(1)).await;

        let (playing, playing_worker) = used_memory_is_the_sum(&mut c).await;
        println!(
            "while playing: getUsedMemory {idle} -> {playing} KiB, the worker {idle_worker} -> \
             {playing_worker} KiB"
        );
        assert!(
            playing_worker >= idle_worker + 2048,
            "the player's pipeline grows its worker ({idle_worker} -> {playing_worker} KiB)"
        );

        // getUsedCpu over 2 s: the server's and the worker's CPU time over that time, as a
        // percentage of one core (KMS 7's measure). The sampler's window (2.0-2.2 s ending at
        // most 0.2 s before the request) lies within [t0, t1].
        let (t0, all0, w0) = (Instant::now(), ticks(), worker_ticks());
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let cpu = c
            .invoke(SM, "getUsedCpu", json!({"interval": 2000}))
            .await
            .expect("getUsedCpu");
        let (wall, all1, w1) = (t0.elapsed().as_secs_f64(), ticks(), worker_ticks());
        let cpu = cpu.as_f64().expect("a float");
        // Ticks of 1/100 s per second are percents of a core.
        let all_pct = (all1 - all0) as f64 / wall;
        let worker_pct = (w1 - w0) as f64 / wall;
        println!(
            "getUsedCpu(2000) {cpu:.2} %; over {wall:.2} s the server and its worker used \
             {all_pct:.2} % of a core, the worker alone {worker_pct:.2} %"
        );
        // At most what the two used in the whole of [t0, t1] over the 2 s window (one tick of
        // 10 ms is 0.5 % of 2 s), at least half of the worker's average (a player decoding and
        // encoding all along).
        let ceiling = (all1 - all0) as f64 / 2.0 + 1.0;
        assert!(
            cpu <= ceiling,
            "getUsedCpu {cpu} counts only the media server's processes (at most {ceiling:.2})"
        );
        assert!(
            cpu >= worker_pct / 2.0 && worker_pct > 0.0,
            "getUsedCpu {cpu} counts the worker's CPU ({worker_pct:.2} % of a core)"
        );
        let released = c.request("release", json!({"object": pipe})).await;
        assert!(released.is_ok_and(|r| r.get("error").is_none()), "released");
    });
}
