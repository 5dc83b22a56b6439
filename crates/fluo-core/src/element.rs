//! The extension point for element implementations.
//!
//! The engine handles everything the model says about MediaObject and MediaElement
//! (names, tags, properties, connections, events). An [`Element`] adds what is specific to
//! one class; a [`Factory`] creates it. Crates further out (WebRTC, GStreamer, third-party
//! modules) register factories with [`crate::Engine::register_factory`].

use crate::graph::Edge;
use crate::stats::StatsQuery;
use fluo_api::KurentoError;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Where deferred replies are completed (from any thread); the shell feeds them to
/// [`crate::Engine::complete`].
pub type CompletionSink = Arc<dyn Fn(u64, Result<Value, KurentoError>) + Send + Sync>;

/// A reply an element gives later instead of blocking the engine (see
/// [`ElementCx::defer`]). Completing it answers the request; dropping it without completing
/// answers with an error.
pub struct Completer {
    token: u64,
    sink: Option<CompletionSink>,
}

impl Completer {
    /// Answers the deferred request with `outcome`.
    pub fn complete(mut self, outcome: Result<Value, KurentoError>) {
        if let Some(sink) = self.sink.take() {
            sink(self.token, outcome);
        }
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            sink(
                self.token,
                Err(KurentoError::new(
                    fluo_api::ErrorCode::UnexpectedError,
                    "The operation ended without an answer",
                )),
            );
        }
    }
}

impl std::fmt::Debug for Completer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Completer({})", self.token)
    }
}

/// The engine's side of deferral while one request runs.
pub(crate) struct DeferState {
    pub sink: CompletionSink,
    pub next: u64,
    /// Set when the running request was deferred.
    pub taken: Option<u64>,
}

/// Context given to element hooks: who the element is and a way to raise events.
pub struct ElementCx<'a> {
    /// The element's id.
    pub id: &'a str,
    /// Wall-clock milliseconds since the UNIX epoch.
    pub wall_ms: u64,
    pub(crate) events: &'a mut Vec<(String, String, Map<String, Value>)>,
    /// Present when the running request may be answered later.
    pub(crate) defer: Option<&'a mut DeferState>,
}

impl ElementCx<'_> {
    /// Answers the running request later: the engine sends no reply now (whatever the hook
    /// returns), and the returned [`Completer`] answers it when done, from any thread, while
    /// the engine goes on serving others. `None` when the request cannot wait (inside a
    /// transaction, a notification, or a shell that does not complete replies): then do the
    /// work before returning.
    pub fn defer(&mut self) -> Option<Completer> {
        let d = self.defer.as_mut()?;
        if d.taken.is_some() {
            return None;
        }
        d.next += 1;
        d.taken = Some(d.next);
        Some(Completer {
            token: d.next,
            sink: Some(d.sink.clone()),
        })
    }

    /// Raises `event` on this element with its own fields (the base fields are added).
    pub fn emit(&mut self, event: &str, fields: Map<String, Value>) {
        self.events
            .push((self.id.to_string(), event.to_string(), fields));
    }

    /// Raises a media-plane event on this element (see [`crate::MediaEvent`]).
    pub fn raise(&mut self, event: crate::MediaEvent) {
        self.emit(crate::event_name(&event), crate::event_fields(&event));
    }
}

/// Held by the work that goes on after an element's release (a GStreamer pipeline stopping,
/// a recording being finalised): while a clone of it lives, the released element still
/// counts against the object limit of the client address that created it, so a client that
/// creates and releases in a loop cannot hold more than its share while they stop.
#[derive(Debug, Clone, Default)]
pub struct Stopping(Arc<()>);

impl Stopping {
    /// A new token; give clones to the work that outlives the release.
    pub fn new() -> Stopping {
        Stopping::default()
    }

    /// How many clones live (this one included).
    pub fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }

    pub(crate) fn watch(&self) -> std::sync::Weak<()> {
        Arc::downgrade(&self.0)
    }
}

/// Class-specific behaviour of a media object.
pub trait Element: Send {
    /// Handles a model method; `None` lets the engine's generic handling run.
    fn invoke(
        &mut self,
        _cx: &mut ElementCx<'_>,
        _method: &str,
        _params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        None
    }

    /// Reads a property the element computes itself; `None` = use the stored value.
    fn get_property(&self, _name: &str) -> Option<Value> {
        None
    }

    /// A client's read of property `name` (its `get` accessor), which the element may answer
    /// itself: with an error, or later through [`ElementCx::defer`] (an element whose state
    /// lives in another process). `None` = [`Element::get_property`] and the generic rules.
    fn read_property(
        &mut self,
        _cx: &mut ElementCx<'_>,
        _name: &str,
    ) -> Option<Result<Value, KurentoError>> {
        None
    }

    /// Called after a property was set (already type-checked); may reject the value.
    fn property_set(
        &mut self,
        _cx: &mut ElementCx<'_>,
        _name: &str,
        _value: &Value,
    ) -> Result<(), KurentoError> {
        Ok(())
    }

    /// An ICE restart the element's peer asked for outside an SDP offer (a WHIP/WHEP PATCH,
    /// RFC 9725 4.3.2): the peer's new ICE credentials; answers the element's SDP with its own
    /// new ones (the rest of the session unchanged). `None`: the element has no ICE session.
    /// An error with `SdpEndPointProcessOfferError` leaves the ICE session as it was; any
    /// other says it was lost (ICE was reset, then the restart failed).
    fn restart_ice(
        &mut self,
        _cx: &mut ElementCx<'_>,
        _ufrag: &str,
        _pwd: &str,
    ) -> Option<Result<String, KurentoError>> {
        None
    }

    /// getStats: this element's Kurento Stats values by id. `None` leaves it to the engine,
    /// which reports an ElementStats entry without measurements while `latencyStats` is on.
    fn stats(&mut self, _q: &StatsQuery<'_>) -> Option<Map<String, Value>> {
        None
    }

    /// The media worker (its slot, as `--workers` numbers them from 0) that runs this
    /// element's media; `None` when it runs in the server's process, or nowhere.
    fn worker(&self) -> Option<usize> {
        None
    }

    /// A connection to or from this element appeared.
    fn connected(&mut self, _cx: &mut ElementCx<'_>, _edge: &Edge) {}

    /// A connection to or from this element went away.
    fn disconnected(&mut self, _cx: &mut ElementCx<'_>, _edge: &Edge) {}

    /// The object is being destroyed.
    fn released(&mut self) {}

    /// After [`Element::released`]: the token that the work still stopping this element's
    /// media holds (see [`Stopping`]); `None` when nothing goes on after the release.
    fn stopping(&self) -> Option<Stopping> {
        None
    }

    /// Whether media passes through this element unchanged (PassThrough): the engine then
    /// reports media connections across it, from the element feeding it to the ones it feeds.
    fn is_transparent(&self) -> bool {
        false
    }

    /// Whether the element sends media of its own that output settings (forced formats) can
    /// act on: not a PassThrough (it forwards what feeds it) nor an element that only
    /// receives (RecorderEndpoint).
    fn has_output(&self) -> bool {
        !self.is_transparent()
    }

    /// Media of `edge.media_type` now flows from `edge.source` to `edge.sink`, directly or
    /// across transparent elements. Called on both ends.
    fn media_connected(&mut self, _cx: &mut ElementCx<'_>, _edge: &Edge) {}

    /// The media flow reported by `media_connected` ended.
    fn media_disconnected(&mut self, _cx: &mut ElementCx<'_>, _edge: &Edge) {}
}

/// What a factory gets to build an element.
pub struct FactoryCx<'a> {
    /// The new object's id.
    pub id: &'a str,
    /// Its pipeline's id (`None` for a MediaPipeline).
    pub pipeline: Option<&'a str>,
    /// Constructor parameters, checked against the model, defaults applied.
    pub params: &'a Map<String, Value>,
    /// The constructor parameters as the client sent them (before defaults): tells a value
    /// asked for from a default.
    pub given: &'a Map<String, Value>,
}

/// Creates elements of one class.
pub trait Factory: Send {
    /// Builds the element's behaviour.
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError>;
}

/// An element with no behaviour of its own beyond the engine's bookkeeping (MediaPipeline,
/// and classes whose media plane is handled elsewhere).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMedia;

impl Element for NoMedia {}

/// PassThrough: media goes through unchanged, so the engine connects what feeds it to what
/// it feeds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Transparent;

impl Element for Transparent {
    fn is_transparent(&self) -> bool {
        true
    }
}

impl<F> Factory for F
where
    F: Fn(&FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> + Send,
{
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        self(cx)
    }
}
