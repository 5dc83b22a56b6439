//! The HTTP listener of HttpPostEndpoint on the real server (127.0.0.1, port 0), over raw
//! TCP and TLS: getUrl names it; the WebSocket's token is required; malformed, oversized and
//! misdirected requests get their statuses before any media; `--http-tls` serves https://
//! with the wss:// certificate. (The uploads themselves: tests/compat/test/18-http-post.)
use fluo_server::{run_with_tls, Config};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "t0ken/+x";

/// A server with its HTTP listener on any port; its WebSocket port.
async fn start(
    config: Config,
    tls: Option<fluo_server::tls::TlsSettings>,
) -> (u16, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let secure = match tls {
        Some(t) => Some((TcpListener::bind("127.0.0.1:0").await.unwrap(), t)),
        None => None,
    };
    let (stop, rx) = watch::channel(false);
    tokio::spawn(run_with_tls(listener, secure, config, rx));
    (port, stop)
}

fn config() -> Config {
    Config {
        bind: [127, 0, 0, 1].into(),
        http_port: 0,
        http_max_body: 1000,
        auth_token: Some(TOKEN.into()),
        workers: 0,
        ..Config::default()
    }
}

/// getUrl of a new HttpPostEndpoint, through the WebSocket (with the token).
async fn endpoint_url(ws_port: u16) -> String {
    endpoint(ws_port, json!({})).await.2
}

/// A new HttpPostEndpoint with constructor parameters `params`: the WebSocket it was made on,
/// its id, and its URL (getUrl).
async fn endpoint(ws_port: u16, params: Value) -> (Ws, String, String) {
    let mut req = format!("ws://127.0.0.1:{ws_port}/kurento")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("ws");
    let p = ask(
        &mut ws,
        json!({"jsonrpc":"2.0","id":1,"method":"create","params":{"type":"MediaPipeline"}}),
    )
    .await;
    let pipe = p["result"]["value"].as_str().expect("a pipeline");
    let mut params = params;
    params["mediaPipeline"] = json!(pipe);
    let e = ask(
        &mut ws,
        json!({"jsonrpc":"2.0","id":2,"method":"create","params":{
        "type":"HttpPostEndpoint","constructorParams": params}}),
    )
    .await;
    let ep = e["result"]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("{e}"))
        .to_string();
    let url = get_url(&mut ws, &ep).await;
    (ws, ep, url)
}

async fn get_url(ws: &mut Ws, ep: &str) -> String {
    // A request id of its own each time (a repeated id gets the first answer again).
    static ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(100);
    let id = ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let u = ask(
        ws,
        json!({"jsonrpc":"2.0","id":id,"method":"invoke","params":{
        "object": ep, "operation": "getUrl"}}),
    )
    .await;
    u["result"]["value"].as_str().expect("a URL").to_string()
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A request's reply (events skipped).
async fn ask(ws: &mut Ws, v: Value) -> Value {
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
        }
    }
}

/// Sends `request` raw and reads the answer's status line and body.
async fn raw<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, request: &[u8]) -> (u16, String) {
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}

fn split(url: &str) -> (u16, String) {
    let rest = url.split_once("://").unwrap().1;
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let port = host.rsplit(':').next().unwrap().parse().unwrap();
    (port, path.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_checked_before_any_media() {
    let (ws_port, stop) = start(config(), None).await;
    // Its URL must outlive the refused uploads (each starts the disconnection timeout).
    let url = endpoint(ws_port, json!({"disconnectionTimeout": 600}))
        .await
        .2;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (port, path) = split(&url);
    let conn = || async move { TcpStream::connect(("127.0.0.1", port)).await.unwrap() };

    let post = |p: &str, extra: &str| {
        format!("POST {p} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: 5000\r\n\r\n").into_bytes()
    };
    let (s, t) = raw(conn().await, &post(&path, "")).await;
    assert_eq!(s, 401, "{t}");
    assert!(t.contains("WWW-Authenticate: Bearer"), "{t}");
    let (s, _) = raw(conn().await, &post(&path, "Authorization: Bearer nope\r\n")).await;
    assert_eq!(s, 401);
    // The token passes (header or query): the body's size is judged next.
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let (s, t) = raw(conn().await, &post(&path, &bearer)).await;
    assert_eq!(s, 413, "{t}");
    assert!(t.contains("limit of 1000 bytes"), "{t}");
    let query = format!("{path}?access_token=t0ken%2F%2Bx");
    let (s, _) = raw(conn().await, &post(&query, "")).await;
    assert_eq!(s, 413);

    let get = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let (s, t) = raw(conn().await, get.as_bytes()).await;
    assert_eq!(s, 405, "{t}");
    assert!(t.contains("Allow: POST"), "{t}");
    assert!(t.contains("Access-Control-Allow-Origin: *"), "{t}");
    // A browser's preflight for a cross-origin upload (no token asked: it carries none).
    let preflight = format!(
        "OPTIONS {path} HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\n\r\n"
    );
    let (s, t) = raw(conn().await, preflight.as_bytes()).await;
    assert_eq!(s, 204, "{t}");
    for h in [
        "Access-Control-Allow-Origin: *",
        "Access-Control-Allow-Methods: POST",
        "Access-Control-Allow-Headers: authorization, content-type",
    ] {
        assert!(t.contains(h), "{h} in {t}");
    }
    // A 204 has no body, and so neither Content-Length nor Content-Type (RFC 9110 8.6).
    assert!(
        !t.contains("Content-Length") && !t.contains("Content-Type"),
        "{t}"
    );
    assert!(t.ends_with("\r\n\r\n"), "no body: {t:?}");
    let (s, _) = raw(
        conn().await,
        b"POST /post/nothing HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = raw(conn().await, b"NOT HTTP AT ALL\r\n\r\n").await;
    assert_eq!(s, 400);
    let huge = format!("POST {path} HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let (s, _) = raw(conn().await, huge.as_bytes()).await;
    assert_eq!(s, 431);
    let no_length = format!("POST {path} HTTP/1.1\r\nHost: x\r\n{bearer}\r\n");
    let (s, _) = raw(conn().await, no_length.as_bytes()).await;
    assert_eq!(s, 411);
    let both = format!(
        "POST {path} HTTP/1.1\r\n{bearer}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let (s, _) = raw(conn().await, both.as_bytes()).await;
    assert_eq!(s, 400);
    stop.send(true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_tls_serves_https_with_the_wss_certificate() {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("fluo-https-")
        .tempdir()
        .unwrap();
    let pem = tmp.path().join("cert.pem");
    std::fs::write(
        &pem,
        format!("{}{}", ck.cert.pem(), ck.signing_key.serialize_pem()),
    )
    .unwrap();
    let settings = fluo_server::tls::TlsSettings::from_pem_file(&pem).unwrap();
    let (ws_port, stop) = start(
        Config {
            http_tls: true,
            ..config()
        },
        Some(settings),
    )
    .await;
    let url = endpoint_url(ws_port).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let (port, path) = split(&url);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let get = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (s, t) = raw(tls, get.as_bytes()).await;
    assert_eq!(s, 405, "{t}");
    // Plain HTTP on the TLS port gets no answer.
    let plain = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut plain = plain;
    plain.write_all(get.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut out)).await;
    assert!(
        !String::from_utf8_lossy(&out).contains("405"),
        "plain HTTP was answered"
    );
    stop.send(true).unwrap();
}

/// The resident memory of this process (the server runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Reads an answer's status code, or `None` when none comes within `wait` (the connection is
/// kept open either way).
async fn status_within(s: &mut TcpStream, wait: Duration) -> Option<u16> {
    let mut buf = [0u8; 512];
    let mut got = Vec::new();
    let read = async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(wait, read).await;
    String::from_utf8_lossy(&got)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
}

/// Hostile HTTP (issue 19): 1000 clients POST to one endpoint at once and hold their
/// connections open, each with a body begun and never finished. One upload proceeds until
/// its body stops coming (408); the others get 409 at once; memory stays bounded; the server keeps serving WebSocket requests
/// and other HTTP requests meanwhile, and once they are gone.
const N_POSTS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_posts_are_answered_and_the_server_serves_on() {
    // The process's memory is measured: no in-process media pipeline of another test meanwhile.
    let _alone = MEDIA.lock().await;
    fluo_server::raise_open_files_limit().expect("the open files limit");
    let (ws_port, stop) = start(config(), None).await;
    let url = endpoint_url(ws_port).await;
    let (port, path) = split(&url);
    let before = rss_kib();
    // The head and the first 100 bytes of the body in one write (a client writing after its
    // 409 may find the connection closed).
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: video/webm\r\nContent-Length: 1000\r\n\r\n"
    )
    .into_bytes();
    head.extend_from_slice(&[0x1a; 100]);
    let mut tasks = Vec::new();
    for _ in 0..N_POSTS {
        let head = head.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            s.write_all(&head).await.unwrap();
            let status = status_within(&mut s, Duration::from_secs(20)).await;
            (status, s)
        }));
    }
    let mut held = Vec::new();
    let mut statuses = std::collections::BTreeMap::<Option<u16>, usize>::new();
    for t in tasks {
        let (status, s) = t.await.unwrap();
        *statuses.entry(status).or_default() += 1;
        held.push(s);
    }
    let during = rss_kib();
    // One upload went on until its body stopped coming (408 after the read timeout); every
    // other POST was refused at once: another is in progress.
    assert_eq!(
        statuses.get(&Some(409)),
        Some(&(N_POSTS - 1)),
        "{statuses:?}"
    );
    assert_eq!(statuses.get(&Some(408)), Some(&1), "{statuses:?}");
    assert!(
        during.saturating_sub(before) < 64 * 1024,
        "memory with 1000 POSTs open: {before} -> {during} KiB"
    );
    // The server serves on while they are open: a WebSocket client, and HTTP.
    let other = tokio::time::timeout(Duration::from_secs(10), endpoint_url(ws_port))
        .await
        .expect("a new client served while 1000 POSTs are open");
    let (p2, path2) = split(&other);
    let c = TcpStream::connect(("127.0.0.1", p2)).await.unwrap();
    let get = format!("GET {path2} HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(raw(c, get.as_bytes()).await.0, 405);
    drop(held);
    let c = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (s, _) = raw(c, b"POST /post/nothing HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(s, 404);
    println!("1000 concurrent POSTs: {statuses:?}; RSS {before} -> {during} KiB");
    stop.send(true).unwrap();
}

/// Held by the test that runs media pipelines in this process (`--workers 0`) and by the one
/// that measures the process's memory.
static MEDIA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for an event of type `ty` on `ws` (other messages skipped); its data.
async fn event(ws: &mut Ws, ty: &str, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
        let m = tokio::time::timeout(left, ws.next()).await.ok()??.ok()?;
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["params"]["value"]["type"] == ty {
                return Some(v["params"]["value"]["data"].clone());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_expires_disconnection_timeout_after_the_last_upload_as_in_kms() {
    let _alone = MEDIA.lock().await;
    let (ws_port, stop) = start(config(), None).await;
    let (mut ws, ep, url) = endpoint(ws_port, json!({"disconnectionTimeout": 1})).await;
    for (id, ev) in [(4, "MediaSessionStarted"), (5, "MediaSessionTerminated")] {
        let sub = json!({"jsonrpc":"2.0","id":id,"method":"subscribe","params":{
            "object": ep, "type": ev}});
        assert!(ask(&mut ws, sub).await.get("result").is_some());
    }
    let (port, path) = split(&url);
    let post = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 9\r\n\r\nnot media"
    );
    let upload = || async {
        let c = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        raw(c, post.as_bytes()).await.0
    };
    // Not media: refused, and the element takes the next POST, within the timeout.
    assert_eq!(upload().await, 415);
    assert!(
        event(&mut ws, "MediaSessionStarted", Duration::from_secs(5))
            .await
            .is_some()
    );
    assert_eq!(
        upload().await,
        415,
        "a POST within the timeout: the same element"
    );
    let ended = tokio::time::Instant::now();
    assert_eq!(
        get_url(&mut ws, &ep).await,
        url,
        "the URL holds within the timeout"
    );
    // A second after the last connection ended: the URL expires and the session ends.
    let t = event(&mut ws, "MediaSessionTerminated", Duration::from_secs(5)).await;
    assert!(t.is_some(), "MediaSessionTerminated");
    let after = ended.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "expired {after:?} after the last upload"
    );
    assert_eq!(
        get_url(&mut ws, &ep).await,
        "",
        "getUrl answers \"\" as KMS's does"
    );
    assert_eq!(upload().await, 404, "the expired URL is not served");
    // The element itself stays until its release.
    let name = json!({"jsonrpc":"2.0","id":6,"method":"invoke","params":{
        "object": ep, "operation": "getName"}});
    assert!(ask(&mut ws, name).await.get("result").is_some());
    stop.send(true).unwrap();
}
