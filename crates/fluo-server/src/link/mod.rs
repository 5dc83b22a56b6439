//! The node-to-node link (docs/cluster.md): a listener of its own (`--peer-port`) that only
//! other nodes of the cluster use, authenticated by the cluster's shared secret
//! ([`auth`]); over it, the node a client is connected to (the *entry*) forwards the
//! requests for pipelines another node owns (the *owner*), and the owner sends back the
//! answers and the events of the sessions made through it.
//!
//! On the owner, each client connection of each entry is a connection of its own to the
//! engine (a *mirror*): the engine keeps KMS's session rules for it as for a direct client
//! (a session outlives its connection for the grace period, a reconnect with the sessionId
//! binds it again, subscriptions stay with the session).
//!
//! One WebSocket per pair of nodes, text frames of JSON ([`Frame`]); made on demand by the
//! entry and made again when broken. Nothing on the media thread or in the engine waits on
//! the link: the entry's connection tasks route and send, the owner's link task hands frames
//! to the engine's task as its WebSocket connections do.

mod admission;
mod auth;
pub(crate) mod entry;
mod lost;
mod manager;
pub(crate) mod relay;
mod resume;
pub(crate) mod route;
mod serve;
mod sessions;

pub(crate) use manager::Manager;
pub(crate) use resume::publishing;
pub(crate) use route::Router;
pub(crate) use serve::{accept_loop, Owner};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The WebSocket path of the link.
const PATH: &str = "fluo-link";

/// How long the owner gives a connection to its link's port for the WebSocket and secret
/// handshakes (the owner's side only; the entry gives up after [`CONNECT`]). Short, since an
/// idle connection holds one of the admission's slots ([`admission`]) until then.
const HANDSHAKE: Duration = Duration::from_secs(2);

/// How long the entry waits to connect and authenticate to an owner.
const CONNECT: Duration = Duration::from_secs(1);

/// Frames waiting for a link's writer.
const LINK_QUEUE: usize = 8192;

/// How often each side of a link pings the other (a link carries at least this).
const PING_EVERY: Duration = Duration::from_secs(1);

/// How long a link may stay silent before it counts as broken (a frozen or partitioned peer
/// whose TCP connection stays up), unless `--peer-silence-ms` says otherwise.
pub(crate) const SILENCE: Duration = Duration::from_secs(3);

/// How many relays of one source an element feeds at most, unless `--relay-fanout` says
/// otherwise ([`relay`]; docs/cluster.md, "Cascade").
pub(crate) const RELAY_FANOUT: usize = 4;

/// How long a session's owner must have been missing from the node listings (its record
/// expired, its node not listed in another boot) before a reconnect (`connect {sessionId}`)
/// counts it as gone for good and is answered 40007 INVALID_SESSION; before, it is answered
/// 40004 (try again), since a frozen or partitioned owner may come back with its objects.
pub(crate) const GONE_AFTER: Duration = Duration::from_secs(10);

/// How long a failed connect to a node is remembered: requests meanwhile get its error
/// without trying again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// The largest frame on the link: a client's request and a JSON-RPC answer, escaped.
const MAX_FRAME: usize = 64 << 20;

/// What goes over the link once it is authenticated.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub(crate) enum Frame {
    /// Entry -> owner: the entry's client connection `conn` (from `peer`) sends its first
    /// request to the owner. `internal`: the connection is the entry's own (its relays'),
    /// never a client's; the owner opens its mirror as internal (the link is authenticated,
    /// so no client can set it).
    Open {
        conn: u64,
        peer: IpAddr,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        internal: bool,
    },
    /// Either way: a JSON-RPC message of the client connection `conn`.
    Text { conn: u64, text: String },
    /// Entry -> owner: the client connection `conn` ended. Owner -> entry: the owner's engine
    /// ended the mirror of `conn` (a client that does not read): the entry closes `conn`.
    Close { conn: u64 },
}

/// This process's internal connections (the relay service's, [`relay`]), by connection id
/// (ids are unique in the process).
static INTERNAL: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

/// Counts connection `conn` as one of this node's own (see [`Frame::Open`]).
pub(crate) fn set_internal(conn: u64) {
    crate::lock(&INTERNAL).push(conn);
}

/// Whether `conn` is one of this node's own connections.
pub(crate) fn is_internal(conn: u64) -> bool {
    crate::lock(&INTERNAL).contains(&conn)
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME))
}

/// The next JSON message of `T` on `ws` (pings skipped); `None` for anything else.
async fn read_json<T, S>(ws: &mut S) -> Option<T>
where
    T: DeserializeOwned,
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    use futures_util::StreamExt;
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            _ => return None,
        }
    }
}

/// Sends the frames queued for the other side, and a ping every [`PING_EVERY`], until the
/// queue's senders are gone or the connection fails.
async fn write_frames<S>(mut sink: S, mut rx: tokio::sync::mpsc::Receiver<Frame>)
where
    S: futures_util::Sink<Message> + Unpin,
{
    use futures_util::SinkExt;
    let mut tick = tokio::time::interval(PING_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let msg = tokio::select! {
            f = rx.recv() => match f.map(|f| serde_json::to_string(&f)) {
                Some(Ok(text)) => Message::text(text),
                Some(Err(_)) => continue,
                None => break,
            },
            _ = tick.tick() => Message::Ping(Default::default()),
        };
        if sink.send(msg).await.is_err() {
            break;
        }
    }
}

/// Sends `v` as JSON on `ws`.
async fn write_json<T, S>(ws: &mut S, v: &T) -> bool
where
    T: Serialize,
    S: futures_util::Sink<Message> + Unpin,
{
    use futures_util::SinkExt;
    let Ok(text) = serde_json::to_string(v) else {
        return false;
    };
    ws.send(Message::text(text)).await.is_ok()
}
