//! The live pipeline view (docs/operations.md, "Pipeline view"): `GET /admin/pipelines`
//! (every pipeline's elements and connections, as JSON), `GET /admin/pipelines/{elementId}`
//! (one element's stored properties and getStats) and the page that draws them
//! (`/admin/view/`, the files of `web/public/pipelines.*`, compiled in).
//!
//! The data is taken as the metrics are: the engine's part asked from the core task (which
//! answers between two requests), the routes, transcoders, byte counts and the WebRTC
//! endpoints' figures asked from the media thread (which reads them between two of its
//! steps; never from the listener's threads). A view holds at most [`LIMITS`] and says when
//! it left something out. One view is made at a time and served again for [`VIEW_REUSE`];
//! bitrates are the byte counts' growth between two views.

use super::Ops;
use fluo_core::{ElementView, EngineView, ViewLimits};
use fluo_rtc::{Bytes, EndpointView, ViewAsk, ViewReading};
use fluo_sfu::{MediaKind, RouteMode};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The most one view holds.
pub const LIMITS: ViewLimits = ViewLimits {
    pipelines: 100,
    elements: 1000,
    connections: 4000,
    tags: 4,
    text: 64,
};

/// How long a view is served again (to every page polling it).
const VIEW_REUSE: Duration = Duration::from_millis(500);
/// Bitrates are measured over at least this long (a view made sooner keeps the last ones).
const RATE_MIN: Duration = Duration::from_millis(500);
/// ... and at most this long (counts older than that give no bitrate, and are forgotten).
const RATE_MAX: Duration = Duration::from_secs(10);
/// How long the view waits for the core task and for the media thread.
const WAIT: Duration = Duration::from_secs(2);

/// Bits per second, the same way.
type Rates = [[u64; 2]; 2];

/// What the views remember between them (held by the request making one).
#[derive(Default)]
pub(crate) struct ViewState {
    /// Per element: when its bytes were counted, the count, the bitrate measured then.
    counts: HashMap<String, (Instant, Bytes, Option<Rates>)>,
}

impl ViewState {
    /// The bitrate of `id` whose bytes are `now` at `at`.
    fn rate(&mut self, id: &str, at: Instant, now: Bytes) -> Option<Rates> {
        let Some((then, before, rate)) = self.counts.get(id).copied() else {
            self.counts.insert(id.to_string(), (at, now, None));
            return None;
        };
        let dt = at.saturating_duration_since(then);
        if dt < RATE_MIN {
            return rate;
        }
        let rate = (dt <= RATE_MAX).then(|| {
            let per = |a: u64, b: u64| (a.saturating_sub(b) as f64 * 8.0 / dt.as_secs_f64()) as u64;
            [0, 1].map(|d| [0, 1].map(|k| per(now[d][k], before[d][k])))
        });
        self.counts.insert(id.to_string(), (at, now, rate));
        rate
    }

    fn forget_old(&mut self, at: Instant) {
        (self.counts).retain(|_, (t, _, _)| at.saturating_duration_since(*t) <= RATE_MAX);
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `{"AUDIO": f(audio), "VIDEO": f(video)}`.
fn per_kind<T: Into<Value>>(f: impl Fn(MediaKind) -> T) -> Value {
    let mut m = Map::new();
    for k in MediaKind::ALL {
        m.insert(k.wire_name().into(), f(k).into());
    }
    Value::Object(m)
}

/// `{"in": {...}, "out": {...}}` of per-direction, per-kind figures.
fn in_out(v: [[u64; 2]; 2]) -> Value {
    json!({
        "in": per_kind(|k| v[0][k.index()]),
        "out": per_kind(|k| v[1][k.index()]),
    })
}

fn flow_name(on: bool) -> &'static str {
    if on {
        "FLOWING"
    } else {
        "NOT_FLOWING"
    }
}

/// The first 8 characters of an object's own UUID (`1b2c3d4e` of
/// `<pipeline>/1b2c3d4e-..._kurento.WebRtcEndpoint`): what a box can show.
fn short(id: &str) -> &str {
    let own = id.rsplit('/').next().unwrap_or(id);
    let uuid = own.split('_').next().unwrap_or(own);
    uuid.get(..8).unwrap_or(uuid)
}

/// An element's fields shared by the pipelines' view and its own.
fn element_json(e: &ElementView) -> Map<String, Value> {
    let tags: Vec<Value> = (e.tags.iter())
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    let mut m = Map::new();
    m.insert("id".into(), json!(e.id));
    m.insert("shortId".into(), json!(short(&e.id)));
    m.insert("type".into(), json!(e.class));
    m.insert("name".into(), json!(e.name));
    m.insert("tags".into(), Value::Array(tags));
    m.insert("tagCount".into(), json!(e.tag_count));
    m.insert("hub".into(), json!(e.hub));
    m.insert("creationTime".into(), json!(e.creation_time));
    m.insert("worker".into(), json!(e.worker));
    m.insert(
        "flow".into(),
        json!({
            "in": per_kind(|k| flow_name(e.flowing_in[k.index()])),
            "out": per_kind(|k| flow_name(e.flowing_out[k.index()])),
        }),
    );
    m.insert("transcoding".into(), per_kind(|k| e.transcoding[k.index()]));
    m
}

/// Why `/admin/pipelines` has no view to give (503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoView {
    /// Another request is making one now.
    Busy,
    /// The core task did not answer within [`WAIT`].
    NoAnswer,
}

/// The last answer of `/admin/pipelines`: when, for which pipeline filter, the text or why
/// there was none.
pub(crate) type LastView = Option<(Instant, Option<String>, Result<String, NoView>)>;

impl Ops {
    /// The text of `/admin/pipelines` (`only`: that pipeline). The last answer, a view or
    /// the core task's silence, is given again for [`VIEW_REUSE`]; one view is made at a
    /// time, and a request that comes meanwhile is answered at once ([`NoView::Busy`])
    /// rather than kept waiting, which would hold one of its address's connections for as
    /// long as the waits of every view before it.
    pub(crate) async fn pipelines_text(&self, only: Option<String>) -> Result<String, NoView> {
        if let Some(last) = self.last_view(&only) {
            return last;
        }
        let Ok(mut state) = self.view.try_lock() else {
            return Err(NoView::Busy);
        };
        // One may have been made between the two looks.
        if let Some(last) = self.last_view(&only) {
            return last;
        }
        let answer = self.make_view(only.clone(), &mut state).await;
        let mut last = self.view_last.lock().unwrap_or_else(|p| p.into_inner());
        *last = Some((Instant::now(), only, answer.clone()));
        answer
    }

    /// The last answer for `only`, if made within [`VIEW_REUSE`].
    fn last_view(&self, only: &Option<String>) -> Option<Result<String, NoView>> {
        let last = self.view_last.lock().unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some((at, filter, answer)) if at.elapsed() < VIEW_REUSE && filter == only => {
                Some(answer.clone())
            }
            _ => None,
        }
    }

    async fn make_view(
        &self,
        only: Option<String>,
        state: &mut ViewState,
    ) -> Result<String, NoView> {
        let engine = self
            .ask_core(move |e| e.view(LIMITS, only.as_deref()), WAIT)
            .await
            .ok_or(NoView::NoAnswer)?;
        let ask = Arc::new(view_ask(&engine));
        let media = match self.media.get() {
            Some(rtc) => rtc.view_reading(ask.clone(), WAIT).await,
            None => None,
        };
        let at = Instant::now();
        let media = media.as_ref().map(|m| (&*ask, m));
        let v = view_json(&engine, media, state, at);
        state.forget_old(at);
        Ok(v.to_string())
    }

    /// The text of `/admin/pipelines/{id}`: `Some(None)` when there is no such element (nor
    /// element of a pipeline); `None` when the core task or media thread did not answer.
    pub(crate) async fn element_text(&self, id: &str) -> Option<Option<String>> {
        let at = wall_ms();
        let wanted = id.to_string();
        let detail = self
            .ask_core(
                move |e| e.element_detail(&wanted, at, &["WebRtcEndpoint"]),
                WAIT,
            )
            .await?;
        let Some(d) = detail else {
            return Some(None);
        };
        let stats = match (&d.stats, self.media.get()) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(rtc)) => match rtc.endpoint_stats(id, at, d.latency_stats, WAIT).await? {
                Some(s) => Some(s),
                // Released between the two answers: gone, as it would be a moment later.
                None => return Some(None),
            },
            (None, None) => None,
        };
        let mut m = element_json(&d.element);
        // The view is for looking at, and may be on a screen others see.
        let props = fluo_api::secrets::json_without_secrets(Value::Object(d.properties));
        m.insert("pipeline".into(), json!(d.pipeline));
        m.insert("latencyStats".into(), json!(d.latency_stats));
        m.insert("properties".into(), props);
        m.insert("stats".into(), json!(stats.unwrap_or_default()));
        m.insert("time".into(), json!(at));
        Some(Some(Value::Object(m).to_string()))
    }
}

/// What the media thread is asked about: the elements shown, and the media connections their
/// connections carry (with the elements at their ends that are not shown).
fn view_ask(engine: &EngineView) -> ViewAsk {
    fn pos<'a>(id: &'a str, at: &mut HashMap<&'a str, usize>, ask: &mut ViewAsk) -> usize {
        *at.entry(id).or_insert_with(|| {
            ask.elements.push(id.to_string());
            ask.elements.len() - 1
        })
    }
    let mut ask = ViewAsk::default();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for e in engine.pipelines.iter().flat_map(|p| &p.elements) {
        pos(&e.id, &mut at, &mut ask);
    }
    let mut routes = HashSet::new();
    for c in engine.pipelines.iter().flat_map(|p| &p.connections) {
        let Some(kind) = c.edge.media_kind() else {
            continue;
        };
        for (s, k) in &c.carries {
            let r = (pos(s, &mut at, &mut ask), pos(k, &mut at, &mut ask), kind);
            if routes.insert(r) {
                ask.routes.push(r);
            }
        }
    }
    ask
}

/// The whole view: the engine's part with the media thread's, and what it was asked (`None`:
/// it did not answer).
fn view_json(
    engine: &EngineView,
    media: Option<(&ViewAsk, &ViewReading)>,
    state: &mut ViewState,
    at: Instant,
) -> Value {
    let mut bytes: HashMap<&str, Bytes> = HashMap::new();
    let mut webrtc: HashMap<&str, EndpointView> = HashMap::new();
    let mut routes: HashMap<(&str, &str, MediaKind), RouteMode> = HashMap::new();
    let mut transcoders: HashMap<&str, Vec<Value>> = HashMap::new();
    if let Some((ask, m)) = media {
        let id = |i: usize| ask.elements[i].as_str();
        for (i, b) in m.bytes.iter().enumerate() {
            if let Some(b) = b {
                bytes.insert(id(i), *b);
            }
        }
        for (i, e) in m.endpoints.iter().enumerate() {
            if let Some(e) = e {
                webrtc.insert(id(i), *e);
            }
        }
        for ((s, k, kind), mode) in ask.routes.iter().zip(&m.routes) {
            if let Some(mode) = mode {
                routes.insert((id(*s), id(*k), *kind), *mode);
            }
        }
        for t in &m.transcoders {
            let sinks: Vec<&str> = t.sinks.iter().map(|s| id(*s)).collect();
            transcoders.entry(id(t.source)).or_default().push(json!({
                "mediaType": t.kind.wire_name(),
                "from": t.from.name.sdp_name(),
                "to": t.to.name.sdp_name(),
                "sinks": sinks,
            }));
        }
    }
    let mut pipelines = Vec::new();
    for p in &engine.pipelines {
        let mut elements = Vec::new();
        for e in &p.elements {
            let mut m = element_json(e);
            let b = bytes.get(e.id.as_str()).copied();
            let rate = b.and_then(|b| state.rate(&e.id, at, b));
            m.insert("bytes".into(), b.map_or(Value::Null, in_out));
            m.insert("bitrate".into(), rate.map_or(Value::Null, in_out));
            if let Some(w) = webrtc.get(e.id.as_str()) {
                m.insert("webrtc".into(), json!({"ice": w.ice, "dtls": w.dtls}));
            }
            let t = transcoders.remove(e.id.as_str()).unwrap_or_default();
            m.insert("transcoders".into(), Value::Array(t));
            elements.push(Value::Object(m));
        }
        let connections: Vec<Value> = (p.connections.iter())
            .map(|c| connection_json(c, media.is_some(), &routes))
            .collect();
        pipelines.push(json!({
            "id": p.id,
            "shortId": short(&p.id),
            "name": p.name,
            "creationTime": p.creation_time,
            "elementCount": p.element_count,
            "truncated": p.truncated,
            "elements": elements,
            "connections": connections,
        }));
    }
    json!({
        "time": wall_ms(),
        "pipelineCount": engine.pipelines_total,
        "elementCount": engine.elements_total,
        "truncated": engine.truncated,
        "limits": {
            "pipelines": LIMITS.pipelines,
            "elements": LIMITS.elements,
            "connections": LIMITS.connections,
            "tags": LIMITS.tags,
            "text": LIMITS.text,
        },
        "mediaThread": media.is_some(),
        "pipelines": pipelines,
    })
}

/// A connection, with how its media goes: `forward` (the codec as it is), `transcode`
/// (`from` -> `to`), `none` (nothing reaches the sink yet, or ever: no codec it takes),
/// `data` (data channels), `unknown` (the media thread did not answer).
fn connection_json(
    c: &fluo_core::ConnectionView,
    known: bool,
    routes: &HashMap<(&str, &str, MediaKind), RouteMode>,
) -> Value {
    let e = &c.edge;
    let mut m = json!({
        "source": e.source,
        "sink": e.sink,
        "mediaType": e.media_type,
        "sourceDescription": e.source_description,
        "sinkDescription": e.sink_description,
    });
    let Some(kind) = e.media_kind() else {
        m["mode"] = json!("data");
        return m;
    };
    if !known {
        m["mode"] = json!("unknown");
        return m;
    }
    let modes: Vec<RouteMode> = (c.carries.iter())
        .filter_map(|(s, k)| routes.get(&(s.as_str(), k.as_str(), kind)).copied())
        .collect();
    let transcoded = modes.iter().find_map(|r| match r {
        RouteMode::Transcode { from, to } => Some((from, to)),
        _ => None,
    });
    let forwarded = modes.iter().find_map(|r| match r {
        RouteMode::Forward(codec) => Some(codec),
        _ => None,
    });
    match (transcoded, forwarded) {
        (Some((from, to)), _) => {
            m["mode"] = json!("transcode");
            m["from"] = json!(from.name.sdp_name());
            m["to"] = json!(to.name.sdp_name());
        }
        (None, Some(codec)) => {
            m["mode"] = json!("forward");
            m["codec"] = json!(codec.map(|c| c.name.sdp_name()));
        }
        (None, None) => m["mode"] = json!("none"),
    }
    m
}

/// A file of the page (`/admin/view/...`): its type and text.
pub(crate) fn page_file(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/admin/view/" | "/admin/view/index.html" => Some((
            "text/html; charset=utf-8",
            include_str!("../../../../web/public/pipelines.html"),
        )),
        "/admin/view/pipelines.js" => Some((
            "text/javascript; charset=utf-8",
            include_str!("../../../../web/public/pipelines.js"),
        )),
        "/admin/view/pipelines.css" => Some((
            "text/css; charset=utf-8",
            include_str!("../../../../web/public/pipelines.css"),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{serve_on, CoreAsk, MAX_PER_ADDRESS};
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{mpsc, watch};

    const TOKEN: &str = "t";

    async fn listen(ops: Arc<Ops>) -> (SocketAddr, watch::Sender<bool>) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("address");
        let (stop, rx) = watch::channel(false);
        tokio::spawn(serve_on(ops, l, Some(TOKEN.into()), None, rx));
        (addr, stop)
    }

    /// GET `path` with the token: the status (0: the connection was closed unanswered) and
    /// the body.
    async fn get(addr: SocketAddr, path: String) -> (u16, String) {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
        if s.write_all(req.as_bytes()).await.is_err() {
            return (0, String::new());
        }
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out));
        let _ = read.await.expect("an answer or a close in time");
        let text = String::from_utf8_lossy(&out).to_string();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return (0, text);
        };
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
        (status.unwrap_or(0), body.to_string())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_view_keeps_no_connection_waiting() {
        let ops = Ops::new();
        // A core task that never answers (one lost in a long request).
        let (core, _never_read) = mpsc::unbounded_channel::<CoreAsk>();
        ops.set_core(core);
        let (addr, _stop) = listen(ops.clone()).await;
        // As many asks as one address may have connections (a few pages, a script).
        let t0 = Instant::now();
        let asks: Vec<_> = (0..MAX_PER_ADDRESS)
            .map(|_| tokio::spawn(get(addr, "/admin/pipelines".into())))
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The same address's probe is answered, as it was before the view existed.
        let (status, body) = get(addr, "/health/live".into()).await;
        assert_eq!(status, 200, "{body}");
        assert!(t0.elapsed() < WAIT, "{:?}", t0.elapsed());
        let mut answers = vec![];
        for a in asks {
            answers.push(a.await.expect("ask"));
        }
        let busy = answers
            .iter()
            .filter(|(_, b)| b.contains("another request"));
        assert_eq!(busy.count(), MAX_PER_ADDRESS - 1, "{answers:?}");
        let silent = answers.iter().filter(|(_, b)| b.contains("did not answer"));
        assert_eq!(silent.count(), 1, "{answers:?}");
        assert!(answers.iter().all(|(s, _)| *s == 503), "{answers:?}");
        // The silence is kept as a view is: asked again, the same answer at once.
        let t1 = Instant::now();
        let (status, body) = get(addr, "/admin/pipelines".into()).await;
        assert_eq!(status, 503);
        assert!(body.contains("did not answer"), "{body}");
        assert!(
            t1.elapsed() < Duration::from_millis(500),
            "{:?}",
            t1.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_endpoint_the_media_thread_no_longer_has_is_not_found() {
        // The engine still has a WebRtcEndpoint the media thread does not (any more): as when
        // it is released between the core task's answer and the media thread's.
        let now = fluo_core::Now {
            mono: Instant::now(),
            wall_ms: 1_700_000_000_000,
        };
        let host = Box::new(fluo_core::FixedHost::default());
        let mut engine = fluo_core::Engine::new(Default::default(), host, now);
        engine.register_factory(
            "WebRtcEndpoint",
            Box::new(|_: &fluo_core::FactoryCx<'_>| {
                Ok(Box::new(fluo_core::NoMedia) as Box<dyn fluo_core::Element>)
            }),
        );
        engine.connection_opened(now, 1, std::net::Ipv4Addr::LOCALHOST.into());
        let mut create = |id: u64, params: Value| {
            let req = json!({"jsonrpc": "2.0", "id": id, "method": "create", "params": params});
            engine.handle_text(now, 1, &req.to_string());
            while let Some(out) = engine.poll_output() {
                let fluo_core::Output::Send { text, .. } = out;
                let v: Value = serde_json::from_str(&text).expect("JSON");
                if v["id"] == id {
                    return v["result"]["value"].as_str().expect("an id").to_string();
                }
            }
            panic!("no answer to {id}");
        };
        let p = create(1, json!({"type": "MediaPipeline"}));
        let ep = create(
            2,
            json!({"type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": p}}),
        );
        let (core, mut asks) = mpsc::unbounded_channel::<CoreAsk>();
        std::thread::spawn(move || {
            while let Some(ask) = asks.blocking_recv() {
                ask(&mut engine);
            }
        });
        let (rtc, mut ctl) = fluo_rtc::WebRtc::in_memory(vec!["127.0.0.1:40000".parse().unwrap()]);
        std::thread::spawn(move || {
            let mut media = fluo_rtc::MediaCore::new(Instant::now());
            while let Some(c) = ctl.blocking_recv() {
                media.control(Instant::now(), c);
            }
        });
        let ops = Ops::new();
        ops.set_core(core);
        let _ = ops.media.set(rtc);
        let (addr, _stop) = listen(ops.clone()).await;
        let (status, body) = get(addr, format!("/admin/pipelines/{ep}")).await;
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("no element"), "{body}");
    }

    #[test]
    fn bitrates_come_from_two_counts_far_enough_apart() {
        let mut s = ViewState::default();
        let t0 = Instant::now();
        let b = |v: u64| [[0, v], [0, 0]];
        assert_eq!(s.rate("e", t0, b(0)), None, "one count: no rate yet");
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(s.rate("e", t1, b(1000)), Some([[0, 8000], [0, 0]]));
        // Sooner than RATE_MIN: the last rate again.
        let t2 = t1 + Duration::from_millis(100);
        assert_eq!(s.rate("e", t2, b(5000)), Some([[0, 8000], [0, 0]]));
        // Longer than RATE_MAX: none, and a fresh start.
        let t3 = t1 + Duration::from_secs(30);
        assert_eq!(s.rate("e", t3, b(9000)), None);
        s.forget_old(t3 + Duration::from_secs(11));
        assert!(s.counts.is_empty());
    }
}
