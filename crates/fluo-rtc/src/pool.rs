//! A small stock of ready-made `Rtc` instances, built on a background thread.
//!
//! Building an `Rtc` generates DTLS key material (a few milliseconds of elliptic-curve work).
//! Done inside `create WebRtcEndpoint` it would run on the engine's thread and delay every
//! other client's requests during a burst of joins; the pool moves it to another core.
//!
//! An `Rtc` counts its DTLS handshake timeout from the instant it was built, so a stocked
//! one goes stale: entries older than [`TTL`] are thrown away and rebuilt. While nobody
//! creates endpoints the pool renews only [`IDLE_STOCK`] of them, so an idle server does
//! almost no work.

use fluo_egress::KeySlot;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};
use str0m::Rtc;

/// How many ready `Rtc`s the pool keeps while endpoints are being created.
const STOCK: usize = 32;

/// How many it keeps when no endpoint was created for [`BUSY_FOR`].
const IDLE_STOCK: usize = 4;

/// How long after the last creation the pool builds up to the full stock. Longer keeps a
/// second burst fast but costs the CPU of rebuilding stale entries: 32 every [`TTL`] is about
/// 2 % of a core, which an idle server should not spend (the churn soak checks < 1 % two
/// seconds after the last client left). Entries built while busy stay until they expire.
const BUSY_FOR: Duration = Duration::from_secs(2);

/// Age after which a stocked `Rtc` is not handed out (str0m's DTLS timeout runs from its
/// build instant).
const TTL: Duration = Duration::from_secs(15);

#[derive(Default)]
struct Stock {
    /// Oldest first, each with the slot its DTLS session exports its SRTP keys into.
    items: Vec<(Instant, (Rtc, KeySlot))>,
    last_take: Option<Instant>,
}

pub(crate) struct RtcPool {
    shared: Arc<(Mutex<Stock>, Condvar)>,
    cert: Option<str0m::config::DtlsCert>,
}

impl RtcPool {
    /// Starts the builder thread (or none when `background` is false, for tests).
    pub fn new(cert: Option<str0m::config::DtlsCert>, background: bool) -> RtcPool {
        let shared = Arc::new((Mutex::new(Stock::default()), Condvar::new()));
        if background {
            let (s, c) = (shared.clone(), cert.clone());
            let spawned = std::thread::Builder::new()
                .name("fluo-rtc-pool".into())
                .spawn(move || loop {
                    {
                        let (lock, cv) = &*s;
                        let mut stock = lock.lock().unwrap_or_else(|p| p.into_inner());
                        loop {
                            let now = Instant::now();
                            stock.items.retain(|(t, _)| now.duration_since(*t) < TTL);
                            let busy = stock
                                .last_take
                                .is_some_and(|t| now.duration_since(t) < BUSY_FOR);
                            let target = if busy { STOCK } else { IDLE_STOCK };
                            if stock.items.len() < target {
                                break;
                            }
                            // Wake when an entry goes stale, or when one is taken.
                            let oldest = stock.items.first().map_or(now, |(t, _)| *t);
                            let wait = (oldest + TTL).saturating_duration_since(now)
                                + Duration::from_millis(10);
                            stock = cv
                                .wait_timeout(stock, wait)
                                .unwrap_or_else(|p| p.into_inner())
                                .0;
                        }
                    }
                    // Build without holding the lock.
                    let rtc = build(&c);
                    s.0.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .items
                        .push((Instant::now(), rtc));
                });
            if let Err(e) = spawned {
                tracing::warn!("no Rtc pool thread ({e}); endpoints are built inline");
            }
        }
        RtcPool { shared, cert }
    }

    /// A fresh ready `Rtc` and its key slot, or one built now when the stock has none.
    pub fn take(&self) -> (Rtc, KeySlot) {
        let (lock, cv) = &*self.shared;
        let ready = {
            let mut stock = lock.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            stock.last_take = Some(now);
            stock.items.retain(|(t, _)| now.duration_since(*t) < TTL);
            stock.items.pop().map(|(_, r)| r)
        };
        cv.notify_one();
        ready.unwrap_or_else(|| build(&self.cert))
    }

    /// A new `Rtc` like the stocked ones but sized for `mtu` and keeping the ICE credentials
    /// `creds` (the media core knows the endpoint by its ufrag), for an endpoint whose `mtu`
    /// was set before it negotiated.
    pub fn build_for_mtu(&self, mtu: usize, creds: str0m::IceCreds) -> (Rtc, KeySlot) {
        let config = configure(&self.cert, mtu).set_local_ice_credentials(creds);
        fluo_egress::build_capturing(config, Instant::now())
    }
}

/// How often str0m reports statistics of each session.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

fn build(cert: &Option<str0m::config::DtlsCert>) -> (Rtc, KeySlot) {
    let config = configure(cert, crate::settings::DEFAULT_MTU);
    fluo_egress::build_capturing(config, Instant::now())
}

/// fluo-rtc's crypto provider (see `dtls`) with DTLS sessions that hand their exported SRTP
/// keys to the egress fast path (`fluo_egress::keys`): made once per process.
fn capturing() -> Arc<str0m::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<str0m::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| fluo_egress::capturing_provider((*crate::dtls::provider()).clone()))
        .clone()
}

fn configure(cert: &Option<str0m::config::DtlsCert>, mtu: usize) -> str0m::RtcConfig {
    // ICE-lite, as servers on reachable addresses do (mediasoup, Jitsi): Fluo answers the
    // browser's checks and follows its nomination instead of running its own paced checks, so
    // DTLS starts as soon as the browser has a working pair (a full agent waited for its
    // next 50 ms pacing tick first).
    // Statistics every second: their round-trip estimate sizes each viewer's video resend
    // cache (see `core::rtx_history`).
    // The MTU is the largest datagram str0m makes (DTLS records, SCTP packets): Kurento's
    // default is 1200 (str0m's 1150).
    // The dependency descriptor: read from publishers, forwarded to AV1 viewers (see `dd`).
    let mut builder = Rtc::builder()
        .set_extension(crate::dd::ID, crate::dd::extension())
        .set_mtu(mtu..=mtu.max(str0m::DATAGRAM_MTU_WARN))
        .set_rtp_mode(true)
        .set_ice_lite(true)
        .set_stats_interval(Some(STATS_INTERVAL))
        .set_crypto_provider(capturing());
    if let Some(cert) = cert {
        builder = builder.set_dtls_cert(cert.clone());
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_entries_are_never_handed_out() {
        let pool = RtcPool::new(None, false);
        let now = Instant::now();
        {
            let mut st = pool.shared.0.lock().unwrap();
            st.items
                .push((now - TTL - Duration::from_secs(1), build(&None)));
            st.items.push((now - TTL * 2, build(&None)));
        }
        let _rtc = pool.take();
        let st = pool.shared.0.lock().unwrap();
        assert!(
            st.items.is_empty(),
            "stale entries were dropped, a fresh Rtc was built"
        );
        assert!(st.last_take.is_some());
        drop(st);
        pool.shared
            .0
            .lock()
            .unwrap()
            .items
            .push((Instant::now(), build(&None)));
        pool.shared
            .0
            .lock()
            .unwrap()
            .items
            .push((now - TTL * 3, build(&None)));
        // The newest entry is stale here: it is dropped and the fresh one returned.
        let _rtc = pool.take();
        assert!(pool.shared.0.lock().unwrap().items.is_empty());
    }
}
