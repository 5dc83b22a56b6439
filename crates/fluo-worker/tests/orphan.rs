//! A worker never outlives its server: when the server's ends of its sockets close (the server
//! died, even by kill -9), the worker stops its jobs and exits, within its stop grace even when
//! a job is stuck. And a worker started by hand (without its sockets) refuses to run.

use fluo_worker::proto::{self, FromWorker, SandboxPolicy, ToWorker};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WORKER: &str = env!("CARGO_BIN_EXE_fluo-test-worker");

struct Started {
    child: std::process::Child,
    ctl: UnixStream,
    media: fluo_worker::media::MediaSocket,
}

/// Starts the test worker as the supervisor would (sockets on 3 and 4, plus two inherited
/// copies on 13 and 14), says Init, reads Ready, starts job 1 of `kind`.
fn start_by_hand(kind: &str) -> Started {
    let (server_ctl, worker_ctl) = UnixStream::pair().unwrap();
    let (server_media, worker_media) = fluo_worker::media::MediaSocket::pair().unwrap();
    let (c, m) = (worker_ctl.as_raw_fd(), worker_media.as_raw_fd());
    let mut cmd = Command::new(WORKER);
    cmd.stdin(Stdio::null());
    // SAFETY: fcntl and dup2 only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Copies above 100 first (as the supervisor's spawn does above 10): the tests run in
            // parallel, so `c` or `m` may themselves be 13 or 14, and placing one would
            // overwrite the other (the worker then had no media socket: a flaky BrokenPipe).
            let (c, m) = (
                libc::fcntl(c, libc::F_DUPFD, 100),
                libc::fcntl(m, libc::F_DUPFD, 100),
            );
            if c < 0 || m < 0 || libc::dup2(c, 13) < 0 || libc::dup2(m, 14) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::dup2(13, 3) < 0 || libc::dup2(14, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
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
        Some(FromWorker::Ready { pid, sandbox, .. }) => {
            assert_eq!(pid, child.id());
            // Descriptors 13 and 14 were inherited copies: closed at start.
            assert!(sandbox.inherited_fds_closed >= 2, "{sandbox:?}");
        }
        other => panic!("{other:?}"),
    }
    call(
        &mut ctl,
        ToWorker::Start {
            req: 1,
            job: 1,
            kind: kind.into(),
            params: vec![],
        },
    );
    Started {
        child,
        ctl,
        media: server_media,
    }
}

fn call(ctl: &mut UnixStream, msg: ToWorker) {
    proto::write_msg(ctl, &msg).unwrap();
    assert!(matches!(
        proto::read_msg::<FromWorker>(ctl).unwrap(),
        Some(FromWorker::Reply { result: Ok(_), .. })
    ));
}

/// The server "dies" (its ends close); returns how long the worker took to exit, and its
/// status code.
fn server_goes_away(w: Started, limit: Duration) -> (Duration, Option<i32>) {
    let Started {
        mut child,
        ctl,
        media,
    } = w;
    let t0 = Instant::now();
    drop(ctl);
    drop(media);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (t0.elapsed(), status.code());
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the worker outlived its server by {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_worker_exits_when_its_server_goes_away() {
    let w = start_by_hand("test.echo");
    let (took, code) = server_goes_away(w, Duration::from_secs(2));
    assert_eq!(code, Some(0));
    eprintln!("the worker exited {took:?} after its server's sockets closed");
}

/// Even with a job stuck in its media thread (a plugin call that never returns), the worker
/// ends within its stop grace once its server is gone.
#[test]
fn a_worker_with_a_stuck_job_still_exits_when_its_server_goes_away() {
    let mut w = start_by_hand("test.crash");
    call(
        &mut w.ctl,
        ToWorker::Call {
            req: 2,
            job: 1,
            method: "stall_media".into(),
            args: vec![],
        },
    );
    let pkt = fluo_sfu::MediaPacket {
        kind: fluo_sfu::MediaKind::Audio,
        codec: fluo_sfu::Codec::new(fluo_sfu::CodecName::Opus),
        seq: 1,
        timestamp: 1,
        ssrc: 1,
        marker: false,
        payload: vec![0; 100],
    };
    let mut batch = fluo_worker::Batch::new();
    batch
        .push_packet(1, &fluo_worker::PacketRef::from(&pkt))
        .unwrap();
    w.media.send(batch.bytes(), true).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let grace = fluo_worker::worker::STOP_GRACE;
    let (took, code) = server_goes_away(w, grace + Duration::from_secs(3));
    assert_eq!(code, Some(0));
    assert!(took >= grace - Duration::from_millis(500), "{took:?}");
    eprintln!("the worker with a stuck job exited {took:?} after its server went away");
}

#[test]
fn a_worker_started_by_hand_refuses_to_run() {
    let out = Command::new(WORKER).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the fluo server starts it"));
}
