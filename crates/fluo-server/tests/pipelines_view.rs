//! The pipeline view on the operations listener (127.0.0.1, port 0): `/admin/pipelines`'s
//! shape after a kurento-client-like session (pipelines, elements in creation order, their
//! names, tags, states and byte counts, connections with how their media goes, released
//! elements gone), one element's stored properties and getStats, the token, the page's files,
//! and the limits (a view says when it left pipelines or elements out).
use fluo_server::ops::VIEW_LIMITS;
use fluo_server::{run_with_ops, Config, Ops};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "v1ew";

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

fn config() -> Config {
    Config {
        bind: [127, 0, 0, 1].into(),
        http_port: 0,
        metrics_port: Some(0),
        auth_token: Some(TOKEN.into()),
        workers: 0,
        ..Config::default()
    }
}

async fn start(config: Config) -> (u16, SocketAddr, watch::Sender<bool>) {
    let ops = Ops::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, rx) = watch::channel(false);
    tokio::spawn(run_with_ops(listener, None, config, rx, ops.clone()));
    let t0 = Instant::now();
    let addr = loop {
        if let Some(a) = ops.metrics_addr() {
            break a;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "no listener");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    while !ops.readiness().ready() {
        assert!(t0.elapsed() < Duration::from_secs(30), "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (port, addr, stop)
}

/// One request: status, head, body.
async fn http(addr: SocketAddr, method: &str, path: &str, token: bool) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let auth = match token {
        true => format!("Authorization: Bearer {TOKEN}\r\n"),
        false => String::new(),
    };
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8(out).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

/// A view made after what the test did: one made within 500 ms of another is served again.
async fn view(addr: SocketAddr, query: &str) -> Value {
    tokio::time::sleep(Duration::from_millis(550)).await;
    let (status, _, body) = http(addr, "GET", &format!("/admin/pipelines{query}"), true).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

async fn element(addr: SocketAddr, id: &str) -> (u16, Value) {
    let (status, _, body) = http(addr, "GET", &format!("/admin/pipelines/{id}"), true).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

async fn open(port: u16) -> Ws {
    let mut req = format!("ws://127.0.0.1:{port}/kurento")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.expect("ws").0
}

/// Sends every request, then collects their replies (events skipped), in order.
async fn ask_all(ws: &mut Ws, reqs: Vec<Value>) -> Vec<Value> {
    let ids: Vec<u64> = reqs.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    for r in reqs {
        ws.feed(Message::text(r.to_string())).await.unwrap();
    }
    ws.flush().await.unwrap();
    let mut replies = HashMap::new();
    while replies.len() < ids.len() {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a reply")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if let Some(id) = v.get("id").and_then(Value::as_u64) {
                assert!(v.get("error").is_none(), "{v}");
                replies.insert(id, v);
            }
        }
    }
    ids.iter().map(|id| replies.remove(id).unwrap()).collect()
}

async fn ask(ws: &mut Ws, req: Value) -> Value {
    ask_all(ws, vec![req]).await.remove(0)["result"].clone()
}

fn create(id: u64, ty: &str, pipeline: Option<&str>) -> Value {
    let params = match pipeline {
        Some(p) => json!({"type": ty, "constructorParams": {"mediaPipeline": p}}),
        None => json!({"type": ty}),
    };
    json!({"jsonrpc":"2.0","id":id,"method":"create","params":params})
}

fn invoke(id: u64, object: &str, op: &str, params: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"invoke",
        "params":{"object":object,"operation":op,"operationParams":params}})
}

async fn new_object(ws: &mut Ws, id: u64, ty: &str, pipeline: Option<&str>) -> String {
    let r = ask(ws, create(id, ty, pipeline)).await;
    r["value"].as_str().expect("an id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_shows_each_pipelines_elements_and_connections() {
    let (port, addr, _stop) = start(config()).await;
    let empty = view(addr, "").await;
    assert_eq!(empty["pipelines"], json!([]));
    assert_eq!(empty["pipelineCount"], 0);
    assert_eq!(empty["truncated"], false);
    assert_eq!(empty["mediaThread"], true);

    let mut ws = open(port).await;
    let pipe = new_object(&mut ws, 1, "MediaPipeline", None).await;
    ask(
        &mut ws,
        invoke(2, &pipe, "setName", json!({"name": "room"})),
    )
    .await;
    let a = new_object(&mut ws, 3, "WebRtcEndpoint", Some(&pipe)).await;
    let pass = new_object(&mut ws, 4, "PassThrough", Some(&pipe)).await;
    let b = new_object(&mut ws, 5, "WebRtcEndpoint", Some(&pipe)).await;
    let setup = vec![
        invoke(6, &a, "setName", json!({"name": "alice"})),
        invoke(7, &a, "addTag", json!({"key": "room", "value": "r1"})),
        invoke(
            8,
            &a,
            "setStunServerAddress",
            json!({"stunServerAddress": "127.0.0.1"}),
        ),
        invoke(
            81,
            &a,
            "setTurnUrl",
            json!({"turnUrl": "turnuser:turnpass@127.0.0.1:3478"}),
        ),
        // Every media type (AUDIO, VIDEO, DATA), then the video on to b.
        invoke(9, &a, "connect", json!({"sink": pass})),
        invoke(
            10,
            &pass,
            "connect",
            json!({"sink": b, "mediaType": "VIDEO"}),
        ),
    ];
    ask_all(&mut ws, setup).await;
    let other = new_object(&mut ws, 11, "MediaPipeline", None).await;
    let uri = "http://127.0.0.1:9/clip.webm?token=t0k3n&X-Amz-Signature=s1g&t=5";
    let player = ask(
        &mut ws,
        json!({"jsonrpc":"2.0","id":111,"method":"create","params":{"type":"PlayerEndpoint",
            "constructorParams":{"mediaPipeline": other, "uri": uri}}}),
    )
    .await["value"]
        .as_str()
        .expect("an id")
        .to_string();

    let v = view(addr, "").await;
    assert_eq!(v["pipelineCount"], 2);
    assert_eq!(
        v["elementCount"], 4,
        "three in the first pipeline, a player in the other"
    );
    assert_eq!(v["limits"]["elements"], VIEW_LIMITS.elements);
    let p = &v["pipelines"][0];
    assert_eq!(p["id"], pipe.as_str(), "the oldest first");
    assert_eq!(p["name"], "room");
    assert_eq!(p["elementCount"], 3);
    assert_eq!(p["truncated"], false);
    let els = p["elements"].as_array().unwrap();
    let types: Vec<&str> = els.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["WebRtcEndpoint", "PassThrough", "WebRtcEndpoint"]);
    let ea = &els[0];
    assert_eq!(ea["id"], a.as_str());
    assert_eq!(ea["name"], "alice");
    assert_eq!(ea["tags"], json!([{"key": "room", "value": "r1"}]));
    assert_eq!(ea["tagCount"], 1);
    assert_eq!(v["limits"]["tags"], VIEW_LIMITS.tags);
    assert_eq!(v["limits"]["text"], VIEW_LIMITS.text);
    assert_eq!(ea["worker"], Value::Null, "no media workers");
    assert_eq!(ea["flow"]["in"]["VIDEO"], "NOT_FLOWING");
    assert_eq!(ea["flow"]["out"]["AUDIO"], "NOT_FLOWING");
    assert_eq!(ea["transcoding"]["VIDEO"], false);
    assert_eq!(ea["webrtc"]["dtls"], "new");
    assert_eq!(ea["bytes"]["in"]["VIDEO"], 0, "{ea}");
    assert_eq!(ea["transcoders"], json!([]));
    let short = ea["shortId"].as_str().unwrap();
    assert_eq!(short.len(), 8);
    assert!(
        a.rsplit('/').next().unwrap().starts_with(short),
        "{a} {short}"
    );
    // A PassThrough is no node of its own: no byte counts.
    assert_eq!(els[1]["bytes"], Value::Null);
    let conns = p["connections"].as_array().unwrap();
    let shape: Vec<(String, String, String, String)> = conns
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap().to_string();
            (s("source"), s("sink"), s("mediaType"), s("mode"))
        })
        .collect();
    let row = |s: &str, k: &str, t: &str, m: &str| (s.into(), k.into(), t.into(), m.into());
    // No media yet: nothing is forwarded; data channels are not the router's.
    for r in [
        row(&a, &pass, "AUDIO", "none"),
        row(&a, &pass, "VIDEO", "none"),
        row(&a, &pass, "DATA", "data"),
        row(&pass, &b, "VIDEO", "none"),
    ] {
        assert!(shape.contains(&r), "{r:?} in {shape:?}");
    }
    assert_eq!(shape.len(), 4);
    assert_eq!(v["pipelines"][1]["id"], other.as_str());
    // A signed URI's query secrets are hidden, the rest of it shown.
    let (s, d) = element(addr, &player).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(
        d["properties"]["uri"],
        "http://127.0.0.1:9/clip.webm?token=***&X-Amz-Signature=***&t=5"
    );

    // One pipeline only; and a bitrate once two counts are far enough apart.
    let one = view(addr, &format!("?pipeline={pipe}")).await;
    assert_eq!(one["pipelines"].as_array().unwrap().len(), 1);
    let later = view(addr, &format!("?pipeline={pipe}")).await;
    let rate = &later["pipelines"][0]["elements"][0]["bitrate"];
    assert_eq!(rate["in"]["VIDEO"], 0, "{rate}");
    assert_eq!(rate["out"]["AUDIO"], 0, "{rate}");

    // An element's own view: stored properties (secrets hidden) and its getStats.
    let (s, d) = element(addr, &a).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["type"], "WebRtcEndpoint");
    assert_eq!(d["pipeline"], pipe.as_str());
    assert_eq!(d["properties"]["name"], "alice");
    assert_eq!(d["properties"]["stunServerAddress"], "127.0.0.1");
    assert_eq!(d["properties"]["turnUrl"], "***@127.0.0.1:3478");
    assert!(!d.to_string().contains("turnuser"), "{d}");
    assert_eq!(d["properties"]["mediaPipeline"], pipe.as_str());
    let stats = d["stats"].as_object().expect("stats");
    assert!(
        stats.values().any(|s| s["type"] == "transport"),
        "a WebRtcEndpoint reports its transport: {d}"
    );
    let (s, d) = element(addr, &pass).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["stats"], json!({}), "latencyStats is off");
    // Enabling latencyStats on the pipeline: the element's entry appears.
    ask(
        &mut ws,
        invoke(12, &pipe, "setLatencyStats", json!({"latencyStats": true})),
    )
    .await;
    let (_, d) = element(addr, &pass).await;
    assert_eq!(d["latencyStats"], true);
    assert!(d["stats"][&pass]["type"] == "element", "{d}");
    // Percent-encoded ids are read too.
    let encoded = pass.replace('/', "%2F");
    assert_eq!(element(addr, &encoded).await.0, 200);
    for missing in ["nope", pipe.as_str(), "manager_ServerManager"] {
        let (s, body) = element(addr, missing).await;
        assert_eq!(s, 404, "{missing}: {body}");
    }
    // The answer names what was asked for: never to be read as anything but text.
    let (s, head, body) = http(addr, "GET", "/admin/pipelines/%3Cb%3Ex", true).await;
    assert_eq!(s, 404, "{body}");
    assert!(head.contains("X-Content-Type-Options: nosniff"), "{head}");
    assert!(head.contains("text/plain"), "{head}");

    // b goes: its box and its connection too.
    ask(
        &mut ws,
        json!({"jsonrpc":"2.0","id":13,"method":"release","params":{"object":b}}),
    )
    .await;
    let v = view(addr, &format!("?pipeline={pipe}")).await;
    let p = &v["pipelines"][0];
    assert_eq!(p["elements"].as_array().unwrap().len(), 2);
    assert_eq!(p["connections"].as_array().unwrap().len(), 3);
    assert!(!v.to_string().contains(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_needs_the_token_but_its_page_does_not() {
    let (_port, addr, _stop) = start(config()).await;
    for path in [
        "/admin/pipelines",
        "/admin/pipelines/x",
        "/admin/pipelines?access_token=no",
    ] {
        assert_eq!(http(addr, "GET", path, false).await.0, 401, "{path}");
    }
    let q = format!("/admin/pipelines?access_token={TOKEN}");
    assert_eq!(http(addr, "GET", &q, false).await.0, 200);
    assert_eq!(http(addr, "POST", "/admin/pipelines", true).await.0, 405);
    assert_eq!(
        http(addr, "DELETE", "/admin/pipelines/x", true).await.0,
        405
    );
    // The page's files hold no data: a browser opening the page cannot send a token.
    let (s, head, body) = http(addr, "GET", "/admin/view/", false).await;
    assert_eq!(s, 200);
    assert!(head.contains("text/html"), "{head}");
    assert!(
        head.contains("Content-Security-Policy: default-src 'none'"),
        "{head}"
    );
    assert!(body.contains(r#"<script src="pipelines.js">"#), "{body}");
    // Its style sheet is a file too: no inline style needs allowing.
    assert!(head.contains("style-src 'self'"), "{head}");
    assert!(!head.contains("unsafe-inline"), "{head}");
    assert!(!body.contains("<style"), "{body}");
    assert!(
        body.contains(r#"<link rel="stylesheet" href="pipelines.css">"#),
        "{body}"
    );
    let (s, head, body) = http(addr, "GET", "/admin/view/pipelines.css", false).await;
    assert_eq!(s, 200);
    assert!(head.contains("text/css"), "{head}");
    assert!(body.contains("path.edge"), "{body}");
    let (s, head, body) = http(addr, "GET", "/admin/view/pipelines.js", false).await;
    assert_eq!(s, 200);
    assert!(head.contains("text/javascript"), "{head}");
    assert!(
        body.contains("/admin/view/"),
        "the script: {}",
        &body[..100]
    );
    assert_eq!(
        http(addr, "GET", "/admin/view/../metrics", false).await.0,
        404
    );
    assert_eq!(http(addr, "POST", "/admin/view/", false).await.0, 405);
    let (s, head, _) = http(addr, "GET", "/admin/view", false).await;
    assert_eq!(s, 308);
    assert!(head.contains("Location: /admin/view/"), "{head}");

    // Without a token on the server, none of it.
    let (_port, addr, _stop) = start(Config {
        auth_token: None,
        ..config()
    })
    .await;
    for path in [
        "/admin/pipelines",
        "/admin/view/",
        "/admin/view/pipelines.js",
    ] {
        let (s, _, body) = http(addr, "GET", path, false).await;
        assert_eq!(s, 403, "{path}");
        assert!(body.contains("--auth-token"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_is_bounded_and_says_what_it_left_out() {
    let (port, addr, _stop) = start(config()).await;
    let mut ws = open(port).await;
    // More elements in one pipeline than a view holds.
    let big = new_object(&mut ws, 1, "MediaPipeline", None).await;
    let n = VIEW_LIMITS.elements + 1;
    let reqs = (0..n as u64)
        .map(|i| create(10 + i, "PassThrough", Some(&big)))
        .collect();
    ask_all(&mut ws, reqs).await;
    let small = new_object(&mut ws, 5000, "MediaPipeline", None).await;
    let v = view(addr, "").await;
    assert_eq!(v["truncated"], true);
    assert_eq!(v["elementCount"], n);
    assert_eq!(v["pipelineCount"], 2);
    let ps = v["pipelines"].as_array().unwrap();
    assert_eq!(ps.len(), 1, "the budget went to the oldest pipeline");
    assert_eq!(ps[0]["elementCount"], n);
    assert_eq!(ps[0]["truncated"], true);
    assert_eq!(
        ps[0]["elements"].as_array().unwrap().len(),
        VIEW_LIMITS.elements
    );
    // Asked for by id, the other is there.
    let v = view(addr, &format!("?pipeline={small}")).await;
    assert_eq!(v["pipelines"][0]["id"], small.as_str());
    assert_eq!(v["truncated"], false);
    ask(
        &mut ws,
        json!({"jsonrpc":"2.0","id":5001,"method":"release","params":{"object":big}}),
    )
    .await;

    // More pipelines than a view holds.
    let reqs = (0..VIEW_LIMITS.pipelines as u64)
        .map(|i| create(6000 + i, "MediaPipeline", None))
        .collect();
    ask_all(&mut ws, reqs).await;
    let v = view(addr, "").await;
    assert_eq!(v["pipelineCount"], VIEW_LIMITS.pipelines + 1);
    assert_eq!(
        v["pipelines"].as_array().unwrap().len(),
        VIEW_LIMITS.pipelines
    );
    assert_eq!(v["truncated"], true);
    assert_eq!(v["pipelines"][0]["id"], small.as_str(), "the oldest first");
}
