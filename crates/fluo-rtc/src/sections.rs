//! The m-sections of an offer that a WebRtcEndpoint does not take: rejected in the answer, as
//! KMS does, instead of failing the whole negotiation.
//!
//! str0m parses only `UDP/TLS/RTP/SAVPF` and the SCTP transports; its parser stops at any other
//! m-line (plain `RTP/AVP`, SDES `RTP/SAVP`, ...) and would see no media at all after it. KMS's
//! SDP agent answers each m-section it has no handler for with a rejected one: the same media,
//! transport and formats, port 0, in the same place; so it does with the data-channel section
//! of an endpoint created without `useDataChannels`. Fluo does the same: str0m answers the
//! sections the endpoint takes (given an offer without the others), and the rejected ones are
//! put back in their places.

/// Transports a WebRtcEndpoint (str0m) takes.
const USABLE: [&str; 3] = ["UDP/TLS/RTP/SAVPF", "DTLS/SCTP", "UDP/DTLS/SCTP"];

/// One m-section of a description.
struct Section<'a> {
    /// Its lines, each with its own line ending.
    lines: Vec<&'a str>,
    /// The m= line's fields: media, port, transport, formats.
    media: &'a str,
    proto: &'a str,
    formats: String,
    mid: Option<&'a str>,
}

impl Section<'_> {
    /// A transport str0m takes.
    fn usable(&self) -> bool {
        USABLE.contains(&self.proto)
    }
}

/// A description cut into its session part and its m-sections.
struct Parts<'a> {
    session: Vec<&'a str>,
    media: Vec<Section<'a>>,
}

fn body(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn parts(sdp: &str) -> Parts<'_> {
    let mut out = Parts {
        session: vec![],
        media: vec![],
    };
    for line in sdp.split_inclusive('\n') {
        if let Some(m) = body(line).strip_prefix("m=") {
            let mut f = m.split_whitespace();
            let media = f.next().unwrap_or_default();
            let _port = f.next();
            let proto = f.next().unwrap_or_default();
            out.media.push(Section {
                lines: vec![line],
                media,
                proto,
                formats: f.collect::<Vec<_>>().join(" "),
                mid: None,
            });
        } else if let Some(s) = out.media.last_mut() {
            if let Some(mid) = body(line).strip_prefix("a=mid:") {
                s.mid.get_or_insert(mid.trim());
            }
            s.lines.push(line);
        } else {
            out.session.push(line);
        }
    }
    out
}

/// An offer whose m-sections were sorted into those str0m answers and those rejected.
pub(crate) struct Offer<'a> {
    parts: Parts<'a>,
    /// Data-channel sections are taken (the endpoint's `useDataChannels`).
    data_channels: bool,
}

impl<'a> Offer<'a> {
    /// `data_channels`: the endpoint takes a data-channel (`m=application`) section.
    pub fn new(sdp: &'a str, data_channels: bool) -> Offer<'a> {
        Offer {
            parts: parts(sdp),
            data_channels,
        }
    }

    /// Whether the endpoint takes this section.
    fn takes(&self, s: &Section<'_>) -> bool {
        s.usable() && (self.data_channels || s.media != "application")
    }

    /// Sections rejected here.
    pub fn rejected(&self) -> usize {
        self.parts.media.iter().filter(|s| !self.takes(s)).count()
    }

    /// Whether str0m has anything to answer.
    pub fn has_usable(&self) -> bool {
        self.parts.media.iter().any(|s| self.takes(s))
    }

    /// The offer as str0m sees it: without the rejected sections, and without their mids in
    /// the BUNDLE group (a group naming a missing m-section is refused). The offer itself when
    /// nothing is rejected.
    pub fn usable(&self, sdp: &'a str) -> std::borrow::Cow<'a, str> {
        if self.rejected() == 0 {
            return sdp.into();
        }
        let gone: Vec<&str> = self
            .parts
            .media
            .iter()
            .filter(|s| !self.takes(s))
            .filter_map(|s| s.mid)
            .collect();
        let mut out = String::with_capacity(sdp.len());
        for line in &self.parts.session {
            match body(line).strip_prefix("a=group:BUNDLE") {
                Some(mids) => {
                    let kept: Vec<&str> = mids
                        .split_whitespace()
                        .filter(|m| !gone.contains(m))
                        .collect();
                    if !kept.is_empty() {
                        let eol = &line[body(line).len()..];
                        out.push_str(&format!("a=group:BUNDLE {}{eol}", kept.join(" ")));
                    }
                }
                None => out.push_str(line),
            }
        }
        for s in self.parts.media.iter().filter(|s| self.takes(s)) {
            s.lines.iter().for_each(|l| out.push_str(l));
        }
        out.into()
    }

    /// The answer: str0m's answer to [`Self::usable`] (`None` when there was nothing it could
    /// take) with each rejected section in its place, port 0, with the offer's media,
    /// transport, formats and mid.
    pub fn answer(&self, usable_answer: Option<&str>) -> String {
        if self.rejected() == 0 {
            if let Some(a) = usable_answer {
                return a.to_string();
            }
        }
        let answered = usable_answer.map(parts);
        let mut out = String::new();
        match &answered {
            Some(a) => a.session.iter().for_each(|l| out.push_str(l)),
            None => out.push_str(&session_header()),
        }
        let mut theirs = answered.iter().flat_map(|a| a.media.iter());
        for s in &self.parts.media {
            if self.takes(s) {
                if let Some(a) = theirs.next() {
                    a.lines.iter().for_each(|l| out.push_str(l));
                }
                continue;
            }
            let formats = if s.formats.is_empty() {
                "0"
            } else {
                &s.formats
            };
            out.push_str(&format!("m={} 0 {} {formats}\r\n", s.media, s.proto));
            out.push_str("c=IN IP4 0.0.0.0\r\n");
            if let Some(mid) = s.mid {
                out.push_str(&format!("a=mid:{mid}\r\n"));
            }
        }
        // str0m never answers more sections than it was offered; keep any all the same.
        for a in theirs {
            a.lines.iter().for_each(|l| out.push_str(l));
        }
        out
    }
}

/// The session part of an answer written here (str0m had nothing to answer).
fn session_header() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    format!("v=0\r\no=- {id} {id} IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n")
}

/// Whether a description has a section str0m answers and that was not rejected (port not 0).
pub(crate) fn has_media(sdp: &str) -> bool {
    parts(sdp).media.iter().any(|s| {
        s.usable()
            && body(s.lines[0])
                .split_whitespace()
                .nth(1)
                .is_some_and(|p| p != "0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offer of the issue: one plain RTP m-line, no ICE or DTLS.
    const PLAIN: &str =
        "v=0\r\no=- 3 3 IN IP4 10.0.0.5\r\ns=call\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
        m=video 52126 RTP/AVP 96 97 98\r\nb=AS:384\r\na=rtpmap:96 H264/90000\r\n\
        a=fmtp:96 profile-level-id=42801E\r\na=rtpmap:97 MP4V-ES/90000\r\n\
        a=rtpmap:98 H263-1998/90000\r\na=recvonly\r\n";

    #[test]
    fn an_offer_with_nothing_usable_is_answered_with_every_section_rejected() {
        let o = Offer::new(PLAIN, false);
        assert!(!o.has_usable());
        assert_eq!(o.rejected(), 1);
        let a = o.answer(None);
        assert!(a.starts_with("v=0\r\no=- "), "{a}");
        assert!(a.contains("\r\nt=0 0\r\n"));
        let m: Vec<&str> = a.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(m, ["m=video 0 RTP/AVP 96 97 98"]);
        assert!(!has_media(&a));
        // Every line ends with CRLF.
        assert!(a.ends_with("\r\n") && !a.replace("\r\n", "").contains('\n'));
    }

    #[test]
    fn rejected_sections_keep_their_place_and_mid_and_leave_the_bundle_group() {
        let offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE a0 v1 v2\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a0\r\na=rtpmap:111 opus/48000/2\r\n\
            m=video 5000 RTP/AVP 96\r\na=mid:v1\r\na=rtpmap:96 H264/90000\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 100\r\na=mid:v2\r\na=rtpmap:100 VP8/90000\r\n";
        let o = Offer::new(offer, true);
        assert!(o.has_usable());
        assert_eq!(o.rejected(), 1);
        let usable = o.usable(offer);
        assert!(usable.contains("a=group:BUNDLE a0 v2\r\n"), "{usable}");
        assert!(!usable.contains("RTP/AVP") && !usable.contains("a=mid:v1"));
        assert!(usable.contains("a=mid:a0") && usable.contains("a=mid:v2"));
        // What str0m would answer to the usable part.
        let theirs = "v=0\r\no=- 9 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE a0 v2\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a0\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 100\r\na=mid:v2\r\n";
        let a = o.answer(Some(theirs));
        let m: Vec<&str> = a.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m,
            [
                "m=audio 9 UDP/TLS/RTP/SAVPF 111",
                "m=video 0 RTP/AVP 96",
                "m=video 9 UDP/TLS/RTP/SAVPF 100"
            ]
        );
        let mids: Vec<&str> = a.lines().filter_map(|l| l.strip_prefix("a=mid:")).collect();
        assert_eq!(mids, ["a0", "v1", "v2"]);
        assert!(
            a.starts_with("v=0\r\no=- 9 2 "),
            "str0m's session part: {a}"
        );
        assert!(has_media(&a));
        // Only a group of rejected mids: the group goes.
        let only = "v=0\r\na=group:BUNDLE x\r\nm=video 9 RTP/AVP 96\r\na=mid:x\r\n\
                    m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n";
        assert!(!Offer::new(only, true).usable(only).contains("a=group"));
    }

    #[test]
    fn an_offer_without_rejected_sections_passes_unchanged_and_garbage_does_not_panic() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n";
        let o = Offer::new(offer, true);
        assert!(matches!(o.usable(offer), std::borrow::Cow::Borrowed(_)));
        assert_eq!(o.answer(Some("v=0\r\nx\r\n")), "v=0\r\nx\r\n");
        for g in [
            "",
            "m=",
            "m=\n",
            "a=mid:\nm=video",
            "m=video 0",
            "\n\n\r\nm= 1 2 3",
        ] {
            let o = Offer::new(g, false);
            let _ = o.usable(g);
            let _ = o.answer(None);
            let _ = has_media(g);
        }
    }

    #[test]
    fn a_data_channel_section_is_declined_without_use_data_channels() {
        let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
            m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\na=sctp-port:5000\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\n";
        let with = Offer::new(offer, true);
        assert_eq!(with.rejected(), 0);
        assert_eq!(with.usable(offer), offer);
        let o = Offer::new(offer, false);
        assert_eq!(o.rejected(), 1);
        let usable = o.usable(offer);
        assert!(!usable.contains("m=application") && !usable.contains("sctp-port"));
        assert!(usable.contains("a=group:BUNDLE 0 2\r\n"), "{usable}");
        let answer = "v=0\r\na=group:BUNDLE 0 2\r\nm=audio 9 X 111\r\na=mid:0\r\nm=video 9 X 96\r\na=mid:2\r\n";
        let full = o.answer(Some(answer));
        let m: Vec<&str> = full.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m,
            [
                "m=audio 9 X 111",
                "m=application 0 UDP/DTLS/SCTP webrtc-datachannel",
                "m=video 9 X 96"
            ]
        );
        assert!(full.contains(
            "m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\nm=video"
        ));
    }
}
