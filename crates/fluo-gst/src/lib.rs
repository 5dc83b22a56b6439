//! Fluo's GStreamer media plane: transcoders for the router, and the elements whose media is
//! processed rather than forwarded (PlayerEndpoint, RecorderEndpoint, RtpEndpoint).
//!
//! Elements reach the router only through [`fluo_sfu::MediaBus`]: each one is a
//! router node ([`fluo_sfu::Node`]: a port) that takes RTP into an appsrc-fed pipeline or
//! gives RTP from an appsink.
//! GStreamer runs its own streaming threads; the router's thread only pushes into appsrcs
//! (never blocking) and the appsinks send packets back as messages.

// A test-elements build defines a GStreamer element (test_crash/element.rs), whose GObject
// subclass macros expand to unsafe impls: there (only) unsafe code is denied, not forbidden.
#![cfg_attr(not(feature = "test-elements"), forbid(unsafe_code))]
#![cfg_attr(feature = "test-elements", deny(unsafe_code))]
#![warn(missing_docs)]

mod bridge;
mod codecs;
mod composite;
/// A Composite's mixers' latency (ns) and its inputs' jitterbuffer latency (ms), for the
/// benches' reference pipeline.
pub use composite::{JITTER_MS as COMPOSITE_JITTER_MS, MIX_LATENCY_NS as COMPOSITE_MIX_LATENCY_NS};
mod dot;
mod filter;
mod http_post;
pub mod jobs;
mod live;
mod module;
pub use module::install_modules;
mod overlay;
pub use overlay::{min_face, FACE_CASCADE};
mod player;
mod recorder;
mod remote;
#[cfg(feature = "test-elements")]
pub use test_crash::TEST_MODULE_IDL;
mod rtp_endpoint;
mod settings;
#[cfg(feature = "test-elements")]
mod test_crash;
mod transcoder;
mod uri;
mod zbar;

pub use dot::{DumpBound, GstDot, DUMP_BOUND};
pub use filter::guard::{Bound, BOUNDS};
pub use filter::policy::{FilterPolicy, RESERVED_NAMES, STRING_PAIRS, TRANSFORMS};
pub use live::{live_elements, live_pipelines, recorded_bytes};
pub use rtp_endpoint::RtpNet;
pub use settings::{output_settings, settings_sink, settings_table};
pub use transcoder::Transcoders;
pub use uri::UriPolicy;

/// Entry points for the fuzz targets in `fuzz/` (not an API): the parsers of what a client
/// controls, without GStreamer.
#[doc(hidden)]
pub mod fuzzing {
    use fluo_api::KurentoError;

    /// Parses `s` as a PlayerEndpoint and as a RecorderEndpoint URI and checks what parses
    /// against an allow-list; returns whether the player URI parsed.
    pub fn uri(s: &str) -> bool {
        let policy = crate::UriPolicy::new(
            ["file:///srv/media/", "https://cdn.example.com/", "rtsp://"].map(String::from),
        );
        let mut ok = false;
        for (i, schemes) in [
            &["http", "https", "rtsp", "rtsps"][..],
            &["http", "https"][..],
        ]
        .into_iter()
        .enumerate()
        {
            if let Ok(u) = crate::uri::parse(s, schemes) {
                let _ = u.gst_uri();
                let _ = policy.check(&u);
                ok |= i == 0;
            }
        }
        ok
    }

    /// Checks a GStreamerFilter command against the policy with the operator's list `allow`,
    /// creating no element; the factories of its chain, in order (empty with `*`).
    pub fn gst_filter_check(
        allow: Option<Vec<String>>,
        command: &str,
    ) -> Result<Vec<String>, String> {
        crate::init()?;
        Ok(match crate::FilterPolicy::new(allow).check(command)? {
            crate::filter::policy::Checked::Launch(_) => vec![],
            crate::filter::policy::Checked::Chain(steps) => steps
                .iter()
                .map(|s| match s {
                    crate::filter::policy::Step::Element { factory, .. } => factory.clone(),
                    crate::filter::policy::Step::Caps(_) => "capsfilter".to_string(),
                })
                .collect(),
        })
    }

    /// Checks a GStreamerFilter command as [`gst_filter_check`] does and builds its bin.
    pub fn gst_filter_build(
        allow: Option<Vec<String>>,
        command: &str,
    ) -> Result<gstreamer::Bin, String> {
        crate::init()?;
        crate::FilterPolicy::new(allow).check(command)?.build()
    }

    /// setElementProperty's check on a filter made of `command`: how many of its elements
    /// would take `name` = `value`, judged without creating any element.
    pub fn gst_filter_property(
        allow: Option<Vec<String>>,
        command: &str,
        name: &str,
        value: &str,
    ) -> Result<usize, String> {
        crate::init()?;
        let policy = crate::FilterPolicy::new(allow);
        policy
            .check(command)?
            .property_targets(&policy, name, value)
    }

    /// Parses `s` as the remote SDP of an RtpEndpoint; returns its number of media.
    pub fn plain_sdp(s: &str) -> Result<usize, KurentoError> {
        crate::rtp_endpoint::parse_sdp_count(s)
    }
}

use fluo_core::{Edge, EventSink, Factory, MediaError, MediaEvent};
use fluo_sfu::MediaBus;

use gstreamer as gst;
use gstreamer::prelude::*;
use serde_json::{Map, Value};
use std::sync::{Arc, OnceLock};

/// Recordings being finalised now (see [`wait_idle`]).
static FINISHING: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// Counts a recording being finalised while it lives.
pub(crate) struct FinishGuard;

impl FinishGuard {
    pub(crate) fn new() -> FinishGuard {
        *FINISHING.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        FinishGuard
    }
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        let mut n = FINISHING.0.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        FINISHING.1.notify_all();
    }
}

/// Waits (at most `max`) until every recording being stopped has its file finalised; the
/// server calls it at shutdown, after releasing everything. Returns how many are left.
pub fn wait_idle(max: std::time::Duration) -> usize {
    let deadline = std::time::Instant::now() + max;
    let mut n = FINISHING.0.lock().unwrap_or_else(|p| p.into_inner());
    while *n > 0 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        n = FINISHING
            .1
            .wait_timeout(n, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    *n
}

/// When GStreamer was initialised (dumped DOT files are named by the time since, as
/// GStreamer names its own).
static STARTED: OnceLock<std::time::Instant> = OnceLock::new();

/// Initialises GStreamer once.
pub fn init() -> Result<(), String> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        STARTED.get_or_init(std::time::Instant::now);
        gst::init().map_err(|e| format!("GStreamer does not start: {e}"))?;
        // The crashing test element, in the server and its workers (a test build only).
        #[cfg(feature = "test-elements")]
        test_crash::element::register()?;
        Ok(())
    })
    .clone()
}

/// The GStreamer media plane: where its elements reach the router and raise events.
#[derive(Clone)]
pub struct Media {
    /// The router.
    pub bus: Arc<dyn MediaBus>,
    /// Asynchronous events (from GStreamer threads).
    pub events: EventSink,
    /// Which URIs players and recorders may use.
    pub uris: Arc<UriPolicy>,
    /// Which elements GStreamerFilter commands may use.
    pub filters: Arc<FilterPolicy>,
    /// Elements' output settings (encoder bitrates, forced formats).
    pub settings: Arc<fluo_sfu::SettingsTable>,
    /// Where RtpEndpoints bind and what they announce.
    pub rtp_net: Arc<RtpNet>,
    /// Fluo's HTTP listener's routes (HttpPostEndpoint's upload URLs).
    pub http: Arc<fluo_core::http::HttpRoutes>,
    /// The media worker processes that run PlayerEndpoints' and RecorderEndpoints' pipelines
    /// (docs/workers.md); `None`: they run in this process.
    pub workers: Option<fluo_worker::Supervisor>,
}

impl Media {
    /// The factories of the elements this crate implements, by Kurento class name.
    pub fn factories(&self) -> Vec<(&'static str, Box<dyn Factory>)> {
        vec![
            (
                "PlayerEndpoint",
                Box::new(player::PlayerFactory {
                    media: self.clone(),
                }) as Box<dyn Factory>,
            ),
            (
                "RecorderEndpoint",
                Box::new(recorder::RecorderFactory {
                    media: self.clone(),
                }),
            ),
            (
                "GStreamerFilter",
                Box::new(filter::FilterFactory {
                    media: self.clone(),
                }),
            ),
            (
                "Composite",
                Box::new(remote::CompositeFactory {
                    media: self.clone(),
                }),
            ),
            (
                "AlphaBlending",
                Box::new(remote::AlphaBlendingFactory {
                    media: self.clone(),
                }),
            ),
            (
                "Mixer",
                Box::new(remote::MixerFactory {
                    media: self.clone(),
                }),
            ),
            (
                "HubPort",
                Box::new(remote::HubPortFactory {
                    media: self.clone(),
                }),
            ),
            (
                "HttpPostEndpoint",
                Box::new(http_post::HttpPostFactory {
                    media: self.clone(),
                }),
            ),
            (
                "RtpEndpoint",
                Box::new(rtp_endpoint::RtpFactory {
                    media: self.clone(),
                }),
            ),
            (
                "ZBarFilter",
                Box::new(zbar::ZBarFactory {
                    media: self.clone(),
                }),
            ),
            (
                "ImageOverlayFilter",
                Box::new(overlay::OverlayFactory {
                    media: self.clone(),
                    which: overlay::Which::Image,
                }),
            ),
            (
                "FaceOverlayFilter",
                Box::new(overlay::OverlayFactory {
                    media: self.clone(),
                    which: overlay::Which::Face,
                }),
            ),
        ]
    }

    /// The test-only elements (feature `test-elements`, never in a release build): a
    /// server that registers them adds [`TEST_MODULE_IDL`] to its model.
    #[cfg(feature = "test-elements")]
    pub fn test_factories(&self) -> Vec<(&'static str, Box<dyn Factory>)> {
        vec![(
            "FluoTestCrash",
            Box::new(remote::TestCrashFactory {
                media: self.clone(),
            }) as Box<dyn Factory>,
        )]
    }

    /// getStats of an element that media reaches through its port (recorders, filters): its
    /// ElementStats with the input latencies the router measured, while the pipeline's
    /// latencyStats is on (KMS reports nothing else for them).
    pub(crate) fn element_stats(
        &self,
        q: &fluo_core::StatsQuery<'_>,
    ) -> Option<Map<String, Value>> {
        let mut out = Map::new();
        q.element_entry(&mut out, &self.bus.input_latency(q.id));
        Some(out)
    }

    /// Starts or stops routing `edge`'s media when this element (`key`, `id`) is its source.
    pub(crate) fn route(&self, key: u64, id: &str, edge: &Edge, add: bool) {
        if edge.source != id {
            return;
        }
        if let Some(kind) = edge.media_kind() {
            self.bus.route(key, &edge.sink, kind, add);
        }
    }
}

/// An Error event of `error` saying `description`.
pub(crate) fn error_event(error: MediaError, description: String) -> MediaEvent {
    MediaEvent::Error { error, description }
}

/// The Error event for a GStreamer error message: what failed, in which element, and
/// GStreamer's details.
pub(crate) fn gst_error(e: &gst::message::Error, error: MediaError) -> MediaEvent {
    let from = e.src().map(|s| s.name().to_string()).unwrap_or_default();
    let description = match e.debug().filter(|d| !d.is_empty()) {
        Some(d) => format!("{} (in {from}: {d})", e.error()),
        None => format!("{} (in {from})", e.error()),
    };
    error_event(error, fluo_api::text::foreign(description))
}
