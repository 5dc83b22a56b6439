//! The `fluo` binary's start as an installed service starts it: a first start with no
//! GStreamer registry cache (a new installation, a new container) gets every media worker
//! ready at the first try, however long the plugin scan takes; and its log, written to a file
//! rather than a terminal, holds no colour code (Fluo's lines, GStreamer's, the workers').

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FLUO: &str = env!("CARGO_BIN_EXE_fluo");

/// Runs `fluo --workers N` on 127.0.0.1 with `env` (NO_COLOR and GStreamer's colour settings
/// removed), its standard output and error in `dir/fluo.log`, until N media workers started
/// or `limit` passed; returns the log.
fn start(dir: &Path, workers: usize, env: &[(&str, &str)], limit: Duration) -> String {
    let log = dir.join("fluo.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(FLUO);
    cmd.args(["--bind", "127.0.0.1", "--port", "0", "--http-port", "0"])
        .args([
            "--network-interfaces",
            "lo",
            "--workers",
            &workers.to_string(),
        ])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("GST_DEBUG_NO_COLOR")
        .env_remove("GST_DEBUG_COLOR_MODE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let mut child = cmd.spawn().expect("fluo starts");
    let t0 = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let started = text.matches("media worker started").count();
        if started >= workers || t0.elapsed() > limit || child.try_wait().unwrap().is_some() {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    text
}

/// A GStreamer plugin scanner that takes `secs` longer than GStreamer's own before it scans
/// (the scan of a first start on a busy machine), in `dir`.
fn slow_scanner(dir: &Path, secs: u32) -> String {
    let out = Command::new("pkg-config")
        .args(["--variable=pluginscannerdir", "gstreamer-1.0"])
        .output()
        .expect("pkg-config runs (scripts/deps.sh installs it)");
    let real = Path::new(String::from_utf8_lossy(&out.stdout).trim()).join("gst-plugin-scanner");
    assert!(
        real.is_file(),
        "no GStreamer plugin scanner at {}",
        real.display()
    );
    let path = dir.join("slow-scanner.sh");
    std::fs::write(
        &path,
        format!("#!/bin/sh\nsleep {secs}\nexec {} \"$@\"\n", real.display()),
    )
    .unwrap();
    let exec = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&path, exec).unwrap();
    path.display().to_string()
}

/// With an empty registry cache and a plugin scan longer than a worker's start timeout (10 s),
/// the server scans once, then both workers start at their first try. (Before, each worker
/// scanned within its own start timeout: all were killed, "media worker did not start", and
/// retried; on a 2-core machine a first start of the .deb's service did that.)
#[test]
fn a_first_start_scans_the_plugins_once_and_every_worker_starts_at_once() {
    let dir = tempfile::Builder::new()
        .prefix("fluo-first-start-")
        .tempdir()
        .unwrap();
    let cache = dir.path().join("cache");
    let scanner = slow_scanner(dir.path(), 11);
    let env = [
        ("XDG_CACHE_HOME", cache.to_str().unwrap()),
        ("GST_PLUGIN_SCANNER", scanner.as_str()),
    ];
    let text = start(dir.path(), 2, &env, Duration::from_secs(60));
    assert_eq!(
        text.matches("media worker started").count(),
        2,
        "two workers did not start in 60 s:\n{text}"
    );
    for bad in ["did not start", "failed to start", "panicked"] {
        assert!(!text.contains(bad), "{bad}:\n{text}");
    }
    let scanned = text.find("plugin registry up to date").expect(&text);
    assert!(
        scanned < text.find("media worker started").unwrap(),
        "{text}"
    );
    assert!(cache
        .join("gstreamer-1.0")
        .read_dir()
        .unwrap()
        .next()
        .is_some());
}

/// Standard output and error not a terminal, NO_COLOR unset: no ANSI colour code in the log,
/// neither in Fluo's lines nor in GStreamer's (`GST_DEBUG`): the server's, its worker's and
/// those of the plugin scanner GStreamer runs (the registry cache is empty).
#[test]
fn the_log_off_a_terminal_has_no_colour_codes() {
    let dir = tempfile::Builder::new()
        .prefix("fluo-log-colours-")
        .tempdir()
        .unwrap();
    let cache = dir.path().join("cache");
    let env = [
        ("GST_DEBUG", "GST_INIT:4"),
        ("XDG_CACHE_HOME", cache.to_str().unwrap()),
    ];
    let text = start(dir.path(), 1, &env, Duration::from_secs(60));
    assert!(text.contains("media worker started"), "{text}");
    // GStreamer's first line, by three processes: the server, the scanner, the worker.
    let inits = text.matches("Initializing GStreamer Core Library").count();
    assert!(
        inits >= 3,
        "{inits} GStreamer initialisations logged: {text}"
    );
    assert!(!text.contains('\u{1b}'), "colour codes: {text:?}");
}
