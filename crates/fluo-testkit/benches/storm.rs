//! `cargo bench -p fluo-testkit --bench storm -- [ENDPOINTS [CONNECTIONS]]` (default 1000 over
//! 100): negotiation storm against a real server on 127.0.0.1, figures printed.
fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let endpoints = args.first().copied().unwrap_or(1000);
    let connections = args.get(1).copied().unwrap_or(100);
    let report = fluo_testkit::storm::run(endpoints, connections);
    report.print();
    assert_eq!(report.succeeded, endpoints, "every negotiation succeeds");
}
