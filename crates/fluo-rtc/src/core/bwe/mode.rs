//! `--bwe auto`: a viewer's bandwidth is estimated only while it gets a layered source's
//! video (docs/simulcast.md, "Bandwidth estimate"). Its egress writes transport-wide sequence
//! numbers and records what it sends only then ([`crate::core::ep::Ep::estimated`]); its
//! estimator is made at once (`bwe_update`, called when its source becomes layered or its
//! route to a layered source starts forwarding) and dropped when it moves to a plain source,
//! whose publisher its browser's REMB bounds again.

use crate::core::ep::Ep;
use crate::core::{lock, MediaCore};
use crate::BweMode;
use fluo_sfu::{MediaKind, NodeId};

impl MediaCore {
    /// Whether endpoint `key`'s bandwidth is estimated now. With `--bwe auto` this follows
    /// the router (`MediaRouter::gets_layered`): when that changes, what it had of an
    /// estimate is forgotten (the next one, its own or its browser's REMB, starts fresh and
    /// warms up), and on the way out its estimator, its sent-packet log and its layer cap go.
    pub(super) fn bwe_follows_source(&mut self, key: u64, ep: &mut Ep) -> bool {
        if ep.settings.bwe != BweMode::Auto {
            return ep.estimated();
        }
        let node = self.nodes.get(&key).copied();
        let layered = node.is_some_and(|n| self.router.gets_layered(n));
        if layered != ep.bwe_layered {
            tracing::debug!(id = %ep.id, layered, "bandwidth estimate (--bwe auto)");
            ep.bwe_layered = layered;
            ep.estimate_changes_hands();
            if layered {
                // What it is sent is recorded from now, for its estimator to start at once
                // (`bwe_update`) rather than at its next feedback or timer.
                if let Some(v) = ep.egress.as_mut() {
                    v.log_sent(self.now);
                }
            } else {
                self.bwe.remove(&key);
                if let Some(v) = ep.egress.as_mut() {
                    v.stop_logging_sent();
                }
                if let Some(n) = node {
                    self.router
                        .set_layer_bandwidth_cap(n, MediaKind::Video, None);
                }
            }
        }
        layered
    }

    /// Source `src` just became layered (its second simulcast or spatial layer arrived), or
    /// a route started forwarding it while layered (a viewer connected to it:
    /// `MediaRouter::take_newly_layered`): its viewers are estimated from its next packet,
    /// not from their next timer (up to a second later, each one of them sent the top
    /// layer with nothing measured meanwhile).
    pub(in crate::core) fn bwe_source_layered(&mut self, src: NodeId) {
        let sinks: Vec<u64> = (self.router.forwarding_to(src, MediaKind::Video))
            .filter_map(|n| self.keys.get(&n).copied())
            .collect();
        for key in sinks {
            let Some(ep_ref) = self.eps.get(&key).map(|e| e.ep.clone()) else {
                continue;
            };
            let mut ep = lock(&ep_ref);
            // Only those that switch now: a viewer estimated already (the source announced
            // again for another viewer's new route; with `--bwe on`, every viewer) keeps its
            // own pace.
            let before = ep.estimated();
            let estimated = self.bwe_follows_source(key, &mut ep);
            drop(ep);
            if estimated && !before {
                self.bwe_update(key);
            }
        }
    }
}
