//! 5. **WebAssembly against compiled in** (issue 18): the sandbox's overhead. The same
//!    filter, PointerDetectorFilter (crates/fluo-module-pointerdetector), built into this
//!    bench as an rlib (the bench profile: release, opt-level 3) and as the WebAssembly module
//!    `make wasm-modules` builds (profile wasm-module: opt-level "s"), loaded by
//!    fluo-module-wasm as the server loads it (`Limits::default()`, the server's default
//!    limits: 200 ms a call, 64 MiB). Both get the same 640x360 RGBA frames (a red square
//!    moving over a colour ramp, two windows on its way) through fluo_module's `Instance`
//!    with a recording host, after the calibration; the time of each `process` call is taken.
//!    Native and wasm alternate, `ROUNDS` rounds of `FRAMES` frames each, and both must raise
//!    the same WindowIn / WindowOut events.
//!
//! What the wasm path copies per frame (fluo-module-wasm instance.rs, `Guest::frame`): the
//! planes packed into a scratch buffer (one copy of the frame), that buffer into the guest's
//! linear memory (a second), and the guest's result back into the planes (a third): 3 x
//! 921 600 bytes at 640x360 RGBA. The "3 copies" row times those three copies alone, natively.

use fluo_module::testing::TestHost;
use fluo_module::{Instance, Map, Module, PixelFormat, Plane, Value, VideoFrame};
use fluo_module_wasm::{Limits, WasmModule};
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

/// The PointerDetectorFilter module `make wasm-modules` builds (`FLUO_BENCH_WASM`: another
/// build of it, e.g. with other compiler flags).
fn wasm_file() -> PathBuf {
    if let Some(f) = std::env::var_os("FLUO_BENCH_WASM") {
        return PathBuf::from(f);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let file = target.join("wasm32-unknown-unknown/wasm-module/fluo_module_pointerdetector.wasm");
    assert!(
        file.is_file(),
        "{} is missing: make wasm-modules (make bench-media does it)",
        file.display()
    );
    file
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

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    super::flash::pct(v, p)
}

/// Runs the part: prints the table, writes the results.
pub fn run(results: Option<&std::path::Path>) {
    let load_before = super::composite::load();
    let t = Instant::now();
    let native = fluo_module_pointerdetector::PointerDetector;
    let limits = Limits::default();
    let t_load = Instant::now();
    let wasm = WasmModule::load(&wasm_file(), limits).expect("the wasm module loads");
    let load_ms = t_load.elapsed().as_secs_f64() * 1000.0;
    let size = std::fs::metadata(wasm_file()).map_or(0, |m| m.len());
    let (mut n, mut w, mut c) = (vec![], vec![], vec![]);
    for r in 1..=ROUNDS {
        let (tn, en) = round(&native);
        let (tw, ew) = round(&wasm);
        assert!(!en.is_empty(), "the pointer entered no window");
        assert_eq!(en, ew, "native and wasm raise the same events");
        let tc = copies();
        eprintln!(
            "wasm round {r}: native p50 {:.0} µs, wasm p50 {:.0} µs, copies p50 {:.0} µs, {} events each (load {})",
            pct(&mut tn.clone(), 50.0),
            pct(&mut tw.clone(), 50.0),
            pct(&mut tc.clone(), 50.0),
            en.len(),
            super::composite::load()
        );
        n.extend(tn);
        w.extend(tw);
        c.extend(tc);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let wasm_name = match std::env::var_os("FLUO_BENCH_WASM") {
        Some(_) => "wasm (wasmtime, FLUO_BENCH_WASM's build)",
        None => "wasm (wasmtime, opt-level s)",
    };
    let rows = [
        ("native (rlib, opt-level 3)", &mut n),
        (wasm_name, &mut w),
        ("3 copies of the frame alone", &mut c),
    ];
    let mut table = format!(
        "PointerDetectorFilter's process on 640x360 RGBA frames, compiled in against WebAssembly \
         (fluo-module-wasm, the server's default limits: {} ms a call, {} MiB); {ROUNDS} rounds of \
         {FRAMES} frames each, alternated, after the calibration; µs per frame over every frame of \
         every round; module {size} bytes, loaded (compiled) in {load_ms:.0} ms. Load average before \
         {load_before}, after {}; took {:.1} s.\n\n| path | frames | p50 µs | p95 µs | mean µs |\n|---|---|---|---|---|\n",
        limits.call_time.as_millis(),
        limits.memory_bytes >> 20,
        super::composite::load(),
        t.elapsed().as_secs_f64()
    );
    let mut figures = vec![];
    for (name, v) in rows {
        let (p50, p95, m) = (pct(v, 50.0), pct(v, 95.0), mean(v));
        table += &format!("| {name} | {} | {p50:.0} | {p95:.0} | {m:.0} |\n", v.len());
        figures.push(
            json!({"path": name, "frames": v.len(), "p50_us": p50, "p95_us": p95, "mean_us": m}),
        );
    }
    let (w50, w95) = (pct(&mut w, 50.0), pct(&mut w, 95.0));
    let (n50, n95) = (pct(&mut n, 50.0), pct(&mut n, 95.0));
    table += &format!(
        "\nwasm / native: p50 {:.2}, p95 {:.2}, mean {:.2}.\n",
        w50 / n50.max(1e-9),
        w95 / n95.max(1e-9),
        mean(&w) / mean(&n).max(1e-9)
    );
    println!("\n{table}");
    if let Some(dir) = results {
        let j = json!({
            "part": "wasm",
            "plan": {"rounds": ROUNDS, "frames": FRAMES, "size": [W, H], "format": "RGBA",
                     "call_time_ms": limits.call_time.as_millis() as u64, "memory_bytes": limits.memory_bytes,
                     "copies_per_frame": "packed into scratch, scratch into linear memory, linear memory back into the planes"},
            "module_bytes": size,
            "load_ms": load_ms,
            "load_before": load_before,
            "load_after": super::composite::load(),
            "rows": figures,
        });
        let out = super::filters_report::write(dir, "wasm", &j, &table);
        println!("  results: {out}");
    }
}
