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
