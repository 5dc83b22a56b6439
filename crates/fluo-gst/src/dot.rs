//! The GStreamer half of getGstreamerDot / dumpGstreamerDot: each element's pipelines as
//! GStreamer draws them, and graphs written where GStreamer writes its own.

use crate::live;
use gstreamer as gst;
use gstreamer::prelude::*;
use std::io::Write;
use std::path::PathBuf;

/// Draws the pipelines of elements for the engine (see [`fluo_core::PipelineDot`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct GstDot;

/// GStreamer's drawing details for a Kurento `GstreamerDotDetails` value. As in KMS,
/// SHOW_VERBOSE (KMS's default) draws as SHOW_ALL.
fn details(d: &str) -> gst::DebugGraphDetails {
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
        live::pipelines_of(owners)
            .iter()
            .map(|p| p.debug_to_dot_data(flags).to_string())
            .collect()
    }

    fn dump(&self, name: &str, dot: &str) -> Result<Option<String>, String> {
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
        let path = dir.join(file);
        // A new file only: never through a link or over a file someone left there.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        f.write_all(dot.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Some(path.display().to_string()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_make_plain_file_names() {
        assert_eq!(
            super::file_name("a1_kurento.MediaPipeline/b2_kurento.PlayerEndpoint"),
            "a1_kurento.MediaPipeline_b2_kurento.PlayerEndpoint"
        );
        assert_eq!(super::file_name("../../etc"), ".._.._etc");
    }
}
