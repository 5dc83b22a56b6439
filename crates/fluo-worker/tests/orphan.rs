//! A worker never outlives its server: when the server's ends of its sockets close (the server
//! died, even by kill -9), the worker stops its jobs and exits. And a worker started by hand
//! (without its sockets) refuses to run.

use fluo_worker::proto::{self, FromWorker, SandboxPolicy, ToWorker};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WORKER: &str = env!("CARGO_BIN_EXE_fluo-test-worker");

#[test]
fn a_worker_exits_when_its_server_goes_away() {
    let (server_ctl, worker_ctl) = UnixStream::pair().unwrap();
    let (server_media, worker_media) = fluo_worker::media::MediaSocket::pair().unwrap();
    let (c, m) = (worker_ctl.as_raw_fd(), worker_media.as_raw_fd());
    let mut cmd = Command::new(WORKER);
    cmd.stdin(Stdio::null());
    // SAFETY: dup2 only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(c, 13) < 0 || libc::dup2(m, 14) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::dup2(13, 3) < 0 || libc::dup2(14, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop((worker_ctl, worker_media));
    let mut ctl = server_ctl;
    proto::write_msg(
        &mut ctl,
        &ToWorker::Init {
            sandbox: SandboxPolicy::default(),
        },
    )
    .unwrap();
    match proto::read_msg::<FromWorker>(&mut ctl).unwrap() {
        Some(FromWorker::Ready { pid, sandbox }) => {
            assert_eq!(pid, child.id());
            // Descriptors 13 and 14 were inherited copies: closed at start.
            assert!(sandbox.inherited_fds_closed >= 2, "{sandbox:?}");
        }
        other => panic!("{other:?}"),
    }
    proto::write_msg(
        &mut ctl,
        &ToWorker::Start {
            req: 1,
            job: 1,
            kind: "test.echo".into(),
            params: vec![],
        },
    )
    .unwrap();
    assert!(matches!(
        proto::read_msg::<FromWorker>(&mut ctl).unwrap(),
        Some(FromWorker::Reply {
            req: 1,
            result: Ok(_)
        })
    ));
    // The server "dies": its ends close.
    let t0 = Instant::now();
    drop(ctl);
    drop(server_media);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "the worker outlived its server"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "the worker exited {:?} after its server's sockets closed",
        t0.elapsed()
    );
}

#[test]
fn a_worker_started_by_hand_refuses_to_run() {
    let out = Command::new(WORKER).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the fluo server starts it"));
}
