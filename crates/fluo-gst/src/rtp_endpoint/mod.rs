//! RtpEndpoint: plain RTP/AVP with SDP offer/answer, one UDP port pair (RTP, RTCP) per media.
//!
//! Packets received are handed to the router as they are (the router maps payload types by
//! codec and transcodes where a sink needs another codec); packets routed here are rewritten
//! to one continuous SSRC / sequence / timestamp per media and sent to the remote address
//! the SDP names. A PLI or FIR from the remote asks whoever feeds this endpoint for a
//! keyframe; a keyframe request from whoever this endpoint feeds is sent to the remote as
//! a PLI.
//!
//! With the `crypto` constructor parameter (Kurento's SDES) the media sections are
//! RTP/SAVP with an `a=crypto` line carrying our key; packets are protected and checked by
//! `fluo_egress::sdes` (Fluo's SRTP on aws-lc-rs), RTCP included.
//!
//! Each negotiated media's RTP and RTCP sockets are served by one tokio task (`net::serve`):
//! no thread of its own, RTCP reports from the task's timer.

mod crypto;
mod net;
mod port;
mod sdp;
mod stats;

use self::crypto::Sdes;
pub use self::net::RtpNet;
use self::net::{Rx, Sockets, Unprotect};
use self::port::{lock, RtpPort, Shared, SharedRef};
pub(crate) use self::sdp::parse_sdp_count;
use self::sdp::{
    mirror, parse_sdp, pick, sdp_err, write_section, RemoteMedia, Section, OFFER_AUDIO, OFFER_VIDEO,
};
use crate::Media;
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{Edge, Element, ElementCx, Factory, FactoryCx, StatsQuery, Stopping};
use fluo_sfu::{Codec, MediaKind, Node, PortOutput};
use serde_json::{json, Map, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;

pub(crate) struct RtpFactory {
    pub media: Media,
}

impl Factory for RtpFactory {
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        let sdes = crypto::from_param(cx.params.get("crypto"))?;
        let rt = net::runtime().ok_or_else(|| {
            KurentoError::new(
                ErrorCode::UnexpectedError,
                "RtpEndpoint: no runtime to serve its sockets",
            )
        })?;
        let v6 = cx.params.get("useIpv6").and_then(Value::as_bool) == Some(true);
        if self.media.rtp_net.local_for(v6, None).is_none() {
            return Err(KurentoError::illegal_param(format!(
                "RtpEndpoint: no {} address on the configured network interfaces (--network-interfaces)",
                if v6 { "IPv6" } else { "IPv4" }
            )));
        }
        let shared: SharedRef = Arc::new(Mutex::new(Shared {
            ssrc: [rand_u32(1), rand_u32(2)],
            srtp: sdes.is_some(),
            ..Default::default()
        }));
        let (stop, _) = watch::channel(false);
        let port = RtpPort {
            shared: shared.clone(),
        };
        let out_cell: Arc<Mutex<Option<PortOutput>>> = Arc::new(Mutex::new(None));
        let oc = out_cell.clone();
        let key = self.media.bus.add_port(
            cx.id,
            Box::new(move |out| {
                *oc.lock().unwrap_or_else(|p| p.into_inner()) = Some(out);
                Box::new(port) as Box<dyn Node>
            }),
        );
        let out = out_cell
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("add_port calls make at once");
        Ok(Box::new(RtpEndpoint {
            id: cx.id.to_string(),
            key,
            shared,
            media: self.media.clone(),
            out,
            stop,
            local_sdp: None,
            remote_sdp: None,
            offered: None,
            version: 0,
            session: u64::from(rand_u32(3)),
            sdes,
            v6,
            stopping: Stopping::new(),
            rt,
        }))
    }
}

/// Where media goes when an SDP names no address: this host, in the endpoint's family.
fn loopback(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

/// A random-ish u32 (SSRCs, session ids) without a RNG dependency.
fn rand_u32(salt: u32) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(salt);
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() as u32) | 1
}

struct RtpEndpoint {
    id: String,
    key: u64,
    shared: SharedRef,
    media: Media,
    out: PortOutput,
    /// Turned true at release: the sockets' tasks end.
    stop: watch::Sender<bool>,
    local_sdp: Option<String>,
    remote_sdp: Option<String>,
    /// Our offer's sockets and sections, waiting for the answer.
    offered: Option<(Vec<Section>, [Option<Sockets>; 2])>,
    version: u64,
    session: u64,
    sdes: Option<Sdes>,
    /// useIpv6: sockets on the interfaces' IPv6 addresses, `c=IN IP6`.
    v6: bool,
    /// Held by the sockets' tasks until they end (see [`fluo_core::Stopping`]).
    stopping: Stopping,
    /// Where the sockets' tasks run.
    rt: tokio::runtime::Handle,
}

impl RtpEndpoint {
    /// The session lines of our SDP for media on local address `local` (the external
    /// address of its family, if configured, is what is announced).
    fn header(&mut self, local: IpAddr) -> String {
        self.version += 1;
        let ip = self.media.rtp_net.announced(local);
        let family = if ip.is_ipv6() { "IP6" } else { "IP4" };
        format!(
            "v=0\r\no=- {} {} IN {family} {ip}\r\ns=Fluo\r\nc=IN {family} {ip}\r\nt=0 0\r\n",
            self.session, self.version
        )
    }

    /// The local address media of this endpoint binds on (for a remote at `remote`).
    fn local(&self, remote: Option<IpAddr>) -> Result<IpAddr, KurentoError> {
        self.media
            .rtp_net
            .local_for(self.v6, remote)
            .ok_or_else(|| {
                KurentoError::new(
                    ErrorCode::NotEnoughResources,
                    "RtpEndpoint: no address to bind on the configured network interfaces",
                )
            })
    }

    fn process_offer(&mut self, offer: &str) -> Result<Value, KurentoError> {
        if self.remote_sdp.is_some() || self.offered.is_some() {
            return Err(sdp_err(
                ErrorCode::SdpEndPointAlreadyNegotiated,
                "This endpoint already negotiated",
            ));
        }
        let remote = parse_sdp(offer)?;
        let ip = self.local(remote.iter().find_map(|m| m.addr))?;
        let mut sdp = self.header(ip);
        let mut sections = vec![];
        let mut sockets: [Option<Sockets>; 2] = [None, None];
        for m in &remote {
            if let Some((section, s)) = self.answer_section(m, ip, &sockets, &mut sdp)? {
                sockets[section.kind] = Some(s);
                sections.push(section);
            }
        }
        if sections.is_empty() {
            return Err(self.nothing_usable(&remote));
        }
        self.start(sections, sockets);
        self.remote_sdp = Some(offer.to_string());
        self.local_sdp = Some(sdp.clone());
        Ok(Value::from(sdp))
    }

    /// The answer's section for the offer's `m`, written into `sdp`: accepted (its section and
    /// sockets, bound on `ip`) or refused (port 0: no codec Fluo can use, another address
    /// family, a second section of a kind `taken` already has, no key for the SDES suite).
    fn answer_section(
        &self,
        m: &RemoteMedia,
        ip: IpAddr,
        taken: &[Option<Sockets>; 2],
        sdp: &mut String,
    ) -> Result<Option<(Section, Sockets)>, KurentoError> {
        let kname = match m.kind {
            Some(MediaKind::Audio) => "audio",
            Some(MediaKind::Video) => "video",
            None => "application",
        };
        let chosen = pick(m).filter(|_| m.port != 0);
        let Some((pt, codec)) = chosen else {
            let first = m.codecs.first().map_or(0, |c| c.0);
            sdp.push_str(&format!("m={kname} 0 RTP/AVP {first}\r\n"));
            return Ok(None);
        };
        let kind = m.kind.expect("picked");
        // Another address family than this endpoint's (useIpv6), or a second section of a kind.
        if m.addr.is_some_and(|a| a.is_ipv6() != self.v6) || taken[kind].is_some() {
            sdp.push_str(&format!("m={kname} 0 RTP/AVP {pt}\r\n"));
            return Ok(None);
        }
        let remote_key = match &self.sdes {
            Some(sd) => match crypto::remote_key(&m.crypto, sd.suite) {
                Some(k) => Some(k),
                None => {
                    // Without the remote's key for our suite this section cannot work.
                    sdp.push_str(&format!("m={kname} 0 RTP/SAVP {pt}\r\n"));
                    return Ok(None);
                }
            },
            None => None,
        };
        let s = self.media.rtp_net.bind_pair(ip)?;
        let port = s.rtp.local_addr().map(|a| a.port()).unwrap_or(0);
        let dir = mirror(m.dir);
        write_section(sdp, kname, port, &[(pt, codec)], dir, self.sdes.as_ref());
        let addr = m.addr.unwrap_or(loopback(self.v6));
        let section = Section {
            kind,
            pt,
            codec,
            remote: Some(SocketAddr::new(addr, m.port)),
            remote_rtcp: Some(SocketAddr::new(
                addr,
                m.rtcp_port.unwrap_or(m.port.saturating_add(1)),
            )),
            send: dir == "sendrecv" || dir == "sendonly",
            recv: dir == "sendrecv" || dir == "recvonly",
            remote_key,
        };
        Ok(Some((section, s)))
    }

    /// Why no section of the offer `remote` was accepted.
    fn nothing_usable(&self, remote: &[RemoteMedia]) -> KurentoError {
        let other_family = remote
            .iter()
            .any(|m| m.addr.is_some_and(|a| a.is_ipv6() != self.v6));
        let msg = if other_family && self.v6 {
            "The offer's addresses are IPv4 and this RtpEndpoint was created with useIpv6"
        } else if other_family {
            "The offer's addresses are IPv6: create the RtpEndpoint with useIpv6"
        } else if self.sdes.is_some() {
            "No media section of the offer has both a codec Fluo can use (audio: opus, PCMU, PCMA, AMR, Speex; video: VP8, H264, VP9, H263) and an a=crypto line with this endpoint's crypto suite"
        } else {
            "No media section of the offer has a codec Fluo can use (audio: opus, PCMU, PCMA, AMR, Speex; video: VP8, H264, VP9, H263)"
        };
        sdp_err(ErrorCode::SdpEndPointProcessOfferError, msg)
    }

    fn generate_offer(&mut self) -> Result<Value, KurentoError> {
        if self.remote_sdp.is_some() || self.offered.is_some() {
            return Err(sdp_err(
                ErrorCode::SdpEndPointAlreadyNegotiated,
                "This endpoint already negotiated",
            ));
        }
        let ip = self.local(None)?;
        let mut sdp = self.header(ip);
        let mut sections = vec![];
        let mut sockets: [Option<Sockets>; 2] = [None, None];
        for (kind, kname, list) in [
            (MediaKind::Audio, "audio", OFFER_AUDIO),
            (MediaKind::Video, "video", OFFER_VIDEO),
        ] {
            let s = self.media.rtp_net.bind_pair(ip)?;
            let port = s.rtp.local_addr().map(|a| a.port()).unwrap_or(0);
            let codecs: Vec<(u8, Codec)> =
                list.iter().map(|(pt, n)| (*pt, Codec::new(*n))).collect();
            write_section(
                &mut sdp,
                kname,
                port,
                &codecs,
                "sendrecv",
                self.sdes.as_ref(),
            );
            let (pt, codec) = codecs[0];
            sections.push(Section {
                kind,
                pt,
                codec,
                remote: None,
                remote_rtcp: None,
                send: true,
                recv: true,
                remote_key: None,
            });
            sockets[kind] = Some(s);
        }
        self.offered = Some((sections, sockets));
        self.local_sdp = Some(sdp.clone());
        Ok(Value::from(sdp))
    }

    fn process_answer(&mut self, answer: &str) -> Result<Value, KurentoError> {
        let Some((offered, sockets)) = self.offered.take() else {
            return Err(sdp_err(
                ErrorCode::SdpEndPointNotOfferGenerated,
                "No offer was generated",
            ));
        };
        let remote = match parse_sdp(answer) {
            Ok(r) => r,
            Err(e) => {
                self.offered = Some((offered, sockets));
                return Err(e);
            }
        };
        let mut sections = vec![];
        let mut sockets = sockets;
        for mut s in offered {
            let m = remote
                .iter()
                .find(|m| m.kind == Some(s.kind) && m.port != 0);
            let Some(m) = m else {
                sockets[s.kind] = None;
                continue;
            };
            let Some((pt, codec)) = pick(m) else {
                sockets[s.kind] = None;
                continue;
            };
            if let Some(sd) = &self.sdes {
                let Some(k) = crypto::remote_key(&m.crypto, sd.suite) else {
                    sockets[s.kind] = None;
                    continue;
                };
                s.remote_key = Some(k);
            }
            if m.addr.is_some_and(|a| a.is_ipv6() != self.v6) {
                sockets[s.kind] = None;
                continue;
            }
            let addr = m.addr.unwrap_or(loopback(self.v6));
            s.pt = pt;
            s.codec = codec;
            s.remote = Some(SocketAddr::new(addr, m.port));
            s.remote_rtcp = Some(SocketAddr::new(
                addr,
                m.rtcp_port.unwrap_or(m.port.saturating_add(1)),
            ));
            // The answer's direction is the remote's view.
            s.send = m.dir == "sendrecv" || m.dir == "recvonly";
            s.recv = m.dir == "sendrecv" || m.dir == "sendonly";
            sections.push(s);
        }
        if sections.is_empty() {
            return Err(sdp_err(
                ErrorCode::SdpEndPointProcessAnswerError,
                "The answer accepted no media section",
            ));
        }
        self.start(sections, sockets);
        self.remote_sdp = Some(answer.to_string());
        Ok(Value::from(self.local_sdp.clone().unwrap_or_default()))
    }

    /// SRTP could not be set up: the media of that section stays off (never in the clear).
    fn srtp_failed(&self, e: &str) {
        tracing::error!(id = %self.id, "SRTP: {e}");
        let description = format!(
            "SRTP could not be set up, media of this section is off: {}",
            fluo_api::text::foreign(e)
        );
        (self.media.events)(
            &self.id,
            crate::error_event(fluo_core::MediaError::Srtp, description),
        );
    }

    /// Starts serving the sockets of the negotiated sections.
    fn start(&mut self, sections: Vec<Section>, mut sockets: [Option<Sockets>; 2]) {
        let mut sh = lock(&self.shared);
        for s in &sections {
            let Some(sk) = sockets[s.kind].take() else {
                continue;
            };
            let served = net::to_tokio(&self.rt, sk.rtp)
                .and_then(|rtp| Ok((Arc::new(rtp), Arc::new(net::to_tokio(&self.rt, sk.rtcp)?))));
            let (rtp, rtcp) = match served {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::error!(id = %self.id, "RtpEndpoint sockets: {e}");
                    continue;
                }
            };
            sh.sockets[s.kind] = Some(rtp.clone());
            sh.rtcp_sockets[s.kind] = Some(rtcp.clone());
            sh.stats[s.kind].srtp = self.sdes.is_some();
            let dec = match &self.sdes {
                Some(sd) => {
                    let (dec, enc) = self.srtp(sd, s);
                    sh.enc[s.kind] = enc;
                    match dec {
                        Some(dec) => Some(dec),
                        // SDES without a working checker: nothing unchecked gets in.
                        None => continue,
                    }
                }
                None => None,
            };
            let rx = Rx {
                out: self.out.clone(),
                shared: self.shared.clone(),
                section: s.clone(),
                id: self.id.clone(),
                bus: self.media.bus.clone(),
                key: self.key,
                events: self.media.events.clone(),
            };
            // Media only from the address the SDP named (any port: NATs change it).
            let peer = s.remote.map(|a| a.ip());
            let (stop, hold) = (self.stop.subscribe(), self.stopping.clone());
            self.rt
                .spawn(net::serve(rx, (rtp, rtcp), peer, dec, stop, hold));
        }
        sh.sections = sections;
        drop(sh);
        // What it takes is what it negotiated: the routes to it are decided again.
        self.media.bus.caps_changed(self.key);
    }

    /// SDES for section `s`: the checker of what the peer sends and the protector of what
    /// goes to it; an error event for either that cannot be made.
    fn srtp(&self, sd: &Sdes, s: &Section) -> (Option<Unprotect>, Option<fluo_egress::SdesSender>) {
        let Some(rk) = &s.remote_key else {
            return (None, None);
        };
        let profile = sd.suite.profile();
        let dec = match fluo_egress::SdesReceiver::new(profile, rk) {
            Ok(r) => Some(Unprotect::new(r)),
            Err(e) => {
                self.srtp_failed(&format!("the peer's key: {e:?}"));
                None
            }
        };
        let enc = match fluo_egress::SdesSender::new(profile, &sd.key) {
            Ok(t) => Some(t),
            Err(e) => {
                self.srtp_failed(&format!("our key: {e:?}"));
                None
            }
        };
        (dec, enc)
    }
}

impl Element for RtpEndpoint {
    fn invoke(
        &mut self,
        cx: &mut ElementCx<'_>,
        method: &str,
        params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        let sdp = |k: &str| {
            params
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Some(match method {
            // KMS raises MediaSessionStarted when processOffer or processAnswer succeeded.
            "processOffer" => self
                .process_offer(&sdp("offer"))
                .inspect(|_| cx.emit("MediaSessionStarted", Map::new())),
            "generateOffer" => self.generate_offer(),
            "processAnswer" => self
                .process_answer(&sdp("answer"))
                .inspect(|_| cx.emit("MediaSessionStarted", Map::new())),
            "getLocalSessionDescriptor" => {
                self.local_sdp.clone().map(Value::from).ok_or_else(|| {
                    sdp_err(ErrorCode::SdpEndPointNoLocalSdpError, "No local SDP yet")
                })
            }
            "getRemoteSessionDescriptor" => {
                self.remote_sdp.clone().map(Value::from).ok_or_else(|| {
                    sdp_err(ErrorCode::SdpEndPointNoRemoteSdpError, "No remote SDP yet")
                })
            }
            "requestKeyframe" => {
                let mut p = RtpPort {
                    shared: self.shared.clone(),
                };
                p.request_keyframe(MediaKind::Video);
                Ok(Value::Null)
            }
            _ => return None,
        })
    }

    fn get_property(&self, name: &str) -> Option<Value> {
        let sh = lock(&self.shared);
        let state = |up: bool| json!(if up { "CONNECTED" } else { "DISCONNECTED" });
        match name {
            "connectionState" => Some(state(!sh.sections.is_empty())),
            // As KMS: media is connected once the peer's RTCP reports arrive.
            "mediaState" => Some(state(sh.media_connected)),
            _ => None,
        }
    }

    fn stats(&mut self, q: &StatsQuery<'_>) -> Option<Map<String, Value>> {
        let short = self.id.rsplit('/').next().unwrap_or(&self.id);
        let mut out = Map::new();
        let sh = lock(&self.shared);
        for s in &sh.sections {
            let media = s.kind.wire_name();
            if q.wants(media) {
                let k = s.kind;
                let ours = (sh.ssrc[k], s.codec.clock_rate);
                sh.stats[k].entries(q, &mut out, short, media, ours);
            }
        }
        drop(sh);
        // What reaches the endpoint leaves at once: its end-to-end latency is its input's.
        let lat = self.media.bus.input_latency(q.id);
        q.endpoint_entry(&mut out, &lat, &lat);
        Some(out)
    }

    fn media_connected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.media.route(self.key, &self.id, edge, true);
    }

    fn media_disconnected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.media.route(self.key, &self.id, edge, false);
    }

    fn released(&mut self) {
        self.stop.send_replace(true);
        self.media.bus.remove_port(self.key);
        // The ports close as soon as the tasks (which hold them too) have ended.
        let mut sh = lock(&self.shared);
        sh.sockets = [None, None];
        sh.rtcp_sockets = [None, None];
    }

    fn stopping(&self) -> Option<Stopping> {
        Some(self.stopping.clone())
    }
}
