//! The server's side: a fixed set of worker slots, each running one worker process at a time,
//! restarted when it dies; jobs placed on slots by group (a pipeline's jobs share a worker);
//! deaths reported as typed events to the supervisor's listener and to each job's sink.

use crate::media::{Batch, BatchError, MediaSocket, PacketRef};
use crate::proto::{JobId, SandboxPolicy, SandboxReport, WorkerGauges};
use crate::slot;
use crate::spawn::{self, CpuTime, ExitStatus, Limits, WorkerCommand};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How workers are started, limited, watched and restarted.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// The worker program.
    pub command: WorkerCommand,
    /// How many worker processes run at once (see docs/workers.md for the choice).
    pub workers: usize,
    /// Each worker's resource limits.
    pub limits: Limits,
    /// Each worker's sandbox.
    pub sandbox: SandboxPolicy,
    /// Delays between restarts of a worker that fails to start or dies idle.
    pub restart: RestartPolicy,
    /// How often a worker is pinged.
    pub ping_interval: Duration,
    /// How long a worker may leave a ping unanswered (or a control write pending) before it
    /// is killed as unresponsive.
    pub ping_timeout: Duration,
    /// How long a new worker may take to say it is ready.
    pub start_timeout: Duration,
    /// Run once, on a blocking thread and without a time limit, before the first worker
    /// starts: the server brings GStreamer's registry cache up to date there, so that workers
    /// starting together do not each scan every plugin within `start_timeout`.
    pub prepare: Option<fn() -> Result<(), String>>,
    /// The runtime on which the workers' media is read and handed to the jobs' sinks (the
    /// server's media thread, so that a packet from a worker reaches the router without a
    /// hop through another thread); `None`: the supervisor's runtime.
    pub media_runtime: Option<tokio::runtime::Handle>,
}

impl SupervisorConfig {
    /// Defaults for `command`: two workers per core (at least two), the default limits, a
    /// full sandbox.
    pub fn new(command: WorkerCommand) -> SupervisorConfig {
        SupervisorConfig {
            command,
            workers: default_workers(),
            limits: Limits::default(),
            sandbox: SandboxPolicy {
                landlock: true,
                read_paths: Vec::new(),
                write_paths: Vec::new(),
                seccomp: true,
                drop_privileges: true,
            },
            restart: RestartPolicy::default(),
            ping_interval: Duration::from_secs(2),
            ping_timeout: Duration::from_secs(10),
            start_timeout: Duration::from_secs(10),
            prepare: None,
            media_runtime: None,
        }
    }
}

/// Two workers per core, at least two (see docs/workers.md for why a pool and not one worker
/// per pipeline).
pub fn default_workers() -> usize {
    (2 * std::thread::available_parallelism().map_or(1, |n| n.get())).max(2)
}

/// When a dead worker is started again.
///
/// A worker that dies while hosting jobs was most likely killed by one of them (a hostile
/// file, a plugin bug): it is restarted at once, so that the next element works. A worker that
/// cannot start, or dies with no job, is broken (a missing plugin, a sandbox the kernel
/// refuses): it is retried after `first_delay`, doubling up to `max_delay`, so that a broken
/// installation does not spin the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The delay after the first such failure.
    pub first_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RestartPolicy {
    /// The delay before the next start, after `failures` failures in a row (0: a death while
    /// hosting jobs, which restarts at once).
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (failures - 1).min(20);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Why a worker process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeathCause {
    /// It exited by itself.
    Exited(i32),
    /// A signal ended it (a crash, an abort, the kernel's OOM killer or the operator's kill -9).
    Signaled {
        /// The signal.
        signal: i32,
        /// Whether a core file was written.
        core_dumped: bool,
    },
    /// It stopped answering pings (or reading its control socket) and was killed.
    Unresponsive,
    /// It sent something that breaks the protocol and was killed.
    ProtocolError(String),
    /// The supervisor stopped it (shutdown).
    Stopped,
}

impl fmt::Display for DeathCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeathCause::Exited(0) => write!(f, "the worker process exited"),
            DeathCause::Exited(c) => write!(f, "the worker process exited with status {c}"),
            DeathCause::Signaled {
                signal: libc::SIGKILL,
                ..
            } => write!(
                f,
                "the worker process was killed (SIGKILL: out of memory, or killed by the operator)"
            ),
            DeathCause::Signaled {
                signal: libc::SIGABRT,
                ..
            } => write!(
                f,
                "the worker process aborted (SIGABRT: a plugin error, or its memory limit reached)"
            ),
            DeathCause::Signaled { signal, .. } => write!(
                f,
                "the worker process crashed ({})",
                spawn::signal_name(*signal)
            ),
            DeathCause::Unresponsive => {
                write!(f, "the worker process stopped answering and was killed")
            }
            DeathCause::ProtocolError(e) => {
                write!(
                    f,
                    "the worker process broke the protocol ({e}) and was killed"
                )
            }
            DeathCause::Stopped => write!(f, "the worker process was stopped"),
        }
    }
}

impl DeathCause {
    pub(crate) fn from_status(st: ExitStatus) -> DeathCause {
        match st {
            ExitStatus::Exited(c) => DeathCause::Exited(c),
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => DeathCause::Signaled {
                signal,
                core_dumped,
            },
        }
    }
}

/// A worker's death, as reported to listeners and to the sinks of the jobs it hosted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// The worker slot.
    pub worker: usize,
    /// The dead process.
    pub pid: u32,
    /// Why it ended.
    pub cause: DeathCause,
    /// The CPU time it used.
    pub cpu: CpuTime,
    /// The jobs it hosted, all ended.
    pub jobs: Vec<JobId>,
    /// When it is started again.
    pub restart_in: Duration,
}

/// What the supervisor reports (to the callback given to [`Supervisor::start`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisorEvent {
    /// A worker process is ready for jobs.
    Started {
        /// The worker slot.
        worker: usize,
        /// Its process.
        pid: u32,
        /// What its sandbox came to.
        sandbox: SandboxReport,
    },
    /// A worker process could not be started.
    StartFailed {
        /// The worker slot.
        worker: usize,
        /// Why.
        error: String,
        /// When it is tried again.
        retry_in: Duration,
    },
    /// A worker process died.
    Died(Death),
}

/// Why a job could not be started or called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The worker hosting the job died (before or while answering).
    #[error("{}", .0.cause)]
    WorkerDied(Box<Death>),
    /// The job (or its kind's factory) refused, with its reason.
    #[error("{0}")]
    Failed(String),
    /// No worker could be started.
    #[error("no media worker is available: {0}")]
    Unavailable(String),
    /// The job was stopped, or the supervisor is shutting down.
    #[error("the job was stopped")]
    Stopped,
}

/// Why media could not be handed to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The worker's socket is full (it is slow or stuck): the media was dropped.
    #[error("worker busy, media dropped")]
    Full,
    /// The worker is gone.
    #[error("worker gone")]
    Gone,
    /// The packet cannot be carried (too large, unknown codec).
    #[error("packet cannot be carried")]
    Unsupported,
}

/// Where a job's output goes: media it produces, its events, its end.
///
/// Called from the supervisor's tasks; implementations hand the packets to the router.
pub trait JobSink: Send + Sync {
    /// A packet the job produced.
    fn packet(&self, pkt: &PacketRef<'_>);
    /// The job asks its sources for a keyframe.
    fn keyframe_request(&self) {}
    /// The job's own stream ended.
    fn end_of_stream(&self) {}
    /// An event of the job.
    fn event(&self, _name: &str, _data: &[u8]) {}
    /// The job failed by itself (its worker goes on).
    fn failed(&self, _error: &str) {}
    /// The worker hosting the job died: the job is gone.
    fn worker_died(&self, death: &Death);
}

/// A reply's destination.
pub(crate) type Done<T> = Box<dyn FnOnce(Result<T, JobError>) + Send>;

/// A request for a worker slot's task, addressed to one process generation.
pub(crate) enum Cmd {
    Call {
        job: JobId,
        method: String,
        args: Vec<u8>,
        done: Done<Vec<u8>>,
    },
    Stop {
        job: JobId,
    },
    /// A ping out of turn (seq 0, which no regular ping uses): its pong refreshes the gauges.
    Ping,
}

/// A job start queued on a slot until its worker is ready.
pub(crate) struct StartReq {
    pub job: JobId,
    pub group: u64,
    pub kind: String,
    pub params: Vec<u8>,
    pub sink: Arc<dyn JobSink>,
    pub done: Done<Job>,
}

/// A job's group and sink, as its worker's connection keeps them.
pub(crate) type SinkEntry = (u64, Arc<dyn JobSink>);

/// One live worker process, as jobs and the router see it.
pub(crate) struct Conn {
    pub worker: usize,
    pub pid: u32,
    pub media: MediaSocket,
    pub sinks: RwLock<HashMap<JobId, SinkEntry>>,
    pub cmd: mpsc::UnboundedSender<Cmd>,
    pub dead: AtomicBool,
    pub dropped: AtomicU64,
    /// Media datagrams sent to this process, and the records they carried.
    pub sent: [AtomicU64; 2],
    /// When the media socket was first found full in the current run of full sends (ms since
    /// `born`, plus one; 0: not full). A worker whose socket stays full for `ping_timeout`
    /// does not read its media any more and is killed as unresponsive.
    pub full_since: AtomicU64,
    /// When the process was ready.
    pub born: std::time::Instant,
    /// Set once the process is dead and reported.
    pub death: Mutex<Option<Death>>,
    /// What its last pong counted, and when it arrived.
    pub gauges: Mutex<Option<(std::time::Instant, WorkerGauges)>>,
    /// Why the process's own initialisation failed (its `Ready` said).
    pub init_error: Option<String>,
}

/// What the supervisor's handles share with the slot tasks.
pub(crate) struct Shared {
    pub config: SupervisorConfig,
    pub on_event: Box<dyn Fn(SupervisorEvent) + Send + Sync>,
    pub next_job: AtomicU64,
    pub closing: AtomicBool,
    pub slots: Vec<SlotState>,
    /// group -> (slot, live jobs of the group)
    pub groups: Mutex<HashMap<u64, (usize, usize)>>,
    /// Set once `config.prepare` has run (the slots wait for it).
    pub prepared: tokio::sync::OnceCell<()>,
}

/// A slot's state visible outside its task.
#[derive(Default)]
pub(crate) struct SlotState {
    pub conn: Mutex<Option<Arc<Conn>>>,
    pub restarts: AtomicU64,
    /// CPU time of the slot's dead processes.
    pub cpu_dead: Mutex<CpuTime>,
}

impl Shared {
    pub(crate) fn emit(&self, ev: SupervisorEvent) {
        (self.on_event)(ev)
    }

    /// A job of `group` ended: the group's worker placement is forgotten with its last job.
    pub(crate) fn job_ended(&self, group: u64) {
        let mut g = lock(&self.groups);
        if let Some((_, n)) = g.get_mut(&group) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                g.remove(&group);
            }
        }
    }

    /// Asks every live worker for a pong now.
    pub(crate) fn refresh_gauges(&self) {
        for s in &self.slots {
            let conn = lock(&s.conn).clone();
            if let Some(c) = conn.filter(|c| !c.dead.load(Ordering::Acquire)) {
                let _ = c.cmd.send(Cmd::Ping);
            }
        }
    }

    /// Figures of every worker slot.
    pub(crate) fn stats(&self) -> Vec<WorkerStats> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let conn = lock(&s.conn).clone();
                let mut cpu = *lock(&s.cpu_dead);
                let mut rss = 0;
                let (mut pid, mut jobs, mut dropped, mut sent) = (None, 0, 0, [0, 0]);
                let (mut gauges, mut init_error) = (None, None);
                if let Some(c) = conn.filter(|c| !c.dead.load(Ordering::Acquire)) {
                    pid = Some(c.pid);
                    init_error.clone_from(&c.init_error);
                    gauges = *lock(&c.gauges);
                    jobs = c.sinks.read().map_or(0, |s| s.len());
                    dropped = c.dropped.load(Ordering::Relaxed);
                    sent = [0, 1].map(|i| c.sent[i].load(Ordering::Relaxed));
                    if let Some((live, r)) = spawn::proc_usage(c.pid as i32) {
                        cpu.user += live.user;
                        cpu.system += live.system;
                        rss = r;
                    }
                }
                WorkerStats {
                    worker: i,
                    pid,
                    restarts: s.restarts.load(Ordering::Relaxed),
                    jobs,
                    cpu,
                    rss_bytes: rss,
                    media_dropped: dropped,
                    media_datagrams: sent[0],
                    media_records: sent[1],
                    gauges,
                    init_error,
                }
            })
            .collect()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A worker's figures, for logs, getStats and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStats {
    /// The worker slot.
    pub worker: usize,
    /// Its live process, if any.
    pub pid: Option<u32>,
    /// How many times it was started again after a death or a failed start.
    pub restarts: u64,
    /// Jobs it hosts now.
    pub jobs: usize,
    /// CPU time of all its processes, the dead ones included.
    pub cpu: CpuTime,
    /// Resident memory of its live process.
    pub rss_bytes: u64,
    /// Media records dropped because its socket was full.
    pub media_dropped: u64,
    /// Media datagrams sent to its live process.
    pub media_datagrams: u64,
    /// Media records (packets, keyframe requests, ends of stream) those datagrams carried.
    pub media_records: u64,
    /// What its live process counted of its own objects (live GStreamer pipelines and
    /// elements) in its last pong, and when that pong arrived: a worker answers a ping every
    /// `ping_interval` (2 s by default), so a figure is at most that old. `None` until the
    /// live process has answered one.
    pub gauges: Option<(std::time::Instant, WorkerGauges)>,
    /// Why its live process's own initialisation (GStreamer's) failed: it cannot host media.
    pub init_error: Option<String>,
}

/// Media datagrams sent to every worker of this process since it started, and the records
/// they carried.
static SENT: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// How many media datagrams this process sent to its workers (all its supervisors, all
/// their processes, since it started), and how many records (packets, keyframe requests,
/// ends of stream) they carried: what a bench of the media path counts.
pub fn media_sent() -> (u64, u64) {
    (
        SENT[0].load(Ordering::Relaxed),
        SENT[1].load(Ordering::Relaxed),
    )
}

/// The supervisors running in this process, for [`all_stats`].
static SUPERVISORS: Mutex<Vec<std::sync::Weak<Shared>>> = Mutex::new(Vec::new());

/// Figures of every worker slot of every supervisor of this process that is not shut down
/// (a server has one): what a test or bench running a server in its own process reads, as
/// [`Supervisor::stats`] would tell the server.
pub fn all_stats() -> Vec<WorkerStats> {
    let live: Vec<Arc<Shared>> = lock(&SUPERVISORS)
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .filter(|s| !s.closing.load(Ordering::Acquire))
        .collect();
    live.iter().flat_map(|s| s.stats()).collect()
}

/// [`Supervisor::refresh_gauges`] for every supervisor of this process.
pub fn refresh_all_gauges() {
    let live: Vec<Arc<Shared>> = lock(&SUPERVISORS)
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    for s in live {
        s.refresh_gauges();
    }
}

/// The handle to the worker processes (cheap to clone).
#[derive(Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
    starts: Arc<Vec<mpsc::UnboundedSender<StartReq>>>,
    close: Arc<tokio::sync::watch::Sender<Option<Duration>>>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Supervisor {
    /// Starts `config.workers` worker processes on the runtime `rt`; `on_event` hears of
    /// starts and deaths (from the supervisor's tasks).
    pub fn start(
        config: SupervisorConfig,
        rt: &tokio::runtime::Handle,
        on_event: impl Fn(SupervisorEvent) + Send + Sync + 'static,
    ) -> Supervisor {
        let n = config.workers.max(1);
        let shared = Arc::new(Shared {
            config,
            on_event: Box::new(on_event),
            next_job: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            slots: (0..n).map(|_| SlotState::default()).collect(),
            groups: Mutex::new(HashMap::new()),
            prepared: tokio::sync::OnceCell::new(),
        });
        {
            let mut all = lock(&SUPERVISORS);
            all.retain(|w| w.strong_count() > 0);
            all.push(Arc::downgrade(&shared));
        }
        let (close, closing) = tokio::sync::watch::channel(None);
        let mut starts = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..n {
            let (tx, rx) = mpsc::unbounded_channel();
            starts.push(tx);
            tasks.push(rt.spawn(slot::run(shared.clone(), i, rx, closing.clone())));
        }
        Supervisor {
            shared,
            starts: Arc::new(starts),
            close: Arc::new(close),
            tasks: Arc::new(Mutex::new(tasks)),
        }
    }

    /// Starts a job of `kind` with `params` on the worker that hosts `group` (a pipeline), or
    /// on the least loaded one; `done` gets the job once the worker accepted it, or why not.
    pub fn start_job(
        &self,
        group: u64,
        kind: &str,
        params: Vec<u8>,
        sink: Arc<dyn JobSink>,
        done: impl FnOnce(Result<Job, JobError>) + Send + 'static,
    ) {
        if self.shared.closing.load(Ordering::Acquire) {
            return done(Err(JobError::Stopped));
        }
        let slot = {
            let mut g = lock(&self.shared.groups);
            let slot = match g.get(&group) {
                Some((slot, _)) => *slot,
                None => {
                    let mut load = vec![0usize; self.starts.len()];
                    for (s, _) in g.values() {
                        load[*s] += 1;
                    }
                    (0..load.len()).min_by_key(|i| load[*i]).unwrap_or(0)
                }
            };
            g.entry(group).or_insert((slot, 0)).1 += 1;
            slot
        };
        let job = self.shared.next_job.fetch_add(1, Ordering::Relaxed);
        let req = StartReq {
            job,
            group,
            kind: kind.to_owned(),
            params,
            sink,
            done: Box::new(done),
        };
        if let Err(mpsc::error::SendError(req)) = self.starts[slot].send(req) {
            self.shared.job_ended(group);
            (req.done)(Err(JobError::Stopped));
        }
    }

    /// [`Supervisor::start_job`] as a future.
    pub async fn start_job_async(
        &self,
        group: u64,
        kind: &str,
        params: Vec<u8>,
        sink: Arc<dyn JobSink>,
    ) -> Result<Job, JobError> {
        let (tx, rx) = oneshot::channel();
        self.start_job(group, kind, params, sink, move |r| {
            let _ = tx.send(r);
        });
        rx.await.unwrap_or(Err(JobError::Stopped))
    }

    /// Figures of every worker slot.
    pub fn stats(&self) -> Vec<WorkerStats> {
        self.shared.stats()
    }

    /// Asks every live worker to answer a ping now, out of turn: its pong's gauges reach
    /// [`WorkerStats::gauges`] a round trip later instead of at the next `ping_interval`.
    pub fn refresh_gauges(&self) {
        self.shared.refresh_gauges()
    }

    /// Stops every worker: each is asked to stop its jobs and exit (recorders finalise their
    /// files), and killed if it has not exited after `grace`. Pending requests fail with
    /// [`JobError::Stopped`].
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.closing.store(true, Ordering::Release);
        self.close.send_replace(Some(grace));
        let tasks: Vec<_> = lock(&self.tasks).drain(..).collect();
        for t in tasks {
            let _ = tokio::time::timeout(grace + Duration::from_secs(1), t).await;
        }
    }
}

/// A job running in a worker. Dropping it stops the job.
pub struct Job {
    pub(crate) id: JobId,
    pub(crate) group: u64,
    pub(crate) conn: Arc<Conn>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) stopped: AtomicBool,
}

thread_local! {
    static PUSH_BATCH: std::cell::RefCell<Batch> = std::cell::RefCell::new(Batch::new());
}

impl Job {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// The worker slot hosting it.
    pub fn worker(&self) -> usize {
        self.conn.worker
    }

    /// The process hosting it.
    pub fn pid(&self) -> u32 {
        self.conn.pid
    }

    /// Whether its worker is still alive.
    pub fn is_alive(&self) -> bool {
        !self.conn.dead.load(Ordering::Acquire)
    }

    fn send(&self, batch: &Batch) -> Result<(), PushError> {
        if !self.is_alive() {
            return Err(PushError::Gone);
        }
        match self.conn.media.send(batch.bytes(), false) {
            Ok(()) => {
                for (i, n) in [1, batch.len() as u64].into_iter().enumerate() {
                    self.conn.sent[i].fetch_add(n, Ordering::Relaxed);
                    SENT[i].fetch_add(n, Ordering::Relaxed);
                }
                if self.conn.full_since.load(Ordering::Relaxed) != 0 {
                    self.conn.full_since.store(0, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.conn
                    .dropped
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                let now = self.conn.born.elapsed().as_millis() as u64 + 1;
                let _ = self.conn.full_since.compare_exchange(
                    0,
                    now,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                Err(PushError::Full)
            }
            Err(_) => Err(PushError::Gone),
        }
    }

    fn push_one(
        &self,
        f: impl FnOnce(&mut Batch) -> Result<(), BatchError>,
    ) -> Result<(), PushError> {
        PUSH_BATCH.with(|b| {
            let mut b = b.borrow_mut();
            b.clear();
            f(&mut b).map_err(|_| PushError::Unsupported)?;
            self.send(&b)
        })
    }

    /// Hands a packet to the job (never blocks: a full socket drops it).
    pub fn push(&self, pkt: &PacketRef<'_>) -> Result<(), PushError> {
        self.push_one(|b| b.push_packet(self.id, pkt))
    }

    /// Hands a batch built with this job's id (or other jobs' of the same worker) in one
    /// datagram.
    pub fn push_batch(&self, batch: &Batch) -> Result<(), PushError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.send(batch)
    }

    /// Tells the job its sinks want a keyframe.
    pub fn request_keyframe(&self) -> Result<(), PushError> {
        self.push_one(|b| b.push_keyframe(self.id))
    }

    /// Tells the job the stream feeding it ended.
    pub fn end_of_stream(&self) -> Result<(), PushError> {
        self.push_one(|b| b.push_end_of_stream(self.id))
    }

    /// Calls a method of the job; `done` gets the reply, or [`JobError::WorkerDied`] at once
    /// if the worker dies first (never a time-out).
    pub fn call(
        &self,
        method: &str,
        args: Vec<u8>,
        done: impl FnOnce(Result<Vec<u8>, JobError>) + Send + 'static,
    ) {
        if self.stopped.load(Ordering::Acquire) {
            return done(Err(JobError::Stopped));
        }
        let cmd = Cmd::Call {
            job: self.id,
            method: method.to_owned(),
            args,
            done: Box::new(done),
        };
        if let Err(mpsc::error::SendError(Cmd::Call { done, .. })) = self.conn.cmd.send(cmd) {
            // The slot task has already buried this process.
            done(Err(slot::late_death(&self.shared, &self.conn, self.id)));
        }
    }

    /// [`Job::call`] as a future.
    pub async fn call_async(&self, method: &str, args: Vec<u8>) -> Result<Vec<u8>, JobError> {
        let (tx, rx) = oneshot::channel();
        self.call(method, args, move |r| {
            let _ = tx.send(r);
        });
        rx.await.unwrap_or(Err(JobError::Stopped))
    }

    /// Stops the job (a recorder finalises its file); its sink hears nothing more.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let removed = self
            .conn
            .sinks
            .write()
            .map(|mut s| s.remove(&self.id).is_some())
            .unwrap_or(false);
        if removed {
            self.shared.job_ended(self.group);
        }
        let _ = self.conn.cmd.send(Cmd::Stop { job: self.id });
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("worker", &self.conn.worker)
            .field("pid", &self.conn.pid)
            .finish()
    }
}
