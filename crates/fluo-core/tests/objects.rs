//! MediaObject basics, ServerManager, release cascades, describe.
mod common;
use common::H;
use serde_json::json;

#[test]
fn ids_names_tags_and_creation_time() {
    let mut h = H::new();
    let p = h.create(1, "MediaPipeline", None);
    assert!(p.ends_with("_kurento.MediaPipeline") && p.len() == 36 + 22);
    let e = h.create(1, "PassThrough", Some(&p));
    assert!(e.starts_with(&format!("{p}/")) && e.ends_with("_kurento.PassThrough"));
    assert_eq!(h.invoke(1, &e, "getName", json!({})), json!(e));
    h.invoke(1, &e, "setName", json!({"name": "pt"}));
    assert_eq!(h.invoke(1, &e, "getName", json!({})), "pt");
    assert_eq!(h.invoke(1, &e, "getCreationTime", json!({})), 1_700_000_000);
    assert_eq!(h.invoke(1, &e, "getParent", json!({})), json!(p));
    assert_eq!(h.invoke(1, &e, "getMediaPipeline", json!({})), json!(p));
    assert_eq!(h.invoke(1, &p, "getMediaPipeline", json!({})), json!(p));
    assert_eq!(h.invoke(1, &p, "getChildren", json!({})), json!([e]));
    h.invoke(1, &e, "addTag", json!({"key":"k","value":"v"}));
    h.invoke(1, &e, "addTag", json!({"key":"k","value":"w"}));
    assert_eq!(h.invoke(1, &e, "getTag", json!({"key":"k"})), "w");
    assert_eq!(
        h.invoke(1, &e, "getTags", json!({})),
        json!([{"__module__":"kurento","__type__":"Tag","key":"k","value":"w"}])
    );
    h.invoke(1, &e, "removeTag", json!({"key":"k"}));
    let r = h.call(
        1,
        "invoke",
        json!({"object": e, "operation":"getTag","operationParams":{"key":"k"}}),
    );
    assert_eq!(r["error"]["code"], 40110);
    assert_eq!(r["error"]["data"]["type"], "MEDIA_OBJECT_TAG_KEY_NOT_FOUND");
}

#[test]
fn events_carry_tags_only_when_asked() {
    let mut h = H::new();
    let p = h.create(1, "MediaPipeline", None);
    let a = h.create(1, "PassThrough", Some(&p));
    let b = h.create(1, "PassThrough", Some(&p));
    h.ok(
        1,
        "subscribe",
        json!({"object": a, "type": "ElementConnected"}),
    );
    h.invoke(1, &a, "addTag", json!({"key":"room","value":"7"}));
    h.invoke(1, &a, "connect", json!({"sink": b, "mediaType": "VIDEO"}));
    let ev = h.events(1);
    assert_eq!(ev[0]["data"]["tags"], json!([]));
    h.invoke(
        1,
        &a,
        "setSendTagsInEvents",
        json!({"sendTagsInEvents": true}),
    );
    h.invoke(1, &a, "connect", json!({"sink": b, "mediaType": "AUDIO"}));
    let ev = h.events(1);
    assert_eq!(ev[0]["data"]["tags"][0]["key"], "room");
    assert_eq!(ev[0]["data"]["type"], "ElementConnected");
    assert_eq!(ev[0]["data"]["source"], json!(a));
}

#[test]
fn release_cascades_with_events_and_is_idempotent() {
    let mut h = H::new();
    h.ok(
        1,
        "subscribe",
        json!({"object":"manager_ServerManager","type":"ObjectDestroyed"}),
    );
    h.ok(
        1,
        "subscribe",
        json!({"object":"manager_ServerManager","type":"ObjectCreated"}),
    );
    let p = h.create(1, "MediaPipeline", None);
    let a = h.create(1, "PassThrough", Some(&p));
    let created = h.events(1);
    assert_eq!(created.len(), 2);
    assert_eq!(created[1]["data"]["object"], json!(a));
    h.ok(1, "release", json!({"object": p}));
    let gone: Vec<_> = h
        .events(1)
        .iter()
        .map(|e| e["data"]["objectId"].clone())
        .collect();
    assert_eq!(gone, [json!(a), json!(p)]);
    h.ok(1, "release", json!({"object": p}));
    assert_eq!(
        h.err(1, "invoke", json!({"object": a, "operation":"getName"})),
        40101
    );
}

#[test]
fn elements_created_later_are_seen_by_every_session_holding_the_pipeline() {
    let mut h = H::new();
    h.open(2);
    let p = h.create(1, "MediaPipeline", None);
    h.ok(2, "describe", json!({"object": p}));
    let e = h.create(1, "PassThrough", Some(&p));
    let s1 = h.session(1);
    h.ok(1, "unref", json!({"object": e, "sessionId": s1}));
    // Session 2 still holds the element it saw through the pipeline.
    assert_eq!(h.invoke(2, &e, "getId", json!({})), json!(e));
}

#[test]
fn describe_gives_type_and_ancestors() {
    let mut h = H::new();
    let p = h.create(1, "MediaPipeline", None);
    let e = h.create(1, "kurento.PassThrough", Some(&p));
    let d = h.ok(1, "describe", json!({"object": e}));
    assert_eq!(d["type"], "PassThrough");
    assert_eq!(d["qualifiedType"], "kurento.PassThrough");
    assert_eq!(
        d["hierarchy"],
        json!(["kurento.MediaElement", "kurento.MediaObject"])
    );
    assert_eq!(h.err(1, "describe", json!({"object": "nope"})), 40101);
}

#[test]
fn server_manager_operations() {
    let mut h = H::new();
    let sm = "manager_ServerManager";
    let info = h.invoke(1, sm, "getInfo", json!({}));
    assert_eq!(info["type"], "KMS");
    assert_eq!(info["capabilities"], json!(["transactions"]));
    let names: Vec<_> = info["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].clone())
        .collect();
    assert_eq!(names, [json!("core"), json!("elements"), json!("filters")]);
    assert_eq!(
        info["modules"][0]["factories"],
        json!(["HubPort", "MediaPipeline", "PassThrough"])
    );
    assert_eq!(
        info["modules"][1]["factories"],
        json!(["Dispatcher", "DispatcherOneToMany"])
    );
    assert_eq!(h.invoke(1, sm, "getCpuCount", json!({})), 2);
    assert_eq!(h.invoke(1, sm, "getUsedCpu", json!({})), 1.5);
    assert_eq!(h.invoke(1, sm, "getUsedMemory", json!({})), 10_240);
    assert_eq!(h.invoke(1, sm, "getMetadata", json!({})), "");
    let kmd: serde_json::Value = serde_json::from_str(
        h.invoke(1, sm, "getKmd", json!({"moduleName":"core"}))
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(kmd["name"], "core");
    let r = h.call(
        1,
        "invoke",
        json!({"object": sm, "operation":"getKmd","operationParams":{"moduleName":"x"}}),
    );
    assert_eq!(r["error"]["code"], 40500);
    assert_eq!(r["error"]["data"]["type"], "UNDEFINED");
    let p = h.create(1, "MediaPipeline", None);
    assert_eq!(h.invoke(1, sm, "getPipelines", json!({})), json!([p]));
    let s = h.session(1);
    assert_eq!(h.invoke(1, sm, "getSessions", json!({})), json!([s]));
    assert_eq!(h.err(1, "create", json!({"type":"ServerManager"})), 40108);
}

#[test]
fn properties_read_defaults_and_keep_what_was_set() {
    let mut h = H::new();
    let p = h.create(1, "MediaPipeline", None);
    let e = h.create(1, "PassThrough", Some(&p));
    assert_eq!(h.invoke(1, &p, "getLatencyStats", json!({})), false);
    h.invoke(
        1,
        &e,
        "setMinEncoderBitrate",
        json!({"minEncoderBitrate": 100000}),
    );
    assert_eq!(h.invoke(1, &e, "getMinEncoderBitrate", json!({})), 100000);
    assert_eq!(h.invoke(1, &e, "getMaxEncoderBitrate", json!({})), 0);
    // final properties have no setter
    let r = h.call(
        1,
        "invoke",
        json!({"object": e, "operation":"setId","operationParams":{"id":"x"}}),
    );
    assert_eq!(r["error"]["code"], 40008);
    // As with KMS, an element's ElementStats only while its pipeline's latencyStats is on,
    // under the element's id; a PassThrough measures nothing (media does not cross it).
    assert_eq!(h.invoke(1, &e, "getStats", json!({})), json!({}));
    h.invoke(1, &p, "setLatencyStats", json!({"latencyStats": true}));
    let stats = h.invoke(1, &e, "getStats", json!({"mediaType": "VIDEO"}));
    let entry = &stats[e.as_str()];
    assert_eq!(entry["__type__"], "ElementStats");
    assert_eq!(
        (&entry["id"], &entry["type"]),
        (&json!(e), &json!("element"))
    );
    assert_eq!(entry["inputLatency"], json!([]));
    assert_eq!(
        h.invoke(1, &e, "isMediaFlowingIn", json!({"mediaType":"VIDEO"})),
        false
    );
}
