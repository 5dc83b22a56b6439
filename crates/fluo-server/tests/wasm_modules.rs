//! WebAssembly modules (docs/modules.md): `fluo --modules-dir DIR` loads the test module
//! (crates/fluo-module-wasmtest, built by `make wasm-modules`) and leaves out a file that is
//! not WebAssembly with a log line; getInfo lists the module; its FluoWasmTestFilter
//! processes a player's video (its WasmFramesProcessed event, its getFrames method, its
//! property's refusal). When it raises 60 Error events a frame, the element's limit lets 5
//! through at once and then 2 a second, its frames go on and the log counts the dropped
//! ones. When its frame panics, traps, loops forever or allocates without
//! bound, an Error event comes within 1 s, its methods answer 40003, and the server goes on
//! serving another client whose recording keeps growing. Run with a media worker (the
//! instance in a worker's job) and with `--workers 0` (in the server's process).
//!
//! Run by `make test` (`unit`, after `wasm-modules`): `cargo test -p fluo-server --test
//! wasm_modules`.
mod common;

use common::{clip, player_to_recorder, size, start_server, Client, Server};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
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

/// One filter of A's that misbehaves in `mode`: its Error event within 1 s naming `reason`,
/// 40003 after; B's recording grows meanwhile and B is served.
async fn misbehaves(
    a: &mut Client,
    b: &mut Client,
    b_file: &Path,
    uri: &str,
    dir: &Path,
    mode: &str,
    reason: &str,
) {
    let (p, player, rec) = player_to_recorder(a, uri, &dir.join(format!("a-{mode}.webm"))).await;
    let filter = a
        .create("FluoWasmTestFilter", json!({"mediaPipeline": p}))
        .await
        .expect("the module's filter");
    let d = a
        .request("describe", json!({"object": filter}))
        .await
        .expect("describe");
    assert_eq!(d["qualifiedType"], "fluowasmtest.FluoWasmTestFilter", "{d}");
    a.subscribe(&filter, "WasmFramesProcessed").await;
    a.subscribe(&filter, "Error").await;
    a.invoke(&player, "connect", json!({"sink": filter})).await;
    a.invoke(&filter, "connect", json!({"sink": rec})).await;
    a.invoke(&rec, "record", json!({})).await;
    a.invoke(&player, "play", json!({})).await;
    let ev = a
        .event("WasmFramesProcessed", &filter, Duration::from_secs(20))
        .await
        .unwrap_or_else(|| {
            let log = std::fs::read_to_string(dir.join("fluo.log")).unwrap_or_default();
            panic!(
                "no WasmFramesProcessed in 20 s: {:?}; the log: {log}",
                a.events
            )
        });
    assert_eq!(ev["data"]["count"], 1, "{ev}");
    let frames = a.value(&filter, "getFrames").await;
    assert!(
        frames.as_u64().is_some_and(|n| n >= 1),
        "getFrames: {frames}"
    );
    let e = a
        .request(
            "invoke",
            json!({"object": filter, "operation": "setMode", "operationParams": {"mode": "x"}}),
        )
        .await
        .expect_err("a bad mode");
    assert_eq!(e["code"], 40107, "{e}");
    assert_eq!(a.value(&filter, "getMode").await, "invert");

    a.invoke(&filter, "setMode", json!({"mode": mode})).await;
    let t = Instant::now();
    let err = a
        .event("Error", &filter, Duration::from_secs(1))
        .await
        .unwrap_or_else(|| panic!("{mode}: no Error within 1 s: {:?}", a.events));
    println!("{mode}: Error {:?} after setMode: {err}", t.elapsed());
    let text = err["data"]["description"].as_str().unwrap_or_default();
    assert!(
        text.contains("FluoWasmTestFilter: the module stopped in process"),
        "{err}"
    );
    assert!(text.contains(reason), "{mode}: {err}");
    assert!(!text.contains("0x"), "no addresses: {err}");
    let e = a
        .request(
            "invoke",
            json!({"object": filter, "operation": "getFrames"}),
        )
        .await
        .expect_err("no answer from a stopped module");
    assert_eq!(e["code"], 40003, "{e}");

    // The recorder writes in blocks: its file grows within a few seconds.
    let before = size(b_file);
    let t = Instant::now();
    while size(b_file) <= before && t.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = size(b_file);
    assert!(
        after > before,
        "{mode}: B's recording grows: {before} -> {after}"
    );
    b.create("MediaPipeline", json!({}))
        .await
        .expect("B is served");
    a.request("release", json!({"object": p}))
        .await
        .expect("A's pipeline released");
}

/// A filter of A's raising 60 Error events a frame (mode `flood`, 15 frames a second): the
/// element's limit on them (`Host::error`, fluo-gst's module/limit.rs) raises 5 at once, then
/// 2 a second; its frames go on; the log says how many were dropped.
async fn floods(a: &mut Client, uri: &str, dir: &Path, log: &Path) {
    let (p, player, rec) = player_to_recorder(a, uri, &dir.join("a-flood.webm")).await;
    let filter = a
        .create("FluoWasmTestFilter", json!({"mediaPipeline": p}))
        .await
        .expect("the module's filter");
    a.subscribe(&filter, "WasmFramesProcessed").await;
    a.subscribe(&filter, "Error").await;
    a.invoke(&player, "connect", json!({"sink": filter})).await;
    a.invoke(&filter, "connect", json!({"sink": rec})).await;
    a.invoke(&rec, "record", json!({})).await;
    a.invoke(&player, "play", json!({})).await;
    a.event("WasmFramesProcessed", &filter, Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("no WasmFramesProcessed in 20 s: {:?}", a.events));
    let frames = |v: Value| v.as_u64().unwrap_or(0);
    a.invoke(&filter, "setMode", json!({"mode": "flood"})).await;
    let t = Instant::now();
    let first = frames(a.value(&filter, "getFrames").await);
    // Every event of 3 s (waiting for one that never comes).
    assert!(a
        .event("NoSuchEvent", &filter, Duration::from_secs(3))
        .await
        .is_none());
    let last = frames(a.value(&filter, "getFrames").await);
    let secs = t.elapsed().as_secs_f64();
    let errors: Vec<&str> = a
        .events
        .iter()
        .filter(|e| e["type"] == "Error" && e["data"]["source"] == filter.as_str())
        .map(|e| e["data"]["description"].as_str().unwrap_or_default())
        .collect();
    println!(
        "flood: {} Error events in {secs:.1} s, frames {first} -> {last} (60 raised a frame)",
        errors.len()
    );
    let most = 5 + (secs * 2.0).ceil() as usize;
    assert!(
        (5..=most).contains(&errors.len()),
        "{} Error events in {secs:.1} s (at most {most}): {errors:?}",
        errors.len()
    );
    assert!(
        errors
            .iter()
            .all(|d| d.starts_with("FluoWasmTestFilter: flood ")),
        "{errors:?}"
    );
    assert!(last >= first + 20, "frames go on: {first} -> {last}");
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        text.lines()
            .any(|l| l.contains("Error events of the module dropped: over its limit")),
        "the dropped events' log line"
    );
    a.request("release", json!({"object": p}))
        .await
        .expect("A's pipeline released");
    a.events.retain(|e| e["data"]["source"] != filter.as_str());
}

async fn wasm_modules_are_contained(workers: usize) {
    let tmp = tempfile::Builder::new()
        .prefix("fluo-wasm-")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path();
    let modules = dir.join("modules");
    std::fs::create_dir(&modules).expect("modules folder");
    std::fs::copy(test_module(), modules.join("fluowasmtest.wasm")).expect("copied");
    std::fs::write(modules.join("broken.wasm"), b"not WebAssembly").expect("written");
    let clip = clip(dir);
    let uri = format!("file://{}", clip.display());
    let log = dir.join("fluo.log");
    let folder = modules.display().to_string();
    let (child, port) = start_server(
        env!("CARGO_BIN_EXE_fluo"),
        dir,
        workers,
        &["--modules-dir", &folder, "--wasm-memory-limit", "16M"],
        &log,
    );
    let mut server = Server(child);
    let mut a = Client::connect(port).await;
    let info = a
        .request(
            "invoke",
            json!({"object": "manager_ServerManager", "operation": "getInfo"}),
        )
        .await
        .expect("getInfo");
    let module = info["modules"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "fluowasmtest"))
        .unwrap_or_else(|| panic!("fluowasmtest in getInfo: {info}"));
    assert_eq!(
        module["factories"],
        json!(["FluoWasmTestFilter", "FluoWasmTestOpenCv"])
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.lines()
            .any(|l| l.contains("WebAssembly module not loaded")
                && l.contains("broken.wasm")
                && l.contains("is not a WebAssembly module")),
        "the bad file's log line: {text}"
    );

    let mut b = Client::connect(port).await;
    let b_file = dir.join("b.webm");
    let (_, b_player, b_rec) = player_to_recorder(&mut b, &uri, &b_file).await;
    b.subscribe(&b_rec, "MediaFlowInStateChanged").await;
    // B's elements' errors reach B's events: the check at the end can fail.
    b.subscribe(&b_rec, "Error").await;
    b.subscribe(&b_player, "Error").await;
    b.invoke(&b_player, "connect", json!({"sink": b_rec})).await;
    b.invoke(&b_rec, "record", json!({})).await;
    b.invoke(&b_player, "play", json!({})).await;
    b.wait_flowing(&b_rec, Duration::from_secs(20)).await;

    floods(&mut a, &uri, dir, &log).await;
    for (mode, reason) in [
        ("panic", "panics on purpose"),
        (
            "trap",
            "it trapped: wasm `unreachable` instruction executed",
        ),
        ("loop", "a call ran longer than its limit of 200 ms"),
        ("alloc", "over its limit of 16777216 bytes"),
    ] {
        misbehaves(&mut a, &mut b, &b_file, &uri, dir, mode, reason).await;
    }
    assert!(
        !b.events.iter().any(|e| e["type"] == "Error"),
        "no Error for B: {:?}",
        b.events
    );
    assert!(
        server.0.try_wait().expect("status").is_none(),
        "the server is alive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_media_worker() {
    wasm_modules_are_contained(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_server_process() {
    wasm_modules_are_contained(0).await;
}
