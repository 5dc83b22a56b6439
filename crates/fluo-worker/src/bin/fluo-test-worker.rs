//! A worker hosting the test jobs (built for tests and benches only).

fn main() {
    let mut reg = fluo_worker::worker::Registry::new();
    fluo_worker::test_jobs::register(&mut reg);
    // `--fail-init`: a worker whose own initialisation fails (as GStreamer's can).
    let fail = std::env::args().any(|a| a == "--fail-init");
    fluo_worker::worker::run(reg, || match fail {
        true => Err("initialisation failed as asked (--fail-init)".into()),
        false => Ok(()),
    })
}
