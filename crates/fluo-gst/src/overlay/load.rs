//! Loading an overlay image: its bytes from a file or over http(s) (bounded in size and
//! time), its header checked (PNG or JPEG, at most [`MAX_SIDE`] pixels a side) before a
//! decoder sees it, then decoded to RGBA by GStreamer's `pngdec` / `jpegdec` (no other
//! decoder is ever picked). Runs on the overlay's loader thread, never on a streaming, router
//! or engine thread.

use super::blend::Rgba;
use crate::uri::MediaUri;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::io::Read;
use std::time::{Duration, Instant};

/// The largest image file taken (bytes).
pub(crate) const MAX_BYTES: u64 = 8 << 20;
/// The largest width or height taken (pixels).
pub(crate) const MAX_SIDE: u32 = 4096;
/// How long an http(s) fetch may take in all.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads and decodes the image at `uri`; `guarded`: the server has a URI allow-list, so
/// http redirects are not followed. The error says why, for the element's Error event.
pub(crate) fn load(uri: &MediaUri, guarded: bool) -> Result<Rgba, String> {
    let bytes = match uri {
        MediaUri::File(path) => read_file(path)?,
        MediaUri::Remote(u) => fetch(u, guarded)?,
    };
    decode(&bytes)
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    // Checked before opening too: opening a named pipe would wait for a writer.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err("not a regular file".into());
    }
    let f = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "the file does not exist".to_string(),
        std::io::ErrorKind::PermissionDenied => "the file may not be read".to_string(),
        _ => format!("the file cannot be opened: {e}"),
    })?;
    let meta = f
        .metadata()
        .map_err(|e| format!("the file cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    f.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("the file cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!("the image is larger than {MAX_BYTES} bytes"));
    }
    Ok(bytes)
}

/// Fetches `uri` with GStreamer's HTTP source (the players' client: TLS roots, proxies),
/// stopping at [`MAX_BYTES`] and [`FETCH_TIMEOUT`].
fn fetch(uri: &str, guarded: bool) -> Result<Vec<u8>, String> {
    crate::init()?;
    let src = gst::ElementFactory::make("souphttpsrc")
        .property("location", uri)
        .property("timeout", 10u32)
        .property("automatic-redirect", !guarded)
        .build()
        .map_err(|_| "no HTTP source (souphttpsrc) is installed".to_string())?;
    let sink = gst_app::AppSink::builder().sync(false).build();
    let pipeline = gst::Pipeline::with_name("overlay-image-fetch");
    pipeline
        .add_many([&src, sink.upcast_ref()])
        .and_then(|_| src.link(&sink))
        .map_err(|e| format!("cannot fetch: {e}"))?;
    let result = pull_all(&pipeline, &sink);
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn pull_all(pipeline: &gst::Pipeline, sink: &gst_app::AppSink) -> Result<Vec<u8>, String> {
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "the HTTP fetch does not start".to_string())?;
    let deadline = Instant::now() + FETCH_TIMEOUT;
    let mut bytes = Vec::new();
    while let Some(sample) = next_sample(pipeline, sink, deadline)? {
        if let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
            bytes.extend_from_slice(map.as_slice());
        }
        if bytes.len() as u64 > MAX_BYTES {
            return Err(format!("the image is larger than {MAX_BYTES} bytes"));
        }
    }
    Ok(bytes)
}

/// The next sample of `sink`; `None` at the end of the stream; the pipeline's error, or a
/// time-out at `deadline`.
fn next_sample(
    pipeline: &gst::Pipeline,
    sink: &gst_app::AppSink,
    deadline: Instant,
) -> Result<Option<gst::Sample>, String> {
    let bus = pipeline.bus().ok_or("no bus")?;
    loop {
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Err(fluo_api::text::foreign(e.error().to_string()));
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no answer within {} s", FETCH_TIMEOUT.as_secs()));
        }
        match sink.try_pull_sample(gst::ClockTime::from_mseconds(50)) {
            Some(sample) => return Ok(Some(sample)),
            None if sink.is_eos() => return Ok(None),
            None => {}
        }
    }
}

/// The image's format and size from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Png,
    Jpeg,
}

/// Reads the format and the size of a PNG or JPEG image from its header.
pub(crate) fn header(b: &[u8]) -> Result<(Format, u32, u32), String> {
    let be16 = |i: usize| {
        b.get(i..i + 2)
            .map(|s| u32::from(u16::from_be_bytes([s[0], s[1]])))
    };
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        // The first chunk is IHDR: width and height, 4 bytes each.
        if b.get(12..16) != Some(b"IHDR") {
            return Err("a PNG without its header".into());
        }
        let be32 = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if b.len() < 24 {
            return Err("a truncated PNG".into());
        }
        return Ok((Format::Png, be32(16), be32(20)));
    }
    if b.starts_with(&[0xff, 0xd8]) {
        // Markers until a start of frame (SOF0..SOF15 but DHT, JPG and DAC).
        let mut i = 2;
        while i + 4 <= b.len() {
            if b[i] != 0xff {
                return Err("a damaged JPEG".into());
            }
            let marker = b[i + 1];
            if marker == 0xff {
                i += 1;
                continue;
            }
            let len = be16(i + 2).ok_or("a truncated JPEG")? as usize;
            let sof = (0xc0..=0xcf).contains(&marker) && ![0xc4, 0xc8, 0xcc].contains(&marker);
            if sof {
                let h = be16(i + 5).ok_or("a truncated JPEG")?;
                let w = be16(i + 7).ok_or("a truncated JPEG")?;
                return Ok((Format::Jpeg, w, h));
            }
            if marker == 0xda || len < 2 {
                break;
            }
            i += 2 + len;
        }
        return Err("a JPEG without a frame header".into());
    }
    Err("not a PNG or JPEG image".into())
}

/// Decodes a PNG or JPEG image to RGBA, after checking its header.
pub(crate) fn decode(bytes: &[u8]) -> Result<Rgba, String> {
    let (format, w, h) = header(bytes)?;
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(format!(
            "the image is {w}x{h}: at most {MAX_SIDE}x{MAX_SIDE} pixels are taken"
        ));
    }
    crate::init()?;
    let (caps, dec) = match format {
        Format::Png => ("image/png", "pngdec"),
        Format::Jpeg => ("image/jpeg", "jpegdec"),
    };
    let make = |f: &str| {
        gst::ElementFactory::make(f)
            .build()
            .map_err(|_| format!("no {f} is installed"))
    };
    let src = gst_app::AppSrc::builder()
        .caps(&gst::Caps::builder(caps).build())
        .format(gst::Format::Bytes)
        .build();
    let (dec, convert) = (make(dec)?, make("videoconvert")?);
    let rgba = gst::Caps::builder("video/x-raw")
        .field("format", "RGBA")
        .build();
    let sink = gst_app::AppSink::builder().caps(&rgba).sync(false).build();
    let pipeline = gst::Pipeline::with_name("overlay-image-decode");
    let elements: [&gst::Element; 4] = [src.upcast_ref(), &dec, &convert, sink.upcast_ref()];
    pipeline
        .add_many(elements)
        .and_then(|_| gst::Element::link_many(elements))
        .map_err(|e| format!("cannot decode: {e}"))?;
    let result = (|| -> Result<Rgba, String> {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| "the decoder does not start".to_string())?;
        let _ = src.push_buffer(gst::Buffer::from_slice(bytes.to_vec()));
        let _ = src.end_of_stream();
        let deadline = Instant::now() + FETCH_TIMEOUT;
        let sample = next_sample(&pipeline, &sink, deadline)
            .map_err(|e| format!("the image does not decode: {e}"))?
            .ok_or("the image does not decode: no picture")?;
        rgba_of(&sample)
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// The RGBA pixels of a decoded sample, rows packed.
fn rgba_of(sample: &gst::Sample) -> Result<Rgba, String> {
    let s = sample
        .caps()
        .and_then(|c| c.structure(0).map(|s| s.to_owned()))
        .ok_or("a picture without caps")?;
    let w = s.get::<i32>("width").map_err(|_| "no width")? as usize;
    let h = s.get::<i32>("height").map_err(|_| "no height")? as usize;
    let buf = sample.buffer().ok_or("a picture without data")?;
    let map = buf.map_readable().map_err(|_| "unreadable picture")?;
    let data = map.as_slice();
    if h == 0 || data.len() < w * 4 * h {
        return Err("a picture of the wrong size".into());
    }
    // RGBA rows are 4-byte aligned already; a larger stride would be the whole buffer / h.
    let stride = data.len() / h;
    let mut out = Vec::with_capacity(w * h * 4);
    for row in 0..h {
        out.extend_from_slice(&data[row * stride..row * stride + w * 4]);
    }
    Ok(Rgba {
        width: w as u32,
        height: h as u32,
        data: out,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_named_pipe_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().expect("a folder");
        let fifo = dir.path().join("pipe.png");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.expect("mkfifo runs").success());
        assert_eq!(read_file(&fifo).unwrap_err(), "not a regular file");
    }

    #[test]
    fn headers_give_the_format_and_size_before_decoding() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&[0, 0, 0x10, 0, 0, 0, 0, 3]);
        assert_eq!(header(&png), Ok((Format::Png, 4096, 3)));
        // SOI, an APP0 of 4 bytes, then SOF0: precision, height 2, width 0x1234.
        let jpeg = [
            0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0, 0xff, 0xc0, 0, 11, 8, 0, 2, 0x12, 0x34,
        ];
        assert_eq!(header(&jpeg), Ok((Format::Jpeg, 0x1234, 2)));
        assert!(header(b"GIF89a....").is_err());
        assert!(header(&[0xff, 0xd8, 0xff]).is_err());
        assert!(header(&png[..20]).is_err());
        let huge = {
            let mut p = png.clone();
            p[16..20].copy_from_slice(&[0, 1, 0, 0]);
            p
        };
        assert!(decode(&huge).unwrap_err().contains("at most 4096x4096"));
    }

    /// A 4x2 picture of one colour, encoded by `encoder` (pngenc keeps its alpha).
    pub(crate) fn encoded(encoder: &str, format: &str, argb: u32) -> Vec<u8> {
        crate::init().expect("GStreamer");
        let desc = format!(
            "videotestsrc num-buffers=1 pattern=solid-color foreground-color={argb} \
             ! video/x-raw,format={format},width=4,height=2 ! {encoder} ! appsink name=s"
        );
        let p = gst::parse::launch(&desc)
            .expect("pipeline")
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        let sink = p
            .by_name("s")
            .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
            .expect("appsink");
        p.set_state(gst::State::Playing).expect("playing");
        let sample = sink
            .try_pull_sample(gst::ClockTime::from_seconds(10))
            .expect("an encoded picture");
        let bytes = sample
            .buffer()
            .expect("data")
            .map_readable()
            .expect("map")
            .to_vec();
        let _ = p.set_state(gst::State::Null);
        bytes
    }

    #[test]
    fn png_and_jpeg_decode_to_their_pixels_and_anything_else_is_refused() {
        let png = decode(&encoded("pngenc", "RGBA", 0x80ff0000)).expect("a PNG decodes");
        assert_eq!((png.width, png.height), (4, 2));
        assert_eq!(png.data.len(), 4 * 2 * 4);
        assert_eq!(&png.data[..4], &[255, 0, 0, 0x80], "red, half transparent");
        let jpeg = decode(&encoded("jpegenc", "I420", 0xff00ff00)).expect("a JPEG decodes");
        assert_eq!((jpeg.width, jpeg.height), (4, 2));
        let px = &jpeg.data[..4];
        assert!(
            px[1] > 200 && px[0] < 60 && px[2] < 60 && px[3] == 255,
            "green: {px:?}"
        );
        let mut cut = encoded("pngenc", "RGBA", 0xff0000ff);
        cut.truncate(cut.len() / 2);
        assert!(decode(&cut).is_err(), "a truncated PNG");
        assert!(decode(b"<svg/>").unwrap_err().contains("not a PNG or JPEG"));
    }
}
