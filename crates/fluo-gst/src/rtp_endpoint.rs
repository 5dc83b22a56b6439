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
//! GStreamer's srtpenc / srtpdec (libsrtp), RTCP included.

use crate::srtp::{self, Sdes, Transform};
use crate::Media;
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{Edge, Element, ElementCx, Factory, FactoryCx};
use fluo_sfu::rtcp::{write_pli, RtcpCompound, RtcpPacket};
use fluo_sfu::rtp::write_rtp;
use fluo_sfu::{Codec, CodecName, MediaKind, MediaPacket, Port, PortOutput, Rewriter, RtpPacket};
use serde_json::{json, Map, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Codecs offered, best first, with the payload types Fluo offers them with.
const OFFER_AUDIO: &[(u8, CodecName)] = &[
    (96, CodecName::Opus),
    (0, CodecName::Pcmu),
    (8, CodecName::Pcma),
    (101, CodecName::Amr),
    (102, CodecName::Speex),
];
const OFFER_VIDEO: &[(u8, CodecName)] = &[
    (97, CodecName::Vp8),
    (98, CodecName::H264),
    (99, CodecName::Vp9),
    (100, CodecName::H263),
];

pub(crate) struct RtpFactory {
    pub media: Media,
}

/// One negotiated media section.
#[derive(Debug, Clone)]
struct Section {
    kind: MediaKind,
    pt: u8,
    codec: Codec,
    remote: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    send: bool,
    recv: bool,
    /// The remote's SRTP key (SDES).
    remote_key: Option<Vec<u8>>,
}

/// Sockets of one media.
struct Sockets {
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
}

#[derive(Default)]
struct Shared {
    sections: Vec<Section>,
    /// Per media: rewriter and the SSRC we send with.
    out: [Option<Rewriter>; 2],
    ssrc: [u32; 2],
    /// The remote's SSRC per media (for PLI).
    remote_ssrc: [u32; 2],
    sockets: [Option<Arc<UdpSocket>>; 2],
    rtcp_sockets: [Option<Arc<UdpSocket>>; 2],
    /// SRTP protection of what we send, per media.
    enc: [Option<Arc<Transform>>; 2],
    /// SDES was asked for: nothing goes out or comes in unprotected.
    srtp: bool,
}

type SharedRef = Arc<Mutex<Shared>>;

fn lock(s: &SharedRef) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn idx(k: MediaKind) -> usize {
    match k {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

fn sdp_err(code: ErrorCode, msg: impl Into<String>) -> KurentoError {
    KurentoError::new(code, msg)
}

impl Factory for RtpFactory {
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        let sdes = srtp::from_param(cx.params.get("crypto"))?;
        if sdes.is_some() {
            crate::init().map_err(|e| KurentoError::new(ErrorCode::UnexpectedError, e))?;
        }
        if cx.params.get("useIpv6").and_then(Value::as_bool) == Some(true) {
            return Err(KurentoError::new(
                ErrorCode::NotImplemented,
                "RtpEndpoint over IPv6 is not implemented by Fluo yet",
            ));
        }
        let shared: SharedRef = Arc::new(Mutex::new(Shared {
            ssrc: [rand_u32(1), rand_u32(2)],
            srtp: sdes.is_some(),
            ..Default::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let port = RtpPort {
            shared: shared.clone(),
        };
        let out_cell: Arc<Mutex<Option<PortOutput>>> = Arc::new(Mutex::new(None));
        let oc = out_cell.clone();
        let key = self.media.bus.add_port(
            cx.id,
            Box::new(move |out| {
                *oc.lock().unwrap_or_else(|p| p.into_inner()) = Some(out);
                Box::new(port) as Box<dyn Port>
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
        }))
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
    stop: Arc<AtomicBool>,
    local_sdp: Option<String>,
    remote_sdp: Option<String>,
    /// Our offer's sockets and sections, waiting for the answer.
    offered: Option<(Vec<Section>, [Option<Sockets>; 2])>,
    version: u64,
    session: u64,
    sdes: Option<Sdes>,
}

/// The address to put in our SDP: the local address that routes to `remote`, else the
/// first non-loopback IPv4 address, else 127.0.0.1.
fn local_ip(remote: Option<IpAddr>) -> IpAddr {
    if let Some(r) = remote {
        if let Ok(s) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
            if s.connect((r, 9)).is_ok() {
                if let Ok(a) = s.local_addr() {
                    return a.ip();
                }
            }
        }
    }
    if let Ok(s) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
        if s.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).is_ok() {
            if let Ok(a) = s.local_addr() {
                return a.ip();
            }
        }
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// Binds an even RTP port and the RTCP port above it.
fn bind_pair() -> Result<Sockets, KurentoError> {
    for _ in 0..64 {
        let Ok(rtp) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) else {
            continue;
        };
        let Ok(a) = rtp.local_addr() else { continue };
        let port = a.port();
        let (rtp, port) = if port % 2 == 0 {
            (rtp, port)
        } else {
            let Some(even) = port.checked_add(1) else {
                continue;
            };
            match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, even)) {
                Ok(s) => (s, even),
                Err(_) => continue,
            }
        };
        let Some(rtcp_port) = port.checked_add(1) else {
            continue;
        };
        if let Ok(rtcp) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, rtcp_port)) {
            return Ok(Sockets {
                rtp: Arc::new(rtp),
                rtcp: Arc::new(rtcp),
            });
        }
    }
    Err(KurentoError::new(
        ErrorCode::NotEnoughResources,
        "No free UDP port pair for RTP",
    ))
}

/// One parsed m= section of a remote SDP.
struct RemoteMedia {
    kind: Option<MediaKind>,
    port: u16,
    addr: Option<IpAddr>,
    rtcp_port: Option<u16>,
    /// (pt, codec) in the remote's order of preference.
    codecs: Vec<(u8, Codec)>,
    dir: &'static str,
    /// `a=crypto` values.
    crypto: Vec<String>,
}

fn static_codec(pt: u8) -> Option<Codec> {
    match pt {
        0 => Some(Codec::new(CodecName::Pcmu)),
        8 => Some(Codec::new(CodecName::Pcma)),
        9 => Some(Codec::new(CodecName::G722)),
        _ => None,
    }
}

/// [`parse_sdp`] for the fuzz targets: the number of media it found.
pub(crate) fn parse_sdp_count(sdp: &str) -> Result<usize, KurentoError> {
    parse_sdp(sdp).map(|m| m.len())
}

/// Parses the parts of an SDP that plain RTP needs.
fn parse_sdp(sdp: &str) -> Result<Vec<RemoteMedia>, KurentoError> {
    if sdp.len() > 64 * 1024 || !sdp.trim_start().starts_with("v=0") {
        return Err(sdp_err(
            ErrorCode::SdpParseError,
            "Not an SDP (it must start with v=0)",
        ));
    }
    let mut session_addr: Option<IpAddr> = None;
    let mut out: Vec<RemoteMedia> = vec![];
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            let f: Vec<&str> = m.split_whitespace().collect();
            if f.len() < 4 {
                return Err(sdp_err(
                    ErrorCode::SdpParseError,
                    format!("Bad m= line: {line}"),
                ));
            }
            let kind = match f[0] {
                "audio" => Some(MediaKind::Audio),
                "video" => Some(MediaKind::Video),
                _ => None,
            };
            let port = f[1]
                .split('/')
                .next()
                .unwrap_or("")
                .parse::<u16>()
                .map_err(|_| sdp_err(ErrorCode::SdpParseError, format!("Bad port in: {line}")))?;
            let codecs = f[3..]
                .iter()
                .filter_map(|p| p.parse::<u8>().ok())
                .filter_map(|pt| static_codec(pt).map(|c| (pt, c)))
                .collect();
            out.push(RemoteMedia {
                kind,
                port,
                addr: None,
                rtcp_port: None,
                codecs,
                dir: "sendrecv",
                crypto: vec![],
            });
            continue;
        }
        let cur = out.last_mut();
        if let Some(c) = line.strip_prefix("c=") {
            let addr = c
                .split_whitespace()
                .nth(2)
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse::<IpAddr>().ok())
                .ok_or_else(|| sdp_err(ErrorCode::SdpParseError, format!("Bad c= line: {line}")))?;
            match cur {
                Some(m) => m.addr = Some(addr),
                None => session_addr = Some(addr),
            }
        } else if let (Some(m), Some(a)) = (cur, line.strip_prefix("a=")) {
            if let Some(r) = a.strip_prefix("rtpmap:") {
                let mut it = r.split_whitespace();
                let pt = it.next().and_then(|p| p.parse::<u8>().ok());
                let enc = it.next().unwrap_or("");
                let mut parts = enc.split('/');
                let name = parts.next().and_then(CodecName::from_sdp_name);
                let rate = parts.next().and_then(|r| r.parse::<u32>().ok());
                if let (Some(pt), Some(name), Some(rate)) = (pt, name, rate) {
                    let mut c = Codec::new(name);
                    c.clock_rate = rate;
                    m.codecs.retain(|(p, _)| *p != pt);
                    // Keep the m= line's order.
                    m.codecs.push((pt, c));
                }
            } else if let Some(f) = a.strip_prefix("fmtp:") {
                let mut it = f.splitn(2, ' ');
                let pt = it.next().and_then(|p| p.parse::<u8>().ok());
                let params = it.next().unwrap_or("");
                if let Some((_, c)) = m.codecs.iter_mut().find(|(p, _)| Some(*p) == pt) {
                    for kv in params.split(';') {
                        let (k, v) = kv.trim().split_once('=').unwrap_or((kv, ""));
                        match k.trim() {
                            "profile-level-id" => {
                                c.profile_level_id = u32::from_str_radix(v, 16).ok()
                            }
                            "packetization-mode" => c.packetization_mode = v.parse().ok(),
                            _ => {}
                        }
                    }
                }
            } else if let Some(c) = a.strip_prefix("crypto:") {
                m.crypto.push(c.to_string());
            } else if let Some(p) = a.strip_prefix("rtcp:") {
                m.rtcp_port = p.split_whitespace().next().and_then(|p| p.parse().ok());
            } else {
                for d in ["sendrecv", "sendonly", "recvonly", "inactive"] {
                    if a == d {
                        m.dir = d;
                    }
                }
            }
        }
    }
    for m in &mut out {
        if m.addr.is_none() {
            m.addr = session_addr;
        }
    }
    if out.is_empty() {
        return Err(sdp_err(ErrorCode::SdpParseError, "The SDP has no media"));
    }
    Ok(out)
}

/// Order the remote's m= line gave, restricted to what Fluo can route.
fn pick(m: &RemoteMedia) -> Option<(u8, Codec)> {
    let kind = m.kind?;
    let offer = match kind {
        MediaKind::Audio => OFFER_AUDIO,
        MediaKind::Video => OFFER_VIDEO,
    };
    m.codecs
        .iter()
        .find(|(_, c)| c.name.kind() == kind && offer.iter().any(|(_, n)| *n == c.name))
        .copied()
}

fn write_section(
    sdp: &mut String,
    kind: &str,
    port: u16,
    pt_codecs: &[(u8, Codec)],
    dir: &str,
    sdes: Option<&Sdes>,
) {
    let pts: Vec<String> = pt_codecs.iter().map(|(p, _)| p.to_string()).collect();
    let proto = if sdes.is_some() {
        "RTP/SAVP"
    } else {
        "RTP/AVP"
    };
    sdp.push_str(&format!("m={kind} {port} {proto} {}\r\n", pts.join(" ")));
    if let Some(sd) = sdes {
        sdp.push_str(&format!(
            "a=crypto:1 {} inline:{}\r\n",
            sd.suite.sdp_name(),
            srtp::b64_encode(&sd.key)
        ));
    }
    for (pt, c) in pt_codecs {
        let chans = if c.channels > 1 {
            format!("/{}", c.channels)
        } else {
            String::new()
        };
        sdp.push_str(&format!(
            "a=rtpmap:{pt} {}/{}{chans}\r\n",
            c.name.sdp_name(),
            c.clock_rate
        ));
        if c.name == CodecName::H264 {
            sdp.push_str(&format!(
                "a=fmtp:{pt} packetization-mode={};profile-level-id={:06x}\r\n",
                c.packetization_mode.unwrap_or(1),
                c.profile_level_id.unwrap_or(0x42e01f)
            ));
        }
        if c.name == CodecName::Amr {
            sdp.push_str(&format!("a=fmtp:{pt} octet-align=1\r\n"));
        }
        if c.name.kind() == MediaKind::Video {
            sdp.push_str(&format!(
                "a=rtcp-fb:{pt} nack pli\r\na=rtcp-fb:{pt} ccm fir\r\n"
            ));
        }
    }
    sdp.push_str(&format!("a=rtcp:{}\r\na={dir}\r\n", port + 1));
}

fn mirror(dir: &str) -> &'static str {
    match dir {
        "sendonly" => "recvonly",
        "recvonly" => "sendonly",
        "inactive" => "inactive",
        _ => "sendrecv",
    }
}

impl RtpEndpoint {
    fn header(&mut self, ip: IpAddr) -> String {
        self.version += 1;
        format!(
            "v=0\r\no=- {} {} IN IP4 {ip}\r\ns=Fluo\r\nc=IN IP4 {ip}\r\nt=0 0\r\n",
            self.session, self.version
        )
    }

    fn process_offer(&mut self, offer: &str) -> Result<Value, KurentoError> {
        if self.remote_sdp.is_some() || self.offered.is_some() {
            return Err(sdp_err(
                ErrorCode::SdpEndPointAlreadyNegotiated,
                "This endpoint already negotiated",
            ));
        }
        let remote = parse_sdp(offer)?;
        let ip = local_ip(remote.iter().find_map(|m| m.addr));
        let mut sdp = self.header(ip);
        let mut sections = vec![];
        let mut sockets: [Option<Sockets>; 2] = [None, None];
        for m in &remote {
            let kname = match m.kind {
                Some(MediaKind::Audio) => "audio",
                Some(MediaKind::Video) => "video",
                None => "application",
            };
            let chosen = pick(m).filter(|_| m.port != 0);
            let Some((pt, codec)) = chosen else {
                // Refused section.
                sdp.push_str(&format!(
                    "m={kname} 0 RTP/AVP {}\r\n",
                    m.codecs.first().map_or(0, |c| c.0)
                ));
                continue;
            };
            let kind = m.kind.expect("picked");
            if sockets[idx(kind)].is_some() {
                sdp.push_str(&format!("m={kname} 0 RTP/AVP {pt}\r\n"));
                continue;
            }
            let remote_key = match &self.sdes {
                Some(sd) => match srtp::remote_key(&m.crypto, sd.suite) {
                    Some(k) => Some(k),
                    None => {
                        // Without the remote's key for our suite this section cannot work.
                        sdp.push_str(&format!("m={kname} 0 RTP/SAVP {pt}\r\n"));
                        continue;
                    }
                },
                None => None,
            };
            let s = bind_pair()?;
            let port = s.rtp.local_addr().map(|a| a.port()).unwrap_or(0);
            let dir = mirror(m.dir);
            write_section(
                &mut sdp,
                kname,
                port,
                &[(pt, codec)],
                dir,
                self.sdes.as_ref(),
            );
            let addr = m.addr.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            sections.push(Section {
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
            });
            sockets[idx(kind)] = Some(s);
        }
        if sections.is_empty() {
            return Err(sdp_err(
                ErrorCode::SdpEndPointProcessOfferError,
                if self.sdes.is_some() {
                    "No media section of the offer has both a codec Fluo can use (audio: opus, PCMU, PCMA; video: VP8, H264, VP9) and an a=crypto line with this endpoint's crypto suite"
                } else {
                    "No media section of the offer has a codec Fluo can use (audio: opus, PCMU, PCMA; video: VP8, H264, VP9)"
                },
            ));
        }
        self.start(sections, sockets);
        self.remote_sdp = Some(offer.to_string());
        self.local_sdp = Some(sdp.clone());
        Ok(Value::from(sdp))
    }

    fn generate_offer(&mut self) -> Result<Value, KurentoError> {
        if self.remote_sdp.is_some() || self.offered.is_some() {
            return Err(sdp_err(
                ErrorCode::SdpEndPointAlreadyNegotiated,
                "This endpoint already negotiated",
            ));
        }
        let ip = local_ip(None);
        let mut sdp = self.header(ip);
        let mut sections = vec![];
        let mut sockets: [Option<Sockets>; 2] = [None, None];
        for (kind, kname, list) in [
            (MediaKind::Audio, "audio", OFFER_AUDIO),
            (MediaKind::Video, "video", OFFER_VIDEO),
        ] {
            let s = bind_pair()?;
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
            sockets[idx(kind)] = Some(s);
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
                sockets[idx(s.kind)] = None;
                continue;
            };
            let Some((pt, codec)) = pick(m) else {
                sockets[idx(s.kind)] = None;
                continue;
            };
            if let Some(sd) = &self.sdes {
                let Some(k) = srtp::remote_key(&m.crypto, sd.suite) else {
                    sockets[idx(s.kind)] = None;
                    continue;
                };
                s.remote_key = Some(k);
            }
            let addr = m.addr.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
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
        let mut f = Map::new();
        f.insert(
            "description".into(),
            json!(format!(
                "SRTP could not be set up, media of this section is off: {e}"
            )),
        );
        f.insert("errorCode".into(), json!(40003));
        f.insert("type".into(), json!("SRTP_ERROR"));
        (self.media.events)(&self.id, "Error", f);
    }

    /// Starts receiving on the sockets of the negotiated sections.
    fn start(&mut self, sections: Vec<Section>, sockets: [Option<Sockets>; 2]) {
        let mut sh = lock(&self.shared);
        for s in &sections {
            let Some(sk) = &sockets[idx(s.kind)] else {
                continue;
            };
            sh.sockets[idx(s.kind)] = Some(sk.rtp.clone());
            sh.rtcp_sockets[idx(s.kind)] = Some(sk.rtcp.clone());
            let _ = sk.rtp.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = sk.rtcp.set_read_timeout(Some(Duration::from_millis(200)));
            let (rtp, rtcp) = (sk.rtp.clone(), sk.rtcp.clone());
            let rx = Rx {
                out: self.out.clone(),
                shared: self.shared.clone(),
                section: s.clone(),
                id: self.id.clone(),
                bus: self.media.bus.clone(),
                key: self.key,
            };
            let mut dec = None;
            if let (Some(sd), Some(rk)) = (&self.sdes, &s.remote_key) {
                let (r1, r2) = (rx.clone(), rx.clone());
                let (events, id) = (self.media.events.clone(), self.id.clone());
                let media = if s.kind == MediaKind::Audio {
                    "AUDIO"
                } else {
                    "VIDEO"
                };
                let soft = move || {
                    let mut f = Map::new();
                    f.insert("mediaType".into(), json!(media));
                    events(&id, "OnKeySoftLimit", f);
                };
                match Transform::decrypt(
                    sd.suite,
                    rk,
                    move |b| r1.rtp(b),
                    move |b| r2.rtcp(b),
                    soft,
                ) {
                    Ok(t) => dec = Some(Arc::new(t)),
                    Err(e) => self.srtp_failed(&e),
                }
                if let (Some(to), Some(to_rtcp)) = (s.remote, s.remote_rtcp) {
                    let (a, b) = (sk.rtp.clone(), sk.rtcp.clone());
                    let enc = Transform::encrypt(
                        sd,
                        move |bytes| {
                            let _ = a.send_to(bytes, to);
                        },
                        move |bytes| {
                            let _ = b.send_to(bytes, to_rtcp);
                        },
                    );
                    match enc {
                        Ok(t) => sh.enc[idx(s.kind)] = Some(Arc::new(t)),
                        Err(e) => self.srtp_failed(&e),
                    }
                }
            }
            let stop = self.stop.clone();
            let (rx1, dec1) = (rx.clone(), dec.clone());
            let protected = self.sdes.is_some();
            // Media only from the address the SDP named (any port: NATs change it).
            let peer_ip = s.remote.map(|a| a.ip());
            let spawned = std::thread::Builder::new()
                .name("fluo-rtp-rx".into())
                .spawn(move || {
                    receive(&rtp, &stop, peer_ip, |b| match &dec1 {
                        Some(d) => d.push_rtp(b.to_vec()),
                        // SDES without a working decryptor: nothing unchecked gets in.
                        None if protected => {}
                        None => rx1.rtp(b),
                    })
                });
            if let Err(e) = spawned {
                tracing::warn!("RTP receive thread: {e}");
            }
            let stop = self.stop.clone();
            let spawned = std::thread::Builder::new()
                .name("fluo-rtcp-rx".into())
                .spawn(move || {
                    receive(&rtcp, &stop, peer_ip, |b| match &dec {
                        Some(d) => d.push_rtcp(b.to_vec()),
                        None if protected => {}
                        None => rx.rtcp(b),
                    })
                });
            if let Err(e) = spawned {
                tracing::warn!("RTCP receive thread: {e}");
            }
        }
        sh.sections = sections;
    }
}

/// Context for handling what one media's sockets receive.
#[derive(Clone)]
struct Rx {
    out: PortOutput,
    shared: SharedRef,
    section: Section,
    id: String,
    bus: Arc<dyn fluo_sfu::MediaBus>,
    key: u64,
}

impl Rx {
    /// An RTP packet (already decrypted) for the router.
    fn rtp(&self, bytes: &[u8]) {
        let s = &self.section;
        if !s.recv {
            return;
        }
        let Ok(p) = RtpPacket::parse(bytes) else {
            return;
        };
        if p.payload_type() != s.pt {
            tracing::trace!(id = %self.id, pt = p.payload_type(), "RTP with a payload type that was not negotiated dropped");
            return;
        }
        lock(&self.shared).remote_ssrc[idx(s.kind)] = p.ssrc();
        self.out.send(MediaPacket {
            kind: s.kind,
            codec: s.codec,
            seq: p.sequence(),
            timestamp: p.timestamp(),
            ssrc: p.ssrc(),
            marker: p.marker(),
            payload: p.payload().to_vec(),
        });
    }

    /// An RTCP packet (already decrypted): a PLI or FIR asks our sources for a keyframe.
    fn rtcp(&self, bytes: &[u8]) {
        let wants_keyframe = RtcpCompound::new(bytes)
            .flatten()
            .any(|p| matches!(p, RtcpPacket::Pli { .. } | RtcpPacket::Fir(_)));
        if wants_keyframe && self.section.kind == MediaKind::Video {
            self.bus.request_keyframe(self.key);
        }
    }
}

/// Reads a socket until `stop`; hands datagrams from `peer` (when known) to `f`.
fn receive(sock: &UdpSocket, stop: &AtomicBool, peer: Option<IpAddr>, f: impl Fn(&[u8])) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if peer.is_none_or(|p| p == from.ip()) => f(&buf[..n]),
            Ok(_) => {}
            // Timeouts wake us to look at `stop`; other errors (ICMP port unreachable
            // reported on the socket) must not spin.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

impl Element for RtpEndpoint {
    fn invoke(
        &mut self,
        _cx: &mut ElementCx<'_>,
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
            "processOffer" => self.process_offer(&sdp("offer")),
            "generateOffer" => self.generate_offer(),
            "processAnswer" => self.process_answer(&sdp("answer")),
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
                p.request_keyframe();
                Ok(Value::Null)
            }
            _ => return None,
        })
    }

    fn get_property(&self, name: &str) -> Option<Value> {
        let negotiated = !lock(&self.shared).sections.is_empty();
        let st = if negotiated {
            "CONNECTED"
        } else {
            "DISCONNECTED"
        };
        match name {
            "mediaState" | "connectionState" => Some(json!(st)),
            _ => None,
        }
    }

    fn media_connected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.media.route(self.key, &self.id, edge, true);
    }

    fn media_disconnected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.media.route(self.key, &self.id, edge, false);
    }

    fn released(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.media.bus.remove_port(self.key);
    }
}

/// The endpoint as the router sees it.
struct RtpPort {
    shared: SharedRef,
}

impl Port for RtpPort {
    fn accepts(&self, kind: MediaKind, codec: &Codec) -> bool {
        let sh = lock(&self.shared);
        match sh.sections.iter().find(|s| s.kind == kind) {
            Some(s) => !s.send || s.codec.compatible(codec),
            // Not negotiated (yet): nothing to send, nothing to transcode for.
            None => true,
        }
    }

    fn wants(&self, kind: MediaKind) -> Vec<Codec> {
        let sh = lock(&self.shared);
        sh.sections
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.codec)
            .collect()
    }

    fn push(&mut self, pkt: &MediaPacket) {
        let k = idx(pkt.kind);
        let mut sh = lock(&self.shared);
        let Some(s) = sh.sections.iter().find(|s| s.kind == pkt.kind).cloned() else {
            return;
        };
        let (Some(remote), true) = (s.remote, s.send) else {
            return;
        };
        if !s.codec.compatible(&pkt.codec) {
            return;
        }
        let ssrc = sh.ssrc[k];
        let rw = sh.out[k]
            .get_or_insert_with(|| Rewriter::new(s.codec.clock_rate, ssrc, pkt.seq, pkt.timestamp));
        let Some(r) = rw.rewrite(Instant::now(), pkt.ssrc, pkt.seq, pkt.timestamp) else {
            return;
        };
        let sock = sh.sockets[k].clone();
        let enc = sh.enc[k].clone();
        let srtp = sh.srtp;
        drop(sh);
        let mut bytes = Vec::with_capacity(12 + pkt.payload.len());
        write_rtp(
            &mut bytes,
            s.pt,
            pkt.marker,
            r.seq,
            r.ts,
            ssrc,
            &pkt.payload,
        );
        match (enc, sock) {
            (Some(enc), _) => enc.push_rtp(bytes),
            (None, Some(sock)) if !srtp => {
                let _ = sock.send_to(&bytes, remote);
            }
            _ => {}
        }
    }

    fn request_keyframe(&mut self) {
        let sh = lock(&self.shared);
        let k = idx(MediaKind::Video);
        let Some(s) = sh.sections.iter().find(|s| s.kind == MediaKind::Video) else {
            return;
        };
        let (Some(to), Some(sock)) = (s.remote_rtcp, sh.rtcp_sockets[k].clone()) else {
            return;
        };
        let mut pli = vec![];
        write_pli(&mut pli, sh.ssrc[k], sh.remote_ssrc[k]);
        let enc = sh.enc[k].clone();
        drop(sh);
        match enc {
            Some(enc) => enc.push_rtcp(pli),
            None => {
                let _ = sock.send_to(&pli, to);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offers_and_survives_garbage() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 5000 RTP/AVP 0 111\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=video 5002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\na=sendonly\r\n";
        let m = parse_sdp(sdp).unwrap();
        assert_eq!(m.len(), 2);
        // The offerer's order decides: PCMU comes first on its m= line.
        assert_eq!(pick(&m[0]).unwrap().1.name, CodecName::Pcmu);
        let (pt, v) = pick(&m[1]).unwrap();
        assert_eq!(
            (pt, v.name, v.profile_level_id),
            (96, CodecName::H264, Some(0x42e01f))
        );
        assert_eq!(m[1].dir, "sendonly");
        assert_eq!(m[1].port, 5002);
        for bad in [
            "",
            "x",
            "v=0\r\nm=audio\r\n",
            "v=0\r\nm=audio x RTP/AVP 0\r\n",
            "v=0\r\nc=IN IP4 nope\r\n",
            "v=0\r\n",
        ] {
            assert!(parse_sdp(bad).is_err(), "{bad:?}");
        }
        // Every prefix of a good SDP parses or fails cleanly.
        for cut in 0..sdp.len() {
            if sdp.is_char_boundary(cut) {
                let _ = parse_sdp(&sdp[..cut]);
            }
        }
    }
}
