//! Dispatcher and DispatcherOneToMany: the media connections they make through their ports,
//! switches, bad input, release, and the ports' media-flow events.
mod common;
use common::H;
use fluo_core::{FlowDir, MediaEvent};
use fluo_sfu::MediaKind;
use serde_json::{json, Value};

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

/// AUDIO and VIDEO from `src` to each of `sinks`, sorted.
fn av(src: &str, sinks: &[&str]) -> Vec<(String, String, String)> {
    let mut v = vec![];
    for s in sinks {
        for t in ["AUDIO", "VIDEO"] {
            v.push((src.to_string(), s.to_string(), t.to_string()));
        }
    }
    v.sort();
    v
}

fn port(h: &mut H, hub: &str) -> String {
    h.ok(
        1,
        "create",
        json!({"type": "HubPort", "constructorParams": {"hub": hub}}),
    )["value"]
        .as_str()
        .unwrap()
        .to_string()
}

fn invoke_err(h: &mut H, object: &str, op: &str, params: Value) -> (i64, String) {
    let r = h.call(
        1,
        "invoke",
        json!({"object": object, "operation": op, "operationParams": params}),
    );
    let e = &r["error"];
    (
        e["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("{op} should fail: {r}")),
        e["message"].as_str().unwrap_or_default().to_string(),
    )
}

struct Room {
    h: H,
    p: String,
    /// Endpoints a, b, c, x, y.
    ep: Vec<String>,
}

fn room() -> Room {
    let mut h = H::new();
    endpoints_without_media(&mut h);
    let p = h.create(1, "MediaPipeline", None);
    let ep = (0..5)
        .map(|_| h.create(1, "WebRtcEndpoint", Some(&p)))
        .collect();
    Room { h, p, ep }
}

#[test]
fn dispatcher_connects_a_sink_port_to_a_source_port_and_switches_it() {
    let Room { mut h, p, ep } = room();
    let (a, b, x) = (&ep[0], &ep[1], &ep[3]);
    let d = h.create(1, "Dispatcher", Some(&p));
    let (pa, pb, px) = (port(&mut h, &d), port(&mut h, &d), port(&mut h, &d));
    h.invoke(1, a, "connect", json!({"sink": pa}));
    h.invoke(1, b, "connect", json!({"sink": pb}));
    h.invoke(1, &px, "connect", json!({"sink": x}));
    assert!(pairs(&h).is_empty(), "the hub routes nothing yet");
    h.invoke(1, &d, "connect", json!({"source": pa, "sink": px}));
    assert_eq!(pairs(&h), av(a, &[x]), "audio and video, not data");
    // Re-connect of the sink switches its source.
    h.invoke(1, &d, "connect", json!({"source": pb, "sink": px}));
    assert_eq!(pairs(&h), av(b, &[x]));
    // The same again changes nothing; a source may feed several sinks.
    h.invoke(1, &d, "connect", json!({"source": pb, "sink": px}));
    h.invoke(1, &d, "connect", json!({"source": pb, "sink": pa}));
    assert_eq!(pairs(&h), av(b, &[x]), "pa's output goes nowhere");
    h.invoke(1, &pa, "connect", json!({"sink": ep[4]}));
    assert_eq!(pairs(&h), {
        let mut v = av(b, &[x, &ep[4]]);
        v.extend(av(a, &[]));
        v.sort();
        v
    });
    // Nothing of the ports' own connections changed.
    let src = h.invoke(1, &px, "getSourceConnections", json!({}));
    assert_eq!(src, json!([]));
}

#[test]
fn one_to_many_gives_every_port_the_source_its_own_and_ports_that_join_later() {
    let Room { mut h, p, ep } = room();
    let (a, b, c, x, y) = (&ep[0], &ep[1], &ep[2], &ep[3], &ep[4]);
    let o = h.create(1, "DispatcherOneToMany", Some(&p));
    let (pa, pb, pc) = (port(&mut h, &o), port(&mut h, &o), port(&mut h, &o));
    h.invoke(1, a, "connect", json!({"sink": pa}));
    h.invoke(1, b, "connect", json!({"sink": pb}));
    h.invoke(1, &pb, "connect", json!({"sink": x}));
    h.invoke(1, &pc, "connect", json!({"sink": c}));
    h.invoke(1, &pa, "connect", json!({"sink": a})); // a hears the hub too
    h.invoke(1, &o, "setSource", json!({"source": pa}));
    // Its own port too, as KMS (a presenter sees what everyone sees).
    assert_eq!(pairs(&h), av(a, &[a, c, x]), "back to its own port too");
    let late = port(&mut h, &o);
    h.invoke(1, &late, "connect", json!({"sink": y}));
    assert_eq!(pairs(&h), av(a, &[a, c, x, y]));
    h.invoke(1, &o, "setSource", json!({"source": pb}));
    assert_eq!(pairs(&h), av(b, &[a, c, x, y]));
    h.invoke(1, &o, "removeSource", json!({}));
    assert!(pairs(&h).is_empty());
    // Releasing the source port: nothing reaches anyone; a later setSource works.
    h.invoke(1, &o, "setSource", json!({"source": pa}));
    h.ok(1, "release", json!({"object": pa}));
    assert!(pairs(&h).is_empty());
    h.invoke(1, &o, "setSource", json!({"source": pb}));
    assert_eq!(pairs(&h), av(b, &[c, x, y]));
    // Releasing the hub releases its ports and what went through them.
    h.ok(1, "release", json!({"object": o}));
    assert!(pairs(&h).is_empty());
    for gone in [&pb, &pc, &late] {
        assert_eq!(h.err(1, "describe", json!({"object": gone})), 40101);
    }
}

#[test]
fn bad_ports_are_refused_and_disturb_nothing() {
    let Room { mut h, p, ep } = room();
    let d = h.create(1, "Dispatcher", Some(&p));
    let o = h.create(1, "DispatcherOneToMany", Some(&p));
    let (da, dx) = (port(&mut h, &d), port(&mut h, &d));
    let oa = port(&mut h, &o);
    let p2 = h.create(1, "MediaPipeline", None);
    let d2 = h.create(1, "Dispatcher", Some(&p2));
    let foreign = port(&mut h, &d2);
    let gone = port(&mut h, &d);
    h.ok(1, "release", json!({"object": gone}));
    h.invoke(1, &ep[0], "connect", json!({"sink": da}));
    h.invoke(1, &dx, "connect", json!({"sink": ep[3]}));
    h.invoke(1, &d, "connect", json!({"source": da, "sink": dx}));
    let before = pairs(&h);
    assert_eq!(before, av(&ep[0], &[&ep[3]]));
    let cases = [
        (&d, "connect", json!({"source": da, "sink": da}), 40004),
        (&d, "connect", json!({"source": oa, "sink": dx}), 40004),
        (&d, "connect", json!({"source": da, "sink": oa}), 40004),
        (&d, "connect", json!({"source": foreign, "sink": dx}), 40004),
        (&d, "connect", json!({"source": gone, "sink": dx}), 40101),
        (&d, "connect", json!({"source": ep[1], "sink": dx}), 40001),
        (&d, "connect", json!({"source": da}), 40001),
        (&o, "setSource", json!({"source": da}), 40004),
        (&o, "setSource", json!({"source": foreign}), 40004),
        (&o, "setSource", json!({"source": gone}), 40101),
        (&o, "setSource", json!({"source": p}), 40001),
    ];
    for (hub, op, params, code) in cases {
        let (got, msg) = invoke_err(&mut h, hub, op, params.clone());
        assert_eq!(got, code, "{op} {params}: {msg}");
        assert!(!msg.is_empty() && !msg.contains("0x"), "{msg}");
        assert_eq!(pairs(&h), before, "{op} {params} changed the routes");
    }
    // A hub's connect is not MediaElement.connect: the hub is no element.
    assert_eq!(
        h.invoke(1, &d, "getChildren", json!({}))
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

fn flow(h: &mut H, el: &str, dir: FlowDir, flowing: bool) {
    let ev = MediaEvent::Flow {
        dir,
        kind: MediaKind::Video,
        flowing,
    };
    let now = h.now;
    h.e.emit_event(now, el, ev);
}

/// (source, event type, state) of the media-flow events received.
fn flows(h: &mut H) -> Vec<(String, String, String)> {
    h.events(1)
        .iter()
        .filter(|e| e["data"]["mediaType"] == "VIDEO")
        .map(|e| {
            (
                e["object"].as_str().unwrap().to_string(),
                e["type"].as_str().unwrap().to_string(),
                e["data"]["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn hub_ports_raise_media_flow_events_from_the_elements_around_them() {
    let Room { mut h, p, ep } = room();
    let (a, b, x) = (&ep[0], &ep[1], &ep[3]);
    let o = h.create(1, "DispatcherOneToMany", Some(&p));
    let (pa, pb, px) = (port(&mut h, &o), port(&mut h, &o), port(&mut h, &o));
    for id in [&pa, &pb, &px] {
        for t in ["MediaFlowInStateChanged", "MediaFlowOutStateChanged"] {
            h.ok(1, "subscribe", json!({"object": id, "type": t}));
        }
    }
    h.invoke(1, a, "connect", json!({"sink": pa}));
    h.invoke(1, b, "connect", json!({"sink": pb}));
    h.invoke(1, &px, "connect", json!({"sink": x}));
    h.invoke(1, &o, "setSource", json!({"source": pa}));
    flow(&mut h, a, FlowDir::Out, true);
    let s = |id: &str, t: &str, st: &str| (id.to_string(), t.to_string(), st.to_string());
    assert_eq!(
        flows(&mut h),
        [s(&pa, "MediaFlowInStateChanged", "FLOWING")]
    );
    flow(&mut h, x, FlowDir::In, true);
    assert_eq!(
        flows(&mut h),
        [s(&px, "MediaFlowOutStateChanged", "FLOWING")]
    );
    let yes = |h: &mut H, id: &str, m: &str| h.invoke(1, id, m, json!({"mediaType": "VIDEO"}));
    assert_eq!(yes(&mut h, &pa, "isMediaFlowingIn"), json!(true));
    assert_eq!(yes(&mut h, &px, "isMediaFlowingOut"), json!(true));
    assert_eq!(yes(&mut h, &pb, "isMediaFlowingIn"), json!(false));
    // b starts sending into its port; a switch to it keeps px flowing out while x receives.
    flow(&mut h, b, FlowDir::Out, true);
    assert_eq!(
        flows(&mut h),
        [s(&pb, "MediaFlowInStateChanged", "FLOWING")]
    );
    h.invoke(1, &o, "setSource", json!({"source": pb}));
    assert_eq!(flows(&mut h), []);
    // x stops receiving: px's output stops; a stops sending: pa's input stops.
    flow(&mut h, x, FlowDir::In, false);
    flow(&mut h, a, FlowDir::Out, false);
    assert_eq!(
        flows(&mut h),
        [
            s(&px, "MediaFlowOutStateChanged", "NOT_FLOWING"),
            s(&pa, "MediaFlowInStateChanged", "NOT_FLOWING")
        ]
    );
    // x receives again; removeSource: px's output no longer reaches it.
    flow(&mut h, x, FlowDir::In, true);
    assert_eq!(
        flows(&mut h),
        [s(&px, "MediaFlowOutStateChanged", "FLOWING")]
    );
    h.invoke(1, &o, "removeSource", json!({}));
    assert_eq!(
        flows(&mut h),
        [s(&px, "MediaFlowOutStateChanged", "NOT_FLOWING")]
    );
}

/// Mixer.connect / disconnect answer as KMS 7's MixerImpl (DATA and a VIDEO disconnect are
/// 40005, a disconnect of audio that is not connected 40004) and refuse what the routing hubs
/// refuse (a port of another hub or pipeline, a port to itself: 40004; a released port
/// 40101; no HubPort 40001). Routes are recorded: connecting twice is one route, a disconnect
/// takes it out, a released port's routes go with it.
#[test]
fn mixer_answers_as_kms_and_keeps_its_routes() {
    let Room { mut h, p, ep } = room();
    h.e.register_factory(
        "Mixer",
        Box::new(|_: &fluo_core::FactoryCx<'_>| {
            Ok(Box::new(fluo_core::NoMedia) as Box<dyn fluo_core::Element>)
        }),
    );
    let m = h.create(1, "Mixer", Some(&p));
    let (a, b, c) = (port(&mut h, &m), port(&mut h, &m), port(&mut h, &m));
    let other = h.create(1, "Mixer", Some(&p));
    let o = port(&mut h, &other);
    let p2 = h.create(1, "MediaPipeline", None);
    let m2 = h.create(1, "Mixer", Some(&p2));
    let far = port(&mut h, &m2);
    let gone = port(&mut h, &m);
    h.ok(1, "release", json!({"object": gone}));
    let r = |media: &str, s: &str, k: &str| json!({"media": media, "source": s, "sink": k});
    let cases = [
        ("connect", r("DATA", &a, &b), 40005),
        ("disconnect", r("DATA", &a, &b), 40005),
        ("disconnect", r("VIDEO", &a, &b), 40005),
        ("disconnect", r("AUDIO", &a, &b), 40004),
        ("connect", r("AUDIO", &a, &a), 40004),
        ("connect", r("VIDEO", &b, &b), 40004),
        ("connect", r("AUDIO", &o, &b), 40004),
        ("connect", r("VIDEO", &a, &far), 40004),
        ("connect", r("AUDIO", &gone, &b), 40101),
        ("connect", r("AUDIO", &ep[0], &b), 40001),
    ];
    for (op, params, code) in cases {
        let (got, msg) = invoke_err(&mut h, &m, op, params.clone());
        assert_eq!(got, code, "{op} {params}: {msg}");
        assert!(!msg.is_empty() && !msg.contains("0x"), "{msg}");
    }
    for _ in 0..2 {
        h.invoke(1, &m, "connect", r("AUDIO", &a, &b));
    }
    h.invoke(1, &m, "connect", r("VIDEO", &a, &b));
    h.invoke(1, &m, "connect", r("VIDEO", &c, &b));
    h.invoke(1, &m, "disconnect", r("AUDIO", &a, &b));
    let again = invoke_err(&mut h, &m, "disconnect", r("AUDIO", &a, &b));
    assert_eq!(again.0, 40004, "one route for two connects: {}", again.1);
    // A released port's routes go: a port connected again after them is a new route.
    h.invoke(1, &m, "connect", r("AUDIO", &c, &b));
    h.ok(1, "release", json!({"object": c}));
    let (got, _) = invoke_err(&mut h, &m, "disconnect", r("AUDIO", &c, &b));
    assert_eq!(got, 40101);
    h.invoke(1, &m, "connect", r("AUDIO", &b, &a));
    h.invoke(1, &m, "disconnect", r("AUDIO", &b, &a));
}
