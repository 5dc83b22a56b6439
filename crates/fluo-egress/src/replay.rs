//! Replay protection and index estimation (RFC 3711 §3.3.1, §3.3.2): what a receiver of SRTP
//! or SRTCP keeps per SSRC.

/// Packets the window remembers behind the highest index (RFC 3711 asks for at least 64;
/// libsrtp keeps 128).
pub const WINDOW: u64 = 128;

/// A sliding replay window over 48-bit SRTP or 31-bit SRTCP indices: an index is accepted
/// once, and not when it is [`WINDOW`] or more behind the highest accepted one.
///
/// Check with [`ReplayWindow::check`] before the (costlier) authentication, then record with
/// [`ReplayWindow::accept`] only once the packet authenticated: forged packets move nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayWindow {
    /// Highest accepted index, `None` before the first.
    top: Option<u64>,
    /// Bit `i`: index `top - i` was accepted.
    seen: u128,
}

impl ReplayWindow {
    /// An empty window.
    pub fn new() -> ReplayWindow {
        ReplayWindow::default()
    }

    /// Whether `index` would be accepted now.
    pub fn check(&self, index: u64) -> bool {
        let Some(top) = self.top else {
            return true;
        };
        if index > top {
            return true;
        }
        let behind = top - index;
        behind < WINDOW && self.seen & (1u128 << behind) == 0
    }

    /// Records `index` as received (after it authenticated); false if it was a replay.
    pub fn accept(&mut self, index: u64) -> bool {
        if !self.check(index) {
            return false;
        }
        match self.top {
            Some(top) if index <= top => self.seen |= 1u128 << (top - index),
            Some(top) => {
                let ahead = index - top;
                self.seen = if ahead >= WINDOW {
                    0
                } else {
                    self.seen << ahead
                } | 1;
                self.top = Some(index);
            }
            None => {
                self.seen = 1;
                self.top = Some(index);
            }
        }
        true
    }

    /// The highest index accepted so far.
    pub fn highest(&self) -> Option<u64> {
        self.top
    }
}

/// Extends a 16-bit sequence number to the 48-bit SRTP index nearest to `highest` (RFC 3711
/// §3.3.1's estimate of the ROC); `None` (no packet yet) gives the sequence number with a ROC
/// of 0. An index below 0 is never returned.
pub fn estimate_index(highest: Option<u64>, seq: u16) -> u64 {
    let Some(last) = highest else {
        return u64::from(seq);
    };
    let cand = (last & !0xffff) | u64::from(seq);
    if cand > last + 0x8000 && cand >= 0x1_0000 {
        cand - 0x1_0000
    } else if cand + 0x8000 < last {
        cand + 0x1_0000
    } else {
        cand
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_index_is_accepted_once_and_old_ones_never() {
        let mut w = ReplayWindow::new();
        assert!(w.accept(1000));
        assert!(!w.accept(1000), "a replay");
        assert!(w.accept(998), "late but within the window");
        assert!(!w.check(998));
        assert!(w.accept(1200), "a jump");
        assert!(!w.check(1000), "now 200 behind: outside the window");
        assert!(w.check(1200 - 127) && !w.check(1200 - 128));
        assert!(w.accept(1199));
        assert!(!w.accept(1199));
        assert_eq!(w.highest(), Some(1200));
        // A jump past the window forgets everything before it.
        assert!(w.accept(5000));
        assert!(w.accept(4999));
    }

    #[test]
    fn the_index_follows_the_sequence_across_wraps() {
        assert_eq!(estimate_index(None, 65_000), 65_000);
        assert_eq!(
            estimate_index(Some(65_000), 5),
            0x1_0005,
            "wrapped forwards"
        );
        assert_eq!(
            estimate_index(Some(0x1_0005), 65_000),
            65_000,
            "late, before it"
        );
        assert_eq!(estimate_index(Some(10), 65_000), 65_000, "no index below 0");
        assert_eq!(estimate_index(Some(0x3_1234), 0x1235), 0x3_1235);
    }
}
