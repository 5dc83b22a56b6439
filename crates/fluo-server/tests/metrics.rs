//! The operations listener on the real server (127.0.0.1, port 0): /metrics parsed by a
//! strict reader of the text format (every family with HELP and TYPE, counters' samples
//! `_total`, histograms' buckets, sums and counts, `# EOF` last) and its counters moving
//! after a kurento-client-like session; /health/live and /health/ready during start-up and
//! draining (the admin call, and SIGUSR1 on the `fluo` binary, whose `--log-format json`
//! lines are JSON); the token.
use fluo_server::{run_with_ops, Config, Ops};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "m3trics";

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

/// One HTTP request to the operations listener: status and body.
async fn http(addr: SocketAddr, method: &str, path: &str, token: bool) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let auth = if token {
        format!("Authorization: Bearer {TOKEN}\r\n")
    } else {
        String::new()
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
    (status, body.to_string())
}

async fn open(port: u16) -> Ws {
    let mut req = format!("ws://127.0.0.1:{port}/kurento")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.expect("ws").0
}

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

fn create(id: u64, ty: &str, pipeline: Option<&str>) -> Value {
    let params = match pipeline {
        Some(p) => json!({"type": ty, "constructorParams": {"mediaPipeline": p}}),
        None => json!({"type": ty}),
    };
    json!({"jsonrpc":"2.0","id":id,"method":"create","params":params})
}

/// A sample's labels, sorted.
type Series = (String, BTreeMap<String, String>);

/// The text format, read strictly: panics on anything out of place.
#[derive(Debug, Default)]
struct Exposition {
    /// Family name -> type.
    types: HashMap<String, String>,
    helps: HashMap<String, String>,
    samples: HashMap<Series, f64>,
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (k, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label in {s}"));
        assert!(valid_name(k), "label name {k:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => value.push(chars.next().expect("escape").1),
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {s}"),
            }
        };
        assert!(
            out.insert(k.to_string(), value).is_none(),
            "label {k} twice"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    out
}

/// The family a sample belongs to, given the declared families.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    if types.contains_key(name) {
        return name;
    }
    for suffix in ["_total", "_bucket", "_sum", "_count", "_created"] {
        if let Some(f) = name.strip_suffix(suffix) {
            if types.contains_key(f) {
                return f;
            }
        }
    }
    panic!("sample {name} of no declared family")
}

fn parse(text: &str) -> Exposition {
    let mut e = Exposition::default();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "the text ends with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (kind, name, rest) = (parts.next().unwrap(), parts.next().unwrap(), parts.next());
            assert!(valid_name(name), "{line}");
            match kind {
                "HELP" => {
                    let help = rest.filter(|h| !h.is_empty()).expect("HELP text");
                    assert!(e.helps.insert(name.into(), help.into()).is_none(), "{line}");
                }
                "TYPE" => {
                    let t = rest.expect("a type");
                    assert!(
                        ["counter", "gauge", "histogram", "info", "unknown"].contains(&t),
                        "{line}"
                    );
                    assert!(e.types.insert(name.into(), t.into()).is_none(), "{line}");
                }
                "UNIT" => {
                    let u = rest.expect("a unit");
                    assert!(name.ends_with(&format!("_{u}")), "{line}: unit in the name");
                }
                _ => panic!("unknown line {line}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, parse_labels(l.strip_suffix('}').expect("closing }"))),
            None => (series, BTreeMap::new()),
        };
        assert!(valid_name(name), "{line}");
        let family = family_of(name, &e.types);
        assert!(e.helps.contains_key(family), "{family} has no HELP");
        match e.types[family].as_str() {
            "counter" => {
                assert!(name.ends_with("_total"), "counter sample {line}");
                assert!(value >= 0.0, "{line}");
            }
            "histogram" => assert!(
                name.ends_with("_bucket") || name.ends_with("_sum") || name.ends_with("_count"),
                "{line}"
            ),
            _ => assert_eq!(name, family, "{line}"),
        }
        let key = (name.to_string(), labels);
        assert!(e.samples.insert(key, value).is_none(), "{line} twice");
    }
    e
}

impl Exposition {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let l = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.get(&(name.to_string(), l)).copied()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in {:?}", self.samples.keys()))
    }
}

async fn scrape(addr: SocketAddr) -> Exposition {
    let (status, text) = http(addr, "GET", "/metrics", true).await;
    assert_eq!(status, 200, "{text}");
    parse(&text)
}

/// A scrape after the last render's reuse (1 s) is over: rendered now.
async fn fresh_scrape(addr: SocketAddr) -> Exposition {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    scrape(addr).await
}

/// Starts a server with its operations listener on port 0; its WebSocket port, the
/// listener's address, the stop switch.
async fn start(config: Config, ops: std::sync::Arc<Ops>) -> (u16, SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, rx) = watch::channel(false);
    tokio::spawn(run_with_ops(listener, None, config, rx, ops.clone()));
    let t0 = Instant::now();
    let addr = loop {
        if let Some(a) = ops.metrics_addr() {
            break a;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no metrics listener"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    while !ops.readiness().ready() {
        assert!(t0.elapsed() < Duration::from_secs(30), "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (port, addr, stop)
}

#[test]
fn the_reader_refuses_what_prometheus_would() {
    let ok = "# HELP a_x A.\n# TYPE a_x counter\na_x_total{k=\"v\"} 1\n# EOF\n";
    assert_eq!(parse(ok).value("a_x_total", &[("k", "v")]), 1.0);
    for bad in [
        "# TYPE a counter\na_total 1\n# EOF\n",             // no HELP
        "# HELP a A.\n# TYPE a counter\na 1\n# EOF\n",      // counter without _total
        "# HELP a A.\n# TYPE a gauge\na 1\n",               // no EOF
        "# HELP a A.\n# TYPE a gauge\nb 1\n# EOF\n",        // undeclared family
        "# HELP a A.\n# TYPE a gauge\na{k=\"v} 1\n# EOF\n", // broken label
        "# HELP a A.\n# TYPE a gauge\na 1\na 2\n# EOF\n",   // a series twice
        "# HELP a_s A.\n# TYPE a_s gauge\n# UNIT a_s bytes\n# EOF\n", // unit not in the name
    ] {
        assert!(std::panic::catch_unwind(|| parse(bad)).is_err(), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_after_a_kurento_session() {
    let (port, addr, _stop) = start(config(), Ops::new()).await;
    let before = scrape(addr).await;
    assert_eq!(before.value("fluo_pipelines", &[]), 0.0);
    assert_eq!(before.get("fluo_errors_total", &[("code", "40101")]), None);

    let mut ws = open(port).await;
    let p = ask(&mut ws, create(1, "MediaPipeline", None)).await;
    let pipe = p["result"]["value"].as_str().expect("pipeline").to_string();
    let e = ask(&mut ws, create(2, "WebRtcEndpoint", Some(&pipe))).await;
    let ep = e["result"]["value"].as_str().expect("endpoint").to_string();
    let offer = ask(
        &mut ws,
        json!({"jsonrpc":"2.0","id":3,"method":"invoke","params":{"object":ep,"operation":"generateOffer"}}),
    )
    .await;
    assert!(offer["result"]["value"].is_string(), "{offer}");
    let err = ask(
        &mut ws,
        json!({"jsonrpc":"2.0","id":4,"method":"invoke","params":{"object":"nope","operation":"getName"}}),
    )
    .await;
    assert_eq!(err["error"]["code"], 40101, "{err}");

    let m = fresh_scrape(addr).await;
    assert_eq!(m.value("fluo_pipelines", &[]), 1.0);
    assert_eq!(m.value("fluo_sessions", &[]), 1.0);
    assert_eq!(m.value("fluo_websocket_connections", &[]), 1.0);
    assert_eq!(m.value("fluo_elements", &[("type", "WebRtcEndpoint")]), 1.0);
    assert_eq!(m.value("fluo_errors_total", &[("code", "40101")]), 1.0);
    let count = |m: &Exposition, method| {
        m.value("fluo_request_duration_seconds_count", &[("method", method)])
    };
    assert_eq!(count(&m, "create"), 2.0);
    assert_eq!(count(&m, "invoke"), 2.0);
    let inf = m.value(
        "fluo_request_duration_seconds_bucket",
        &[("method", "create"), ("le", "+Inf")],
    );
    assert_eq!(inf, 2.0);
    assert!(m.value("fluo_request_duration_seconds_sum", &[("method", "create")]) > 0.0);
    assert_eq!(
        m.value("fluo_webrtc_endpoints_by_dtls_state", &[("state", "new")]),
        1.0
    );
    for kind in ["audio", "video"] {
        assert_eq!(
            m.value("fluo_webrtc_received_packets_total", &[("kind", kind)]),
            0.0
        );
    }
    assert_eq!(m.value("fluo_core_up", &[]), 1.0);
    assert_eq!(m.value("fluo_media_thread_up", &[]), 1.0);
    assert!(m.value("process_resident_memory_bytes", &[]) > 0.0);
    assert!(m.value("process_cpu_seconds_total", &[]) > 0.0);
    for (family, ty) in [
        ("fluo_errors", "counter"),
        ("fluo_request_duration_seconds", "histogram"),
        ("fluo_webrtc_sent_bytes", "counter"),
        ("fluo_core_loop_lag_seconds", "gauge"),
        ("fluo_runtime_lag_seconds", "gauge"),
    ] {
        assert_eq!(
            m.types.get(family).map(String::as_str),
            Some(ty),
            "{family}"
        );
        assert!(m.helps.contains_key(family), "{family}");
    }

    // Released: the gauges go back, the counters stay.
    let r = ask(
        &mut ws,
        json!({"jsonrpc":"2.0","id":5,"method":"release","params":{"object":pipe}}),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    let m = fresh_scrape(addr).await;
    assert_eq!(m.value("fluo_pipelines", &[]), 0.0);
    assert_eq!(m.get("fluo_elements", &[("type", "WebRtcEndpoint")]), None);
    assert_eq!(m.value("fluo_errors_total", &[("code", "40101")]), 1.0);
    assert_eq!(count(&m, "release"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_within_a_second_share_one_render() {
    let (_port, addr, _stop) = start(config(), Ops::new()).await;
    let texts = futures_util::future::join_all(
        (0..8).map(|_| async move { http(addr, "GET", "/metrics", true).await }),
    )
    .await;
    // The uptime (microsecond figures) would differ between two renders.
    for (status, text) in &texts {
        assert_eq!(*status, 200);
        assert_eq!(text, &texts[0].1);
    }
    let later = fresh_scrape(addr).await;
    let first = parse(&texts[0].1);
    assert!(
        later.value("fluo_uptime_seconds_total", &[])
            > first.value("fluo_uptime_seconds_total", &[])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_guards_metrics_and_drain_not_health() {
    let (_port, addr, _stop) = start(config(), Ops::new()).await;
    assert_eq!(http(addr, "GET", "/metrics", false).await.0, 401);
    assert_eq!(
        http(addr, "GET", "/metrics?access_token=wrong", false)
            .await
            .0,
        401
    );
    let (s, _) = http(
        addr,
        "GET",
        &format!("/metrics?access_token={TOKEN}"),
        false,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(http(addr, "POST", "/admin/drain", false).await.0, 401);
    assert_eq!(http(addr, "GET", "/health/live", false).await.0, 200);
    assert_eq!(http(addr, "POST", "/metrics", true).await.0, 405);
    assert_eq!(http(addr, "GET", "/other", true).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_admin_is_refused_and_the_listener_is_on_loopback() {
    let ops = Ops::new();
    let cfg = Config {
        auth_token: None,
        // --bind elsewhere, --metrics-address not given: the loopback address.
        bind: [127, 0, 0, 2].into(),
        ..config()
    };
    let (_port, addr, _stop) = start(cfg, ops.clone()).await;
    assert_eq!(addr.ip(), std::net::IpAddr::from([127, 0, 0, 1]));
    let (s, body) = http(addr, "POST", "/admin/drain", false).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("--auth-token"), "{body}");
    assert!(!ops.draining());
    assert_eq!(http(addr, "DELETE", "/admin/drain", false).await.0, 403);
    // A request with a body the listener does not read still gets its answer (no reset).
    let mut c = TcpStream::connect(addr).await.unwrap();
    let body = vec![b'x'; 256 * 1024];
    let head = format!(
        "POST /admin/drain HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let _ = c.write_all(&body).await;
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
    assert!(matches!(r, Ok(Ok(_))), "{r:?}");
    assert!(
        out.starts_with(b"HTTP/1.1 403"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(http(addr, "GET", "/metrics", false).await.0, 200);
    assert_eq!(http(addr, "GET", "/health/ready", false).await.0, 200);
}

/// A connection to `addr` from the loopback address 127.0.0.`from`.
async fn connect_from(from: u8, addr: SocketAddr) -> TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::from(([127, 0, 0, from], 0))).unwrap();
    s.connect(addr).await.unwrap()
}

/// One request on `s`: what came back before the close (empty: closed unanswered).
async fn exchange(mut s: TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_take_the_listener_or_the_probes() {
    use fluo_server::ops::{MAX_CONNECTIONS, MAX_PER_ADDRESS};
    let (_port, addr, _stop) = start(config(), Ops::new()).await;
    // One address: its own share only.
    let mut idle = vec![];
    for _ in 0..MAX_PER_ADDRESS {
        idle.push(connect_from(1, addr).await);
    }
    // Each is counted before the next is accepted: let the listener take them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = exchange(connect_from(1, addr).await, "/health/live").await;
    assert!(
        out.is_empty(),
        "one over the address's share is closed: {out:?}"
    );
    let out = exchange(connect_from(2, addr).await, "/metrics").await;
    assert!(
        out.starts_with("HTTP/1.1 200"),
        "another address is served: {out:?}"
    );
    // Every slot but the last taken, from several addresses: the last answers probes only.
    let mut from = 2;
    while idle.len() < MAX_CONNECTIONS - 1 {
        if idle.len() % MAX_PER_ADDRESS == 0 {
            from += 1;
        }
        idle.push(connect_from(from, addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = exchange(connect_from(40, addr).await, "/metrics").await;
    assert!(out.starts_with("HTTP/1.1 503"), "{out:?}");
    assert!(out.contains("/health/"), "{out:?}");
    // Once that connection is gone (the listener notices the close), a probe there is served.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = exchange(connect_from(40, addr).await, "/health/ready").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
    // All taken (once the listener has let that one go: it reads until the client's
    // close): closed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    idle.push(connect_from(41, addr).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = exchange(connect_from(42, addr).await, "/health/live").await;
    assert!(out.is_empty(), "one over the limit is closed: {out:?}");
    drop(idle);
    let t0 = Instant::now();
    loop {
        let out = exchange(connect_from(1, addr).await, "/health/live").await;
        if out.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "served again once they closed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_flips_during_start_up_and_drain() {
    // The operations listener first, as a supervisor would see the process start.
    let ops = Ops::new();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = metrics.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    tokio::spawn(fluo_server::ops::serve_on(
        ops.clone(),
        metrics,
        Some(TOKEN.into()),
        None,
        rx.clone(),
    ));
    let (s, _) = http(addr, "GET", "/health/live", false).await;
    assert_eq!(s, 200);
    let (s, body) = http(addr, "GET", "/health/ready", false).await;
    assert_eq!(s, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["accepting"], false, "{v}");
    assert_eq!(v["mediaSockets"], false, "{v}");

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(run_with_ops(listener, None, config(), rx, ops.clone()));
    let t0 = Instant::now();
    loop {
        let (s, body) = http(addr, "GET", "/health/ready", false).await;
        if s == 200 {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                v,
                json!({"status":"ready","accepting":true,"mediaSockets":true,"gstreamer":true,"draining":false})
            );
            break;
        }
        assert_eq!(s, 503);
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "never ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut ws = open(port).await;
    let p = ask(&mut ws, create(1, "MediaPipeline", None)).await;
    let pipe = p["result"]["value"].as_str().expect("pipeline").to_string();
    let (s, body) = http(addr, "POST", "/admin/drain", true).await;
    assert_eq!((s, body.as_str()), (200, r#"{"draining":true}"#));
    // At once, with no Kurento request in between.
    assert_eq!(scrape(addr).await.value("fluo_draining", &[]), 1.0);
    let (s, body) = http(addr, "GET", "/health/ready", false).await;
    assert_eq!(s, 503, "{body}");
    assert!(body.contains(r#""draining":true"#), "{body}");
    assert_eq!(http(addr, "GET", "/health/live", false).await.0, 200);
    // No new pipeline; the existing one goes on (it takes new elements).
    let refused = ask(&mut ws, create(2, "MediaPipeline", None)).await;
    assert_eq!(refused["error"]["code"], 40009, "{refused}");
    assert_eq!(
        refused["error"]["data"]["type"], "NOT_ENOUGH_RESOURCES",
        "{refused}"
    );
    let msg = refused["error"]["message"].as_str().unwrap();
    assert!(msg.contains("draining"), "{msg}");
    let e = ask(&mut ws, create(3, "PassThrough", Some(&pipe))).await;
    assert!(e["result"]["value"].is_string(), "{e}");
    // A render is reused for a second: the refusal shows in the next one.
    let t0 = Instant::now();
    let m = loop {
        let m = scrape(addr).await;
        if m.get("fluo_errors_total", &[("code", "40009")]).is_some() {
            break m;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "the refusal is not counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(m.value("fluo_draining", &[]), 1.0);
    assert_eq!(m.value("fluo_ready", &[]), 0.0);
    assert_eq!(m.value("fluo_errors_total", &[("code", "40009")]), 1.0);
    drained_once_released(addr, &ops, &mut ws, &pipe).await;

    let (s, _) = http(addr, "DELETE", "/admin/drain", true).await;
    assert_eq!(s, 200);
    let m = scrape(addr).await;
    assert_eq!(m.value("fluo_draining", &[]), 0.0);
    // No longer draining: not drained either, at once (not at the watcher's next count).
    assert_eq!(m.value("fluo_drained", &[]), 0.0);
    assert!(!ops.drained());
    assert_eq!(http(addr, "GET", "/health/ready", false).await.0, 200);
    let again = ask(&mut ws, create(4, "MediaPipeline", None)).await;
    assert!(again["result"]["value"].is_string(), "{again}");
    let _ = stop.send(true);
}

/// A draining server with pipeline `pipe` (its only one) is not drained, after the drain
/// watcher counted (it does once a second); once `pipe` is released it is (within 4 s: two
/// empty counts in a row are needed), `fluo_drained` says so.
async fn drained_once_released(addr: std::net::SocketAddr, ops: &Ops, ws: &mut Ws, pipe: &str) {
    // Longer than the watcher's period: it counted the pipeline at least once meanwhile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!ops.drained());
    assert_eq!(scrape(addr).await.value("fluo_drained", &[]), 0.0);
    let r = ask(
        ws,
        json!({"jsonrpc":"2.0","id":50,"method":"release","params":{"object":pipe}}),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    let t0 = Instant::now();
    while !ops.drained() {
        assert!(t0.elapsed() < Duration::from_secs(4), "not drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t0 = Instant::now();
    while scrape(addr).await.value("fluo_drained", &[]) != 1.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "fluo_drained stays 0"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `fluo` binary: SIGUSR1 drains (ready turns 503, the process goes on), and with
/// `--log-format json` every log line is a JSON object with a level and a message.
#[test]
fn sigusr1_drains_the_binary_and_json_logs_are_json() {
    use std::process::{Command, Stdio};
    let dir = tempfile::Builder::new()
        .prefix("fluo-metrics-")
        .tempdir()
        .unwrap();
    let port_file = dir.path().join("metrics-port");
    let log = dir.path().join("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fluo"))
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--http-port",
            "0",
            "--workers",
            "1",
        ])
        .args([
            "--metrics-port",
            "0",
            "--log-format",
            "json",
            "--metrics-port-file",
        ])
        .arg(&port_file)
        .env("KMS_NETWORK_INTERFACES", "lo")
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("fluo starts");
    let t0 = Instant::now();
    let port: u16 = loop {
        if let Some(p) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            break p;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "fluo did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ready = || rt.block_on(http(addr, "GET", "/health/ready", false)).0;
    let t0 = Instant::now();
    while ready() != 200 {
        assert!(t0.elapsed() < Duration::from_secs(30), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) }, 0);
    let t0 = Instant::now();
    while ready() != 503 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "SIGUSR1 did not drain"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.try_wait().unwrap().is_none(), "the process goes on");
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
    assert!(text.contains("SIGUSR1: draining"), "{text}");
}
