//! Bad input gets the right error and leaves the engine usable.
mod common;
use common::H;
use serde_json::json;

#[test]
fn envelope_and_method_errors() {
    let mut h = H::new();
    let cases = [
        ("not json", -32700),
        ("[]", -32600),
        ("42", -32600),
        (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"method":7}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"method":"fly"}"#, -32601),
        (r#"{"jsonrpc":"2.0","id":1,"method":"create"}"#, -32602),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"create","params":[1]}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"create","params":{}}"#,
            -32000,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"create","params":{"type":{}}}"#,
            -32000,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"invoke","params":{"object":"x"}}"#,
            -32000,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"unref","params":{"object":"x"}}"#,
            -32000,
        ),
    ];
    for (text, code) in cases {
        let r = h.raw(1, text);
        assert_eq!(r.len(), 1, "{text}");
        assert_eq!(r[0]["error"]["code"], code, "{text} -> {}", r[0]);
        let pong = h.raw(1, r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#);
        assert_eq!(pong[0]["result"]["value"], "pong", "usable after {text}");
    }
    // notifications get no answer
    assert!(h.raw(1, r#"{"jsonrpc":"2.0","method":"ping"}"#).is_empty());
}

#[test]
fn kurento_errors_name_what_is_wrong() {
    let mut h = H::new();
    let p = h.create(1, "MediaPipeline", None);
    let r = h.call(1, "create", json!({"type":"Gizmo"}));
    assert_eq!(r["error"]["code"], 40108);
    assert_eq!(r["error"]["message"], "Factory 'Gizmo' not found");
    // known to the model, not implemented yet: the class is named
    let r = h.call(
        1,
        "create",
        json!({"type":"WebRtcEndpoint","constructorParams":{"mediaPipeline": p}}),
    );
    assert_eq!(r["error"]["code"], 40108);
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("WebRtcEndpoint"));
    // abstract
    assert_eq!(h.err(1, "create", json!({"type":"MediaElement"})), 40108);
    // missing / wrong constructor params
    let r = h.call(1, "create", json!({"type":"PassThrough"}));
    assert_eq!(r["error"]["code"], 40001);
    assert_eq!(
        r["error"]["message"],
        "'mediaPipeline' parameter is required"
    );
    assert_eq!(
        h.err(
            1,
            "create",
            json!({"type":"PassThrough","constructorParams":{"mediaPipeline": 5}})
        ),
        40001
    );
    assert_eq!(
        h.err(
            1,
            "create",
            json!({"type":"PassThrough","constructorParams":{"mediaPipeline": "zzz"}})
        ),
        40101
    );
    // unknown operation / property, wrong types
    let r = h.call(
        1,
        "invoke",
        json!({"object": p, "operation":"fly","operationParams":{"a":1}}),
    );
    assert_eq!(r["error"]["code"], 40008);
    assert_eq!(
        r["error"]["message"],
        "Method 'fly' with 1 parameters not found"
    );
    assert_eq!(
        h.err(
            1,
            "invoke",
            json!({"object": p, "operation":"setName","operationParams":{"name": 5}})
        ),
        40001
    );
    assert_eq!(
        h.err(1, "invoke", json!({"object": p, "operation":"setName"})),
        40001
    );
    assert_eq!(
        h.err(
            1,
            "invoke",
            json!({"object": p, "operation":"addTag","operationParams":{"key":"k"}})
        ),
        40001
    );
    let r = h.call(
        1,
        "subscribe",
        json!({"object": p, "type":"IceCandidateFound"}),
    );
    assert_eq!(r["error"]["code"], 40106);
    assert_eq!(
        r["error"]["message"],
        "Event 'IceCandidateFound' not supported"
    );
    assert_eq!(
        h.err(
            1,
            "invoke",
            json!({"object": "gone", "operation":"getName"})
        ),
        40101
    );
    // release / unsubscribe of unknown things succeed
    h.ok(1, "release", json!({"object": "gone"}));
    let s = h.session(1);
    h.ok(
        1,
        "unsubscribe",
        json!({"object": p, "subscription": "nope", "sessionId": s}),
    );
}

#[test]
fn subscriptions_deliver_once_per_session_and_stop_after_unsubscribe() {
    let mut h = H::new();
    let s = h.session(1);
    let a = h.ok(
        1,
        "subscribe",
        json!({"object":"manager_ServerManager","type":"ObjectCreated"}),
    );
    let b = h.ok(
        1,
        "subscribe",
        json!({"object":"manager_ServerManager","type":"ObjectCreated"}),
    );
    assert_ne!(a["value"], b["value"]);
    h.create(1, "MediaPipeline", None);
    assert_eq!(h.events(1).len(), 1);
    for sub in [a, b] {
        h.ok(
            1,
            "unsubscribe",
            json!({"object":"manager_ServerManager","subscription": sub["value"], "sessionId": s}),
        );
    }
    h.create(1, "MediaPipeline", None);
    assert!(h.events(1).is_empty());
}

#[test]
fn limits_give_not_enough_resources() {
    let mut h = H::with(fluo_core::EngineConfig {
        max_pipelines: 2,
        max_elements_per_pipeline: 1,
        ..Default::default()
    });
    let p = h.create(1, "MediaPipeline", None);
    h.create(1, "MediaPipeline", None);
    let r = h.call(1, "create", json!({"type":"MediaPipeline"}));
    assert_eq!(r["error"]["code"], 40009);
    h.create(1, "PassThrough", Some(&p));
    assert_eq!(
        h.err(
            1,
            "create",
            json!({"type":"PassThrough","constructorParams":{"mediaPipeline": p}})
        ),
        40009
    );
}
