//! Media files for tests, made with ffmpeg (a test dependency that `scripts/deps.sh test`
//! installs) from its test pattern and a tone.

use std::path::{Path, PathBuf};
use std::process::Command;

/// ffmpeg's moving test pattern in VP8: `size` (e.g. "640x360") at 30 fps for `secs` s, at
/// `bitrate` (e.g. "800k") with a key frame every `gop` frames, written to `ivf`; returns its
/// frames.
pub fn testsrc_vp8(ivf: &Path, size: &str, secs: u32, bitrate: &str, gop: u32) -> Vec<Vec<u8>> {
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={size}:rate=30"))
        .args(["-t", &secs.to_string(), "-c:v", "libvpx", "-b:v", bitrate])
        .args(["-g", &gop.to_string(), "-f", "ivf"])
        .arg(ivf)
        .status()
        .expect("ffmpeg runs (a test dependency)");
    assert!(st.success(), "ffmpeg made {}", ivf.display());
    let frames = crate::udp_peer::ivf_frames(&std::fs::read(ivf).expect("the IVF file"));
    assert!(!frames.is_empty(), "{} has frames", ivf.display());
    frames
}

/// A 640x360 30 fps test pattern with a 440 Hz tone, `secs` long, in `dir/name`: VP8 + Opus
/// (WebM, Matroska), or H.264 + AAC when the name ends in .mp4.
pub fn av_clip(dir: &Path, name: &str, secs: u32) -> PathBuf {
    let out = dir.join(name);
    let codecs: &[&str] = if name.ends_with(".mp4") {
        &["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    } else {
        &["-c:v", "libvpx", "-b:v", "1M", "-c:a", "libopus"]
    };
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=640x360:rate=30")
        .args(["-f", "lavfi", "-i", "sine=frequency=440"])
        .args(["-t", &secs.to_string()])
        .args(codecs)
        .arg(&out)
        .status()
        .expect("ffmpeg runs (a test dependency)");
    assert!(st.success(), "ffmpeg made {name}");
    out
}
