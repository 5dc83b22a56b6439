//! Where the media thread's time goes, for diagnosis: with `FLUO_MEDIA_PROFILE=1` in the
//! server's environment the shell times each step of its loop (commands from signalling by
//! kind, received datagrams by kind, the flush after a batch, timers, sends) and logs, every
//! [`EVERY`], the count, total, mean and longest of each.
//! Off (the default) it costs one branch per step.

use std::time::{Duration, Instant};

/// How often the profile is logged (and reset).
const EVERY: Duration = Duration::from_secs(5);

#[derive(Default, Clone, Copy)]
struct Slot {
    count: u64,
    total: Duration,
    max: Duration,
}

/// The media thread's profile (see the module docs); does nothing when off.
pub(crate) struct Profile(Option<Timings>);

struct Timings {
    slots: Vec<(&'static str, Slot)>,
    since: Instant,
    /// Time in the datagrams of the receive batch under way.
    in_datagrams: Duration,
}

impl Profile {
    /// On when `FLUO_MEDIA_PROFILE` is set to anything but `0`.
    pub(crate) fn from_env() -> Profile {
        let on = std::env::var("FLUO_MEDIA_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0");
        Profile(on.then(|| Timings {
            slots: Vec::with_capacity(32),
            since: Instant::now(),
            in_datagrams: Duration::ZERO,
        }))
    }

    /// Runs `f`, timed as one step of `what`.
    pub(crate) fn time<R>(&mut self, what: &'static str, f: impl FnOnce() -> R) -> R {
        let Some(t) = &mut self.0 else {
            return f();
        };
        let began = Instant::now();
        let r = f();
        t.add(what, began);
        r
    }

    /// A received datagram (`data`) was handled, from `began`.
    pub(crate) fn datagram(&mut self, data: &[u8], began: Instant) {
        if let Some(t) = &mut self.0 {
            let took = began.elapsed();
            t.in_datagrams += took;
            t.add_time(datagram_kind(data), took);
        }
    }

    /// The receive batch that began at `began` is done: what it took beyond its datagrams
    /// is its flush.
    pub(crate) fn batch_done(&mut self, began: Instant) {
        if let Some(t) = &mut self.0 {
            let rest = began.elapsed().saturating_sub(t.in_datagrams);
            t.in_datagrams = Duration::ZERO;
            t.add_time("flush after a receive batch", rest);
        }
    }

    /// Logs and resets when [`EVERY`] has passed.
    pub(crate) fn maybe_log(&mut self) {
        if let Some(t) = &mut self.0 {
            t.maybe_log();
        }
    }
}

impl Timings {
    /// Adds one step of `what` that began at `began`.
    fn add(&mut self, what: &'static str, began: Instant) {
        self.add_time(what, began.elapsed());
    }

    /// Adds one step of `what` that took `took`.
    fn add_time(&mut self, what: &'static str, took: Duration) {
        let slot = match self.slots.iter_mut().find(|(w, _)| *w == what) {
            Some((_, s)) => s,
            None => {
                self.slots.push((what, Slot::default()));
                &mut self.slots.last_mut().expect("just pushed").1
            }
        };
        slot.count += 1;
        slot.total += took;
        slot.max = slot.max.max(took);
    }

    fn maybe_log(&mut self) {
        let span = self.since.elapsed();
        if span < EVERY {
            return;
        }
        let busy: Duration = self.slots.iter().map(|(_, s)| s.total).sum();
        let parts: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| s.count > 0)
            .map(|(w, s)| {
                format!(
                    "{w}: {} in {:.1} ms (mean {:.1} µs, max {:.1} µs)",
                    s.count,
                    s.total.as_secs_f64() * 1e3,
                    s.total.as_secs_f64() * 1e6 / s.count as f64,
                    s.max.as_secs_f64() * 1e6
                )
            })
            .collect();
        tracing::info!(
            "media thread profile over {:.1} s: busy {:.1} %; {}",
            span.as_secs_f64(),
            busy.as_secs_f64() * 100.0 / span.as_secs_f64(),
            parts.join("; ")
        );
        self.slots.clear();
        self.since = Instant::now();
    }
}

/// The kind of a received datagram, by its first byte (RFC 7983).
fn datagram_kind(data: &[u8]) -> &'static str {
    match data.first() {
        Some(0..=3) => "receive STUN",
        Some(20..=63) => "receive DTLS",
        Some(128..=191) => match data.get(1).map(|b| b & 0x7f) {
            Some(64..=95) => "receive SRTCP",
            _ => "receive SRTP",
        },
        _ => "receive other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_told_apart_by_their_first_bytes() {
        assert_eq!(datagram_kind(&[0, 1, 0, 0]), "receive STUN");
        assert_eq!(datagram_kind(&[22, 254, 253]), "receive DTLS");
        // RTP with the marker bit and payload type 96; RTCP sender report (200).
        assert_eq!(datagram_kind(&[0x80, 0xe0]), "receive SRTP");
        assert_eq!(datagram_kind(&[0x80, 200]), "receive SRTCP");
        assert_eq!(datagram_kind(&[]), "receive other");
    }

    #[test]
    fn steps_are_counted_with_their_total_and_longest_and_a_batch_s_flush_is_its_rest() {
        let mut p = Profile(Some(Timings {
            slots: vec![],
            since: Instant::now(),
            in_datagrams: Duration::ZERO,
        }));
        assert_eq!(p.time("send", || 7), 7);
        let began = Instant::now() - Duration::from_millis(3);
        let batch = began - Duration::from_millis(2);
        p.datagram(&[0x80, 0xe0], began);
        p.batch_done(batch);
        let batch_took = batch.elapsed();
        let t = p.0.as_ref().expect("on");
        let slot = |w: &str| t.slots.iter().find(|(x, _)| *x == w).map(|(_, s)| *s);
        assert_eq!(slot("send").map(|s| s.count), Some(1));
        let rtp = slot("receive SRTP").expect("the datagram");
        assert!(rtp.total >= Duration::from_millis(3) && rtp.max == rtp.total);
        let flush = slot("flush after a receive batch").expect("the flush");
        // The batch's time without its datagram's.
        assert!(flush.total >= Duration::from_millis(2));
        assert!(flush.total + rtp.total <= batch_took);
        // Off: the step still runs, nothing is kept.
        let mut off = Profile(None);
        assert_eq!(off.time("send", || 8), 8);
        off.datagram(&[0], Instant::now());
        assert!(off.0.is_none());
    }
}
