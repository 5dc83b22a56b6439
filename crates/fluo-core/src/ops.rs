//! What the engine tells an operator: its reading for the server's metrics (taken when they
//! are scraped, never per request), the Kurento errors it answered by code, the method of the
//! request it handled last (the shell times requests), and draining (no new pipelines).

use crate::engine::{ConnId, Engine};
use fluo_api::params::{Call, Method};
use fluo_api::{ErrorCode, KurentoError};
use std::collections::BTreeMap;

/// The JSON-RPC methods of the Kurento Protocol, as metric labels; anything else is `other`
/// (a client cannot grow the label set).
const METHODS: [&str; 13] = [
    "ping",
    "connect",
    "create",
    "invoke",
    "release",
    "subscribe",
    "unsubscribe",
    "transaction",
    "closeSession",
    "keepAlive",
    "describe",
    "ref",
    "unref",
];

/// The label of a request's method: one of the protocol's methods, or `other`.
pub fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

/// The engine's counters for operators.
#[derive(Debug, Default)]
pub(crate) struct OpsState {
    /// No new pipelines (see [`Engine::set_draining`]).
    pub draining: bool,
    /// Error responses sent, by code.
    pub errors: BTreeMap<i64, u64>,
    /// The method of the request handled last (see [`Engine::take_last_method`]).
    pub last_method: Option<&'static str>,
}

/// The engine's figures at one moment, for the metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineReading {
    /// Sessions known (connected or in their grace period).
    pub sessions: usize,
    /// Media pipelines.
    pub pipelines: usize,
    /// Objects by class (pipelines' elements, hubs and their ports; neither the
    /// ServerManager nor the pipelines themselves).
    pub elements: BTreeMap<String, usize>,
    /// Error responses sent since the start, by code (JSON-RPC and Kurento codes).
    pub errors: BTreeMap<i64, u64>,
    /// Elements transcoding now, by media kind (`AUDIO`, `VIDEO`), as their
    /// MediaTranscodingStateChanged events said.
    pub transcoding: BTreeMap<String, usize>,
}

impl Engine {
    /// Refuses new pipelines (`on`) with 40009 NOT_ENOUGH_RESOURCES, or takes them again;
    /// the pipelines that exist go on.
    pub fn set_draining(&mut self, on: bool) {
        if self.ops.draining != on {
            tracing::info!(draining = on, "draining changed");
        }
        self.ops.draining = on;
    }

    /// Whether new pipelines are refused.
    pub fn draining(&self) -> bool {
        self.ops.draining
    }

    /// The method of the request handled by the last [`Engine::handle_text`] (as
    /// [`method_label`] names it; `invalid` for a frame that was not a request), once.
    pub fn take_last_method(&mut self) -> Option<&'static str> {
        self.ops.last_method.take()
    }

    /// The engine's figures now (walks the registry once: for a scrape, not per request).
    pub fn reading(&self) -> EngineReading {
        let mut elements = BTreeMap::new();
        let mut transcoding = BTreeMap::new();
        for (class, states) in self.registry.classes() {
            if class != "ServerManager" && class != "MediaPipeline" {
                *elements.entry(class.to_string()).or_insert(0) += 1;
            }
            for (key, on) in states {
                let Some(kind) = key.strip_prefix("MediaTranscodingStateChanged/") else {
                    continue;
                };
                if *on {
                    *transcoding.entry(kind.to_string()).or_insert(0) += 1;
                }
            }
        }
        EngineReading {
            sessions: self.sessions.len(),
            pipelines: self.registry.pipeline_count(),
            elements,
            errors: self.ops.errors.clone(),
            transcoding,
        }
    }

    /// The span a request runs in: lines logged while the engine handles it carry the
    /// object it is about and that object's pipeline (`object`, `pipeline`; for a `create`,
    /// the pipeline it is created in).
    pub(crate) fn request_span(&self, call: &Call) -> tracing::Span {
        let object = match &call.method {
            Method::Invoke(i) => Some(i.object.as_str()),
            Method::Subscribe(s) => Some(s.object.as_str()),
            Method::Unsubscribe(u) => Some(u.object.as_str()),
            Method::Release(id) | Method::Describe(id) | Method::Ref(id) | Method::Unref(id) => {
                Some(id.as_str())
            }
            _ => None,
        };
        let pipeline = match (&call.method, object) {
            (Method::Create(c), _) => c
                .constructor_params
                .get("mediaPipeline")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
            (_, Some(id)) => self.registry.get(id).and_then(|o| match &o.pipeline {
                Some(p) => Some(p.clone()),
                None if o.class == "MediaPipeline" => Some(o.id.clone()),
                None => None,
            }),
            _ => None,
        };
        if object.is_none() && pipeline.is_none() {
            return tracing::Span::none();
        }
        let span = tracing::info_span!(
            "request",
            object = tracing::field::Empty,
            pipeline = tracing::field::Empty
        );
        if let Some(o) = object {
            span.record("object", o);
        }
        if let Some(p) = &pipeline {
            span.record("pipeline", p.as_str());
        }
        span
    }

    /// Counts an error response on `conn` (not on an internal connection: a cascade
    /// relay's requests are kept out of the request metrics).
    pub(crate) fn count_error(&mut self, conn: ConnId, e: &KurentoError) {
        if self.sessions.is_internal_conn(conn) {
            return;
        }
        *self.ops.errors.entry(e.code.code()).or_insert(0) += 1;
    }

    /// The refusal of a new pipeline while draining.
    pub(crate) fn check_draining(&self, class: &str) -> Result<(), KurentoError> {
        if self.ops.draining && class == "MediaPipeline" {
            return Err(KurentoError::new(
                ErrorCode::NotEnoughResources,
                "This media server is draining: it takes no new media pipelines (the existing ones go on); use another server",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::method_label;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label("invoke"), "invoke");
        assert_eq!(method_label("closeSession"), "closeSession");
        assert_eq!(method_label("x\"}\n"), "other");
    }
}
