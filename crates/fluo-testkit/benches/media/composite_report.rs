//! The Composite bench's table and plot.

use super::composite::{Plan, Sample};
use fluo_testkit::plot::{line_chart, stack, Frame, Series};
use std::time::Duration;

/// The goals of issue 17: CPU at most 1.1x gst-launch's, added latency p99 under 150 ms.
const CPU_RATIO_GOAL: f64 = 1.1;
const P99_GOAL_MS: f64 = 150.0;

/// Prints the medians per N, Fluo's next to gst-launch's, and the goals.
pub fn print(rows: &[(usize, Sample, Sample)], plan: &Plan, load: &str, took: Duration) {
    println!(
        "\nComposite: N peers each sending 640x360 30 fps VP8 (~800 kbit/s) + Opus and receiving the \
         grid (640x360 30 fps VP8, 300 kbit/s) and the mix of the others (Opus); medians of {} run(s) \
         of {} s after {} s warm-up; CPU of the server's process + its media workers (gst-launch-1.0: \
         its process), in % of one core per participant; latency: white flash written by the senders \
         -> first frame showing it in each cell at each receiver; load average at the end {load}; \
         took {:.0} s:",
        plan.runs,
        plan.window.as_secs(),
        plan.warmup.as_secs(),
        took.as_secs_f64()
    );
    println!(
        "  {:>2}  {:<11} {:>9} {:>8} {:>8} {:>8} {:>9} {:>12}",
        "N", "", "CPU/part", "p50 ms", "p99 ms", "fps in", "size", "seen/missed"
    );
    for (n, f, g) in rows {
        for (name, s) in [("fluo", f), ("gst-launch", g)] {
            println!(
                "  {n:>2}  {name:<11} {:>8.1}% {:>8.0} {:>8.0} {:>8.1} {:>9} {:>12}",
                s.cpu_pct,
                s.p50_ms,
                s.p99_ms,
                s.fps,
                format!("{}x{}", s.size.0, s.size.1),
                format!("{}/{}", s.seen, s.missed)
            );
        }
        let ratio = f.cpu_pct / g.cpu_pct.max(1e-9);
        println!(
            "  {n:>2}  CPU fluo / gst-launch {ratio:.2} (goal <= {CPU_RATIO_GOAL}: {}), fluo p99 {:.0} ms (goal < {P99_GOAL_MS}: {})",
            verdict(ratio <= CPU_RATIO_GOAL),
            f.p99_ms,
            verdict(f.p99_ms < P99_GOAL_MS)
        );
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// CPU per participant and latency (p50 dashed, p99 solid) against N, Fluo and gst-launch.
pub fn svg(rows: &[(usize, Sample, Sample)], runs: usize) -> String {
    let line = |label: &str,
                colour: &str,
                dash: &str,
                f: &dyn Fn(&(usize, Sample, Sample)) -> f64| Series {
        label: label.into(),
        colour: colour.into(),
        dash: dash.into(),
        points: rows.iter().map(|r| (r.0 as f64, f(r), false)).collect(),
    };
    let ticks: Vec<f64> = rows.iter().map(|r| r.0 as f64).collect();
    let title_cpu = format!("Composite: CPU per participant (medians of {runs} runs)");
    let cpu = line_chart(
        &[
            line("fluo", "#1b7837", "", &|r| r.1.cpu_pct),
            line("gst-launch", "#2166ac", "", &|r| r.2.cpu_pct),
        ],
        &Frame {
            title: &title_cpu,
            x_label: "participants (N)",
            y_label: "% of one core per participant",
            x_ticks: ticks.clone(),
            ..Default::default()
        },
    );
    let title_lat = format!("Composite: added latency of a flash (medians of {runs} runs)");
    let lat = line_chart(
        &[
            line("fluo p99", "#1b7837", "", &|r| r.1.p99_ms),
            line("fluo p50", "#1b7837", "6,4", &|r| r.1.p50_ms),
            line("gst-launch p99", "#2166ac", "", &|r| r.2.p99_ms),
            line("gst-launch p50", "#2166ac", "6,4", &|r| r.2.p50_ms),
        ],
        &Frame {
            title: &title_lat,
            x_label: "participants (N)",
            y_label: "ms",
            x_ticks: ticks,
            ..Default::default()
        },
    );
    stack(&[cpu, lat])
}
