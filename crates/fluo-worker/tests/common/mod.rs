//! Helpers shared by the worker tests: the test worker, a sink that records what it hears, an
//! event log, polling with a deadline.

#![allow(dead_code)]

use fluo_sfu::{Codec, CodecName, MediaKind, MediaPacket};
use fluo_worker::{
    Death, JobSink, PacketRef, RestartPolicy, Supervisor, SupervisorConfig, SupervisorEvent,
    WorkerCommand,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The test worker binary.
pub fn command() -> WorkerCommand {
    WorkerCommand::new(env!("CARGO_BIN_EXE_fluo-test-worker"))
}

/// A configuration with short timers for tests.
pub fn config(workers: usize) -> SupervisorConfig {
    let mut c = SupervisorConfig::new(command());
    c.workers = workers;
    c.restart = RestartPolicy {
        first_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(400),
    };
    c.ping_interval = Duration::from_millis(100);
    c.ping_timeout = Duration::from_millis(800);
    c.start_timeout = Duration::from_secs(10);
    c
}

/// Everything a job's sink heard.
#[derive(Default)]
pub struct Heard {
    pub packets: Vec<MediaPacket>,
    pub keyframes: usize,
    pub eos: usize,
    pub events: Vec<(String, Vec<u8>)>,
    pub failed: Vec<String>,
    pub died: Option<Death>,
}

/// A sink recording what it hears.
#[derive(Default)]
pub struct Rec(pub Mutex<Heard>);

impl Rec {
    pub fn new() -> Arc<Rec> {
        Arc::new(Rec::default())
    }

    pub fn with<T>(&self, f: impl FnOnce(&Heard) -> T) -> T {
        f(&self.0.lock().unwrap())
    }
}

impl JobSink for Rec {
    fn packet(&self, pkt: &PacketRef<'_>) {
        self.0.lock().unwrap().packets.push(pkt.to_packet());
    }
    fn keyframe_request(&self) {
        self.0.lock().unwrap().keyframes += 1;
    }
    fn end_of_stream(&self) {
        self.0.lock().unwrap().eos += 1;
    }
    fn event(&self, name: &str, data: &[u8]) {
        self.0
            .lock()
            .unwrap()
            .events
            .push((name.to_owned(), data.to_vec()));
    }
    fn failed(&self, error: &str) {
        self.0.lock().unwrap().failed.push(error.to_owned());
    }
    fn worker_died(&self, death: &Death) {
        self.0.lock().unwrap().died = Some(death.clone());
    }
}

/// The supervisor's events, recorded.
pub type Events = Arc<Mutex<Vec<SupervisorEvent>>>;

/// Starts a supervisor on the current runtime, recording its events.
pub fn start(config: SupervisorConfig) -> (Supervisor, Events) {
    let events: Events = Arc::default();
    let e = events.clone();
    let sup = Supervisor::start(config, &tokio::runtime::Handle::current(), move |ev| {
        e.lock().unwrap().push(ev)
    });
    (sup, events)
}

/// Waits until `cond` holds, at most `limit`; returns whether it held.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// How many processes the supervisor has started (Started events).
pub fn started(events: &Events) -> usize {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, SupervisorEvent::Started { .. }))
        .count()
}

/// A video packet with `seq` and a recognisable payload.
pub fn packet(seq: u16, len: usize) -> MediaPacket {
    MediaPacket {
        kind: MediaKind::Video,
        codec: Codec::new(CodecName::Vp8),
        seq,
        timestamp: seq as u32 * 3000,
        ssrc: 0x5eed,
        marker: seq % 5 == 0,
        payload: (0..len).map(|i| (i as u8) ^ (seq as u8)).collect(),
    }
}

/// Open descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

/// Threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// This process's children, with their state letter (Z: a zombie nobody reaped).
pub fn children() -> Vec<(i32, char)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let Some(rest) = stat.get(close + 2..) else {
            continue;
        };
        let f: Vec<&str> = rest.split(' ').collect();
        let (Some(state), Some(ppid)) = (f.first(), f.get(1)) else {
            continue;
        };
        if ppid.parse::<i32>().ok() == Some(me) {
            out.push((pid, state.chars().next().unwrap_or('?')));
        }
    }
    out
}
