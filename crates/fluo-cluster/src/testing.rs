//! For tests: a redis-server of their own, on a unix socket in a temporary folder (no TCP
//! port at all), without persistence; killed when dropped.
//!
//! redis-server is a test tool (`scripts/deps.sh test`). Without it a test is skipped with a
//! `SKIPPED:` line, and under `CI=true` it fails, the rule of fluo-testkit's `skip.rs` (which
//! this crate cannot use: fluo-testkit depends on the server, which depends on this crate).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether this runs under CI (`CI` is `true`, `1` or `yes`).
fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

/// A redis-server process for one test.
pub struct RedisServer {
    dir: tempfile::TempDir,
    socket: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one, answering PING; `None` (with a `SKIPPED:` line) when redis-server is not
    /// installed, a panic under CI or when it does not start.
    pub fn start(what: &str) -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            let why = "redis-server is not installed (scripts/deps.sh test)";
            assert!(!in_ci(), "NOT CHECKED under CI=true: {what}: {why}");
            let line = format!("SKIPPED: {what} not checked: {why} (with CI=true this fails)\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("fluo-redis-")
            .tempdir()
            .expect("a temporary folder");
        let socket = dir.path().join("redis.sock");
        assert!(
            socket.as_os_str().len() < 100,
            "the socket path is too long for a unix socket: {}",
            socket.display()
        );
        let mut r = RedisServer {
            dir,
            socket,
            child: None,
        };
        r.restart();
        Some(r)
    }

    /// The URL of its socket (`redis+unix:///...`).
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// Its socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Kills it (SIGKILL) and waits for it; its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts it (again, after [`RedisServer::kill`]) on the same socket, empty, and waits
    /// until it answers PING (10 s at most).
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("a log file");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&self.socket)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let t0 = Instant::now();
        while !self.answers() {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                let log = std::fs::read_to_string(self.dir.path().join("redis.log"));
                panic!(
                    "redis-server exited at start ({st}): {}",
                    log.unwrap_or_default()
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "redis-server did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it without killing it (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let Some(c) = &self.child else { return };
        let st = Command::new("kill")
            .arg(sig)
            .arg(c.id().to_string())
            .status()
            .expect("kill runs");
        assert!(st.success(), "kill {sig} {}", c.id());
    }

    /// Runs one command (`args`, each sent as a bulk string) on its socket, as a test does
    /// behind the nodes' backs; the first line of the answer (e.g. `:1`, `+OK`). Panics
    /// when it does not answer, or answers an error.
    pub fn command(&self, args: &[&str]) -> String {
        let mut s = UnixStream::connect(&self.socket).expect("redis-server's socket");
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        s.write_all(&req).expect("a command sent");
        let mut answer = Vec::new();
        let mut buf = [0u8; 512];
        while !answer.ends_with(b"\r\n") {
            let n = s.read(&mut buf).expect("an answer");
            assert!(n > 0, "redis-server closed the connection");
            answer.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&answer);
        let line = text.lines().next().unwrap_or_default().to_owned();
        assert!(!line.starts_with('-'), "{args:?}: {line}");
        line
    }

    /// Whether it answers PING on its socket.
    fn answers(&self) -> bool {
        let Ok(mut s) = UnixStream::connect(&self.socket) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A paused process is killed all the same.
        self.kill();
    }
}

/// The ids of the live nodes `c` lists, in its order (panics when the listing fails).
pub async fn node_ids(c: &crate::Coordinator) -> Vec<String> {
    let nodes = c.nodes().await.expect("nodes listed");
    nodes.iter().map(|n| n.info.id.to_string()).collect()
}
