//! Fluo's own HTTP listener as the elements see it: one table of routes, a path per
//! element, each route of a feature (the uploads of HttpPostEndpoint, WHIP and WHEP
//! endpoints). The listener (fluo-server) reads requests, parses them with [`request`] and
//! looks their path up here; an element registers its path at create and removes it at
//! release. IO-free: the listener drives an upload through callbacks.

pub mod request;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// An HTTP error answer: its status and a one-line text for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRefusal {
    /// The status code (409, 413, 415 ...).
    pub status: u16,
    /// What went wrong, for the response body (no addresses, no dumps).
    pub text: String,
}

impl HttpRefusal {
    /// A refusal with `status` saying `text`.
    pub fn new(status: u16, text: impl Into<String>) -> HttpRefusal {
        HttpRefusal {
            status,
            text: text.into(),
        }
    }
}

/// Where an upload stands after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UploadState {
    /// Bytes received and not yet taken by the demuxer (the listener stops reading the body
    /// while this is high: memory stays bounded).
    pub queued: u64,
    /// The media ended (after the body's end: the last of it went through).
    pub ended: bool,
}

/// The answer to an upload's step.
pub type UploadReply = Box<dyn FnOnce(Result<UploadState, HttpRefusal>) + Send>;

/// Why an upload stopped before its body ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadCut {
    /// The connection closed (the client may come back within the disconnection timeout).
    Lost,
    /// The listener refused the rest (too big, the client stopped sending): the element
    /// raises an Error event saying this.
    Refused(String),
    /// The element's pipeline failed (its Error event said why; the listener answered it).
    Failed,
}

/// One POST's body on its way to an element.
pub trait Upload: Send {
    /// Hands the next bytes of the body (empty: only asks where the upload stands).
    fn push(&mut self, bytes: Vec<u8>, done: UploadReply);
    /// The body ended: the media ends once what was received has gone through. `done`
    /// answers at once; the listener asks again (empty pushes) until `ended`.
    fn finish(&mut self, done: UploadReply);
    /// The body stopped before its end.
    fn cut(&mut self, why: UploadCut);
}

/// An element that takes POSTed media.
pub trait PostTarget: Send + Sync {
    /// A POST to the element's path begins (409 when another one is in progress).
    fn begin(&self) -> Result<Box<dyn Upload>, HttpRefusal>;
}

/// What a path leads to.
#[derive(Clone)]
pub enum Route {
    /// An element that takes POSTed media (HttpPostEndpoint).
    Upload(Arc<dyn PostTarget>),
    /// A WebRtcEndpoint reached by WHIP or WHEP (see [`crate::whip`]).
    Signal(Arc<crate::whip::SignalTarget>),
}

/// The listener's routes, and the URL it is reached at.
#[derive(Default)]
pub struct HttpRoutes {
    /// `http(s)://host:port`, set once the listener is bound; `None`: no listener.
    base: OnceLock<String>,
    routes: Mutex<HashMap<String, Route>>,
}

impl HttpRoutes {
    /// An empty table with no listener yet.
    pub fn new() -> HttpRoutes {
        HttpRoutes::default()
    }

    /// The listener is bound: URLs start with `base` (`http://host:port`).
    pub fn set_base(&self, base: String) {
        let _ = self.base.set(base);
    }

    /// The listener's URL, when it runs.
    pub fn base(&self) -> Option<&str> {
        self.base.get().map(String::as_str)
    }

    /// Adds `route` at a new unguessable path under `/<feature>/` (a random UUID: 122 bits);
    /// returns the path.
    pub fn add(&self, feature: &str, route: Route) -> String {
        let path = format!("/{feature}/{}", uuid::Uuid::new_v4());
        self.lock().insert(path.clone(), route);
        path
    }

    /// Removes the route at `path` (an element's release).
    pub fn remove(&self, path: &str) {
        self.lock().remove(path);
    }

    /// The route at `path`.
    pub fn find(&self, path: &str) -> Option<Route> {
        self.lock().get(path).cloned()
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Route>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl PostTarget for Nothing {
        fn begin(&self) -> Result<Box<dyn Upload>, HttpRefusal> {
            Err(HttpRefusal::new(409, "busy"))
        }
    }

    #[test]
    fn paths_are_unguessable_and_released() {
        let r = HttpRoutes::new();
        let a = r.add("post", Route::Upload(Arc::new(Nothing)));
        let b = r.add("post", Route::Upload(Arc::new(Nothing)));
        assert_ne!(a, b);
        assert!(
            a.starts_with("/post/") && a.len() == "/post/".len() + 36,
            "{a}"
        );
        assert!(r.find(&a).is_some());
        r.remove(&a);
        assert!(r.find(&a).is_none() && r.find(&b).is_some());
        assert_eq!(r.len(), 1);
    }
}
