//! Retransmission cache: the last N packets of a producer, for answering NACKs.
//!
//! The cache is a ring of preallocated slots indexed by `seq mod capacity` (the capacity is
//! rounded up to a power of two, so the ring lines up with the 16-bit sequence space and a
//! wrap from 65 535 to 0 is seamless). A slot remembers the original sequence number and
//! the time it was stored; a lookup succeeds only if both match: the slot still holds that
//! very packet and it is younger than the age limit. Storing copies the bytes into the
//! slot's `Vec`, reusing its capacity: once every slot has held a packet of full size,
//! storing allocates nothing.
//!
//! A cache made with [`RetransmitCache::sized_by_age`] keeps its age limit's worth of packets
//! whatever the rate: it doubles when a packet younger than the limit is about to be
//! overwritten by the one `capacity` sequence numbers after it, and halves when a whole lap
//! of the ring only overwrote packets older than four times the limit. Growing allocates
//! (rarely: once per doubling); storing into a ring of the right size does not.

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
    /// Slot counts the ring may take when sized by age (equal: a fixed size).
    min_slots: usize,
    max_slots: usize,
    /// The youngest packet overwritten in this lap of the ring (sized by age only).
    lap_youngest: Option<Duration>,
}

/// Most slots a cache has (half the sequence space).
const MAX_SLOTS: usize = 1 << 15;

fn empty_slot() -> Slot {
    Slot {
        seq: 0,
        stored_at: None,
        data: Vec::with_capacity(SLOT_RESERVE),
    }
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
        RetransmitCache {
            slots: (0..n).map(|_| empty_slot()).collect(),
            mask: n.saturating_sub(1),
            max_age,
            min_slots: n,
            max_slots: n,
            lap_youngest: None,
        }
    }

    /// A cache that keeps `max_age` of packets whatever their rate, between `min_slots` and
    /// `max_slots` slots (each rounded up to a power of two, at most 32 768; see the module).
    pub fn sized_by_age(max_age: Duration, min_slots: usize, max_slots: usize) -> Self {
        let min = min_slots.clamp(1, MAX_SLOTS).next_power_of_two();
        let max = max_slots.clamp(min, MAX_SLOTS).next_power_of_two();
        let mut c = RetransmitCache::new(min, max_age);
        c.max_slots = max;
        c
    }

    /// Changes the age limit (a cache sized by age follows it as packets come).
    pub fn set_max_age(&mut self, max_age: Duration) {
        self.max_age = max_age;
    }

    fn grow(&mut self) {
        let old = self.slots.len();
        self.slots.extend((0..old).map(|_| empty_slot()));
        self.mask = 2 * old - 1;
        // Each stored packet belongs at `seq & mask`: where it is, or `old` further on.
        for i in 0..old {
            let home = usize::from(self.slots[i].seq) & self.mask;
            if self.slots[i].stored_at.is_some() && home != i {
                self.slots.swap(i, home);
            }
        }
    }

    fn shrink(&mut self) {
        let half = self.slots.len() / 2;
        for i in 0..half {
            // Keep the younger of the two packets that share a slot in the smaller ring.
            let (low, high) = self.slots.split_at_mut(half);
            if high[i].stored_at > low[i].stored_at {
                std::mem::swap(&mut low[i], &mut high[i]);
            }
        }
        self.slots.truncate(half);
        self.mask = half - 1;
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
        if self.max_slots > self.min_slots {
            self.follow_age(now, seq);
        }
        let Some(slot) = self.slots.get_mut(usize::from(seq) & self.mask) else {
            return;
        };
        slot.seq = seq;
        slot.stored_at = Some(now);
        slot.data.clear();
        slot.data.extend_from_slice(packet);
    }

    /// Sizing by age, before `seq` is stored: grow when it would overwrite the packet one lap
    /// before it while that one is younger than the age limit; shrink after a lap that only
    /// overwrote packets older than four times the limit.
    fn follow_age(&mut self, now: Instant, seq: u16) {
        loop {
            let slot = &self.slots[usize::from(seq) & self.mask];
            let Some(at) = slot.stored_at else {
                break;
            };
            let age = now.saturating_duration_since(at);
            let one_lap = usize::from(seq.wrapping_sub(slot.seq)) == self.slots.len();
            if one_lap && age <= self.max_age && self.slots.len() < self.max_slots {
                self.grow();
                self.lap_youngest = None;
                continue;
            }
            self.lap_youngest = Some(self.lap_youngest.map_or(age, |y| y.min(age)));
            break;
        }
        if usize::from(seq) & self.mask == 0 {
            let idle = self.lap_youngest.take();
            if idle.is_some_and(|y| y > self.max_age * 4) && self.slots.len() > self.min_slots {
                self.shrink();
            }
        }
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
    fn a_cache_sized_by_age_keeps_its_age_limit_of_packets_at_any_rate() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = RetransmitCache::sized_by_age(ms(500), 16, 4096);
        assert_eq!(c.capacity(), 16);
        // 200 packets a second: 100 in 500 ms, so 128 slots.
        let mut seq = 65_000u16;
        let mut t = t0;
        for _ in 0..1000 {
            seq = seq.wrapping_add(1);
            t += ms(5);
            c.insert(t, seq, &seq.to_be_bytes());
        }
        assert_eq!(c.capacity(), 128);
        let old = seq.wrapping_sub(99);
        assert_eq!(c.get(t, old), Some(&old.to_be_bytes()[..]), "495 ms old");
        for back in 0..100u16 {
            let s = seq.wrapping_sub(back);
            assert_eq!(c.get(t, s), Some(&s.to_be_bytes()[..]), "{back} back");
        }
        // The rate drops to 20 a second: after a few laps the ring halves, keeping 500 ms.
        for _ in 0..400 {
            seq = seq.wrapping_add(1);
            t += ms(50);
            c.insert(t, seq, &seq.to_be_bytes());
        }
        assert!(c.capacity() < 128, "{}", c.capacity());
        for back in 0..10u16 {
            let s = seq.wrapping_sub(back);
            assert_eq!(c.get(t, s), Some(&s.to_be_bytes()[..]), "{back} back");
        }
        // A longer age limit grows it again.
        c.set_max_age(ms(2000));
        for _ in 0..100 {
            seq = seq.wrapping_add(1);
            t += ms(50);
            c.insert(t, seq, &seq.to_be_bytes());
        }
        assert!(c.capacity() >= 40, "{}", c.capacity());
        let s = seq.wrapping_sub(39);
        assert_eq!(c.get(t, s), Some(&s.to_be_bytes()[..]), "1950 ms old");
        // Never past the maximum, and a fixed cache never changes.
        let mut capped = RetransmitCache::sized_by_age(ms(1000), 16, 64);
        let mut fixed = RetransmitCache::new(16, ms(1000));
        for i in 0..1000u16 {
            capped.insert(t0, i, b"x");
            fixed.insert(t0, i, b"x");
        }
        assert_eq!((capped.capacity(), fixed.capacity()), (64, 16));
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
