//! An HttpPostEndpoint's URL and uploads as the HTTP listener sees them, over its pipeline
//! in the server's process or in a media worker ([`Feed`]):
//!
//! * one upload at a time: a POST while another is in progress gets 409;
//! * the session, as KMS's HttpEndpoint has it: the first POST raises MediaSessionStarted;
//!   when a POST's connection ends (its body complete or not) and no new POST comes within the
//!   element's `disconnectionTimeout` (seconds), the URL expires: the path is removed (a POST
//!   to it gets 404), getUrl answers "", MediaSessionTerminated is raised, and a stream whose
//!   body was cut off ends there (its EndOfStream). A POST within the timeout goes on with the
//!   same element (after a lost connection, feeding the same stream, as a reconnection);
//! * else the path is the element's until its release, which removes it.

use super::PostStatus;
use crate::Media;
use fluo_api::KurentoError;
use fluo_core::http::{HttpRefusal, HttpRoutes, PostTarget, Route, Upload, UploadCut, UploadReply};
use fluo_core::{EventSink, MediaEvent};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One step of an upload, for the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// A POST begins (the pipeline is built unless it still runs).
    Begin,
    /// The body's next bytes (empty: only the status).
    Data(Vec<u8>),
    /// The body ended.
    End,
    /// The upload is refused: the pipeline stops, the element raises an Error event.
    Abort(String),
}

/// The answer to a step.
pub(crate) type StepReply = Box<dyn FnOnce(Result<PostStatus, KurentoError>) + Send>;

/// The element's pipeline, wherever it runs.
pub(crate) trait Feed: Send + Sync + 'static {
    /// Does `step`; `done` gets the pipeline's status after it.
    fn step(&self, step: Step, done: StepReply);
}

#[derive(Default)]
struct State {
    busy: bool,
    started: bool,
    released: bool,
    /// Counts uploads: a disconnection timer fires only if none began since it was set.
    generation: u64,
    /// The last upload's body was cut off: its stream is still open.
    open: bool,
    /// No POST came within the disconnection timeout: the URL is gone.
    expired: bool,
    /// The disconnection timer running, if any (one at a time: a new one replaces it).
    timer: Option<Timer>,
}

/// A disconnection timer; dropping it cancels it. It holds its endpoint weakly: a released
/// element's endpoint goes at once, not when a long timeout ends.
enum Timer {
    /// On the listener's runtime.
    Task(tokio::task::AbortHandle),
    /// Without a runtime: a thread that waits on this channel (dropped: it returns).
    Thread {
        _cancel: std::sync::mpsc::Sender<()>,
    },
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Timer::Task(h) = self {
            h.abort();
        }
    }
}

/// An HttpPostEndpoint's URL, session and uploads.
pub(crate) struct Endpoint {
    id: String,
    path: String,
    url: String,
    feed: Arc<dyn Feed>,
    events: EventSink,
    routes: Arc<HttpRoutes>,
    timeout: Duration,
    state: Mutex<State>,
}

impl Endpoint {
    /// Registers element `id`'s path on the listener reached at `base`.
    pub(crate) fn register(
        media: &Media,
        id: &str,
        feed: Arc<dyn Feed>,
        base: String,
        timeout: Duration,
    ) -> Arc<Endpoint> {
        Endpoint::on(
            media.http.clone(),
            media.events.clone(),
            id,
            feed,
            (base, timeout),
        )
    }

    /// [`Endpoint::register`] on `routes`, raising events into `events`.
    fn on(
        routes: Arc<HttpRoutes>,
        events: EventSink,
        id: &str,
        feed: Arc<dyn Feed>,
        (base, timeout): (String, Duration),
    ) -> Arc<Endpoint> {
        Arc::new_cyclic(|weak: &std::sync::Weak<Endpoint>| {
            let target = Target(weak.clone());
            let path = routes.add(super::FEATURE, Route::Upload(Arc::new(target)));
            tracing::info!(%id, %path, "HttpPostEndpoint registered");
            Endpoint {
                id: id.to_string(),
                url: format!("{base}{path}"),
                path,
                feed,
                events,
                routes,
                timeout,
                state: Mutex::new(State::default()),
            }
        })
    }

    /// The URL clients POST to: "" once it expired (as KMS's getUrl answers then).
    pub(crate) fn url(&self) -> String {
        if self.lock().expired {
            return String::new();
        }
        self.url.clone()
    }

    /// The element is released: its path goes, and its timer.
    pub(crate) fn release(&self) {
        let timer = {
            let mut s = self.lock();
            s.released = true;
            s.timer.take()
        };
        drop(timer);
        self.routes.remove(&self.path);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(self: &Arc<Self>) -> Result<Box<dyn Upload>, HttpRefusal> {
        let started = {
            let mut s = self.lock();
            if s.released || s.expired {
                return Err(HttpRefusal::new(404, "no HttpPostEndpoint at this URL"));
            }
            if s.busy {
                return Err(HttpRefusal::new(
                    409,
                    "an upload to this HttpPostEndpoint is in progress: one POST at a time",
                ));
            }
            s.busy = true;
            s.generation += 1;
            !std::mem::replace(&mut s.started, true)
        };
        if started {
            (self.events)(&self.id, MediaEvent::MediaSession { started: true });
        }
        Ok(Box::new(PostUpload {
            ep: self.clone(),
            begun: false,
            over: None,
        }))
    }

    /// An upload's connection is over (`open`: its body was cut off): the disconnection
    /// timer starts.
    fn ended(self: &Arc<Self>, open: bool) {
        let generation = {
            let mut s = self.lock();
            s.busy = false;
            s.open = open;
            s.generation
        };
        let ep = Arc::downgrade(self);
        let fire = move || {
            if let Some(ep) = ep.upgrade() {
                ep.expire(generation);
            }
        };
        let wait = self.timeout;
        let timer = match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                let task = h.spawn(async move {
                    tokio::time::sleep(wait).await;
                    fire();
                });
                Some(Timer::Task(task.abort_handle()))
            }
            Err(_) => {
                let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
                let spawned = std::thread::Builder::new()
                    .name("fluo-http-post-timer".into())
                    .spawn(move || {
                        let r = cancelled.recv_timeout(wait);
                        if r == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                            fire();
                        }
                    });
                spawned.ok().map(|_| Timer::Thread { _cancel: cancel })
            }
        };
        // The one before (if any) is cancelled, outside the lock.
        let before = std::mem::replace(&mut self.lock().timer, timer);
        drop(before);
    }

    /// The disconnection timeout of upload `generation` passed: the URL expires.
    fn expire(&self, generation: u64) {
        let open = {
            let mut s = self.lock();
            if s.generation != generation || s.busy || !s.started || s.released {
                return;
            }
            s.started = false;
            s.expired = true;
            // This timer: done (dropped here, its task or thread ends on its own).
            s.timer = None;
            std::mem::take(&mut s.open)
        };
        self.routes.remove(&self.path);
        tracing::info!(id = %self.id, "HttpPostEndpoint: no POST within the disconnection timeout: its URL expired, the session ends");
        if open {
            // The stream whose body was cut off ends with what came.
            self.feed.step(Step::End, Box::new(|_| {}));
        }
        (self.events)(&self.id, MediaEvent::MediaSession { started: false });
    }
}

/// The listener's handle on the element (weak: the element owns its endpoint).
struct Target(std::sync::Weak<Endpoint>);

impl PostTarget for Target {
    fn begin(&self) -> Result<Box<dyn Upload>, HttpRefusal> {
        match self.0.upgrade() {
            Some(ep) => ep.begin(),
            None => Err(HttpRefusal::new(404, "no HttpPostEndpoint at this URL")),
        }
    }
}

/// One POST.
struct PostUpload {
    ep: Arc<Endpoint>,
    /// The pipeline was told a POST began.
    begun: bool,
    /// How it ended (`Some(open)`), once it did.
    over: Option<bool>,
}

fn reply(done: UploadReply) -> StepReply {
    Box::new(move |r: Result<PostStatus, KurentoError>| {
        done(match r {
            Ok(s) => s.state(),
            Err(e) => Err(HttpRefusal::new(500, e.message)),
        })
    })
}

impl PostUpload {
    fn step(&mut self, step: Step, done: UploadReply) {
        if self.begun {
            return self.ep.feed.step(step, reply(done));
        }
        self.begun = true;
        let feed = self.ep.feed.clone();
        self.ep.feed.step(
            Step::Begin,
            Box::new(move |r| match r {
                Ok(s) if s.failed.is_none() => feed.step(step, reply(done)),
                other => reply(done)(other),
            }),
        );
    }
}

impl Upload for PostUpload {
    fn push(&mut self, bytes: Vec<u8>, done: UploadReply) {
        self.step(Step::Data(bytes), done);
    }

    fn finish(&mut self, done: UploadReply) {
        self.over = Some(false);
        self.step(Step::End, done);
    }

    fn cut(&mut self, why: UploadCut) {
        match why {
            UploadCut::Lost => self.over = Some(true),
            UploadCut::Failed => self.over = Some(false),
            UploadCut::Refused(text) => {
                self.over = Some(false);
                if self.begun {
                    self.ep.feed.step(Step::Abort(text), Box::new(|_| {}));
                } else {
                    (self.ep.events)(
                        &self.ep.id,
                        crate::error_event(fluo_core::MediaError::HttpPost, text),
                    );
                }
            }
        }
    }
}

impl Drop for PostUpload {
    fn drop(&mut self) {
        // A connection that went without a word: its stream stays open for a reconnection.
        let open = self.over.unwrap_or(self.begun);
        self.ep.ended(open);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Steps(Mutex<Vec<Step>>);

    impl Feed for Steps {
        fn step(&self, step: Step, done: StepReply) {
            self.0.lock().unwrap().push(step);
            done(Ok(PostStatus::default()));
        }
    }

    type Seen = Arc<Mutex<Vec<MediaEvent>>>;

    fn endpoint(timeout_ms: u64) -> (Arc<HttpRoutes>, Arc<Endpoint>, Arc<Steps>, Seen) {
        let routes = Arc::new(HttpRoutes::new());
        let seen: Seen = Arc::default();
        let sink = seen.clone();
        let events: EventSink = Arc::new(move |_: &str, ev| sink.lock().unwrap().push(ev));
        let steps = Arc::new(Steps::default());
        let ep = Endpoint::on(
            routes.clone(),
            events,
            "ep",
            steps.clone(),
            ("http://h:1".into(), Duration::from_millis(timeout_ms)),
        );
        (routes, ep, steps, seen)
    }

    fn post(routes: &HttpRoutes, ep: &Endpoint) -> Result<Box<dyn Upload>, HttpRefusal> {
        let path = ep.url.strip_prefix("http://h:1").unwrap();
        match routes.find(path) {
            Some(Route::Upload(t)) => t.begin(),
            _ => Err(HttpRefusal::new(404, "no route")),
        }
    }

    fn session(seen: &Seen) -> Vec<bool> {
        let evs = seen.lock().unwrap();
        evs.iter()
            .filter_map(|e| match e {
                MediaEvent::MediaSession { started } => Some(*started),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn one_post_at_a_time_and_the_session_ends_after_the_timeout() {
        let (routes, ep, steps, seen) = endpoint(100);
        assert!(ep.url().starts_with("http://h:1/post/"), "{}", ep.url());
        let mut up = post(&routes, &ep).expect("the first POST");
        assert_eq!(post(&routes, &ep).err().map(|r| r.status), Some(409));
        up.push(b"abc".to_vec(), Box::new(|r| assert!(r.is_ok())));
        up.finish(Box::new(|r| assert!(r.is_ok())));
        drop(up);
        assert_eq!(
            *steps.0.lock().unwrap(),
            vec![Step::Begin, Step::Data(b"abc".to_vec()), Step::End]
        );
        assert_eq!(session(&seen), vec![true]);
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(session(&seen), vec![true, false], "terminated after 100 ms");
        assert_eq!(
            steps.0.lock().unwrap().len(),
            3,
            "a finished body is not ended again"
        );
        // The URL expired with the session, as in KMS: gone from the listener, getUrl "".
        assert!(routes.is_empty());
        assert_eq!(ep.url(), "");
        assert_eq!(post(&routes, &ep).err().map(|r| r.status), Some(404));
        let late = Target(Arc::downgrade(&ep)).begin();
        assert_eq!(
            late.err().map(|r| r.status),
            Some(404),
            "a POST already routed"
        );
        assert_eq!(session(&seen), vec![true, false], "no new session");
    }

    #[test]
    fn a_lost_connection_waits_for_a_reconnection_then_ends_its_stream() {
        let (routes, ep, steps, seen) = endpoint(1000);
        let mut up = post(&routes, &ep).unwrap();
        up.push(b"a".to_vec(), Box::new(|_| {}));
        up.cut(UploadCut::Lost);
        drop(up);
        // Back within the timeout: the same session, no end of stream.
        std::thread::sleep(Duration::from_millis(50));
        let mut again = post(&routes, &ep).expect("the reconnection");
        again.push(b"b".to_vec(), Box::new(|_| {}));
        drop(again);
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(
            session(&seen),
            vec![true],
            "no new session within the timeout"
        );
        assert!(!steps.0.lock().unwrap().contains(&Step::End));
        assert!(ep.url().starts_with("http://h:1/post/"));
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(session(&seen), vec![true, false]);
        assert_eq!((routes.len(), ep.url()), (0, String::new()));
        assert_eq!(
            steps.0.lock().unwrap().last(),
            Some(&Step::End),
            "the cut stream ends"
        );
    }

    #[test]
    fn a_released_endpoint_goes_at_once_and_runs_one_timer_at_a_time() {
        // Without a runtime (a timer thread): released during a long timeout, the endpoint
        // is freed at once.
        let (routes, ep, _, _) = endpoint(3_600_000);
        drop(post(&routes, &ep).unwrap());
        ep.release();
        let weak = Arc::downgrade(&ep);
        drop(ep);
        assert!(weak.upgrade().is_none(), "no timer holds the endpoint");

        // On a runtime: each ended upload replaces the timer before; the release ends it.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let alive = || {
                let m = tokio::runtime::Handle::current().metrics();
                m.num_alive_tasks()
            };
            let (routes, ep, _, _) = endpoint(3_600_000);
            for _ in 0..3 {
                drop(post(&routes, &ep).unwrap());
            }
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert_eq!(alive(), 1, "one disconnection timer");
            ep.release();
            let weak = Arc::downgrade(&ep);
            drop(ep);
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert_eq!(alive(), 0, "the release ended it");
            assert!(weak.upgrade().is_none());
        });
    }

    #[test]
    fn a_refused_upload_raises_an_error_and_release_frees_the_path() {
        let (routes, ep, steps, seen) = endpoint(60_000);
        let mut up = post(&routes, &ep).unwrap();
        up.cut(UploadCut::Refused("too big".into()));
        drop(up);
        let errors = seen
            .lock()
            .unwrap()
            .iter()
            .filter(
                |e| matches!(e, MediaEvent::Error { description, .. } if description == "too big"),
            )
            .count();
        assert_eq!(
            errors, 1,
            "an upload refused before any byte: the element's Error event"
        );
        let mut up = post(&routes, &ep).unwrap();
        up.push(b"x".to_vec(), Box::new(|_| {}));
        up.cut(UploadCut::Refused("stalled".into()));
        drop(up);
        assert_eq!(
            steps.0.lock().unwrap().last(),
            Some(&Step::Abort("stalled".into()))
        );
        assert_eq!(routes.len(), 1);
        ep.release();
        assert!(routes.is_empty(), "the release removes the path");
        assert_eq!(post(&routes, &ep).err().map(|r| r.status), Some(404));
    }
}
