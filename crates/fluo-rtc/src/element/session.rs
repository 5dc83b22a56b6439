//! Settings that shape a WebRtcEndpoint's session: `mtu`, `rembParams` and
//! `networkInterfaces` (see `crate::settings` for what each accepts).

use super::WebRtcEndpoint;
use crate::core::lock;
use crate::settings;
use fluo_api::KurentoError;
use serde_json::Value;

impl WebRtcEndpoint {
    /// Sets mtu, rembParams or networkInterfaces; `None` when `name` is none of them.
    pub(super) fn set_session_property(
        &mut self,
        name: &str,
        value: &Value,
    ) -> Option<Result<(), KurentoError>> {
        Some(match name {
            "mtu" => self.set_mtu(value),
            "rembParams" => settings::remb_on_connect(value).map(|bps| {
                lock(&self.ep).settings.remb_on_connect = Some(bps);
            }),
            "networkInterfaces" => {
                let text = value.as_str().unwrap_or_default();
                settings::network_interfaces(text, &self.rtc.interfaces).map(|names| {
                    if self.candidates_added {
                        tracing::warn!(%name, "set after negotiation: it applies to no candidate of this session");
                    }
                    self.interfaces = names;
                })
            }
            _ => return None,
        })
    }

    /// str0m sizes its datagrams when a session is built: an endpoint that has not negotiated
    /// yet gets a new session of that size (same ICE credentials, which the media core knows
    /// it by); after negotiation the size cannot change.
    fn set_mtu(&mut self, value: &Value) -> Result<(), KurentoError> {
        let mtu = settings::check_mtu(value)?;
        let mut ep = lock(&self.ep);
        if ep.sdp.started() {
            return Err(KurentoError::illegal_param(
                "'mtu' must be set before the SDP negotiation (processOffer / generateOffer)",
            ));
        }
        if self.mtu.unwrap_or(settings::DEFAULT_MTU) != mtu {
            let creds = ep.rtc.direct_api().local_ice_credentials();
            let (rtc, keys) = self.rtc.pool.build_for_mtu(mtu, creds);
            ep.rtc = rtc;
            // A new session: new DTLS, new keys, and a new egress once it connects.
            ep.set_keys(keys);
        }
        self.mtu = Some(mtu);
        Ok(())
    }

    /// Whether a local address is on one of this endpoint's networkInterfaces.
    pub(super) fn on_interfaces(&self, addr: &std::net::SocketAddr) -> bool {
        let Some(names) = &self.interfaces else {
            return true;
        };
        self.rtc
            .interfaces
            .iter()
            .any(|(a, n)| a.ip() == addr.ip() && names.contains(n))
    }
}
