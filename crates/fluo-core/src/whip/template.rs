//! The template URLs: `fluoWhepSource` and `fluoWhipSink` on any element give it one URL
//! where each POST makes a WebRtcEndpoint of its own in the element's pipeline (a WHEP viewer
//! connected from the element, a WHIP publisher connected to it), announced as any object
//! (ServerManager's ObjectCreated), tagged with the element's id, released with the element,
//! and released when it does not connect (see [`super::TEMPLATE_CONNECT_TIMEOUT`]). A source
//! has at most [`MAX_SOURCE_VIEWERS`] viewers; a sink has one publisher, which a new POST
//! replaces (a publisher back without DELETE: OBS reconnecting) once its 201 was delivered:
//! until then the new publisher is not connected and the one before stays, so a client that
//! leaves before its answer takes nothing from the sink.

use super::{Expiry, SignalAnswer, SignalKind, MAX_SOURCE_VIEWERS, TEMPLATE_CONNECT_TIMEOUT};
use crate::engine::{Engine, Mode};
use crate::http::HttpRefusal;
use serde_json::{Map, Value};

/// A sink's new publisher until its 201 is delivered: the session it was made in (it connects
/// there) and the publishers it replaces.
pub(super) struct Handover {
    session: String,
    replaces: Vec<String>,
}

impl Engine {
    /// A POST to `owner`'s template URL of `kind`: a new WebRtcEndpoint in its pipeline,
    /// referenced by the sessions that hold the owner, connected from it (a viewer) or to it
    /// (a publisher, which replaces the one before), answering the offer; released again if
    /// that fails.
    pub(super) fn signal_template(
        &mut self,
        owner: &str,
        kind: SignalKind,
        offer: &str,
    ) -> Result<SignalAnswer, HttpRefusal> {
        let made = kind.made().expect("a template kind");
        let earlier: Vec<String> = (self.signals.by_object.iter())
            .filter(|((_, k), e)| *k == made && e.from.as_deref() == Some(owner))
            .map(|((id, _), _)| id.clone())
            .collect();
        if kind == SignalKind::WhepSource && earlier.len() >= MAX_SOURCE_VIEWERS {
            return Err(HttpRefusal::new(
                503,
                format!("this source has {MAX_SOURCE_VIEWERS} viewers: DELETE one first"),
            ));
        }
        let (id, session) = self.template_endpoint(owner, kind, made)?;
        let key = (id.clone(), made);
        let r = match kind {
            // Connected once its answer was delivered (`template_delivered`).
            SignalKind::WhipSink => self.signal_offer(&key, offer, false),
            _ => self
                .template_connect(&session, owner, &id)
                .and_then(|()| self.signal_offer(&key, offer, false)),
        };
        if r.is_err() {
            self.release(&id);
            return r;
        }
        tracing::info!(%owner, endpoint = %id, "a {} endpoint", kind.property());
        if let Some(e) = self.signals.by_object.get_mut(&key) {
            let at = self.now.mono + TEMPLATE_CONNECT_TIMEOUT;
            e.deadline = Some((at, Expiry::NotConnected));
            if kind == SignalKind::WhipSink {
                e.handover = Some(Handover {
                    session,
                    replaces: earlier,
                });
            }
        }
        r
    }

    /// A 201 reached its client: a sink's new publisher is connected to the sink, and the
    /// publishers it replaces are released.
    pub(super) fn template_delivered(&mut self, answer: &SignalAnswer) {
        let Some((id, e)) = self.answered_by(answer) else {
            return;
        };
        let (Some(h), Some(owner)) = (e.handover.take(), e.from.clone()) else {
            return;
        };
        if self.template_connect(&h.session, &id, &owner).is_err() {
            // Its client has a session that carries nothing: it goes, the others stay.
            self.release(&id);
            return;
        }
        for old in h.replaces {
            tracing::info!(%owner, publisher = %old, "replaced by a new WHIP publisher: released");
            self.release(&old);
        }
    }

    /// The WebRtcEndpoint of kind `made` a POST to `owner`'s template URL of `kind` makes (its
    /// id, and the session it was made in).
    fn template_endpoint(
        &mut self,
        owner: &str,
        kind: SignalKind,
        made: SignalKind,
    ) -> Result<(String, String), HttpRefusal> {
        let gone = || HttpRefusal::new(404, "nothing at this URL");
        let o = self.registry.get(owner).ok_or_else(gone)?;
        let pipeline = o.pipeline.clone().ok_or_else(gone)?;
        let session = o.sessions.iter().min().cloned().ok_or_else(gone)?;
        let create = fluo_api::params::Create {
            type_name: "WebRtcEndpoint".into(),
            constructor_params: Map::from_iter([("mediaPipeline".into(), Value::from(pipeline))]),
            properties: Map::from_iter([(made.property().into(), Value::Bool(true))]),
        };
        let id = (self.create(&session, create, Mode::Direct)).map_err(|e| {
            tracing::info!(%owner, error = %e.message, "no {} endpoint made", kind.property());
            HttpRefusal::new(503, "no endpoint can be made now")
        })?;
        if let Some(o) = self.registry.get_mut(&id) {
            o.tags.push((kind.property().into(), owner.to_string()));
        }
        if let Some(e) = self.signals.by_object.get_mut(&(id.clone(), made)) {
            e.from = Some(owner.to_string());
        }
        Ok((id, session.to_string()))
    }

    fn template_connect(
        &mut self,
        session: &str,
        source: &str,
        sink: &str,
    ) -> Result<(), HttpRefusal> {
        let p = Map::from_iter([("sink".to_string(), Value::from(sink))]);
        self.connect(session, source, &p, Mode::Direct)
            .map_err(|e| {
                tracing::warn!(%source, %sink, error = %e.message, "a template's endpoint not connected");
                HttpRefusal::new(500, "the endpoint could not be connected")
            })
    }
}
