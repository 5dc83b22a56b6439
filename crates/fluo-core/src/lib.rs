//! Fluo's IO-free engine.
//!
//! [`Engine`] owns every media object, every session and the pipeline graph. The async shell
//! feeds it text frames and connection events together with the current time ([`Now`]) and
//! drains [`Output`]s (frames to send) with [`Engine::poll_output`]; timers are driven by
//! [`Engine::poll_timeout`] / [`Engine::handle_timeout`]. Nothing here reads the clock,
//! touches a socket or spawns a thread, so every behaviour is testable with virtual time.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod dispatch;
mod element;
mod engine;
mod events;
mod graph;
mod gstdot;
mod host;
pub mod http;
mod hub;
mod layer_tags;
mod limits;
mod media_event;
mod ops;
mod output;
pub mod panics;
mod registry;
mod replay;
mod session;
mod stats;
mod transaction;
mod view;
pub mod whip;

pub use element::{
    Completer, CompletionSink, Element, ElementCx, Factory, FactoryCx, NoMedia, Stopping,
    Transparent,
};
pub use engine::{ConnId, Engine, EngineConfig, Now, Output};
pub use fluo_sfu::{EventSink, FlowDir, MediaError, MediaEvent};
pub use graph::Edge;
pub use gstdot::PipelineDot;
pub use host::{FixedHost, Host};
pub use hub::HubPort;
pub use limits::AddrKey;
pub use media_event::{candidate_pair_json, error_code, event_fields, event_name, layer_json};
pub use ops::{method_label, EngineReading};
pub use output::{OutputProps, SettingsSink, DEFAULT_ENCODER_BITRATE};
pub use stats::{Latencies, StatsQuery};
pub use view::{ConnectionView, ElementDetail, ElementView, EngineView, PipelineView, ViewLimits};

/// Entry points for the fuzzer (fuzz/): what the HTTP listener does with a connection's bytes.
pub mod fuzzing {
    pub use crate::http::request::fuzz_request as http_request;
}
