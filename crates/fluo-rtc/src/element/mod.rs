//! The WebRtcEndpoint as the engine sees it: negotiation and candidates on the signalling
//! thread, routing changes passed to the media thread. Offer and answer (and whether the
//! endpoint runs ICE-lite or full ICE) are in `negotiate`, its ICE candidates in
//! `candidates`, its data channels in `channels`.

mod candidates;
mod channels;
mod negotiate;
mod session;

use crate::core::{lock, Control, Ctl, Ep, EpRef};
use crate::pair::candidate_pair;
use crate::sdp::first_mid;
use crate::settings::{self, CtorOptions};
use crate::WebRtc;
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{Edge, Element, ElementCx, Factory, FactoryCx, StatsQuery};
use fluo_sfu::MediaKind;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use str0m::media::Direction;
use str0m::Candidate;

pub(crate) struct WebRtcFactory {
    pub rtc: WebRtc,
}

impl Factory for WebRtcFactory {
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        Ok(Box::new(self.endpoint(cx)?))
    }
}

impl WebRtcFactory {
    fn endpoint(&self, cx: &FactoryCx<'_>) -> Result<WebRtcEndpoint, KurentoError> {
        let recvonly = cx.params.get("recvonly").and_then(Value::as_bool) == Some(true);
        let sendonly = cx.params.get("sendonly").and_then(Value::as_bool) == Some(true);
        if recvonly && sendonly {
            return Err(KurentoError::illegal_param(
                "'recvonly' and 'sendonly' cannot both be true",
            ));
        }
        let options = CtorOptions::parse(cx.params, cx.given)?;
        // Ready-made (DTLS keys generated on another thread), sharing the process certificate.
        let (rtc, keys) = self.rtc.pool.take();
        let key = self.rtc.next_key();
        let mut ep = Ep::new(cx.id.to_string(), rtc);
        ep.set_keys(keys);
        ep.settings.tos = options.tos();
        ep.settings.data_channels = options.data_channels;
        ep.settings.bwe = self.rtc.bwe;
        ep.settings.keyframe_interval = options.keyframe_interval;
        let ep = Arc::new(Mutex::new(ep));
        self.rtc.board.add(&ep);
        let _ = self.rtc.ctl.send(Control(Ctl::Add {
            key,
            ep: ep.clone(),
        }));
        Ok(WebRtcEndpoint {
            remote_candidates: 0,
            server_channels: 0,
            key,
            ep,
            rtc: self.rtc.clone(),
            gathered: false,
            external: self.rtc.external,
            ice_tcp: !self.rtc.tcp_locals.is_empty(),
            stun: (None, 3478),
            turn: None,
            candidates_added: false,
            candidates: vec![],
            full_ice: false,
            options,
            interfaces: None,
            mtu: None,
            direction: if recvonly {
                Direction::RecvOnly
            } else if sendonly {
                Direction::SendOnly
            } else {
                Direction::SendRecv
            },
        })
    }
}

/// Most remote ICE candidates one endpoint accepts.
const MAX_REMOTE_CANDIDATES: usize = 100;
/// Most data channels Fluo opens on one endpoint.
const MAX_SERVER_CHANNELS: usize = 256;

struct WebRtcEndpoint {
    remote_candidates: usize,
    server_channels: usize,
    key: u64,
    ep: EpRef,
    rtc: WebRtc,
    gathered: bool,
    direction: Direction,
    /// externalIPv4 / externalIPv6 of this endpoint.
    external: (Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>),
    /// iceTcp: offer passive ICE-TCP candidates (when the server has listeners).
    ice_tcp: bool,
    /// stunServerAddress / stunServerPort of this endpoint (KMS's default port: 3478).
    stun: (Option<std::net::IpAddr>, u16),
    /// turnUrl of this endpoint.
    turn: Option<crate::turn::TurnUrl>,
    candidates_added: bool,
    /// The candidates added at the first negotiation (what gatherCandidates reports).
    candidates: Vec<Candidate>,
    /// The endpoint runs full ICE (see `negotiate`), else ICE-lite.
    full_ice: bool,
    /// useDataChannels and qosDscp.
    options: CtorOptions,
    /// networkInterfaces of this endpoint (`None`: every interface of the media sockets).
    interfaces: Option<Vec<String>>,
    /// mtu, when set.
    mtu: Option<usize>,
}

impl WebRtcEndpoint {
    fn wake(&self) {
        let _ = self.rtc.ctl.send(Control(Ctl::Wake { key: self.key }));
    }

    /// The endpoint negotiated: the router decides the routes to it again (what its peer
    /// accepted), and its outputs are drained.
    fn negotiated(&self) {
        let _ = self
            .rtc
            .ctl
            .send(Control(Ctl::CapsChanged { key: self.key }));
    }
}

impl WebRtcEndpoint {
    fn add_ice_candidate(&mut self, cand: &Value) -> Result<Value, KurentoError> {
        let text = cand
            .get("candidate")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim();
        let text = text.strip_prefix("a=").unwrap_or(text);
        if text.is_empty() {
            // End-of-candidates marker.
            return Ok(Value::Null);
        }
        // Browsers hide their addresses behind mDNS names (`<uuid>.local`) when the page has
        // no camera permission; those cannot be resolved here. Like KMS, accept and ignore
        // them: the browser's checks reach us anyway and show up as peer-reflexive.
        if text.split_whitespace().nth(4).is_some_and(|addr| {
            addr.parse::<std::net::IpAddr>().is_err() && addr.ends_with(".local")
        }) {
            tracing::debug!("ignoring an mDNS ICE candidate: {text}");
            return Ok(Value::Null);
        }
        let c = Candidate::from_sdp_string(text).map_err(|e| {
            KurentoError::foreign(
                ErrorCode::IceAddCandidateError,
                "Cannot parse the ICE candidate",
                e,
            )
        })?;
        let mut ep = lock(&self.ep);
        if self.remote_candidates >= MAX_REMOTE_CANDIDATES {
            return Err(KurentoError::new(
                ErrorCode::IceAddCandidateError,
                format!("Too many ICE candidates (at most {MAX_REMOTE_CANDIDATES} per endpoint)"),
            ));
        }
        self.remote_candidates += 1;
        self.permit(std::iter::once(text));
        crate::pair::remember(&mut ep, std::iter::once(text));
        // Kurento tutorials send candidates before the offer: kept for later.
        if let Some(c) = ep.sdp.candidate(c) {
            ep.rtc.add_remote_candidate(c);
            drop(ep);
            self.wake();
        }
        Ok(Value::Null)
    }

    fn gather(&mut self, cx: &mut ElementCx<'_>) -> Result<Value, KurentoError> {
        if self.gathered {
            return Ok(Value::Null);
        }
        self.gathered = true;
        let mid = lock(&self.ep)
            .sdp
            .local()
            .and_then(first_mid)
            .unwrap_or_else(|| "0".to_string());
        for c in self.candidates_to_report() {
            let line = c.to_sdp_string();
            let line = line.strip_prefix("a=").unwrap_or(&line).to_string();
            let mut fields = Map::new();
            fields.insert(
                "candidate".into(),
                json!({
                    "__module__": "kurento",
                    "__type__": "IceCandidate",
                    "candidate": line,
                    "sdpMid": mid,
                    "sdpMLineIndex": 0,
                }),
            );
            cx.emit("IceCandidateFound", fields);
        }
        cx.emit("IceGatheringDone", Map::new());
        Ok(Value::Null)
    }
}

impl Element for WebRtcEndpoint {
    fn invoke(
        &mut self,
        cx: &mut ElementCx<'_>,
        method: &str,
        params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        let s = |k: &str| params.get(k).and_then(Value::as_str).unwrap_or_default();
        Some(match method {
            // KMS raises MediaSessionStarted when processOffer or processAnswer succeeded.
            "processOffer" => self
                .process_offer(s("offer"))
                .inspect(|_| cx.emit("MediaSessionStarted", Map::new())),
            "generateOffer" => self.generate_offer(params.get("options")),
            "processAnswer" => self
                .process_answer(s("answer"))
                .inspect(|_| cx.emit("MediaSessionStarted", Map::new())),
            "addIceCandidate" => self.add_ice_candidate(params.get("candidate")?),
            "gatherCandidates" => self.gather(cx),
            "getLocalSessionDescriptor" => {
                lock(&self.ep).sdp.local().map(Value::from).ok_or_else(|| {
                    KurentoError::new(
                        ErrorCode::SdpEndPointNoLocalSdpError,
                        "No local session description yet",
                    )
                })
            }
            "getRemoteSessionDescriptor" => {
                lock(&self.ep).sdp.remote().map(Value::from).ok_or_else(|| {
                    KurentoError::new(
                        ErrorCode::SdpEndPointNoRemoteSdpError,
                        "No remote session description yet",
                    )
                })
            }
            "requestKeyframe" => {
                let _ = self.rtc.ctl.send(Control(Ctl::Keyframe { key: self.key }));
                Ok(Value::Null)
            }
            "isMediaFlowingIn" | "isMediaFlowingOut" => {
                let ep = lock(&self.ep);
                let flags = if method == "isMediaFlowingIn" {
                    ep.flowing_in
                } else {
                    ep.flowing_out
                };
                let kind = MediaKind::from_wire(s("mediaType"));
                Ok(Value::from(kind.is_some_and(|k| flags[k])))
            }
            "createDataChannel" => self.create_channel(params),
            "closeDataChannel" => self.close_channel(params),
            _ => return None,
        })
    }

    fn get_property(&self, name: &str) -> Option<Value> {
        let ep = lock(&self.ep);
        let state = if ep.connected {
            "CONNECTED"
        } else {
            "DISCONNECTED"
        };
        match name {
            "connectionState" => Some(Value::from(state)),
            "mediaState" => Some(Value::from(if ep.stats.media_connected {
                "CONNECTED"
            } else {
                "DISCONNECTED"
            })),
            "externalIPv4" => Some(json!(self
                .external
                .0
                .map(|i| i.to_string())
                .unwrap_or_default())),
            "externalIPv6" => Some(json!(self
                .external
                .1
                .map(|i| i.to_string())
                .unwrap_or_default())),
            "iceTcp" => Some(json!(self.ice_tcp)),
            "mtu" => Some(json!(self.mtu.unwrap_or(settings::DEFAULT_MTU))),
            "rembParams" => Some(settings::remb_params_value(
                ep.settings
                    .remb_on_connect
                    .unwrap_or(settings::DEFAULT_REMB_ON_CONNECT),
            )),
            "ICECandidatePairs" => Some(Value::Array(candidate_pair(&ep).into_iter().collect())),
            "IceConnectionState" => Some(json!([{
                "__module__": "kurento", "__type__": "IceConnection",
                "streamId": "1", "componentId": 1, "state": ep.ice_state,
            }])),
            "DtlsConnectionState" => {
                let dtls = match (ep.connected, ep.was_connected, ep.sdp.is_done()) {
                    (true, _, _) => "CONNECTED",
                    (false, true, _) => "CLOSED",
                    (false, false, true) => "CONNECTING",
                    _ => "NEW",
                };
                Some(json!([{
                    "__module__": "kurento", "__type__": "DtlsConnection",
                    "streamId": "1", "componentId": "1", "connectionId": "1", "state": dtls,
                }]))
            }
            _ => None,
        }
    }

    fn property_set(
        &mut self,
        _cx: &mut ElementCx<'_>,
        name: &str,
        value: &Value,
    ) -> Result<(), KurentoError> {
        let kbps = || -> Result<u64, KurentoError> {
            value
                .as_i64()
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| KurentoError::illegal_param(format!("'{name}' must be >= 0 (kbps)")))
        };
        if let Some(done) = self.set_network_property(name, value) {
            return done;
        }
        if let Some(done) = self.set_session_property(name, value) {
            return done;
        }
        let mut ep = lock(&self.ep);
        match name {
            "minVideoRecvBandwidth" => ep.settings.bandwidth.min_video_recv = kbps()?,
            "maxVideoRecvBandwidth" => ep.settings.bandwidth.max_video_recv = kbps()?,
            "minVideoSendBandwidth" => ep.settings.bandwidth.min_video_send = kbps()?,
            "maxVideoSendBandwidth" => ep.settings.bandwidth.max_video_send = kbps()?,
            _ => {}
        }
        Ok(())
    }

    fn restart_ice(
        &mut self,
        _cx: &mut ElementCx<'_>,
        ufrag: &str,
        pwd: &str,
    ) -> Option<Result<String, KurentoError>> {
        Some(WebRtcEndpoint::restart_ice(self, ufrag, pwd))
    }

    fn set_layer_limits(&mut self, limits: fluo_sfu::LayerLimits) {
        let key = self.key;
        let _ = self.rtc.ctl.send(Control(Ctl::LayerLimits { key, limits }));
    }

    fn stats(&mut self, q: &StatsQuery<'_>) -> Option<Map<String, Value>> {
        Some(crate::stats::report(&mut lock(&self.ep), q))
    }

    fn media_connected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.route(edge, true);
    }

    fn media_disconnected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.route(edge, false);
    }

    fn released(&mut self) {
        // RTCP BYE, SCTP shutdown and DTLS close_notify: the browser learns at once that the
        // session is over. The media core sends them, then forgets the endpoint.
        if let Err(e) = lock(&self.ep).rtc.close() {
            tracing::debug!("closing the WebRTC session: {e}");
        }
        let _ = self.rtc.ctl.send(Control(Ctl::Remove { key: self.key }));
        self.rtc.board.release(&self.ep);
    }
}

impl WebRtcEndpoint {
    fn route(&self, edge: &Edge, add: bool) {
        if edge.source != lock(&self.ep).id {
            return;
        }
        let kind = edge.media_kind();
        tracing::debug!(source = %edge.source, sink = %edge.sink, media = %edge.media_type, add, "route");
        let _ = self.rtc.ctl.send(Control(Ctl::Route {
            src: self.key,
            sink_id: edge.sink.clone(),
            kind,
            add,
        }));
    }
}
