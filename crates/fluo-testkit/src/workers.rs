//! What the tests of elements in media workers share: finding an element's worker as an
//! operator does (the server's log), killing it, and checking the Error event its death
//! raises.

use fluo_server::log_capture::{capture_operator_log, LogBuffer};
use serde_json::Value;
use std::process::Command;
use std::sync::OnceLock;

/// The server's operator log, captured once for the test binary (the capture is global).
pub fn operator_log() -> &'static LogBuffer {
    static LOG: OnceLock<LogBuffer> = OnceLock::new();
    LOG.get_or_init(capture_operator_log)
}

/// The pid of the media worker hosting element `id`, from the log's "element runs in media
/// worker" lines (their `id=` and `pid=` fields).
pub fn worker_pid(log: &LogBuffer, id: &str) -> Option<u32> {
    log.lines()
        .iter()
        .filter(|l| l.contains("element runs in media worker"))
        .filter(|l| l.contains(&format!("id={id} ")))
        .find_map(|l| {
            let at = l.find(" pid=")? + 5;
            l[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
}

/// Sends SIGKILL to `pid`, as `kill -9` does.
pub fn kill_9(pid: u32) {
    let ok = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -9 {pid}");
}

/// Checks the Error event an element raises when its worker was killed: 40003, the element's
/// error type `ty`, the SIGKILL cause in the description and no memory address in it. Returns
/// the description.
pub fn assert_killed_event(ev: &Value, ty: &str) -> String {
    assert_eq!(ev["errorCode"], 40003, "{ev}");
    assert_eq!(ev["type"], ty, "{ev}");
    let d = ev["description"].as_str().unwrap_or_default().to_string();
    assert!(
        d.contains("the worker process was killed (SIGKILL"),
        "the death's cause: {ev}"
    );
    assert!(!fluo_api::text::leaks(&d), "no address in {d}");
    d
}
