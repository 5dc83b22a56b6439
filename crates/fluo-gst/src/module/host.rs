//! Where a module's instance lives ([`Slot`]): its calls made one at a time, each inside
//! `fluo_core::panics::contain`, so that a module that panics stops its own element only (an Error event,
//! no more frames, errors for its methods) while the server and other elements go on; and
//! the [`fluo_module::Host`] it is given (events, Error events within the element's limit
//! ([`super::limit`]), image loads through the URI allow-list on a loader thread of its own).

use super::limit::{ErrorLimit, Verdict, BURST, PER_SECOND};
use crate::uri::{self, UriPolicy};
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::panics::contain;
use fluo_core::{EventSink, MediaError, MediaEvent};
use fluo_module::{Host, Image, Instance, Map, Module, Value, VideoFrame};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

/// A load for the loader thread: request number, URI (checked), whether redirects are
/// refused.
type Load = (u64, String, bool);

/// What an element's instance needs around it.
pub(crate) struct Who {
    /// The element's id (a job's own id in a worker).
    pub id: String,
    /// Its class, for logs and Error events.
    pub class: &'static str,
    /// The events its class declares.
    pub events: Vec<String>,
    /// Where its events go.
    pub sink: EventSink,
    /// The URI allow-list its images pass.
    pub uris: Arc<UriPolicy>,
}

struct State {
    instance: Option<Box<dyn Instance>>,
    /// Set once the module panicked or stopped: no call reaches it again.
    dead: bool,
    /// What ended it, for the errors its methods answer then.
    ended: &'static str,
    next_load: u64,
    loads: Option<mpsc::Sender<Load>>,
    /// The limit on its Error events (`Host::error`).
    errors: ErrorLimit,
}

/// A module element's instance, shared by its element (methods), its pipelines (frames) and
/// its loader thread (images).
pub(crate) struct Slot {
    who: Who,
    state: Mutex<State>,
    me: Weak<Slot>,
}

impl Drop for Slot {
    /// The instance goes inside `contain` too: a module whose drop panics must not end the
    /// process (the drop runs on whichever thread lets the slot go last).
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let dropped = state.errors.unlogged();
        if dropped > 0 {
            tracing::warn!(id = %self.who.id, "{}: {dropped} more Error events of the module dropped (over its limit)", self.who.class);
        }
        if let Some(instance) = state.instance.take() {
            if contain(move || drop(instance)).is_err() {
                tracing::warn!(id = %self.who.id, "{}: the module panicked when its element went", self.who.class);
            }
        }
    }
}

/// The most an event of a module may carry (its fields as JSON text), in both modes (the
/// server reads no larger one from a worker).
const MAX_EVENT_BYTES: usize = crate::jobs::MAX_MODULE_EVENT_BYTES;

/// Field names every Kurento event has, which the host fills: a module's are dropped.
const BASE_FIELDS: [&str; 4] = ["type", "source", "timestampMillis", "tags"];

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let text = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    fluo_api::text::foreign(text)
}

impl Slot {
    /// Makes the instance of `who.class` with `module` (its constructor parameters checked
    /// by the engine); the module's error, or its panic as 40003, answers create.
    pub(crate) fn create(
        module: &dyn Module,
        who: Who,
        params: &Map<String, Value>,
    ) -> Result<Arc<Slot>, KurentoError> {
        let slot = Arc::new_cyclic(|me| Slot {
            who,
            state: Mutex::new(State {
                instance: None,
                dead: false,
                ended: "",
                next_load: 0,
                loads: None,
                errors: ErrorLimit::new(Instant::now()),
            }),
            me: me.clone(),
        });
        {
            let mut st = slot.lock();
            let made = {
                let mut host = SlotHost {
                    slot: &slot,
                    state: &mut st,
                };
                let class = slot.who.class;
                contain(|| module.create(&mut host, class, params))
            };
            match made {
                Ok(Ok(instance)) => st.instance = Some(instance),
                Ok(Err(e)) => return Err(e),
                Err(p) => {
                    return Err(KurentoError::new(
                        ErrorCode::UnexpectedError,
                        format!(
                            "{}: the module panicked: {}",
                            slot.who.class,
                            panic_text(&*p)
                        ),
                    ))
                }
            }
        }
        Ok(slot)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the instance (not after a panic); a panic now, or the instance saying it
    /// stopped ([`Instance::stopped`]: a WebAssembly module's trap or broken limit), ends the
    /// instance and raises the element's Error event. `None` when it did not run or ended.
    fn run<R>(
        &self,
        what: &str,
        f: impl FnOnce(&mut dyn Instance, &mut dyn Host) -> R,
    ) -> Option<R> {
        let mut st = self.lock();
        if st.dead {
            return None;
        }
        let mut instance = st.instance.take()?;
        let outcome = {
            let mut host = SlotHost {
                slot: self,
                state: &mut st,
            };
            contain(|| {
                let r = f(&mut *instance, &mut host);
                (r, instance.stopped())
            })
        };
        let class = self.who.class;
        let (ended, description) = match outcome {
            Ok((r, None)) => {
                st.instance = Some(instance);
                return Some(r);
            }
            Ok((_, Some(reason))) => {
                tracing::warn!(id = %self.who.id, "{class}: the module stopped in {what}: {reason}; its media stops");
                ("a trap or a broken limit", format!("{class}: the module stopped in {what} ({reason}); the element's media stopped"))
            }
            Err(p) => {
                let text = panic_text(&*p);
                tracing::warn!(id = %self.who.id, "{class}: the module panicked in {what}: {text}; its media stops");
                ("a panic", format!("{class}: the module panicked in {what} ({text}); the element's media stopped"))
            }
        };
        st.dead = true;
        st.ended = ended;
        st.loads = None;
        drop(st);
        // Dropping a panicked instance may panic again: caught too.
        let _ = contain(move || drop(instance));
        (self.who.sink)(
            &self.who.id,
            crate::error_event(MediaError::Filter, description),
        );
        None
    }

    fn stopped_text(&self) -> String {
        format!(
            "{}: the module stopped after {}",
            self.who.class,
            self.lock().ended
        )
    }

    /// A method call.
    pub(crate) fn invoke(
        &self,
        method: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, KurentoError> {
        self.run(method, |i, h| i.invoke(h, method, params))
            .unwrap_or_else(|| {
                Err(KurentoError::new(
                    ErrorCode::UnexpectedError,
                    self.stopped_text(),
                ))
            })
    }

    /// A property set (its value kept by the engine when this answers `Ok`).
    pub(crate) fn property_set(&self, name: &str, value: &Value) -> Result<(), KurentoError> {
        let what = format!("set of {name}");
        self.run(&what, |i, h| i.property_set(h, name, value))
            .unwrap_or_else(|| {
                Err(KurentoError::new(
                    ErrorCode::UnexpectedError,
                    self.stopped_text(),
                ))
            })
    }

    /// One frame; `false`: drop it (the module panicked, now or before).
    pub(crate) fn process(&self, frame: &mut VideoFrame<'_>) -> bool {
        self.run("process", |i, h| i.process(h, frame)).is_some()
    }

    /// The pixel format the instance asked for.
    pub(crate) fn format(&self) -> fluo_module::PixelFormat {
        self.run("format", |i, _| i.format())
            .unwrap_or(fluo_module::PixelFormat::Rgba)
    }

    pub(crate) fn class(&self) -> &'static str {
        self.who.class
    }

    fn loaded(&self, request: u64, uri: &str, result: Result<Image, String>) {
        match result {
            Ok(img) => {
                tracing::info!(id = %self.who.id, %uri, width = img.width, height = img.height, "module image loaded");
                self.run("image", |i, h| i.image(h, request, img));
            }
            Err(e) => {
                let class = self.who.class;
                tracing::warn!(id = %self.who.id, %uri, "{class}: image not loaded: {e}");
                let description = format!("{class}: the image {uri} cannot be used: {e}");
                (self.who.sink)(
                    &self.who.id,
                    crate::error_event(MediaError::Filter, description),
                );
            }
        }
    }
}

/// The host an instance sees during one call (the slot's state is locked).
struct SlotHost<'a> {
    slot: &'a Slot,
    state: &'a mut State,
}

impl Host for SlotHost<'_> {
    fn emit(&mut self, event: &str, fields: Map<String, Value>) {
        let who = &self.slot.who;
        if !who.events.iter().any(|e| e == event) {
            tracing::warn!(id = %who.id, "{}: the module raised {event}, which its class does not declare: dropped", who.class);
            return;
        }
        let mut fields = fields;
        for f in BASE_FIELDS {
            fields.remove(f);
        }
        let fields = Value::Object(fields).to_string();
        if fields.len() > MAX_EVENT_BYTES {
            tracing::warn!(id = %who.id, "{}: the module raised {event} with {} bytes of fields (at most {MAX_EVENT_BYTES}): dropped", who.class, fields.len());
            return;
        }
        let ev = MediaEvent::Module {
            name: event.to_string(),
            fields,
        };
        (who.sink)(&who.id, ev);
    }

    fn load_image(&mut self, u: &str) -> Result<u64, KurentoError> {
        let who = &self.slot.who;
        let illegal = |m: String| KurentoError::illegal_param(format!("{}: {m}", who.class));
        let parsed = uri::parse(u, &["http", "https"]).map_err(|e| illegal(e.message))?;
        who.uris.check(&parsed).map_err(|e| illegal(e.message))?;
        self.state.next_load += 1;
        let request = self.state.next_load;
        let load = (request, parsed.gst_uri(), !who.uris.is_open());
        let tx = self
            .state
            .loads
            .get_or_insert_with(|| loader(self.slot.me.clone()));
        if tx.send(load).is_err() {
            return Err(KurentoError::new(
                ErrorCode::UnexpectedError,
                format!("{}: the image loader stopped", who.class),
            ));
        }
        Ok(request)
    }

    fn error(&mut self, description: &str) {
        let who = &self.slot.who;
        match self.state.errors.check(Instant::now()) {
            Verdict::Raise => {}
            Verdict::Drop => return,
            Verdict::DropAndLog(n) => {
                tracing::warn!(id = %who.id, "{}: {n} Error events of the module dropped: over its limit of {BURST} at once, then {PER_SECOND} a second", who.class);
                return;
            }
        }
        // Without addresses or dumps, at most 300 characters.
        let text = fluo_api::text::foreign(description);
        tracing::warn!(id = %who.id, "{}: the module raised an error: {text}", who.class);
        let description = format!("{}: {text}", who.class);
        (who.sink)(&who.id, crate::error_event(MediaError::Filter, description));
    }
}

/// A slot's loader thread: loads its images one after the other, away from the media and
/// the engine; ends with the slot.
fn loader(slot: Weak<Slot>) -> mpsc::Sender<Load> {
    let (tx, rx) = mpsc::channel::<Load>();
    let spawned = std::thread::Builder::new()
        .name("fluo-module-load".into())
        .spawn(move || {
            for (request, u, guarded) in rx {
                if slot.strong_count() == 0 {
                    return;
                }
                let result = uri::parse(&u, &["http", "https"])
                    .map_err(|e| e.message)
                    .and_then(|p| crate::overlay::load::load(&p, guarded))
                    .map(|img| Image {
                        width: img.width,
                        height: img.height,
                        rgba: img.data,
                    });
                match slot.upgrade() {
                    Some(s) => s.loaded(request, &u, result),
                    None => return,
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no module loader thread: {e}");
    }
    tx
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluo_module::PixelFormat;

    /// A module whose instance does what its method's name says.
    struct Acts {
        panic_at_create: bool,
    }

    impl Module for Acts {
        fn idl(&self) -> &str {
            "module acts 1.0.0"
        }
        fn create(
            &self,
            _: &mut dyn Host,
            _: &str,
            _: &Map<String, Value>,
        ) -> Result<Box<dyn Instance>, KurentoError> {
            assert!(!self.panic_at_create, "create panics");
            Ok(Box::new(Act { drop_panics: false }))
        }
    }

    struct Act {
        drop_panics: bool,
    }

    impl Drop for Act {
        fn drop(&mut self) {
            assert!(!self.drop_panics, "drop panics");
        }
    }

    impl Instance for Act {
        fn invoke(
            &mut self,
            host: &mut dyn Host,
            method: &str,
            params: &Map<String, Value>,
        ) -> Result<Value, KurentoError> {
            match method {
                "emit" => {
                    let name = params.get("name").and_then(Value::as_str).unwrap_or("");
                    host.emit(name, params.clone());
                    Ok(Value::Null)
                }
                "load" => {
                    let uri = params.get("uri").and_then(Value::as_str).unwrap_or("");
                    host.load_image(uri).map(Value::from)
                }
                "error" => {
                    host.error(params.get("text").and_then(Value::as_str).unwrap_or(""));
                    Ok(Value::Null)
                }
                "flood" => {
                    for i in 0..10_000 {
                        host.error(&format!("error {i}"));
                    }
                    Ok(Value::Null)
                }
                "panic" => panic!("invoke panics"),
                "arm" => {
                    self.drop_panics = true;
                    Ok(Value::Null)
                }
                _ => Ok(Value::from(method)),
            }
        }
        fn process(&mut self, _: &mut dyn Host, _: &mut VideoFrame<'_>) {}
    }

    type Seen = Arc<Mutex<Vec<MediaEvent>>>;

    fn slot(panic_at_create: bool, allow: &[&str]) -> (Result<Arc<Slot>, KurentoError>, Seen) {
        let seen: Seen = Arc::default();
        let sink = seen.clone();
        let who = Who {
            id: "e".into(),
            class: "Acts",
            events: vec!["Declared".into()],
            sink: Arc::new(move |_: &str, ev| sink.lock().unwrap().push(ev)),
            uris: Arc::new(UriPolicy::new(allow.iter().map(|s| s.to_string()))),
        };
        (
            Slot::create(&Acts { panic_at_create }, who, &Map::new()),
            seen,
        )
    }

    fn params(k: &str, v: &str) -> Map<String, Value> {
        Map::from_iter([(k.to_string(), Value::from(v))])
    }

    #[test]
    fn declared_events_are_raised_and_others_dropped() {
        let (s, seen) = slot(false, &[]);
        let s = s.expect("made");
        s.invoke("emit", &params("name", "Declared"))
            .expect("emits");
        s.invoke("emit", &params("name", "Error")).expect("emits");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        let MediaEvent::Module { name, fields } = &seen[0] else {
            panic!("{seen:?}");
        };
        assert_eq!(name, "Declared");
        assert_eq!(fields, r#"{"name":"Declared"}"#);
    }

    #[test]
    fn an_error_raises_an_error_event_and_the_instance_goes_on() {
        let (s, seen) = slot(false, &[]);
        let s = s.expect("made");
        s.invoke("error", &params("text", "no marker at 0x7ffd1234 in sight"))
            .expect("raised");
        assert_eq!(s.invoke("other", &Map::new()), Ok(Value::from("other")));
        let seen = seen.lock().unwrap();
        let [MediaEvent::Error { error, description }] = &seen[..] else {
            panic!("one Error event: {seen:?}");
        };
        assert_eq!(*error, MediaError::Filter);
        assert!(
            description.starts_with("Acts: no marker at "),
            "{description}"
        );
        assert!(
            !description.contains("0x7ffd"),
            "no addresses: {description}"
        );
    }

    #[test]
    fn errors_in_a_tight_loop_raise_a_burst_only() {
        let (s, seen) = slot(false, &[]);
        let s = s.expect("made");
        let t = Instant::now();
        s.invoke("flood", &Map::new()).expect("raised");
        let took = t.elapsed();
        let seen = seen.lock().unwrap();
        let texts: Vec<_> = seen
            .iter()
            .map(|e| match e {
                MediaEvent::Error { description, .. } => description.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        // The burst, and one more per 500 ms the loop took.
        let most = BURST as usize + (took.as_millis() / 500) as usize;
        assert!(
            texts.len() >= BURST as usize && texts.len() <= most,
            "{} of 10000 in {took:?}",
            texts.len()
        );
        assert_eq!(
            texts[..5],
            [
                "Acts: error 0",
                "Acts: error 1",
                "Acts: error 2",
                "Acts: error 3",
                "Acts: error 4"
            ]
        );
        drop(seen);
        assert_eq!(s.invoke("other", &Map::new()), Ok(Value::from("other")));
    }

    #[test]
    fn an_instance_whose_drop_panics_goes_quietly_with_its_slot() {
        let (s, _) = slot(false, &[]);
        let s = s.expect("made");
        s.invoke("arm", &Map::new()).expect("armed");
        drop(s);
    }

    #[test]
    fn events_lose_the_base_fields_and_oversized_ones_are_dropped() {
        let (s, seen) = slot(false, &[]);
        let s = s.expect("made");
        let mut p = params("name", "Declared");
        p.insert("type".into(), Value::from("Forged"));
        p.insert("source".into(), Value::from("other"));
        s.invoke("emit", &p).expect("emits");
        p.insert("big".into(), Value::from("x".repeat(MAX_EVENT_BYTES)));
        s.invoke("emit", &p).expect("emits");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "the oversized one dropped: {}", seen.len());
        let MediaEvent::Module { fields, .. } = &seen[0] else {
            panic!("{seen:?}");
        };
        assert_eq!(fields, r#"{"name":"Declared"}"#);
    }

    #[test]
    fn image_uris_pass_the_allow_list_and_a_missing_file_raises_an_error_event() {
        let dir = tempfile::tempdir().expect("dir");
        let allowed = format!("file://{}/", dir.path().display());
        let (s, seen) = slot(false, &[&allowed]);
        let s = s.expect("made");
        for uri in ["file:///etc/passwd", "not a uri", "ftp://127.0.0.1/x.png"] {
            let e = s.invoke("load", &params("uri", uri)).expect_err(uri);
            assert_eq!(
                e.code,
                ErrorCode::MediaObjectIllegalParamError,
                "{uri}: {e:?}"
            );
            assert!(e.message.starts_with("Acts: "), "{e:?}");
        }
        let missing = format!("{allowed}missing.png");
        assert_eq!(
            s.invoke("load", &params("uri", &missing)),
            Ok(Value::from(1))
        );
        let t0 = std::time::Instant::now();
        while seen.lock().unwrap().is_empty() && t0.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let seen = seen.lock().unwrap();
        let Some(MediaEvent::Error { description, .. }) = seen.first() else {
            panic!("no Error event: {seen:?}");
        };
        assert!(
            description.starts_with("Acts: the image file://")
                && description.ends_with("missing.png cannot be used: the file does not exist"),
            "{description}"
        );
    }

    #[test]
    fn a_panic_in_a_method_or_at_create_is_an_error_and_ends_the_instance() {
        let (made, _) = slot(true, &[]);
        let e = made.err().expect("refused");
        assert_eq!(e.code, ErrorCode::UnexpectedError);
        assert_eq!(e.message, "Acts: the module panicked: create panics");
        let (s, seen) = slot(false, &[]);
        let s = s.expect("made");
        assert_eq!(s.invoke("other", &Map::new()), Ok(Value::from("other")));
        let e = s.invoke("panic", &Map::new()).expect_err("panicked");
        assert_eq!(e.code, ErrorCode::UnexpectedError);
        let e = s.invoke("other", &Map::new()).expect_err("ended");
        assert_eq!(e.message, "Acts: the module stopped after a panic");
        assert_eq!(s.format(), PixelFormat::Rgba);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "one Error event: {seen:?}");
        assert!(
            matches!(&seen[0], MediaEvent::Error { description, .. }
                if description.starts_with("Acts: the module panicked in panic (invoke panics)")),
            "{seen:?}"
        );
    }
}
