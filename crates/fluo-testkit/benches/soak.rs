//! `cargo bench -p fluo-testkit --bench soak -- [CYCLES [LANES]]` (default 10 000 cycles, 8 at
//! once): churn soak against a real server on 127.0.0.1 with real UDP peers, figures printed.
fn main() {
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let cycles = nums.first().copied().unwrap_or(10_000);
    let lanes = nums.get(1).copied().unwrap_or(8);
    // A fifth of the run and at least 30 s: longer than the 20 s request replay cache, and
    // long enough for the allocator's high-water mark under 8 lanes (RSS levels off by then).
    let warmup = (cycles / 5).max(3);
    let warmup_min = std::time::Duration::from_secs(30);
    let media_for = std::time::Duration::from_millis(150);
    let r = fluo_testkit::soak::run(cycles, warmup, warmup_min, media_for, lanes);
    r.print();
    let growth = r.rss_growth_percent();
    let ok = r.failures.is_empty()
        && growth < 5.0
        && r.end.fds <= r.warm.fds
        && r.end.threads <= r.warm.threads
        && r.end.udp_sockets <= r.warm.udp_sockets
        && r.end.gst_pipelines <= r.warm.gst_pipelines
        && r.end.gst_elements <= r.warm.gst_elements
        && r.pipelines_left == 0
        && r.recordings_written == r.recordings
        && r.idle_cpu_percent < 1.0;
    println!(
        "soak goals (RSS growth < 5 %, all else back to baseline, no failure, every recording \
         written, CPU < 1 % after): {}",
        if ok { "MET" } else { "NOT MET" }
    );
    if !ok {
        drop(r); // the recordings' folder: exit runs no destructor
        std::process::exit(1);
    }
}
