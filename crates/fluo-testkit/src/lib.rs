//! Test-only building blocks: [`Browser`], an in-memory WebRTC peer on str0m, and [`World`],
//! Fluo's engine plus its media core wired to browsers by a virtual-time network. Nothing
//! here opens a socket or sleeps; a test of many seconds of media runs in milliseconds.
//! The `live` feature (on by default) adds the helpers around a live server (`live`,
//! `procs`, `soak`, `storm`, `workers`), which build fluo-server; without it (the fuzz
//! targets) the World builds on the engine and the media core only.
#![forbid(unsafe_code)]
#![allow(missing_docs)]

mod browser;
pub mod clips;
pub mod floor;
pub mod gst_launch;
pub mod layers;
#[cfg(feature = "live")]
pub mod live;
pub mod machine;
pub mod plot;
#[cfg(feature = "live")]
pub mod procs;
mod simulcast;
pub mod skip;
#[cfg(feature = "live")]
pub mod soak;
pub mod stats;
#[cfg(feature = "live")]
pub mod storm;
mod svc;
pub mod tmp;
pub mod udp_peer;
#[cfg(feature = "live")]
pub mod workers;
mod world;

pub use browser::{agreed_feedback, Browser, FeedbackSent, RtpSeen};
pub use simulcast::{vp8_frame, SendLayer};
pub use svc::{dd_extension, SvcSend, TEMPORAL_PATTERN};
pub use world::{Link, World};
