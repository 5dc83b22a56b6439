//! `invoke`: model methods and property accessors, generic handling of what the model says
//! about MediaObject, MediaElement, MediaPipeline and ServerManager, and delegation of the
//! rest to the element's own behaviour.

use crate::engine::{Engine, Mode};
use fluo_api::ids::SERVER_MANAGER_ID;
use fluo_api::model::check::{bind_params, check_value};
use fluo_api::model::{Prim, PropDef, TypeDef, TypeRef};
use fluo_api::params::Invoke;
use fluo_api::{ErrorCode, KurentoError};
use serde_json::{json, Map, Value};

/// The version Fluo reports for itself and its modules (the Kurento API level it speaks).
pub(crate) const API_VERSION: &str = "7.3.0";

impl Engine {
    pub(crate) fn invoke(
        &mut self,
        session: &str,
        inv: Invoke,
        mode: Mode,
    ) -> Result<Value, KurentoError> {
        let class_name = self.lookup(&inv.object, mode)?.class.clone();
        self.reference(session, &inv.object)?;
        let model = self.model;
        let class = model
            .class(&class_name)
            .expect("object classes are in the model");
        let id = inv.object.as_str();
        if let Some(m) = model.method(class, &inv.operation) {
            let params = bind_params(model, &m.params, &inv.operation_params)?;
            if m.name == "getStats" {
                return Ok(self.stats(id, &params));
            }
            if let Some(r) = self.hub_method(id, &m.name, &params, mode) {
                return r;
            }
            let own = self.with_element(id, |el, cx| el.invoke(cx, &m.name, &params));
            if let Some(Some(r)) = own {
                return r;
            }
            return self.generic_method(session, id, &m.name, &params, mode);
        }
        if let Some(prop) = find_property(model, class, &inv.operation, "get") {
            let own = self.with_element(id, |el, cx| el.read_property(cx, &prop.name));
            if let Some(Some(r)) = own {
                return r;
            }
            return Ok(self.get_property(id, prop));
        }
        if let Some(prop) = find_property(model, class, &inv.operation, "set")
            .filter(|p| !p.is_final && !p.read_only)
        {
            let v = match inv.operation_params.get(&prop.name) {
                Some(v) if !v.is_null() => check_value(model, v, &prop.ty, &prop.name)?,
                _ => {
                    return Err(KurentoError::marshall(format!(
                        "'{}' parameter is required",
                        prop.name
                    )))
                }
            };
            return self.set_property(id, prop, v).map(|()| Value::Null);
        }
        Err(KurentoError::new(
            ErrorCode::MalformedTransaction,
            format!(
                "Method '{}' with {} parameters not found",
                inv.operation,
                inv.operation_params.len()
            ),
        ))
    }

    fn get_property(&self, id: &str, prop: &PropDef) -> Value {
        let o = self.registry.get(id).expect("looked up by the caller");
        match prop.name.as_str() {
            "id" => return Value::from(o.id.clone()),
            "name" => return Value::from(o.name.clone().unwrap_or_else(|| o.id.clone())),
            "parent" => return o.parent.clone().map_or(Value::Null, Value::from),
            "mediaPipeline" => {
                let p = if o.class == "MediaPipeline" {
                    Some(o.id.clone())
                } else {
                    o.pipeline.clone()
                };
                return p.map_or(Value::Null, Value::from);
            }
            "children" => return json!(o.children),
            "creationTime" => return Value::from(o.creation_time),
            "sendTagsInEvents" => return Value::from(o.send_tags_in_events),
            _ => {}
        }
        if o.id == SERVER_MANAGER_ID {
            match prop.name.as_str() {
                "info" => return self.server_info(),
                "pipelines" => return json!(self.registry.pipeline_ids()),
                "sessions" => return json!(self.sessions.holding()),
                "metadata" => return Value::from(self.config.metadata.clone()),
                _ => {}
            }
        }
        if let Some(v) = o.behavior.get_property(&prop.name) {
            return v;
        }
        if let Some(v) = o.props.get(&prop.name) {
            return v.clone();
        }
        if prop.name == "encoderBitrate" && o.pipeline.is_some() {
            return Value::from(crate::output::DEFAULT_ENCODER_BITRATE);
        }
        if let Some(v) = &prop.default {
            return v.clone();
        }
        self.zero_value(&prop.ty)
    }

    /// The value an unset property reads as: Kurento's defaults where it has them, else the
    /// type's zero.
    fn zero_value(&self, ty: &TypeRef) -> Value {
        match ty {
            TypeRef::Prim(Prim::Boolean) => Value::from(false),
            TypeRef::Prim(Prim::Int | Prim::Int64) => Value::from(0),
            TypeRef::Prim(Prim::Float | Prim::Double) => Value::from(0.0),
            TypeRef::Prim(Prim::String) => Value::from(""),
            TypeRef::Array(_) => json!([]),
            TypeRef::Map(_) => json!({}),
            TypeRef::Named(n) => match self.model.type_def(n) {
                Some(TypeDef::Enum { values, .. }) => {
                    values.first().cloned().map_or(Value::Null, Value::from)
                }
                _ => Value::Null,
            },
        }
    }

    fn set_property(&mut self, id: &str, prop: &PropDef, v: Value) -> Result<(), KurentoError> {
        self.with_element(id, |el, cx| el.property_set(cx, &prop.name, &v))
            .unwrap_or(Ok(()))?;
        let o = self.registry.get_mut(id).expect("looked up by the caller");
        match prop.name.as_str() {
            "name" => o.name = v.as_str().map(String::from),
            "sendTagsInEvents" => o.send_tags_in_events = v.as_bool().unwrap_or(false),
            n if crate::output::is_bitrate(n) && o.pipeline.is_some() => {
                crate::output::set_bitrate(&mut o.props, n, &v)?;
                self.settings_changed(id);
            }
            _ => {
                o.props.insert(prop.name.clone(), v);
            }
        }
        Ok(())
    }

    fn generic_method(
        &mut self,
        session: &str,
        id: &str,
        method: &str,
        p: &Map<String, Value>,
        mode: Mode,
    ) -> Result<Value, KurentoError> {
        let s = |k: &str| {
            p.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        match method {
            // MediaObject
            "addTag" => {
                let (k, v) = (s("key"), s("value"));
                let o = self.registry.get_mut(id).expect("looked up");
                match o.tags.iter_mut().find(|(x, _)| *x == k) {
                    Some(t) => t.1 = v,
                    None => o.tags.push((k, v)),
                }
                Ok(Value::Null)
            }
            "removeTag" => {
                let k = s("key");
                let o = self.registry.get_mut(id).expect("looked up");
                o.tags.retain(|(x, _)| *x != k);
                Ok(Value::Null)
            }
            "getTag" => {
                let k = s("key");
                let o = self.registry.get(id).expect("looked up");
                o.tags
                    .iter()
                    .find(|(x, _)| *x == k)
                    .map(|(_, v)| Value::from(v.clone()))
                    .ok_or_else(|| {
                        KurentoError::new(
                            ErrorCode::MediaObjectTagKeyNotFound,
                            format!("Tag key '{k}' not found"),
                        )
                    })
            }
            "getTags" => Ok(self.tags_json(id)),
            // MediaElement
            "connect" => self.connect(session, id, p, mode).map(|()| Value::Null),
            "disconnect" => self.disconnect(id, p, mode).map(|()| Value::Null),
            "getSourceConnections" => Ok(self.connections(id, true, p)),
            "getSinkConnections" => Ok(self.connections(id, false, p)),
            "setAudioFormat" | "setVideoFormat" => {
                let caps = p.get("caps").cloned().unwrap_or_default();
                let audio = method == "setAudioFormat";
                if audio {
                    crate::output::check_audio_caps(&caps)?;
                } else {
                    crate::output::check_video_caps(&caps)?;
                }
                let has_output = self.with_element(id, |el, _| el.has_output());
                if has_output != Some(true) {
                    let class = self.registry.get(id).map(|o| o.class.clone());
                    return Err(KurentoError::illegal_param(format!(
                        "{} sends no media of its own: its {} format cannot be set (set it on the element that feeds it)",
                        class.unwrap_or_default(),
                        if audio { "audio" } else { "video" }
                    )));
                }
                let key = if audio { "audioFormat" } else { "videoFormat" };
                let o = self.registry.get_mut(id).expect("looked up");
                o.props.insert(key.into(), caps);
                self.settings_changed(id);
                Ok(Value::Null)
            }
            "isMediaFlowingIn" | "isMediaFlowingOut" | "isMediaTranscoding" => {
                let event = match method {
                    "isMediaFlowingIn" => "MediaFlowInStateChanged",
                    "isMediaFlowingOut" => "MediaFlowOutStateChanged",
                    _ => "MediaTranscodingStateChanged",
                };
                let media = s("mediaType");
                let o = self.registry.get(id).expect("looked up");
                let on = o.media_states.get(&format!("{event}/{media}")).copied();
                Ok(Value::from(on.unwrap_or(false)))
            }
            "getGstreamerDot" => Ok(Value::from(self.gst_dot(id, &dot_details(p)))),
            "dumpGstreamerDot" => self.dump_gst_dot(id, &dot_details(p)),
            // ServerManager
            "getKmd" => {
                let name = s("moduleName");
                self.model.kmd_json(&name).map(Value::from).ok_or_else(|| {
                    KurentoError::new(
                        ErrorCode::ServerManagerErrorKmdNotFound,
                        format!("Module '{name}' not found"),
                    )
                })
            }
            "getCpuCount" => Ok(Value::from(self.host.cpu_count())),
            "getUsedCpu" => {
                let interval = p.get("interval").and_then(Value::as_i64).unwrap_or(1000);
                if interval < 0 {
                    return Err(KurentoError::illegal_param(
                        "'interval' must not be negative",
                    ));
                }
                Ok(json!(self.host.used_cpu_percent(interval)))
            }
            "getUsedMemory" => Ok(Value::from(self.host.used_memory_kib())),
            other => {
                let class = self
                    .registry
                    .get(id)
                    .map(|o| o.class.clone())
                    .unwrap_or_default();
                Err(KurentoError::new(
                    ErrorCode::MediaObjectOperationNotSupported,
                    format!("{class}.{other} is not implemented in this version of Fluo"),
                ))
            }
        }
    }

    /// getStats: the element's report (see [`Engine::stats_report`]) now.
    fn stats(&mut self, id: &str, p: &Map<String, Value>) -> Value {
        let media = p.get("mediaType").and_then(Value::as_str).map(String::from);
        let wall_ms = self.now.wall_ms;
        Value::Object(self.stats_report(id, wall_ms, media.as_deref()))
    }

    /// Whether the pipeline of `id` has latencyStats on.
    pub(crate) fn latency_stats_of(&self, id: &str) -> bool {
        self.registry
            .get(id)
            .and_then(|o| o.pipeline.as_deref())
            .and_then(|pl| self.registry.get(pl))
            .and_then(|pl| pl.props.get("latencyStats"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The getStats report of `id` at `wall_ms` (of `media`, when given): the element's own
    /// report, or (for elements that measure nothing) an ElementStats entry without
    /// latencies while the pipeline's latencyStats is on. A client's getStats and the
    /// pipeline view's element both ask this.
    pub(crate) fn stats_report(
        &mut self,
        id: &str,
        wall_ms: u64,
        media: Option<&str>,
    ) -> Map<String, Value> {
        let q = crate::StatsQuery {
            id,
            wall_ms,
            media,
            latency: self.latency_stats_of(id),
        };
        let own = self.with_element(id, |el, _| el.stats(&q)).flatten();
        own.unwrap_or_else(|| {
            let mut report = Map::new();
            q.element_entry(&mut report, &[None, None]);
            report
        })
    }

    /// The ServerInfo complex value.
    pub(crate) fn server_info(&self) -> Value {
        let modules: Vec<Value> = self
            .model
            .modules()
            .iter()
            .map(|m| {
                let mut factories: Vec<&str> = self
                    .factories()
                    .filter(|f| m.classes.iter().any(|c| c == f))
                    .collect();
                factories.sort_unstable();
                json!({
                    "__module__": "kurento",
                    "__type__": "ModuleInfo",
                    "name": m.name,
                    "version": m.version,
                    "generationTime": concat!("fluo ", env!("CARGO_PKG_VERSION")),
                    "factories": factories,
                })
            })
            .collect();
        json!({
            "__module__": "kurento",
            "__type__": "ServerInfo",
            "version": API_VERSION,
            "type": "KMS",
            "capabilities": ["transactions"],
            "modules": modules,
        })
    }
}

/// The `details` of getGstreamerDot / dumpGstreamerDot: SHOW_ALL when not given (KMS draws
/// its default, SHOW_VERBOSE, as SHOW_ALL).
fn dot_details(p: &Map<String, Value>) -> String {
    p.get("details")
        .and_then(Value::as_str)
        .unwrap_or("SHOW_ALL")
        .to_string()
}

/// The property an accessor names: `getFooBar` -> `fooBar`, `getICECandidatePairs` ->
/// `ICECandidatePairs`.
fn find_property<'a>(
    model: &'a fluo_api::Model,
    class: &'a fluo_api::model::ClassDef,
    op: &str,
    prefix: &str,
) -> Option<&'a PropDef> {
    let lower = accessor(op, prefix)?;
    model
        .property(class, &lower)
        .or_else(|| model.property(class, &op[prefix.len()..]))
}

/// `getFooBar` -> `fooBar` for prefix `get`.
fn accessor(op: &str, prefix: &str) -> Option<String> {
    let rest = op.strip_prefix(prefix)?;
    let mut chars = rest.chars();
    let first = chars.next()?;
    if !first.is_uppercase() {
        return None;
    }
    Some(first.to_lowercase().chain(chars).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn accessor_names() {
        assert_eq!(super::accessor("getName", "get").as_deref(), Some("name"));
        assert_eq!(
            super::accessor("setMaxVideoRecvBandwidth", "set").as_deref(),
            Some("maxVideoRecvBandwidth")
        );
        assert_eq!(super::accessor("get", "get"), None);
        assert_eq!(super::accessor("getname", "get"), None);
    }
}
