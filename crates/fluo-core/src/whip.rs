//! WHIP (RFC 9725) and WHEP on Fluo's HTTP listener, as the engine sees them.
//!
//! An application asks for it with a create property the official clients already send (the
//! `properties` of `create`, which KMS ignores): `fluoWhip: true` (ingest) or
//! `fluoWhep: true` (playback) on a WebRtcEndpoint. The endpoint stays an ordinary
//! WebRtcEndpoint for the Kurento Protocol (events, getStats, connect); Fluo gives it an
//! unguessable URL on the HTTP listener, which the application reads as the tag
//! `fluoWhipUrl` / `fluoWhepUrl` (getTag). A POSTed offer goes through the endpoint's own
//! processOffer, a PATCH's candidates through its addIceCandidate, a DELETE releases it.
//! `fluoWhepSource: true` on any element gives it a WHEP URL of its own (tag
//! `fluoWhepSourceUrl`) where each POST makes a `fluoWhep` WebRtcEndpoint connected from it.
//!
//! The listener (fluo-server) parses the HTTP and hands each call here through the route's
//! [`SignalSink`]; the shell brings it to [`Engine::signal`] on the engine's task. IO-free.

use crate::engine::{new_uuid, Engine};
use crate::http::{HttpRefusal, HttpRoutes, Route};
use fluo_api::{ErrorCode, KurentoError};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which protocol a path speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalKind {
    /// WHIP: the client publishes.
    Whip,
    /// WHEP: the client plays.
    Whep,
    /// WHEP from a source element: each POST makes a WebRtcEndpoint (a [`SignalKind::Whep`]
    /// one) connected from it, so one URL serves many viewers.
    WhepSource,
}

impl SignalKind {
    /// The create property that asks for it.
    pub fn property(self) -> &'static str {
        match self {
            SignalKind::Whip => "fluoWhip",
            SignalKind::Whep => "fluoWhep",
            SignalKind::WhepSource => "fluoWhepSource",
        }
    }

    /// The tag that holds the URL.
    pub fn tag(self) -> &'static str {
        match self {
            SignalKind::Whip => "fluoWhipUrl",
            SignalKind::Whep => "fluoWhepUrl",
            SignalKind::WhepSource => "fluoWhepSourceUrl",
        }
    }

    /// The path prefix on the listener.
    pub fn feature(self) -> &'static str {
        match self {
            SignalKind::Whip => "whip",
            SignalKind::Whep | SignalKind::WhepSource => "whep",
        }
    }
}

/// What an HTTP request asks of a WHIP/WHEP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalOp {
    /// POST of an SDP offer (to the endpoint's URL).
    Offer(String),
    /// PATCH of a trickle-ICE SDP fragment (RFC 8840) to the session; `if_match` is the
    /// request's If-Match value, if any.
    Patch {
        /// The fragment.
        frag: String,
        /// The If-Match header.
        if_match: Option<String>,
    },
    /// DELETE of the session.
    Delete,
    /// Not a request: the listener took a 201 its client did not stay for (see
    /// [`SignalReply`]); what it made is undone.
    Undelivered {
        /// The offer.
        offer: String,
        /// The answer the client did not get.
        answer: SignalAnswer,
    },
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignalAnswer {
    /// 201 (offer answered), 204 (candidates taken, session ended).
    pub status: u16,
    /// The SDP answer (201).
    pub sdp: Option<String>,
    /// The session's path (201: the Location).
    pub location: Option<String>,
    /// The ICE session's entity tag (201).
    pub etag: Option<String>,
}

/// Where the answer to a call goes, given on the engine's task: the engine checks the
/// client still waits before acting, and undoes what a 201 made when the answer could not be
/// delivered (the HTTP side gave up: client gone, its own timeout).
pub struct SignalReply {
    open: Box<dyn Fn() -> bool + Send>,
    send: Box<dyn FnOnce(Result<SignalAnswer, HttpRefusal>) -> bool + Send>,
}

impl SignalReply {
    /// `open`: whether the answer is still awaited; `send`: delivers it, false if it could not.
    pub fn new(
        open: impl Fn() -> bool + Send + 'static,
        send: impl FnOnce(Result<SignalAnswer, HttpRefusal>) -> bool + Send + 'static,
    ) -> Self {
        SignalReply {
            open: Box::new(open),
            send: Box::new(send),
        }
    }
}

/// One call from the listener to the engine.
pub struct SignalCall {
    /// The endpoint's object id.
    pub object: String,
    /// Which of its URLs was asked.
    pub kind: SignalKind,
    /// The session id in the request's path (`None`: the endpoint's URL itself).
    pub session: Option<String>,
    /// What is asked.
    pub op: SignalOp,
    /// Where the answer goes.
    pub reply: SignalReply,
}

/// Brings calls to the engine's task (set by the shell, see [`Engine::set_signalling`]).
pub type SignalSink = Arc<dyn Fn(SignalCall) + Send + Sync>;

/// What a WHIP/WHEP path leads to (a [`Route::Signal`]).
pub struct SignalTarget {
    /// The endpoint's object id.
    pub object: String,
    /// The protocol.
    pub kind: SignalKind,
    sink: SignalSink,
}

impl SignalTarget {
    /// Hands `op` to the engine; `reply` gets its answer.
    pub fn call(&self, session: Option<String>, op: SignalOp, reply: SignalReply) {
        (self.sink)(SignalCall {
            object: self.object.clone(),
            kind: self.kind,
            session,
            op,
            reply,
        });
    }
}

/// One endpoint reachable by WHIP or WHEP.
struct Entry {
    path: String,
    kind: SignalKind,
    /// The source element whose WHEP URL made this endpoint.
    from: Option<String>,
    /// The session made by the POST: its id and ETag.
    session: Option<(String, String)>,
    /// A 201 the client never got, and its offer: the same offer again gets it again.
    undelivered: Option<(String, SignalAnswer)>,
    /// The offer's ICE credentials (ufrag, pwd) and its m-sections' mids, kept at the POST:
    /// a PATCH repeating the same credentials is a trickle, other ones an ICE restart.
    offer: Option<OfferIce>,
    /// A source's viewer not connected (yet, or again): when it is released.
    deadline: Option<Instant>,
}

/// What a PATCH is checked against: the POSTed offer's ICE credentials and mids.
#[derive(Clone, Default)]
struct OfferIce {
    ufrag: Option<String>,
    pwd: Option<String>,
    /// The mid of each m-section, in order (`None`: a section without one).
    mids: Vec<Option<String>>,
}

/// The engine's WHIP/WHEP state.
#[derive(Default)]
pub(crate) struct Signals {
    routes: Option<Arc<HttpRoutes>>,
    sink: Option<SignalSink>,
    by_object: HashMap<(String, SignalKind), Entry>,
}

/// The largest number of candidates one PATCH may carry.
const MAX_PATCH_CANDIDATES: usize = 50;
/// The most viewers' endpoints one `fluoWhepSource` URL keeps at once.
pub const MAX_SOURCE_VIEWERS: usize = 100;
/// A source's viewer whose ICE and DTLS have not connected this long after its answer is
/// released (an abandoned POST must not hold one of the [`MAX_SOURCE_VIEWERS`]).
pub const VIEWER_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A source's viewer disconnected (ICE failed or disconnected, DTLS gone) this long is
/// released.
pub const VIEWER_DISCONNECTED_TIMEOUT: Duration = Duration::from_secs(15);

impl Signals {
    /// The earliest deadline of a source's viewer.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.by_object.values().filter_map(|e| e.deadline).min()
    }
}

impl Engine {
    /// Serves WHIP and WHEP on the listener whose routes are `routes`: `sink` must bring each
    /// call to [`Engine::signal`].
    pub fn set_signalling(&mut self, routes: Arc<HttpRoutes>, sink: SignalSink) {
        self.signals.routes = Some(routes);
        self.signals.sink = Some(sink);
    }

    /// Which protocol `create`'s `properties` ask for on a `class` object (checked before
    /// the object is made).
    pub(crate) fn signal_requested(
        &self,
        class: &str,
        properties: &Map<String, Value>,
    ) -> Result<Vec<SignalKind>, KurentoError> {
        let mut asked = vec![];
        for kind in [SignalKind::Whip, SignalKind::Whep, SignalKind::WhepSource] {
            match properties.get(kind.property()) {
                None | Some(Value::Bool(false)) | Some(Value::Null) => {}
                Some(Value::Bool(true)) => asked.push(kind),
                Some(_) => {
                    return Err(KurentoError::illegal_param(format!(
                        "'{}' must be a boolean",
                        kind.property()
                    )))
                }
            }
        }
        if asked.contains(&SignalKind::Whip) && asked.contains(&SignalKind::Whep) {
            return Err(KurentoError::illegal_param(
                "'fluoWhip' and 'fluoWhep' cannot both be true",
            ));
        }
        for kind in &asked {
            let needs = match kind {
                SignalKind::WhepSource => "MediaElement",
                _ => "WebRtcEndpoint",
            };
            if !self.model.is_a(class, needs) {
                return Err(KurentoError::illegal_param(format!(
                    "'{}' is for a {needs}, not a {class}",
                    kind.property()
                )));
            }
        }
        let listening = self.signals.sink.is_some()
            && (self.signals.routes.as_ref()).is_some_and(|r| r.base().is_some());
        if !asked.is_empty() && !listening {
            return Err(KurentoError::new(
                ErrorCode::HttpEndPointRegistrationError,
                "The HTTP listener is not running (see --http-port)",
            ));
        }
        Ok(asked)
    }

    /// A WHIP/WHEP endpoint was created: its route and its URL's tag.
    pub(crate) fn signal_created(&mut self, id: &str, kind: SignalKind) {
        let (Some(routes), Some(sink)) = (&self.signals.routes, &self.signals.sink) else {
            return;
        };
        let target = SignalTarget {
            object: id.to_string(),
            kind,
            sink: sink.clone(),
        };
        let path = routes.add(kind.feature(), Route::Signal(Arc::new(target)));
        let url = format!("{}{path}", routes.base().unwrap_or_default());
        tracing::info!(%id, "{} endpoint", kind.feature());
        tracing::debug!(%id, %url, "its URL");
        if let Some(o) = self.registry.get_mut(id) {
            o.tags.push((kind.tag().to_string(), url));
        }
        self.signals.by_object.insert(
            (id.to_string(), kind),
            Entry {
                path,
                kind,
                from: None,
                session: None,
                undelivered: None,
                offer: None,
                deadline: None,
            },
        );
    }

    /// An object was destroyed: its route goes, and so do the viewers its WHEP URL made.
    pub(crate) fn signal_destroyed(&mut self, id: &str) {
        let routes = self.signals.routes.clone();
        self.signals.by_object.retain(|(object, _), e| {
            let keep = object != id;
            if let (false, Some(r)) = (keep, &routes) {
                r.remove(&e.path);
            }
            keep
        });
        let viewers: Vec<String> = (self.signals.by_object.iter())
            .filter(|(_, e)| e.from.as_deref() == Some(id))
            .map(|((v, _), _)| v.clone())
            .collect();
        for v in viewers {
            tracing::info!(viewer = %v, source = %id, "the WHEP source went: its viewer is released");
            self.release(&v);
        }
    }

    /// An event an object raised: a source's viewer's connection state moves its deadline.
    pub(crate) fn signal_event(&mut self, source: &str, event: &str, fields: &Map<String, Value>) {
        let Some(e) = (self.signals.by_object)
            .get_mut(&(source.to_string(), SignalKind::Whep))
            .filter(|e| e.from.is_some())
        else {
            return;
        };
        let state = |k: &str| fields.get(k).and_then(Value::as_str).unwrap_or_default();
        let down = match event {
            "ConnectionStateChanged" => state("newState") != "CONNECTED",
            "IceComponentStateChanged" => matches!(state("state"), "FAILED" | "DISCONNECTED"),
            _ => return,
        };
        if !down {
            e.deadline = None;
        } else if e.deadline.is_none() {
            e.deadline = Some(self.now.mono + VIEWER_DISCONNECTED_TIMEOUT);
        }
    }

    /// Releases the source's viewers whose deadline passed.
    pub(crate) fn signal_expire(&mut self) {
        let now = self.now.mono;
        let mut expired = vec![];
        for ((id, _), e) in self.signals.by_object.iter_mut() {
            // Taken, so a deadline that passed never stays the next timeout.
            if e.deadline.take_if(|d| *d <= now).is_some() {
                expired.push(id.clone());
            }
        }
        for id in expired {
            tracing::info!(%id, "a WHEP viewer not connected in time: released");
            self.release(&id);
        }
    }

    /// Answers one call from the listener.
    pub fn signal(&mut self, now: crate::Now, call: SignalCall) {
        self.now = now;
        let object = call.object;
        if let SignalOp::Undelivered { offer, answer } = call.op {
            self.signal_undelivered(offer, answer);
            self.flush_events();
            return;
        }
        if !(call.reply.open)() {
            tracing::info!(%object, "a WHIP/WHEP client gave up before its call was taken");
            return;
        }
        let offer = match &call.op {
            SignalOp::Offer(o) => Some(o.clone()),
            _ => None,
        };
        let r = self.signal_op(&object, call.kind, call.session.as_deref(), call.op);
        let made = r.as_ref().ok().filter(|a| a.status == 201).cloned();
        if !(call.reply.send)(r) {
            if let (Some(answer), Some(offer)) = (made, offer) {
                self.signal_undelivered(offer, answer);
            }
        }
        self.flush_events();
    }

    /// A 201 that did not reach its client: a source's viewer is released; an application's
    /// endpoint keeps the answer for a retry of the same offer.
    fn signal_undelivered(&mut self, offer: String, answer: SignalAnswer) {
        let path = (answer.location.as_deref())
            .and_then(|l| l.rsplit_once('/'))
            .map(|(p, _)| p.to_string());
        let Some(((id, _), e)) =
            (self.signals.by_object.iter_mut()).find(|(_, e)| Some(&e.path) == path.as_ref())
        else {
            return;
        };
        let id = id.clone();
        if e.from.is_some() {
            tracing::info!(%id, "a WHEP viewer's answer was not delivered: released");
            self.release(&id);
        } else {
            tracing::info!(%id, "a WHIP/WHEP answer was not delivered: kept for a retry");
            e.undelivered = Some((offer, answer));
        }
    }

    fn signal_op(
        &mut self,
        id: &str,
        kind: SignalKind,
        session: Option<&str>,
        op: SignalOp,
    ) -> Result<SignalAnswer, HttpRefusal> {
        let gone = || HttpRefusal::new(404, "nothing at this URL");
        let key = (id.to_string(), kind);
        let entry = self.signals.by_object.get(&key).ok_or_else(gone)?;
        let live = entry.session.clone();
        if let (SignalOp::Offer(sdp), None, Some((o, a))) = (&op, session, &entry.undelivered) {
            if o == sdp {
                return Ok(a.clone());
            }
        }
        let offer_ice = entry.offer.clone().unwrap_or_default();
        match (&op, session, entry.kind) {
            (SignalOp::Offer(sdp), None, SignalKind::WhepSource) => {
                let sdp = sdp.clone();
                return self.signal_viewer(id, &sdp);
            }
            (_, None, SignalKind::WhepSource) => {
                return Err(HttpRefusal::new(
                    405,
                    "POST a viewer's offer here; its session is under the Location answered",
                ))
            }
            (_, Some(_), SignalKind::WhepSource) => return Err(gone()),
            _ => {}
        }
        match (&op, session) {
            (SignalOp::Offer(_), None) => {}
            (SignalOp::Offer(_), Some(_)) => {
                return Err(HttpRefusal::new(
                    405,
                    "POST the offer to the endpoint's URL",
                ))
            }
            (_, None) => {
                return Err(HttpRefusal::new(
                    405,
                    "PATCH and DELETE go to the session's URL (the Location of the POST's answer)",
                ))
            }
            (_, Some(s)) if live.as_ref().is_none_or(|(l, _)| l != s) => return Err(gone()),
            _ => {}
        }
        match op {
            SignalOp::Offer(sdp) => self.signal_offer(&key, &sdp, live.is_some()),
            SignalOp::Patch { frag, if_match } => {
                let etag = live.map(|(_, e)| e).unwrap_or_default();
                self.signal_patch(id, &frag, if_match.as_deref(), &etag, &offer_ice)
            }
            SignalOp::Undelivered { .. } => Err(gone()),
            SignalOp::Delete => {
                tracing::info!(%id, "released by an HTTP DELETE");
                self.release(id);
                Ok(SignalAnswer {
                    status: 200,
                    ..SignalAnswer::default()
                })
            }
        }
    }

    /// A POST to a source's WHEP URL: a new WebRtcEndpoint in its pipeline, referenced by
    /// the sessions that hold the source, connected from it, answering the offer (released
    /// again if that fails).
    fn signal_viewer(&mut self, source: &str, offer: &str) -> Result<SignalAnswer, HttpRefusal> {
        let viewers = (self.signals.by_object.values())
            .filter(|e| e.from.as_deref() == Some(source))
            .count();
        if viewers >= MAX_SOURCE_VIEWERS {
            return Err(HttpRefusal::new(
                503,
                format!("this source has {MAX_SOURCE_VIEWERS} viewers: DELETE one first"),
            ));
        }
        let gone = || HttpRefusal::new(404, "nothing at this URL");
        let o = self.registry.get(source).ok_or_else(gone)?;
        let pipeline = o.pipeline.clone().ok_or_else(gone)?;
        let session = o.sessions.iter().min().cloned().ok_or_else(gone)?;
        let create = fluo_api::params::Create {
            type_name: "WebRtcEndpoint".into(),
            constructor_params: Map::from_iter([("mediaPipeline".into(), Value::from(pipeline))]),
            properties: Map::from_iter([("fluoWhep".into(), Value::Bool(true))]),
        };
        let id = (self.create(&session, create, crate::engine::Mode::Direct)).map_err(|e| {
            tracing::info!(%source, error = %e.message, "no WHEP viewer made");
            HttpRefusal::new(503, "no viewer can be made now")
        })?;
        if let Some(o) = self.registry.get_mut(&id) {
            o.tags.push(("fluoWhepSource".into(), source.to_string()));
        }
        let key = (id.clone(), SignalKind::Whep);
        if let Some(e) = self.signals.by_object.get_mut(&key) {
            e.from = Some(source.to_string());
        }
        let sink = Map::from_iter([("sink".to_string(), Value::from(id.clone()))]);
        let r = (self.connect(&session, source, &sink, crate::engine::Mode::Direct))
            .map_err(|e| {
                tracing::warn!(%source, error = %e.message, "a WHEP viewer not connected");
                HttpRefusal::new(500, "the viewer could not be connected")
            })
            .and_then(|()| self.signal_offer(&key, offer, false));
        if r.is_err() {
            self.release(&id);
        } else {
            tracing::info!(%source, viewer = %id, "a WHEP viewer");
            if let Some(e) = self.signals.by_object.get_mut(&key) {
                e.deadline = Some(self.now.mono + VIEWER_CONNECT_TIMEOUT);
            }
        }
        r
    }

    fn signal_offer(
        &mut self,
        key: &(String, SignalKind),
        offer: &str,
        live: bool,
    ) -> Result<SignalAnswer, HttpRefusal> {
        if live {
            return Err(HttpRefusal::new(
                409,
                "this endpoint already has a session (one per endpoint)",
            ));
        }
        if !offer.trim_start().starts_with("v=0") {
            return Err(HttpRefusal::new(400, "the body is not an SDP offer"));
        }
        let params = Map::from_iter([("offer".to_string(), Value::from(offer))]);
        let id = key.0.as_str();
        let r = self
            .with_element(id, |el, cx| el.invoke(cx, "processOffer", &params))
            .flatten()
            .ok_or_else(|| HttpRefusal::new(404, "nothing at this URL"))?;
        let answer = match r {
            Ok(Value::String(a)) => a,
            Ok(_) => return Err(HttpRefusal::new(500, "the endpoint gave no SDP answer")),
            Err(e) => {
                tracing::info!(%id, error = %e.message, "a WHIP/WHEP offer refused");
                return Err(refusal(&e));
            }
        };
        if !answer
            .lines()
            .any(|l| l.starts_with("m=") && l.split(' ').nth(1).is_some_and(|p| p != "0"))
        {
            return Err(HttpRefusal::new(
                422,
                "no media section of the offer can be taken (transport or codecs)",
            ));
        }
        let etag = format!(
            "\"{}\"",
            ice_value(&answer, "ice-ufrag").unwrap_or_else(new_uuid)
        );
        let session = new_uuid();
        let entry = self
            .signals
            .by_object
            .get_mut(key)
            .expect("looked up above");
        entry.session = Some((session.clone(), etag.clone()));
        entry.offer = Some(OfferIce {
            ufrag: ice_value(offer, "ice-ufrag"),
            pwd: ice_value(offer, "ice-pwd"),
            mids: section_mids(offer),
        });
        Ok(SignalAnswer {
            status: 201,
            sdp: Some(answer),
            location: Some(format!("{}/{session}", entry.path)),
            etag: Some(etag),
        })
    }

    fn signal_patch(
        &mut self,
        id: &str,
        frag: &str,
        if_match: Option<&str>,
        etag: &str,
        offer: &OfferIce,
    ) -> Result<SignalAnswer, HttpRefusal> {
        if if_match.is_some_and(|m| m.trim() != "*" && m.trim() != etag) {
            return Err(HttpRefusal::new(
                412,
                "If-Match does not name this ICE session",
            ));
        }
        let f = parse_frag(frag)?;
        // RFC 9725 4.3.1: a trickle fragment may repeat the session's credentials; only
        // other ones (or If-Match: *) ask for an ICE restart.
        let differs = |got: &Option<String>, had: &Option<String>| {
            got.as_ref().is_some_and(|g| Some(g) != had.as_ref())
        };
        if differs(&f.ufrag, &offer.ufrag)
            || differs(&f.pwd, &offer.pwd)
            || if_match.is_some_and(|m| m.trim() == "*")
        {
            return Err(HttpRefusal::new(
                422,
                "ICE restarts are not supported: start a new session (DELETE, then POST)",
            ));
        }
        // Every candidate is checked before any is added.
        let mut adds = Vec::with_capacity(f.candidates.len());
        for c in &f.candidates {
            let (index, mid) = candidate_section(c, &offer.mids)?;
            if !candidate_well_formed(&c.line) {
                return Err(HttpRefusal::new(400, "an ICE candidate line is malformed"));
            }
            adds.push(json!({"candidate": c.line, "sdpMid": mid, "sdpMLineIndex": index}));
        }
        for cand in adds {
            let params = Map::from_iter([("candidate".to_string(), cand)]);
            let r = self
                .with_element(id, |el, cx| el.invoke(cx, "addIceCandidate", &params))
                .flatten();
            if let Some(Err(e)) = r {
                tracing::info!(%id, error = %e.message, "a PATCH's candidate refused");
                return Err(HttpRefusal::new(
                    400,
                    "the endpoint refused an ICE candidate",
                ));
            }
        }
        Ok(SignalAnswer {
            status: 204,
            ..SignalAnswer::default()
        })
    }
}

/// The HTTP answer to an error of processOffer: a fixed text (the client may be anyone; the
/// endpoint's own text is logged).
fn refusal(e: &KurentoError) -> HttpRefusal {
    let (status, text) = match e.code {
        ErrorCode::SdpParseError => (400, "the offer is not valid SDP"),
        ErrorCode::SdpEndPointAlreadyNegotiated => (
            409,
            "this endpoint already has a session (one per endpoint)",
        ),
        ErrorCode::SdpEndPointProcessOfferError => (
            422,
            "no media section of the offer can be taken (transport or codecs)",
        ),
        _ => (500, "the endpoint could not answer the offer"),
    };
    HttpRefusal::new(status, text)
}

/// The value of the first `a=<name>:` line.
fn ice_value(sdp: &str, name: &str) -> Option<String> {
    sdp.lines().find_map(|l| {
        l.trim()
            .strip_prefix("a=")?
            .strip_prefix(name)?
            .strip_prefix(':')
            .map(str::to_string)
    })
}

/// The mid of each m-section of an SDP, in order.
fn section_mids(sdp: &str) -> Vec<Option<String>> {
    let mut mids: Vec<Option<String>> = vec![];
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            mids.push(None);
        } else if let (Some(m), Some(last)) = (line.strip_prefix("a=mid:"), mids.last_mut()) {
            last.get_or_insert_with(|| m.to_string());
        }
    }
    mids
}

/// The m-section (index in the offer, mid) a fragment's candidate belongs to: the one of its
/// own `a=mid`, else the one at its m-line's place in the fragment.
fn candidate_section(
    c: &FragCandidate,
    mids: &[Option<String>],
) -> Result<(usize, String), HttpRefusal> {
    let unknown = || {
        HttpRefusal::new(
            422,
            "a candidate names an m-section the offer does not have",
        )
    };
    match &c.mid {
        Some(mid) => {
            let index = (mids.iter())
                .position(|m| m.as_deref() == Some(mid.as_str()))
                .ok_or_else(unknown)?;
            Ok((index, mid.clone()))
        }
        None => {
            let index = c.section.unwrap_or(0);
            if index >= mids.len().max(1) {
                return Err(unknown());
            }
            let mid = mids.get(index).cloned().flatten().unwrap_or_default();
            Ok((index, mid))
        }
    }
}

/// A candidate attribute's shape (RFC 8839 5.1): foundation, component, transport,
/// priority, address, port, `typ`, type.
fn candidate_well_formed(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("candidate:") else {
        return false;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.len() >= 8
        && !f[0].is_empty()
        && f[1].parse::<u16>().is_ok_and(|c| c >= 1)
        && !f[2].is_empty()
        && f[3].parse::<u32>().is_ok()
        && !f[4].is_empty()
        && f[5].parse::<u16>().is_ok()
        && f[6] == "typ"
        && !f[7].is_empty()
}

/// One `a=candidate` line of a fragment, with the m-section it stands in.
#[derive(Debug, PartialEq, Eq)]
struct FragCandidate {
    /// `candidate:...` (without `a=`).
    line: String,
    /// The `a=mid` of its m-section in the fragment, if it has one.
    mid: Option<String>,
    /// Its m-section's place in the fragment (`None`: before any m= line).
    section: Option<usize>,
}

/// A trickle-ICE fragment (RFC 8840): its ICE credentials (if any) and candidates.
#[derive(Debug)]
struct Frag {
    ufrag: Option<String>,
    pwd: Option<String>,
    candidates: Vec<FragCandidate>,
}

fn parse_frag(frag: &str) -> Result<Frag, HttpRefusal> {
    let mut candidates: Vec<FragCandidate> = vec![];
    let mut section: Option<usize> = None;
    let mut mid: Option<String> = None;
    let mut first = 0;
    for line in frag.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
            return Err(HttpRefusal::new(
                400,
                "the body is not an SDP fragment (RFC 8840)",
            ));
        }
        if line.starts_with("m=") {
            section = Some(section.map_or(0, |s| s + 1));
            mid = None;
            first = candidates.len();
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            // The mid may come after the section's candidates.
            mid = Some(m.to_string());
            for c in &mut candidates[first..] {
                c.mid = mid.clone();
            }
        } else if let Some(c) = line.strip_prefix("a=candidate:") {
            candidates.push(FragCandidate {
                line: format!("candidate:{c}"),
                mid: mid.clone(),
                section,
            });
        }
        // Other lines (ice-options, end-of-candidates, group, c=, ...) say nothing to act on.
    }
    if candidates.len() > MAX_PATCH_CANDIDATES {
        return Err(HttpRefusal::new(
            413,
            format!("more than {MAX_PATCH_CANDIDATES} candidates in one PATCH"),
        ));
    }
    Ok(Frag {
        ufrag: ice_value(frag, "ice-ufrag"),
        pwd: ice_value(frag, "ice-pwd"),
        candidates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_give_candidates_with_their_sections_and_credentials() {
        let f = "a=ice-options:trickle\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2113937151 127.0.0.1 5000 typ host\r\nc=IN IP4 0.0.0.0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=candidate:2 1 udp 2113937151 127.0.0.1 5002 typ host\r\na=mid:v\r\na=end-of-candidates\r\n";
        let p = parse_frag(f).unwrap();
        assert_eq!((p.ufrag, p.pwd), (None, None));
        let got: Vec<_> = (p.candidates.iter())
            .map(|c| (c.line.as_str(), c.mid.as_deref(), c.section))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "candidate:1 1 udp 2113937151 127.0.0.1 5000 typ host",
                    Some("0"),
                    Some(0)
                ),
                (
                    "candidate:2 1 udp 2113937151 127.0.0.1 5002 typ host",
                    Some("v"),
                    Some(1)
                ),
            ]
        );
        let p = parse_frag("a=ice-ufrag:abcd\r\na=ice-pwd:x\r\n").unwrap();
        assert_eq!(
            (p.ufrag.as_deref(), p.pwd.as_deref()),
            (Some("abcd"), Some("x"))
        );
        assert_eq!(parse_frag("hello").unwrap_err().status, 400);
        assert!(candidate_well_formed(
            "candidate:1 1 udp 5 ::1 9 typ host tcptype active"
        ));
        assert!(!candidate_well_formed(
            "candidate:1 1 udp 5 ::1 port typ host"
        ));
        assert!(!candidate_well_formed("candidate:1 1 udp"));
    }
}
