//! The metrics in the Prometheus text format (OpenMetrics, as `prometheus-client` encodes
//! it), built at scrape time from where the figures already are: the engine's reading, the
//! WebRTC endpoints' getStats counters, the worker supervisor, /proc. Labels are bounded
//! sets (methods, codes, classes, kinds, states): no per-object label.

use super::Ops;
use fluo_rtc::{Figure, RtcReading};
use fluo_sfu::MediaKind;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

/// How long a scrape waits for the core task's reading.
const READING_WAIT: Duration = Duration::from_secs(2);

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn gauge(r: &mut Registry, name: &str, help: &str, v: i64) {
    let g = Gauge::<i64>::default();
    g.set(v);
    r.register(name, help, g);
}

fn counter(r: &mut Registry, name: &str, help: &str, unit: Option<Unit>, v: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    match unit {
        Some(u) => r.register_with_unit(name, help, u, c),
        None => r.register(name, help, c),
    }
}

/// The text of `/metrics`.
pub(crate) async fn render(ops: &Ops) -> String {
    let mut r = Registry::default();
    engine(&mut r, ops).await;
    server(&mut r, ops);
    if let Some(rtc) = ops.media.get() {
        // Both answered by the media thread, between two of its steps.
        let (reading, running) =
            tokio::join!(rtc.reading(READING_WAIT), rtc.transcoders(READING_WAIT));
        if let Some(rd) = &reading {
            webrtc(&mut r, rd);
        }
        transcoders(&mut r, running.filter(|_| reading.is_some()));
    }
    if let Some(workers) = ops.workers.get() {
        let stats = workers.as_ref().map(|s| s.stats()).unwrap_or_default();
        let counts = ops.worker_counts(&stats);
        counter(
            &mut r,
            "fluo_recorder_written",
            "Bytes RecorderEndpoints handed to their files' sinks",
            Some(Unit::Bytes),
            counts.recorded_bytes,
        );
        self::workers(&mut r, &stats, &counts);
    }
    process(&mut r);
    let mut text = String::new();
    if encode(&mut text, &r).is_err() {
        tracing::error!("the metrics could not be encoded");
    }
    text
}

/// The engine's figures, the request latencies and the core task's lag.
async fn engine(r: &mut Registry, ops: &Ops) {
    r.register_with_unit(
        "fluo_request_duration",
        "Time the engine took to handle a Kurento request, by JSON-RPC method (answers an element gives later, such as stopAndWait, count until the request was taken)",
        Unit::Seconds,
        ops.requests.clone(),
    );
    let Some((e, lag)) = ops.engine_reading(READING_WAIT).await else {
        gauge(
            r,
            "fluo_core_up",
            "Whether the core task answered this scrape within 2 s",
            0,
        );
        return;
    };
    gauge(
        r,
        "fluo_core_up",
        "Whether the core task answered this scrape within 2 s",
        1,
    );
    let g = FloatGauge::default();
    g.set(lag.as_secs_f64());
    r.register_with_unit(
        "fluo_core_loop_lag",
        "How long this scrape's request waited before the core task (which owns every object and session) took it",
        Unit::Seconds,
        g,
    );
    gauge(
        r,
        "fluo_sessions",
        "Kurento sessions known (connected or in their grace period)",
        e.sessions as i64,
    );
    gauge(r, "fluo_pipelines", "Media pipelines", e.pipelines as i64);
    let by_type = Family::<Labels, Gauge>::default();
    for (class, n) in &e.elements {
        by_type
            .get_or_create(&labels(&[("type", class)]))
            .set(*n as i64);
    }
    r.register(
        "fluo_elements",
        "Media elements (and hubs, hub ports) by type",
        by_type,
    );
    let transcoding = Family::<Labels, Gauge>::default();
    for (kind, n) in &e.transcoding {
        let kind = kind.to_lowercase();
        transcoding
            .get_or_create(&labels(&[("kind", &kind)]))
            .set(*n as i64);
    }
    r.register(
        "fluo_transcoding_elements",
        "Elements whose input is being transcoded now, by media kind (their MediaTranscodingStateChanged events)",
        transcoding,
    );
    let errors = Family::<Labels, Counter>::default();
    for (code, n) in &e.errors {
        errors
            .get_or_create(&labels(&[("code", &code.to_string())]))
            .inc_by(*n);
    }
    r.register(
        "fluo_errors",
        "Error responses sent, by JSON-RPC / Kurento error code",
        errors,
    );
}

/// Listeners, readiness and the runtime.
fn server(r: &mut Registry, ops: &Ops) {
    // The shared state the drain switch sets (the engine's copy follows at its next request).
    gauge(
        r,
        "fluo_draining",
        "1 while the server is draining (new pipelines refused)",
        i64::from(ops.draining()),
    );
    gauge(
        r,
        "fluo_drained",
        "1 while draining with nothing left: no media pipelines, no client holding objects on another node through this one (it can be stopped)",
        i64::from(ops.drained()),
    );
    let live = ops
        .connections
        .get()
        .map_or(0, |c| c.load(Ordering::Relaxed));
    gauge(
        r,
        "fluo_websocket_connections",
        "WebSocket connections open (ws:// and wss://)",
        live as i64,
    );
    gauge(
        r,
        "fluo_ready",
        "1 when /health/ready answers 200",
        i64::from(ops.readiness().ready()),
    );
    let lag = FloatGauge::default();
    lag.set(ops.runtime_lag_us.load(Ordering::Relaxed) as f64 / 1e6);
    r.register_with_unit(
        "fluo_runtime_lag",
        "How late the async runtime's last 250 ms timer fired (its event loop's lag)",
        Unit::Seconds,
        lag,
    );
    let up = FloatCounter::default();
    up.inc_by(ops.started.elapsed().as_secs_f64());
    r.register_with_unit(
        "fluo_uptime",
        "Time since the server started",
        Unit::Seconds,
        up,
    );
}

/// A counter family by media kind from the endpoints' reading.
fn by_kind(
    r: &mut Registry,
    rd: &RtcReading,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    f: Figure,
) {
    let fam = Family::<Labels, Counter>::default();
    for k in MediaKind::ALL {
        let kind = k.wire_name().to_lowercase();
        fam.get_or_create(&labels(&[("kind", &kind)]))
            .inc_by(rd.get(k, f));
    }
    match unit {
        Some(u) => r.register_with_unit(name, help, u, fam),
        None => r.register(name, help, fam),
    }
}

fn webrtc(r: &mut Registry, rd: &RtcReading) {
    use Figure as F;
    let rows: [(&str, &str, Option<Unit>, Figure); 12] = [
        (
            "fluo_webrtc_received_packets",
            "RTP packets received by WebRtcEndpoints",
            None,
            F::PacketsIn,
        ),
        (
            "fluo_webrtc_received",
            "RTP bytes received by WebRtcEndpoints",
            Some(Unit::Bytes),
            F::BytesIn,
        ),
        (
            "fluo_webrtc_sent_packets",
            "RTP packets sent by WebRtcEndpoints",
            None,
            F::PacketsOut,
        ),
        (
            "fluo_webrtc_sent",
            "RTP bytes sent by WebRtcEndpoints",
            Some(Unit::Bytes),
            F::BytesOut,
        ),
        (
            "fluo_webrtc_received_packets_lost",
            "Incoming RTP packets lost (expected minus received)",
            None,
            F::LostIn,
        ),
        (
            "fluo_webrtc_nacks_sent",
            "NACKs WebRtcEndpoints sent about what they receive",
            None,
            F::NacksSent,
        ),
        (
            "fluo_webrtc_plis_sent",
            "PLIs WebRtcEndpoints sent",
            None,
            F::PlisSent,
        ),
        (
            "fluo_webrtc_firs_sent",
            "FIRs WebRtcEndpoints sent",
            None,
            F::FirsSent,
        ),
        (
            "fluo_webrtc_nacks_received",
            "NACKs the peers sent about what WebRtcEndpoints send",
            None,
            F::NacksReceived,
        ),
        (
            "fluo_webrtc_plis_received",
            "PLIs the peers sent",
            None,
            F::PlisReceived,
        ),
        (
            "fluo_webrtc_firs_received",
            "FIRs the peers sent",
            None,
            F::FirsReceived,
        ),
        (
            "fluo_webrtc_retransmitted_packets",
            "RTP packets retransmitted on the peers' NACKs",
            None,
            F::Retransmitted,
        ),
    ];
    for (name, help, unit, f) in rows {
        by_kind(r, rd, name, help, unit, f);
    }
    let ice = Family::<Labels, Gauge>::default();
    for (state, n) in &rd.ice {
        ice.get_or_create(&labels(&[("state", &state.to_lowercase())]))
            .set(*n as i64);
    }
    r.register(
        "fluo_webrtc_endpoints_by_ice_state",
        "WebRtcEndpoints by ICE component state",
        ice,
    );
    let dtls = Family::<Labels, Gauge>::default();
    for (state, n) in &rd.dtls {
        dtls.get_or_create(&labels(&[("state", state)]))
            .set(*n as i64);
    }
    r.register(
        "fluo_webrtc_endpoints_by_dtls_state",
        "WebRtcEndpoints by DTLS state: new (never connected), connected, lost (connected once, not now)",
        dtls,
    );
}

/// The router's transcoders by codec pair (`None`: the media thread did not answer).
fn transcoders(r: &mut Registry, running: Option<Vec<fluo_rtc::TranscoderCodecs>>) {
    gauge(
        r,
        "fluo_media_thread_up",
        "Whether the media thread answered this scrape within 2 s",
        i64::from(running.is_some()),
    );
    let fam = Family::<Labels, Gauge>::default();
    for t in running.unwrap_or_default() {
        let kind = t.kind.wire_name().to_lowercase();
        let l = labels(&[("kind", &kind), ("from", t.from), ("to", t.to)]);
        fam.get_or_create(&l).inc();
    }
    r.register(
        "fluo_transcoders",
        "Transcoders the media router runs, by media kind and codec pair (from, to)",
        fam,
    );
}

fn workers(r: &mut Registry, stats: &[fluo_worker::WorkerStats], counts: &super::WorkerCounts) {
    gauge(
        r,
        "fluo_media_workers",
        "Media worker slots (--workers)",
        stats.len() as i64,
    );
    let up = stats.iter().filter(|s| s.pid.is_some()).count();
    gauge(
        r,
        "fluo_media_workers_up",
        "Media workers with a live process",
        up as i64,
    );
    let restarts = stats.iter().map(|s| s.restarts).sum();
    counter(
        r,
        "fluo_media_worker_restarts",
        "Media worker processes started again after a death or a failed start",
        None,
        restarts,
    );
    let jobs: usize = stats.iter().map(|s| s.jobs).sum();
    gauge(
        r,
        "fluo_media_worker_jobs",
        "Jobs (players, recorders, transcoders, filters) the media workers host",
        jobs as i64,
    );
    let cpu = FloatCounter::default();
    cpu.inc_by(counts.cpu_seconds);
    r.register_with_unit(
        "fluo_media_workers_cpu",
        "CPU time of the media workers' processes, dead ones included",
        Unit::Seconds,
        cpu,
    );
    let rss: u64 = stats.iter().map(|s| s.rss_bytes).sum();
    gauge(
        r,
        "fluo_media_workers_resident_memory_bytes",
        "Resident memory of the live media workers",
        rss as i64,
    );
    let dropped = counts.dropped_records;
    counter(
        r,
        "fluo_media_worker_dropped_records",
        "Media records dropped because a worker's socket was full",
        None,
        dropped,
    );
}

/// This process's CPU and memory (the standard process_* names).
fn process(r: &mut Registry) {
    // A failed read of /proc leaves the sample out (a 0 would read as a counter reset).
    if let Some((cpu, _)) = fluo_worker::spawn::proc_usage(std::process::id() as i32) {
        let c = FloatCounter::default();
        c.inc_by(cpu.total().as_secs_f64());
        r.register_with_unit(
            "process_cpu",
            "CPU time (user and system) of the server's process",
            Unit::Seconds,
            c,
        );
    }
    gauge(
        r,
        "process_resident_memory_bytes",
        "Resident memory of the server's process",
        (crate::host::rss_kib() * 1024) as i64,
    );
}
