//! The estimators' process step, for all viewers at once (see [`Tick`]).

use super::PROCESS_EVERY;
use crate::core::MediaCore;
use std::time::Instant;

/// When the estimators' process step runs next, for all of them at once: one timer of the
/// media core every [`PROCESS_EVERY`] while any viewer has one, rather than each viewer's own
/// (which also ran its str0m session's timeout, the media-state check and the REMB update, 40
/// times a second per viewer).
#[derive(Default)]
pub(in crate::core) struct Tick {
    /// `None` while no viewer has an estimator, or every one is paused (its peer lost).
    pub(in crate::core) at: Option<Instant>,
    /// The viewers run at a tick (kept: nothing allocated per tick).
    keys: Vec<u64>,
}

impl MediaCore {
    /// The estimators' tick (see [`Tick`]): each viewer's sent packets and process step, its
    /// estimate and layer cap (`bwe_update`), in the order of their keys.
    pub(in crate::core) fn bwe_tick(&mut self, now: Instant) {
        let mut keys = std::mem::take(&mut self.bwe_tick.keys);
        keys.clear();
        keys.extend(self.bwe.keys().copied());
        keys.sort_unstable();
        for key in &keys {
            self.bwe_update(*key);
            // A probe cluster this step started takes its next steps at the viewer's own
            // timer (`drive` and `handle_timeout` keep it there from then on).
            let probe = self.bwe.get(key).and_then(|b| b.next_probe());
            if let (Some(t), Some(e)) = (probe, self.eps.get(key)) {
                if t < e.deadline {
                    self.set_deadline(*key, t);
                }
            }
        }
        self.bwe_tick.keys = keys;
        // None while every estimator is paused (their peers lost): a viewer back is run at
        // its next feedback, which starts the tick again (`bwe_update`).
        let running = self.bwe.values().any(|b| !b.paused());
        self.bwe_tick.at = running.then(|| now + PROCESS_EVERY);
    }
}
