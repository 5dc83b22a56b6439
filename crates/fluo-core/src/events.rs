//! Event delivery: builds the `onEvent` notification of an event raised on an object and
//! sends it once per subscribing session, to the connection bound to that session.

use crate::engine::{Engine, Output};
use fluo_api::jsonrpc::notification;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

impl Engine {
    pub(crate) fn deliver(&mut self, source: &str, event: &str, fields: Map<String, Value>) {
        let Some(obj) = self.registry.get_mut(source) else {
            return;
        };
        let on = match (event, fields.get("state").and_then(Value::as_str)) {
            ("MediaFlowInStateChanged" | "MediaFlowOutStateChanged", Some(s)) => {
                Some(s == "FLOWING")
            }
            ("MediaTranscodingStateChanged", Some(s)) => Some(s == "TRANSCODING"),
            _ => None,
        };
        if let (Some(on), Some(media)) = (on, fields.get("mediaType").and_then(Value::as_str)) {
            obj.media_states.insert(format!("{event}/{media}"), on);
        }
        // Hub ports' flows follow the elements around them.
        if on.is_some() && event != "MediaTranscodingStateChanged" && obj.class != "HubPort" {
            self.hub_flows();
        }
        let Some(obj) = self.registry.get(source) else {
            return;
        };
        let sessions: BTreeSet<&str> = obj
            .subscriptions
            .iter()
            .filter(|s| s.event == event)
            .map(|s| s.session.as_str())
            .collect();
        if sessions.is_empty() {
            return;
        }
        let conns: Vec<_> = sessions
            .iter()
            .filter_map(|s| self.sessions.conn_of(s))
            .collect();
        if conns.is_empty() {
            return;
        }
        let mut data = fields;
        data.insert("source".into(), Value::from(source));
        data.insert(
            "timestampMillis".into(),
            Value::from(self.now.wall_ms.to_string()),
        );
        data.insert(
            "tags".into(),
            if obj.send_tags_in_events {
                self.tags_json(source)
            } else {
                json!([])
            },
        );
        if !data.contains_key("type")
            && self
                .model
                .event_fields(event)
                .iter()
                .any(|f| f.name == "type")
        {
            data.insert("type".into(), Value::from(event));
        }
        let text = notification(
            "onEvent",
            json!({"value": {"data": data, "object": source, "type": event}}),
        );
        for conn in conns {
            self.out.push_back(Output::Send {
                conn,
                text: text.clone(),
            });
        }
    }
}
