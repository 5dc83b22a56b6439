//! The longest time each viewer went without a new video packet over the broadcast's window,
//! from its video packet count read every `SAMPLE`: what a stall of a relay, or of the nodes
//! while Redis is down (scripts/cluster-test.sh), shows as, where the window's totals may not.

use crate::peer::ViewerSnap;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often the viewers' counts are read during the window: the gaps are this much coarse
/// (a 30 fps feed's video packets come every 33 ms or sooner).
pub(super) const SAMPLE: Duration = Duration::from_millis(50);

/// Per viewer (cohort 0): its video packet count, when it last grew, its longest gap so far.
#[derive(Default)]
pub(super) struct Gaps {
    viewers: HashMap<usize, (u64, Instant, Duration)>,
}

impl Gaps {
    /// Starts at `at` from the counts of `snaps` (the window's first snapshot).
    pub(super) fn new(snaps: &[ViewerSnap], at: Instant) -> Gaps {
        let mut g = Gaps::default();
        for s in snaps.iter().filter(|s| s.cohort == 0) {
            g.viewers
                .insert(s.id, (s.counts.packets[1], at, Duration::ZERO));
        }
        g
    }

    /// A later snapshot, read at `at`: a viewer whose count grew closes its gap. A viewer
    /// missing from the first snapshot starts here.
    pub(super) fn sample(&mut self, snaps: &[ViewerSnap], at: Instant) {
        for s in snaps.iter().filter(|s| s.cohort == 0) {
            let video = s.counts.packets[1];
            let e = self
                .viewers
                .entry(s.id)
                .or_insert((video, at, Duration::ZERO));
            if video > e.0 {
                e.2 = e.2.max(at.saturating_duration_since(e.1));
                e.0 = video;
                e.1 = at;
            }
        }
    }

    /// Each viewer's longest gap, with the one still open at `end` (the window's end) counted.
    pub(super) fn longest(&self, end: Instant) -> Vec<Duration> {
        let mut ids: Vec<&usize> = self.viewers.keys().collect();
        ids.sort();
        ids.iter()
            .map(|id| {
                let (_, last, longest) = self.viewers[*id];
                longest.max(end.saturating_duration_since(last))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::Counts;

    fn snap(id: usize, video: u64) -> ViewerSnap {
        let now = Instant::now();
        ViewerSnap {
            id,
            cohort: 0,
            join_began: now,
            signalled: None,
            connected: None,
            first_rtp: None,
            sdp_work: Duration::ZERO,
            twcc: None,
            counts: Counts {
                packets: [0, video],
                ..Default::default()
            },
            thin: None,
            limited: false,
        }
    }

    /// A viewer whose count stands still from 0.1 s to 0.8 s has a 0.7 s gap; one that grows
    /// at every sample has gaps of one sample; one stopped at the end has the open gap counted.
    #[test]
    fn a_viewer_whose_video_stands_still_has_that_gap() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut g = Gaps::new(&[snap(0, 10), snap(1, 10), snap(2, 10)], t0);
        for (i, at) in (50..=1000).step_by(50).enumerate() {
            let i = i as u64 + 1;
            // Viewer 0: still from 100 ms to 800 ms. Viewer 1: always growing. Viewer 2:
            // stops at 700 ms.
            let v0 = if (100..800).contains(&at) { 12 } else { 10 + i };
            let v2 = 10 + i.min(14);
            g.sample(&[snap(0, v0), snap(1, 10 + i), snap(2, v2)], ms(at));
        }
        let longest = g.longest(ms(1000));
        assert_eq!(longest[0], Duration::from_millis(700));
        assert_eq!(longest[1], Duration::from_millis(50));
        assert_eq!(longest[2], Duration::from_millis(300));
    }
}
