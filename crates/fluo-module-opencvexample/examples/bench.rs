//! OpenCVExample's cost per frame: the grey picture (filter type 1) and Canny's edges (type
//! 0, the default) at 640x480, 1280x720 and 1920x1080, each frame through the element's
//! instance as the host calls it (the OpenCVFilter base, BGRA in place). Prints, per size
//! and type, the median, 90th percentile and fastest time of FRAMES frames (after WARMUP
//! frames) and the bytes allocated per frame (a counting allocator).
//!
//!     cargo run --release -p fluo-module-opencvexample --example bench [-- FRAMES]
//!
//! The frames are a synthetic picture with edges (a gradient, bands, discs moving from frame
//! to frame, some noise); each is copied into the frame buffer before its (untimed) turn.

use fluo_module::testing::TestHost;
use fluo_module::{Instance, Map, Module, PixelFormat, Plane, Value, VideoFrame};
use fluo_module_opencvexample::OpenCvExample;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The system allocator, counting the bytes it hands out.
struct Counting;

static ALLOCATED: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call goes to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARMUP: usize = 5;
const SIZES: [(u32, u32); 3] = [(640, 480), (1280, 720), (1920, 1080)];
/// Distinct source pictures, used in turn.
const PICTURES: usize = 8;

/// Picture `k` (BGRA, rows packed).
fn picture(w: u32, h: u32, k: usize) -> Vec<u8> {
    let (w, h) = (w as usize, h as usize);
    let mut seed = 0x9e37_79b9_u32.wrapping_mul(k as u32 + 1);
    let mut out = vec![0u8; w * h * 4];
    let discs: Vec<(f32, f32, f32)> = (0..6)
        .map(|i| {
            let t = k as f32 * 0.2 + i as f32;
            (
                w as f32 * (0.15 + 0.7 * ((t * 1.3).sin() * 0.5 + 0.5)),
                h as f32 * (0.15 + 0.7 * ((t * 0.7).cos() * 0.5 + 0.5)),
                h as f32 * 0.08,
            )
        })
        .collect();
    for y in 0..h {
        for x in 0..w {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (seed >> 28) as i32 - 8;
            let mut v = (x * 160 / w + y * 60 / h) as i32;
            if (x / (w / 8).max(1)) % 2 == 1 && y > h / 3 && y < 2 * h / 3 {
                v += 70;
            }
            if discs
                .iter()
                .any(|&(cx, cy, r)| (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) < r * r)
            {
                v = 240 - v / 3;
            }
            let v = (v + noise).clamp(0, 255) as u8;
            let i = (y * w + x) * 4;
            out[i..i + 4].copy_from_slice(&[v, v.saturating_sub(30), v / 2 + 60, 255]);
        }
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let frames: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(60);
    println!(
        "OpenCVExample, {frames} frames after {WARMUP} (ms per frame; bytes allocated per frame)"
    );
    println!("size       type   median    p90      min   alloc/frame");
    for (w, h) in SIZES {
        let pictures: Vec<Vec<u8>> = (0..PICTURES).map(|k| picture(w, h, k)).collect();
        for (label, filter_type) in [("grey", 1), ("canny", 0)] {
            let mut host = TestHost::default();
            let mut f: Box<dyn Instance> = OpenCvExample
                .create(&mut host, "OpenCVExample", &Map::new())
                .expect("an OpenCVExample");
            let params = Map::from_iter([("filterType".to_string(), Value::from(filter_type))]);
            f.invoke(&mut host, "setFilterType", &params)
                .expect("setFilterType");
            let mut buf = vec![0u8; (w * h * 4) as usize];
            let mut times = Vec::with_capacity(frames);
            let mut allocated = 0;
            for n in 0..WARMUP + frames {
                buf.copy_from_slice(&pictures[n % PICTURES]);
                let mut frame = VideoFrame {
                    format: PixelFormat::Bgra,
                    width: w,
                    height: h,
                    pts_ns: Some(n as u64 * 33_333_333),
                    planes: vec![Plane {
                        data: &mut buf,
                        stride: w as usize * 4,
                    }],
                };
                let before = ALLOCATED.load(Ordering::Relaxed);
                let t = Instant::now();
                f.process(&mut host, &mut frame);
                let took = t.elapsed().as_secs_f64() * 1000.0;
                if n >= WARMUP {
                    times.push(took);
                    allocated += ALLOCATED.load(Ordering::Relaxed) - before;
                }
            }
            assert!(host.errors.is_empty(), "{:?}", host.errors);
            times.sort_by(f64::total_cmp);
            println!(
                "{:<10} {label:<5} {:>7.2} {:>7.2} {:>7.2}   {:>10}",
                format!("{w}x{h}"),
                percentile(&times, 0.5),
                percentile(&times, 0.9),
                times[0],
                allocated / frames as u64,
            );
        }
    }
}
