//! Event subscriptions: `subscribe` answers are kept as streams fed by the `onEvent`
//! notifications for their (object, event type); dropping one sends `unsubscribe`.

use crate::client::{Client, Inner};
use crate::conn::Cmd;
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// What a notification is routed by: the subscribed object and the event type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SubKey {
    pub object: String,
    pub event: String,
}

/// An event type of the model, with its wire name.
pub trait Event: DeserializeOwned + Send + 'static {
    /// The event's name (`subscribe`'s `type`).
    const NAME: &'static str;
}

/// Routes an `onEvent` notification to the streams subscribed to its object and type.
pub(crate) fn route(inner: &Arc<Inner>, mut msg: Value) {
    let Some(value) = msg.pointer_mut("/params/value").map(Value::take) else {
        tracing::warn!("onEvent without params.value");
        return;
    };
    let (Some(object), Some(event)) = (
        value.get("object").and_then(Value::as_str),
        value.get("type").and_then(Value::as_str),
    ) else {
        tracing::warn!("onEvent without object or type");
        return;
    };
    let key = SubKey {
        object: object.to_string(),
        event: event.to_string(),
    };
    let data = value.get("data").cloned().unwrap_or(Value::Null);
    let st = inner.state();
    match st.subs.get(&key) {
        Some(list) => {
            for (_, tx) in list {
                let _ = tx.send(data.clone());
            }
        }
        None => tracing::debug!(object, event, "event for no subscription"),
    }
}

/// Drops the local entry `local` of `key`.
pub(crate) fn forget(inner: &Inner, key: &SubKey, local: u64) {
    let mut st = inner.state();
    if let Some(list) = st.subs.get_mut(key) {
        list.retain(|(l, _)| *l != local);
        if list.is_empty() {
            st.subs.remove(key);
        }
    }
}

/// A subscription whose events are the raw `data` objects.
///
/// A [`Stream`]; it ends when the client closes or the session is lost. Dropping it sends
/// `unsubscribe` (without waiting for the answer); [`RawSubscription::unsubscribe`] waits.
pub struct RawSubscription {
    client: Client,
    key: SubKey,
    local: u64,
    id: String,
    rx: mpsc::UnboundedReceiver<Value>,
    done: bool,
}

impl RawSubscription {
    pub(crate) fn new(
        client: Client,
        key: SubKey,
        local: u64,
        id: String,
        rx: mpsc::UnboundedReceiver<Value>,
    ) -> Self {
        RawSubscription {
            client,
            key,
            local,
            id,
            rx,
            done: false,
        }
    }

    /// The subscription id the server gave.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next event's data; `None` once the stream has ended.
    pub async fn next_data(&mut self) -> Option<Value> {
        self.rx.recv().await
    }

    fn unsubscribe_params(&self) -> Value {
        json!({"object": self.key.object, "subscription": self.id})
    }

    /// Sends `unsubscribe` and waits for its answer.
    pub async fn unsubscribe(mut self) -> crate::Result<()> {
        self.done = true;
        forget(&self.client.inner, &self.key, self.local);
        let params = self.unsubscribe_params();
        self.client.request("unsubscribe", params).await.map(|_| ())
    }
}

impl Drop for RawSubscription {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        forget(&self.client.inner, &self.key, self.local);
        let inner = &self.client.inner;
        let mut params = self.unsubscribe_params();
        if let Some(s) = inner.state().session_id.clone() {
            params["sessionId"] = Value::String(s);
        }
        let req = json!({"jsonrpc": "2.0", "method": "unsubscribe", "id": inner.next_id(), "params": params});
        let _ = inner.cmds.send(Cmd::Raw(req.to_string()));
    }
}

impl Stream for RawSubscription {
    type Item = Value;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Value>> {
        self.rx.poll_recv(cx)
    }
}

/// A typed event stream: each item is one event of type `E`. Events whose data does not fit
/// `E` are logged and skipped. Dropping it unsubscribes, as [`RawSubscription`] does.
pub struct Subscription<E> {
    raw: RawSubscription,
    _e: PhantomData<fn() -> E>,
}

impl<E: Event> Subscription<E> {
    /// Subscribes to `E` on `object`.
    pub async fn new(client: &Client, object: &str) -> crate::Result<Self> {
        let raw = client.subscribe_raw(object, E::NAME).await?;
        Ok(Subscription {
            raw,
            _e: PhantomData,
        })
    }

    /// The subscription id the server gave.
    pub fn id(&self) -> &str {
        self.raw.id()
    }

    /// The next event; `None` once the stream has ended.
    pub async fn next_event(&mut self) -> Option<E> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Sends `unsubscribe` and waits for its answer.
    pub async fn unsubscribe(self) -> crate::Result<()> {
        self.raw.unsubscribe().await
    }
}

impl<E: Event> Stream for Subscription<E> {
    type Item = E;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<E>> {
        loop {
            match Pin::new(&mut self.raw).poll_next(cx) {
                Poll::Ready(Some(v)) => match serde_json::from_value::<E>(v) {
                    Ok(e) => return Poll::Ready(Some(e)),
                    Err(err) => {
                        tracing::warn!(event = E::NAME, %err, "event data does not fit its type")
                    }
                },
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<E> Unpin for Subscription<E> {}
