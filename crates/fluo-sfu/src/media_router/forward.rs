//! Per packet: a source's packet to the sinks its routes forward to, each on its line.

use super::entry::{Route, State};
use super::{Header, MediaRouter, Packet};
use crate::event::FlowDir;
use crate::rewrite::Rewriter;
use crate::NodeId;
use std::time::Instant;

impl MediaRouter {
    /// Forwards a packet produced by `src` to the sinks of its kind; returns how many got it.
    pub fn forward(&mut self, now: Instant, src: NodeId, pkt: &Packet<'_>) -> usize {
        let kind = pkt.kind;
        let Some(e) = self.nodes.get_mut(src) else {
            return 0;
        };
        if e.reports_flow && e.transcoder.is_none() {
            if let Some(ev) = e.flowed(FlowDir::Out, kind, now, pkt.payload.len()) {
                self.events.push_back((e.id.clone(), ev));
            }
        }
        let undecided = |r: &Route| r.decided_for != Some(pkt.codec);
        if e.routes[kind].iter().any(undecided) {
            self.decide(now, src, kind, &pkt.codec);
        }
        let Some(e) = self.nodes.get_mut(src) else {
            return 0;
        };
        let routes = std::mem::take(&mut e.routes[kind]);
        let mut n = 0;
        for r in &routes {
            if let State::Forward { pt } = r.state {
                n += usize::from(self.deliver(now, src, r.sink, pkt, pt));
            }
        }
        if let Some(e) = self.nodes.get_mut(src) {
            e.routes[kind] = routes;
        }
        n
    }

    /// Pushes `pkt` of `src` to `sink` on its line; whether it went.
    pub(super) fn deliver(
        &mut self,
        now: Instant,
        src: NodeId,
        sink: NodeId,
        pkt: &Packet<'_>,
        pt: Option<u8>,
    ) -> bool {
        let Some(e) = self.nodes.get_mut(sink) else {
            return false;
        };
        let kind = pkt.kind;
        if e.awaits_key[kind] && e.transcoder.is_none() {
            if crate::starts_keyframe(pkt.codec.name, pkt.payload) == Some(false) {
                self.ask_keyframe(now, src, kind);
                return false;
            }
            e.awaits_key[kind] = false;
        }
        let header = if e.transcoder.is_some() {
            Header {
                seq: pkt.seq,
                ts: pkt.ts,
                ssrc: pkt.ssrc,
                pt,
            }
        } else {
            let line = e.line[kind].get_or_insert_with(|| {
                let ssrc = (sink.index() as u32) ^ 0x5f10_0000 ^ kind.index() as u32;
                Rewriter::new(pkt.codec.clock_rate, ssrc, pkt.seq & 0x3fff, pkt.ts)
            });
            let Some(rw) = line.rewrite(now, pkt.ssrc, pkt.seq, pkt.ts) else {
                return false;
            };
            Header {
                seq: rw.seq,
                ts: rw.ts,
                ssrc: rw.ssrc,
                pt,
            }
        };
        e.node.push(now, pkt, header);
        if !std::mem::replace(&mut e.pushed, true) {
            self.pushed.push(sink);
        }
        if e.reports_flow && e.transcoder.is_none() {
            if let Some(t) = pkt.entered {
                e.latency[kind].add(t.elapsed());
                if let Some(board) = &self.latency {
                    board.set(&e.id, e.latency);
                }
            }
            if let Some(ev) = e.flowed(FlowDir::In, kind, now, pkt.payload.len()) {
                self.events.push_back((e.id.clone(), ev));
            }
        }
        true
    }

    /// Ends a pass over the router's inputs: each node pushed to since the last pass is
    /// [flushed](super::Node::flush) once (a proxy of a media worker sends what it gathered, audio
    /// with video, in one datagram). The driver of the router calls it after each batch of
    /// input it handles.
    pub fn flush(&mut self) {
        let mut pushed = std::mem::take(&mut self.pushed);
        for n in pushed.drain(..) {
            if let Some(e) = self.nodes.get_mut(n) {
                e.pushed = false;
                e.node.flush();
            }
        }
        // Its room is kept: a pass allocates nothing.
        self.pushed = pushed;
    }
}
