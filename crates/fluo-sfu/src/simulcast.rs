//! Simulcast: a publisher sends one video in several encodings (layers, RFC 8853), and each
//! sink gets one of them at a time.
//!
//! Layers are counted by *rank*, the lowest picture first (the router orders a source's layers
//! by the size their keyframes announce, by the publisher's own order until every layer that
//! flows has told its size). What a sink may get is a [`LayerSelector`]'s choice among the
//! layers that flow: the highest at or below its ceiling, the least of the "max allowed" inputs
//! it was given ([`LayerLimits`] from the application; the bandwidth estimate is another such
//! input, see [`LayerSelector::set_bandwidth_cap`]).
//!
//! The router applies the choice ([`crate::MediaRouter::set_layer_limits`]): a sink moves to
//! another layer only at a keyframe of that layer (requested from the publisher for that
//! layer's stream), its line resynchronised so that sequence numbers and timestamps go on
//! continuously, and the sink is told ([`crate::Node::layer_changed`]).

/// Most layers of one source the router tells apart (Chromium sends at most 3; RFC 8853
/// allows more: the packets of the others are dropped, and a WebRTC answer leaves them out).
pub const MAX_LAYERS: usize = 8;

/// What an application allows one sink: both by rank (0: the lowest picture). `None`: no
/// limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerLimits {
    /// The highest layer the sink may get while a layer at or below it flows.
    pub max: Option<u8>,
    /// The layer the sink should get; when it does not flow, the nearest lower one, else the
    /// nearest higher one within `max`.
    pub preferred: Option<u8>,
    /// The highest temporal layer (frame rate: 0 the lowest) the sink may get of a source
    /// that sends temporal layers (an SVC stream's, see [`crate::svc`]).
    pub max_temporal: Option<u8>,
}

/// Why a sink's layer changed (the event's `reason`, getStats' last switch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchReason {
    /// The sink's first layer.
    Start,
    /// The application changed the sink's limits.
    Limit,
    /// The layer it got stopped flowing (the publisher dropped it).
    LayerStopped,
    /// A layer closer to what the sink may get started (or came back), or the layers were
    /// ordered again.
    LayerAvailable,
    /// The viewer's bandwidth estimate moved its ceiling.
    Bandwidth,
    /// The sink cannot be told the stream's layer structure, so it is held to what it can
    /// decode as a single-layer stream ([`LayerSelector::set_decodable`]): a WebRTC viewer of
    /// an AV1 SVC stream that did not negotiate the dependency descriptor gets its lowest
    /// spatial layer.
    NoDependencyDescriptor,
}

impl SwitchReason {
    /// The reason as Fluo's events and getStats write it.
    pub fn wire_name(self) -> &'static str {
        match self {
            SwitchReason::Start => "START",
            SwitchReason::Limit => "LIMIT",
            SwitchReason::LayerStopped => "LAYER_STOPPED",
            SwitchReason::LayerAvailable => "LAYER_AVAILABLE",
            SwitchReason::Bandwidth => "BANDWIDTH",
            SwitchReason::NoDependencyDescriptor => "NO_DEPENDENCY_DESCRIPTOR",
        }
    }
}

/// The layer a sink gets now, as its events and getStats tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedLayer {
    /// Its rank among the source's layers (0: the lowest picture).
    pub rank: u8,
    /// Its name at the source (a WebRTC publisher's rid), when the source names its layers.
    pub rid: Option<String>,
    /// The picture size its last keyframe announced, when the codec tells it.
    pub size: Option<(u16, u16)>,
    /// Why the sink moved to it.
    pub reason: SwitchReason,
    /// The highest temporal layer it gets of a source that sends temporal layers (`None`:
    /// the source sends none, or its layers are not told apart).
    pub temporal: Option<u8>,
}

/// One sink's choice of layer, from its "max allowed" inputs: the application's limits,
/// when an estimator gives one the highest layer its bandwidth allows, and the highest layer
/// the sink can decode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerSelector {
    limits: LayerLimits,
    bandwidth: Option<u8>,
    /// The highest temporal layer the bandwidth allows at its spatial cap (`None`: all).
    bandwidth_temporal: Option<u8>,
    /// The highest rank the sink can decode (`None`: any).
    decodable: Option<u8>,
}

impl LayerSelector {
    /// The application's limits.
    pub fn limits(&self) -> LayerLimits {
        self.limits
    }

    /// Sets the application's limits; whether they changed.
    pub fn set_limits(&mut self, limits: LayerLimits) -> bool {
        std::mem::replace(&mut self.limits, limits) != limits
    }

    /// Sets the highest layer the sink's bandwidth allows (`None`: not known, no limit);
    /// whether it changed.
    pub fn set_bandwidth_cap(&mut self, cap: Option<u8>) -> bool {
        self.set_bandwidth_point(cap.map(|c| (c, None)))
    }

    /// Sets the highest (spatial rank, temporal layer) pair the sink's bandwidth allows
    /// (`None`: no limit; a temporal `None`: every temporal layer of that rank): below that
    /// rank every temporal layer, at it (or above, when nothing flows lower) the temporal
    /// layers up to the pair's. Whether it changed.
    pub fn set_bandwidth_point(&mut self, cap: Option<(u8, Option<u8>)>) -> bool {
        let old = (self.bandwidth, self.bandwidth_temporal);
        self.bandwidth = cap.map(|c| c.0);
        self.bandwidth_temporal = cap.and_then(|c| c.1);
        old != (self.bandwidth, self.bandwidth_temporal)
    }

    /// Sets the highest rank the sink can decode (`None`: any), a ceiling neither the
    /// application's limits nor the bandwidth lift (an AV1 SVC viewer without the dependency
    /// descriptor: its lowest spatial layer, see [`SwitchReason::NoDependencyDescriptor`]);
    /// whether it changed.
    pub fn set_decodable(&mut self, cap: Option<u8>) -> bool {
        std::mem::replace(&mut self.decodable, cap) != cap
    }

    /// The highest rank the sink can decode (`None`: any).
    pub fn decodable(&self) -> Option<u8> {
        self.decodable
    }

    /// Whether what the sink can decode lowers its choice among the ranks that flow (`live`,
    /// as [`choose`](Self::choose) takes them): it is why the sink gets no higher layer.
    pub fn held_by_decodable(&self, live: &[bool]) -> bool {
        let free = LayerSelector {
            decodable: None,
            ..*self
        };
        self.decodable.is_some() && self.choose(live) != free.choose(live)
    }

    /// The highest temporal layer the sink should get when it gets spatial rank `rank`: the
    /// least of the application's maximum and, at or above the bandwidth's rank, the
    /// bandwidth's (`None`: every temporal layer).
    pub fn temporal_ceiling(&self, rank: u8) -> Option<u8> {
        let bw = self
            .bandwidth_temporal
            .filter(|_| self.bandwidth.is_some_and(|b| rank >= b));
        [self.limits.max_temporal, bw].into_iter().flatten().min()
    }

    /// The highest rank the sink should get: the least of its inputs (`None`: the top).
    pub fn ceiling(&self) -> Option<u8> {
        [
            self.limits.max,
            self.limits.preferred,
            self.bandwidth,
            self.decodable,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The highest rank the sink may get while one at or below it flows: the application's
    /// maximum or what it can decode, the lesser.
    fn max(&self) -> Option<u8> {
        [self.limits.max, self.decodable]
            .into_iter()
            .flatten()
            .min()
    }

    /// The rank to forward, given which ranks flow (`live[r]`, lowest first): the highest
    /// flowing at or below the [ceiling](Self::ceiling); else the lowest flowing above it
    /// within the maximum (the application's, or what the sink can decode); else the lowest
    /// flowing at all (a sink is not left without video while a layer flows). `None` when
    /// nothing flows.
    pub fn choose(&self, live: &[bool]) -> Option<u8> {
        let ranks = || (0..live.len().min(MAX_LAYERS)).filter(|r| live[*r]);
        let ceiling = self.ceiling().map_or(usize::MAX, usize::from);
        let max = self.max().map_or(usize::MAX, usize::from);
        let chosen = ranks()
            .rfind(|r| *r <= ceiling)
            .or_else(|| ranks().find(|r| *r <= max))
            .or_else(|| ranks().next());
        chosen.map(|r| r as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(max: Option<u8>, preferred: Option<u8>) -> LayerSelector {
        let mut s = LayerSelector::default();
        s.set_limits(LayerLimits {
            max,
            preferred,
            max_temporal: None,
        });
        s
    }

    #[test]
    fn the_highest_flowing_layer_within_the_limits_is_chosen() {
        let all = [true, true, true];
        assert_eq!(sel(None, None).choose(&all), Some(2));
        assert_eq!(sel(Some(0), None).choose(&all), Some(0));
        assert_eq!(sel(Some(1), None).choose(&all), Some(1));
        assert_eq!(sel(None, Some(1)).choose(&all), Some(1));
        // The preferred layer never goes past the maximum.
        assert_eq!(sel(Some(0), Some(2)).choose(&all), Some(0));
        // Limits beyond the layers there are: the top one.
        assert_eq!(sel(Some(7), None).choose(&all), Some(2));
        assert_eq!(sel(None, None).choose(&[]), None);
        assert_eq!(sel(None, None).choose(&[false, false]), None);
    }

    #[test]
    fn a_layer_that_stops_gives_way_to_the_nearest_that_flows() {
        // The top stopped: the next one down.
        assert_eq!(sel(None, None).choose(&[true, true, false]), Some(1));
        // The preferred one stopped: lower first, then higher within the maximum.
        assert_eq!(sel(None, Some(1)).choose(&[true, false, true]), Some(0));
        assert_eq!(sel(None, Some(0)).choose(&[false, true, true]), Some(1));
        assert_eq!(sel(Some(2), Some(0)).choose(&[false, false, true]), Some(2));
        // Nothing flows within the maximum: the lowest that flows rather than no video.
        assert_eq!(sel(Some(0), None).choose(&[false, true, true]), Some(1));
    }

    #[test]
    fn the_bandwidth_cap_is_one_more_ceiling() {
        let mut s = sel(Some(2), None);
        assert!(s.set_bandwidth_cap(Some(0)));
        assert!(!s.set_bandwidth_cap(Some(0)));
        assert_eq!(s.ceiling(), Some(0));
        assert_eq!(s.choose(&[true, true, true]), Some(0));
        // Even the lowest is above what the estimate allows: the lowest, not nothing.
        assert_eq!(s.choose(&[false, true, true]), Some(1));
        s.set_bandwidth_cap(None);
        assert_eq!(s.choose(&[true, true, true]), Some(2));
        assert!(!s.set_limits(LayerLimits {
            max: Some(2),
            ..LayerLimits::default()
        }));
    }

    #[test]
    fn the_temporal_ceiling_is_the_least_of_the_limit_and_the_bandwidth_at_its_rank() {
        let mut s = LayerSelector::default();
        assert_eq!(s.temporal_ceiling(2), None, "every temporal layer");
        s.set_limits(LayerLimits {
            max_temporal: Some(1),
            ..LayerLimits::default()
        });
        assert_eq!(s.temporal_ceiling(0), Some(1));
        // The bandwidth allows S1 at T0: S1 (or above) at T0, below it every temporal layer
        // the limit allows.
        assert!(s.set_bandwidth_point(Some((1, Some(0)))));
        assert!(!s.set_bandwidth_point(Some((1, Some(0)))));
        assert_eq!(s.ceiling(), Some(1));
        assert_eq!(s.choose(&[true, true, true]), Some(1));
        assert_eq!(
            (s.temporal_ceiling(1), s.temporal_ceiling(2)),
            (Some(0), Some(0))
        );
        assert_eq!(s.temporal_ceiling(0), Some(1));
        // A spatial cap alone (simulcast's): the temporal layers are the limit's.
        assert!(s.set_bandwidth_cap(Some(1)));
        assert_eq!(s.temporal_ceiling(1), Some(1));
        s.set_limits(LayerLimits::default());
        assert_eq!(s.temporal_ceiling(1), None);
        assert!(s.set_bandwidth_point(None));
        assert_eq!((s.ceiling(), s.temporal_ceiling(0)), (None, None));
    }

    #[test]
    fn what_the_sink_can_decode_is_a_ceiling_nothing_lifts() {
        let all = [true, true, true];
        let mut s = sel(Some(2), Some(2));
        assert!(s.set_decodable(Some(0)));
        assert!(!s.set_decodable(Some(0)));
        assert_eq!((s.ceiling(), s.choose(&all)), (Some(0), Some(0)));
        assert!(s.held_by_decodable(&all));
        // The bandwidth allowing more lifts nothing; allowing less is below it anyway.
        s.set_bandwidth_cap(Some(2));
        assert_eq!(s.choose(&all), Some(0));
        // Its layer not flowing: the lowest that flows, as for the application's maximum.
        assert_eq!(s.choose(&[false, true, true]), Some(1));
        // The application asking for no more than it can decode: not what holds it.
        let mut low = sel(Some(0), None);
        low.set_decodable(Some(0));
        assert!(!low.held_by_decodable(&all));
        assert!(s.set_decodable(None));
        assert_eq!(s.choose(&all), Some(2));
        assert!(!s.held_by_decodable(&all));
    }

    #[test]
    fn reasons_have_wire_names() {
        let all = [
            SwitchReason::Start,
            SwitchReason::Limit,
            SwitchReason::LayerStopped,
            SwitchReason::LayerAvailable,
            SwitchReason::Bandwidth,
            SwitchReason::NoDependencyDescriptor,
        ];
        let names: Vec<&str> = all.iter().map(|r| r.wire_name()).collect();
        assert_eq!(
            names,
            [
                "START",
                "LIMIT",
                "LAYER_STOPPED",
                "LAYER_AVAILABLE",
                "BANDWIDTH",
                "NO_DEPENDENCY_DESCRIPTOR"
            ]
        );
    }
}
