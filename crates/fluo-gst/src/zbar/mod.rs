//! ZBarFilter: GStreamer's `zbar` (gst-plugins-bad) on the decoded video, raising Kurento's
//! `CodeFound` for the codes it reads (QR codes, EAN-13 and the other barcodes zbar knows).
//!
//! The port is a GStreamerFilter's ([`FilterPort`]: decode, the stage, encode again to the
//! codec the video came in or the one the filter's setVideoFormat forces), with `zbar` as its
//! stage ([`Scanner`]); audio passes as it comes, and the video's pictures are not changed.
//! With media workers the port runs as a `gst.zbar` job ([`job`]) behind a proxy
//! ([`remote`]), as a GStreamerFilter's does.
//!
//! When it raises, as KMS's ZBarFilter does: `zbar` posts a `barcode` message for every
//! frame in which it reads a code; the filter raises `CodeFound` for it when its type or
//! value differs from the last code it raised, or when a second or more of the stream (the
//! frames' timestamps) has passed since then. A code that stays in view is raised again
//! once a second; a different code at once; a code that leaves and comes back within the
//! second is not raised again.

pub(crate) mod job;
pub(crate) mod remote;

use crate::filter::Stage;
use crate::Media;
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{Edge, Element, ElementCx, Factory, FactoryCx, MediaError, MediaEvent, Stopping};
use fluo_sfu::MediaKind;
use gstreamer as gst;
use gstreamer::prelude::*;
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};

/// The stage's element name in the pipeline (its messages are told apart by it).
const ZBAR: &str = "zbar";

/// A second, in GStreamer's nanoseconds: how long a code in view waits to be raised again.
const AGAIN_NS: u64 = 1_000_000_000;

/// Whether GStreamer's `zbar` element is installed (gstreamer1.0-plugins-bad with zbar).
fn available() -> Result<(), KurentoError> {
    crate::init().map_err(|e| KurentoError::new(ErrorCode::UnexpectedError, e))?;
    match gst::ElementFactory::find(ZBAR) {
        Some(_) => Ok(()),
        None => Err(KurentoError::new(
            ErrorCode::MediaObjectNotAvailable,
            "ZBarFilter: GStreamer's zbar element is not installed (gstreamer1.0-plugins-bad)",
        )),
    }
}

/// The last code raised: its type, its value and the timestamp of its frame.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Raised {
    code_type: String,
    value: String,
    ts: u64,
}

/// A ZBarFilter's stage: `zbar`, and the code it raised last (kept across the pipelines the
/// port builds, as KMS keeps it for the element's life).
#[derive(Default)]
pub(crate) struct Scanner {
    last: Mutex<Option<Raised>>,
}

impl Scanner {
    /// `zbar` read a code of `code_type` saying `value` in the frame of timestamp `ts` (ns):
    /// whether it is raised (see the module's docs).
    fn found(&self, ts: u64, code_type: &str, value: &str) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let again = last.as_ref().is_none_or(|l| {
            // A timestamp that went back counts as far on (unsigned, as KMS counts).
            l.code_type != code_type || l.value != value || ts.wrapping_sub(l.ts) >= AGAIN_NS
        });
        if again {
            *last = Some(Raised {
                code_type: code_type.to_string(),
                value: value.to_string(),
                ts,
            });
        }
        again
    }
}

impl Stage for Scanner {
    fn class(&self) -> &'static str {
        "ZBarFilter"
    }

    fn error(&self) -> MediaError {
        MediaError::ZBar
    }

    fn make(&self) -> Result<gst::Element, String> {
        // Every frame is scanned, however late (KMS turns zbar's QoS off too).
        gst::ElementFactory::make(ZBAR)
            .name(ZBAR)
            .property("qos", false)
            .build()
            .map_err(|e| format!("GStreamer's zbar element cannot be made: {e}"))
    }

    fn message(&self, msg: &gst::Message) -> Option<MediaEvent> {
        let gst::MessageView::Element(m) = msg.view() else {
            return None;
        };
        if msg.src().is_none_or(|s| s.name() != ZBAR) {
            return None;
        }
        let s = m.structure().filter(|s| s.name() == "barcode")?;
        let ts = s.get::<u64>("timestamp").ok()?;
        let code_type = s.get::<&str>("type").ok()?;
        let value = s.get::<&str>("symbol").ok()?;
        if !self.found(ts, code_type, value) {
            return None;
        }
        tracing::debug!(%code_type, ts, "ZBarFilter: code found");
        Some(MediaEvent::CodeFound {
            code_type: code_type.to_string(),
            value: value.to_string(),
        })
    }
}

/// Makes ZBarFilters.
pub(crate) struct ZBarFactory {
    pub media: Media,
}

impl Factory for ZBarFactory {
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        available()?;
        if let Some(workers) = &self.media.workers {
            tracing::info!(id = %cx.id, "ZBarFilter created");
            return Ok(remote::create(workers, &self.media, cx));
        }
        let stopping = Stopping::new();
        let stage = Arc::new(Scanner::default());
        let key = crate::filter::add_port(
            &self.media,
            cx.id,
            MediaKind::Video,
            stage,
            stopping.clone(),
        );
        tracing::info!(id = %cx.id, "ZBarFilter created");
        Ok(Box::new(ZBar {
            port: crate::filter::LocalPort {
                id: cx.id.to_string(),
                key,
                media: self.media.clone(),
                stopping,
            },
        }))
    }
}

/// A ZBarFilter whose pipeline runs in this process.
struct ZBar {
    port: crate::filter::LocalPort,
}

impl Element for ZBar {
    fn stats(&mut self, q: &fluo_core::StatsQuery<'_>) -> Option<Map<String, Value>> {
        self.port.media.element_stats(q)
    }

    fn media_connected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.port.connected(edge);
    }

    fn media_disconnected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.port.disconnected(edge);
    }

    fn released(&mut self) {
        self.port.released();
    }

    fn stopping(&self) -> Option<Stopping> {
        Some(self.port.stopping.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = AGAIN_NS;

    /// The timestamp of frame `i` at 30 fps.
    fn at(i: u64) -> u64 {
        i * S / 30
    }

    /// KMS's rule, frame by frame: raised at first, again a second later while in view, at
    /// once for another code or type, not again for a code back within the second.
    #[test]
    fn a_code_is_raised_at_first_then_once_a_second_and_another_at_once() {
        let z = Scanner::default();
        let mut raised = vec![];
        let mut see = |ts: u64, ty: &str, v: &str| {
            if z.found(ts, ty, v) {
                raised.push((ts, v.to_string()));
            }
        };
        // A in view for 2.5 s: raised at 0, 1 s and 2 s.
        for i in 0..75 {
            see(at(i), "QR-Code", "A");
        }
        // B at once, for 0.5 s: once.
        for i in 75..90 {
            see(at(i), "QR-Code", "B");
        }
        // Nothing for 0.2 s, B back within the second of its raise: not again until 1 s
        // after it.
        for i in 96..120 {
            see(at(i), "QR-Code", "B");
        }
        // The same text as another type: another code.
        see(at(120), "EAN-13", "B");
        let want: Vec<(u64, String)> = [
            (0, "A"),
            (30, "A"),
            (60, "A"),
            (75, "B"),
            (105, "B"),
            (120, "B"),
        ]
        .into_iter()
        .map(|(f, v)| (at(f), v.to_string()))
        .collect();
        assert_eq!(raised, want);
        // A timestamp that went back (a new pipeline's clock): raised, as in KMS.
        assert!(z.found(0, "EAN-13", "B"));
        assert!(!z.found(at(1), "EAN-13", "B"));
    }

    /// zbar's barcode message becomes CodeFound through the stage; another element's
    /// message, or one of another name, does not.
    #[test]
    fn zbars_barcode_message_becomes_code_found() {
        crate::init().expect("GStreamer");
        let z = Scanner::default();
        let el = z
            .make()
            .expect("zbar is installed (gstreamer1.0-plugins-bad)");
        let msg = |src: &gst::Element, name: &str| {
            let s = gst::Structure::builder(name)
                .field("timestamp", 5 * S)
                .field("type", "QR-Code")
                .field("symbol", "fluo")
                .build();
            gst::message::Element::builder(s).src(src).build()
        };
        assert_eq!(
            z.message(&msg(&el, "barcode")),
            Some(MediaEvent::CodeFound {
                code_type: "QR-Code".into(),
                value: "fluo".into()
            })
        );
        let other = gst::ElementFactory::make("identity")
            .build()
            .expect("identity");
        assert_eq!(z.message(&msg(&other, "barcode")), None);
        assert_eq!(z.message(&msg(&el, "other")), None);
    }
}
