//! The filters and wasm parts' tables, plot and results files (bench/results/).

use super::filters::{row_json, Case, CaseRows, Plan, Results, Row};
use fluo_testkit::floor::FILTERS;
use fluo_testkit::machine;
use fluo_testkit::plot::{bar_chart, stack, Bars};
use serde_json::{json, Value};
use std::path::Path;

fn ms(v: f64) -> String {
    match v.is_finite() {
        true => format!("{v:.0}"),
        false => "-".into(),
    }
}

/// "median (min-max)" of a figure, with `d` decimals.
fn spread(median: f64, (lo, hi): (f64, f64), d: usize) -> String {
    format!("{median:.d$} ({lo:.d$}-{hi:.d$})")
}

/// The table (markdown), with what it measured and how.
pub fn table(res: &Results, plan: &Plan) -> String {
    let mut s = format!(
        "Filters (issue 18): one WebRTC peer sends 640x360 30 fps VP8 (~800 kbit/s) through the \
         element and gets it back; gst-launch-1.0 does the same work on plain RTP. {} rounds per \
         row (every row) of {} s after {} s of warm-up, Fluo and gst-launch alternated, which \
         goes first alternating by round; CPU: the server's process + its media workers \
         (gst-launch: its process) in % of one core, median (min-max) of the rounds; fps and \
         video kbit/s (VP8 payload) received, median (min-max): the filters re-encode at 300 \
         kbit/s, PassThrough forwards the sender's ~800, so their rows are not alike; latency: \
         a white flash written by the sender -> first frame showing it received, over every \
         flash of every round; added: minus PassThrough's. Every round cleared the floor (at \
         least {} fps, at most {} flash missed, {}x{}, the work in at least {:.0} % of the \
         frames, no Error event). Load average (1, 5, 15 min) before {}, after {}; took {:.0} s.\n\n",
        plan.runs,
        plan.window.as_secs(),
        plan.warmup.as_secs(),
        FILTERS.fps,
        FILTERS.missed,
        FILTERS.size.0,
        FILTERS.size.1,
        FILTERS.shown * 100.0,
        res.load.0,
        res.load.1,
        res.took.as_secs_f64()
    );
    s += "| case | system | rounds | CPU % of a core | fps | video kbit/s | p50 ms | p95 ms | added p50 / p95 ms | flashes seen / missed | the work, in frames without a flash |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|---|\n";
    let base = res
        .rows
        .iter()
        .find(|r| r.0 == Case::PassThrough)
        .map(|r| (r.1.lat(50.0), r.1.lat(95.0)));
    let line = |case: Case, system: &str, r: &Row, added: bool| {
        let add = match (added, base) {
            (true, Some((b50, b95))) if case != Case::PassThrough => {
                format!("{} / {}", ms(r.lat(50.0) - b50), ms(r.lat(95.0) - b95))
            }
            _ => "-".into(),
        };
        let (o, n) = r.shown();
        let faces = r.faces().map_or(String::new(), |(f, got)| {
            format!("a face found by facedetect in {f} of {got} frames (flashes included)")
        });
        let shown = match (case, system) {
            (Case::FaceClip, "fluo") => format!("overlay on the face: {o} of {n}"),
            (Case::FaceClip, _) => {
                format!("{faces}; overlay (fixed place) on the face: {o} of {n}")
            }
            (Case::Face, "gst-launch") => faces,
            (Case::Chroma, _) => format!("background in the band: {o} of {n}"),
            _ => "-".into(),
        };
        format!(
            "| {} | {system} | {} | {} | {} | {} | {} | {} | {add} | {} / {} | {shown} |\n",
            case.label(),
            r.runs.len(),
            spread(r.cpu_pct(), r.cpu_range(), 1),
            spread(r.fps(), r.fps_range(), 1),
            spread(r.kbps(), r.kbps_range(), 0),
            ms(r.lat(50.0)),
            ms(r.lat(95.0)),
            r.seen(),
            r.missed()
        )
    };
    for (case, f, g) in &res.rows {
        s += &line(*case, "fluo", f, true);
        if let Some(g) = g {
            s += &line(*case, "gst-launch", g, false);
        }
    }
    s += "\nCPU fluo / gst-launch (medians):";
    for (case, f, g) in &res.rows {
        if let Some(g) = g {
            s += &format!(
                " {} {:.2};",
                case.label(),
                f.cpu_pct() / g.cpu_pct().max(1e-9)
            );
        }
    }
    if let Some((_, p, _)) = res.rows.iter().find(|r| r.0 == Case::PassThrough) {
        s += &format!(
            "\nCPU fluo minus PassThrough's ({:.1} %: WebRTC and routing, no decoding):",
            p.cpu_pct()
        );
        for (case, f, g) in &res.rows {
            if let Some(g) = g {
                s += &format!(
                    " {} {:.1} % ({:.2} of gst-launch's);",
                    case.label(),
                    f.cpu_pct() - p.cpu_pct(),
                    (f.cpu_pct() - p.cpu_pct()) / g.cpu_pct().max(1e-9)
                );
            }
        }
    }
    s.push('\n');
    s
}

fn short(c: Case) -> &'static str {
    match c {
        Case::PassThrough => "PassThrough",
        Case::Convert => "videoconvert",
        Case::Face => "Face (none)",
        Case::FaceClip => "Face (a face)",
        Case::Chroma => "Chroma",
    }
}

/// CPU per stream and latency per case, Fluo and gst-launch.
pub fn svg(res: &Results, runs: usize) -> String {
    let groups: Vec<&str> = res.rows.iter().map(|r| short(r.0)).collect();
    let bars = |label: &str, colour: &str, f: &dyn Fn(&CaseRows) -> f64| Bars {
        label: label.into(),
        colour: colour.into(),
        values: res.rows.iter().map(f).collect(),
    };
    let gst = |r: &CaseRows, f: &dyn Fn(&Row) -> f64| r.2.as_ref().map_or(f64::NAN, f);
    let cpu = bar_chart(
        &groups,
        &[
            bars("fluo", "#1b7837", &|r| r.1.cpu_pct()),
            bars("gst-launch", "#2166ac", &|r| gst(r, &|g| g.cpu_pct())),
        ],
        &format!("Filters at 640x360 30 fps: CPU per stream (medians of {runs} rounds)"),
        "% of one core",
    );
    let lat = bar_chart(
        &groups,
        &[
            bars("fluo p50", "#5aae61", &|r| r.1.lat(50.0)),
            bars("fluo p95", "#1b7837", &|r| r.1.lat(95.0)),
            bars("gst-launch p50", "#92c5de", &|r| gst(r, &|g| g.lat(50.0))),
            bars("gst-launch p95", "#2166ac", &|r| gst(r, &|g| g.lat(95.0))),
        ],
        "Filters: flash written -> received (ms, every flash of every round)",
        "ms",
    );
    stack(&[cpu, lat])
}

/// The run as JSON.
pub fn json(res: &Results, plan: &Plan) -> Value {
    json!({
        "part": "filters",
        "plan": {"runs": plan.runs, "warmup_s": plan.warmup.as_secs(), "window_s": plan.window.as_secs(),
                 "input": "640x360 30 fps VP8 ~800 kbit/s from one str0m WebRTC peer (gst-launch: plain RTP)",
                 "output": "VP8 300 kbit/s (vp8enc deadline=1 cpu-used=8 cbr threads=1); PassThrough forwards the input",
                 "order": "Fluo first in odd rounds, gst-launch-1.0 first in even ones",
                 "cpu": "utime+stime of the fluo process and its fluo worker children (gst-launch: its process) over the window",
                 "latency": "white flash written by the sender -> arrival of the first frame showing it"},
        "floor": {"fps": FILTERS.fps, "flashes_missed_per_round": FILTERS.missed,
                  "size": [FILTERS.size.0, FILTERS.size.1], "work_shown_share": FILTERS.shown,
                  "error_events": 0},
        "machine": res.machine,
        "load_before": res.load.0,
        "load_after": res.load.1,
        "took_s": res.took.as_secs_f64(),
        "cases": res.rows.iter().map(|(c, f, g)| json!({
            "case": c.label(),
            "fluo": row_json(f),
            "gst_launch": g.as_ref().map(row_json),
        })).collect::<Vec<_>>(),
    })
}

/// Writes `bench/results/<date>-<commit>-<part>.json` and `.md` in `dir`: the JSON's path.
pub fn write(dir: &Path, part: &str, json: &Value, table: &str) -> String {
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let commit = machine::commit();
    let _ = std::fs::create_dir_all(dir);
    let file = dir.join(format!("{date}-{commit}-{part}.json"));
    let mut j = json.clone();
    j["commit"] = commit.into();
    j["date"] = date.into();
    let text = serde_json::to_string_pretty(&j).expect("JSON");
    std::fs::write(&file, text + "\n").expect("the results file");
    std::fs::write(file.with_extension("md"), table).expect("the results table");
    file.display().to_string()
}
