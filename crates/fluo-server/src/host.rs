//! Readings from /proc for the ServerManager: the media server's processes (this one and its
//! media workers).

use fluo_core::Host;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the CPU sampler reads the processes' CPU time.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// How much history it keeps.
const KEEP: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    /// CPU time (user + system) of the media server: this process, plus every process of its
    /// media workers, the dead ones included.
    cpu: Duration,
}

/// The media server's CPU and memory as KMS reports them (ServerManager's getUsedCpu and
/// getUsedMemory): a media worker is part of the media server, so its processes count with
/// this one's. A background task keeps recent CPU samples so that `getUsedCpu(interval)`
/// answers at once instead of sleeping for the interval as KMS does.
#[derive(Clone, Default)]
pub struct ProcHost {
    samples: Arc<Mutex<VecDeque<Sample>>>,
    workers: Option<fluo_worker::Supervisor>,
}

impl ProcHost {
    /// Starts the sampler on the current tokio runtime; `workers` are the server's media
    /// workers, if it has any.
    pub fn start(workers: Option<fluo_worker::Supervisor>) -> ProcHost {
        let host = ProcHost {
            samples: Arc::default(),
            workers,
        };
        let (samples, workers) = (host.samples.clone(), host.workers.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tick.tick().await;
                let cpu = server_cpu(workers.as_ref());
                let now = Instant::now();
                {
                    let mut s = samples.lock().expect("sampler lock is never poisoned");
                    s.push_back(Sample { at: now, cpu });
                    while s.front().is_some_and(|f| now.duration_since(f.at) > KEEP) {
                        s.pop_front();
                    }
                }
                if Arc::strong_count(&samples) == 1 {
                    return;
                }
            }
        });
        host
    }
}

/// CPU time used so far by this process and by the workers' processes (live and dead).
fn server_cpu(workers: Option<&fluo_worker::Supervisor>) -> Duration {
    let own = fluo_worker::spawn::proc_usage(std::process::id() as i32)
        .map_or(Duration::ZERO, |(cpu, _)| cpu.total());
    let theirs: Duration = workers
        .map(|w| w.stats().iter().map(|s| s.cpu.total()).sum())
        .unwrap_or_default();
    own + theirs
}

/// The CPU use in percent between two samples, as KMS 7 computes it: the media server's CPU
/// time over the wall time between them, where 100 is one processing unit busy all along
/// (so up to 100 times the CPU count).
fn cpu_percent(first: Sample, last: Sample) -> f64 {
    let wall = last.at.duration_since(first.at).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    let busy = last.cpu.saturating_sub(first.cpu).as_secs_f64();
    (busy / wall * 100.0 * 100.0).round() / 100.0
}

impl Host for ProcHost {
    fn cpu_count(&self) -> i64 {
        std::thread::available_parallelism().map_or(1, |n| n.get() as i64)
    }

    fn used_cpu_percent(&self, interval_ms: i64) -> f64 {
        let s = self.samples.lock().expect("sampler lock is never poisoned");
        let Some(last) = s.back().copied() else {
            return 0.0;
        };
        let want = Duration::from_millis(interval_ms.max(0) as u64).max(SAMPLE_EVERY);
        let first = s
            .iter()
            .rev()
            .find(|x| last.at.duration_since(x.at) >= want)
            .or(s.front())
            .copied()
            .unwrap_or(last);
        cpu_percent(first, last)
    }

    fn used_memory_kib(&self) -> i64 {
        let workers: u64 = self
            .workers
            .as_ref()
            .map(|w| w.stats().iter().map(|s| s.rss_bytes / 1024).sum())
            .unwrap_or(0);
        i64::try_from(rss_kib() + workers).unwrap_or(i64::MAX)
    }
}

/// Resident memory of this process in KiB (0 when /proc cannot be read).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}
