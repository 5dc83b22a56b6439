//! The task that owns the engine. Connections send it frames; it sends back what the engine
//! asks to send. One owner, no locks around the registry.

use crate::config::Config;
use crate::host::ProcHost;
use fluo_core::{ConnId, Engine, EngineConfig, EventSink, MediaEvent, Now, Output};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// How many frames may wait for one slow client before it is disconnected.
pub(crate) const OUTBOX: usize = 1024;

/// Where the core task sends a connection's frames, and how it ends a connection.
pub(crate) struct Outbox {
    tx: mpsc::Sender<String>,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A message to the core task.
pub(crate) enum CoreMsg {
    Opened {
        conn: ConnId,
        /// The client's address (limits are kept per address too).
        peer: std::net::IpAddr,
        outbox: mpsc::Sender<String>,
        /// Fired when the connection must end (it does not read its replies).
        kill: tokio::sync::oneshot::Sender<()>,
        /// One of Fluo's own connections (a cascade relay's), never a client's: its sessions
        /// hold nothing in the engine (docs/cluster.md, "Cascade").
        internal: bool,
    },
    Text {
        conn: ConnId,
        text: String,
    },
    Closed {
        conn: ConnId,
    },
}

/// Handle to the core task.
#[derive(Clone)]
pub(crate) struct Core {
    pub tx: mpsc::Sender<CoreMsg>,
}

/// Resolves when the core task ended (normally only at shutdown).
pub(crate) type CoreDone = tokio::task::JoinHandle<()>;

fn now() -> Now {
    Now {
        mono: Instant::now(),
        wall_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    }
}

pub(crate) fn spawn(
    config: Arc<Config>,
    http: Arc<fluo_core::http::HttpRoutes>,
    mut shutdown: watch::Receiver<bool>,
    ops: Arc<crate::Ops>,
    cluster: crate::cluster::Plan,
) -> std::io::Result<(Core, CoreDone)> {
    let (tx, mut rx) = mpsc::channel::<CoreMsg>(4096);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<(String, MediaEvent)>();
    let sink: EventSink = Arc::new(move |id: &str, ev| {
        let _ = ev_tx.send((id.to_string(), ev));
    });
    let webrtc = fluo_rtc::WebRtc::start(config.net.clone(), sink.clone())?;
    // Elements' output settings: the engine writes them, the router and encoders read them.
    let settings = fluo_gst::settings_table();
    webrtc.set_output_settings(settings.clone());
    // The modules, compiled in and WebAssembly (docs/modules.md), before the engine's model.
    crate::modules::install(&config.modules_dirs, config.wasm_limits);
    let workers = start_workers(&config, webrtc.media_runtime())?;
    ops.set_media(webrtc.clone(), workers.clone());
    let (ask_tx, mut ask_rx) = mpsc::unbounded_channel::<crate::ops::CoreAsk>();
    ops.set_core(ask_tx);
    let transcoders = fluo_gst::Transcoders::new(settings.clone());
    webrtc.set_transcoders(Arc::new(match &workers {
        Some(w) => transcoders.in_workers(w.clone(), Arc::new(webrtc.clone())),
        None => transcoders,
    }));
    let gst_media = fluo_gst::Media {
        bus: Arc::new(webrtc.clone()),
        events: sink,
        uris: Arc::new(fluo_gst::UriPolicy::new(config.uri_allow.clone())),
        filters: Arc::new(fluo_gst::FilterPolicy::new(config.gst_filter_allow.clone())),
        settings: settings.clone(),
        rtp_net: Arc::new(fluo_gst::RtpNet {
            addresses: config.net.local_addresses()?,
            min_port: config.net.min_port,
            max_port: config.net.max_port,
            external_ipv4: config.net.external_ipv4,
            external_ipv6: config.net.external_ipv6,
        }),
        http: http.clone(),
        workers: workers.clone(),
    };
    let engine_config = EngineConfig {
        session_grace: config.session_grace,
        replay_enabled: config.request_cache,
        metadata: config.metadata.clone(),
        max_objects: config.max_objects,
        max_pipelines: config.max_pipelines,
        max_elements_per_pipeline: config.max_elements_per_pipeline,
        max_objects_per_session: config.max_objects_per_session,
        max_objects_per_connection: config.max_objects_per_connection,
        max_objects_per_address: config.max_objects_per_address,
        max_sessions: config.max_sessions,
        max_sessions_per_address: config.max_sessions_per_address,
        ..EngineConfig::default()
    };
    let host = ProcHost::start(workers.clone());
    let view = cluster.routed_view();
    // Cluster coordination: pipelines claimed and released by the task, never waited on.
    let (changes, cluster_done) = crate::cluster::start(cluster, host.clone(), ops.clone());
    // Replies elements give later (a recorder's stopAndWait), without blocking this task.
    type Completion = (u64, Result<serde_json::Value, fluo_api::KurentoError>);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Completion>();
    // WHIP/WHEP requests from the HTTP listener (one per open HTTP connection at most).
    let (sig_tx, mut sig_rx) = mpsc::unbounded_channel::<fluo_core::whip::SignalCall>();
    let done = tokio::spawn(async move {
        let mut engine = Engine::new(engine_config, Box::new(host), now());
        engine.set_completion_sink(Arc::new(move |token, outcome| {
            let _ = done_tx.send((token, outcome));
        }));
        engine.set_settings_sink(fluo_gst::settings_sink(settings));
        engine.set_signalling(
            http,
            Arc::new(move |call| {
                let _ = sig_tx.send(call);
            }),
        );
        engine.set_pipeline_dot(Arc::new(fluo_gst::GstDot));
        engine.register_factory(
            "MediaPipeline",
            crate::cluster::pipeline_factory(changes, view),
        );
        engine.register_factory("WebRtcEndpoint", webrtc.factory());
        for (class, factory) in gst_media.factories() {
            engine.register_factory(class, factory);
        }
        // The modules' types (docs/modules.md).
        engine.set_model(crate::modules::model());
        for (class, factory) in gst_media.module_factories() {
            engine.register_factory(class, factory);
        }
        #[cfg(feature = "test-elements")]
        for (class, factory) in gst_media.test_factories() {
            engine.register_factory(class, factory);
        }
        let mut outboxes: HashMap<ConnId, Outbox> = HashMap::new();
        loop {
            let deadline = engine.poll_timeout();
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    handle(&mut engine, &mut outboxes, &ops, msg);
                    // Then what is already queued, each reply handed to its connection as soon
                    // as it is made and the writers let run (the yield): in a burst of joins an
                    // answer held back until the queued requests behind it are answered holds
                    // its viewer's ICE and DTLS back as long (docs/perf.md, "Replies as they
                    // are made"). A client that does not read is still bounded by its outbox
                    // and its socket's write timeout (ws/stall.rs), neither of which needs a
                    // burst of replies.
                    for _ in 0..256 {
                        match rx.try_recv() {
                            Ok(m) => {
                                if flush(&mut engine, &mut outboxes) {
                                    tokio::task::yield_now().await;
                                }
                                handle(&mut engine, &mut outboxes, &ops, m);
                            }
                            Err(_) => break,
                        }
                    }
                }
                Some((id, ev)) = ev_rx.recv() => {
                    engine.emit_event(now(), &id, ev);
                    while let Ok((id, ev)) = ev_rx.try_recv() {
                        engine.emit_event(now(), &id, ev);
                    }
                }
                Some((token, outcome)) = done_rx.recv() => engine.complete(now(), token, outcome),
                Some(call) = sig_rx.recv() => engine.signal(now(), call),
                Some(ask) = ask_rx.recv() => ask(&mut engine),
                _ = sleep_until(deadline) => engine.handle_timeout(now()),
                _ = shutdown.changed() => {
                    // Close every media session so peers learn at once, then stop.
                    engine.release_all(now());
                    flush(&mut engine, &mut outboxes);
                    break;
                }
            }
            flush(&mut engine, &mut outboxes);
        }
        drop(engine);
        if let Some(w) = workers {
            // Each worker stops its jobs (recorders finalise their files) and exits.
            w.shutdown(std::time::Duration::from_secs(6)).await;
        }
        // The engine's pipelines are gone: the cluster task writes their releases and this
        // node's leaving (each call bounded), then ends.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), cluster_done).await;
        tracing::debug!("core loop stopped");
    });
    Ok((Core { tx }, done))
}

/// The program media workers run: the configured one, this process's own when it is `fluo`
/// (or `fluo-test-elements`, whose workers host the test jobs), else the `fluo` built next to
/// it (a test binary in `target/*/deps` runs a server too).
fn worker_program(config: &Config) -> std::io::Result<std::path::PathBuf> {
    if let Some(p) = &config.worker_program {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    if exe
        .file_stem()
        .is_some_and(|n| n == "fluo" || n == crate::TEST_ELEMENTS_BINARY)
    {
        return Ok(exe);
    }
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join("fluo");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!(
            "no fluo program to run media workers next to {} (build it: cargo build -p fluo-server; or run the elements in this process: --workers 0)",
            exe.display()
        ),
    ))
}

/// Starts the media workers (none with `workers` 0), logging what they report.
fn start_workers(
    config: &Config,
    media_runtime: Option<tokio::runtime::Handle>,
) -> std::io::Result<Option<fluo_worker::Supervisor>> {
    if config.workers == 0 {
        tracing::info!("media workers: none, players and recorders run in this process");
        return Ok(None);
    }
    let program = worker_program(config)?;
    let mut command = fluo_worker::WorkerCommand::new(program).arg(crate::WORKER_SUBCOMMAND);
    if config.log_json {
        // Their environment is cleared: they log as the server does only when told.
        command = command.env("FLUO_LOG_FORMAT", "json");
    }
    // The workers load the same WebAssembly modules with the same limits.
    for (k, v) in crate::modules::worker_env(&config.modules_dirs, config.wasm_limits) {
        command = command.env(k, v);
    }
    let mut sc = fluo_worker::SupervisorConfig::new(command);
    sc.prepare = Some(prepare_media_workers);
    sc.workers = config.workers;
    sc.limits.memory_bytes = Some(config.worker_memory_limit);
    sc.sandbox.read_paths = config.worker_paths();
    sc.sandbox.write_paths = config.worker_paths();
    sc.media_runtime = media_runtime;
    tracing::info!(
        workers = sc.workers,
        memory_limit = config.worker_memory_limit,
        paths = ?sc.sandbox.read_paths,
        "starting media workers"
    );
    let rt = tokio::runtime::Handle::current();
    Ok(Some(fluo_worker::Supervisor::start(
        sc,
        &rt,
        log_worker_event,
    )))
}

/// The media workers' preparation, once before the first starts: GStreamer initialised in
/// this process brings the registry cache the workers read (`GST_REGISTRY`, else
/// `$XDG_CACHE_HOME` or `$HOME/.cache`, `gstreamer-1.0/`) up to date. On a first start (a new
/// installation, a new container) that is a scan of every plugin, seconds long: done once
/// here, without a time limit, rather than by every worker at once within its start timeout
/// (on a busy machine they were all killed, and retried, before any was ready).
fn prepare_media_workers() -> Result<(), String> {
    let t0 = std::time::Instant::now();
    fluo_gst::init()?;
    tracing::info!(
        ms = t0.elapsed().as_millis() as u64,
        "GStreamer initialised, its plugin registry up to date for the media workers"
    );
    Ok(())
}

/// A supervisor's report in the log: where an operator finds the workers' pids.
fn log_worker_event(ev: fluo_worker::SupervisorEvent) {
    use fluo_worker::SupervisorEvent as E;
    match ev {
        E::Started {
            worker,
            pid,
            sandbox,
        } => tracing::info!(
            worker,
            pid,
            landlock_abi = sandbox.landlock_abi,
            landlock_full = sandbox.landlock_full,
            seccomp = sandbox.seccomp,
            inherited_fds = sandbox.inherited_fds_closed,
            "media worker started"
        ),
        E::StartFailed {
            worker,
            error,
            retry_in,
        } => tracing::error!(worker, ?retry_in, "media worker did not start: {error}"),
        // Stopped at shutdown: not a death an operator needs to look at.
        E::Died(d) if d.cause == fluo_worker::DeathCause::Stopped => tracing::info!(
            worker = d.worker,
            pid = d.pid,
            cpu_ms = d.cpu.total().as_millis() as u64,
            "media worker stopped"
        ),
        E::Died(d) => tracing::warn!(
            worker = d.worker,
            pid = d.pid,
            jobs = d.jobs.len(),
            cpu_ms = d.cpu.total().as_millis() as u64,
            restart_in = ?d.restart_in,
            "media worker died: {}",
            d.cause
        ),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn handle(
    engine: &mut Engine,
    outboxes: &mut HashMap<ConnId, Outbox>,
    ops: &crate::Ops,
    msg: CoreMsg,
) {
    match msg {
        CoreMsg::Opened {
            conn,
            peer,
            outbox,
            kill,
            internal,
        } => {
            outboxes.insert(
                conn,
                Outbox {
                    tx: outbox,
                    kill: Some(kill),
                },
            );
            if internal {
                engine.internal_connection_opened(now(), conn, peer);
            } else {
                engine.connection_opened(now(), conn, peer);
            }
        }
        CoreMsg::Text { conn, text } => {
            engine.set_draining(ops.draining());
            let began = Instant::now();
            engine.handle_text(now(), conn, &text);
            if let Some(method) = engine.take_last_method() {
                ops.observe_request(method, began.elapsed());
            }
        }
        CoreMsg::Closed { conn } => {
            outboxes.remove(&conn);
            engine.connection_closed(now(), conn);
        }
    }
}

/// Hands what the engine has to send to the connections' outboxes; whether there was any.
fn flush(engine: &mut Engine, outboxes: &mut HashMap<ConnId, Outbox>) -> bool {
    let mut any = false;
    while let Some(out) = engine.poll_output() {
        any = true;
        match out {
            Output::Send { conn, text } => {
                let Some(o) = outboxes.get_mut(&conn) else {
                    continue;
                };
                if let Err(e) = o.tx.try_send(text) {
                    // A client that does not read its replies must not grow our memory:
                    // end its connection (its session then starts its grace period).
                    tracing::warn!(conn, "dropping connection: {e}");
                    if let Some(kill) = o.kill.take() {
                        let _ = kill.send(());
                    }
                    outboxes.remove(&conn);
                }
            }
        }
    }
    any
}
