//! Facts about the machine that the ServerManager reports, provided by the shell.

/// Machine readings for `ServerManager.getCpuCount` / `getUsedCpu` / `getUsedMemory`.
pub trait Host: Send {
    /// Number of CPUs available to the process.
    fn cpu_count(&self) -> i64;
    /// CPU use of the media server (its process and its media workers') over (about) the
    /// last `interval_ms`, in percent of one processing unit, as KMS 7 measures it.
    fn used_cpu_percent(&self, interval_ms: i64) -> f64;
    /// Resident memory of the media server (its process and its media workers') in KiB.
    fn used_memory_kib(&self) -> i64;
}

/// A host with fixed readings, for tests.
#[derive(Debug, Clone, Copy)]
pub struct FixedHost {
    /// Reported CPU count.
    pub cpus: i64,
    /// Reported CPU use.
    pub cpu_percent: f64,
    /// Reported RSS in KiB.
    pub rss_kib: i64,
}

impl Default for FixedHost {
    fn default() -> Self {
        Self {
            cpus: 2,
            cpu_percent: 1.5,
            rss_kib: 10_240,
        }
    }
}

impl Host for FixedHost {
    fn cpu_count(&self) -> i64 {
        self.cpus
    }
    fn used_cpu_percent(&self, _interval_ms: i64) -> f64 {
        self.cpu_percent
    }
    fn used_memory_kib(&self) -> i64 {
        self.rss_kib
    }
}
