//! Deferred replies: an element answers an invoke later (a recorder's stopAndWait) while
//! the engine serves everyone else; inside a transaction it cannot defer; a reply dropped
//! without an answer becomes an error, not a request that hangs.
mod common;

use common::H;
use fluo_api::KurentoError;
use fluo_core::{Completer, Element, ElementCx, FactoryCx};
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};

type Completions = Arc<Mutex<Vec<(u64, Result<Value, KurentoError>)>>>;

/// A RecorderEndpoint stand-in whose stopAndWait waits for the test.
struct Slow {
    waiting: Arc<Mutex<Vec<Completer>>>,
}

impl Element for Slow {
    fn invoke(
        &mut self,
        cx: &mut ElementCx<'_>,
        method: &str,
        _params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        (method == "stopAndWait").then(|| match cx.defer() {
            Some(c) => {
                self.waiting.lock().unwrap().push(c);
                Ok(Value::Null)
            }
            None => Ok(json!("inline")),
        })
    }
}

fn setup() -> (H, String, Arc<Mutex<Vec<Completer>>>, Completions) {
    let mut h = H::new();
    let done: Completions = Arc::default();
    let d = done.clone();
    h.e.set_completion_sink(Arc::new(move |t, o| d.lock().unwrap().push((t, o))));
    let waiting: Arc<Mutex<Vec<Completer>>> = Arc::default();
    let w = waiting.clone();
    h.e.register_factory(
        "RecorderEndpoint",
        Box::new(move |_: &FactoryCx<'_>| {
            Ok(Box::new(Slow { waiting: w.clone() }) as Box<dyn Element>)
        }),
    );
    let p = h.create(1, "MediaPipeline", None);
    let r = h.ok(
        1,
        "create",
        json!({"type": "RecorderEndpoint",
               "constructorParams": {"mediaPipeline": p, "uri": "file:///tmp/x.webm"}}),
    )["value"]
        .as_str()
        .unwrap()
        .to_string();
    (h, r, waiting, done)
}

fn stop_and_wait(id: u64, r: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"invoke",
           "params":{"object": r, "operation":"stopAndWait"}})
    .to_string()
}

#[test]
fn a_deferred_reply_comes_later_and_others_are_served_meanwhile() {
    let (mut h, r, waiting, done) = setup();
    assert!(
        h.raw(1, &stop_and_wait(100, &r)).is_empty(),
        "no answer yet"
    );
    assert_eq!(waiting.lock().unwrap().len(), 1);
    // Other requests, on this and another connection, are answered at once.
    h.open(2);
    assert_eq!(h.ok(2, "ping", json!({}))["value"], "pong");
    let name = h.invoke(1, &r, "getName", json!({}));
    assert!(name.is_string());
    // The element finishes: the answer goes to the right connection with the right id.
    waiting
        .lock()
        .unwrap()
        .pop()
        .unwrap()
        .complete(Ok(Value::Null));
    let (token, outcome) = done.lock().unwrap().pop().unwrap();
    h.e.complete(h.now, token, outcome);
    let got = h.raw(1, "");
    let resp = got
        .iter()
        .find(|v| v["id"] == json!(100))
        .unwrap_or_else(|| panic!("the deferred answer: {got:?}"));
    assert!(resp["result"]["value"].is_null(), "{resp}");
    assert!(resp["result"]["sessionId"].is_string(), "{resp}");
    // A retry of the same id is answered from the replay cache, not run again.
    let again = h.raw(1, &stop_and_wait(100, &r));
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(waiting.lock().unwrap().is_empty());
    // A completion that comes twice, or for nothing, is ignored.
    h.e.complete(h.now, token, Ok(Value::Null));
    h.e.complete(h.now, 999, Ok(Value::Null));
    assert!(h.raw(1, "").iter().all(|v| v["id"] != json!(100)));
}

#[test]
fn a_reply_dropped_unanswered_is_an_error_and_transactions_never_defer() {
    let (mut h, r, waiting, done) = setup();
    assert!(h.raw(1, &stop_and_wait(7, &r)).is_empty());
    drop(waiting.lock().unwrap().pop());
    let (token, outcome) = done.lock().unwrap().pop().unwrap();
    assert!(outcome.is_err());
    h.e.complete(h.now, token, outcome);
    let got = h.raw(1, "");
    let resp = got.iter().find(|v| v["id"] == json!(7)).expect("an answer");
    assert!(resp["error"]["code"].is_i64(), "{resp}");

    let t = h.ok(
        1,
        "transaction",
        json!({"operations": [
            {"jsonrpc":"2.0","id":0,"method":"invoke",
             "params":{"object": r, "operation":"stopAndWait"}}
        ]}),
    );
    assert_eq!(t["value"][0]["result"]["value"], "inline", "{t}");
    assert!(waiting.lock().unwrap().is_empty());
}

#[test]
fn a_deferred_reply_follows_its_session_to_a_new_connection() {
    let (mut h, r, waiting, done) = setup();
    assert!(h.raw(1, &stop_and_wait(42, &r)).is_empty());
    let session = h.ok(1, "ping", json!({}))["sessionId"]
        .as_str()
        .map(str::to_string);
    // The client reconnects on connection 2 with its session before the answer is ready.
    h.close(1);
    h.open(2);
    let s = session.expect("a session id");
    h.ok(2, "connect", json!({"sessionId": s}));
    waiting
        .lock()
        .unwrap()
        .pop()
        .unwrap()
        .complete(Ok(Value::Null));
    let (token, outcome) = done.lock().unwrap().pop().unwrap();
    h.e.complete(h.now, token, outcome);
    let got = h.raw(2, "");
    assert!(
        got.iter()
            .any(|v| v["id"] == json!(42) && v["result"].is_object()),
        "the answer reached the new connection: {got:?}"
    );
}

/// A PlayerEndpoint stand-in whose state lives elsewhere (a media worker): it reads
/// `position` later and fails `videoInfo`; other properties follow the generic rules.
struct Remote {
    waiting: Arc<Mutex<Vec<Completer>>>,
}

impl Element for Remote {
    fn read_property(
        &mut self,
        cx: &mut ElementCx<'_>,
        name: &str,
    ) -> Option<Result<Value, KurentoError>> {
        match name {
            "position" => Some(match cx.defer() {
                Some(c) => {
                    self.waiting.lock().unwrap().push(c);
                    Ok(Value::Null)
                }
                None => Ok(json!(-1)),
            }),
            "videoInfo" => Some(Err(KurentoError::new(
                fluo_api::ErrorCode::UnexpectedError,
                "the worker ended",
            ))),
            _ => None,
        }
    }
}

#[test]
fn an_element_reads_its_properties_itself_later_or_with_an_error() {
    let mut h = H::new();
    let done: Completions = Arc::default();
    let d = done.clone();
    h.e.set_completion_sink(Arc::new(move |t, o| d.lock().unwrap().push((t, o))));
    let waiting: Arc<Mutex<Vec<Completer>>> = Arc::default();
    let w = waiting.clone();
    h.e.register_factory(
        "PlayerEndpoint",
        Box::new(move |_: &FactoryCx<'_>| {
            Ok(Box::new(Remote { waiting: w.clone() }) as Box<dyn Element>)
        }),
    );
    let p = h.create(1, "MediaPipeline", None);
    let player = h.ok(
        1,
        "create",
        json!({"type": "PlayerEndpoint",
               "constructorParams": {"mediaPipeline": p, "uri": "file:///tmp/x.webm"}}),
    )["value"]
        .as_str()
        .unwrap()
        .to_string();
    let get = |id: u64, op: &str| {
        json!({"jsonrpc":"2.0","id":id,"method":"invoke",
               "params":{"object": player, "operation": op}})
        .to_string()
    };
    // getPosition is answered when the element completes it.
    assert!(h.raw(1, &get(5, "getPosition")).is_empty(), "no answer yet");
    waiting
        .lock()
        .unwrap()
        .pop()
        .expect("deferred")
        .complete(Ok(json!(1234)));
    let (token, outcome) = done.lock().unwrap().pop().unwrap();
    h.e.complete(h.now, token, outcome);
    let got = h.raw(1, "");
    let resp = got
        .iter()
        .find(|v| v["id"] == json!(5))
        .expect("the answer");
    assert_eq!(resp["result"]["value"], 1234, "{resp}");
    // getVideoInfo fails with the element's error.
    let got = h.raw(1, &get(6, "getVideoInfo"));
    let resp = got
        .iter()
        .find(|v| v["id"] == json!(6))
        .expect("the answer");
    assert_eq!(resp["error"]["code"], 40003, "{resp}");
    assert_eq!(resp["error"]["message"], "the worker ended", "{resp}");
    // A property the element leaves alone is read as before.
    assert_eq!(
        h.invoke(1, &player, "getUri", json!({})),
        "file:///tmp/x.webm"
    );
    // Inside a transaction the read cannot wait: the element answers at once.
    let t = h.ok(
        1,
        "transaction",
        json!({"operations": [
            {"jsonrpc":"2.0","id":0,"method":"invoke",
             "params":{"object": player, "operation":"getPosition"}}
        ]}),
    );
    assert_eq!(t["value"][0]["result"]["value"], -1, "{t}");
}
