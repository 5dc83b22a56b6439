//! The element in the server of a job in a media worker, shared by every kind: the engine's
//! [`Element`] whose class-specific requests go to its [`Face`], and whose routing, release and
//! stopping token are the same for every kind (`Proxied`).

use super::Remote;
use crate::Media;
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{Edge, Element, ElementCx, StatsQuery, Stopping};
use fluo_worker::wire;
use serde_json::{json, Map, Value};

/// What every proxy has: the element's id, its job, the media plane.
pub(crate) struct Proxy {
    /// The element's id.
    pub id: String,
    /// Its job.
    pub remote: Remote,
    /// The media plane (the router, output settings).
    pub media: Media,
}

impl Proxy {
    /// A synchronous read of the job (property getters), `Null` when it cannot answer.
    pub(crate) fn read(&self, method: &str, read: Reader) -> Value {
        self.remote
            .call_waiting(method, Vec::new())
            .and_then(|b| read(&b))
            .unwrap_or_else(|e| {
                tracing::debug!(id = %self.id, "{method}: {e}");
                Value::Null
            })
    }
}

/// Reads a job's reply as the Kurento answer.
pub(crate) type Reader = fn(&[u8]) -> Result<Value, KurentoError>;

/// A reply that carries nothing.
pub(crate) fn nothing(_: &[u8]) -> Result<Value, KurentoError> {
    Ok(Value::Null)
}

/// The error for a reply that does not decode (a worker is untrusted).
pub(crate) fn bad_reply(e: impl std::fmt::Display) -> KurentoError {
    KurentoError::new(
        ErrorCode::UnexpectedError,
        format!("The media worker answered something unreadable: {e}"),
    )
}

/// A job's DOT graph, cleaned as the server's own.
pub(crate) fn dot(b: &[u8]) -> Result<Value, KurentoError> {
    let d: String = wire::decode(b).map_err(bad_reply)?;
    Ok(json!(crate::dot::without_secrets(&d)))
}

/// What a kind of element adds to the shared proxy: its methods and properties (the engine's
/// [`Element`] hooks of the same names, with the proxy at hand).
pub(crate) trait Face: Send + 'static {
    /// [`Element::has_output`].
    fn has_output(&self) -> bool {
        true
    }

    /// [`Element::stats`].
    fn stats(&mut self, _p: &Proxy, _q: &StatsQuery<'_>) -> Option<Map<String, Value>> {
        None
    }

    /// [`Element::invoke`].
    fn invoke(
        &mut self,
        _p: &Proxy,
        _cx: &mut ElementCx<'_>,
        _method: &str,
        _params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        None
    }

    /// [`Element::get_property`].
    fn get_property(&self, _p: &Proxy, _name: &str) -> Option<Value> {
        None
    }

    /// [`Element::read_property`].
    fn read_property(
        &mut self,
        _p: &Proxy,
        _cx: &mut ElementCx<'_>,
        _name: &str,
    ) -> Option<Result<Value, KurentoError>> {
        None
    }

    /// After the shared [`Element::media_connected`] (the routing).
    fn media_connected(&mut self, _p: &Proxy, _edge: &Edge) {}

    /// Before the shared [`Element::released`] (the job's release).
    fn released(&mut self, _p: &Proxy) {}

    /// [`Element::property_set`].
    fn property_set(
        &mut self,
        _p: &Proxy,
        _cx: &mut ElementCx<'_>,
        _name: &str,
        _value: &Value,
    ) -> Result<(), KurentoError> {
        Ok(())
    }
}

/// An element whose job runs in a media worker: the shared [`Proxy`] and its kind's [`Face`].
pub(crate) struct Proxied<F> {
    proxy: Proxy,
    face: F,
    /// Held until the job answered its release (see `Remote::release`).
    stopping: Option<Stopping>,
}

impl<F: Face> Proxied<F> {
    /// The element of `face` whose job is `remote`.
    pub(crate) fn boxed(id: &str, remote: Remote, media: &Media, face: F) -> Box<dyn Element> {
        Box::new(Proxied {
            proxy: Proxy {
                id: id.to_string(),
                remote,
                media: media.clone(),
            },
            face,
            stopping: None,
        })
    }
}

impl<F: Face> Element for Proxied<F> {
    fn invoke(
        &mut self,
        cx: &mut ElementCx<'_>,
        method: &str,
        params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        self.face.invoke(&self.proxy, cx, method, params)
    }

    fn get_property(&self, name: &str) -> Option<Value> {
        self.face.get_property(&self.proxy, name)
    }

    fn read_property(
        &mut self,
        cx: &mut ElementCx<'_>,
        name: &str,
    ) -> Option<Result<Value, KurentoError>> {
        self.face.read_property(&self.proxy, cx, name)
    }

    fn property_set(
        &mut self,
        cx: &mut ElementCx<'_>,
        name: &str,
        value: &Value,
    ) -> Result<(), KurentoError> {
        self.face.property_set(&self.proxy, cx, name, value)
    }

    fn stats(&mut self, q: &StatsQuery<'_>) -> Option<Map<String, Value>> {
        self.face.stats(&self.proxy, q)
    }

    fn has_output(&self) -> bool {
        self.face.has_output()
    }

    fn worker(&self) -> Option<usize> {
        self.proxy.remote.worker()
    }

    fn media_connected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        let p = &self.proxy;
        p.media.route(p.remote.key(), &p.id, edge, true);
        self.face.media_connected(p, edge);
    }

    fn media_disconnected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        let p = &self.proxy;
        p.media.route(p.remote.key(), &p.id, edge, false);
    }

    fn released(&mut self) {
        self.face.released(&self.proxy);
        self.stopping = Some(self.proxy.remote.release());
    }

    fn stopping(&self) -> Option<Stopping> {
        self.stopping.clone()
    }
}
