//! A worker hosting the test jobs (built for tests and benches only).

fn main() {
    let mut reg = fluo_worker::worker::Registry::new();
    fluo_worker::test_jobs::register(&mut reg);
    fluo_worker::worker::run(reg, || {})
}
