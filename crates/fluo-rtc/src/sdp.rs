//! SDP touch-ups Kurento applications rely on, and parsing with client-readable errors.

use fluo_api::text::{sdp_line, sdp_line_at};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::error::SdpError;

/// Makes every `a=msid` / `a=ssrc ... msid:` line of a description use one stream id, so the
/// browser puts audio and video in one MediaStream (as KMS does).
pub(crate) fn unify_msid(sdp: &str) -> String {
    let mut stream: Option<String> = None;
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let eol = &line[body.len()..];
        if let Some(rest) = body.strip_prefix("a=msid:") {
            if let Some((s, track)) = rest.split_once(' ') {
                let s = stream.get_or_insert_with(|| s.to_string());
                out.push_str(&format!("a=msid:{s} {track}{eol}"));
                continue;
            }
        }
        if body.starts_with("a=ssrc:") {
            if let Some(idx) = body.find(" msid:") {
                let (head, rest) = body.split_at(idx + 6);
                if let Some((s, track)) = rest.split_once(' ') {
                    let s = stream.get_or_insert_with(|| s.to_string());
                    out.push_str(&format!("{head}{s} {track}{eol}"));
                    continue;
                }
            }
        }
        out.push_str(line);
    }
    out
}

/// Whether a description announces an ICE-lite agent (`a=ice-lite`, a session-level attribute).
pub(crate) fn is_ice_lite(sdp: &str) -> bool {
    sdp.lines()
        .map(str::trim_end)
        .take_while(|l| !l.starts_with("m="))
        .any(|l| l == "a=ice-lite")
}

/// A description without its `a=ice-lite` line: str0m writes it from the configuration the
/// `Rtc` was built with (every endpoint starts as ICE-lite), also for an endpoint that switched
/// to full ICE.
pub(crate) fn without_ice_lite(sdp: String) -> String {
    if !is_ice_lite(&sdp) {
        return sdp;
    }
    sdp.split_inclusive('\n')
        .filter(|l| l.trim_end() != "a=ice-lite")
        .collect()
}

/// The peer's `offer` again with ICE credentials `ufrag` / `pwd` and without its candidates
/// (those of the ICE session it restarts): what an ICE restart asked outside an offer (a
/// WHIP/WHEP PATCH) amounts to as an offer.
pub(crate) fn with_ice_credentials(offer: &str, ufrag: &str, pwd: &str) -> String {
    let mut out = String::with_capacity(offer.len());
    for line in offer.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let eol = &line[body.len()..];
        if body.starts_with("a=candidate:") || body == "a=end-of-candidates" {
            continue;
        }
        if body.starts_with("a=ice-ufrag:") {
            out.push_str(&format!("a=ice-ufrag:{ufrag}{eol}"));
        } else if body.starts_with("a=ice-pwd:") {
            out.push_str(&format!("a=ice-pwd:{pwd}{eol}"));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// The header extension of transport-wide congestion control (TWCC).
const TWCC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Declines congestion feedback, transport-wide (TWCC) and REMB, on the m-sections where the
/// peer only receives (`a=recvonly`). Media Fluo sends there is forwarded, never paced by a
/// send-side estimate. So the sequence number on every packet, the per-packet send record
/// (str0m keeps the last 1000, about 64 KiB per viewer) and the feedback the viewer returns
/// every few milliseconds would all be spent for nothing.
///
/// `goog-remb` goes from what str0m reads too, but that declines nothing: str0m's answer
/// carries the feedback its codecs are configured with (`goog-remb` on video) whatever the
/// offer had, and Chromium sends REMB for video that arrives without TWCC sequence numbers
/// whether or not `goog-remb` was agreed (Chromium 156, measured with and without it in the
/// answer). So receive-only viewers send REMB, and the publisher is held to the lowest of
/// their estimates (`MediaCore::update_remb`), as KMS holds it. Sections where the peer sends
/// keep both: its own bandwidth estimate needs the feedback.
///
/// With `keep_twcc` (the server's `--bwe on` or `auto`, docs/simulcast.md) receive-only
/// sections keep TWCC and lose only `goog-remb`. A Chromium viewer then returns TWCC feedback
/// for the packets that carry a transport-wide sequence number, which Fluo's estimate of its
/// bandwidth reads, and REMB for video that carries none: with `auto` Fluo writes the number
/// only while the viewer gets a layered source's video, so the viewer of a plain source
/// sends REMB as without TWCC.
pub(crate) fn without_egress_feedback(sdp: &str, keep_twcc: bool) -> std::borrow::Cow<'_, str> {
    if (keep_twcc || !sdp.contains(TWCC_URI)) && !sdp.contains(" goog-remb") {
        return sdp.into();
    }
    let mut out = String::with_capacity(sdp.len());
    // The lines of one section (the session part, then each m-section), and whether the
    // section is receive-only.
    let mut section: Vec<&str> = vec![];
    let flush = |section: &mut Vec<&str>, out: &mut String| {
        let is_media = section.first().is_some_and(|l| l.starts_with("m="));
        let recvonly = is_media
            && section
                .iter()
                .any(|l| l.trim_end_matches(['\r', '\n']) == "a=recvonly");
        for line in section.drain(..) {
            let body = line.trim_end_matches(['\r', '\n']);
            let twcc = (body.starts_with("a=extmap:") && body.ends_with(TWCC_URI))
                || (body.starts_with("a=rtcp-fb:") && body.ends_with(" transport-cc"));
            let remb = body.starts_with("a=rtcp-fb:") && body.ends_with(" goog-remb");
            let feedback = remb || (twcc && !keep_twcc);
            if !(recvonly && feedback) {
                out.push_str(line);
            }
        }
    };
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("m=") {
            flush(&mut section, &mut out);
        }
        section.push(line);
    }
    flush(&mut section, &mut out);
    out.into()
}

/// An offer whose m-sections name at most [`fluo_sfu::simulcast::MAX_LAYERS`] rids each: the
/// `a=rid` lines after the first eight of a section are left out, and so are their rids in its
/// `a=simulcast` line (RFC 8853 §5.3 and JSEP §5.3.1 let an answerer leave out rids it does
/// not take; the offerer then does not send them). The router tells eight layers apart; each
/// further rid would be a stream Fluo can only drop (docs/simulcast.md).
pub(crate) fn with_at_most_max_layers(sdp: &str) -> std::borrow::Cow<'_, str> {
    const MAX: usize = fluo_sfu::simulcast::MAX_LAYERS;
    if sdp.matches("a=rid:").count() <= MAX {
        return sdp.into();
    }
    let mut out = String::with_capacity(sdp.len());
    let mut section: Vec<&str> = vec![];
    let flush = |section: &mut Vec<&str>, out: &mut String| {
        let rid_of = |l: &str| {
            let rest = l.trim_end_matches(['\r', '\n']).strip_prefix("a=rid:")?;
            rest.split(' ').next().map(str::to_string)
        };
        let rids: Vec<String> = section.iter().filter_map(|l| rid_of(l)).collect();
        let kept = &rids[..rids.len().min(MAX)];
        for line in section.drain(..) {
            let body = line.trim_end_matches(['\r', '\n']);
            if let Some(rid) = rid_of(line) {
                if !kept.contains(&rid) {
                    continue;
                }
            }
            if let Some(rest) = body
                .strip_prefix("a=simulcast:")
                .filter(|_| rids.len() > MAX)
            {
                let eol = &line[body.len()..];
                if let Some(kept_line) = simulcast_keeping(rest, kept) {
                    out.push_str(&format!("a=simulcast:{kept_line}{eol}"));
                }
                continue;
            }
            out.push_str(line);
        }
    };
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("m=") {
            flush(&mut section, &mut out);
        }
        section.push(line);
    }
    flush(&mut section, &mut out);
    out.into()
}

/// An `a=simulcast` value (`send q;h,x recv r`: per direction, streams separated by `;`,
/// alternatives by `,`, a paused one written `~rid`) naming only the rids in `kept`; `None`
/// when no rid is left.
fn simulcast_keeping(value: &str, kept: &[String]) -> Option<String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let mut parts = vec![];
    for pair in words.chunks(2) {
        let [dir, list] = pair else {
            continue;
        };
        let streams: Vec<String> = list
            .split(';')
            .filter_map(|alternatives| {
                let ids: Vec<&str> = alternatives
                    .split(',')
                    .filter(|id| kept.iter().any(|k| k == id.trim_start_matches('~')))
                    .collect();
                (!ids.is_empty()).then(|| ids.join(","))
            })
            .collect();
        if !streams.is_empty() {
            parts.push(format!("{dir} {}", streams.join(";")));
        }
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The first `a=mid:` of a description.
/// Refuses a description that gives one payload type different codec parameters in two
/// m-sections: str0m 0.25 panics on it ("Pt locked multiple times"), which would end the
/// server (found by `fuzz/` target `sdp`). Browsers never do it: under BUNDLE a payload type
/// means one codec.
pub(crate) fn check_payload_types(sdp: &str) -> Result<(), String> {
    use std::collections::HashMap;
    // pt -> (m-section index, rtpmap, fmtp) as first seen
    let mut seen: HashMap<String, (usize, String, String)> = HashMap::new();
    let mut section = 0usize;
    // The m= line (number) of the section being read.
    let mut m_line = 0usize;
    let mut current: HashMap<String, (String, String)> = HashMap::new();
    let mut flush = |current: &mut HashMap<String, (String, String)>,
                     section: usize,
                     m_line: usize|
     -> Result<(), String> {
        let mut pts: Vec<_> = current.drain().collect();
        pts.sort();
        for (pt, (map, fmtp)) in pts {
            match seen.get(&pt) {
                Some((s, m, f)) if *s != section && (*m != map || *f != fmtp) => {
                    return Err(format!(
                        "line {m_line}: payload type {pt} is given different codecs in two m-sections ({} and {})",
                        if m.is_empty() { "-" } else { m },
                        if map.is_empty() { "-" } else { &map }
                    ));
                }
                Some(_) => {}
                None => {
                    seen.insert(pt, (section, map, fmtp));
                }
            }
        }
        Ok(())
    };
    for (i, line) in sdp.lines().map(str::trim).enumerate() {
        if line.starts_with("m=") {
            flush(&mut current, section, m_line)?;
            section += 1;
            m_line = i + 1;
            continue;
        }
        if section == 0 {
            continue;
        }
        if let Some(r) = line.strip_prefix("a=rtpmap:") {
            let (pt, rest) = r.split_once(' ').unwrap_or((r, ""));
            current.entry(pt.to_string()).or_default().0 = rest.trim().to_ascii_lowercase();
        } else if let Some(r) = line.strip_prefix("a=fmtp:") {
            let (pt, rest) = r.split_once(' ').unwrap_or((r, ""));
            current.entry(pt.to_string()).or_default().1 = rest.trim().to_string();
        }
    }
    flush(&mut current, section, m_line)
}

/// Parses an offer for str0m: `usable` is the client's `offer` without the sections Fluo
/// rejects, checked with [`check_payload_types`] and filtered by [`without_egress_feedback`]
/// (`keep_twcc` as it takes it) and [`with_at_most_max_layers`].
/// A bad one is described by line number (of the client's text where str0m finds the same
/// fault there) and expected form.
pub(crate) fn parse_offer(offer: &str, usable: &str, keep_twcc: bool) -> Result<SdpOffer, String> {
    check_payload_types(usable)?;
    let filtered = without_egress_feedback(usable, keep_twcc);
    let capped = match with_at_most_max_layers(&filtered) {
        std::borrow::Cow::Owned(s) => Some(s),
        std::borrow::Cow::Borrowed(_) => None,
    };
    let filtered = capped.map_or(filtered, std::borrow::Cow::Owned);
    SdpOffer::from_sdp_string(&filtered).map_err(|e| {
        if std::ptr::eq(filtered.as_ref(), offer) {
            return parse_error(offer, &e);
        }
        // Line numbers of the client's text, which has lines the parsed one has not.
        match SdpOffer::from_sdp_string(offer) {
            Err(e) => parse_error(offer, &e),
            Ok(_) => parse_error(&filtered, &e),
        }
    })
}

/// Parses an answer for str0m (after [`check_payload_types`]); a bad one is described by
/// line number and expected form.
pub(crate) fn parse_answer(sdp: &str) -> Result<SdpAnswer, String> {
    check_payload_types(sdp)?;
    SdpAnswer::from_sdp_string(sdp).map_err(|e| parse_error(sdp, &e))
}

/// str0m's parse error as "line N: expected ...". Its text names the failing position as the
/// address of a byte in `sdp` (`Parse error at PointerOffset(0x...)`), which is never shown:
/// it becomes a line number, and the form comes from the line's type or from the type of line
/// the parser wanted there. Checks of a whole m-section (str0m's "Missing a=rtp_map:96 for
/// mid: 0" and the like) keep their own words, at the section's m= line.
fn parse_error(sdp: &str, e: &SdpError) -> String {
    let text = match e {
        SdpError::ParseError(t) => t.as_str(),
        SdpError::Inconsistent(t) => t.as_str(),
    };
    let offset = text
        .split_once("PointerOffset(0x")
        .and_then(|(_, rest)| rest.split(')').next())
        .and_then(|hex| usize::from_str_radix(hex, 16).ok())
        .and_then(|addr| addr.checked_sub(sdp.as_ptr() as usize))
        .filter(|off| *off <= sdp.len());
    let details: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("Parse error at") && *l != "sdp line")
        .map(|l| l.strip_prefix("SDP inconsistent: ").unwrap_or(l))
        .collect();
    // combine's own lines quote tokens (`v`) or name classes of input; str0m's messages do not.
    let parser_words = |l: &str| {
        l.starts_with("Unexpected")
            || (l.starts_with("Expected")
                && (l.contains('`') || l.contains("end of input") || l.contains("newline")))
    };
    if let Some(message) = details.iter().find(|l| !parser_words(l)) {
        let message = fluo_api::text::foreign(message);
        // These checks run on a whole m-section, from the end of the line before it.
        let section_at = |o: usize| {
            let ends_line = matches!(sdp.as_bytes().get(o), Some(b'\r' | b'\n'));
            sdp_line_at(sdp, o) + usize::from(ends_line)
        };
        let n = message
            .rsplit_once("mid: ")
            .and_then(|(_, mid)| m_line_of_mid(sdp, mid.trim()))
            .or_else(|| offset.map(section_at))
            .unwrap_or(1);
        let mut chars = message.chars();
        let first = chars.next().map(|c| c.to_lowercase().to_string());
        return format!("line {n}: {}{}", first.unwrap_or_default(), chars.as_str());
    }
    // The type of line the parser wanted, if it names one (`Expected `s``).
    let wanted = details
        .iter()
        .filter(|l| l.starts_with("Expected"))
        .flat_map(|l| l.split('`').skip(1).step_by(2))
        .find_map(|tok| {
            let mut c = tok.chars();
            match (c.next(), c.next()) {
                (Some(t), None) if "vosiuepcbtrzkma".contains(t) => Some(t),
                _ => None,
            }
        });
    let Some(off) = offset else {
        // No position (not expected from str0m 0.25): the first line that is not
        // <type>=<value>, else the end.
        let n = sdp
            .lines()
            .position(|l| l.as_bytes().get(1) != Some(&b'='))
            .map_or(sdp.lines().count() + 1, |i| i + 1);
        return sdp_line(sdp, n, wanted);
    };
    let n = sdp_line_at(sdp, off);
    // Where a line starts, the parser wanted another type of line there; inside a line, the
    // line itself is malformed.
    let line_start = off == 0 || matches!(sdp.as_bytes().get(off - 1), Some(b'\n'));
    let at_end = !matches!(sdp.as_bytes().get(off), Some(b) if *b != b'\r' && *b != b'\n');
    sdp_line(sdp, n, wanted.filter(|_| line_start || at_end))
}

/// The number of the m= line of the section whose `a=mid:` is `mid`.
fn m_line_of_mid(sdp: &str, mid: &str) -> Option<usize> {
    let mut m_line = None;
    for (i, l) in sdp.lines().map(str::trim).enumerate() {
        if l.starts_with("m=") {
            m_line = Some(i + 1);
        } else if l.strip_prefix("a=mid:") == Some(mid) {
            return m_line;
        }
    }
    m_line
}

pub(crate) fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=mid:").map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_takes_new_ice_credentials_and_loses_its_candidates() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:old1\r\na=ice-pwd:oldpassword0123456789012\r\na=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\na=end-of-candidates\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:old1\r\na=ice-pwd:oldpassword0123456789012\r\na=mid:1\r\n";
        let got = with_ice_credentials(offer, "new1", "newpassword0123456789012");
        assert_eq!(
            got,
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:new1\r\na=ice-pwd:newpassword0123456789012\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:new1\r\na=ice-pwd:newpassword0123456789012\r\na=mid:1\r\n"
        );
    }

    #[test]
    fn congestion_feedback_is_declined_only_where_the_peer_only_receives() {
        let twcc = "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n";
        let offer = format!(
            "v=0\r\na=group:BUNDLE 0 1 2\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n{twcc}a=recvonly\r\na=rtcp-fb:111 transport-cc\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n{twcc}a=recvonly\r\na=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 nack\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 98\r\na=mid:2\r\n{twcc}a=sendrecv\r\na=rtcp-fb:98 transport-cc\r\na=rtcp-fb:98 goog-remb\r\n"
        );
        let out = without_egress_feedback(&offer, false);
        let sections: Vec<&str> = out.split("m=").collect();
        assert_eq!(sections.len(), 4);
        for recvonly in &sections[1..3] {
            assert!(!recvonly.contains("transport-cc"), "{recvonly}");
            assert!(!recvonly.contains("holmer"), "{recvonly}");
            assert!(!recvonly.contains("goog-remb"), "{recvonly}");
            assert!(recvonly.contains("a=recvonly\r\n"));
        }
        assert!(sections[2].contains("a=rtcp-fb:96 nack\r\n"));
        assert!(sections[3].contains(twcc));
        assert!(sections[3].contains("a=rtcp-fb:98 transport-cc\r\n"));
        assert!(sections[3].contains("a=rtcp-fb:98 goog-remb\r\n"));
        // Nothing else changes.
        let removed = 2 * twcc.len()
            + "a=rtcp-fb:111 transport-cc\r\n".len()
            + "a=rtcp-fb:96 transport-cc\r\n".len()
            + "a=rtcp-fb:96 goog-remb\r\n".len();
        assert_eq!(out.len(), offer.len() - removed);
        // Bare line feeds and an extmap with a direction work the same way.
        let lf = "v=0\nm=video 9 UDP/TLS/RTP/SAVPF 96\na=extmap:5/recvonly http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\na=recvonly\na=rtcp-fb:96 goog-remb\na=rtcp-fb:96 nack pli\n";
        assert_eq!(
            without_egress_feedback(lf, false),
            "v=0\nm=video 9 UDP/TLS/RTP/SAVPF 96\na=recvonly\na=rtcp-fb:96 nack pli\n"
        );
        // Without any of it the description is returned as it is.
        let plain = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=recvonly\r\n";
        assert!(matches!(
            without_egress_feedback(plain, false),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn with_the_estimate_on_receive_only_sections_keep_twcc_and_lose_remb() {
        let twcc = "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n";
        let offer = format!(
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n{twcc}a=recvonly\r\n\
             a=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 nack\r\n"
        );
        let out = without_egress_feedback(&offer, true);
        assert!(out.contains(twcc), "{out}");
        assert!(out.contains("a=rtcp-fb:96 transport-cc\r\n"), "{out}");
        assert!(!out.contains("goog-remb"), "{out}");
        assert_eq!(out.len(), offer.len() - "a=rtcp-fb:96 goog-remb\r\n".len());
        // Without REMB there is nothing to take out.
        let no_remb = offer.replace("a=rtcp-fb:96 goog-remb\r\n", "");
        assert!(matches!(
            without_egress_feedback(&no_remb, true),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn rids_past_the_eighth_of_a_section_are_left_out_of_the_offer() {
        let rids: String = (0..10).map(|i| format!("a=rid:r{i} send\r\n")).collect();
        let offer = format!(
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n{rids}\
             a=simulcast:send r0;r1;~r2;r3,r8;r4;r5;r6;r7;r9 recv r9\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rid:a send\r\na=simulcast:send a\r\n"
        );
        let out = with_at_most_max_layers(&offer);
        let kept: String = (0..8).map(|i| format!("a=rid:r{i} send\r\n")).collect();
        assert_eq!(
            out,
            format!(
                "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n{kept}\
                 a=simulcast:send r0;r1;~r2;r3;r4;r5;r6;r7\r\n\
                 m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rid:a send\r\na=simulcast:send a\r\n"
            )
        );
        // Eight or fewer: as it is.
        let few = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rid:q send\r\na=simulcast:send q\r\n";
        assert!(matches!(
            with_at_most_max_layers(few),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(simulcast_keeping("send x;y", &["q".into()]), None);
        assert_eq!(simulcast_keeping("send", &["q".into()]), None);
    }

    #[test]
    fn ice_lite_is_found_at_session_level_and_removed() {
        let lite = "v=0\r\na=ice-lite\r\nt=0 0\r\nm=audio 9 X 0\r\na=mid:0\r\n";
        assert!(is_ice_lite(lite));
        assert!(is_ice_lite("v=0\na=ice-lite\n"));
        let out = without_ice_lite(lite.to_string());
        assert_eq!(out, "v=0\r\nt=0 0\r\nm=audio 9 X 0\r\na=mid:0\r\n");
        assert!(!is_ice_lite(&out));
        // Only the session part counts.
        assert!(!is_ice_lite("v=0\r\nm=audio 9 X 0\r\na=ice-lite\r\n"));
        assert!(!is_ice_lite("v=0\r\na=ice-lite-ish\r\n"));
    }

    #[test]
    fn one_stream_for_audio_and_video() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=msid:aaa t1\r\na=ssrc:1 msid:aaa t1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=msid:bbb t2\r\na=ssrc:2 msid:bbb t2\r\n";
        let out = unify_msid(sdp);
        assert!(out.contains("a=msid:aaa t2\r\n"));
        assert!(out.contains("a=ssrc:2 msid:aaa t2\r\n"));
        assert!(!out.contains("bbb"));
        assert_eq!(first_mid(&out).as_deref(), Some("0"));
    }
}

#[cfg(test)]
mod pt_tests {
    use super::check_payload_types;

    #[test]
    fn one_payload_type_with_two_codecs_is_refused() {
        let bad = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:102 H264/90000\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1\r\n";
        assert!(check_payload_types(bad)
            .unwrap_err()
            .contains("payload type 102"));
        let same = "v=0\r\nm=video 9 X 96\r\na=rtpmap:96 VP8/90000\r\nm=video 9 X 96\r\na=rtpmap:96 VP8/90000\r\n";
        assert!(
            check_payload_types(same).is_ok(),
            "the same codec twice is fine"
        );
        let chrome_like = "v=0\r\nm=audio 9 X 111\r\na=rtpmap:111 opus/48000/2\r\nm=video 9 X 96 97\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n";
        assert!(check_payload_types(chrome_like).is_ok());
        for garbage in ["", "m=", "a=rtpmap:", "m=audio\na=fmtp:\nm=video\na=fmtp:"] {
            let _ = check_payload_types(garbage);
        }
    }
}
