//! SVG charts for the benches' reports (the main bench's plots and `make bench-media`'s): lines
//! (one per series, hollow points where a series marks them) and bars in groups, a legend at
//! the right.

use std::fmt::Write as _;

/// One line of a chart.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub label: String,
    pub colour: String,
    /// An SVG dash pattern ("6,4"), empty for a solid line.
    pub dash: String,
    /// (x, y, hollow): a hollow point marks a figure the note below the legend explains.
    pub points: Vec<(f64, f64, bool)>,
}

/// The chart's frame: title, axis labels, x ticks, and whether x is on a log scale.
#[derive(Debug, Clone, Default)]
pub struct Frame<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_log: bool,
    pub x_ticks: Vec<f64>,
    /// A line under the legend (what a hollow point means), if any.
    pub note: &'a str,
}

/// A 780x420 line chart of `series` in `frame`, y from 0; points that are not finite (a
/// figure a run could not measure) are left out.
pub fn line_chart(series: &[Series], frame: &Frame<'_>) -> String {
    let series: Vec<Series> = (series.iter())
        .map(|s| Series {
            points: (s.points.iter().copied())
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect(),
            ..s.clone()
        })
        .collect();
    let series = series.as_slice();
    let (w, h, l, r, t, b) = (780.0, 420.0, 70.0, 230.0, 40.0, 50.0);
    let pts = || series.iter().flat_map(|s| s.points.iter());
    let ticks = &frame.x_ticks;
    let xmax = (pts().map(|p| p.0))
        .chain(ticks.iter().copied())
        .fold(1.0f64, f64::max);
    let xmin = if frame.x_log {
        1.0
    } else {
        (pts().map(|p| p.0))
            .chain(ticks.iter().copied())
            .fold(xmax, f64::min)
    };
    let ymax = nice(pts().map(|p| p.1).fold(0.0f64, f64::max));
    let x = |n: f64| match frame.x_log {
        true => l + (w - l - r) * (n.max(1.0).log10() / xmax.log10()),
        false => l + (w - l - r) * ((n - xmin) / (xmax - xmin).max(1e-9)),
    };
    let y = |v: f64| h - b - (h - t - b) * (v / ymax);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        (w - r + l) / 2.0,
        frame.title
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
    for n in ticks {
        let _ = writeln!(
            s,
            "<line x1=\"{x0:.1}\" x2=\"{x0:.1}\" y1=\"{t}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{x0:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            h - b,
            h - b + 18.0,
            trim(*n),
            x0 = x(*n)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">{}</text>\n\
         <line x1=\"{l}\" x2=\"{l}\" y1=\"{t}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{l}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        (w - r + l) / 2.0,
        h - 10.0,
        frame.x_label,
        (h - b + t) / 2.0,
        (h - b + t) / 2.0,
        frame.y_label,
        h - b,
        w - r,
        h - b,
        h - b
    );
    for (i, se) in series.iter().enumerate() {
        let c = &se.colour;
        let dash = match se.dash.is_empty() {
            true => String::new(),
            false => format!(" stroke-dasharray=\"{}\"", se.dash),
        };
        let line: Vec<String> = (se.points.iter())
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"{dash} points=\"{}\"/>",
            line.join(" ")
        );
        for p in &se.points {
            let fill = if p.2 { "white" } else { c };
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{fill}\" stroke=\"{c}\" stroke-width=\"2\"/>",
                x(p.0),
                y(p.1)
            );
        }
        let ly = t + 20.0 + 22.0 * i as f64;
        let _ = writeln!(
            s,
            "<line x1=\"{}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{c}\" stroke-width=\"3\"{dash}/><text x=\"{}\" y=\"{}\">{}</text>",
            w - r + 12.0,
            w - r + 36.0,
            w - r + 42.0,
            ly + 4.0,
            se.label
        );
    }
    if !frame.note.is_empty() {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
            w - r + 12.0,
            t + 30.0 + 22.0 * series.len() as f64,
            frame.note
        );
    }
    s.push_str("</svg>\n");
    s
}

/// One series of a bar chart: a bar in each group (a value that is not finite: no bar).
#[derive(Debug, Clone, Default)]
pub struct Bars {
    pub label: String,
    pub colour: String,
    pub values: Vec<f64>,
}

/// A 780x420 chart of bars side by side in each of `groups` (one per series, in order), y
/// from 0, each bar's value written above it; the legend at the right.
pub fn bar_chart(groups: &[&str], bars: &[Bars], title: &str, y_label: &str) -> String {
    let (w, h, l, r, t, b) = (780.0, 420.0, 70.0, 230.0, 40.0, 50.0);
    let vals = || bars.iter().flat_map(|s| s.values.iter().copied());
    let ymax = nice(vals().filter(|v| v.is_finite()).fold(0.0f64, f64::max));
    let y = |v: f64| h - b - (h - t - b) * (v / ymax);
    let gw = (w - l - r) / groups.len().max(1) as f64;
    let bw = gw * 0.8 / bars.len().max(1) as f64;
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
    for (g, name) in groups.iter().enumerate() {
        let x0 = l + gw * g as f64;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{name}</text>",
            x0 + gw / 2.0,
            h - b + 18.0
        );
        for (i, se) in bars.iter().enumerate() {
            let Some(v) = se.values.get(g).copied().filter(|v| v.is_finite()) else {
                continue;
            };
            let x = x0 + gw * 0.1 + bw * i as f64;
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
                y(v),
                bw * 0.9,
                h - b - y(v),
                se.colour,
                x + bw * 0.45,
                y(v) - 3.0,
                trim((v * 10.0).round() / 10.0)
            );
        }
    }
    let _ = writeln!(
        s,
        "<text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">{y_label}</text>\n\
         <line x1=\"{l}\" x2=\"{l}\" y1=\"{t}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{l}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        (h - b + t) / 2.0,
        (h - b + t) / 2.0,
        h - b,
        w - r,
        h - b,
        h - b
    );
    for (i, se) in bars.iter().enumerate() {
        let ly = t + 20.0 + 22.0 * i as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"24\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            w - r + 12.0,
            ly - 5.0,
            se.colour,
            w - r + 42.0,
            ly + 4.0,
            se.label
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Charts stacked one above the other in one SVG.
pub fn stack(charts: &[String]) -> String {
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"780\" height=\"{}\">\n",
        420 * charts.len()
    );
    for (i, c) in charts.iter().enumerate() {
        let inner = c.replacen("<svg ", &format!("<svg y=\"{}\" ", 420 * i), 1);
        s.push_str(&inner);
    }
    s.push_str("</svg>\n");
    s
}

/// A round upper bound for an axis.
pub fn nice(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * p)
}

/// A number with at most two decimals, without trailing zeros.
pub fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_points_and_axes() {
        let s = |label: &str, pts: Vec<(f64, f64, bool)>| Series {
            label: label.into(),
            colour: "#000".into(),
            dash: String::new(),
            points: pts,
        };
        let frame = Frame {
            title: "t",
            x_label: "N",
            y_label: "y",
            x_ticks: vec![4.0, 9.0],
            ..Default::default()
        };
        let svg = line_chart(
            &[
                s(
                    "a",
                    vec![(4.0, 1.0, false), (9.0, 2.0, true), (9.0, f64::NAN, false)],
                ),
                s("b", vec![(4.0, 3.0, false)]),
            ],
            &frame,
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(!svg.contains("NaN"), "{svg}");
        assert_eq!(svg.matches("fill=\"white\" stroke").count(), 1);
        assert!(svg.contains(">b</text>") && svg.contains(">9</text>"));
        // Linear x: the first tick at the left axis.
        assert!(svg.contains("<line x1=\"70.0\" x2=\"70.0\""), "{svg}");
        assert_eq!(nice(3.2), 5.0);
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(trim(2.50), "2.5");
        assert_eq!(stack(&[svg.clone(), svg]).matches("<svg").count(), 3);
    }

    #[test]
    fn bars_in_groups() {
        let bars = |label: &str, values: Vec<f64>| Bars {
            label: label.into(),
            colour: "#000".into(),
            values,
        };
        let svg = bar_chart(
            &["g1", "g2"],
            &[bars("a", vec![1.0, 4.0]), bars("b", vec![f64::NAN, 2.0])],
            "t",
            "y",
        );
        // Three bars plus the background and two legend keys.
        assert_eq!(svg.matches("<rect").count(), 6, "{svg}");
        assert!(!svg.contains("NaN"), "{svg}");
        assert!(svg.contains(">g2</text>") && svg.contains(">b</text>"));
        // The tallest bar reaches the top of the axis (nice(4) = 5: 4/5 of it).
        assert!(svg.contains(">4</text>"), "{svg}");
    }
}
