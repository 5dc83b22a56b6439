//! Client-visible texts made from what libraries report (str0m, GStreamer, the OS): the one
//! place where a foreign error becomes part of an error message or an `Error` event.
//!
//! Libraries describe their failures for their own developers: parser positions given as
//! memory addresses (`PointerOffset(0x7f...)`), Rust `Debug` dumps of their structs, several
//! lines of context. None of that may reach a client: it says nothing useful to a Kurento
//! application and leaks the server's memory layout. [`foreign`] keeps the reason and drops
//! the rest; [`sdp_line`] describes a bad SDP line by its number and the form it should have.

use std::fmt::Display;

/// Longest text kept from a library's error.
const MAX_CHARS: usize = 300;

/// A library's error as text a client may see: its lines joined with "; ", without memory
/// addresses or Rust `Debug` dumps, at most 300 characters.
pub fn foreign(e: impl Display) -> String {
    let raw = e.to_string();
    let mut parts: Vec<String> = vec![];
    for line in raw.lines() {
        let line = without_dumps(&without_addresses(line));
        let line = line.trim().trim_end_matches([':', ',']).trim();
        if !line.is_empty() {
            parts.push(line.to_string());
        }
    }
    let mut out = parts.join("; ");
    if out.is_empty() {
        out = "no details".into();
    }
    if out.chars().count() > MAX_CHARS {
        out = out.chars().take(MAX_CHARS).collect::<String>() + "...";
    }
    out
}

/// Whether a text carries what [`foreign`] removes: a memory address (`0x` and six or more
/// lower-case hexadecimal digits), a `PointerOffset` or a Rust `Debug` dump (`{ a: b }` on one
/// line, the pattern `/0x[0-9a-f]{6,}|PointerOffset|\{ .*: .* \}/`). Tests run every error
/// text a client sees through it.
pub fn leaks(text: &str) -> bool {
    if text.contains("PointerOffset") {
        return true;
    }
    let hex_address = text.match_indices("0x").any(|(i, _)| {
        text[i + 2..]
            .bytes()
            .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .count()
            >= 6
    });
    let dump = text.lines().any(|l| {
        l.match_indices("{ ").any(|(i, _)| {
            let rest = &l[i + 2..];
            rest.find(": ")
                .is_some_and(|j| rest[j + 2..].contains(" }"))
        })
    });
    hex_address || dump
}

/// Drops `PointerOffset(...)` and hexadecimal numbers of six digits or more (addresses).
fn without_addresses(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("PointerOffset(") {
            rest = after.split_once(')').map_or("", |(_, r)| r);
            out.push('?');
            continue;
        }
        let b = rest.as_bytes();
        if b.len() > 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X') {
            let digits = rest[2..].bytes().take_while(u8::is_ascii_hexdigit).count();
            if digits >= 6 {
                out.push('?');
                rest = &rest[2 + digits..];
                continue;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Cuts a line where a Rust `Debug` dump of a struct starts (`Name { field: value ... }`).
fn without_dumps(s: &str) -> String {
    let mut from = 0;
    while let Some(i) = s[from..].find("{ ") {
        let at = from + i;
        let inner = &s[at + 2..];
        let field: String = inner
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !field.is_empty() && inner[field.len()..].starts_with(": ") {
            // The struct's name goes too.
            let head = s[..at].trim_end();
            let name_len = head
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .count();
            return head[..head.len() - name_len].trim_end().to_string();
        }
        from = at + 2;
    }
    s.to_string()
}

/// The form a line of SDP of this type must have (RFC 8866), for error messages.
pub fn sdp_form(line_type: char) -> &'static str {
    match line_type {
        'v' => "v=0",
        'o' => "o=<username> <sess-id> <sess-version> IN IP4|IP6 <address>",
        's' => "s=<session name>",
        't' => "t=<start time> <stop time>",
        'c' => "c=IN IP4|IP6 <address>",
        'm' => "m=<media> <port> <proto> <fmt>",
        'b' => "b=<bwtype>:<bandwidth>",
        'a' => "a=<attribute>[:<value>]",
        'i' | 'u' | 'e' | 'p' | 'z' | 'k' | 'r' => "<type>=<value>",
        _ => "a line <type>=<value> where <type> is one of v o s i u e p c b t r z k m a",
    }
}

/// The form an attribute line must have, where Fluo reads it.
fn attribute_form(line: &str) -> Option<&'static str> {
    let name = line.strip_prefix("a=")?.split(':').next()?;
    Some(match name {
        "rtpmap" => "a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]",
        "fmtp" => "a=fmtp:<payload type> <parameters>",
        "rtcp-fb" => "a=rtcp-fb:<payload type>|* <feedback type>",
        "extmap" => "a=extmap:<id>[/<direction>] <URI>",
        "candidate" => {
            "a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type>"
        }
        "fingerprint" => "a=fingerprint:<hash function> <hex bytes separated by :>",
        "setup" => "a=setup:actpass|active|passive",
        "mid" => "a=mid:<identification tag>",
        "group" => "a=group:BUNDLE <mid>...",
        "ssrc" => "a=ssrc:<ssrc> <attribute>[:<value>]",
        "crypto" => "a=crypto:<tag> <suite> inline:<key>",
        "rtcp" => "a=rtcp:<port> [IN IP4|IP6 <address>]",
        _ => return None,
    })
}

/// "line N: expected <form>" for line `n` (from 1) of `sdp`. `wanted` is the type of line
/// a parser wanted there, if it knows (a line missing or in the wrong place); without it the
/// form is that of the line's own type. A number past the last line means a line is
/// missing at the end.
pub fn sdp_line(sdp: &str, n: usize, wanted: Option<char>) -> String {
    let line = sdp.lines().nth(n.saturating_sub(1)).map(str::trim);
    match (line, wanted) {
        (Some(l), None) if !l.is_empty() => {
            let ty = l.chars().next().unwrap_or(' ');
            let form = if l.as_bytes().get(1) == Some(&b'=') {
                attribute_form(l).unwrap_or(sdp_form(ty))
            } else {
                sdp_form('?')
            };
            format!("line {n}: expected {form}")
        }
        (Some(l), Some(w)) if !l.is_empty() => format!("line {n}: expected {}", sdp_form(w)),
        (_, Some(w)) => format!("line {n}: missing, expected {}", sdp_form(w)),
        (_, None) => format!("line {n}: unexpected end of the description"),
    }
}

/// The line number (from 1) that byte `offset` of `sdp` falls on (a line's end belongs to
/// it).
pub fn sdp_line_at(sdp: &str, offset: usize) -> usize {
    let offset = offset.min(sdp.len());
    1 + sdp.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_dumps_are_dropped() {
        let e = "SDP parse: Parse error at PointerOffset(0x7f3a2c001234)\nUnexpected `g`\nExpected `v`\n";
        assert_eq!(
            foreign(e),
            "SDP parse: Parse error at ?; Unexpected `g`; Expected `v`"
        );
        assert_eq!(foreign("freed 0x55d0c0ffee11 twice"), "freed ? twice");
        assert_eq!(foreign("0x1f is fine"), "0x1f is fine");
        assert_eq!(
            foreign("bad config: Config { port: 5, name: \"x\" }"),
            "bad config"
        );
        assert_eq!(
            foreign("caps {  I420, YV12 } stay"),
            "caps {  I420, YV12 } stay"
        );
        assert_eq!(foreign(""), "no details");
        assert_eq!(foreign("x".repeat(400)).chars().count(), 303);
        assert_eq!(foreign("é0x1234567"), "é?");
    }

    #[test]
    fn leaks_matches_addresses_and_dumps() {
        assert!(leaks("Parse error at PointerOffset(?)"));
        assert!(leaks("at 0x7f00aa11"));
        assert!(
            !leaks("at 0x7F00AA11"),
            "lower-case hex only, as the pattern"
        );
        assert!(!leaks("0x1f"));
        assert!(leaks("Foo { a: 1 }"));
        assert!(leaks("x {  b: c }"));
        assert!(!leaks("Foo {\n a: 1 }"), "one line");
        assert!(!leaks("caps { I420, YV12 }"));
        assert!(!leaks(&foreign(
            "Parse error at PointerOffset(0x7f3a2c001234) Foo { a: 1 }"
        )));
    }

    #[test]
    fn sdp_lines_are_described_by_number_and_form() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 1.2.3.4\r\nm=audio\r\na=rtpmap:96\r\nfoo\r\n";
        assert_eq!(
            sdp_line(sdp, 3, None),
            "line 3: expected m=<media> <port> <proto> <fmt>"
        );
        assert_eq!(
            sdp_line(sdp, 4, None),
            "line 4: expected a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]"
        );
        assert_eq!(
            sdp_line(sdp, 5, Some('s')),
            "line 5: expected s=<session name>"
        );
        assert_eq!(
            sdp_line(sdp, 2, Some('s')),
            "line 2: expected s=<session name>"
        );
        assert_eq!(
            sdp_line(sdp, 5, None),
            "line 5: expected a line <type>=<value> where <type> is one of v o s i u e p c b t r z k m a"
        );
        assert_eq!(
            sdp_line(sdp, 6, None),
            "line 6: unexpected end of the description"
        );
        assert_eq!(
            sdp_line(sdp, 6, Some('t')),
            "line 6: missing, expected t=<start time> <stop time>"
        );
        assert_eq!(sdp_line_at(sdp, 0), 1);
        assert_eq!(sdp_line_at(sdp, 3), 1, "the end of line 1 is on line 1");
        assert_eq!(sdp_line_at(sdp, 5), 2);
        assert_eq!(sdp_line_at(sdp, sdp.len()), 6);
    }
}
