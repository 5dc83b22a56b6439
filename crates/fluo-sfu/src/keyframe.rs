//! Keyframe-request throttling.
//!
//! Every consumer that joins, resumes or receives a PLI/FIR from its subscriber wants a
//! keyframe from the producer. A producer asked a thousand times in a row would spend its
//! whole bitrate on keyframes, so [`KeyframeThrottle`] lets at most one request through per
//! interval: the first request of a quiet period goes out at once; requests inside the
//! window set a *pending* flag, and the pending request goes out when the window ends.
//!
//! ```text
//! interval 500 ms
//! t=0 ms     request  -> sent now            (window until 500 ms)
//! t=1..10 ms requests -> pending             (poll_timeout() = 500 ms)
//! t=500 ms   timeout  -> sent (the deferred)  (window until 1000 ms)
//! t=1000 ms  timeout  -> nothing pending, nothing sent
//! ```
//!
//! Time is passed in; the throttle never reads the clock.

use std::time::{Duration, Instant};

/// Default minimum spacing of keyframe requests to one producer.
pub const DEFAULT_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// Lets through at most one keyframe request per interval, deferring one more.
#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
}

impl Default for KeyframeThrottle {
    fn default() -> Self {
        Self::new(DEFAULT_KEYFRAME_INTERVAL)
    }
}

impl KeyframeThrottle {
    /// A throttle with the given minimum spacing between requests sent.
    pub fn new(interval: Duration) -> Self {
        KeyframeThrottle {
            interval,
            last_sent: None,
            pending: false,
        }
    }

    /// The configured interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether a request is waiting for the window to end.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// Records a request at `now`; returns `true` if the request must be sent now.
    pub fn handle_request(&mut self, now: Instant) -> bool {
        match self.last_sent {
            Some(t) if now < t + self.interval => {
                self.pending = true;
                false
            }
            _ => {
                self.last_sent = Some(now);
                self.pending = false;
                true
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if a request is
    /// pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.pending, self.last_sent) {
            (true, Some(t)) => Some(t + self.interval),
            _ => None,
        }
    }

    /// Advances time; returns `true` if the deferred request must be sent now.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => {
                self.pending = false;
                self.last_sent = Some(now);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousand_requests_in_10ms_give_one_now_and_one_deferred() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::default();
        let mut sent = 0;
        for i in 0..1000u64 {
            let now = t0 + Duration::from_micros(i * 10);
            sent += usize::from(k.handle_request(now));
            sent += usize::from(k.handle_timeout(now));
        }
        assert_eq!(sent, 1);
        let deadline = k.poll_timeout().unwrap();
        assert_eq!(deadline, t0 + Duration::from_millis(500));
        assert!(!k.handle_timeout(deadline - Duration::from_millis(1)));
        assert!(k.handle_timeout(deadline));
        assert_eq!(k.poll_timeout(), None);
        assert!(!k.handle_timeout(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn spaced_requests_all_pass() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(Duration::from_millis(100));
        for i in 0..10u64 {
            assert!(k.handle_request(t0 + Duration::from_millis(100 * i)));
        }
        assert_eq!(k.poll_timeout(), None);
    }

    #[test]
    fn deferred_send_opens_a_new_window() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(Duration::from_millis(100));
        assert!(k.handle_request(t0));
        assert!(!k.handle_request(t0 + Duration::from_millis(50)));
        assert!(k.handle_timeout(t0 + Duration::from_millis(120)));
        // the window now runs from 120 ms
        assert!(!k.handle_request(t0 + Duration::from_millis(150)));
        assert_eq!(k.poll_timeout(), Some(t0 + Duration::from_millis(220)));
    }
}
