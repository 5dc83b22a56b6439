//! The servers under test as child processes, pinned to one CPU, and what /proc says of them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fluo,
    /// Another Fluo binary (`--fluo-base-bin`, e.g. main's before a change), run alternated
    /// with `fluo` in the same run.
    FluoBase,
    /// The `fluo` binary started with `--bwe on`: its viewers keep TWCC and send feedback,
    /// each has a bandwidth estimator (docs/simulcast.md). Not in the default servers.
    FluoBwe,
    /// The `--fluo-base-bin` binary with `--bwe on` (`fluo-bwe` before a change), run right
    /// after `fluo-bwe`.
    FluoBweBase,
    /// Janus 1.1.2 with `event_loops = 2`; its viewers accept transport-wide congestion
    /// control (TWCC), which the VideoRoom offers by default.
    JanusTuned,
    /// The same Janus, its viewers declining TWCC in their answers, as Fluo declines it for
    /// viewers (the publisher keeps it with both servers).
    JanusTunedNoTwcc,
    /// Janus 1.1.2 as Debian packages it (its own thread per handle), viewers with TWCC.
    JanusPackaged,
    /// Packaged Janus, viewers without TWCC.
    JanusPackagedNoTwcc,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Fluo,
        Kind::JanusTunedNoTwcc,
        Kind::JanusTuned,
        Kind::JanusPackagedNoTwcc,
        Kind::JanusPackaged,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Fluo => "fluo",
            Kind::FluoBase => "fluo-base",
            Kind::FluoBwe => "fluo-bwe",
            Kind::FluoBweBase => "fluo-bwe-base",
            Kind::JanusTuned => "janus-tuned",
            Kind::JanusTunedNoTwcc => "janus-tuned-no-twcc",
            Kind::JanusPackaged => "janus-packaged",
            Kind::JanusPackagedNoTwcc => "janus-packaged-no-twcc",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .chain([Kind::FluoBase, Kind::FluoBwe, Kind::FluoBweBase])
            .find(|k| k.name() == s)
    }

    pub fn is_janus(self) -> bool {
        !self.is_fluo()
    }

    /// Fluo, whichever binary or estimate setting.
    pub fn is_fluo(self) -> bool {
        matches!(
            self,
            Kind::Fluo | Kind::FluoBase | Kind::FluoBwe | Kind::FluoBweBase
        )
    }

    /// Fluo with `--bwe on`, whichever binary.
    pub fn is_fluo_bwe(self) -> bool {
        matches!(self, Kind::FluoBwe | Kind::FluoBweBase)
    }

    /// Whether it runs the `--fluo-base-bin` binary.
    pub fn is_base(self) -> bool {
        matches!(self, Kind::FluoBase | Kind::FluoBweBase)
    }

    /// Janus with `event_loops = 2`.
    pub fn tuned(self) -> bool {
        matches!(self, Kind::JanusTuned | Kind::JanusTunedNoTwcc)
    }

    /// Whether the viewers end up with TWCC in their answers: Janus's viewers accept it or not
    /// as the name says; Fluo keeps it unless `--bwe off` (with `auto`, its default since
    /// session 44, and with `on`); `None` for the base binary, which runs with its own default
    /// (`off` before session 44). The run records what was negotiated.
    pub fn viewers_accept_twcc(self) -> Option<bool> {
        match self {
            Kind::FluoBase => None,
            k => Some(matches!(k, Kind::JanusTuned | Kind::JanusPackaged) || k.is_fluo()),
        }
    }

    /// Whether the viewers' media carries transport-wide sequence numbers, so that they send
    /// TWCC feedback: Janus's TWCC rows, and Fluo with `--bwe on` (with `auto` a plain
    /// publisher's viewers get none, and send REMB where they are browsers).
    pub fn viewers_send_twcc_feedback(self) -> bool {
        matches!(self, Kind::JanusTuned | Kind::JanusPackaged) || self.is_fluo_bwe()
    }
}

/// A started server.
pub struct Server {
    pub kind: Kind,
    child: Child,
    pub pid: u32,
    /// Fluo: the WebSocket port. Janus: the HTTP API port.
    pub port: u16,
    dir: PathBuf,
}

/// CPU time, memory and threads of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub rss_kib: u64,
    pub threads: u64,
    pub at: Option<Instant>,
}

impl ProcSample {
    pub fn read(pid: u32) -> ProcSample {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        ProcSample {
            cpu_ticks: num(11) + num(12),
            rss_kib: field("VmRSS:"),
            threads: field("Threads:"),
            at: Some(Instant::now()),
        }
    }

    /// CPU seconds spent between `earlier` and `self`.
    pub fn cpu_secs_since(&self, earlier: &ProcSample) -> f64 {
        self.cpu_ticks.saturating_sub(earlier.cpu_ticks) as f64 / crate::sys::clock_ticks()
    }

    /// Wall seconds between the two samples.
    pub fn wall_secs_since(&self, earlier: &ProcSample) -> f64 {
        match (self.at, earlier.at) {
            (Some(a), Some(b)) => a.saturating_duration_since(b).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// CPU ticks (utime + stime) of this process's threads whose name starts with `prefix`.
pub fn own_threads_cpu_ticks(prefix: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut ticks = 0;
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        ticks += num(11) + num(12);
    }
    ticks
}

/// Where the Janus binary and its plugins are, when installed.
pub fn janus_installed() -> bool {
    Path::new("/usr/bin/janus").exists()
        && Path::new("/usr/lib/x86_64-linux-gnu/janus/plugins/libjanus_videoroom.so").exists()
}

impl Server {
    /// Starts `kind`, pinned to `cpu` when given, and waits until it answers.
    pub fn start(
        kind: Kind,
        fluo_bin: &Path,
        cpu: Option<usize>,
        tmp: &Path,
    ) -> Result<Server, String> {
        let dir = tmp.join(format!("{}-{}", kind.name(), std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
        let mut cmd = match cpu {
            Some(c) => {
                let mut t = Command::new("taskset");
                t.args(["-c", &c.to_string()]);
                t
            }
            None => Command::new("env"),
        };
        let port = match kind {
            Kind::Fluo | Kind::FluoBase | Kind::FluoBwe | Kind::FluoBweBase => {
                let port_file = dir.join("port");
                cmd.arg(fluo_bin)
                    .args([
                        "--bind",
                        "127.0.0.1",
                        "--port",
                        "0",
                        "--network-interfaces",
                        "lo",
                    ])
                    .args(["--ice-tcp", "0", "--port-file"])
                    .arg(&port_file)
                    .env(
                        "RUST_LOG",
                        std::env::var("FLUO_BENCH_LOG").unwrap_or("warn".into()),
                    );
                // The others keep the binary's default: `auto` since session 44 (a plain
                // publisher's viewers then get no transport-wide numbers: `off`'s cost), `off`
                // before, in a `fluo-base` binary from then.
                if kind.is_fluo_bwe() {
                    cmd.args(["--bwe", "on"]);
                }
                None
            }
            _ => {
                write_janus_config(&dir, kind.tuned())?;
                cmd.arg("janus")
                    .arg("-F")
                    .arg(&dir)
                    .arg("-C")
                    .arg(dir.join("janus.jcfg"));
                Some(8088)
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", kind.name()))?;
        let pid = child.id();
        let mut s = Server {
            kind,
            child,
            pid,
            port: port.unwrap_or(0),
            dir: dir.clone(),
        };
        let t0 = Instant::now();
        loop {
            if t0.elapsed() > Duration::from_secs(20) {
                return Err(format!(
                    "{} did not start: see {}",
                    kind.name(),
                    s.log_tail()
                ));
            }
            if let Ok(Some(st)) = s.child.try_wait() {
                return Err(format!("{} exited ({st}): {}", kind.name(), s.log_tail()));
            }
            if kind.is_fluo() && s.port == 0 {
                if let Some(p) = std::fs::read_to_string(dir.join("port"))
                    .ok()
                    .and_then(|p| p.trim().parse().ok())
                {
                    s.port = p;
                }
            }
            if s.port != 0 && std::net::TcpStream::connect(("127.0.0.1", s.port)).is_ok() {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the server's output.
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    pub fn sample(&self) -> ProcSample {
        ProcSample::read(self.pid)
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub fn stop(mut self) {
        // SAFETY: kill takes no pointers; the pid is our own child's.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGTERM);
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Janus's configuration: Debian's defaults for what matters to the measure, plus what it
/// needs to run here (an address to gather on, no STUN, only the VideoRoom plugin and the
/// HTTP transport, one room for the bench, its TWCC left on as by default: whether a viewer
/// uses it is the viewer's answer). `tuned` adds `event_loops = 2`.
fn write_janus_config(dir: &Path, tuned: bool) -> Result<(), String> {
    let lib = "/usr/lib/x86_64-linux-gnu/janus";
    let others = |sub: &str, keep: &str| -> String {
        let mut v: Vec<String> = std::fs::read_dir(format!("{lib}/{sub}"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".so") && n != keep)
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v.join(",")
    };
    let loops = if tuned { "\tevent_loops = 2\n" } else { "" };
    let main = format!(
        "general: {{\n\tconfigs_folder = \"{d}\"\n\tplugins_folder = \"{lib}/plugins\"\n\
         \ttransports_folder = \"{lib}/transports\"\n\tevents_folder = \"{lib}/events\"\n\
         \tloggers_folder = \"{lib}/loggers\"\n\tdebug_level = 3\n\tadmin_secret = \"bench\"\n{loops}}}\n\
         certificates: {{\n}}\n\
         media: {{\n\tipv6 = false\n\trtp_port_range = \"20000-29999\"\n}}\n\
         nat: {{\n\tnice_debug = false\n\tignore_mdns = true\n\tinterface = \"127.0.0.1\"\n\
         \tice_enforce_list = \"127.0.0.1\"\n}}\n\
         plugins: {{\n\tdisable = \"{p}\"\n}}\n\
         transports: {{\n\tdisable = \"{t}\"\n}}\n\
         loggers: {{\n\tdisable = \"{l}\"\n}}\n\
         events: {{\n\tbroadcast = false\n\tdisable = \"{e}\"\n}}\n",
        d = dir.display(),
        p = others("plugins", "libjanus_videoroom.so"),
        t = others("transports", "libjanus_http.so"),
        l = others("loggers", ""),
        e = others("events", ""),
    );
    let http = "general: {\n\tjson = \"indented\"\n\tbase_path = \"/janus\"\n\thttp = true\n\
                \tport = 8088\n\tip = \"127.0.0.1\"\n\thttps = false\n}\n\
                admin: {\n\tadmin_base_path = \"/admin\"\n\tadmin_http = false\n}\n\
                cors: {\n}\n";
    let room = "general: {\n}\n\
                room-1234: {\n\tdescription = \"bench\"\n\tpublishers = 1\n\tbitrate = 2000000\n\
                \tfir_freq = 0\n\taudiocodec = \"opus\"\n\tvideocodec = \"vp8\"\n\
                \ttransport_wide_cc_ext = true\n}\n";
    for (name, text) in [
        ("janus.jcfg", main.as_str()),
        ("janus.transport.http.jcfg", http),
        ("janus.plugin.videoroom.jcfg", room),
    ] {
        std::fs::write(dir.join(name), text).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Datagrams the kernel dropped on UDP sockets of this network namespace because their
/// receive buffer was full: (on sockets of process `pid`, on all sockets).
pub fn udp_drops(pid: u32) -> (u64, u64) {
    let mut inodes = std::collections::HashSet::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            if let Ok(l) = std::fs::read_link(e.path()) {
                let l = l.to_string_lossy().to_string();
                if let Some(i) = l.strip_prefix("socket:[").and_then(|x| x.strip_suffix(']')) {
                    inodes.insert(i.to_string());
                }
            }
        }
    }
    let (mut mine, mut all) = (0, 0);
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(inode), Some(drops)) =
                (f.get(9), f.last().and_then(|d| d.parse::<u64>().ok()))
            else {
                continue;
            };
            all += drops;
            if inodes.contains(*inode) {
                mine += drops;
            }
        }
    }
    (mine, all)
}
