//! The real server on 127.0.0.1:0 over real WebSockets: path check, frames, limits,
//! pipelining, vanishing clients, events.
use fluo_server::{run, Config};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

struct Server {
    port: u16,
    stop: watch::Sender<bool>,
}

async fn start(mut config: Config) -> Server {
    config.http_port = 0; // tests bind port 0 (KMS's 9091 is the default)
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, rx) = watch::channel(false);
    tokio::spawn(run(listener, config, rx));
    Server { port, stop }
}

async fn open(port: u16, path: &str) -> Ws {
    connect_async(format!("ws://127.0.0.1:{port}/{path}"))
        .await
        .unwrap()
        .0
}

/// A client WebSocket over any stream (plain or TLS).
trait Socket:
    futures_util::Stream<Item = Result<Message, WsError>>
    + futures_util::Sink<Message, Error = WsError>
    + Unpin
{
}
impl<T> Socket for T where
    T: futures_util::Stream<Item = Result<Message, WsError>>
        + futures_util::Sink<Message, Error = WsError>
        + Unpin
{
}
type WsError = tokio_tungstenite::tungstenite::Error;

async fn next_json(ws: &mut impl Socket) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a reply within 10 s")
            .expect("stream open")
            .expect("no error");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn call(ws: &mut impl Socket, v: Value) -> Value {
    ws.send(Message::text(v.to_string())).await.unwrap();
    next_json(ws).await
}

#[tokio::test]
async fn a_wrong_path_is_closed_with_1002() {
    let s = start(Config::default()).await;
    let mut ws = open(s.port, "other").await;
    match ws.next().await {
        Some(Ok(Message::Close(Some(f)))) => {
            assert_eq!(u16::from(f.code), 1002);
            assert_eq!(f.reason.as_str(), "Invalid path");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    // query strings are ignored
    let mut ws = open(s.port, "kurento?access_token=abc").await;
    let r = call(&mut ws, json!({"jsonrpc":"2.0","id":1,"method":"ping"})).await;
    assert_eq!(r["result"]["value"], "pong");
    s.stop.send(true).unwrap();
}

#[tokio::test]
async fn binary_and_oversized_frames_get_errors_and_the_socket_stays_usable() {
    let s = start(Config {
        max_message_bytes: 4096,
        ..Config::default()
    })
    .await;
    let mut ws = open(s.port, "kurento").await;
    // Binary frames carrying JSON are requests (Node's kurento-client sends those).
    ws.send(Message::binary(
        br#"{"jsonrpc":"2.0","id":"b","method":"ping"}"#.to_vec(),
    ))
    .await
    .unwrap();
    let r = next_json(&mut ws).await;
    assert_eq!(r["result"]["value"], "pong");
    ws.send(Message::binary(vec![0xff, 0xfe, 0x00]))
        .await
        .unwrap();
    let r = next_json(&mut ws).await;
    assert_eq!(r["error"]["code"], -32700);
    let big = json!({"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"x".repeat(10_000)}});
    let r = call(&mut ws, big).await;
    assert_eq!(r["error"]["code"], -32600);
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("exceeds the limit"));
    let r = call(&mut ws, json!({"jsonrpc":"2.0","id":2,"method":"ping"})).await;
    assert_eq!(r["result"]["value"], "pong");
    // Far beyond the hard limit the connection is closed, and the server keeps serving.
    let huge = "y".repeat(1 << 20);
    let _ = ws.send(Message::text(huge)).await;
    let mut ws2 = open(s.port, "kurento").await;
    let r = call(&mut ws2, json!({"jsonrpc":"2.0","id":3,"method":"ping"})).await;
    assert_eq!(r["result"]["value"], "pong");
    s.stop.send(true).unwrap();
}

/// The read buffer starts at 1 KiB and grows for a larger frame: requests of every size up
/// to the limit are read whole, on one socket, small ones again after the largest.
#[tokio::test]
async fn requests_far_larger_than_the_read_buffer_are_read_whole_up_to_the_limit() {
    let limit = Config::default().max_message_bytes;
    let s = start(Config::default()).await;
    let mut ws = open(s.port, "kurento").await;
    for (id, size) in [
        (1, 900),
        (2, 1025),
        (3, 5_000),
        (4, 70_000),
        (5, limit),
        (6, 900),
    ] {
        let request = |pad: &str| {
            json!({"jsonrpc":"2.0","id":id,"method":"ping","params":{"pad":pad}}).to_string()
        };
        let text = request(&"x".repeat(size - request("").len()));
        assert_eq!(text.len(), size);
        ws.send(Message::text(text)).await.unwrap();
        let r = next_json(&mut ws).await;
        assert_eq!(r["id"], id, "{r}");
        assert_eq!(
            r["result"]["value"], "pong",
            "a request of {size} bytes: {r}"
        );
    }
    s.stop.send(true).unwrap();
}

#[tokio::test]
async fn a_thousand_requests_in_flight_on_one_socket_are_all_answered() {
    let s = start(Config::default()).await;
    let mut ws = open(s.port, "kurento").await;
    let p = call(
        &mut ws,
        json!({"jsonrpc":"2.0","id":"c","method":"create","params":{"type":"MediaPipeline"}}),
    )
    .await;
    let pipe = p["result"]["value"].as_str().unwrap().to_string();
    for i in 0..1000 {
        let op = if i % 2 == 0 { "getName" } else { "bogus" };
        let req = json!({"jsonrpc":"2.0","id":i,"method":"invoke","params":{"object":pipe,"operation":op}});
        ws.send(Message::text(req.to_string())).await.unwrap();
    }
    let mut seen = vec![false; 1000];
    for _ in 0..1000 {
        let r = next_json(&mut ws).await;
        let i = r["id"].as_u64().unwrap() as usize;
        assert!(!seen[i], "duplicate reply {i}");
        seen[i] = true;
        if i.is_multiple_of(2) {
            assert_eq!(r["result"]["value"], json!(pipe));
        } else {
            assert_eq!(r["error"]["code"], 40008);
        }
    }
    s.stop.send(true).unwrap();
}

#[tokio::test]
async fn clients_vanishing_mid_request_do_not_disturb_the_server() {
    let s = start(Config::default()).await;
    for _ in 0..20 {
        let mut ws = open(s.port, "kurento").await;
        for i in 0..50 {
            let req =
                json!({"jsonrpc":"2.0","id":i,"method":"create","params":{"type":"MediaPipeline"}});
            ws.send(Message::text(req.to_string())).await.unwrap();
        }
        drop(ws); // no close handshake
    }
    let mut ws = open(s.port, "kurento").await;
    let r = call(&mut ws, json!({"jsonrpc":"2.0","id":1,"method":"ping"})).await;
    assert_eq!(r["result"]["value"], "pong");
    s.stop.send(true).unwrap();
}

#[tokio::test]
async fn events_reach_another_connection_of_a_subscribed_session() {
    let s = start(Config::default()).await;
    let mut watcher = open(s.port, "kurento").await;
    let r = call(&mut watcher, json!({"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"object":"manager_ServerManager","type":"ObjectCreated"}})).await;
    assert!(r["result"]["value"].is_string());
    let mut actor = open(s.port, "kurento").await;
    let r = call(
        &mut actor,
        json!({"jsonrpc":"2.0","id":1,"method":"create","params":{"type":"MediaPipeline"}}),
    )
    .await;
    let id = r["result"]["value"].clone();
    let ev = next_json(&mut watcher).await;
    assert_eq!(ev["method"], "onEvent");
    assert_eq!(ev["params"]["value"]["type"], "ObjectCreated");
    assert_eq!(ev["params"]["value"]["data"]["object"], id);
    s.stop.send(true).unwrap();
}

#[tokio::test]
async fn shutdown_closes_connections() {
    let s = start(Config::default()).await;
    let mut ws = open(s.port, "kurento").await;
    let r = call(&mut ws, json!({"jsonrpc":"2.0","id":1,"method":"ping"})).await;
    assert_eq!(r["result"]["value"], "pong");
    s.stop.send(true).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the connection ends within 5 s of shutdown");
}

#[tokio::test]
async fn with_a_token_configured_clients_without_it_get_401() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let s = start(Config {
        auth_token: Some("s3cret/+x".into()),
        ..Config::default()
    })
    .await;
    let url = format!("ws://127.0.0.1:{}/kurento", s.port);
    match connect_async(url.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 401);
        }
        other => panic!("expected HTTP 401, got {:?}", other.map(|_| ())),
    }
    let wrong = format!("{url}?access_token=nope");
    assert!(connect_async(wrong).await.is_err());
    // kurento-client's access_token option: ?access_token=..., percent-encoded
    let (mut ws, _) = connect_async(format!("{url}?access_token=s3cret%2F%2Bx"))
        .await
        .expect("token in the query");
    let r = call(&mut ws, json!({"jsonrpc":"2.0","id":1,"method":"ping"})).await;
    assert_eq!(r["result"]["value"], "pong");
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", "Bearer s3cret/+x".parse().unwrap());
    let (mut ws, _) = connect_async(req).await.expect("token in the header");
    let r = call(&mut ws, json!({"jsonrpc":"2.0","id":2,"method":"ping"})).await;
    assert_eq!(r["result"]["value"], "pong");
    s.stop.send(true).unwrap();
}

#[tokio::test]
async fn wss_serves_the_same_protocol_and_shrugs_off_bad_handshakes() {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("fluo-wss-")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path();
    let path = dir.join("cert.pem");
    std::fs::write(
        &path,
        format!("{}{}", ck.cert.pem(), ck.signing_key.serialize_pem()),
    )
    .unwrap();
    let settings = fluo_server::tls::TlsSettings::from_pem_file(&path).unwrap();
    // A file without a key is refused with a clear error.
    std::fs::write(dir.join("nokey.pem"), ck.cert.pem()).unwrap();
    let err = fluo_server::tls::TlsSettings::from_pem_file(&dir.join("nokey.pem"))
        .err()
        .expect("a certificate without a key is refused");
    assert!(err.to_string().contains("private key"), "{err}");

    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let secure = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = secure.local_addr().unwrap().port();
    let (stop, rx) = watch::channel(false);
    tokio::spawn(fluo_server::run_with_tls(
        plain,
        Some((secure, settings)),
        Config::default(),
        rx,
    ));
    // Junk instead of a TLS handshake does not disturb the listener.
    let mut junk = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut junk, b"GET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    drop(junk);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("wss://localhost:{port}/kurento"), tls)
            .await
            .expect("WebSocket over TLS");
    ws.send(Message::text(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#))
        .await
        .unwrap();
    let reply = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => break serde_json::from_str::<Value>(&t).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("no reply: {other:?}"),
        }
    };
    assert_eq!(reply["result"]["value"], "pong");
    stop.send(true).unwrap();
}

/// A WebSocket whose socket asks a small receive buffer (4 KiB; the kernel doubles it), so
/// that what the server sends and the client does not read piles up in the server's buffers.
async fn open_small(port: u16) -> Ws {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    let url = format!("ws://127.0.0.1:{port}/kurento");
    tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
        .await
        .unwrap()
        .0
}

/// The name of [`big_named_pipeline`]'s pipeline: each `getName` reply carries it.
const NAME: usize = 512 * 1024;
/// `getName`s sent: 8 MiB of replies, twice the most a socket's send buffer grows to here
/// (`tcp_wmem` 4 MiB), so that the server waits for the client whatever the core's speed.
const ASKED: usize = 16;

/// A pipeline whose name is [`NAME`] bytes long, then [`ASKED`] `getName`s sent on `ws`:
/// the pipeline's id and the session's.
async fn ask_for_big_replies(ws: &mut impl Socket) -> (String, String) {
    let p = call(
        ws,
        json!({"jsonrpc":"2.0","id":"p","method":"create","params":{"type":"MediaPipeline"}}),
    )
    .await;
    let pipe = p["result"]["value"].as_str().unwrap().to_string();
    let session = p["result"]["sessionId"].as_str().unwrap().to_string();
    let name = "n".repeat(NAME);
    let r = call(ws, json!({"jsonrpc":"2.0","id":"n","method":"invoke","params":{"object":pipe,"operation":"setName","operationParams":{"name":name},"sessionId":session}})).await;
    assert!(r.get("error").is_none(), "setName: {r}");
    for i in 0..ASKED {
        let req = json!({"jsonrpc":"2.0","id":i,"method":"invoke","params":{"object":pipe,"operation":"getName","sessionId":session}});
        ws.send(Message::text(req.to_string())).await.unwrap();
    }
    (pipe, session)
}

/// The write timeout: a socket that takes nothing while replies wait is closed once it has
/// taken nothing for `ws_write_timeout`, however few replies wait (the outbox's 1024 frames
/// are never reached here), and the session waits out its grace period for a reconnection.
/// Sends a ping every 200 ms until a send fails (a socket the server closed answers what
/// comes next with a reset): the time from `since`; fails once `most` has passed.
async fn pinged_until_closed(ws: &mut impl Socket, since: Instant, most: Duration) -> Duration {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if ws.send(Message::Ping(vec![].into())).await.is_err() {
            return since.elapsed();
        }
        let waited = since.elapsed();
        assert!(waited < most, "still open after {waited:?}");
    }
}

/// The text replies a closed connection still delivers (what the socket buffers held), read
/// until it ends, which must be within 10 s.
async fn replies_until_end(ws: &mut impl Socket) -> usize {
    let mut replies = 0;
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_text() {
                replies += 1;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the connection ended");
    replies
}

/// As for any dropped connection, `session` and its pipeline `pipe` are kept: a new connection
/// to `port` resumes the session and describes the pipeline (with request id `id`, one the
/// session has not used: the replay cache answers those it has, for 20 s).
async fn resumes_with(port: u16, session: &str, pipe: &str, id: &str) {
    let mut again = open(port, "kurento").await;
    let r = call(
        &mut again,
        json!({"jsonrpc":"2.0","id":"c","method":"connect","params":{"sessionId":session}}),
    )
    .await;
    assert_eq!(r["result"]["sessionId"], json!(session), "{r}");
    let r = call(&mut again, json!({"jsonrpc":"2.0","id":id,"method":"describe","params":{"object":pipe,"sessionId":session}})).await;
    assert_eq!(r["result"]["type"], "MediaPipeline", "{r}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_after_the_write_timeout() {
    let stall = Duration::from_secs(2);
    let s = start(Config {
        ws_write_timeout: stall,
        ..Config::default()
    })
    .await;
    let mut ws = open_small(s.port).await;
    let (pipe, session) = ask_for_big_replies(&mut ws).await;
    let asked = Instant::now();
    // Not reading, only sending a ping every 200 ms until a send fails: a socket the server
    // has closed answers what comes next with a reset. However slowly the core answers, the
    // server's buffers fill within a few replies, and the timeout runs from there.
    let closed_after = pinged_until_closed(&mut ws, asked, Duration::from_secs(40)).await;
    println!("closed {closed_after:?} after the requests");
    assert!(closed_after >= stall, "closed after {closed_after:?}");
    // What the socket buffers held, then the end: not every reply.
    let replies = replies_until_end(&mut ws).await;
    assert!(replies < ASKED, "{replies} of {ASKED} replies came");
    // As for any dropped connection, the session and its objects are kept for a reconnection
    // (ids the session has not used: the replay cache answers those it has, for 20 s).
    resumes_with(s.port, &session, &pipe, "d").await;
    s.stop.send(true).unwrap();
}

/// The write timeout under TLS: progress is counted below rustls, on the TCP socket, so a
/// `wss://` client that stops reading is closed as a plain one is, its session kept.
#[tokio::test]
async fn a_wss_client_that_stops_reading_is_disconnected_after_the_write_timeout() {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("fluo-wss-")
        .tempdir()
        .expect("temp dir");
    let path = tmp.path().join("cert.pem");
    let pem = format!("{}{}", ck.cert.pem(), ck.signing_key.serialize_pem());
    std::fs::write(&path, pem).unwrap();
    let settings = fluo_server::tls::TlsSettings::from_pem_file(&path).unwrap();
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_port = plain.local_addr().unwrap().port();
    let secure = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = secure.local_addr().unwrap().port();
    let (stop, rx) = watch::channel(false);
    let stall = Duration::from_secs(2);
    let config = Config {
        ws_write_timeout: stall,
        http_port: 0,
        ..Config::default()
    };
    tokio::spawn(fluo_server::run_with_tls(
        plain,
        Some((secure, settings)),
        config,
        rx,
    ));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let url = format!("wss://localhost:{port}/kurento");
    let mut ws = tokio_tungstenite::client_async(url, tls).await.unwrap().0;
    let (pipe, session) = ask_for_big_replies(&mut ws).await;
    let asked = Instant::now();
    let closed_after = pinged_until_closed(&mut ws, asked, Duration::from_secs(40)).await;
    println!("closed {closed_after:?} after the requests");
    assert!(closed_after >= stall, "closed after {closed_after:?}");
    resumes_with(plain_port, &session, &pipe, "d").await;
    stop.send(true).unwrap();
}

/// The outbox bound, without the write timeout's help (600 s here): the writer stuck behind
/// full socket buffers, the core's small replies pile up in the connection's outbox, and the
/// one that finds it full (1024 frames) ends the connection at once, its session kept.
#[tokio::test]
async fn a_client_whose_outbox_fills_is_disconnected_before_any_write_timeout() {
    let s = start(Config {
        ws_write_timeout: Duration::from_secs(600),
        ..Config::default()
    })
    .await;
    let mut ws = open_small(s.port).await;
    let (pipe, session) = ask_for_big_replies(&mut ws).await;
    let asked = Instant::now();
    // 1100 small replies behind the stuck ones: more than the outbox holds.
    for i in 0..1100 {
        let req = json!({"jsonrpc":"2.0","id":format!("d{i}"),"method":"describe","params":{"object":pipe,"sessionId":session}});
        if ws.send(Message::text(req.to_string())).await.is_err() {
            break;
        }
    }
    let closed_after = pinged_until_closed(&mut ws, asked, Duration::from_secs(30)).await;
    println!("closed {closed_after:?} after the requests");
    let replies = replies_until_end(&mut ws).await;
    assert!(replies < ASKED + 1100, "{replies} replies came");
    resumes_with(s.port, &session, &pipe, "e").await;
    s.stop.send(true).unwrap();
}

/// The write timeout counts time without progress, not a reply's whole time: a client that
/// reads slowly (a 512 KiB reply every 0.4 s, 8 MiB in about 7 s, the server's buffers full
/// all along) keeps its connection and gets every reply. The socket takes bytes again only
/// once a third of its send buffer has drained (Linux's rule for writable), about 1.4 MiB
/// here, 1.2-1.5 s at this pace: the timeout, 5 s, is above that.
#[tokio::test]
async fn a_client_that_reads_slowly_but_steadily_gets_every_reply() {
    let s = start(Config {
        ws_write_timeout: Duration::from_secs(5),
        ..Config::default()
    })
    .await;
    let mut ws = open_small(s.port).await;
    let (pipe, _) = ask_for_big_replies(&mut ws).await;
    let mut seen = [false; ASKED];
    for _ in 0..ASKED {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = next_json(&mut ws).await;
        let name = r["result"]["value"].as_str().map(str::len);
        assert_eq!(name, Some(NAME), "reply {}", r["id"]);
        seen[r["id"].as_u64().unwrap() as usize] = true;
    }
    assert!(seen.iter().all(|s| *s));
    let r = call(
        &mut ws,
        json!({"jsonrpc":"2.0","id":"d","method":"describe","params":{"object":pipe}}),
    )
    .await;
    assert_eq!(r["result"]["type"], "MediaPipeline", "{r}");
    s.stop.send(true).unwrap();
}

#[tokio::test]
async fn pings_are_answered_with_the_connections_session() {
    let s = start(Config::default()).await;
    let mut ws = open(s.port, "kurento").await;
    let r = call(
        &mut ws,
        json!({"jsonrpc":"2.0","id":0,"method":"ping","params":{"interval":5000}}),
    )
    .await;
    assert_eq!(r["result"], json!({"value":"pong"}), "no session yet");
    let d = call(&mut ws, json!({"jsonrpc":"2.0","id":1,"method":"describe","params":{"object":"manager_ServerManager"}})).await;
    let session = d["result"]["sessionId"].clone();
    assert!(session.is_string());
    let r = call(&mut ws, json!({"jsonrpc":"2.0","id":2,"method":"ping"})).await;
    assert_eq!(r["result"], json!({"value":"pong","sessionId": session}));
    // A ping naming another session is answered with that one (by the engine).
    let r = call(
        &mut ws,
        json!({"jsonrpc":"2.0","id":3,"method":"ping","params":{"sessionId":"other"}}),
    )
    .await;
    assert_eq!(r["result"]["sessionId"], "other");
    s.stop.send(true).unwrap();
}

/// A WebSocket to the server from the local address `from` (any 127.0.0.0/8 address reaches
/// a listener on 127.0.0.1 on Linux), so that tests can be several client hosts.
async fn open_from(port: u16, from: &str) -> Ws {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = sock
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    let url = format!("ws://127.0.0.1:{port}/kurento");
    tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
        .await
        .unwrap()
        .0
}

/// Sends every request at once, then collects the replies by id.
async fn burst(ws: &mut Ws, reqs: Vec<Value>) -> Vec<Value> {
    let n = reqs.len();
    for r in reqs {
        ws.send(Message::text(r.to_string())).await.unwrap();
    }
    let mut out = vec![Value::Null; n];
    for _ in 0..n {
        let r = next_json(ws).await;
        let i = r["id"].as_u64().expect("a reply with an id") as usize;
        out[i] = r;
    }
    out
}

#[tokio::test]
async fn limits_hold_per_connection_and_address_whatever_session_ids_a_client_makes_up() {
    let s = start(Config {
        max_objects_per_connection: 10,
        max_objects_per_address: 25,
        ..Config::default()
    })
    .await;
    let mut made = vec![];
    let mut refused = vec![];
    for c in 0..3 {
        // Three connections from 127.0.0.1, each making up 1000 session ids.
        let mut ws = open_from(s.port, "127.0.0.1").await;
        let reqs = (0..1000)
            .map(|i| {
                json!({"jsonrpc":"2.0","id":i,"method":"create","params":{
                    "type":"MediaPipeline","sessionId": uuid_like(c * 1000 + i)}})
            })
            .collect();
        for r in burst(&mut ws, reqs).await {
            match r["result"]["value"].as_str() {
                Some(id) => made.push(id.to_string()),
                None => refused.push(r["error"].clone()),
            }
        }
        // The connection is still served (not disconnected).
        let r = call(&mut ws, json!({"jsonrpc":"2.0","id":"p","method":"ping"})).await;
        assert_eq!(r["result"]["value"], "pong");
    }
    made.sort();
    made.dedup();
    assert_eq!(
        made.len(),
        25,
        "10 + 10 + 5 objects from 3000 made-up sessions"
    );
    let per_conn = refused
        .iter()
        .filter(|e| e["message"] == "Limit reached: at most 10 objects per connection")
        .count();
    let per_addr = refused
        .iter()
        .filter(|e| e["message"] == "Limit reached: at most 25 objects per client address")
        .count();
    assert_eq!((per_conn, per_addr), (1980, 995), "{:?}", refused.first());
    assert!(refused
        .iter()
        .all(|e| e["code"] == 40009 && e["data"]["type"] == "NOT_ENOUGH_RESOURCES"));

    // A well-behaved client on another address works as usual, and sees every object the
    // other one made.
    let mut good = open_from(s.port, "127.0.0.2").await;
    let p = call(
        &mut good,
        json!({"jsonrpc":"2.0","id":1,"method":"create","params":{"type":"MediaPipeline"}}),
    )
    .await;
    let pipe = p["result"]["value"]
        .as_str()
        .expect("a pipeline")
        .to_string();
    for i in 2..7 {
        let r = call(
            &mut good,
            json!({"jsonrpc":"2.0","id":i,"method":"create","params":{
            "type":"WebRtcEndpoint","constructorParams":{"mediaPipeline": pipe}}}),
        )
        .await;
        assert!(r["result"]["value"].is_string(), "{r}");
    }
    let r = call(
        &mut good,
        json!({"jsonrpc":"2.0","id":9,"method":"invoke","params":{
        "object":"manager_ServerManager","operation":"getPipelines"}}),
    )
    .await;
    let listed: Vec<String> = serde_json::from_value(r["result"]["value"].clone()).unwrap();
    for id in &made {
        assert!(listed.contains(id), "{id} was lost");
    }
    assert_eq!(listed.len(), 26);
    s.stop.send(true).unwrap();
}

fn uuid_like(i: u64) -> String {
    format!("{i:08x}-0000-4000-8000-{:012x}", i * 7919)
}

#[tokio::test]
async fn max_sessions_holds_and_known_sessions_keep_working() {
    let s = start(Config {
        max_sessions: 5,
        ..Config::default()
    })
    .await;
    let mut ws = open_from(s.port, "127.0.0.3").await;
    let reqs = (0..50)
        .map(|i| {
            json!({"jsonrpc":"2.0","id":i,"method":"create","params":{
                "type":"MediaPipeline","sessionId": format!("s-{i}")}})
        })
        .collect();
    let replies = burst(&mut ws, reqs).await;
    let ok: Vec<&Value> = replies
        .iter()
        .filter(|r| r["result"]["value"].is_string())
        .collect();
    assert_eq!(ok.len(), 5, "{:?}", replies.last());
    for r in replies.iter().filter(|r| r.get("error").is_some()) {
        assert_eq!(r["error"]["code"], 40009);
        assert_eq!(
            r["error"]["message"],
            "Limit reached: at most 5 sessions on this server"
        );
    }
    // Another client (on the session limit too) is refused the same way, not disconnected,
    // and a client reconnecting with one of the five sessions is served.
    let mut other = open_from(s.port, "127.0.0.4").await;
    let r = call(
        &mut other,
        json!({"jsonrpc":"2.0","id":1,"method":"create","params":{"type":"MediaPipeline"}}),
    )
    .await;
    assert_eq!(r["error"]["code"], 40009, "{r}");
    let r = call(
        &mut other,
        json!({"jsonrpc":"2.0","id":2,"method":"connect","params":{"sessionId":"s-0"}}),
    )
    .await;
    assert_eq!(r["result"]["sessionId"], "s-0", "{r}");
    let r = call(
        &mut other,
        json!({"jsonrpc":"2.0","id":3,"method":"invoke","params":{
            "object": ok[0]["result"]["value"], "operation": "getName"}}),
    )
    .await;
    assert!(r["result"]["value"].is_string(), "{r}");
    s.stop.send(true).unwrap();
}

/// Like [`open_from`], but a refused connection is an error rather than a panic.
async fn try_open_from(port: u16, from: &str) -> Result<Ws, String> {
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(format!("{from}:0").parse().unwrap())
        .map_err(|e| e.to_string())?;
    let tcp = sock
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let url = format!("ws://127.0.0.1:{port}/kurento");
    let ws = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp)),
    )
    .await
    .map_err(|_| "no handshake in 5 s".to_string())?
    .map_err(|e| e.to_string())?
    .0;
    Ok(ws)
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let s = start(Config {
        max_connections: 5,
        max_connections_per_address: 3,
        ..Config::default()
    })
    .await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}});
    // Three from one address serve; the fourth from it is refused.
    let mut a = vec![];
    for _ in 0..3 {
        let mut ws = try_open_from(s.port, "127.0.0.2")
            .await
            .expect("within the address's share");
        assert_eq!(call(&mut ws, ping.clone()).await["result"]["value"], "pong");
        a.push(ws);
    }
    assert!(
        try_open_from(s.port, "127.0.0.2").await.is_err(),
        "a fourth from 127.0.0.2 is refused"
    );
    // Other addresses still get in, up to the server's limit.
    let mut b = vec![];
    for from in ["127.0.0.3", "127.0.0.4"] {
        let mut ws = try_open_from(s.port, from).await.expect("another address");
        assert_eq!(call(&mut ws, ping.clone()).await["result"]["value"], "pong");
        b.push(ws);
    }
    assert!(
        try_open_from(s.port, "127.0.0.5").await.is_err(),
        "the server's limit (5) holds"
    );
    // A connection that closes gives its address its slot back.
    drop(a.pop());
    let mut back = None;
    for _ in 0..50 {
        if let Ok(ws) = try_open_from(s.port, "127.0.0.2").await {
            back = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ws = back.expect("127.0.0.2 gets a slot again once one of its connections closed");
    assert_eq!(call(&mut ws, ping).await["result"]["value"], "pong");
    s.stop.send(true).unwrap();
}

/// A `wss://` connection from `from` to `port`, trusting `cert`, or why not.
async fn try_open_wss_from(
    port: u16,
    from: &str,
    cert: &tokio_rustls::rustls::pki_types::CertificateDer<'static>,
) -> Result<(), String> {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(format!("{from}:0").parse().unwrap())
        .map_err(|e| e.to_string())?;
    let tcp = sock
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connect = async {
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (mut ws, _) =
            tokio_tungstenite::client_async(format!("wss://localhost:{port}/kurento"), tls)
                .await
                .map_err(|e| e.to_string())?;
        let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}});
        ws.send(Message::text(ping.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("pong") => Ok(ws),
            other => Err(format!("no pong: {other:?}")),
        }
    };
    let ws = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| "no wss connection in 5 s".to_string())??;
    // Kept open until the test ends: leaked into a task that holds it.
    tokio::spawn(async move {
        let mut ws = ws;
        while let Some(Ok(_)) = ws.next().await {}
    });
    Ok(())
}

#[tokio::test]
async fn the_share_per_address_counts_ws_and_wss_together() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("fluo-wss-share-")
        .tempdir()
        .expect("temp dir");
    let path = tmp.path().join("cert.pem");
    std::fs::write(
        &path,
        format!("{}{}", ck.cert.pem(), ck.signing_key.serialize_pem()),
    )
    .unwrap();
    let settings = fluo_server::tls::TlsSettings::from_pem_file(&path).unwrap();
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let secure = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (port, secure_port) = (
        plain.local_addr().unwrap().port(),
        secure.local_addr().unwrap().port(),
    );
    let (stop, rx) = watch::channel(false);
    tokio::spawn(fluo_server::run_with_tls(
        plain,
        Some((secure, settings)),
        Config {
            max_connections: 4,
            max_connections_per_address: 2,
            ..Config::default()
        },
        rx,
    ));
    let cert = ck.cert.der().clone();
    // One plain and one secure connection from 127.0.0.2 fill its share of two ...
    let mut plain_ws = try_open_from(port, "127.0.0.2").await.expect("ws");
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}});
    assert_eq!(
        call(&mut plain_ws, ping.clone()).await["result"]["value"],
        "pong"
    );
    try_open_wss_from(secure_port, "127.0.0.2", &cert)
        .await
        .expect("wss within the address's share");
    // ... so a third is refused on either listener.
    assert!(
        try_open_wss_from(secure_port, "127.0.0.2", &cert)
            .await
            .is_err(),
        "a third connection from 127.0.0.2 (wss) is refused"
    );
    assert!(
        try_open_from(port, "127.0.0.2").await.is_err(),
        "a third connection from 127.0.0.2 (ws) is refused"
    );
    // The server's limit (4) also counts both listeners: two more from another address fill it.
    try_open_wss_from(secure_port, "127.0.0.3", &cert)
        .await
        .expect("wss from another address");
    let _b = try_open_from(port, "127.0.0.3")
        .await
        .expect("ws from another address");
    assert!(
        try_open_from(port, "127.0.0.4").await.is_err(),
        "the server's limit (4) holds across ws and wss"
    );
    stop.send(true).unwrap();
}
