//! ChromaFilter, Kurento's `chroma` module, written against Fluo's public module API
//! ([`fluo_module`]) only: docs/modules.md walks through it.
//!
//! The constructor's `window` is the calibration area: the mean chroma of that area over the
//! first [`CALIBRATION_FRAMES`] frames that show a colour there is the key (dark and grey
//! pixels are left out, so that a camera's black or grey first frames do not make grey the
//! key; frames pass unchanged until then). In every later frame, the pixels whose chroma
//! (Cb, Cr) lies within [`TOLERANCE`] of the key's are replaced by the background image
//! (`setBackground`, scaled to the frame) or, without one, left as they are.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use fluo_module::{
    not_handled, ErrorCode, Host, Image, Instance, KurentoError, Map, Module, PixelFormat, Value,
    VideoFrame,
};

/// The module's interface (the facts of Kurento's chroma kmd, in Fluo's `.idl` format).
pub const IDL: &str = "\
module chroma 7.3.0

class ChromaFilter extends Filter
  ctor mediaPipeline: MediaPipeline
  ctor window: WindowParam
  ctor backgroundImage?: String = \"\"
  method setBackground(uri: String): void
  method unsetBackground(): void

struct WindowParam
  field topRightCornerX: int
  field topRightCornerY: int
  field width: int
  field height: int
";

/// How far (Euclidean, in 8-bit Cb/Cr units) a pixel's chroma may be from the key's and
/// still be keyed.
pub const TOLERANCE: i32 = 40;

/// The chroma module.
#[derive(Debug, Default)]
pub struct Chroma;

impl Module for Chroma {
    fn idl(&self) -> &str {
        IDL
    }

    fn create(
        &self,
        host: &mut dyn Host,
        class: &str,
        params: &Map<String, Value>,
    ) -> Result<Box<dyn Instance>, KurentoError> {
        if class != "ChromaFilter" {
            return Err(KurentoError::new(
                ErrorCode::MediaObjectNotAvailable,
                format!("the chroma module has no type {class}"),
            ));
        }
        let mut filter = ChromaFilter::new(window(params.get("window"))?);
        let uri = params.get("backgroundImage").and_then(Value::as_str);
        if let Some(uri) = uri.filter(|u| !u.is_empty()) {
            filter.pending = Some(host.load_image(uri)?);
        }
        Ok(Box::new(filter))
    }
}

/// The calibration window (x, y, width, height) from a WindowParam value.
fn window(v: Option<&Value>) -> Result<(u32, u32, u32, u32), KurentoError> {
    let field = |name: &str| -> Result<i64, KurentoError> {
        v.and_then(|w| w.get(name))
            .and_then(Value::as_i64)
            .ok_or_else(|| {
                KurentoError::illegal_param(format!("ChromaFilter: window.{name} is missing"))
            })
    };
    let (x, y, w, h) = (
        field("topRightCornerX")?,
        field("topRightCornerY")?,
        field("width")?,
        field("height")?,
    );
    if x < 0 || y < 0 || w <= 0 || h <= 0 {
        return Err(KurentoError::illegal_param(format!(
            "ChromaFilter: the window must lie at x, y >= 0 and be at least 1x1 (got {x}, {y}, {w}x{h})"
        )));
    }
    let c = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
    Ok((c(x), c(y), c(w), c(h)))
}

/// How many frames showing a colour in the window calibrate the key.
pub const CALIBRATION_FRAMES: u32 = 5;

/// A window pixel darker than this (its brightest channel) has no reliable chroma.
const DARK: u8 = 30;

/// A window pixel whose chroma lies this close to grey's (128, 128) is no key colour.
const NEUTRAL: i32 = 16;

/// One ChromaFilter.
#[derive(Debug)]
pub struct ChromaFilter {
    window: (u32, u32, u32, u32),
    /// The key's (Cb, Cr), once calibrated.
    key: Option<(i32, i32)>,
    /// While calibrating: the sums of Cb and Cr of the coloured window pixels seen, their
    /// count, and how many frames had enough of them.
    calibration: ((i64, i64), i64, u32),
    /// The background image, and its copy scaled to the last frame's size.
    background: Option<Image>,
    scaled: Option<Image>,
    /// The load whose image becomes the background (a newer call or unsetBackground drops
    /// an older one).
    pending: Option<u64>,
}

impl ChromaFilter {
    /// A filter calibrating on `window` (x, y, width, height) with no background.
    pub fn new(window: (u32, u32, u32, u32)) -> ChromaFilter {
        ChromaFilter {
            window,
            key: None,
            calibration: ((0, 0), 0, 0),
            background: None,
            scaled: None,
            pending: None,
        }
    }

    /// The key's (Cb, Cr), once the first frames calibrated it.
    pub fn key(&self) -> Option<(i32, i32)> {
        self.key
    }
}

/// The (Cb, Cr) of an RGB pixel (BT.601, full range).
pub fn chroma(r: u8, g: u8, b: u8) -> (i32, i32) {
    let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
    let cb = 128 + (-43 * r - 85 * g + 128 * b) / 256;
    let cr = 128 + (128 * r - 107 * g - 21 * b) / 256;
    (cb, cr)
}

impl Instance for ChromaFilter {
    fn format(&self) -> PixelFormat {
        PixelFormat::Rgba
    }

    fn invoke(
        &mut self,
        host: &mut dyn Host,
        method: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, KurentoError> {
        match method {
            "setBackground" => {
                let uri = params.get("uri").and_then(Value::as_str).unwrap_or("");
                self.pending = Some(host.load_image(uri)?);
                Ok(Value::Null)
            }
            "unsetBackground" => {
                self.pending = None;
                self.background = None;
                self.scaled = None;
                Ok(Value::Null)
            }
            other => Err(not_handled(other)),
        }
    }

    fn image(&mut self, _host: &mut dyn Host, request: u64, image: Image) {
        if self.pending == Some(request) {
            self.background = Some(image);
            self.scaled = None;
        }
    }

    fn process(&mut self, _host: &mut dyn Host, frame: &mut VideoFrame<'_>) {
        if frame.format != PixelFormat::Rgba || frame.planes.is_empty() {
            return;
        }
        let (width, height) = (frame.width, frame.height);
        let stride = frame.planes[0].stride;
        let data = &mut *frame.planes[0].data;
        let key = match self.key {
            Some(key) => key,
            None => {
                calibrate(
                    data,
                    stride,
                    (width, height),
                    self.window,
                    &mut self.calibration,
                );
                let ((cb, cr), n, frames) = self.calibration;
                if frames < CALIBRATION_FRAMES {
                    return;
                }
                *self.key.insert(((cb / n) as i32, (cr / n) as i32))
            }
        };
        let Some(bg) = &self.background else {
            return;
        };
        if self
            .scaled
            .as_ref()
            .is_none_or(|s| (s.width, s.height) != (width, height))
        {
            self.scaled = Some(scale(bg, width, height));
        }
        let Some(bg) = &self.scaled else { return };
        let limit = TOLERANCE * TOLERANCE;
        for y in 0..height as usize {
            let row = &mut data[y * stride..];
            for x in 0..width as usize {
                let p = &mut row[x * 4..x * 4 + 4];
                let (cb, cr) = chroma(p[0], p[1], p[2]);
                let (dcb, dcr) = (cb - key.0, cr - key.1);
                if dcb * dcb + dcr * dcr > limit {
                    continue;
                }
                let i = (y * width as usize + x) * 4;
                let b = &bg.rgba[i..i + 4];
                let a = u32::from(b[3]);
                for c in 0..3 {
                    let mixed = (u32::from(b[c]) * a + u32::from(p[c]) * (255 - a)) / 255;
                    p[c] = mixed as u8;
                }
            }
        }
    }
}

/// Adds the window's coloured pixels (clipped to the frame; the whole frame when the window
/// lies outside it) to `acc` (sums of Cb and Cr, count, frames): the frame counts when at
/// least a quarter of the window is coloured (neither dark nor grey).
fn calibrate(
    data: &[u8],
    stride: usize,
    (w, h): (u32, u32),
    win: (u32, u32, u32, u32),
    acc: &mut ((i64, i64), i64, u32),
) {
    let (mut x0, mut y0) = (win.0.min(w), win.1.min(h));
    let (mut x1, mut y1) = (
        win.0.saturating_add(win.2).min(w),
        win.1.saturating_add(win.3).min(h),
    );
    if x0 >= x1 || y0 >= y1 {
        (x0, y0, x1, y1) = (0, 0, w, h);
    }
    let (mut sum, mut n) = ((0i64, 0i64), 0i64);
    for y in y0..y1 {
        for x in x0..x1 {
            let i = y as usize * stride + x as usize * 4;
            let (r, g, b) = (data[i], data[i + 1], data[i + 2]);
            let (cb, cr) = chroma(r, g, b);
            let (dcb, dcr) = (cb - 128, cr - 128);
            if r.max(g).max(b) < DARK || dcb * dcb + dcr * dcr < NEUTRAL * NEUTRAL {
                continue;
            }
            sum = (sum.0 + i64::from(cb), sum.1 + i64::from(cr));
            n += 1;
        }
    }
    let all = i64::from(x1 - x0) * i64::from(y1 - y0);
    if n > 0 && n * 4 >= all {
        acc.0 = (acc.0 .0 + sum.0, acc.0 .1 + sum.1);
        acc.1 += n;
        acc.2 += 1;
    }
}

/// `img` scaled to `w` x `h` (nearest neighbour).
fn scale(img: &Image, w: u32, h: u32) -> Image {
    let mut rgba = Vec::with_capacity(w as usize * h as usize * 4);
    for y in 0..h {
        let sy = (u64::from(y) * u64::from(img.height) / u64::from(h.max(1))) as u32;
        for x in 0..w {
            let sx = (u64::from(x) * u64::from(img.width) / u64::from(w.max(1))) as u32;
            rgba.extend_from_slice(&img.pixel(sx, sy).unwrap_or([0, 0, 0, 0]));
        }
    }
    Image {
        width: w,
        height: h,
        rgba,
    }
}

#[cfg(test)]
mod tests;
