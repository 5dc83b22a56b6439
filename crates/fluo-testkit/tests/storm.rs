//! A bounded negotiation storm (200 endpoints over 20 WebSocket connections, at once): every
//! create + processOffer succeeds and the engine keeps answering requests (a `describe` on a
//! connection of its own, every 10 ms, each answered by the engine within 5 s). The figures
//! are printed; `make storm` runs the full 1000-over-100 version.
#[test]
fn a_negotiation_storm_succeeds_and_the_server_stays_responsive() {
    let report = fluo_testkit::storm::run(200, 20);
    report.print();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.succeeded, 200);
    assert!(report.probe_errors.is_empty(), "{:?}", report.probe_errors);
    assert!(
        report.probe_ms.len() >= 3,
        "the engine answered {} probes during the storm ({:.2} s)",
        report.probe_ms.len(),
        report.wall.as_secs_f64()
    );
    let slowest = report.probe_ms.last().copied().unwrap_or(f64::INFINITY);
    assert!(
        slowest < 5000.0,
        "an engine round trip took {slowest:.0} ms during the storm"
    );
}
