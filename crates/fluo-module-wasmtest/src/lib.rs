//! `fluowasmtest`, a WebAssembly module for tests (built by `make wasm-modules` to
//! target/wasm32-unknown-unknown/wasm-module/fluo_module_wasmtest.wasm): FluoWasmTestFilter
//! inverts its video's colours and raises `WasmFramesProcessed` every 30 frames (the first
//! included). Its property `mode` makes the next frame misbehave: `panic` panics, `trap`
//! executes `unreachable`, `loop` never returns, `alloc` allocates without bound; the host
//! must stop it and nothing else. `error` raises an Error event with each frame and goes on;
//! `flood` raises 60 with each frame (the host's limit per element must hold them back).
//! FluoWasmTestOpenCv extends OpenCVFilter (fluo_module::opencv): it gets BGRA frames and
//! sets each pixel's first byte (blue) to 255.

use fluo_module_guest::fluo_module::opencv::{self, Mat, OpenCvProcess};
use fluo_module_guest::fluo_module::{
    not_handled, Host, Instance, KurentoError, Map, Module, PixelFormat, Value, VideoFrame,
};

const IDL: &str = "\
module fluowasmtest 0.1.0

class FluoWasmTestFilter extends Filter
  ctor mediaPipeline: MediaPipeline
  prop mode: String = \"invert\"
  method getFrames(): int
  event WasmFramesProcessed

class FluoWasmTestOpenCv extends OpenCVFilter
  ctor mediaPipeline: MediaPipeline

event WasmFramesProcessed extends Media
  field count: int
";

struct TestModule;

fluo_module_guest::export_module!(TestModule);

impl Module for TestModule {
    fn idl(&self) -> &str {
        IDL
    }

    fn create(
        &self,
        _host: &mut dyn Host,
        class: &str,
        _params: &Map<String, Value>,
    ) -> Result<Box<dyn Instance>, KurentoError> {
        if class == "FluoWasmTestOpenCv" {
            return Ok(opencv::instance(BlueFirst));
        }
        Ok(Box::new(TestFilter::default()))
    }
}

/// Sets every pixel's first byte, blue in BGRA, to 255.
struct BlueFirst;

impl OpenCvProcess for BlueFirst {
    fn process(&mut self, _host: &mut dyn Host, mat: &mut Mat<'_>) -> Result<(), String> {
        for y in 0..mat.height {
            mat.row_mut(y).chunks_exact_mut(4).for_each(|p| p[0] = 255);
        }
        Ok(())
    }

    fn invoke(
        &mut self,
        _host: &mut dyn Host,
        method: &str,
        _params: &Map<String, Value>,
    ) -> Result<Value, KurentoError> {
        Err(not_handled(method))
    }
}

#[derive(Default)]
struct TestFilter {
    frames: u64,
    mode: String,
}

impl Instance for TestFilter {
    fn format(&self) -> PixelFormat {
        PixelFormat::Rgba
    }

    fn invoke(
        &mut self,
        _host: &mut dyn Host,
        method: &str,
        _params: &Map<String, Value>,
    ) -> Result<Value, KurentoError> {
        match method {
            "getFrames" => Ok(Value::from(self.frames)),
            other => Err(not_handled(other)),
        }
    }

    fn property_set(
        &mut self,
        _host: &mut dyn Host,
        name: &str,
        value: &Value,
    ) -> Result<(), KurentoError> {
        match (name, value.as_str()) {
            (
                "mode",
                Some(m @ ("invert" | "error" | "flood" | "panic" | "trap" | "loop" | "alloc")),
            ) => {
                self.mode = m.to_string();
                Ok(())
            }
            _ => Err(KurentoError::illegal_param(format!(
                "mode must be invert, error, flood, panic, trap, loop or alloc (got {value})"
            ))),
        }
    }

    fn process(&mut self, host: &mut dyn Host, frame: &mut VideoFrame<'_>) {
        match self.mode.as_str() {
            "error" => host.error("an error on purpose"),
            // 60 and the frame's event: within the 64 events of a call.
            "flood" => {
                (0..60).for_each(|i| host.error(&format!("flood {i} of frame {}", self.frames)))
            }
            "panic" => panic!("FluoWasmTestFilter panics on purpose"),
            "trap" => trap(),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut kept: Vec<Vec<u8>> = vec![];
                loop {
                    kept.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            _ => {}
        }
        if self.frames.is_multiple_of(30) {
            let mut fields = Map::new();
            fields.insert("count".into(), Value::from(self.frames + 1));
            host.emit("WasmFramesProcessed", fields);
        }
        self.frames += 1;
        let (w, h) = (frame.width as usize, frame.height as usize);
        let Some(plane) = frame.planes.first_mut() else {
            return;
        };
        for y in 0..h {
            let row = &mut plane.data[y * plane.stride..y * plane.stride + w * 4];
            for px in row.chunks_exact_mut(4) {
                for c in &mut px[..3] {
                    *c = 255 - *c;
                }
            }
        }
    }
}

/// `unreachable`: a trap without a panic.
fn trap() {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}
