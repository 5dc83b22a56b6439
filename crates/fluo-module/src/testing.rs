//! Running an instance without a server, for a module's own tests: a [`TestHost`] that
//! records what the instance emits and asks for, and owned frames to process.

use crate::{Host, Image, Instance, KurentoError, Map, PixelFormat, Plane, Value, VideoFrame};

/// A host that records events, errors and image loads (URIs are taken as given).
#[derive(Debug, Default)]
pub struct TestHost {
    /// The events emitted: name and fields.
    pub events: Vec<(String, Map<String, Value>)>,
    /// The descriptions of the Error events raised ([`Host::error`]).
    pub errors: Vec<String>,
    /// The images asked for: request number and URI.
    pub loads: Vec<(u64, String)>,
}

impl Host for TestHost {
    fn emit(&mut self, event: &str, fields: Map<String, Value>) {
        self.events.push((event.to_string(), fields));
    }

    fn load_image(&mut self, uri: &str) -> Result<u64, KurentoError> {
        let n = self.loads.len() as u64 + 1;
        self.loads.push((n, uri.to_string()));
        Ok(n)
    }

    fn error(&mut self, description: &str) {
        self.errors.push(description.to_string());
    }
}

/// An RGBA frame that owns its pixels (rows packed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbaFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 4` bytes.
    pub data: Vec<u8>,
}

impl RgbaFrame {
    /// A frame of one colour.
    pub fn filled(width: u32, height: u32, rgba: [u8; 4]) -> RgbaFrame {
        let n = width as usize * height as usize;
        RgbaFrame {
            width,
            height,
            data: rgba.iter().copied().cycle().take(n * 4).collect(),
        }
    }

    /// Paints the rectangle at (`x`, `y`) of `w` x `h` (clipped to the frame).
    pub fn fill_rect(&mut self, (x, y, w, h): (u32, u32, u32, u32), rgba: [u8; 4]) {
        for row in y..(y + h).min(self.height) {
            for col in x..(x + w).min(self.width) {
                let i = (row as usize * self.width as usize + col as usize) * 4;
                self.data[i..i + 4].copy_from_slice(&rgba);
            }
        }
    }

    /// The pixel at (`x`, `y`).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 4] {
        let i = (y as usize * self.width as usize + x as usize) * 4;
        [
            self.data[i],
            self.data[i + 1],
            self.data[i + 2],
            self.data[i + 3],
        ]
    }

    /// Runs `instance` on this frame (presentation time `pts_ns`) with `host`, in the format
    /// the instance asks for: RGBA as it is; BGRA with red and blue swapped before and
    /// after, so that the frame reads RGBA again. (An instance that asks for I420 gets
    /// RGBA.)
    pub fn process(&mut self, instance: &mut dyn Instance, host: &mut dyn Host, pts_ns: u64) {
        let bgra = instance.format() == PixelFormat::Bgra;
        let swap = |data: &mut Vec<u8>| {
            if bgra {
                data.chunks_exact_mut(4).for_each(|p| p.swap(0, 2));
            }
        };
        swap(&mut self.data);
        let mut frame = VideoFrame {
            format: if bgra {
                PixelFormat::Bgra
            } else {
                PixelFormat::Rgba
            },
            width: self.width,
            height: self.height,
            pts_ns: Some(pts_ns),
            planes: vec![Plane {
                data: &mut self.data,
                stride: self.width as usize * 4,
            }],
        };
        instance.process(host, &mut frame);
        swap(&mut self.data);
    }

    /// This frame as an [`Image`] (a background, an overlay).
    pub fn to_image(&self) -> Image {
        Image {
            width: self.width,
            height: self.height,
            rgba: self.data.clone(),
        }
    }
}
