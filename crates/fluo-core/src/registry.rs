//! The single owner of every media object, and the lifecycle operations on it: create,
//! reference, unreference, release (cascading to children) and destroy.

use crate::element::{Element, ElementCx, FactoryCx, NoMedia, Transparent};
use crate::engine::{new_uuid, Engine, Mode};
use fluo_api::ids::{object_id, SERVER_MANAGER_ID};
use fluo_api::model::check::bind_params;
use fluo_api::params::Create;
use fluo_api::{ErrorCode, KurentoError};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One event subscription.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub id: String,
    pub session: String,
    pub event: String,
}

/// A media object.
pub(crate) struct Object {
    pub id: String,
    pub class: String,
    pub parent: Option<String>,
    pub pipeline: Option<String>,
    pub children: Vec<String>,
    pub name: Option<String>,
    pub tags: Vec<(String, String)>,
    pub send_tags_in_events: bool,
    pub creation_time: u64,
    /// Its place in the order objects were created (set by [`Registry::insert`]).
    pub seq: u64,
    /// Values of model properties that were set (or given at construction).
    pub props: Map<String, Value>,
    /// The sessions referencing it. Shared strings: a pipeline's new child is referenced by
    /// every session of the pipeline (one copy of each session id for all their objects).
    pub sessions: HashSet<Arc<str>>,
    pub subscriptions: Vec<Subscription>,
    pub behavior: Box<dyn Element>,
    /// Media states learnt from this object's own events, by "Event/MEDIA_TYPE" (flowing in,
    /// flowing out, transcoding), for isMediaFlowingIn / isMediaFlowingOut /
    /// isMediaTranscoding.
    pub media_states: std::collections::BTreeMap<String, bool>,
    /// The connection and address whose request created the object (limits count it there).
    pub origin: Option<crate::limits::Origin>,
}

impl Object {
    pub fn server_manager(wall_ms: u64) -> Object {
        Object {
            id: SERVER_MANAGER_ID.into(),
            class: "ServerManager".into(),
            parent: None,
            pipeline: None,
            children: vec![],
            name: None,
            tags: vec![],
            send_tags_in_events: false,
            creation_time: wall_ms / 1000,
            seq: 0,
            props: Map::new(),
            sessions: HashSet::new(),
            subscriptions: vec![],
            media_states: Default::default(),
            origin: None,
            behavior: Box::new(NoMedia),
        }
    }

    pub fn is_server_manager(&self) -> bool {
        self.id == SERVER_MANAGER_ID
    }
}

/// Objects by id.
#[derive(Default)]
pub(crate) struct Registry {
    objects: HashMap<String, Object>,
    pipelines: usize,
    /// The next object's `seq`.
    next_seq: u64,
}

impl Registry {
    pub fn insert(&mut self, mut o: Object) {
        o.seq = self.next_seq;
        self.next_seq += 1;
        if o.class == "MediaPipeline" {
            self.pipelines += 1;
        }
        self.objects.insert(o.id.clone(), o);
    }
    pub fn get(&self, id: &str) -> Option<&Object> {
        self.objects.get(id)
    }
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Object> {
        self.objects.get_mut(id)
    }
    pub fn remove(&mut self, id: &str) -> Option<Object> {
        let o = self.objects.remove(id)?;
        if o.class == "MediaPipeline" {
            self.pipelines -= 1;
        }
        Some(o)
    }
    pub fn len(&self) -> usize {
        self.objects.len()
    }
    /// Each object's class and media states (for the metrics).
    pub fn classes(
        &self,
    ) -> impl Iterator<Item = (&str, &std::collections::BTreeMap<String, bool>)> {
        self.objects
            .values()
            .map(|o| (o.class.as_str(), &o.media_states))
    }
    pub fn pipeline_count(&self) -> usize {
        self.pipelines
    }
    pub fn pipeline_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .objects
            .values()
            .filter(|o| o.class == "MediaPipeline")
            .map(|o| o.id.clone())
            .collect();
        v.sort();
        v
    }
    pub fn subscribe(&mut self, id: &str, sub: &str, session: &str, event: &str) {
        if let Some(o) = self.objects.get_mut(id) {
            o.subscriptions.push(Subscription {
                id: sub.into(),
                session: session.into(),
                event: event.into(),
            });
        }
    }
    /// Removes the subscriptions `session` holds on an object; returns how many there were.
    pub fn drop_subscriptions(&mut self, id: &str, session: &str) -> usize {
        let Some(o) = self.objects.get_mut(id) else {
            return 0;
        };
        let before = o.subscriptions.len();
        o.subscriptions.retain(|s| s.session != session);
        before - o.subscriptions.len()
    }

    /// Removes a subscription; returns the session that held it.
    pub fn unsubscribe(&mut self, id: &str, sub: &str) -> Option<String> {
        let o = self.objects.get_mut(id)?;
        let i = o.subscriptions.iter().position(|s| s.id == sub)?;
        Some(o.subscriptions.remove(i).session)
    }
}

impl Engine {
    pub(crate) fn register_builtin_factories(&mut self) {
        self.register_factory(
            "MediaPipeline",
            Box::new(|_: &FactoryCx<'_>| Ok(Box::new(NoMedia) as Box<dyn Element>)),
        );
        self.register_factory(
            "PassThrough",
            Box::new(|_: &FactoryCx<'_>| Ok(Box::new(Transparent) as Box<dyn Element>)),
        );
    }

    /// `create`: checks the class and constructor parameters, builds the object, references
    /// it from the calling session and from every session that sees its parent.
    pub(crate) fn create(
        &mut self,
        session: &str,
        c: Create,
        mode: Mode,
    ) -> Result<String, KurentoError> {
        let model = self.model;
        let not_found = || {
            KurentoError::new(
                ErrorCode::MediaObjectNotAvailable,
                format!("Factory '{}' not found", c.type_name),
            )
        };
        let class = model.class(&c.type_name).ok_or_else(not_found)?;
        if class.is_abstract || class.ctor.is_none() {
            return Err(not_found());
        }
        if !self.factories.contains_key(&class.name) {
            return Err(KurentoError::new(
                ErrorCode::MediaObjectNotAvailable,
                format!(
                    "Factory '{}' is not available: {}.{} is not implemented in this version of Fluo",
                    c.type_name, class.prefix, class.name
                ),
            ));
        }
        let ctor = class.ctor.as_deref().unwrap_or_default();
        let params = bind_params(model, ctor, &c.constructor_params)?;
        let signal = self.signal_requested(&class.name, &c.properties)?;
        let tags = self.layer_properties(&class.name, &c.properties)?;
        let layer_tags = !tags.is_empty();
        // The parent is the object given for the first remote-class constructor parameter
        // (the pipeline for elements, the hub for hub ports).
        let mut parent: Option<String> = None;
        for p in ctor {
            let fluo_api::model::TypeRef::Named(t) = &p.ty else {
                continue;
            };
            if model.class(t).is_none() {
                continue;
            }
            let Some(Value::String(pid)) = params.get(&p.name) else {
                continue;
            };
            let target = self.lookup(pid, mode)?;
            if !model.is_a(&target.class, t) {
                return Err(KurentoError::marshall(format!(
                    "'{}' parameter should be a {t}",
                    p.name
                )));
            }
            if parent.is_none() {
                parent = Some(pid.clone());
            }
        }
        let pipeline = match &parent {
            Some(p) => {
                let po = self.registry.get(p).expect("looked up above");
                Some(po.pipeline.clone().unwrap_or_else(|| po.id.clone()))
            }
            None => None,
        };
        self.check_object_limits(session, &class.name, pipeline.as_deref())?;
        // Ids start with the pipeline's, as in KMS (a hub port's too, whose parent is its hub).
        let id = object_id(&new_uuid(), &class.prefix, &class.name, pipeline.as_deref());
        let behavior = self
            .factories
            .get(&class.name)
            .expect("checked above")
            .create(&FactoryCx {
                id: &id,
                pipeline: pipeline.as_deref(),
                params: &params,
                given: &c.constructor_params,
            })?;
        // Constructor parameters that are also properties become their initial values.
        let mut props = Map::new();
        for (k, v) in &params {
            if model.property(class, k).is_some() {
                props.insert(k.clone(), v.clone());
            }
        }
        let obj = Object {
            id: id.clone(),
            class: class.name.clone(),
            parent: parent.clone(),
            pipeline,
            children: vec![],
            name: None,
            tags,
            send_tags_in_events: false,
            creation_time: self.now.wall_ms / 1000,
            seq: 0,
            props,
            sessions: HashSet::new(),
            subscriptions: vec![],
            media_states: Default::default(),
            origin: self.origin,
            behavior,
        };
        if let Some(o) = &self.origin {
            self.usage.object_created(o);
        }
        self.registry.insert(obj);
        if layer_tags {
            self.layer_tags_changed(&id);
        }
        for kind in signal {
            self.signal_created(&id, kind);
        }
        let mut own: Arc<str> = Arc::from(session);
        let mut sessions: Vec<Arc<str>> = vec![];
        if let Some(p) = &parent {
            let po = self.registry.get_mut(p).expect("parent exists");
            po.children.push(id.clone());
            if let Some(s) = po.sessions.get(session) {
                own = s.clone();
            }
            sessions.extend(po.sessions.iter().cloned());
        }
        // An internal session holds nothing, unless nothing else would (a pipeline).
        if !self.sessions.is_internal(&own) || sessions.is_empty() {
            sessions.insert(0, own);
        }
        // One copy of the new id for all those sessions (issue 15: with 101 sessions on the
        // bench's pipeline, a copy per session was 12 KiB per endpoint).
        let shared: Arc<str> = Arc::from(id.as_str());
        for s in &sessions {
            self.hold(s, &shared);
        }
        tracing::debug!(%id, %session, "created");
        self.push_event(
            SERVER_MANAGER_ID,
            "ObjectCreated",
            Map::from_iter([("object".to_string(), Value::from(id.clone()))]),
        );
        Ok(id)
    }

    /// Adds a reference from `session` to the object and its parent chain.
    pub(crate) fn reference(&mut self, session: &str, id: &str) -> Result<(), KurentoError> {
        self.reference_shared(&Arc::from(session), &Arc::from(id))
    }

    /// [`Engine::reference`] with the session's and the object's ids as shared strings, which
    /// the session and the objects keep (no copy of their own).
    ///
    /// An internal session's reference is a no-op (see [`crate::session::Sessions::is_internal`]).
    fn reference_shared(&mut self, session: &Arc<str>, id: &Arc<str>) -> Result<(), KurentoError> {
        if !self.sessions.is_internal(session) {
            self.hold(session, id);
        }
        Ok(())
    }

    /// Makes `session` a holder of the object `id` and its parent chain.
    fn hold(&mut self, session: &Arc<str>, id: &Arc<str>) {
        let mut cur = Some(id.clone());
        while let Some(oid) = cur {
            let Some(o) = self.registry.get_mut(&oid) else {
                break;
            };
            if o.is_server_manager() {
                // Referencing the ServerManager makes the session known (resumable) but the
                // manager itself is never collected.
                self.sessions.add_ref(session, &oid);
                break;
            }
            o.sessions.insert(session.clone());
            self.sessions.add_ref(session, &oid);
            cur = o.parent.as_deref().map(Arc::from);
        }
    }

    /// `unref`: drops this session's references to the object and its descendants; objects
    /// left without sessions are destroyed.
    pub(crate) fn unref(&mut self, session: &str, id: &str) {
        if self.registry.get(id).is_none_or(|o| o.is_server_manager()) {
            self.sessions.remove_ref(session, id);
            return;
        }
        let mut doomed = vec![];
        self.unref_tree(session, id, &mut doomed);
        for d in doomed {
            self.destroy(&d);
        }
    }

    fn unref_tree(&mut self, session: &str, id: &str, doomed: &mut Vec<String>) {
        let children = match self.registry.get(id) {
            Some(o) => o.children.clone(),
            None => return,
        };
        for c in children {
            self.unref_tree(session, &c, doomed);
        }
        self.sessions.remove_ref(session, id);
        let gone = self.registry.drop_subscriptions(id, session);
        self.sessions.subs_removed(session, gone);
        if let Some(o) = self.registry.get_mut(id) {
            o.sessions.remove(session);
            if o.sessions.is_empty() {
                doomed.push(id.to_string());
            }
        }
    }

    /// `release`: removes the object (and its descendants) from every session and destroys it.
    pub(crate) fn release(&mut self, id: &str) {
        match self.registry.get(id) {
            Some(o) if !o.is_server_manager() => {}
            _ => return,
        }
        self.destroy(id);
    }

    /// Unreferences everything a session holds.
    pub(crate) fn unref_session(&mut self, session: &str) {
        for id in self.sessions.refs(session) {
            self.unref(session, &id);
        }
        self.sessions.remove_ref(session, SERVER_MANAGER_ID);
        let gone = self.registry.drop_subscriptions(SERVER_MANAGER_ID, session);
        self.sessions.subs_removed(session, gone);
    }

    /// Releases everything a session holds.
    pub(crate) fn release_session(&mut self, session: &str) {
        for id in self.sessions.refs(session) {
            self.release(&id);
        }
        self.unref_session(session);
    }

    /// Destroys an object and its descendants (children first): disconnects it, forgets it
    /// in every session, raises ObjectDestroyed.
    fn destroy(&mut self, id: &str) {
        let Some(children) = self.registry.get(id).map(|o| o.children.clone()) else {
            return;
        };
        for c in children.iter().rev() {
            self.destroy(c);
        }
        self.hub_object_gone(id);
        self.disconnect_all(id);
        let Some(mut o) = self.registry.remove(id) else {
            return;
        };
        for s in &o.sessions {
            self.sessions.remove_ref(s, id);
        }
        for sub in &o.subscriptions {
            self.sessions.subs_removed(&sub.session, 1);
        }
        if let Some(origin) = &o.origin {
            self.usage.object_destroyed(origin);
        }
        if let Some(p) = &o.parent {
            if let Some(po) = self.registry.get_mut(p) {
                po.children.retain(|c| c != id);
            }
        }
        o.behavior.released();
        if let (Some(origin), Some(token)) = (&o.origin, o.behavior.stopping()) {
            self.usage.object_stopping(origin, &token);
        }
        self.settings_released(id);
        self.signal_destroyed(id);
        tracing::debug!(%id, "destroyed");
        self.push_event(
            SERVER_MANAGER_ID,
            "ObjectDestroyed",
            Map::from_iter([("objectId".to_string(), Value::from(id))]),
        );
    }

    /// Runs an element hook with a context, collecting the events it raises.
    pub(crate) fn with_element<R>(
        &mut self,
        id: &str,
        f: impl FnOnce(&mut dyn Element, &mut ElementCx<'_>) -> R,
    ) -> Option<R> {
        let wall_ms = self.now.wall_ms;
        let o = self.registry.get_mut(id)?;
        let defer = if self.defer_ok {
            self.defer.as_mut()
        } else {
            None
        };
        let mut cx = ElementCx {
            id,
            wall_ms,
            events: &mut self.pending_events,
            defer,
        };
        Some(f(o.behavior.as_mut(), &mut cx))
    }

    /// The `Tag` complex values of an object.
    pub(crate) fn tags_json(&self, id: &str) -> Value {
        let tags = self
            .registry
            .get(id)
            .map(|o| o.tags.clone())
            .unwrap_or_default();
        Value::Array(
            tags.into_iter()
                .map(|(k, v)| json!({"__module__":"kurento","__type__":"Tag","key":k,"value":v}))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::{Engine, EngineConfig, FixedHost, Now, Output};
    use serde_json::{json, Value};
    use std::sync::Arc;
    use std::time::Instant;

    /// One request on `conn`; its `result`.
    fn ok(e: &mut Engine, now: Now, conn: u64, id: u64, method: &str, params: Value) -> Value {
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        e.handle_text(now, conn, &req.to_string());
        let mut result = None;
        while let Some(Output::Send { conn: to, text }) = e.poll_output() {
            let v: Value = serde_json::from_str(&text).expect("JSON");
            if to == conn && v["id"] == json!(id) {
                result = Some(v["result"].clone());
            }
        }
        result.unwrap_or_else(|| panic!("{method} answered with a result"))
    }

    fn text(v: &Value) -> String {
        v.as_str().expect("a string").to_string()
    }

    /// Issue 15: a child of a pipeline that many sessions reference is referenced by all of
    /// them; they must share one copy of its id (and the child one copy of each session id,
    /// the pipeline's), or a viewer costs a copy per session (12 KiB at the bench's 101).
    #[test]
    fn the_sessions_of_a_pipeline_share_one_string_per_id() {
        let now = Now {
            mono: Instant::now(),
            wall_ms: 1_700_000_000_000,
        };
        let mut e = Engine::new(EngineConfig::default(), Box::new(FixedHost::default()), now);
        let manager = json!({"object": "manager_ServerManager"});
        let mut sessions = vec![];
        for conn in 1..=3 {
            e.connection_opened(now, conn, "127.0.0.1".parse().expect("an address"));
            sessions.push(text(
                &ok(&mut e, now, conn, 1, "describe", manager.clone())["sessionId"],
            ));
        }
        let created = ok(
            &mut e,
            now,
            1,
            2,
            "create",
            json!({"type": "MediaPipeline", "sessionId": sessions[0]}),
        );
        let p = text(&created["value"]);
        for (conn, s) in [(2, &sessions[1]), (3, &sessions[2])] {
            ok(
                &mut e,
                now,
                conn,
                2,
                "ref",
                json!({"object": p, "sessionId": s}),
            );
        }
        let params = json!({"type": "PassThrough", "constructorParams": {"mediaPipeline": p}, "sessionId": sessions[0]});
        let child = text(&ok(&mut e, now, 1, 3, "create", params)["value"]);

        let of = |s: &str| {
            e.sessions
                .ref_string(s, &child)
                .expect("the session holds the child")
        };
        for s in &sessions[1..] {
            assert!(
                Arc::ptr_eq(of(&sessions[0]), of(s)),
                "one allocation of the child's id for all sessions"
            );
        }
        let (pipe, ch) = (
            e.registry.get(&p).expect("pipeline"),
            e.registry.get(&child).expect("child"),
        );
        assert_eq!(ch.sessions.len(), 3);
        for s in &sessions {
            let (a, b) = (pipe.sessions.get(s.as_str()), ch.sessions.get(s.as_str()));
            assert!(
                Arc::ptr_eq(a.expect("in the pipeline"), b.expect("in the child")),
                "the child keeps the pipeline's string of session {s}"
            );
        }
    }
}
