//! WHIP/WHEP's engine side: the `fluoWhip` / `fluoWhep` create property gives a
//! WebRtcEndpoint a route and its URL as a tag; an HTTP call reaches the endpoint's own
//! processOffer; the route goes with the endpoint however it goes (release, DELETE, the
//! session's expiry), so no path outlives its element. `fluoWhepSource` on any element: each
//! POST makes a viewer's WebRtcEndpoint connected from it.
mod common;
use common::H;
use fluo_core::http::{HttpRoutes, Route};
use fluo_core::whip::{SignalCall, SignalOp, SignalReply};
use fluo_core::{Element, ElementCx, FactoryCx};
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ANSWER: &str = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:abcd\r\na=recvonly\r\n";

/// A WebRtcEndpoint whose processOffer answers [`ANSWER`] (and remembers the offer).
struct FakeRtc(Arc<Mutex<Vec<String>>>);

impl Element for FakeRtc {
    fn invoke(
        &mut self,
        cx: &mut ElementCx<'_>,
        method: &str,
        params: &Map<String, Value>,
    ) -> Option<Result<Value, fluo_api::KurentoError>> {
        if method == "addIceCandidate" {
            self.0.lock().unwrap().push(params["candidate"].to_string());
            return Some(Ok(Value::Null));
        }
        (method == "processOffer").then(|| {
            let offer = params["offer"].as_str().unwrap_or_default().to_string();
            if offer == "bad" {
                return Err(fluo_api::KurentoError::new(
                    fluo_api::ErrorCode::SdpParseError,
                    "bad",
                ));
            }
            self.0.lock().unwrap().push(offer);
            cx.emit("MediaSessionStarted", Map::new());
            Ok(Value::from(ANSWER))
        })
    }

    fn restart_ice(
        &mut self,
        _cx: &mut ElementCx<'_>,
        ufrag: &str,
        pwd: &str,
    ) -> Option<Result<String, fluo_api::KurentoError>> {
        self.0
            .lock()
            .unwrap()
            .push(format!("restart {ufrag} {pwd}"));
        if ufrag == "fail" {
            return Some(Err(fluo_api::KurentoError::new(
                fluo_api::ErrorCode::SdpEndPointProcessOfferError,
                "no",
            )));
        }
        if ufrag == "lost" {
            return Some(Err(fluo_api::KurentoError::new(
                fluo_api::ErrorCode::UnexpectedError,
                "ICE was restarted, then the restart failed",
            )));
        }
        Some(Ok(RESTARTED.to_string()))
    }
}

/// [`FakeRtc`]'s answer after an ICE restart.
const RESTARTED: &str = "v=0\r\na=ice-lite\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=ice-ufrag:n3w1\r\na=ice-pwd:n3wpassword0123456789012\r\na=candidate:1 1 udp 2130706175 127.0.0.1 40000 typ host\r\na=recvonly\r\n";

type Calls = Arc<Mutex<Vec<SignalCall>>>;

fn harness() -> (H, Arc<HttpRoutes>, Calls, Arc<Mutex<Vec<String>>>) {
    let mut h = H::new();
    let offers = Arc::new(Mutex::new(vec![]));
    let o = offers.clone();
    h.e.register_factory(
        "WebRtcEndpoint",
        Box::new(move |_: &FactoryCx<'_>| Ok(Box::new(FakeRtc(o.clone())) as Box<dyn Element>)),
    );
    let routes = Arc::new(HttpRoutes::new());
    routes.set_base("http://h:1".into());
    let calls: Calls = Arc::new(Mutex::new(vec![]));
    let c = calls.clone();
    h.e.set_signalling(
        routes.clone(),
        Arc::new(move |call| c.lock().unwrap().push(call)),
    );
    (h, routes, calls, offers)
}

fn create(h: &mut H, pipe: &str, props: Value) -> Value {
    h.call(
        1,
        "create",
        json!({"type":"WebRtcEndpoint","constructorParams":{"mediaPipeline": pipe},"properties": props}),
    )
}

/// Sends `op` to the route at `path` as the listener does; the engine's answer.
fn http(
    h: &mut H,
    routes: &HttpRoutes,
    calls: &Calls,
    path: &str,
    session: Option<String>,
    op: SignalOp,
) -> Result<fluo_core::whip::SignalAnswer, fluo_core::http::HttpRefusal> {
    let Some(Route::Signal(target)) = routes.find(path) else {
        return Err(fluo_core::http::HttpRefusal::new(404, "no route"));
    };
    let got = Arc::new(Mutex::new(None));
    let g = got.clone();
    let reply = SignalReply::new(
        || true,
        move |r| {
            *g.lock().unwrap() = Some(r);
            true
        },
    );
    target.call(session, op, reply);
    let call = calls
        .lock()
        .unwrap()
        .pop()
        .expect("a call reached the sink");
    h.e.signal(h.now, call);
    let r = got.lock().unwrap().take().expect("an answer");
    r
}

#[test]
fn the_property_gives_a_route_and_a_tag_and_the_offer_reaches_process_offer() {
    let (mut h, routes, calls, offers) = harness();
    let pipe = h.create(1, "MediaPipeline", None);
    let plain = create(&mut h, &pipe, json!({"other": 1}));
    assert!(plain["result"].is_object(), "{plain}");
    assert_eq!(routes.len(), 0, "no route without the property");
    for bad in [
        json!({"fluoWhip": 1}),
        json!({"fluoWhip": true, "fluoWhep": true}),
    ] {
        let r = create(&mut h, &pipe, bad);
        assert_eq!(r["error"]["code"], 40107, "{r}");
    }
    let r = h.call(
        1,
        "create",
        json!({"type":"PassThrough","constructorParams":{"mediaPipeline": pipe},"properties":{"fluoWhep": true}}),
    );
    assert_eq!(r["error"]["code"], 40107, "{r}");
    assert_eq!(routes.len(), 0);

    let ep = create(&mut h, &pipe, json!({"fluoWhip": true}))["result"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(routes.len(), 1);
    let url = h.invoke(1, &ep, "getTag", json!({"key": "fluoWhipUrl"}));
    let path = url
        .as_str()
        .unwrap()
        .strip_prefix("http://h:1")
        .unwrap()
        .to_string();
    assert!(path.starts_with("/whip/"), "{path}");
    h.ok(
        1,
        "subscribe",
        json!({"type":"MediaSessionStarted","object": ep}),
    );

    let a = http(
        &mut h,
        &routes,
        &calls,
        &path,
        None,
        SignalOp::Offer("v=0\r\n".into()),
    )
    .unwrap();
    assert_eq!((a.status, a.sdp.as_deref()), (201, Some(ANSWER)));
    assert_eq!(a.etag.as_deref(), Some("\"abcd\""));
    let location = a.location.unwrap();
    assert!(location.starts_with(&format!("{path}/")), "{location}");
    assert_eq!(*offers.lock().unwrap(), ["v=0\r\n"]);
    let ev = h.events(1);
    assert!(
        ev.iter().any(|e| e["type"] == "MediaSessionStarted"),
        "{ev:?}"
    );
    let again = http(
        &mut h,
        &routes,
        &calls,
        &path,
        None,
        SignalOp::Offer("v=0\r\n".into()),
    );
    assert_eq!(again.unwrap_err().status, 409);
    let session = location.rsplit('/').next().map(str::to_string);
    let wrong = http(
        &mut h,
        &routes,
        &calls,
        &path,
        Some("x".into()),
        SignalOp::Delete,
    );
    assert_eq!(wrong.unwrap_err().status, 404);
    let done = http(&mut h, &routes, &calls, &path, session, SignalOp::Delete).unwrap();
    assert_eq!(done.status, 200);
    assert_eq!(
        routes.len(),
        0,
        "DELETE released the endpoint and its route"
    );
    let r = h.call(1, "invoke", json!({"object": ep, "operation": "getName"}));
    assert_eq!(r["error"]["code"], 40101, "{r}");
}

#[test]
fn the_route_goes_with_the_endpoint_on_release_and_on_session_expiry() {
    let (mut h, routes, _calls, _) = harness();
    let pipe = h.create(1, "MediaPipeline", None);
    let ep = create(&mut h, &pipe, json!({"fluoWhep": true}))["result"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(routes.len(), 1);
    h.ok(1, "release", json!({"object": ep}));
    assert_eq!(routes.len(), 0, "release removes the route");
    let _ = create(&mut h, &pipe, json!({"fluoWhep": true}));
    assert_eq!(routes.len(), 1);
    h.close(1);
    h.advance(Duration::from_secs(3600));
    assert_eq!(
        routes.len(),
        0,
        "an expired session's endpoint takes its route along"
    );
}

#[test]
fn without_a_listener_the_property_is_refused_with_40300() {
    let mut h = H::new();
    let o = Arc::new(Mutex::new(vec![]));
    h.e.register_factory(
        "WebRtcEndpoint",
        Box::new(move |_: &FactoryCx<'_>| Ok(Box::new(FakeRtc(o.clone())) as Box<dyn Element>)),
    );
    let pipe = h.create(1, "MediaPipeline", None);
    let r = create(&mut h, &pipe, json!({"fluoWhip": true}));
    assert_eq!(r["error"]["code"], 40300, "{r}");
}

#[test]
fn a_source_url_makes_a_connected_endpoint_per_viewer() {
    let (mut h, routes, calls, offers) = harness();
    let pipe = h.create(1, "MediaPipeline", None);
    h.ok(
        1,
        "subscribe",
        json!({"type":"ObjectCreated","object":"manager_ServerManager"}),
    );
    let src = h.ok(
        1,
        "create",
        json!({"type":"PassThrough","constructorParams":{"mediaPipeline": pipe},"properties":{"fluoWhepSource": true}}),
    )["value"]
        .as_str()
        .unwrap()
        .to_string();
    let url = h.invoke(1, &src, "getTag", json!({"key": "fluoWhepSourceUrl"}));
    let path = url
        .as_str()
        .unwrap()
        .strip_prefix("http://h:1")
        .unwrap()
        .to_string();
    assert!(path.starts_with("/whep/"), "{path}");
    assert_eq!(routes.len(), 1);
    let _ = h.events(1);
    let mut viewers = vec![];
    for i in 0..3 {
        let a = http(
            &mut h,
            &routes,
            &calls,
            &path,
            None,
            SignalOp::Offer(format!("v=0 {i}")),
        )
        .unwrap();
        assert_eq!(a.status, 201);
        let location = a.location.unwrap();
        assert!(
            location.starts_with("/whep/") && !location.starts_with(&path),
            "{location}"
        );
        viewers.push(location);
    }
    assert_eq!(offers.lock().unwrap().len(), 3);
    assert_eq!(routes.len(), 4, "the source's URL and one per viewer");
    let created: Vec<String> = h
        .events(1)
        .iter()
        .filter(|e| e["type"] == "ObjectCreated")
        .map(|e| e["data"]["object"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(created.len(), 3, "ObjectCreated for each viewer's endpoint");
    let sinks = h.invoke(1, &src, "getSinkConnections", json!({}));
    for v in &created {
        assert!(
            sinks.to_string().contains(v.as_str()),
            "{v} connected from the source: {sinks}"
        );
        let tag = h.invoke(1, v, "getTag", json!({"key": "fluoWhepSource"}));
        assert_eq!(tag, json!(src));
    }
    // The session resources are the viewers' own: PATCH and DELETE go there.
    let (vpath, session) = viewers[0].rsplit_once('/').unwrap();
    let d = http(
        &mut h,
        &routes,
        &calls,
        vpath,
        Some(session.into()),
        SignalOp::Delete,
    )
    .unwrap();
    assert_eq!(d.status, 200);
    assert_eq!(routes.len(), 3);
    let r = http(
        &mut h,
        &routes,
        &calls,
        &path,
        Some(session.into()),
        SignalOp::Delete,
    );
    assert_eq!(r.unwrap_err().status, 404);
    // An offer the endpoint refuses leaves nothing behind.
    let objects = h.e.object_count();
    let r = http(
        &mut h,
        &routes,
        &calls,
        &path,
        None,
        SignalOp::Offer("bad".into()),
    );
    assert_eq!(r.unwrap_err().status, 400);
    assert_eq!((h.e.object_count(), routes.len()), (objects, 3));
    // Viewers are bounded per source.
    for _ in 2..fluo_core::whip::MAX_SOURCE_VIEWERS {
        let a = http(
            &mut h,
            &routes,
            &calls,
            &path,
            None,
            SignalOp::Offer("v=0".into()),
        );
        assert_eq!(a.unwrap().status, 201);
    }
    let r = http(
        &mut h,
        &routes,
        &calls,
        &path,
        None,
        SignalOp::Offer("v=0".into()),
    );
    assert_eq!(r.unwrap_err().status, 503);
}

#[test]
fn an_endpoint_can_be_published_by_whip_and_a_whep_source_at_once() {
    let (mut h, routes, _calls, _) = harness();
    let pipe = h.create(1, "MediaPipeline", None);
    let r = create(
        &mut h,
        &pipe,
        json!({"fluoWhip": true, "fluoWhepSource": true}),
    );
    let ep = r["result"]["value"].as_str().expect("created").to_string();
    assert_eq!(routes.len(), 2);
    let a = h.invoke(1, &ep, "getTag", json!({"key": "fluoWhipUrl"}));
    let b = h.invoke(1, &ep, "getTag", json!({"key": "fluoWhepSourceUrl"}));
    assert!(a.as_str().unwrap().contains("/whip/") && b.as_str().unwrap().contains("/whep/"));
    h.ok(1, "release", json!({"object": ep}));
    assert_eq!(routes.len(), 0);
}

/// An offer with RFC 9725's credentials and two m-sections (mids 0 and 1).
const RFC_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n";

/// RFC 9725's trickle example (section 4.3.1): the session's own credentials repeated, with
/// the candidates of the audio section; plus one for the video section and a line Fluo has
/// no use for.
const RFC_FRAG: &str = "a=ice-options:trickle ice2\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\na=candidate:473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active generation 0 ufrag EsAw network-id 1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\nc=IN IP4 0.0.0.0\r\na=candidate:2154773085 1 udp 2122194687 198.51.100.2 61765 typ host\r\na=end-of-candidates\r\n";

#[test]
fn a_patch_repeating_the_sessions_credentials_is_a_trickle_with_each_candidates_own_mid() {
    let (mut h, routes, calls, seen) = harness();
    let pipe = h.create(1, "MediaPipeline", None);
    let ep = create(&mut h, &pipe, json!({"fluoWhip": true}))["result"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let url = h.invoke(1, &ep, "getTag", json!({"key": "fluoWhipUrl"}));
    let path = url
        .as_str()
        .unwrap()
        .strip_prefix("http://h:1")
        .unwrap()
        .to_string();
    let a = http(
        &mut h,
        &routes,
        &calls,
        &path,
        None,
        SignalOp::Offer(RFC_OFFER.into()),
    );
    let session = a
        .unwrap()
        .location
        .unwrap()
        .rsplit('/')
        .next()
        .map(str::to_string);
    seen.lock().unwrap().clear();
    let patch = |frag: &str| SignalOp::Patch {
        frag: frag.into(),
        if_match: None,
    };

    // A bad candidate anywhere: nothing is added.
    let bad = RFC_FRAG.replace("61765 typ host", "port typ host");
    let r = http(&mut h, &routes, &calls, &path, session.clone(), patch(&bad));
    assert_eq!(r.unwrap_err().status, 400);
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    // A mid the offer does not have: nothing is added.
    let r = http(
        &mut h,
        &routes,
        &calls,
        &path,
        session.clone(),
        patch(&RFC_FRAG.replace("a=mid:1", "a=mid:7")),
    );
    assert_eq!(r.unwrap_err().status, 422);
    assert!(seen.lock().unwrap().is_empty());

    let r = http(
        &mut h,
        &routes,
        &calls,
        &path,
        session.clone(),
        patch(RFC_FRAG),
    );
    assert_eq!(r.unwrap().status, 204);
    let added: Vec<Value> = (seen.lock().unwrap().iter())
        .map(|c| serde_json::from_str(c).unwrap())
        .collect();
    let sections: Vec<(Value, Value)> = (added.iter())
        .map(|c| (c["sdpMid"].clone(), c["sdpMLineIndex"].clone()))
        .collect();
    assert_eq!(
        sections,
        [
            (json!("0"), json!(0)),
            (json!("0"), json!(0)),
            (json!("1"), json!(1))
        ],
        "{added:?}"
    );
    assert!(added[2]["candidate"]
        .as_str()
        .unwrap()
        .starts_with("candidate:2154773085 1 udp"));

    // Other credentials without If-Match: 428 (a restart must be conditional); one
    // credential changed is not a restart either (RFC 9725 4.3.2 renews both): 400.
    for restart in [
        RFC_FRAG.replace("ice-ufrag:EsAw", "ice-ufrag:New1"),
        RFC_FRAG.replace("ice-pwd:P2uY", "ice-pwd:XXXX"),
    ] {
        let r = http(
            &mut h,
            &routes,
            &calls,
            &path,
            session.clone(),
            patch(&restart),
        );
        assert_eq!(r.unwrap_err().status, 428);
        let star = SignalOp::Patch {
            frag: restart.clone(),
            if_match: Some("*".into()),
        };
        let r = http(&mut h, &routes, &calls, &path, session.clone(), star);
        assert_eq!(r.unwrap_err().status, 400);
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "nothing added by a refused restart"
    );
}

#[test]
fn an_ice_restart_answers_new_credentials_and_a_new_etag_that_trickle_must_name() {
    let (mut h, routes, calls, seen) = harness();
    let pipe = h.create(1, "MediaPipeline", None);
    let ep = create(&mut h, &pipe, json!({"fluoWhip": true}))["result"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let url = h.invoke(1, &ep, "getTag", json!({"key": "fluoWhipUrl"}));
    let path = url.as_str().unwrap().strip_prefix("http://h:1").unwrap();
    let a = http(
        &mut h,
        &routes,
        &calls,
        path,
        None,
        SignalOp::Offer(RFC_OFFER.into()),
    );
    let a = a.unwrap();
    assert_eq!(a.etag.as_deref(), Some("\"abcd\""));
    let session = a.location.unwrap().rsplit('/').next().map(str::to_string);
    seen.lock().unwrap().clear();
    let mut patch = |frag: &str, if_match: &str| {
        let op = SignalOp::Patch {
            frag: frag.into(),
            if_match: Some(if_match.into()),
        };
        http(&mut h, &routes, &calls, path, session.clone(), op)
    };
    let restart = "a=ice-ufrag:ZZy2\r\na=ice-pwd:w9dGRB0Tn/HZuuOxCUJYqS+x\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:5 1 udp 2122260223 192.0.2.9 61000 typ host\r\n";

    // Refused before the endpoint is asked: a stale ETag, other m-sections, one credential.
    assert_eq!(patch(restart, "\"old\"").unwrap_err().status, 412);
    let moved = restart.replace("a=mid:0", "a=mid:9");
    assert_eq!(patch(&moved, "*").unwrap_err().status, 422);
    let half = "a=ice-ufrag:ZZy2\r\na=mid:0\r\n";
    assert_eq!(patch(half, "*").unwrap_err().status, 400);
    assert_eq!(patch("a=mid:0\r\n", "*").unwrap_err().status, 400);
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    // The endpoint refusing: 422, the session as it was; failing after its ICE was reset:
    // 500, the session's ICE lost.
    let failing = restart.replace("ZZy2", "fail");
    assert_eq!(patch(&failing, "*").unwrap_err().status, 422);
    let lost = patch(&restart.replace("ZZy2", "lost"), "*").unwrap_err();
    assert_eq!(lost.status, 500, "{}", lost.text);
    assert!(lost.text.contains("lost"), "{}", lost.text);
    seen.lock().unwrap().clear();

    // With If-Match: * (or the session's ETag): restarted, then the candidates added.
    let a = patch(restart, "\"abcd\"").unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.etag.as_deref(), Some("\"n3w1\""));
    let frag = a.frag.clone().expect("a fragment");
    assert_eq!(
        frag,
        "a=ice-lite\r\na=ice-ufrag:n3w1\r\na=ice-pwd:n3wpassword0123456789012\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=candidate:1 1 udp 2130706175 127.0.0.1 40000 typ host\r\na=end-of-candidates\r\n"
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], "restart ZZy2 w9dGRB0Tn/HZuuOxCUJYqS+x");
        assert!(seen[1].contains("192.0.2.9 61000"), "{}", seen[1]);
    }
    // The same PATCH again (its answer lost): the same answer, no second restart.
    let again = patch(restart, "*").unwrap();
    assert_eq!((again.status, again.frag), (200, Some(frag)));
    assert!(!seen
        .lock()
        .unwrap()
        .iter()
        .skip(2)
        .any(|s| s.starts_with("restart")));
    // Trickle names the new ICE session, and may repeat its credentials.
    let cand = "a=mid:0\r\na=candidate:6 1 udp 2122260223 192.0.2.9 61001 typ host\r\n";
    assert_eq!(patch(cand, "\"abcd\"").unwrap_err().status, 412);
    let same = format!("a=ice-ufrag:ZZy2\r\na=ice-pwd:w9dGRB0Tn/HZuuOxCUJYqS+x\r\n{cand}");
    assert_eq!(patch(&same, "\"n3w1\"").unwrap().status, 204);
    // A second restart goes from the new credentials.
    let second = restart.replace("ZZy2", "Yyy3").replace("w9dG", "q8cF");
    assert_eq!(patch(&second, "*").unwrap().status, 200);
}

#[test]
fn a_late_trickle_of_the_replaced_ice_session_restarts_nothing() {
    let (mut h, routes, calls, seen) = harness();
    let pipe = h.create(1, "MediaPipeline", None);
    let ep = create(&mut h, &pipe, json!({"fluoWhip": true}))["result"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let url = h.invoke(1, &ep, "getTag", json!({"key": "fluoWhipUrl"}));
    let path = url.as_str().unwrap().strip_prefix("http://h:1").unwrap();
    let a = http(
        &mut h,
        &routes,
        &calls,
        path,
        None,
        SignalOp::Offer(RFC_OFFER.into()),
    );
    let session = a
        .unwrap()
        .location
        .unwrap()
        .rsplit('/')
        .next()
        .map(str::to_string);
    let mut patch = |frag: &str, if_match: Option<&str>| {
        let op = SignalOp::Patch {
            frag: frag.into(),
            if_match: if_match.map(str::to_string),
        };
        http(&mut h, &routes, &calls, path, session.clone(), op)
    };
    let restarts = |seen: &Arc<Mutex<Vec<String>>>| {
        (seen.lock().unwrap().iter())
            .filter(|s| s.starts_with("restart"))
            .count()
    };
    // New credentials without If-Match: 428, nothing restarted.
    let restart = "a=ice-ufrag:ZZy2\r\na=ice-pwd:w9dGRB0Tn/HZuuOxCUJYqS+x\r\na=mid:0\r\n";
    assert_eq!(patch(restart, None).unwrap_err().status, 428);
    assert_eq!(restarts(&seen), 0);
    assert_eq!(patch(restart, Some("*")).unwrap().status, 200);
    assert_eq!(restarts(&seen), 1);
    // A trickle the client sent before its restart, late: the old credentials, with or
    // without If-Match, restart nothing (they used to restart ICE again without If-Match).
    let late = RFC_FRAG;
    let r = patch(late, None).unwrap_err();
    assert_eq!(r.status, 412, "{}", r.text);
    assert_eq!(patch(late, Some("*")).unwrap_err().status, 412);
    assert_eq!(patch(late, Some("\"n3w1\"")).unwrap_err().status, 412);
    assert_eq!(restarts(&seen), 1, "no second restart");
    // The new session goes on: its trickle is taken.
    let trickle = format!("{restart}a=candidate:6 1 udp 2122260223 192.0.2.9 61001 typ host\r\n");
    assert_eq!(patch(&trickle, None).unwrap().status, 204);
    assert_eq!(patch(&trickle, Some("\"n3w1\"")).unwrap().status, 204);
    assert_eq!(restarts(&seen), 1);
}

/// A `fluoWhepSource` PassThrough and its URL's path.
fn source(h: &mut H, pipe: &str) -> (String, String) {
    let src = h.ok(
        1,
        "create",
        json!({"type":"PassThrough","constructorParams":{"mediaPipeline": pipe},"properties":{"fluoWhepSource": true}}),
    )["value"]
        .as_str()
        .unwrap()
        .to_string();
    let url = h.invoke(1, &src, "getTag", json!({"key": "fluoWhepSourceUrl"}));
    let path = url.as_str().unwrap().strip_prefix("http://h:1").unwrap();
    (src, path.to_string())
}

/// POSTs one viewer's offer to a source's path: the new endpoint's id.
fn viewer(h: &mut H, routes: &HttpRoutes, calls: &Calls, path: &str) -> String {
    let _ = h.events(1);
    let a = http(h, routes, calls, path, None, SignalOp::Offer("v=0".into()));
    assert_eq!(a.unwrap().status, 201);
    let ev = h.events(1);
    let created = ev.iter().find(|e| e["type"] == "ObjectCreated");
    created.expect("ObjectCreated")["data"]["object"]
        .as_str()
        .unwrap()
        .to_string()
}

fn alive(h: &mut H, id: &str) -> bool {
    let r = h.call(1, "invoke", json!({"object": id, "operation": "getName"}));
    r["result"].is_object()
}

#[test]
fn a_source_releases_viewers_that_do_not_connect_or_stay_disconnected() {
    use fluo_core::whip::{
        MAX_SOURCE_VIEWERS, TEMPLATE_CONNECT_TIMEOUT, TEMPLATE_DISCONNECTED_TIMEOUT,
    };
    use fluo_core::MediaEvent;
    let (mut h, routes, calls, _) = harness();
    let pipe = h.create(1, "MediaPipeline", None);
    h.ok(
        1,
        "subscribe",
        json!({"type":"ObjectCreated","object":"manager_ServerManager"}),
    );
    let (_src, path) = source(&mut h, &pipe);
    let (kept, silent, dropped) = (
        viewer(&mut h, &routes, &calls, &path),
        viewer(&mut h, &routes, &calls, &path),
        viewer(&mut h, &routes, &calls, &path),
    );
    h.advance(Duration::from_secs(10));
    for v in [&kept, &dropped] {
        let up = MediaEvent::ConnectionState { connected: true };
        h.e.emit_event(h.now, v, up);
    }
    h.advance(Duration::from_secs(10));
    let ice = MediaEvent::IceComponentState {
        state: "DISCONNECTED",
    };
    h.e.emit_event(h.now, &dropped, ice);
    // t = 20 s: nothing expired yet.
    h.advance(TEMPLATE_CONNECT_TIMEOUT - Duration::from_secs(21));
    assert!(alive(&mut h, &silent) && alive(&mut h, &dropped));
    h.advance(Duration::from_secs(2));
    assert!(
        !alive(&mut h, &silent),
        "not connected 30 s after its answer"
    );
    assert!(alive(&mut h, &kept) && alive(&mut h, &dropped));
    // The disconnected one goes 15 s after it went down (t = 35 s).
    assert_eq!(TEMPLATE_DISCONNECTED_TIMEOUT, Duration::from_secs(15));
    h.advance(Duration::from_secs(3));
    assert!(alive(&mut h, &dropped));
    h.advance(Duration::from_secs(2));
    assert!(!alive(&mut h, &dropped), "disconnected for 15 s");
    h.advance(Duration::from_secs(600));
    assert!(alive(&mut h, &kept), "a connected viewer stays");
    assert_eq!(routes.len(), 2, "the source's URL and the kept viewer's");

    // Abandoned POSTs do not close the source for good.
    for _ in 1..MAX_SOURCE_VIEWERS {
        viewer(&mut h, &routes, &calls, &path);
    }
    let full = http(
        &mut h,
        &routes,
        &calls,
        &path,
        None,
        SignalOp::Offer("v=0".into()),
    );
    assert_eq!(full.unwrap_err().status, 503);
    h.advance(TEMPLATE_CONNECT_TIMEOUT);
    viewer(&mut h, &routes, &calls, &path);
    assert!(alive(&mut h, &kept));
}

/// Sends `op` to `path` with a reply that is closed before the engine acts (`open` false) or
/// whose delivery fails (`open` true).
fn http_lost(h: &mut H, routes: &HttpRoutes, calls: &Calls, path: &str, op: SignalOp, open: bool) {
    let Some(Route::Signal(target)) = routes.find(path) else {
        panic!("no route at {path}");
    };
    target.call(None, op, SignalReply::new(move || open, |_| false));
    let call = calls.lock().unwrap().pop().expect("a call");
    h.e.signal(h.now, call);
}

#[test]
fn an_answer_the_client_did_not_get_leaves_no_viewer_and_no_stuck_session() {
    let (mut h, routes, calls, offers) = harness();
    let pipe = h.create(1, "MediaPipeline", None);
    h.ok(
        1,
        "subscribe",
        json!({"type":"ObjectCreated","object":"manager_ServerManager"}),
    );
    let (src, spath) = source(&mut h, &pipe);
    let objects = h.e.object_count();
    // Gone before the engine took it: nothing is made.
    http_lost(
        &mut h,
        &routes,
        &calls,
        &spath,
        SignalOp::Offer("v=0".into()),
        false,
    );
    assert_eq!((h.e.object_count(), routes.len()), (objects, 1));
    assert!(offers.lock().unwrap().is_empty());
    // Gone while it was answered: the viewer is released again.
    let _ = h.events(1);
    http_lost(
        &mut h,
        &routes,
        &calls,
        &spath,
        SignalOp::Offer("v=0".into()),
        true,
    );
    assert_eq!(offers.lock().unwrap().len(), 1, "the viewer answered");
    assert_eq!((h.e.object_count(), routes.len()), (objects, 1));
    let sinks = h.invoke(1, &src, "getSinkConnections", json!({}));
    assert_eq!(sinks, json!([]));

    // An application's endpoint: a retry gets its 201.
    let ep = create(&mut h, &pipe, json!({"fluoWhip": true}))["result"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let url = h.invoke(1, &ep, "getTag", json!({"key": "fluoWhipUrl"}));
    let path = url
        .as_str()
        .unwrap()
        .strip_prefix("http://h:1")
        .unwrap()
        .to_string();
    http_lost(
        &mut h,
        &routes,
        &calls,
        &path,
        SignalOp::Offer("v=0 a".into()),
        false,
    );
    let a = http(
        &mut h,
        &routes,
        &calls,
        &path,
        None,
        SignalOp::Offer("v=0 a".into()),
    );
    assert_eq!(
        a.unwrap().status,
        201,
        "the call the client left did nothing"
    );
    let ep2 = create(&mut h, &pipe, json!({"fluoWhip": true}))["result"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let url = h.invoke(1, &ep2, "getTag", json!({"key": "fluoWhipUrl"}));
    let path = url
        .as_str()
        .unwrap()
        .strip_prefix("http://h:1")
        .unwrap()
        .to_string();
    http_lost(
        &mut h,
        &routes,
        &calls,
        &path,
        SignalOp::Offer("v=0 b".into()),
        true,
    );
    let a = http(
        &mut h,
        &routes,
        &calls,
        &path,
        None,
        SignalOp::Offer("v=0 b".into()),
    );
    let a = a.unwrap();
    assert_eq!(
        (a.status, a.sdp.as_deref()),
        (201, Some(ANSWER)),
        "the retry"
    );
    let session = a.location.unwrap().rsplit('/').next().map(str::to_string);
    let other = http(
        &mut h,
        &routes,
        &calls,
        &path,
        None,
        SignalOp::Offer("v=0 c".into()),
    );
    assert_eq!(
        other.unwrap_err().status,
        409,
        "another offer: the session is taken"
    );
    let d = http(&mut h, &routes, &calls, &path, session, SignalOp::Delete);
    assert_eq!(
        d.unwrap().status,
        200,
        "the retry's Location is the session"
    );
}

#[test]
fn releasing_a_source_releases_the_viewers_it_made() {
    let (mut h, routes, calls, _) = harness();
    let pipe = h.create(1, "MediaPipeline", None);
    h.ok(
        1,
        "subscribe",
        json!({"type":"ObjectCreated","object":"manager_ServerManager"}),
    );
    let (src, path) = source(&mut h, &pipe);
    let (other, _) = source(&mut h, &pipe);
    let v1 = viewer(&mut h, &routes, &calls, &path);
    let v2 = viewer(&mut h, &routes, &calls, &path);
    let app = create(&mut h, &pipe, json!({"fluoWhep": true}))["result"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    h.ok(1, "connect", json!({"object": src, "sink": app}));
    assert_eq!(routes.len(), 5);
    h.ok(1, "release", json!({"object": src}));
    assert!(
        !alive(&mut h, &v1) && !alive(&mut h, &v2),
        "the viewers went"
    );
    assert!(
        alive(&mut h, &other) && alive(&mut h, &app),
        "nothing else did"
    );
    assert_eq!(
        routes.len(),
        2,
        "the other source's URL and the application's endpoint's"
    );
}

#[test]
fn a_sink_url_makes_a_publisher_per_post_that_replaces_the_one_before() {
    use fluo_core::whip::TEMPLATE_CONNECT_TIMEOUT;
    let (mut h, routes, calls, offers) = harness();
    let pipe = h.create(1, "MediaPipeline", None);
    for ev in ["ObjectCreated", "ObjectDestroyed"] {
        h.ok(
            1,
            "subscribe",
            json!({"type": ev, "object": "manager_ServerManager"}),
        );
    }
    let sink = h.ok(
        1,
        "create",
        json!({"type":"PassThrough","constructorParams":{"mediaPipeline": pipe},"properties":{"fluoWhipSink": true}}),
    )["value"]
        .as_str()
        .unwrap()
        .to_string();
    let url = h.invoke(1, &sink, "getTag", json!({"key": "fluoWhipSinkUrl"}));
    let path = url.as_str().unwrap().strip_prefix("http://h:1").unwrap();
    let path = path.to_string();
    assert!(path.starts_with("/whip/"), "{path}");
    let _ = h.events(1);
    let post = |h: &mut H, offer: &str| {
        let r = http(
            h,
            &routes,
            &calls,
            &path,
            None,
            SignalOp::Offer(offer.into()),
        );
        let ev = h.events(1);
        let made = ev.iter().find(|e| e["type"] == "ObjectCreated");
        let made = made.map(|e| e["data"]["object"].as_str().unwrap().to_string());
        let gone: Vec<String> = (ev.iter())
            .filter(|e| e["type"] == "ObjectDestroyed")
            .map(|e| e["data"]["objectId"].as_str().unwrap().to_string())
            .collect();
        (r, made, gone)
    };
    let source_of = |h: &mut H| {
        let c = h.invoke(1, &sink, "getSourceConnections", json!({}));
        let mut s: Vec<String> = (c.as_array().unwrap().iter())
            .map(|e| e["source"].as_str().unwrap().to_string())
            .collect();
        s.dedup();
        s
    };

    let (r, first, gone) = post(&mut h, "v=0 1");
    let a = r.unwrap();
    assert_eq!((a.status, gone.len()), (201, 0));
    let first = first.expect("ObjectCreated for the publisher's endpoint");
    let location = a.location.unwrap();
    assert!(
        location.starts_with("/whip/") && !location.starts_with(&path),
        "the session is the publisher's own: {location}"
    );
    assert_eq!(source_of(&mut h), [first.as_str()], "connected to the sink");
    let tag = h.invoke(1, &first, "getTag", json!({"key": "fluoWhipSink"}));
    assert_eq!(tag, json!(sink));
    // An offer the new endpoint refuses leaves the live publisher alone.
    let (r, made, gone) = post(&mut h, "bad");
    assert_eq!(r.unwrap_err().status, 400);
    assert_eq!(
        gone,
        made.into_iter().collect::<Vec<_>>(),
        "only the refused one goes"
    );
    assert!(alive(&mut h, &first));
    assert_eq!(source_of(&mut h), [first.as_str()]);
    // A POST whose 201 is not delivered (its client left): its endpoint goes, the live
    // publisher stays, connected (it used to be released with the undelivered one).
    let objects = h.e.object_count();
    http_lost(
        &mut h,
        &routes,
        &calls,
        &path,
        SignalOp::Offer("v=0 lost".into()),
        true,
    );
    assert_eq!(
        offers.lock().unwrap().len(),
        2,
        "the lost POST was answered"
    );
    assert_eq!(h.e.object_count(), objects, "its endpoint went");
    assert!(alive(&mut h, &first), "the live publisher stays");
    assert_eq!(source_of(&mut h), [first.as_str()]);
    let _ = h.events(1);
    // A new POST (the publisher back without DELETE): a new endpoint replaces the first.
    let (r, second, gone) = post(&mut h, "v=0 2");
    assert_eq!(r.unwrap().status, 201);
    let second = second.expect("a second endpoint");
    assert_eq!(gone, [first.as_str()], "the first publisher is released");
    assert_eq!(source_of(&mut h), [second.as_str()]);
    assert_eq!(offers.lock().unwrap().len(), 3);
    // PATCH and DELETE go to the publisher's session, not the sink's URL.
    let r = http(&mut h, &routes, &calls, &path, None, SignalOp::Delete);
    assert_eq!(r.unwrap_err().status, 405);
    // Not connected in time: released like a source's viewer.
    h.advance(TEMPLATE_CONNECT_TIMEOUT + Duration::from_secs(1));
    assert!(!alive(&mut h, &second), "an unconnected publisher expires");
    assert_eq!(routes.len(), 1, "the sink's URL stays");
    // Releasing the sink releases its publisher.
    let (_, third, _) = post(&mut h, "v=0 3");
    let third = third.unwrap();
    h.ok(1, "release", json!({"object": sink}));
    assert!(!alive(&mut h, &third));
    assert_eq!(routes.len(), 0);
}
