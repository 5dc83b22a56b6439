//! A bounded churn soak (24 cycles, 4 at once, three teardown styles, WebM recordings in two
//! of three) against a real server with two media workers and real UDP peers: media flows in
//! every cycle, every recording is written (in a worker) and decodes, nothing is left behind
//! in the server's process or in its workers (the same two worker processes at the end, no
//! GStreamer pipeline alive in any of them), and they all go quiet. `make soak` runs 10 000
//! cycles and prints the figures.
#[test]
fn churn_leaves_nothing_behind() {
    let r = fluo_testkit::soak::run(
        24,
        8,
        std::time::Duration::ZERO,
        std::time::Duration::from_millis(150),
        4,
    );
    r.print();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.media_ok, 24);
    // The figures are the workers' too: both were found (children of the server running
    // `fluo worker`, the ones its supervisor runs) and counted.
    assert_eq!(r.warm_workers.len(), fluo_testkit::soak::WORKERS);
    assert_eq!(
        r.warm_workers, r.end_workers,
        "no worker died or was restarted"
    );
    assert!(
        r.warm.workers.threads > 0 && r.warm.workers.rss_kib > 0,
        "the workers' figures are in the totals: {:?}",
        r.warm.workers
    );
    assert_eq!(
        r.pipelines_left, 0,
        "every pipeline was released or collected"
    );
    let (w, e) = (r.warm, r.end);
    assert!(e.fds <= w.fds, "file descriptors: {} -> {}", w.fds, e.fds);
    assert!(
        e.threads <= w.threads,
        "threads: {} -> {}",
        w.threads,
        e.threads
    );
    assert!(
        e.udp_sockets <= w.udp_sockets,
        "UDP sockets: {} -> {}",
        w.udp_sockets,
        e.udp_sockets
    );
    assert!(
        w.gst_pipelines == 0 && e.gst_pipelines == 0,
        "GStreamer pipelines: {w:?} -> {e:?}"
    );
    assert!(
        w.gst_elements == 0 && e.gst_elements == 0,
        "GStreamer elements: {w:?} -> {e:?}"
    );
    assert!(
        r.gst_peak.0 >= 1 && r.gst_peak.1 >= 3,
        "recorders were counted while they ran: {:?}",
        r.gst_peak
    );
    assert_eq!(r.recordings, 16);
    assert_eq!(r.recordings_written, 16, "every recording has its file");
    // One of them, played back: real VP8 frames were recorded.
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(r.recordings_dir.join("cycle-0.webm"))
        .output()
        .expect("ffprobe runs (a test dependency)");
    let out = String::from_utf8_lossy(&probe.stdout).trim().to_string();
    println!("cycle-0.webm: {out}");
    let frames: u32 = out
        .strip_prefix("vp8,")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(frames >= 3, "the recording holds VP8 frames: {out:?}");
    // Idle, the debug server spends 0.8-1.0 % of a core here (6 runs, 2026-12-06), counted in
    // 10 ms ticks over 5 s (0.2 % per tick): a bound of 1 % failed a fresh-clone run at 2.39 %
    // (12 ticks). What the bound is for, a task or pipeline left running, costs 10 % or more.
    assert!(
        r.idle_cpu_percent < 4.0,
        "CPU after the last client left: {:.2} %",
        r.idle_cpu_percent
    );
}
