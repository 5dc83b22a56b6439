//! Hostile `.wasm` files at load (written by hand): a start function that never returns is
//! stopped by the time limit, a second memory is refused (the memory limit counts one), a
//! file over 32 MiB is not read. Each is refused with a reason, and load returns.

use fluo_module_wasm::{Limits, WasmModule};
use std::time::{Duration, Instant};

fn limits() -> Limits {
    Limits {
        call_time: Duration::from_millis(200),
        memory_bytes: 32 << 20,
    }
}

fn file(dir: &tempfile::TempDir, name: &str, wat: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, wat::parse_str(wat).expect("valid text")).unwrap();
    path
}

#[test]
fn a_start_function_that_loops_is_stopped_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let f = file(
        &dir,
        "loop.wasm",
        r#"(module (memory (export "memory") 1) (func $s (loop $l (br $l))) (start $s))"#,
    );
    let t = Instant::now();
    let e = WasmModule::load(&f, limits()).expect_err("refused");
    println!("refused after {:?}: {e}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(e.starts_with("cannot be instantiated"), "{e}");
}

#[test]
fn a_description_that_loops_is_stopped_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let f = file(
        &dir,
        "idl.wasm",
        r#"(module (memory (export "memory") 1)
             (func (export "fluo_buffer") (param i32) (result i32) i32.const 0)
             (func (export "fluo_idl") (result i32) (loop $l (br $l)) i32.const 0)
             (func (export "fluo_create") (param i32 i32) (result i32) i32.const 0)
             (func (export "fluo_format") (result i32) i32.const 0)
             (func (export "fluo_invoke") (param i32 i32) (result i32) i32.const 0)
             (func (export "fluo_property") (param i32 i32) (result i32) i32.const 0)
             (func (export "fluo_frame") (param i32 i32 i32 i64) (result i32) i32.const 0))"#,
    );
    let t = Instant::now();
    let e = WasmModule::load(&f, limits()).expect_err("refused");
    println!("refused after {:?}: {e}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(e.starts_with("gives no description"), "{e}");
}

#[test]
fn a_second_memory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = file(
        &dir,
        "two.wasm",
        r#"(module (memory (export "memory") 1) (memory 1))"#,
    );
    let e = WasmModule::load(&f, limits()).expect_err("refused");
    assert!(e.starts_with("is not a WebAssembly module"), "{e}");
}

#[test]
fn a_file_over_32_mib_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.wasm");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(33 << 20).unwrap();
    let e = WasmModule::load(&path, limits()).expect_err("refused");
    assert!(e.contains("over the"), "{e}");
}
