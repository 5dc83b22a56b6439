//! A WebRtcEndpoint's data channels opened by the server (createDataChannel,
//! closeDataChannel).

use super::{WebRtcEndpoint, MAX_SERVER_CHANNELS};
use crate::core::{lock, Ep};
use fluo_api::{ErrorCode, KurentoError};
use serde_json::{Map, Value};
use str0m::channel::{ChannelConfig, Reliability};

impl WebRtcEndpoint {
    pub(super) fn create_channel(&mut self, p: &Map<String, Value>) -> Result<Value, KurentoError> {
        let int = |k: &str| p.get(k).and_then(Value::as_i64).unwrap_or(-1);
        let reliability = match (int("maxPacketLifeTime"), int("maxRetransmits")) {
            (t, _) if t >= 0 => Reliability::MaxPacketLifetime {
                lifetime: t.min(i64::from(u16::MAX)) as u16,
            },
            (_, r) if r >= 0 => Reliability::MaxRetransmits {
                retransmits: r.min(i64::from(u16::MAX)) as u16,
            },
            _ => Reliability::Reliable,
        };
        let config = ChannelConfig {
            label: p
                .get("label")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            ordered: p.get("ordered").and_then(Value::as_bool).unwrap_or(true),
            reliability,
            negotiated: None,
            protocol: p
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
        };
        let mut ep = lock(&self.ep);
        if !ep.sdp.is_done() || !self.data_channels_negotiated(&ep) {
            return Err(KurentoError::new(
                ErrorCode::MediaObjectOperationNotSupported,
                "createDataChannel needs a negotiated session with a data-channel (m=application) section",
            ));
        }
        if self.server_channels >= MAX_SERVER_CHANNELS {
            return Err(KurentoError::new(
                ErrorCode::NotEnoughResources,
                format!("At most {MAX_SERVER_CHANNELS} data channels per endpoint"),
            ));
        }
        self.server_channels += 1;
        ep.rtc.direct_api().create_data_channel(config);
        drop(ep);
        self.wake();
        Ok(Value::Null)
    }

    pub(super) fn close_channel(&mut self, p: &Map<String, Value>) -> Result<Value, KurentoError> {
        let sid = p.get("channelId").and_then(Value::as_i64).unwrap_or(-1);
        let mut ep = lock(&self.ep);
        let cid = u16::try_from(sid)
            .ok()
            .and_then(|s| ep.rtc.direct_api().channel_id_by_sctp_stream_id(s))
            .ok_or_else(|| KurentoError::illegal_param(format!("No data channel with id {sid}")))?;
        ep.rtc.direct_api().close_data_channel(cid);
        drop(ep);
        self.wake();
        Ok(Value::Null)
    }

    /// Kurento-shaped statistics: the endpoint, the session, and one inbound and one outbound
    /// RTP stream per media kind that carried packets.
    pub(super) fn data_channels_negotiated(&self, ep: &Ep) -> bool {
        // Declined without useDataChannels (the answer keeps a rejected m=application).
        self.options.data_channels
            && ep.sdp.local().is_some_and(|s| {
                s.lines()
                    .any(|l| l.starts_with("m=application ") && !l.starts_with("m=application 0 "))
            })
    }
}
