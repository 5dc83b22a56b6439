//! What a viewer's egress sent, by transport-wide sequence number, for its send-side
//! bandwidth estimate (docs/simulcast.md, "Bandwidth estimate"), and the viewer's
//! transport-wide feedback matched against it.
//!
//! A fixed ring of [`SLOTS`] records of 8 bytes (send time in microseconds, wrapping every 71
//! minutes; sequence number; size and two flags): 8 KiB per viewer, made once when the
//! estimate is on, nothing allocated per packet. At a few hundred packets a second it holds
//! the last few seconds, more than a feedback interval (Chromium sends one every 50-100 ms).
//! Media and retransmissions alike take a record (both carry the sequence number).
//!
//! [`SentLog::feedback`] reads a feedback message ([`fluo_sfu::twcc`]) and keeps, in a reused
//! list, each packet it reports that the ring still holds: a packet reported received once,
//! or lost once, is not reported again as lost. A stretch of lost packets costs at most the
//! ring's size, whatever it claims.

use fluo_sfu::twcc::{self, Status};
use fluo_sfu::ParseError;
use std::cell::Cell;
use std::time::{Duration, Instant};

mod marks;

/// Records kept per viewer.
pub const SLOTS: usize = 1024;

/// A record's flags, in the top bits of its size.
const RECEIVED: u16 = 0x8000;
const LOST: u16 = 0x4000;
const USED: u16 = 0x2000;
const SIZE: u16 = 0x1fff;

/// Records older than this when feedback names them are not matched (a sequence number seen
/// again after the viewer was quiet for long).
const TOO_OLD: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    at_us: u32,
    seq: u16,
    size_flags: u16,
}

/// One sent packet, as the estimator takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Its transport-wide sequence number, unwrapped (increasing by one per packet).
    pub seq: i64,
    /// When it was sent, in microseconds since the log was made.
    pub at_us: i64,
    /// Its size on the wire (SRTP included), in bytes.
    pub size: u16,
    /// The bandwidth probe cluster it was sent for ([`SentLog::mark_probe`]), if any.
    pub probe: Option<i32>,
}

/// One sent packet the viewer's feedback reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// The packet.
    pub sent: Sent,
    /// When it arrived, in microseconds on the log's clock (the viewer's times mapped onto
    /// it); `None`: reported not received.
    pub received_us: Option<i64>,
}

/// A viewer's sent-packet ring and feedback matching (see the module).
pub struct SentLog {
    slots: Box<[Slot; SLOTS]>,
    epoch: Instant,
    /// The newest sequence number recorded, unwrapped.
    newest: Option<i64>,
    /// Records up to this sequence number (unwrapped) were handed out by `take_sent`.
    handed: Option<i64>,
    /// The feedback's reference time last seen, and where it maps on the log's clock.
    reference: Option<(u32, i64)>,
    acked: Vec<Acked>,
    /// Which packets were probes (see [`SentLog::mark_probe`]).
    probes: marks::ProbeMarks,
    /// Every record below this sequence number (unwrapped) adds nothing to the data in flight
    /// now or later (reported, too old, or out of the ring): [`SentLog::in_flight`] reads from
    /// here on and moves it up, so that it costs what was sent since the last feedback rather
    /// than the whole ring.
    settled: Cell<i64>,
}

impl std::fmt::Debug for SentLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentLog")
            .field("newest", &self.newest)
            .finish_non_exhaustive()
    }
}

impl SentLog {
    /// An empty log whose clock starts at `epoch`.
    pub fn new(epoch: Instant) -> SentLog {
        SentLog {
            slots: Box::new([Slot::default(); SLOTS]),
            epoch,
            newest: None,
            handed: None,
            reference: None,
            acked: Vec::with_capacity(64),
            probes: marks::ProbeMarks::default(),
            settled: Cell::new(i64::MIN),
        }
    }

    /// Microseconds from the log's start to `at`.
    pub fn micros(&self, at: Instant) -> i64 {
        i64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(i64::MAX)
    }

    /// The sequence number `seq` unwrapped near the newest recorded (within half the space).
    fn unwrap(&self, seq: u16) -> i64 {
        match self.newest {
            None => i64::from(seq),
            Some(n) => n + i64::from(seq.wrapping_sub(n as u16) as i16),
        }
    }

    /// Packet `seq` of `bytes` went out at `now`.
    pub fn sent(&mut self, now: Instant, seq: u16, bytes: usize) {
        let full = self.unwrap(seq);
        if self.newest.is_none_or(|n| full > n) {
            self.newest = Some(full);
        }
        let size = bytes.min(usize::from(SIZE)) as u16;
        self.slots[usize::from(seq) % SLOTS] = Slot {
            at_us: self.micros(now) as u32,
            seq,
            size_flags: size | USED,
        };
    }

    /// Packet `seq`, just recorded with [`SentLog::sent`], is part of bandwidth probe cluster
    /// `cluster`: its [`Sent::probe`] says so (for the last several clusters).
    pub fn mark_probe(&mut self, seq: u16, cluster: i32) {
        let full = self.unwrap(seq);
        self.probes.mark(full, cluster);
    }

    /// The record of `full` if the ring still holds it.
    fn get(&self, full: i64, now_us: i64) -> Option<(usize, Sent)> {
        let newest = self.newest?;
        if full > newest || newest - full >= SLOTS as i64 {
            return None;
        }
        let i = (full as u16 as usize) % SLOTS;
        let s = self.slots[i];
        if s.size_flags & USED == 0 || s.seq != full as u16 {
            return None;
        }
        // The full send time: now less the (wrapping) age of the record.
        let age = i64::from((now_us as u32).wrapping_sub(s.at_us));
        if age > TOO_OLD.as_micros() as i64 {
            return None;
        }
        let sent = Sent {
            seq: full,
            at_us: now_us - age,
            size: s.size_flags & SIZE,
            probe: self.probes.cluster_of(full),
        };
        Some((i, sent))
    }

    /// Hands `f` each packet recorded since the last call, oldest first (at most the ring's
    /// size: older ones were overwritten).
    pub fn take_sent(&mut self, now: Instant, mut f: impl FnMut(Sent)) {
        let Some(newest) = self.newest else {
            return;
        };
        let now_us = self.micros(now);
        let from = self
            .handed
            .map_or(i64::MIN, |h| h + 1)
            .max(newest - SLOTS as i64 + 1);
        for full in from..=newest {
            if let Some((_, s)) = self.get(full, now_us) {
                f(s);
            }
        }
        self.handed = Some(newest);
    }

    /// Reads the viewer's transport-wide feedback (`fci`, see [`fluo_sfu::twcc`]) arriving at
    /// `now`: [`SentLog::acked`] lists (after what it listed before) what it reported of the packets the ring holds. The
    /// viewer's reference time is mapped onto the log's clock as libwebrtc does: the first
    /// message's at its arrival, each later one moved by the difference of reference times
    /// (back to its arrival if that would go before the log's start).
    pub fn feedback(&mut self, now: Instant, fci: &[u8]) -> Result<usize, ParseError> {
        let before = self.acked.len();
        let fb = twcc::parse(fci)?;
        let now_us = self.micros(now);
        let offset = match self.reference {
            None => now_us,
            Some((last, offset)) => {
                let moved = offset.checked_add(twcc::reference_delta_us(last, fb.reference_time));
                moved.filter(|m| *m >= 0).unwrap_or(now_us)
            }
        };
        self.reference = Some((fb.reference_time, offset));
        let newest = self.newest;
        let base = self.unwrap(fb.base_seq);
        let mut acked = std::mem::take(&mut self.acked);
        fb.for_each(|status| match status {
            Status::Received { seq, at_us } => {
                let full = base + i64::from(seq.wrapping_sub(fb.base_seq));
                let Some((i, sent)) = self.get(full, now_us) else {
                    return;
                };
                if self.slots[i].size_flags & RECEIVED != 0 {
                    return;
                }
                self.slots[i].size_flags |= RECEIVED;
                let received_us = offset.checked_add(at_us).filter(|t| *t >= 0);
                if received_us.is_some() {
                    acked.push(Acked { sent, received_us });
                }
            }
            Status::Lost { first, count } => {
                let Some(newest) = newest else {
                    return;
                };
                let start = base + i64::from(first.wrapping_sub(fb.base_seq));
                let end = start + i64::from(count);
                // Only what the ring holds: at most SLOTS steps, whatever `count` says.
                let lo = start.max(newest - SLOTS as i64 + 1);
                let hi = end.min(newest + 1);
                for full in lo..hi {
                    let Some((i, sent)) = self.get(full, now_us) else {
                        continue;
                    };
                    if self.slots[i].size_flags & (RECEIVED | LOST) != 0 {
                        continue;
                    }
                    self.slots[i].size_flags |= LOST;
                    acked.push(Acked {
                        sent,
                        received_us: None,
                    });
                }
            }
        });
        self.acked = acked;
        Ok(self.acked.len() - before)
    }

    /// What the feedback read since [`SentLog::clear_acked`] reported (see
    /// [`SentLog::feedback`]), at most [`SLOTS`] entries per message.
    pub fn acked(&self) -> &[Acked] {
        &self.acked
    }

    /// Forgets what [`SentLog::acked`] lists (the estimator took it).
    pub fn clear_acked(&mut self) {
        self.acked.clear();
    }

    /// Bytes sent and not reported yet, of the packets the ring holds (the data in flight).
    /// Reads the records from the lowest that may still count (see `settled`) on: one
    /// reported, too old or out of the ring never counts again; one not recorded (a sequence
    /// number not sent, or not yet) may still be, and stops the mark there.
    pub fn in_flight(&self, now: Instant) -> u64 {
        let Some(newest) = self.newest else {
            return 0;
        };
        let now_us = self.micros(now);
        let from = (newest - SLOTS as i64 + 1).max(0).max(self.settled.get());
        let mut settled = true;
        let mut bytes = 0u64;
        for full in from..=newest {
            match self.get(full, now_us) {
                Some((i, s)) if self.slots[i].size_flags & (RECEIVED | LOST) == 0 => {
                    bytes += u64::from(s.size);
                    settled = false;
                }
                Some(_) => {}
                None if settled && !self.recorded(full) => settled = false,
                None => {}
            }
            if settled {
                self.settled.set(full + 1);
            }
        }
        bytes
    }

    /// Whether the ring's slot for `full` holds its record (of whatever age).
    fn recorded(&self, full: i64) -> bool {
        let s = self.slots[(full as u16 as usize) % SLOTS];
        s.size_flags & USED != 0 && s.seq == full as u16
    }

    /// [`SentLog::in_flight`] by reading every record the ring holds (what it did before the
    /// mark; for tests).
    #[cfg(test)]
    fn in_flight_scan(&self, now: Instant) -> u64 {
        let Some(newest) = self.newest else {
            return 0;
        };
        let now_us = self.micros(now);
        let mut bytes = 0u64;
        for full in (newest - SLOTS as i64 + 1).max(0)..=newest {
            if let Some((i, s)) = self.get(full, now_us) {
                if self.slots[i].size_flags & (RECEIVED | LOST) == 0 {
                    bytes += u64::from(s.size);
                }
            }
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fci(base: u16, count: u16, reference: u32, chunks: &[u16], deltas: &[u8]) -> Vec<u8> {
        let mut v = vec![];
        v.extend_from_slice(&base.to_be_bytes());
        v.extend_from_slice(&count.to_be_bytes());
        v.extend_from_slice(&reference.to_be_bytes()[1..]);
        v.push(0);
        for c in chunks {
            v.extend_from_slice(&c.to_be_bytes());
        }
        v.extend_from_slice(deltas);
        v
    }

    #[test]
    fn feedback_is_matched_to_what_was_sent_across_the_sequence_wrap() {
        let t0 = Instant::now();
        let mut log = SentLog::new(t0);
        for (i, seq) in [65_534u16, 65_535, 0, 1].into_iter().enumerate() {
            log.sent(t0 + Duration::from_millis(10 * i as u64), seq, 1000 + i);
        }
        let mut sent = vec![];
        let later = t0 + Duration::from_millis(50);
        log.take_sent(later, |s| sent.push(s));
        assert_eq!(
            sent.iter().map(|s| s.seq).collect::<Vec<_>>(),
            vec![65_534, 65_535, 65_536, 65_537]
        );
        assert_eq!(sent[2].at_us, 20_000);
        // Nothing new: nothing handed again.
        log.take_sent(later, |_| panic!("handed twice"));
        // 65534 and 65535 received 1 ms apart, 0 and 1 lost.
        let run = |symbol: u16, len: u16| (symbol << 13) | len;
        let buf = fci(65_534, 4, 100, &[run(1, 2), run(0, 2)], &[4, 4]);
        let now = t0 + Duration::from_millis(100);
        assert_eq!(log.feedback(now, &buf), Ok(4));
        let acked = log.acked().to_vec();
        log.clear_acked();
        assert_eq!(acked[0].received_us, Some(100_000 + 1000));
        assert_eq!(acked[1].received_us, Some(100_000 + 2000));
        assert_eq!((acked[2].sent.seq, acked[2].received_us), (65_536, None));
        assert_eq!(acked[3].sent.size, 1003);
        // The same again: the received ones are not reported twice, nor the lost ones.
        let later = now + Duration::from_millis(64);
        assert_eq!(log.feedback(later, &buf), Ok(0));
        // A lost one arrives after all; the reference time moved by one tick (64 ms).
        let buf = fci(0, 1, 101, &[run(1, 1)], &[8]);
        assert_eq!(log.feedback(later, &buf), Ok(1));
        let acked = log.acked().to_vec();
        assert_eq!(acked[0].received_us, Some(100_000 + 64_000 + 2000));
        // Everything was reported: nothing in flight.
        assert_eq!(log.in_flight(later), 0);
        log.sent(later, 2, 700);
        assert_eq!(log.in_flight(later), 700);
    }

    /// The data in flight read from the mark is what reading the whole ring gives, through
    /// feedback on random stretches (received, lost, reported twice), sequence numbers sent
    /// late or never, records aging past `TOO_OLD` and the ring wrapping.
    #[test]
    fn the_data_in_flight_from_the_mark_is_the_whole_rings() {
        let t0 = Instant::now();
        let mut log = SentLog::new(t0);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % m
        };
        let mut now = t0;
        let mut seq = 65_000u16;
        let mut holes: Vec<u16> = vec![];
        let mut checked = 0;
        for step in 0..4000u32 {
            now += Duration::from_millis(if step % 1000 == 999 { 11_000 } else { 3 });
            match next(10) {
                0..=5 => {
                    for _ in 0..1 + next(4) {
                        if next(50) == 0 {
                            holes.push(seq);
                        } else {
                            log.sent(now, seq, 100 + next(1100) as usize);
                        }
                        seq = seq.wrapping_add(1);
                    }
                }
                6 if !holes.is_empty() => {
                    let h = holes.swap_remove(next(holes.len() as u64) as usize);
                    if next(2) == 0 {
                        log.sent(now, h, 500);
                    }
                }
                _ => {
                    // Feedback on a stretch ending near the newest, each packet received
                    // (a one-byte delta) or lost, in run-length chunks of one.
                    let len = 1 + next(40) as u16;
                    let base = seq.wrapping_sub(len + next(20) as u16);
                    let statuses: Vec<bool> = (0..len).map(|_| next(5) != 0).collect();
                    let chunks: Vec<u16> = (statuses.iter())
                        .map(|r| (u16::from(*r) << 13) | 1)
                        .collect();
                    let deltas = vec![1u8; statuses.iter().filter(|r| **r).count()];
                    let reference = (now - t0).as_millis() as u32 / 64;
                    let buf = fci(base, len, reference, &chunks, &deltas);
                    log.feedback(now, &buf).unwrap();
                    log.clear_acked();
                }
            }
            assert_eq!(log.in_flight(now), log.in_flight_scan(now), "step {step}");
            checked += u32::from(log.in_flight(now) > 0);
        }
        assert!(checked > 1000, "mostly something in flight: {checked}");
    }

    #[test]
    fn a_huge_lost_run_costs_the_ring_at_most() {
        let t0 = Instant::now();
        let mut log = SentLog::new(t0);
        for seq in 0..3000u16 {
            log.sent(t0, seq, 100);
        }
        // 65535 lost from 0 on: only the ring's records are reported.
        let buf = fci(0, 65_535, 0, &[0x1fff; 9], &[]);
        assert_eq!(log.feedback(t0, &buf), Ok(SLOTS));
        assert_eq!(log.acked()[0].sent.seq, 3000 - SLOTS as i64);
        log.clear_acked();
        // Truncated feedback: refused, nothing reported.
        assert!(log.feedback(t0, &buf[..buf.len() - 1]).is_err());
        assert!(log.acked().is_empty());
    }

    #[test]
    fn the_reference_time_wraps_and_never_maps_before_the_start() {
        let t0 = Instant::now();
        let mut log = SentLog::new(t0);
        log.sent(t0, 1, 100);
        log.sent(t0, 2, 100);
        let run1 = (1 << 13) | 1;
        let at = t0 + Duration::from_secs(1);
        log.feedback(at, &fci(1, 1, 0x00ff_ffff, &[run1], &[0]))
            .unwrap();
        // Wrapped to 0: one tick later.
        log.clear_acked();
        log.feedback(at, &fci(2, 1, 0, &[run1], &[0])).unwrap();
        assert_eq!(log.acked()[0].received_us, Some(1_000_000 + 64_000));
        // A reference far back (a hostile or restarted peer) would map before the start:
        // taken as arriving now instead.
        let mut log = SentLog::new(t0);
        log.sent(t0, 1, 100);
        log.sent(t0, 2, 100);
        log.feedback(at, &fci(1, 1, 0x10_0000, &[run1], &[0]))
            .unwrap();
        log.clear_acked();
        log.feedback(at, &fci(2, 1, 0x0f_0000, &[run1], &[0]))
            .unwrap();
        assert_eq!(log.acked()[0].received_us, Some(1_000_000));
    }
}
