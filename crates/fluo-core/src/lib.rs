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
mod limits;
mod output;
mod registry;
mod replay;
mod session;
mod stats;
mod transaction;

pub use element::{
    Completer, CompletionSink, Element, ElementCx, Factory, FactoryCx, NoMedia, Transparent,
};
pub use engine::{ConnId, Engine, EngineConfig, Now, Output};
pub use graph::Edge;
pub use gstdot::PipelineDot;
pub use host::{FixedHost, Host};
pub use limits::AddrKey;
pub use output::{OutputProps, SettingsSink, DEFAULT_ENCODER_BITRATE};
pub use stats::{Latencies, StatsQuery};
