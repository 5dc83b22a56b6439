//! str0m's crypto with one DTLS configuration shared by every endpoint.
//!
//! str0m's aws-lc-rs backend builds a new `dimpl::Config` for every `Rtc`, and building one
//! validates the whole crypto provider: cipher self-tests plus a key exchange round trip on
//! X25519, P-256 and P-384. That was most of the cost of creating an endpoint (see
//! docs/perf.md, "Joins"). A configuration holds no per-session state (no keys, no random
//! seed), so one validated configuration per MTU serves every DTLS session; everything else
//! is str0m's aws-lc-rs provider unchanged.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::{CryptoError, CryptoProvider};

/// str0m's default provider with [`SharedConfigDtls`] for DTLS.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            Arc::new(CryptoProvider {
                dtls_provider: &PROVIDER_DTLS,
                ..str0m::crypto::from_feature_flags()
            })
        })
        .clone()
}

static PROVIDER_DTLS: SharedConfigDtls = SharedConfigDtls {
    configs: Mutex::new(Vec::new()),
};

/// DTLS sessions from a validated configuration built once per MTU.
#[derive(Debug)]
struct SharedConfigDtls {
    configs: Mutex<Vec<(Option<usize>, Arc<dimpl::Config>)>>,
}

impl SharedConfigDtls {
    fn config(&self, mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        let mut configs = self.configs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = configs.iter().find(|(m, _)| *m == mtu) {
            return Ok(c.clone());
        }
        // As str0m's backend sets it up: ICE has verified the peer's address before DTLS,
        // so the server cookie exchange would only cost a round trip.
        let mut builder = dimpl::Config::builder().use_server_cookie(false);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(
            builder
                .build()
                .map_err(|e| CryptoError::Other(format!("DTLS configuration: {e}")))?,
        );
        configs.push((mtu, config.clone()));
        Ok(config)
    }
}

impl DtlsProvider for SharedConfigDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = self.config(mtu)?;
        let cert = cert.clone();
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            v => return Err(CryptoError::Other(format!("DTLS version {v:?}"))),
        };
        Ok(Box::new(Session(dtls)))
    }
}

/// One DTLS session: dimpl's, as str0m's backend wraps it.
struct Session(dimpl::Dtls);

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

impl DtlsInstance for Session {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active)
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packets a session has to send, and whether it reported the handshake done.
    fn pump(s: &mut dyn DtlsInstance, out: &mut Vec<Vec<u8>>) -> bool {
        let mut buf = vec![0u8; 2048];
        let mut connected = false;
        loop {
            match s.poll_output(&mut buf) {
                DtlsOutput::Packet(p) => out.push(p.to_vec()),
                DtlsOutput::Connected => connected = true,
                DtlsOutput::Timeout(_) => return connected,
                _ => {}
            }
        }
    }

    #[test]
    fn sessions_from_the_one_configuration_complete_a_handshake() {
        let dtls = provider().dtls_provider;
        let cert = dtls.generate_certificate().expect("a certificate");
        let now = Instant::now();
        let mut client = dtls
            .new_dtls(&cert, now, DtlsVersion::Dtls12, Some(1150))
            .expect("client");
        let mut server = dtls
            .new_dtls(&cert, now, DtlsVersion::Dtls12, Some(1150))
            .expect("server");
        client.set_active(true);
        server.set_active(false);
        let (mut client_done, mut server_done) = (false, false);
        for _ in 0..20 {
            // The timers start the client's first flight.
            client.handle_timeout(now).expect("client timer");
            server.handle_timeout(now).expect("server timer");
            let mut to_server = vec![];
            client_done |= pump(client.as_mut(), &mut to_server);
            for p in &to_server {
                server.handle_packet(p).expect("server reads");
            }
            let mut to_client = vec![];
            server_done |= pump(server.as_mut(), &mut to_client);
            for p in &to_client {
                client.handle_packet(p).expect("client reads");
            }
            if client_done && server_done {
                break;
            }
        }
        assert!(client_done && server_done, "handshake incomplete");
        // Every session of one MTU gets the same configuration, built once.
        let a = PROVIDER_DTLS.config(Some(1150)).unwrap();
        let b = PROVIDER_DTLS.config(Some(1150)).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &PROVIDER_DTLS.config(Some(1200)).unwrap()));
    }
}
