//! Latency statistics (a pipeline's `latencyStats`): how long media takes from entering the
//! router (a WebRTC peer's packet, or a player's, filter's or transcoder's output) to being
//! handed to an element. The router times a sample of the packets, so that the cost stays
//! negligible however many sinks a packet has.

use crate::MediaKind;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// One packet in this many of a stream is timed (by its sequence number).
pub const SAMPLE_EVERY: u16 = 32;

/// Whether the packet with RTP sequence number `seq` is timed.
pub fn sampled(seq: u16) -> bool {
    seq % SAMPLE_EVERY == 0
}

/// An exponentially weighted moving average of latency samples (weight 1/16), in ns.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct LatencyAvg(Option<f64>);

impl LatencyAvg {
    /// Adds a sample.
    pub fn add(&mut self, d: Duration) {
        let ns = d.as_nanos() as f64;
        self.0 = Some(match self.0 {
            None => ns,
            Some(avg) => avg + (ns - avg) / 16.0,
        });
    }

    /// The average in nanoseconds, if any sample was taken.
    pub fn get(&self) -> Option<f64> {
        self.0
    }
}

/// Input latencies of the elements that are router ports (players, recorders, filters, plain
/// RTP endpoints), by element id: written by the router's thread, read by getStats.
#[derive(Debug, Default)]
pub struct LatencyBoard(Mutex<HashMap<String, [LatencyAvg; 2]>>);

impl LatencyBoard {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, [LatencyAvg; 2]>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A sample: media of `kind` took `d` to reach the element `id`.
    pub fn record(&self, id: &str, kind: MediaKind, d: Duration) {
        let mut m = self.map();
        match m.get_mut(id) {
            Some(avgs) => avgs[kind].add(d),
            None => {
                let mut avgs = [LatencyAvg::default(); 2];
                avgs[kind].add(d);
                m.insert(id.to_string(), avgs);
            }
        }
    }

    /// The averages of the element `id`, as its router measured them.
    pub fn set(&self, id: &str, avgs: [LatencyAvg; 2]) {
        let mut m = self.map();
        match m.get_mut(id) {
            Some(a) => *a = avgs,
            None => {
                m.insert(id.to_string(), avgs);
            }
        }
    }

    /// The element's average input latency per kind (`[audio, video]`), in ns.
    pub fn get(&self, id: &str) -> [Option<f64>; 2] {
        self.map()
            .get(id)
            .map_or([None, None], |a| [a[0].get(), a[1].get()])
    }

    /// Forgets an element that left the router.
    pub fn forget(&self, id: &str) {
        self.map().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_samples_per_element_and_kind() {
        let b = LatencyBoard::default();
        assert_eq!(b.get("x"), [None, None]);
        b.record("x", MediaKind::Video, Duration::from_micros(160));
        assert_eq!(b.get("x"), [None, Some(160_000.0)]);
        b.record("x", MediaKind::Video, Duration::from_micros(320));
        assert_eq!(b.get("x")[1], Some(170_000.0));
        b.record("x", MediaKind::Audio, Duration::from_micros(1));
        assert_eq!(b.get("x")[0], Some(1000.0));
        b.forget("x");
        assert_eq!(b.get("x"), [None, None]);
        assert!(sampled(0) && sampled(64) && !sampled(1));
    }
}
