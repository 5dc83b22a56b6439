//! The GStreamer half of getGstreamerDot / dumpGstreamerDot: each element's pipelines as
//! GStreamer draws them, and graphs written where GStreamer writes its own.

use crate::live;
use fluo_api::{ErrorCode, KurentoError};
use gstreamer as gst;
use gstreamer::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Draws the pipelines of elements for the engine (see [`fluo_core::PipelineDot`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct GstDot;

/// GStreamer's drawing details for a Kurento `GstreamerDotDetails` value. As in KMS,
/// SHOW_VERBOSE (KMS's default) draws as SHOW_ALL.
pub(crate) fn details(d: &str) -> gst::DebugGraphDetails {
    match d {
        "SHOW_MEDIA_TYPE" => gst::DebugGraphDetails::MEDIA_TYPE,
        "SHOW_CAPS_DETAILS" => gst::DebugGraphDetails::CAPS_DETAILS,
        "SHOW_NON_DEFAULT_PARAMS" => gst::DebugGraphDetails::NON_DEFAULT_PARAMS,
        "SHOW_STATES" => gst::DebugGraphDetails::STATES,
        "SHOW_FULL_PARAMS" => gst::DebugGraphDetails::FULL_PARAMS,
        _ => gst::DebugGraphDetails::ALL,
    }
}

/// `name` as a file name: letters, digits, `.`, `-` and `_` only (object ids hold `/`).
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A GStreamer graph as any client of the server may read it: without memory addresses
/// (GStreamer names nodes and draws pointer-typed values with them: each distinct address
/// becomes `p1`, `p2`... so the graph keeps its shape), without the user and password of a
/// URI (`rtsp://user:pass@host` -> `rtsp://***@host`), and without the values of properties
/// and caps fields that hold secrets (SRTP keys, passwords, tokens, cookies), as
/// [`fluo_api::secrets::without_secrets`] hides them.
pub fn without_secrets(dot: &str) -> String {
    fluo_api::secrets::without_secrets(&number_addresses(dot))
}

/// Each distinct `0x` + six or more hexadecimal digits becomes `p<n>`.
fn number_addresses(s: &str) -> String {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        let b = rest.as_bytes();
        if b.len() > 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X') {
            let digits = rest[2..].bytes().take_while(u8::is_ascii_hexdigit).count();
            if digits >= 6 {
                let next = seen.len() + 1;
                let n = *seen.entry(&rest[..2 + digits]).or_insert(next);
                out.push_str(&format!("p{n}"));
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

/// The graph of the pipeline `owner` runs (a job's, in a worker), drawn with `details`
/// (Kurento's GstreamerDotDetails, empty: SHOW_ALL); empty when it runs none.
pub(crate) fn owned_dot(owner: &str, details_text: &str) -> String {
    live::pipelines_of(&[owner.to_string()])
        .first()
        .map(|p| p.debug_to_dot_data(details(details_text)).to_string())
        .unwrap_or_default()
}

/// Where GStreamer writes its graphs, if it is configured.
fn dump_dir() -> Option<PathBuf> {
    std::env::var_os("GST_DEBUG_DUMP_DOT_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

impl fluo_core::PipelineDot for GstDot {
    fn graphs(&self, owners: &[String], d: &str) -> Vec<String> {
        if crate::init().is_err() {
            return vec![];
        }
        let flags = details(d);
        let mut graphs: Vec<String> = live::pipelines_of(owners)
            .iter()
            .map(|p| without_secrets(&p.debug_to_dot_data(flags)))
            .collect();
        // The pipelines of elements that run in media workers, asked of their jobs.
        graphs.extend(crate::remote::graphs(owners, d));
        graphs
    }

    fn dump(&self, name: &str, dot: &str) -> Result<Option<String>, KurentoError> {
        let Some(dir) = dump_dir() else {
            return Ok(None);
        };
        // As GStreamer names its files: the time since it started, then the name.
        let ns = crate::STARTED
            .get()
            .map_or(0, |t| t.elapsed().as_nanos() as u64);
        let secs = ns / 1_000_000_000;
        let file = format!(
            "{}.{:02}.{:02}.{:09}-{}.dot",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60,
            ns % 1_000_000_000,
            file_name(name)
        );
        let mut written = WRITTEN.lock().unwrap_or_else(|p| p.into_inner());
        written.write(&dir.join(file), dot, DUMP_BOUND).map(Some)
    }
}

/// How many DOT files, and how many bytes in all, dumpGstreamerDot keeps in
/// `GST_DEBUG_DUMP_DOT_DIR` at most: a client that calls it in a loop cannot fill the
/// operator's disk. Files the operator removed no longer count.
pub const DUMP_BOUND: DumpBound = DumpBound {
    files: 100,
    bytes: 64 << 20,
};

/// See [`DUMP_BOUND`].
#[derive(Debug, Clone, Copy)]
pub struct DumpBound {
    /// Files.
    pub files: usize,
    /// Bytes, all files together.
    pub bytes: u64,
}

/// The DOT files this process wrote: (path, size).
static WRITTEN: std::sync::Mutex<Dumps> = std::sync::Mutex::new(Dumps(Vec::new()));

struct Dumps(Vec<(PathBuf, u64)>);

impl Dumps {
    /// Writes `dot` to the new file `path` unless that would pass `bound` (counting the
    /// files written before that are still there); returns the path written.
    fn write(&mut self, path: &Path, dot: &str, bound: DumpBound) -> Result<String, KurentoError> {
        self.0.retain(|(p, _)| p.symlink_metadata().is_ok());
        let bytes: u64 = self.0.iter().map(|(_, n)| n).sum();
        let size = dot.len() as u64;
        if self.0.len() >= bound.files || bytes + size > bound.bytes {
            return Err(KurentoError::new(
                ErrorCode::NotEnoughResources,
                format!(
                    "dumpGstreamerDot: the DOT files written to GST_DEBUG_DUMP_DOT_DIR reached \
                     their bound ({} files, {} MiB in all; this one has {} bytes): remove some \
                     to write more",
                    bound.files,
                    bound.bytes >> 20,
                    size
                ),
            ));
        }
        let io = |e: std::io::Error| {
            KurentoError::new(
                ErrorCode::UnexpectedError,
                format!(
                    "The DOT graph could not be written: {}: {e}",
                    path.display()
                ),
            )
        };
        // A new file only: never through a link or over a file someone left there.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io)?;
        self.0.push((path.to_path_buf(), size));
        f.write_all(dot.as_bytes()).map_err(io)?;
        Ok(path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dumps_stop_at_their_bound_with_a_clear_error_until_files_are_removed() {
        let tmp = tempfile::Builder::new()
            .prefix("fluo-dot-bound-")
            .tempdir()
            .expect("temp dir");
        let dir = tmp.path();
        let count = || dir.read_dir().map(|d| d.count()).unwrap_or(0);
        let bound = super::DumpBound {
            files: 3,
            bytes: 100,
        };
        let mut dumps = super::Dumps(vec![]);
        for i in 0..3 {
            let p = dir.join(format!("{i}.dot"));
            let written = dumps
                .write(&p, "digraph {}", bound)
                .expect("under the bound");
            assert_eq!(written, p.display().to_string());
            assert_eq!(
                std::fs::read_to_string(&p).ok().as_deref(),
                Some("digraph {}")
            );
        }
        // A fourth file would pass the count: a clear error, nothing written.
        let e = dumps
            .write(&dir.join("3.dot"), "digraph {}", bound)
            .expect_err("past the bound");
        assert_eq!(e.code.code(), 40009, "{e:?}");
        assert!(
            e.message.contains("GST_DEBUG_DUMP_DOT_DIR")
                && e.message.contains("3 files")
                && e.message.contains("remove some"),
            "{}",
            e.message
        );
        assert!(!fluo_api::text::leaks(&e.message), "{}", e.message);
        assert_eq!(count(), 3);
        // A file the operator removed no longer counts.
        std::fs::remove_file(dir.join("0.dot")).expect("remove");
        dumps
            .write(&dir.join("3.dot"), "digraph {}", bound)
            .expect("room again");
        assert_eq!(count(), 3);
        // The byte bound: two files of 10 bytes are there, 81 more would pass 100, 80 reach it.
        std::fs::remove_file(dir.join("1.dot")).expect("remove");
        let e = dumps
            .write(&dir.join("4.dot"), &"x".repeat(81), bound)
            .expect_err("past the byte bound");
        assert_eq!(e.code.code(), 40009);
        assert!(!dir.join("4.dot").exists());
        dumps
            .write(&dir.join("4.dot"), &"x".repeat(80), bound)
            .expect("at the bound");
        assert_eq!(count(), 3);
        // Never over a file that is there (a link or one left by someone else).
        std::fs::remove_file(dir.join("2.dot")).expect("remove");
        std::fs::write(dir.join("5.dot"), "theirs").expect("someone's file");
        let e = dumps
            .write(&dir.join("5.dot"), "", bound)
            .expect_err("exists");
        assert_eq!(e.code.code(), 40003, "{e:?}");
        assert_eq!(
            std::fs::read_to_string(dir.join("5.dot")).ok().as_deref(),
            Some("theirs")
        );
    }

    #[test]
    fn graphs_lose_addresses_credentials_and_keys() {
        // As GStreamer 1.22 draws an SRTP encoder and a player (from real dumps).
        let dot = concat!(
            "  subgraph cluster_srtpenc0_0x562fbb6d9000 {\n",
            "    label=\"GstSrtpEnc\\nsrtpenc0\\n[=]\\nkey=((GstBuffer*) 0x562fbb6d8000)\";\n",
            "      srtpenc0_0x562fbb6d9000_pad0_0x562fbb6aca40 [label=\"pad0\"];\n",
            "  srtpenc0_0x562fbb6d9000_rtp_src_0_0x562fbb6acc90 -> fakesink0_0x562fbb6c50b0_sink ",
            "[label=\"application/x-srtp\\l          ssrc: 2717921277\\l            srtp-key: 3031323334353637383961...\\l         srtp-cipher: aes-128-icm\\l           srtp-auth: hmac-sha1-80\\l\"]\n",
            "    label=\"GstRTSPSrc\\nsource\\n[>]\\nlocation=\\\"rtsp://admin:s3cret@127.0.0.1:9/cam\\\"\\nuser-pw=hunter2\\nproxy=\\\"http://u@proxy:3128\\\"\";\n",
        );
        let clean = super::without_secrets(dot);
        println!("{clean}");
        assert!(!fluo_api::text::leaks(&clean), "{clean}");
        for secret in [
            "s3cret", "admin", "hunter2", "30313233", "0x562f", "u@proxy",
        ] {
            assert!(!clean.contains(secret), "{secret} in {clean}");
        }
        // The graph keeps its shape: one name per address, the same wherever it appears.
        assert!(clean.contains("subgraph cluster_srtpenc0_p1 {"), "{clean}");
        assert!(clean.contains("srtpenc0_p1_pad0_p3 [label"), "{clean}");
        assert!(
            clean.contains("srtpenc0_p1_rtp_src_0_p4 -> fakesink0_p5_sink"),
            "{clean}"
        );
        // What is not secret stays.
        for kept in [
            "ssrc: 2717921277",
            "srtp-cipher: aes-128-icm",
            "srtp-auth: hmac-sha1-80",
            "rtsp://***@127.0.0.1:9/cam",
            "srtp-key: ***",
        ] {
            assert!(clean.contains(kept), "{kept} in {clean}");
        }
    }

    #[test]
    fn ids_make_plain_file_names() {
        assert_eq!(
            super::file_name("a1_kurento.MediaPipeline/b2_kurento.PlayerEndpoint"),
            "a1_kurento.MediaPipeline_b2_kurento.PlayerEndpoint"
        );
        assert_eq!(super::file_name("../../etc"), ".._.._etc");
    }
}
