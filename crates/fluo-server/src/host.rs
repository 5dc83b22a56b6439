//! Machine readings from /proc for the ServerManager.

use fluo_core::Host;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the CPU sampler reads /proc/stat.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// How much history it keeps.
const KEEP: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    busy: u64,
    total: u64,
}

/// Reads CPU and memory use from /proc; a background task keeps recent CPU samples so that
/// `getUsedCpu(interval)` answers at once instead of sleeping for the interval as KMS does.
#[derive(Debug, Clone, Default)]
pub struct ProcHost {
    samples: Arc<Mutex<VecDeque<Sample>>>,
}

impl ProcHost {
    /// Starts the sampler on the current tokio runtime.
    pub fn start() -> ProcHost {
        let host = ProcHost::default();
        let samples = host.samples.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tick.tick().await;
                if let Some((busy, total)) = read_cpu() {
                    let now = Instant::now();
                    let mut s = samples.lock().expect("sampler lock is never poisoned");
                    s.push_back(Sample {
                        at: now,
                        busy,
                        total,
                    });
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

/// (busy, total) jiffies of all CPUs.
fn read_cpu() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
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
        let total = last.total.saturating_sub(first.total);
        if total == 0 {
            return 0.0;
        }
        let busy = last.busy.saturating_sub(first.busy);
        (busy as f64 * 100.0 / total as f64 * 100.0).round() / 100.0
    }

    fn used_memory_kib(&self) -> i64 {
        i64::try_from(rss_kib()).unwrap_or(i64::MAX)
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
