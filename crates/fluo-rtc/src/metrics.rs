//! The WebRTC endpoints' figures for the server's metrics, read when the metrics are scraped
//! from what each endpoint already counts for getStats (`stats.rs`): nothing is added per
//! packet. Each endpoint is locked once per scrape, for as long as getStats would lock it.
//!
//! Counters stay monotonic across endpoints that go away (their last reading is kept) and
//! across an endpoint's own resets (a new incoming stream counts its loss from zero): what an
//! endpoint counted between the last scrape and its release is not seen.

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

struct Entry {
    ep: Weak<Mutex<Ep>>,
    /// The last reading, and what earlier resets of its figures left behind.
    last: [[u64; FIGURES]; 2],
    carry: [[u64; FIGURES]; 2],
}

/// Every endpoint, weakly: filled as they are created, read at scrape time.
#[derive(Default)]
pub(crate) struct Board {
    inner: Mutex<BoardInner>,
}

#[derive(Default)]
struct BoardInner {
    entries: Vec<Entry>,
    /// What endpoints that went away had counted.
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
        b.entries.push(Entry {
            ep: std::sync::Arc::downgrade(ep),
            last: Default::default(),
            carry: Default::default(),
        });
    }

    /// Reads every endpoint.
    pub(crate) fn read(&self) -> RtcReading {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let BoardInner { entries, retired } = &mut *b;
        let mut r = RtcReading::default();
        entries.retain_mut(|e| {
            let Some(ep) = e.ep.upgrade() else {
                add(retired, &e.carry);
                add(retired, &e.last);
                return false;
            };
            let (now, ice, dtls) = {
                let ep = lock(&ep);
                let dtls = match (ep.connected, ep.was_connected) {
                    (true, _) => "connected",
                    (false, true) => "lost",
                    (false, false) => "new",
                };
                (crate::stats::figures(&ep), ep.ice_state, dtls)
            };
            // A figure that went down was reset (a new incoming stream): keep what it had.
            for ((carry, last), now) in e.carry.iter_mut().zip(&e.last).zip(&now) {
                for ((c, l), n) in carry.iter_mut().zip(last).zip(now) {
                    if n < l {
                        *c += l;
                    }
                }
            }
            e.last = now;
            add(&mut r.totals, &e.carry);
            add(&mut r.totals, &e.last);
            *r.ice.entry(ice).or_insert(0) += 1;
            *r.dtls.entry(dtls).or_insert(0) += 1;
            true
        });
        add(&mut r.totals, retired);
        r
    }
}

impl RtcReading {
    /// One counter of one kind.
    pub fn get(&self, kind: MediaKind, f: Figure) -> u64 {
        self.totals[kind][f as usize]
    }
}
