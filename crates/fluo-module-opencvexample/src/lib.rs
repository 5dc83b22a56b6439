//! OpenCVExample, Kurento's `opencvexample` module, as a Fluo module built on the
//! OpenCVFilter base ([`fluo_module::opencv`]) and nothing else (docs/modules.md).
//!
//! What KMS's example does with each frame, done here in Rust: the frame turned grey
//! (BT.601 luma); with filter type 0 (the default) Canny's edge detector runs on the grey
//! picture, thresholds the edge threshold (125 by default) and 125, and the frame shows
//! the edges white on black; with any other filter type it shows the grey picture. Both
//! methods take any int, as KMS's do. The grey picture and Canny's buffers are kept in the
//! element from frame to frame: a frame allocates nothing once the first of its size has
//! been through.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod canny;

pub use canny::{canny, Canny};
use fluo_module::opencv::{self, Mat, OpenCvProcess};
use fluo_module::{not_handled, ErrorCode, Host, Instance, KurentoError, Map, Module, Value};

/// The module's interface (the facts of Kurento's opencvexample kmd, in Fluo's `.idl`).
pub const IDL: &str = "\
module opencvexample 7.3.0

class OpenCVExample extends OpenCVFilter
  ctor mediaPipeline: MediaPipeline
  method setFilterType(filterType: int): void
  method setEdgeThreshold(edgeValue: int): void
";

/// Canny's other threshold, fixed in KMS's example.
pub const FIXED_THRESHOLD: i32 = 125;

/// The edge threshold before setEdgeThreshold (KMS's).
pub const DEFAULT_EDGE_THRESHOLD: i32 = 125;

/// The opencvexample module.
#[derive(Debug, Default)]
pub struct OpenCvExample;

impl Module for OpenCvExample {
    fn idl(&self) -> &str {
        IDL
    }

    fn create(
        &self,
        _host: &mut dyn Host,
        class: &str,
        _params: &Map<String, Value>,
    ) -> Result<Box<dyn Instance>, KurentoError> {
        if class != "OpenCVExample" {
            return Err(KurentoError::new(
                ErrorCode::MediaObjectNotAvailable,
                format!("the opencvexample module has no type {class}"),
            ));
        }
        Ok(opencv::instance(Example::default()))
    }
}

/// What the frames show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterType {
    /// Filter type 0: the edges, white on black.
    Edges,
    /// Any other filter type (1 in the kmd's words): the grey picture.
    Gray,
}

/// One OpenCVExample.
#[derive(Debug)]
pub struct Example {
    filter: FilterType,
    edge_threshold: i32,
    /// The frame's grey picture, then its edges (kept: see the crate's doc).
    gray: Vec<u8>,
    canny: Canny,
}

impl Default for Example {
    fn default() -> Example {
        Example {
            filter: FilterType::Edges,
            edge_threshold: DEFAULT_EDGE_THRESHOLD,
            gray: Vec::new(),
            canny: Canny::default(),
        }
    }
}

/// The int parameter `name`, checked by Fluo against the description already (an `int`
/// is a 32-bit one).
fn int(params: &Map<String, Value>, name: &str) -> i32 {
    let n = params.get(name).and_then(Value::as_i64).unwrap_or_default();
    n.clamp(i32::MIN.into(), i32::MAX.into()) as i32
}

impl OpenCvProcess for Example {
    fn process(&mut self, _host: &mut dyn Host, mat: &mut Mat<'_>) -> Result<(), String> {
        mat.gray_into(&mut self.gray);
        if self.filter == FilterType::Edges {
            let (w, h) = (mat.width as usize, mat.height as usize);
            let t = self.edge_threshold;
            self.canny.run(&mut self.gray, w, h, t, FIXED_THRESHOLD);
        }
        mat.set_gray(&self.gray);
        Ok(())
    }

    fn invoke(
        &mut self,
        _host: &mut dyn Host,
        method: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, KurentoError> {
        match method {
            // Any int, as KMS's: 0 the edges, any other the grey picture.
            "setFilterType" => {
                self.filter = match int(params, "filterType") {
                    0 => FilterType::Edges,
                    _ => FilterType::Gray,
                };
                Ok(Value::Null)
            }
            // Any int, as KMS's (the kmd says 0..255): Canny takes it as it is; one over the
            // largest gradient (2040) finds no edges.
            "setEdgeThreshold" => {
                self.edge_threshold = int(params, "edgeValue");
                Ok(Value::Null)
            }
            other => Err(not_handled(other)),
        }
    }
}

#[cfg(test)]
mod tests;
