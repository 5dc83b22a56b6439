//! The client against a fake server (tests/common/fake.rs): error codes, sessionId handling,
//! events, transactions and reconnection.

mod common;

use common::fake::{self, err, event, ok, Act};
use fluo_client::{Client, ConnectionEvent, Error, ErrorCode, Event, Options, Subscription};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn fast() -> Options {
    Options {
        request_timeout: Duration::from_secs(5),
        reconnect_delay: Duration::from_millis(20),
        ..Options::default()
    }
}

/// A stand-in event type: the shape of MediaFlowInStateChanged's data.
#[derive(Debug, serde::Deserialize, PartialEq)]
struct FlowIn {
    state: String,
    #[serde(rename = "mediaType")]
    media_type: String,
}

impl Event for FlowIn {
    const NAME: &'static str = "MediaFlowInStateChanged";
}

#[tokio::test]
async fn every_kurento_code_maps_to_its_typed_error() {
    // The fake fails every invoke with the code named in its params, with data.type for the
    // codes KMS sends one with.
    let (url, _) = fake::start(|_, req| {
        let n = req["params"]["operationParams"]["code"].as_i64().unwrap();
        let mut e = json!({"code": n, "message": format!("failed with {n}")});
        if let Some(c) = ErrorCode::from_code(n).filter(|c| c.has_data()) {
            e["data"] = json!({"type": c.type_name()});
        }
        vec![err(req, e)]
    })
    .await;
    let client = Client::connect_with(&url, fast()).await.unwrap();
    for &code in ErrorCode::ALL {
        let r = client
            .invoke_raw("obj", "fail", json!({"code": code.code()}))
            .await;
        let e = r.expect_err("an error answer is an error");
        assert_eq!(e.code(), Some(code), "{e:?}");
        let Error::Kurento { error, data_type } = e else {
            unreachable!()
        };
        assert_eq!(error.message, format!("failed with {}", code.code()));
        let want = code.has_data().then(|| code.type_name().to_string());
        assert_eq!(data_type, want);
    }
    // A code outside the catalogue (custom modules use 49xxx) keeps its number.
    let e = client
        .invoke_raw("obj", "fail", json!({"code": 49001}))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        Error::OtherCode {
            code: 49001,
            message: "failed with 49001".into()
        }
    );
}

#[tokio::test]
async fn session_id_is_adopted_and_sent_and_events_reach_their_stream() {
    let (url, log) = fake::start(|_, req| match req["method"].as_str().unwrap() {
        "create" => vec![ok(req, json!({"value": "p1", "sessionId": "S1"}))],
        "subscribe" => vec![
            ok(req, json!({"value": "sub-1", "sessionId": "S1"})),
            event(
                "other",
                "MediaFlowInStateChanged",
                json!({"state": "NOT_FLOWING", "mediaType": "AUDIO"}),
            ),
            event(
                "p1",
                "MediaFlowInStateChanged",
                json!({"state": "FLOWING", "mediaType": "VIDEO"}),
            ),
        ],
        _ => vec![ok(req, json!({"sessionId": "S1"}))],
    })
    .await;
    let client = Client::connect_with(&url, fast()).await.unwrap();
    assert_eq!(client.session_id(), None);
    let id = client.create_raw("MediaPipeline", json!({})).await.unwrap();
    assert_eq!(id, "p1");
    assert_eq!(client.session_id().as_deref(), Some("S1"));
    let mut sub = Subscription::<FlowIn>::new(&client, &id).await.unwrap();
    assert_eq!(sub.id(), "sub-1");
    let e = tokio::time::timeout(WAIT, sub.next_event()).await.unwrap();
    // The event on another object did not reach this stream.
    assert_eq!(
        e,
        Some(FlowIn {
            state: "FLOWING".into(),
            media_type: "VIDEO".into()
        })
    );
    sub.unsubscribe().await.unwrap();
    let log = log.lock().unwrap().clone();
    let methods: Vec<&str> = log
        .iter()
        .map(|(_, r)| r["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["create", "subscribe", "unsubscribe"]);
    assert!(
        log[0].1["params"].get("sessionId").is_none(),
        "no session before the first answer"
    );
    assert_eq!(log[1].1["params"]["sessionId"], "S1");
    assert_eq!(
        log[2].1["params"],
        json!({"object": "p1", "subscription": "sub-1", "sessionId": "S1"})
    );
    // Request ids count up from 0.
    let ids: Vec<u64> = log.iter().map(|(_, r)| r["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

#[tokio::test]
async fn a_dropped_subscription_sends_unsubscribe() {
    let (url, log) = fake::start(|_, req| match req["method"].as_str().unwrap() {
        "subscribe" => vec![ok(req, json!({"value": "sub-9", "sessionId": "S"}))],
        _ => vec![ok(req, json!({"sessionId": "S"}))],
    })
    .await;
    let client = Client::connect_with(&url, fast()).await.unwrap();
    let sub = Subscription::<FlowIn>::new(&client, "e1").await.unwrap();
    drop(sub);
    client.request("keepAlive", json!({})).await.unwrap();
    let log = log.lock().unwrap().clone();
    let unsub = log
        .iter()
        .find(|(_, r)| r["method"] == "unsubscribe")
        .expect("unsubscribe sent on drop");
    assert_eq!(unsub.1["params"]["subscription"], "sub-9");
    assert_eq!(unsub.1["params"]["sessionId"], "S");
}

#[tokio::test]
async fn transaction_results_are_mapped_back_to_their_operations() {
    // Operations 0 and 1 succeed, 2 fails, 3 is not run (the server stops at a failure).
    let (url, log) = fake::start(|_, req| {
        let sub = |i: usize, body: Value| {
            let mut r = json!({"jsonrpc": "2.0", "id": i});
            r.as_object_mut()
                .unwrap()
                .extend(body.as_object().unwrap().clone());
            r
        };
        vec![ok(
            req,
            json!({"sessionId": "S", "value": [
                sub(1, json!({"result": {"value": "p/ep", "sessionId": "S"}})),
                sub(0, json!({"result": {"value": "p", "sessionId": "S"}})),
                sub(2, json!({"error": {"code": 40101, "message": "Object 'x' not found",
                    "data": {"type": "MEDIA_OBJECT_NOT_FOUND"}}})),
            ]}),
        )]
    })
    .await;
    let client = Client::connect_with(&url, fast()).await.unwrap();
    let mut tx = client.transaction();
    let p = tx.create("MediaPipeline", json!({}));
    let ep = tx.create("WebRtcEndpoint", json!({"mediaPipeline": p.reference()}));
    let bad = tx.invoke("x", "getName", Value::Null);
    let last = tx.invoke(ep.reference(), "connect", json!({"sink": ep.reference()}));
    let r = tx.commit().await.unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(r.get(0).unwrap(), "p");
    assert_eq!(r.get(1).unwrap(), "p/ep");
    assert_eq!(
        r.get(bad).unwrap_err().code(),
        Some(ErrorCode::MediaObjectNotFound)
    );
    assert_eq!(r.get(last).unwrap_err(), Error::NotExecuted(3));
    let sent = log.lock().unwrap()[0].1.clone();
    let ops = sent["params"]["operations"].as_array().unwrap();
    assert_eq!(ops[1]["id"], 1);
    assert_eq!(
        ops[1]["params"]["constructorParams"]["mediaPipeline"],
        "newref:0"
    );
    assert_eq!(ops[3]["params"]["operationParams"]["sink"], "newref:1");
}

/// The fake for the reconnection tests: the first connection drops when it gets the invoke
/// `dropNow` (unanswered); on a later one `connect` is answered with `connect_answer`, and
/// then every other request is answered and followed by a FLOWING event on `e1`.
async fn reconnecting_fake(keep: bool) -> (String, fake::Log) {
    fake::start(move |conn, req| {
        let m = req["method"].as_str().unwrap();
        match (conn, m) {
            (0, "create") => vec![ok(req, json!({"value": "e1", "sessionId": "S1"}))],
            (0, "subscribe") => vec![ok(req, json!({"value": "sub-1", "sessionId": "S1"}))],
            (0, "invoke") => vec![Act::Drop],
            (_, "connect") if keep => vec![ok(req, json!({"sessionId": "S1", "serverId": "x"}))],
            (_, "connect") => vec![err(
                req,
                json!({"code": 40007, "message": "Invalid session",
                "data": {"type": "INVALID_SESSION"}}),
            )],
            _ => vec![
                ok(
                    req,
                    json!({"value": req["params"]["operation"], "sessionId": "S1"}),
                ),
                event(
                    "e1",
                    "MediaFlowInStateChanged",
                    json!({"state": "FLOWING", "mediaType": "AUDIO"}),
                ),
            ],
        }
    })
    .await
}

#[tokio::test]
async fn reconnection_keeps_the_session_and_its_subscriptions() {
    let (url, log) = reconnecting_fake(true).await;
    let client = Client::connect_with(&url, fast()).await.unwrap();
    let mut conn_events = client.connection_events();
    let id = client
        .create_raw("WebRtcEndpoint", json!({}))
        .await
        .unwrap();
    let mut sub = Subscription::<FlowIn>::new(&client, &id).await.unwrap();
    // The socket drops under this call; it is sent again once reconnected and answered.
    let v = client
        .invoke_raw(&id, "dropNow", Value::Null)
        .await
        .unwrap();
    assert_eq!(v, "dropNow");
    assert_eq!(
        conn_events.recv().await.unwrap(),
        ConnectionEvent::Disconnected
    );
    assert_eq!(
        conn_events.recv().await.unwrap(),
        ConnectionEvent::Reconnected { session_kept: true }
    );
    let v = client
        .invoke_raw(&id, "getName", Value::Null)
        .await
        .unwrap();
    assert_eq!(v, "getName");
    assert_eq!(client.session_id().as_deref(), Some("S1"));
    // The subscription made before the drop still gets the server's events.
    let e = tokio::time::timeout(WAIT, sub.next_event()).await.unwrap();
    assert_eq!(e.map(|e| e.state), Some("FLOWING".to_string()));
    let log = log.lock().unwrap().clone();
    let second: Vec<&Value> = log
        .iter()
        .filter(|(c, _)| *c == 1)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(
        second[0]["method"], "connect",
        "connect comes first on the new socket"
    );
    assert_eq!(second[0]["params"], json!({"sessionId": "S1"}));
    assert_eq!(second[1]["params"]["operation"], "dropNow");
    assert_eq!(second[1]["params"]["sessionId"], "S1");
    // The resent request keeps its id (the server's replay cache recognises it).
    let first_try = log
        .iter()
        .find(|(c, r)| *c == 0 && r["method"] == "invoke")
        .unwrap();
    assert_eq!(first_try.1["id"], second[1]["id"]);
}

#[tokio::test]
async fn a_lost_session_ends_the_subscriptions() {
    let (url, log) = reconnecting_fake(false).await;
    let client = Client::connect_with(&url, fast()).await.unwrap();
    let mut conn_events = client.connection_events();
    let id = client
        .create_raw("WebRtcEndpoint", json!({}))
        .await
        .unwrap();
    let mut sub = Subscription::<FlowIn>::new(&client, &id).await.unwrap();
    // The call the socket dropped under named the lost session: it fails.
    let r = client.invoke_raw(&id, "dropNow", Value::Null).await;
    assert_eq!(r, Err(Error::SessionLost));
    assert_eq!(
        conn_events.recv().await.unwrap(),
        ConnectionEvent::Disconnected
    );
    assert_eq!(
        conn_events.recv().await.unwrap(),
        ConnectionEvent::Reconnected {
            session_kept: false
        }
    );
    let e = tokio::time::timeout(WAIT, sub.next_event()).await.unwrap();
    assert_eq!(e, None, "the stream of a lost session ends");
    // Later calls go without the old session id (the server gives a new one).
    let v = client
        .invoke_raw(&id, "getName", Value::Null)
        .await
        .unwrap();
    assert_eq!(v, "getName");
    let log = log.lock().unwrap().clone();
    let last = &log.last().unwrap().1;
    assert_eq!(last["params"]["operation"], "getName");
    assert!(last["params"].get("sessionId").is_none(), "{last}");
}

#[tokio::test]
async fn a_request_without_answer_times_out_and_a_closed_client_fails_calls() {
    let (url, _) = fake::start(|_, _| vec![]).await;
    let opts = Options {
        request_timeout: Duration::from_millis(200),
        ..fast()
    };
    let client = Client::connect_with(&url, opts).await.unwrap();
    let e = client.ping().await.unwrap_err();
    assert_eq!(e, Error::Timeout(Duration::from_millis(200)));
    let mut ev = client.connection_events();
    client.close();
    assert_eq!(
        tokio::time::timeout(WAIT, ev.recv())
            .await
            .unwrap()
            .unwrap(),
        ConnectionEvent::Closed
    );
    assert!(matches!(client.ping().await, Err(Error::Closed(_))));
}
