//! The router's ports (players, recorders, RtpEndpoints, filters) and the transcoders it
//! inserts for them: media-flow events of element ports, routing through transcoders, and
//! taking them out again.

use super::*;

impl MediaCore {
    /// Media of `kind` passed an element's port in direction `dir` (not a transcoder's):
    /// reports FLOWING when it starts, as for endpoints.
    pub(super) fn port_flowed(&mut self, key: u64, dir: FlowDir, kind: MediaKind) {
        let now = self.now;
        let Some(p) = self.ports.get_mut(&key) else {
            return;
        };
        if p.upstream.is_some() {
            return;
        }
        let f = &mut p.flow[dir as usize][kind];
        f.0 = Some(now);
        if !f.1 {
            f.1 = true;
            self.events.push_back((p.id.clone(), flow(dir, true, kind)));
        }
    }

    /// Reports NOT_FLOWING for ports that have seen no media for [`FLOW_IDLE`].
    pub(super) fn ports_idle(&mut self, now: Instant) {
        for p in self.ports.values_mut() {
            for dir in FlowDir::ALL {
                for kind in MediaKind::ALL {
                    let f = &mut p.flow[dir as usize][kind];
                    let idle =
                        f.0.is_some_and(|t| now.saturating_duration_since(t) > FLOW_IDLE);
                    if f.1 && idle {
                        f.1 = false;
                        self.events
                            .push_back((p.id.clone(), flow(dir, false, kind)));
                    }
                }
            }
        }
    }

    /// Stops feeding `sink` through the transcoder it gets `src`'s media from; the
    /// transcoder goes when nobody needs it.
    pub(super) fn unroute_via(&mut self, src: u64, kind: MediaKind, sink: u64) {
        let Some(t) = self.via.remove(&(src, kind, sink)) else {
            return;
        };
        let empty = match self.routes.get_mut(&(t, kind)) {
            Some(sinks) => {
                sinks.retain(|k| *k != sink);
                sinks.is_empty()
            }
            None => true,
        };
        if empty {
            self.drop_transcoder(t);
        }
    }

    pub(super) fn drop_transcoder(&mut self, t: u64) {
        let Some(entry) = self.ports.remove(&t) else {
            return;
        };
        self.transcoders.retain(|_, k| *k != t);
        self.via.retain(|_, k| *k != t);
        self.routes.retain(|(s, _), _| *s != t);
        for sinks in self.routes.values_mut() {
            sinks.retain(|k| *k != t);
        }
        self.throttles.remove(&t);
        if let Some((src, kind)) = entry.upstream {
            tracing::info!(transcoder = %entry.id, "transcoder removed: no sink needs it");
            if let Some(src_id) = self.id_of(src) {
                let ev = MediaEvent::Transcoding {
                    kind,
                    on: false,
                    bin: entry.id.clone(),
                };
                self.events.push_back((src_id, ev));
            }
        }
        // Dropping the port stops its pipeline.
        drop(entry);
    }

    /// Tells the ports that `src` feeds (directly or through its transcoders) that its
    /// stream ended; each is told once.
    pub(super) fn end_of_stream(&mut self, src: u64) {
        let mut fed: Vec<u64> = vec![];
        let transcoders: Vec<u64> = self
            .ports
            .iter()
            .filter(|(_, p)| p.upstream.is_some_and(|(s, _)| s == src))
            .map(|(k, _)| *k)
            .collect();
        for from in std::iter::once(src).chain(transcoders) {
            for kind in MediaKind::ALL {
                for sink in self.routes.get(&(from, kind)).into_iter().flatten() {
                    if !fed.contains(sink)
                        && self.ports.get(sink).is_some_and(|p| p.upstream.is_none())
                    {
                        fed.push(*sink);
                    }
                }
            }
        }
        for k in fed {
            if let Some(p) = self.ports.get_mut(&k) {
                p.port.end_of_stream();
            }
        }
    }

    /// The codecs a sink takes for `kind`, best first.
    pub(super) fn wants(&self, sink: u64, kind: MediaKind) -> Vec<Codec> {
        if let Some(p) = self.ports.get(&sink) {
            return p.port.wants(kind);
        }
        let Some(e) = self.eps.get(&sink) else {
            return vec![];
        };
        let ep = lock(&e.ep);
        let Some(mid) = ep.mid_of_kind(kind) else {
            return vec![];
        };
        let accepted = ep
            .rtc
            .media(mid)
            .map(|m| m.remote_pts())
            .unwrap_or_default();
        ep.rtc
            .codec_config()
            .params()
            .iter()
            .filter(|p| accepted.contains(&p.pt()))
            .filter_map(|p| codec_of(&p.spec()))
            .collect()
    }

    /// `sink` cannot take `src`'s codec: feed it through a transcoder to a codec it takes,
    /// shared with every other sink of `src` that needs the same codec.
    pub(super) fn transcode(&mut self, src: u64, sink: u64, f: &Forward) {
        self.transcode_to(src, sink, f, None);
    }

    /// Feeds `sink` through a transcoder of `src`'s media to `target` (`None`: the first
    /// codec the sink takes that can be made from the source's).
    pub(super) fn transcode_to(&mut self, src: u64, sink: u64, f: &Forward, target: Option<Codec>) {
        let kind = f.kind;
        if self.no_transcoder.contains(&(src, kind, sink)) {
            // Tried and failed for this route: not again on every packet.
            return;
        }
        let target = target.or_else(|| {
            let wants = self.wants(sink, kind);
            self.factory.as_ref().and_then(|fac| {
                wants
                    .iter()
                    .copied()
                    .find(|t| t.name.kind() == kind && fac.can(&f.codec, t))
            })
        });
        let existing = target.and_then(|t| self.transcoders.get(&(src, kind, t)).copied());
        let t = match (existing, target, self.factory.clone(), self.output.clone()) {
            (Some(t), _, _, _) => t,
            (None, Some(target), Some(factory), Some(output)) => {
                let t = self.next_transcoder;
                self.next_transcoder += 1;
                let src_id = self.id_of(src).unwrap_or_default();
                let name = format!(
                    "transcoder_{}_{}_{}",
                    kind.wire_name().to_lowercase(),
                    f.codec.name.sdp_name(),
                    target.name.sdp_name()
                );
                match factory.create(kind, &f.codec, &target, &src_id, PortOutput::new(t, output)) {
                    Ok(port) => {
                        tracing::info!(source = %src_id, from = %f.codec, to = %target, "transcoder inserted");
                        self.ports.insert(
                            t,
                            PortEntry {
                                id: name.clone(),
                                port,
                                upstream: Some((src, kind)),
                                flow: Default::default(),
                            },
                        );
                        self.transcoders.insert((src, kind, target), t);
                        self.routes.entry((src, kind)).or_default().push(t);
                        let ev = MediaEvent::Transcoding {
                            kind,
                            on: true,
                            bin: name,
                        };
                        self.events.push_back((src_id, ev));
                        t
                    }
                    Err(e) => {
                        self.no_transcoder.insert((src, kind, sink));
                        let why = format!(": {}", fluo_api::text::foreign(&e));
                        self.report_mismatch(sink, kind, &f.codec, &why);
                        return;
                    }
                }
            }
            _ => {
                self.no_transcoder.insert((src, kind, sink));
                self.report_mismatch(sink, kind, &f.codec, "");
                return;
            }
        };
        if let Some(sinks) = self.routes.get_mut(&(src, kind)) {
            sinks.retain(|k| *k != sink);
        }
        let fed = self.routes.entry((t, kind)).or_default();
        if !fed.contains(&sink) {
            fed.push(sink);
        }
        self.via.insert((src, kind, sink), t);
        if let Some(p) = self.ports.get_mut(&t) {
            p.port.push(&f.packet());
        }
        // The decoder starts at a keyframe.
        self.request_keyframe(src, kind);
        self.request_keyframe(t, kind);
    }

    /// Removes transcoder `t` (fed by `src`, which now sends another codec), puts its sinks
    /// back on `src`'s route and forwards `f` to them afresh.
    pub(super) fn unwind_transcoder(&mut self, src: u64, t: u64, f: &Forward) {
        let kind = f.kind;
        let sinks = self.routes.get(&(t, kind)).cloned().unwrap_or_default();
        tracing::info!(%src, codec = %f.codec, "the source changed codec: transcoder removed, sinks matched again");
        self.drop_transcoder(t);
        let route = self.routes.entry((src, kind)).or_default();
        for s in &sinks {
            if !route.contains(s) {
                route.push(*s);
            }
        }
        for s in sinks {
            self.no_transcoder.remove(&(src, kind, s));
            self.mismatch_reported.remove(&(s, kind));
            // A sink that is itself a transcoder is never reached here (see `forward`).
            self.forward(src, s, f);
        }
    }

    /// Tells a sink, once, that it cannot get a source's codec.
    pub(super) fn report_mismatch(&mut self, sink: u64, kind: MediaKind, codec: &Codec, why: &str) {
        if !self.mismatch_reported.insert((sink, kind)) {
            return;
        }
        let Some(id) = self.id_of(sink) else {
            return;
        };
        tracing::warn!(%id, %codec, "sink did not negotiate the source's codec and no transcoder can convert it{why}");
        let ev = MediaEvent::Error {
            error: fluo_sfu::MediaError::CodecMismatch,
            description: format!("The {kind} codec {codec} of the source was not negotiated by this element and cannot be transcoded{why}"),
        };
        self.events.push_back((id, ev));
    }
}
