//! `fluo-test-elements`: the `fluo` server with its test-only elements (FluoTestCrash), built
//! only with the `test-elements` feature, for tests (tests/e2e/test/75-worker-crash.test.js).
//! It runs its own media workers, which host the test jobs.

#[path = "fluo.rs"]
mod fluo;

fn main() -> std::process::ExitCode {
    fluo::main()
}
