//! Transport-wide congestion control feedback (RTCP PT 205 FMT 15,
//! draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1): the FCI that
//! [`RtcpPacket::TransportCc`](crate::rtcp::RtcpPacket::TransportCc) hands over, read without
//! allocating.
//!
//! [`parse`] checks the whole FCI first (every status chunk, then that the receive deltas the
//! chunks announce are all there); [`Feedback::for_each`] then walks it. The work is bounded by
//! the FCI's bytes, never by the counts it claims: a run-length chunk of "not received" is
//! one [`Status::Lost`] of up to 8191 packets, a run of received packets reads one delta per
//! packet (each at least one byte the length check found), a status vector covers 7 or 14
//! packets per two bytes. Arithmetic on the peer's numbers is checked: the receive times are
//! sums of at most 65 535 deltas of at most ±8.2 s, kept in `i64` microseconds.

use crate::error::{be16, need, ParseError};

/// The fixed part of the FCI: base sequence, status count, reference time, feedback count.
const FIXED: usize = 8;

/// Microseconds per receive-delta tick.
pub const DELTA_US: i64 = 250;

/// Microseconds per reference-time tick (64 ms).
pub const REFERENCE_US: i64 = 64_000;

/// One transport-wide feedback message, checked (see the module).
#[derive(Debug, Clone, Copy)]
pub struct Feedback<'a> {
    /// The transport-wide sequence number of the first packet reported.
    pub base_seq: u16,
    /// How many packets, from `base_seq` on, the message reports.
    pub status_count: u16,
    /// The reference time, in 64 ms, as sent: a 24-bit value that wraps (see
    /// [`reference_delta_us`]).
    pub reference_time: u32,
    /// The feedback packet's own count (8 bits, wrapping).
    pub feedback_count: u8,
    /// The status chunks (exactly those the status count needs).
    chunks: &'a [u8],
    /// The receive deltas (at least those the chunks announce).
    deltas: &'a [u8],
}

/// What a feedback message says of a stretch of packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `count` packets from `first` on (wrapping) did not arrive (yet).
    Lost {
        /// The first one's transport-wide sequence number.
        first: u16,
        /// How many.
        count: u16,
    },
    /// Packet `seq` arrived `at_us` microseconds after the reference time (negative: before).
    Received {
        /// Its transport-wide sequence number.
        seq: u16,
        /// Its arrival, relative to the message's reference time.
        at_us: i64,
    },
}

/// A chunk's symbols: `(how many, symbol)` for a run, or the packed vector.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    Run { symbol: u8, len: u16 },
    Vector { bits: u8, word: u16 },
}

fn chunk(word: u16) -> Chunk {
    if word & 0x8000 == 0 {
        Chunk::Run {
            symbol: ((word >> 13) & 3) as u8,
            len: word & 0x1fff,
        }
    } else if word & 0x4000 == 0 {
        Chunk::Vector { bits: 1, word }
    } else {
        Chunk::Vector { bits: 2, word }
    }
}

/// The symbol of vector `word` at place `i` (`bits` wide, the first just after the header bits).
fn symbol_at(word: u16, bits: u8, i: u16) -> u8 {
    let per = 14 / u16::from(bits);
    let shift = (per - 1 - i) * u16::from(bits);
    ((word >> shift) & if bits == 1 { 1 } else { 3 }) as u8
}

/// Bytes of receive delta a symbol needs: 0 not received, 1 small delta, 2 large or negative
/// delta; `None` for the reserved symbol 3.
fn delta_len(symbol: u8) -> Option<usize> {
    match symbol {
        0 => Some(0),
        1 => Some(1),
        2 => Some(2),
        _ => None,
    }
}

/// Reads the FCI of a transport-wide feedback packet (the bytes after the media SSRC, padding
/// removed), checking all of it; nothing is reported for a malformed one.
pub fn parse(fci: &[u8]) -> Result<Feedback<'_>, ParseError> {
    need(fci, FIXED)?;
    let base_seq = be16(fci, 0);
    let status_count = be16(fci, 2);
    let reference_time = u32::from_be_bytes([0, fci[4], fci[5], fci[6]]);
    let feedback_count = fci[7];
    let body = &fci[FIXED..];
    let mut left = usize::from(status_count);
    let mut at = 0;
    let mut delta_bytes = 0usize;
    while left > 0 {
        let word = body.get(at..at + 2).ok_or(ParseError::BadFeedback)?;
        at += 2;
        match chunk(u16::from_be_bytes([word[0], word[1]])) {
            Chunk::Run { symbol, len } => {
                let n = usize::from(len).min(left);
                let per = delta_len(symbol).ok_or(ParseError::BadFeedback)?;
                delta_bytes = delta_bytes
                    .checked_add(n * per)
                    .ok_or(ParseError::BadFeedback)?;
                left -= n;
            }
            Chunk::Vector { bits, word } => {
                let n = (14 / u16::from(bits)).min(left as u16);
                for i in 0..n {
                    let per = delta_len(symbol_at(word, bits, i)).ok_or(ParseError::BadFeedback)?;
                    delta_bytes += per;
                }
                left -= usize::from(n);
            }
        }
    }
    let chunks = &body[..at];
    let deltas = &body[at..];
    if deltas.len() < delta_bytes {
        return Err(ParseError::BadFeedback);
    }
    Ok(Feedback {
        base_seq,
        status_count,
        reference_time,
        feedback_count,
        chunks,
        deltas: &deltas[..delta_bytes],
    })
}

impl Feedback<'_> {
    /// Reports every packet of the message, in sequence order: a stretch not received as one
    /// [`Status::Lost`], each received packet with its arrival time.
    pub fn for_each(&self, mut f: impl FnMut(Status)) {
        let mut seq = self.base_seq;
        let mut left = self.status_count;
        let mut deltas = Deltas {
            bytes: self.deltas,
            at: 0,
            sum: 0,
        };
        for word in self.chunks.chunks_exact(2) {
            match chunk(u16::from_be_bytes([word[0], word[1]])) {
                Chunk::Run { symbol, len } => {
                    let n = len.min(left);
                    if symbol == 0 {
                        if n > 0 {
                            f(Status::Lost {
                                first: seq,
                                count: n,
                            });
                        }
                    } else {
                        for i in 0..n {
                            let at_us = deltas.next(symbol);
                            let seq = seq.wrapping_add(i);
                            f(Status::Received { seq, at_us });
                        }
                    }
                    seq = seq.wrapping_add(n);
                    left -= n;
                }
                Chunk::Vector { bits, word } => {
                    let n = (14 / u16::from(bits)).min(left);
                    for i in 0..n {
                        let symbol = symbol_at(word, bits, i);
                        let seq = seq.wrapping_add(i);
                        if symbol == 0 {
                            f(Status::Lost {
                                first: seq,
                                count: 1,
                            });
                        } else {
                            let at_us = deltas.next(symbol);
                            f(Status::Received { seq, at_us });
                        }
                    }
                    seq = seq.wrapping_add(n);
                    left -= n;
                }
            }
        }
    }
}

/// The receive deltas, read in order and summed (in 250 µs ticks).
struct Deltas<'a> {
    bytes: &'a [u8],
    at: usize,
    sum: i64,
}

impl Deltas<'_> {
    /// The next delta for `symbol` (1: one unsigned byte, 2: two signed bytes), as the arrival
    /// time in microseconds after the reference time. [`parse`] checked the bytes are there;
    /// a missing one counts as 0.
    fn next(&mut self, symbol: u8) -> i64 {
        let ticks = if symbol == 1 {
            let b = self.bytes.get(self.at).copied().unwrap_or(0);
            self.at += 1;
            i64::from(b)
        } else {
            let b = self.bytes.get(self.at..self.at + 2).unwrap_or(&[0, 0]);
            self.at += 2;
            i64::from(i16::from_be_bytes([b[0], b[1]]))
        };
        // At most 65 535 deltas of at most 32 768 ticks: far inside i64, checked anyway.
        self.sum = self.sum.saturating_add(ticks);
        self.sum.saturating_mul(DELTA_US)
    }
}

/// The time from reference time `earlier` to `later` (both 24-bit, in 64 ms), in microseconds:
/// the shorter way round the 24-bit circle (about ±6.2 days either way), so a wrap between two
/// messages is a small step forward.
pub fn reference_delta_us(earlier: u32, later: u32) -> i64 {
    let diff = later.wrapping_sub(earlier) & 0x00ff_ffff;
    // Sign-extend the 24-bit difference.
    let signed = if diff & 0x0080_0000 != 0 {
        i64::from(diff) - (1 << 24)
    } else {
        i64::from(diff)
    };
    signed * REFERENCE_US
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fci(base: u16, count: u16, reference: u32, chunks: &[u16], deltas: &[u8]) -> Vec<u8> {
        let mut v = vec![];
        v.extend_from_slice(&base.to_be_bytes());
        v.extend_from_slice(&count.to_be_bytes());
        v.extend_from_slice(&reference.to_be_bytes()[1..]);
        v.push(7);
        for c in chunks {
            v.extend_from_slice(&c.to_be_bytes());
        }
        v.extend_from_slice(deltas);
        v
    }

    fn all(buf: &[u8]) -> Result<Vec<Status>, ParseError> {
        let fb = parse(buf)?;
        let mut out = vec![];
        fb.for_each(|s| out.push(s));
        Ok(out)
    }

    #[test]
    fn run_length_chunks_of_each_symbol() {
        // 3 received with small deltas, 2 lost, 2 received with large deltas (one negative).
        let run = |symbol: u16, len: u16| (symbol << 13) | len;
        let buf = fci(
            100,
            7,
            0x10,
            &[run(1, 3), run(0, 2), run(2, 2)],
            &[4, 0, 8, 0x01, 0x00, 0xff, 0xfe],
        );
        let fb = parse(&buf).unwrap();
        assert_eq!(
            (fb.base_seq, fb.status_count, fb.reference_time),
            (100, 7, 0x10)
        );
        assert_eq!(fb.feedback_count, 7);
        let s = all(&buf).unwrap();
        assert_eq!(
            s,
            vec![
                Status::Received {
                    seq: 100,
                    at_us: 1000
                },
                Status::Received {
                    seq: 101,
                    at_us: 1000
                },
                Status::Received {
                    seq: 102,
                    at_us: 3000
                },
                Status::Lost {
                    first: 103,
                    count: 2
                },
                Status::Received {
                    seq: 105,
                    at_us: 3000 + 256 * 250
                },
                Status::Received {
                    seq: 106,
                    at_us: 3000 + 254 * 250
                },
            ]
        );
    }

    #[test]
    fn status_vectors_of_one_and_two_bits() {
        // One-bit vector: 14 symbols, received / lost alternating from the first.
        let one = 0x8000 | 0b10_1010_1010_1010;
        // Two-bit vector: 7 symbols: 1, 2, 0, 0, 0, 0, 1.
        let two = 0xc000 | (1 << 12) | (2 << 10) | 1;
        let deltas = [1, 1, 1, 1, 1, 1, 1, 4, 0x00, 0x04, 8];
        let buf = fci(65_530, 21, 0, &[one, two], &deltas);
        let s = all(&buf).unwrap();
        let received: Vec<u16> = (s.iter())
            .filter_map(|x| match x {
                Status::Received { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        // Wraps past 65535.
        assert_eq!(received, vec![65_530, 65_532, 65_534, 0, 2, 4, 6, 8, 9, 14]);
        assert_eq!(
            s.last(),
            Some(&Status::Received {
                seq: 14,
                at_us: (11 + 4 + 8) * 250
            })
        );
        assert!(s.contains(&Status::Lost {
            first: 10,
            count: 1
        }));
    }

    #[test]
    fn the_status_count_ends_the_last_chunk() {
        // A run of 8191 received, of which the count takes 2: two deltas, not 8191.
        let buf = fci(0, 2, 0, &[(1 << 13) | 0x1fff], &[1, 2]);
        assert_eq!(all(&buf).unwrap().len(), 2);
    }

    #[test]
    fn a_long_lost_run_is_one_step() {
        // 65535 lost in 9 chunks of 8191 (the count ends the last): 9 reports.
        let chunks = [0x1fff; 9];
        let buf = fci(10, 65_535, 0, &chunks, &[]);
        let s = all(&buf).unwrap();
        assert_eq!(s.len(), 9);
        let total: u32 = (s.iter())
            .map(|x| match x {
                Status::Lost { count, .. } => u32::from(*count),
                _ => 0,
            })
            .sum();
        assert_eq!(total, 65_535);
    }

    #[test]
    fn hostile_inputs_are_refused() {
        // Too short for the fixed part.
        assert!(parse(&[0; 7]).is_err());
        // A count the chunks do not cover.
        assert!(parse(&fci(0, 100, 0, &[0x0005], &[])).is_err());
        // A huge received run without its deltas.
        assert!(parse(&fci(0, 65_535, 0, &[(1 << 13) | 0x1fff; 8], &[1; 10])).is_err());
        // Large deltas cut in half.
        assert!(parse(&fci(0, 1, 0, &[(2 << 13) | 1], &[0x01])).is_err());
        // The reserved symbol.
        assert!(parse(&fci(0, 1, 0, &[(3 << 13) | 1], &[0, 0])).is_err());
        assert!(parse(&fci(0, 7, 0, &[0xc000 | (3 << 12)], &[])).is_err());
        // Zero-length runs do not loop for ever: each takes two bytes, and the bytes end.
        assert!(parse(&fci(0, 1, 0, &[0; 40], &[])).is_err());
        // Nothing to report: fine, and nothing is reported.
        assert_eq!(all(&fci(0, 0, 0, &[], &[])).unwrap(), vec![]);
        // Every large delta negative: the times go back, without overflow.
        let buf = fci(0, 3, 0, &[(2 << 13) | 3], &[0x80, 0, 0x80, 0, 0x80, 0]);
        let s = all(&buf).unwrap();
        assert_eq!(
            s.last(),
            Some(&Status::Received {
                seq: 2,
                at_us: -3 * 32_768 * 250
            })
        );
    }

    #[test]
    fn any_bytes_parse_or_are_refused_without_panic() {
        let mut seed = 0x1234_5678u32;
        let mut rand = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for len in 0..300 {
            for _ in 0..50 {
                let buf: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
                if let Ok(fb) = parse(&buf) {
                    let mut n = 0usize;
                    fb.for_each(|_| n += 1);
                    assert!(n <= usize::from(fb.status_count));
                }
            }
        }
    }

    #[test]
    fn the_reference_time_wraps_forward() {
        assert_eq!(reference_delta_us(10, 12), 2 * REFERENCE_US);
        assert_eq!(reference_delta_us(12, 10), -2 * REFERENCE_US);
        // Across the 24-bit wrap: a small step forward, not back by days.
        assert_eq!(reference_delta_us(0x00ff_fffe, 1), 3 * REFERENCE_US);
        assert_eq!(reference_delta_us(1, 0x00ff_fffe), -3 * REFERENCE_US);
        // Bits above 24 are ignored.
        assert_eq!(reference_delta_us(0xff00_0000, 0x0000_0001), REFERENCE_US);
    }
}
