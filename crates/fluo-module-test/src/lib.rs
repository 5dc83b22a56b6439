//! `fluomodtest`, a module for tests (linked only by fluo-server's `test-elements` feature):
//! FluoModuleTestFilter inverts its video's colours and raises `FramesProcessed` every 30
//! frames (the first included); after its property `mode` is set to `panic` its processing
//! panics, which the host must contain; set to `error`, its next frame raises an Error
//! event ([`Host::error`]) and the processing goes on. Its description names its parents
//! qualified (`kurento.Filter`, `kurento.Media`), as a client writes them: the server test
//! checks that such a class is a Filter to clients all the same.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use fluo_module::{
    not_handled, Host, Instance, KurentoError, Map, Module, PixelFormat, Value, VideoFrame,
};

/// The module's interface.
pub const IDL: &str = "\
module fluomodtest 0.1.0

class FluoModuleTestFilter extends kurento.Filter
  ctor mediaPipeline: MediaPipeline
  prop mode: String = \"invert\"
  method getFrames(): int
  event FramesProcessed

event FramesProcessed extends kurento.Media
  field count: int
";

/// The test module.
#[derive(Debug, Default)]
pub struct TestModule;

impl Module for TestModule {
    fn idl(&self) -> &str {
        IDL
    }

    fn create(
        &self,
        _host: &mut dyn Host,
        _class: &str,
        _params: &Map<String, Value>,
    ) -> Result<Box<dyn Instance>, KurentoError> {
        Ok(Box::new(TestFilter::default()))
    }
}

#[derive(Debug, Default)]
struct TestFilter {
    frames: u64,
    panic: bool,
    /// An Error event to raise with the next frame.
    error: bool,
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
            ("mode", Some("invert")) => self.panic = false,
            ("mode", Some("panic")) => self.panic = true,
            ("mode", Some("error")) => (self.panic, self.error) = (false, true),
            _ => {
                return Err(KurentoError::illegal_param(format!(
                    "mode must be invert, error or panic (got {value})"
                )))
            }
        }
        Ok(())
    }

    fn process(&mut self, host: &mut dyn Host, frame: &mut VideoFrame<'_>) {
        if self.panic {
            panic!("FluoModuleTestFilter panics on purpose");
        }
        if std::mem::take(&mut self.error) {
            host.error(&format!("an error on purpose, after frame {}", self.frames));
        }
        if self.frames.is_multiple_of(30) {
            let mut fields = Map::new();
            fields.insert("count".into(), Value::from(self.frames + 1));
            host.emit("FramesProcessed", fields);
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

#[cfg(test)]
mod tests {
    use super::*;
    use fluo_module::testing::{RgbaFrame, TestHost};

    #[test]
    fn inverts_counts_and_panics_on_command() {
        let mut host = TestHost::default();
        let mut f = TestModule
            .create(&mut host, "FluoModuleTestFilter", &Map::new())
            .expect("made");
        let mut frame = RgbaFrame::filled(4, 2, [10, 20, 30, 255]);
        frame.process(&mut *f, &mut host, 0);
        assert_eq!(frame.pixel(3, 1), [245, 235, 225, 255]);
        assert_eq!(host.events.len(), 1);
        assert_eq!(host.events[0].0, "FramesProcessed");
        assert_eq!(f.invoke(&mut host, "getFrames", &Map::new()), Ok(1.into()));
        f.property_set(&mut host, "mode", &Value::from("error"))
            .expect("set");
        frame.process(&mut *f, &mut host, 1);
        frame.process(&mut *f, &mut host, 2);
        assert_eq!(host.errors, ["an error on purpose, after frame 1"]);
        assert_eq!(frame.pixel(3, 1), [245, 235, 225, 255], "processed on");
        f.property_set(&mut host, "mode", &Value::from("panic"))
            .expect("set");
        assert!(f
            .property_set(&mut host, "mode", &Value::from("x"))
            .is_err());
        let hit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            frame.process(&mut *f, &mut host, 1)
        }));
        assert!(hit.is_err());
    }
}
