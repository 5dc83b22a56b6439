//! One worker slot's task: start the process, serve its control socket, notice its death at
//! once (its pidfd becomes readable; its sockets close), report it, start the next one.

use crate::media::{self, Record, MAX_DATAGRAM};
use crate::proto::{self, FromWorker, JobId, SandboxReport, ToWorker};
use crate::spawn::{self, CpuTime, ExitStatus};
use crate::supervisor::{
    lock, Cmd, Conn, Death, DeathCause, Done, Job, JobError, JobSink, Shared, SinkEntry, StartReq,
    SupervisorEvent,
};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};

/// Frames read ahead of the slot task (a worker flooding its control socket waits).
const FRAME_QUEUE: usize = 256;

/// A process between its start and its death.
struct Live {
    conn: Arc<Conn>,
    pid: i32,
    pidfd: AsyncFd<OwnedFd>,
    frames: mpsc::Receiver<Result<FromWorker, String>>,
    writer: OwnedWriteHalf,
    cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

enum Pending {
    Start(StartReq),
    Call(Done<Vec<u8>>),
}

/// What is left of a process once it is dead, for the slot to report.
struct Ended {
    conn: Arc<Conn>,
    cause: DeathCause,
    cpu: CpuTime,
    pending: HashMap<u64, Pending>,
    cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    hosted_jobs: bool,
}

/// The death recorded on a process's connection, for requests that raced with it.
pub(crate) fn late_death(_shared: &Shared, conn: &Conn, _job: JobId) -> JobError {
    match lock(&conn.death).clone() {
        Some(d) => JobError::WorkerDied(Box::new(d)),
        None => JobError::Stopped,
    }
}

/// The grace a shutdown gives, if one is under way (every supervisor handle dropped counts as
/// a shutdown with 5 s of grace).
fn closing_grace(rx: &watch::Receiver<Option<Duration>>) -> Option<Duration> {
    if rx.has_changed().is_err() {
        return Some(Duration::from_secs(5));
    }
    *rx.borrow()
}

/// The slot task.
pub(crate) async fn run(
    shared: Arc<Shared>,
    idx: usize,
    mut starts: mpsc::UnboundedReceiver<StartReq>,
    mut closing: watch::Receiver<Option<Duration>>,
) {
    let mut failures: u32 = 0;
    let mut first = true;
    tokio::select! {
        _ = prepare(&shared) => {}
        _ = closing.changed() => {}
    }
    loop {
        if closing_grace(&closing).is_some() {
            break;
        }
        if !first {
            shared.slots[idx].restarts.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let live = match launch(&shared, idx).await {
            Ok(live) => live,
            Err(error) => {
                failures += 1;
                let delay = shared.config.restart.delay(failures);
                tracing::warn!(worker = idx, "media worker failed to start: {error}");
                shared.emit(SupervisorEvent::StartFailed {
                    worker: idx,
                    error: error.clone(),
                    retry_in: delay,
                });
                // Nobody waits through a backoff for a worker that cannot start: creates fail
                // now with the reason.
                let deadline = tokio::time::Instant::now() + delay;
                loop {
                    while let Ok(req) = starts.try_recv() {
                        fail_start(&shared, req, JobError::Unavailable(error.clone()));
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        r = starts.recv() => match r {
                            Some(req) => fail_start(&shared, req, JobError::Unavailable(error.clone())),
                            None => break,
                        },
                        _ = closing.changed() => break,
                    }
                }
                continue;
            }
        };
        let pid = live.pid as u32;
        *lock(&shared.slots[idx].conn) = Some(live.conn.clone());
        let ended = serve(&shared, live, &mut starts, &mut closing).await;
        *lock(&shared.slots[idx].conn) = None;
        failures = if ended.hosted_jobs || ended.cause == DeathCause::Stopped {
            0
        } else {
            failures + 1
        };
        let restart_in = shared.config.restart.delay(failures);
        bury_jobs(&shared, idx, pid, ended, restart_in);
        if closing_grace(&closing).is_some() {
            break;
        }
        if !restart_in.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(restart_in) => {}
                _ = closing.changed() => {}
            }
        }
    }
    starts.close();
    while let Ok(req) = starts.try_recv() {
        fail_start(&shared, req, JobError::Stopped);
    }
}

/// The supervisor's `prepare` step, run once for all slots before their first worker starts
/// (the other slots wait for it; requests meanwhile wait in the slots' queues).
async fn prepare(shared: &Shared) {
    let Some(step) = shared.config.prepare else {
        return;
    };
    let run = || async move {
        match tokio::task::spawn_blocking(step).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("preparing the media workers failed: {e}"),
            Err(e) => tracing::warn!("preparing the media workers failed: {e}"),
        }
    };
    shared.prepared.get_or_init(run).await;
}

fn fail_start(shared: &Shared, req: StartReq, e: JobError) {
    shared.job_ended(req.group);
    (req.done)(Err(e));
}

/// Reports a death to everyone concerned: the process's pending requests, its jobs' sinks,
/// requests that raced with the death, the supervisor's listener.
fn bury_jobs(shared: &Shared, idx: usize, pid: u32, mut ended: Ended, restart_in: Duration) {
    let sinks: Vec<(JobId, SinkEntry)> = match ended.conn.sinks.write() {
        Ok(mut s) => s.drain().collect(),
        Err(p) => p.into_inner().drain().collect(),
    };
    let mut jobs: Vec<JobId> = sinks.iter().map(|(j, _)| *j).collect();
    jobs.sort_unstable();
    let death = Death {
        worker: idx,
        pid,
        cause: ended.cause.clone(),
        cpu: ended.cpu,
        jobs,
        restart_in,
    };
    {
        let mut d = lock(&shared.slots[idx].cpu_dead);
        d.user += ended.cpu.user;
        d.system += ended.cpu.system;
    }
    *lock(&ended.conn.death) = Some(death.clone());
    if ended.cause == DeathCause::Stopped {
        tracing::info!(worker = idx, pid, "media worker stopped");
    } else {
        tracing::error!(
            worker = idx,
            pid,
            jobs = death.jobs.len(),
            cpu_ms = ended.cpu.total().as_millis() as u64,
            restart_in_ms = restart_in.as_millis() as u64,
            "media worker died: {}",
            ended.cause
        );
    }
    let err = || {
        if ended.cause == DeathCause::Stopped {
            JobError::Stopped
        } else {
            JobError::WorkerDied(Box::new(death.clone()))
        }
    };
    for (_, p) in ended.pending.drain() {
        match p {
            Pending::Start(req) => fail_start(shared, req, err()),
            Pending::Call(done) => done(Err(err())),
        }
    }
    ended.cmd_rx.close();
    while let Ok(cmd) = ended.cmd_rx.try_recv() {
        if let Cmd::Call { done, .. } = cmd {
            done(Err(err()));
        }
    }
    for (_, (group, sink)) in sinks {
        shared.job_ended(group);
        sink.worker_died(&death);
    }
    shared.emit(SupervisorEvent::Died(death));
}

struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Starts a process and waits for its `Ready`.
async fn launch(shared: &Arc<Shared>, idx: usize) -> Result<Live, String> {
    let cfg = &shared.config;
    let sp = spawn::spawn(&cfg.command, &cfg.limits).map_err(|e| {
        format!(
            "cannot start the worker program {}: {e}",
            cfg.command.program.display()
        )
    })?;
    let pid = sp.pid;
    // SAFETY: the AsyncFd owns the pidfd, which stays open and the same until it is dropped.
    let registered =
        unsafe { AsyncFd::register_with_interest(sp.pidfd, tokio::io::Interest::READABLE) };
    let pidfd = match registered {
        Ok(p) => p,
        Err(e) => {
            // Without a way to watch it, the process must not run: kill and reap it.
            let (fd, e) = e.into_parts();
            let _ = spawn::pidfd_kill(&fd, libc::SIGKILL);
            // SAFETY: waitpid on our own child, blocking until it is gone (it was just killed).
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            return Err(format!("cannot watch the worker process: {e}"));
        }
    };
    let result = handshake(shared, idx, sp.control, sp.media, pid, &pidfd).await;
    match result {
        Ok((conn, frames, writer, cmd_rx, tasks)) => Ok(Live {
            conn,
            pid,
            pidfd,
            frames,
            writer,
            cmd_rx,
            tasks,
        }),
        Err(why) => {
            let (status, _) = bury(&pidfd, pid).await;
            let how = match status {
                ExitStatus::Exited(c) => format!("it exited with status {c}"),
                ExitStatus::Signaled { signal, .. } => {
                    format!("it ended by {}", spawn::signal_name(signal))
                }
            };
            Err(format!("{why} ({how})"))
        }
    }
}

type Handshake = (
    Arc<Conn>,
    mpsc::Receiver<Result<FromWorker, String>>,
    OwnedWriteHalf,
    mpsc::UnboundedReceiver<Cmd>,
    [tokio::task::JoinHandle<()>; 2],
);

async fn handshake(
    shared: &Arc<Shared>,
    idx: usize,
    control: std::os::unix::net::UnixStream,
    media: crate::media::MediaSocket,
    pid: i32,
    pidfd: &AsyncFd<OwnedFd>,
) -> Result<Handshake, String> {
    let cfg = &shared.config;
    let io_err = |e: std::io::Error| format!("worker socket: {e}");
    control.set_nonblocking(true).map_err(io_err)?;
    media.set_nonblocking().map_err(io_err)?;
    let stream = tokio::net::UnixStream::from_std(control).map_err(io_err)?;
    let (rd, mut writer) = stream.into_split();
    let (ftx, mut frames) = mpsc::channel(FRAME_QUEUE);
    let reader = tokio::spawn(read_frames(rd, ftx));
    let init = ToWorker::Init {
        sandbox: cfg.sandbox.clone(),
    };
    // A write error means the process is already gone: the wait below says so.
    if let Err(WriteFail::Timeout) = write_frame(&mut writer, &init, cfg.start_timeout).await {
        reader.abort();
        return Err("the worker did not take its start message".into());
    }
    let (sandbox, init_error) = match wait_ready(&mut frames, pidfd, cfg.start_timeout).await {
        Ok(ready) => ready,
        Err(e) => {
            reader.abort();
            return Err(e);
        }
    };
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let conn = Arc::new(Conn {
        worker: idx,
        pid: pid as u32,
        media,
        sinks: RwLock::new(HashMap::new()),
        cmd: cmd_tx,
        dead: AtomicBool::new(false),
        dropped: AtomicU64::new(0),
        sent: Default::default(),
        full_since: AtomicU64::new(0),
        born: Instant::now(),
        death: Mutex::new(None),
        gauges: Mutex::new(None),
        init_error: (!init_error.is_empty()).then_some(init_error),
    });
    let media_task = match &cfg.media_runtime {
        Some(rt) => rt.spawn(media_reader(conn.clone())),
        None => tokio::spawn(media_reader(conn.clone())),
    };
    tracing::info!(
        worker = idx,
        pid,
        landlock_abi = sandbox.landlock_abi,
        landlock_full = sandbox.landlock_full,
        seccomp = sandbox.seccomp,
        privileges_dropped = sandbox.privileges_dropped,
        "media worker ready"
    );
    if let Some(e) = &conn.init_error {
        tracing::error!(
            worker = idx,
            "the media worker's initialisation failed: {e}"
        );
    }
    if sandbox.inherited_fds_closed > 0 {
        tracing::warn!(
            worker = idx,
            "the worker inherited {} descriptors from the server (closed)",
            sandbox.inherited_fds_closed
        );
    }
    shared.emit(SupervisorEvent::Started {
        worker: idx,
        pid: pid as u32,
        sandbox,
    });
    Ok((conn, frames, writer, cmd_rx, [reader, media_task]))
}

/// Waits for a new worker's `Ready` and what its sandbox came to.
async fn wait_ready(
    frames: &mut mpsc::Receiver<Result<FromWorker, String>>,
    pidfd: &AsyncFd<OwnedFd>,
    limit: Duration,
) -> Result<(SandboxReport, String), String> {
    let first = tokio::time::timeout(limit, async {
        tokio::select! {
            f = frames.recv() => f,
            _ = pidfd.readable() => None,
        }
    })
    .await;
    match first {
        Ok(Some(Ok(FromWorker::Ready {
            sandbox,
            init_error,
            ..
        }))) => Ok((sandbox, init_error)),
        Ok(Some(Ok(other))) => Err(format!("the worker said {other:?} before it was ready")),
        Ok(Some(Err(e))) => Err(format!("the worker sent a bad message: {e}")),
        Ok(None) => Err("the worker ended before it was ready".into()),
        Err(_) => Err(format!(
            "the worker was not ready within {} ms",
            limit.as_millis()
        )),
    }
}

/// Kills the process (harmless if it already exited), waits for its exit and reaps it.
async fn bury(pidfd: &AsyncFd<OwnedFd>, pid: i32) -> (ExitStatus, CpuTime) {
    let _ = spawn::pidfd_kill(pidfd.get_ref(), libc::SIGKILL);
    loop {
        match spawn::try_reap(pid) {
            Ok(Some(r)) => return r,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(pid, "cannot reap the worker: {e}");
                return (
                    ExitStatus::Signaled {
                        signal: libc::SIGKILL,
                        core_dumped: false,
                    },
                    CpuTime::default(),
                );
            }
        }
        // Readable once it has exited; then the reap above succeeds (a short pause covers the
        // instant between the two).
        let _ = tokio::time::timeout(Duration::from_secs(1), pidfd.readable()).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

enum WriteFail {
    Timeout,
    Io,
}

async fn write_frame(
    w: &mut OwnedWriteHalf,
    msg: &ToWorker,
    limit: Duration,
) -> Result<(), WriteFail> {
    let frame = proto::frame(msg);
    match tokio::time::timeout(limit, w.write_all(&frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriteFail::Io),
        Err(_) => Err(WriteFail::Timeout),
    }
}

async fn read_frames(mut rd: OwnedReadHalf, tx: mpsc::Sender<Result<FromWorker, String>>) {
    loop {
        let mut header = [0u8; 4];
        if rd.read_exact(&mut header).await.is_err() {
            return;
        }
        let n = match proto::frame_len(header) {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Err(e.to_string())).await;
                return;
            }
        };
        let mut body = vec![0u8; n];
        if rd.read_exact(&mut body).await.is_err() {
            return;
        }
        let msg = proto::parse::<FromWorker>(&body).map_err(|e| e.to_string());
        let bad = msg.is_err();
        if tx.send(msg).await.is_err() || bad {
            return;
        }
    }
}

async fn media_reader(conn: Arc<Conn>) {
    // SAFETY: the descriptor belongs to `conn`, which this task holds until after `afd` (declared
    // later, dropped first) is gone; it is never replaced.
    let registered = unsafe {
        AsyncFd::register_with_interest(Fd(conn.media.as_raw_fd()), tokio::io::Interest::READABLE)
    };
    let Ok(afd) = registered else {
        return;
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok(mut guard) = afd.readable().await else {
            return;
        };
        let mut read = 0;
        loop {
            match conn.media.recv(&mut buf, false) {
                Ok(0) => return,
                Ok(n) => dispatch(&conn, &buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    break;
                }
                Err(_) => return,
            }
            read += 1;
            if read == READS_PER_TURN {
                // This runs on the media thread: a worker that keeps its socket full (a
                // backlog, or a worker gone wrong) gets a turn, not the thread.
                drop(guard);
                tokio::task::yield_now().await;
                break;
            }
        }
    }
}

/// How many datagrams a worker's media reader takes before it lets the media thread's other
/// work run.
const READS_PER_TURN: usize = 64;

/// Hands a worker's media records to its jobs' sinks. A worker can only reach the sinks of
/// its own jobs.
fn dispatch(conn: &Conn, datagram: &[u8]) {
    let mut records = media::records(datagram);
    for rec in records.by_ref() {
        let id = match rec {
            Record::Packet(j, _) | Record::Keyframe(j) | Record::EndOfStream(j) => j,
        };
        let sink = match conn.sinks.read() {
            Ok(s) => s.get(&id).map(|(_, s)| s.clone()),
            Err(_) => None,
        };
        let Some(sink) = sink else { continue };
        match rec {
            Record::Packet(_, p) => sink.packet(&p),
            Record::Keyframe(_) => sink.keyframe_request(),
            Record::EndOfStream(_) => sink.end_of_stream(),
        }
    }
    if records.malformed() {
        tracing::debug!(
            pid = conn.pid,
            "malformed media datagram from a worker, rest dropped"
        );
    }
}

/// The bookkeeping of a ready process: requests in flight, pings, whether it hosted a job.
struct Serving {
    pending: HashMap<u64, Pending>,
    next_req: u64,
    ping_seq: u64,
    ping_since: Option<Instant>,
    hosted_jobs: bool,
}

impl Serving {
    fn req_id(&mut self) -> u64 {
        self.next_req += 1;
        self.next_req
    }

    /// The message for a request of a job handle.
    fn command(&mut self, c: Cmd) -> ToWorker {
        match c {
            Cmd::Call {
                job,
                method,
                args,
                done,
            } => {
                let req = self.req_id();
                self.pending.insert(req, Pending::Call(done));
                ToWorker::Call {
                    req,
                    job,
                    method,
                    args,
                }
            }
            Cmd::Stop { job } => ToWorker::Stop { job },
            Cmd::Ping => ToWorker::Ping { seq: 0 },
        }
    }

    /// The message for a job start.
    fn start(&mut self, mut start: StartReq) -> ToWorker {
        let req = self.req_id();
        let msg = ToWorker::Start {
            req,
            job: start.job,
            kind: start.kind.clone(),
            params: std::mem::take(&mut start.params),
        };
        self.pending.insert(req, Pending::Start(start));
        msg
    }

    /// At each ping tick: the worker is unresponsive (a ping unanswered, or its media socket
    /// full, for `ping_timeout`), or the next ping to send, if none is out.
    fn tick(&mut self, conn: &Conn, limit: Duration) -> Result<Option<ToWorker>, DeathCause> {
        let full = conn.full_since.load(Ordering::Relaxed);
        let now = conn.born.elapsed().as_millis() as u64 + 1;
        if full != 0 && now.saturating_sub(full) >= limit.as_millis() as u64 {
            // Its media socket has stayed full: it no longer reads its media.
            return Err(DeathCause::Unresponsive);
        }
        match self.ping_since {
            Some(since) if since.elapsed() >= limit => Err(DeathCause::Unresponsive),
            Some(_) => Ok(None),
            None => {
                self.ping_seq += 1;
                self.ping_since = Some(Instant::now());
                Ok(Some(ToWorker::Ping { seq: self.ping_seq }))
            }
        }
    }
}

/// Writes a message; a write that does not complete within `limit` means the worker no longer
/// reads its control socket. (A failed write means it is dying: its pidfd says so next.)
async fn send(w: &mut OwnedWriteHalf, msg: &ToWorker, limit: Duration) -> Result<(), DeathCause> {
    match write_frame(w, msg, limit).await {
        Err(WriteFail::Timeout) => Err(DeathCause::Unresponsive),
        _ => Ok(()),
    }
}

/// Serves a ready process until it dies (or must be killed).
async fn serve(
    shared: &Arc<Shared>,
    mut live: Live,
    starts: &mut mpsc::UnboundedReceiver<StartReq>,
    closing: &mut watch::Receiver<Option<Duration>>,
) -> Ended {
    let limit = shared.config.ping_timeout;
    let mut st = Serving {
        pending: HashMap::new(),
        next_req: 0,
        ping_seq: 0,
        ping_since: None,
        hosted_jobs: false,
    };
    let mut ping = tokio::time::interval(shared.config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut stop_deadline: Option<tokio::time::Instant> = None;
    let mut starts_open = true;
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let cause: Option<DeathCause> = loop {
        if let (Some(grace), None) = (closing_grace(closing), stop_deadline) {
            // Shutdown: ask the worker to stop its jobs and exit; kill it after the grace.
            stop_deadline = Some(tokio::time::Instant::now() + grace);
            let _ = write_frame(&mut live.writer, &ToWorker::Shutdown, grace).await;
        }
        let sent = tokio::select! {
            biased;
            _ = live.pidfd.readable() => break None,
            _ = tokio::time::sleep_until(stop_deadline.unwrap_or(far)), if stop_deadline.is_some() => {
                break Some(DeathCause::Stopped);
            }
            f = live.frames.recv() => match f {
                Some(Ok(msg)) => match st.handle(shared, &live.conn, msg) {
                    Ok(()) => Ok(()),
                    Err(e) => break Some(DeathCause::ProtocolError(e)),
                },
                Some(Err(e)) => break Some(DeathCause::ProtocolError(e)),
                // The control socket closed: the process is ending (or broke it on purpose);
                // give it a moment to exit on its own.
                None => match tokio::time::timeout(Duration::from_secs(1), live.pidfd.readable()).await {
                    Ok(_) => break None,
                    Err(_) => break Some(DeathCause::ProtocolError("closed its control socket".into())),
                },
            },
            Some(c) = live.cmd_rx.recv() => {
                let msg = st.command(c);
                send(&mut live.writer, &msg, limit).await
            }
            s = starts.recv(), if stop_deadline.is_none() && starts_open => match s {
                Some(req) => {
                    let msg = st.start(req);
                    send(&mut live.writer, &msg, limit).await
                }
                None => {
                    starts_open = false;
                    Ok(())
                }
            },
            _ = ping.tick() => match st.tick(&live.conn, limit) {
                Ok(Some(msg)) => send(&mut live.writer, &msg, limit).await,
                Ok(None) => Ok(()),
                Err(cause) => Err(cause),
            },
            _ = closing.changed(), if stop_deadline.is_none() => Ok(()),
        };
        if let Err(cause) = sent {
            break Some(cause);
        }
    };
    finish(live, st, cause, stop_deadline.is_some()).await
}

/// Makes sure the process is dead, reaps it and says why it ended: `cause` when the supervisor
/// decided it, else a shutdown's stop or the exit status.
async fn finish(live: Live, st: Serving, cause: Option<DeathCause>, stopping: bool) -> Ended {
    live.conn.dead.store(true, Ordering::Release);
    let (status, cpu) = bury(&live.pidfd, live.pid).await;
    live.conn.media.shutdown();
    for t in &live.tasks {
        t.abort();
    }
    let cause = match cause {
        Some(c) => c,
        None if stopping => DeathCause::Stopped,
        None => DeathCause::from_status(status),
    };
    Ended {
        conn: live.conn,
        cause,
        cpu,
        pending: st.pending,
        cmd_rx: live.cmd_rx,
        hosted_jobs: st.hosted_jobs,
    }
}

impl Serving {
    /// One message from a ready worker.
    fn handle(
        &mut self,
        shared: &Arc<Shared>,
        conn: &Arc<Conn>,
        msg: FromWorker,
    ) -> Result<(), String> {
        let sink_of = |job: JobId| -> Option<Arc<dyn JobSink>> {
            conn.sinks
                .read()
                .ok()
                .and_then(|s| s.get(&job).map(|(_, s)| s.clone()))
        };
        match msg {
            FromWorker::Ready { .. } => return Err("said it was ready twice".into()),
            FromWorker::Pong { seq, gauges } => {
                *lock(&conn.gauges) = Some((Instant::now(), gauges));
                if seq == self.ping_seq {
                    self.ping_since = None;
                }
            }
            FromWorker::Reply { req, result } => match self.pending.remove(&req) {
                Some(Pending::Call(done)) => done(result.map_err(JobError::Failed)),
                Some(Pending::Start(start)) => match result {
                    Ok(_) => {
                        self.hosted_jobs = true;
                        if let Ok(mut s) = conn.sinks.write() {
                            s.insert(start.job, (start.group, start.sink.clone()));
                        }
                        let job = Job {
                            id: start.job,
                            group: start.group,
                            conn: conn.clone(),
                            shared: shared.clone(),
                            stopped: AtomicBool::new(false),
                        };
                        (start.done)(Ok(job));
                    }
                    Err(e) => fail_start(shared, start, JobError::Failed(e)),
                },
                None => return Err(format!("answered request {req}, which it was not asked")),
            },
            FromWorker::Event { job, name, data } => {
                if let Some(s) = sink_of(job) {
                    s.event(&name, &data);
                }
            }
            FromWorker::JobFailed { job, error } => {
                if let Some(s) = sink_of(job) {
                    s.failed(&error);
                }
            }
        }
        Ok(())
    }
}
