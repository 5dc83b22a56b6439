//! Arbitrary text as a remote SDP into real WebRtcEndpoints (str0m underneath): as an offer
//! into `processOffer`, and as an answer into `processAnswer` after `generateOffer`. Every
//! call gets an answer or a Kurento error, and the engine keeps working.
#![no_main]

use fluo_testkit::World;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::cell::RefCell;

thread_local! {
    // One world (one DTLS certificate) for the whole run; each input gets its own pipeline,
    // released at the end.
    static WORLD: RefCell<World> = RefCell::new(World::new());
}

fn check(r: &Value, what: &str) {
    match r.get("error") {
        None => assert!(
            r.get("result").is_some(),
            "{what}: neither result nor error: {r}"
        ),
        Some(e) => assert!(e["code"].is_i64(), "{what}: an error without a code: {r}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let sdp = String::from_utf8_lossy(data);
    WORLD.with(|w| {
        let mut w = w.borrow_mut();
        let p = w.create("MediaPipeline", None);
        let a = w.create("WebRtcEndpoint", Some(&p));
        let r = w.call(
            "invoke",
            json!({"object": a, "operation": "processOffer", "operationParams": {"offer": sdp}}),
        );
        check(&r, "processOffer");
        let b = w.create("WebRtcEndpoint", Some(&p));
        w.invoke(&b, "generateOffer", json!({}));
        let r = w.call(
            "invoke",
            json!({"object": b, "operation": "processAnswer", "operationParams": {"answer": sdp}}),
        );
        check(&r, "processAnswer");
        let r = w.call(
            "invoke",
            json!({"object": a, "operation": "connect", "operationParams": {"sink": b}}),
        );
        check(&r, "connect");
        let r = w.call(
            "invoke",
            json!({"object": b, "operation": "gatherCandidates", "operationParams": {}}),
        );
        check(&r, "gatherCandidates");
        w.settle();
        w.ok("release", json!({"object": p}));
        w.settle();
        w.events();
    });
});
