//! The rows of a report, one per (viewers, server) of the plan, and what each row is: how
//! many repetitions it has of how many planned, how many viewers joined, whether the server
//! was saturated, whether the viewers used TWCC, or why it was not run. Then the Markdown
//! table, the ratios Fluo / Janus, and the reading of results files, old ones included.

use crate::report::median;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Loss above which a repetition counts as saturated.
pub const SATURATION_LOSS_PCT: f64 = 20.0;

/// The rule, as the results file and the table state it.
pub const SATURATION_RULE: &str = "a repetition is saturated when the viewers lost more than \
20 % of the packets, fewer than half of them received media, the median viewer got under 90 % \
of the feed's 30 fps, the median latency passed 1 s, or it failed (with viewers behind virtual links, \
`--limit`, the loss, frame rate and latency of the others); every planned repetition of that N is \
still run, and the server is not run at larger N";

/// The feed's frame rate (bench/src/feed.rs).
const FEED_FPS: f64 = 30.0;
/// Saturated below this share of the feed's frame rate (median viewer)...
const SATURATION_FPS_SHARE: f64 = 0.9;
/// ... or above this median latency: a server that queues instead of dropping loses nothing.
const SATURATION_LATENCY_MS: f64 = 1000.0;

/// The results file format written by this version (older files have no `format`). Format 3
/// adds the viewer's implementation (`viewer`: thin or full) to runs and rows, the tool's CPU
/// per received packet and the join storm's figures; format 2 files had full viewers only.
pub const FORMAT: u64 = 3;

/// What a row label adds to the server's name when its viewers were full str0m peers.
const FULL_SUFFIX: &str = " (full viewer)";

/// The label of the rows of `server` measured with `viewer` viewers (`thin`, the default,
/// or `full`).
pub fn label(server: &str, viewer: &str) -> String {
    if viewer == "full" {
        format!("{server}{FULL_SUFFIX}")
    } else {
        server.to_string()
    }
}

/// The server's name in a row label.
fn server_of(label: &str) -> &str {
    label.strip_suffix(FULL_SUFFIX).unwrap_or(label)
}

/// Whether one repetition's figures meet the saturation rule. With viewers behind virtual
/// links (`--limit`), loss, frame rate and latency are the other viewers': what the links
/// do is not the server's saturation.
pub fn rep_saturated(fig: &Value, n: usize) -> bool {
    if fig.get("server_cpu_us_per_packet").is_none() {
        return true; // failed
    }
    let limited = fig.get("unlimited_loss_pct").is_some();
    let key = |k: &str| {
        if limited {
            format!("unlimited_{k}")
        } else {
            k.to_string()
        }
    };
    let loss = fig[key("loss_pct")].as_f64().unwrap_or(100.0);
    let joined = fig["joined"].as_u64().unwrap_or(0) as usize;
    let slow = fig[key("fps_p50")]
        .as_f64()
        .is_some_and(|f| f < SATURATION_FPS_SHARE * FEED_FPS);
    let late = fig[key("latency_ms_p50")]
        .as_f64()
        .is_some_and(|l| l > SATURATION_LATENCY_MS);
    loss > SATURATION_LOSS_PCT || joined * 2 < n || slow || late
}

/// Where each server saturated, and so which runs are not made.
#[derive(Debug, Default)]
pub struct Saturation(Vec<(String, usize)>);

impl Saturation {
    /// The N at which `server` saturated, if smaller than `n`: then it is not run at `n`.
    /// Never at the N where it saturated: every planned repetition of that N is run.
    pub fn not_run_at(&self, server: &str, n: usize) -> Option<usize> {
        self.0
            .iter()
            .find(|(s, at)| s == server && *at < n)
            .map(|s| s.1)
    }

    /// After every repetition of `n`: notes the servers that one of them saturated; returns
    /// those newly saturated.
    pub fn after(&mut self, n: usize, runs: &[Run]) -> Vec<String> {
        let mut new = vec![];
        for r in runs.iter().filter(|r| r.1 == n && rep_saturated(&r.2, n)) {
            if !self.0.iter().any(|s| s.0 == r.0) && !new.contains(&r.0) {
                new.push(r.0.clone());
            }
        }
        self.0.extend(new.iter().map(|s| (s.clone(), n)));
        new
    }

    /// For the results file.
    pub fn to_json(&self) -> Value {
        self.0
            .iter()
            .map(|(s, n)| json!({"server": s, "at_viewers": n}))
            .collect()
    }
}

/// One run as the results file keeps it: (server, viewers, figures).
pub type Run = (String, usize, Value);

/// The rows of `viewers` x `servers`. `stored` gives the figures of a row when a file
/// already has them (old files: kept as they were published); otherwise they are the
/// medians of the repetitions that produced figures.
pub fn build(
    runs: &[Run],
    servers: &[String],
    viewers: &[usize],
    planned: usize,
    stored: Option<&[Run]>,
) -> Vec<Value> {
    let mut rows: Vec<Value> = vec![];
    for &n in viewers {
        for server in servers {
            let reps: Vec<&Value> = runs
                .iter()
                .filter(|r| &r.0 == server && r.1 == n)
                .map(|r| &r.2)
                .collect();
            if reps.is_empty() {
                let at = rows
                    .iter()
                    .filter(|r| r["server"] == json!(server) && r["saturated"] == json!(true))
                    .filter_map(|r| r["viewers"].as_u64())
                    .min();
                rows.push(json!({
                    "server": server, "viewers": n, "reps_planned": planned, "reps_run": 0,
                    "viewer": if server.ends_with(FULL_SUFFIX) { "full" } else { "thin" },
                    "reps_failed": 0, "joined_per_rep": [], "saturated": false,
                    "saturated_reps": 0, "tool_saturated_reps": 0, "viewer_twcc": null,
                    "stopped_early": false, "errors": [], "figures": null,
                    "not_run": match at {
                        Some(at) => format!("saturated at N={at}"),
                        None => "not run".to_string(),
                    },
                }));
                continue;
            }
            let ok: Vec<Value> = reps
                .iter()
                .filter(|f| f.get("server_cpu_us_per_packet").is_some())
                .map(|f| (*f).clone())
                .collect();
            let saturated_reps = reps.iter().filter(|f| rep_saturated(f, n)).count();
            let errors: Vec<Value> = reps
                .iter()
                .filter_map(|f| f["errors"].as_array()?.first().cloned())
                .take(3)
                .collect();
            let twcc: Vec<Option<bool>> = ok
                .iter()
                .map(|f| {
                    let with = f["viewers_with_twcc"].as_u64()?;
                    let joined = f["joined"].as_u64()?;
                    match with {
                        0 => Some(false),
                        w if w == joined => Some(true),
                        _ => None,
                    }
                })
                .collect();
            let viewer_twcc =
                if ok.is_empty() || ok.iter().any(|f| f.get("viewers_with_twcc").is_none()) {
                    Value::Null
                } else if twcc.iter().all(|t| *t == Some(true)) {
                    json!("on")
                } else if twcc.iter().all(|t| *t == Some(false)) {
                    json!("off")
                } else {
                    json!("mixed")
                };
            let figures = stored
                .and_then(|st| st.iter().find(|m| &m.0 == server && m.1 == n))
                .map(|m| m.2.clone())
                .unwrap_or_else(|| {
                    if ok.is_empty() {
                        Value::Null
                    } else {
                        median(&ok)
                    }
                });
            // Runs before format 3 had full str0m viewers and did not say so.
            let viewer = reps
                .iter()
                .find_map(|f| f["viewer"].as_str())
                .unwrap_or("full");
            rows.push(json!({
                "server": server,
                "viewers": n,
                "viewer": viewer,
                "reps_planned": planned,
                "reps_run": ok.len(),
                "reps_failed": reps.len() - ok.len(),
                "joined_per_rep": ok.iter().map(|f| f["joined"].as_u64().unwrap_or(0)).collect::<Vec<_>>(),
                "saturated": saturated_reps > 0,
                "saturated_reps": saturated_reps,
                "tool_saturated_reps": ok.iter().filter(|f| f["tool_saturated"] == json!(true)).count(),
                "viewer_twcc": viewer_twcc,
                // Repetitions skipped after a saturated one (what the rule did before
                // format 2).
                "stopped_early": reps.len() < planned && saturated_reps > 0,
                "errors": errors,
                "not_run": null,
                "figures": figures,
            }));
        }
    }
    rows
}

/// Whether a server's viewers declined TWCC, going by its name (Fluo declines it for
/// viewers since 56ec72c; older runs of Fluo did not, which their files do not record).
fn like_for_like(server: &str) -> bool {
    server_of(server).ends_with("-no-twcc")
}

/// Fluo's CPU per packet over each Janus row's, per N, among rows of the same viewers.
pub fn ratios(rows: &[Value]) -> Vec<Value> {
    let cpu = |r: &Value| r["figures"]["server_cpu_us_per_packet"].as_f64();
    let name = |r: &Value| server_of(r["server"].as_str().unwrap_or_default()).to_string();
    let mut out = vec![];
    for fluo in rows.iter().filter(|r| name(r) == "fluo") {
        let Some(f) = cpu(fluo) else { continue };
        for j in rows.iter().filter(|r| {
            r["viewers"] == fluo["viewers"]
                && r["viewer"] == fluo["viewer"]
                && name(r).starts_with("janus")
        }) {
            let Some(x) = cpu(j).filter(|x| *x > 0.0) else {
                continue;
            };
            let server = j["server"].as_str().unwrap_or_default();
            out.push(json!({
                "viewers": fluo["viewers"],
                "against": server,
                "fluo_over_janus": f / x,
                "like_for_like": like_for_like(server),
                "janus_saturated": j["saturated"],
                "fluo_saturated": fluo["saturated"],
            }));
        }
    }
    out
}

fn cell(v: &Value, key: &str, digits: usize) -> String {
    v[key]
        .as_f64()
        .map_or("-".into(), |x| format!("{x:.digits$}"))
}

/// "N/N", or the fewest and most viewers that joined over the repetitions.
fn joined_cell(r: &Value) -> String {
    let n = r["viewers"].as_u64().unwrap_or(0);
    let j: Vec<u64> = r["joined_per_rep"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    match (j.iter().min(), j.iter().max()) {
        (Some(lo), Some(hi)) if lo == hi => format!("{lo}/{n}"),
        (Some(lo), Some(hi)) => format!("{lo}-{hi}/{n}"),
        _ => "-".into(),
    }
}

/// What a row is, beyond its figures.
fn note(r: &Value) -> String {
    if let Some(why) = r["not_run"].as_str() {
        return format!("**not run**: {why}");
    }
    let mut notes = vec![];
    let (run, failed) = (
        r["reps_run"].as_u64().unwrap_or(0),
        r["reps_failed"].as_u64().unwrap_or(0),
    );
    let tried = run + failed;
    if r["saturated"] == json!(true) {
        notes.push(format!(
            "**saturated** in {} of {tried} reps: larger N not run",
            r["saturated_reps"]
        ));
    }
    if r["stopped_early"] == json!(true) {
        notes.push(format!(
            "stopped early: {tried} of {} planned reps run, the rest skipped once saturated",
            r["reps_planned"]
        ));
    }
    if failed > 0 {
        let first = r["errors"]
            .as_array()
            .and_then(|e| e.first())
            .and_then(Value::as_str)
            .unwrap_or_default();
        let first: String = first.chars().take(80).collect();
        notes.push(format!("{failed} rep(s) failed ({first})"));
    }
    let tool = r["tool_saturated_reps"].as_u64().unwrap_or(0);
    if tool > 0 {
        notes.push(format!("tool CPU > 85 % in {tool} of {run} reps"));
    }
    notes.join("; ")
}

/// The Markdown table of the rows, then the ratios Fluo / Janus.
pub fn markdown(rows: &[Value], ratios: &[Value]) -> String {
    let mut t = String::from(
        "| viewers | server | viewer TWCC | reps | joined | CPU-µs/packet | server CPU % | loss % | fps | join p50/p99 ms | latency p50/p99 ms | RSS/viewer KiB | threads | tool CPU % | tool CPU-µs/packet | idle CPU % | note |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let m = &r["figures"];
        let twcc = r["viewer_twcc"].as_str().unwrap_or("?");
        let _ = writeln!(
            t,
            "| {} | {} | {twcc} | {}/{} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} | {} | {} | {} | {} | {} |",
            r["viewers"],
            r["server"].as_str().unwrap_or_default(),
            r["reps_run"],
            r["reps_planned"],
            joined_cell(r),
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
            cell(m, "tool_cpu_us_per_packet", 2),
            cell(m, "idle_cpu_pct_2s_after", 2),
            note(r),
        );
    }
    t.push_str(
        "\nreps: repetitions with figures / planned; joined: viewers that received media / N \
         (fewest-most over the repetitions); viewer TWCC: whether the viewers' negotiated \
         answers carried transport-wide congestion control (? = not recorded); tool CPU: the \
         load tool's own process, % of its core and µs per packet the viewers received \
         (flagged above 85 %); figures: median over the repetitions (mean of the middle two \
         when even). Viewers: thin (str0m for ICE and DTLS only, then decrypt, count and \
         their own RTCP) unless the server's name says \"(full viewer)\" (str0m sessions). \
         Saturation: ",
    );
    t.push_str(SATURATION_RULE);
    t.push_str(".\n");
    t.push_str(&storm_table(rows));
    t.push_str(&viewer_comparison(rows));
    t.push_str(&bwe_table(&bwe_ratios(rows)));
    t.push_str(&link_table(rows));
    // In the order of the rows: each Janus configuration without TWCC, then with it.
    let mut against: Vec<&str> = vec![];
    for a in ratios.iter().filter_map(|r| r["against"].as_str()) {
        if !against.contains(&a) {
            against.push(a);
        }
    }
    if against.is_empty() {
        return t;
    }
    if against.iter().any(|a| like_for_like(a)) {
        t.push_str("\nFluo / Janus, CPU per packet (like for like: the `-no-twcc` columns, whose viewers decline TWCC as Fluo's do):\n\n| viewers |");
    } else {
        t.push_str("\nFluo / Janus, CPU per packet (Janus's viewers with TWCC: no like-for-like column):\n\n| viewers |");
    }
    for a in &against {
        let _ = write!(t, " / {a} |");
    }
    t.push_str("\n|---|");
    t.push_str(&"---|".repeat(against.len()));
    t.push('\n');
    let mut ns: Vec<u64> = ratios
        .iter()
        .filter_map(|r| r["viewers"].as_u64())
        .collect();
    ns.dedup();
    for n in ns {
        let _ = write!(t, "| {n} |");
        for a in &against {
            let r = ratios
                .iter()
                .find(|r| r["viewers"] == json!(n) && r["against"] == json!(a));
            let c = r.map_or("-".to_string(), |r| {
                let mut c = format!("{:.2}", r["fluo_over_janus"].as_f64().unwrap_or(f64::NAN));
                if r["janus_saturated"] == json!(true) {
                    c.push_str(" (Janus saturated)");
                }
                if r["fluo_saturated"] == json!(true) {
                    c.push_str(" (Fluo saturated)");
                }
                c
            });
            let _ = write!(t, " {c} |");
        }
        t.push('\n');
    }
    t
}

/// "Forwarding while viewers join": per row with a join storm, the latency of the packets
/// of the viewers already in while more joined at once, beside their latency in the steady
/// window; the joins' own times. Empty when no row has one.
pub fn storm_table(rows: &[Value]) -> String {
    let with: Vec<&Value> = rows
        .iter()
        .filter(|r| r["figures"]["storm_joiners"].is_number())
        .collect();
    if with.is_empty() {
        return String::new();
    }
    let mut t = String::from(
        "\nForwarding while viewers join: the viewers of the row watch; then `joiners` more \
         join at once (create + negotiate, as above). Latency of the packets of those already \
         in, from the first join's clock until every joiner had media, beside their latency in \
         the window before:\n\n\
         | viewers in | server | joiners | joined | join p50/p99 ms | latency while joining p50/p99/max ms | latency before p50/p99 ms | loss while joining % |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in with {
        let m = &r["figures"];
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} / {} | {} / {} / {} | {} / {} | {} |",
            r["viewers"],
            r["server"].as_str().unwrap_or_default(),
            cell(m, "storm_joiners", 0),
            cell(m, "storm_joined", 0),
            cell(m, "storm_join_ms_p50", 1),
            cell(m, "storm_join_ms_p99", 1),
            cell(m, "storm_latency_ms_p50", 2),
            cell(m, "storm_latency_ms_p99", 2),
            cell(m, "storm_latency_ms_max", 2),
            cell(m, "latency_ms_p50", 2),
            cell(m, "latency_ms_p99", 2),
            cell(m, "storm_loss_pct", 2),
        );
    }
    t
}

/// "Thin and full viewers": for each server and N measured with both, the server's figures
/// as each kind of viewer saw them and what each cost the tool. Empty without such pairs.
pub fn viewer_comparison(rows: &[Value]) -> String {
    let mut t = String::new();
    for full in rows.iter().filter(|r| r["viewer"] == "full") {
        let name = full["server"].as_str().unwrap_or_default();
        let Some(thin) = rows.iter().find(|r| {
            r["viewers"] == full["viewers"]
                && r["viewer"] == "thin"
                && r["server"].as_str() == Some(server_of(name))
        }) else {
            continue;
        };
        let (a, b) = (&thin["figures"], &full["figures"]);
        if !(a.is_object() && b.is_object()) {
            continue;
        }
        if t.is_empty() {
            t.push_str(
                "\nThin and full viewers, the same server and N (thin / full): what the server \
                 did as each measured it, and what each cost the tool:\n\n\
                 | viewers | server | CPU-µs/packet | loss % | fps | latency p50 ms | latency p99 ms | tool CPU-µs per received packet | its viewers' threads | tool CPU % |\n\
                 |---|---|---|---|---|---|---|---|---|---|\n",
            );
        }
        let pair = |k: &str, d: usize| format!("{} / {}", cell(a, k, d), cell(b, k, d));
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            full["viewers"],
            server_of(name),
            pair("server_cpu_us_per_packet", 2),
            pair("loss_pct", 2),
            pair("fps_p50", 1),
            pair("latency_ms_p50", 2),
            pair("latency_ms_p99", 2),
            pair("tool_cpu_us_per_packet", 2),
            pair("viewer_threads_cpu_us_per_packet", 2),
            pair("tool_cpu_pct", 1),
        );
    }
    t
}

/// `fluo-bwe` over `fluo`, CPU per packet, per N and viewer: the same binary with the
/// bandwidth estimate on and off, the same viewers (TWCC feedback only with it on); and
/// `fluo-bwe-base` over `fluo-base` likewise, for the `--fluo-base-bin` binary.
pub fn bwe_ratios(rows: &[Value]) -> Vec<Value> {
    let cpu = |r: &Value| r["figures"]["server_cpu_us_per_packet"].as_f64();
    let name = |r: &Value| server_of(r["server"].as_str().unwrap_or_default()).to_string();
    let mut out = vec![];
    for (on_name, off_name) in [("fluo-bwe", "fluo"), ("fluo-bwe-base", "fluo-base")] {
        for on in rows.iter().filter(|r| name(r) == on_name) {
            let Some(x) = cpu(on) else { continue };
            let off = rows.iter().find(|r| {
                name(r) == off_name && r["viewers"] == on["viewers"] && r["viewer"] == on["viewer"]
            });
            let Some((off, y)) = off.and_then(|r| Some((r, cpu(r).filter(|y| *y > 0.0)?))) else {
                continue;
            };
            out.push(json!({
                "viewers": on["viewers"],
                "viewer": on["viewer"],
                "on": on_name,
                "off": off_name,
                "bwe_over_off": x / y,
                "bwe_saturated": on["saturated"],
                "off_saturated": off["saturated"],
            }));
        }
    }
    out
}

/// The table of [`bwe_ratios`], a column per pair; empty without a pair.
fn bwe_table(ratios: &[Value]) -> String {
    if ratios.is_empty() {
        return String::new();
    }
    let pair = |r: &Value| {
        format!(
            "{} / {}",
            r["on"].as_str().unwrap_or("?"),
            r["off"].as_str().unwrap_or("?")
        )
    };
    let mut pairs: Vec<String> = ratios.iter().map(pair).collect();
    pairs.dedup();
    let mut t = format!(
        "\nBandwidth estimate on / off, Fluo's CPU per packet (`fluo-bwe` / `fluo`: the same \
         binary, `--bwe on` against the default off; the viewers send TWCC feedback only to \
         `fluo-bwe`, whose answers keep it; `-base`: the `--fluo-base-bin` binary):\n\n\
         | viewers | viewer | {} |\n|---|---|{}\n",
        pairs.join(" | "),
        "---|".repeat(pairs.len())
    );
    let mut keys: Vec<(Value, String)> = vec![];
    for r in ratios {
        let k = (
            r["viewers"].clone(),
            r["viewer"].as_str().unwrap_or("?").to_string(),
        );
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for (viewers, viewer) in keys {
        let _ = write!(t, "| {viewers} | {viewer} |");
        for p in &pairs {
            let r = ratios.iter().find(|r| {
                r["viewers"] == viewers && r["viewer"] == viewer.as_str() && pair(r) == *p
            });
            let mut c = r.map_or("-".into(), |r| {
                format!("{:.2}", r["bwe_over_off"].as_f64().unwrap_or(f64::NAN))
            });
            if r.is_some_and(|r| {
                r["bwe_saturated"] == json!(true) || r["off_saturated"] == json!(true)
            }) {
                c.push_str(" (saturated)");
            }
            let _ = write!(t, " {c} |");
        }
        t.push('\n');
    }
    t
}

/// "Limited viewers" (`--limit`): per row, the viewers behind a virtual link and the others,
/// each group's loss, frame rate and latency. Empty without such rows.
fn link_table(rows: &[Value]) -> String {
    let mut t = String::new();
    for r in rows
        .iter()
        .filter(|r| r["figures"]["limited_viewers"].is_number())
    {
        if t.is_empty() {
            t.push_str(
                "\nViewers behind a virtual link (`--limit`) and the others, per row: \
                 viewers in the group (median), loss % after repair, fps (median viewer), \
                 latency p50 / p99 ms (to the virtual arrival), datagrams the links dropped:\n\n\
                 | viewers | server | group | in it | loss % | fps | latency p50 / p99 ms | link drops |\n\
                 |---|---|---|---|---|---|---|---|\n",
            );
        }
        let m = &r["figures"];
        for g in ["limited", "unlimited"] {
            let k = |key: &str| format!("{g}_{key}");
            let _ = writeln!(
                t,
                "| {} | {} | {g} | {} | {} | {} | {} / {} | {} |",
                r["viewers"],
                r["server"].as_str().unwrap_or_default(),
                cell(m, &k("viewers"), 0),
                cell(m, &k("loss_pct"), 2),
                cell(m, &k("fps_p50"), 1),
                cell(m, &k("latency_ms_p50"), 2),
                cell(m, &k("latency_ms_p99"), 2),
                cell(m, &k("link_dropped"), 0),
            );
        }
    }
    t
}

/// The rows with figures, as the plots take them: (server, viewers, figures).
pub fn plotted(rows: &[Value]) -> Vec<Run> {
    rows.iter()
        .filter(|r| r["figures"].is_object())
        .filter_map(|r| {
            Some((
                r["server"].as_str()?.to_string(),
                r["viewers"].as_u64()? as usize,
                r["figures"].clone(),
            ))
        })
        .collect()
}

/// The rows of a results file, and what the reader should know of it. Files before format
/// 2 have no rows: they are rebuilt from their runs, with the medians as the file stored
/// them (with two repetitions, the larger value then).
pub fn from_file(v: &Value) -> Result<(Vec<Value>, Vec<String>), String> {
    if v["format"].as_u64() == Some(FORMAT) {
        let rows = v["rows"]
            .as_array()
            .cloned()
            .ok_or("a results file without rows")?;
        return Ok((rows, vec![]));
    }
    if v["format"].as_u64() == Some(2) {
        let mut rows = v["rows"]
            .as_array()
            .cloned()
            .ok_or("a format 2 results file without rows")?;
        for r in &mut rows {
            r["viewer"] = json!("full");
        }
        let note = "results file of format 2: its viewers were full str0m peers (str0m's receive \
                    path for every packet, about 6-8 µs of the tool's CPU each), the latency \
                    clock stopped when the tool read the packet, and it had no join storm"
            .to_string();
        return Ok((rows, vec![note]));
    }
    if let Some(f) = v["format"].as_u64() {
        return Err(format!(
            "results file format {f}: this fluo-bench reads formats up to {FORMAT}"
        ));
    }
    let runs: Vec<Run> = v["runs"]
        .as_array()
        .ok_or("neither rows nor runs in this file: not a fluo-bench results file")?
        .iter()
        .filter_map(|r| {
            Some((
                r["server"].as_str()?.to_string(),
                r["viewers"].as_u64()? as usize,
                r["figures"].clone(),
            ))
        })
        .collect();
    let stored: Vec<Run> = v["medians"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            Some((
                m["server"].as_str()?.to_string(),
                m["viewers"].as_u64()? as usize,
                m["figures"].clone(),
            ))
        })
        .collect();
    let mut servers: Vec<String> = vec![];
    let mut viewers: Vec<usize> = vec![];
    for r in runs.iter().chain(&stored) {
        if !servers.contains(&r.0) {
            servers.push(r.0.clone());
        }
        if !viewers.contains(&r.1) {
            viewers.push(r.1);
        }
    }
    viewers.sort_unstable();
    let planned = v["plan"]["repetitions"].as_u64().unwrap_or(3) as usize;
    let rows = build(&runs, &servers, &viewers, planned, Some(&stored));
    let notes = vec![
        "results file of the older format: the medians are as it stored them (with two \
         repetitions, the larger value); a saturated server skipped its remaining \
         repetitions; Janus's HTTP client opened a TCP connection per request inside the \
         join clock; Janus's viewers used TWCC, and whether Fluo's did depends on its commit \
         (declined for viewers from 56ec72c on)"
            .to_string(),
    ];
    Ok((rows, notes))
}

#[cfg(test)]
mod tests;
