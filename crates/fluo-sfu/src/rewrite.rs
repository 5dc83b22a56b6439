//! Per-consumer sequence number, timestamp and SSRC rewriting.
//!
//! A subscriber's decoder sees one RTP stream per consumer and media kind, with one SSRC,
//! sequence numbers that go up by one and timestamps that go up with time. Behind it the
//! source may change: the consumer is switched from producer A to producer B, or the
//! publisher restarts with a new SSRC, sequence and timestamp base, or the consumer is
//! paused and resumed. [`Rewriter`] hides every such change.
//!
//! # How it works
//!
//! For the current source the rewriter holds two offsets, added with wrapping arithmetic:
//!
//! ```text
//! out_seq = in_seq + seq_offset   (mod 2^16)
//! out_ts  = in_ts  + ts_offset    (mod 2^32)
//! ```
//!
//! The first packet after a change (a new SSRC, or [`Rewriter::resync`]) is the *switch
//! point*. Its offsets are chosen so that
//!
//! * `out_seq = last_out_seq + 1`: the receiver sees no gap, so it sends no NACK for
//!   packets that never existed;
//! * `out_ts = last_out_ts + max(1, elapsed × clock_rate)` where `elapsed` is the wall-clock
//!   time since the last forwarded packet: the new frames play after the old ones with the
//!   real pause between them, and never with the same or an earlier timestamp.
//!
//! Sequence numbers are compared as 64-bit *extended* numbers (the 16-bit value plus the
//! number of wraps, chosen nearest to the highest seen), so reordering across a wrap works
//! and "older than the switch point" stays correct however long the stream runs. Packets
//! older than the switch point, and late packets of the previous SSRC, are dropped: their
//! output numbers would collide with packets already sent.
//!
//! # Worked example (video, clock rate 90 000 Hz)
//!
//! Consumer C follows producer A. A's last packet forwarded to C had `in_seq = 5000`,
//! `in_ts = 900 000`, and went out as `seq 1200`, `ts 30 000`, at wall time t = 10.000 s.
//!
//! C is switched to producer B (SSRC changes). B's first packet reaches C at t = 10.040 s with
//! `in_seq = 40 000`, `in_ts = 3 000 000`:
//!
//! ```text
//! out_seq    = 1200 + 1                           = 1201
//! seq_offset = 1201 - 40 000          (mod 2^16)  = 26 737
//! elapsed    = 40 ms -> 0.040 × 90 000            = 3 600 ticks
//! out_ts     = 30 000 + 3 600                     = 33 600
//! ts_offset  = 33 600 - 3 000 000     (mod 2^32)  = 4 292 000 896
//! ```
//!
//! B's next packet, `in_seq = 40 001`, `in_ts = 3 003 000` (the next frame at 30 fps) goes
//! out as `seq 1202`, `ts (3 003 000 + 4 292 000 896) mod 2^32 = 36 600`.
//!
//! A packet of B with `in_seq = 39 999` arriving late is older than the switch point and is
//! dropped; a straggler of A (its old SSRC) is dropped too.
//!
//! Later B's sequence wraps: `in_seq = 65 535` goes out as `(65 535 + 26 737) mod 2^16 =
//! 26 736`, and `in_seq = 0` as `26 737`: the output just counts on. Timestamps wrap the
//! same way, modulo 2^32.
//!
//! A source that jumps its sequence numbers far ahead under the same SSRC without a
//! [`Rewriter::resync`] would look "older than the switch point" forever; after
//! [`MAX_CONSECUTIVE_OLD`] drops (or skips, [`Rewriter::skip`]) in a row the rewriter treats
//! the source as restarted and makes the next packet a switch point.
//!
//! If two sources switch within the same millisecond the timestamp still moves by at least
//! one tick, so the decoder never sees two frames with one timestamp.
//!
//! Retransmissions (NACK) are mapped back with the same offsets: output sequence `s` came
//! from `in_seq = s - seq_offset`, valid only between the switch point and the highest
//! packet seen ([`Rewriter::original_seq`]).
//!
//! # Skipped packets (SVC layers a consumer does not get)
//!
//! A consumer of a scalable stream may get only some of its packets (the lower spatial or
//! temporal layers, see [`crate::svc`]). [`Rewriter::skip`] takes a packet of the current
//! source that is not sent: the packets after it go out one lower, so the line stays
//! continuous. Each such change of offset starts a *segment* (`from`, offset); a packet that
//! arrives late takes its own segment's offset, and a NACK's sequence number maps back
//! through the segment whose output range holds it, never to a skipped packet. The last
//! [`SEGMENTS_KEPT`] segments are kept (a late packet or NACK older than those is dropped /
//! not answered). A skipped packet that arrives after a later one was sent cannot be hidden:
//! its number stays a hole on the line, and a NACK of the hole is not answered (the line
//! keeps the last [`HOLES_KEPT`] such holes).
//!
//! ```text
//! in:   10 11 12(skip) 13 14(skip) 15(skip) 16
//! out:  10 11          12                   13
//! ```

use std::time::Instant;

/// The outgoing header fields for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// Outgoing sequence number.
    pub seq: u16,
    /// Outgoing timestamp.
    pub ts: u32,
    /// Outgoing SSRC (fixed per consumer stream).
    pub ssrc: u32,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
    switch_ext: i64,
    highest_ext: i64,
}

/// Most changes of offset ([`Rewriter::skip`]) a line keeps to map late packets and NACKs:
/// one per picture whose upper layers are skipped, about 8 s at 30 pictures a second.
pub const SEGMENTS_KEPT: usize = 256;

/// Packets dropped in a row as "old" after which the source is taken to have restarted.
pub const MAX_CONSECUTIVE_OLD: u32 = 64;

/// Start of the extended sequence space, far from zero so it never goes negative.
const EXT_BASE: i64 = 1 << 40;

/// Extends the 16-bit sequence number `seq` to the 64-bit value nearest to `last` (an
/// extended number seen before): reordering across a wrap lands on the right side of it.
/// Never below zero: near the start a number that would be is taken as ahead.
pub fn extend_seq(last: u64, seq: u16) -> u64 {
    let cand = (last & !0xffff) | u64::from(seq);
    if cand > last + 0x8000 && cand >= 0x1_0000 {
        cand - 0x1_0000
    } else if cand + 0x8000 < last {
        cand + 0x1_0000
    } else {
        cand
    }
}

/// [`extend_seq`] in the rewriter's signed space (which starts at `EXT_BASE`, far from 0).
fn extend(highest: i64, seq: u16) -> i64 {
    extend_seq(highest.max(0) as u64, seq) as i64
}

/// Sequence / timestamp / SSRC rewriter for one consumer and one media kind.
///
/// See the [module documentation](self) for the algorithm and a worked example.
#[derive(Debug, Clone)]
pub struct Rewriter {
    clock_rate: u32,
    out_ssrc: u32,
    source: Option<Source>,
    previous_ssrc: Option<u32>,
    resync: bool,
    /// Below [`MAX_CONSECUTIVE_OLD`] (kept in a byte: the line is no larger than before
    /// skipping existed, see `Skips`).
    consecutive_old: u8,
    last_out_seq: u16,
    last_out_ts: u32,
    last_time: Option<Instant>,
    /// What was skipped since the switch point; `None` until a packet is (boxed: a line
    /// that never skips, every plain consumer's, is as large as before).
    skips: Option<Box<Skips>>,
}

/// A line's skipped packets since its switch point (see the [module](self)).
#[derive(Debug, Clone)]
struct Skips {
    /// Changes of offset: `(from, offset)` for the inputs from the extended number `from` on.
    segments: std::collections::VecDeque<(i64, u16)>,
    /// The offset of the inputs before the first segment, and the lowest input still mapped
    /// (older segments were let go).
    base: (i64, u16),
    /// Which of the last 64 inputs were skipped (bit `i`: the highest minus `i`).
    skipped: u64,
    /// The last [`HOLES_KEPT`] inputs skipped after a later one was sent (late): the holes
    /// their numbers leave, which a NACK may name long after.
    holes: std::collections::VecDeque<i64>,
}

/// Most holes (late skipped packets) a line keeps to refuse NACKs of them.
pub const HOLES_KEPT: usize = 64;

impl Rewriter {
    /// A rewriter whose first packet goes out as `first_seq` / `first_ts` with `out_ssrc`.
    ///
    /// `clock_rate` is the RTP clock of the media (90 000 for video, 48 000 for Opus); 0 is
    /// treated as 1.
    pub fn new(clock_rate: u32, out_ssrc: u32, first_seq: u16, first_ts: u32) -> Self {
        Rewriter {
            clock_rate: clock_rate.max(1),
            out_ssrc,
            source: None,
            previous_ssrc: None,
            resync: false,
            consecutive_old: 0,
            last_out_seq: first_seq.wrapping_sub(1),
            last_out_ts: first_ts,
            last_time: None,
            skips: None,
        }
    }

    /// The SSRC every outgoing packet carries.
    pub fn out_ssrc(&self) -> u32 {
        self.out_ssrc
    }

    /// The last sequence number sent (meaningless before the first packet).
    pub fn last_out_seq(&self) -> u16 {
        self.last_out_seq
    }

    /// The last timestamp sent.
    pub fn last_out_ts(&self) -> u32 {
        self.last_out_ts
    }

    /// The SSRC of the source currently followed, if any.
    pub fn source_ssrc(&self) -> Option<u32> {
        self.source.map(|s| s.ssrc)
    }

    /// Makes the next packet a switch point even if its SSRC is unchanged: call it when the
    /// consumer moves to another producer, on resume after a pause, or when the publisher
    /// restarted its sequence space under the same SSRC.
    pub fn resync(&mut self) {
        self.resync = true;
    }

    /// Rewrites one packet of the source; `None` means drop it (older than the switch
    /// point, or a straggler of the previous SSRC).
    pub fn rewrite(&mut self, now: Instant, ssrc: u32, seq: u16, ts: u32) -> Option<Rewritten> {
        let switch = match self.source {
            None => true,
            Some(src) if src.ssrc != ssrc => {
                if self.previous_ssrc == Some(ssrc) && !self.resync {
                    return None;
                }
                true
            }
            Some(_) => self.resync,
        };
        if switch {
            return Some(self.switch_to(now, ssrc, seq, ts));
        }
        let src = self.source.as_mut().expect("source set when not switching");
        let ext = extend(src.highest_ext, seq);
        if ext < src.switch_ext {
            self.consecutive_old = self.consecutive_old.saturating_add(1);
            if u32::from(self.consecutive_old) >= MAX_CONSECUTIVE_OLD {
                self.resync = true;
            }
            return None;
        }
        self.consecutive_old = 0;
        let src = *src;
        let offset = if ext > src.highest_ext {
            src.seq_offset
        } else if self.was_skipped(&src, ext) {
            // A copy of a packet this line skipped: its number is another packet's.
            return None;
        } else {
            self.offset_at(&src, ext)?
        };
        let out = Rewritten {
            seq: seq.wrapping_add(offset),
            ts: ts.wrapping_add(src.ts_offset),
            ssrc: self.out_ssrc,
        };
        if ext > src.highest_ext {
            self.advance(ext);
            self.last_out_seq = out.seq;
            self.last_out_ts = out.ts;
            self.last_time = Some(now);
        }
        Some(out)
    }

    fn switch_to(&mut self, now: Instant, ssrc: u32, seq: u16, ts: u32) -> Rewritten {
        let out_seq = self.last_out_seq.wrapping_add(1);
        let out_ts = if self.last_time.is_some() {
            let elapsed = self
                .last_time
                .map(|t| now.saturating_duration_since(t))
                .unwrap_or_default();
            let ticks = elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000;
            // Truncation is the modulo-2^32 arithmetic RTP timestamps use anyway.
            self.last_out_ts.wrapping_add((ticks as u32).max(1))
        } else {
            self.last_out_ts
        };
        if let Some(old) = self.source {
            if old.ssrc != ssrc {
                self.previous_ssrc = Some(old.ssrc);
            }
        }
        let ext = EXT_BASE + i64::from(seq);
        self.source = Some(Source {
            ssrc,
            seq_offset: out_seq.wrapping_sub(seq),
            ts_offset: out_ts.wrapping_sub(ts),
            switch_ext: ext,
            highest_ext: ext,
        });
        self.skips = None;
        self.resync = false;
        self.consecutive_old = 0;
        self.last_out_seq = out_seq;
        self.last_out_ts = out_ts;
        self.last_time = Some(now);
        Rewritten {
            seq: out_seq,
            ts: out_ts,
            ssrc: self.out_ssrc,
        }
    }

    /// A packet of the source that this line does not carry (see the [module](self)):
    /// whether the packets after it go out one lower now. A packet of another source, or one
    /// before a pending switch point, changes nothing. One older than a packet already seen
    /// (it came late) shifts nothing either: its number stays a hole, kept (the last
    /// [`HOLES_KEPT`]) so that a NACK of the hole resends nothing.
    pub fn skip(&mut self, ssrc: u32, seq: u16) -> bool {
        let Some(src) = self.source.as_mut().filter(|s| s.ssrc == ssrc) else {
            return false;
        };
        let ext = extend(src.highest_ext, seq);
        if self.resync {
            return false;
        }
        if ext < src.switch_ext {
            // Older than the switch point, as a dropped packet is: it counts towards the run
            // that makes a restart (a line that skips most of a restarted stream's packets,
            // a sink of its lowest layer, would otherwise wait far longer for it).
            self.consecutive_old = self.consecutive_old.saturating_add(1);
            if u32::from(self.consecutive_old) >= MAX_CONSECUTIVE_OLD {
                self.resync = true;
            }
            return false;
        }
        self.consecutive_old = 0;
        // Until now every input since the switch point had the offset it has now.
        let base = (src.switch_ext, src.seq_offset);
        if ext <= src.highest_ext {
            let k = self.skips_since(base);
            if !k.holes.contains(&ext) {
                if k.holes.len() == HOLES_KEPT {
                    k.holes.pop_front();
                }
                k.holes.push_back(ext);
            }
            return false;
        }
        let follows = src.highest_ext + 1 == ext;
        src.seq_offset = src.seq_offset.wrapping_sub(1);
        let offset = src.seq_offset;
        self.advance(ext);
        let k = self.skips_since(base);
        k.skipped |= 1;
        // A run of skipped packets is one segment.
        match k.segments.back_mut() {
            Some(last) if follows && last.0 == ext => *last = (ext + 1, offset),
            _ => {
                if k.segments.len() == SEGMENTS_KEPT {
                    if let Some(oldest) = k.segments.pop_front() {
                        k.base = oldest;
                    }
                }
                k.segments.push_back((ext + 1, offset));
            }
        }
        true
    }

    /// What this line skipped, `base` the offset of every input so far when it is the first.
    fn skips_since(&mut self, base: (i64, u16)) -> &mut Skips {
        self.skips.get_or_insert_with(|| {
            Box::new(Skips {
                segments: std::collections::VecDeque::new(),
                base,
                skipped: 0,
                holes: std::collections::VecDeque::new(),
            })
        })
    }

    /// The highest input seen is `ext` now (above the one before).
    fn advance(&mut self, ext: i64) {
        if let Some(src) = self.source.as_mut() {
            let by = ext - src.highest_ext;
            if let Some(k) = self.skips.as_mut() {
                k.skipped = if by >= 64 { 0 } else { k.skipped << by };
            }
            src.highest_ext = ext;
        }
    }

    /// Whether the input `ext` (at most the highest seen) was skipped, as far as the last 64
    /// inputs and the last [`HOLES_KEPT`] late ones tell.
    fn was_skipped(&self, src: &Source, ext: i64) -> bool {
        let back = src.highest_ext - ext;
        let Some(k) = self.skips.as_ref() else {
            return false;
        };
        ((0..64).contains(&back) && k.skipped & (1 << back) != 0) || k.holes.contains(&ext)
    }

    /// The offset of the input `ext` (not below the switch point): its segment's; `None` when
    /// that segment was let go.
    fn offset_at(&self, src: &Source, ext: i64) -> Option<u16> {
        let Some(k) = self.skips.as_ref() else {
            return (ext >= src.switch_ext).then_some(src.seq_offset);
        };
        if ext < k.base.0.max(src.switch_ext) {
            return None;
        }
        let later = k.segments.iter().rev().find(|(from, _)| *from <= ext);
        Some(later.map_or(k.base.1, |s| s.1))
    }

    /// Maps an outgoing sequence number (from a NACK) back to the current source's
    /// sequence number, if it was sent since the last switch point (through the segment whose
    /// output range holds it: never to a skipped packet).
    pub fn original_seq(&self, out_seq: u16) -> Option<u16> {
        let src = self.source?;
        let Some(k) = self.skips.as_ref() else {
            let seq = out_seq.wrapping_sub(src.seq_offset);
            let ext = extend(src.highest_ext, seq);
            return (src.switch_ext <= ext && ext <= src.highest_ext).then_some(seq);
        };
        // Newest first: a segment's inputs end where the skipped ones before the next begin.
        let mut next: Option<(i64, u16)> = None;
        let segments = k.segments.iter().rev().copied();
        for (from, offset) in segments.chain(std::iter::once(k.base)) {
            let upper = next.map_or(src.highest_ext, |(f, o)| {
                f - 1 - i64::from(offset.wrapping_sub(o))
            });
            let seq = out_seq.wrapping_sub(offset);
            let ext = extend(src.highest_ext, seq);
            if from.max(src.switch_ext) <= ext && ext <= upper {
                return (!self.was_skipped(&src, ext)).then_some(seq);
            }
            if from <= src.switch_ext {
                break;
            }
            next = Some((from, offset));
        }
        None
    }

    /// Rewrites a retransmitted packet of the current source without changing any state;
    /// `None` if it does not belong to the stream since the last switch point.
    pub fn rewrite_retransmission(&self, ssrc: u32, seq: u16, ts: u32) -> Option<Rewritten> {
        let src = self.source?;
        if src.ssrc != ssrc {
            return None;
        }
        let ext = extend(src.highest_ext, seq);
        if ext > src.highest_ext || self.was_skipped(&src, ext) {
            return None;
        }
        let offset = self.offset_at(&src, ext)?;
        Some(Rewritten {
            seq: seq.wrapping_add(offset),
            ts: ts.wrapping_add(src.ts_offset),
            ssrc: self.out_ssrc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const A: u32 = 0xaaaa;
    const B: u32 = 0xbbbb;

    #[test]
    fn extended_sequence_numbers_follow_wraps_and_reordering() {
        assert_eq!(extend_seq(0, 5), 5);
        // Near 0, a number "behind" stays ahead rather than going below zero.
        assert_eq!(extend_seq(3, 65_535), 65_535);
        assert_eq!(extend_seq(65_535, 0), 65_536);
        assert_eq!(extend_seq(65_536, 65_534), 65_534);
        assert_eq!(extend_seq(0x3_0010, 0xfff0), 0x2_fff0);
        assert_eq!(extend_seq(0x2_fff0, 0x0010), 0x3_0010);
        assert_eq!(extend_seq(0x1_0000, 0x8000), 0x1_8000);
        assert_eq!(extend(EXT_BASE + 0xfffe, 1), EXT_BASE + 0x1_0001);
    }

    #[test]
    fn worked_example_from_the_docs() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000, 77, 1200, 30_000);
        let first = r.rewrite(t0, A, 5000, 900_000).unwrap();
        assert_eq!((first.seq, first.ts, first.ssrc), (1200, 30_000, 77));
        let t1 = t0 + Duration::from_millis(40);
        let b0 = r.rewrite(t1, B, 40_000, 3_000_000).unwrap();
        assert_eq!((b0.seq, b0.ts), (1201, 33_600));
        let b1 = r.rewrite(t1, B, 40_001, 3_003_000).unwrap();
        assert_eq!((b1.seq, b1.ts), (1202, 36_600));
        assert_eq!(r.rewrite(t1, B, 39_999, 2_997_000), None);
        assert_eq!(r.rewrite(t1, A, 5001, 903_000), None);
        assert_eq!(r.original_seq(1202), Some(40_001));
        assert_eq!(r.original_seq(1200), None);
        assert_eq!(r.original_seq(1203), None);
    }

    #[test]
    fn sequence_and_timestamp_wrap() {
        let t = Instant::now();
        let mut r = Rewriter::new(90_000, 1, 10, 100);
        let a = r.rewrite(t, A, 65_534, u32::MAX - 1000).unwrap();
        assert_eq!((a.seq, a.ts), (10, 100));
        let b = r.rewrite(t, A, 65_535, u32::MAX).unwrap();
        let c = r.rewrite(t, A, 0, 2000).unwrap();
        let d = r.rewrite(t, A, 1, 5000).unwrap();
        assert_eq!((b.seq, c.seq, d.seq), (11, 12, 13));
        assert_eq!((b.ts, c.ts, d.ts), (1100, 3101, 6101));
        // reordered packet from before the wrap is still forwarded
        assert_eq!(r.rewrite(t, A, 65_535, u32::MAX).unwrap().seq, 11);
        assert_eq!(r.original_seq(11), Some(65_535));
        assert_eq!(r.original_seq(13), Some(1));
    }

    #[test]
    fn output_wraps_across_a_switch() {
        let t = Instant::now();
        let mut r = Rewriter::new(48_000, 1, 65_535, u32::MAX);
        assert_eq!(r.rewrite(t, A, 7, 7).unwrap().seq, 65_535);
        let b = r.rewrite(t, B, 9, 9).unwrap();
        assert_eq!((b.seq, b.ts), (0, 0)); // u32::MAX + 1 tick wraps to 0
    }

    #[test]
    fn same_ssrc_restart_with_resync_and_minimum_tick() {
        let t = Instant::now();
        let mut r = Rewriter::new(90_000, 1, 0, 0);
        r.rewrite(t, A, 100, 1000).unwrap();
        r.resync();
        let x = r.rewrite(t, A, 3, 5).unwrap();
        assert_eq!((x.seq, x.ts), (1, 1));
        assert_eq!(r.rewrite(t, A, 4, 3005).unwrap().ts, 3001);
        assert_eq!(r.rewrite(t, A, 2, 0), None);
    }

    #[test]
    fn long_running_stream_keeps_switch_guard() {
        let t = Instant::now();
        let mut r = Rewriter::new(90_000, 1, 0, 0);
        for i in 0..200_000u32 {
            assert!(r.rewrite(t, A, i as u16, i).is_some());
        }
        // 200 000 packets later, a number from "half a wrap ago" is reordering, not new
        assert_eq!(
            r.rewrite(t, A, (199_990u32) as u16, 0).unwrap().seq,
            199_990u32 as u16
        );
        assert_eq!(r.last_out_seq(), 199_999u32 as u16);
    }

    #[test]
    fn a_far_jump_under_the_same_ssrc_recovers_after_repeated_drops() {
        let t = Instant::now();
        let mut r = Rewriter::new(90_000, 1, 0, 0);
        r.rewrite(t, A, 0, 0).unwrap();
        // jump 40 000 ahead: nearest extension says "older than the switch point"
        let mut seq = 40_000u16;
        for _ in 0..MAX_CONSECUTIVE_OLD {
            assert_eq!(r.rewrite(t, A, seq, 0), None);
            seq += 1;
        }
        assert_eq!(r.rewrite(t, A, seq, 0).unwrap().seq, 1);
        assert_eq!(r.rewrite(t, A, seq + 1, 0).unwrap().seq, 2);
    }

    fn segments(r: &Rewriter) -> usize {
        r.skips.as_ref().map_or(0, |k| k.segments.len())
    }

    #[test]
    fn a_line_is_no_larger_for_skipping() {
        // The router keeps two per node entry, which its per-sink loop reads: 88 bytes before.
        assert!(std::mem::size_of::<Rewriter>() <= 88);
    }

    #[test]
    fn skipped_packets_leave_no_gap_and_nacks_map_to_the_packets_sent() {
        let t = Instant::now();
        let mut r = Rewriter::new(90_000, 1, 100, 0);
        // in 10 11 [12] 13 [14 15] 16: out 100 101 102 103.
        assert_eq!(r.rewrite(t, A, 10, 0).unwrap().seq, 100);
        assert_eq!(r.rewrite(t, A, 11, 0).unwrap().seq, 101);
        assert!(r.skip(A, 12));
        assert_eq!(r.rewrite(t, A, 13, 0).unwrap().seq, 102);
        assert!(r.skip(A, 14));
        assert!(r.skip(A, 15));
        assert_eq!(segments(&r), 2, "a run of skips is one segment");
        assert_eq!(r.rewrite(t, A, 16, 3000).unwrap().seq, 103);
        let back: Vec<_> = (99..=104).map(|o| r.original_seq(o)).collect();
        assert_eq!(
            back,
            [None, Some(10), Some(11), Some(13), Some(16), None],
            "never a skipped packet"
        );
        assert_eq!(r.rewrite_retransmission(A, 13, 0).unwrap().seq, 102);
        assert_eq!(r.rewrite_retransmission(A, 16, 0).unwrap().seq, 103);
        assert_eq!(r.rewrite_retransmission(A, 17, 0), None, "not seen yet");
        // A copy of a skipped packet goes nowhere; a late one's number is its own.
        assert_eq!(r.rewrite(t, A, 14, 0), None);
        assert!(!r.skip(A, 15), "already skipped");
        assert!(!r.skip(B, 17), "another source");
    }

    #[test]
    fn a_nack_of_the_hole_a_late_skipped_packet_leaves_resends_nothing() {
        let t = Instant::now();
        let mut r = Rewriter::new(90_000, 1, 100, 0);
        assert_eq!(r.rewrite(t, A, 10, 0).unwrap().seq, 100);
        // 11 is late (lost on the way in, to be resent by the source); 12 skipped, 13 sent.
        assert!(r.skip(A, 12));
        assert_eq!(r.rewrite(t, A, 13, 0).unwrap().seq, 102);
        assert_eq!(
            r.original_seq(101),
            Some(11),
            "11 may yet come, and be sent"
        );
        // 11 comes, of a layer this line does not carry: 101 stays a hole, and a NACK of it
        // must not resend 11 (a layer above the consumer's).
        assert!(!r.skip(A, 11));
        assert_eq!(r.original_seq(101), None);
        assert_eq!(r.rewrite_retransmission(A, 11, 0), None);
        assert_eq!(r.rewrite(t, A, 11, 0), None, "nor a copy of it");
        assert_eq!(r.original_seq(102), Some(13));
        // The same on a line that had skipped nothing before.
        let mut p = Rewriter::new(90_000, 1, 0, 0);
        p.rewrite(t, A, 1, 0).unwrap();
        assert_eq!(p.rewrite(t, A, 3, 0).unwrap().seq, 2);
        assert!(!p.skip(A, 2));
        assert_eq!(p.original_seq(1), None);
        assert_eq!(p.original_seq(2), Some(3));
        assert_eq!(p.rewrite(t, A, 4, 0).unwrap().seq, 3, "nothing shifted");
        // A NACK long after (the source's resend came a round trip late, hundreds of inputs
        // on): still nothing.
        for seq in 5..1000 {
            p.rewrite(t, A, seq, 0).unwrap();
        }
        assert_eq!(p.original_seq(1), None);
        assert_eq!(p.original_seq(2), Some(3));
    }

    #[test]
    fn a_late_packet_takes_the_offset_of_its_segment() {
        let t = Instant::now();
        let mut r = Rewriter::new(90_000, 1, 0, 0);
        r.rewrite(t, A, 1, 0).unwrap();
        // 2 has not come yet when 3 is skipped: it keeps its place.
        assert!(r.skip(A, 3));
        assert_eq!(r.rewrite(t, A, 4, 0).unwrap().seq, 2);
        assert_eq!(r.rewrite(t, A, 2, 0).unwrap().seq, 1);
        assert_eq!(r.original_seq(1), Some(2));
        assert_eq!(r.original_seq(2), Some(4));
        // A skipped packet after a later one was sent: a hole, nothing shifts.
        r.rewrite(t, A, 6, 0).unwrap();
        assert!(!r.skip(A, 5));
        assert_eq!(r.rewrite(t, A, 7, 0).unwrap().seq, 5);
        // Across the 16-bit wrap.
        let mut w = Rewriter::new(90_000, 1, 0, 0);
        w.rewrite(t, A, 65_534, 0).unwrap();
        assert!(w.skip(A, 65_535));
        assert!(w.skip(A, 0));
        assert_eq!(w.rewrite(t, A, 1, 0).unwrap().seq, 1);
        assert_eq!(w.original_seq(1), Some(1));
        assert_eq!(w.original_seq(0), Some(65_534));
    }

    #[test]
    fn skips_before_a_switch_point_change_nothing_and_old_segments_are_let_go() {
        let t = Instant::now();
        let mut r = Rewriter::new(90_000, 1, 0, 0);
        assert!(!r.skip(A, 1), "no source yet");
        r.rewrite(t, A, 1, 0).unwrap();
        r.resync();
        assert!(!r.skip(A, 2), "a switch point is pending");
        assert_eq!(r.rewrite(t, A, 3, 0).unwrap().seq, 1);
        // Every other packet skipped, far more segments than kept.
        let n = SEGMENTS_KEPT as u16 + 10;
        for i in 0..n {
            assert!(r.skip(A, 4 + 2 * i));
            r.rewrite(t, A, 5 + 2 * i, 0).unwrap();
        }
        assert_eq!(segments(&r), SEGMENTS_KEPT);
        let last = r.last_out_seq();
        assert_eq!(last, 1 + n);
        assert_eq!(r.original_seq(last), Some(3 + 2 * n));
        // The oldest packets' segments are gone: not mapped, late copies dropped.
        assert_eq!(r.original_seq(2), None);
        assert_eq!(r.rewrite_retransmission(A, 5, 0), None);
    }

    #[test]
    fn switching_back_to_the_previous_ssrc_after_resync_is_allowed() {
        let t = Instant::now();
        let mut r = Rewriter::new(90_000, 1, 0, 0);
        r.rewrite(t, A, 1, 1).unwrap();
        r.rewrite(t, B, 1, 1).unwrap();
        assert_eq!(r.rewrite(t, A, 2, 2), None);
        r.resync();
        assert_eq!(r.rewrite(t, A, 2, 2).unwrap().seq, 2);
        assert_eq!(r.source_ssrc(), Some(A));
    }
}
