//! A bounded churn soak (18 cycles, three teardown styles) against a real server with real UDP
//! peers: media flows in every cycle, nothing is left behind, file descriptors and threads
//! return to their baseline. `make soak` runs 10 000 cycles and prints the figures.
#[test]
fn churn_leaves_nothing_behind() {
    let r = fluo_testkit::soak::run(18, 6, std::time::Duration::from_millis(150));
    r.print();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.media_ok, 18);
    assert_eq!(
        r.pipelines_left, 0,
        "every pipeline was released or collected"
    );
    assert!(
        r.end.fds <= r.warm.fds,
        "file descriptors: {} -> {}",
        r.warm.fds,
        r.end.fds
    );
    assert!(
        r.end.threads <= r.warm.threads,
        "threads: {} -> {}",
        r.warm.threads,
        r.end.threads
    );
}
