//! When a draining server is *drained* (docs/operations.md, "Draining"): once a second
//! while it drains, the engine's media pipelines are counted (asked from the core task, as a
//! scrape does) and, in a cluster, the client connections of this node that hold objects on
//! another node through it (a pipeline made there, a subscription: stopping this node would
//! cut them off from those objects). Drained is both at zero: the log says so once, the
//! `fluo_drained` gauge is 1, and [`super::Ops::until_drained`] returns (what
//! `--exit-when-drained` waits for). A count that changes is logged, so that the operator
//! sees the drain progress.

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
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if !ops.draining() {
            last = None;
            ops.drained
                .send_if_modified(|d| std::mem::replace(d, false));
            continue;
        }
        let Some(pipelines) = ops.ask_core(|e| e.reading().pipelines, WAIT).await else {
            continue;
        };
        let holders = router.as_ref().map_or(0, |r| r.holders());
        let now = Left { pipelines, holders };
        if last != Some(now) {
            tell(now);
            last = Some(now);
        }
        let drained = pipelines == 0 && holders == 0;
        ops.drained
            .send_if_modified(|d| std::mem::replace(d, drained) != drained);
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
