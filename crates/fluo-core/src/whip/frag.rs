//! Trickle-ICE fragments (RFC 8840) as WHIP/WHEP PATCHes carry them: their candidates with the
//! m-section each stands in, their ICE credentials, the checks of an ICE restart (RFC 9725
//! 4.3.2), and the fragment answering one; the ICE session's entity tag.

use super::MAX_PATCH_CANDIDATES;
use crate::engine::new_uuid;
use crate::http::HttpRefusal;

/// The entity tag of the ICE session an SDP (the endpoint's answer) describes: its ice-ufrag,
/// quoted (a random one if it has none).
pub(super) fn etag_of(sdp: &str) -> String {
    format!(
        "\"{}\"",
        ice_value(sdp, "ice-ufrag").unwrap_or_else(new_uuid)
    )
}

/// What a PATCH's If-Match says of the ICE session whose entity tag is `etag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Precondition {
    /// No If-Match.
    Absent,
    /// `*`: whatever ICE session is current (RFC 9725 4.3.2 asks it of an ICE restart).
    Any,
    /// A list of entity tags naming the session's.
    Current,
    /// A list not naming it: 412.
    Stale,
}

/// Reads If-Match (RFC 9110 13.1.1): `*` or a comma-separated list of entity tags (a comma
/// inside a quoted tag is the tag's), compared strongly, as If-Match must be: a weak tag
/// (`W/"..."`) never names the session.
pub(super) fn precondition(if_match: Option<&str>, etag: &str) -> Precondition {
    let Some(h) = if_match else {
        return Precondition::Absent;
    };
    let (mut items, mut start, mut quoted) = (vec![], 0, false);
    for (i, c) in h.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                items.push(&h[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&h[start..]);
    let mut found = Precondition::Stale;
    for tag in items.into_iter().map(str::trim) {
        if tag == "*" {
            return Precondition::Any;
        }
        if tag == etag {
            found = Precondition::Current;
        }
    }
    found
}

/// Whether an SDP line is the m-line of an accepted section (port not 0: a rejected section
/// has no transport).
pub(super) fn accepted_section(line: &str) -> bool {
    line.starts_with("m=") && line.split(' ').nth(1).is_some_and(|p| p != "0")
}

/// The value of the first `a=<name>:` line.
pub(super) fn ice_value(sdp: &str, name: &str) -> Option<String> {
    sdp.lines().find_map(|l| {
        l.trim()
            .strip_prefix("a=")?
            .strip_prefix(name)?
            .strip_prefix(':')
            .map(str::to_string)
    })
}

/// The mid of each m-section of an SDP, in order.
pub(super) fn section_mids(sdp: &str) -> Vec<Option<String>> {
    let mut mids: Vec<Option<String>> = vec![];
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            mids.push(None);
        } else if let (Some(m), Some(last)) = (line.strip_prefix("a=mid:"), mids.last_mut()) {
            last.get_or_insert_with(|| m.to_string());
        }
    }
    mids
}

/// The m-section (index in the offer, mid) a fragment's candidate belongs to: the one of its
/// own `a=mid`, else the one at its m-line's place in the fragment.
pub(super) fn candidate_section(
    c: &FragCandidate,
    mids: &[Option<String>],
) -> Result<(usize, String), HttpRefusal> {
    let unknown = || {
        HttpRefusal::new(
            422,
            "a candidate names an m-section the offer does not have",
        )
    };
    match &c.mid {
        Some(mid) => {
            let index = (mids.iter())
                .position(|m| m.as_deref() == Some(mid.as_str()))
                .ok_or_else(unknown)?;
            Ok((index, mid.clone()))
        }
        None => {
            let index = c.section.unwrap_or(0);
            if index >= mids.len().max(1) {
                return Err(unknown());
            }
            let mid = mids.get(index).cloned().flatten().unwrap_or_default();
            Ok((index, mid))
        }
    }
}

/// A candidate attribute's shape (RFC 8839 5.1): foundation, component, transport,
/// priority, address, port, `typ`, type.
pub(super) fn candidate_well_formed(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("candidate:") else {
        return false;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.len() >= 8
        && !f[0].is_empty()
        && f[1].parse::<u16>().is_ok_and(|c| c >= 1)
        && !f[2].is_empty()
        && f[3].parse::<u32>().is_ok()
        && !f[4].is_empty()
        && f[5].parse::<u16>().is_ok()
        && f[6] == "typ"
        && !f[7].is_empty()
}

/// One `a=candidate` line of a fragment, with the m-section it stands in.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct FragCandidate {
    /// `candidate:...` (without `a=`).
    pub(super) line: String,
    /// The `a=mid` of its m-section in the fragment, if it has one.
    mid: Option<String>,
    /// Its m-section's place in the fragment (`None`: before any m= line).
    section: Option<usize>,
}

/// A trickle-ICE fragment (RFC 8840): its ICE credentials (if any), candidates and the mids
/// of its m-sections.
#[derive(Debug)]
pub(super) struct Frag {
    pub(super) ufrag: Option<String>,
    pub(super) pwd: Option<String>,
    pub(super) candidates: Vec<FragCandidate>,
    mids: Vec<String>,
}

pub(super) fn parse_frag(frag: &str) -> Result<Frag, HttpRefusal> {
    let mut candidates: Vec<FragCandidate> = vec![];
    let mut section: Option<usize> = None;
    let mut mid: Option<String> = None;
    let mut first = 0;
    let mut mids = vec![];
    for line in frag.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
            return Err(HttpRefusal::new(
                400,
                "the body is not an SDP fragment (RFC 8840)",
            ));
        }
        if line.starts_with("m=") {
            section = Some(section.map_or(0, |s| s + 1));
            mid = None;
            first = candidates.len();
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            // The mid may come after the section's candidates.
            mid = Some(m.to_string());
            mids.push(m.to_string());
            for c in &mut candidates[first..] {
                c.mid = mid.clone();
            }
        } else if let Some(c) = line.strip_prefix("a=candidate:") {
            candidates.push(FragCandidate {
                line: format!("candidate:{c}"),
                mid: mid.clone(),
                section,
            });
        }
        // Other lines (ice-options, end-of-candidates, group, c=, ...) say nothing to act on.
    }
    if candidates.len() > MAX_PATCH_CANDIDATES {
        return Err(HttpRefusal::new(
            413,
            format!("more than {MAX_PATCH_CANDIDATES} candidates in one PATCH"),
        ));
    }
    Ok(Frag {
        ufrag: ice_value(frag, "ice-ufrag"),
        pwd: ice_value(frag, "ice-pwd"),
        candidates,
        mids,
    })
}

/// An ICE restart's fragment checked (RFC 9725 4.3.2): the new `ice-ufrag` and `ice-pwd`
/// (both present, both new, of ICE's grammar: 400 otherwise), m-sections of the session only
/// (the restart renegotiates nothing else: 422). `had`: the session's credentials; `mids`:
/// the offer's.
pub(super) fn restart_credentials(
    f: &Frag,
    had: (Option<&str>, Option<&str>),
    mids: &[Option<String>],
) -> Result<(String, String), HttpRefusal> {
    let (Some(ufrag), Some(pwd)) = (&f.ufrag, &f.pwd) else {
        return Err(HttpRefusal::new(
            400,
            "an ICE restart needs the new a=ice-ufrag and a=ice-pwd",
        ));
    };
    if had.0 == Some(ufrag.as_str()) || had.1 == Some(pwd.as_str()) {
        return Err(HttpRefusal::new(
            400,
            "an ICE restart needs a new a=ice-ufrag and a new a=ice-pwd",
        ));
    }
    // RFC 8839 5.4: ice-char is ALPHA / DIGIT / "+" / "/"; 4 to 256 of them for the ufrag,
    // 22 to 256 for the password.
    let ice_chars = |s: &str, min: usize| {
        (min..=256).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    if !ice_chars(ufrag, 4) || !ice_chars(pwd, 22) {
        return Err(HttpRefusal::new(
            400,
            "a=ice-ufrag or a=ice-pwd is malformed (RFC 8839)",
        ));
    }
    if (f.mids.iter()).any(|m| !mids.iter().any(|o| o.as_deref() == Some(m.as_str()))) {
        return Err(HttpRefusal::new(
            422,
            "an ICE restart cannot change the session's m-sections",
        ));
    }
    Ok((ufrag.clone(), pwd.clone()))
}

/// The fragment answering an ICE restart (RFC 9725 4.3.2), from the endpoint's new SDP
/// answer: `a=ice-lite` if it is, its new `ice-ufrag` and `ice-pwd`, and its first accepted
/// m-section (the bundle's transport) with its mid and candidates, then
/// `a=end-of-candidates` (the server gathers no more).
pub(super) fn restart_answer(answer: &str) -> String {
    let mut out = String::new();
    let session: Vec<&str> = (answer.lines().map(str::trim))
        .take_while(|l| !l.starts_with("m="))
        .collect();
    if session.contains(&"a=ice-lite") {
        out.push_str("a=ice-lite\r\n");
    }
    for name in ["ice-ufrag", "ice-pwd"] {
        if let Some(v) = ice_value(answer, name) {
            out.push_str(&format!("a={name}:{v}\r\n"));
        }
    }
    let mut section: Option<Vec<&str>> = None;
    for line in answer.lines().map(str::trim) {
        if line.starts_with("m=") {
            if section.is_some() {
                break;
            }
            if accepted_section(line) {
                section = Some(vec![line]);
            }
        } else if let Some(s) = section.as_mut() {
            if line.starts_with("a=mid:") || line.starts_with("a=candidate:") {
                s.push(line);
            }
        }
    }
    for line in section.unwrap_or_default() {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("a=end-of-candidates\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_give_candidates_with_their_sections_and_credentials() {
        let f = "a=ice-options:trickle\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2113937151 127.0.0.1 5000 typ host\r\nc=IN IP4 0.0.0.0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=candidate:2 1 udp 2113937151 127.0.0.1 5002 typ host\r\na=mid:v\r\na=end-of-candidates\r\n";
        let p = parse_frag(f).unwrap();
        assert_eq!((p.ufrag, p.pwd), (None, None));
        let got: Vec<_> = (p.candidates.iter())
            .map(|c| (c.line.as_str(), c.mid.as_deref(), c.section))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "candidate:1 1 udp 2113937151 127.0.0.1 5000 typ host",
                    Some("0"),
                    Some(0)
                ),
                (
                    "candidate:2 1 udp 2113937151 127.0.0.1 5002 typ host",
                    Some("v"),
                    Some(1)
                ),
            ]
        );
        let p = parse_frag("a=ice-ufrag:abcd\r\na=ice-pwd:x\r\n").unwrap();
        assert_eq!(
            (p.ufrag.as_deref(), p.pwd.as_deref()),
            (Some("abcd"), Some("x"))
        );
        assert_eq!(parse_frag("hello").unwrap_err().status, 400);
        assert!(candidate_well_formed(
            "candidate:1 1 udp 5 ::1 9 typ host tcptype active"
        ));
        assert!(!candidate_well_formed(
            "candidate:1 1 udp 5 ::1 port typ host"
        ));
        assert!(!candidate_well_formed("candidate:1 1 udp"));
    }

    #[test]
    fn a_restart_needs_both_new_credentials_of_ice_grammar_and_the_sessions_mids() {
        let mids = [Some("0".to_string()), Some("1".to_string())];
        let had = (Some("EsAw"), Some("P2uYro0UCOQ4zxjKXaWCBui1"));
        let status = |frag: &str| {
            let f = parse_frag(frag).unwrap();
            restart_credentials(&f, had, &mids).map_err(|r| r.status)
        };
        let good = "a=ice-ufrag:ZZy2\r\na=ice-pwd:w9dGRB0Tn/HZuuOxCUJYqS+x\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n";
        assert_eq!(
            status(good),
            Ok(("ZZy2".into(), "w9dGRB0Tn/HZuuOxCUJYqS+x".into()))
        );
        assert_eq!(status("a=ice-ufrag:ZZy2\r\n"), Err(400), "no password");
        let same_pwd = "a=ice-ufrag:ZZy2\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n";
        assert_eq!(status(same_pwd), Err(400));
        let short = "a=ice-ufrag:ZZ\r\na=ice-pwd:w9dGRB0Tn/HZuuOxCUJYqS+x\r\n";
        assert_eq!(status(short), Err(400));
        let bad = "a=ice-ufrag:ZZ-y\r\na=ice-pwd:w9dGRB0Tn/HZuuOxCUJYqS+x\r\n";
        assert_eq!(status(bad), Err(400));
        assert_eq!(status(&good.replace("a=mid:0", "a=mid:7")), Err(422));
    }

    #[test]
    fn a_restarts_answer_carries_the_new_credentials_and_the_first_sections_candidates() {
        let answer = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\nm=audio 0 UDP/TLS/RTP/SAVPF 0\r\na=mid:a\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:v\r\na=ice-ufrag:N3wu\r\na=ice-pwd:n3wpassword0123456789012\r\na=candidate:1 1 udp 2130706175 127.0.0.1 40000 typ host\r\na=recvonly\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:d\r\na=candidate:1 1 udp 2130706175 127.0.0.1 40000 typ host\r\n";
        assert_eq!(
            restart_answer(answer),
            "a=ice-lite\r\na=ice-ufrag:N3wu\r\na=ice-pwd:n3wpassword0123456789012\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\na=candidate:1 1 udp 2130706175 127.0.0.1 40000 typ host\r\na=end-of-candidates\r\n"
        );
    }

    #[test]
    fn the_etag_is_the_quoted_ufrag_and_a_port_0_section_is_rejected() {
        assert_eq!(etag_of("v=0\r\na=ice-ufrag:N3wu\r\n"), "\"N3wu\"");
        assert!(etag_of("v=0\r\n").starts_with('"'));
        assert!(accepted_section("m=video 9 UDP/TLS/RTP/SAVPF 96"));
        assert!(!accepted_section("m=audio 0 UDP/TLS/RTP/SAVPF 0"));
        assert!(!accepted_section("a=mid:0"));
    }

    #[test]
    fn if_match_is_star_or_a_list_of_strong_tags() {
        use Precondition::*;
        let p = |h: &str| precondition(Some(h), "\"abcd\"");
        assert_eq!(precondition(None, "\"abcd\""), Absent);
        assert_eq!(p("*"), Any);
        assert_eq!(p(" * "), Any);
        assert_eq!(p("\"abcd\""), Current);
        assert_eq!(p("\"old\", \"abcd\""), Current);
        assert_eq!(p("\"old\",\"abcd\" , "), Current);
        assert_eq!(p("\"a,b\", \"abcd\""), Current, "a comma inside a tag");
        assert_eq!(p("\"old\", \"x\""), Stale);
        assert_eq!(p("W/\"abcd\""), Stale, "a weak tag never matches");
        assert_eq!(p("\"ab,cd\""), Stale);
        assert_eq!(p(""), Stale);
        assert_eq!(p("abcd"), Stale, "unquoted");
    }
}
