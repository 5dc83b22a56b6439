//! A WebRtcEndpoint's ICE candidates: its addresses as announced (externalIPv4/6), the
//! STUN-learnt and TURN-relayed ones, passive ICE-TCP, sockets of its own facing an ICE-lite
//! peer (see `negotiate`), and the properties that set them.

use super::{WebRtcEndpoint, MAX_REMOTE_CANDIDATES};
use crate::core::{lock, Control, Ctl, Ep};
use fluo_api::KurentoError;
use serde_json::Value;
use std::sync::Arc;
use str0m::Candidate;

/// What the first negotiation adds to the session.
pub(super) struct Prepared {
    /// Local candidates.
    candidates: Vec<Candidate>,
    /// Address translations (local socket, announced address).
    nat: Vec<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// The endpoint runs full ICE.
    full: bool,
}

impl WebRtcEndpoint {
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
            .filter(|addr| self.on_interfaces(addr))
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
    pub(super) fn permit<'a>(&self, lines: impl Iterator<Item = &'a str>) {
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
        // Relayed through a socket on one of this endpoint's networkInterfaces only.
        all.retain(|(local, _)| self.on_interfaces(local));
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

    /// The candidates gatherCandidates reports: those of the session once negotiated (none
    /// when the offer had nothing usable), else those a first negotiation would add.
    pub(super) fn candidates_to_report(&self) -> Vec<Candidate> {
        if self.candidates_added {
            return self.candidates.clone();
        }
        let negotiated_nothing = lock(&self.ep)
            .sdp
            .local()
            .is_some_and(|s| !crate::sections::has_media(s));
        if negotiated_nothing {
            return vec![];
        }
        self.prepare_candidates(false)
            .map(|p| p.candidates)
            .unwrap_or_default()
    }

    /// The candidates and address translations to add at the first negotiation, computed
    /// before the endpoint is locked: an endpoint's own STUN/TURN answer may take a moment,
    /// and the media thread must not wait for it behind the endpoint's lock.
    ///
    /// The announced addresses, then the STUN-learnt ones (as host candidates: str0m's
    /// ICE-lite agent takes no other kind, and the media core translates them to the local
    /// socket), then TURN-relayed ones (`typ relay`; they make the endpoint a full agent), then
    /// passive ICE-TCP ones. Facing an ICE-lite peer (`peer_lite`), sockets of the endpoint's
    /// own instead of the shared ones, and no ICE-TCP (neither side would connect).
    pub(super) fn prepare_candidates(&self, peer_lite: bool) -> Option<Prepared> {
        if self.candidates_added {
            return None;
        }
        let relayed = self.relayed();
        let full = peer_lite || !relayed.is_empty();
        let own = if peer_lite {
            self.rtc.own_ports.bind(&self.rtc.locals)
        } else {
            vec![]
        };
        let (udp, tcp) = if own.is_empty() {
            let udp: Vec<_> = self
                .announced()
                .into_iter()
                .chain(self.reflexive())
                .collect();
            (udp, self.announced_tcp())
        } else {
            let addrs: Vec<std::net::SocketAddr> = own.iter().map(|(_, a)| *a).collect();
            (self.announce(&addrs), vec![])
        };
        if !own.is_empty() {
            let _ = self.rtc.ctl.send(Control(Ctl::OwnSockets {
                key: self.key,
                sockets: own,
            }));
        }
        let nat = udp
            .iter()
            .chain(&tcp)
            .filter(|(local, public)| local != public)
            .copied()
            .collect();
        let udp = udp
            .iter()
            .filter_map(|(_, public)| Candidate::host(*public, "udp").ok());
        let relay = relayed
            .iter()
            .filter_map(|(local, relay)| Candidate::relayed(*relay, *local, "udp").ok());
        let tcp = tcp.iter().filter_map(|(_, public)| {
            Candidate::builder()
                .tcp()
                .host(*public)
                .tcptype(str0m::net::TcpType::Passive)
                .build()
                .ok()
        });
        Some(Prepared {
            candidates: udp.chain(relay).chain(tcp).collect(),
            nat,
            full,
        })
    }

    /// Adds our candidates to the session before its first SDP is written (switching the
    /// session to full ICE first when it must: str0m's ICE-lite agent refuses relayed
    /// candidates); the media core translates between the announced addresses and the local
    /// sockets.
    pub(super) fn add_candidates(&mut self, ep: &mut Ep, prepared: Option<Prepared>) {
        let Some(p) = prepared else {
            return;
        };
        if std::mem::replace(&mut self.candidates_added, true) {
            return;
        }
        if p.full {
            self.full_ice(ep);
        }
        // As the session keeps them (its priority, foundation and ufrag), for the pair events.
        let mut added = vec![];
        for c in &p.candidates {
            added.extend(ep.rtc.add_local_candidate(c.clone()).cloned());
        }
        crate::pair::announced(ep, &added);
        self.candidates = p.candidates;
        ep.settings.nat = p.nat;
    }

    /// Sets an ICE / network property (stunServerAddress, stunServerPort, turnUrl, iceTcp,
    /// externalIPv4/6); `None` when `name` is none of them.
    pub(super) fn set_network_property(
        &mut self,
        name: &str,
        value: &Value,
    ) -> Option<Result<(), KurentoError>> {
        match self.set_network(name, value) {
            Ok(true) => Some(Ok(())),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// [`Self::set_network_property`]: whether `name` was one of them.
    fn set_network(&mut self, name: &str, value: &Value) -> Result<bool, KurentoError> {
        match name {
            "stunServerAddress" => self.set_stun_address(value)?,
            "stunServerPort" => self.set_stun_port(value)?,
            "turnUrl" => self.set_turn_url(value)?,
            "iceTcp" => self.set_ice_tcp(value)?,
            "externalIPv4" | "externalIPv6" => match value.as_str() {
                Some(text) => self.set_external(name, text)?,
                None => return Ok(false),
            },
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn set_stun_address(&mut self, value: &Value) -> Result<(), KurentoError> {
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
        Ok(())
    }

    fn set_stun_port(&mut self, value: &Value) -> Result<(), KurentoError> {
        self.stun.1 = value
            .as_i64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                KurentoError::illegal_param("'stunServerPort' must be a port (1-65535)")
            })?;
        self.ask_stun();
        Ok(())
    }

    fn set_turn_url(&mut self, value: &Value) -> Result<(), KurentoError> {
        let text = value.as_str().unwrap_or_default().trim();
        self.turn = if text.is_empty() {
            None
        } else {
            Some(crate::turn::TurnUrl::parse_ip(text).map_err(|e| {
                KurentoError::foreign(
                    fluo_api::ErrorCode::MediaObjectIllegalParamError,
                    "turnUrl",
                    e,
                )
            })?)
        };
        self.ask_turn();
        Ok(())
    }

    fn set_ice_tcp(&mut self, value: &Value) -> Result<(), KurentoError> {
        let on = value
            .as_bool()
            .ok_or_else(|| KurentoError::illegal_param("'iceTcp' must be a boolean"))?;
        self.ice_tcp = on && !self.rtc.tcp_locals.is_empty();
        if on && !self.ice_tcp {
            tracing::warn!("iceTcp: the server has no ICE-TCP listener (KMS_ICE_TCP=0)");
        }
        self.warn_if_negotiated("iceTcp");
        Ok(())
    }

    /// externalIPv4 or externalIPv6 (`name`): an address of that family, or empty for none.
    fn set_external(&mut self, name: &str, text: &str) -> Result<(), KurentoError> {
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
        self.warn_if_negotiated(name);
        Ok(())
    }

    fn warn_if_negotiated(&self, name: &str) {
        if self.candidates_added {
            tracing::warn!(%name, "set after negotiation: it applies to no candidate of this session");
        }
    }
}
