//! Monotonic time to wall-clock (NTP) time, for sender reports, round trips and
//! abs-send-time.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Maps between `Instant` and wall-clock time: one pair taken once, shared by the viewers of
/// a media thread.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    mono: Instant,
    wall: SystemTime,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

const NTP_UNIX: u64 = 2_208_988_800;

impl Clock {
    /// The pair now.
    pub fn new() -> Clock {
        Clock {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    fn wall_of(&self, t: Instant) -> SystemTime {
        if t >= self.mono {
            self.wall + (t - self.mono)
        } else {
            self.wall.checked_sub(self.mono - t).unwrap_or(UNIX_EPOCH)
        }
    }

    /// The 64-bit NTP time of `t`.
    pub fn ntp_of(&self, t: Instant) -> u64 {
        ntp(self.wall_of(t))
    }

    /// Signed microseconds from `t` to the wall-clock time `wall`.
    pub(crate) fn micros_to(&self, t: Instant, wall: SystemTime) -> i64 {
        let w = self.wall_of(t);
        match wall.duration_since(w) {
            Ok(d) => d.as_micros().min(i64::MAX as u128) as i64,
            Err(e) => -(e.duration().as_micros().min(i64::MAX as u128) as i64),
        }
    }

    /// abs-send-time's value at `now`: 6.18 fixed-point seconds, 24 bits.
    pub(crate) fn abs_send_time(&self, now: Instant) -> [u8; 3] {
        let v = ((self.ntp_of(now) >> 14) & 0x00ff_ffff) as u32;
        let b = v.to_be_bytes();
        [b[1], b[2], b[3]]
    }
}

/// The 64-bit NTP time of a wall-clock time.
pub(crate) fn ntp(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    ((d.as_secs() + NTP_UNIX) << 32) | frac
}

/// The wall-clock time of a 64-bit NTP time (before 1970: the epoch).
pub(crate) fn from_ntp(n: u64) -> SystemTime {
    let secs = (n >> 32).saturating_sub(NTP_UNIX);
    let nanos = ((n & 0xffff_ffff) * 1_000_000_000) >> 32;
    UNIX_EPOCH + Duration::new(secs, nanos as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_round_trips_within_a_microsecond() {
        let t = SystemTime::now();
        let back = from_ntp(ntp(t));
        let d = t.duration_since(back).unwrap_or_else(|e| e.duration());
        assert!(d < Duration::from_micros(1), "{d:?}");
        // Times before 1970 from a hostile report do not panic.
        assert_eq!(from_ntp(0), UNIX_EPOCH);
        let c = Clock::new();
        let _ = c.micros_to(Instant::now(), from_ntp(u64::MAX));
        let _ = c.micros_to(Instant::now(), from_ntp(0));
    }
}
