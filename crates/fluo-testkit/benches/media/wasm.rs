//! 5. **WebAssembly against compiled in** (issue 18): the sandbox's overhead. The same
//!    filter, PointerDetectorFilter (crates/fluo-module-pointerdetector), built into this
//!    bench as an rlib (the bench profile: release, opt-level 3) and as WebAssembly twice: the
//!    module `make wasm-modules` builds and the server ships (profile wasm-module: opt-level
//!    "s"), and the same crate at opt-level 3 (profile wasm-module-o3, built by `make
//!    bench-media`): native against the o3 module is the sandbox's cost at equal
//!    optimisation, the s module what is shipped. Each loaded by fluo-module-wasm as the server
//!    loads it (`Limits::default()`, the server's default limits: 200 ms a call, 64 MiB). All
//!    get the same 640x360 RGBA frames (a red square moving over a colour ramp, two windows on
//!    its way) through fluo_module's `Instance` with a recording host, after the calibration;
//!    the time of each `process` call is taken. They alternate, `ROUNDS` rounds of `FRAMES`
//!    frames each, and all must raise the same WindowIn / WindowOut events.
//!
//! What the wasm path copies per frame (fluo-module-wasm instance.rs, `Guest::frame`): the
//! planes packed into a scratch buffer (one copy of the frame), that buffer into the guest's
//! linear memory (a second), and the guest's result back into the planes (a third): 3 x
//! 921 600 bytes at 640x360 RGBA. The "3 copies" row times those three copies alone, natively.

use fluo_module::testing::TestHost;
use fluo_module::{Instance, Map, Module, PixelFormat, Plane, Value, VideoFrame};
use fluo_module_wasm::{Limits, WasmModule};
use fluo_testkit::machine;
use fluo_testkit::stats::{percentile, range};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

const W: u32 = 640;
const H: u32 = 360;
pub const FRAMES: usize = 600;
pub const ROUNDS: usize = 3;
/// The pointer: a 40x40 red square.
const SIDE: u32 = 40;
const RED: [u8; 4] = [230, 20, 20, 255];

/// The PointerDetectorFilter modules: (row name, profile, what builds it).
const MODULES: [(&str, &str, &str); 2] = [
    (
        "wasm as shipped (wasmtime, opt-level s)",
        "wasm-module",
        "make wasm-modules",
    ),
    (
        "wasm at opt-level 3 (wasmtime)",
        "wasm-module-o3",
        "make bench-media, or cargo build --profile wasm-module-o3 --target wasm32-unknown-unknown -p fluo-module-pointerdetector",
    ),
];

/// The module built with `profile`, or `Err` saying what builds it.
fn wasm_file(profile: &str, made_by: &str) -> Result<PathBuf, String> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let file = target.join(format!(
        "wasm32-unknown-unknown/{profile}/fluo_module_pointerdetector.wasm"
    ));
    match file.is_file() {
        true => Ok(file),
        false => Err(format!("{} is missing: {made_by}", file.display())),
    }
}

/// Where the square's top-left corner is in frame `i`: left to right and back, with a slow
/// vertical sway.
fn square_at(i: usize) -> (u32, u32) {
    let span = (W - SIDE) as usize;
    let k = (i * 4) % (2 * span);
    let x = if k < span { k } else { 2 * span - k };
    let y = 160.0 + 80.0 * (i as f64 / 50.0).sin();
    (x as u32, y as u32)
}

/// Frame `i` into `buf` (RGBA, rows packed): `background` with the square.
fn paint(buf: &mut [u8], background: &[u8], i: usize) {
    buf.copy_from_slice(background);
    let (x0, y0) = square_at(i);
    for y in y0..y0 + SIDE {
        for x in x0..x0 + SIDE {
            let at = ((y * W + x) * 4) as usize;
            buf[at..at + 4].copy_from_slice(&RED);
        }
    }
}

/// A colour ramp (no colour near the square's red).
fn background() -> Vec<u8> {
    let mut v = Vec::with_capacity((W * H * 4) as usize);
    for y in 0..H {
        for x in 0..W {
            v.extend_from_slice(&[
                (x * 100 / W) as u8,
                (60 + y * 120 / H) as u8,
                (120 + (x + y) * 100 / (W + H)) as u8,
                255,
            ]);
        }
    }
    v
}

fn params() -> Map<String, Value> {
    let (x, y) = square_at(0);
    let region =
        json!({"topRightCornerX": x + 10, "topRightCornerY": y + 10, "width": 20, "height": 20});
    let win = |id: &str, x: u32| json!({"id": id, "upperRightX": x, "upperRightY": 80, "width": 120, "height": 200});
    let v = json!({"calibrationRegion": region, "windows": [win("left", 100), win("right", 420)]});
    v.as_object().cloned().expect("an object")
}

/// A new instance, calibrated on frame 0 (not timed).
fn calibrated(
    module: &dyn Module,
    host: &mut TestHost,
    buf: &mut [u8],
    bg: &[u8],
) -> Box<dyn Instance> {
    let mut f = module
        .create(host, "PointerDetectorFilter", &params())
        .expect("created");
    f.invoke(host, "trackColorFromCalibrationRegion", &Map::new())
        .expect("calibrates");
    paint(buf, bg, 0);
    process(&mut *f, host, buf, 0);
    assert_eq!(f.stopped(), None, "stopped at the calibration");
    f
}

fn process(f: &mut dyn Instance, host: &mut TestHost, buf: &mut [u8], i: usize) {
    let mut frame = VideoFrame {
        format: PixelFormat::Rgba,
        width: W,
        height: H,
        pts_ns: Some(i as u64 * 33_333_333),
        planes: vec![Plane {
            data: buf,
            stride: W as usize * 4,
        }],
    };
    f.process(host, &mut frame);
}

/// One round: `FRAMES` frames through a new calibrated instance; each call's time (µs) and
/// the events raised.
fn round(module: &dyn Module) -> (Vec<f64>, Vec<(String, Value)>) {
    let bg = background();
    let mut buf = vec![0u8; bg.len()];
    let mut host = TestHost::default();
    let mut f = calibrated(module, &mut host, &mut buf, &bg);
    let mut times = Vec::with_capacity(FRAMES);
    for i in 1..=FRAMES {
        paint(&mut buf, &bg, i);
        let t = Instant::now();
        process(&mut *f, &mut host, &mut buf, i);
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    assert_eq!(f.stopped(), None, "the instance stopped");
    let events = (host.events.into_iter())
        .map(|(n, fields)| (n, fields.get("windowId").cloned().unwrap_or_default()))
        .collect();
    (times, events)
}

/// The three copies the wasm host makes of each frame, alone (µs per frame).
fn copies() -> Vec<f64> {
    let bg = background();
    let (mut scratch, mut guest, mut planes) =
        (vec![0u8; bg.len()], vec![0u8; bg.len()], bg.clone());
    let mut times = Vec::with_capacity(FRAMES);
    for i in 0..FRAMES {
        planes[i % 64] = i as u8;
        let t = Instant::now();
        scratch.copy_from_slice(std::hint::black_box(&planes));
        guest.copy_from_slice(std::hint::black_box(&scratch));
        planes.copy_from_slice(std::hint::black_box(&guest));
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times
}

/// Runs the part: prints the table, writes the results. Ends the process, saying what builds
/// them, when a module is missing (before anything runs).
pub fn run(results: Option<&std::path::Path>) {
    let files: Vec<PathBuf> = MODULES
        .iter()
        .map(|(_, profile, made_by)| wasm_file(profile, made_by))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| {
            eprintln!("the wasm part cannot run: {e}");
            std::process::exit(1)
        });
    let load_before = machine::load();
    // Before the results change tracked files.
    machine::commit();
    let t = Instant::now();
    let native = fluo_module_pointerdetector::PointerDetector;
    let limits = Limits::default();
    let mut modules = vec![];
    for f in &files {
        let t_load = Instant::now();
        let m = WasmModule::load(f, limits).expect("the wasm module loads");
        let load_ms = t_load.elapsed().as_secs_f64() * 1000.0;
        let size = std::fs::metadata(f).map_or(0, |m| m.len());
        modules.push((m, load_ms, size));
    }
    // Per row: every frame's µs; the rows: native, each module, the copies.
    let mut times: Vec<Vec<f64>> = vec![vec![]; modules.len() + 2];
    for r in 1..=ROUNDS {
        let (tn, en) = round(&native);
        assert!(!en.is_empty(), "the pointer entered no window");
        let mut line = format!("wasm round {r}: native p50 {:.0} µs", percentile(&tn, 50.0));
        times[0].extend(tn);
        for (i, (m, _, _)) in modules.iter().enumerate() {
            let (tw, ew) = round(m);
            assert_eq!(en, ew, "native and {} raise the same events", MODULES[i].0);
            line += &format!(", {} p50 {:.0} µs", MODULES[i].1, percentile(&tw, 50.0));
            times[i + 1].extend(tw);
        }
        let tc = copies();
        eprintln!(
            "{line}, copies p50 {:.0} µs, {} events each (load {})",
            percentile(&tc, 50.0),
            en.len(),
            machine::load()
        );
        times[modules.len() + 1].extend(tc);
    }
    let mut names = vec!["native (rlib, opt-level 3)"];
    names.extend(MODULES.iter().map(|m| m.0));
    names.push("3 copies of the frame alone");
    let sizes: Vec<String> = (MODULES.iter().zip(&modules))
        .map(|((_, p, _), (_, ms, b))| format!("{p}: {b} bytes, loaded (compiled) in {ms:.0} ms"))
        .collect();
    let mut table = format!(
        "PointerDetectorFilter's process on 640x360 RGBA frames, compiled in against WebAssembly \
         (fluo-module-wasm, the server's default limits: {} ms a call, {} MiB), the module as \
         shipped (opt-level s) and at opt-level 3; {ROUNDS} rounds of {FRAMES} frames each, \
         alternated, after the calibration; µs per frame over every frame of every round; {}. \
         Load average before {load_before}, after {}; took {:.1} s.\n\n\
         | path | rounds | frames | p50 µs | p95 µs | mean µs | round medians, min-max µs |\n|---|---|---|---|---|---|---|\n",
        limits.call_time.as_millis(),
        limits.memory_bytes >> 20,
        sizes.join("; "),
        machine::load(),
        t.elapsed().as_secs_f64()
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let mut figures = vec![];
    for (name, v) in names.iter().zip(&times) {
        let (p50, p95, m) = (percentile(v, 50.0), percentile(v, 95.0), mean(v));
        let medians: Vec<f64> = v.chunks(FRAMES).map(|c| percentile(c, 50.0)).collect();
        let (lo, hi) = range(&medians);
        table += &format!(
            "| {name} | {ROUNDS} | {} | {p50:.0} | {p95:.0} | {m:.0} | {lo:.0}-{hi:.0} |\n",
            v.len()
        );
        figures.push(
            json!({"path": name, "rounds": ROUNDS, "frames": v.len(), "p50_us": p50,
            "p95_us": p95, "mean_us": m, "round_p50_range_us": [lo, hi]}),
        );
    }
    let ratio = |i: usize| {
        let (w, n) = (&times[i], &times[0]);
        format!(
            "p50 {:.2}, p95 {:.2}, mean {:.2}",
            percentile(w, 50.0) / percentile(n, 50.0).max(1e-9),
            percentile(w, 95.0) / percentile(n, 95.0).max(1e-9),
            mean(w) / mean(n).max(1e-9)
        )
    };
    table += &format!(
        "\nwasm at opt-level 3 / native (opt-level 3): {}.\nwasm as shipped (opt-level s) / native (opt-level 3): {}.\n",
        ratio(2),
        ratio(1)
    );
    println!("\n{table}");
    if let Some(dir) = results {
        let j = json!({
            "part": "wasm",
            "plan": {"rounds": ROUNDS, "frames": FRAMES, "size": [W, H], "format": "RGBA",
                     "call_time_ms": limits.call_time.as_millis() as u64, "memory_bytes": limits.memory_bytes,
                     "copies_per_frame": "packed into scratch, scratch into linear memory, linear memory back into the planes"},
            "modules": (MODULES.iter().zip(&modules)).map(|((name, profile, _), (_, ms, b))|
                json!({"path": name, "profile": profile, "bytes": b, "load_ms": ms})).collect::<Vec<_>>(),
            "machine": machine::facts(&load_before),
            "load_before": load_before,
            "load_after": machine::load(),
            "rows": figures,
        });
        let out = super::filters_report::write(dir, "wasm", &j, &table);
        println!("  results: {out}");
    }
}
