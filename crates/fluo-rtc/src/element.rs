//! The WebRtcEndpoint as the engine sees it: negotiation and candidates on the signalling
//! thread, routing changes passed to the media thread.

use crate::core::{
    candidate_pair, kind_name, lock, obj, Control, Ctl, Ep, EpRef, AUDIO, DATA, VIDEO,
};
use crate::sdp::{first_mid, unify_msid};
use crate::WebRtc;
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{Edge, Element, ElementCx, Factory, FactoryCx};
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::channel::{ChannelConfig, Reliability};
use str0m::media::{Direction, MediaKind};
use str0m::Candidate;

pub(crate) struct WebRtcFactory {
    pub rtc: WebRtc,
}

impl Factory for WebRtcFactory {
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        let recvonly = cx.params.get("recvonly").and_then(Value::as_bool) == Some(true);
        let sendonly = cx.params.get("sendonly").and_then(Value::as_bool) == Some(true);
        if recvonly && sendonly {
            return Err(KurentoError::illegal_param(
                "'recvonly' and 'sendonly' cannot both be true",
            ));
        }
        // Ready-made (DTLS keys generated on another thread), sharing the process certificate.
        let rtc = self.rtc.pool.take();
        let key = self.rtc.next_key();
        let ep = Arc::new(Mutex::new(Ep::new(cx.id.to_string(), rtc)));
        let _ = self.rtc.ctl.send(Control(Ctl::Add {
            key,
            ep: ep.clone(),
        }));
        Ok(Box::new(WebRtcEndpoint {
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
            direction: if recvonly {
                Direction::RecvOnly
            } else if sendonly {
                Direction::SendOnly
            } else {
                Direction::SendRecv
            },
        }))
    }
}

/// Candidates and address translations (local, announced) for a first negotiation.
type Prepared = (
    Vec<Candidate>,
    Vec<(std::net::SocketAddr, std::net::SocketAddr)>,
);

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
}

fn sdp_err(code: ErrorCode, what: &str, e: impl std::fmt::Display) -> KurentoError {
    KurentoError::new(code, format!("{what}: {e}"))
}

impl WebRtcEndpoint {
    fn wake(&self) {
        let _ = self.rtc.ctl.send(Control(Ctl::Wake { key: self.key }));
    }

    /// Our addresses as announced: each local address, or, where an external address is set
    /// for its IP family, that address on the same port (KMS: "forces all local candidates
    /// to have the given address"). Pairs of (local socket, announced address).
    fn announced(&self) -> Vec<(std::net::SocketAddr, std::net::SocketAddr)> {
        self.announce(&self.rtc.locals)
    }

    /// [`Self::announced`] for any local addresses (the ICE-TCP listeners too).
    fn announce(
        &self,
        locals: &[std::net::SocketAddr],
    ) -> Vec<(std::net::SocketAddr, std::net::SocketAddr)> {
        locals
            .iter()
            .map(|addr| {
                let ext: Option<std::net::IpAddr> = match addr {
                    std::net::SocketAddr::V4(_) => self.external.0.map(Into::into),
                    std::net::SocketAddr::V6(_) => self.external.1.map(Into::into),
                };
                let public = ext.map_or(*addr, |ip| std::net::SocketAddr::new(ip, addr.port()));
                (*addr, public)
            })
            .collect()
    }

    /// Public addresses learnt from STUN (the server-wide server's, or this endpoint's own,
    /// waiting for it at most a moment) for sockets without an external address.
    fn reflexive(&self) -> Vec<(std::net::SocketAddr, std::net::SocketAddr)> {
        let announced = self.announced();
        let own = self
            .own_stun()
            .map(|s| self.rtc.stun_cache.wait(&s, crate::stun::ENDPOINT_WAIT))
            .unwrap_or_default();
        let learnt = if self.own_stun().is_some() {
            own
        } else {
            self.rtc.srflx.to_vec()
        };
        learnt
            .into_iter()
            .filter(|(local, _)| announced.iter().any(|(l, p)| l == local && l == p))
            .collect()
    }

    /// Asks the TURN relays to let the addresses of these remote candidates (SDP candidate
    /// lines or attribute values) through.
    fn permit<'a>(&self, lines: impl Iterator<Item = &'a str>) {
        if self.rtc.relayed.is_empty() && self.turn.is_none() {
            return;
        }
        let ips: Vec<std::net::IpAddr> = lines
            .filter_map(|l| {
                let l = l.trim().strip_prefix("a=").unwrap_or(l.trim());
                l.starts_with("candidate:")
                    .then(|| l.split_whitespace().nth(4)?.parse().ok())
                    .flatten()
            })
            .take(MAX_REMOTE_CANDIDATES)
            .collect();
        if !ips.is_empty() {
            let owner = self.own_turn();
            let _ = self.rtc.ctl.send(Control(Ctl::Permit { ips, owner }));
        }
    }

    /// This endpoint's own STUN server (stunServerAddress / stunServerPort), when it differs
    /// from the server-wide one.
    fn own_stun(&self) -> Option<std::net::SocketAddr> {
        let server = std::net::SocketAddr::new(self.stun.0?, self.stun.1);
        (Some(server) != self.rtc.stun_server).then_some(server)
    }

    /// Starts asking this endpoint's STUN server (once per server, for every endpoint), so
    /// that the answer is there by the time the candidates are written.
    fn ask_stun(&self) {
        if let Some(server) = self.own_stun() {
            if self.candidates_added {
                tracing::warn!("stunServerAddress set after negotiation: it applies to no candidate of this session");
            }
            if self.rtc.stun_cache.request(&server) {
                let _ = self.rtc.ctl.send(Control(Ctl::Discover { server }));
            }
        }
    }

    /// The key of this endpoint's own turnUrl in the relay cache.
    fn own_turn(&self) -> Option<String> {
        self.turn.as_ref().map(|t| {
            format!(
                "{}:{}@{}{}",
                t.user,
                t.password,
                t.server,
                if t.tcp { "?transport=tcp" } else { "" }
            )
        })
    }

    /// Starts allocating on this endpoint's TURN server (once per URL, for every endpoint),
    /// on a thread of its own: the engine's thread never waits for a network round trip.
    fn ask_turn(&self) {
        let (Some(url), Some(key)) = (self.turn.clone(), self.own_turn()) else {
            return;
        };
        if self.candidates_added {
            tracing::warn!(
                "turnUrl set after negotiation: it applies to no candidate of this session"
            );
        }
        if !self.rtc.relay_cache.request(&key) {
            return;
        }
        let (cache, ctl, clock) = (
            self.rtc.relay_cache.clone(),
            self.rtc.ctl.clone(),
            self.rtc.clock,
        );
        let ips: Vec<std::net::IpAddr> = self.rtc.locals.iter().map(|a| a.ip()).collect();
        /// Forgets the URL if the allocating thread ends without an answer (a panic).
        struct Unanswered(Option<(Arc<crate::turn::RelayCache>, String)>);
        impl Drop for Unanswered {
            fn drop(&mut self) {
                if let Some((cache, key)) = self.0.take() {
                    cache.finish(&key, vec![]);
                }
            }
        }
        let guard = Unanswered(Some((cache.clone(), key.clone())));
        let spawned = std::thread::Builder::new()
            .name("fluo-turn-alloc".into())
            .spawn(move || {
                let mut guard = guard;
                let mut pairs = vec![];
                for (sock, mut relay) in crate::turn::allocate_extra(&url, &ips, clock) {
                    let local = sock.as_ref().and_then(|s| s.local_addr().ok());
                    pairs.push((local.unwrap_or(relay.relayed), relay.relayed));
                    relay.owner = Some(key.clone());
                    let relay = Box::new(relay);
                    let _ = ctl.send(Control(Ctl::AddRelay {
                        socket: sock,
                        relay,
                    }));
                }
                guard.0 = None;
                cache.finish(&key, pairs);
            });
        if let Err(e) = spawned {
            // The closure, and the guard in it, were dropped: the URL is forgotten.
            tracing::warn!("no thread for the TURN allocation: {e}");
        }
    }

    /// Relayed addresses: the server-wide TURN server's, and this endpoint's own (waiting
    /// for its allocation at most a moment).
    fn relayed(&self) -> Vec<(std::net::SocketAddr, std::net::SocketAddr)> {
        let mut all = self.rtc.relayed.to_vec();
        if let Some(key) = self.own_turn() {
            all.extend(self.rtc.relay_cache.wait(&key, crate::turn::ENDPOINT_WAIT));
        }
        all
    }

    /// The ICE-TCP listeners as announced, when this endpoint uses ICE-TCP.
    fn announced_tcp(&self) -> Vec<(std::net::SocketAddr, std::net::SocketAddr)> {
        if self.ice_tcp {
            self.announce(&self.rtc.tcp_locals)
        } else {
            vec![]
        }
    }

    /// Our ICE candidates: the announced addresses, then the STUN-learnt ones (all as host
    /// candidates: the endpoints run ICE-lite, which announces no other kind), then passive
    /// ICE-TCP ones.
    fn local_candidates(&self) -> Vec<Candidate> {
        // TURN-relayed addresses, like STUN-learnt ones, are announced as host candidates.
        let relayed = self.relayed();
        let udp = self
            .announced()
            .into_iter()
            .chain(self.reflexive())
            .chain(relayed)
            .filter_map(|(_, public)| Candidate::host(public, "udp").ok());
        let tcp = self.announced_tcp().into_iter().filter_map(|(_, public)| {
            Candidate::builder()
                .tcp()
                .host(public)
                .tcptype(str0m::net::TcpType::Passive)
                .build()
                .ok()
        });
        udp.chain(tcp).collect()
    }

    /// The candidates and address translations to add at the first negotiation, computed
    /// before the endpoint is locked: an endpoint's own STUN/TURN answer may take a moment,
    /// and the media thread must not wait for it behind the endpoint's lock.
    fn prepare_candidates(&self) -> Option<Prepared> {
        if self.candidates_added {
            return None;
        }
        let nat = self
            .announced()
            .into_iter()
            .chain(self.reflexive())
            .chain(self.announced_tcp())
            .filter(|(local, public)| local != public)
            .collect();
        Some((self.local_candidates(), nat))
    }

    /// Adds our candidates to the session before its first SDP is written; the media core
    /// translates between the announced addresses and the local sockets.
    fn add_candidates(&mut self, ep: &mut Ep, prepared: Option<Prepared>) {
        let Some((candidates, nat)) = prepared else {
            return;
        };
        if std::mem::replace(&mut self.candidates_added, true) {
            return;
        }
        for c in candidates {
            ep.rtc.add_local_candidate(c);
        }
        ep.nat = nat;
    }

    fn process_offer(&mut self, offer: &str) -> Result<Value, KurentoError> {
        crate::sdp::check_payload_types(offer)
            .map_err(|e| sdp_err(ErrorCode::SdpParseError, "Cannot use the SDP offer", e))?;
        let parsed = SdpOffer::from_sdp_string(&crate::sdp::without_egress_feedback(offer))
            .map_err(|e| sdp_err(ErrorCode::SdpParseError, "Cannot parse the SDP offer", e))?;
        let ep_ref = self.ep.clone();
        let prepared = self.prepare_candidates();
        let mut ep = lock(&ep_ref);
        if ep.negotiated || ep.pending_offer.is_some() {
            return Err(KurentoError::new(
                ErrorCode::SdpEndPointAlreadyNegotiated,
                "This endpoint has already negotiated a session",
            ));
        }
        self.add_candidates(&mut ep, prepared);
        self.permit(offer.lines());
        let answer = ep.rtc.sdp_api().accept_offer(parsed).map_err(|e| {
            sdp_err(
                ErrorCode::SdpEndPointProcessOfferError,
                "Cannot process the SDP offer",
                e,
            )
        })?;
        let answer = unify_msid(&answer.to_sdp_string());
        ep.negotiated = true;
        ep.remote_sdp = Some(offer.to_string());
        ep.local_sdp = Some(answer.clone());
        ep.learn_mids();
        for c in std::mem::take(&mut ep.early_candidates) {
            ep.rtc.add_remote_candidate(c);
        }
        drop(ep);
        self.wake();
        Ok(Value::from(answer))
    }

    fn generate_offer(&mut self, options: Option<&Value>) -> Result<Value, KurentoError> {
        let want = |k: &str| {
            options
                .and_then(|o| o.get(k))
                .and_then(Value::as_bool)
                .unwrap_or(true)
        };
        let ep_ref = self.ep.clone();
        let prepared = self.prepare_candidates();
        let mut ep = lock(&ep_ref);
        if ep.negotiated || ep.pending_offer.is_some() {
            return Err(KurentoError::new(
                ErrorCode::SdpEndPointAlreadyNegotiated,
                "This endpoint has already negotiated a session",
            ));
        }
        self.add_candidates(&mut ep, prepared);
        let mut api = ep.rtc.sdp_api();
        for (kind, receive) in [
            (MediaKind::Audio, want("offerToReceiveAudio")),
            (MediaKind::Video, want("offerToReceiveVideo")),
        ] {
            let dir = match (self.direction, receive) {
                (Direction::SendRecv, true) => Direction::SendRecv,
                (Direction::SendRecv, false) | (Direction::SendOnly, _) => Direction::SendOnly,
                _ => Direction::RecvOnly,
            };
            api.add_media(kind, dir, None, None, None);
        }
        let Some((offer, pending)) = api.apply() else {
            return Err(KurentoError::new(
                ErrorCode::SdpEndPointGenerateOfferError,
                "Nothing to offer",
            ));
        };
        let text = unify_msid(&offer.to_sdp_string());
        ep.pending_offer = Some(pending);
        ep.local_sdp = Some(text.clone());
        ep.learn_mids();
        Ok(Value::from(text))
    }

    fn process_answer(&mut self, answer: &str) -> Result<Value, KurentoError> {
        crate::sdp::check_payload_types(answer)
            .map_err(|e| sdp_err(ErrorCode::SdpParseError, "Cannot use the SDP answer", e))?;
        let parsed = SdpAnswer::from_sdp_string(answer)
            .map_err(|e| sdp_err(ErrorCode::SdpParseError, "Cannot parse the SDP answer", e))?;
        let mut ep = lock(&self.ep);
        let Some(pending) = ep.pending_offer.take() else {
            return Err(KurentoError::new(
                if ep.negotiated {
                    ErrorCode::SdpEndPointAnswerAlreadyProcessed
                } else {
                    ErrorCode::SdpEndPointNotOfferGenerated
                },
                "processAnswer needs an offer from generateOffer first",
            ));
        };
        ep.rtc
            .sdp_api()
            .accept_answer(pending, parsed)
            .map_err(|e| {
                sdp_err(
                    ErrorCode::SdpEndPointProcessAnswerError,
                    "Cannot process the SDP answer",
                    e,
                )
            })?;
        ep.negotiated = true;
        ep.remote_sdp = Some(answer.to_string());
        self.permit(answer.lines());
        for c in std::mem::take(&mut ep.early_candidates) {
            ep.rtc.add_remote_candidate(c);
        }
        let local = ep.local_sdp.clone().unwrap_or_default();
        drop(ep);
        self.wake();
        Ok(Value::from(local))
    }

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
            KurentoError::new(
                ErrorCode::IceAddCandidateError,
                format!("Cannot parse ICE candidate '{text}': {e}"),
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
        if ep.negotiated {
            ep.rtc.add_remote_candidate(c);
            drop(ep);
            self.wake();
        } else {
            // Kurento tutorials send candidates before the offer: keep them for later.
            ep.early_candidates.push(c);
        }
        Ok(Value::Null)
    }

    fn gather(&mut self, cx: &mut ElementCx<'_>) -> Result<Value, KurentoError> {
        if self.gathered {
            return Ok(Value::Null);
        }
        self.gathered = true;
        let mid = lock(&self.ep)
            .local_sdp
            .as_deref()
            .and_then(first_mid)
            .unwrap_or_else(|| "0".to_string());
        for c in self.local_candidates() {
            {
                let line = c.to_sdp_string();
                let line = line.strip_prefix("a=").unwrap_or(&line).to_string();
                cx.emit(
                    "IceCandidateFound",
                    obj(json!({"candidate": {
                        "__module__": "kurento",
                        "__type__": "IceCandidate",
                        "candidate": line,
                        "sdpMid": mid,
                        "sdpMLineIndex": 0,
                    }})),
                );
            }
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
            "processOffer" => self.process_offer(s("offer")),
            "generateOffer" => self.generate_offer(params.get("options")),
            "processAnswer" => self.process_answer(s("answer")),
            "addIceCandidate" => self.add_ice_candidate(params.get("candidate")?),
            "gatherCandidates" => self.gather(cx),
            "getLocalSessionDescriptor" => lock(&self.ep)
                .local_sdp
                .clone()
                .map(Value::from)
                .ok_or_else(|| {
                    KurentoError::new(
                        ErrorCode::SdpEndPointNoLocalSdpError,
                        "No local session description yet",
                    )
                }),
            "getRemoteSessionDescriptor" => lock(&self.ep)
                .remote_sdp
                .clone()
                .map(Value::from)
                .ok_or_else(|| {
                    KurentoError::new(
                        ErrorCode::SdpEndPointNoRemoteSdpError,
                        "No remote session description yet",
                    )
                }),
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
                Ok(Value::from(match s("mediaType") {
                    "AUDIO" => flags[AUDIO],
                    "VIDEO" => flags[VIDEO],
                    _ => false,
                }))
            }
            "getStats" => {
                Ok(self.stats(cx.wall_ms, params.get("mediaType").and_then(Value::as_str)))
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
            "connectionState" | "mediaState" => Some(Value::from(state)),
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
            "ICECandidatePairs" => Some(Value::Array(candidate_pair(&ep).into_iter().collect())),
            "IceConnectionState" => Some(json!([{
                "__module__": "kurento", "__type__": "IceConnection",
                "streamId": "1", "componentId": 1, "state": ep.ice_state,
            }])),
            "DtlsConnectionState" => {
                let dtls = match (ep.connected, ep.was_connected, ep.negotiated) {
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
        if name == "stunServerAddress" {
            let text = value.as_str().unwrap_or_default().trim();
            self.stun.0 = if text.is_empty() {
                None
            } else {
                Some(text.parse().map_err(|_| {
                    KurentoError::illegal_param(format!(
                        "'stunServerAddress' must be an IP address, not '{text}'"
                    ))
                })?)
            };
            self.ask_stun();
            return Ok(());
        }
        if name == "stunServerPort" {
            self.stun.1 = value
                .as_i64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    KurentoError::illegal_param("'stunServerPort' must be a port (1-65535)")
                })?;
            self.ask_stun();
            return Ok(());
        }
        if name == "turnUrl" {
            let text = value.as_str().unwrap_or_default().trim();
            self.turn = if text.is_empty() {
                None
            } else {
                Some(
                    crate::turn::TurnUrl::parse_ip(text)
                        .map_err(|e| KurentoError::illegal_param(format!("turnUrl: {e}")))?,
                )
            };
            self.ask_turn();
            return Ok(());
        }
        if name == "iceTcp" {
            let on = value
                .as_bool()
                .ok_or_else(|| KurentoError::illegal_param("'iceTcp' must be a boolean"))?;
            self.ice_tcp = on && !self.rtc.tcp_locals.is_empty();
            if on && !self.ice_tcp {
                tracing::warn!("iceTcp: the server has no ICE-TCP listener (KMS_ICE_TCP=0)");
            }
            if self.candidates_added {
                tracing::warn!(%name, "set after negotiation: it applies to no candidate of this session");
            }
            return Ok(());
        }
        if let ("externalIPv4" | "externalIPv6", Some(text)) = (name, value.as_str()) {
            let text = text.trim();
            let bad = || {
                KurentoError::illegal_param(format!(
                    "'{name}' must be an IP address of its family, not '{text}'"
                ))
            };
            if name == "externalIPv4" {
                self.external.0 = if text.is_empty() {
                    None
                } else {
                    Some(text.parse().map_err(|_| bad())?)
                };
            } else {
                self.external.1 = if text.is_empty() {
                    None
                } else {
                    Some(text.parse().map_err(|_| bad())?)
                };
            }
            if self.candidates_added {
                tracing::warn!(%name, "set after negotiation: it applies to no candidate of this session");
            }
            return Ok(());
        }
        let mut ep = lock(&self.ep);
        match name {
            "minVideoRecvBandwidth" => ep.bandwidth.min_video_recv = kbps()?,
            "maxVideoRecvBandwidth" => ep.bandwidth.max_video_recv = kbps()?,
            "minVideoSendBandwidth" => ep.bandwidth.min_video_send = kbps()?,
            "maxVideoSendBandwidth" => ep.bandwidth.max_video_send = kbps()?,
            _ => {}
        }
        Ok(())
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
    }
}

impl WebRtcEndpoint {
    fn create_channel(&mut self, p: &Map<String, Value>) -> Result<Value, KurentoError> {
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
        if !ep.negotiated || !self.data_channels_negotiated(&ep) {
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

    fn close_channel(&mut self, p: &Map<String, Value>) -> Result<Value, KurentoError> {
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
    fn stats(&self, wall_ms: u64, media: Option<&str>) -> Value {
        let ep = lock(&self.ep);
        let short = ep.id.rsplit('/').next().unwrap_or(&ep.id).to_string();
        let mut out = Map::new();
        let base = |id: &str, ty: &str, class: &str| json!({"__module__": "kurento", "__type__": class, "id": id, "type": ty, "timestampMillis": wall_ms});
        let mut e = base(&format!("{short}_endpoint"), "endpoint", "EndpointStats");
        e["inputLatency"] = json!([]);
        e["E2ELatency"] = json!([]);
        out.insert(format!("{short}_endpoint"), e);
        let mut pc = base(
            &format!("{short}_session"),
            "session",
            "RTCPeerConnectionStats",
        );
        pc["dataChannelsOpened"] = json!(ep.channels_opened);
        pc["dataChannelsClosed"] = json!(ep.channels_closed);
        out.insert(format!("{short}_session"), pc);
        for kind in [AUDIO, VIDEO] {
            let name = kind_name(kind);
            if media.is_some_and(|m| m != name) {
                continue;
            }
            let c = ep.stats[kind];
            let rtp = |ty: &str, class: &str, dir: &str, ssrc: u32| {
                let id = format!("{short}_{dir}_{}", name.to_lowercase());
                let mut v = base(&id, ty, class);
                v["ssrc"] = json!(ssrc.to_string());
                v["isRemote"] = json!(false);
                v["mediaTrackId"] = json!(name.to_lowercase());
                v["transportId"] = json!(format!("{short}_transport"));
                v["codecId"] = json!("");
                v["associateStatsId"] = json!("");
                for k in ["firCount", "nackCount", "sliCount", "remb", "packetsLost"] {
                    v[k] = json!(0);
                }
                v["fractionLost"] = json!(0.0);
                (id, v)
            };
            if c.in_packets > 0 {
                let (id, mut v) = rtp("inboundrtp", "RTCInboundRTPStreamStats", "in", c.in_ssrc);
                v["pliCount"] = json!(if kind == VIDEO {
                    ep.keyframe_requests_sent
                } else {
                    0
                });
                v["packetsReceived"] = json!(c.in_packets);
                v["bytesReceived"] = json!(c.in_bytes);
                v["jitter"] = json!(0.0);
                out.insert(id, v);
            }
            if c.out_packets > 0 {
                let (id, mut v) = rtp("outboundrtp", "RTCOutboundRTPStreamStats", "out", 0);
                v["pliCount"] = json!(0);
                v["packetsSent"] = json!(c.out_packets);
                v["bytesSent"] = json!(c.out_bytes);
                v["targetBitrate"] = json!(0.0);
                v["roundTripTime"] = json!(0.0);
                out.insert(id, v);
            }
        }
        Value::Object(out)
    }

    fn data_channels_negotiated(&self, ep: &Ep) -> bool {
        ep.local_sdp
            .as_deref()
            .is_some_and(|s| s.contains("m=application"))
    }

    fn route(&self, edge: &Edge, add: bool) {
        if edge.source != lock(&self.ep).id {
            return;
        }
        let kind = match edge.media_type.as_str() {
            "AUDIO" => AUDIO,
            "VIDEO" => VIDEO,
            _ => DATA,
        };
        tracing::debug!(source = %edge.source, sink = %edge.sink, media = kind_name(kind), add, "route");
        let _ = self.rtc.ctl.send(Control(Ctl::Route {
            src: self.key,
            sink_id: edge.sink.clone(),
            kind,
            add,
        }));
    }
}
