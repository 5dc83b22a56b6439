//! Worker supervision with real processes: media and calls through a worker, crashes of every
//! kind noticed at once and reported to every job and request, restarts, limits, CPU time, and
//! no descriptor, thread or zombie left behind after 100 crash/restart cycles.

mod common;

use common::*;
use fluo_worker::{DeathCause, JobError, PacketRef, SupervisorEvent};
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);

/// The cause of a death a request reported, core file or not (the machine's core_pattern
/// decides that, not Fluo).
fn died_with(r: &Result<Vec<u8>, JobError>) -> Option<DeathCause> {
    match r {
        Err(JobError::WorkerDied(d)) => Some(norm(d.cause.clone())),
        _ => None,
    }
}

fn norm(c: DeathCause) -> DeathCause {
    match c {
        DeathCause::Signaled { signal, .. } => DeathCause::Signaled {
            signal,
            core_dumped: false,
        },
        c => c,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_calls_and_events_cross_the_process_boundary() {
    let (sup, _) = start(config(1));
    let rec = Rec::new();
    let job = sup
        .start_job_async(1, "test.echo", vec![], rec.clone())
        .await
        .expect("echo job starts");
    assert_ne!(job.pid(), std::process::id());

    let sent: Vec<_> = (0..50).map(|i| packet(i, 1 + i as usize * 20)).collect();
    for p in &sent {
        job.push(&PacketRef::from(p)).unwrap();
    }
    job.request_keyframe().unwrap();
    job.end_of_stream().unwrap();
    assert!(wait_until(5 * SEC, || rec.with(|h| h.eos == 1)).await);
    rec.with(|h| {
        assert_eq!(h.packets, sent, "packets come back whole and in order");
        assert_eq!(h.keyframes, 1);
    });

    // A batch of several jobs' records in one datagram.
    let mut batch = fluo_worker::Batch::new();
    for p in &sent[..10] {
        batch.push_packet(job.id(), &PacketRef::from(p)).unwrap();
    }
    job.push_batch(&batch).unwrap();
    assert!(wait_until(5 * SEC, || rec.with(|h| h.packets.len() == 60)).await);

    assert_eq!(
        job.call_async("ping", b"hello".to_vec()).await.unwrap(),
        b"hello"
    );
    assert_eq!(
        job.call_async("nope", vec![]).await,
        Err(JobError::Failed("unknown method 'nope'".into()))
    );
    job.call_async("emit", b"x".to_vec()).await.unwrap();
    job.call_async("fail", vec![]).await.unwrap();
    assert!(wait_until(5 * SEC, || rec.with(|h| !h.failed.is_empty())).await);
    rec.with(|h| {
        assert_eq!(h.events, vec![("Echoed".to_string(), b"x".to_vec())]);
        assert_eq!(h.failed, vec!["asked to fail".to_string()]);
    });

    // An unknown kind is refused with the worker's reason; the worker goes on.
    let err = sup
        .start_job_async(1, "no.such.kind", vec![], Rec::new())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        JobError::Failed("this worker has no job kind 'no.such.kind'".into())
    );
    assert!(job.is_alive());
    sup.shutdown(5 * SEC).await;
}

/// Each way a worker dies is noticed at once: the request in flight gets the death (never a
/// time-out), every job of the worker hears it, the listener gets a typed event, and a new job
/// works as soon as the worker is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_death_is_reported_at_once_and_the_next_job_works() {
    let (sup, events) = start(config(1));
    let cases: [(&str, DeathCause); 4] = [
        (
            "abort",
            DeathCause::Signaled {
                signal: libc::SIGABRT,
                core_dumped: false,
            },
        ),
        (
            "segv",
            DeathCause::Signaled {
                signal: libc::SIGSEGV,
                core_dumped: false,
            },
        ),
        ("exit", DeathCause::Exited(7)),
        (
            "kill -9",
            DeathCause::Signaled {
                signal: libc::SIGKILL,
                core_dumped: false,
            },
        ),
    ];
    for (how, cause) in cases {
        let neighbour = Rec::new();
        let echo = sup
            .start_job_async(7, "test.echo", vec![], neighbour.clone())
            .await
            .unwrap();
        let crash_sink = Rec::new();
        let crash = sup
            .start_job_async(7, "test.crash", vec![], crash_sink.clone())
            .await
            .unwrap();
        assert_eq!(echo.pid(), crash.pid(), "one group, one worker");
        let pid = crash.pid();
        let t0 = Instant::now();
        let r = if how == "kill -9" {
            // A request left pending by a worker killed from outside.
            let (tx, rx) = tokio::sync::oneshot::channel();
            crash.call("hang", vec![], move |r| {
                let _ = tx.send(r);
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            // SAFETY: kill(2) on the test's own worker process.
            assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
            rx.await.unwrap()
        } else {
            crash.call_async(how, vec![]).await
        };
        let noticed = t0.elapsed();
        assert_eq!(died_with(&r), Some(cause.clone()), "{how}: {r:?}");
        assert!(noticed < 2 * SEC, "{how}: noticed after {noticed:?}");
        let Err(JobError::WorkerDied(death)) = r else {
            unreachable!()
        };
        assert_eq!(death.pid, pid);
        assert_eq!(
            death.restart_in,
            Duration::ZERO,
            "a job's crash restarts at once"
        );
        let mut jobs = vec![echo.id(), crash.id()];
        jobs.sort_unstable();
        assert_eq!(death.jobs, jobs);
        assert!(!death.cause.to_string().contains("0x"));
        // The neighbour job in the same worker heard it too; the crashing one as well.
        assert!(wait_until(SEC, || neighbour.with(|h| h.died.is_some())).await);
        assert_eq!(
            norm(neighbour.with(|h| h.died.clone()).unwrap().cause),
            cause
        );
        assert_eq!(
            norm(crash_sink.with(|h| h.died.clone()).unwrap().cause),
            cause
        );
        assert!(!echo.is_alive());
        assert_eq!(
            echo.push(&PacketRef::from(&packet(1, 10))),
            Err(fluo_worker::PushError::Gone)
        );
        // Calls on a dead job answer with the death at once.
        assert_eq!(
            died_with(&echo.call_async("ping", vec![]).await),
            Some(cause.clone())
        );
        assert!(
            wait_until(SEC, || events.lock().unwrap().iter().any(
                |e| matches!(e, SupervisorEvent::Died(d) if d.pid == pid && norm(d.cause.clone()) == cause)
            ))
            .await
        );

        // The next job works at once, in a new process.
        let t1 = Instant::now();
        let next = sup
            .start_job_async(8, "test.echo", vec![], Rec::new())
            .await
            .unwrap();
        assert_eq!(
            next.call_async("ping", b"ok".to_vec()).await.unwrap(),
            b"ok"
        );
        let back = t1.elapsed();
        assert_ne!(next.pid(), pid);
        assert!(back < 5 * SEC, "{how}: next job worked after {back:?}");
        eprintln!("{how}: death noticed in {noticed:?}, next job answered {back:?} later");
    }
    let stats = sup.stats();
    assert_eq!(stats[0].restarts, 4);
    sup.shutdown(5 * SEC).await;
}

/// Each worker's pongs carry what its registry counts (here its live echo jobs, as pipelines):
/// the supervisor's stats show it, fresh, and when it came; a restarted worker starts again
/// from its own count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_carry_the_workers_live_objects() {
    let (sup, _) = start(config(1));
    let gauges = |sup: &fluo_worker::Supervisor| sup.stats()[0].gauges;
    let a = sup
        .start_job_async(1, "test.echo", vec![], Rec::new())
        .await
        .expect("echo job starts");
    let b = sup
        .start_job_async(1, "test.echo", vec![], Rec::new())
        .await
        .expect("echo job starts");
    let t0 = Instant::now();
    let counted = |n: u64, g: Option<(Instant, fluo_worker::WorkerGauges)>| {
        g.is_some_and(|(at, g)| at > t0 && g.pipelines == n && g.elements == 3 * n)
    };
    assert!(
        wait_until(5 * SEC, || counted(2, gauges(&sup))).await,
        "two live jobs reported: {:?}",
        gauges(&sup)
    );
    // In every supervisor of the process, too.
    assert!(fluo_worker::all_stats()
        .iter()
        .any(|s| s.pid == Some(a.pid()) && s.gauges.is_some()));
    drop(b);
    assert!(
        wait_until(5 * SEC, || counted(1, gauges(&sup))).await,
        "one left after a stop: {:?}",
        gauges(&sup)
    );
    let pid = a.pid();
    // SAFETY: kill(2) on the test's own worker process.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let t1 = Instant::now();
    assert!(
        wait_until(5 * SEC, || {
            let s = &sup.stats()[0];
            s.pid.is_some_and(|p| p != pid)
                && s.gauges.is_some_and(|(at, g)| at > t1 && g.pipelines == 0)
        })
        .await,
        "the new process reports its own count: {:?}",
        sup.stats()[0]
    );
    sup.shutdown(5 * SEC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_survives_sigusr1() {
    // systemctl kill -s USR1 (drain) signals every process of the unit, workers included.
    let (sup, _) = start(config(1));
    let job = sup
        .start_job_async(1, "test.echo", vec![], Rec::new())
        .await
        .expect("echo job starts");
    let pid = job.pid();
    // SAFETY: kill(2) on the test's own worker process.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGUSR1) }, 0);
    tokio::time::sleep(SEC / 2).await;
    assert_eq!(job.call_async("ping", b"x".to_vec()).await.unwrap(), b"x");
    let s = &sup.stats()[0];
    assert_eq!((s.pid, s.restarts), (Some(pid), 0), "{s:?}");
    sup.shutdown(5 * SEC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_failed_initialisation_is_in_its_stats() {
    let (sup, _) = start(config(1));
    assert!(wait_until(5 * SEC, || sup.stats()[0].pid.is_some()).await);
    assert_eq!(sup.stats()[0].init_error, None);
    sup.shutdown(5 * SEC).await;
    let mut c = config(1);
    c.command.args.push("--fail-init".into());
    let (sup, _) = start(c);
    assert!(wait_until(5 * SEC, || sup.stats()[0].pid.is_some()).await);
    let s = &sup.stats()[0];
    let e = s.init_error.as_deref().unwrap_or_default();
    assert!(e.contains("--fail-init"), "{s:?}");
    sup.shutdown(5 * SEC).await;
}

/// `refresh_gauges` gets a pong at once, between regular pings (here every 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_turn_ping_refreshes_the_gauges() {
    let mut c = config(1);
    c.ping_interval = 30 * SEC;
    c.ping_timeout = 60 * SEC;
    let (sup, _) = start(c);
    let _job = sup
        .start_job_async(1, "test.echo", vec![], Rec::new())
        .await
        .expect("echo job starts");
    let t0 = Instant::now();
    sup.refresh_gauges();
    assert!(
        wait_until(2 * SEC, || sup.stats()[0]
            .gauges
            .is_some_and(|(at, g)| at > t0 && g.pipelines == 1))
        .await,
        "a pong with the count, long before the next regular ping: {:?}",
        sup.stats()[0]
    );
    sup.shutdown(5 * SEC).await;
}

/// A crash while a job starts fails that start with the death.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_start_fails_the_start_with_the_death() {
    let (sup, _) = start(config(1));
    let err = sup
        .start_job_async(1, "test.crash", b"segv".to_vec(), Rec::new())
        .await
        .unwrap_err();
    match err {
        JobError::WorkerDied(d) => assert_eq!(
            norm(d.cause),
            DeathCause::Signaled {
                signal: libc::SIGSEGV,
                core_dumped: false
            }
        ),
        other => panic!("{other:?}"),
    }
    let job = sup
        .start_job_async(1, "test.echo", vec![], Rec::new())
        .await
        .unwrap();
    assert_eq!(job.call_async("ping", vec![1]).await.unwrap(), vec![1]);
    sup.shutdown(5 * SEC).await;
}

/// A worker that stops reading its media never blocks the server: pushes fail at once with
/// `Full` and are counted; once its socket has stayed full for `ping_timeout` it is killed as
/// unresponsive, although its control thread still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_worker_never_blocks_the_server_and_is_killed() {
    let (sup, _) = start(config(1));
    let rec = Rec::new();
    let job = sup
        .start_job_async(1, "test.crash", vec![], rec.clone())
        .await
        .unwrap();
    let other = sup
        .start_job_async(1, "test.echo", vec![], Rec::new())
        .await
        .unwrap();
    job.call_async("stall_media", vec![]).await.unwrap();
    let pkt = packet(1, 1200);
    let t0 = Instant::now();
    let (mut ok, mut full) = (0u32, 0u32);
    for _ in 0..20_000 {
        match job.push(&PacketRef::from(&pkt)) {
            Ok(()) => ok += 1,
            Err(fluo_worker::PushError::Full) => full += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let took = t0.elapsed();
    eprintln!("20 000 pushes to a stuck worker in {took:?}: {ok} queued, {full} dropped");
    assert!(full > 0 && ok > 0, "{ok} queued, {full} dropped");
    assert!(took < 5 * SEC, "{took:?}");
    assert_eq!(sup.stats()[0].media_dropped, full as u64);
    // Its control thread still answers.
    assert_eq!(other.call_async("ping", vec![3]).await.unwrap(), vec![3]);
    // Media keeps coming and finds the socket full: after ping_timeout (800 ms) the worker is
    // declared unresponsive.
    let t1 = Instant::now();
    while rec.with(|h| h.died.is_none()) && t1.elapsed() < 10 * SEC {
        let _ = job.push(&PacketRef::from(&pkt));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let death = rec
        .with(|h| h.died.clone())
        .expect("the stuck worker is killed");
    assert_eq!(death.cause, DeathCause::Unresponsive);
    eprintln!("killed {:?} after media stopped flowing", t1.elapsed());
    sup.shutdown(SEC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_is_killed_as_unresponsive() {
    let (sup, _) = start(config(1));
    let job = sup
        .start_job_async(1, "test.crash", vec![], Rec::new())
        .await
        .unwrap();
    let t0 = Instant::now();
    let r = job.call_async("hang", vec![]).await;
    let after = t0.elapsed();
    assert_eq!(died_with(&r), Some(DeathCause::Unresponsive), "{r:?}");
    // ping_timeout 800 ms, pings every 100 ms.
    assert!(
        after >= Duration::from_millis(700) && after < 3 * SEC,
        "{after:?}"
    );
    let next = sup
        .start_job_async(1, "test.echo", vec![], Rec::new())
        .await
        .unwrap();
    assert_eq!(next.call_async("ping", vec![2]).await.unwrap(), vec![2]);
    sup.shutdown(5 * SEC).await;
}

/// The memory limit holds: a job allocating without bound dies at the limit, not the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_limit_holds() {
    let mut cfg = config(1);
    let limit: u64 = 256 << 20;
    cfg.limits.memory_bytes = Some(limit);
    let (sup, _) = start(cfg);
    let probe = sup
        .start_job_async(1, "test.probe", vec![], Rec::new())
        .await
        .unwrap();
    let report = String::from_utf8(probe.call_async("report", vec![]).await.unwrap()).unwrap();
    assert!(
        report.contains(&format!("rlimit_data={limit}\n")),
        "{report}"
    );
    let rec = Rec::new();
    let job = sup
        .start_job_async(1, "test.crash", vec![], rec.clone())
        .await
        .unwrap();
    let rss_before = rss_of_self();
    job.call_async("alloc", vec![]).await.unwrap();
    assert!(wait_until(20 * SEC, || rec.with(|h| h.died.is_some())).await);
    assert_eq!(
        norm(rec.with(|h| h.died.clone()).unwrap().cause),
        DeathCause::Signaled {
            signal: libc::SIGABRT,
            core_dumped: false
        }
    );
    let most = rec.with(|h| {
        h.events
            .iter()
            .filter(|(n, _)| n == "allocated")
            .filter_map(|(_, d)| d.as_slice().try_into().ok().map(u64::from_le_bytes))
            .max()
            .unwrap_or(0)
    });
    // It got close to the limit and never past it.
    eprintln!("the allocating job reached {most} MiB of its 256 MiB limit");
    assert!((128..=256).contains(&most), "allocated {most} MiB");
    assert!(
        rss_of_self() < rss_before + (64 << 20),
        "the server's memory did not grow"
    );
    sup.shutdown(5 * SEC).await;
}

fn rss_of_self() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split(' ').nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_time_is_accounted_per_worker_and_kept_across_deaths() {
    let mut cfg = config(2);
    // The spin runs on the worker's control thread; on a loaded machine 300 ms of CPU may take
    // seconds of wall time, which the watchdog must not take for a hang here.
    cfg.ping_timeout = 30 * SEC;
    let (sup, _) = start(cfg);
    let job = sup
        .start_job_async(1, "test.crash", vec![], Rec::new())
        .await
        .unwrap();
    let w = job.worker();
    job.call_async("spin", 300u64.to_le_bytes().to_vec())
        .await
        .unwrap();
    let stats = sup.stats();
    assert!(
        stats[w].cpu.total() >= Duration::from_millis(250),
        "{:?}",
        stats[w]
    );
    assert!(stats[1 - w].cpu.total() < Duration::from_millis(200));
    assert!(stats[w].rss_bytes > 0 && stats[w].jobs == 1);
    let r = job.call_async("abort", vec![]).await;
    let Err(JobError::WorkerDied(d)) = r else {
        panic!("{r:?}")
    };
    assert!(d.cpu.total() >= Duration::from_millis(250), "{:?}", d.cpu);
    // The dead process's CPU time stays in the slot's total.
    assert!(sup.stats()[w].cpu.total() >= Duration::from_millis(250));
    sup.shutdown(5 * SEC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_start_fails_creates_with_the_reason_and_backs_off() {
    let mut cfg = config(1);
    cfg.command = fluo_worker::WorkerCommand::new("/nonexistent/fluo-worker");
    let (sup, events) = start(cfg);
    let err = sup
        .start_job_async(1, "test.echo", vec![], Rec::new())
        .await
        .unwrap_err();
    let JobError::Unavailable(why) = &err else {
        panic!("{err:?}")
    };
    assert!(why.contains("/nonexistent/fluo-worker"), "{why}");
    assert!(err.to_string().starts_with("no media worker is available"));
    assert!(
        wait_until(3 * SEC, || {
            events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| matches!(e, SupervisorEvent::StartFailed { .. }))
                .count()
                >= 4
        })
        .await
    );
    let delays: Vec<u128> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            SupervisorEvent::StartFailed { retry_in, .. } => Some(retry_in.as_millis()),
            _ => None,
        })
        .take(5)
        .collect();
    assert_eq!(&delays[..4], &[50, 100, 200, 400]);
    sup.shutdown(SEC).await;

    // A program that runs but is no worker: it ends before it is ready.
    let mut cfg = config(1);
    cfg.command = fluo_worker::WorkerCommand::new("/bin/true");
    let (sup, _) = start(cfg);
    let err = sup
        .start_job_async(1, "test.echo", vec![], Rec::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("ended before it was ready (it exited with status 0)"),
        "{err}"
    );
    sup.shutdown(SEC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_workers_and_refuses_new_jobs() {
    let (sup, events) = start(config(2));
    let a = sup
        .start_job_async(1, "test.echo", vec![], Rec::new())
        .await
        .unwrap();
    let b = sup
        .start_job_async(2, "test.echo", vec![], Rec::new())
        .await
        .unwrap();
    assert_ne!(a.worker(), b.worker(), "two groups spread over two workers");
    let pids = [a.pid(), b.pid()];
    sup.shutdown(5 * SEC).await;
    let stopped: Vec<u32> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            SupervisorEvent::Died(d) if d.cause == DeathCause::Stopped => Some(d.pid),
            _ => None,
        })
        .collect();
    assert_eq!(stopped.len(), 2, "{stopped:?}");
    for p in pids {
        assert!(stopped.contains(&p));
        assert!(!std::path::Path::new(&format!("/proc/{p}")).exists());
    }
    assert_eq!(
        sup.start_job_async(1, "test.echo", vec![], Rec::new())
            .await
            .unwrap_err(),
        JobError::Stopped
    );
}

#[test]
fn restart_delays_double_up_to_the_maximum() {
    let p = fluo_worker::RestartPolicy {
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
    };
    let d: Vec<u128> = (0..7).map(|n| p.delay(n).as_millis()).collect();
    assert_eq!(d, vec![0, 100, 200, 400, 800, 1000, 1000]);
    assert_eq!(p.delay(u32::MAX), Duration::from_secs(1));
}
