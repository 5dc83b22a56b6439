//! Which recent sent packets were bandwidth probes, and of which cluster: a fixed table of
//! the last [`MARKS`] runs of consecutive transport-wide sequence numbers (a probe
//! cluster's padding goes out in a few such runs, media in between), beside the ring (its
//! 8-byte records have no room for a cluster id). Nothing allocated.

/// Runs remembered: several clusters' worth (one cluster is sent in steps of a few ms, media
/// packets may fall between them).
pub(super) const MARKS: usize = 16;

#[derive(Debug, Clone, Copy, Default)]
struct Mark {
    /// The first and last sequence numbers of the run, unwrapped.
    first: i64,
    last: i64,
    cluster: i32,
    used: bool,
}

/// See the module.
#[derive(Debug, Clone, Default)]
pub(super) struct ProbeMarks {
    marks: [Mark; MARKS],
    at: usize,
    any: bool,
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
        if !self.any {
            return None;
        }
        (self.marks.iter())
            .find(|m| m.used && (m.first..=m.last).contains(&full))
            .map(|m| m.cluster)
    }
}
