//! Configuration: defaults, then the KMS-style config file (`kurento.conf.json`), then
//! environment variables, then command-line flags.

use clap::Parser;
use serde_json::Value;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Command-line flags of `fluo`.
#[derive(Debug, Parser, Default)]
#[command(
    name = "fluo",
    version,
    about = "Fluo: a Kurento-compatible media server",
    long_about = "Fluo speaks the Kurento Protocol (JSON-RPC 2.0 over WebSocket) so that \
                  kurento-client applications run against it unchanged.\n\n\
                  Settings are read, later ones winning: built-in defaults, the config file \
                  (same keys as KMS's kurento.conf.json, comments allowed), environment \
                  variables, then these flags. Logging: RUST_LOG (e.g. RUST_LOG=debug or \
                  RUST_LOG=fluo_core=trace)."
)]
pub struct Cli {
    /// Config file in kurento.conf.json format (keys used: mediaServer.net.websocket.port,
    /// .address, .path; mediaServer.resources.garbageCollectorPeriod, .disableRequestCache;
    /// metadata; fluo.* for Fluo's own settings).
    #[arg(
        short = 'f',
        long = "config",
        visible_alias = "conf-file",
        env = "KURENTO_CONF_FILE"
    )]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0].
    #[arg(long, env = "FLUO_BIND")]
    pub bind: Option<IpAddr>,
    /// WebSocket port; 0 picks a free port [default: 8888].
    #[arg(long, env = "FLUO_PORT")]
    pub port: Option<u16>,
    /// WebSocket URL path [default: kurento].
    #[arg(long, env = "FLUO_PATH")]
    pub path: Option<String>,
    /// Write the bound port number to this file once listening (for tests using port 0).
    #[arg(long)]
    pub port_file: Option<PathBuf>,
    /// Seconds a session whose WebSocket went away keeps its objects [default: 240].
    #[arg(long, env = "FLUO_SESSION_GRACE_SECS")]
    pub session_grace_secs: Option<u64>,
    /// Largest request accepted, in bytes; larger ones get an error reply [default: 1048576].
    #[arg(long, env = "FLUO_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Turn off the 20 s request replay cache.
    #[arg(long)]
    pub disable_request_cache: bool,
    /// Network interfaces whose addresses become WebRTC host candidates, comma-separated
    /// (e.g. "eth0" or "lo") [default: every non-loopback interface].
    #[arg(long, env = "KMS_NETWORK_INTERFACES", value_delimiter = ',')]
    pub network_interfaces: Option<Vec<String>>,
    /// Lowest UDP port for media [default: 1024].
    #[arg(long, env = "KMS_MIN_PORT")]
    pub min_port: Option<u16>,
    /// Highest UDP port for media [default: 65535].
    #[arg(long, env = "KMS_MAX_PORT")]
    pub max_port: Option<u16>,
    /// Announce every local IPv4 ICE candidate with this address (KMS's externalIPv4), for a
    /// server behind a 1:1 NAT with a known public address [default: none].
    #[arg(long = "external-ipv4", env = "KMS_EXTERNAL_IPV4")]
    pub external_ipv4: Option<std::net::Ipv4Addr>,
    /// The same for IPv6 candidates (KMS's externalIPv6) [default: none].
    #[arg(long = "external-ipv6", env = "KMS_EXTERNAL_IPV6")]
    pub external_ipv6: Option<std::net::Ipv6Addr>,
    /// TURN server for relay candidates, user:password@host:port[?transport=udp] (KMS's
    /// turnURL) [default: none].
    #[arg(long = "turn-url", env = "KMS_TURN_URL")]
    pub turn_url: Option<String>,
    /// Offer passive ICE-TCP candidates too, 1 or 0 (KMS's iceTcp) [default: 1].
    #[arg(long = "ice-tcp", env = "KMS_ICE_TCP", value_parser = parse_flag)]
    pub ice_tcp: Option<bool>,
    /// STUN server asked at start for the public address of each media socket (KMS's
    /// stunServerAddress) [default: none].
    #[arg(long = "stun-address", env = "KMS_STUN_IP")]
    pub stun_address: Option<IpAddr>,
    /// Its port (KMS's stunServerPort) [default: 3478].
    #[arg(long = "stun-port", env = "KMS_STUN_PORT")]
    pub stun_port: Option<u16>,
    /// Require this token from every client at the WebSocket upgrade, as
    /// `Authorization: Bearer <token>` or `?access_token=<token>` (what kurento-client sends
    /// with its `access_token` option). Off by default, as in KMS.
    #[arg(long, env = "FLUO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Also serve wss:// on this port (KMS: mediaServer.net.websocket.secure.port); needs
    /// --certificate.
    #[arg(long)]
    pub secure_port: Option<u16>,
    /// PEM file with the certificate chain and its private key, as KMS's
    /// mediaServer.net.websocket.secure.certificate.
    #[arg(long)]
    pub certificate: Option<PathBuf>,
    /// With --secure-port 0: write the bound wss port to this file (tests).
    #[arg(long)]
    pub secure_port_file: Option<PathBuf>,
    /// URIs that PlayerEndpoint, RecorderEndpoint and the overlay filters' images may use,
    /// comma-separated: `scheme://` for a whole scheme, `file:///dir/` for a directory tree,
    /// else a URI prefix ending at a path-segment boundary; with a list, players and image
    /// fetches follow no HTTP redirect and players play no HLS/DASH playlist [default: any
    /// URI, as KMS].
    #[arg(long, env = "FLUO_URI_ALLOW", value_delimiter = ',')]
    pub uri_allow: Option<Vec<String>>,
    /// What GStreamerFilter commands may use besides the built-in pure transforms,
    /// comma-separated: factory names, `factory.property` for a string property (a file or
    /// URI on some elements), `*` for anything, parsed by GStreamer as in KMS
    /// [default: the built-in transforms only].
    #[arg(long, env = "FLUO_GST_FILTER_ALLOW", value_delimiter = ',')]
    pub gst_filter_allow: Option<Vec<String>>,
    /// Most sessions at once (fluo.maxSessions) [default: 10000].
    #[arg(long)]
    pub max_sessions: Option<usize>,
    /// Most live sessions created from one client address, an IPv6 /64 counting as one
    /// address (fluo.maxSessionsPerAddress) [default: 2000].
    #[arg(long)]
    pub max_sessions_per_address: Option<usize>,
    /// Most media objects (pipelines and elements) at once (fluo.maxObjects)
    /// [default: 20000].
    #[arg(long)]
    pub max_objects: Option<usize>,
    /// Most objects one session may reference (fluo.maxObjectsPerSession) [default: 2000].
    #[arg(long)]
    pub max_objects_per_session: Option<usize>,
    /// Most live objects created on one WebSocket connection
    /// (fluo.maxObjectsPerConnection) [default: 2000].
    #[arg(long)]
    pub max_objects_per_connection: Option<usize>,
    /// Most live objects created from one client address (fluo.maxObjectsPerAddress)
    /// [default: 5000].
    #[arg(long)]
    pub max_objects_per_address: Option<usize>,
    /// Most media pipelines at once (fluo.maxPipelines) [default: 2000].
    #[arg(long)]
    pub max_pipelines: Option<usize>,
    /// Most elements in one pipeline (fluo.maxElementsPerPipeline) [default: 2000].
    #[arg(long)]
    pub max_elements_per_pipeline: Option<usize>,
    /// Most WebSocket connections at once (fluo.maxConnections) [default: 10000].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Most WebSocket connections at once from one client address, an IPv6 /64 counting as
    /// one (fluo.maxConnectionsPerAddress) [default: 2500].
    #[arg(long)]
    pub max_connections_per_address: Option<usize>,
    /// Seconds a WebSocket's socket may accept nothing while replies or events wait before
    /// the connection is closed (fluo.wsWriteTimeoutSeconds) [default: 20].
    #[arg(long)]
    pub ws_write_timeout_secs: Option<u64>,
    /// Media worker processes that run PlayerEndpoint and RecorderEndpoint pipelines, so that
    /// a GStreamer crash ends one worker, not the server (fluo.workers); 0 runs them in the
    /// server's process [default: two per core, at least two].
    #[arg(long, env = "FLUO_WORKERS")]
    pub workers: Option<usize>,
    /// Each media worker's memory limit (RLIMIT_DATA: heap, mappings, thread stacks), in
    /// bytes or with a K, M or G suffix (fluo.workerMemoryLimit); a worker that reaches it
    /// aborts, its elements raise Error events and it is restarted [default: 2G].
    #[arg(long, env = "FLUO_WORKER_MEMORY_LIMIT", value_parser = parse_size)]
    pub worker_memory_limit: Option<u64>,
    /// A folder of WebAssembly modules (`*.wasm`, docs/modules.md), loaded at start; the flag
    /// may repeat. KURENTO_MODULES_PATH, KMS's variable for its module folders, is taken too:
    /// folders separated by ':' [default: none].
    #[arg(
        long = "modules-dir",
        env = "KURENTO_MODULES_PATH",
        value_delimiter = ':'
    )]
    pub modules_dir: Vec<PathBuf>,
    /// How long one call of a WebAssembly module's element (a frame, a method, create) may
    /// run before it is stopped, in milliseconds [default: 200].
    #[arg(long, env = "FLUO_WASM_CALL_TIME_LIMIT")]
    pub wasm_call_time_limit: Option<u64>,
    /// The most memory one WebAssembly module's element may use, in bytes or with a K, M or
    /// G suffix [default: 64M].
    #[arg(long, env = "FLUO_WASM_MEMORY_LIMIT", value_parser = parse_size)]
    pub wasm_memory_limit: Option<u64>,
    /// Port of the HTTP listener that HttpPostEndpoint's URLs are on; 0 picks a free port
    /// (KMS: modules.kurento.HttpEndpoint.serverPort) [default: 9091].
    #[arg(long, env = "FLUO_HTTP_PORT")]
    pub http_port: Option<u16>,
    /// Address the HTTP listener binds (KMS: HttpEndpoint.serverAddress) [default: --bind's].
    #[arg(long, env = "FLUO_HTTP_ADDRESS")]
    pub http_address: Option<IpAddr>,
    /// Host or address that getUrl() puts in its URLs (KMS: HttpEndpoint.announcedAddress)
    /// [default: the listener's address; for 0.0.0.0 or ::, the address of the default
    /// route's interface].
    #[arg(long, env = "FLUO_HTTP_ANNOUNCED_ADDRESS")]
    pub http_announced_address: Option<String>,
    /// Serve the HTTP listener over TLS (https://) with --certificate (fluo.httpTls).
    #[arg(long)]
    pub http_tls: bool,
    /// Largest body an HttpPostEndpoint takes, in bytes or with K, M or G
    /// (fluo.httpMaxBody) [default: 2G].
    #[arg(long, value_parser = parse_size)]
    pub http_max_body: Option<u64>,
    /// Seconds an upload may send nothing before it is cut off with 408
    /// (fluo.httpReadTimeoutSeconds) [default: 10].
    #[arg(long)]
    pub http_read_timeout_secs: Option<u64>,
    /// Port of the operations listener: /metrics (Prometheus), /health/live, /health/ready,
    /// /admin/drain; 0 picks a free port (docs/operations.md) [default: off].
    #[arg(long, env = "FLUO_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Address the operations listener binds [default: 127.0.0.1].
    #[arg(long, env = "FLUO_METRICS_ADDRESS")]
    pub metrics_address: Option<IpAddr>,
    /// Serve the operations listener over TLS (https://) with --certificate.
    #[arg(long)]
    pub metrics_tls: bool,
    /// Write the operations listener's bound port to this file.
    #[arg(long)]
    pub metrics_port_file: Option<PathBuf>,
    /// Once draining (SIGUSR1 or POST /admin/drain) and drained (no media pipelines left,
    /// and in a cluster no client of this node holding objects on another node), stop as on
    /// SIGTERM (docs/operations.md, "Draining").
    #[arg(long, env = "FLUO_EXIT_WHEN_DRAINED")]
    pub exit_when_drained: bool,
    /// Log line format: `text` for people, `json` (one JSON object a line) for log shippers
    /// [default: text].
    #[arg(long, env = "FLUO_LOG_FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Estimate receive-only viewers' bandwidth from their transport-wide congestion
    /// feedback (TWCC, kept in their answers) to choose their simulcast or SVC layer: `auto`
    /// while a viewer gets a layered source's video (otherwise its REMB bounds its publisher,
    /// as with `off`), `on` always, `off` never (TWCC declined) (docs/simulcast.md)
    /// [default: auto].
    #[arg(long, env = "FLUO_BWE", value_parser = parse_bwe)]
    pub bwe: Option<fluo_rtc::BweMode>,
    /// Experimental: join the cluster coordinated by this Redis 7, `redis://host:port` or
    /// `redis+unix:///path/to/socket`: this node is listed with its load, owns the pipelines
    /// it creates, and forwards requests for other nodes' pipelines to them over the
    /// node-to-node link (--peer-port, --cluster-secret; docs/cluster.md) [default: none, a
    /// single node].
    #[arg(long, env = "FLUO_CLUSTER")]
    pub cluster: Option<String>,
    /// This node's id in the cluster: 1 to 128 ASCII letters, digits, '.', '-', '_' or ':'
    /// [default: the host name and the WebSocket port, as `host:8888`].
    #[arg(long, env = "FLUO_NODE_ID")]
    pub node_id: Option<String>,
    /// The host name or IP address (no port, no scheme) clients and other nodes reach this
    /// node at, in its cluster record [default: --bind's address; for 0.0.0.0 or ::, the address of the default
    /// route's interface].
    #[arg(long, env = "FLUO_ADVERTISE")]
    pub advertise: Option<String>,
    /// Port of the node-to-node link (with --cluster only; bound on --peer-bind's address,
    /// other nodes reach it at --advertise's); 0 picks a free port [default: 8889].
    #[arg(long, env = "FLUO_PEER_PORT")]
    pub peer_port: Option<u16>,
    /// Address the node-to-node link listens on (with --cluster only), e.g. a private
    /// interface's, so that clients cannot reach it; other nodes reach it at this address
    /// unless it is a wildcard [default: --bind's, reached at --advertise's].
    #[arg(long, env = "FLUO_PEER_BIND")]
    pub peer_bind: Option<IpAddr>,
    /// The secret every node of the cluster shares, at least 16 bytes, required with
    /// --cluster: the node-to-node link is authenticated with it (an HMAC-SHA256
    /// challenge-response; it is never sent). Prefer the environment variable to the flag.
    #[arg(long, env = "FLUO_CLUSTER_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub cluster_secret: Option<ClusterSecret>,
    /// How long a node-to-node link may stay silent (each side pings every second) before it
    /// counts as broken (its requests in flight answered 40004, its Error subscribers told),
    /// in milliseconds, 1500 to 20000, the same on every node: longer rides out CPU stalls,
    /// shorter detects a frozen node sooner [default: 3000].
    #[arg(long, env = "FLUO_PEER_SILENCE_MS", value_parser = clap::value_parser!(u64).range(1500..=20000))]
    pub peer_silence_ms: Option<u64>,
    /// How many relays of one source (cascade, with --cluster only) an element feeds at
    /// most: the source itself, then each relay's end feeds at most this many more, so that
    /// relays to many nodes form a tree, 1 to 64 (docs/cluster.md, "Cascade") [default: 4].
    #[arg(long, env = "FLUO_RELAY_FANOUT", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub relay_fanout: Option<u64>,
}

/// The cluster secret as given (checked with the other flags), never printed.
fn parse_secret(s: &str) -> Result<ClusterSecret, String> {
    Ok(ClusterSecret(s.as_bytes().to_vec()))
}

/// A size in bytes: a number, optionally with a K, M or G suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mul: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("'{t}': the suffix must be K, M or G")),
            };
            (&t[..i], mul)
        }
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            format!("'{t}' is not a size (a positive number of bytes, or with K, M or G)")
        })
}

/// A KMS-style boolean: 1/0, true/false.
fn parse_flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("'{other}' is not 1 or 0")),
    }
}

/// `--bwe`: `auto`, or a flag (`on`, `off` and their synonyms).
fn parse_bwe(s: &str) -> Result<fluo_rtc::BweMode, String> {
    use fluo_rtc::BweMode::{Auto, Off, On};
    match (s.trim().eq_ignore_ascii_case("auto"), parse_flag(s)) {
        (true, _) => Ok(Auto),
        (_, Ok(on)) => Ok(if on { On } else { Off }),
        _ => Err(format!("'{}' is not auto, on or off", s.trim())),
    }
}

/// Effective settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub bind: IpAddr,
    /// Listen port.
    pub port: u16,
    /// URL path without the leading slash.
    pub path: String,
    /// Where to write the bound port.
    pub port_file: Option<PathBuf>,
    /// Session grace period.
    pub session_grace: Duration,
    /// Largest accepted message; bigger gets an error reply.
    pub max_message_bytes: usize,
    /// Replay cache on/off.
    pub request_cache: bool,
    /// `metadata` subtree as JSON text ("" when absent).
    pub metadata: String,
    /// Most media objects on the server.
    pub max_objects: usize,
    /// Most pipelines.
    pub max_pipelines: usize,
    /// Most elements per pipeline.
    pub max_elements_per_pipeline: usize,
    /// Most objects referenced by one session.
    pub max_objects_per_session: usize,
    /// Most live objects created on one connection.
    pub max_objects_per_connection: usize,
    /// Most live objects created from one client address.
    pub max_objects_per_address: usize,
    /// Most sessions on the server.
    pub max_sessions: usize,
    /// Most live sessions created from one client address.
    pub max_sessions_per_address: usize,
    /// Most simultaneous WebSocket connections.
    pub max_connections: usize,
    /// Most simultaneous WebSocket connections from one client address (IPv6: one /64).
    pub max_connections_per_address: usize,
    /// A connection whose socket accepts nothing this long with frames waiting is closed.
    pub ws_write_timeout: Duration,
    /// WebRTC network settings.
    pub net: fluo_rtc::NetSettings,
    /// Token required at the WebSocket upgrade (`None`: anyone may connect).
    pub auth_token: Option<String>,
    /// wss:// port (`None`: no secure listener).
    pub secure_port: Option<u16>,
    /// PEM with the certificate chain and private key for wss://.
    pub certificate: Option<PathBuf>,
    /// Where to write the bound wss port.
    pub secure_port_file: Option<PathBuf>,
    /// Allowed player/recorder URIs (empty: any).
    pub uri_allow: Vec<String>,
    /// What GStreamerFilter commands may use besides the built-in transforms (`None`: only
    /// those).
    pub gst_filter_allow: Option<Vec<String>>,
    /// Media worker processes for PlayerEndpoint and RecorderEndpoint pipelines (0: in the
    /// server's process).
    pub workers: usize,
    /// Each media worker's memory limit in bytes.
    pub worker_memory_limit: u64,
    /// The program media workers run (`fluo`, started as `fluo worker`); `None`: this
    /// process's own program when it is `fluo`, else the `fluo` built next to it (tests).
    pub worker_program: Option<PathBuf>,
    /// The folders of WebAssembly modules.
    pub modules_dirs: Vec<PathBuf>,
    /// Each WebAssembly module element's limits.
    pub wasm_limits: fluo_module_wasm::Limits,
    /// The HTTP listener's port (0: any).
    pub http_port: u16,
    /// Its address (`None`: `bind`).
    pub http_address: Option<IpAddr>,
    /// The host its URLs announce (`None`: from its address).
    pub http_announced_address: Option<String>,
    /// https:// with `certificate`.
    pub http_tls: bool,
    /// Largest upload body.
    pub http_max_body: u64,
    /// An upload sending nothing this long is cut off.
    pub http_read_timeout: Duration,
    /// The operations listener's port (`None`: no listener; 0: any).
    pub metrics_port: Option<u16>,
    /// Its address (`None`: `bind`).
    pub metrics_address: Option<IpAddr>,
    /// https:// with `certificate`.
    pub metrics_tls: bool,
    /// Where to write its bound port.
    pub metrics_port_file: Option<PathBuf>,
    /// Log lines as JSON (`--log-format json`): the media workers are told too.
    pub log_json: bool,
    /// Stop once draining and drained (`--exit-when-drained`).
    pub exit_when_drained: bool,
    /// The cluster's Redis URL (`None`: a single node, coordinated in process).
    pub cluster: Option<String>,
    /// This node's id (`None`: the host name and the WebSocket port).
    pub node_id: Option<fluo_cluster::NodeId>,
    /// The host clients and other nodes reach this node at (`None`: from `bind`).
    pub advertise: Option<String>,
    /// The node-to-node link's port (with `cluster` only).
    pub peer_port: u16,
    /// The node-to-node link's address (`None`: `bind`).
    pub peer_bind: Option<IpAddr>,
    /// The cluster's shared secret (set whenever `cluster` is).
    pub cluster_secret: Option<ClusterSecret>,
    /// How long a node-to-node link may stay silent before it counts as broken.
    pub peer_silence: Duration,
    /// How many relays of one source an element feeds at most (`--relay-fanout`).
    pub relay_fanout: usize,
}

/// The cluster's shared secret: never printed (its `Debug` says how long it is only).
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(pub Vec<u8>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterSecret({} bytes)", self.0.len())
    }
}

/// The shortest cluster secret accepted.
pub const CLUSTER_SECRET_MIN: usize = 16;

impl Config {
    /// The warning to print at start when anyone on the network can drive this server: it
    /// listens beyond loopback and asks for no token (KMS's default, kept for compatibility).
    pub fn exposure_warning(&self) -> Option<String> {
        if self.bind.is_loopback() || self.auth_token.is_some() {
            return None;
        }
        Some(format!(
            "listening on {} without a token: anyone who reaches this port can create pipelines, play and record URIs and files on this machine{}; set --auth-token (FLUO_AUTH_TOKEN) or --bind 127.0.0.1",
            self.bind,
            if self.uri_allow.is_empty() {
                " (no --uri-allow list)"
            } else {
                ""
            }
        ))
    }
}

impl Default for Config {
    fn default() -> Self {
        // The engine's limits have one set of defaults, in fluo-core.
        let e = fluo_core::EngineConfig::default();
        Self {
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 8888,
            path: "kurento".into(),
            port_file: None,
            session_grace: Duration::from_secs(240),
            max_message_bytes: 1 << 20,
            request_cache: true,
            metadata: String::new(),
            max_objects: e.max_objects,
            max_pipelines: e.max_pipelines,
            max_elements_per_pipeline: e.max_elements_per_pipeline,
            max_objects_per_session: e.max_objects_per_session,
            max_objects_per_connection: e.max_objects_per_connection,
            max_objects_per_address: e.max_objects_per_address,
            max_sessions: e.max_sessions,
            max_sessions_per_address: e.max_sessions_per_address,
            max_connections: 10_000,
            max_connections_per_address: 2_500,
            ws_write_timeout: Duration::from_secs(20), // kurento-client's request timeout
            net: fluo_rtc::NetSettings::default(),
            auth_token: None,
            secure_port: None,
            certificate: None,
            secure_port_file: None,
            uri_allow: vec![],
            gst_filter_allow: None,
            workers: fluo_worker::supervisor::default_workers(),
            worker_memory_limit: fluo_worker::Limits::default()
                .memory_bytes
                .unwrap_or(2 << 30),
            worker_program: None,
            modules_dirs: vec![],
            wasm_limits: fluo_module_wasm::Limits::default(),
            http_port: 9091,
            http_address: None,
            http_announced_address: None,
            http_tls: false,
            http_max_body: 2 << 30,
            http_read_timeout: Duration::from_secs(10),
            metrics_port: None,
            metrics_address: None,
            metrics_tls: false,
            metrics_port_file: None,
            log_json: false,
            exit_when_drained: false,
            cluster: None,
            node_id: None,
            advertise: None,
            peer_port: 8889,
            peer_bind: None,
            cluster_secret: None,
            peer_silence: crate::link::SILENCE,
            relay_fanout: crate::link::RELAY_FANOUT,
        }
    }
}

/// A configuration problem, reported before the server starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The file is not valid JSON (after removing comments).
    #[error("config file {0} is not valid JSON: {1}")]
    Parse(PathBuf, serde_json::Error),
    /// A key has the wrong type or value.
    #[error("config file {0}: {1}")]
    Value(PathBuf, String),
    /// A flag (or its environment variable) has a value that cannot be used.
    #[error("{0}")]
    Flag(String),
}

impl Config {
    /// Takes a turnURL; a malformed one is logged and ignored (as KMS does): the server runs,
    /// without relay candidates. An empty one clears it.
    fn set_turn_url(&mut self, u: &str) {
        if u.trim().is_empty() {
            self.net.turn = None;
            return;
        }
        match fluo_rtc::TurnUrl::parse(u) {
            Ok(t) => self.net.turn = Some(t),
            Err(e) => {
                tracing::error!("{e}: no TURN relay candidates");
                self.net.turn = None;
            }
        }
    }

    /// Builds the effective configuration from flags (and the file they name).
    pub fn from_cli(cli: &Cli) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        if let Some(path) = &cli.config {
            let text =
                std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.clone(), e))?;
            let v: Value = serde_json::from_str(&strip_json_comments(&text))
                .map_err(|e| ConfigError::Parse(path.clone(), e))?;
            c.apply_file(&v)
                .map_err(|m| ConfigError::Value(path.clone(), m))?;
            // KMS resolves a relative certificate path against the config file's folder.
            if let (Some(cert), Some(dir)) = (&c.certificate, path.parent()) {
                if cert.is_relative() {
                    c.certificate = Some(dir.join(cert));
                }
            }
        }
        if let Some(b) = cli.bind {
            c.bind = b;
        }
        if let Some(p) = cli.port {
            c.port = p;
        }
        if let Some(p) = &cli.path {
            c.path = p.trim_start_matches('/').to_string();
        }
        c.port_file = cli.port_file.clone();
        if let Some(s) = cli.session_grace_secs {
            c.session_grace = Duration::from_secs(s);
        }
        if let Some(m) = cli.max_message_bytes {
            c.max_message_bytes = m.max(1024);
        }
        if cli.disable_request_cache {
            c.request_cache = false;
        }
        if let Some(n) = &cli.network_interfaces {
            let names: Vec<String> = n
                .iter()
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect();
            if !names.is_empty() {
                c.net.network_interfaces = Some(names);
            }
        }
        if let Some(p) = cli.min_port {
            c.net.min_port = p;
        }
        if let Some(p) = cli.max_port {
            c.net.max_port = p;
        }
        if let Some(ip) = cli.external_ipv4 {
            c.net.external_ipv4 = Some(ip);
        }
        if let Some(ip) = cli.external_ipv6 {
            c.net.external_ipv6 = Some(ip);
        }
        if let Some(on) = cli.ice_tcp {
            c.net.ice_tcp = on;
        }
        if let Some(mode) = cli.bwe {
            c.net.bwe = mode;
        }
        if let Some(u) = &cli.turn_url {
            c.set_turn_url(u);
        }
        if let Some(ip) = cli.stun_address {
            c.net.stun_server = Some(std::net::SocketAddr::new(ip, cli.stun_port.unwrap_or(3478)));
        } else if let (Some(p), Some(s)) = (cli.stun_port, c.net.stun_server.as_mut()) {
            s.set_port(p);
        }
        if let Some(t) = cli.auth_token.as_deref().filter(|t| !t.is_empty()) {
            c.auth_token = Some(t.to_string());
        }
        if let Some(p) = cli.secure_port {
            c.secure_port = Some(p);
        }
        if let Some(f) = &cli.certificate {
            c.certificate = Some(f.clone());
        }
        c.secure_port_file = cli.secure_port_file.clone();
        if let Some(u) = &cli.uri_allow {
            c.uri_allow = u
                .iter()
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect();
        }
        for (flag, slot) in [
            (cli.max_sessions, &mut c.max_sessions),
            (
                cli.max_sessions_per_address,
                &mut c.max_sessions_per_address,
            ),
            (cli.max_objects, &mut c.max_objects),
            (cli.max_objects_per_session, &mut c.max_objects_per_session),
            (
                cli.max_objects_per_connection,
                &mut c.max_objects_per_connection,
            ),
            (cli.max_objects_per_address, &mut c.max_objects_per_address),
            (cli.max_pipelines, &mut c.max_pipelines),
            (
                cli.max_elements_per_pipeline,
                &mut c.max_elements_per_pipeline,
            ),
            (cli.max_connections, &mut c.max_connections),
            (
                cli.max_connections_per_address,
                &mut c.max_connections_per_address,
            ),
        ] {
            if let Some(n) = flag {
                *slot = n;
            }
        }
        if let Some(n) = cli.workers {
            c.workers = n;
        }
        if let Some(m) = cli.worker_memory_limit {
            c.worker_memory_limit = m;
        }
        c.modules_dirs.extend(cli.modules_dir.iter().cloned());
        if let Some(ms) = cli.wasm_call_time_limit {
            c.wasm_limits.call_time = Duration::from_millis(ms.max(1));
        }
        if let Some(m) = cli.wasm_memory_limit {
            c.wasm_limits.memory_bytes = usize::try_from(m).unwrap_or(usize::MAX);
        }
        if let Some(p) = cli.http_port {
            c.http_port = p;
        }
        if let Some(a) = cli.http_address {
            c.http_address = Some(a);
        }
        if let Some(a) = cli
            .http_announced_address
            .as_deref()
            .filter(|a| !a.is_empty())
        {
            c.http_announced_address = Some(a.to_string());
        }
        c.http_tls |= cli.http_tls;
        if let Some(m) = cli.http_max_body {
            c.http_max_body = m;
        }
        if let Some(t) = cli.ws_write_timeout_secs {
            c.ws_write_timeout = Duration::from_secs(t.max(1));
        }
        if let Some(t) = cli.http_read_timeout_secs {
            c.http_read_timeout = Duration::from_secs(t.max(1));
        }
        c.metrics_port = cli.metrics_port.or(c.metrics_port);
        c.metrics_address = cli.metrics_address.or(c.metrics_address);
        c.metrics_tls |= cli.metrics_tls;
        c.metrics_port_file = cli.metrics_port_file.clone();
        c.log_json = cli.log_format.as_deref() == Some("json");
        c.exit_when_drained = cli.exit_when_drained;
        c.set_cluster(cli)?;
        if let Some(g) = &cli.gst_filter_allow {
            c.gst_filter_allow = Some(
                g.iter()
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect(),
            );
        }
        Ok(c)
    }

    /// The cluster's flags, checked: a URL or node id that cannot be used stops the start.
    fn set_cluster(&mut self, cli: &Cli) -> Result<(), ConfigError> {
        let flag = |e: fluo_cluster::Error| ConfigError::Flag(format!("--cluster: {e}"));
        if let Some(url) = cli
            .cluster
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            fluo_cluster::check_url(url).map_err(flag)?;
            self.cluster = Some(url.to_string());
            let secret = cli
                .cluster_secret
                .clone()
                .unwrap_or(ClusterSecret(Vec::new()));
            if secret.0.len() < CLUSTER_SECRET_MIN {
                return Err(ConfigError::Flag(format!(
                    "--cluster needs --cluster-secret (or FLUO_CLUSTER_SECRET) of at least {CLUSTER_SECRET_MIN} bytes, the same on every node"
                )));
            }
            self.cluster_secret = Some(secret);
        }
        if let Some(p) = cli.peer_port {
            self.peer_port = p;
        }
        self.peer_bind = cli.peer_bind.or(self.peer_bind);
        if let Some(ms) = cli.peer_silence_ms {
            self.peer_silence = Duration::from_millis(ms);
        }
        if let Some(f) = cli.relay_fanout {
            self.relay_fanout = f as usize;
        }
        if let Some(id) = &cli.node_id {
            let id = fluo_cluster::NodeId::new(id.trim())
                .map_err(|e| ConfigError::Flag(format!("--node-id: {e}")))?;
            self.node_id = Some(id);
        }
        if let Some(a) = cli
            .advertise
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            self.advertise = Some(advertised_host(a).ok_or_else(|| {
                ConfigError::Flag(format!(
                    "--advertise: '{}' is not an IP address or a host name (no port, no scheme)",
                    a.chars().take(64).collect::<String>()
                ))
            })?);
        }
        Ok(())
    }

    fn apply_file(&mut self, v: &Value) -> Result<(), String> {
        let at = |p: &str| v.pointer(p).filter(|x| !x.is_null());
        let uint = |p: &str| -> Result<Option<u64>, String> {
            at(p).map_or(Ok(None), |x| {
                x.as_u64()
                    .map(Some)
                    .ok_or_else(|| format!("{p} must be a non-negative integer"))
            })
        };
        if let Some(p) = uint("/mediaServer/net/websocket/port")? {
            self.port = u16::try_from(p).map_err(|_| "websocket port out of range".to_string())?;
        }
        if let Some(a) = at("/mediaServer/net/websocket/address") {
            let s = a.as_str().ok_or("websocket address must be a string")?;
            self.bind = s
                .parse()
                .map_err(|_| format!("websocket address '{s}' is not an IP address"))?;
        }
        if let Some(p) = at("/mediaServer/net/websocket/path") {
            let s = p.as_str().ok_or("websocket path must be a string")?;
            self.path = s.trim_start_matches('/').to_string();
        }
        if let Some(g) = uint("/mediaServer/resources/garbageCollectorPeriod")? {
            self.session_grace = Duration::from_secs(g);
        }
        if let Some(d) = at("/mediaServer/resources/disableRequestCache") {
            self.request_cache = !d.as_bool().ok_or("disableRequestCache must be a boolean")?;
        }
        if let Some(m) = at("/metadata") {
            self.metadata = m.to_string();
        }
        if let Some(p) = uint("/mediaServer/net/websocket/secure/port")? {
            self.secure_port =
                Some(u16::try_from(p).map_err(|_| "secure port out of range".to_string())?);
        }
        if let Some(c) = at("/mediaServer/net/websocket/secure/certificate") {
            let c = c.as_str().ok_or("secure.certificate must be a string")?;
            self.certificate = Some(PathBuf::from(c));
        }
        if at("/mediaServer/net/websocket/secure/password").is_some() {
            return Err(
                "secure.password (an encrypted private key) is not supported: \
                        give an unencrypted key in the certificate file"
                    .into(),
            );
        }
        if let Some(t) = at("/fluo/authToken") {
            let t = t.as_str().ok_or("fluo.authToken must be a string")?;
            self.auth_token = (!t.is_empty()).then(|| t.to_string());
        }
        if let Some(l) = at("/fluo/uriAllowList") {
            let items = l
                .as_array()
                .ok_or("fluo.uriAllowList must be an array of strings")?;
            self.uri_allow = items
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or("fluo.uriAllowList must be an array of strings")?;
        }
        if let Some(l) = at("/fluo/gstFilterAllowList") {
            let items = l
                .as_array()
                .ok_or("fluo.gstFilterAllowList must be an array of strings")?;
            self.gst_filter_allow = Some(
                items
                    .iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("fluo.gstFilterAllowList must be an array of strings")?,
            );
        }
        if let Some(a) = at("/fluo/stunServerAddress") {
            let s = a
                .as_str()
                .ok_or("fluo.stunServerAddress must be a string")?;
            if !s.is_empty() {
                let ip: IpAddr = s
                    .parse()
                    .map_err(|_| format!("fluo.stunServerAddress: '{s}' is not an IP address"))?;
                let port = uint("/fluo/stunServerPort")?.unwrap_or(3478);
                let port = u16::try_from(port)
                    .map_err(|_| "fluo.stunServerPort out of range".to_string())?;
                self.net.stun_server = Some(std::net::SocketAddr::new(ip, port));
            }
        }
        if let Some(v) = at("/fluo/turnUrl") {
            let u = v.as_str().ok_or("fluo.turnUrl must be a string")?;
            self.set_turn_url(u);
        }
        if let Some(v) = at("/fluo/iceTcp") {
            self.net.ice_tcp = match v {
                Value::Bool(b) => *b,
                Value::Number(n) if n.as_u64() == Some(0) => false,
                Value::Number(n) if n.as_u64() == Some(1) => true,
                _ => return Err("fluo.iceTcp must be true, false, 1 or 0".into()),
            };
        }
        for (key, v6) in [("/fluo/externalIPv4", false), ("/fluo/externalIPv6", true)] {
            if let Some(a) = at(key) {
                let s = a
                    .as_str()
                    .ok_or_else(|| format!("{key} must be a string"))?;
                if s.is_empty() {
                    continue;
                }
                if v6 {
                    self.net.external_ipv6 = Some(
                        s.parse()
                            .map_err(|_| format!("{key}: '{s}' is not an IPv6 address"))?,
                    );
                } else {
                    self.net.external_ipv4 = Some(
                        s.parse()
                            .map_err(|_| format!("{key}: '{s}' is not an IPv4 address"))?,
                    );
                }
            }
        }
        if let Some(g) = uint("/fluo/sessionGraceSeconds")? {
            self.session_grace = Duration::from_secs(g);
        }
        if let Some(m) = uint("/fluo/maxMessageBytes")? {
            self.max_message_bytes = (m as usize).max(1024);
        }
        for (key, slot) in [
            ("/fluo/maxSessions", &mut self.max_sessions),
            (
                "/fluo/maxSessionsPerAddress",
                &mut self.max_sessions_per_address,
            ),
            ("/fluo/maxObjects", &mut self.max_objects),
            (
                "/fluo/maxObjectsPerConnection",
                &mut self.max_objects_per_connection,
            ),
            (
                "/fluo/maxObjectsPerAddress",
                &mut self.max_objects_per_address,
            ),
            ("/fluo/maxPipelines", &mut self.max_pipelines),
            (
                "/fluo/maxElementsPerPipeline",
                &mut self.max_elements_per_pipeline,
            ),
            (
                "/fluo/maxObjectsPerSession",
                &mut self.max_objects_per_session,
            ),
            ("/fluo/maxConnections", &mut self.max_connections),
            (
                "/fluo/maxConnectionsPerAddress",
                &mut self.max_connections_per_address,
            ),
        ] {
            if let Some(n) = uint(key)? {
                *slot = n as usize;
            }
        }
        self.apply_http(v)?;
        if let Some(t) = uint("/fluo/wsWriteTimeoutSeconds")? {
            self.ws_write_timeout = Duration::from_secs(t.max(1));
        }
        if let Some(n) = uint("/fluo/workers")? {
            self.workers = n as usize;
        }
        if let Some(m) = at("/fluo/workerMemoryLimit") {
            self.worker_memory_limit = match m {
                Value::String(s) => parse_size(s),
                other => other
                    .as_u64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| "a positive number of bytes, or a string with K, M or G".into()),
            }
            .map_err(|e| format!("fluo.workerMemoryLimit: {e}"))?;
        }
        Ok(())
    }

    /// The HTTP listener's keys: KMS's HttpEndpoint module settings (its `serverPort`, or
    /// `port` as the shipped ini names it, `serverAddress`, `announcedAddress`) and Fluo's.
    fn apply_http(&mut self, v: &Value) -> Result<(), String> {
        let at = |p: &str| v.pointer(p).filter(|x| !x.is_null());
        const KMS: &str = "/modules/kurento/HttpEndpoint";
        for key in ["port", "serverPort"] {
            if let Some(p) = at(&format!("{KMS}/{key}")) {
                let p = p
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| format!("HttpEndpoint.{key} must be a port number"))?;
                self.http_port = p;
            }
        }
        if let Some(a) = at(&format!("{KMS}/serverAddress")) {
            let s = a
                .as_str()
                .ok_or("HttpEndpoint.serverAddress must be a string")?;
            self.http_address = match s {
                "" => None,
                "localhost" => Some(IpAddr::from([127, 0, 0, 1])),
                _ => Some(s.parse().map_err(|_| {
                    format!("HttpEndpoint.serverAddress '{s}' is not an IP address")
                })?),
            };
        }
        if let Some(a) = at(&format!("{KMS}/announcedAddress")) {
            let s = a
                .as_str()
                .ok_or("HttpEndpoint.announcedAddress must be a string")?;
            self.http_announced_address = (!s.is_empty()).then(|| s.to_string());
        }
        if let Some(t) = at("/fluo/httpTls") {
            self.http_tls = t.as_bool().ok_or("fluo.httpTls must be a boolean")?;
        }
        if let Some(m) = at("/fluo/httpMaxBody") {
            self.http_max_body = match m {
                Value::String(s) => parse_size(s),
                other => other
                    .as_u64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| "a positive number of bytes, or a string with K, M or G".into()),
            }
            .map_err(|e| format!("fluo.httpMaxBody: {e}"))?;
        }
        if let Some(t) = at("/fluo/httpReadTimeoutSeconds") {
            let t = t
                .as_u64()
                .ok_or("fluo.httpReadTimeoutSeconds must be a non-negative integer")?;
            self.http_read_timeout = Duration::from_secs(t.max(1));
        }
        Ok(())
    }

    /// The worker sandbox's read and write paths: the directories of the URI allow-list's
    /// `file://` entries, or `/` when the list is open or allows every file.
    pub fn worker_paths(&self) -> Vec<PathBuf> {
        if self.uri_allow.is_empty() {
            return vec![PathBuf::from("/")];
        }
        let mut paths: Vec<PathBuf> = Vec::new();
        for entry in &self.uri_allow {
            let Some(rest) = entry.strip_prefix("file://") else {
                continue;
            };
            let path = PathBuf::from(if rest.is_empty() { "/" } else { rest });
            if path.is_absolute() && !paths.contains(&path) {
                paths.push(path);
            }
        }
        paths
    }
}

/// Removes `//` and `/* */` comments outside JSON strings (KMS's shipped config has them).
pub fn strip_json_comments(s: &str) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let (mut i, mut in_str) = (0, false);
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += 1;
        } else if c == b'"' {
            in_str = true;
            out.push(b'"');
            i += 1;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else {
            out.push(c);
            i += 1;
        }
    }
    // Only whole ASCII comment bytes were removed, so the rest is still valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// `--advertise`'s value, checked: an IP address (IPv6 with or without brackets; returned
/// without them) or a host name of letters, digits, '.' and '-' (no port, scheme or path).
fn advertised_host(a: &str) -> Option<String> {
    let bare = a
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(a);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Some(ip.to_string());
    }
    let name = a.len() <= 253
        && a.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    name.then(|| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kurento.conf.json path in a fresh folder (removed when the guard is dropped).
    fn conf_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix("fluo-conf-")
            .tempdir()
            .expect("temp dir");
        let f = dir.path().join("kurento.conf.json");
        (dir, f)
    }

    #[test]
    fn file_then_flags() {
        let (_dir, f) = conf_file();
        std::fs::write(
            &f,
            r#"{ // KMS style
              "metadata": {"site": "a/*b*/"},
              "mediaServer": { "resources": { "garbageCollectorPeriod": 30 /* s */ },
                "net": { "websocket": { "port": 9999, "path": "/custom" } } } }"#,
        )
        .unwrap();
        let cli = Cli {
            config: Some(f.clone()),
            port: Some(1234),
            ..Cli::default()
        };
        let c = Config::from_cli(&cli).unwrap();
        assert_eq!(c.port, 1234);
        assert_eq!(c.path, "custom");
        assert_eq!(c.session_grace, Duration::from_secs(30));
        assert_eq!(c.metadata, r#"{"site":"a/*b*/"}"#);
        std::fs::write(&f, r#"{"mediaServer":{"net":{"websocket":{"port":"x"}}}}"#).unwrap();
        assert!(Config::from_cli(&cli).is_err());
    }

    #[test]
    fn ice_tcp_is_on_by_default_and_takes_kms_style_values() {
        assert!(Config::default().net.ice_tcp, "KMS's default: iceTcp=1");
        assert_eq!(parse_flag("0"), Ok(false));
        assert_eq!(parse_flag(" 1"), Ok(true));
        assert_eq!(parse_flag("FALSE"), Ok(false));
        assert!(parse_flag("maybe").is_err());
        let (_dir, f) = conf_file();
        std::fs::write(&f, r#"{"fluo": {"iceTcp": 0}}"#).unwrap();
        let mut cli = Cli {
            config: Some(f.clone()),
            ..Cli::default()
        };
        assert!(!Config::from_cli(&cli).unwrap().net.ice_tcp);
        cli.ice_tcp = Some(true);
        assert!(Config::from_cli(&cli).unwrap().net.ice_tcp, "the flag wins");
        std::fs::write(&f, r#"{"fluo": {"iceTcp": "yes"}}"#).unwrap();
        assert!(Config::from_cli(&cli).is_err());
    }

    #[test]
    fn gst_filter_allow_list_from_file_and_flag() {
        let (_dir, f) = conf_file();
        std::fs::write(&f, r#"{"fluo": {"gstFilterAllowList": ["videoflip"]}}"#).unwrap();
        let mut cli = Cli {
            config: Some(f.clone()),
            ..Cli::default()
        };
        let c = Config::from_cli(&cli).unwrap();
        assert_eq!(c.gst_filter_allow, Some(vec!["videoflip".to_string()]));
        cli.gst_filter_allow = Some(vec!["*".into(), " ".into()]);
        let c = Config::from_cli(&cli).unwrap();
        assert_eq!(c.gst_filter_allow, Some(vec!["*".to_string()]));
        std::fs::write(&f, r#"{"fluo": {"gstFilterAllowList": "videoflip"}}"#).unwrap();
        cli.gst_filter_allow = None;
        assert!(Config::from_cli(&cli).is_err(), "a string is not a list");
    }

    #[test]
    fn uri_allow_list_from_file_and_flag() {
        let (_dir, f) = conf_file();
        std::fs::write(
            &f,
            r#"{"fluo": {"uriAllowList": ["file:///srv/media/", "https://"]}}"#,
        )
        .unwrap();
        let mut cli = Cli {
            config: Some(f.clone()),
            ..Cli::default()
        };
        let c = Config::from_cli(&cli).unwrap();
        assert_eq!(c.uri_allow, vec!["file:///srv/media/", "https://"]);
        assert_eq!(
            c.gst_filter_allow, None,
            "sources and sinks refused by default"
        );
        cli.uri_allow = Some(vec!["rtsp://".into(), " ".into()]);
        assert_eq!(Config::from_cli(&cli).unwrap().uri_allow, vec!["rtsp://"]);
        std::fs::write(&f, r#"{"fluo": {"uriAllowList": "file:///"}}"#).unwrap();
        cli.uri_allow = None;
        assert!(Config::from_cli(&cli).is_err(), "a string is not a list");
        assert!(
            Config::default().uri_allow.is_empty(),
            "open by default, as KMS"
        );
    }

    #[test]
    fn workers_from_file_and_flags_and_their_sandbox_paths() {
        let d = Config::default();
        assert_eq!(d.workers, fluo_worker::supervisor::default_workers());
        assert!(d.workers >= 2);
        assert_eq!(d.worker_memory_limit, 2 << 30);
        assert_eq!(
            d.worker_paths(),
            vec![PathBuf::from("/")],
            "open list: any file"
        );
        let (_dir, f) = conf_file();
        std::fs::write(
            &f,
            r#"{"fluo": {"workers": 3, "workerMemoryLimit": "512M",
                "uriAllowList": ["file:///srv/media/", "https://", "file:///srv/media/"]}}"#,
        )
        .unwrap();
        let mut cli = Cli {
            config: Some(f.clone()),
            ..Cli::default()
        };
        let c = Config::from_cli(&cli).unwrap();
        assert_eq!((c.workers, c.worker_memory_limit), (3, 512 << 20));
        assert_eq!(c.worker_paths(), vec![PathBuf::from("/srv/media/")]);
        cli.workers = Some(0);
        cli.worker_memory_limit = Some(parse_size("1g").unwrap());
        let c = Config::from_cli(&cli).unwrap();
        assert_eq!((c.workers, c.worker_memory_limit), (0, 1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err() && parse_size("12T").is_err() && parse_size("x").is_err());
        std::fs::write(&f, r#"{"fluo": {"workerMemoryLimit": -1}}"#).unwrap();
        cli.worker_memory_limit = None;
        assert!(Config::from_cli(&cli).is_err(), "a negative limit");
        let parsed =
            Cli::try_parse_from(["fluo", "--workers", "0", "--worker-memory-limit", "256M"])
                .expect("the flags parse");
        assert_eq!(
            (parsed.workers, parsed.worker_memory_limit),
            (Some(0), Some(256 << 20))
        );
    }

    #[test]
    fn limits_from_file_and_flags() {
        let d = Config::default();
        assert_eq!(
            (d.max_sessions, d.max_objects, d.max_objects_per_address),
            (10_000, 20_000, 5_000),
            "the engine's defaults"
        );
        let (_dir, f) = conf_file();
        std::fs::write(
            &f,
            r#"{"fluo": {"maxSessions": 7, "maxSessionsPerAddress": 3, "maxObjects": 99,
                "maxObjectsPerConnection": 11, "maxObjectsPerAddress": 22}}"#,
        )
        .unwrap();
        let mut cli = Cli {
            config: Some(f.clone()),
            ..Cli::default()
        };
        let c = Config::from_cli(&cli).unwrap();
        assert_eq!(
            (
                c.max_sessions,
                c.max_sessions_per_address,
                c.max_objects,
                c.max_objects_per_connection,
                c.max_objects_per_address
            ),
            (7, 3, 99, 11, 22)
        );
        cli.max_sessions = Some(8);
        cli.max_objects_per_address = Some(33);
        let c = Config::from_cli(&cli).unwrap();
        assert_eq!((c.max_sessions, c.max_objects_per_address), (8, 33));
        let parsed = Cli::try_parse_from(["fluo", "--max-sessions", "12"]).unwrap();
        assert_eq!(parsed.max_sessions, Some(12));
        std::fs::write(&f, r#"{"fluo": {"maxSessions": -1}}"#).unwrap();
        cli.max_sessions = None;
        assert!(Config::from_cli(&cli).is_err());
    }

    #[test]
    fn the_bandwidth_estimate_is_auto_unless_asked() {
        use fluo_rtc::BweMode;
        let d = Config::from_cli(&Cli::default()).unwrap();
        assert_eq!(d.net.bwe, BweMode::Auto);
        for (arg, mode) in [
            ("on", BweMode::On),
            ("off", BweMode::Off),
            ("auto", BweMode::Auto),
            ("AUTO", BweMode::Auto),
            ("1", BweMode::On),
        ] {
            let cli = Cli::try_parse_from(["fluo", "--bwe", arg]).expect("the flag parses");
            assert_eq!(Config::from_cli(&cli).unwrap().net.bwe, mode, "--bwe {arg}");
        }
        assert!(Cli::try_parse_from(["fluo", "--bwe", "maybe"]).is_err());
    }

    #[test]
    fn the_operations_listener_and_the_log_format_from_flags() {
        let d = Config::from_cli(&Cli::default()).unwrap();
        assert_eq!(
            (d.metrics_port, d.metrics_tls, d.log_json),
            (None, false, false),
            "off by default"
        );
        let cli = Cli::try_parse_from([
            "fluo",
            "--metrics-port",
            "0",
            "--metrics-address",
            "127.0.0.1",
            "--metrics-tls",
            "--metrics-port-file",
            "/tmp/p",
            "--log-format",
            "json",
        ])
        .expect("the flags parse");
        let c = Config::from_cli(&cli).unwrap();
        assert_eq!(c.metrics_port, Some(0));
        assert_eq!(c.metrics_address, Some(IpAddr::from([127, 0, 0, 1])));
        assert!(c.metrics_tls && c.log_json);
        assert_eq!(
            c.metrics_port_file.as_deref(),
            Some(std::path::Path::new("/tmp/p"))
        );
        let e = Cli::try_parse_from(["fluo", "--log-format", "xml"]).unwrap_err();
        assert!(e.to_string().contains("json"), "{e}");
    }

    #[test]
    fn http_listener_from_kms_keys_and_flags() {
        let d = Config::default();
        assert_eq!((d.http_port, d.http_address), (9091, None), "KMS's port");
        let (_dir, f) = conf_file();
        std::fs::write(
            &f,
            r#"{"modules": {"kurento": {"HttpEndpoint": {"serverPort": 9191,
                "serverAddress": "127.0.0.1", "announcedAddress": "media.example.com"}}},
               "fluo": {"httpMaxBody": "10M", "httpReadTimeoutSeconds": 3,
                        "wsWriteTimeoutSeconds": 0}}"#,
        )
        .unwrap();
        let mut cli = Cli {
            config: Some(f.clone()),
            ..Cli::default()
        };
        let c = Config::from_cli(&cli).unwrap();
        assert_eq!(c.http_port, 9191);
        assert_eq!(c.http_address, Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(
            c.http_announced_address.as_deref(),
            Some("media.example.com")
        );
        assert_eq!(c.http_max_body, 10 << 20);
        assert_eq!(c.http_read_timeout, Duration::from_secs(3));
        assert_eq!(c.ws_write_timeout, Duration::from_secs(1), "at least 1 s");
        std::fs::write(
            &f,
            r#"{"modules": {"kurento": {"HttpEndpoint": {"port": 9292, "serverAddress": "localhost"}}}}"#,
        )
        .unwrap();
        let c = Config::from_cli(&cli).unwrap();
        assert_eq!(
            (c.http_port, c.http_address),
            (9292, Some(IpAddr::from([127, 0, 0, 1])))
        );
        cli.http_port = Some(0);
        cli.http_max_body = Some(100);
        cli.ws_write_timeout_secs = Some(7);
        let c = Config::from_cli(&cli).unwrap();
        assert_eq!((c.http_port, c.http_max_body), (0, 100));
        assert_eq!(c.ws_write_timeout, Duration::from_secs(7));
        let parsed = Cli::try_parse_from(["fluo", "--http-port", "0", "--http-max-body", "2M"])
            .expect("the flags parse");
        assert_eq!(
            (parsed.http_port, parsed.http_max_body),
            (Some(0), Some(2 << 20))
        );
        std::fs::write(
            &f,
            r#"{"modules": {"kurento": {"HttpEndpoint": {"port": 70000}}}}"#,
        )
        .unwrap();
        cli.http_port = None;
        assert!(Config::from_cli(&cli).is_err(), "a port out of range");
    }

    #[test]
    fn the_cluster_flags_are_checked_at_start() {
        let d = Config::from_cli(&Cli::default()).unwrap();
        assert_eq!((d.cluster, d.node_id, d.advertise), (None, None, None));
        let cli = Cli::try_parse_from([
            "fluo",
            "--cluster",
            "redis+unix:///run/redis.sock",
            "--node-id",
            "media-1",
            "--advertise",
            "media1.example.com",
            "--cluster-secret",
            "0123456789abcdef",
            "--peer-port",
            "0",
            "--peer-bind",
            "10.0.0.5",
            "--peer-silence-ms",
            "8000",
            "--relay-fanout",
            "2",
        ])
        .expect("the flags parse");
        // The parsed flags print no secret either.
        assert!(!format!("{cli:?}").contains("0123456789abcdef"), "{cli:?}");
        let c = Config::from_cli(&cli).unwrap();
        assert_eq!(c.cluster.as_deref(), Some("redis+unix:///run/redis.sock"));
        assert_eq!(c.node_id.as_ref().map(|n| n.as_str()), Some("media-1"));
        assert_eq!(c.advertise.as_deref(), Some("media1.example.com"));
        assert_eq!(c.peer_port, 0);
        assert_eq!(c.peer_bind, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(c.peer_silence, Duration::from_millis(8000));
        assert_eq!(Config::default().peer_silence, Duration::from_secs(3));
        assert_eq!((c.relay_fanout, Config::default().relay_fanout), (2, 4));
        for f in ["0", "65", "two"] {
            let e = Cli::try_parse_from(["fluo", "--relay-fanout", f]).expect_err(f);
            assert!(e.to_string().contains("--relay-fanout"), "{e}");
        }
        // A link silence shorter than two pings, or longer than a minute, is refused.
        for ms in ["1000", "20001", "3s"] {
            let e = Cli::try_parse_from(["fluo", "--peer-silence-ms", ms]).expect_err(ms);
            assert!(e.to_string().contains("--peer-silence-ms"), "{e}");
        }
        assert!(Cli::try_parse_from(["fluo", "--peer-silence-ms=-5"]).is_err());
        let secret = c.cluster_secret.expect("a secret");
        assert_eq!(format!("{secret:?}"), "ClusterSecret(16 bytes)");
        // A cluster without a secret, or with a short one, does not start.
        for flags in [
            &["--cluster", "redis://127.0.0.1:6379"][..],
            &[
                "--cluster",
                "redis://127.0.0.1:6379",
                "--cluster-secret",
                "short",
            ],
        ] {
            let cli = Cli::try_parse_from(["fluo"].iter().chain(flags)).unwrap();
            let e = Config::from_cli(&cli).expect_err("refused").to_string();
            assert!(e.contains("--cluster-secret"), "{e}");
            assert!(!e.contains("short"), "the secret is not printed: {e}");
        }
        for (given, kept) in [
            ("10.0.0.1", "10.0.0.1"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("media-1", "media-1"),
        ] {
            let cli = Cli::try_parse_from(["fluo", "--advertise", given]).unwrap();
            let c = Config::from_cli(&cli).expect(given);
            assert_eq!(c.advertise.as_deref(), Some(kept));
        }
        for (flags, says) in [
            (
                ["--cluster", "http://redis:6379"],
                "--cluster: cluster URL 'http://redis:6379'",
            ),
            (["--node-id", "a b"], "--node-id: node id 'a b'"),
            (["--advertise", "media1.example.com:443"], "--advertise: "),
            (["--advertise", "ws://media1.example.com"], "--advertise: "),
            (["--advertise", "media1/kurento"], "--advertise: "),
            (["--advertise", "10.0.0.1:8888"], "--advertise: "),
            (["--advertise", "a..b"], "--advertise: "),
        ] {
            let cli = Cli::try_parse_from(["fluo"].into_iter().chain(flags)).unwrap();
            let e = Config::from_cli(&cli).expect_err("refused").to_string();
            assert!(e.starts_with(says), "{e}");
        }
    }

    #[test]
    fn comments_keep_utf8() {
        assert_eq!(
            strip_json_comments("{\"a\":\"é//\"}// x"),
            "{\"a\":\"é//\"}"
        );
    }
}
