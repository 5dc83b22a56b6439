//! Kurento's `pointerdetector` module (PointerDetectorFilter) as a WebAssembly module, built
//! by `make wasm-modules` to target/wasm32-unknown-unknown/wasm-module/
//! fluo_module_pointerdetector.wasm and loaded from a modules folder (docs/modules.md).
//!
//! What it does: `trackColorFromCalibrationRegion` takes the mean colour of the calibration
//! region in the next frame as the pointer's colour; in every frame after, the pointer is the
//! centre of the pixels within [`TOLERANCE`] of that colour (at least [`MIN_PIXELS`] of them,
//! else there is none). When the pointer enters one of the windows (`windows` at create,
//! `addWindow`) the filter raises `WindowIn` with the window's id, when it leaves (or
//! disappears) `WindowOut`. A region's or window's corner fields (`topRightCornerX/Y`,
//! `upperRightX/Y`) are its top-left corner, as for ChromaFilter. Not done: drawing the
//! windows and their images on the video, and any colour before the calibration.

use fluo_module_guest::fluo_module::{
    not_handled, Host, Instance, KurentoError, Map, Module, PixelFormat, Value, VideoFrame,
};

/// The module's interface (the facts of Kurento's pointerdetector kmd, in Fluo's `.idl`).
pub const IDL: &str = "\
module pointerdetector 7.3.0

class PointerDetectorFilter extends Filter
  ctor mediaPipeline: MediaPipeline
  ctor calibrationRegion: WindowParam
  ctor windows?: PointerDetectorWindowMediaParam[] = []
  method addWindow(window: PointerDetectorWindowMediaParam): void
  method clearWindows(): void
  method trackColorFromCalibrationRegion(): void
  method removeWindow(windowId: String): void
  event WindowIn
  event WindowOut

struct WindowParam
  field topRightCornerX: int
  field topRightCornerY: int
  field width: int
  field height: int

struct PointerDetectorWindowMediaParam
  field id: String
  field height: int
  field width: int
  field upperRightX: int
  field upperRightY: int
  field activeImage?: String
  field imageTransparency?: float
  field image?: String

event WindowIn extends Media
  field windowId: String

event WindowOut extends Media
  field windowId: String
";

/// How far (largest difference of R, G or B) a pixel may be from the tracked colour.
pub const TOLERANCE: i32 = 40;

/// The fewest matching pixels that make a pointer.
pub const MIN_PIXELS: u32 = 16;

/// The module.
pub struct PointerDetector;

#[cfg(target_arch = "wasm32")]
fluo_module_guest::export_module!(PointerDetector);

/// A rectangle: left, top, width, height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rect(i64, i64, i64, i64);

impl Rect {
    fn contains(&self, x: i64, y: i64) -> bool {
        x >= self.0 && y >= self.1 && x < self.0 + self.2 && y < self.1 + self.3
    }
}

fn int(v: &Value, field: &str) -> Result<i64, KurentoError> {
    v.get(field)
        .and_then(Value::as_i64)
        .ok_or_else(|| KurentoError::illegal_param(format!("{field} must be an integer")))
}

fn rect(v: &Value, x: &str, y: &str) -> Result<Rect, KurentoError> {
    let r = Rect(int(v, x)?, int(v, y)?, int(v, "width")?, int(v, "height")?);
    if r.0 < 0 || r.1 < 0 || r.2 <= 0 || r.3 <= 0 {
        return Err(KurentoError::illegal_param(format!(
            "a region needs a corner at 0 or more and a size above 0 (got {v})"
        )));
    }
    Ok(r)
}

struct Window {
    id: String,
    rect: Rect,
    inside: bool,
}

fn window(v: &Value) -> Result<Window, KurentoError> {
    let id = v.get("id").and_then(Value::as_str).unwrap_or_default();
    if id.is_empty() {
        return Err(KurentoError::illegal_param("a window needs an id"));
    }
    Ok(Window {
        id: id.to_string(),
        rect: rect(v, "upperRightX", "upperRightY")?,
        inside: false,
    })
}

impl Module for PointerDetector {
    fn idl(&self) -> &str {
        IDL
    }

    fn create(
        &self,
        _host: &mut dyn Host,
        _class: &str,
        params: &Map<String, Value>,
    ) -> Result<Box<dyn Instance>, KurentoError> {
        let calibration = params.get("calibrationRegion").unwrap_or(&Value::Null);
        let mut f = Filter {
            calibration: rect(calibration, "topRightCornerX", "topRightCornerY")?,
            windows: vec![],
            colour: None,
            calibrate: false,
        };
        if let Some(list) = params.get("windows").and_then(Value::as_array) {
            for w in list {
                f.add(window(w)?)?;
            }
        }
        Ok(Box::new(f))
    }
}

/// One PointerDetectorFilter.
pub struct Filter {
    calibration: Rect,
    windows: Vec<Window>,
    colour: Option<[i32; 3]>,
    calibrate: bool,
}

impl Filter {
    fn add(&mut self, w: Window) -> Result<(), KurentoError> {
        if self.windows.iter().any(|x| x.id == w.id) {
            return Err(KurentoError::illegal_param(format!(
                "a window {} is there already",
                w.id
            )));
        }
        self.windows.push(w);
        Ok(())
    }

    /// The mean colour of the calibration region (clipped to the frame).
    fn mean(&self, frame: &VideoFrame<'_>) -> Option<[i32; 3]> {
        let plane = frame.planes.first()?;
        let Rect(x0, y0, w, h) = self.calibration;
        let (x1, y1) = (
            (x0 + w).min(frame.width as i64),
            (y0 + h).min(frame.height as i64),
        );
        let (mut sum, mut n) = ([0i64; 3], 0i64);
        for y in y0..y1 {
            for x in x0..x1 {
                let i = y as usize * plane.stride + x as usize * 4;
                for (c, s) in sum.iter_mut().enumerate() {
                    *s += i64::from(plane.data[i + c]);
                }
                n += 1;
            }
        }
        (n > 0).then(|| sum.map(|s| (s / n) as i32))
    }

    /// The pointer: the centre of the pixels of the tracked colour.
    fn pointer(&self, frame: &VideoFrame<'_>, colour: [i32; 3]) -> Option<(i64, i64)> {
        let plane = frame.planes.first()?;
        let (mut sx, mut sy, mut n) = (0u64, 0u64, 0u32);
        for y in 0..frame.height as usize {
            let row = &plane.data[y * plane.stride..y * plane.stride + frame.width as usize * 4];
            for (x, px) in row.chunks_exact(4).enumerate() {
                let near = (0..3).all(|c| (i32::from(px[c]) - colour[c]).abs() <= TOLERANCE);
                if near {
                    sx += x as u64;
                    sy += y as u64;
                    n += 1;
                }
            }
        }
        (n >= MIN_PIXELS).then(|| ((sx / u64::from(n)) as i64, (sy / u64::from(n)) as i64))
    }
}

fn event(host: &mut dyn Host, name: &str, id: &str) {
    let mut fields = Map::new();
    fields.insert("windowId".into(), Value::from(id));
    host.emit(name, fields);
}

impl Instance for Filter {
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
            "addWindow" => self.add(window(params.get("window").unwrap_or(&Value::Null))?)?,
            "clearWindows" => {
                for w in self.windows.drain(..).filter(|w| w.inside) {
                    event(host, "WindowOut", &w.id);
                }
            }
            "removeWindow" => {
                let id = params.get("windowId").and_then(Value::as_str).unwrap_or("");
                let Some(at) = self.windows.iter().position(|w| w.id == id) else {
                    return Err(KurentoError::illegal_param(format!("no window {id}")));
                };
                let w = self.windows.remove(at);
                if w.inside {
                    event(host, "WindowOut", &w.id);
                }
            }
            "trackColorFromCalibrationRegion" => self.calibrate = true,
            other => return Err(not_handled(other)),
        }
        Ok(Value::Null)
    }

    fn process(&mut self, host: &mut dyn Host, frame: &mut VideoFrame<'_>) {
        if std::mem::take(&mut self.calibrate) {
            self.colour = self.mean(frame).or(self.colour);
        }
        let Some(colour) = self.colour else { return };
        let at = self.pointer(frame, colour);
        for w in &mut self.windows {
            let inside = at.is_some_and(|(x, y)| w.rect.contains(x, y));
            if inside != w.inside {
                w.inside = inside;
                event(host, if inside { "WindowIn" } else { "WindowOut" }, &w.id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
