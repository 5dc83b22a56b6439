//! WHIP (RFC 9725) and WHEP on the real server's HTTP listener (127.0.0.1, port 0), over raw
//! TCP: a WebRtcEndpoint created with `fluoWhip: true` in `create`'s properties gets a URL
//! (its tag `fluoWhipUrl`); a POSTed offer is answered 201 with the SDP answer, a Location
//! and an ETag; PATCH adds candidates; DELETE releases the endpoint (ObjectDestroyed); and
//! every bad request gets the RFC's status. (The media of such a session: fluo-testkit's
//! tests/whip.rs; browsers: tests/e2e/test/86-whip.)
use fluo_server::{run, Config};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "wh1p-t0ken";

/// A browser-like offer: one Opus section, sending.
const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:8hhY\r\na=ice-pwd:asd88fgpdd777uzjYhagZg\r\n\
a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r\n\
a=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn start() -> (u16, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = Config {
        bind: [127, 0, 0, 1].into(),
        http_port: 0,
        auth_token: Some(TOKEN.into()),
        workers: 0,
        net: fluo_rtc::NetSettings {
            network_interfaces: Some(vec!["lo".into()]),
            ..Default::default()
        },
        ..Config::default()
    };
    let (stop, rx) = watch::channel(false);
    tokio::spawn(run(listener, config, rx));
    (port, stop)
}

async fn connect(ws_port: u16) -> Ws {
    let mut req = format!("ws://127.0.0.1:{ws_port}/kurento")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.expect("ws").0
}

/// A request's reply; events met meanwhile go to `events`.
async fn ask(ws: &mut Ws, v: Value, events: &mut Vec<Value>) -> Value {
    ws.send(Message::text(v.to_string())).await.unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a reply")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v.get("id").is_some() {
                return v;
            }
            events.push(v);
        }
    }
}

/// Creates a WebRtcEndpoint with `properties` in `pipe`; its id and reply.
async fn create(ws: &mut Ws, id: u64, pipe: &str, properties: Value) -> Value {
    ask(
        ws,
        json!({"jsonrpc":"2.0","id":id,"method":"create","params":{
            "type":"WebRtcEndpoint","constructorParams":{"mediaPipeline": pipe},
            "properties": properties}}),
        &mut vec![],
    )
    .await
}

async fn invoke(ws: &mut Ws, id: u64, object: &str, op: &str, params: Value) -> Value {
    ask(
        ws,
        json!({"jsonrpc":"2.0","id":id,"method":"invoke","params":{
            "object": object, "operation": op, "operationParams": params}}),
        &mut vec![],
    )
    .await
}

/// An HTTP answer: status, head, body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends one request (with a Content-Length when `body` is given) and reads the answer.
async fn http(port: u16, method: &str, path: &str, headers: &str, body: Option<&str>) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let len = body.map_or(String::new(), |b| {
        format!("Content-Length: {}\r\n", b.len())
    });
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}{len}\r\n{}",
        body.unwrap_or("")
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn split(url: &str) -> (u16, String) {
    let rest = url.split_once("://").unwrap().1;
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    (
        host.rsplit(':').next().unwrap().parse().unwrap(),
        path.into(),
    )
}

const AUTH: &str = "Authorization: Bearer wh1p-t0ken\r\n";
const SDP: &str = "Authorization: Bearer wh1p-t0ken\r\nContent-Type: application/sdp\r\n";
const FRAG: &str =
    "Authorization: Bearer wh1p-t0ken\r\nContent-Type: application/trickle-ice-sdpfrag\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_statuses_and_a_session_from_post_to_delete() {
    let (ws_port, _stop) = start().await;
    let mut ws = connect(ws_port).await;
    let ws = &mut ws;
    let mut events = vec![];
    let p = ask(
        ws,
        json!({"jsonrpc":"2.0","id":1,"method":"create","params":{"type":"MediaPipeline"}}),
        &mut events,
    )
    .await;
    let pipe = p["result"]["value"].as_str().unwrap().to_string();
    // Asked for on a class that is not a WebRtcEndpoint, or with a bad value: 40107.
    let bad = ask(
        ws,
        json!({"jsonrpc":"2.0","id":2,"method":"create","params":{
            "type":"PassThrough","constructorParams":{"mediaPipeline": pipe},
            "properties":{"fluoWhip": true}}}),
        &mut events,
    )
    .await;
    assert_eq!(bad["error"]["code"], 40107, "{bad}");
    let bad = create(ws, 3, &pipe, json!({"fluoWhip": "yes"})).await;
    assert_eq!(bad["error"]["code"], 40107, "{bad}");
    let e = create(ws, 4, &pipe, json!({"fluoWhip": true})).await;
    let ep = e["result"]["value"]
        .as_str()
        .expect("an endpoint")
        .to_string();
    let sub = json!({"type":"ObjectDestroyed","object":"manager_ServerManager"});
    let s = ask(
        ws,
        json!({"jsonrpc":"2.0","id":5,"method":"subscribe","params": sub}),
        &mut events,
    )
    .await;
    assert!(s.get("result").is_some(), "{s}");
    let u = invoke(ws, 6, &ep, "getTag", json!({"key":"fluoWhipUrl"})).await;
    let url = u["result"]["value"].as_str().expect("a URL").to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (port, path) = split(&url);
    assert!(
        path.starts_with("/whip/") && path.len() == "/whip/".len() + 36,
        "{path}"
    );

    // Every refusal before the endpoint is touched.
    let a = http(port, "OPTIONS", &path, "", None).await;
    assert_eq!(a.status, 204, "{}", a.head);
    assert!(a
        .header("access-control-allow-methods")
        .unwrap()
        .contains("PATCH"));
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        http(
            port,
            "POST",
            &path,
            "Content-Type: application/sdp\r\n",
            Some(OFFER)
        )
        .await
        .status,
        401
    );
    let wrong = "Authorization: Bearer nope\r\nContent-Type: application/sdp\r\n";
    assert_eq!(
        http(port, "POST", &path, wrong, Some(OFFER)).await.status,
        401
    );
    let a = http(port, "GET", &path, AUTH, None).await;
    assert_eq!(
        (a.status, a.header("allow")),
        (405, Some("POST, PATCH, DELETE, OPTIONS"))
    );
    let text = "Authorization: Bearer wh1p-t0ken\r\nContent-Type: text/plain\r\n";
    assert_eq!(
        http(port, "POST", &path, text, Some(OFFER)).await.status,
        415
    );
    let nobody = format!("{path}0");
    assert_eq!(
        http(
            port,
            "POST",
            "/whip/00000000-0000-4000-8000-000000000000",
            SDP,
            Some(OFFER)
        )
        .await
        .status,
        404
    );
    assert_eq!(
        http(port, "POST", &nobody, SDP, Some(OFFER)).await.status,
        404
    );
    let big = "v=0\r\n".to_string() + &"a=x\r\n".repeat(20_000);
    assert_eq!(http(port, "POST", &path, SDP, Some(&big)).await.status, 413);
    let a = http(port, "POST", &path, SDP, Some("hello")).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let broken = OFFER.replace("t=0 0", "t=x");
    let a = http(port, "POST", &path, SDP, Some(&broken)).await;
    assert_eq!(a.status, 400, "{}", a.body);
    // A fixed text: the parser's own words are logged, not sent.
    assert_eq!(a.body.trim(), "the offer is not valid SDP");
    let a = http(port, "HEAD", &path, AUTH, None).await;
    assert_eq!((a.status, a.body.as_str()), (405, ""), "{}", a.head);
    assert_eq!(a.header("allow"), Some("POST, PATCH, DELETE, OPTIONS"));
    // PATCH and DELETE go to a session, and there is none yet.
    assert_eq!(http(port, "DELETE", &path, AUTH, None).await.status, 405);
    assert_eq!(
        http(port, "DELETE", &format!("{path}/nope"), AUTH, None)
            .await
            .status,
        404
    );

    // The session.
    let a = http(port, "POST", &path, SDP, Some(OFFER)).await;
    assert_eq!(a.status, 201, "{} {}", a.head, a.body);
    assert_eq!(a.header("content-type"), Some("application/sdp"));
    assert!(
        a.body.starts_with("v=0") && a.body.contains("a=candidate:"),
        "{}",
        a.body
    );
    assert!(a.body.contains("a=recvonly"), "{}", a.body);
    let etag = a.header("etag").expect("an ETag").to_string();
    let location = a.header("location").expect("a Location").to_string();
    assert!(location.starts_with(&format!("{path}/")), "{location}");
    let exposed = a.header("access-control-expose-headers").unwrap();
    assert!(
        exposed.contains("Location") && exposed.contains("Accept-Patch"),
        "{exposed}"
    );
    assert_eq!(
        a.header("accept-patch"),
        Some("application/trickle-ice-sdpfrag")
    );
    // It is the endpoint's own negotiation.
    let l = invoke(ws, 7, &ep, "getRemoteSessionDescriptor", json!({})).await;
    assert_eq!(l["result"]["value"], OFFER, "{l}");
    assert_eq!(
        http(port, "POST", &path, SDP, Some(OFFER)).await.status,
        409
    );
    assert_eq!(
        http(port, "POST", &location, SDP, Some(OFFER)).await.status,
        405
    );

    // Trickle ICE.
    let cand = "a=mid:0\r\na=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host\r\n";
    assert_eq!(
        http(port, "PATCH", &path, FRAG, Some(cand)).await.status,
        405
    );
    assert_eq!(
        http(port, "PATCH", &location, SDP, Some(cand)).await.status,
        415
    );
    let stale = format!("{FRAG}If-Match: \"nope\"\r\n");
    assert_eq!(
        http(port, "PATCH", &location, &stale, Some(cand))
            .await
            .status,
        412
    );
    // (ICE restarts: an_ice_restart_by_patch_answers_the_endpoints_new_credentials.)
    assert_eq!(
        http(port, "PATCH", &location, FRAG, Some("not sdp"))
            .await
            .status,
        400
    );
    // The candidates go through the endpoint's addIceCandidate, which refuses a bad one.
    let a = http(
        port,
        "PATCH",
        &location,
        FRAG,
        Some("a=candidate:nonsense\r\n"),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("ICE candidate"), "{}", a.body);
    // If-Match is a list of strong tags (RFC 9110 13.1.1), over one line or several.
    for (header, status) in [
        (format!("If-Match: \"nope\", {etag}\r\n"), 204),
        (format!("If-Match: \"nope\"\r\nIf-Match: {etag}\r\n"), 204),
        (format!("If-Match: W/{etag}\r\n"), 412),
    ] {
        let a = http(
            port,
            "PATCH",
            &location,
            &format!("{FRAG}{header}"),
            Some(cand),
        )
        .await;
        assert_eq!(a.status, status, "{header}: {}", a.body);
    }
    let matching = format!("{FRAG}If-Match: {etag}\r\n");
    let a = http(port, "PATCH", &location, &matching, Some(cand)).await;
    assert_eq!(a.status, 204, "{}", a.body);
    let framing = (a.header("content-length"), a.header("content-type"));
    assert_eq!(framing, (None, None), "a 204 has no body: {}", a.head);
    // RFC 9725's trickle repeats the session's credentials: still a trickle.
    let same = format!("a=ice-ufrag:8hhY\r\na=ice-pwd:asd88fgpdd777uzjYhagZg\r\n{cand}");
    let a = http(port, "PATCH", &location, &matching, Some(&same)).await;
    assert_eq!(a.status, 204, "{}", a.body);

    // DELETE ends it: the endpoint is released, its URLs are gone.
    assert_eq!(http(port, "DELETE", &location, "", None).await.status, 401);
    assert_eq!(
        http(port, "DELETE", &location, AUTH, None).await.status,
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !events
        .iter()
        .any(|e| e["params"]["value"]["data"]["objectId"] == json!(ep))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ObjectDestroyed: {events:?}"
        );
        if let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(200), ws.next()).await
        {
            events.push(serde_json::from_str(&t).unwrap());
        }
    }
    let r = invoke(ws, 8, &ep, "getName", json!({})).await;
    assert_eq!(r["error"]["code"], 40101, "{r}");
    assert_eq!(
        http(port, "POST", &path, SDP, Some(OFFER)).await.status,
        404
    );
    assert_eq!(
        http(port, "DELETE", &location, AUTH, None).await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_the_endpoint_cannot_take_is_422_and_release_removes_the_url() {
    let (ws_port, _stop) = start().await;
    let mut ws = connect(ws_port).await;
    let ws = &mut ws;
    let p = ask(
        ws,
        json!({"jsonrpc":"2.0","id":1,"method":"create","params":{"type":"MediaPipeline"}}),
        &mut vec![],
    )
    .await;
    let pipe = p["result"]["value"].as_str().unwrap().to_string();
    let e = create(ws, 2, &pipe, json!({"fluoWhep": true})).await;
    let ep = e["result"]["value"]
        .as_str()
        .expect("an endpoint")
        .to_string();
    let u = invoke(ws, 3, &ep, "getTag", json!({"key":"fluoWhepUrl"})).await;
    let (port, path) = split(u["result"]["value"].as_str().expect("a URL"));
    assert!(path.starts_with("/whep/"), "{path}");
    let plain_rtp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=video 5004 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:96 VP8/90000\r\na=recvonly\r\n";
    let a = http(port, "POST", &path, SDP, Some(plain_rtp)).await;
    assert_eq!(a.status, 422, "{}", a.body);
    // No codec in common.
    let e = create(ws, 7, &pipe, json!({"fluoWhip": true})).await;
    let ep = e["result"]["value"]
        .as_str()
        .expect("an endpoint")
        .to_string();
    let u = invoke(ws, 8, &ep, "getTag", json!({"key":"fluoWhipUrl"})).await;
    let (port, path) = split(u["result"]["value"].as_str().expect("a URL"));
    let foreign = OFFER.replace("opus/48000/2", "x-unknown/48000/2");
    let a = http(port, "POST", &path, SDP, Some(&foreign)).await;
    assert_eq!(a.status, 422, "{}", a.body);
    let fixed = "no media section of the offer can be taken (transport or codecs)";
    assert_eq!(a.body.trim(), fixed);
    // An endpoint released by the application takes its URL with it.
    let e = create(ws, 4, &pipe, json!({"fluoWhep": true})).await;
    let ep = e["result"]["value"]
        .as_str()
        .expect("an endpoint")
        .to_string();
    let u = invoke(ws, 5, &ep, "getTag", json!({"key":"fluoWhepUrl"})).await;
    let (port, path) = split(u["result"]["value"].as_str().expect("a URL"));
    let r = ask(
        ws,
        json!({"jsonrpc":"2.0","id":6,"method":"release","params":{"object": ep}}),
        &mut vec![],
    )
    .await;
    assert!(r.get("result").is_some(), "{r}");
    assert_eq!(
        http(port, "POST", &path, SDP, Some(OFFER)).await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_posts_to_one_endpoint_exactly_one_gets_the_session() {
    let (ws_port, _stop) = start().await;
    let mut ws = connect(ws_port).await;
    let ws = &mut ws;
    let p = ask(
        ws,
        json!({"jsonrpc":"2.0","id":1,"method":"create","params":{"type":"MediaPipeline"}}),
        &mut vec![],
    )
    .await;
    let pipe = p["result"]["value"].as_str().unwrap().to_string();
    let e = create(ws, 2, &pipe, json!({"fluoWhip": true})).await;
    let ep = e["result"]["value"]
        .as_str()
        .expect("an endpoint")
        .to_string();
    let u = invoke(ws, 3, &ep, "getTag", json!({"key":"fluoWhipUrl"})).await;
    let (port, path) = split(u["result"]["value"].as_str().expect("a URL"));
    let posts: Vec<_> = (0..20)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { http(port, "POST", &path, SDP, Some(OFFER)).await.status })
        })
        .collect();
    let mut statuses = vec![];
    for p in posts {
        statuses.push(p.await.unwrap());
    }
    statuses.sort();
    let mut want = vec![201];
    want.extend([409; 19]);
    assert_eq!(statuses, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_client_left_leaves_no_viewer_on_the_source() {
    let (ws_port, _stop) = start().await;
    let mut ws = connect(ws_port).await;
    let ws = &mut ws;
    let p = ask(
        ws,
        json!({"jsonrpc":"2.0","id":1,"method":"create","params":{"type":"MediaPipeline"}}),
        &mut vec![],
    )
    .await;
    let pipe = p["result"]["value"].as_str().unwrap().to_string();
    let src = ask(
        ws,
        json!({"jsonrpc":"2.0","id":2,"method":"create","params":{"type":"PassThrough",
            "constructorParams":{"mediaPipeline": pipe},"properties":{"fluoWhepSource": true}}}),
        &mut vec![],
    )
    .await;
    let src = src["result"]["value"]
        .as_str()
        .expect("a source")
        .to_string();
    let u = invoke(ws, 3, &src, "getTag", json!({"key":"fluoWhepSourceUrl"})).await;
    let (port, path) = split(u["result"]["value"].as_str().expect("a URL"));
    // The head and half the offer, then the client goes. (A client that sends the whole
    // request and goes at once cannot always be told from one that reads its answer: when
    // the engine answers first, its viewer is released by the 30 s not-connected expiry,
    // tested in fluo-core's tests/whip.rs.)
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{SDP}Content-Length: {}\r\n\r\n{}",
        OFFER.len(),
        &OFFER[..OFFER.len() / 2]
    );
    s.write_all(req.as_bytes()).await.unwrap();
    drop(s);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The engine takes calls in order: after this one's answer the first was dealt with.
    let expect = format!("{SDP}Expect: 100-continue\r\n");
    let a = http(port, "POST", &path, &expect, Some(OFFER)).await;
    assert_eq!(a.status, 100, "{}", a.head);
    assert!(a.body.starts_with("HTTP/1.1 201 "), "{}", a.body);
    let sinks = invoke(ws, 4, &src, "getSinkConnections", json!({})).await;
    let mut viewers: Vec<&str> = (sinks["result"]["value"].as_array().unwrap().iter())
        .filter_map(|c| c["sink"].as_str())
        .collect();
    viewers.dedup();
    assert_eq!(viewers.len(), 1, "only the second viewer: {sinks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_restart_by_patch_answers_the_endpoints_new_credentials() {
    let (ws_port, _stop) = start().await;
    let mut ws = connect(ws_port).await;
    let ws = &mut ws;
    let p = ask(
        ws,
        json!({"jsonrpc":"2.0","id":1,"method":"create","params":{"type":"MediaPipeline"}}),
        &mut vec![],
    )
    .await;
    let pipe = p["result"]["value"].as_str().unwrap().to_string();
    let e = create(ws, 2, &pipe, json!({"fluoWhip": true})).await;
    let ep = e["result"]["value"]
        .as_str()
        .expect("an endpoint")
        .to_string();
    let u = invoke(ws, 3, &ep, "getTag", json!({"key":"fluoWhipUrl"})).await;
    let (port, path) = split(u["result"]["value"].as_str().expect("a URL"));
    let a = http(port, "POST", &path, SDP, Some(OFFER)).await;
    assert_eq!(a.status, 201, "{} {}", a.head, a.body);
    let etag = a.header("etag").unwrap().to_string();
    let location = a.header("location").unwrap().to_string();
    let restart = format!("{FRAG}If-Match: *\r\n");
    let frag = "a=ice-ufrag:ZZy2\r\na=ice-pwd:w9dGRB0Tn/HZuuOxCUJYqS+x\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host\r\n";

    // Refused, the session as it was: other m-sections, one credential, a malformed one.
    let moved = frag.replace("a=mid:0", "a=mid:7");
    let a = http(port, "PATCH", &location, &restart, Some(&moved)).await;
    assert_eq!(a.status, 422, "{}", a.body);
    let half = "a=ice-ufrag:ZZy2\r\na=mid:0\r\n";
    let a = http(port, "PATCH", &location, &restart, Some(half)).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let bad = frag.replace("ice-pwd:w9dG", "ice-pwd:w9-G");
    let a = http(port, "PATCH", &location, &restart, Some(&bad)).await;
    assert_eq!(a.status, 400, "{}", a.body);
    // Without If-Match: 428 (RFC 9725 4.3.2 has a restart carry it).
    let a = http(port, "PATCH", &location, FRAG, Some(frag)).await;
    assert!(
        a.head.starts_with("HTTP/1.1 428 Precondition Required"),
        "{} {}",
        a.head,
        a.body
    );
    let l = invoke(ws, 4, &ep, "getRemoteSessionDescriptor", json!({})).await;
    assert_eq!(l["result"]["value"], OFFER, "{l}");

    // The restart: 200, the endpoint's new credentials and candidates, a new ETag.
    let a = http(port, "PATCH", &location, &restart, Some(frag)).await;
    assert_eq!(a.status, 200, "{} {}", a.head, a.body);
    assert_eq!(
        a.header("content-type"),
        Some("application/trickle-ice-sdpfrag")
    );
    let new_etag = a.header("etag").expect("a new ETag").to_string();
    assert_ne!(new_etag, etag);
    let ufrag = new_etag.trim_matches('"');
    assert!(
        a.body.contains(&format!("a=ice-ufrag:{ufrag}\r\n")),
        "{}",
        a.body
    );
    assert!(a.body.contains("a=ice-pwd:"), "{}", a.body);
    assert!(a.body.contains("a=candidate:"), "{}", a.body);
    assert!(a.body.ends_with("a=end-of-candidates\r\n"), "{}", a.body);
    assert!(a
        .header("access-control-expose-headers")
        .unwrap()
        .contains("ETag"));
    // It is the endpoint's negotiation, renewed.
    let l = invoke(ws, 5, &ep, "getLocalSessionDescriptor", json!({})).await;
    let local = l["result"]["value"].as_str().unwrap();
    assert!(local.contains(&format!("a=ice-ufrag:{ufrag}")), "{local}");
    let r = invoke(ws, 6, &ep, "getRemoteSessionDescriptor", json!({})).await;
    let remote = r["result"]["value"].as_str().unwrap();
    assert!(
        remote.contains("a=ice-ufrag:ZZy2") && !remote.contains("8hhY"),
        "{remote}"
    );

    // Trickle names the new ICE session.
    let cand = "a=mid:0\r\na=candidate:2 1 udp 2113937151 127.0.0.1 50001 typ host\r\n";
    let stale = format!("{FRAG}If-Match: {etag}\r\n");
    let a = http(port, "PATCH", &location, &stale, Some(cand)).await;
    assert_eq!(a.status, 412, "{}", a.body);
    let fresh = format!("{FRAG}If-Match: {new_etag}\r\n");
    let a = http(port, "PATCH", &location, &fresh, Some(cand)).await;
    assert_eq!(a.status, 204, "{}", a.body);
    // A trickle of the replaced session arriving late (its credentials, no If-Match): 412,
    // and the endpoint keeps the restarted session.
    let late = format!("a=ice-ufrag:8hhY\r\na=ice-pwd:asd88fgpdd777uzjYhagZg\r\n{cand}");
    let a = http(port, "PATCH", &location, FRAG, Some(&late)).await;
    assert_eq!(a.status, 412, "{}", a.body);
    let r = invoke(ws, 7, &ep, "getRemoteSessionDescriptor", json!({})).await;
    let remote = r["result"]["value"].as_str().unwrap();
    assert!(remote.contains("a=ice-ufrag:ZZy2"), "{remote}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_url_answers_each_post_from_a_new_publisher_that_replaces_the_last() {
    let (ws_port, _stop) = start().await;
    let mut ws = connect(ws_port).await;
    let ws = &mut ws;
    let mut events = vec![];
    let p = ask(
        ws,
        json!({"jsonrpc":"2.0","id":1,"method":"create","params":{"type":"MediaPipeline"}}),
        &mut events,
    )
    .await;
    let pipe = p["result"]["value"].as_str().unwrap().to_string();
    let bad = ask(
        ws,
        json!({"jsonrpc":"2.0","id":2,"method":"create","params":{"type":"PassThrough",
            "constructorParams":{"mediaPipeline": pipe},"properties":{"fluoWhipSink": "yes"}}}),
        &mut events,
    )
    .await;
    assert_eq!(bad["error"]["code"], 40107, "{bad}");
    let r = ask(
        ws,
        json!({"jsonrpc":"2.0","id":3,"method":"create","params":{"type":"PassThrough",
            "constructorParams":{"mediaPipeline": pipe},"properties":{"fluoWhipSink": true}}}),
        &mut events,
    )
    .await;
    let sink = r["result"]["value"].as_str().expect("a sink").to_string();
    let u = invoke(ws, 5, &sink, "getTag", json!({"key":"fluoWhipSinkUrl"})).await;
    let (port, path) = split(u["result"]["value"].as_str().expect("a URL"));
    assert!(path.starts_with("/whip/"), "{path}");
    assert_eq!(
        http(port, "PATCH", &path, FRAG, Some("a=mid:0\r\n"))
            .await
            .status,
        405
    );
    assert_eq!(http(port, "DELETE", &path, AUTH, None).await.status, 405);
    assert_eq!(
        http(port, "POST", &path, SDP, Some("hello")).await.status,
        400
    );

    let a = http(port, "POST", &path, SDP, Some(OFFER)).await;
    assert_eq!(a.status, 201, "{} {}", a.head, a.body);
    let first = a.header("location").unwrap().to_string();
    assert!(
        first.starts_with("/whip/") && !first.starts_with(&path),
        "{first}"
    );
    let b = http(port, "POST", &path, SDP, Some(OFFER)).await;
    assert_eq!(b.status, 201, "a new POST replaces: {} {}", b.head, b.body);
    let second = b.header("location").unwrap().to_string();
    // The first publisher's endpoint went, and its session with it.
    assert_eq!(http(port, "DELETE", &first, AUTH, None).await.status, 404);
    // Every connection into the sink (audio, video, data) is from the second publisher: its
    // own URL is the parent of the second Location.
    let c = invoke(ws, 6, &sink, "getSourceConnections", json!({})).await;
    let sources = c["result"]["value"].as_array().unwrap();
    assert!(!sources.is_empty(), "{c}");
    let publisher = sources[0]["source"].as_str().unwrap().to_string();
    assert!(
        sources.iter().all(|s| s["source"] == json!(publisher)),
        "one publisher: {c}"
    );
    let u = invoke(ws, 16, &publisher, "getTag", json!({"key":"fluoWhipUrl"})).await;
    let (_, own) = split(u["result"]["value"].as_str().expect("its URL"));
    assert_eq!(
        Some(own.as_str()),
        second.rsplit_once('/').map(|(p, _)| p),
        "the sink's source is the second publisher"
    );
    let t = invoke(ws, 7, &publisher, "getTag", json!({"key":"fluoWhipSink"})).await;
    assert_eq!(t["result"]["value"], json!(sink), "{t}");
    // Releasing the sink releases its publisher and the URL.
    ask(
        ws,
        json!({"jsonrpc":"2.0","id":8,"method":"release","params":{"object": sink}}),
        &mut events,
    )
    .await;
    assert_eq!(http(port, "DELETE", &second, AUTH, None).await.status, 404);
    assert_eq!(
        http(port, "POST", &path, SDP, Some(OFFER)).await.status,
        404
    );
    let r = invoke(ws, 9, &publisher, "getName", json!({})).await;
    assert_eq!(r["error"]["code"], 40101, "{r}");
}
