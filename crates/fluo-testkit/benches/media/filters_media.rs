//! The filters bench's media (filters.rs): the clips (flash.rs's testsrc2 flash clip with a
//! green band for the chroma key; a synthetic face moving on grey with the same flashes), the
//! images it gives the filters (a PNG with alpha for FaceOverlayFilter, a background for
//! ChromaFilter), and the gst-launch-1.0 reference pipelines doing each filter's work.

use super::flash;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const W: u32 = 640;
pub const H: u32 = 360;
/// Fluo's default encoder bitrate (MediaElement encoderBitrate, 300 kbit/s): what the filters
/// encode their output at.
pub const BPS: u32 = 300_000;

/// The green band of the chroma clip (RGB) and where it lies: the left third of the frame.
pub const GREEN: [u8; 3] = [0, 176, 0];
pub const BAND_W: u32 = 213;
/// ChromaFilter's calibration window (x, y, width, height), inside the band.
pub const WINDOW: (u32, u32, u32, u32) = (20, 20, 100, 100);
/// A box inside the band: its mean luma tells whether the background replaced the green in
/// a frame received back (green about 105, the background about 50 there).
pub const BAND_PROBE: (u32, u32, u32, u32) = (40, 150, 130, 150);
/// The band probe's luma below which the background is there.
pub const REPLACED: f64 = 78.0;

/// Where a flash is looked for (x, y, width, height): a band along the top, clear of the
/// chroma background, the face and the reference's fixed overlay (testsrc2 stays between 120
/// and 142 there, the face clip's grey at 100).
pub const FLASH_PROBE: (u32, u32, u32, u32) = (240, 8, 392, 56);

/// The face's width in the face clip (pixels) and where its centre moves: x = 320 +- 40,
/// y = 180 +- 8.
const FACE_W: f64 = 140.0;
/// A box inside the face wherever it is (x, y, width, height): its mean luma tells whether the
/// overlay covers the face in a frame received back.
pub const FACE_PROBE: (u32, u32, u32, u32) = (310, 170, 20, 20);
/// The overlay image's colour and alpha inside its disc: over the face, the probe's luma falls
/// from about 185 (skin) to about 65.
const HAT: [u8; 4] = [16, 32, 64, 220];
/// The probe's luma below which the overlay is on the face.
pub const OVERLAID: f64 = 125.0;

/// Everything the cases send and give the filters.
pub struct Media {
    /// testsrc2 with the green band and the flashes (every case but the face clip's).
    pub testsrc: Vec<Vec<u8>>,
    /// The moving face with the flashes.
    pub face: Vec<Vec<u8>>,
    /// FaceOverlayFilter's image (PNG, RGBA: a disc, transparent around it).
    pub hat: PathBuf,
    /// ChromaFilter's background (PNG, 640x360).
    pub background: PathBuf,
    /// Where they are, and where the references' standard error goes.
    pub dir: PathBuf,
}

impl Media {
    /// Makes (once per `dir`) and reads the clips and images.
    pub fn make(dir: &Path) -> Media {
        let band = format!(
            "drawbox=x=0:y=0:w={BAND_W}:h=ih:color=0x{:02x}{:02x}{:02x}:t=fill",
            GREEN[0], GREEN[1], GREEN[2]
        );
        let testsrc = flash::testsrc_clip(dir, "filters-green-flash.ivf", &band);
        let face = face_clip(dir);
        let hat = dir.join("filters-hat.png");
        if !hat.exists() {
            let s = 128u32;
            let mut rgba = vec![0u8; (s * s * 4) as usize];
            for y in 0..s {
                for x in 0..s {
                    let (dx, dy) = (f64::from(x) - 63.5, f64::from(y) - 63.5);
                    if dx.hypot(dy) < 60.0 {
                        let i = ((y * s + x) * 4) as usize;
                        rgba[i..i + 4].copy_from_slice(&HAT);
                    }
                }
            }
            png(&rgba, (s, s), "rgba", &hat);
        }
        let background = dir.join("filters-background.png");
        if !background.exists() {
            // Dark diagonal colour ramps: darker than the green they replace.
            let mut rgb = Vec::with_capacity((W * H * 3) as usize);
            for y in 0..H {
                for x in 0..W {
                    rgb.extend_from_slice(&[
                        (20 + x * 60 / W) as u8,
                        (15 + y * 50 / H) as u8,
                        (45 + (x + y) * 30 / (W + H)) as u8,
                    ]);
                }
            }
            png(&rgb, (W, H), "rgb24", &background);
        }
        Media {
            testsrc,
            face,
            hat,
            background,
            dir: dir.to_path_buf(),
        }
    }
}

/// Pipes `frames` of raw pixels (`pix_fmt` as ffmpeg names them, `w`x`h`, 30 a second) to
/// ffmpeg, which writes `out` with the output options `opts`.
fn ffmpeg_raw(
    frames: impl Iterator<Item = Vec<u8>>,
    (w, h): (u32, u32),
    pix_fmt: &str,
    opts: &[String],
    out: &Path,
) {
    let mut ff = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt"])
        .arg(pix_fmt)
        .args(["-s", &format!("{w}x{h}"), "-r", "30", "-i", "-"])
        .args(opts)
        .arg(out)
        .stdin(Stdio::piped())
        .spawn()
        .expect("ffmpeg runs (a test dependency)");
    let mut stdin = ff.stdin.take().expect("ffmpeg's stdin");
    for f in frames {
        stdin.write_all(&f).expect("the pixels to ffmpeg");
    }
    drop(stdin);
    assert!(
        ff.wait().is_ok_and(|s| s.success()),
        "ffmpeg made {}",
        out.display()
    );
}

/// Writes raw pixels (`pix_fmt` as ffmpeg names it) as a PNG.
fn png(pixels: &[u8], size: (u32, u32), pix_fmt: &str, out: &Path) {
    let one = ["-frames:v".to_string(), "1".to_string()];
    ffmpeg_raw(std::iter::once(pixels.to_vec()), size, pix_fmt, &one, out);
}

/// The synthetic face of the compat suite (tests/compat/test/face.js: filled ellipses that
/// OpenCV's frontal-face cascade finds; no photograph), in face widths from its centre:
/// dx, dy, rx, ry, colour, drawn in order.
const FACE: [(f64, f64, f64, f64, [u8; 3]); 10] = [
    (0.0, -0.12, 0.52, 0.6, [45, 32, 22]),      // hair
    (0.0, 0.05, 0.44, 0.56, [222, 184, 150]),   // skin
    (-0.18, -0.17, 0.13, 0.035, [55, 38, 28]),  // brow
    (-0.18, -0.07, 0.1, 0.05, [245, 245, 245]), // eye white
    (-0.18, -0.07, 0.045, 0.045, [25, 25, 25]), // pupil
    (0.18, -0.17, 0.13, 0.035, [55, 38, 28]),
    (0.18, -0.07, 0.1, 0.05, [245, 245, 245]),
    (0.18, -0.07, 0.045, 0.045, [25, 25, 25]),
    (0.0, 0.1, 0.06, 0.12, [200, 160, 128]), // nose
    (0.0, 0.31, 0.16, 0.045, [140, 45, 45]), // mouth
];

fn ellipse(rgb: &mut [u8], (cx, cy, rx, ry): (f64, f64, f64, f64), colour: [u8; 3]) {
    let (w, h) = (f64::from(W), f64::from(H));
    let y0 = (cy - ry).floor().max(0.0) as u32;
    let y1 = (cy + ry).ceil().min(h - 1.0) as u32;
    for y in y0..=y1 {
        let dy = (f64::from(y) - cy) / ry;
        if dy * dy > 1.0 {
            continue;
        }
        let half = rx * (1.0 - dy * dy).sqrt();
        let x0 = (cx - half).ceil().max(0.0) as u32;
        let x1 = (cx + half).floor().min(w - 1.0) as u32;
        for x in x0..=x1 {
            let i = ((y * W + x) * 3) as usize;
            rgb[i..i + 3].copy_from_slice(&colour);
        }
    }
}

/// The face clip: 10 s at 30 fps of the face moving on grey (100), with the flashes, encoded
/// as flash.rs's clips are.
fn face_clip(dir: &Path) -> Vec<Vec<u8>> {
    let ivf = dir.join("filters-face-flash.ivf");
    if !ivf.exists() {
        let frames = (0..300).map(|f| {
            let mut rgb = vec![100u8; (W * H * 3) as usize];
            let t = f64::from(f) / 30.0;
            let cx = 320.0 + 40.0 * (std::f64::consts::TAU * t / 5.0).sin();
            let cy = 180.0 + 8.0 * (std::f64::consts::TAU * t / 3.0).sin();
            for (dx, dy, rx, ry, colour) in FACE {
                let s = FACE_W;
                ellipse(&mut rgb, (cx + dx * s, cy + dy * s, rx * s, ry * s), colour);
            }
            rgb
        });
        let mut opts = vec!["-vf".to_string(), flash::flash_filter()];
        opts.extend(flash::VP8_OUT.iter().map(|o| o.to_string()));
        ffmpeg_raw(frames, (W, H), "rgb24", &opts, &ivf);
    }
    flash::read_clip(&ivf)
}

/// What a reference pipeline does between its decoder and its encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// `videoconvert` (GStreamerFilter's command in the decode + encode case).
    Convert,
    /// facedetect (Fluo's cascade and parameters), posting a message per frame with the
    /// faces it found, and the overlay image blended at the face's mean place.
    Face,
    /// alpha (custom key) over the background in a compositor.
    Chroma,
}

/// The gst-launch-1.0 description of the reference for `work`: RTP VP8 on `listen` (payload
/// type 96), what Fluo's filter port runs (crates/fluo-gst/src/filter/mod.rs: jitterbuffer
/// 20 ms, vp8dec, the stage, a leaky queue, vp8enc with codecs.rs's settings at 640x360 and
/// the default 300 kbit/s, rtpvp8pay), RTP out to `to`.
pub fn reference(work: Work, listen: u16, to: u16, m: &Media) -> String {
    let stage = match work {
        Work::Convert => "videoconvert".to_string(),
        Work::Face => {
            let min = fluo_gst::min_face(W as i32);
            let s = FACE_W as u32;
            format!(
                "videoconvert ! video/x-raw,format=RGB ! facedetect display=false updates=every_frame \
                 profile={} min-size-width={min} min-size-height={min} \
                 ! gdkpixbufoverlay location={} offset-x={} offset-y={} overlay-width={s} overlay-height={s} \
                 ! videoconvert",
                fluo_gst::FACE_CASCADE,
                m.hat.display(),
                320 - s / 2,
                180 - s / 2,
            )
        }
        Work::Chroma => format!(
            "videoconvert ! video/x-raw,format=RGBA ! alpha method=custom target-r={} target-g={} \
             target-b={} angle={ALPHA_ANGLE} ! mix.sink_1 \
             compositor name=mix background=black sink_0::zorder=0 sink_1::zorder=1 ! videoconvert",
            GREEN[0], GREEN[1], GREEN[2]
        ),
    };
    let q = "queue max-size-buffers=30 max-size-time=0 max-size-bytes=0 leaky=downstream";
    let mut d = format!(
        "udpsrc port={listen} caps=\"application/x-rtp,media=video,encoding-name=VP8,clock-rate=90000,payload=96\" \
         ! rtpjitterbuffer latency=20 ! rtpvp8depay ! vp8dec ! videoconvert ! {stage} ! {q} \
         ! videoconvert ! vp8enc deadline=1 cpu-used=8 end-usage=cbr target-bitrate={BPS} \
         keyframe-max-dist=60 lag-in-frames=0 threads=1 error-resilient=partitions \
         ! rtpvp8pay pt=96 mtu=1200 picture-id-mode=15-bit ! udpsink host=127.0.0.1 port={to} sync=false async=false"
    );
    if work == Work::Chroma {
        d += &format!(
            " filesrc location={} ! pngdec ! videoconvert ! imagefreeze is-live=true \
             ! video/x-raw,framerate=30/1 ! mix.sink_0",
            m.background.display()
        );
    }
    d
}

/// The half-angle (degrees) of the reference's chroma key around the key's direction in the
/// (Cb, Cr) plane: the angle under which ChromaFilter's tolerance (a circle of radius 40
/// around the key) is seen from grey, for this green (key about 93 from grey): atan(40 / 93).
pub const ALPHA_ANGLE: u32 = 23;
