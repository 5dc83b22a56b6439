//! The async shell around Fluo's engine: the Kurento WebSocket endpoint, configuration,
//! timers, machine readings and graceful shutdown.
//!
//! [`run`] serves on a listener that the caller bound, so tests start a server on
//! `127.0.0.1:0`; `src/bin/fluo.rs` is a thin `main` over it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cluster;
pub mod config;
mod core_loop;
mod host;
mod http;
mod link;
#[cfg(any(test, feature = "test-support"))]
pub mod log_capture;
pub mod modules;
pub mod ops;
pub mod tls;
mod ws;

/// Locks `m`, also when a thread panicked holding it (what it guards is plain data, still
/// usable): the server's shared state never turns one panic into many.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The binary a build with the `test-elements` feature makes (tests/e2e's crash test): the
/// server with its test-only elements, and its own media worker.
pub const TEST_ELEMENTS_BINARY: &str = "fluo-test-elements";

/// The hidden `fluo worker` subcommand: a media worker process, started and supervised by a
/// fluo server (crates/fluo-worker, docs/workers.md), never by hand.
pub const WORKER_SUBCOMMAND: &str = "worker";

/// Runs this process as a media worker: the worker machinery with the job kinds the fluo
/// binary hosts, GStreamer initialised inside the worker's sandbox. Never returns.
pub fn run_worker() -> ! {
    // The GStreamer jobs (player, recorder, transcoder); the server's elements start using
    // them once they are proxies on the media router (docs/workers.md, "Next").
    let mut registry = fluo_worker::worker::Registry::new();
    fluo_gst::jobs::register(&mut registry);
    // The modules' instances run in this worker's `gst.module` jobs: the compiled-in ones
    // and the WebAssembly ones of the server's folders (loaded now, before the sandbox).
    let (dirs, limits) = modules::from_env();
    modules::install(&dirs, limits);
    // FluoTestCrash's `test.crash` (and the other test jobs): a test build only.
    #[cfg(feature = "test-elements")]
    fluo_worker::test_jobs::register(&mut registry);
    // Each pong carries the worker's live pipelines: the server's stats and the soak count
    // them across processes.
    registry.gauges(|| fluo_worker::WorkerGauges {
        pipelines: fluo_gst::live_pipelines() as u64,
        elements: fluo_gst::live_elements() as u64,
        recorded_bytes: fluo_gst::recorded_bytes(),
    });
    fluo_worker::worker::run(registry, || {
        fluo_gst::init().inspect_err(|e| tracing::error!("media worker: {e}"))
    })
}

pub use config::Config;
pub use host::{rss_kib, ProcHost};
pub use ops::{Ops, Readiness};

/// Libraries whose `info` lines are per packet or per poll, not for an operator
/// (turn-client-proto logs the result of every event poll at `info`: about 145 lines a second
/// per relayed call): they log warnings and errors only unless `RUST_LOG` names them.
/// goog_cc (the bandwidth estimator, `--bwe on`) warns on the viewer's own feedback (odd
/// arrival times): a peer could flood the log, so it logs errors only.
const QUIET_LIBRARIES: [(&str, &str); 4] = [
    ("turn_client_proto", "warn"),
    ("turn_types", "warn"),
    ("stun_proto", "warn"),
    ("goog_cc", "error"),
];

/// The log filter for `RUST_LOG` (`info` when unset or invalid), with
/// [`QUIET_LIBRARIES`] at their level unless the filter names them.
pub fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;
    let spec = rust_log.map(str::trim).filter(|s| !s.is_empty());
    let mut filter = spec
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    for (lib, level) in QUIET_LIBRARIES {
        if !spec.is_some_and(|s| s.contains(lib)) {
            if let Ok(d) = format!("{lib}={level}").parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    filter
}

/// Whether the command line or `FLUO_LOG_FORMAT` asks for JSON log lines (`--log-format
/// json`): read before the command line is parsed, since logging starts first (the media
/// workers, started with `FLUO_LOG_FORMAT` inherited, log the same way).
pub fn log_format_wanted() -> LogFormat {
    let mut args = std::env::args().skip(1);
    let mut given = std::env::var("FLUO_LOG_FORMAT").ok();
    while let Some(a) = args.next() {
        if let Some(v) = a.strip_prefix("--log-format=") {
            given = Some(v.to_string());
        } else if a == "--log-format" {
            given = args.next();
        }
    }
    match given.as_deref().map(str::trim) {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: `tracing`'s default lines.
    Text,
    /// One JSON object a line (timestamp, level, target, message and the event's fields at
    /// the top level, the spans' fields under `span` / `spans`) for log shippers.
    Json,
}

/// Whether log lines written to a stream get ANSI colour codes: only on a terminal, and not
/// when `NO_COLOR` is set to something (<https://no-color.org>). The journal, a pipe, a file
/// or a container's log get plain lines.
pub fn log_colours(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// OpenCV's log level in the server and its workers when the operator sets none: its ERROR
/// lines are those of `facedetect` failing to load the nose, mouth and eye-pair cascades
/// that Debian does not ship and FaceOverlayFilter does not use (`make test` sets the same
/// for the tests, which run `facedetect` in their own process).
pub const OPENCV_LOG_LEVEL: &str = "FATAL";

/// Installs the process's log subscriber: [`log_filter`] over `rust_log`, lines as `format`,
/// coloured as [`log_colours`] says for standard output. GStreamer's log (standard error)
/// likewise: without colours, `GST_DEBUG_NO_COLOR=1` is set in this process's environment,
/// which GStreamer reads here, in the media workers (who inherit it) and in the plugin
/// scanner it runs to update its registry; `GST_DEBUG_COLOR_MODE` still wins. OpenCV's log
/// (standard error) keeps only its fatal lines: `OPENCV_LOG_LEVEL` is set to
/// [`OPENCV_LOG_LEVEL`] unless the operator set it, for this process and the media workers
/// (each FaceOverlayFilter's `facedetect` otherwise writes three ERROR lines about cascades
/// it does not use). Called first thing in `main`, before any other thread exists.
pub fn init_logging(rust_log: Option<&str>, format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::util::SubscriberInitExt;
    if !log_colours(std::io::stderr().is_terminal()) {
        std::env::set_var("GST_DEBUG_NO_COLOR", "1");
    }
    if std::env::var_os("OPENCV_LOG_LEVEL").is_none() {
        std::env::set_var("OPENCV_LOG_LEVEL", OPENCV_LOG_LEVEL);
    }
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(log_filter(rust_log))
            .with_ansi(log_colours(std::io::stdout().is_terminal()))
            .init(),
        LogFormat::Json => json_logger(log_filter(rust_log), std::io::stdout).init(),
    }
}

/// The JSON lines' subscriber: the event's fields at the top level, the span's (a request's
/// `object` and `pipeline`, see fluo-core's `ops.rs`) under `span`.
fn json_logger<W>(
    filter: tracing_subscriber::EnvFilter,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(writer)
        .finish()
}

/// Raises the soft limit on open files to the hard limit, as servers do at start: every
/// WebRTC, RtpEndpoint and ICE-TCP socket and every WebSocket is a descriptor, and the usual
/// soft limit of 1024 is reached by about 250 RtpEndpoints, after which connections can no
/// longer be accepted. Returns the soft limit before and after.
pub fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    let soft = before.current.unwrap_or(u64::MAX);
    let Some(hard) = before.maximum else {
        // No hard limit: leave the soft one alone rather than asking for "unlimited",
        // which the kernel refuses for open files.
        return Ok((soft, soft));
    };
    if soft >= hard {
        return Ok((soft, soft));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        },
    )
    .map_err(std::io::Error::from)?;
    Ok((soft, hard))
}

use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves the Kurento Protocol on `listener` until `shutdown` turns `true`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    run_with_tls(listener, None, config, shutdown).await
}

/// Like [`run`], also serving `wss://` on `secure` when given (listener and TLS settings).
pub async fn run_with_tls(
    listener: TcpListener,
    secure: Option<(TcpListener, tls::TlsSettings)>,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    run_with_ops(listener, secure, config, shutdown, Ops::new()).await
}

/// Serves the node-to-node link on `peer` (in a cluster) as node `me`, and starts the
/// entry's services of `router`: the ServerManager's lists across nodes and the relay
/// service (cascade), whose task (returned) releases its relays when the server stops.
fn start_link(
    peer: Option<TcpListener>,
    config: &Config,
    (me, view): (fluo_cluster::NodeId, Arc<cluster::View>),
    (router, core): (Option<&Arc<link::Router>>, &core_loop::Core),
    shutdown: &watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if let (Some(l), Some(secret)) = (peer, &config.cluster_secret) {
        let owner = link::Owner {
            me,
            view,
            secret: Arc::new(secret.clone()),
            silence: config.peer_silence,
        };
        tokio::spawn(link::accept_loop(l, owner, core.clone(), shutdown.clone()));
    }
    let router = router?;
    link::Manager::start(router.clone(), core.clone(), shutdown.clone());
    link::relay::start(router.clone(), core.clone(), shutdown.clone())
}

/// Serves the `wss://` listener of `secure`, if any, as the plain one (one count of
/// `connections` for both: a client cannot double its share by using both).
fn serve_tls(
    secure: Option<(TcpListener, tls::TlsSettings)>,
    (config, core): (&Arc<Config>, &core_loop::Core),
    connections: &ws::Connections,
    router: &Option<Arc<link::Router>>,
    shutdown: &watch::Receiver<bool>,
) {
    if let Some((l, settings)) = secure {
        let acceptor = ws::Acceptor::Tls(settings.acceptor());
        let (config, core, shutdown) = (config.clone(), core.clone(), shutdown.clone());
        let (connections, router) = (connections.clone(), router.clone());
        tokio::spawn(async move {
            ws::accept_loop(l, acceptor, config, core, connections, router, shutdown).await
        });
    }
}

/// Like [`run_with_tls`], with the operational state `ops` (health, draining, metrics) that
/// the caller keeps: the operations listener (`--metrics-port`) serves it, unless the
/// caller serves it already ([`ops::serve_on`]).
pub async fn run_with_ops(
    listener: TcpListener,
    secure: Option<(TcpListener, tls::TlsSettings)>,
    config: Config,
    shutdown: watch::Receiver<bool>,
    ops: Arc<Ops>,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let tls = secure.as_ref().map(|(_, t)| t.clone());
    ops.watch_runtime();
    start_ops(&config, &ops, tls.clone(), shutdown.clone()).await?;
    let routes = start_http(&config, tls, shutdown.clone()).await?;
    let peer = bind_peer(&config).await?;
    let peer_port = peer
        .as_ref()
        .map(|l| l.local_addr().map(|a| a.port()))
        .transpose()?;
    let plan = cluster::Plan::new(&config, listener.local_addr()?, peer_port)?;
    let (router, me) = (plan.router(), (plan.me(), plan.view()));
    tokio::spawn(ops::watch_drain(
        ops.clone(),
        router.clone(),
        shutdown.clone(),
    ));
    let (core, done) =
        core_loop::spawn(config.clone(), routes, shutdown.clone(), ops.clone(), plan)?;
    // The relay service releases its relays when the server stops: waited for below.
    let relays = start_link(peer, &config, me, (router.as_ref(), &core), &shutdown);
    let connections = ws::Connections::default();
    ops.set_connections(connections.live());
    serve_tls(secure, (&config, &core), &connections, &router, &shutdown);
    ops.set_accepting(true);
    let serving = ws::accept_loop(
        listener,
        ws::Acceptor::Plain,
        config,
        core,
        connections,
        router,
        shutdown.clone(),
    );
    tokio::pin!(serving);
    let mut done = done;
    tokio::select! {
        r = &mut serving => {
            if *shutdown.borrow() {
                link::relay::stopped(relays).await;
                // The listeners wound down before the core: it still stops its workers and
                // writes the cluster releases and leave (each bounded), so wait for it.
                if tokio::time::timeout(CORE_STOP, &mut done).await.is_err() {
                    tracing::warn!("the engine did not stop within {} s", CORE_STOP.as_secs());
                }
            }
            r
        }
        end = &mut done => {
            if *shutdown.borrow() {
                link::relay::stopped(relays).await;
                // Normal shutdown: the core finished first. Recordings stopped by the release
                // get their files finalised (bounded), then the listener winds down too.
                let left = tokio::task::spawn_blocking(|| {
                    fluo_gst::wait_idle(std::time::Duration::from_secs(5))
                })
                .await
                .unwrap_or(0);
                if left > 0 {
                    tracing::warn!(left, "recordings not finalised at shutdown");
                }
                return serving.await;
            }
            // The engine is gone (a bug): do not pretend to serve.
            Err(std::io::Error::other(format!("the engine task stopped: {end:?}")))
        }
    }
}

/// Binds the node-to-node link's listener (in a cluster only) on `--bind`'s address and
/// `--peer-port`; a port that cannot be bound fails the start.
async fn bind_peer(config: &Config) -> std::io::Result<Option<TcpListener>> {
    if config.cluster.is_none() {
        return Ok(None);
    }
    let (ip, port) = (config.peer_bind.unwrap_or(config.bind), config.peer_port);
    let l = TcpListener::bind((ip, port)).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for the node-to-node link on {ip}:{port} (--peer-bind, --peer-port): {e}"),
        )
    })?;
    tracing::info!("node-to-node link on {}", l.local_addr()?);
    Ok(Some(l))
}

/// How long a shutdown waits for the core after the listeners ended: its own bounds are the
/// workers' stop (6 s) and the cluster's releases and leave (2 s).
const CORE_STOP: std::time::Duration = std::time::Duration::from_secs(9);

/// Binds the operations listener when `--metrics-port` asks for one (and the caller does
/// not serve `ops` already); a port that cannot be bound fails the start.
async fn start_ops(
    config: &Config,
    ops: &Arc<Ops>,
    tls: Option<tls::TlsSettings>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let Some(port) = config.metrics_port else {
        return Ok(());
    };
    if ops.metrics_addr().is_some() {
        return Ok(());
    }
    let tls = match (config.metrics_tls, tls) {
        (false, _) => None,
        (true, Some(t)) => Some(t.acceptor()),
        (true, None) => return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "--metrics-tls needs the secure WebSocket's certificate (--secure-port and --certificate)",
        )),
    };
    // Loopback unless the operator binds it elsewhere: the listener is for local tools.
    let ip = config
        .metrics_address
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let listener = TcpListener::bind((ip, port)).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for metrics on {ip}:{port}: {e}"),
        )
    })?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        "operations listener on {scheme}://{local}/ (metrics, health, drain, pipeline view)"
    );
    if let Some(f) = &config.metrics_port_file {
        std::fs::write(f, local.port().to_string())?;
    }
    let (ops, token) = (ops.clone(), config.auth_token.clone());
    // Bound here: the address is known before the start goes on.
    if let Ok(mut a) = ops.address.lock() {
        *a = Some(local);
    }
    tokio::spawn(ops::serve_on(ops, listener, token, tls, shutdown));
    Ok(())
}

/// Binds the HTTP listener (HttpPostEndpoint's URLs) and serves it; a port that cannot be
/// bound is logged, and HttpPostEndpoint's create then fails with 40300, as in KMS.
async fn start_http(
    config: &Config,
    tls: Option<tls::TlsSettings>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Arc<fluo_core::http::HttpRoutes>> {
    let routes = Arc::new(fluo_core::http::HttpRoutes::new());
    let ip = config.http_address.unwrap_or(config.bind);
    let acceptor = match (config.http_tls, tls) {
        (false, _) => ws::Acceptor::Plain,
        (true, Some(t)) => ws::Acceptor::Tls(t.acceptor()),
        (true, None) => return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "--http-tls needs the secure WebSocket's certificate (--secure-port and --certificate)",
        )),
    };
    let listener = match TcpListener::bind((ip, config.http_port)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(
                "cannot listen for HTTP on {ip}:{}: {e}; HttpPostEndpoint is not available (see --http-port)",
                config.http_port
            );
            return Ok(routes);
        }
    };
    let port = listener.local_addr()?.port();
    let host = config
        .http_announced_address
        .clone()
        .unwrap_or_else(|| announced(ip).to_string());
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let scheme = if config.http_tls { "https" } else { "http" };
    let base = format!("{scheme}://{host}:{port}");
    tracing::info!("HTTP listener on {ip}:{port}, URLs {base}/...");
    routes.set_base(base);
    let settings = Arc::new(http::HttpSettings {
        token: config.auth_token.clone(),
        max_body: config.http_max_body,
        read_timeout: config.http_read_timeout,
    });
    let r = routes.clone();
    tokio::spawn(async move { http::accept_loop(listener, acceptor, r, settings, shutdown).await });
    Ok(routes)
}

/// The address a listener on `ip` is reached at: `ip` itself, or for a wildcard the address
/// of the interface of the default route (a UDP socket "connected" to a documentation
/// address: no packet is sent), else loopback.
fn announced(ip: std::net::IpAddr) -> std::net::IpAddr {
    if !ip.is_unspecified() {
        return ip;
    }
    let (any, probe): (std::net::IpAddr, std::net::IpAddr) = if ip.is_ipv4() {
        ([0, 0, 0, 0].into(), [192, 0, 2, 1].into())
    } else {
        (
            std::net::Ipv6Addr::UNSPECIFIED.into(),
            "2001:db8::1"
                .parse()
                .unwrap_or(std::net::Ipv6Addr::LOCALHOST.into()),
        )
    };
    std::net::UdpSocket::bind((any, 0))
        .and_then(|s| s.connect((probe, 9)).map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(if ip.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let now = getrlimit(Resource::Nofile);
        let hard = now.maximum.expect("a hard limit on open files");
        // A low soft limit as a login shell may give (the hard one stays).
        let low = 256.min(hard);
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(low),
                maximum: Some(hard),
            },
        )
        .expect("lower");
        let (before, after) = super::raise_open_files_limit().expect("raise");
        assert_eq!((before, after), (low, hard));
        assert_eq!(getrlimit(Resource::Nofile).current, Some(hard));
    }

    use super::log_filter;

    /// The lines logged through `log_filter(rust_log)` by `f`.
    fn logged(rust_log: Option<&str>, f: impl FnOnce()) -> String {
        let buf = super::log_capture::LogBuffer::default();
        let sub = tracing_subscriber::fmt()
            .with_env_filter(log_filter(rust_log))
            .with_writer(buf.clone())
            .finish();
        tracing::subscriber::with_default(sub, f);
        buf.text()
    }

    /// A JSON line about an element created or invoked in a request carries the element's
    /// pipeline (and the invoked object) as fields.
    #[test]
    fn json_lines_about_an_object_carry_its_id_and_pipeline() {
        use fluo_core::{Engine, EngineConfig, FixedHost, Now, Output};
        let buf = super::log_capture::LogBuffer::default();
        let log =
            tracing::Dispatch::new(super::json_logger(log_filter(Some("debug")), buf.clone()));
        let now = Now {
            mono: std::time::Instant::now(),
            wall_ms: 0,
        };
        let mut e = Engine::new(EngineConfig::default(), Box::new(FixedHost::default()), now);
        let mut ask = |text: String| -> serde_json::Value {
            tracing::dispatcher::with_default(&log, || e.handle_text(now, 1, &text));
            let Some(Output::Send { text, .. }) = e.poll_output() else {
                panic!("no answer")
            };
            serde_json::from_str(&text).unwrap()
        };
        let r = ask(
            r#"{"jsonrpc":"2.0","id":1,"method":"create","params":{"type":"MediaPipeline"}}"#
                .into(),
        );
        let pipe = r["result"]["value"].as_str().unwrap().to_string();
        let sid = r["result"]["sessionId"].as_str().unwrap().to_string();
        let create = serde_json::json!({"jsonrpc":"2.0","id":2,"method":"create","params":{
            "type":"PassThrough","constructorParams":{"mediaPipeline":pipe},"sessionId":sid}});
        let r = ask(create.to_string());
        let el = r["result"]["value"].as_str().unwrap().to_string();
        let release = serde_json::json!({"jsonrpc":"2.0","id":3,"method":"release","params":{
            "object":el,"sessionId":sid}});
        ask(release.to_string());
        let lines: Vec<serde_json::Value> = buf
            .lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let about = |msg: &str| {
            lines
                .iter()
                .find(|l| l["message"] == msg && l["id"] == el.as_str())
                .unwrap_or_else(|| panic!("no '{msg}' line about {el}: {lines:?}"))
        };
        let created = about("created");
        assert_eq!(created["span"]["pipeline"], pipe.as_str(), "{created}");
        let destroyed = about("destroyed");
        assert_eq!(destroyed["span"]["object"], el.as_str(), "{destroyed}");
        assert_eq!(destroyed["span"]["pipeline"], pipe.as_str(), "{destroyed}");
    }

    #[test]
    fn chatty_libraries_log_warnings_only_unless_named() {
        let emit = || {
            tracing::info!(target: "turn_client_proto::protocol", "return=None");
            tracing::warn!(target: "turn_client_proto::protocol", "permission refused");
            tracing::info!(target: "fluo_rtc::turn", "TURN relay allocated");
        };
        for rust_log in [None, Some("info"), Some("debug"), Some("not a [filter")] {
            let text = logged(rust_log, emit);
            assert!(!text.contains("return=None"), "{rust_log:?}: {text}");
            assert!(text.contains("permission refused") && text.contains("relay allocated"));
        }
        let text = logged(Some("info,turn_client_proto=info"), emit);
        assert!(text.contains("return=None"), "named: {text}");
    }

    #[test]
    fn the_bandwidth_estimator_logs_errors_only() {
        let emit = || {
            tracing::warn!(target: "goog_cc::inter_arrival_delta", "arrival time clock offset");
            tracing::error!(target: "goog_cc::goog_cc_network_control", "odd report");
        };
        let text = logged(Some("debug"), emit);
        assert!(!text.contains("clock offset"), "{text}");
        assert!(text.contains("odd report"), "{text}");
    }
}
