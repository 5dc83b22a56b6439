//! Medians over repetitions, the JSON results, a Markdown table and SVG plots.

use crate::drive::Outcome;
use serde_json::{json, Value};
use std::fmt::Write as _;

pub fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The figures of one run, as they go into the JSON.
pub fn figures(o: &Outcome) -> Value {
    let join = sorted(&o.join_ms);
    let lat = sorted(&o.latency_ms);
    let fps = sorted(&o.fps);
    let per_pkt = (o.packets > 0).then(|| o.server_cpu_secs * 1e6 / o.packets as f64);
    let cpu_pct = 100.0 * o.server_cpu_secs / o.window_secs.max(1e-3);
    json!({
        "viewers": o.viewers,
        "joined": o.joined,
        "server_cpu_us_per_packet": per_pkt,
        "server_cpu_pct": cpu_pct,
        "server_cpu_pct_per_viewer": cpu_pct / o.viewers.max(1) as f64,
        "packets_received": o.packets,
        "packets_received_audio_video": o.packets_by_kind,
        "packets_expected_audio_video": o.expected_by_kind,
        "packets_per_sec": o.packets as f64 / o.window_secs.max(1e-3),
        "published_packets": o.published,
        "delivery_ratio": (o.published > 0 && o.joined > 0)
            .then(|| o.packets as f64 / (o.published as f64 * o.joined as f64)),
        "loss_pct": if o.expected > 0 { 100.0 * o.lost as f64 / o.expected as f64 } else { 0.0 },
        "fps_p50": pct(&fps, 0.5),
        "join_ms_p50": pct(&join, 0.5),
        "join_ms_p99": pct(&join, 0.99),
        "join_signalling_ms_p50": pct(&sorted(&o.join_signalling_ms), 0.5),
        "join_ice_dtls_ms_p50": pct(&sorted(&o.join_connect_ms), 0.5),
        "join_first_media_ms_p50": pct(&sorted(&o.join_media_ms), 0.5),
        "latency_ms_p50": pct(&lat, 0.5),
        "latency_ms_p99": pct(&lat, 0.99),
        "rss_base_kib": o.rss_base_kib,
        "rss_kib": o.rss_kib,
        "rss_per_viewer_kib": (o.rss_kib as f64 - o.rss_base_kib as f64) / o.joined.max(1) as f64,
        "threads": o.threads,
        "udp_rcvbuf_drops_server": o.udp_drops_server,
        "udp_rcvbuf_drops_tool": o.udp_drops_tool,
        "tool_cpu_pct": 100.0 * o.tool_cpu_secs / o.window_secs.max(1e-3),
        // Above this the tool's own core may be what loses packets: the run says little of
        // the server.
        "tool_saturated": 100.0 * o.tool_cpu_secs / o.window_secs.max(1e-3) > 85.0,
        "idle_cpu_pct_2s_after": o.idle_cpu_pct,
        "window_secs": o.window_secs,
        "errors": o.errors,
    })
}

/// The median of each numeric figure over the repetitions.
pub fn median(reps: &[Value]) -> Value {
    let mut out = serde_json::Map::new();
    let Some(first) = reps.first().and_then(Value::as_object) else {
        return Value::Null;
    };
    for key in first.keys() {
        let nums = sorted(
            &reps
                .iter()
                .filter_map(|r| r[key].as_f64())
                .collect::<Vec<_>>(),
        );
        if let Some(m) = pct(&nums, 0.5) {
            out.insert(key.clone(), json!(m));
        }
    }
    out.insert("repetitions".into(), json!(reps.len()));
    Value::Object(out)
}

fn cell(v: &Value, key: &str, digits: usize) -> String {
    v[key]
        .as_f64()
        .map_or("-".into(), |x| format!("{x:.digits$}"))
}

/// The Markdown table of the medians: one row per (viewers, server).
pub fn table(medians: &[(String, usize, Value)]) -> String {
    let mut t = String::from(
        "| viewers | server | CPU-µs/packet | server CPU % | loss % | fps | join p50/p99 ms | latency p50/p99 ms | RSS/viewer KiB | threads | tool CPU % | idle CPU % |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (server, n, m) in medians {
        let _ = writeln!(
            t,
            "| {n} | {server} | {} | {} | {} | {} | {} / {} | {} / {} | {} | {} | {} | {} |",
            cell(m, "server_cpu_us_per_packet", 2),
            cell(m, "server_cpu_pct", 1),
            cell(m, "loss_pct", 2),
            cell(m, "fps_p50", 1),
            cell(m, "join_ms_p50", 1),
            cell(m, "join_ms_p99", 1),
            cell(m, "latency_ms_p50", 2),
            cell(m, "latency_ms_p99", 2),
            cell(m, "rss_per_viewer_kib", 0),
            cell(m, "threads", 0),
            cell(m, "tool_cpu_pct", 1),
            cell(m, "idle_cpu_pct_2s_after", 2),
        );
    }
    t
}

const COLORS: [&str; 4] = ["#1b7837", "#c51b7d", "#2166ac", "#8c510a"];

/// A line chart of `key` against the number of viewers (log scale), one line per server.
pub fn svg_plot(
    medians: &[(String, usize, Value)],
    key: &str,
    title: &str,
    y_label: &str,
) -> String {
    let mut servers: Vec<&str> = medians.iter().map(|m| m.0.as_str()).collect();
    servers.dedup();
    servers.sort_unstable();
    servers.dedup();
    // (server, viewers, value, lossy)
    let pts: Vec<(usize, f64, f64, bool)> = medians
        .iter()
        .filter_map(|(s, n, m)| {
            let i = servers.iter().position(|x| x == s)?;
            let lossy = m["loss_pct"].as_f64().is_some_and(|l| l > 1.0);
            Some((i, *n as f64, m[key].as_f64()?, lossy))
        })
        .collect();
    let (w, h, l, r, t, b) = (720.0, 420.0, 70.0, 170.0, 40.0, 50.0);
    let xmax = pts.iter().map(|p| p.1).fold(1.0f64, f64::max).max(10.0);
    let ymax = nice(pts.iter().map(|p| p.2).fold(0.0f64, f64::max));
    let x = |n: f64| l + (w - l - r) * (n.max(1.0).log10() / xmax.log10());
    let y = |v: f64| h - b - (h - t - b) * (v / ymax);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{title}</text>\n",
        (w - r + l) / 2.0
    );
    for k in 0..=5 {
        let v = ymax * f64::from(k) / 5.0;
        let _ = writeln!(
            s,
            "<line x1=\"{l}\" x2=\"{}\" y1=\"{y0:.1}\" y2=\"{y0:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            w - r,
            l - 6.0,
            y(v) + 4.0,
            trim(v),
            y0 = y(v)
        );
    }
    let mut n = 1.0;
    while n <= xmax * 1.0001 {
        let _ = writeln!(
            s,
            "<line x1=\"{x0:.1}\" x2=\"{x0:.1}\" y1=\"{t}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{x0:.1}\" y=\"{}\" text-anchor=\"middle\">{n}</text>",
            h - b,
            h - b + 18.0,
            x0 = x(n)
        );
        n *= 10.0;
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">viewers (log scale)</text>\n\
         <text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">{y_label}</text>\n\
         <line x1=\"{l}\" x2=\"{l}\" y1=\"{t}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{l}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        (w - r + l) / 2.0,
        h - 10.0,
        (h - b + t) / 2.0,
        (h - b + t) / 2.0,
        h - b,
        w - r,
        h - b,
        h - b
    );
    for (i, name) in servers.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let line: Vec<String> = pts
            .iter()
            .filter(|p| p.0 == i)
            .map(|p| format!("{:.1},{:.1}", x(p.1), y(p.2)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
            line.join(" ")
        );
        for p in pts.iter().filter(|p| p.0 == i) {
            // Hollow: the server lost more than 1 % of the packets there (saturated).
            let fill = if p.3 { "white" } else { c };
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{fill}\" stroke=\"{c}\" stroke-width=\"2\"/>",
                x(p.1),
                y(p.2)
            );
        }
        let ly = t + 20.0 + 22.0 * i as f64;
        let _ = writeln!(
            s,
            "<line x1=\"{}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{c}\" stroke-width=\"3\"/><text x=\"{}\" y=\"{}\">{name}</text>",
            w - r + 12.0,
            w - r + 36.0,
            w - r + 42.0,
            ly + 4.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\">hollow: loss &gt; 1 %</text>",
        w - r + 12.0,
        t + 30.0 + 22.0 * servers.len() as f64
    );
    s.push_str("</svg>\n");
    s
}

/// A round upper bound for an axis.
fn nice(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * p)
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        let reps = vec![
            json!({"a": 1.0, "b": 10, "s": "x"}),
            json!({"a": 3.0, "b": null}),
            json!({"a": 2.0, "b": 30}),
        ];
        let m = median(&reps);
        assert_eq!(m["a"], json!(2.0));
        // Only the repetitions that have the figure count.
        assert!(m["b"] == json!(10.0) || m["b"] == json!(30.0));
        assert!(m.get("s").is_none());
        assert_eq!(m["repetitions"], json!(3));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&v, 0.5), Some(51.0));
        assert_eq!(pct(&v, 0.99), Some(99.0));
        assert_eq!(pct(&[], 0.5), None);
    }

    #[test]
    fn plot_has_a_line_per_server() {
        let m = vec![
            ("fluo".to_string(), 10, json!({"k": 5.0})),
            ("fluo".to_string(), 100, json!({"k": 6.0})),
            ("janus".to_string(), 10, json!({"k": 20.0})),
        ];
        let svg = svg_plot(&m, "k", "t", "y");
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains(">janus</text>"));
    }
}
