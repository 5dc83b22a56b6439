//! The figures of a run, medians over repetitions, and SVG plots.

use crate::drive::Outcome;
use crate::peer::PlaceSample;
use fluo_testkit::plot::{line_chart, Frame, Series};
use serde_json::{json, Value};

pub fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

pub fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// `--latency-detail`'s figures: latency (p50 / p99, ms) of every video packet by its index
/// in its frame (the last bucket: that index and later), of frames' last packets by the
/// frame's packet count, and the median of the viewers' mean latency by join order (viewer
/// ids in rounds of `round`: the joins go `round` at a time and take the prepared viewers
/// from the end, so the highest ids join first and sit first in the server's fan-out).
pub fn latency_detail(samples: &[PlaceSample], viewers: &[(usize, f64)], round: usize) -> Value {
    const PLACES: u8 = 6;
    let stats = |v: Vec<f64>| {
        let v = sorted(&v);
        json!({"samples": v.len(), "p50": pct(&v, 0.5), "p99": pct(&v, 0.99)})
    };
    let by_place: Vec<Value> = (0..PLACES)
        .map(|k| {
            let v = samples.iter().filter(|s| s.0.min(PLACES - 1) == k);
            let mut x = stats(v.map(|s| f64::from(s.2)).collect());
            x["index"] = json!(k);
            x["and_later"] = json!(k == PLACES - 1);
            x
        })
        .collect();
    let by_len: Vec<Value> = (1..=PLACES)
        .map(|n| {
            let v = samples
                .iter()
                .filter(|s| u16::from(s.0) + 1 == u16::from(s.1) && s.1.min(PLACES) == n);
            let mut x = stats(v.map(|s| f64::from(s.2)).collect());
            x["packets"] = json!(n);
            x["and_more"] = json!(n == PLACES);
            x
        })
        .collect();
    let rounds = viewers
        .iter()
        .map(|v| v.0 / round)
        .max()
        .map_or(0, |r| r + 1);
    let by_round: Vec<Value> = (0..rounds)
        .map(|r| {
            let means: Vec<f64> = viewers
                .iter()
                .filter(|v| v.0 / round == r)
                .map(|v| v.1)
                .collect();
            json!({"ids": format!("{}-{}", r * round, (r + 1) * round - 1),
                   "viewers": means.len(), "mean_ms_p50": pct(&sorted(&means), 0.5)})
        })
        .collect();
    json!({"by_place": by_place, "last_by_frame_packets": by_len, "by_join_round": by_round})
}

/// The figures of one run, as they go into the JSON.
pub fn figures(o: &Outcome) -> Value {
    let join = sorted(&o.join_ms);
    let lat = sorted(&o.latency_ms);
    let fps = sorted(&o.fps);
    let per_pkt = (o.packets > 0).then(|| o.server_cpu_secs * 1e6 / o.packets as f64);
    let tool_per_pkt = (o.packets > 0).then(|| o.tool_cpu_secs * 1e6 / o.packets as f64);
    let cpu_pct = 100.0 * o.server_cpu_secs / o.window_secs.max(1e-3);
    let mut v = json!({
        "viewers": o.viewers,
        "viewer": o.viewer.map(|m| m.name()),
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
        "join_tool_sdp_ms_p50": pct(&sorted(&o.join_tool_sdp_ms), 0.5),
        "viewers_with_twcc": o.viewers_with_twcc,
        "signalling_connections": o.signalling_connections,
        "connections_opened_in_joins": o.connections_opened_in_joins,
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
        "tool_saturated": 100.0 * o.tool_cpu_secs / o.window_secs.max(1e-3) > TOOL_SATURATED_PCT,
        "idle_cpu_pct_2s_after": o.idle_cpu_pct,
        "window_secs": o.window_secs,
        "errors": o.errors,
    });
    let thin = o.thin.map(|t| {
        json!({
            "decrypt_failures": t.decrypt_failures, "unknown_packets": t.unknown,
            "duplicates": t.duplicates, "repaired": t.repaired, "dropped": t.dropped,
            "rtcp_sent": t.rtcp_sent, "rtcp_received": t.rtcp_received,
            "receiver_reports": t.receiver_reports, "nacked": t.nacked, "plis": t.plis,
            "sender_reports": t.sender_reports,
            "twcc_feedback": t.twcc_feedback, "twcc_reported": t.twcc_reported,
            "padding": t.padding,
        })
    });
    let viewers = json!({
        // The tool's whole process (viewers, publisher, signalling) per packet received.
        "tool_cpu_us_per_packet": tool_per_pkt,
        // Its viewers' threads alone.
        "viewer_threads_cpu_us_per_packet": (o.packets > 0)
            .then(|| o.viewer_threads_cpu_secs * 1e6 / o.packets as f64),
        "viewer_str0m_ticks_per_sec": o.ticks_per_viewer_sec,
        "dropped_on_purpose": o.dropped_on_purpose,
        "thin": thin,
        "server_view": o.server_view,
        "limited_server_view": o.limited_server_view,
    });
    if let (Some(v), Some(x)) = (v.as_object_mut(), viewers.as_object()) {
        v.extend(x.clone());
    }
    if let (Some(groups), Some(v)) = (&o.by_link, v.as_object_mut()) {
        link_figures(v, groups);
    }
    if let (Some(d), Some(v)) = (&o.latency_detail, v.as_object_mut()) {
        v.insert("latency_detail".into(), d.clone());
    }
    if let Some(s) = &o.storm {
        let join = sorted(&s.join_ms);
        let lat = sorted(&s.latency_ms);
        let storm = json!({
            "storm_joiners": s.joiners,
            "storm_joined": s.joined,
            "storm_secs": s.secs,
            "storm_join_ms_p50": pct(&join, 0.5),
            "storm_join_ms_p99": pct(&join, 0.99),
            "storm_latency_samples": lat.len(),
            "storm_latency_ms_p50": pct(&lat, 0.5),
            "storm_latency_ms_p99": pct(&lat, 0.99),
            "storm_latency_ms_max": lat.last(),
            "storm_loss_pct": if s.expected > 0 { 100.0 * s.lost as f64 / s.expected as f64 } else { 0.0 },
            "storm_connections_opened_in_joins": s.connections_opened_in_joins,
        });
        if let (Some(v), Some(st)) = (v.as_object_mut(), storm.as_object()) {
            v.extend(st.clone());
        }
    }
    v
}

/// The figures of the viewers behind virtual links and of the others, flat (so that the
/// rows take their medians): `limited_loss_pct`, `unlimited_fps_p50`, ...
fn link_figures(v: &mut serde_json::Map<String, Value>, groups: &[crate::drive::LinkGroup; 2]) {
    for (name, x) in ["unlimited", "limited"].iter().zip(groups) {
        let fps = sorted(&x.fps);
        let lat = sorted(&x.latency_ms);
        let loss = if x.expected > 0 {
            100.0 * x.lost as f64 / x.expected as f64
        } else {
            0.0
        };
        for (key, value) in [
            ("viewers", json!(x.viewers)),
            ("loss_pct", json!(loss)),
            ("fps_p50", json!(pct(&fps, 0.5))),
            ("latency_ms_p50", json!(pct(&lat, 0.5))),
            ("latency_ms_p99", json!(pct(&lat, 0.99))),
            ("link_dropped", json!(x.link_dropped)),
        ] {
            v.insert(format!("{name}_{key}"), value);
        }
    }
}

/// The tool's own CPU (% of its core) above which a run is flagged.
pub const TOOL_SATURATED_PCT: f64 = 85.0;

/// The median of sorted values: the middle one, or the mean of the middle two.
fn median_of(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
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
        if let Some(m) = median_of(&nums) {
            out.insert(key.clone(), json!(m));
        }
    }
    out.insert("repetitions".into(), json!(reps.len()));
    Value::Object(out)
}

/// Colour, dash pattern and legend of a server's line. The TWCC variants of a Janus
/// configuration share its hue: solid without TWCC (like Fluo's viewers), dashed with it.
fn style(server: &str, i: usize) -> (&'static str, &'static str, String) {
    const OTHERS: [&str; 3] = ["#8c510a", "#01665e", "#762a83"];
    match server {
        "fluo" => ("#1b7837", "", "fluo".into()),
        "janus-tuned-no-twcc" => ("#c51b7d", "", "janus-tuned, TWCC off".into()),
        "janus-tuned" => ("#e9a3c9", "6,4", "janus-tuned, TWCC on".into()),
        "janus-packaged-no-twcc" => ("#2166ac", "", "janus-packaged, TWCC off".into()),
        "janus-packaged" => ("#92c5de", "6,4", "janus-packaged, TWCC on".into()),
        other => (OTHERS[i % OTHERS.len()], "2,3", other.to_string()),
    }
}

/// A line chart of `key` against the number of viewers (log scale), one line per server
/// (fluo_testkit::plot draws it).
pub fn svg_plot(
    medians: &[(String, usize, Value)],
    key: &str,
    title: &str,
    y_label: &str,
) -> String {
    // In the order of the rows (the plan's order of servers).
    let mut servers: Vec<&str> = vec![];
    for m in medians {
        if !servers.contains(&m.0.as_str()) {
            servers.push(&m.0);
        }
    }
    let series: Vec<Series> = (servers.iter().enumerate())
        .map(|(i, name)| {
            let (colour, dash, label) = style(name, i);
            let points = (medians.iter())
                .filter(|(s, _, _)| s == name)
                .filter_map(|(_, n, m)| {
                    // Hollow: the server lost more than 1 % of the packets there (saturated).
                    let lossy = m["loss_pct"].as_f64().is_some_and(|l| l > 1.0);
                    Some((*n as f64, m[key].as_f64()?, lossy))
                })
                .collect();
            Series {
                label,
                colour: colour.into(),
                dash: dash.into(),
                points,
            }
        })
        .collect();
    let xmax = (medians.iter())
        .filter(|m| m.2[key].as_f64().is_some())
        .map(|m| m.1 as f64)
        .fold(1.0f64, f64::max)
        .max(10.0);
    let mut ticks = vec![];
    let mut n = 1.0;
    while n <= xmax * 1.0001 {
        ticks.push(n);
        n *= 10.0;
    }
    let frame = Frame {
        title,
        x_label: "viewers (log scale)",
        y_label,
        x_log: true,
        x_ticks: ticks,
        note: "hollow: loss &gt; 1 %",
    };
    line_chart(&series, &frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_detail_groups_by_place_frame_size_and_join_round() {
        // Two 3-packet frames (1, 2, 3 ms by place) and a 7-packet one (last: 9 ms).
        let mut s: Vec<PlaceSample> = vec![];
        for _ in 0..2 {
            s.extend([(0, 3, 1.0), (1, 3, 2.0), (2, 3, 3.0)]);
        }
        s.extend((0..7).map(|k| (k, 7, 3.0 + f32::from(k))));
        let d = latency_detail(&s, &[(0, 1.0), (5, 3.0), (10, 8.0), (15, 8.0)], 10);
        assert_eq!(d["by_place"][0]["samples"], json!(3));
        assert_eq!(d["by_place"][2]["p50"], json!(3.0));
        // Index 5 and later: the 7-packet frame's 5th and 6th (8 and 9 ms).
        assert_eq!(d["by_place"][5]["samples"], json!(2));
        assert_eq!(d["by_place"][5]["and_later"], json!(true));
        assert_eq!(d["last_by_frame_packets"][2]["packets"], json!(3));
        assert_eq!(d["last_by_frame_packets"][2]["samples"], json!(2));
        assert_eq!(d["last_by_frame_packets"][2]["p99"], json!(3.0));
        assert_eq!(d["last_by_frame_packets"][5]["p50"], json!(9.0));
        assert_eq!(d["last_by_frame_packets"][0]["samples"], json!(0));
        let r = &d["by_join_round"];
        assert_eq!(r.as_array().map(Vec::len), Some(2));
        assert_eq!(r[0]["ids"], json!("0-9"));
        assert_eq!(r[1]["mean_ms_p50"], json!(8.0));
    }

    #[test]
    fn medians_and_percentiles() {
        let reps = vec![
            json!({"a": 1.0, "b": 10, "s": "x"}),
            json!({"a": 3.0, "b": null}),
            json!({"a": 2.0, "b": 30}),
        ];
        let m = median(&reps);
        assert_eq!(m["a"], json!(2.0));
        // Only the repetitions that have the figure count; of two, the mean.
        assert_eq!(m["b"], json!(20.0));
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

    /// Tuned Janus with and without TWCC at its viewers are two lines that a reader tells
    /// apart: their own legends, the TWCC one dashed.
    #[test]
    fn plot_tells_twcc_on_from_off() {
        let m = vec![
            ("fluo".to_string(), 10, json!({"k": 5.0})),
            ("janus-tuned-no-twcc".to_string(), 10, json!({"k": 18.0})),
            ("janus-tuned".to_string(), 10, json!({"k": 20.0})),
        ];
        let svg = svg_plot(&m, "k", "t", "y");
        assert!(svg.contains(">janus-tuned, TWCC off</text>"), "{svg}");
        assert!(svg.contains(">janus-tuned, TWCC on</text>"), "{svg}");
        let lines: Vec<&str> = svg.lines().filter(|l| l.starts_with("<polyline")).collect();
        assert_eq!(lines.len(), 3);
        assert!(!lines[1].contains("dasharray") && lines[2].contains("dasharray"));
        assert_ne!(style("janus-tuned", 0).0, style("janus-tuned-no-twcc", 0).0);
    }
}
