//! FluoTestCrash (feature `test-elements`, never in a release build): an element whose job, a
//! `test.crash` job of fluo-worker's test jobs on the worker hosting its pipeline, aborts,
//! segfaults or allocates without bound when its `crash` method is called. It stands for a
//! plugin that crashes, next to the pipeline's real elements (docs/workers.md, "Tests").

pub(crate) mod element;

use crate::remote::proxy::{nothing, Face, Proxied, Proxy};
use crate::remote::{Local, Remote, Spec};
use crate::Media;
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{Element, ElementCx, Factory, FactoryCx, MediaError};
use fluo_sfu::{MediaKind, SinkCaps};
use serde_json::{Map, Value};

/// The model of the test element's module, added to the built-in one by a server built with
/// the feature.
pub const TEST_MODULE_IDL: &str = "\
module fluotest 1.0.0

class FluoTestCrash extends MediaElement
  ctor mediaPipeline: MediaPipeline
  ctor mode: String
  prop mode: String readonly
  method crash(): void
";

/// The job kind (fluo-worker's `test_jobs`).
const KIND: &str = "test.crash";

/// Makes FluoTestCrash elements.
pub(crate) struct TestCrashFactory {
    pub media: Media,
}

/// The job's method for a mode: `abort` (SIGABRT), `segv` (a store to an unmapped page),
/// `oom` (allocation without bound on a thread of its own, until the worker's memory limit).
fn method_of(mode: &str) -> Option<&'static str> {
    match mode {
        "abort" => Some("abort"),
        "segv" => Some("segv"),
        "oom" => Some("alloc"),
        _ => None,
    }
}

impl Factory for TestCrashFactory {
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        let mode = cx
            .params
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let method = method_of(mode).ok_or_else(|| {
            KurentoError::new(
                ErrorCode::MediaObjectIllegalParamError,
                format!(
                    "FluoTestCrash's mode is abort, segv or oom, not '{}'",
                    fluo_api::text::foreign(mode.chars().take(40).collect::<String>())
                ),
            )
        })?;
        let Some(workers) = &self.media.workers else {
            return Err(KurentoError::new(
                ErrorCode::MediaObjectNotAvailable,
                "FluoTestCrash runs in a media worker, and this server has none (--workers 0)",
            ));
        };
        let remote = Remote::start(
            workers,
            &self.media,
            cx,
            Spec {
                kind: KIND,
                params: Vec::new(),
                error: MediaError::Filter,
                local: Local::default(),
                caps,
                follows_settings: false,
            },
        );
        tracing::info!(id = %cx.id, mode, "FluoTestCrash created (a test element)");
        Ok(Proxied::boxed(
            cx.id,
            remote,
            &self.media,
            CrashFace {
                mode: mode.to_string(),
                method,
            },
        ))
    }
}

/// Takes whatever it is given (and drops it).
fn caps(_: &Local, _: MediaKind) -> SinkCaps {
    SinkCaps::anything()
}

struct CrashFace {
    mode: String,
    method: &'static str,
}

impl Face for CrashFace {
    fn has_output(&self) -> bool {
        false
    }

    fn invoke(
        &mut self,
        p: &Proxy,
        cx: &mut ElementCx<'_>,
        method: &str,
        _params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        if method != "crash" {
            return None;
        }
        tracing::warn!(id = %p.id, mode = %self.mode, "FluoTestCrash: crashing its media worker");
        // abort and segv never answer: the request gets the worker's death (40003); oom's
        // allocation runs on a thread of its own, so it answers at once and the worker dies
        // at its memory limit.
        Some(p.remote.answer(cx, self.method, Vec::new(), nothing))
    }

    fn get_property(&self, _p: &Proxy, name: &str) -> Option<Value> {
        (name == "mode").then(|| Value::from(self.mode.clone()))
    }
}
