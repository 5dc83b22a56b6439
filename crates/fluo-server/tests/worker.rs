//! The fluo binary is its own media worker (`fluo worker`, hidden): a supervisor started with
//! it gets a worker that is sandboxed and answers, and `fluo worker` run by hand refuses.

use fluo_worker::{JobError, Supervisor, SupervisorConfig, SupervisorEvent, WorkerCommand};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FLUO: &str = env!("CARGO_BIN_EXE_fluo");

struct Nothing;

impl fluo_worker::JobSink for Nothing {
    fn packet(&self, _: &fluo_worker::PacketRef<'_>) {}
    fn worker_died(&self, _: &fluo_worker::Death) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fluo_binary_runs_as_a_sandboxed_worker() {
    let mut cfg = SupervisorConfig::new(WorkerCommand::new(FLUO).arg("worker"));
    cfg.workers = 1;
    let events: Arc<Mutex<Vec<SupervisorEvent>>> = Arc::default();
    let e = events.clone();
    let sup = Supervisor::start(cfg, &tokio::runtime::Handle::current(), move |ev| {
        e.lock().unwrap().push(ev)
    });
    // It answers: a start of a kind it does not host is refused by the worker itself.
    let err = sup
        .start_job_async(1, "no.such.kind", vec![], Arc::new(Nothing))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        JobError::Failed("this worker has no job kind 'no.such.kind'".into())
    );
    let (pid, sandbox) = events
        .lock()
        .unwrap()
        .iter()
        .find_map(|e| match e {
            SupervisorEvent::Started { pid, sandbox, .. } => Some((*pid, sandbox.clone())),
            _ => None,
        })
        .unwrap();
    assert_ne!(pid, std::process::id());
    assert!(sandbox.privileges_dropped && sandbox.seccomp, "{sandbox:?}");
    assert_eq!(sandbox.landlock_abi, fluo_worker::sandbox::landlock_abi());
    let rss = sup.stats()[0].rss_bytes;
    eprintln!("fluo worker {pid}: {sandbox:?}, RSS {} KiB", rss / 1024);
    assert!(rss > 0);
    sup.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn fluo_worker_by_hand_refuses_to_run() {
    let out = std::process::Command::new(FLUO)
        .arg("worker")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the fluo server starts it"));
}

/// A real fluo server's workers get nothing of the server's but stdio and their two sockets,
/// even a descriptor the server holds without close-on-exec (here one its own parent, this
/// test, leaks to it): the spawn marks them all close-on-exec, so the worker has none to
/// close at its start ("media worker started" says `inherited_fds=0`; it said 1 before).
#[test]
fn a_servers_workers_inherit_no_descriptor() {
    let dir = tempfile::Builder::new()
        .prefix("fluo-worker-fds-")
        .tempdir()
        .unwrap();
    let (log, port_file) = (dir.path().join("fluo.log"), dir.path().join("port"));
    let out = std::fs::File::create(&log).unwrap();
    // A copy of /dev/null at 100 or above, without close-on-exec (F_DUPFD): above the
    // worker's sockets on 3 and 4, wherever the tests running meanwhile hold descriptors.
    let null = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: fcntl duplicates a descriptor this test owns; the copy is closed once the
    // server started.
    let leaked = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD, 100) };
    assert!(leaked >= 100);
    let child = std::process::Command::new(FLUO)
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--http-port",
            "0",
            "--workers",
            "2",
        ])
        .arg("--port-file")
        .arg(&port_file)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn();
    // SAFETY: the descriptor opened above, owned by this test.
    unsafe { libc::close(leaked) };
    let mut child = child.expect("fluo starts");
    let t0 = std::time::Instant::now();
    let started = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains("media worker started"))
            .map(String::from)
            .collect();
        if lines.len() >= 2 {
            break lines;
        }
        if t0.elapsed() > Duration::from_secs(30) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("two workers did not start in 30 s:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for l in &started {
        assert!(l.contains("inherited_fds=0"), "{l}");
    }
    assert!(!text.contains("descriptors from the server"), "{text}");
}
