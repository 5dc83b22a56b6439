//! `--bwe auto`: a viewer's bandwidth is estimated only while it gets a layered source's
//! video (docs/simulcast.md, "Bandwidth estimate"). Its egress writes transport-wide sequence
//! numbers and records what it sends only then ([`crate::core::ep::Ep::estimated`]); its
//! estimator is made at the first feedback after that and dropped when it moves to a plain
//! source, whose publisher its browser's REMB bounds again.

use crate::core::ep::Ep;
use crate::core::MediaCore;
use crate::BweMode;
use fluo_sfu::MediaKind;

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
            if !layered {
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
}
