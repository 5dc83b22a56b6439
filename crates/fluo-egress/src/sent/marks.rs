//! Which recent sent packets were bandwidth probes, and of which cluster: a fixed table of
//! the last [`MARKS`] runs of consecutive transport-wide sequence numbers (a probe
//! cluster's padding goes out in a few such runs, media in between), beside the ring (its
//! 8-byte records have no room for a cluster id). Nothing allocated.

/// Runs remembered: a few clusters' worth. One cluster of 30 ms goes out in steps of 2 ms
/// and in the passes its feedback triggers between them, media may fall between any two:
/// 20-30 runs for one cluster is usual, and each must still be marked when the feedback on
/// it arrives (goog_cc's probe estimator counts only marked packets).
pub(super) const MARKS: usize = 64;

#[derive(Debug, Clone, Copy, Default)]
struct Mark {
    /// The first and last sequence numbers of the run, unwrapped.
    first: i64,
    last: i64,
    cluster: i32,
    used: bool,
}

/// See the module.
#[derive(Debug, Clone)]
pub(super) struct ProbeMarks {
    marks: [Mark; MARKS],
    at: usize,
    any: bool,
}

impl Default for ProbeMarks {
    fn default() -> Self {
        ProbeMarks {
            marks: [Mark::default(); MARKS],
            at: 0,
            any: false,
        }
    }
}

impl ProbeMarks {
    /// Packet `full` (unwrapped) belongs to probe cluster `cluster`.
    pub(super) fn mark(&mut self, full: i64, cluster: i32) {
        self.any = true;
        let last = &mut self.marks[self.at % MARKS];
        if last.used && last.cluster == cluster && last.last + 1 == full {
            last.last = full;
            return;
        }
        self.at = self.at.wrapping_add(1);
        self.marks[self.at % MARKS] = Mark {
            first: full,
            last: full,
            cluster,
            used: true,
        };
    }

    /// The probe cluster packet `full` belongs to, if it was marked.
    pub(super) fn cluster_of(&self, full: i64) -> Option<i32> {
        // Runs are marked in the order of their numbers: a packet after the newest run (media
        // between probes, the usual lookup) is no probe without a scan of the table.
        let newest = &self.marks[self.at % MARKS];
        if !self.any || !newest.used || full > newest.last {
            return None;
        }
        (self.marks.iter())
            .find(|m| m.used && (m.first..=m.last).contains(&full))
            .map(|m| m.cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_split_by_media_into_many_runs_keeps_every_mark() {
        // One cluster at 5 Mbit/s for 30 ms: steps of 2 ms (and the feedback's passes in
        // between), a media packet between two steps each time: 30 runs, all still marked
        // when the feedback on the first arrives.
        let mut m = ProbeMarks::default();
        let mut full = 0;
        for _ in 0..30 {
            for _ in 0..3 {
                full += 1;
                m.mark(full, 9);
            }
            full += 1; // media
        }
        assert_eq!(m.cluster_of(1), Some(9), "the first run");
        assert_eq!(m.cluster_of(full - 1), Some(9), "the last run");
        assert_eq!(m.cluster_of(4), None, "media between");
        assert_eq!(m.cluster_of(full + 1), None, "not sent yet");
    }
}
