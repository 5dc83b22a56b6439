//! The fluo binary is its own media worker (`fluo worker`, hidden): a supervisor started with
//! it gets a worker that is sandboxed and answers, and `fluo worker` run by hand refuses.

use fluo_worker::{JobError, Supervisor, SupervisorConfig, SupervisorEvent, WorkerCommand};
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
