//! The worker's side: its entry point, the jobs it hosts and what they may do.
//!
//! A worker is the server's binary (or a test binary) started by the supervisor with its
//! control socket on descriptor 3 and its media socket on 4. [`run`] closes everything else,
//! waits for the server's `Init`, enters the sandbox, runs the caller's start-up hook (e.g.
//! `gst::init`), says `Ready`, then serves: control messages on the main thread, media on a
//! second thread. It exits when the server's end closes (the server died or stopped it).

use crate::media::{self, Batch, MediaSocket, PacketRef, Record, MAX_DATAGRAM};
use crate::proto::{self, FromWorker, JobId, ToWorker, WorkerGauges};
use crate::sandbox;
use crate::spawn::{CONTROL_FD, MEDIA_FD};
use std::collections::HashMap;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

/// One element's work inside a worker (a player's pipeline, a recorder's, a filter's).
pub trait Job: Send {
    /// A method call from the server; the answer goes back as the reply.
    fn call(&mut self, method: &str, _args: &[u8]) -> Result<Vec<u8>, String> {
        Err(format!("unknown method '{method}'"))
    }

    /// A packet routed to this job.
    fn packet(&mut self, _pkt: &PacketRef<'_>) {}

    /// A sink this job feeds wants a keyframe.
    fn keyframe_request(&mut self) {}

    /// The stream feeding this job ended.
    fn end_of_stream(&mut self) {}

    /// The server stops the job (or the worker is shutting down): finish files, free
    /// resources. Called once.
    fn stop(&mut self) {}
}

/// Makes a job of one kind from its parameters.
pub type JobFactory = Box<dyn Fn(JobCtx, &[u8]) -> Result<Box<dyn Job>, String> + Send + Sync>;

/// The job kinds a worker hosts.
#[derive(Default)]
pub struct Registry {
    kinds: HashMap<String, JobFactory>,
    gauges: Option<fn() -> WorkerGauges>,
}

impl Registry {
    /// No kinds.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a kind.
    pub fn register(
        &mut self,
        kind: &str,
        make: impl Fn(JobCtx, &[u8]) -> Result<Box<dyn Job>, String> + Send + Sync + 'static,
    ) {
        self.kinds.insert(kind.to_owned(), Box::new(make));
    }

    /// How the worker counts its live objects (GStreamer pipelines and elements) for each
    /// pong: the server sees them in [`crate::WorkerStats`]. Without it, the worker reports
    /// zeros.
    pub fn gauges(&mut self, read: fn() -> WorkerGauges) {
        self.gauges = Some(read);
    }
}

/// What the worker shares between its threads and its jobs.
struct Out {
    /// Read by the control loop, written by everyone under `write` (one descriptor: the
    /// worker holds nothing but stdio and its two sockets).
    control: UnixStream,
    write: Mutex<()>,
    media: MediaSocket,
}

impl Out {
    fn send(&self, msg: &FromWorker) {
        let frame = proto::frame(msg);
        let _guard = lock(&self.write);
        if let Err(e) = io::Write::write_all(&mut &self.control, &frame) {
            // The server is gone; the control loop sees the end and stops the jobs.
            tracing::debug!("worker: control write failed: {e}");
        }
    }
}

/// A job's way back to the server (cheap to clone, usable from any thread: a GStreamer
/// streaming thread sends the packets its appsink pulls).
#[derive(Clone)]
pub struct JobCtx {
    job: JobId,
    out: Arc<Out>,
}

thread_local! {
    static BATCH: std::cell::RefCell<Batch> = std::cell::RefCell::new(Batch::new());
    /// Set on the media thread while it hands one datagram's records to the jobs: what they
    /// send meanwhile is gathered into one datagram, sent when the datagram is done.
    static GATHER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Sends the gathered batch of this thread, if any (blocking: a worker waits for the server
/// rather than drop its own output; the server never blocks on a worker, it drops instead).
fn flush(media: &MediaSocket, b: &mut Batch) {
    if !b.is_empty() {
        if let Err(e) = media.send(b.bytes(), true) {
            tracing::debug!("worker: media send failed: {e}");
        }
        b.clear();
    }
}

impl JobCtx {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.job
    }

    fn send_record(&self, push: impl Fn(&mut Batch) -> Result<(), media::BatchError>) {
        let gather = GATHER.with(|g| g.get());
        BATCH.with(|b| {
            let mut b = b.borrow_mut();
            if !gather {
                b.clear();
            }
            match push(&mut b) {
                Ok(()) => {}
                Err(media::BatchError::Full) => {
                    flush(&self.out.media, &mut b);
                    if push(&mut b).is_err() {
                        return;
                    }
                }
                Err(media::BatchError::Unsupported) => return,
            }
            if !gather {
                flush(&self.out.media, &mut b);
            }
        });
    }

    /// Sends a packet the job produced into the router.
    pub fn send_packet(&self, pkt: &PacketRef<'_>) {
        self.send_record(|b| b.push_packet(self.job, pkt));
    }

    /// Sends several packets in as few datagrams as fit.
    pub fn send_packets<'a>(&self, pkts: impl IntoIterator<Item = PacketRef<'a>>) {
        let was = GATHER.with(|g| g.replace(true));
        for p in pkts {
            self.send_record(|b| b.push_packet(self.job, &p));
        }
        if !was {
            GATHER.with(|g| g.set(false));
            BATCH.with(|b| flush(&self.out.media, &mut b.borrow_mut()));
        }
    }

    /// Asks the job's sources for a keyframe.
    pub fn request_keyframe(&self) {
        self.send_record(|b| b.push_keyframe(self.job));
    }

    /// The job's own stream ended (a player reached the end of its file).
    pub fn end_of_stream(&self) {
        self.send_record(|b| b.push_end_of_stream(self.job));
    }

    /// Raises an event of the job.
    pub fn emit(&self, name: &str, data: Vec<u8>) {
        self.out.send(&FromWorker::Event {
            job: self.job,
            name: name.to_owned(),
            data,
        });
    }

    /// The job failed by itself (its pipeline errored); the server raises the element's Error
    /// event. The job stays until the server stops it.
    pub fn fail(&self, error: &str) {
        self.out.send(&FromWorker::JobFailed {
            job: self.job,
            error: error.to_owned(),
        });
    }
}

type Jobs = Mutex<HashMap<JobId, Arc<Mutex<Box<dyn Job>>>>>;

/// How long a worker whose server went away (or asked it to stop) gives its jobs to stop
/// (recorders to finalise their files) before it ends regardless.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(6);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// SIGUSR1 drains the server; `systemctl kill -s USR1` sends it to every process of the unit,
/// and its default action would end the workers (and every job in them).
fn ignore_sigusr1() {
    // SAFETY: installs SIG_IGN, no handler code; before any thread of this process starts.
    if unsafe { libc::signal(libc::SIGUSR1, libc::SIG_IGN) } == libc::SIG_ERR {
        tracing::warn!("media worker: SIGUSR1 could not be ignored");
    }
}

/// Runs a worker: never returns. `start` runs inside the sandbox before `Ready` (initialise
/// GStreamer there); its error goes in `Ready` (the worker runs on, the server counts it as
/// unable to host media). A process started by hand (no sockets on 3 and 4) exits with
/// status 2.
pub fn run(registry: Registry, start: impl FnOnce() -> Result<(), String>) -> ! {
    if !is_socket(CONTROL_FD) || !is_socket(MEDIA_FD) {
        eprintln!("this is a Fluo worker: the fluo server starts it, with its sockets");
        std::process::exit(2);
    }
    ignore_sigusr1();
    let closed = sandbox::close_inherited_fds();
    // SAFETY: descriptors 3 and 4 are the sockets the supervisor placed there (checked above)
    // and nothing else in this process owns them.
    let (control, media) = unsafe {
        (
            UnixStream::from(OwnedFd::from_raw_fd(CONTROL_FD)),
            MediaSocket::from_fd(OwnedFd::from_raw_fd(MEDIA_FD)),
        )
    };
    let policy = match proto::read_msg::<ToWorker>(&mut &control) {
        Ok(Some(ToWorker::Init { sandbox })) => sandbox,
        _ => std::process::exit(2),
    };
    let mut report = sandbox::enter(&policy);
    report.inherited_fds_closed = closed;
    let init_error = start().err().unwrap_or_default();
    let out = Arc::new(Out {
        control,
        write: Mutex::new(()),
        media,
    });
    out.send(&FromWorker::Ready {
        pid: std::process::id(),
        sandbox: report,
        init_error,
    });
    let jobs: Arc<Jobs> = Arc::default();
    {
        let out = out.clone();
        let jobs = jobs.clone();
        let spawned = std::thread::Builder::new()
            .name("fluo-worker-media".into())
            .spawn(move || media_loop(&out, &jobs));
        if spawned.is_err() {
            std::process::exit(3);
        }
    }
    control_loop(&out, &jobs, &registry);
    // The server closed its end or asked to stop: stop the jobs (recorders finalise), exit.
    // A job stuck in a plugin must not keep the process alive without its server: the process
    // ends after STOP_GRACE whatever the jobs are doing.
    let _ = std::thread::Builder::new()
        .name("fluo-worker-exit".into())
        .spawn(|| {
            std::thread::sleep(STOP_GRACE);
            // SAFETY: _exit ends the process at once, running nothing that could wait on the
            // stuck job's locks.
            unsafe { libc::_exit(0) }
        });
    let all: Vec<_> = lock(&jobs).drain().map(|(_, j)| j).collect();
    for j in all {
        lock(&j).stop();
    }
    std::process::exit(0)
}

fn is_socket(fd: i32) -> bool {
    // SAFETY: fstat writes into a zeroed struct; a bad descriptor just fails.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK }
}

fn control_loop(out: &Arc<Out>, jobs: &Arc<Jobs>, registry: &Registry) {
    loop {
        let msg = match proto::read_msg::<ToWorker>(&mut &out.control) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("worker: bad control message ({e}), exiting");
                return;
            }
        };
        match msg {
            ToWorker::Init { .. } => {}
            ToWorker::Ping { seq } => {
                let gauges = registry.gauges.map(|read| read()).unwrap_or_default();
                out.send(&FromWorker::Pong { seq, gauges })
            }
            ToWorker::Shutdown => return,
            ToWorker::Start {
                req,
                job,
                kind,
                params,
            } => {
                let result = match registry.kinds.get(&kind) {
                    None => Err(format!("this worker has no job kind '{kind}'")),
                    Some(make) => {
                        let ctx = JobCtx {
                            job,
                            out: out.clone(),
                        };
                        make(ctx, params.as_slice()).map(|j| {
                            lock(jobs).insert(job, Arc::new(Mutex::new(j)));
                            Vec::new()
                        })
                    }
                };
                out.send(&FromWorker::Reply { req, result });
            }
            ToWorker::Call {
                req,
                job,
                method,
                args,
            } => {
                let j = lock(jobs).get(&job).cloned();
                let result = match j {
                    Some(j) => lock(&j).call(&method, &args),
                    None => Err(format!("no job {job} in this worker")),
                };
                out.send(&FromWorker::Reply { req, result });
            }
            ToWorker::Stop { job } => {
                let j = lock(jobs).remove(&job);
                if let Some(j) = j {
                    lock(&j).stop();
                }
            }
        }
    }
}

fn media_loop(out: &Arc<Out>, jobs: &Arc<Jobs>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    GATHER.with(|g| g.set(true));
    loop {
        // The end of the media socket means the server is gone or stopping this worker: the
        // control loop sees its own end and stops the jobs in order.
        let n = match out.media.recv(&mut buf, true) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("worker: media receive failed: {e}");
                return;
            }
        };
        for rec in media::records(&buf[..n]) {
            let id = match rec {
                Record::Packet(j, _) | Record::Keyframe(j) | Record::EndOfStream(j) => j,
            };
            let Some(job) = lock(jobs).get(&id).cloned() else {
                continue;
            };
            let mut job = lock(&job);
            match rec {
                Record::Packet(_, p) => job.packet(&p),
                Record::Keyframe(_) => job.keyframe_request(),
                Record::EndOfStream(_) => job.end_of_stream(),
            }
        }
        // What the jobs sent while handling this datagram leaves in one.
        BATCH.with(|b| flush(&out.media, &mut b.borrow_mut()));
    }
}
