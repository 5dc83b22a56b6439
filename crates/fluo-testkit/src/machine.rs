//! What a bench's results say about the machine they were measured on: its cores, kernel,
//! load average, GStreamer and the commit measured.

use serde_json::{json, Value};
use std::process::Command;

/// The load average (1, 5, 15 minutes), as `uptime` shows it.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The first line of `program args`' standard output, trimmed ("unknown" when it fails).
fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(String::from)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The checkout's commit (7 digits), `-dirty` when files git tracks are changed, as it was at
/// the process's first call: a bench calls it before it writes its plots and results (which
/// are tracked files), and every later call gives the same.
pub fn commit() -> String {
    static AT_START: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    AT_START
        .get_or_init(|| {
            let c = first_line("git", &["rev-parse", "--short=7", "HEAD"]);
            let dirty = Command::new("git")
                .args(["status", "--porcelain", "--untracked-files=no"])
                .output()
                .is_ok_and(|o| !o.stdout.is_empty());
            match dirty {
                true => format!("{c}-dirty"),
                false => c,
            }
        })
        .clone()
}

/// The facts, with the load average `load_start` taken when the bench started and the
/// current one as its end.
pub fn facts(load_start: &str) -> Value {
    let gst = Command::new("gst-launch-1.0")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.starts_with("GStreamer "))
                .map(String::from)
        })
        .unwrap_or_else(|| "unknown".into());
    json!({
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": first_line("uname", &["-r"]),
        "gstreamer": gst,
        "commit": commit(),
        "load_start": load_start,
        "load_end": load(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_facts_name_the_machine() {
        let f = super::facts("1.00 2.00 3.00");
        assert!(f["nproc"].as_u64().is_some_and(|n| n >= 1), "{f}");
        assert!(f["kernel"].as_str().is_some_and(|k| k != "unknown"), "{f}");
        assert!(
            f["gstreamer"]
                .as_str()
                .is_some_and(|g| g.starts_with("GStreamer 1.")),
            "{f}"
        );
        assert_eq!(f["load_start"], "1.00 2.00 3.00");
        assert_eq!(
            f["load_end"].as_str().map(|l| l.split(' ').count()),
            Some(3),
            "{f}"
        );
    }
}
