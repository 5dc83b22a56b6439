//! Fluo's worker processes: the GStreamer (and later OpenCV) work of players, recorders,
//! transcoders and filters runs out of the server's process, so that a plugin that crashes,
//! aborts, leaks or hangs takes down one worker, never the server.
//!
//! * [`supervisor`]: the server's side. A fixed set of worker slots, each running one process
//!   at a time; jobs (an element's media work) placed by group (a pipeline); a death noticed at
//!   once through the process's pidfd and reported as a typed [`Death`] to the listener, to
//!   every job's [`JobSink`] and to every pending request; the slot restarted at once, or with
//!   a growing delay when the worker cannot start.
//! * [`worker`]: the worker's side: [`worker::run`] with a [`worker::Registry`] of job kinds.
//! * [`proto`]: the typed control protocol (length-prefixed frames on a Unix stream socket),
//!   [`wire`] its encoding; [`media`]: media records batched into `SOCK_SEQPACKET` datagrams.
//! * [`spawn`]: starting a worker (descriptors 3 and 4, a clean environment, rlimits), and
//!   [`sandbox`]: what the worker does to itself (closes inherited descriptors, drops
//!   capabilities, Landlock, seccomp).
//!
//! Design notes and measurements: docs/workers.md.

#![warn(missing_docs)]

pub mod media;
pub mod proto;
pub mod sandbox;
mod slot;
pub mod spawn;
pub mod supervisor;
#[cfg(feature = "test-jobs")]
pub mod test_jobs;
pub mod wire;
pub mod worker;

pub use media::{Batch, PacketRef};
pub use proto::{JobId, SandboxPolicy, SandboxReport, WorkerGauges};
pub use spawn::{CpuTime, Limits, WorkerCommand};
pub use supervisor::{
    all_stats, media_sent, refresh_all_gauges, Death, DeathCause, Job, JobError, JobSink,
    PushError, RestartPolicy, Supervisor, SupervisorConfig, SupervisorEvent, WorkerStats,
};
