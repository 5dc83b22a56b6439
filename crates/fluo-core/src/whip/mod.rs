//! WHIP (RFC 9725) and WHEP on Fluo's HTTP listener, as the engine sees them.
//!
//! An application asks for it with a create property the official clients already send (the
//! `properties` of `create`, which KMS ignores): `fluoWhip: true` (ingest) or
//! `fluoWhep: true` (playback) on a WebRtcEndpoint. The endpoint stays an ordinary
//! WebRtcEndpoint for the Kurento Protocol (events, getStats, connect); Fluo gives it an
//! unguessable URL on the HTTP listener, which the application reads as the tag
//! `fluoWhipUrl` / `fluoWhepUrl` (getTag). A POSTed offer goes through the endpoint's own
//! processOffer, a PATCH's candidates through its addIceCandidate, a DELETE releases it.
//! A PATCH with other ICE credentials restarts ICE through the endpoint's `restart_ice`
//! (`frag` parses fragments and writes the answer's). `fluoWhepSource: true` on any element
//! gives it a WHEP URL of its own (tag `fluoWhepSourceUrl`) where each POST makes a `fluoWhep`
//! WebRtcEndpoint connected from it, and `fluoWhipSink: true` a WHIP URL (tag
//! `fluoWhipSinkUrl`) where each POST makes a `fluoWhip` one connected to it (`template`).
//!
//! The listener (fluo-server) parses the HTTP and hands each call here through the route's
//! [`SignalSink`]; the shell brings it to [`Engine::signal`] on the engine's task. IO-free.

mod frag;
mod template;

use crate::engine::{new_uuid, Engine};
use crate::http::{HttpRefusal, HttpRoutes, Route};
use fluo_api::{ErrorCode, KurentoError};
use frag::{
    candidate_section, candidate_well_formed, ice_value, parse_frag, section_mids, Precondition,
};
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
    /// WHIP into a sink element: each POST makes a WebRtcEndpoint (a [`SignalKind::Whip`]
    /// one) connected to it, replacing the one before, so a publisher always finds one URL.
    WhipSink,
}

impl SignalKind {
    /// The create property that asks for it.
    pub fn property(self) -> &'static str {
        match self {
            SignalKind::Whip => "fluoWhip",
            SignalKind::Whep => "fluoWhep",
            SignalKind::WhepSource => "fluoWhepSource",
            SignalKind::WhipSink => "fluoWhipSink",
        }
    }

    /// The tag that holds the URL.
    pub fn tag(self) -> &'static str {
        match self {
            SignalKind::Whip => "fluoWhipUrl",
            SignalKind::Whep => "fluoWhepUrl",
            SignalKind::WhepSource => "fluoWhepSourceUrl",
            SignalKind::WhipSink => "fluoWhipSinkUrl",
        }
    }

    /// The path prefix on the listener.
    pub fn feature(self) -> &'static str {
        match self {
            SignalKind::Whip | SignalKind::WhipSink => "whip",
            SignalKind::Whep | SignalKind::WhepSource => "whep",
        }
    }

    /// For a template URL, the kind of the endpoint each POST makes.
    pub fn made(self) -> Option<SignalKind> {
        match self {
            SignalKind::WhepSource => Some(SignalKind::Whep),
            SignalKind::WhipSink => Some(SignalKind::Whip),
            SignalKind::Whip | SignalKind::Whep => None,
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
    /// 201 (offer answered), 200 (ICE restarted, session ended), 204 (candidates taken).
    pub status: u16,
    /// The SDP answer (201).
    pub sdp: Option<String>,
    /// The trickle-ICE fragment (200 to an ICE restart: the server's new credentials and
    /// candidates).
    pub frag: Option<String>,
    /// The session's path (201: the Location).
    pub location: Option<String>,
    /// The ICE session's entity tag (201, and 200 to an ICE restart: the new session's).
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
    /// The element whose template URL (`fluoWhepSource`, `fluoWhipSink`) made this endpoint.
    from: Option<String>,
    /// The session made by the POST: its id and ETag.
    session: Option<(String, String)>,
    /// A 201 the client never got, and its offer: the same offer again gets it again.
    undelivered: Option<(String, SignalAnswer)>,
    /// The offer's ICE credentials (ufrag, pwd) and its m-sections' mids, kept at the POST:
    /// a PATCH repeating the same credentials is a trickle, other ones an ICE restart.
    offer: Option<OfferIce>,
    /// An endpoint a template URL made, not connected (yet, or again): when it is released,
    /// and why.
    deadline: Option<(Instant, Expiry)>,
    /// The answer to the last ICE restart: the same PATCH again (its answer lost) gets it.
    restarted: Option<SignalAnswer>,
    /// A sink's new publisher whose 201 is on its way (see `template`).
    handover: Option<template::Handover>,
}

/// What a PATCH is checked against: the POSTed offer's ICE credentials and mids.
#[derive(Clone, Default)]
struct OfferIce {
    ufrag: Option<String>,
    pwd: Option<String>,
    /// The mid of each m-section, in order (`None`: a section without one).
    mids: Vec<Option<String>>,
    /// The client's ice-ufrags of the ICE sessions its restarts replaced (the last
    /// [`MAX_EARLIER_UFRAGS`]): a fragment naming one is late, not a restart.
    earlier: Vec<String>,
}

/// How many of a client's replaced ice-ufrags a session keeps.
const MAX_EARLIER_UFRAGS: usize = 16;

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
/// An endpoint a template URL made (a source's viewer, a sink's publisher) whose ICE and DTLS
/// have not connected this long after its answer is released (an abandoned POST must not hold
/// one of the [`MAX_SOURCE_VIEWERS`], nor a sink's input).
pub const TEMPLATE_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// An endpoint a template URL made disconnected (ICE failed or disconnected, DTLS gone) this
/// long is released.
pub const TEMPLATE_DISCONNECTED_TIMEOUT: Duration = Duration::from_secs(15);

/// Why an endpoint a template URL made has a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Not connected since its answer ([`TEMPLATE_CONNECT_TIMEOUT`]).
    NotConnected,
    /// Disconnected ([`TEMPLATE_DISCONNECTED_TIMEOUT`]).
    Disconnected,
}

impl Signals {
    /// The earliest deadline of an endpoint a template URL made.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.by_object
            .values()
            .filter_map(|e| e.deadline)
            .map(|(t, _)| t)
            .min()
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
        let kinds = [
            SignalKind::Whip,
            SignalKind::Whep,
            SignalKind::WhepSource,
            SignalKind::WhipSink,
        ];
        for kind in kinds {
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
            let needs = match kind.made() {
                Some(_) => "MediaElement",
                None => "WebRtcEndpoint",
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
                restarted: None,
                handover: None,
            },
        );
    }

    /// An object was destroyed: its routes go, and so do the endpoints its template URLs made.
    pub(crate) fn signal_destroyed(&mut self, id: &str) {
        let routes = self.signals.routes.clone();
        self.signals.by_object.retain(|(object, _), e| {
            let keep = object != id;
            if let (false, Some(r)) = (keep, &routes) {
                r.remove(&e.path);
            }
            keep
        });
        let made: Vec<String> = (self.signals.by_object.iter())
            .filter(|(_, e)| e.from.as_deref() == Some(id))
            .map(|((v, _), _)| v.clone())
            .collect();
        for v in made {
            tracing::info!(endpoint = %v, owner = %id, "its template's element went: released");
            self.release(&v);
        }
    }

    /// An event an object raised: the connection state of an endpoint a template URL made
    /// moves its deadline.
    pub(crate) fn signal_event(&mut self, source: &str, event: &str, fields: &Map<String, Value>) {
        let made = [SignalKind::Whep, SignalKind::Whip].into_iter().find(|k| {
            let e = self.signals.by_object.get(&(source.to_string(), *k));
            e.is_some_and(|e| e.from.is_some())
        });
        let Some(e) = made.and_then(|k| (self.signals.by_object).get_mut(&(source.to_string(), k)))
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
            let at = self.now.mono + TEMPLATE_DISCONNECTED_TIMEOUT;
            e.deadline = Some((at, Expiry::Disconnected));
        }
    }

    /// Releases the endpoints made by template URLs whose deadline passed.
    pub(crate) fn signal_expire(&mut self) {
        let now = self.now.mono;
        let mut expired = vec![];
        for ((id, _), e) in self.signals.by_object.iter_mut() {
            // Taken, so a deadline that passed never stays the next timeout.
            if let Some((_, why)) = e.deadline.take_if(|(d, _)| *d <= now) {
                expired.push((id.clone(), why));
            }
        }
        for (id, why) in expired {
            match why {
                Expiry::NotConnected => {
                    tracing::info!(%id, "a template's endpoint not connected {} s after its answer: released", TEMPLATE_CONNECT_TIMEOUT.as_secs())
                }
                Expiry::Disconnected => {
                    tracing::info!(%id, "a template's endpoint disconnected for {} s: released", TEMPLATE_DISCONNECTED_TIMEOUT.as_secs())
                }
            }
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
        let delivered = (call.reply.send)(r);
        match (made, offer) {
            (Some(answer), _) if delivered => self.template_delivered(&answer),
            (Some(answer), Some(offer)) => self.signal_undelivered(offer, answer),
            _ => {}
        }
        self.flush_events();
    }

    /// The endpoint whose session a 201's Location names, and its entry.
    fn answered_by(&mut self, answer: &SignalAnswer) -> Option<(String, &mut Entry)> {
        let path = (answer.location.as_deref())
            .and_then(|l| l.rsplit_once('/'))
            .map(|(p, _)| p.to_string())?;
        (self.signals.by_object.iter_mut())
            .find(|(_, e)| e.path == path)
            .map(|((id, _), e)| (id.clone(), e))
    }

    /// A 201 that did not reach its client: an endpoint a template URL made is released (a
    /// sink's publisher it would have replaced stays); an application's endpoint keeps the
    /// answer for a retry of the same offer.
    fn signal_undelivered(&mut self, offer: String, answer: SignalAnswer) {
        let Some((id, e)) = self.answered_by(&answer) else {
            return;
        };
        if e.from.is_some() {
            tracing::info!(%id, "a template's endpoint's answer was not delivered: released");
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
        if entry.kind.made().is_some() {
            return match (&op, session) {
                (SignalOp::Offer(sdp), None) => {
                    let sdp = sdp.clone();
                    self.signal_template(id, kind, &sdp)
                }
                (_, None) => Err(HttpRefusal::new(
                    405,
                    "POST an offer here; its session is under the Location answered",
                )),
                (_, Some(_)) => Err(gone()),
            };
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
                self.signal_patch(&key, &frag, if_match.as_deref(), &etag, &offer_ice)
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
        if !answer.lines().any(frag::accepted_section) {
            return Err(HttpRefusal::new(
                422,
                "no media section of the offer can be taken (transport or codecs)",
            ));
        }
        let etag = frag::etag_of(&answer);
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
            earlier: vec![],
        });
        Ok(SignalAnswer {
            status: 201,
            sdp: Some(answer),
            location: Some(format!("{}/{session}", entry.path)),
            etag: Some(etag),
            ..SignalAnswer::default()
        })
    }

    fn signal_patch(
        &mut self,
        key: &(String, SignalKind),
        frag: &str,
        if_match: Option<&str>,
        etag: &str,
        offer: &OfferIce,
    ) -> Result<SignalAnswer, HttpRefusal> {
        let id = key.0.as_str();
        let cond = frag::precondition(if_match, etag);
        if cond == Precondition::Stale {
            return Err(HttpRefusal::new(
                412,
                "If-Match does not name this ICE session",
            ));
        }
        let f = parse_frag(frag)?;
        // A trickle the client sent before it restarted ICE, arriving after: its candidates
        // and credentials are of an ICE session that is gone (taken as a restart, it would
        // restart ICE again on the old credentials and the client's new session would die).
        if (f.ufrag.as_ref()).is_some_and(|u| offer.earlier.contains(u)) {
            return Err(HttpRefusal::new(
                412,
                "the fragment names an earlier ICE session (its ice-ufrag was replaced by a restart)",
            ));
        }
        // RFC 9725 4.3.1: a trickle fragment may repeat the session's credentials; other ones
        // (with If-Match: *, 4.3.2) ask for an ICE restart.
        let differs = |got: &Option<String>, had: &Option<String>| {
            got.as_ref().is_some_and(|g| Some(g) != had.as_ref())
        };
        let star = cond == Precondition::Any;
        let renewed = differs(&f.ufrag, &offer.ufrag) || differs(&f.pwd, &offer.pwd);
        if renewed && cond == Precondition::Absent {
            // RFC 9725 4.3.2: a restart MUST carry If-Match ("*"). 428 Precondition Required
            // (RFC 6585 3) is the answer to a request that must be conditional and is not:
            // it guards against the lost update a stray unconditional PATCH would be here (a
            // restart the client did not mean, on credentials it no longer uses).
            return Err(HttpRefusal::new(
                428,
                "other ICE credentials restart ICE, which needs If-Match: \"*\" or the session's ETag (RFC 9725 4.3.2)",
            ));
        }
        let again = (self.signals.by_object.get(key))
            .and_then(|e| e.restarted.clone())
            .filter(|_| star && !renewed && f.ufrag.is_some());
        let restart = match (&again, star || renewed) {
            (None, true) => {
                let had = (offer.ufrag.as_deref(), offer.pwd.as_deref());
                Some(frag::restart_credentials(&f, had, &offer.mids)?)
            }
            _ => None,
        };
        // Every candidate is checked before anything is done.
        let mut adds = Vec::with_capacity(f.candidates.len());
        for c in &f.candidates {
            let (index, mid) = candidate_section(c, &offer.mids)?;
            if !candidate_well_formed(&c.line) {
                return Err(HttpRefusal::new(400, "an ICE candidate line is malformed"));
            }
            adds.push(json!({"candidate": c.line, "sdpMid": mid, "sdpMLineIndex": index}));
        }
        let answer = match (restart, again) {
            (Some((ufrag, pwd)), _) => self.signal_restart(key, &ufrag, &pwd)?,
            // The same restart again (its answer lost): the same answer.
            (None, Some(a)) => a,
            (None, None) => SignalAnswer {
                status: 204,
                ..SignalAnswer::default()
            },
        };
        for cand in adds {
            let params = Map::from_iter([("candidate".to_string(), cand)]);
            let r = self
                .with_element(id, |el, cx| el.invoke(cx, "addIceCandidate", &params))
                .flatten();
            if let Some(Err(e)) = r {
                tracing::info!(%id, error = %e.message, "a PATCH's candidate refused");
                if answer.status == 200 {
                    // ICE restarted already: the client must learn the new credentials (and
                    // its checks show the endpoint its addresses anyway).
                    continue;
                }
                return Err(HttpRefusal::new(
                    400,
                    "the endpoint refused an ICE candidate",
                ));
            }
        }
        Ok(answer)
    }

    /// Restarts the endpoint's ICE with the client's new credentials: the 200 with the
    /// endpoint's new ones, and the session's new ETag (a trickle must name it from now on).
    fn signal_restart(
        &mut self,
        key: &(String, SignalKind),
        ufrag: &str,
        pwd: &str,
    ) -> Result<SignalAnswer, HttpRefusal> {
        let id = key.0.as_str();
        let r = self
            .with_element(id, |el, cx| el.restart_ice(cx, ufrag, pwd))
            .flatten()
            .ok_or_else(|| HttpRefusal::new(422, "this endpoint cannot restart ICE"))?;
        let sdp = r.map_err(|e| match e.code {
            ErrorCode::SdpEndPointProcessOfferError => {
                tracing::info!(%id, error = %e.message, "an ICE restart refused");
                HttpRefusal::new(
                    422,
                    "ICE could not be restarted: the session goes on as it was",
                )
            }
            _ => {
                tracing::warn!(%id, error = %e.message, "an ICE restart failed midway: the ICE session is lost");
                HttpRefusal::new(
                    500,
                    "the ICE restart failed after the endpoint had dropped this ICE session: it is lost; DELETE the session and POST a new offer",
                )
            }
        })?;
        let etag = frag::etag_of(&sdp);
        let answer = SignalAnswer {
            status: 200,
            frag: Some(frag::restart_answer(&sdp)),
            etag: Some(etag.clone()),
            ..SignalAnswer::default()
        };
        if let Some(e) = self.signals.by_object.get_mut(key) {
            if let Some((_, tag)) = e.session.as_mut() {
                *tag = etag;
            }
            if let Some(o) = e.offer.as_mut() {
                if let Some(old) = o.ufrag.replace(ufrag.to_string()) {
                    if o.earlier.len() == MAX_EARLIER_UFRAGS {
                        o.earlier.remove(0);
                    }
                    o.earlier.push(old);
                }
                o.pwd = Some(pwd.to_string());
            }
            e.restarted = Some(answer.clone());
        }
        tracing::info!(%id, "ICE restarted by a PATCH");
        Ok(answer)
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
