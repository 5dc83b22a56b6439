//! gst-launch-1.0 as a bench's reference: its standard error kept in a file, its element
//! messages (`-m`) read as they come, and an early exit (a bad pipeline, a missing plugin)
//! noticed and told with its exit status and the end of its standard error.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Lines of its standard error an early exit is told with.
const TAIL: usize = 15;

/// A running gst-launch-1.0; killed when dropped.
pub struct GstLaunch {
    child: Child,
    stderr: PathBuf,
    messages: Arc<Mutex<Vec<String>>>,
    exited: bool,
}

impl GstLaunch {
    /// Starts `gst-launch-1.0 DESC` (`desc` split at spaces outside double quotes), its
    /// standard error written to `stderr`. With `messages` (`-m`) the element messages it
    /// prints are kept ([`GstLaunch::take_messages`]); without, it runs quiet (`-q`). OpenCV's
    /// log keeps its fatal lines only (`facedetect` otherwise writes an ERROR line for each
    /// cascade Debian does not ship), unless `OPENCV_LOG_LEVEL` is set.
    pub fn start(desc: &str, stderr: &Path, messages: bool) -> Result<GstLaunch, String> {
        let err = std::fs::File::create(stderr)
            .map_err(|e| format!("cannot write {}: {e}", stderr.display()))?;
        let mut cmd = Command::new("gst-launch-1.0");
        cmd.arg(if messages { "-m" } else { "-q" })
            .args(shell_words(desc))
            .stdin(Stdio::null())
            .stdout(if messages {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(err);
        if std::env::var_os("OPENCV_LOG_LEVEL").is_none() {
            cmd.env("OPENCV_LOG_LEVEL", "FATAL");
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("gst-launch-1.0 does not start: {e}"))?;
        let kept: Arc<Mutex<Vec<String>>> = Arc::default();
        if let Some(out) = child.stdout.take() {
            let kept = kept.clone();
            std::thread::Builder::new()
                .name("bench-gst-messages".into())
                .spawn(move || {
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        if line.contains(" (element): ") {
                            kept.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                        }
                    }
                })
                .map_err(|e| e.to_string())?;
        }
        Ok(GstLaunch {
            child,
            stderr: stderr.to_path_buf(),
            messages: kept,
            exited: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Err` once it has exited (it is meant to run until stopped): its exit status and the
    /// last lines of its standard error.
    pub fn check(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.exited = true;
                let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(TAIL)..].join("\n  ");
                Err(format!(
                    "gst-launch-1.0 exited on its own ({status}); the end of its standard error ({}):\n  {tail}",
                    self.stderr.display()
                ))
            }
            Err(e) => Err(format!("gst-launch-1.0's status: {e}")),
        }
    }

    /// The element messages printed since the last call (with `messages`).
    pub fn take_messages(&self) -> Vec<String> {
        std::mem::take(&mut *self.messages.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A last [`GstLaunch::check`], then ends it.
    pub fn stop(mut self) -> Result<(), String> {
        let alive = self.check();
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.exited = true;
        alive
    }
}

impl Drop for GstLaunch {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Splits a description into arguments at spaces outside double quotes (dropping them).
pub fn shell_words(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (vec![], String::new(), false);
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether a `facedetect` element message (as `gst-launch-1.0 -m` prints it, one per frame
/// with `updates=every_frame`) holds a face; `None` for any other line.
pub fn facedetect_found(line: &str) -> Option<bool> {
    let (_, rest) = line.split_once(" (element): facedetect, ")?;
    let (_, faces) = rest.split_once("faces=")?;
    Some(faces.contains("\"face\\,"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_exit(g: &mut GstLaunch) -> String {
        let t0 = Instant::now();
        loop {
            if let Err(e) = g.check() {
                return e;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "still running");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn an_early_exit_is_told_with_its_status_and_standard_error() {
        let dir = crate::tmp::dir("gst-launch");
        let err = dir.join("bad.stderr");
        let mut g = GstLaunch::start("fakesrc ! nosuchelement ! fakesink", &err, false)
            .expect("gst-launch-1.0 starts (a test dependency)");
        let e = wait_exit(&mut g);
        assert!(e.contains("exit status: 1"), "{e}");
        assert!(e.contains("no element \"nosuchelement\""), "{e}");
        assert!(e.contains("bad.stderr"), "{e}");
        assert!(g.stop().is_err());
    }

    #[test]
    fn a_running_pipeline_checks_and_stops() {
        let dir = crate::tmp::dir("gst-launch");
        let mut g = GstLaunch::start("fakesrc ! fakesink", &dir.join("ok.stderr"), false)
            .expect("gst-launch-1.0 starts (a test dependency)");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(g.check(), Ok(()));
        assert_eq!(g.stop(), Ok(()));
    }

    #[test]
    fn facedetect_messages_are_read_and_told_apart() {
        let with = r#"Got message #54 from element "facedetect0" (element): facedetect, timestamp=(guint64)0, stream-time=(guint64)0, running-time=(guint64)0, duration=(guint64)40000000, faces=(structure){ "face\,\ x\=\(uint\)239\,\ y\=\(uint\)102\,\ width\=\(uint\)159\,\ height\=\(uint\)159\;" };"#;
        let without = r#"Got message #31 from element "facedetect0" (element): facedetect, timestamp=(guint64)0, stream-time=(guint64)0, running-time=(guint64)0, duration=(guint64)33333333, faces=(int){  };"#;
        assert_eq!(facedetect_found(with), Some(true));
        assert_eq!(facedetect_found(without), Some(false));
        assert_eq!(facedetect_found("Got message #11 from element \"facedetect0\" (state-changed): GstMessageStateChanged"), None);
        if gstreamer_has("facedetect").is_err() {
            return crate::skip::or_fail(
                "facedetect's messages from gst-launch-1.0 -m",
                "no facedetect (gstreamer1.0-opencv)",
            );
        }
        // Frames without a face (videotestsrc): one message each, none with a face.
        let dir = crate::tmp::dir("gst-launch");
        let mut g = GstLaunch::start(
            "videotestsrc num-buffers=5 ! videoconvert ! facedetect display=false updates=every_frame ! fakesink",
            &dir.join("face.stderr"),
            true,
        )
        .expect("gst-launch-1.0 starts");
        let e = wait_exit(&mut g);
        assert!(e.contains("exit status: 0"), "{e}");
        std::thread::sleep(Duration::from_millis(200));
        let found: Vec<Option<bool>> = g
            .take_messages()
            .iter()
            .map(|l| facedetect_found(l))
            .collect();
        assert_eq!(found, vec![Some(false); 5]);
        // OpenCV's lines about the cascades facedetect does not use stay out.
        let err = std::fs::read_to_string(dir.join("face.stderr")).unwrap_or_default();
        assert!(!err.contains("haarcascade_mcs"), "{err}");
    }

    fn gstreamer_has(element: &str) -> Result<(), ()> {
        let ok = Command::new("gst-inspect-1.0")
            .args(["--exists", element])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Ok(())
        } else {
            Err(())
        }
    }
}
