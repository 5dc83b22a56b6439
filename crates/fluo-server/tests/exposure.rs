//! The `fluo` binary warns once at start when it listens beyond loopback without a token
//! (KMS's default, kept), and not when it listens on loopback or asks for a token. The
//! wildcard address is bound inside a network namespace of the test's own (`unshare -n`),
//! which has nothing but its own loopback.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The lines `fluo ARGS` prints until it listens (and a moment after), in a new network
/// namespace.
fn start_lines(args: &[&str]) -> Vec<String> {
    // The namespace's loopback is down until raised (media needs an address on it).
    let mut child = Command::new("unshare")
        .args([
            "-n",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(env!("CARGO_BIN_EXE_fluo"))
        .args(args)
        .args(["--port", "0"])
        .env("RUST_LOG", "info")
        .env("KMS_NETWORK_INTERFACES", "lo")
        .env_remove("FLUO_AUTH_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare runs (util-linux, as root)");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = vec![];
    let t0 = Instant::now();
    let mut listening_at = None;
    while t0.elapsed() < Duration::from_secs(20) {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(50)) {
            if l.contains("listening on ws://") {
                listening_at = Some(Instant::now());
            }
            lines.push(l);
        }
        if listening_at.is_some_and(|t| t.elapsed() > Duration::from_millis(500)) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("fluo {args:?} exited ({status}): {err}\n{lines:?}");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        listening_at.is_some(),
        "fluo {args:?} did not start: {lines:?}"
    );
    lines
}

fn warnings(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| l.contains("without a token"))
        .collect()
}

#[test]
fn listening_beyond_loopback_without_a_token_prints_one_warning() {
    let lines = start_lines(&["--bind", "0.0.0.0"]);
    let w = warnings(&lines);
    assert_eq!(w.len(), 1, "one warning: {lines:#?}");
    assert!(
        w[0].contains("WARN") && w[0].contains("0.0.0.0") && w[0].contains("--auth-token"),
        "{}",
        w[0]
    );
    println!("{}", w[0]);
    for args in [
        &["--bind", "127.0.0.1"][..],
        &["--bind", "::1"][..],
        &["--bind", "0.0.0.0", "--auth-token", "secret"][..],
    ] {
        let lines = start_lines(args);
        assert!(warnings(&lines).is_empty(), "{args:?}: {lines:#?}");
    }
}
