//! What the entry tells the clients of a link that broke (docs/cluster.md, "When an owner
//! stops answering"): each request still in flight there is answered at once with
//! `40004 CONNECT_ERROR`, and each `Error` subscription a client made there through the entry
//! gets an `Error` event of type [`NODE_DOWN`]. The client's connection stays open (its
//! pipelines on other nodes go on). To know the subscriptions, the entry records, per client
//! connection, the `Error` subscriptions forwarded to the owner and answered by it, until
//! they are unsubscribed, their object or pipeline is released, the connection ends, or the
//! owner is gone for good ([`Kept`]: they outlive the link, so that a later break of a new
//! link to the same owner tells them again).
//!
//! A broken link also leaves the owner's sessions without a connection (the owner closed the
//! link's mirrors, starting their grace periods) while the clients' connections to the entry
//! stay open, so that kurento-client never reconnects: the entry keeps the sessions that held
//! something there ([`Kept::orphan`]) and binds each again on its connection's new mirror
//! once a link to the same owner in the same boot is made ([`super::entry`]).

use super::entry::{error_text, ClientHandle};
use fluo_api::jsonrpc::notification;
use fluo_api::ErrorCode;
use fluo_cluster::NodeId;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::IpAddr;

/// The `type` of the `Error` event a client gets when the node holding the object stops
/// answering (a Fluo error type, as `CODEC_MISMATCH` is).
pub(crate) const NODE_DOWN: &str = "NODE_DOWN";

/// The event whose subscriptions are recorded (KMS's `Error`).
pub(crate) const ERROR: &str = "Error";

/// The most `Error` subscriptions recorded for one client connection (past it, the oldest
/// is forgotten: it gets no event when its owner stops answering).
const MAX_SUBS: usize = 1024;

/// An `Error` subscription a client connection made on an owner through the entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sub {
    /// The subscription id the owner answered.
    pub id: String,
    /// The object subscribed to.
    pub object: String,
}

/// The `Error` subscriptions of one client connection on one link, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Subs(Vec<Sub>);

impl Subs {
    /// The owner answered subscription `id` to `object`'s `Error`.
    pub(crate) fn add(&mut self, id: String, object: String) {
        if self.0.len() >= MAX_SUBS {
            self.0.remove(0);
        }
        self.0.push(Sub { id, object });
    }

    /// Subscription `id` was unsubscribed.
    pub(crate) fn unsubscribed(&mut self, id: &str) {
        self.0.retain(|s| s.id != id);
    }

    /// `object` was released: its subscriptions, and those of the objects in it when it is a
    /// pipeline, are gone with it.
    pub(crate) fn released(&mut self, object: &str) {
        self.0.retain(|s| {
            s.object != object
                && !s
                    .object
                    .strip_prefix(object)
                    .is_some_and(|rest| rest.starts_with('/'))
        });
    }

    /// The objects subscribed to, each once, in the order of their first subscription.
    pub(crate) fn objects(&self) -> Vec<&str> {
        let mut out: Vec<&str> = vec![];
        for s in &self.0 {
            if !out.contains(&s.object.as_str()) {
                out.push(&s.object);
            }
        }
        out
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// An owner node in one boot.
pub(crate) type Key = (NodeId, u64);

/// What the entry's client connections hold on each owner (in one boot), kept across the
/// links to it: their `Error` subscriptions, and the sessions a broken link left to bind
/// again.
#[derive(Default)]
pub(crate) struct Kept(HashMap<Key, HashMap<u64, Holder>>);

/// A client connection that holds something on an owner.
pub(crate) struct Holder {
    pub handle: ClientHandle,
    pub peer: IpAddr,
    /// The session it spoke for there.
    pub session: String,
    /// Its `Error` subscriptions there.
    pub subs: Subs,
    /// Whether its session is to be bound again on a new link.
    pub orphan: bool,
}

/// A client connection as [`Kept`] records it: where it sends, its address, its session.
pub(crate) type Who<'a> = (&'a ClientHandle, IpAddr, &'a str);

/// A session to bind again: the client connection, its handle, address and session.
pub(crate) type Orphan = (u64, ClientHandle, IpAddr, String);

impl Kept {
    fn holder(&mut self, key: &Key, conn: u64, (handle, peer, session): Who<'_>) -> &mut Holder {
        let h = self
            .0
            .entry(key.clone())
            .or_default()
            .entry(conn)
            .or_insert_with(|| Holder {
                handle: handle.clone(),
                peer,
                session: session.to_string(),
                subs: Subs::default(),
                orphan: false,
            });
        if h.session != session {
            h.session = session.to_string();
        }
        h
    }

    /// Drops the holders of `key` that hold nothing any more.
    fn tidy(&mut self, key: &Key) {
        if let Some(m) = self.0.get_mut(key) {
            m.retain(|_, h| h.orphan || !h.subs.0.is_empty());
            if m.is_empty() {
                self.0.remove(key);
            }
        }
    }

    /// Client connection `conn` subscribed to `object`'s `Error` on `key` (subscription `id`).
    pub(crate) fn subscribed(&mut self, key: &Key, conn: u64, who: Who<'_>, id: &str, o: &str) {
        let h = self.holder(key, conn, who);
        h.subs.add(id.to_string(), o.to_string());
    }

    /// `object` on `key` was released (with the objects in it, for a pipeline).
    pub(crate) fn released(&mut self, key: &Key, object: &str) {
        if let Some(m) = self.0.get_mut(key) {
            m.values_mut().for_each(|h| h.subs.released(object));
        }
        self.tidy(key);
    }

    /// Subscription `id` on `key` was unsubscribed.
    pub(crate) fn unsubscribed(&mut self, key: &Key, id: &str) {
        if let Some(m) = self.0.get_mut(key) {
            m.values_mut().for_each(|h| h.subs.unsubscribed(id));
        }
        self.tidy(key);
    }

    /// Client connection `conn` ended: it holds nothing anywhere.
    pub(crate) fn closed(&mut self, conn: u64) {
        self.0.retain(|_, m| {
            m.remove(&conn);
            !m.is_empty()
        });
    }

    /// The owner `key` is gone for good (restarted, or unlisted too long): its objects too.
    pub(crate) fn gone(&mut self, key: &Key) {
        self.0.remove(key);
    }

    /// A link to `key` broke while client connection `conn`'s session held something there.
    pub(crate) fn orphan(&mut self, key: &Key, conn: u64, who: Who<'_>) {
        self.holder(key, conn, who).orphan = true;
    }

    /// Whether sessions on `key` wait to be bound again.
    pub(crate) fn has_orphans(&self, key: &Key) -> bool {
        self.0
            .get(key)
            .is_some_and(|m| m.values().any(|h| h.orphan))
    }

    /// The sessions of the client connections that hold something on some owner, with
    /// that owner.
    pub(crate) fn sessions(&self) -> impl Iterator<Item = (&Key, &str)> + '_ {
        self.0
            .iter()
            .flat_map(|(k, m)| m.values().map(move |h| (k, h.session.as_str())))
    }

    /// The client connections whose sessions wait to be bound again on some owner.
    pub(crate) fn orphan_conns(&self) -> impl Iterator<Item = u64> + '_ {
        self.0
            .values()
            .flat_map(|m| m.iter().filter(|(_, h)| h.orphan).map(|(c, _)| *c))
    }

    /// The sessions on `key` to bind again, no longer waiting.
    pub(crate) fn take_orphans(&mut self, key: &Key) -> Vec<Orphan> {
        let Some(m) = self.0.get_mut(key) else {
            return vec![];
        };
        let mut out = vec![];
        for (conn, h) in m.iter_mut().filter(|(_, h)| h.orphan) {
            h.orphan = false;
            out.push((*conn, h.handle.clone(), h.peer, h.session.clone()));
        }
        self.tidy(key);
        out
    }

    /// The `Error` subscribers on `key`: each connection, where it sends, its session and
    /// the objects it subscribed to.
    pub(crate) fn subscribers(&self, key: &Key) -> Vec<(u64, ClientHandle, String, Vec<String>)> {
        let Some(m) = self.0.get(key) else {
            return vec![];
        };
        let mut out: Vec<_> = m
            .iter()
            .filter(|(_, h)| !h.subs.0.is_empty())
            .map(|(conn, h)| {
                let objects = h.subs.objects().into_iter().map(String::from).collect();
                (*conn, h.handle.clone(), h.session.clone(), objects)
            })
            .collect();
        out.sort_by_key(|s| s.0);
        out
    }
}

/// The text both the answers and the events carry: which node stopped answering, and how
/// the entry saw it (`why`: the connection closed, or nothing came for the silence limit).
fn stopped(node: &NodeId, why: &str) -> String {
    format!("the node {node} that holds this object stopped answering: {why}")
}

/// The answer to a request (its id as the entry keyed it, JSON text) that was in flight to
/// `node` when its link broke.
pub(crate) fn answer(id_key: &str, node: &NodeId, why: &str) -> String {
    let id = serde_json::from_str::<Value>(id_key).ok();
    let message = format!(
        "{}; whether the request was carried out is not known",
        stopped(node, why)
    );
    error_text(id, ErrorCode::ConnectError, message)
}

/// The `onEvent` notification of an `Error` of `object` (on `node`, whose link broke), as
/// the engine writes its own `Error` events (docs/cluster.md shows one).
pub(crate) fn event(object: &str, node: &NodeId, why: &str, wall_ms: u128) -> String {
    let data = json!({
        "source": object,
        "timestampMillis": wall_ms.to_string(),
        "tags": [],
        "description": stopped(node, why),
        "errorCode": ErrorCode::ConnectError.code(),
        "type": NODE_DOWN,
    });
    notification(
        "onEvent",
        json!({"value": {"data": data, "object": object, "type": ERROR}}),
    )
}

/// Milliseconds since the Unix epoch (the events' `timestampMillis`).
pub(crate) fn wall_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_are_bounded_and_forgotten_with_their_object_or_pipeline() {
        let p = "p_kurento.MediaPipeline";
        let e = format!("{p}/e_kurento.WebRtcEndpoint");
        let mut s = Subs::default();
        s.add("1".into(), p.into());
        s.add("2".into(), e.clone());
        s.add("3".into(), e.clone());
        s.add("4".into(), "q_kurento.MediaPipeline".into());
        assert_eq!(s.objects(), vec![p, e.as_str(), "q_kurento.MediaPipeline"]);
        s.unsubscribed("2");
        assert_eq!(s.len(), 3);
        s.released(&e);
        assert_eq!(s.objects(), vec![p, "q_kurento.MediaPipeline"]);
        s.add("5".into(), e.clone());
        // A pipeline takes its objects with it, not another pipeline whose id it begins.
        s.add("6".into(), format!("{p}x/e"));
        s.released(p);
        assert_eq!(
            s.objects(),
            vec!["q_kurento.MediaPipeline", &format!("{p}x/e")]
        );
        let mut s = Subs::default();
        for i in 0..MAX_SUBS + 5 {
            s.add(i.to_string(), format!("o{i}"));
        }
        assert_eq!(s.len(), MAX_SUBS);
        assert_eq!(s.objects()[0], "o5");
    }

    #[test]
    fn the_event_has_the_shape_of_the_engines_error_events() {
        let node = NodeId::new("node-b").unwrap();
        let o = "p_kurento.MediaPipeline";
        let v: Value =
            serde_json::from_str(&event(o, &node, "the connection closed", 17)).expect("json");
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["method"], "onEvent");
        assert!(v.get("id").is_none());
        let value = &v["params"]["value"];
        assert_eq!(value["object"], o);
        assert_eq!(value["type"], "Error");
        let data = &value["data"];
        assert_eq!(data["source"], o);
        assert_eq!(data["timestampMillis"], "17");
        assert_eq!(data["tags"], json!([]));
        assert_eq!(data["errorCode"], 40004);
        assert_eq!(data["type"], "NODE_DOWN");
        assert_eq!(
            data["description"],
            "the node node-b that holds this object stopped answering: the connection closed"
        );
        let a: Value =
            serde_json::from_str(&answer("\"x7\"", &node, "nothing received for 3000 ms"))
                .expect("json");
        assert_eq!(a["id"], "x7");
        assert_eq!(a["error"]["code"], 40004);
        assert!(a["error"]["message"]
            .as_str()
            .unwrap()
            .contains("node-b that holds this object stopped answering"));
        assert!(a["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("; whether the request was carried out is not known"));
    }
}
