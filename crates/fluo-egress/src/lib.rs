//! Fluo's per-viewer egress fast path beside str0m 0.25 (issue 15), and Fluo's SRTP.
//!
//! Forwarding one packet to one viewer is: rewrite the header into a reused buffer, protect it
//! with that viewer's keys, queue it for a batched send; str0m keeps ICE, DTLS (whose exported
//! keys Fluo captures), RTCP scheduling and keyframe-request events. See
//! docs/egress-fast-path.md for the design and its measurements.
//!
//! - [`keys`]: a wrapping DTLS provider that hands each endpoint's exported DTLS-SRTP keys to
//!   Fluo;
//! - [`srtp`]: SRTP / SRTCP protect and check in place on aws-lc-rs (the DTLS-SRTP profiles
//!   and Kurento's four SDES suites), with the RFC 3711 key derivation;
//! - [`sdes`]: SDES-keyed sessions with per-SSRC index estimation and replay windows, for
//!   RtpEndpoint;
//! - [`Viewer`] ([`viewer`]): per-viewer streams, NACK answers from one cache per [`Source`]
//!   within an RTX ratio cap, the viewer's RTCP read, str0m's RTCP re-indexed with corrected
//!   sender reports, per-stream statistics in the shape getStats needs;
//! - [`SentLog`] ([`sent`]): what a viewer was sent, by transport-wide sequence number, and
//!   its transport-wide feedback matched against it (the send-side bandwidth estimate's input);
//! - [`Batch`] / [`Sender`] ([`batch`]): datagrams with their path (socket, destination,
//!   TOS), sent with `sendmmsg` or handed to the shell (TURN, ICE-TCP).
//!
//! No panics on what peers send; nothing allocated per forwarded packet once warm. The only
//! unsafe code is the `sendmmsg` call (module `sys`).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod batch;
pub mod clock;
pub mod keys;
pub mod packet;
pub mod replay;
pub mod sdes;
pub mod sent;
pub mod source;
pub mod srtp;
pub mod stream;
#[cfg(target_os = "linux")]
mod sys;
pub mod viewer;

pub use batch::{Batch, Path, SendReport, SocketId};
#[cfg(target_os = "linux")]
pub use batch::{Sender, Transport};
pub use clock::Clock;
pub use keys::{build_capturing, capturing_provider, ExportedKeys, KeySlot};
pub use packet::{ExtBlock, ExtPlan, SourcePacket};
pub use replay::ReplayWindow;
pub use sdes::{SdesReceiver, SdesSender};
pub use sent::{Acked, Sent, SentLog};
pub use source::Source;
pub use srtp::{Profile, SrtpContext, SrtpError};
pub use stream::{PeerReport, Rtx, StreamOut, StreamStats};
pub use viewer::{Viewer, ViewerRtcp, ViewerStats, MAX_PADDING, MIN_PADDING};
