//! The control protocol between the server and a worker, over a Unix stream socket: each
//! message is one frame, a little-endian u32 length then the message's [`Wire`] encoding.
//! Control messages are rare (a job started, a method called, a ping a second); media never
//! travels here (see [`crate::media`]).

use crate::wire::{Reader, Wire, WireError, Writer, MAX_FRAME};
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// A job's id, chosen by the server, unique for the server's life.
pub type JobId = u64;

/// What the worker must do to itself before it takes any job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxPolicy {
    /// Restrict file access with Landlock where the kernel has it.
    pub landlock: bool,
    /// Paths (and what lies below them) the worker may read: the URI allow-list's directories
    /// for players. The system's libraries, GStreamer's plugins and the few files of /etc,
    /// /dev and /proc that they need are added by the worker.
    pub read_paths: Vec<PathBuf>,
    /// Paths the worker may read, create and write files in: the recorders' directories.
    pub write_paths: Vec<PathBuf>,
    /// Install the seccomp filter that refuses the system calls a media worker never needs.
    pub seccomp: bool,
    /// Drop every capability (bounding set included) and set no_new_privs.
    pub drop_privileges: bool,
}

impl Wire for SandboxPolicy {
    fn put(&self, w: &mut Writer<'_>) {
        w.bool(self.landlock);
        w.put(&self.read_paths);
        w.put(&self.write_paths);
        w.bool(self.seccomp);
        w.bool(self.drop_privileges);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(SandboxPolicy {
            landlock: r.bool()?,
            read_paths: r.get()?,
            write_paths: r.get()?,
            seccomp: r.bool()?,
            drop_privileges: r.bool()?,
        })
    }
}

/// What the worker's sandbox came to on this kernel, reported once at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxReport {
    /// The Landlock ABI version in force (0: none; file access is not restricted).
    pub landlock_abi: u8,
    /// Whether every access right asked for is enforced (false when the kernel's Landlock is
    /// older than what was asked, or absent).
    pub landlock_full: bool,
    /// Whether the seccomp filter is installed.
    pub seccomp: bool,
    /// Whether capabilities were dropped and no_new_privs set.
    pub privileges_dropped: bool,
    /// Descriptors the worker had open when it started beyond its two sockets and stdio, all
    /// closed (a leak from the server would show here).
    pub inherited_fds_closed: u32,
}

impl Wire for SandboxReport {
    fn put(&self, w: &mut Writer<'_>) {
        w.u8(self.landlock_abi);
        w.bool(self.landlock_full);
        w.bool(self.seccomp);
        w.bool(self.privileges_dropped);
        w.u32(self.inherited_fds_closed);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(SandboxReport {
            landlock_abi: r.u8()?,
            landlock_full: r.bool()?,
            seccomp: r.bool()?,
            privileges_dropped: r.bool()?,
            inherited_fds_closed: r.u32()?,
        })
    }
}

/// What a worker counts of its own objects, reported with each [`FromWorker::Pong`]: the
/// GStreamer pipelines (and the elements in them) its jobs made that are not finalised yet
/// (what the job kinds' registry reports through [`crate::worker::Registry::gauges`]; zero
/// for a worker whose kinds count nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerGauges {
    /// Live pipelines.
    pub pipelines: u64,
    /// Elements inside them, at any depth.
    pub elements: u64,
    /// Bytes its recorders wrote to their files so far.
    pub recorded_bytes: u64,
}

impl Wire for WorkerGauges {
    fn put(&self, w: &mut Writer<'_>) {
        w.u64(self.pipelines);
        w.u64(self.elements);
        w.u64(self.recorded_bytes);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(WorkerGauges {
            pipelines: r.u64()?,
            elements: r.u64()?,
            recorded_bytes: r.u64()?,
        })
    }
}

/// A message from the server to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToWorker {
    /// The first message: how to sandbox. Answered by [`FromWorker::Ready`].
    Init {
        /// The sandbox to enter.
        sandbox: SandboxPolicy,
    },
    /// Start a job of `kind` (answered by [`FromWorker::Reply`] with `req`).
    Start {
        /// Request id.
        req: u64,
        /// The new job's id.
        job: JobId,
        /// The job kind, as registered in the worker.
        kind: String,
        /// The kind's own parameters.
        params: Vec<u8>,
    },
    /// Call a method of a job (answered by [`FromWorker::Reply`] with `req`).
    Call {
        /// Request id.
        req: u64,
        /// The job.
        job: JobId,
        /// The method.
        method: String,
        /// Its arguments, in the job kind's encoding.
        args: Vec<u8>,
    },
    /// Stop and forget a job (a recorder finalises its file first).
    Stop {
        /// The job.
        job: JobId,
    },
    /// Liveness check, answered by [`FromWorker::Pong`].
    Ping {
        /// Echoed back.
        seq: u64,
    },
    /// Stop every job and exit.
    Shutdown,
}

/// A message from a worker to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromWorker {
    /// The worker is sandboxed and takes jobs.
    Ready {
        /// Its process id, as it sees it.
        pid: u32,
        /// What its sandbox came to.
        sandbox: SandboxReport,
        /// Why its own initialisation (GStreamer's, in the server's workers) failed; empty
        /// when it succeeded. Such a worker runs but cannot host media jobs.
        init_error: String,
    },
    /// The answer to a [`ToWorker::Start`] or [`ToWorker::Call`].
    Reply {
        /// The request's id.
        req: u64,
        /// The result or the job's error text.
        result: Result<Vec<u8>, String>,
    },
    /// An event of a job (end of stream, a state change...), in the job kind's encoding.
    Event {
        /// The job.
        job: JobId,
        /// Event name.
        name: String,
        /// Event data.
        data: Vec<u8>,
    },
    /// A job ended by itself with an error (its pipeline failed); the worker goes on.
    JobFailed {
        /// The job.
        job: JobId,
        /// Why, for the element's Error event.
        error: String,
    },
    /// Answer to [`ToWorker::Ping`].
    Pong {
        /// The ping's seq.
        seq: u64,
        /// The worker's live objects when it answered.
        gauges: WorkerGauges,
    },
}

impl Wire for ToWorker {
    fn put(&self, w: &mut Writer<'_>) {
        match self {
            ToWorker::Init { sandbox } => {
                w.u8(1);
                w.put(sandbox);
            }
            ToWorker::Start {
                req,
                job,
                kind,
                params,
            } => {
                w.u8(2);
                w.u64(*req);
                w.u64(*job);
                w.str(kind);
                w.bytes(params);
            }
            ToWorker::Call {
                req,
                job,
                method,
                args,
            } => {
                w.u8(3);
                w.u64(*req);
                w.u64(*job);
                w.str(method);
                w.bytes(args);
            }
            ToWorker::Stop { job } => {
                w.u8(4);
                w.u64(*job);
            }
            ToWorker::Ping { seq } => {
                w.u8(5);
                w.u64(*seq);
            }
            ToWorker::Shutdown => w.u8(6),
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(match r.u8()? {
            1 => ToWorker::Init { sandbox: r.get()? },
            2 => ToWorker::Start {
                req: r.u64()?,
                job: r.u64()?,
                kind: r.get()?,
                params: r.bytes()?.to_vec(),
            },
            3 => ToWorker::Call {
                req: r.u64()?,
                job: r.u64()?,
                method: r.get()?,
                args: r.bytes()?.to_vec(),
            },
            4 => ToWorker::Stop { job: r.u64()? },
            5 => ToWorker::Ping { seq: r.u64()? },
            6 => ToWorker::Shutdown,
            t => return Err(WireError::BadTag(t)),
        })
    }
}

impl Wire for FromWorker {
    fn put(&self, w: &mut Writer<'_>) {
        match self {
            FromWorker::Ready {
                pid,
                sandbox,
                init_error,
            } => {
                w.u8(1);
                w.u32(*pid);
                w.put(sandbox);
                w.str(init_error);
            }
            FromWorker::Reply { req, result } => {
                w.u8(2);
                w.u64(*req);
                w.put(result);
            }
            FromWorker::Event { job, name, data } => {
                w.u8(3);
                w.u64(*job);
                w.str(name);
                w.bytes(data);
            }
            FromWorker::JobFailed { job, error } => {
                w.u8(4);
                w.u64(*job);
                w.str(error);
            }
            FromWorker::Pong { seq, gauges } => {
                w.u8(5);
                w.u64(*seq);
                w.put(gauges);
            }
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(match r.u8()? {
            1 => FromWorker::Ready {
                pid: r.u32()?,
                sandbox: r.get()?,
                init_error: r.get()?,
            },
            2 => FromWorker::Reply {
                req: r.u64()?,
                result: r.get()?,
            },
            3 => FromWorker::Event {
                job: r.u64()?,
                name: r.get()?,
                data: r.bytes()?.to_vec(),
            },
            4 => FromWorker::JobFailed {
                job: r.u64()?,
                error: r.get()?,
            },
            5 => FromWorker::Pong {
                seq: r.u64()?,
                gauges: r.get()?,
            },
            t => return Err(WireError::BadTag(t)),
        })
    }
}

/// One message as a frame: its length, then its encoding.
pub fn frame<T: Wire>(msg: &T) -> Vec<u8> {
    let mut buf = vec![0; 4];
    msg.put(&mut Writer::new(&mut buf));
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    buf
}

/// The length a frame header announces, or an error when it is over [`MAX_FRAME`].
pub fn frame_len(header: [u8; 4]) -> io::Result<usize> {
    let n = u32::from_le_bytes(header) as usize;
    if n > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            WireError::TooLong(n as u64),
        ));
    }
    Ok(n)
}

/// Decodes a frame's body.
pub fn parse<T: Wire>(body: &[u8]) -> io::Result<T> {
    crate::wire::decode(body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes one message (blocking).
pub fn write_msg<T: Wire>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    w.write_all(&frame(msg))
}

/// Reads one message (blocking); `Ok(None)` at a clean end of stream.
pub fn read_msg<T: Wire>(r: &mut impl Read) -> io::Result<Option<T>> {
    let mut header = [0; 4];
    match r.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut body = vec![0; frame_len(header)?];
    r.read_exact(&mut body)?;
    parse(&body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_frames() {
        let to = [
            ToWorker::Init {
                sandbox: SandboxPolicy {
                    landlock: true,
                    read_paths: vec!["/srv/media".into()],
                    write_paths: vec!["/var/rec".into()],
                    seccomp: true,
                    drop_privileges: true,
                },
            },
            ToWorker::Start {
                req: 1,
                job: 7,
                kind: "player".into(),
                params: vec![1, 2],
            },
            ToWorker::Call {
                req: 2,
                job: 7,
                method: "play".into(),
                args: vec![],
            },
            ToWorker::Stop { job: 7 },
            ToWorker::Ping { seq: 9 },
            ToWorker::Shutdown,
        ];
        let mut stream = Vec::new();
        for m in &to {
            write_msg(&mut stream, m).unwrap();
        }
        let mut r = &stream[..];
        for m in &to {
            assert_eq!(read_msg::<ToWorker>(&mut r).unwrap().as_ref(), Some(m));
        }
        assert_eq!(read_msg::<ToWorker>(&mut r).unwrap(), None);

        let from = [
            FromWorker::Ready {
                pid: 42,
                sandbox: SandboxReport {
                    landlock_abi: 6,
                    landlock_full: true,
                    seccomp: true,
                    privileges_dropped: true,
                    inherited_fds_closed: 0,
                },
                init_error: "no GStreamer".into(),
            },
            FromWorker::Reply {
                req: 1,
                result: Err("no such element".into()),
            },
            FromWorker::Event {
                job: 7,
                name: "EndOfStream".into(),
                data: vec![],
            },
            FromWorker::JobFailed {
                job: 7,
                error: "decoder".into(),
            },
            FromWorker::Pong {
                seq: 9,
                gauges: WorkerGauges {
                    pipelines: 2,
                    elements: 31,
                    recorded_bytes: 1 << 40,
                },
            },
        ];
        for m in &from {
            let f = frame(m);
            assert_eq!(parse::<FromWorker>(&f[4..]).unwrap(), *m);
        }
    }

    #[test]
    fn oversized_and_garbage_frames_are_errors() {
        let mut r = &[0xff, 0xff, 0xff, 0xff][..];
        assert!(read_msg::<FromWorker>(&mut r).is_err());
        let mut r = &[1, 0, 0, 0, 99][..];
        assert!(read_msg::<FromWorker>(&mut r).is_err());
        // A frame cut short is an error, not a clean end.
        let f = frame(&FromWorker::Pong {
            seq: 1,
            gauges: WorkerGauges::default(),
        });
        let mut r = &f[..f.len() - 1];
        assert!(read_msg::<FromWorker>(&mut r).is_err());
    }
}
