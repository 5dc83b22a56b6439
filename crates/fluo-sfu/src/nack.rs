//! Retransmission cache: the last N packets of a producer, for answering NACKs.
//!
//! The cache is a ring of preallocated slots indexed by `seq mod capacity` (the capacity is
//! rounded up to a power of two, so the ring lines up with the 16-bit sequence space and a
//! wrap from 65 535 to 0 is seamless). A slot remembers the original sequence number and
//! the time it was stored; a lookup succeeds only if both match: the slot still holds that
//! very packet and it is younger than the age limit. Storing copies the bytes into the
//! slot's `Vec`, reusing its capacity: once every slot has held a packet of full size,
//! storing allocates nothing.

use std::time::{Duration, Instant};

/// Default number of packets kept for a video producer.
pub const DEFAULT_VIDEO_CAPACITY: usize = 1000;
/// Default number of packets kept for an audio producer (audio is not retransmitted).
pub const DEFAULT_AUDIO_CAPACITY: usize = 0;
/// Default age after which a packet is no longer retransmitted.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(1);
/// Bytes reserved per slot up front (a typical MTU).
pub const SLOT_RESERVE: usize = 1500;

#[derive(Debug, Clone)]
struct Slot {
    seq: u16,
    stored_at: Option<Instant>,
    data: Vec<u8>,
}

/// Ring buffer of recently forwarded packets keyed by their original sequence number.
#[derive(Debug, Clone)]
pub struct RetransmitCache {
    slots: Vec<Slot>,
    mask: usize,
    max_age: Duration,
}

impl RetransmitCache {
    /// A cache for at least `capacity` packets (rounded up to a power of two, at most
    /// 32 768); 0 disables it. Slots are allocated now, `SLOT_RESERVE` bytes each.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        let n = if capacity == 0 {
            0
        } else {
            capacity.min(1 << 15).next_power_of_two()
        };
        let slots = (0..n)
            .map(|_| Slot {
                seq: 0,
                stored_at: None,
                data: Vec::with_capacity(SLOT_RESERVE),
            })
            .collect();
        RetransmitCache {
            slots,
            mask: n.saturating_sub(1),
            max_age,
        }
    }

    /// Number of slots (0 when disabled).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The age limit.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// Stores a copy of `packet` (whose original sequence number is `seq`).
    pub fn insert(&mut self, now: Instant, seq: u16, packet: &[u8]) {
        let Some(slot) = self.slots.get_mut(usize::from(seq) & self.mask) else {
            return;
        };
        slot.seq = seq;
        slot.stored_at = Some(now);
        slot.data.clear();
        slot.data.extend_from_slice(packet);
    }

    /// The stored packet with original sequence number `seq`, if present and younger than
    /// the age limit at `now`.
    pub fn get(&self, now: Instant, seq: u16) -> Option<&[u8]> {
        let slot = self.slots.get(usize::from(seq) & self.mask)?;
        let at = slot.stored_at?;
        (slot.seq == seq && now.saturating_duration_since(at) <= self.max_age)
            .then_some(slot.data.as_slice())
    }

    /// Forgets every packet (e.g. when the producer restarts its sequence space).
    pub fn clear(&mut self) {
        for s in &mut self.slots {
            s.stored_at = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_finds_across_wrap() {
        let t = Instant::now();
        let mut c = RetransmitCache::new(1000, DEFAULT_MAX_AGE);
        assert_eq!(c.capacity(), 1024);
        for i in 0..2000u32 {
            let seq = (65_000 + i) as u16;
            c.insert(t, seq, &seq.to_be_bytes());
        }
        let last = (65_000u32 + 1999) as u16;
        assert_eq!(c.get(t, last), Some(&last.to_be_bytes()[..]));
        assert_eq!(c.get(t, 65_535), None); // overwritten: more than 1024 packets ago
        let old = last.wrapping_sub(1023);
        assert_eq!(c.get(t, old), Some(&old.to_be_bytes()[..]));
        assert_eq!(c.get(t, old.wrapping_sub(1)), None);
    }

    #[test]
    fn age_limit_and_clear() {
        let t = Instant::now();
        let mut c = RetransmitCache::new(16, Duration::from_millis(100));
        c.insert(t, 5, b"x");
        assert!(c.get(t + Duration::from_millis(100), 5).is_some());
        assert!(c.get(t + Duration::from_millis(101), 5).is_none());
        c.clear();
        assert!(c.get(t, 5).is_none());
    }

    #[test]
    fn disabled_cache_keeps_nothing() {
        let t = Instant::now();
        let mut c = RetransmitCache::new(DEFAULT_AUDIO_CAPACITY, DEFAULT_MAX_AGE);
        c.insert(t, 1, b"x");
        assert_eq!(c.get(t, 1), None);
        assert_eq!(c.capacity(), 0);
    }

    #[test]
    fn reuses_slot_capacity() {
        let t = Instant::now();
        let mut c = RetransmitCache::new(4, DEFAULT_MAX_AGE);
        let big = vec![1u8; 1200];
        c.insert(t, 0, &big);
        let ptr = c.get(t, 0).unwrap().as_ptr();
        c.insert(t, 4, &big);
        assert_eq!(c.get(t, 4).unwrap().as_ptr(), ptr);
    }
}
