//! SPIKE for issue 15 ("Media plane v2"): what a per-viewer egress fast path beside str0m
//! 0.25 needs, as working code with tests and benches. Not wired into Fluo's media core; see
//! docs/egress-fast-path.md for the design and the measurements.
//!
//! - [`keys`]: a wrapping DTLS provider that hands each endpoint's exported DTLS-SRTP keys to
//!   Fluo;
//! - [`srtp`]: SRTP / SRTCP protect in place on aws-lc-rs, with the RFC 3711 key derivation;
//! - [`egress`]: per-viewer streams (rewrite, header, protect into a [`Batch`]), NACK answers
//!   from one cache per source, str0m's RTCP re-indexed with corrected sender reports;
//! - [`batch`]: reused datagram buffers and `sendmmsg`.

pub mod batch;
pub mod egress;
pub mod harness;
pub mod keys;
pub mod srtp;

pub use batch::Batch;
pub use egress::{Clock, ExtPlan, Rtx, Source, SourcePacket, StreamOut, Viewer, ViewerRtcp};
pub use keys::{build_capturing, capturing_provider, ExportedKeys, KeySlot};
pub use srtp::{Profile, SrtpContext};
