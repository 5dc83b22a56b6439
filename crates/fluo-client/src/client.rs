//! [`Client`]: one WebSocket to a Kurento Protocol server, shared by every handle made from it.

use crate::conn::{self, Cmd};
use crate::error::{Error, Result};
use crate::events::{RawSubscription, SubKey};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Connection settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a request waits for its answer (KurentoClient's default: 20 s).
    pub request_timeout: Duration,
    /// Reconnect when the socket drops (KurentoClient: yes, forever).
    pub reconnect: bool,
    /// First delay between reconnection attempts (doubles up to `reconnect_max_delay`).
    pub reconnect_delay: Duration,
    /// Longest delay between reconnection attempts.
    pub reconnect_max_delay: Duration,
    /// Give up (and fail every call with [`Error::Closed`]) after this many failed attempts
    /// in a row; `None`: never.
    pub reconnect_attempts: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            request_timeout: Duration::from_secs(20),
            reconnect: true,
            reconnect_delay: Duration::from_millis(100),
            reconnect_max_delay: Duration::from_secs(10),
            reconnect_attempts: None,
        }
    }
}

/// What happened to the connection, for [`Client::connection_events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// The socket dropped; the client is reconnecting.
    Disconnected,
    /// Reconnected. `session_kept`: the server still knew the session (`connect` with the
    /// old sessionId succeeded); when false it answered 40007 and the old session's objects
    /// and subscriptions are gone (their event streams end).
    Reconnected {
        /// Whether the session survived.
        session_kept: bool,
    },
    /// The client gave up reconnecting (or was closed).
    Closed,
}

pub(crate) struct Pending {
    pub text: String,
    pub sent_on: u64,
    pub reply: Option<oneshot::Sender<Result<Value>>>,
}

#[derive(Default)]
pub(crate) struct State {
    pub session_id: Option<String>,
    pub pending: HashMap<u64, Pending>,
    pub subs: HashMap<SubKey, Vec<(u64, mpsc::UnboundedSender<Value>)>>,
    pub closed: Option<String>,
}

pub(crate) struct Inner {
    pub url: String,
    pub options: Options,
    pub state: Mutex<State>,
    pub next_id: AtomicU64,
    pub cmds: mpsc::UnboundedSender<Cmd>,
    pub events: broadcast::Sender<ConnectionEvent>,
}

impl Inner {
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A Kurento Protocol client: cheap to clone, every clone shares the connection and session.
///
/// The connection is served by a task on the Tokio runtime that [`Client::connect`] was
/// called on; it ends when the last clone (and every handle made from it) is dropped or
/// [`Client::close`] is called.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.url)
            .field("session_id", &self.session_id())
            .finish()
    }
}

impl Client {
    /// Connects to `url` (e.g. `ws://127.0.0.1:8888/kurento`) with the default [`Options`].
    pub async fn connect(url: &str) -> Result<Client> {
        Self::connect_with(url, Options::default()).await
    }

    /// Connects to `url` with `options`. Fails when the first WebSocket cannot be opened.
    pub async fn connect_with(url: &str, options: Options) -> Result<Client> {
        let ws = conn::open(url).await?;
        let (cmds, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(16);
        let inner = Arc::new(Inner {
            url: url.to_string(),
            options,
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(0),
            cmds,
            events,
        });
        tokio::spawn(conn::run(Arc::downgrade(&inner), ws, rx));
        Ok(Client { inner })
    }

    /// The session id the server gave (none before the first answer).
    pub fn session_id(&self) -> Option<String> {
        self.inner.state().session_id.clone()
    }

    /// Connection events (disconnected, reconnected, closed) from now on.
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.inner.events.subscribe()
    }

    /// Closes the connection: pending and later calls fail with [`Error::Closed`].
    pub fn close(&self) {
        let _ = self.inner.cmds.send(Cmd::Close);
    }

    /// Sends one request and waits for its `result`. `params` gets the session's
    /// `sessionId` (unless it has one or the method is `ping`/`connect`); the result's
    /// `sessionId` becomes the client's.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value> {
        let mut params = match params {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => {
                return Err(Error::Protocol(format!(
                    "params must be an object: {other}"
                )))
            }
        };
        let id = self.inner.next_id();
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.inner.state();
            if let Some(why) = &st.closed {
                return Err(Error::Closed(why.clone()));
            }
            if !matches!(method, "ping" | "connect") && !params.contains_key("sessionId") {
                if let Some(s) = &st.session_id {
                    params.insert("sessionId".into(), Value::String(s.clone()));
                }
            }
            let mut req = json!({"jsonrpc": "2.0", "method": method, "id": id});
            if !params.is_empty() || method != "ping" {
                req["params"] = Value::Object(params);
            }
            let pending = Pending {
                text: req.to_string(),
                sent_on: 0,
                reply: Some(tx),
            };
            st.pending.insert(id, pending);
        }
        let _ = self.inner.cmds.send(Cmd::Flush);
        let timeout = self.inner.options.request_timeout;
        let answer = tokio::time::timeout(timeout, rx).await;
        match answer {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Closed("the connection task ended".into())),
            Err(_) => {
                self.inner.state().pending.remove(&id);
                Err(Error::Timeout(timeout))
            }
        }
    }

    /// `ping`: the server answers `pong`.
    pub async fn ping(&self) -> Result<()> {
        let r = self.request("ping", json!({"interval": 5000})).await?;
        match r.get("value").and_then(Value::as_str) {
            Some("pong") => Ok(()),
            _ => Err(Error::Protocol(format!("ping answered {r}"))),
        }
    }

    /// `create`: a new object of class `type_name` with constructor parameters `params`
    /// (an object keyed by the model's parameter names); its id.
    pub async fn create_raw(&self, type_name: &str, params: Value) -> Result<String> {
        let mut p = json!({"type": type_name, "properties": {}});
        if params.as_object().is_some_and(|m| !m.is_empty()) {
            p["constructorParams"] = params;
        }
        let r = self.request("create", p).await?;
        value_str(&r)
    }

    /// `invoke`: `operation` on `object` with `params` (none when `Value::Null`); the
    /// result's `value` (`Null` for void methods).
    pub async fn invoke_raw(&self, object: &str, operation: &str, params: Value) -> Result<Value> {
        let mut p = json!({"object": object, "operation": operation});
        if !params.is_null() {
            p["operationParams"] = params;
        }
        let mut r = self.request("invoke", p).await?;
        Ok(r.get_mut("value").map(Value::take).unwrap_or(Value::Null))
    }

    /// `release` of `object` (and, for a pipeline, everything in it).
    pub async fn release_raw(&self, object: &str) -> Result<()> {
        self.request("release", json!({"object": object})).await?;
        Ok(())
    }

    /// `describe`: the server's `{type, qualifiedType, hierarchy}` of `object`.
    pub async fn describe(&self, object: &str) -> Result<Value> {
        self.request("describe", json!({"object": object})).await
    }

    /// `subscribe` to events named `event` on `object`: a stream of each event's `data`.
    /// Dropping it (or [`RawSubscription::unsubscribe`]) sends `unsubscribe`.
    pub async fn subscribe_raw(&self, object: &str, event: &str) -> Result<RawSubscription> {
        let key = SubKey {
            object: object.to_string(),
            event: event.to_string(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let local = self.inner.next_id();
        // Registered first, so that an event sent right after the answer is not lost.
        self.inner
            .state()
            .subs
            .entry(key.clone())
            .or_default()
            .push((local, tx));
        let r = self
            .request("subscribe", json!({"object": object, "type": event}))
            .await;
        let r = r.and_then(|r| value_str(&r));
        match r {
            Ok(id) => Ok(RawSubscription::new(self.clone(), key, local, id, rx)),
            Err(e) => {
                crate::events::forget(&self.inner, &key, local);
                Err(e)
            }
        }
    }
}

/// `result.value` as a string.
pub(crate) fn value_str(r: &Value) -> Result<String> {
    r.get("value")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::Protocol(format!("expected a string value in {r}")))
}
