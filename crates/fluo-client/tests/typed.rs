//! The generated handles put the documented wire shapes on the socket and read typed
//! results and events back (against the fake server of tests/common/fake.rs).

mod common;

use common::fake::{self, event, ok};
use fluo_client::model::*;
use fluo_client::{Client, RemoteObject};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn typed_calls_send_the_documented_shapes_and_read_typed_results() {
    let (url, log) = fake::start(|_, req| {
        let p = &req["params"];
        let value = match (req["method"].as_str().unwrap(), p["operation"].as_str()) {
            ("create", _) if p["type"] == "MediaPipeline" => json!("P_kurento.MediaPipeline"),
            ("create", _) => json!("P_kurento.MediaPipeline/E_kurento.WebRtcEndpoint"),
            (_, Some("processOffer")) => json!("v=0 answer"),
            (_, Some("getMediaPipeline")) => json!("P_kurento.MediaPipeline"),
            (_, Some("getConnectionState")) => json!("CONNECTED"),
            (_, Some("isMediaFlowingIn")) => json!(true),
            (_, Some("getSinkConnections")) => json!([{"__module__": "kurento",
                "__type__": "ElementConnectionData", "source": "a", "sink": "b",
                "type": "VIDEO", "sourceDescription": "default", "sinkDescription": "default"}]),
            ("subscribe", _) => json!("sub"),
            _ => json!(null),
        };
        let mut acts = vec![ok(req, json!({"value": value, "sessionId": "S"}))];
        if req["method"] == "subscribe" {
            acts.push(event("P_kurento.MediaPipeline/E_kurento.WebRtcEndpoint", "MediaFlowInStateChanged",
                json!({"state": "FLOWING", "padName": "default", "mediaType": "VIDEO",
                    "source": "P_kurento.MediaPipeline/E_kurento.WebRtcEndpoint",
                    "timestampMillis": "1712345678901", "tags": [], "type": "MediaFlowInStateChanged"})));
        }
        acts
    })
    .await;
    let client = Client::connect(&url).await.unwrap();
    let pipeline = MediaPipeline::create(&client).build().await.unwrap();
    let ep = WebRtcEndpoint::create(&pipeline)
        .recvonly(true)
        .build()
        .await
        .unwrap();
    assert_eq!(ep.id(), "P_kurento.MediaPipeline/E_kurento.WebRtcEndpoint");
    assert_eq!(ep.process_offer("v=0 offer").await.unwrap(), "v=0 answer");
    ep.connect(&ep, Some(MediaType::Video), None, None)
        .await
        .unwrap();
    ep.add_ice_candidate(&IceCandidate {
        candidate: "candidate:1".into(),
        sdp_mid: "0".into(),
        sdp_m_line_index: 0,
    })
    .await
    .unwrap();
    assert_eq!(ep.get_media_pipeline().await.unwrap().id(), pipeline.id());
    assert_eq!(
        ep.get_connection_state().await.unwrap(),
        ConnectionState::Connected
    );
    assert!(ep
        .is_media_flowing_in(MediaType::Video, None)
        .await
        .unwrap());
    let conns = ep.get_sink_connections(None, None).await.unwrap();
    assert_eq!(conns[0].type_, MediaType::Video);
    let mut flow = ep.subscribe_media_flow_in_state_changed().await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), flow.next_event())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.state, e.media_type, e.pad_name.as_str()),
        (MediaFlowState::Flowing, MediaType::Video, "default")
    );
    assert_eq!(e.timestamp_millis, "1712345678901");

    let log = log.lock().unwrap().clone();
    let params: Vec<serde_json::Value> = log.iter().map(|(_, r)| r["params"].clone()).collect();
    assert_eq!(
        params[0],
        json!({"type": "MediaPipeline", "properties": {}})
    );
    assert_eq!(
        params[1]["constructorParams"],
        json!({"mediaPipeline": pipeline.id(), "recvonly": true})
    );
    assert_eq!(params[2]["operationParams"], json!({"offer": "v=0 offer"}));
    assert_eq!(
        params[3]["operationParams"],
        json!({"sink": ep.id(), "mediaType": "VIDEO"})
    );
    assert_eq!(
        params[4]["operationParams"]["candidate"],
        json!({"candidate": "candidate:1",
        "sdpMid": "0", "sdpMLineIndex": 0, "__module__": "kurento", "__type__": "IceCandidate"})
    );
    assert_eq!(params[5]["operation"], "getMediaPipeline");
    assert!(
        params[5].get("operationParams").is_none(),
        "a getter sends no operationParams"
    );
    assert_eq!(
        params[7]["operationParams"],
        json!({"mediaType": "VIDEO"}),
        "an unset optional param is absent"
    );
    assert_eq!(
        params[9],
        json!({"object": ep.id(), "type": "MediaFlowInStateChanged", "sessionId": "S"})
    );
}
