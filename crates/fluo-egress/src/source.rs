//! What is shared per source: the packets kept for retransmission, once for every viewer
//! (through str0m, each viewer keeps its own copy), sized by time.
//!
//! The cache keeps the longest history any of the source's viewers asks for:
//! [`history_for_rtt`] of that viewer's round trip (the rule fluo-rtc applies to str0m's
//! per-viewer caches: RTT + 100 ms, within 200 ms and 1 s), 1 s until a round trip is known.
//! Viewers come and go without registering: the source keeps the longest history asked for in
//! the current and the previous [`HISTORY_WINDOW`], so a departed viewer's need fades within
//! two windows.

use fluo_sfu::RetransmitCache;
use std::time::{Duration, Instant};

/// The history before any viewer's round trip is known (fluo-rtc's `RTX_HISTORY_START`).
pub const HISTORY_START: Duration = Duration::from_secs(1);

/// How long a viewer's wish for a history holds without being repeated (viewers repeat it
/// with each receiver report, about once a second).
pub const HISTORY_WINDOW: Duration = Duration::from_secs(10);

/// Fewest and most packets the cache keeps room for (64 is 0.4 s of 1.5 Mbit/s video in
/// 1200-byte packets; 4096 is 1 s of about 40 Mbit/s).
pub const MIN_SLOTS: usize = 64;
/// See [`MIN_SLOTS`].
pub const MAX_SLOTS: usize = 4096;

/// The history a viewer with round trip `rtt` needs: its NACK comes one round trip after the
/// loss at the earliest, plus the receiver's wait before asking; 200 ms to 1 s, in steps of
/// 50 ms (as Janus sizes its NACK queue; the rule fluo-rtc's `rtx_history` applies).
pub fn history_for_rtt(rtt: Duration) -> Duration {
    let ms = (rtt.as_millis() as u64 + 100).clamp(200, 1000);
    Duration::from_millis(ms.div_ceil(50) * 50)
}

/// One source's shared state on the egress path.
#[derive(Debug)]
pub struct Source {
    cache: RetransmitCache,
    /// Longest history asked for in the current window, and in the previous one.
    wanted: (Duration, Duration),
    window_start: Option<Instant>,
}

impl Default for Source {
    fn default() -> Self {
        Self::new()
    }
}

impl Source {
    /// A source whose cache keeps [`HISTORY_START`] until its viewers say more.
    pub fn new() -> Source {
        Source {
            cache: RetransmitCache::sized_by_age(HISTORY_START, MIN_SLOTS, MAX_SLOTS),
            wanted: (Duration::ZERO, Duration::ZERO),
            window_start: None,
        }
    }

    /// Keeps a copy of the packet (plain RTP, the source's sequence number `seq`).
    pub fn insert(&mut self, now: Instant, seq: u16, packet: &[u8]) {
        self.cache.insert(now, seq, packet);
    }

    /// The packet with the source's sequence number `seq`, if still kept.
    pub fn get(&self, now: Instant, seq: u16) -> Option<&[u8]> {
        self.cache.get(now, seq)
    }

    /// A viewer's round trip: the cache keeps at least [`history_for_rtt`] of it for the
    /// next [`HISTORY_WINDOW`] or two.
    pub fn viewer_rtt(&mut self, now: Instant, rtt: Duration) {
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) >= HISTORY_WINDOW {
            self.wanted = (Duration::ZERO, self.wanted.0);
            self.window_start = Some(now);
        }
        self.wanted.0 = self.wanted.0.max(history_for_rtt(rtt));
        self.cache.set_max_age(self.history());
    }

    /// The history the cache keeps now.
    pub fn history(&self) -> Duration {
        match self.wanted.0.max(self.wanted.1) {
            Duration::ZERO => HISTORY_START,
            d => d,
        }
    }

    /// Slots of the cache (its memory is about 1.5 KB each).
    pub fn slots(&self) -> usize {
        self.cache.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_follows_the_longest_round_trip_and_forgets_departed_viewers() {
        let ms = Duration::from_millis;
        assert_eq!(history_for_rtt(Duration::from_micros(300)), ms(200));
        assert_eq!(history_for_rtt(ms(180)), ms(300));
        assert_eq!(history_for_rtt(ms(5000)), ms(1000));
        let t0 = Instant::now();
        let mut s = Source::new();
        assert_eq!(s.history(), HISTORY_START);
        s.viewer_rtt(t0, ms(20)); // a LAN viewer
        s.viewer_rtt(t0, ms(400)); // a far one
        assert_eq!(s.history(), ms(500));
        // The far viewer leaves; the LAN one keeps reporting.
        let mut t = t0;
        for _ in 0..25 {
            t += ms(1000);
            s.viewer_rtt(t, ms(20));
        }
        assert_eq!(s.history(), ms(200));
    }

    #[test]
    fn the_cache_holds_the_history_at_the_source_rate() {
        let t0 = Instant::now();
        let mut s = Source::new();
        s.viewer_rtt(t0, Duration::from_millis(10)); // 200 ms
                                                     // 1 Mbit/s of 1200-byte packets: about 100 a second.
        let pkt = [0u8; 1200];
        for i in 0..2000u16 {
            s.insert(t0 + Duration::from_millis(u64::from(i) * 10), i, &pkt);
        }
        assert_eq!(s.slots(), MIN_SLOTS, "20 packets in 200 ms");
        let now = t0 + Duration::from_millis(19_990);
        assert!(s.get(now, 1999 - 19).is_some());
        assert!(s.get(now, 1999 - 25).is_none(), "older than 200 ms");
    }
}
