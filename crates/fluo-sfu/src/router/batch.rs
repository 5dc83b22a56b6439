//! A reusable arena of outgoing packets.

use std::ops::Range;

use crate::ids::ConsumerId;

/// Per-consumer rewritten copies of forwarded packets, stored back to back in one buffer.
///
/// [`clear`](Self::clear) keeps the capacity: a batch reused across packets stops
/// allocating once it has held its largest load.
#[derive(Debug, Default, Clone)]
pub struct ForwardBatch {
    data: Vec<u8>,
    entries: Vec<(ConsumerId, Range<usize>)>,
}

impl ForwardBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `packets` packets totalling `bytes` bytes.
    pub fn with_capacity(packets: usize, bytes: usize) -> Self {
        ForwardBatch {
            data: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(packets),
        }
    }

    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.data.clear();
        self.entries.clear();
    }

    /// Number of packets held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch holds no packet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `i`-th packet and its consumer.
    pub fn get(&self, i: usize) -> Option<(ConsumerId, &[u8])> {
        let (c, r) = self.entries.get(i)?;
        Some((*c, &self.data[r.clone()]))
    }

    /// The packets in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (ConsumerId, &[u8])> + '_ {
        self.entries
            .iter()
            .map(|(c, r)| (*c, &self.data[r.clone()]))
    }

    /// Appends a packet for `consumer` written by `write` at the end of the buffer.
    pub(crate) fn push_with(&mut self, consumer: ConsumerId, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.data.len();
        write(&mut self.data);
        self.entries.push((consumer, start..self.data.len()));
    }
}
