//! The engine's part of the pipeline view (`Engine::view`, `Engine::element_detail`): the
//! media connections each connection carries across a PassThrough and a DispatcherOneToMany,
//! hub ports right after their hub, the flow states of the elements' events, the limits.
mod common;
use common::H;
use fluo_core::{MediaEvent, ViewLimits};
use fluo_sfu::MediaKind;
use serde_json::json;

const ALL: ViewLimits = ViewLimits {
    pipelines: 10,
    elements: 100,
    connections: 100,
    tags: 100,
    text: 1000,
};

fn endpoints_without_media(h: &mut H) {
    h.e.register_factory(
        "WebRtcEndpoint",
        Box::new(|_: &fluo_core::FactoryCx<'_>| {
            Ok(Box::new(fluo_core::NoMedia) as Box<dyn fluo_core::Element>)
        }),
    );
}

#[test]
fn connections_carry_the_media_that_crosses_passthroughs_and_hubs() {
    let mut h = H::new();
    endpoints_without_media(&mut h);
    let p = h.create(1, "MediaPipeline", None);
    let a = h.create(1, "WebRtcEndpoint", Some(&p));
    let pass = h.create(1, "PassThrough", Some(&p));
    let o = h.create(1, "DispatcherOneToMany", Some(&p));
    let port = |h: &mut H| {
        let r = h.ok(
            1,
            "create",
            json!({"type": "HubPort", "constructorParams": {"hub": o}}),
        );
        r["value"].as_str().unwrap().to_string()
    };
    let (pa, px) = (port(&mut h), port(&mut h));
    let x = h.create(1, "WebRtcEndpoint", Some(&p));
    // a -> pass -> pa (hub, source) -> px -> x, video only.
    let video = |sink: &str| json!({"sink": sink, "mediaType": "VIDEO"});
    h.invoke(1, &a, "connect", video(&pass));
    h.invoke(1, &pass, "connect", video(&pa));
    h.invoke(1, &px, "connect", video(&x));
    h.invoke(1, &o, "setSource", json!({"source": pa}));
    h.e.emit_event(
        h.now,
        &a,
        MediaEvent::Flow {
            dir: fluo_core::FlowDir::Out,
            kind: MediaKind::Video,
            flowing: true,
        },
    );

    let v = h.e.view(ALL, None);
    assert_eq!(
        (v.pipelines_total, v.elements_total, v.truncated),
        (1, 6, false)
    );
    let pv = &v.pipelines[0];
    let ids: Vec<&str> = pv.elements.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [&a, &pass, &o, &pa, &px, &x],
        "ports right after their hub"
    );
    assert_eq!(pv.elements[3].hub.as_deref(), Some(o.as_str()));
    assert_eq!(pv.elements[0].hub, None);
    assert_eq!(pv.elements[0].flowing_out, [false, true], "[audio, video]");
    assert_eq!(pv.connections.len(), 3);
    // Every connection on the way carries a's video to x.
    for c in &pv.connections {
        assert_eq!(c.carries, [(a.clone(), x.clone())], "{:?}", c.edge);
    }
    // Without a source, the hub passes nothing: the connections carry nothing.
    h.invoke(1, &o, "removeSource", json!({}));
    let v = h.e.view(ALL, None);
    assert!(v.pipelines[0]
        .connections
        .iter()
        .all(|c| c.carries.is_empty()));

    // One element's stored properties; getStats left to the caller for some classes.
    h.invoke(1, &pass, "setName", json!({"name": "p1"}));
    let d = h.e.element_detail(&pass, 5, &[]).unwrap();
    assert_eq!(d.properties["name"], "p1");
    assert_eq!(d.properties["mediaPipeline"], json!(p), "given at creation");
    assert_eq!(
        d.stats,
        Some(Default::default()),
        "latencyStats off: nothing"
    );
    let d = h.e.element_detail(&a, 5, &["WebRtcEndpoint"]).unwrap();
    assert_eq!(d.stats, None);
    assert!(
        h.e.element_detail(&p, 5, &[]).is_none(),
        "a pipeline is no element"
    );
}

#[test]
fn the_limits_keep_the_first_pipelines_and_say_so() {
    let mut h = H::new();
    let ps: Vec<String> = (0..3).map(|_| h.create(1, "MediaPipeline", None)).collect();
    for _ in 0..3 {
        h.create(1, "PassThrough", Some(&ps[1]));
    }
    let limits = ViewLimits {
        pipelines: 2,
        elements: 2,
        connections: 0,
        ..ALL
    };
    let v = h.e.view(limits, None);
    assert!(v.truncated);
    let shown: Vec<(&str, usize, bool)> = (v.pipelines.iter())
        .map(|p| (p.id.as_str(), p.elements.len(), p.truncated))
        .collect();
    assert_eq!(
        shown,
        [(ps[0].as_str(), 0, false), (ps[1].as_str(), 2, true)]
    );
    let one = h.e.view(limits, Some(&ps[2]));
    assert_eq!(one.pipelines.len(), 1);
    assert!(!one.truncated);
}

#[test]
fn the_connection_limit_leaves_connections_out_and_says_so() {
    let mut h = H::new();
    let p = h.create(1, "MediaPipeline", None);
    let a = h.create(1, "PassThrough", Some(&p));
    let b = h.create(1, "PassThrough", Some(&p));
    h.invoke(1, &a, "connect", json!({"sink": b, "mediaType": "VIDEO"}));
    h.invoke(1, &b, "connect", json!({"sink": a, "mediaType": "AUDIO"}));
    let one = ViewLimits {
        connections: 1,
        ..ALL
    };
    let v = h.e.view(one, None);
    assert!(v.truncated);
    let pv = &v.pipelines[0];
    assert_eq!(pv.elements.len(), 2, "the elements all shown");
    assert_eq!(pv.connections.len(), 1);
    assert_eq!(pv.connections[0].edge.source, a, "the first made first");
    assert!(pv.truncated);
    let v = h.e.view(ALL, None);
    assert!(!v.truncated && !v.pipelines[0].truncated);
    assert_eq!(v.pipelines[0].connections.len(), 2);
}

#[test]
fn long_names_and_many_tags_are_cut() {
    let mut h = H::new();
    let p = h.create(1, "MediaPipeline", None);
    let a = h.create(1, "PassThrough", Some(&p));
    let long = "é".repeat(5000);
    h.invoke(1, &p, "setName", json!({"name": long}));
    h.invoke(1, &a, "setName", json!({"name": long}));
    for i in 0..50 {
        h.invoke(
            1,
            &a,
            "addTag",
            json!({"key": format!("k{i}{long}"), "value": long}),
        );
    }
    let small = ViewLimits {
        tags: 3,
        text: 10,
        ..ALL
    };
    let v = h.e.view(small, None);
    let cut = format!("{}…", "é".repeat(9));
    assert_eq!(v.pipelines[0].name.as_deref(), Some(cut.as_str()));
    let e = &v.pipelines[0].elements[0];
    assert_eq!(e.name.as_deref(), Some(cut.as_str()));
    assert_eq!(e.tag_count, 50);
    let tags: Vec<(&str, &str)> = e
        .tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let key = |i: u32| format!("k{i}{}…", "é".repeat(7));
    assert_eq!(
        tags,
        [0, 1, 2]
            .map(|i| (key(i), cut.clone()))
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>()
    );
    // Short texts as they are; the element's own view has them all.
    h.invoke(1, &a, "setName", json!({"name": "short"}));
    assert_eq!(
        h.e.view(small, None).pipelines[0].elements[0]
            .name
            .as_deref(),
        Some("short")
    );
    let d = h.e.element_detail(&a, 5, &[]).unwrap();
    assert_eq!(d.element.tags.len(), 50);
}
