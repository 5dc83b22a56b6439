//! SDP touch-ups Kurento applications rely on.

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
    let mut current: HashMap<String, (String, String)> = HashMap::new();
    let mut flush =
        |current: &mut HashMap<String, (String, String)>, section: usize| -> Result<(), String> {
            for (pt, (map, fmtp)) in current.drain() {
                match seen.get(&pt) {
                    Some((s, m, f)) if *s != section && (*m != map || *f != fmtp) => {
                        return Err(format!(
                        "payload type {pt} is given different codecs in two m-sections ({} and {})",
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
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            flush(&mut current, section)?;
            section += 1;
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
    flush(&mut current, section)
}

pub(crate) fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=mid:").map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

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
