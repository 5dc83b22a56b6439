//! The WebRTC endpoints' figures for the server's metrics, read when the metrics are scraped
//! from what each endpoint already counts for getStats (`stats.rs`): nothing is added per
//! packet. Each endpoint is locked once per scrape, for as long as getStats would lock it.
//!
//! Counters stay monotonic: an endpoint's figures only grow (loss is the high-water mark of
//! each incoming stream, and what a replaced stream or session had counted is carried by the
//! endpoint), and a released endpoint's last figures are kept in the board's `retired`.

use crate::core::{lock, Ep, EpRef};
use fluo_sfu::MediaKind;
use std::collections::BTreeMap;
use std::sync::{Mutex, Weak};

/// The figures counted per media kind, in [`Kind`]'s order.
pub const FIGURES: usize = 12;

/// Which figure of a kind's array is which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Figure {
    /// RTP packets received.
    PacketsIn,
    /// Their bytes.
    BytesIn,
    /// RTP packets sent.
    PacketsOut,
    /// Their bytes.
    BytesOut,
    /// Incoming packets lost (expected minus received).
    LostIn,
    /// NACKs Fluo sent about what it receives.
    NacksSent,
    /// PLIs Fluo sent.
    PlisSent,
    /// FIRs Fluo sent.
    FirsSent,
    /// NACKs the peers sent about what Fluo sends.
    NacksReceived,
    /// PLIs the peers sent.
    PlisReceived,
    /// FIRs the peers sent.
    FirsReceived,
    /// Packets retransmitted on NACKs.
    Retransmitted,
}

/// What the WebRTC endpoints counted, by media kind (`[audio, video]`), and their states now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RtcReading {
    /// Counters since the start, per kind: see [`Figure`].
    pub totals: [[u64; FIGURES]; 2],
    /// Live endpoints by ICE state (Kurento's IceComponentState names).
    pub ice: BTreeMap<&'static str, usize>,
    /// Live endpoints by DTLS state: `new` (never connected), `connected`, `lost`
    /// (connected once, not now).
    pub dtls: BTreeMap<&'static str, usize>,
}

/// Every live endpoint, weakly: added at its creation, removed at its release.
#[derive(Default)]
pub(crate) struct Board {
    inner: Mutex<BoardInner>,
}

#[derive(Default)]
struct BoardInner {
    entries: Vec<Weak<Mutex<Ep>>>,
    /// What endpoints that were released had counted.
    retired: [[u64; FIGURES]; 2],
}

fn add(into: &mut [[u64; FIGURES]; 2], from: &[[u64; FIGURES]; 2]) {
    for (a, b) in into.iter_mut().zip(from) {
        for (x, y) in a.iter_mut().zip(b) {
            *x += y;
        }
    }
}

impl Board {
    /// A new endpoint (once, at its creation).
    pub(crate) fn add(&self, ep: &EpRef) {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Endpoints dropped without a release (none should be) leave no entry behind.
        b.entries.retain(|e| e.strong_count() > 0);
        b.entries.push(std::sync::Arc::downgrade(ep));
    }

    /// An endpoint is released: what it counted is kept, its entry goes.
    pub(crate) fn release(&self, ep: &EpRef) {
        let last = crate::stats::figures(&lock(ep));
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let before = b.entries.len();
        b.entries
            .retain(|e| !std::ptr::eq(e.as_ptr(), std::sync::Arc::as_ptr(ep)));
        if b.entries.len() < before {
            add(&mut b.retired, &last);
        }
    }

    /// How many endpoints the board holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }

    /// Reads every endpoint. Each figure an endpoint reports only grows (see
    /// `stats::figures`), so the sums do too.
    pub(crate) fn read(&self) -> RtcReading {
        let b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut r = RtcReading::default();
        for ep in b.entries.iter().filter_map(Weak::upgrade) {
            let (now, ice, dtls) = {
                let ep = lock(&ep);
                let dtls = match (ep.connected, ep.was_connected) {
                    (true, _) => "connected",
                    (false, true) => "lost",
                    (false, false) => "new",
                };
                (crate::stats::figures(&ep), ep.ice_state, dtls)
            };
            add(&mut r.totals, &now);
            *r.ice.entry(ice).or_insert(0) += 1;
            *r.dtls.entry(dtls).or_insert(0) += 1;
        }
        add(&mut r.totals, &b.retired);
        r
    }
}

impl RtcReading {
    /// One counter of one kind.
    pub fn get(&self, kind: MediaKind, f: Figure) -> u64 {
        self.totals[kind][f as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Ep;
    use std::sync::Arc;

    fn endpoint() -> EpRef {
        Arc::new(Mutex::new(Ep::new(
            "ep".into(),
            str0m::Rtc::new(std::time::Instant::now()),
        )))
    }

    fn received(ep: &EpRef, ssrc: u32, seq: u64) {
        lock(ep).stats.kinds[MediaKind::Video].received(None, ssrc, seq, 100, 90_000);
    }

    fn lost(b: &Board) -> u64 {
        b.read().get(MediaKind::Video, Figure::LostIn)
    }

    #[test]
    fn loss_that_a_retransmission_lowers_is_counted_once() {
        let b = Board::default();
        let ep = endpoint();
        b.add(&ep);
        for seq in [1, 2, 4, 5] {
            received(&ep, 7, seq);
        }
        assert_eq!(lost(&b), 1, "3 missing");
        // 3 is retransmitted (loss is 0 now), then 7 and 9 go missing.
        received(&ep, 7, 3);
        assert_eq!(lost(&b), 1, "does not go down");
        for seq in [6, 8, 10] {
            received(&ep, 7, seq);
        }
        assert_eq!(lost(&b), 2, "2 missing at once: not 1 + 2");
        received(&ep, 7, 7);
        received(&ep, 7, 11);
        assert_eq!(lost(&b), 2, "no double counting after the dip");
        // A new stream restarts its loss from zero: what the old one lost is kept.
        received(&ep, 8, 100);
        received(&ep, 8, 102);
        assert_eq!(lost(&b), 3);
        let r = b.read();
        assert_eq!(r.get(MediaKind::Video, Figure::PacketsIn), 12);
    }

    #[test]
    fn released_endpoints_leave_the_board_and_keep_their_counts() {
        let b = Board::default();
        let mut held = Vec::new();
        for i in 0..100 {
            let ep = endpoint();
            b.add(&ep);
            received(&ep, 7, 1);
            received(&ep, 7, 3);
            b.release(&ep);
            // The caller may still hold the endpoint: the board does not.
            assert_eq!(b.len(), 0, "after {i} releases");
            held.push(ep);
        }
        let r = b.read();
        assert_eq!(r.get(MediaKind::Video, Figure::PacketsIn), 200);
        assert_eq!(r.get(MediaKind::Video, Figure::LostIn), 100);
        assert!(r.ice.is_empty(), "{:?}", r.ice);
        // Releasing twice counts once.
        let ep = endpoint();
        b.add(&ep);
        received(&ep, 7, 1);
        b.release(&ep);
        b.release(&ep);
        assert_eq!(b.read().get(MediaKind::Video, Figure::PacketsIn), 201);
    }
}
