//! What an operator's tools read and do: Prometheus metrics (`render.rs`), health and
//! draining, served on a listener of their own (`listener.rs`, `--metrics-port`), off the
//! WebSocket and the media path (docs/operations.md).
//!
//! [`Ops`] is shared by the server's tasks: the core task times requests and hands out the
//! engine's reading when a scrape asks for it; the listeners and the media plane say when
//! they are up. Nothing here runs per packet.

mod drain;
mod listener;
mod render;
mod view;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

pub(crate) use drain::watch as watch_drain;
pub use listener::{serve_on, MAX_CONNECTIONS, MAX_PER_ADDRESS};
pub use view::LIMITS as VIEW_LIMITS;

/// A request's latency histogram by method label.
type Latencies = Family<Vec<(String, String)>, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 us .. about 1.6 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

/// A question for the core task: run with its engine between two requests.
pub(crate) type CoreAsk = Box<dyn FnOnce(&mut fluo_core::Engine) + Send>;

/// The server's operational state: readiness, draining, and where the metrics come from.
pub struct Ops {
    started: Instant,
    draining: AtomicBool,
    /// Draining and nothing left to drain (`drain.rs`).
    drained: tokio::sync::watch::Sender<bool>,
    /// Told when draining starts or ends (the cluster task publishes it at once).
    drain_changed: tokio::sync::Notify,
    /// The WebSocket listener takes connections.
    accepting: AtomicBool,
    /// The WebRTC media plane (its sockets are bound once it is here).
    media: OnceLock<fluo_rtc::WebRtc>,
    /// The media workers (`None` when elements run in this process).
    workers: OnceLock<Option<fluo_worker::Supervisor>>,
    /// With no workers: whether GStreamer initialises in this process.
    gst_in_process: OnceLock<Result<(), String>>,
    /// Where the engine is asked (its reading, the pipeline view).
    core: OnceLock<mpsc::UnboundedSender<CoreAsk>>,
    /// WebSocket connections open.
    connections: OnceLock<Arc<AtomicUsize>>,
    requests: Latencies,
    /// The runtime's timer lateness last measured, in microseconds.
    runtime_lag_us: AtomicU64,
    /// Where the metrics listener listens.
    pub(crate) address: Mutex<Option<SocketAddr>>,
    /// The media workers' counters, kept monotonic across their restarts.
    worker_totals: Mutex<WorkerTotals>,
    /// The last render, when it was made and the drain generation it saw: one scrape renders
    /// at a time, and those within [`RENDER_REUSE`] of a render get its text.
    last_render: tokio::sync::Mutex<Option<(Instant, u64, String)>>,
    /// Bumped at every change of the drain state (a render made before is not reused).
    drain_generation: AtomicU64,
    /// The pipeline view's byte counts, held by the request making a view (one at a time).
    view: tokio::sync::Mutex<view::ViewState>,
    /// The pipeline view's last answer.
    view_last: Mutex<view::LastView>,
}

/// How long a render of `/metrics` is served again to other scrapes.
pub(crate) const RENDER_REUSE: Duration = Duration::from_secs(1);

/// A counter per media worker slot that only grows: each reading is kept at its high-water
/// mark (a figure that dips for a moment, as a dead worker's CPU time until it is reaped,
/// does not go down), and with `per_process` (a figure each process counts from zero) what
/// the slot's earlier processes had counted is carried when another process takes the slot.
#[derive(Debug, Default)]
struct SlotCounter {
    per_process: bool,
    /// Per slot: the process, its high-water mark, what earlier processes counted.
    slots: Vec<(Option<u32>, u64, u64)>,
}

impl SlotCounter {
    fn per_process() -> SlotCounter {
        SlotCounter {
            per_process: true,
            slots: Vec::new(),
        }
    }

    /// Slot `worker`'s process `pid` reads `now` (`None`: nothing to read now).
    fn read(&mut self, worker: usize, pid: Option<u32>, now: Option<u64>) {
        if self.slots.len() <= worker {
            self.slots.resize(worker + 1, (None, 0, 0));
        }
        let (slot_pid, last, carry) = &mut self.slots[worker];
        if self.per_process && pid.is_some() && pid != *slot_pid {
            *carry += *last;
            *last = 0;
            *slot_pid = pid;
        }
        if let Some(now) = now {
            *last = now.max(*last);
        }
    }

    fn total(&self) -> u64 {
        self.slots.iter().map(|(_, last, carry)| last + carry).sum()
    }
}

/// The media workers' counters for the metrics.
#[derive(Debug)]
struct WorkerTotals {
    /// Bytes the recorders wrote (each process's pong counts its own).
    recorded: SlotCounter,
    /// Media records dropped on a full socket (counted per connection to a process).
    dropped: SlotCounter,
    /// CPU time in microseconds (the supervisor adds dead processes' time once reaped).
    cpu_us: SlotCounter,
}

impl Default for WorkerTotals {
    fn default() -> WorkerTotals {
        WorkerTotals {
            recorded: SlotCounter::per_process(),
            dropped: SlotCounter::per_process(),
            cpu_us: SlotCounter::default(),
        }
    }
}

/// What the media workers counted, monotonic across their restarts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WorkerCounts {
    /// Bytes the recorders of the workers and of this process wrote.
    pub recorded_bytes: u64,
    pub dropped_records: u64,
    pub cpu_seconds: f64,
}

impl Default for Ops {
    fn default() -> Ops {
        Ops {
            started: Instant::now(),
            draining: AtomicBool::new(false),
            drained: tokio::sync::watch::channel(false).0,
            drain_changed: tokio::sync::Notify::new(),
            accepting: AtomicBool::new(false),
            media: OnceLock::new(),
            workers: OnceLock::new(),
            gst_in_process: OnceLock::new(),
            core: OnceLock::new(),
            connections: OnceLock::new(),
            requests: Family::new_with_constructor(latency_histogram),
            runtime_lag_us: AtomicU64::new(0),
            address: Mutex::new(None),
            worker_totals: Mutex::default(),
            last_render: tokio::sync::Mutex::new(None),
            drain_generation: AtomicU64::new(0),
            view: tokio::sync::Mutex::default(),
            view_last: Mutex::new(None),
        }
    }
}

/// What `/health/ready` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// The WebSocket listener takes connections.
    pub accepting: bool,
    /// The WebRTC media sockets are bound.
    pub media_sockets: bool,
    /// GStreamer is usable: a media worker is up with GStreamer initialised, or (without
    /// workers) it initialised here.
    pub gstreamer: bool,
    /// New pipelines are refused.
    pub draining: bool,
}

impl Readiness {
    /// Whether the server takes new work.
    pub fn ready(&self) -> bool {
        self.accepting && self.media_sockets && self.gstreamer && !self.draining
    }
}

impl Ops {
    /// A new state: nothing up yet, not draining.
    pub fn new() -> Arc<Ops> {
        Arc::new(Ops::default())
    }

    /// Starts draining (`true`): new pipelines are refused with 40009 and `/health/ready`
    /// answers 503; the pipelines that exist go on. `false` takes new pipelines again.
    pub fn set_draining(&self, on: bool) {
        if self.draining.swap(on, Ordering::AcqRel) != on {
            self.drain_generation.fetch_add(1, Ordering::AcqRel);
            self.drain_changed.notify_one();
            // Counted anew in each drain (after the generation changed: see drain.rs).
            self.drained
                .send_if_modified(|d| std::mem::replace(d, false));
            if on {
                tracing::warn!("draining: new media pipelines are refused, existing ones go on");
            } else {
                tracing::info!("draining ended: new media pipelines are taken again");
            }
        }
    }

    /// The text of `/metrics`: rendered by one scrape at a time (the others wait for it),
    /// and reused for [`RENDER_REUSE`] unless the drain state changed.
    pub(crate) async fn metrics_text(&self) -> String {
        let mut last = self.last_render.lock().await;
        let generation = self.drain_generation.load(Ordering::Acquire);
        if let Some((at, g, text)) = &*last {
            if at.elapsed() < RENDER_REUSE && *g == generation {
                return text.clone();
            }
        }
        let text = render::render(self).await;
        *last = Some((Instant::now(), generation, text.clone()));
        text
    }

    /// Whether the server is draining.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Whether the server is draining and drained: no media pipelines left (and, in a
    /// cluster, no client of its own holding objects on another node through it), as last
    /// checked (once a second while draining): it can be stopped without cutting a call.
    pub fn drained(&self) -> bool {
        self.draining() && *self.drained.borrow()
    }

    /// The drain state's generation (bumped at each start and end of a drain).
    fn drain_generation(&self) -> u64 {
        self.drain_generation.load(Ordering::Acquire)
    }

    /// Waits until draining starts or ends (for one waiter: the cluster task; a change while
    /// it does not wait is kept for its next wait).
    pub(crate) async fn drain_changed(&self) {
        self.drain_changed.notified().await;
    }

    /// Waits until [`Ops::drained`].
    pub async fn until_drained(&self) {
        let mut rx = self.drained.subscribe();
        let _ = rx.wait_for(|d| *d && self.draining()).await;
    }

    /// Where the metrics listener listens, once it does.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        *self.address.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The checks of `/health/ready`.
    pub fn readiness(&self) -> Readiness {
        let gstreamer = match self.workers.get() {
            // A live worker whose GStreamer initialised.
            Some(Some(w)) => w
                .stats()
                .iter()
                .any(|s| s.pid.is_some() && s.init_error.is_none()),
            Some(None) => matches!(self.gst_in_process.get(), Some(Ok(()))),
            None => false,
        };
        Readiness {
            accepting: self.accepting.load(Ordering::Acquire),
            media_sockets: self.media.get().is_some(),
            gstreamer,
            draining: self.draining(),
        }
    }

    pub(crate) fn set_accepting(&self, on: bool) {
        self.accepting.store(on, Ordering::Release);
    }

    pub(crate) fn set_connections(&self, live: Arc<AtomicUsize>) {
        let _ = self.connections.set(live);
    }

    /// The media plane is up (its sockets bound), with its workers (if any). Without
    /// workers, GStreamer's initialisation here is tried (off the async threads).
    pub(crate) fn set_media(
        self: &Arc<Self>,
        rtc: fluo_rtc::WebRtc,
        workers: Option<fluo_worker::Supervisor>,
    ) {
        let in_process = workers.is_none();
        let _ = self.media.set(rtc);
        let _ = self.workers.set(workers);
        if in_process {
            let me = self.clone();
            tokio::task::spawn_blocking(move || {
                let r = fluo_gst::init();
                if let Err(e) = &r {
                    tracing::error!("{e}: the server is not ready");
                }
                let _ = me.gst_in_process.set(r);
            });
        }
    }

    /// The core task answers the questions sent to `tx` (from `rx`'s other end).
    pub(crate) fn set_core(&self, tx: mpsc::UnboundedSender<CoreAsk>) {
        let _ = self.core.set(tx);
    }

    /// A request of `method` (a [`fluo_core::method_label`]) took `took` in the engine.
    pub(crate) fn observe_request(&self, method: &str, took: Duration) {
        self.requests
            .get_or_create(&vec![("method".to_string(), method.to_string())])
            .observe(took.as_secs_f64());
    }

    /// The engine's reading and how long the ask waited in the core task's queue; `None`
    /// when the core task does not answer within `wait`.
    async fn engine_reading(&self, wait: Duration) -> Option<(fluo_core::EngineReading, Duration)> {
        let asked = Instant::now();
        self.ask_core(move |e| (e.reading(), asked.elapsed()), wait)
            .await
    }

    /// A cluster heartbeat's load (crate::cluster): the endpoints (elements whose class ends
    /// in `Endpoint`) and the RTP packets the WebRTC endpoints sent so far; each `None` when
    /// not read within `wait`. The same readings as a metrics scrape, once a second.
    pub(crate) async fn load_reading(&self, wait: Duration) -> (Option<u64>, Option<u64>) {
        let endpoints = self
            .ask_core(
                |e| {
                    e.reading()
                        .elements
                        .iter()
                        .filter(|(class, _)| class.ends_with("Endpoint"))
                        .map(|(_, n)| *n as u64)
                        .sum::<u64>()
                },
                wait,
            )
            .await;
        let sent = match self.media.get() {
            Some(rtc) => rtc.reading(wait).await.map(|r| {
                r.totals
                    .iter()
                    .map(|kind| kind[fluo_rtc::Figure::PacketsOut as usize])
                    .sum::<u64>()
            }),
            None => None,
        };
        (endpoints, sent)
    }

    /// What `ask` finds in the engine, asked from the core task; `None` when the core task
    /// does not answer within `wait` (or is gone).
    async fn ask_core<T: Send + 'static>(
        &self,
        ask: impl FnOnce(&mut fluo_core::Engine) -> T + Send + 'static,
        wait: Duration,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let ask: CoreAsk = Box::new(move |e| {
            // The asker may have given up waiting.
            if !tx.is_closed() {
                let _ = tx.send(ask(e));
            }
        });
        self.core.get()?.send(ask).ok()?;
        tokio::time::timeout(wait, rx).await.ok()?.ok()
    }

    /// The workers' counters (the recorders' bytes this process's too): every process of
    /// each slot included, as far as their last report.
    pub(crate) fn worker_counts(&self, workers: &[fluo_worker::WorkerStats]) -> WorkerCounts {
        let mut t = self.worker_totals.lock().unwrap_or_else(|p| p.into_inner());
        for w in workers {
            let recorded = w.gauges.as_ref().map(|(_, g)| g.recorded_bytes);
            t.recorded.read(w.worker, w.pid, recorded);
            // A slot without a process has no connection whose drops could be read.
            let dropped = w.pid.map(|_| w.media_dropped);
            t.dropped.read(w.worker, w.pid, dropped);
            let cpu = u64::try_from(w.cpu.total().as_micros()).unwrap_or(u64::MAX);
            t.cpu_us.read(w.worker, w.pid, Some(cpu));
        }
        WorkerCounts {
            recorded_bytes: t.recorded.total() + fluo_gst::recorded_bytes(),
            dropped_records: t.dropped.total(),
            cpu_seconds: t.cpu_us.total() as f64 / 1e6,
        }
    }

    /// Measures the runtime's timer lateness every 250 ms while `self` lives elsewhere.
    pub(crate) fn watch_runtime(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            const TICK: Duration = Duration::from_millis(250);
            loop {
                let asked = Instant::now();
                tokio::time::sleep(TICK).await;
                let late = asked.elapsed().saturating_sub(TICK);
                let Some(me) = weak.upgrade() else { return };
                me.runtime_lag_us
                    .store(late.as_micros() as u64, Ordering::Relaxed);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluo_worker::{CpuTime, WorkerGauges, WorkerStats};

    fn stats(pid: Option<u32>, cpu_ms: u64, dropped: u64, recorded: u64) -> WorkerStats {
        WorkerStats {
            worker: 0,
            pid,
            restarts: 0,
            jobs: 0,
            cpu: CpuTime {
                user: Duration::from_millis(cpu_ms),
                system: Duration::ZERO,
            },
            rss_bytes: 0,
            media_dropped: dropped,
            media_datagrams: 0,
            media_records: 0,
            init_error: None,
            gauges: pid.map(|_| {
                let g = WorkerGauges {
                    recorded_bytes: recorded,
                    ..Default::default()
                };
                (Instant::now(), g)
            }),
        }
    }

    #[test]
    fn worker_counters_do_not_dip_across_a_restart() {
        let ops = Ops::default();
        let mut seen = Vec::new();
        // Worker 100 runs; dies (its CPU time not yet reaped: the live sample is gone);
        // is reaped; worker 200 takes the slot with its own connection and recorders.
        for s in [
            stats(Some(100), 500, 7, 1000),
            stats(None, 100, 7, 0),
            stats(None, 600, 7, 0),
            stats(Some(200), 600, 0, 0),
            stats(Some(200), 700, 2, 50),
        ] {
            let c = ops.worker_counts(&[s]);
            seen.push((
                c.dropped_records,
                c.cpu_seconds,
                c.recorded_bytes - fluo_gst::recorded_bytes(),
            ));
        }
        assert_eq!(
            seen,
            [
                (7, 0.5, 1000),
                (7, 0.5, 1000),
                (7, 0.6, 1000),
                (7, 0.6, 1000),
                (9, 0.7, 1050)
            ]
        );
    }
}
