//! connect / disconnect bookkeeping.
mod common;
use common::H;
use serde_json::json;

/// WebRtcEndpoints with no media of their own stand in for real ones.
fn endpoints_without_media(h: &mut H) {
    h.e.register_factory(
        "WebRtcEndpoint",
        Box::new(|_: &fluo_core::FactoryCx<'_>| {
            Ok(Box::new(fluo_core::NoMedia) as Box<dyn fluo_core::Element>)
        }),
    );
}

/// The media connections, sorted: (source, sink, media type).
fn pairs(h: &H) -> Vec<(String, String, String)> {
    let mut v: Vec<_> =
        h.e.media_edges()
            .iter()
            .map(|e| (e.source.clone(), e.sink.clone(), e.media_type.clone()))
            .collect();
    v.sort();
    v
}

fn setup() -> (H, String, String, String) {
    let mut h = H::new();
    let p = h.create(1, "MediaPipeline", None);
    let a = h.create(1, "PassThrough", Some(&p));
    let b = h.create(1, "PassThrough", Some(&p));
    (h, p, a, b)
}

#[test]
fn connect_without_media_type_connects_audio_video_and_data() {
    let (mut h, _, a, b) = setup();
    h.ok(
        1,
        "subscribe",
        json!({"object": a, "type": "ElementConnected"}),
    );
    h.invoke(1, &a, "connect", json!({"sink": b}));
    let types: Vec<_> = h
        .events(1)
        .iter()
        .map(|e| e["data"]["mediaType"].clone())
        .collect();
    assert_eq!(types, [json!("AUDIO"), json!("VIDEO"), json!("DATA")]);
    let sinks = h.invoke(1, &a, "getSinkConnections", json!({}));
    assert_eq!(sinks.as_array().unwrap().len(), 3);
    assert_eq!(
        sinks[1],
        json!({"__module__":"kurento","__type__":"ElementConnectionData","source":a,"sink":b,"type":"VIDEO","sourceDescription":"default","sinkDescription":"default"})
    );
    let v = h.invoke(1, &b, "getSourceConnections", json!({"mediaType":"VIDEO"}));
    assert_eq!(v.as_array().unwrap().len(), 1);
    // connecting again changes nothing and raises nothing
    h.invoke(1, &a, "connect", json!({"sink": b}));
    assert!(h.events(1).is_empty());
}

#[test]
fn a_new_source_replaces_the_old_one_on_the_same_input() {
    let (mut h, p, a, b) = setup();
    let c = h.create(1, "PassThrough", Some(&p));
    h.ok(
        1,
        "subscribe",
        json!({"object": a, "type": "ElementDisconnected"}),
    );
    h.invoke(1, &a, "connect", json!({"sink": b, "mediaType": "VIDEO"}));
    h.invoke(1, &c, "connect", json!({"sink": b, "mediaType": "VIDEO"}));
    let ev = h.events(1);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["data"]["sink"], json!(b));
    let src = h.invoke(1, &b, "getSourceConnections", json!({}));
    assert_eq!(src.as_array().unwrap().len(), 1);
    assert_eq!(src[0]["source"], json!(c));
}

#[test]
fn disconnect_and_loopback() {
    let (mut h, _, a, b) = setup();
    h.invoke(1, &a, "connect", json!({"sink": a}));
    assert_eq!(
        h.invoke(1, &a, "getSinkConnections", json!({}))
            .as_array()
            .unwrap()
            .len(),
        3
    );
    h.invoke(1, &a, "connect", json!({"sink": b, "mediaType":"AUDIO"}));
    h.ok(
        1,
        "subscribe",
        json!({"object": a, "type": "ElementDisconnected"}),
    );
    h.invoke(1, &a, "disconnect", json!({"sink": b}));
    assert_eq!(h.events(1).len(), 1);
    h.invoke(1, &a, "disconnect", json!({"sink": a, "mediaType": "DATA"}));
    assert_eq!(
        h.invoke(1, &a, "getSinkConnections", json!({}))
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // releasing the sink removes its connections
    h.ok(1, "release", json!({"object": a}));
    assert_eq!(
        h.invoke(1, &b, "getSourceConnections", json!({})),
        json!([])
    );
}

#[test]
fn connect_errors() {
    let (mut h, _, a, _) = setup();
    let other = h.create(1, "MediaPipeline", None);
    let x = h.create(1, "PassThrough", Some(&other));
    let r = h.call(
        1,
        "invoke",
        json!({"object": a, "operation":"connect","operationParams":{"sink": x}}),
    );
    assert_eq!(r["error"]["code"], 40004);
    let r = h.call(
        1,
        "invoke",
        json!({"object": a, "operation":"connect","operationParams":{"sink": other}}),
    );
    assert_eq!(
        r["error"]["code"], 40001,
        "a pipeline is not a MediaElement"
    );
    let r = h.call(
        1,
        "invoke",
        json!({"object": a, "operation":"connect","operationParams":{"sink": "gone"}}),
    );
    assert_eq!(r["error"]["code"], 40101);
    let r = h.call(1, "invoke", json!({"object": a, "operation":"connect","operationParams":{"sink": x, "mediaType":"SMELL"}}));
    assert_eq!(r["error"]["code"], 40001);
}

#[test]
fn dot_shows_elements_and_edges() {
    let (mut h, p, a, b) = setup();
    h.invoke(1, &a, "connect", json!({"sink": b, "mediaType":"VIDEO"}));
    let dot = h.invoke(1, &p, "getGstreamerDot", json!({}));
    let dot = dot.as_str().unwrap();
    assert!(dot.starts_with("digraph"));
    assert!(dot.contains(&format!("\"{a}\" -> \"{b}\"")));
    assert!(dot.contains("VIDEO"));
}

#[test]
fn media_connections_look_through_pass_throughs() {
    let (mut h, p, _, _) = setup();
    // Endpoints with no media of their own stand in for real ones.
    endpoints_without_media(&mut h);
    let a = h.create(1, "WebRtcEndpoint", Some(&p));
    let b = h.create(1, "WebRtcEndpoint", Some(&p));
    let pt1 = h.create(1, "PassThrough", Some(&p));
    let pt2 = h.create(1, "PassThrough", Some(&p));
    // a -> pt1 -> pt2 -> b carries VIDEO end to end; AUDIO only reaches pt1.
    h.invoke(1, &a, "connect", json!({"sink": pt1}));
    h.invoke(
        1,
        &pt1,
        "connect",
        json!({"sink": pt2, "mediaType": "VIDEO"}),
    );
    assert!(pairs(&h).is_empty(), "nothing reaches a real sink yet");
    h.invoke(1, &pt2, "connect", json!({"sink": b, "mediaType": "VIDEO"}));
    assert_eq!(pairs(&h), vec![(a.clone(), b.clone(), "VIDEO".to_string())]);
    // a loop through the pass-throughs (on a second input of pt1) does not hang
    h.invoke(
        1,
        &pt2,
        "connect",
        json!({"sink": pt1, "mediaType": "VIDEO", "sinkMediaDescription": "loop"}),
    );
    assert_eq!(pairs(&h).len(), 1);
    // releasing the middle breaks the media connection
    h.ok(1, "release", json!({"object": pt2}));
    assert!(pairs(&h).is_empty());
}

#[test]
fn media_connections_stay_right_through_many_joins_replacements_and_releases() {
    // Connections between elements that are not transparent are applied one by one (a
    // viewer joining a publisher must not cost a recomputation of every connection); the
    // result must be what a full recomputation gives, also once a PassThrough is involved.
    let (mut h, p, _, _) = setup();
    endpoints_without_media(&mut h);
    let a = h.create(1, "WebRtcEndpoint", Some(&p));
    let c = h.create(1, "WebRtcEndpoint", Some(&p));
    let v: Vec<String> = (0..6)
        .map(|_| h.create(1, "WebRtcEndpoint", Some(&p)))
        .collect();
    let edge = |s: &str, k: &str, t: &str| (s.to_string(), k.to_string(), t.to_string());
    for x in &v[..5] {
        h.invoke(1, &a, "connect", json!({"sink": x}));
    }
    let mut want: Vec<_> = v[..5]
        .iter()
        .flat_map(|x| ["AUDIO", "VIDEO", "DATA"].map(|t| edge(&a, x, t)))
        .collect();
    want.sort();
    assert_eq!(pairs(&h), want);
    // A new source replaces the old one on v0's video input.
    h.invoke(
        1,
        &c,
        "connect",
        json!({"sink": v[0], "mediaType": "VIDEO"}),
    );
    want.retain(|e| *e != edge(&a, &v[0], "VIDEO"));
    want.push(edge(&c, &v[0], "VIDEO"));
    want.sort();
    assert_eq!(pairs(&h), want);
    // Disconnecting and releasing remove theirs.
    h.invoke(1, &a, "disconnect", json!({"sink": v[1]}));
    want.retain(|e| e.1 != v[1]);
    h.ok(1, "release", json!({"object": v[2]}));
    want.retain(|e| e.1 != v[2]);
    assert_eq!(pairs(&h), want);
    // Through a PassThrough: a -> pt -> v5 (VIDEO).
    let pt = h.create(1, "PassThrough", Some(&p));
    h.invoke(1, &a, "connect", json!({"sink": pt, "mediaType": "VIDEO"}));
    h.invoke(
        1,
        &pt,
        "connect",
        json!({"sink": v[5], "mediaType": "VIDEO"}),
    );
    want.push(edge(&a, &v[5], "VIDEO"));
    want.sort();
    assert_eq!(pairs(&h), want);
    // Releasing the PassThrough takes that one away, and only that one.
    h.ok(1, "release", json!({"object": pt}));
    want.retain(|e| e.1 != v[5]);
    assert_eq!(pairs(&h), want);
}
