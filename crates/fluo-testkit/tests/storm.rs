//! A bounded negotiation storm (200 endpoints over 20 WebSocket connections, at once): every
//! create + processOffer succeeds and the server keeps answering pings. The figures are
//! printed; `make storm` runs the full 1000-over-100 version.
#[test]
fn a_negotiation_storm_succeeds_and_the_server_stays_responsive() {
    let report = fluo_testkit::storm::run(200, 20);
    report.print();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.succeeded, 200);
    assert!(
        !report.ping_ms.is_empty(),
        "pings were answered during the storm"
    );
}
