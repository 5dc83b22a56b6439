//! A small stock of ready-made `Rtc` instances, built on a background thread.
//!
//! Building an `Rtc` generates DTLS key material (a few milliseconds of elliptic-curve work).
//! Done inside `create WebRtcEndpoint` it would run on the engine's thread and delay every
//! other client's requests during a burst of joins; the pool moves it to another core.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;
use str0m::Rtc;

/// How many ready `Rtc`s the pool keeps.
const STOCK: usize = 32;

pub(crate) struct RtcPool {
    shared: Arc<(Mutex<Vec<Rtc>>, Condvar)>,
    cert: Option<str0m::config::DtlsCert>,
}

impl RtcPool {
    /// Starts the builder thread (or none when `background` is false, for tests).
    pub fn new(cert: Option<str0m::config::DtlsCert>, background: bool) -> RtcPool {
        let shared = Arc::new((Mutex::new(Vec::with_capacity(STOCK)), Condvar::new()));
        if background {
            let (s, c) = (shared.clone(), cert.clone());
            let spawned = std::thread::Builder::new()
                .name("fluo-rtc-pool".into())
                .spawn(move || loop {
                    {
                        let (lock, cv) = &*s;
                        let mut stock = lock.lock().unwrap_or_else(|p| p.into_inner());
                        while stock.len() >= STOCK {
                            stock = cv.wait(stock).unwrap_or_else(|p| p.into_inner());
                        }
                    }
                    // Build without holding the lock.
                    let rtc = build(&c);
                    s.0.lock().unwrap_or_else(|p| p.into_inner()).push(rtc);
                });
            if let Err(e) = spawned {
                tracing::warn!("no Rtc pool thread ({e}); endpoints are built inline");
            }
        }
        RtcPool { shared, cert }
    }

    /// A ready `Rtc`, or one built now when the stock is empty.
    pub fn take(&self) -> Rtc {
        let (lock, cv) = &*self.shared;
        let ready = lock.lock().unwrap_or_else(|p| p.into_inner()).pop();
        cv.notify_one();
        ready.unwrap_or_else(|| build(&self.cert))
    }
}

fn build(cert: &Option<str0m::config::DtlsCert>) -> Rtc {
    // ICE-lite, as servers on reachable addresses do (mediasoup, Jitsi): Fluo answers the
    // browser's checks and follows its nomination instead of running its own paced checks, so
    // DTLS starts as soon as the browser has a working pair (a full agent waited for its
    // next 50 ms pacing tick first).
    let mut builder = Rtc::builder().set_rtp_mode(true).set_ice_lite(true);
    if let Some(cert) = cert {
        builder = builder.set_dtls_cert(cert.clone());
    }
    builder.build(Instant::now())
}
