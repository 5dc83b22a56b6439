//! The module system with the test module (crates/fluo-module-test, linked only by the
//! `test-elements` build): FluoModuleTestFilter, a compiled-in module's type, is listed by
//! getInfo and getKmd, is created and described as a built-in one (its description writes
//! its parents qualified, `kurento.Filter`: the whole lineage all the same), processes a player's
//! video (its FramesProcessed events, its getFrames method); an error it raises is an Error
//! event and its media goes on; when its processing panics, an
//! Error event comes within 1 s, its methods answer errors, and the server goes on serving
//! another client whose recording keeps growing. Run with media workers (the instance in a
//! worker's job) and with `--workers 0` (in the server's process).
//!
//! Run by `make test` (`unit`): `cargo test -p fluo-server --features test-elements --test
//! modules`.
mod common;

use common::{clip, player_to_recorder, size, start_server, Client, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn a_module_works_and_its_panic_stops_its_element_only(workers: usize) {
    let tmp = tempfile::Builder::new()
        .prefix("fluo-modules-")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path();
    let clip = clip(dir);
    let uri = format!("file://{}", clip.display());
    let log = dir.join("fluo.log");
    let program = env!("CARGO_BIN_EXE_fluo-test-elements");
    let (child, port) = start_server(program, dir, workers, &[], &log);
    let mut server = Server(child);
    let mut a = Client::connect(port).await;

    // getInfo lists the module with its factory; getKmd describes it.
    let info = a
        .request(
            "invoke",
            json!({"object": "manager_ServerManager", "operation": "getInfo"}),
        )
        .await
        .expect("getInfo");
    let module = info["modules"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "fluomodtest"))
        .unwrap_or_else(|| panic!("fluomodtest in getInfo: {info}"));
    assert_eq!(module["version"], "0.1.0");
    assert_eq!(module["factories"], json!(["FluoModuleTestFilter"]));
    let kmd = a
        .request(
            "invoke",
            json!({"object": "manager_ServerManager", "operation": "getKmd",
                   "operationParams": {"moduleName": "fluomodtest"}}),
        )
        .await
        .expect("getKmd");
    let kmd: Value = serde_json::from_str(kmd.as_str().expect("text")).expect("kmd JSON");
    assert_eq!(kmd["remoteClasses"][0]["name"], "FluoModuleTestFilter");
    assert_eq!(kmd["remoteClasses"][0]["extends"], "Filter");
    assert_eq!(kmd["events"][0]["name"], "FramesProcessed");

    // Client B records a player of its own throughout.
    let mut b = Client::connect(port).await;
    let b_file = dir.join("b.webm");
    let (_, b_player, b_rec) = player_to_recorder(&mut b, &uri, &b_file).await;
    b.subscribe(&b_rec, "MediaFlowInStateChanged").await;
    b.invoke(&b_player, "connect", json!({"sink": b_rec})).await;
    b.invoke(&b_rec, "record", json!({})).await;
    b.invoke(&b_player, "play", json!({})).await;
    b.wait_flowing(&b_rec, Duration::from_secs(20)).await;

    // Client A: player -> FluoModuleTestFilter -> recorder.
    let (p, player, rec) = player_to_recorder(&mut a, &uri, &dir.join("a.webm")).await;
    let filter = a
        .create("FluoModuleTestFilter", json!({"mediaPipeline": p}))
        .await
        .expect("the module's filter");
    let d = a
        .request("describe", json!({"object": filter}))
        .await
        .expect("describe");
    assert_eq!(d["type"], "FluoModuleTestFilter", "{d}");
    assert_eq!(
        d["qualifiedType"], "fluomodtest.FluoModuleTestFilter",
        "{d}"
    );
    // Its description writes the parent qualified (kurento.Filter): the whole lineage.
    assert_eq!(
        d["hierarchy"],
        json!([
            "kurento.Filter",
            "kurento.MediaElement",
            "kurento.MediaObject"
        ]),
        "{d}"
    );
    a.subscribe(&filter, "FramesProcessed").await;
    a.subscribe(&filter, "Error").await;
    a.invoke(&player, "connect", json!({"sink": filter})).await;
    a.invoke(&filter, "connect", json!({"sink": rec})).await;
    a.invoke(&rec, "record", json!({})).await;
    a.invoke(&player, "play", json!({})).await;
    let ev = a
        .event("FramesProcessed", &filter, Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("no FramesProcessed in 20 s: {:?}", a.events));
    assert_eq!(ev["data"]["count"], 1, "{ev}");
    assert_eq!(ev["data"]["type"], "FramesProcessed", "{ev}");
    let frames = a
        .request(
            "invoke",
            json!({"object": filter, "operation": "getFrames"}),
        )
        .await
        .expect("getFrames");
    assert!(
        frames.as_u64().is_some_and(|n| n >= 1),
        "getFrames: {frames}"
    );
    // A property: its default read, a value the instance refuses (its error, its code
    // kept; the value stays), one it takes.
    assert_eq!(a.value(&filter, "getMode").await, "invert");
    let e = a
        .request(
            "invoke",
            json!({"object": filter, "operation": "setMode", "operationParams": {"mode": "x"}}),
        )
        .await
        .expect_err("a bad mode");
    assert_eq!(e["code"], 40107, "{e}");
    assert!(
        e["message"].as_str().unwrap_or("").contains("mode must be"),
        "{e}"
    );
    assert_eq!(a.value(&filter, "getMode").await, "invert");

    // The module raises an error (Host::error): an Error event, and its media goes on.
    a.invoke(&filter, "setMode", json!({"mode": "error"})).await;
    let err = a
        .event("Error", &filter, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("no Error event from Host::error: {:?}", a.events));
    assert_eq!(err["data"]["errorCode"], 40003, "{err}");
    assert_eq!(err["data"]["type"], "GSTREAMER_FILTER_ERROR", "{err}");
    let text = err["data"]["description"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("FluoModuleTestFilter: an error on purpose, after frame "),
        "{err}"
    );
    let frames = |v: Value| v.as_u64().unwrap_or(0);
    let at_error = frames(
        a.request(
            "invoke",
            json!({"object": filter, "operation": "getFrames"}),
        )
        .await
        .expect("getFrames after the error"),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = frames(
        a.request(
            "invoke",
            json!({"object": filter, "operation": "getFrames"}),
        )
        .await
        .expect("getFrames"),
    );
    assert!(
        later > at_error,
        "frames go on after the error: {at_error} -> {later}"
    );
    // The panic's Error event below is another one.
    a.events.retain(|e| e["type"] != "Error");

    // The processing panics: an Error event within 1 s, methods answer errors.
    a.invoke(&filter, "setMode", json!({"mode": "panic"})).await;
    assert_eq!(a.value(&filter, "getMode").await, "panic");
    let t = Instant::now();
    let err = a
        .event("Error", &filter, Duration::from_secs(1))
        .await
        .unwrap_or_else(|| panic!("no Error within 1 s of the panic: {:?}", a.events));
    println!("Error {:?} after setMode(panic): {err}", t.elapsed());
    let text = err["data"]["description"].as_str().unwrap_or_default();
    assert!(
        text.contains("FluoModuleTestFilter: the module panicked"),
        "{err}"
    );
    assert!(text.contains("panics on purpose"), "{err}");
    assert!(!text.contains("0x"), "no addresses: {err}");
    let e = a
        .request(
            "invoke",
            json!({"object": filter, "operation": "getFrames"}),
        )
        .await
        .expect_err("no answer from a panicked module");
    assert_eq!(e["code"], 40003, "{e}");

    // The server serves B meanwhile: B's recording grows, a new pipeline is made.
    let before = size(&b_file);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let after = size(&b_file);
    assert!(
        after > before,
        "B's recording grows after the panic: {before} -> {after}"
    );
    b.create("MediaPipeline", json!({}))
        .await
        .expect("B is served");
    assert!(
        !b.events.iter().any(|e| e["type"] == "Error"),
        "no Error for B: {:?}",
        b.events
    );
    assert!(
        server.0.try_wait().expect("status").is_none(),
        "the server is alive"
    );
    // A's other elements still answer.
    a.request("invoke", json!({"object": rec, "operation": "getName"}))
        .await
        .expect("A's recorder answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_media_worker() {
    a_module_works_and_its_panic_stops_its_element_only(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_server_process() {
    a_module_works_and_its_panic_stops_its_element_only(0).await;
}
