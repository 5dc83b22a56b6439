//! Transport-wide congestion control feedback as a browser's receiver sends it
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01, RTCP RTPFB FMT 15): the viewer notes
//! each packet's transport-wide sequence number and arrival time, and every
//! [`TWCC_INTERVAL`] reports what arrived since the last message, the gaps as not received.
//!
//! str0m 0.25 parses this feedback publicly (`str0m::rtp::rtcp::Rtcp`, the tests read ours
//! back with it) but its writer is crate-private, hence this one. Nothing is allocated per
//! packet once the buffers have grown to a feedback interval's packets.

use std::time::Duration;

/// Between two feedback messages: Chromium's interval at these rates (it sends 5 % of the
/// bitrate in feedback, within 50-250 ms: 50 ms from about 110 kbit/s up).
pub const TWCC_INTERVAL: Duration = Duration::from_millis(50);
/// Statuses in one message at most, and packets reported received (their chunks, at most
/// 2 bytes per 7 statuses, and their deltas, at most 2 bytes each, then fit in 1 000 bytes).
const MAX_STATUS: usize = 1500;
const MAX_RECEIVED: usize = 250;
/// A gap longer than this is not reported (the numbering restarts after it); shorter than
/// [`MAX_STATUS`], so that a message always has room for the first packet after a gap.
const MAX_GAP: u64 = 1000;
/// Units of the reference time (64 ms) and of the deltas (250 µs), in µs.
const REF_US: u64 = 64_000;
const TICK_US: u64 = 250;

#[derive(Debug, Clone, Copy)]
struct Arrival {
    seq: u64,
    at_us: u64,
}

/// The receiver's side of TWCC: arrivals noted, feedback written.
#[derive(Debug)]
pub struct TwccRecv {
    /// The header extension's id in the negotiated map.
    pub ext_id: u8,
    /// Arrivals not reported yet, in the order they arrived.
    arrivals: Vec<Arrival>,
    /// The highest sequence number noted (to extend the next).
    max: Option<u64>,
    /// The first sequence number the next message reports.
    next: Option<u64>,
    feedback_count: u8,
    /// The SSRC the feedback names as its media source (the last packet's).
    pub media_ssrc: u32,
    symbols: Vec<u8>,
    deltas: Vec<i16>,
}

/// The extended number nearest to `max` whose low 16 bits are `seq`.
fn extend(max: Option<u64>, seq: u16) -> u64 {
    let Some(max) = max else {
        // Room below for packets that arrive before the first.
        return 0x1_0000 | u64::from(seq);
    };
    let c = (max & !0xffff) | u64::from(seq);
    [c.saturating_sub(0x1_0000), c, c + 0x1_0000]
        .into_iter()
        .min_by_key(|x| x.abs_diff(max))
        .unwrap_or(c)
}

impl TwccRecv {
    pub fn new(ext_id: u8) -> TwccRecv {
        TwccRecv {
            ext_id,
            arrivals: Vec::with_capacity(256),
            max: None,
            next: None,
            feedback_count: 0,
            media_ssrc: 0,
            symbols: Vec::with_capacity(MAX_STATUS),
            deltas: Vec::with_capacity(MAX_STATUS),
        }
    }

    /// A packet of transport-wide number `seq` arrived at `at_us` (µs, any clock that the
    /// later calls share; arrivals noted in the order they happened).
    pub fn record(&mut self, seq: u16, at_us: u64, ssrc: u32) {
        let seq = extend(self.max, seq);
        self.max = Some(self.max.map_or(seq, |m| m.max(seq)));
        self.media_ssrc = ssrc;
        self.arrivals.push(Arrival { seq, at_us });
    }

    /// Whether arrivals wait to be reported.
    pub fn pending(&self) -> bool {
        !self.arrivals.is_empty()
    }

    /// Appends to `out` one feedback message from `sender` reporting the arrivals up to
    /// `now_us` (those after it, a virtual link's, wait); returns how many packets it
    /// reports as received (0: nothing written).
    pub fn write(&mut self, now_us: u64, out: &mut Vec<u8>, sender: u32) -> usize {
        let ready = self
            .arrivals
            .iter()
            .take_while(|a| a.at_us <= now_us)
            .count();
        if ready == 0 {
            return 0;
        }
        self.arrivals[..ready].sort_unstable_by_key(|a| (a.seq, a.at_us));
        let first = self.arrivals[0];
        let mut base = self.next.unwrap_or(first.seq);
        if first.seq > base + MAX_GAP {
            base = first.seq;
        }
        self.symbols.clear();
        self.deltas.clear();
        let mut expected = base;
        let mut reference = None;
        let mut prev_ticks = 0i64;
        let mut used = 0;
        for a in &self.arrivals[..ready] {
            if a.seq < expected {
                // Reported already (or a duplicate): dropped.
                used += 1;
                continue;
            }
            let statuses = self.symbols.len() as u64 + (a.seq - expected) + 1;
            if statuses > MAX_STATUS as u64 || self.deltas.len() == MAX_RECEIVED {
                break;
            }
            let ticks = (a.at_us / TICK_US) as i64;
            if reference.is_none() {
                let r = a.at_us / REF_US;
                reference = Some(r);
                prev_ticks = (r * (REF_US / TICK_US)) as i64;
            }
            let Ok(delta) = i16::try_from(ticks - prev_ticks) else {
                // Beyond a delta's reach: the next message goes on from here.
                break;
            };
            self.symbols
                .extend(std::iter::repeat_n(0, (a.seq - expected) as usize));
            self.symbols
                .push(if (0..=255).contains(&delta) { 1 } else { 2 });
            self.deltas.push(delta);
            prev_ticks = ticks;
            expected = a.seq + 1;
            used += 1;
        }
        self.arrivals.drain(..used);
        let Some(reference) = reference else {
            return 0;
        };
        self.next = Some(expected);
        let start = out.len();
        out.extend_from_slice(&[0x80 | 15, 205, 0, 0]);
        out.extend_from_slice(&sender.to_be_bytes());
        out.extend_from_slice(&self.media_ssrc.to_be_bytes());
        out.extend_from_slice(&(base as u16).to_be_bytes());
        out.extend_from_slice(&(self.symbols.len() as u16).to_be_bytes());
        out.extend_from_slice(
            &((reference as u32 & 0xff_ffff) << 8 | u32::from(self.feedback_count)).to_be_bytes(),
        );
        self.feedback_count = self.feedback_count.wrapping_add(1);
        write_chunks(out, &self.symbols);
        for d in &self.deltas {
            match u8::try_from(*d) {
                Ok(small) => out.push(small),
                Err(_) => out.extend_from_slice(&d.to_be_bytes()),
            }
        }
        let pad = (4 - (out.len() - start) % 4) % 4;
        if pad > 0 {
            out.resize(out.len() + pad - 1, 0);
            out.push(pad as u8);
            out[start] |= 0x20;
        }
        let words = (out.len() - start) / 4 - 1;
        out[start + 2..start + 4].copy_from_slice(&(words as u16).to_be_bytes());
        self.deltas.len()
    }
}

/// The status chunks of `symbols` (0 not received, 1 small delta, 2 large or negative): a
/// run-length chunk for 7 equal ones or more, else a two-bit vector of the next 7 (the last
/// one padded with "not received", which the status count leaves out).
fn write_chunks(out: &mut Vec<u8>, symbols: &[u8]) {
    let mut i = 0;
    while i < symbols.len() {
        let s = symbols[i];
        let run = symbols[i..]
            .iter()
            .take(0x1fff)
            .take_while(|x| **x == s)
            .count();
        let word = if run >= 7 {
            i += run;
            (u16::from(s) << 13) | run as u16
        } else {
            let mut w = 0xc000u16;
            for (k, x) in symbols[i..].iter().take(7).enumerate() {
                w |= u16::from(*x) << (12 - 2 * k);
            }
            i += 7;
            w
        };
        out.extend_from_slice(&word.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use str0m::rtp::rtcp::Rtcp;

    /// What str0m reads of one message: (sequence number, arrival in µs from the reference
    /// time's start) per status, `None` for not received; checked to be what Fluo's own
    /// reader (`fluo_sfu::twcc`, which its estimator takes the feedback through) reads too.
    fn parse(msg: &[u8]) -> (u32, u32, Vec<(u64, Option<u64>)>) {
        assert_eq!(msg.len() % 4, 0);
        assert_eq!(
            (usize::from(u16::from_be_bytes([msg[2], msg[3]])) + 1) * 4,
            msg.len()
        );
        // str0m's reader takes the packet with its padding removed.
        let len = if msg[0] & 0x20 != 0 {
            msg.len() - usize::from(msg[msg.len() - 1])
        } else {
            msg.len()
        };
        let Ok(Rtcp::Twcc(t)) = Rtcp::try_from(&msg[..len]) else {
            panic!("not transport-wide feedback to str0m: {msg:?}");
        };
        let zero = Instant::now();
        let reference = t.reference_time;
        let (sender, media) = (*t.sender_ssrc, *t.ssrc);
        let base = zero + Duration::from_millis(u64::from(reference) * 64);
        let statuses: Vec<(u64, Option<u64>)> = t
            .into_iter(zero, 0u64.into())
            .map(|(seq, _, at)| {
                let us = at.map(|at| at.duration_since(base).as_micros() as u64);
                (*seq, us)
            })
            .collect();
        let low16: Vec<(u64, Option<u64>)> =
            (statuses.iter()).map(|(q, a)| (q & 0xffff, *a)).collect();
        assert_eq!(fluo_reads(&msg[12..len]), low16, "Fluo's reader differs");
        (sender, media, statuses)
    }

    /// What Fluo's reader makes of a message's FCI (after the sender and media SSRCs, its
    /// padding removed), as `parse` gives it: 16-bit sequence numbers, arrivals in µs from the reference time's start.
    fn fluo_reads(fci: &[u8]) -> Vec<(u64, Option<u64>)> {
        let fb = fluo_sfu::twcc::parse(fci).expect("Fluo's reader refused our feedback");
        let mut out = vec![];
        fb.for_each(|s| match s {
            fluo_sfu::twcc::Status::Received { seq, at_us } => {
                out.push((u64::from(seq), u64::try_from(at_us).ok()));
            }
            fluo_sfu::twcc::Status::Lost { first, count } => {
                for i in 0..count {
                    out.push((u64::from(first.wrapping_add(i)), None));
                }
            }
        });
        out
    }

    /// Arrivals with a gap, a large delta and a run long enough for a run-length chunk come
    /// back from str0m's parser as they were noted (to the 250 µs tick), the gap as not
    /// received; the next message goes on from the first number the last did not report.
    #[test]
    fn str0m_reads_our_feedback_back() {
        let mut r = TwccRecv::new(3);
        let t0 = 10 * REF_US + 1_000;
        // 100-109 every 1 ms, 110-114 lost, 115 100 ms later (large delta), 116-130 every
        // 250 µs (a run of small deltas), 131 out of order before 130.
        let mut noted = vec![];
        for s in 100..110u64 {
            noted.push((s, t0 + (s - 100) * 1000));
        }
        noted.push((115, t0 + 109_000));
        for s in 116..130u64 {
            noted.push((s, t0 + 109_000 + (s - 115) * 250));
        }
        noted.push((131, t0 + 113_000));
        noted.push((130, t0 + 113_250));
        for &(s, at) in &noted {
            r.record(s as u16, at, 0xabcd);
        }
        let mut out = vec![];
        let n = r.write(t0 + 200_000, &mut out, 0x1234);
        assert_eq!(n, noted.len());
        let (sender, media, statuses) = parse(&out);
        assert_eq!((sender, media), (0x1234, 0xabcd));
        assert_eq!(statuses.len(), 32, "100 to 131");
        let base_us = t0 / REF_US * REF_US;
        for (seq, at) in &statuses {
            let want = noted
                .iter()
                .find(|x| x.0 == *seq)
                .map(|x| (x.1 - base_us) / TICK_US * TICK_US);
            assert_eq!(*at, want, "{seq}");
        }
        assert!(!r.pending());
        // The next message: 132 and 134, 133 lost; the sequence numbers wrap past 65535.
        r.record(132, t0 + 300_000, 0xabcd);
        r.record(134, t0 + 301_000, 0xabcd);
        out.clear();
        assert_eq!(r.write(t0 + 400_000, &mut out, 0x1234), 2);
        let (_, _, statuses) = parse(&out);
        let seqs: Vec<(u64, bool)> = statuses.iter().map(|s| (s.0, s.1.is_some())).collect();
        assert_eq!(seqs, vec![(132, true), (133, false), (134, true)]);
        assert_eq!(out[19], 1, "the feedback count goes up");
    }

    /// Arrivals after `now` (behind a virtual link) wait for a later message; sequence
    /// numbers wrap; a message holds at most MAX_STATUS statuses, the rest going in the next.
    #[test]
    fn later_arrivals_wait_and_long_stretches_split() {
        let mut r = TwccRecv::new(3);
        r.record(65_534, 1_000, 1);
        r.record(65_535, 2_000, 1);
        r.record(0, 90_000, 1);
        let mut out = vec![];
        assert_eq!(r.write(50_000, &mut out, 9), 2);
        assert!(r.pending());
        out.clear();
        assert_eq!(r.write(100_000, &mut out, 9), 1);
        let (_, _, st) = parse(&out);
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].0 & 0xffff, 0, "65535 then 0");
        let mut r = TwccRecv::new(3);
        for s in 0..1000u16 {
            r.record(s, 1_000 + u64::from(s) * 100, 1);
        }
        let mut total = 0;
        let mut messages = 0;
        loop {
            out.clear();
            let n = r.write(1_000_000, &mut out, 9);
            if n == 0 {
                break;
            }
            let (_, _, st) = parse(&out);
            assert!(st.len() <= MAX_STATUS && out.len() <= 1000, "{}", out.len());
            total += n;
            messages += 1;
        }
        assert_eq!((total, messages), (1000, 4));
    }

    /// A gap of up to MAX_GAP packets (a link that dropped everything for a while) is
    /// reported as lost, in a message with the packets around it; a longer one is skipped.
    #[test]
    fn long_gaps_are_reported_lost_or_skipped() {
        // (gap, statuses of the second message, lost among them)
        for (gap, statuses, lost) in [(500u16, 502, 500), (MAX_GAP as u16 + 10, 2, 0)] {
            let mut r = TwccRecv::new(3);
            r.record(10, 1_000, 1);
            let mut out = vec![];
            assert_eq!(r.write(2_000, &mut out, 9), 1);
            r.record(11 + gap, 500_000, 1);
            r.record(12 + gap, 501_000, 1);
            out.clear();
            assert_eq!(r.write(600_000, &mut out, 9), 2, "gap {gap}");
            let (_, _, st) = parse(&out);
            assert_eq!(st.len(), statuses, "gap {gap}");
            let missing = st.iter().filter(|s| s.1.is_none()).count();
            assert_eq!(missing, lost, "gap {gap}");
            assert!(!r.pending());
        }
    }
}
