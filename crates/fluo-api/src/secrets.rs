//! Secrets kept out of what clients and operators read: the GStreamer graphs of
//! getGstreamerDot, the properties the pipeline view shows, TURN URLs in logs. The one place
//! that knows what a secret looks like in a text:
//!
//! - the user and password of a URI (`rtsp://user:pass@host` -> `rtsp://***@host`);
//! - the value after a secret name, as `name=value` (element properties in a GStreamer graph
//!   or a GStreamerFilter command, a URI's query parameters) or `name: value` (caps fields):
//!   `key=...`, `srtp-key: ...`, `user-pw=...`, `?token=...`, `&X-Amz-Signature=...` (see
//!   [`is_secret_name`]).
//!
//! [`without_secrets`] applies both to any text: plain text without such a name or a
//! `scheme://` stays as it is ("Talk: bob@5pm"). A single URI-like value (no white space) may
//! also name its user without a scheme, as KMS's turnURL does (`user:password@host:port`):
//! [`uri_without_secrets`]. [`json_without_secrets`] goes through JSON values (arrays,
//! objects: members with a secret name are hidden whole).

use serde_json::Value;

/// What a hidden secret is written as.
pub const HIDDEN: &str = "***";

/// Whether a property, caps field, query parameter or member named `name` holds a secret
/// (case does not matter): keys (`key`, `keyBase64`, `srtp-key`, `api_key`), passwords (`password`,
/// `passwd`, `pass`, `pw`, `user-pw`), tokens (`token`, `access_token`,
/// `X-Amz-Security-Token`), signatures and credentials (`sig`, `signature`,
/// `X-Amz-Signature`, `X-Amz-Credential`, `X-Goog-Credential`), secrets, cookies and extra
/// headers, `Authorization`, and rtspsrc's `user-id` / `proxy-id`.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "key"
            | "keybase64"
            | "authorization"
            | "pass"
            | "pw"
            | "pwd"
            | "sig"
            | "apikey"
            | "cookie"
            | "cookies"
            | "extra-headers"
            | "user-id"
            | "proxy-id"
    ) || ["passw", "token", "secret", "signature", "credential"]
        .iter()
        .any(|s| n.contains(s))
        || ["-key", "_key", "-pw", "_pw", "-pass", "_pass"]
            .iter()
            .any(|s| n.ends_with(s))
}

/// `text` with the user and password of its URIs and the values of secret names hidden (see
/// the [module docs](self)).
pub fn without_secrets(text: &str) -> String {
    hide_secret_values(&hide_userinfo(text))
}

/// A single URI-like value (a URI, a turnURL) with its secrets hidden: as
/// [`without_secrets`], and a user named without a scheme (`user:password@host:port`,
/// `turn:user:password@host`) hidden too. A value with white space in it is no URI: only
/// [`without_secrets`] applies.
pub fn uri_without_secrets(uri: &str) -> String {
    let clean = without_secrets(uri);
    if clean.contains(char::is_whitespace) || clean.contains("://") {
        return clean;
    }
    let Some(at) = clean.rfind('@') else {
        return clean;
    };
    // After an optional scheme without slashes (`turn:`, `turns:`).
    let start = ["turn:", "turns:"]
        .iter()
        .find_map(|p| {
            clean
                .get(..p.len())
                .filter(|s| s.eq_ignore_ascii_case(p))
                .map(str::len)
        })
        .unwrap_or(0);
    // `user:password`: an address without a password (`bob@example.com`) is left alone.
    let userinfo = &clean[start..at];
    if !userinfo.contains(':') || userinfo.contains('/') {
        return clean;
    }
    format!("{}{HIDDEN}{}", &clean[..start], &clean[at..])
}

/// A JSON value with its secrets hidden: strings as [`uri_without_secrets`] says, arrays
/// and objects member by member; a member whose name is a secret's ([`is_secret_name`]) is
/// hidden whole, except in a Kurento Tag (`{"key": ..., "value": ...}`), whose `key` is its
/// name.
pub fn json_without_secrets(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(uri_without_secrets(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(json_without_secrets).collect()),
        Value::Object(m) => {
            let tag = m.contains_key("key") && m.contains_key("value");
            let out = m.into_iter().map(|(k, v)| {
                let whole = is_secret_name(&k) && !(tag && k == "key");
                let v = match (whole, v) {
                    (_, Value::Null) => Value::Null,
                    (true, _) => Value::from(HIDDEN),
                    (false, v) => json_without_secrets(v),
                };
                (k, v)
            });
            Value::Object(out.collect())
        }
        other => other,
    }
}

/// `scheme://user:pass@host...` -> `scheme://***@host...`.
fn hide_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest
            .find(['/', '"', '\\', ' ', '\n', '?', '#', ';', ','])
            .unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            out.push_str(HIDDEN);
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
}

/// Where a secret value that starts at `from` ends: at its closing quote when it is quoted
/// (`"..."`, or `\"...\"` inside a GStreamer graph's label), else at white space, a quote,
/// the next query parameter or fragment (`&`, `#`), a `,` or `;`, or an escape of a graph's
/// label (`\n`, `\l`, `\"`).
fn value_end(bytes: &[u8], from: usize) -> usize {
    let find = |start: usize, pat: &[u8]| {
        (start..bytes.len())
            .find(|&i| bytes[i..].starts_with(pat))
            .unwrap_or(bytes.len())
    };
    if bytes[from..].starts_with(b"\\\"") {
        return find(from + 2, b"\\\"");
    }
    if bytes.get(from) == Some(&b'"') {
        return find(from + 1, b"\"");
    }
    (from..bytes.len())
        .find(|&i| {
            let b = bytes[i];
            b.is_ascii_whitespace() || matches!(b, b'"' | b'&' | b'#' | b',' | b';' | b'\\')
        })
        .unwrap_or(bytes.len())
}

/// The value after `name=` or `name: ` of a secret name becomes `***` (a quoted one keeps
/// its quotes).
fn hide_secret_values(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut from = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let sep = match bytes[i] {
            b'=' => 1,
            b':' if bytes.get(i + 1) == Some(&b' ') => 2,
            _ => {
                i += 1;
                continue;
            }
        };
        // The name before the separator: letters, digits, '-' and '_'; a graph label's line
        // break (`\n`, `\l`) before it is not part of it.
        let mut start = i;
        while start > 0
            && (bytes[start - 1].is_ascii_alphanumeric() || matches!(bytes[start - 1], b'-' | b'_'))
        {
            start -= 1;
        }
        if start >= 1 && bytes[start - 1] == b'\\' {
            start += 1;
        }
        let name = &s[start.min(i)..i];
        let mut value_start = i + sep;
        while bytes.get(value_start) == Some(&b' ') {
            value_start += 1;
        }
        if !is_secret_name(name) || value_start >= bytes.len() {
            i += sep;
            continue;
        }
        let end = value_end(bytes, value_start);
        // A quoted value keeps its quotes.
        let open = match bytes[value_start] {
            b'"' => 1,
            b'\\' if bytes.get(value_start + 1) == Some(&b'"') => 2,
            _ => 0,
        };
        let inner = value_start + open;
        if end > inner {
            out.push_str(&s[from..inner]);
            out.push_str(HIDDEN);
            from = end;
        }
        i = end.max(i + sep);
    }
    out.push_str(&s[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uris_lose_their_users_and_secret_parameters() {
        let u = uri_without_secrets;
        assert_eq!(
            u("rtsp://cam:s3cret@10.0.0.1/live"),
            "rtsp://***@10.0.0.1/live"
        );
        assert_eq!(u("https://tok@host/x"), "https://***@host/x");
        assert_eq!(u("user:pw@turn.example:3478"), "***@turn.example:3478");
        assert_eq!(
            u("turn:user:pw@10.0.0.1:3478?transport=tcp"),
            "turn:***@10.0.0.1:3478?transport=tcp"
        );
        assert_eq!(
            u("http://h/clip.webm?token=abc&x=1#t=5"),
            "http://h/clip.webm?token=***&x=1#t=5"
        );
        assert_eq!(
            u("https://b.s3.amazonaws.com/k.mp4?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F1&X-Amz-Signature=f00d&X-Amz-Security-Token=zz"),
            "https://b.s3.amazonaws.com/k.mp4?X-Amz-Algorithm=AWS4&X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Security-Token=***"
        );
        for (name, kept) in [
            ("access_token", false),
            ("key", false),
            ("secret", false),
            ("password", false),
            ("pass", false),
            ("sig", false),
            ("signature", false),
            ("keyframe", true),
            ("passage", true),
            ("t", true),
        ] {
            let q = format!("http://h/a?{name}=v4lue");
            assert_eq!(u(&q).contains("v4lue"), kept, "{name}: {}", u(&q));
        }
        // Nothing secret: as it is.
        for same in [
            "http://host/a@b",
            "file:///tmp/x.webm",
            "Talk: bob@5pm",
            "bob@example.com",
            "a/b@c",
            "",
        ] {
            assert_eq!(u(same), same);
        }
    }

    #[test]
    fn commands_and_graphs_lose_secret_values_only() {
        let w = without_secrets;
        assert_eq!(
            w("srtpenc key=0123456789abcdef ! udpsink host=10.0.0.1"),
            "srtpenc key=*** ! udpsink host=10.0.0.1"
        );
        assert_eq!(
            w("rtspsrc location=rtsp://u:p@h/cam user-pw=hunter2 user-id=admin latency=0"),
            "rtspsrc location=rtsp://***@h/cam user-pw=*** user-id=*** latency=0"
        );
        assert_eq!(w("x password=\"a b c\" y=1"), "x password=\"***\" y=1");
        assert_eq!(
            w("label=\"k\\nuser-pw=\\\"hunter 2\\\"\\n\""),
            "label=\"k\\nuser-pw=\\\"***\\\"\\n\""
        );
        assert_eq!(
            w("srtp-key: 30313233\\l  srtp-auth: hmac"),
            "srtp-key: ***\\l  srtp-auth: hmac"
        );
        for same in ["Talk: bob@5pm", "videoflip method=1", "a=b c: d", "token="] {
            assert_eq!(w(same), same);
        }
    }

    #[test]
    fn json_values_are_gone_through() {
        let v = json!({
            "uri": "http://h/x?token=t0k",
            "turnUrl": "user:pw@10.0.0.1:3478",
            "command": "srtpdec key=00ff",
            "tags": [{"key": "room", "value": "rtsp://a:b@h/"}],
            "crypto": {"crypto": "AES_128_CM_HMAC_SHA1_80", "key": "k3y", "keyBase64": "a2V5"},
            "name": "Talk: bob@5pm",
            "n": 5,
            "password": null,
        });
        assert_eq!(
            json_without_secrets(v),
            json!({
                "uri": "http://h/x?token=***",
                "turnUrl": "***@10.0.0.1:3478",
                "command": "srtpdec key=***",
                "tags": [{"key": "room", "value": "rtsp://***@h/"}],
                "crypto": {"crypto": "AES_128_CM_HMAC_SHA1_80", "key": "***", "keyBase64": "***"},
                "name": "Talk: bob@5pm",
                "n": 5,
                "password": null,
            })
        );
    }
}
