//! URIs of PlayerEndpoint and RecorderEndpoint: parsing and checks.

use fluo_api::{ErrorCode, KurentoError};
use std::path::PathBuf;

/// A URI Fluo can play from or record to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MediaUri {
    /// A local file (absolute path, percent-decoded).
    File(PathBuf),
    /// http(s):// or rtsp(s)://, handed to GStreamer as is.
    Remote(String),
}

fn bad(msg: String) -> KurentoError {
    KurentoError::new(ErrorCode::MediaObjectIllegalParamError, msg)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parses a URI; `schemes` are those the element takes besides file://.
pub(crate) fn parse(uri: &str, schemes: &[&str]) -> Result<MediaUri, KurentoError> {
    if uri.len() > 4096 || uri.chars().any(|c| c.is_control()) {
        return Err(bad(
            "The URI is too long or contains control characters".into()
        ));
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(bad(format!("'{uri}' is not a URI (expected scheme://...)")));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "file" {
        // file:///abs/path (an empty authority) or file://localhost/abs/path
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if !path.starts_with('/') {
            return Err(bad(format!("'{uri}': a file URI needs an absolute path")));
        }
        let path = percent_decode(path).ok_or_else(|| bad(format!("'{uri}': bad escape")))?;
        if path.contains('\0') {
            return Err(bad(format!("'{uri}': bad path")));
        }
        // No '..' components: what the URI names is what is opened.
        if std::path::Path::new(&path)
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(bad(format!("'{uri}': '..' is not allowed in paths")));
        }
        return Ok(MediaUri::File(PathBuf::from(path)));
    }
    if !schemes.contains(&scheme.as_str()) {
        return Err(bad(format!(
            "'{uri}': the scheme '{scheme}' is not supported here (use file://{})",
            schemes
                .iter()
                .map(|s| format!(", {s}://"))
                .collect::<String>()
        )));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(bad(format!("'{uri}': no host")));
    }
    // No dot segments (HTTP clients would remove them, so the URI would not name what an
    // allow-list compared), escaped or not.
    let path = &rest[host.len()..];
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_decode(path).unwrap_or_else(|| path.to_string());
    if decoded.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(bad(format!(
            "'{uri}': '.' and '..' are not allowed in paths"
        )));
    }
    Ok(MediaUri::Remote(uri.to_string()))
}

/// Which URIs players and recorders may use (Fluo's `uriAllowList`; KMS has none). Empty:
/// every URI, as in KMS.
#[derive(Debug, Clone, Default)]
pub struct UriPolicy {
    entries: Vec<String>,
}

impl UriPolicy {
    /// A policy from its entries: `scheme://` allows a whole scheme (`http://`),
    /// `file:///dir/` a directory and everything under it (compared by path components, so
    /// `/srv/media` does not allow `/srv/media2`), anything else is a URI prefix that ends at
    /// a path-segment boundary (`https://cdn.example.com/clips` allows `.../clips/a.webm`,
    /// not `.../clips-private/`).
    pub fn new(entries: impl IntoIterator<Item = String>) -> UriPolicy {
        UriPolicy {
            entries: entries
                .into_iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect(),
        }
    }

    /// The list's entries (a media worker's job checks against the same list).
    pub(crate) fn entries(&self) -> &[String] {
        &self.entries
    }

    /// Whether no list is set (everything allowed).
    pub fn is_open(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn check(&self, uri: &MediaUri) -> Result<(), KurentoError> {
        if self.is_open() || self.entries.iter().any(|e| allows(e, uri)) {
            return Ok(());
        }
        Err(KurentoError::new(
            ErrorCode::MediaObjectIllegalParamError,
            format!(
                "The URI '{}' is not allowed by this server's URI allow-list",
                uri.gst_uri()
            ),
        ))
    }
}

fn allows(entry: &str, uri: &MediaUri) -> bool {
    let Some((scheme, rest)) = entry.split_once("://") else {
        return false;
    };
    let scheme = scheme.to_ascii_lowercase();
    match uri {
        MediaUri::File(path) => {
            if scheme != "file" {
                return false;
            }
            let dir = rest.strip_prefix("localhost").unwrap_or(rest);
            dir.is_empty()
                || percent_decode(dir).is_some_and(|d| {
                    d.starts_with('/') && path.starts_with(std::path::Path::new(&d))
                })
        }
        MediaUri::Remote(u) => {
            let Some((us, urest)) = u.split_once("://") else {
                return false;
            };
            if !us.eq_ignore_ascii_case(&scheme) {
                return false;
            }
            if rest.is_empty() {
                return true;
            }
            // An entry naming only a host allows that host exactly (not `host.evil` or
            // `host@evil`); otherwise the URI must start with the entry.
            let entry_host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let uri_host = urest.split(['/', '?', '#']).next().unwrap_or_default();
            // A path in the entry matches at a segment boundary: `.../clips` allows
            // `.../clips/a.webm` and `.../clips?x`, not `.../clips-private/`.
            let boundary = |after: &str| {
                rest.ends_with('/') || after.is_empty() || after.starts_with(['/', '?', '#'])
            };
            if entry_host.len() == rest.len() {
                uri_host.eq_ignore_ascii_case(entry_host)
            } else {
                uri_host.eq_ignore_ascii_case(entry_host)
                    && urest.starts_with(rest)
                    && boundary(&urest[rest.len()..])
            }
        }
    }
}

impl MediaUri {
    /// The URI GStreamer gets.
    pub(crate) fn gst_uri(&self) -> String {
        match self {
            MediaUri::File(p) => {
                let mut s = String::from("file://");
                for b in p.to_string_lossy().bytes() {
                    if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
                        s.push(b as char);
                    } else {
                        s.push_str(&format!("%{b:02X}"));
                    }
                }
                s
            }
            MediaUri::Remote(u) => u.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_remote_uris() {
        assert_eq!(
            parse("file:///tmp/a%20b.webm", &[]).unwrap(),
            MediaUri::File("/tmp/a b.webm".into())
        );
        assert_eq!(
            parse("file:///tmp/a b.webm", &[]).unwrap().gst_uri(),
            "file:///tmp/a%20b.webm"
        );
        assert!(parse("file://relative/x", &[]).is_err());
        assert!(parse("file:///tmp/../etc/passwd", &[]).is_err());
        assert!(parse("file:///tmp/%2e%2e/etc/passwd", &[]).is_err());
        assert!(parse("file:///tmp/x%zz", &[]).is_err());
        assert!(parse("/tmp/x.webm", &[]).is_err());
        assert!(parse("http://h/x", &[]).is_err());
        assert!(parse("http://h/x", &["http"]).is_ok());
        assert!(parse("http:///x", &["http"]).is_err());
        assert!(parse("rtsp://cam:554/s", &["http", "rtsp"]).is_ok());
        assert!(parse("file:///tmp/a\nb", &[]).is_err());
    }

    #[test]
    fn allow_list() {
        let open = UriPolicy::new(vec![]);
        assert!(open
            .check(&parse("file:///etc/passwd", &[]).unwrap())
            .is_ok());
        let p = UriPolicy::new(
            [
                "file:///srv/media/",
                "https://cdn.example.com/clips/",
                "rtsp://",
            ]
            .map(String::from),
        );
        let ok = |u: &str| {
            p.check(&parse(u, &["http", "https", "rtsp"]).unwrap())
                .is_ok()
        };
        assert!(ok("file:///srv/media/a.webm"));
        assert!(ok("file:///srv/media/sub/b.mp4"));
        assert!(
            !ok("file:///srv/media2/a.webm"),
            "a sibling directory with the same prefix"
        );
        assert!(!ok("file:///etc/passwd"));
        assert!(ok("https://cdn.example.com/clips/x.webm"));
        assert!(!ok("https://cdn.example.com.evil.net/clips/x.webm"));
        assert!(!ok("http://cdn.example.com/clips/x.webm"), "another scheme");
        assert!(ok("rtsp://camera:554/live"));
        assert!(parse("https://cdn.example.com/clips/../x", &["https"]).is_err());
        assert!(parse("https://cdn.example.com/clips/%2e%2e/x", &["https"]).is_err());
        let no_slash = UriPolicy::new(["https://cdn.example.com/clips".to_string()]);
        let allowed = |u: &str| no_slash.check(&parse(u, &["https"]).unwrap()).is_ok();
        assert!(allowed("https://cdn.example.com/clips"));
        assert!(allowed("https://cdn.example.com/clips/a.webm"));
        assert!(allowed("https://cdn.example.com/clips?x=1"));
        assert!(
            !allowed("https://cdn.example.com/clips-private/a.webm"),
            "entries match at path-segment boundaries"
        );
        assert!(!allowed("https://cdn.example.com/clipsa.webm"));
        let host_only = UriPolicy::new(["https://cdn.example.com".to_string()]);
        let allowed = |u: &str| host_only.check(&parse(u, &["https"]).unwrap()).is_ok();
        assert!(allowed("https://cdn.example.com/a.webm"));
        assert!(!allowed("https://cdn.example.com.evil.net/a.webm"));
        assert!(!allowed("https://cdn.example.com@evil.net/a.webm"));
        let e = p
            .check(&parse("file:///tmp/x.webm", &[]).unwrap())
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::MediaObjectIllegalParamError);
    }
}
