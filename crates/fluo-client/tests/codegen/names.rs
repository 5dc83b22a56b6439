//! Rust names for the model's names.

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
    "ref", "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use",
    "where", "while", "abstract", "become", "box", "do", "final", "macro", "override", "priv",
    "try", "typeof", "unsized", "virtual", "yield", "gen",
];

/// `maxVideoRecvBandwidth` -> `max_video_recv_bandwidth`, `sdpMLineIndex` ->
/// `sdp_m_line_index`, `RTCInboundRTPStreamStats` -> `rtc_inbound_rtp_stream_stats`; a keyword
/// gets a trailing `_`.
pub fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    if KEYWORDS.contains(&out.as_str()) {
        out.push('_');
    }
    out
}

/// An enum value as a variant: `NOT_FLOWING` -> `NotFlowing`, `inboundrtp` -> `Inboundrtp`,
/// `H264` -> `H264`; one starting with a digit gets a `V`.
pub fn variant(value: &str) -> String {
    let mut out = String::new();
    for part in value.split(['_', '-']).filter(|p| !p.is_empty()) {
        let mut cs = part.chars();
        if let Some(f) = cs.next() {
            out.extend(f.to_uppercase());
            out.push_str(&cs.as_str().to_lowercase());
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'V');
    }
    out
}

/// `name` with its first letter upper-cased (`getName` from `name`).
pub fn upper_first(name: &str) -> String {
    let mut cs = name.chars();
    cs.next()
        .map(|f| f.to_uppercase().chain(cs).collect())
        .unwrap_or_default()
}

#[test]
fn names_convert() {
    assert_eq!(snake("maxVideoRecvBandwidth"), "max_video_recv_bandwidth");
    assert_eq!(snake("sdpMLineIndex"), "sdp_m_line_index");
    assert_eq!(
        snake("RTCInboundRTPStreamStats"),
        "rtc_inbound_rtp_stream_stats"
    );
    assert_eq!(snake("type"), "type_");
    assert_eq!(variant("NOT_FLOWING"), "NotFlowing");
    assert_eq!(variant("inboundrtp"), "Inboundrtp");
    assert_eq!(variant("H264"), "H264");
}
