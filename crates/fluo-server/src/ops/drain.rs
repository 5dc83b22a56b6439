//! When a draining server is *drained* (docs/operations.md, "Draining"): once a second
//! while it drains, the engine's media pipelines are counted (asked from the core task, as a
//! scrape does) and, in a cluster, the client connections of this node that hold objects on
//! another node through it (a pipeline made there, a subscription: stopping this node would
//! cut them off from those objects). Drained is both at zero in two counts in a row (a
//! request on its way to another node at the first, making an object there, holds it at the
//! second): the log says so once, the `fluo_drained` gauge is 1, and
//! [`super::Ops::until_drained`] returns (what `--exit-when-drained` waits for). A count
//! taken while the drain ended (or ended and started again) is not published; the flag is
//! cleared when a drain starts or ends. A count that changes is logged, so that the
//! operator sees the drain progress.

use super::Ops;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the counts are taken while draining.
const EVERY: Duration = Duration::from_secs(1);

/// How long a count waits for the core task (a busy engine: the next tick tries again).
const WAIT: Duration = Duration::from_secs(2);

/// What is left on a draining server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Left {
    pipelines: usize,
    /// Client connections holding objects on another node through this one.
    holders: usize,
}

/// Watches the drain until `shutdown`; `router` is the cluster's request router (none on a
/// single node).
pub(crate) async fn watch(
    ops: Arc<Ops>,
    router: Option<Arc<crate::link::Router>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Left> = None;
    // Empty readings in a row.
    let mut readings = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if !ops.draining() {
            last = None;
            readings = 0;
            continue;
        }
        // A drain that ends (or ends and starts again) while the count is taken: the count
        // is not published (it may be of before).
        let generation = ops.drain_generation();
        let Some(pipelines) = ops.ask_core(|e| e.reading().pipelines, WAIT).await else {
            continue;
        };
        let holders = router.as_ref().map_or(0, |r| r.holders());
        let now = Left { pipelines, holders };
        if last != Some(now) {
            tell(now);
            last = Some(now);
        }
        let empty = pipelines == 0 && holders == 0;
        readings = if empty { readings + 1 } else { 0 };
        // Two empty readings in a row, a second apart: a client whose request was on its way
        // to another node at the first (an object there not yet made) holds it at the second.
        let drained = readings >= 2;
        // Checked under the flag's lock, which `set_draining` takes to clear it after the
        // generation changed: a stale count is never published.
        ops.drained.send_if_modified(|d| {
            ops.draining()
                && ops.drain_generation() == generation
                && std::mem::replace(d, drained) != drained
        });
    }
}

/// Logs what is left.
fn tell(left: Left) {
    if left.pipelines == 0 && left.holders == 0 {
        tracing::info!(
            "drained: no media pipelines left; this server can be stopped without cutting a call"
        );
    } else {
        tracing::info!(
            pipelines = left.pipelines,
            holders = left.holders,
            "draining: {} media pipelines left here, {} client connections holding objects on other nodes through this one",
            left.pipelines,
            left.holders
        );
    }
}
