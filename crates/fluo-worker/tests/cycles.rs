//! 100 crash/restart cycles with real worker processes. Alone in its test binary: it counts
//! the process's descriptors, threads and children, which other tests would disturb.

mod common;

use common::*;
use fluo_worker::JobError;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);

fn died(r: &Result<Vec<u8>, JobError>) -> bool {
    matches!(r, Err(JobError::WorkerDied(_)))
}

/// 100 crash/restart cycles: each death noticed, each next job working, and afterwards the
/// server has the descriptors, threads and children it had before (one live worker, no
/// zombie).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_crash_cycles_leave_nothing_behind() {
    let (sup, events) = start(config(1));
    // Warm up: one full cycle, so that lazily created runtime threads exist.
    let warm = sup
        .start_job_async(1, "test.crash", vec![], Rec::new())
        .await
        .unwrap();
    assert!(died(&warm.call_async("abort", vec![]).await));
    drop(warm);
    let echo = sup
        .start_job_async(1, "test.echo", vec![], Rec::new())
        .await
        .unwrap();
    echo.call_async("ping", vec![]).await.unwrap();
    drop(echo);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (fds0, threads0) = (fd_count(), thread_count());

    let t0 = Instant::now();
    for i in 0..100u64 {
        let job = sup
            .start_job_async(i, "test.crash", vec![], Rec::new())
            .await
            .unwrap();
        let how = if i % 2 == 0 { "abort" } else { "segv" };
        let r = job.call_async(how, vec![]).await;
        assert!(died(&r), "cycle {i}: {r:?}");
        drop(job);
        let echo = sup
            .start_job_async(i, "test.echo", vec![], Rec::new())
            .await
            .unwrap();
        assert_eq!(
            echo.call_async("ping", vec![i as u8]).await.unwrap(),
            vec![i as u8]
        );
    }
    let took = t0.elapsed();
    eprintln!("100 crash/restart cycles in {took:?}");
    assert_eq!(started(&events), 102);
    assert!(
        wait_until(5 * SEC, || fd_count() == fds0 && thread_count() <= threads0).await,
        "descriptors {} (were {fds0}), threads {} (were {threads0})",
        fd_count(),
        thread_count()
    );
    let kids = children();
    assert_eq!(kids.len(), 1, "one live worker and no zombie: {kids:?}");
    assert_ne!(kids[0].1, 'Z');
    sup.shutdown(5 * SEC).await;
    assert!(wait_until(5 * SEC, || children().is_empty()).await);
}
