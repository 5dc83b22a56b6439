//! The DTLS-SRTP keys of a thin viewer's handshake, taken from str0m without changing it:
//! fluo-egress's capturing provider (`fluo_egress::keys`, the one Fluo's media core uses for
//! the server's keys) around str0m's own aws-lc-rs provider.

use std::sync::{Arc, OnceLock};
use std::time::Instant;
use str0m::crypto::CryptoProvider;
use str0m::{Rtc, RtcConfig};

#[cfg(test)]
pub use fluo_egress::ExportedKeys;
pub use fluo_egress::KeySlot;

/// Builds an `Rtc` from `config` with the capturing provider; its DTLS session reports its
/// keys into the returned slot.
pub fn build_capturing(config: RtcConfig, now: Instant) -> (Rtc, KeySlot) {
    fluo_egress::build_capturing(config.set_crypto_provider(provider()), now)
}

/// str0m's own provider with its DTLS sessions wrapped; made once.
fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| fluo_egress::capturing_provider(str0m::crypto::from_feature_flags()))
        .clone()
}
