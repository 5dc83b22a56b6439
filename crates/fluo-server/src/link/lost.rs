//! What the entry tells the clients of a link that broke (docs/cluster.md, "When an owner
//! stops answering"): each request still in flight there is answered at once with
//! `40004 CONNECT_ERROR`, and each `Error` subscription a client made there through the entry
//! gets an `Error` event of type [`NODE_DOWN`]. The client's connection stays open (its
//! pipelines on other nodes go on). To know the subscriptions, the entry records, per client
//! connection, the `Error` subscriptions forwarded to the owner and answered by it, until
//! they are unsubscribed, their object or pipeline is released, or the connection ends.

use super::entry::error_text;
use fluo_api::jsonrpc::notification;
use fluo_api::ErrorCode;
use fluo_cluster::NodeId;
use serde_json::{json, Value};

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

/// The text both the answers and the events carry: which node stopped answering, and how
/// the entry saw it (`why`: the connection closed, or nothing came for the silence limit).
fn stopped(node: &NodeId, why: &str) -> String {
    format!("the node {node} that holds this object stopped answering: {why}")
}

/// The answer to a request (its id as the entry keyed it, JSON text) that was in flight to
/// `node` when its link broke.
pub(crate) fn answer(id_key: &str, node: &NodeId, why: &str) -> String {
    let id = serde_json::from_str::<Value>(id_key).ok();
    let message = format!("{} (try again)", stopped(node, why));
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
    }
}
