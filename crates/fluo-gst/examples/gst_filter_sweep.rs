//! The GStreamerFilter sweep (`make gst-filter-sweep`): for every factory of the default
//! list ([`fluo_gst::TRANSFORMS`]) and every writable property that is not a string, runs
//! three buffers through `TESTSRC num-buffers=3 ! CONVERT ! FACTORY prop=VALUE ! fakesink` in
//! a child gst-launch-1.0 (10 s timeout, address space capped at 2 GiB), with VALUE at the
//! property's minimum, maximum and values near the edges (0, -1, 1, 2, 3, 4, ...), every
//! enum value and both booleans, and reports what the server could not survive: death by a
//! signal, a timeout (a hang), a memory blow-up (allocation failure under the cap, or more
//! than 1 GiB resident) or output on stdout (a per-buffer dump).
//!
//! Then checks each finding against Fluo's policy: a finding whose command the policy still
//! accepts is printed as `ACCEPTED` and makes the sweep fail.
//!
//! Usage: `cargo run -p fluo-gst --example gst_filter_sweep -- [FACTORY...]` (env
//! SWEEP_JOBS, default 2). Output: one line per finding, then a Markdown table.

use gstreamer as gst;
use gstreamer::prelude::*;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::{Arc, Mutex};

const TIMEOUT_S: u32 = 10;
const AS_LIMIT: u64 = 2 << 30;
const RSS_LIMIT_KIB: u64 = 1 << 20;
/// Bytes on stdout a run may print (gst-launch -q prints nothing of its own).
const STDOUT_LIMIT: usize = 4096;

#[derive(Clone)]
struct Case {
    factory: String,
    audio: bool,
    /// Property and value; None: the factory with its defaults (the baseline).
    prop: Option<(String, String)>,
}

struct Outcome {
    case: Case,
    verdict: Option<String>,
}

fn ints(min: i128, max: i128, extra: &[f64]) -> Vec<String> {
    let mut v: Vec<i128> = extra.iter().map(|x| *x as i128).collect();
    v.extend([
        min,
        max,
        0,
        -1,
        1,
        2,
        3,
        4,
        min.saturating_add(1),
        max.saturating_sub(1),
        1000,
        100_000,
    ]);
    v.retain(|x| *x >= min && *x <= max);
    v.sort();
    v.dedup();
    v.into_iter().map(|x| x.to_string()).collect()
}

fn floats(min: f64, max: f64, extra: &[f64]) -> Vec<String> {
    let mut v: Vec<f64> = extra.to_vec();
    v.extend([min, max, 0.0, -1.0, 1.0, 1e9, -1e9]);
    v.retain(|x| *x >= min && *x <= max);
    v.sort_by(|a, b| a.total_cmp(b));
    v.dedup();
    v.into_iter().map(|x| format!("{x:e}")).collect()
}

/// The values to try for `factory`'s `p` (and the edges of Fluo's bound on it, if any);
/// None for a property the sweep does not cover (strings, objects, caps: caps are the runtime
/// guard's business).
fn values(factory: &str, p: &glib::ParamSpec) -> Option<Vec<String>> {
    let extra: Vec<f64> = fluo_gst::BOUNDS
        .iter()
        .filter(|b| b.factory == factory && b.property == p.name())
        .flat_map(|b| [b.min, b.max])
        .collect();
    macro_rules! num {
        ($t:ty, $f:ident, $conv:ty) => {
            if let Some(s) = p.downcast_ref::<$t>() {
                return Some($f(s.minimum() as $conv, s.maximum() as $conv, &extra));
            }
        };
    }
    num!(glib::ParamSpecInt, ints, i128);
    num!(glib::ParamSpecUInt, ints, i128);
    num!(glib::ParamSpecInt64, ints, i128);
    num!(glib::ParamSpecUInt64, ints, i128);
    num!(glib::ParamSpecLong, ints, i128);
    num!(glib::ParamSpecULong, ints, i128);
    num!(glib::ParamSpecChar, ints, i128);
    num!(glib::ParamSpecUChar, ints, i128);
    num!(glib::ParamSpecFloat, floats, f64);
    num!(glib::ParamSpecDouble, floats, f64);
    if p.downcast_ref::<glib::ParamSpecBoolean>().is_some() {
        return Some(vec!["true".into(), "false".into()]);
    }
    if let Some(e) = p.downcast_ref::<glib::ParamSpecEnum>() {
        return Some(
            e.enum_class()
                .values()
                .iter()
                .map(|v| v.nick().to_string())
                .collect(),
        );
    }
    if let Some(f) = p.downcast_ref::<glib::ParamSpecFlags>() {
        let c = f.flags_class();
        let mut v: Vec<String> = c.values().iter().map(|v| v.nick().to_string()).collect();
        v.push(
            c.values()
                .iter()
                .map(|v| v.nick())
                .collect::<Vec<_>>()
                .join("+"),
        );
        return Some(v);
    }
    if let Some(f) = p.downcast_ref::<gst::ParamSpecFraction>() {
        let (a, b) = (f.minimum(), f.maximum());
        return Some(vec![
            format!("{}/{}", a.numer(), a.denom()),
            format!("{}/{}", b.numer(), b.denom()),
        ]);
    }
    None
}

fn run(case: &Case) -> Option<String> {
    let (src, conv) = if case.audio {
        ("audiotestsrc", "audioconvert")
    } else {
        ("videotestsrc", "videoconvert")
    };
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", &TIMEOUT_S.to_string(), "prlimit"])
        .arg(format!("--as={AS_LIMIT}"))
        .args(["/usr/bin/time", "-f", "FLUO_SWEEP_MAXRSS=%M"])
        .args(["gst-launch-1.0", "-q", src, "num-buffers=3", "!", conv, "!"])
        .arg(&case.factory);
    if let Some((p, v)) = &case.prop {
        cmd.arg(format!("{p}={v}"));
    }
    cmd.args(["!", "fakesink"]);
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => return Some(format!("cannot run: {e}")),
    };
    let err = String::from_utf8_lossy(&out.stderr);
    let rss: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("FLUO_SWEEP_MAXRSS="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let signal = err
        .lines()
        .find_map(|l| l.strip_prefix("Command terminated by signal "))
        .map(str::trim);
    let oom = err.contains("failed to allocate")
        || err.contains("Insufficient memory")
        || err.contains("std::bad_alloc")
        || err.contains("Cannot allocate memory");
    // timeout signals its whole process group, itself included.
    let killed = out.status.code() == Some(137) || out.status.signal() == Some(9);
    if killed && rss == 0 {
        return Some(format!("timeout ({TIMEOUT_S} s, killed)"));
    }
    if oom {
        return Some(format!(
            "memory: allocation failed under the {} GiB cap{}",
            AS_LIMIT >> 30,
            signal.map(|s| format!(", signal {s}")).unwrap_or_default()
        ));
    }
    if let Some(s) = signal {
        let why = err
            .lines()
            .rev()
            .find(|l| l.contains("what()") || l.contains("error:") || l.contains("ERROR"))
            .map(|l| format!(": {}", l.chars().take(120).collect::<String>()))
            .unwrap_or_default();
        return Some(format!("signal {s}{why}"));
    }
    if rss > RSS_LIMIT_KIB {
        return Some(format!("memory: {} MiB resident", rss >> 10));
    }
    if out.stdout.len() > STDOUT_LIMIT {
        return Some(format!("stdout: {} bytes for 3 buffers", out.stdout.len()));
    }
    None
}

fn main() {
    gst::init().expect("GStreamer");
    let only: Vec<String> = std::env::args().skip(1).collect();
    let jobs: usize = std::env::var("SWEEP_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut cases = vec![];
    for &name in fluo_gst::TRANSFORMS {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let Some(f) = gst::ElementFactory::find(name).and_then(|f| f.load().ok()) else {
            eprintln!("{name}: not installed");
            continue;
        };
        let audio = f.static_pad_templates().iter().any(|t| {
            t.direction() == gst::PadDirection::Sink && {
                let c = t.caps().to_string();
                c.contains("audio/") && !c.contains("video/")
            }
        });
        let Some(class) = glib::Class::<gst::Element>::from_type(f.element_type()) else {
            continue;
        };
        cases.push(Case {
            factory: name.into(),
            audio,
            prop: None,
        });
        for p in class.list_properties().iter() {
            let fl = p.flags();
            if !fl.contains(glib::ParamFlags::WRITABLE) || ["name", "parent"].contains(&p.name()) {
                continue;
            }
            for v in values(name, p).into_iter().flatten() {
                cases.push(Case {
                    factory: name.into(),
                    audio,
                    prop: Some((p.name().to_string(), v)),
                });
            }
        }
    }
    eprintln!("{} runs, {jobs} at a time", cases.len());
    let queue = Arc::new(Mutex::new(cases.into_iter().rev().collect::<Vec<_>>()));
    let results = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let workers: Vec<_> = (0..jobs.max(1))
        .map(|_| {
            let (queue, results) = (queue.clone(), results.clone());
            std::thread::spawn(move || loop {
                let Some(case) = queue.lock().expect("queue").pop() else {
                    break;
                };
                let verdict = run(&case);
                if let Some(v) = &verdict {
                    let (p, val) = case.prop.clone().unwrap_or_default();
                    eprintln!("FINDING {} {p}={val}: {v}", case.factory);
                }
                results
                    .lock()
                    .expect("results")
                    .push(Outcome { case, verdict });
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let mut results = std::mem::take(&mut *results.lock().expect("results"));
    results.sort_by(|a, b| (&a.case.factory, &a.case.prop).cmp(&(&b.case.factory, &b.case.prop)));
    let runs = results.len();
    let mut accepted = 0;
    println!("| factory | property=value | outcome in gst-launch | Fluo's policy |");
    println!("|---|---|---|---|");
    for o in results.iter().filter(|o| o.verdict.is_some()) {
        let (p, v) = o.case.prop.clone().unwrap_or_default();
        let command = if p.is_empty() {
            o.case.factory.clone()
        } else {
            format!("{} {p}={v}", o.case.factory)
        };
        let refused = fluo_gst::fuzzing::gst_filter_check(None, &command).map(|_| ());
        let verdict_policy = match refused {
            Err(e) => format!("refused: {}", e.chars().take(90).collect::<String>()),
            Ok(()) => {
                accepted += 1;
                "ACCEPTED".to_string()
            }
        };
        println!(
            "| {} | {} | {} | {} |",
            o.case.factory,
            if p.is_empty() {
                "(defaults)".to_string()
            } else {
                format!("{p}={v}")
            },
            o.verdict.as_deref().unwrap_or_default().replace('|', "/"),
            verdict_policy.replace('|', "/")
        );
    }
    let findings = results.iter().filter(|o| o.verdict.is_some()).count();
    println!("\n{runs} runs, {findings} findings, {accepted} still accepted by the default policy");
    if accepted > 0 {
        std::process::exit(1);
    }
}
