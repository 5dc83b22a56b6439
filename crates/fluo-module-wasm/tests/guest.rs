//! The host against the test module (crates/fluo-module-wasmtest, built by `make
//! wasm-modules`), without a server: it loads, describes itself, inverts a frame, raises its
//! event, answers its method and its property's refusal, raises an Error event and goes on,
//! hands an OpenCVFilter child BGRA frames; a panic, a trap, an endless loop
//! and an unbounded allocation each stop the instance within 1 s with a reason a client may
//! read, and a file that is not WebAssembly is refused with the reason.

use fluo_module::testing::{RgbaFrame, TestHost};
use fluo_module::{Instance, Map, Module, Value};
use fluo_module_wasm::{Limits, WasmModule};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The test module's file; built by `make wasm-modules` before the tests.
fn test_module() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let file = target.join("wasm32-unknown-unknown/wasm-module/fluo_module_wasmtest.wasm");
    assert!(
        file.is_file(),
        "{} is missing: build it first with make wasm-modules",
        file.display()
    );
    file
}

fn limits() -> Limits {
    Limits {
        call_time: Duration::from_millis(200),
        memory_bytes: 32 << 20,
    }
}

fn made(module: &WasmModule, host: &mut TestHost) -> Box<dyn Instance> {
    module
        .create(host, "FluoWasmTestFilter", &Map::new())
        .expect("made")
}

#[test]
fn the_test_module_works() {
    let t = Instant::now();
    let module = WasmModule::load(&test_module(), limits()).expect("loads");
    println!("loaded in {:?}", t.elapsed());
    assert!(module.idl().starts_with("module fluowasmtest 0.1.0"));
    let mut host = TestHost::default();
    let mut f = made(&module, &mut host);
    let mut frame = RgbaFrame::filled(6, 3, [10, 20, 30, 255]);
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(f.stopped(), None);
    assert_eq!(frame.pixel(5, 2), [245, 235, 225, 255]);
    assert_eq!(frame.pixel(0, 0), [245, 235, 225, 255]);
    assert_eq!(host.events.len(), 1);
    assert_eq!(host.events[0].0, "WasmFramesProcessed");
    assert_eq!(host.events[0].1["count"], 1);
    assert_eq!(f.invoke(&mut host, "getFrames", &Map::new()), Ok(1.into()));
    let e = f
        .property_set(&mut host, "mode", &Value::from("x"))
        .expect_err("refused");
    assert_eq!(e.code.code(), 40107, "{e:?}");
    assert!(e.message.contains("mode must be"), "{e:?}");
    let e = f
        .invoke(&mut host, "other", &Map::new())
        .expect_err("not handled");
    assert_eq!(e.code.code(), 40111, "{e:?}");
    assert_eq!(f.stopped(), None, "an error answered is not a stop");
}

#[test]
fn an_error_event_crosses_and_the_instance_goes_on() {
    let module = WasmModule::load(&test_module(), limits()).expect("loads");
    let mut host = TestHost::default();
    let mut f = made(&module, &mut host);
    f.property_set(&mut host, "mode", &Value::from("error"))
        .expect("set");
    let mut frame = RgbaFrame::filled(4, 2, [10, 20, 30, 255]);
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(host.errors, ["an error on purpose"]);
    assert_eq!(f.stopped(), None, "an error is not a stop");
    assert_eq!(
        frame.pixel(3, 1),
        [245, 235, 225, 255],
        "the frame processed"
    );
}

#[test]
fn an_opencv_filter_gets_bgra_frames() {
    let module = WasmModule::load(&test_module(), limits()).expect("loads");
    let mut host = TestHost::default();
    let mut f = module
        .create(&mut host, "FluoWasmTestOpenCv", &Map::new())
        .expect("made");
    assert_eq!(f.format(), fluo_module::PixelFormat::Bgra);
    let mut frame = RgbaFrame::filled(5, 3, [10, 20, 30, 255]);
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(f.stopped(), None);
    // Its first byte is blue: read back as RGBA, blue is 255 and red untouched.
    assert_eq!(frame.pixel(4, 2), [10, 20, 255, 255]);
}

/// Sets `mode`, processes a frame: the instance must stop within 1 s with `reason` in its
/// text, answer no method after, and another instance of the module goes on.
fn stops(mode: &str, reason: &str, limits: Limits) {
    let module = WasmModule::load(&test_module(), limits).expect("loads");
    let mut host = TestHost::default();
    let mut f = made(&module, &mut host);
    let mut other = made(&module, &mut host);
    f.property_set(&mut host, "mode", &Value::from(mode))
        .expect("set");
    let mut frame = RgbaFrame::filled(8, 8, [1, 2, 3, 255]);
    let t = Instant::now();
    frame.process(&mut *f, &mut host, 0);
    let took = t.elapsed();
    let why = f.stopped().unwrap_or_else(|| panic!("{mode}: not stopped"));
    println!("{mode}: stopped after {took:?}: {why}");
    assert!(took < Duration::from_secs(1), "{mode}: {took:?}");
    assert!(why.contains(reason), "{mode}: {why}");
    assert!(!why.contains("0x"), "no addresses: {why}");
    let e = f
        .invoke(&mut host, "getFrames", &Map::new())
        .expect_err("stopped");
    assert_eq!(e.code.code(), 40003, "{e:?}");
    let mut frame = RgbaFrame::filled(2, 2, [1, 2, 3, 255]);
    frame.process(&mut *other, &mut host, 0);
    assert_eq!(other.stopped(), None);
    assert_eq!(frame.pixel(1, 1), [254, 253, 252, 255]);
}

#[test]
fn a_panic_stops_the_instance() {
    stops("panic", "it panicked: ", limits());
    stops("panic", "FluoWasmTestFilter panics on purpose", limits());
}

#[test]
fn a_trap_stops_the_instance() {
    stops(
        "trap",
        "it trapped: wasm `unreachable` instruction executed",
        limits(),
    );
}

#[test]
fn an_endless_loop_is_interrupted() {
    stops(
        "loop",
        "a call ran longer than its limit of 200 ms",
        limits(),
    );
}

#[test]
fn an_unbounded_allocation_hits_the_memory_limit() {
    // A time limit the allocation cannot reach on a loaded machine: the memory limit stops it.
    let limits = Limits {
        call_time: Duration::from_secs(5),
        memory_bytes: 32 << 20,
    };
    stops("alloc", "over its limit of 33554432 bytes", limits);
}

#[test]
fn a_file_that_is_not_webassembly_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"not wasm").expect("written");
    let e = WasmModule::load(&bad, limits()).expect_err("refused");
    assert!(e.starts_with("is not a WebAssembly module"), "{e}");
    std::fs::copy(test_module(), dir.path().join("good.wasm")).expect("copied");
    let loaded = fluo_module_wasm::load_dirs(&[dir.path().to_path_buf()], limits());
    assert_eq!(loaded.len(), 1, "the good file only");
    assert!(loaded[0].file().ends_with("good.wasm"));
}
