//! `transaction` with `newref:` and stop-at-first-failure.
mod common;
use common::H;
use serde_json::json;

#[test]
fn newref_links_operations_of_one_batch() {
    let mut h = H::new();
    let r = h.ok(1, "transaction", json!({"operations": [
        {"jsonrpc":"2.0","id":0,"method":"create","params":{"type":"MediaPipeline"}},
        {"jsonrpc":"2.0","id":1,"method":"create","params":{"type":"PassThrough","constructorParams":{"mediaPipeline":"newref:0"}}},
        {"jsonrpc":"2.0","id":2,"method":"create","params":{"type":"PassThrough","constructorParams":{"mediaPipeline":"newref:0"}}},
        {"jsonrpc":"2.0","id":3,"method":"invoke","params":{"object":"newref:1","operation":"connect","operationParams":{"sink":"newref:2"}}},
    ]}));
    let v = r["value"].as_array().unwrap();
    assert_eq!(v.len(), 4);
    assert!(v.iter().all(|x| x["result"].is_object()), "{v:?}");
    let a = v[1]["result"]["value"].as_str().unwrap();
    assert_eq!(v[3]["id"], 3);
    assert_eq!(v[0]["result"]["sessionId"], r["sessionId"]);
    let sinks = h.invoke(1, a, "getSinkConnections", json!({}));
    assert_eq!(sinks.as_array().unwrap().len(), 3);
}

#[test]
fn execution_stops_at_the_first_failure() {
    let mut h = H::new();
    let r = h.ok(
        1,
        "transaction",
        json!({"operations": [
            {"jsonrpc":"2.0","id":0,"method":"create","params":{"type":"MediaPipeline"}},
            {"jsonrpc":"2.0","id":1,"method":"create","params":{"type":"NoSuchThing"}},
            {"jsonrpc":"2.0","id":2,"method":"create","params":{"type":"MediaPipeline"}},
        ]}),
    );
    let v = r["value"].as_array().unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[1]["error"]["code"], 40108);
    let pipes = h.invoke(1, "manager_ServerManager", "getPipelines", json!({}));
    assert_eq!(pipes.as_array().unwrap().len(), 1);
}

#[test]
fn malformed_batches_and_newref_outside() {
    let mut h = H::new();
    let r = h.call(
        1,
        "transaction",
        json!({"operations": [
            {"jsonrpc":"2.0","id":5,"method":"create","params":{"type":"MediaPipeline"}},
        ]}),
    );
    assert_eq!(r["error"]["code"], 40008);
    assert_eq!(r["error"]["message"], "Id of request '0' should be '0'");
    let r = h.ok(1, "transaction", json!({"operations": [
        {"jsonrpc":"2.0","id":0,"method":"create","params":{"type":"PassThrough","constructorParams":{"mediaPipeline":"newref:3"}}},
    ]}));
    assert_eq!(r["value"][0]["error"]["code"], 40008);
    assert_eq!(h.err(1, "describe", json!({"object":"newref:0"})), 40109);
    let r = h.ok(
        1,
        "transaction",
        json!({"operations": [
            {"jsonrpc":"2.0","id":0,"method":"transaction","params":{"operations":[]}},
        ]}),
    );
    assert_eq!(r["value"][0]["error"]["code"], 40008, "no nesting");
    assert_eq!(h.err(1, "transaction", json!({"operations": 3})), -32000);
}
