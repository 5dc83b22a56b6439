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

/// The media thread's profile (see the module docs).
pub(crate) struct Profile {
    slots: Vec<(&'static str, Slot)>,
    since: Instant,
}

impl Profile {
    /// A profile when `FLUO_MEDIA_PROFILE` is set to anything but `0`.
    pub(crate) fn from_env() -> Option<Profile> {
        let on = std::env::var("FLUO_MEDIA_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0");
        on.then(|| Profile {
            slots: Vec::with_capacity(32),
            since: Instant::now(),
        })
    }

    /// Adds one step of `what` that began at `began`.
    pub(crate) fn add(&mut self, what: &'static str, began: Instant) {
        self.add_time(what, began.elapsed());
    }

    /// Adds one step of `what` that took `took`.
    pub(crate) fn add_time(&mut self, what: &'static str, took: Duration) {
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

    /// Logs and resets when [`EVERY`] has passed.
    pub(crate) fn maybe_log(&mut self) {
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
pub(crate) fn datagram_kind(data: &[u8]) -> &'static str {
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
