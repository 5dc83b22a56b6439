//! The Composite bench's media and its latency probe: a VP8 clip whose every second holds a
//! white flash at a known frame, Opus packets of a tone, and the decoding of what a receiver
//! got (GStreamer, after the measured window) into the brightness of each grid cell per frame.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Frames of the clip between two flashes (one a second at 30 fps).
pub const FLASH_PERIOD: u64 = 30;
/// The first white frame of each period; the flash lasts three frames (100 ms), so that a
/// mixer that skips an input frame still shows it.
pub const FLASH_AT: u64 = 15;
/// A cell whose centre is at least this bright (luma, 0-255) shows a flash; testsrc2's
/// pattern stays well below it (its brightest bars cover a part of the cell only).
pub const WHITE: f64 = 200.0;
/// A flash not seen within this time after it was sent counts as missed.
pub const SEEN_WITHIN: Duration = Duration::from_millis(900);

/// The frames of a 10 s 640x360 30 fps VP8 clip (ffmpeg's testsrc2, about 800 kbit/s, a key
/// frame every 60 frames, no hidden frames), all white at frames 15, 16, 17 of every 30.
pub fn flash_clip(dir: &Path) -> Vec<Vec<u8>> {
    testsrc_clip(dir, "composite-flash.ivf", "")
}

/// The flashes, as an ffmpeg filter drawn over whatever comes before it.
pub fn flash_filter() -> String {
    format!(
        "drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='between(mod(n,{FLASH_PERIOD}),{FLASH_AT},{})'",
        FLASH_AT + 2
    )
}

/// ffmpeg's output options of the clips: 10 s of VP8 at about 800 kbit/s, a key frame every
/// 60 frames, no hidden frames, as IVF.
pub const VP8_OUT: [&str; 18] = [
    "-t",
    "10",
    "-c:v",
    "libvpx",
    "-b:v",
    "800k",
    "-deadline",
    "realtime",
    "-cpu-used",
    "8",
    "-g",
    "60",
    "-auto-alt-ref",
    "0",
    "-lag-in-frames",
    "0",
    "-f",
    "ivf",
];

/// [`flash_clip`] with the ffmpeg filters `before` (e.g. a box of a colour, none if empty)
/// drawn under the flashes, made once as `dir/name`.
pub fn testsrc_clip(dir: &Path, name: &str, before: &str) -> Vec<Vec<u8>> {
    let ivf = dir.join(name);
    if !ivf.exists() {
        let vf = match before {
            "" => flash_filter(),
            b => format!("{b},{}", flash_filter()),
        };
        let st = Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=640x360:rate=30")
            .arg("-vf")
            .arg(vf)
            .args(VP8_OUT)
            .arg(&ivf)
            .status()
            .expect("ffmpeg runs (a test dependency)");
        assert!(st.success(), "ffmpeg made {}", ivf.display());
    }
    read_clip(&ivf)
}

/// The 300 frames of a clip made here.
pub fn read_clip(ivf: &Path) -> Vec<Vec<u8>> {
    let frames = fluo_testkit::udp_peer::ivf_frames(&std::fs::read(ivf).expect("the clip"));
    assert_eq!(frames.len(), 300, "{} has 300 frames", ivf.display());
    frames
}

/// One second of a 440 Hz tone in 20 ms Opus packets (48 kHz stereo, 32 kbit/s).
pub fn opus_packets() -> Vec<Vec<u8>> {
    gst::init().expect("GStreamer");
    let p = gst::parse::launch(
        "audiotestsrc num-buffers=50 samplesperbuffer=960 freq=440 volume=0.3 \
         ! audio/x-raw,rate=48000,channels=2 ! opusenc frame-size=20 bitrate=32000 \
         ! appsink name=out sync=false",
    )
    .expect("an Opus encode")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let sink = sink_of(&p);
    p.set_state(gst::State::Playing).expect("playing");
    let mut out = vec![];
    while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(5)) {
        if let Some(b) = s.buffer().and_then(|b| b.map_readable().ok()) {
            out.push(b.as_slice().to_vec());
        }
    }
    let _ = p.set_state(gst::State::Null);
    assert!(out.len() >= 40, "opusenc gave {} packets", out.len());
    out
}

fn sink_of(p: &gst::Pipeline) -> gst_app::AppSink {
    p.by_name("out")
        .expect("an appsink")
        .downcast::<gst_app::AppSink>()
        .expect("an appsink")
}

/// What one receiver decoded.
#[derive(Debug, Default)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    /// Per decoded frame: when its last packet arrived, and each grid cell's centre's mean
    /// luma (cells in rows, left to right).
    pub frames: Vec<(Instant, Vec<f64>)>,
}

/// The columns and rows of a grid of `n` cells (as Fluo's Composite lays them out).
pub fn grid(n: usize) -> (usize, usize) {
    let cols = (1..).find(|c| c * c >= n).unwrap_or(1);
    (cols, n.div_ceil(cols))
}

/// Decodes the VP8 frames one receiver got (with their arrival times; those before the first
/// key frame are left out) and measures the `n` cells of each.
pub fn decode(frames: &[(Instant, Vec<u8>)], n: usize) -> Decoded {
    decode_with(frames, &|y, size| cells(y, size, n))
}

/// What [`decode_with`] measures in a frame: from its GRAY8 bytes (rows padded to 4 bytes) and
/// its size, the values kept for it.
pub type Measure<'a> = dyn Fn(&[u8], (u32, u32)) -> Vec<f64> + 'a;

/// [`decode`], each frame measured by `measure` instead of by grid cells.
pub fn decode_with(frames: &[(Instant, Vec<u8>)], measure: &Measure<'_>) -> Decoded {
    gst::init().expect("GStreamer");
    let Some(first) = frames
        .iter()
        .position(|(_, f)| f.first().is_some_and(|b| b & 1 == 0))
    else {
        return Decoded::default();
    };
    let t0 = frames[first].0;
    let p = gst::parse::launch(
        "appsrc name=in format=time caps=video/x-vp8 ! vp8dec max-errors=-1 ! videoconvert \
         ! video/x-raw,format=GRAY8 ! appsink name=out sync=false",
    )
    .expect("a VP8 decode")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let src = p
        .by_name("in")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .expect("an appsrc");
    let sink = sink_of(&p);
    p.set_state(gst::State::Playing).expect("playing");
    for (at, f) in &frames[first..] {
        let mut b = gst::Buffer::from_slice(f.clone());
        let pts = at.duration_since(t0).as_nanos() as u64;
        b.get_mut()
            .expect("a new buffer")
            .set_pts(gst::ClockTime::from_nseconds(pts));
        let _ = src.push_buffer(b);
    }
    let _ = src.end_of_stream();
    let mut out = Decoded::default();
    while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        let Some(info) = s
            .caps()
            .and_then(gst_video_size)
            .filter(|(w, h)| *w > 0 && *h > 0)
        else {
            continue;
        };
        let (Some(b), Some(pts)) = (s.buffer(), s.buffer().and_then(|b| b.pts())) else {
            continue;
        };
        let Ok(map) = b.map_readable() else { continue };
        (out.width, out.height) = info;
        let at = t0 + Duration::from_nanos(pts.nseconds());
        out.frames.push((at, measure(map.as_slice(), info)));
    }
    let _ = p.set_state(gst::State::Null);
    out
}

fn gst_video_size(c: &gst::CapsRef) -> Option<(u32, u32)> {
    let s = c.structure(0)?;
    Some((
        s.get::<i32>("width").ok()? as u32,
        s.get::<i32>("height").ok()? as u32,
    ))
}

/// The mean luma of the middle half (in each direction) of each of the `n` cells of a GRAY8
/// frame (rows padded to 4 bytes).
fn cells(y: &[u8], (w, h): (u32, u32), n: usize) -> Vec<f64> {
    let (w, h) = (w as usize, h as usize);
    let stride = w.div_ceil(4) * 4;
    let (cols, rows) = grid(n);
    let (cw, ch) = (w / cols, h / rows);
    (0..n)
        .map(|i| {
            let (x0, y0) = ((i % cols) * cw, (i / cols) * ch);
            let (mut sum, mut k) = (0u64, 0u64);
            for yy in (y0 + ch / 4..y0 + 3 * ch / 4).step_by(2) {
                for xx in (x0 + cw / 4..x0 + 3 * cw / 4).step_by(2) {
                    if let Some(v) = y.get(yy * stride + xx) {
                        sum += u64::from(*v);
                        k += 1;
                    }
                }
            }
            sum as f64 / k.max(1) as f64
        })
        .collect()
}

/// The added latency (ms) of every flash seen in every cell of a receiver's frames: from
/// `sent` (when the senders wrote the flash's first frame) to the arrival of the first frame
/// at or after it whose cell is white, if within [`SEEN_WITHIN`]. Returns the latencies and
/// how many (flash, cell) pairs were not seen.
pub fn latencies(d: &Decoded, sent: &[Instant], n: usize) -> (Vec<f64>, usize) {
    let (mut out, mut missed) = (vec![], 0);
    for s in sent {
        for c in 0..n {
            let seen = d.frames.iter().find(|(at, cells)| {
                *at >= *s && at.duration_since(*s) <= SEEN_WITHIN && cells[c] >= WHITE
            });
            match seen {
                Some((at, _)) => out.push(at.duration_since(*s).as_secs_f64() * 1000.0),
                None => missed += 1,
            }
        }
    }
    (out, missed)
}
