//! Simulcast in the router (see [`crate::simulcast`]): what it keeps per layered source (its
//! layers, their order, whether each flows, a keyframe throttle each, its sinks sorted by the
//! layer they get) and per sink (the layer it gets, the one it should get, why).

use super::KEYFRAME_INTERVAL;
use crate::frame_size::keyframe_size;
use crate::keyframe::KeyframeThrottle;
use crate::port::Codec;
use crate::simulcast::{ForwardedLayer, LayerSelector, SwitchReason, MAX_LAYERS};
use crate::NodeId;
use std::time::{Duration, Instant};

/// How long a layer may send nothing before it counts as stopped (a publisher's encoder
/// sends every layer at the same frame rate; Chromium drops a layer its bandwidth cannot
/// carry and sends nothing on it).
pub const LAYER_IDLE: Duration = Duration::from_millis(600);

/// How often a layered source's layers are checked for having stopped (on its packets: a
/// source whose layers all stopped has nothing to switch to).
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// How long after a layered source's first packet its sinks choose a layer even if not every
/// layer it announced has sent yet (a publisher may never send some: Chromium sends no layer
/// above what its camera's resolution allows). Until then, or until every announced layer has
/// sent, its sinks wait: the order of its layers is not known before.
pub const LAYER_SETTLE: Duration = Duration::from_millis(500);

/// How long a sink without a layer waits for a keyframe of the layer it should get before it
/// starts at a keyframe of any layer that flows (a publisher may ignore the requests of one
/// layer's stream and send keyframes only on its own schedule, or on some layers only).
pub const LAYER_START_FALLBACK: Duration = Duration::from_secs(2);

/// The window a layer's bitrate is measured over ([`MediaRouter::layer_rates`]): long enough
/// that a keyframe (several times a frame's size) moves it little, short enough to follow a
/// publisher's encoder.
///
/// [`MediaRouter::layer_rates`]: super::MediaRouter::layer_rates
pub const RATE_WINDOW: Duration = Duration::from_secs(2);

/// Bytes a forwarded packet takes on the wire besides its payload, as a viewer's estimate
/// counts them: the RTP header with its extensions, the SRTP tag (UDP and IP not counted).
pub const RATE_OVERHEAD: u64 = 40;

/// Most temporal layers of an SVC stream whose rates are measured apart (VP9 allows 8;
/// WebRTC encoders send at most 3, `L*T3`): a higher one counts with the top one.
pub const MAX_TEMPORAL: usize = 4;

/// A layer's bitrate over the last complete [`RATE_WINDOW`] while it flows.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct LayerRate {
    start: Option<Instant>,
    bytes: u64,
    /// Bits per second over the last complete window (`None`: none complete since it flows).
    pub(super) bps: Option<u64>,
}

impl LayerRate {
    fn add(&mut self, now: Instant, bytes: usize) {
        let start = *self.start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= RATE_WINDOW {
            let us = elapsed.as_micros().max(1) as u64;
            self.bps = Some(self.bytes.saturating_mul(8_000_000) / us);
            self.start = Some(now);
            self.bytes = 0;
        }
        self.bytes += bytes as u64 + RATE_OVERHEAD;
    }

    /// The layer stopped: its rate is measured afresh when it comes back.
    fn stopped(&mut self) {
        *self = LayerRate::default();
    }
}

/// One layer of a source, by the id its transport gave it (for WebRTC, the place of its rid
/// among the offer's `a=rid` lines).
#[derive(Debug)]
pub(super) struct Layer {
    /// Its name (the rid), as the source node tells it.
    pub(super) name: Option<String>,
    pub(super) last_at: Option<Instant>,
    /// The highest sequence number it sent.
    highest: Option<u16>,
    pub(super) live: bool,
    /// The picture size its last keyframe announced.
    pub(super) size: Option<(u16, u16)>,
    pub(super) keyframe: KeyframeThrottle,
    pub(super) rate: LayerRate,
    /// Of an SVC stream's spatial layer: each temporal layer's own rate.
    temporal_rates: [LayerRate; MAX_TEMPORAL],
}

/// A layered source's layers.
#[derive(Debug, Default)]
pub(super) struct SourceLayers {
    pub(super) layers: Vec<Layer>,
    /// Layer ids by rank, the lowest picture first.
    order: Vec<u8>,
    /// Bumped whenever which layers flow or their order changes: sinks choose again.
    pub(super) generation: u32,
    next_check: Option<Instant>,
    /// When its first layered packet came.
    since: Option<Instant>,
    /// Its sinks may choose (see [`LAYER_SETTLE`]).
    pub(super) settled: bool,
    /// The source announced its layers (else how many it has is known only as they send).
    announced: bool,
    /// Per layer id, the sinks that get that layer or wait to switch to it, with their
    /// route's payload type: a packet of a layer goes through these only (`sort_sinks`).
    pub(super) sinks: [Vec<(NodeId, Option<u8>)>; MAX_LAYERS],
    /// The layers' generation `sinks` was sorted for: sorted again when it differs, or
    /// `None` (its routes changed, one of its sinks' limits changed or a sink switched: see
    /// `MediaRouter::routes_changed`).
    pub(super) sorted: Option<u32>,
    /// When a sink waiting for its first layer may start on any layer
    /// ([`LAYER_START_FALLBACK`]): its sinks are sorted again then.
    pub(super) resort_at: Option<Instant>,
    /// The codec of its layers (see [`SourceLayers::accepts`]).
    codec: Option<Codec>,
    /// Its layers are the spatial layers of one SVC stream (`crate::svc`), by SID, not
    /// simulcast streams: a layer needs those below it, and a keyframe is the whole stream's.
    pub(super) svc: bool,
    /// Of an SVC stream: how many temporal layers it sent (its highest TID plus one, at most
    /// [`MAX_TEMPORAL`]).
    pub(super) temporal_layers: u8,
    /// Of an SVC stream: the newest packet (a hole before the next one may be told to be of
    /// layers a sink skips, `svc::hole`).
    pub(super) svc_last: Option<crate::svc::LayerPacket>,
    /// Of an SVC stream: its newest packet and the run of late ones since (a restart after
    /// [`crate::svc::LATE_MOST`]).
    pub(super) svc_newest: crate::svc::Newest,
}

impl SourceLayers {
    /// Whether its sinks need the dependency descriptor to decode more than its lowest layer:
    /// an AV1 SVC stream (whose layers only the descriptor tells a receiver).
    pub(super) fn needs_descriptor(&self) -> bool {
        self.svc && self.codec.is_some_and(|c| c.name == crate::CodecName::Av1)
    }

    /// Whether the source has a layer `id` yet.
    pub(super) fn knows(&self, id: u8) -> bool {
        usize::from(id) < self.layers.len()
    }

    /// Whether a packet in `codec` at `now` is taken. A source's layers are in one codec, that
    /// of its first packet: a packet in another is dropped (RFC 8853 lets a publisher send a
    /// payload type per rid; layers in two codecs would have every route of the source decided
    /// again, and a transcoder made and dropped, at each packet), unless no layer sent for
    /// [`LAYER_IDLE`]: the publisher changed codec, taken from then on.
    pub(super) fn accepts(&mut self, now: Instant, codec: &Codec) -> bool {
        let recent = |l: &Layer| {
            l.last_at
                .is_some_and(|t| now.saturating_duration_since(t) <= LAYER_IDLE)
        };
        match self.codec {
            Some(c) if c == *codec => true,
            Some(_) if self.layers.iter().any(recent) => false,
            _ => {
                self.codec = Some(*codec);
                self.sorted = None;
                true
            }
        }
    }

    /// Adds layers up to `id`, the names the source gives them (its announced layers).
    /// Whether that made the source layered (it had one layer or none, it has two or more).
    pub(super) fn add(&mut self, id: u8, names: Vec<String>) -> bool {
        let before = self.layers.len();
        self.announced |= !names.is_empty();
        let n = names.len().max(usize::from(id) + 1).min(MAX_LAYERS);
        let mut names = names.into_iter();
        for i in 0..n {
            let name = names.next();
            if i < self.layers.len() {
                continue;
            }
            self.layers.push(Layer {
                name,
                last_at: None,
                highest: None,
                live: false,
                size: None,
                keyframe: KeyframeThrottle::new(KEYFRAME_INTERVAL),
                rate: LayerRate::default(),
                temporal_rates: Default::default(),
            });
        }
        self.reorder();
        before < 2 && self.layers.len() > 1
    }

    /// A packet `pkt` of layer `id` at `now` (`key`: it starts a keyframe, which answers a
    /// keyframe request of that layer still pending if it is newer than any the layer sent
    /// before: a resent or late one is older than the request): whether the layers flow or
    /// are ordered differently now. Its bitrate is measured when `measure` is set.
    pub(super) fn packet(
        &mut self,
        now: Instant,
        id: u8,
        pkt: &super::Packet<'_>,
        key: bool,
        measure: bool,
    ) {
        let (codec, payload) = (&pkt.codec, pkt.payload);
        let mut changed = false;
        let mut resized = false;
        if let Some(l) = self.layers.get_mut(usize::from(id)) {
            let newer = l
                .highest
                .is_none_or(|h| (1..0x8000).contains(&pkt.seq.wrapping_sub(h)));
            if newer {
                l.highest = Some(pkt.seq);
            }
            let key = key && newer;
            if key {
                l.keyframe.satisfied();
            }
            changed |= !std::mem::replace(&mut l.live, true);
            if measure {
                l.rate.add(now, payload.len());
            }
            let first = l.last_at.replace(now).is_none();
            // An SVC stream's sizes come from its scalability structure (`set_sizes`).
            let size = (key && !self.svc)
                .then(|| keyframe_size(codec.name, payload))
                .flatten();
            if size.is_some() && size != l.size {
                // A new size: its sinks are told (getStats), whether the order changes or not.
                changed |= l.size.is_some();
                l.size = size;
                resized = true;
            }
            // A layer's first packet may complete the sizes known: order again.
            resized |= first;
        }
        if resized {
            changed |= self.reorder();
        }
        let since = *self.since.get_or_insert(now);
        if !self.settled {
            let all = self.announced && self.layers.iter().all(|l| l.last_at.is_some());
            if all || now.saturating_duration_since(since) >= LAYER_SETTLE {
                self.settled = true;
                changed = true;
            }
        }
        if self.next_check.is_none_or(|t| now >= t) {
            self.next_check = Some(now + CHECK_EVERY);
            for l in &mut self.layers {
                let idle = l
                    .last_at
                    .is_some_and(|t| now.saturating_duration_since(t) > LAYER_IDLE);
                if l.live && idle {
                    l.live = false;
                    l.rate.stopped();
                    l.temporal_rates.iter_mut().for_each(LayerRate::stopped);
                    changed = true;
                }
            }
        }
        if changed {
            self.generation = self.generation.wrapping_add(1);
        }
    }

    /// A packet of temporal layer `tid` of SVC layer `id`, `bytes` of payload, at `now`: the
    /// stream's temporal layers counted, the layer's rate measured when `measure` is set.
    pub(super) fn temporal_packet(
        &mut self,
        now: Instant,
        (id, tid): (u8, u8),
        bytes: usize,
        measure: bool,
    ) {
        let t = usize::from(tid).min(MAX_TEMPORAL - 1);
        self.temporal_layers = self.temporal_layers.max(t as u8 + 1);
        if let Some(l) = self.layers.get_mut(usize::from(id)).filter(|_| measure) {
            l.temporal_rates[t].add(now, bytes);
        }
    }

    /// How many temporal layers each spatial layer's rates are told in: an SVC stream's
    /// temporal layers, 1 otherwise ([`SourceLayers::rates`]).
    pub(super) fn ladder(&self) -> u8 {
        if self.svc {
            self.temporal_layers.max(1)
        } else {
            1
        }
    }

    /// The (rank, temporal layer) of point `p` of [`SourceLayers::rates`] (the temporal layer
    /// `None`: every one).
    pub(super) fn point(&self, p: u8) -> (u8, Option<u8>) {
        let n = self.ladder();
        let t = p % n;
        (p / n, (t + 1 < n).then_some(t))
    }

    /// An SVC stream's scalability structure: the picture size of each of its `n` spatial
    /// layers (lowest first). Its layers are known from then on, and ordered by those sizes.
    pub(super) fn set_sizes(&mut self, sizes: &[(u16, u16)], n: usize) {
        let n = n.min(MAX_LAYERS).min(sizes.len());
        if n == 0 {
            return;
        }
        self.announced = true;
        if !self.knows(n as u8 - 1) {
            self.add(n as u8 - 1, Vec::new());
        }
        let mut changed = false;
        for (l, size) in self.layers.iter_mut().zip(sizes.iter().take(n)) {
            let size = Some(*size).filter(|(w, h)| *w > 0 && *h > 0);
            if size.is_some() && size != l.size {
                changed |= l.size.is_some();
                l.size = size;
            }
        }
        changed |= self.reorder();
        if changed {
            self.generation = self.generation.wrapping_add(1);
        }
    }

    /// Orders the layers by picture size once every layer that sent told its size (those
    /// that never sent last), by id before; whether the order changed.
    fn reorder(&mut self) -> bool {
        let mut order: Vec<u8> = (0..self.layers.len().min(MAX_LAYERS) as u8).collect();
        let sized = self
            .layers
            .iter()
            .all(|l| l.size.is_some() || l.last_at.is_none());
        if sized {
            let area = |id: &u8| {
                let size = self.layers[usize::from(*id)].size;
                size.map_or((1, 0), |(w, h)| (0, u32::from(w) * u32::from(h)))
            };
            order.sort_by_key(|id| (area(id), *id));
        }
        std::mem::replace(&mut self.order, order) != self.order
    }

    /// Layer `id` as a sink that got it for `reason` is told of it (events, getStats).
    pub(super) fn forwarded(&self, id: u8, reason: SwitchReason) -> ForwardedLayer {
        let layer = self.layers.get(usize::from(id));
        ForwardedLayer {
            rank: self.rank_of(id).unwrap_or(id),
            rid: layer.and_then(|x| x.name.clone()),
            size: layer.and_then(|x| x.size),
            reason,
            temporal: None,
        }
    }

    /// Whether `told` still says what layer `id` is (its rank, name and size).
    fn still(&self, id: u8, told: &ForwardedLayer) -> bool {
        let layer = self.layers.get(usize::from(id));
        told.rank == self.rank_of(id).unwrap_or(id)
            && told.size == layer.and_then(|x| x.size)
            && told.rid.as_deref() == layer.and_then(|x| x.name.as_deref())
    }

    /// Which ranks flow, lowest first.
    pub(super) fn live(&self) -> ([bool; MAX_LAYERS], usize) {
        let mut live = [false; MAX_LAYERS];
        for (rank, id) in self.order.iter().enumerate() {
            live[rank] = self.layers[usize::from(*id)].live;
        }
        (live, self.order.len())
    }

    /// The bitrate of each of the points a sink may be capped to, lowest first: a simulcast
    /// source's layers by rank; an SVC stream's spatial layers by rank, each with its temporal
    /// layers when it sends several (rank `r` at temporal layer `t` is point `r * n + t`, `n`
    /// its [`ladder`](Self::ladder)), cumulative (what a sink capped there is sent: the lower
    /// spatial layers and the lower temporal layers with it). `None` for a layer that does not
    /// flow or has not flowed for a whole [`RATE_WINDOW`] yet (and for any point above it in
    /// an SVC stream).
    pub(super) fn rates(&self) -> Vec<Option<u64>> {
        if self.ladder() > 1 {
            return self.temporal_rates();
        }
        let mut rates = vec![None; self.order.len()];
        // An SVC layer is sent with those below it: its rate is theirs and its own.
        let mut below = Some(0u64);
        for (rank, id) in self.order.iter().enumerate() {
            let l = &self.layers[usize::from(*id)];
            let own = l.rate.bps.filter(|_| l.live);
            rates[rank] = match (self.svc, own) {
                (true, Some(bps)) => below.map(|b| b + bps),
                _ => own,
            };
            below = below.zip(own).map(|(b, o)| b + o);
        }
        rates
    }

    /// [`SourceLayers::rates`] of an SVC stream with temporal layers.
    fn temporal_rates(&self) -> Vec<Option<u64>> {
        let n = usize::from(self.ladder());
        let mut rates = Vec::with_capacity(self.order.len() * n);
        // Per temporal layer, the rate of the spatial layers below with theirs up to it.
        let mut below = [Some(0u64); MAX_TEMPORAL];
        for id in &self.order {
            let l = &self.layers[usize::from(*id)];
            let mut own = Some(0u64);
            for (t, below) in below.iter_mut().enumerate().take(n) {
                // A temporal layer this spatial layer never sent adds nothing once the layer
                // is measured.
                let r = &l.temporal_rates[t];
                let unsent = r.start.is_none() && l.rate.bps.is_some();
                let bps = r.bps.or(unsent.then_some(0)).filter(|_| l.live);
                own = own.zip(bps).map(|(a, b)| a + b);
                rates.push(below.zip(own).map(|(a, b)| a + b));
                *below = below.zip(own).map(|(a, b)| a + b);
            }
        }
        rates
    }

    /// Whether a layer that flows has not been measured for a whole [`RATE_WINDOW`] yet.
    pub(super) fn any_live_unmeasured(&self) -> bool {
        (self.order.iter()).any(|id| {
            let l = &self.layers[usize::from(*id)];
            let temporal = (self.ladder() > 1).then(|| {
                l.temporal_rates
                    .iter()
                    .any(|r| r.start.is_some() && r.bps.is_none())
            });
            l.live && (l.rate.bps.is_none() || temporal == Some(true))
        })
    }

    /// The rank of layer `id`.
    pub(super) fn rank_of(&self, id: u8) -> Option<u8> {
        self.order.iter().position(|x| *x == id).map(|r| r as u8)
    }

    /// The layer at `rank`.
    pub(super) fn id_at(&self, rank: u8) -> Option<u8> {
        self.order.get(usize::from(rank)).copied()
    }

    /// A keyframe of layer `id` is needed at `now`: whether to ask the source now (its
    /// throttle lets it through; else it is deferred, or the layer is unknown).
    pub(super) fn ask(&mut self, now: Instant, id: u8) -> bool {
        // One SVC stream has one keyframe for all its layers: one throttle, layer 0's.
        let id = if self.svc { 0 } else { id };
        (self.layers.get_mut(usize::from(id))).is_some_and(|l| l.keyframe.handle_request(now))
    }

    /// Sends `node` (this source) the keyframe request of its layer `id` the throttle let
    /// through: a simulcast layer's own stream, or an SVC stream as a whole.
    pub(super) fn request(&self, node: &mut dyn super::Node, id: u8) {
        if self.svc {
            node.request_keyframe(crate::MediaKind::Video);
        } else {
            node.request_layer_keyframe(crate::MediaKind::Video, id);
        }
    }

    /// When a deferred keyframe request of one of the layers is due.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.layers
            .iter()
            .filter_map(|l| l.keyframe.poll_timeout())
            .min()
    }
}

/// What a sink gets of a layered source.
#[derive(Debug, Default)]
pub(super) struct SinkLayer {
    pub(super) selector: LayerSelector,
    /// Its limits (or bandwidth ceiling) changed since the target was chosen: the reason a
    /// new target would have.
    pub(super) changed: Option<SwitchReason>,
    /// The source the ids below are of.
    pub(super) source: Option<NodeId>,
    /// The source's generation the target was chosen at.
    pub(super) seen: u32,
    /// The layer it gets, and the one it should get (and why).
    pub(super) current: Option<u8>,
    pub(super) target: Option<u8>,
    pub(super) reason: Option<SwitchReason>,
    /// Since when it waits for its first layer.
    pub(super) waiting: Option<Instant>,
    /// What it was last told of its layer (`Node::layer_changed`).
    pub(super) told: Option<ForwardedLayer>,
    /// Of an SVC source: the layers it gets of the stream (`current` follows its spatial
    /// layer).
    pub(super) svc: crate::svc::SvcFilter,
    /// It does not get the dependency descriptor (`Node::reads_dependency_descriptor`, asked
    /// when its route is decided for AV1): of a source that [needs
    /// it](SourceLayers::needs_descriptor) it can decode the lowest spatial layer only.
    pub(super) no_descriptor: bool,
}

/// What to do with a layered packet for one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Not its layer.
    Drop,
    /// Its layer: on its line as it is.
    Deliver,
    /// The keyframe of the layer it should get: it switches there.
    Switch(SwitchReason),
    /// Of the layer it should get, but no keyframe: ask one of that layer.
    AwaitKey,
}

impl SinkLayer {
    /// Chooses the target again if the source's layers or the sink's limits changed; the
    /// layer to ask a keyframe of when a new target was chosen.
    pub(super) fn refresh(
        &mut self,
        now: Instant,
        src: NodeId,
        layers: &SourceLayers,
    ) -> Option<u8> {
        if self.source != Some(src) {
            *self = SinkLayer {
                selector: self.selector,
                no_descriptor: self.no_descriptor,
                source: Some(src),
                changed: Some(SwitchReason::Start),
                ..SinkLayer::default()
            };
        }
        let blind = self.no_descriptor && layers.needs_descriptor();
        if self.selector.set_decodable(blind.then_some(0))
            && self.changed != Some(SwitchReason::Start)
        {
            self.changed = Some(SwitchReason::NoDependencyDescriptor);
        }
        if !layers.settled || (self.seen == layers.generation && self.changed.is_none()) {
            return None;
        }
        self.seen = layers.generation;
        if self.current.is_none() {
            self.waiting.get_or_insert(now);
        }
        let changed = self.changed.take();
        let (live, n) = layers.live();
        let target = self
            .selector
            .choose(&live[..n])
            .and_then(|r| layers.id_at(r));
        if target == self.target {
            // A change that keeps the layer (an SVC sink's temporal cap) is told with its
            // reason, unless a switch is pending (it keeps the switch's).
            if let Some(why) = changed.filter(|_| self.current.is_some() && self.current == target)
            {
                self.reason = Some(why);
            }
            return None;
        }
        self.target = target;
        let current_live = self
            .current
            .is_some_and(|c| layers.layers.get(usize::from(c)).is_some_and(|l| l.live));
        let held = self.selector.held_by_decodable(&live[..n]);
        self.reason = Some(match (self.current, changed) {
            (None, _) if held => SwitchReason::NoDependencyDescriptor,
            (None, _) => SwitchReason::Start,
            (Some(_), Some(why)) => why,
            (Some(_), None) if !current_live => SwitchReason::LayerStopped,
            (Some(_), None) => SwitchReason::LayerAvailable,
        });
        target.filter(|t| Some(*t) != self.current)
    }

    /// What the sink should be told of its layer now that it changed in place (its size or
    /// rank, without a switch), if it did.
    pub(super) fn retell(&mut self, layers: &SourceLayers) -> Option<ForwardedLayer> {
        let (id, told) = self.current.zip(self.told.as_ref())?;
        if layers.still(id, told) {
            return None;
        }
        let mut now = layers.forwarded(id, told.reason);
        now.temporal = told.temporal;
        self.told = Some(now.clone());
        Some(now)
    }

    /// When a sink without a layer may start at a keyframe of any layer that flows, if it
    /// waits for one.
    pub(super) fn fallback_at(&self) -> Option<Instant> {
        let waits = self.current.is_none() && self.target.is_some();
        self.waiting
            .filter(|_| waits)
            .map(|t| t + LAYER_START_FALLBACK)
    }

    /// What to do with a packet of layer `id` at `now`: `key` whether it starts a keyframe
    /// (`None`: its codec cannot tell), `current_live` whether the layer the sink gets still
    /// flows.
    ///
    /// A codec whose keyframes cannot be told is never switched while the sink's layer
    /// flows (the new layer's inter frames would break its picture until that layer's next
    /// keyframe): the sink takes its first layer, and another one only when its own stopped,
    /// at any packet. A sink that waited [`LAYER_START_FALLBACK`] without a layer starts at
    /// the keyframe of any layer, and goes on waiting for its target's.
    pub(super) fn admit(
        &mut self,
        now: Instant,
        id: u8,
        key: Option<bool>,
        current_live: bool,
    ) -> Admit {
        if self.current == Some(id) {
            return Admit::Deliver;
        }
        if self.target != Some(id) {
            let stuck = self.fallback_at().is_some_and(|t| now >= t);
            if !(stuck && key == Some(true)) {
                return Admit::Drop;
            }
            self.current = Some(id);
            self.waiting = None;
            let reason = self.reason.replace(SwitchReason::LayerAvailable);
            return Admit::Switch(reason.unwrap_or(SwitchReason::Start));
        }
        match key {
            Some(true) => {}
            Some(false) => return Admit::AwaitKey,
            None if self.current.is_some() && current_live => return Admit::Drop,
            None => {}
        }
        self.current = Some(id);
        self.waiting = None;
        Admit::Switch(self.reason.unwrap_or(SwitchReason::Start))
    }
}

/// A node's simulcast state: as a source its layers, as a sink the layer it gets.
#[derive(Debug)]
pub(super) struct Slot {
    node: NodeId,
    pub(super) source: Option<SourceLayers>,
    pub(super) sink: Option<SinkLayer>,
    /// As a source of dependency descriptors (an AV1 stream's): the last structure and
    /// picture read (see [`crate::svc::DdLayers`]).
    pub(super) dd: Option<Box<crate::svc::DdLayers>>,
}

/// The router's simulcast state, beside its nodes by node index: a node's entry stays as it
/// is without simulcast, so the plain path touches the same memory per sink (an entry 16 bytes
/// larger made it 9 % slower at 1000 sinks).
#[derive(Debug, Default)]
pub(super) struct LayerTable(Vec<Option<Box<Slot>>>);

impl LayerTable {
    pub(super) fn get(&self, n: NodeId) -> Option<&Slot> {
        let s = self.0.get(n.index())?.as_deref()?;
        (s.node == n).then_some(s)
    }

    pub(super) fn get_mut(&mut self, n: NodeId) -> Option<&mut Slot> {
        let s = self.0.get_mut(n.index())?.as_deref_mut()?;
        (s.node == n).then_some(s)
    }

    /// Node `n`'s slot, made (in place of a removed node's) if it has none.
    pub(super) fn entry(&mut self, n: NodeId) -> &mut Slot {
        let i = n.index();
        if self.0.len() <= i {
            self.0.resize_with(i + 1, || None);
        }
        let slot = &mut self.0[i];
        if slot.as_ref().is_none_or(|s| s.node != n) {
            *slot = Some(Box::new(Slot {
                node: n,
                source: None,
                sink: None,
                dd: None,
            }));
        }
        slot.as_deref_mut().expect("made above")
    }

    /// Node `n` left the router.
    pub(super) fn remove(&mut self, n: NodeId) {
        if let Some(slot) = self.0.get_mut(n.index()) {
            if slot.as_ref().is_some_and(|s| s.node == n) {
                *slot = None;
            }
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.0.iter().flatten().map(|s| &**s)
    }

    /// Each slot with its node.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (NodeId, &mut Slot)> {
        self.0.iter_mut().flatten().map(|s| (s.node, &mut **s))
    }
}

#[cfg(test)]
impl super::MediaRouter {
    /// The sinks a packet of `src`'s layer `id` goes through, as last sorted.
    pub(super) fn sinks_of_layer(&self, src: NodeId, id: u8) -> Vec<NodeId> {
        let source = self.layers.get(src).and_then(|s| s.source.as_ref());
        source.map_or(vec![], |l| {
            l.sinks[usize::from(id)].iter().map(|s| s.0).collect()
        })
    }
}
