//! Starting a worker process: its two sockets on descriptors 3 and 4 and nothing else of the
//! server's, a clean environment, its own process group, its resource limits; and the
//! process-level calls the supervisor needs (a pidfd to notice its death at once, a kill that
//! cannot hit a reused pid, the reaping with its CPU time).

use crate::media::MediaSocket;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The descriptor a worker finds its control socket on.
pub const CONTROL_FD: RawFd = 3;
/// The descriptor a worker finds its media socket on.
pub const MEDIA_FD: RawFd = 4;

/// The environment variables a worker inherits from the server (everything else, tokens and
/// keys included, stays behind).
pub const ENV_PASSED: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "XDG_CACHE_HOME",
    "GST_PLUGIN_PATH",
    "GST_PLUGIN_PATH_1_0",
    "GST_PLUGIN_SYSTEM_PATH",
    "GST_PLUGIN_SYSTEM_PATH_1_0",
    "GST_PLUGIN_SCANNER",
    "GST_REGISTRY",
    "GST_REGISTRY_1_0",
    "GST_DEBUG",
    "GST_DEBUG_NO_COLOR",
    "OPENCV_LOG_LEVEL",
    "GST_DEBUG_DUMP_DOT_DIR",
    "RUST_LOG",
    "RUST_BACKTRACE",
    // Plain log lines (no ANSI colours) where the server's are plain, e.g. in the journal.
    "NO_COLOR",
];

/// How to start a worker: the program and its arguments (the `fluo` binary with its hidden
/// worker subcommand, or a test worker).
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Variables set on top of the [`ENV_PASSED`] ones.
    pub env: Vec<(OsString, OsString)>,
}

impl WorkerCommand {
    /// `program` with no arguments.
    pub fn new(program: impl Into<PathBuf>) -> WorkerCommand {
        WorkerCommand {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The running executable with `subcommand` (e.g. `fluo worker`).
    pub fn current_exe(subcommand: &str) -> io::Result<WorkerCommand> {
        let mut c = WorkerCommand::new(std::env::current_exe()?);
        c.args.push(subcommand.into());
        Ok(c)
    }

    /// Adds an argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> WorkerCommand {
        self.args.push(a.as_ref().to_owned());
        self
    }

    /// Sets an environment variable for the worker.
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> WorkerCommand {
        self.env
            .push((k.as_ref().to_owned(), v.as_ref().to_owned()));
        self
    }
}

/// Resource limits of one worker process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The worker's data segment (RLIMIT_DATA: heap, anonymous private mappings, thread
    /// stacks), in bytes; an allocation past it fails and the worker aborts. `None`: the
    /// server's own limit.
    pub memory_bytes: Option<u64>,
    /// Whether a crashing worker may write a core file (RLIMIT_CORE); off by default.
    pub core_dumps: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory_bytes: Some(DEFAULT_MEMORY_LIMIT),
            core_dumps: false,
        }
    }
}

/// The default memory limit of a worker: 2 GiB of data segment, room for several HD decoders
/// and their threads' stacks.
pub const DEFAULT_MEMORY_LIMIT: u64 = 2 << 30;

/// A worker process just started.
pub(crate) struct Spawned {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub control: UnixStream,
    pub media: MediaSocket,
}

/// Moves `fd` to the descriptor `to` without close-on-exec (in the child, between fork and
/// exec: only async-signal-safe calls).
fn place(fd: RawFd, to: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on descriptors the child owns; no allocation.
    if unsafe { libc::dup2(fd, to) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Marks every descriptor above the media socket close-on-exec (in the child, between fork
/// and exec: one system call, async-signal-safe), so that the worker starts with stdio and
/// its two sockets only, whatever the server holds without the flag (a descriptor another
/// library opened without O_CLOEXEC, or one inherited by the server itself). close_range(2)
/// with CLOSE_RANGE_CLOEXEC needs Linux 5.11; on an older kernel it fails, and the worker
/// closes what it inherited at its start (`sandbox::close_inherited_fds`, reported).
fn cloexec_above_sockets() {
    // SAFETY: close_range only sets the close-on-exec flag of this (child) process's
    // descriptors above MEDIA_FD; it touches no memory.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (MEDIA_FD + 1) as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
}

fn set_rlimit(resource: libc::__rlimit_resource_t, v: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: v,
        rlim_max: v,
    };
    // SAFETY: setrlimit reads the struct passed by reference; async-signal-safe.
    if unsafe { libc::setrlimit(resource, &lim) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts a worker.
pub(crate) fn spawn(cmd: &WorkerCommand, limits: &Limits) -> io::Result<Spawned> {
    let (control, child_control) = UnixStream::pair()?;
    let (media, child_media) = MediaSocket::pair()?;
    // Copies above the target numbers, so that placing one cannot overwrite the other; they
    // are close-on-exec and vanish at exec, leaving 3 and 4.
    let c_fd = dup_above(child_control.as_raw_fd(), 10)?;
    let m_fd = dup_above(child_media.as_raw_fd(), 10)?;
    let mut command = Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        // Its own process group: a Ctrl-C at the terminal reaches the server, which stops its
        // workers in order (recorders finalise), not the workers directly.
        .process_group(0);
    for k in ENV_PASSED {
        if let Some(v) = std::env::var_os(k) {
            command.env(k, v);
        }
    }
    for (k, v) in &cmd.env {
        command.env(k, v);
    }
    let limits = *limits;
    let c_raw = c_fd.as_raw_fd();
    let m_raw = m_fd.as_raw_fd();
    // SAFETY: the closure runs in the child between fork and exec and makes only
    // async-signal-safe system calls (dup2, close_range, setrlimit), touching no lock or
    // allocator.
    unsafe {
        command.pre_exec(move || {
            place(c_raw, CONTROL_FD)?;
            place(m_raw, MEDIA_FD)?;
            cloexec_above_sockets();
            if let Some(bytes) = limits.memory_bytes {
                set_rlimit(libc::RLIMIT_DATA, bytes)?;
            }
            if !limits.core_dumps {
                set_rlimit(libc::RLIMIT_CORE, 0)?;
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    drop((c_fd, m_fd, child_control, child_media));
    let pid = child.id() as i32;
    // The child is ours until we reap it (nobody else waits for it), so the pid names it.
    let pidfd = pidfd_open(pid)?;
    // `child` holds no descriptor (stdio are null or inherited); the pid is reaped by `reap`.
    drop(child);
    Ok(Spawned {
        pid,
        pidfd,
        control,
        media,
    })
}

fn dup_above(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl duplicates a valid descriptor; the result is owned here.
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `n` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// A pidfd for `pid`: readable once the process has exited.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain system call; the result is a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` to the process behind `pidfd` (never to a process that reused its pid).
pub(crate) fn pidfd_kill(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: plain system call on a descriptor we own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        // Already exited (a zombie still accepts signals, but be tolerant).
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal ended it.
    Signaled {
        /// The signal.
        signal: i32,
        /// Whether a core file was written.
        core_dumped: bool,
    },
}

/// CPU time used by a worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// In user mode.
    pub user: Duration,
    /// In the kernel on its behalf.
    pub system: Duration,
}

impl CpuTime {
    /// User plus system.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }
}

fn tv(t: libc::timeval) -> Duration {
    Duration::new(
        t.tv_sec.max(0) as u64,
        (t.tv_usec.clamp(0, 999_999) as u32) * 1000,
    )
}

/// Reaps `pid` if it has exited (never blocks): its status and the CPU time it used.
pub(crate) fn try_reap(pid: i32) -> io::Result<Option<(ExitStatus, CpuTime)>> {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 writes both out-parameters.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: see above; `pid` is our child.
    let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if r == 0 {
        return Ok(None);
    }
    let st = if libc::WIFSIGNALED(status) {
        ExitStatus::Signaled {
            signal: libc::WTERMSIG(status),
            core_dumped: libc::WCOREDUMP(status),
        }
    } else {
        ExitStatus::Exited(libc::WEXITSTATUS(status))
    };
    Ok(Some((
        st,
        CpuTime {
            user: tv(ru.ru_utime),
            system: tv(ru.ru_stime),
        },
    )))
}

/// The CPU time and resident memory of a live process, from /proc.
pub fn proc_usage(pid: i32) -> Option<(CpuTime, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split(' ').collect();
    // 0 = state (field 3); utime = field 14, stime = 15, rss (pages) = 24.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let rss_pages: u64 = f.get(21)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let ticks = |t: u64| Duration::from_nanos(t.saturating_mul(1_000_000_000 / hz));
    Some((
        CpuTime {
            user: ticks(utime),
            system: ticks(stime),
        },
        rss_pages * page,
    ))
}

/// A signal's usual name.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS",
        libc::SIGXCPU => "SIGXCPU",
        _ => "signal",
    }
}
