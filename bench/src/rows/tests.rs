use super::*;

fn fig(cpu: f64, loss: f64, joined: u64, twcc: u64) -> Value {
    json!({"server_cpu_us_per_packet": cpu, "loss_pct": loss, "joined": joined,
           "viewers_with_twcc": twcc, "tool_saturated": false, "errors": []})
}

fn run(server: &str, n: usize, f: Value) -> Run {
    (server.to_string(), n, f)
}

fn row<'a>(rows: &'a [Value], server: &str, n: u64) -> &'a Value {
    rows.iter()
        .find(|r| r["server"] == server && r["viewers"] == n)
        .unwrap_or_else(|| panic!("no row {server} {n}"))
}

/// Every planned repetition of the N where a server saturates is run and counted, the row
/// says it is saturated, and the larger N says why it was not run.
#[test]
fn saturated_rows_and_rows_not_run_say_so() {
    let runs = vec![
        run("fluo", 100, fig(11.0, 0.0, 100, 0)),
        run("fluo", 100, fig(12.0, 0.0, 100, 0)),
        run("fluo", 100, fig(13.0, 0.0, 100, 0)),
        run("janus-tuned", 100, fig(20.0, 0.0, 100, 100)),
        run("janus-tuned", 100, fig(40.0, 30.0, 90, 90)),
        run("janus-tuned", 100, fig(22.0, 0.0, 100, 100)),
    ];
    let servers = vec!["fluo".to_string(), "janus-tuned".to_string()];
    let rows = build(&runs, &servers, &[100, 200], 3, None);
    let j = row(&rows, "janus-tuned", 100);
    assert_eq!(j["reps_run"], 3);
    assert_eq!(j["reps_planned"], 3);
    assert_eq!(j["saturated"], true);
    assert_eq!(j["saturated_reps"], 1);
    assert_eq!(j["stopped_early"], false);
    assert_eq!(j["viewer_twcc"], "on");
    assert_eq!(j["figures"]["server_cpu_us_per_packet"], 22.0);
    assert_eq!(joined_cell(j), "90-100/100");
    assert_eq!(
        row(&rows, "janus-tuned", 200)["not_run"],
        "saturated at N=100"
    );
    let f = row(&rows, "fluo", 200);
    assert_eq!(
        f["not_run"], "not run",
        "no run, and nothing saturated before"
    );
    assert_eq!(row(&rows, "fluo", 100)["viewer_twcc"], "off");
    assert_eq!(joined_cell(row(&rows, "fluo", 100)), "100/100");

    let md = markdown(&rows, &ratios(&rows));
    assert!(md.contains("| viewer TWCC | reps | joined |"), "{md}");
    assert!(
        md.contains("| 100 | janus-tuned | on | 3/3 | 90-100/100 | 22.00 |"),
        "{md}"
    );
    assert!(
        md.contains("**saturated** in 1 of 3 reps: larger N not run |"),
        "{md}"
    );
    assert!(
        md.contains("| 200 | janus-tuned | ? | 0/3 | - | - |"),
        "{md}"
    );
    assert!(md.contains("**not run**: saturated at N=100 |"), "{md}");
    assert!(md.contains("| 100 | 0.55 (Janus saturated) |"), "{md}");
}

/// A repetition that failed is not a figure: the row counts it and says why.
#[test]
fn failed_repetitions_are_counted_apart() {
    let runs = vec![
        run("fluo", 10, fig(20.0, 0.0, 10, 0)),
        run(
            "fluo",
            10,
            json!({"viewers": 10, "errors": ["no publisher"]}),
        ),
        run("fluo", 10, fig(30.0, 0.0, 10, 0)),
    ];
    let rows = build(&runs, &["fluo".to_string()], &[10], 3, None);
    let r = &rows[0];
    assert_eq!(
        (r["reps_run"].clone(), r["reps_failed"].clone()),
        (json!(2), json!(1))
    );
    // Median of two: the mean of both, not the larger.
    assert_eq!(r["figures"]["server_cpu_us_per_packet"], 25.0);
    assert_eq!(r["saturated"], true, "a failed repetition stops larger N");
    assert!(
        note(r).contains("1 rep(s) failed (no publisher)"),
        "{}",
        note(r)
    );
}

/// The like-for-like ratio is the one against the Janus whose viewers decline TWCC.
#[test]
fn ratios_mark_the_like_for_like_one() {
    let runs = vec![
        run("fluo", 50, fig(10.0, 0.0, 50, 0)),
        run("janus-tuned", 50, fig(25.0, 0.0, 50, 50)),
        run("janus-tuned-no-twcc", 50, fig(20.0, 0.0, 50, 0)),
    ];
    let servers: Vec<String> = ["fluo", "janus-tuned-no-twcc", "janus-tuned"]
        .map(String::from)
        .to_vec();
    let rows = build(&runs, &servers, &[50], 1, None);
    let r = ratios(&rows);
    assert_eq!(r.len(), 2);
    let l = r
        .iter()
        .find(|x| x["like_for_like"] == true)
        .expect("like for like");
    assert_eq!(l["against"], "janus-tuned-no-twcc");
    assert_eq!(l["fluo_over_janus"], 0.5);
    let md = markdown(&rows, &r);
    assert!(
        md.contains("(like for like: the `-no-twcc` columns"),
        "{md}"
    );
    assert!(
        md.contains("| viewers | / janus-tuned-no-twcc | / janus-tuned |\n|---|---|---|\n| 50 | 0.50 | 0.40 |"),
        "{md}"
    );
}

/// The results file published with docs/perf.md before format 2 still reads: its medians
/// as stored, and what each row was (janus-packaged at 200: the worse of two runs; tuned
/// Janus at 500: one run with 468 of 500 viewers).
#[test]
fn reads_an_old_results_file() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/results/2026-11-27-3cc9b04.json"
    );
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("file")).expect("json");
    let (rows, notes) = from_file(&v).expect("old format");
    assert_eq!(notes.len(), 1);
    let p = row(&rows, "janus-packaged", 200);
    assert_eq!(
        (p["reps_run"].clone(), p["reps_planned"].clone()),
        (json!(2), json!(3))
    );
    assert_eq!(p["stopped_early"], true);
    assert_eq!(p["viewer_twcc"], Value::Null, "not recorded then");
    let loss = p["figures"]["loss_pct"].as_f64().expect("stored median");
    assert!((loss - 44.596).abs() < 0.01, "{loss}");
    let t = row(&rows, "janus-tuned", 500);
    assert_eq!(t["reps_run"], 1);
    assert_eq!(joined_cell(t), "468/500");
    assert_eq!(
        row(&rows, "janus-tuned", 1000)["not_run"],
        "saturated at N=500"
    );
    assert_eq!(
        row(&rows, "janus-packaged", 500)["not_run"],
        "saturated at N=200"
    );
    let md = markdown(&rows, &ratios(&rows));
    assert!(
        md.contains("| 500 | janus-tuned | ? | 1/3 | 468/500 | 37.20 |"),
        "{md}"
    );
    assert!(
        md.contains("stopped early: 1 of 3 planned reps run"),
        "{md}"
    );
    assert!(
        md.contains("| 200 | 0.44 | 0.20 (Janus saturated) |"),
        "{md}"
    );

    assert!(from_file(&json!({"format": 9})).is_err());
    assert!(from_file(&json!({"medians": []})).is_err());
}

/// A server that saturates in its first repetition at some N still runs the other planned
/// repetitions of that N (before, it skipped them, which made rows of one or two runs
/// printed as medians of three), and no larger N.
#[test]
fn saturation_skips_larger_n_only() {
    let mut sat = Saturation::default();
    let mut runs = vec![run("janus-packaged", 100, fig(30.0, 0.0, 100, 100))];
    assert!(sat.after(100, &runs).is_empty());
    // Repetition 1 of 200 loses 44 %: repetitions 2 and 3 of 200 are still run.
    runs.push(run("janus-packaged", 200, fig(55.0, 44.0, 200, 200)));
    assert_eq!(sat.not_run_at("janus-packaged", 200), None);
    runs.push(run("janus-packaged", 200, fig(50.0, 10.0, 200, 200)));
    runs.push(run("janus-packaged", 200, fig(52.0, 30.0, 200, 200)));
    assert_eq!(sat.after(200, &runs), vec!["janus-packaged".to_string()]);
    assert_eq!(sat.not_run_at("janus-packaged", 500), Some(200));
    assert_eq!(sat.not_run_at("fluo", 500), None);
    // Fewer than half joined is saturated too.
    runs.push(run("fluo", 500, fig(10.0, 0.0, 240, 0)));
    assert_eq!(sat.after(500, &runs), vec!["fluo".to_string()]);
    assert!(sat.after(500, &runs).is_empty(), "noted once");
    assert_eq!(
        sat.to_json(),
        json!([{"server": "janus-packaged", "at_viewers": 200},
               {"server": "fluo", "at_viewers": 500}])
    );
    let rows = build(
        &runs,
        &["janus-packaged".to_string()],
        &[100, 200, 500],
        3,
        None,
    );
    let r = row(&rows, "janus-packaged", 200);
    assert_eq!(
        (r["reps_run"].clone(), r["saturated_reps"].clone()),
        (json!(3), json!(2))
    );
    assert_eq!(r["figures"]["server_cpu_us_per_packet"], 52.0);
    assert_eq!(r["stopped_early"], false);
}

fn fig_of(viewer: &str, cpu: f64, tool: f64) -> Value {
    json!({"viewer": viewer, "server_cpu_us_per_packet": cpu, "loss_pct": 0.0, "joined": 100,
           "viewers_with_twcc": 0, "tool_saturated": false, "errors": [], "fps_p50": 30.0,
           "tool_cpu_us_per_packet": tool, "tool_cpu_pct": tool * 1.7,
           "viewer_threads_cpu_us_per_packet": tool / 2.0,
           "latency_ms_p50": 1.5, "latency_ms_p99": 4.0,
           "storm_joiners": 100, "storm_joined": 100, "storm_join_ms_p50": 40.0,
           "storm_join_ms_p99": 90.0, "storm_latency_ms_p50": 2.0,
           "storm_latency_ms_p99": 9.5, "storm_latency_ms_max": 12.0, "storm_loss_pct": 0.0})
}

/// Runs of both viewers make rows of their own, labelled by the viewer; ratios pair Fluo
/// and Janus rows of the same viewers; the Markdown shows the thin / full comparison and
/// the join storm's table.
#[test]
fn thin_and_full_viewer_rows_and_their_tables() {
    assert_eq!(label("fluo", "thin"), "fluo");
    assert_eq!(label("fluo", "full"), "fluo (full viewer)");
    assert_eq!(
        server_of("janus-tuned-no-twcc (full viewer)"),
        "janus-tuned-no-twcc"
    );
    let runs = vec![
        run("fluo", 100, fig_of("thin", 5.0, 2.0)),
        run("fluo (full viewer)", 100, fig_of("full", 5.5, 7.0)),
        run("janus-tuned-no-twcc", 100, fig_of("thin", 20.0, 2.1)),
        run(
            "janus-tuned-no-twcc (full viewer)",
            100,
            fig_of("full", 27.5, 7.5),
        ),
    ];
    let names: Vec<String> = runs.iter().map(|r| r.0.clone()).collect();
    let rows = build(&runs, &names, &[100], 1, None);
    assert_eq!(row(&rows, "fluo", 100)["viewer"], "thin");
    assert_eq!(row(&rows, "fluo (full viewer)", 100)["viewer"], "full");
    let r = ratios(&rows);
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r.iter().all(|x| x["like_for_like"] == true));
    let thin = r
        .iter()
        .find(|x| x["against"] == "janus-tuned-no-twcc")
        .expect("thin ratio");
    assert_eq!(thin["fluo_over_janus"], 0.25);
    let full = r
        .iter()
        .find(|x| x["against"] == "janus-tuned-no-twcc (full viewer)")
        .expect("full ratio");
    assert_eq!(full["fluo_over_janus"], 0.2);
    let md = markdown(&rows, &r);
    assert!(
        md.contains("| 100 | fluo | 5.00 / 5.50 | 0.00 / 0.00 | 30.0 / 30.0 | 1.50 / 1.50 | 4.00 / 4.00 | 2.00 / 7.00 | 1.00 / 3.50 | 3.4 / 11.9 |"),
        "{md}"
    );
    assert!(
        md.contains("| 100 | janus-tuned-no-twcc (full viewer) | 100 | 100 | 40.0 / 90.0 | 2.00 / 9.50 / 12.00 | 1.50 / 4.00 | 0.00 |"),
        "{md}"
    );
    assert!(md.contains("| tool CPU % | tool CPU-µs/packet |"), "{md}");
    // Rows of one viewer only: neither table pairs anything.
    let one = build(&runs[..1], &names[..1], &[100], 1, None);
    assert!(viewer_comparison(&one).is_empty());
    let mut no_storm = runs[0].clone();
    no_storm
        .2
        .as_object_mut()
        .map(|o| o.remove("storm_joiners"));
    assert!(storm_table(&build(&[no_storm], &names[..1], &[100], 1, None)).is_empty());
}

/// A format 2 file (full viewers, no storm) replots, its rows marked as full viewers; a
/// format 3 file's rows are taken as they are.
#[test]
fn reads_format_2_and_3_files() {
    let rows2 = build(
        &[run("fluo", 10, fig(20.0, 0.0, 10, 0))],
        &["fluo".to_string()],
        &[10],
        1,
        None,
    );
    let v = json!({"format": 2, "rows": rows2});
    let (rows, notes) = from_file(&v).expect("format 2");
    assert_eq!(rows[0]["viewer"], "full");
    assert!(notes[0].contains("full str0m peers"), "{notes:?}");
    let v = json!({"format": 3, "rows": [{"server": "fluo", "viewer": "thin"}]});
    let (rows, notes) = from_file(&v).expect("format 3");
    assert_eq!(rows[0]["viewer"], "thin");
    assert!(notes.is_empty());
}

/// A server that queues instead of dropping loses nothing but falls behind: Fluo at N=500 on
/// 2026-12-03 had 0 % loss, 22.7 fps and 2.7 s latency. Under 90 % of the feed's frame rate or
/// past 1 s of median latency, the repetition is saturated; at 28 fps and 40 ms it is not.
#[test]
fn a_repetition_that_falls_behind_without_loss_is_saturated() {
    let with = |fps: f64, latency: f64| {
        let mut f = fig(13.0, 0.0, 500, 0);
        f["fps_p50"] = json!(fps);
        f["latency_ms_p50"] = json!(latency);
        f
    };
    assert!(rep_saturated(&with(22.7, 2700.0), 500));
    assert!(rep_saturated(&with(22.7, 40.0), 500));
    assert!(rep_saturated(&with(30.0, 1500.0), 500));
    assert!(!rep_saturated(&with(28.0, 40.0), 500));
    assert!(!rep_saturated(&fig(13.0, 0.0, 500, 0), 500));
}

/// fluo-bwe is set against fluo of the same N and viewer (not against Janus, nor is it taken
/// for `fluo` in the Fluo / Janus ratios); the limited and unlimited groups get a table.
#[test]
fn bwe_rows_are_compared_with_fluo_and_groups_shown() {
    let mut on = fig(12.0, 0.0, 100, 100);
    on["limited_viewers"] = json!(33);
    on["limited_loss_pct"] = json!(40.0);
    on["unlimited_viewers"] = json!(67);
    on["unlimited_loss_pct"] = json!(0.0);
    let mut runs = vec![
        run("fluo", 100, fig(10.0, 0.0, 100, 0)),
        run("fluo-bwe", 100, on),
        run("fluo-bwe", 200, fig(30.0, 0.0, 200, 200)),
        run("janus-tuned", 100, fig(20.0, 0.0, 100, 100)),
    ];
    for r in &mut runs {
        r.2["viewer"] = json!("thin");
    }
    let servers: Vec<String> = ["fluo", "fluo-bwe", "janus-tuned"]
        .map(String::from)
        .to_vec();
    let rows = build(&runs, &servers, &[100, 200], 1, None);
    let r = bwe_ratios(&rows);
    assert_eq!(r.len(), 1, "no fluo row at 200: no ratio");
    assert_eq!(r[0]["viewers"], 100);
    assert!((r[0]["bwe_over_off"].as_f64().unwrap_or(0.0) - 1.2).abs() < 1e-9);
    let fj = ratios(&rows);
    assert!(fj.iter().all(|x| x["against"] == "janus-tuned"));
    assert_eq!(fj.len(), 1, "fluo-bwe is not a Fluo / Janus ratio");
    let md = markdown(&rows, &fj);
    assert!(md.contains("| 100 | thin | 1.20 |"), "{md}");
    assert!(
        md.contains("| 100 | fluo-bwe | limited | 33 | 40.00 |"),
        "{md}"
    );
    assert!(
        md.contains("| 100 | fluo-bwe | unlimited | 67 | 0.00 |"),
        "{md}"
    );
}

/// With `--fluo-base-bin`, `fluo-bwe-base` is set against `fluo-base` (the old binary's
/// estimate on / off), in a column beside `fluo-bwe` / `fluo`.
#[test]
fn the_base_binarys_bwe_rows_are_compared_with_fluo_base() {
    let mut runs = vec![
        run("fluo", 100, fig(10.0, 0.0, 100, 0)),
        run("fluo-base", 100, fig(10.0, 0.0, 100, 0)),
        run("fluo-bwe", 100, fig(12.0, 0.0, 100, 100)),
        run("fluo-bwe-base", 100, fig(15.0, 0.0, 100, 100)),
    ];
    for r in &mut runs {
        r.2["viewer"] = json!("thin");
    }
    let servers: Vec<String> = ["fluo", "fluo-base", "fluo-bwe", "fluo-bwe-base"]
        .map(String::from)
        .to_vec();
    let rows = build(&runs, &servers, &[100], 1, None);
    let r = bwe_ratios(&rows);
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[1]["on"].as_str(), r[1]["off"].as_str()),
        (Some("fluo-bwe-base"), Some("fluo-base"))
    );
    assert!((r[1]["bwe_over_off"].as_f64().unwrap_or(0.0) - 1.5).abs() < 1e-9);
    let md = markdown(&rows, &ratios(&rows));
    assert!(
        md.contains("| viewers | viewer | fluo-bwe / fluo | fluo-bwe-base / fluo-base |"),
        "{md}"
    );
    assert!(md.contains("| 100 | thin | 1.20 | 1.50 |"), "{md}");
}

/// Behind virtual links a third of the viewers lose most of the video: that is the links,
/// not the server; the saturation rule reads the other viewers' figures then.
#[test]
fn limited_viewers_loss_is_not_saturation() {
    let mut f = fig(10.0, 25.0, 60, 0);
    f["fps_p50"] = json!(30.0);
    assert!(rep_saturated(&f, 60), "25 % lost by all viewers");
    f["unlimited_loss_pct"] = json!(0.0);
    f["unlimited_fps_p50"] = json!(30.0);
    assert!(!rep_saturated(&f, 60));
    f["unlimited_loss_pct"] = json!(21.0);
    assert!(rep_saturated(&f, 60), "the others lost too");
}
