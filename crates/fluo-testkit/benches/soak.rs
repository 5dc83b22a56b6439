//! `cargo bench -p fluo-testkit --bench soak -- [CYCLES]` (default 10 000): churn soak against
//! a real server on 127.0.0.1 with real UDP peers, figures printed.
fn main() {
    let cycles: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let warmup = (cycles / 10).clamp(3, 200);
    let r = fluo_testkit::soak::run(cycles, warmup, std::time::Duration::from_millis(150));
    r.print();
}
