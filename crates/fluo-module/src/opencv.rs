//! The OpenCVFilter base: what Kurento's `kurento.OpenCVFilter` is to its modules.
//!
//! In KMS, a module's element type whose class `extends OpenCVFilter` implements one
//! function, `process(cv::Mat&)`: every decoded video frame of the element's input, 8-bit
//! BGRA, changed in place (what it leaves is what the element sends); an exception it throws
//! becomes the element's `Error` event, and the video goes on. Kurento's OpenCVExample,
//! ArMarkerdetector and the tutorials' plugins are such types.
//!
//! A Fluo module does the same with its description's class extending [`BASE`] (Fluo's
//! model has it: `kurento.OpenCVFilter`, abstract, a Filter) and its instance made with
//! [`instance`] from an [`OpenCvProcess`]: [`OpenCvProcess::process`] gets each frame as a
//! [`Mat`] (BGRA, in place) and its error text becomes the element's Error event
//! ([`crate::Host::error`]); the methods its class declares reach
//! [`OpenCvProcess::invoke`]. To a client the element is an OpenCVFilter: `describe`
//! answers the hierarchy `kurento.OpenCVFilter`, `kurento.Filter`, ...; getKmd's class
//! `extends` it; it connects, is connected and raises the events of a Filter.

use crate::{Host, Image, Instance, KurentoError, Map, PixelFormat, Value, VideoFrame};

mod throttle;

/// The class a module's OpenCV-style class extends in its description.
pub const BASE: &str = "OpenCVFilter";

/// One frame as KMS's OpenCVFilter gives it to `process`: `width` x `height` pixels of
/// 8-bit blue, green, red, alpha (OpenCV's `CV_8UC4`), rows `stride` bytes apart. What the
/// process leaves in it is what the element sends.
#[derive(Debug)]
pub struct Mat<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes from one row's start to the next's (at least `width * 4`).
    pub stride: usize,
    /// The pixels, row after row.
    pub data: &'a mut [u8],
    /// Presentation time since the start of the element's stream, in nanoseconds.
    pub pts_ns: Option<u64>,
}

/// Luma weights of BT.601 in 1/16384ths (blue, green, red): OpenCV's `COLOR_BGRA2GRAY`.
const GRAY_WEIGHTS: [u32; 3] = [1868, 9617, 4899];

impl Mat<'_> {
    /// Row `y`'s pixels (`width * 4` bytes).
    pub fn row(&self, y: u32) -> &[u8] {
        let at = y as usize * self.stride;
        &self.data[at..at + self.width as usize * 4]
    }

    /// Row `y`'s pixels, writable.
    pub fn row_mut(&mut self, y: u32) -> &mut [u8] {
        let at = y as usize * self.stride;
        let len = self.width as usize * 4;
        &mut self.data[at..at + len]
    }

    /// The pixel at (`x`, `y`) as [blue, green, red, alpha].
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 4] {
        let i = y as usize * self.stride + x as usize * 4;
        [
            self.data[i],
            self.data[i + 1],
            self.data[i + 2],
            self.data[i + 3],
        ]
    }

    /// The frame's grey levels (`width * height` bytes, rows packed): BT.601 luma, as
    /// OpenCV's `cvtColor(..., COLOR_BGRA2GRAY)` makes them.
    pub fn gray(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.gray_into(&mut out);
        out
    }

    /// [`Mat::gray`] into `out` (its length set to `width * height`): a buffer kept from
    /// frame to frame allocates only when the picture grows.
    pub fn gray_into(&self, out: &mut Vec<u8>) {
        let w = self.width as usize;
        out.resize(w * self.height as usize, 0);
        for (y, levels) in out.chunks_exact_mut(w.max(1)).enumerate() {
            for (v, p) in levels.iter_mut().zip(self.row(y as u32).chunks_exact(4)) {
                let [b, g, r] = [0, 1, 2].map(|c| u32::from(p[c]));
                let sum = b * GRAY_WEIGHTS[0] + g * GRAY_WEIGHTS[1] + r * GRAY_WEIGHTS[2];
                *v = ((sum + (1 << 13)) >> 14) as u8;
            }
        }
    }

    /// Sets every pixel to the grey level of `gray` (`width * height` bytes, rows packed),
    /// opaque: OpenCV's `cvtColor(..., COLOR_GRAY2BGRA)`. A `gray` of another size changes
    /// nothing.
    pub fn set_gray(&mut self, gray: &[u8]) {
        let w = self.width as usize;
        if gray.len() != w * self.height as usize {
            return;
        }
        for (y, levels) in gray.chunks_exact(w.max(1)).enumerate() {
            let row = self.row_mut(y as u32);
            for (p, &v) in row.chunks_exact_mut(4).zip(levels) {
                p.copy_from_slice(&[v, v, v, 255]);
            }
        }
    }
}

/// What an OpenCV-style element type implements (KMS's `OpenCVProcess` and its methods).
pub trait OpenCvProcess: Send + 'static {
    /// One frame, changed in place. An error is raised as the element's `Error` event
    /// (its text after the class's name) and the frame goes on as the process left it; the
    /// same text again is raised at most once a second of stream time, with the count of
    /// its failures in between (the base's throttle: `opencv/throttle.rs`).
    fn process(&mut self, host: &mut dyn Host, mat: &mut Mat<'_>) -> Result<(), String>;

    /// A method the class declares, as [`Instance::invoke`].
    fn invoke(
        &mut self,
        host: &mut dyn Host,
        method: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, KurentoError>;

    /// A property set, as [`Instance::property_set`].
    fn property_set(
        &mut self,
        _host: &mut dyn Host,
        _name: &str,
        _value: &Value,
    ) -> Result<(), KurentoError> {
        Ok(())
    }

    /// An image asked for with [`Host::load_image`], as [`Instance::image`].
    fn image(&mut self, _host: &mut dyn Host, _request: u64, _image: Image) {}
}

/// The instance Fluo hosts for an [`OpenCvProcess`]: BGRA frames to its `process`, its
/// errors to the element's Error event.
pub fn instance<P: OpenCvProcess>(process: P) -> Box<dyn Instance> {
    Box::new(OpenCvInstance {
        process,
        errors: throttle::Throttle::default(),
    })
}

struct OpenCvInstance<P> {
    process: P,
    /// What is raised of the process's errors.
    errors: throttle::Throttle,
}

impl<P: OpenCvProcess> Instance for OpenCvInstance<P> {
    fn format(&self) -> PixelFormat {
        PixelFormat::Bgra
    }

    fn invoke(
        &mut self,
        host: &mut dyn Host,
        method: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, KurentoError> {
        self.process.invoke(host, method, params)
    }

    fn property_set(
        &mut self,
        host: &mut dyn Host,
        name: &str,
        value: &Value,
    ) -> Result<(), KurentoError> {
        self.process.property_set(host, name, value)
    }

    fn image(&mut self, host: &mut dyn Host, request: u64, image: Image) {
        self.process.image(host, request, image)
    }

    fn process(&mut self, host: &mut dyn Host, frame: &mut VideoFrame<'_>) {
        let (width, height, pts_ns) = (frame.width, frame.height, frame.pts_ns);
        if frame.format != PixelFormat::Bgra {
            return;
        }
        let Some(plane) = frame.planes.first_mut() else {
            return;
        };
        let rows = plane.stride.checked_mul(height.saturating_sub(1) as usize);
        let last = rows.and_then(|r| r.checked_add(width as usize * 4));
        if plane.stride < width as usize * 4 || last.is_none_or(|n| n > plane.data.len()) {
            return;
        }
        let mut mat = Mat {
            width,
            height,
            stride: plane.stride,
            data: &mut *plane.data,
            pts_ns,
        };
        self.errors.frame(pts_ns);
        if let Err(text) = self.process.process(host, &mut mat) {
            // Cleaned first (addresses, dumps, 300 characters), as the host would: the
            // throttle keeps and counts what a client would see.
            let text = fluo_api::text::foreign(text);
            if let Some(description) = self.errors.failed(&text, pts_ns) {
                host.error(&description);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{RgbaFrame, TestHost};

    /// Turns each frame grey; fails the frames whose first pixel is black.
    struct Grey;

    impl OpenCvProcess for Grey {
        fn process(&mut self, _: &mut dyn Host, mat: &mut Mat<'_>) -> Result<(), String> {
            if mat.pixel(0, 0)[..3] == [0, 0, 0] {
                return Err("a black corner".into());
            }
            let g = mat.gray();
            mat.set_gray(&g);
            Ok(())
        }
        fn invoke(
            &mut self,
            _: &mut dyn Host,
            method: &str,
            _: &Map<String, Value>,
        ) -> Result<Value, KurentoError> {
            Err(crate::not_handled(method))
        }
    }

    #[test]
    fn frames_come_as_bgra_and_grey_has_the_bt601_weights() {
        let mut host = TestHost::default();
        let mut f = instance(Grey);
        assert_eq!(f.format(), PixelFormat::Bgra);
        // Red, green and blue: their luma is 0.299, 0.587 and 0.114 of 255.
        for (rgb, luma) in [([255, 0, 0], 76), ([0, 255, 0], 150), ([0, 0, 255], 29)] {
            let mut frame = RgbaFrame::filled(3, 2, [rgb[0], rgb[1], rgb[2], 255]);
            frame.process(&mut *f, &mut host, 0);
            assert_eq!(frame.pixel(2, 1), [luma, luma, luma, 255], "{rgb:?}");
        }
        assert!(host.errors.is_empty());
    }

    #[test]
    fn a_failed_frame_raises_its_error_once_a_second_of_stream_time() {
        let mut host = TestHost::default();
        let mut f = instance(Grey);
        let mut frame = RgbaFrame::filled(2, 2, [0, 0, 0, 255]);
        for pts in [0, 400_000_000, 999_000_000, 1_000_000_000, 1_500_000_000] {
            frame.process(&mut *f, &mut host, pts);
        }
        assert_eq!(
            host.errors,
            ["a black corner", "a black corner (and 2 more times since)"]
        );
        // A restart (the pts back at 0): raised at once, not an hour of stream time later.
        frame.process(&mut *f, &mut host, 0);
        assert_eq!(host.errors.len(), 3, "{:?}", host.errors);
        assert_eq!(host.errors[2], "a black corner (and 1 more time since)");
    }

    #[test]
    fn a_plane_shorter_than_its_size_is_left_alone() {
        let mut host = TestHost::default();
        let mut f = instance(Grey);
        let mut data = vec![200u8; 4 * 4 * 2 - 1];
        let mut frame = VideoFrame {
            format: PixelFormat::Bgra,
            width: 4,
            height: 2,
            pts_ns: None,
            planes: vec![crate::Plane {
                data: &mut data,
                stride: 16,
            }],
        };
        f.process(&mut host, &mut frame);
        assert!(data.iter().all(|&b| b == 200));
    }
}
