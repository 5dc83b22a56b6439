//! The media server's processes as an operator finds them in /proc: the server's own (this
//! process, where a test runs it) and its media workers, the children of the server's pid
//! that run `fluo worker` (what `ps --ppid PID` shows). Figures are read per process and
//! added up; a process that cannot be read is an error, never a zero. Meant for a test binary
//! that runs one server with workers: the supervisor's side of the check
//! (`fluo_worker::all_stats`) covers every supervisor of the process.

use std::collections::HashSet;
use std::time::{Duration, Instant};

/// One process's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcUsage {
    pub rss_kib: u64,
    pub fds: usize,
    pub threads: usize,
    /// UDP sockets among its descriptors (found in /proc/net/udp and udp6).
    pub udp_sockets: usize,
    /// CPU time (user + system) so far, in ticks of 1/100 s.
    pub cpu_ticks: u64,
}

impl ProcUsage {
    /// The figures of process `pid` ("self" for this one).
    pub fn read(pid: &str) -> Result<ProcUsage, String> {
        let base = format!("/proc/{pid}");
        let status = std::fs::read_to_string(format!("{base}/status"))
            .map_err(|e| format!("{base}/status: {e}"))?;
        let rss_kib = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("{base}/status has no VmRSS"))?;
        let count = |dir: &str| {
            std::fs::read_dir(format!("{base}/{dir}"))
                .map(|d| d.count())
                .map_err(|e| format!("{base}/{dir}: {e}"))
        };
        Ok(ProcUsage {
            rss_kib,
            fds: count("fd")?,
            threads: count("task")?,
            udp_sockets: udp_sockets(&base)?,
            cpu_ticks: cpu_ticks(&base)?,
        })
    }

    fn add(&mut self, o: &ProcUsage) {
        self.rss_kib += o.rss_kib;
        self.fds += o.fds;
        self.threads += o.threads;
        self.udp_sockets += o.udp_sockets;
        self.cpu_ticks += o.cpu_ticks;
    }
}

/// The UDP sockets among the descriptors of the process at `base` (/proc/PID).
fn udp_sockets(base: &str) -> Result<usize, String> {
    let mut inodes = HashSet::new();
    for table in ["net/udp", "net/udp6"] {
        let text = std::fs::read_to_string(format!("{base}/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            if let Some(inode) = line.split_whitespace().nth(9) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let dir = std::fs::read_dir(format!("{base}/fd")).map_err(|e| format!("{base}/fd: {e}"))?;
    Ok(dir
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .filter(|i| inodes.contains(i))
        .count())
}

/// The fields of /proc/PID/stat after the command name (which may hold spaces): the state
/// first (field 3).
fn stat_fields(base: &str) -> Result<Vec<String>, String> {
    let stat =
        std::fs::read_to_string(format!("{base}/stat")).map_err(|e| format!("{base}/stat: {e}"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("{base}/stat: no command name"))?;
    Ok(rest.split_whitespace().map(String::from).collect())
}

fn cpu_ticks(base: &str) -> Result<u64, String> {
    let f = stat_fields(base)?;
    // utime and stime are fields 14 and 15; Linux counts them in USER_HZ, 100 on every
    // architecture Fluo builds for.
    let t = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok());
    match (t(11), t(12)) {
        (Some(u), Some(s)) => Ok(u + s),
        _ => Err(format!("{base}/stat: no utime/stime")),
    }
}

/// This process's children that run a media worker (`fluo worker`), and its zombie children
/// (a worker that ended and was not reaped), by pid.
pub fn worker_children() -> (Vec<u32>, Vec<u32>) {
    worker_children_of(std::process::id())
}

/// The children of process `parent` that run a media worker, and its zombie children.
pub fn worker_children_of(parent: u32) -> (Vec<u32>, Vec<u32>) {
    let me = parent.to_string();
    let (mut workers, mut zombies) = (vec![], vec![]);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return (workers, zombies);
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(pid) = name.parse::<u32>() else {
            continue;
        };
        let base = format!("/proc/{pid}");
        let Ok(f) = stat_fields(&base) else {
            continue; // it ended meanwhile
        };
        if f.get(1) != Some(&me) {
            continue;
        }
        if f.first().map(String::as_str) == Some("Z") {
            zombies.push(pid);
            continue;
        }
        let cmdline = std::fs::read(format!("{base}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        if args.get(1) == Some(&fluo_server::WORKER_SUBCOMMAND.as_bytes()) {
            workers.push(pid);
        }
    }
    workers.sort_unstable();
    zombies.sort_unstable();
    (workers, zombies)
}

/// The media server's processes at one moment: this process and its workers.
#[derive(Debug, Clone, Default)]
pub struct ServerProcs {
    /// The server's process and the workers, added up.
    pub total: ProcUsage,
    /// The workers' share of `total`.
    pub workers: ProcUsage,
    /// The workers' pids, as /proc lists them.
    pub worker_pids: Vec<u32>,
    /// Children of the server that ended and were not reaped.
    pub zombies: Vec<u32>,
    /// GStreamer pipelines Fluo made and GLib has not finalised, in the server's process and
    /// in each worker (what its last pong counted, taken after `read` began).
    pub gst_pipelines: usize,
    /// Elements inside them, at any depth.
    pub gst_elements: usize,
    /// What is wrong with the reading: a worker /proc lists that the supervisor does not know
    /// (or the reverse), a worker that did not report its pipelines in time, a process that
    /// could not be read.
    pub problems: Vec<String>,
}

impl ServerProcs {
    /// Reads the server's and its workers' figures. Each worker's GStreamer counts come from
    /// its pongs: this asks every worker for one now and waits, at most `fresh_within`, for a
    /// pong of every worker that came after the call began, so that what it counts is not
    /// older than the call.
    pub fn read(fresh_within: Duration) -> ServerProcs {
        let t0 = Instant::now();
        fluo_worker::refresh_all_gauges();
        let mut out = ServerProcs::default();
        let stats = loop {
            let stats = fluo_worker::all_stats();
            let fresh = stats
                .iter()
                .filter(|s| s.pid.is_some())
                .all(|s| s.gauges.is_some_and(|(at, _)| at > t0));
            if fresh || t0.elapsed() >= fresh_within {
                break stats;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        out.add_server();
        let (pids, zombies) = worker_children();
        out.zombies = zombies;
        let known: Vec<u32> = stats.iter().filter_map(|s| s.pid).collect();
        for pid in &pids {
            match ProcUsage::read(&pid.to_string()) {
                Ok(u) => {
                    out.total.add(&u);
                    out.workers.add(&u);
                }
                Err(e) => out.problems.push(format!("worker {pid}: {e}")),
            }
            match stats.iter().find(|s| s.pid == Some(*pid)) {
                None => out.problems.push(format!(
                    "worker process {pid} is not one the supervisor runs"
                )),
                Some(s) => match s.gauges {
                    Some((at, g)) if at > t0 => {
                        out.gst_pipelines += g.pipelines as usize;
                        out.gst_elements += g.elements as usize;
                    }
                    _ => out.problems.push(format!(
                        "worker {pid} reported no pipeline count within {fresh_within:?}"
                    )),
                },
            }
        }
        for pid in known.iter().filter(|p| !pids.contains(p)) {
            out.problems.push(format!(
                "the supervisor's worker {pid} is not a child process of the server"
            ));
        }
        out.worker_pids = pids;
        out
    }

    fn add_server(&mut self) {
        match ProcUsage::read("self") {
            Ok(u) => self.total.add(&u),
            Err(e) => self.problems.push(format!("the server's process: {e}")),
        }
        self.gst_pipelines += fluo_gst::live_pipelines();
        self.gst_elements += fluo_gst::live_elements();
    }
}

/// The pipelines and elements alive now in the server's process plus in each worker, as it
/// reports them in a pong asked for now (waiting at most `within` for them; a worker that has
/// not answered by then counts what it reported last).
pub async fn gst_now(within: Duration) -> (usize, usize) {
    let t0 = Instant::now();
    fluo_worker::refresh_all_gauges();
    let fresh = |s: &fluo_worker::WorkerStats| s.gauges.is_some_and(|(at, _)| at > t0);
    loop {
        let stats = fluo_worker::all_stats();
        let live = || stats.iter().filter(|s| s.pid.is_some());
        if live().all(fresh) || t0.elapsed() >= within {
            let mut p = fluo_gst::live_pipelines();
            let mut e = fluo_gst::live_elements();
            for (_, g) in live().filter_map(|s| s.gauges) {
                p += g.pipelines as usize;
                e += g.elements as usize;
            }
            return (p, e);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Resident memory of the server and its workers, in KiB.
pub fn total_rss_kib() -> u64 {
    let mut kib = fluo_server::rss_kib();
    for pid in worker_children().0 {
        kib += ProcUsage::read(&pid.to_string()).map_or(0, |u| u.rss_kib);
    }
    kib
}

/// CPU ticks (1/100 s) that process `pid` has used so far (user + system).
pub fn cpu_ticks_of(pid: u32) -> Result<u64, String> {
    cpu_ticks(&format!("/proc/{pid}"))
}

/// CPU ticks (1/100 s) the server and its workers have used so far.
pub fn total_cpu_ticks() -> u64 {
    let mut t = ProcUsage::read("self").map_or(0, |u| u.cpu_ticks);
    for pid in worker_children().0 {
        t += ProcUsage::read(&pid.to_string()).map_or(0, |u| u.cpu_ticks);
    }
    t
}

/// CPU ticks (1/100 s) that a server running in process `pid` (e.g. a `fluo` started by a
/// bench) and its media workers have used so far, and how many workers were counted; an
/// error if the server's own cannot be read. A worker that ends between the listing and its
/// reading is left out (a worker's death is the crash tests' business, not a bench's).
pub fn server_cpu_ticks(pid: u32) -> Result<(u64, usize), String> {
    let mut t = ProcUsage::read(&pid.to_string())?.cpu_ticks;
    let mut n = 0;
    for w in worker_children_of(pid).0 {
        if let Ok(u) = ProcUsage::read(&w.to_string()) {
            t += u.cpu_ticks;
            n += 1;
        }
    }
    Ok((t, n))
}

/// A `fluo` server process for benches: started as `make run` starts it, on 127.0.0.1 with a
/// port of its own choosing (read from its `--port-file`) and host candidates on `lo`, plus
/// `extra` arguments; its log goes to `dir/NAME.log`. Dropped: SIGTERM, then SIGKILL after 10 s.
pub struct FluoProcess {
    pub child: std::process::Child,
    pub port: u16,
}

impl FluoProcess {
    /// The release build (`target/release/fluo`), or `FLUO_BIN`; panics, saying how to build
    /// it, when it is missing.
    pub fn release_bin() -> std::path::PathBuf {
        let bin = std::env::var_os("FLUO_BIN").map_or_else(
            || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/fluo"),
            std::path::PathBuf::from,
        );
        assert!(
            bin.exists(),
            "{} not found: cargo build --release -p fluo-server (make bench-media does it) or set FLUO_BIN",
            bin.display()
        );
        bin
    }

    /// Starts `bin` and waits (at most 30 s) until it listens; panics, naming its log, when it
    /// exits or does not listen in time.
    pub fn start(
        bin: &std::path::Path,
        extra: &[&str],
        dir: &std::path::Path,
        name: &str,
    ) -> FluoProcess {
        use std::process::{Command, Stdio};
        let port_file = dir.join(format!("{name}.port"));
        let log_path = dir.join(format!("{name}.log"));
        let _ = std::fs::remove_file(&port_file);
        let log = std::fs::File::create(&log_path).expect("a log file");
        let mut child = Command::new(bin)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--http-port",
                "0",
                "--network-interfaces",
                "lo",
            ])
            .arg("--port-file")
            .arg(&port_file)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the fluo server starts");
        let t0 = Instant::now();
        loop {
            let text = std::fs::read_to_string(&port_file).unwrap_or_default();
            if let Ok(port) = text.trim().parse() {
                return FluoProcess { child, port };
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "fluo did not listen ({exited:?}); its log: {}",
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for FluoProcess {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
