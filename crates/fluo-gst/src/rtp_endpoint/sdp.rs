//! The plain-RTP SDP: parsing the remote's, writing ours.

use super::crypto::{self, Sdes};
use fluo_api::{ErrorCode, KurentoError};
use fluo_sfu::{Codec, CodecName, MediaKind};
use std::net::{IpAddr, SocketAddr};

/// Codecs offered, best first, with the payload types Fluo offers them with.
/// One negotiated media section.
#[derive(Debug, Clone)]
pub(super) struct Section {
    pub(super) kind: MediaKind,
    pub(super) pt: u8,
    pub(super) codec: Codec,
    pub(super) remote: Option<SocketAddr>,
    pub(super) remote_rtcp: Option<SocketAddr>,
    pub(super) send: bool,
    pub(super) recv: bool,
    /// The remote's SRTP key (SDES).
    pub(super) remote_key: Option<Vec<u8>>,
}

pub(super) const OFFER_AUDIO: &[(u8, CodecName)] = &[
    (96, CodecName::Opus),
    (0, CodecName::Pcmu),
    (8, CodecName::Pcma),
    (101, CodecName::Amr),
    (102, CodecName::Speex),
];
pub(super) const OFFER_VIDEO: &[(u8, CodecName)] = &[
    (97, CodecName::Vp8),
    (98, CodecName::H264),
    (99, CodecName::Vp9),
    (100, CodecName::H263),
];

/// One parsed m= section of a remote SDP.
pub(super) struct RemoteMedia {
    pub(super) kind: Option<MediaKind>,
    pub(super) port: u16,
    pub(super) addr: Option<IpAddr>,
    pub(super) rtcp_port: Option<u16>,
    /// (pt, codec) in the remote's order of preference.
    pub(super) codecs: Vec<(u8, Codec)>,
    pub(super) dir: &'static str,
    /// `a=crypto` values.
    pub(super) crypto: Vec<String>,
}

pub(super) fn static_codec(pt: u8) -> Option<Codec> {
    match pt {
        0 => Some(Codec::new(CodecName::Pcmu)),
        8 => Some(Codec::new(CodecName::Pcma)),
        9 => Some(Codec::new(CodecName::G722)),
        _ => None,
    }
}

pub(super) fn sdp_err(code: ErrorCode, msg: impl Into<String>) -> KurentoError {
    KurentoError::new(code, msg)
}

/// [`parse_sdp`] for the fuzz targets: the number of media it found.
pub(crate) fn parse_sdp_count(sdp: &str) -> Result<usize, KurentoError> {
    parse_sdp(sdp).map(|m| m.len())
}

/// Parses the parts of an SDP that plain RTP needs.
pub(super) fn parse_sdp(sdp: &str) -> Result<Vec<RemoteMedia>, KurentoError> {
    // "Cannot parse the SDP: line N: expected <form>".
    let bad = |n: usize, wanted: Option<char>| {
        sdp_err(
            ErrorCode::SdpParseError,
            format!(
                "Cannot parse the SDP: {}",
                fluo_api::text::sdp_line(sdp, n, wanted)
            ),
        )
    };
    if sdp.len() > 64 * 1024 {
        return Err(sdp_err(
            ErrorCode::SdpParseError,
            "Cannot parse the SDP: longer than 64 KiB",
        ));
    }
    // The first line that is not blank must be v=0.
    let first = sdp.lines().position(|l| !l.trim().is_empty());
    if first.is_none_or(|i| sdp.lines().nth(i).map(str::trim) != Some("v=0")) {
        return Err(bad(first.unwrap_or(0) + 1, Some('v')));
    }
    let mut session_addr: Option<IpAddr> = None;
    let mut out: Vec<RemoteMedia> = vec![];
    for (i, line) in sdp.lines().map(str::trim).enumerate() {
        if let Some(m) = line.strip_prefix("m=") {
            out.push(media_line(m).ok_or_else(|| bad(i + 1, None))?);
        } else if let Some(c) = line.strip_prefix("c=") {
            let addr = c
                .split_whitespace()
                .nth(2)
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse::<IpAddr>().ok())
                .ok_or_else(|| bad(i + 1, None))?;
            match out.last_mut() {
                Some(m) => m.addr = Some(addr),
                None => session_addr = Some(addr),
            }
        } else if let (Some(m), Some(a)) = (out.last_mut(), line.strip_prefix("a=")) {
            attribute(m, a);
        }
    }
    for m in &mut out {
        if m.addr.is_none() {
            m.addr = session_addr;
        }
    }
    if out.is_empty() {
        return Err(sdp_err(
            ErrorCode::SdpParseError,
            format!(
                "Cannot parse the SDP: {} (it has no media)",
                fluo_api::text::sdp_line(sdp, sdp.lines().count() + 1, Some('m'))
            ),
        ));
    }
    Ok(out)
}

/// An m= line (what follows `m=`): its kind, port and static payload types; `None` when it is
/// not one.
fn media_line(m: &str) -> Option<RemoteMedia> {
    let f: Vec<&str> = m.split_whitespace().collect();
    if f.len() < 4 {
        return None;
    }
    let kind = match f[0] {
        "audio" => Some(MediaKind::Audio),
        "video" => Some(MediaKind::Video),
        _ => None,
    };
    let port = f[1].split('/').next().unwrap_or("").parse::<u16>().ok()?;
    let codecs = f[3..]
        .iter()
        .filter_map(|p| p.parse::<u8>().ok())
        .filter_map(|pt| static_codec(pt).map(|c| (pt, c)))
        .collect();
    Some(RemoteMedia {
        kind,
        port,
        addr: None,
        rtcp_port: None,
        codecs,
        dir: "sendrecv",
        crypto: vec![],
    })
}

/// An a= line (what follows `a=`) of media section `m`.
fn attribute(m: &mut RemoteMedia, a: &str) {
    if let Some(r) = a.strip_prefix("rtpmap:") {
        rtpmap(m, r);
    } else if let Some(f) = a.strip_prefix("fmtp:") {
        fmtp(m, f);
    } else if let Some(c) = a.strip_prefix("crypto:") {
        m.crypto.push(c.to_string());
    } else if let Some(p) = a.strip_prefix("rtcp:") {
        m.rtcp_port = p.split_whitespace().next().and_then(|p| p.parse().ok());
    } else if let Some(d) = ["sendrecv", "sendonly", "recvonly", "inactive"]
        .into_iter()
        .find(|d| a == *d)
    {
        m.dir = d;
    }
}

/// `a=rtpmap:<pt> <name>/<rate>`: a codec Fluo knows, in the m= line's order.
fn rtpmap(m: &mut RemoteMedia, r: &str) {
    let mut it = r.split_whitespace();
    let pt = it.next().and_then(|p| p.parse::<u8>().ok());
    let enc = it.next().unwrap_or("");
    let mut parts = enc.split('/');
    let name = parts.next().and_then(CodecName::from_sdp_name);
    // A clock rate of 0 is no clock: such a format is not taken (RTCP jitter and timestamps
    // divide by it).
    let rate = parts
        .next()
        .and_then(|r| r.parse::<u32>().ok())
        .filter(|r| *r > 0);
    if let (Some(pt), Some(name), Some(rate)) = (pt, name, rate) {
        let mut c = Codec::new(name);
        c.clock_rate = rate;
        m.codecs.retain(|(p, _)| *p != pt);
        // Keep the m= line's order.
        m.codecs.push((pt, c));
    }
}

/// `a=fmtp:<pt> <params>`: the H.264 parameters of a codec already mapped.
fn fmtp(m: &mut RemoteMedia, f: &str) {
    let mut it = f.splitn(2, ' ');
    let pt = it.next().and_then(|p| p.parse::<u8>().ok());
    let params = it.next().unwrap_or("");
    let Some((_, c)) = m.codecs.iter_mut().find(|(p, _)| Some(*p) == pt) else {
        return;
    };
    for kv in params.split(';') {
        let (k, v) = kv.trim().split_once('=').unwrap_or((kv, ""));
        match k.trim() {
            "profile-level-id" => c.profile_level_id = u32::from_str_radix(v, 16).ok(),
            "packetization-mode" => c.packetization_mode = v.parse().ok(),
            _ => {}
        }
    }
}

/// Order the remote's m= line gave, restricted to what Fluo can route.
pub(super) fn pick(m: &RemoteMedia) -> Option<(u8, Codec)> {
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

pub(super) fn write_section(
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
            crypto::b64_encode(&sd.key)
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

pub(super) fn mirror(dir: &str) -> &'static str {
    match dir {
        "sendonly" => "recvonly",
        "recvonly" => "sendonly",
        "inactive" => "inactive",
        _ => "sendrecv",
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
        // A format with a clock rate of 0 is not taken (the review's `VP8/0` was answered and
        // its RTCP jitter came out as NaN).
        let zero = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                    m=video 5002 RTP/AVP 96 97\r\na=rtpmap:96 VP8/0\r\na=rtpmap:97 VP8/90000\r\n";
        let m = parse_sdp(zero).unwrap();
        assert_eq!(
            m[0].codecs.iter().map(|(pt, _)| *pt).collect::<Vec<_>>(),
            vec![97]
        );
        assert_eq!(
            pick(&m[0]).map(|(pt, c)| (pt, c.clock_rate)),
            Some((97, 90000))
        );
        // Every prefix of a good SDP parses or fails cleanly.
        for cut in 0..sdp.len() {
            if sdp.is_char_boundary(cut) {
                let _ = parse_sdp(&sdp[..cut]);
            }
        }
    }
}
