//! Session semantics: binding, grace period, resume with `connect`, replay cache.
mod common;
use common::H;
use fluo_core::EngineConfig;
use serde_json::json;
use std::time::Duration;

fn cfg(grace: u64) -> EngineConfig {
    EngineConfig {
        session_grace: Duration::from_secs(grace),
        ..EngineConfig::default()
    }
}

#[test]
fn session_is_assigned_echoed_and_injected() {
    let mut h = H::new();
    let r = h.raw(
        1,
        r#"{"jsonrpc":"2.0","id":0,"method":"ping","params":{"interval":5000}}"#,
    );
    assert_eq!(r[0]["result"], json!({"value":"pong"}));
    let s = h.session(1);
    let p = h.ok(1, "create", json!({"type":"MediaPipeline"}));
    assert_eq!(p["sessionId"], s, "the connection's session is injected");
    let r = h.raw(1, r#"{"jsonrpc":"2.0","id":"x","method":"ping"}"#);
    assert_eq!(r[0]["result"], json!({"value":"pong","sessionId": s}));
    assert_eq!(r[0]["id"], "x");
}

#[test]
fn objects_survive_a_reconnect_within_the_grace_period() {
    let mut h = H::with(cfg(10));
    let s = h.session(1);
    let p = h.create(1, "MediaPipeline", None);
    h.close(1);
    h.advance(Duration::from_secs(9));
    h.open(2);
    let r = h.ok(2, "connect", json!({"sessionId": s}));
    assert_eq!(r["sessionId"], s);
    assert!(r["serverId"].is_string());
    h.advance(Duration::from_secs(60));
    assert_eq!(h.invoke(2, &p, "getId", json!({})), json!(p));
}

#[test]
fn objects_of_a_session_that_does_not_return_are_released_after_the_grace_period() {
    let mut h = H::with(cfg(10));
    h.open(2);
    // An observer on another connection watches ObjectDestroyed.
    h.ok(
        2,
        "subscribe",
        json!({"object":"manager_ServerManager","type":"ObjectDestroyed"}),
    );
    let s = h.session(1);
    let p = h.create(1, "MediaPipeline", None);
    let e = h.create(1, "PassThrough", Some(&p));
    h.close(1);
    h.advance(Duration::from_secs(9));
    assert!(
        h.events(2).is_empty(),
        "nothing released before the grace period ends"
    );
    h.advance(Duration::from_secs(2));
    let destroyed: Vec<String> = h
        .events(2)
        .iter()
        .map(|ev| ev["data"]["objectId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        destroyed,
        [e.clone(), p.clone()],
        "children first, then the pipeline"
    );
    assert_eq!(h.err(2, "describe", json!({"object": p})), 40101);
    h.open(3);
    assert_eq!(h.err(3, "connect", json!({"sessionId": s})), 40007);
    assert_eq!(h.e.object_count(), 1, "only the ServerManager is left");
}

#[test]
fn objects_shared_with_another_session_survive_the_first_sessions_expiry() {
    let mut h = H::with(cfg(5));
    h.open(2);
    let p = h.create(1, "MediaPipeline", None);
    let s2 = h.session(2);
    h.ok(2, "ref", json!({"object": p, "sessionId": s2}));
    h.close(1);
    h.advance(Duration::from_secs(30));
    assert_eq!(h.invoke(2, &p, "getId", json!({})), json!(p));
}

#[test]
fn a_child_made_by_one_session_is_held_by_every_session_of_its_pipeline() {
    let mut h = H::with(cfg(5));
    h.open(2);
    let p = h.create(1, "MediaPipeline", None);
    let s2 = h.session(2);
    h.ok(2, "ref", json!({"object": p, "sessionId": s2}));
    let e = h.create(1, "PassThrough", Some(&p));
    h.close(1);
    h.advance(Duration::from_secs(30));
    assert_eq!(
        h.invoke(2, &e, "getId", json!({})),
        json!(e),
        "the pipeline's other session holds the child its creator's session made"
    );
    h.ok(
        2,
        "closeSession",
        json!({"sessionId": s2, "release": false}),
    );
    assert_eq!(
        h.e.object_count(),
        1,
        "both released with the last session holding them"
    );
}

#[test]
fn keep_alive_and_connect_need_a_known_session() {
    let mut h = H::new();
    assert_eq!(h.err(1, "keepAlive", json!({"sessionId":"nope"})), 40007);
    assert_eq!(h.err(1, "connect", json!({"sessionId":"nope"})), 40007);
    let fresh = h.ok(1, "connect", json!({}));
    assert!(fresh["sessionId"].is_string());
    let s = h.session(1);
    h.create(1, "MediaPipeline", None);
    assert_eq!(
        h.ok(1, "keepAlive", json!({"sessionId": s}))["sessionId"],
        s
    );
}

#[test]
fn a_retried_request_id_is_answered_from_the_cache_without_running_twice() {
    let mut h = H::new();
    let s = h.session(1);
    let req = json!({"jsonrpc":"2.0","id":77,"method":"create","params":{"type":"MediaPipeline","sessionId": s}}).to_string();
    let a = h.raw(1, &req);
    let b = h.raw(1, &req);
    assert_eq!(a, b, "same response verbatim");
    let pipes = h.invoke(1, "manager_ServerManager", "getPipelines", json!({}));
    assert_eq!(pipes.as_array().unwrap().len(), 1, "created once");
    // After the TTL the id is executed again.
    h.advance(Duration::from_secs(21));
    let c = h.raw(1, &req);
    assert_ne!(a, c);
    let pipes = h.invoke(1, "manager_ServerManager", "getPipelines", json!({}));
    assert_eq!(pipes.as_array().unwrap().len(), 2);
}

#[test]
fn close_session_releases_or_unrefs() {
    let mut h = H::new();
    let s = h.session(1);
    let p = h.create(1, "MediaPipeline", None);
    let r = h.ok(1, "closeSession", json!({"sessionId": s, "release": true}));
    assert!(r.is_null());
    assert_eq!(h.e.object_count(), 1);
    let _ = p;
}

#[test]
fn events_go_to_the_connection_that_resumed_the_session() {
    let mut h = H::with(cfg(60));
    let s = h.session(1);
    h.ok(
        1,
        "subscribe",
        json!({"object":"manager_ServerManager","type":"ObjectCreated"}),
    );
    h.close(1);
    h.open(2);
    h.ok(2, "connect", json!({"sessionId": s}));
    h.create(2, "MediaPipeline", None);
    assert_eq!(h.events(2).len(), 1);
    assert!(h.events(1).is_empty());
}

#[test]
fn an_internal_session_never_keeps_a_clients_objects_alive() {
    let mut h = H::with(cfg(10));
    let p = h.create(1, "MediaPipeline", None);
    let q = h.create(1, "MediaPipeline", None);
    let src = h.create(1, "PassThrough", Some(&p));
    let sink = h.create(1, "PassThrough", Some(&q));
    // Fluo's own connection (a relay) creates, invokes, subscribes and connects, as the
    // cascade's relay does, in the client's pipelines.
    h.open_internal(9);
    let out = h.create(9, "PassThrough", Some(&p));
    let inp = h.create(9, "PassThrough", Some(&q));
    let internal = h.session(9);
    h.invoke(9, &src, "connect", json!({"sink": out}));
    h.invoke(9, &inp, "connect", json!({"sink": sink}));
    h.invoke(9, &p, "getName", json!({}));
    h.ok(
        9,
        "subscribe",
        json!({"object": inp, "type": "ElementConnected"}),
    );
    let fed = h.invoke(9, &src, "getSinkConnections", json!({}));
    let fed = fed.as_array().expect("a list");
    assert!(
        !fed.is_empty() && fed.iter().all(|c| c["sink"] == json!(out)),
        "{fed:?}"
    );
    assert_eq!(h.e.session_count(), 2, "the internal session exists");
    let holding = h.ok(
        9,
        "invoke",
        json!({"object": "manager_ServerManager", "operation": "getSessions", "operationParams": {}}),
    );
    assert!(
        !holding["value"].to_string().contains(&internal),
        "the internal session holds nothing: {holding}"
    );
    // The client goes away without releasing anything: after the grace period its session
    // expires, and everything in its pipelines goes, the relay's ends included, although
    // the internal connection is still open and keeps asking.
    h.close(1);
    h.advance(Duration::from_secs(9));
    assert_eq!(h.invoke(9, &out, "getName", json!({})), json!(out));
    h.advance(Duration::from_secs(2));
    for o in [&p, &q, &src, &sink, &out, &inp] {
        assert_eq!(h.err(9, "describe", json!({"object": o})), 40101, "{o}");
    }
    assert_eq!(h.e.object_count(), 1, "only the ServerManager is left");
    // A client's connection is never internal: its session holds what it touches.
    h.open(2);
    let kept = h.create(2, "MediaPipeline", None);
    h.advance(Duration::from_secs(60));
    assert_eq!(h.invoke(2, &kept, "getId", json!({})), json!(kept));
}

#[test]
fn fluo_own_requests_are_kept_out_of_the_replay_cache_and_the_request_metrics() {
    let mut h = H::new();
    let p = h.create(1, "MediaPipeline", None);
    let create = |id: u64, session: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "create", "params": {
            "type": "PassThrough", "constructorParams": {"mediaPipeline": p}, "sessionId": session}})
        .to_string()
    };
    // A client's request sent again (same session, same id) is answered from the cache.
    let s = h.session(1);
    let _ = h.e.take_last_method();
    let a = h.raw(1, &create(900, &s));
    assert_eq!(h.e.take_last_method(), Some("create"));
    let b = h.raw(1, &create(900, &s));
    assert_eq!(a[0]["result"]["value"], b[0]["result"]["value"], "replayed");
    // Fluo's own connection (a cascade relay's probes) is neither cached nor counted.
    h.open_internal(9);
    let own = h.session(9);
    let _ = h.e.take_last_method();
    let a = h.raw(9, &create(901, &own));
    assert_eq!(h.e.take_last_method(), None, "an internal request counted");
    let b = h.raw(9, &create(901, &own));
    let (a, b) = (&a[0]["result"]["value"], &b[0]["result"]["value"]);
    assert!(a.is_string() && b.is_string() && a != b, "{a} {b}");
    // Nor are its errors (a relay's janitor asking an end that is gone).
    let errors = h.e.reading().errors;
    let gone = json!({"jsonrpc": "2.0", "id": 902, "method": "invoke", "params": {
        "object": format!("{p}/gone_kurento.PassThrough"), "operation": "getName",
        "sessionId": own}});
    let a = h.raw(9, &gone.to_string());
    assert_eq!(a[0]["error"]["code"], 40101, "{a:?}");
    assert_eq!(h.e.reading().errors, errors, "an internal error counted");
}
