//! The DTLS-SRTP keys of a thin viewer's handshake, taken from str0m without changing it.
//!
//! str0m's crypto is pluggable: `RtcConfig::set_crypto_provider` takes a `CryptoProvider`
//! whose `dtls_provider` makes one `DtlsInstance` per `Rtc` inside `RtcConfig::build`. str0m
//! polls that instance and installs `DtlsOutput::KeyingMaterial` as its SRTP contexts; a
//! wrapping instance sees the same output on its way and copies it into a [`KeySlot`]. The
//! provider says nothing about which `Rtc` an instance is for, so the slot is handed over in
//! a thread-local around the (synchronous) `build` call: [`build_capturing`]. The egress
//! spike (branch spike-egress) captures the server's keys the same way.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
    SrtpProfile,
};
use str0m::crypto::{CryptoError, CryptoProvider};
use str0m::{Rtc, RtcConfig};

/// What the DTLS handshake of one session exported for SRTP.
#[derive(Clone)]
pub struct ExportedKeys {
    pub profile: SrtpProfile,
    /// RFC 5764 §4.2: client key | server key | client salt | server salt.
    pub material: Vec<u8>,
    /// This side was the DTLS client.
    pub client: bool,
}

/// Where one session's keys land once its handshake completes.
pub type KeySlot = Arc<Mutex<Option<ExportedKeys>>>;

thread_local! {
    static NEXT: RefCell<Option<KeySlot>> = const { RefCell::new(None) };
}

/// Builds an `Rtc` from `config` with the capturing provider; its DTLS session reports its
/// keys into the returned slot.
pub fn build_capturing(config: RtcConfig, now: Instant) -> (Rtc, KeySlot) {
    let slot = KeySlot::default();
    NEXT.with(|n| *n.borrow_mut() = Some(slot.clone()));
    let rtc = config.set_crypto_provider(provider()).build(now);
    NEXT.with(|n| n.borrow_mut().take());
    (rtc, slot)
}

/// str0m's own provider (aws-lc-rs) with its DTLS sessions wrapped; made once.
fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| {
        let base = str0m::crypto::from_feature_flags();
        let inner = base.dtls_provider;
        let wrapper: &'static Capturing = Box::leak(Box::new(Capturing { inner }));
        Arc::new(CryptoProvider {
            dtls_provider: wrapper,
            ..base
        })
    })
    .clone()
}

#[derive(Debug)]
struct Capturing {
    inner: &'static dyn DtlsProvider,
}

impl DtlsProvider for Capturing {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let inner = self.inner.new_dtls(cert, now, dtls_version, mtu)?;
        let slot = NEXT.with(|n| n.borrow_mut().take());
        Ok(Box::new(Session { inner, slot }))
    }
}

struct Session {
    inner: Box<dyn DtlsInstance>,
    slot: Option<KeySlot>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

impl DtlsInstance for Session {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active)
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let out = self.inner.poll_output(buf);
        if let (DtlsOutput::KeyingMaterial(km, profile), Some(slot)) = (&out, &self.slot) {
            let keys = ExportedKeys {
                profile: *profile,
                material: km.to_vec(),
                client: self.inner.is_active(),
            };
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(keys);
        }
        out
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}
