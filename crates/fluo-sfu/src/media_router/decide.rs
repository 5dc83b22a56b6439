//! Once per change: what a route does (forward, through a transcoder, nothing), the
//! transcoders made and dropped for it, and the CODEC_MISMATCH errors of routes that cannot be
//! served.

use super::entry::{Entry, Route, State};
use super::{MediaRouter, Node};
use crate::event::{MediaError, MediaEvent};
use crate::negotiate::{self, Decision, Forced, Impossible, SinkCaps};
use crate::port::Codec;
use crate::{MediaKind, NodeId};
use std::time::Instant;

impl MediaRouter {
    /// Decides, one at a time, the routes of `src` of `kind` not decided for `codec`.
    pub(super) fn decide(&mut self, now: Instant, src: NodeId, kind: MediaKind, codec: &Codec) {
        loop {
            let Some(e) = self.nodes.get(src) else {
                return;
            };
            let Some(route) = e.routes[kind]
                .iter()
                .find(|r| r.decided_for != Some(*codec))
            else {
                return;
            };
            let route = *route;
            if kind == MediaKind::Video && codec.name == crate::CodecName::Av1 {
                self.note_descriptor(route.sink, kind);
            }
            let decision = self.negotiate(src, kind, route.sink, codec);
            let state = self.apply(now, src, kind, route, codec, decision);
            if let Some(r) = self
                .nodes
                .get_mut(src)
                .and_then(|e| e.route_to(kind, route.sink))
            {
                r.decided_for = Some(*codec);
                r.state = state;
            }
            let forwards = |s: State| matches!(s, State::Forward { .. });
            if kind == MediaKind::Video && !forwards(route.state) && forwards(state) {
                self.announce_layered(src);
            }
            self.routes_changed(src);
        }
    }

    /// A route of `src`'s video forwards now (a sink connected, or moved to it): if `src` is
    /// layered, it is announced as a source that just became layered is
    /// ([`MediaRouter::take_newly_layered`]), for that sink's estimate to start at once.
    fn announce_layered(&mut self, src: NodeId) {
        let layers = self.layers.get(src).and_then(|s| s.source.as_ref());
        if layers.is_some_and(|l| l.layers.len() > 1) && !self.newly_layered.contains(&src) {
            self.newly_layered.push(src);
        }
    }

    /// What negotiation says for `src`'s media of `kind` in `codec` to `sink`.
    pub(super) fn negotiate(
        &self,
        src: NodeId,
        kind: MediaKind,
        sink: NodeId,
        codec: &Codec,
    ) -> Decision {
        let Some(k) = self.nodes.get(sink) else {
            return Decision::Impossible(Impossible::NoCodec);
        };
        let caps = match k.transcoder {
            Some((_, _, input, _)) => SinkCaps::transcoder(input),
            None => k.node.caps(kind),
        };
        let forced = self.nodes.get(src).and_then(|s| {
            let settings = s.settings.as_ref()?;
            Forced::of(settings, kind, s.node.applies_format(kind))
        });
        let maker = self.maker.as_deref();
        negotiate::decide(codec, &caps, forced, |from, to| {
            maker.is_some_and(|m| m.can(from, to))
        })
    }

    /// Carries out a decision for `route`; the route's new state.
    pub(super) fn apply(
        &mut self,
        now: Instant,
        src: NodeId,
        kind: MediaKind,
        route: Route,
        codec: &Codec,
        decision: Decision,
    ) -> State {
        let via = match route.state {
            State::Via(t) => Some(t),
            _ => None,
        };
        let keep = |t: NodeId, to: &Codec| {
            self.nodes
                .get(t)
                .and_then(|e| e.transcoder)
                .is_some_and(|(_, _, input, target)| input == *codec && target == *to)
        };
        if let (Decision::Transcode { to }, Some(t)) = (decision, via) {
            if keep(t, &to) {
                return State::Via(t);
            }
        }
        if let Some(t) = via {
            self.unroute_via(t, kind, route.sink);
        }
        match decision {
            Decision::Forward { pt } if via.is_some() => {
                // From the transcoder's encoder back to the source's: another stream.
                self.switched(now, src, kind, route.sink);
                State::Forward { pt }
            }
            Decision::Forward { pt } => State::Forward { pt },
            Decision::Transcode { to } => match self.transcoder(now, src, kind, codec, &to) {
                Ok(t) => {
                    self.feed_via(now, src, kind, route.sink, t);
                    State::Via(t)
                }
                Err(why) => {
                    self.mismatch(route.sink, kind, codec, &format!(": {why}"));
                    State::Impossible
                }
            },
            Decision::Impossible(Impossible::NoCodec) => {
                self.mismatch(route.sink, kind, codec, "");
                State::Impossible
            }
            Decision::Impossible(Impossible::TranscoderInput) => {
                // The source changed codec under this transcoder: it goes, and its sinks are
                // decided again (by the caller's loop) for the new codec.
                self.drop_transcoder(route.sink, true);
                State::Impossible
            }
        }
    }

    /// The transcoder of `src`'s `kind` from `from` to `to`: the running one, or a new one.
    pub(super) fn transcoder(
        &mut self,
        now: Instant,
        src: NodeId,
        kind: MediaKind,
        from: &Codec,
        to: &Codec,
    ) -> Result<NodeId, String> {
        if let Some(&t) = self.transcoders.get(&(src, kind, *to)) {
            let input = self.nodes.get(t).and_then(|e| e.transcoder).map(|x| x.2);
            if input == Some(*from) {
                return Ok(t);
            }
            self.drop_transcoder(t, true);
        }
        let maker = self.maker.clone().ok_or("no transcoders")?;
        let src_id = self
            .nodes
            .get(src)
            .map(|e| e.id.clone())
            .unwrap_or_default();
        let id = self.nodes.next_key();
        let node = maker.make(id, kind, from, to, &src_id)?;
        let name = format!(
            "transcoder_{}_{}_{}",
            kind.wire_name().to_lowercase(),
            from.name.sdp_name(),
            to.name.sdp_name()
        );
        let mut entry = Entry::new(name.clone(), node);
        entry.reports_flow = false;
        entry.transcoder = Some((src, kind, *from, *to));
        entry.sources[kind].push(src);
        let t = self.nodes.insert(entry);
        self.transcoders.insert((src, kind, *to), t);
        if let Some(s) = self.nodes.get_mut(src) {
            s.routes[kind].push(Route {
                sink: t,
                decided_for: Some(*from),
                state: State::Forward { pt: None },
            });
        }
        self.routes_changed(src);
        let ev = MediaEvent::Transcoding {
            kind,
            on: true,
            bin: name,
        };
        self.events.push_back((src_id, ev));
        // The decoder starts at a keyframe.
        self.ask_keyframe(now, src, kind);
        Ok(t)
    }

    /// Makes transcoder `t` (of `src`) feed `sink`.
    pub(super) fn feed_via(
        &mut self,
        now: Instant,
        src: NodeId,
        kind: MediaKind,
        sink: NodeId,
        t: NodeId,
    ) {
        let Some(e) = self.nodes.get_mut(t) else {
            return;
        };
        if e.route_to(kind, sink).is_none() {
            e.routes[kind].push(Route {
                sink,
                decided_for: None,
                state: State::Impossible,
            });
        }
        self.routes_changed(t);
        self.switched(now, src, kind, sink);
        // It gets what the transcoder makes, no layer of `src` (getStats' layer goes).
        self.leaves_layers(sink, kind, |_| true);
        self.ask_keyframe(now, t, kind);
    }

    /// `sink` no longer gets its media through transcoder `t`, which goes with its last sink.
    pub(super) fn unroute_via(&mut self, t: NodeId, kind: MediaKind, sink: NodeId) {
        let Some(e) = self.nodes.get_mut(t) else {
            return;
        };
        e.routes[kind].retain(|r| r.sink != sink);
        let empty = e.routes[kind].is_empty();
        self.routes_changed(t);
        if empty {
            self.drop_transcoder(t, true);
        }
    }

    /// Removes transcoder `t`: the routes it served are decided again at the source's next
    /// packet; `tell`: its source learns NOT_TRANSCODING.
    pub(super) fn drop_transcoder(&mut self, t: NodeId, tell: bool) -> Option<Box<dyn Node>> {
        let e = self.take(t)?;
        self.transcoders.retain(|_, x| *x != t);
        let Some((src, kind, _, _)) = e.transcoder else {
            return Some(e.node);
        };
        self.routes_changed(src);
        if let Some(s) = self.nodes.get_mut(src) {
            s.routes[kind].retain(|r| r.sink != t);
            for r in &mut s.routes[kind] {
                if r.state == State::Via(t) {
                    r.decided_for = None;
                    r.state = State::Impossible;
                }
            }
            if tell {
                let ev = MediaEvent::Transcoding {
                    kind,
                    on: false,
                    bin: e.id.clone(),
                };
                self.events.push_back((s.id.clone(), ev));
            }
        }
        Some(e.node)
    }

    /// Transcoder `t` failed for good (its media worker died): each sink it fed gets the
    /// CODEC_MISMATCH error of a transcoder that cannot be made, saying `why`; it goes, and
    /// those routes stay without media until something changes (a re-connect makes a new
    /// transcoder; a stream that crashed one is not fed to another by itself).
    pub fn transcoder_failed(&mut self, t: NodeId, why: &str) {
        let Some(e) = self.nodes.get(t) else {
            return;
        };
        let Some((src, kind, from, _)) = e.transcoder else {
            return;
        };
        let sinks: Vec<NodeId> = e.routes[kind].iter().map(|r| r.sink).collect();
        self.drop_transcoder(t, true);
        self.routes_changed(src);
        if let Some(s) = self.nodes.get_mut(src) {
            for r in s.routes[kind]
                .iter_mut()
                .filter(|r| sinks.contains(&r.sink))
            {
                r.decided_for = Some(from);
                r.state = State::Impossible;
            }
        }
        for sink in sinks {
            if let Some(k) = self.nodes.get_mut(sink) {
                k.mismatch[kind] = false;
            }
            self.mismatch(sink, kind, &from, &format!(": {why}"));
        }
    }

    /// Tells `sink`, once until something changes, that `codec` cannot reach it.
    pub(super) fn mismatch(&mut self, sink: NodeId, kind: MediaKind, codec: &Codec, why: &str) {
        let Some(k) = self.nodes.get_mut(sink) else {
            return;
        };
        if std::mem::replace(&mut k.mismatch[kind], true) {
            return;
        }
        let description = format!(
            "The {kind} codec {codec} of the source was not negotiated by this element and cannot be transcoded{why}"
        );
        let ev = MediaEvent::Error {
            error: MediaError::CodecMismatch,
            description,
        };
        self.events.push_back((k.id.clone(), ev));
    }
}
