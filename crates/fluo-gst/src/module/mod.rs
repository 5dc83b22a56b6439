//! The host of compiled-in modules (crates/fluo-module, docs/modules.md): each element type
//! a module describes becomes a factory; its instance runs in a filter port
//! ([`crate::filter::FilterPort`]), in a media worker's `gst.module` job when there are
//! workers, in this process with `--workers 0`. The element answers its class's own methods
//! through the instance; the engine answers the rest as for any Filter.

pub(crate) mod host;
pub(crate) mod job;
mod limit;
mod remote;
mod stage;

use crate::filter::{self, LocalPort};
use crate::uri::{self, UriPolicy};
use crate::Media;
use fluo_api::model::idl::{self, ParsedModule};
use fluo_api::model::ClassDef;
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{Edge, Element, ElementCx, Factory, FactoryCx, Stopping};
use fluo_module::{Host, Map, Module, Value};
use fluo_sfu::MediaKind;
use host::{Slot, Who};
use stage::ModuleStage;
use std::sync::{Arc, OnceLock};

/// A compiled-in module and its parsed description.
pub(crate) struct Hosted {
    pub(crate) module: Arc<dyn Module>,
    pub(crate) parsed: ParsedModule,
}

static MODULES: OnceLock<Vec<Hosted>> = OnceLock::new();

/// Installs the compiled-in modules, once, before the server or a media worker starts (both
/// need the same list: the worker's jobs run the instances). A description that does not
/// parse is an error, as is a second install.
pub fn install_modules(modules: Vec<Arc<dyn Module>>) -> Result<(), String> {
    let mut hosted = Vec::with_capacity(modules.len());
    for module in modules {
        let parsed =
            idl::parse(module.idl()).map_err(|e| format!("a module's description: {e}"))?;
        hosted.push(Hosted { module, parsed });
    }
    MODULES
        .set(hosted)
        .map_err(|_| "the modules are installed already".to_string())
}

fn modules() -> &'static [Hosted] {
    MODULES.get().map(Vec::as_slice).unwrap_or_default()
}

/// The installed module `name`.
pub(crate) fn hosted(name: &str) -> Option<&'static Hosted> {
    modules().iter().find(|h| h.parsed.name == name)
}

impl Hosted {
    /// One of its classes that can be created.
    pub(crate) fn class(&self, name: &str) -> Option<&ClassDef> {
        (self.parsed.classes.iter()).find(|c| c.name == name && !c.is_abstract && c.ctor.is_some())
    }
}

/// Whether an installed module declares an event `name` (a worker's event of that name may
/// cross to the server).
pub(crate) fn is_event_name(name: &str) -> bool {
    modules()
        .iter()
        .any(|h| h.parsed.events.iter().any(|e| e.name == name))
}

impl Hosted {
    /// Whether `class` or one of its ancestors in this module declares `method` (the
    /// instance answers it; the engine answers the methods of Fluo's classes).
    pub(crate) fn declares(&self, class: &ClassDef, method: &str) -> bool {
        self.in_lineage(class, |c| c.methods.iter().any(|m| m.name == method))
    }

    /// Whether `class` or one of its ancestors in this module declares the property `name`
    /// (the instance is told when it is set).
    pub(crate) fn declares_property(&self, class: &ClassDef, name: &str) -> bool {
        self.in_lineage(class, |c| c.props.iter().any(|p| p.name == name))
    }

    fn in_lineage(&self, class: &ClassDef, hit: impl Fn(&ClassDef) -> bool) -> bool {
        let mut cur = Some(class);
        // A bounded walk: a description could make a cycle.
        for _ in 0..self.parsed.classes.len() {
            let Some(c) = cur else { break };
            if hit(c) {
                return true;
            }
            let parent = c.extends.as_deref();
            cur = parent.and_then(|p| self.parsed.classes.iter().find(|x| x.name == p));
        }
        false
    }
}

impl Media {
    /// The factories of the installed modules' element types.
    pub fn module_factories(&self) -> Vec<(&'static str, Box<dyn Factory>)> {
        let mut out: Vec<(&'static str, Box<dyn Factory>)> = vec![];
        for hosted in modules() {
            for class in hosted.parsed.classes.iter() {
                if class.is_abstract || class.ctor.is_none() {
                    continue;
                }
                let factory = ModuleFactory {
                    media: self.clone(),
                    hosted,
                    class,
                };
                out.push((class.name.as_str(), Box::new(factory)));
            }
        }
        out
    }
}

struct ModuleFactory {
    media: Media,
    hosted: &'static Hosted,
    class: &'static ClassDef,
}

/// The host of create's check in the server when the instance runs in a worker: images'
/// URIs are checked, nothing is loaded, events are not raised.
struct CheckHost<'a> {
    uris: &'a UriPolicy,
    class: &'a str,
}

impl Host for CheckHost<'_> {
    fn emit(&mut self, _event: &str, _fields: Map<String, Value>) {}

    fn load_image(&mut self, u: &str) -> Result<u64, KurentoError> {
        let illegal = |m: String| KurentoError::illegal_param(format!("{}: {m}", self.class));
        let parsed = uri::parse(u, &["http", "https"]).map_err(|e| illegal(e.message))?;
        self.uris.check(&parsed).map_err(|e| illegal(e.message))?;
        Ok(0)
    }

    /// Nothing is raised from this check: the job's instance raises its own.
    fn error(&mut self, _description: &str) {}
}

impl Factory for ModuleFactory {
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        crate::init().map_err(|e| KurentoError::new(ErrorCode::UnexpectedError, e))?;
        let class = self.class.name.as_str();
        tracing::info!(id = %cx.id, module = %self.hosted.parsed.name, "{class} created");
        if let Some(workers) = &self.media.workers {
            // The module's own checks answer create here; the instance that gets the media
            // is made again in the job.
            let mut check = CheckHost {
                uris: &self.media.uris,
                class,
            };
            let module = &*self.hosted.module;
            // The checking instance goes inside `contain` too (its drop is module code).
            let made = fluo_core::panics::contain(|| {
                module.create(&mut check, class, cx.params).map(drop)
            });
            match made {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(KurentoError::new(
                        ErrorCode::UnexpectedError,
                        format!("{class}: the module panicked at create"),
                    ))
                }
            }
            return Ok(remote::create(
                workers,
                &self.media,
                cx,
                self.hosted,
                self.class,
            ));
        }
        let who = Who {
            id: cx.id.to_string(),
            class,
            events: self.class.events.clone(),
            sink: self.media.events.clone(),
            uris: self.media.uris.clone(),
        };
        let slot = Slot::create(&*self.hosted.module, who, cx.params)?;
        let stage = Arc::new(ModuleStage {
            format: slot.format(),
            slot: slot.clone(),
        });
        let stopping = Stopping::new();
        let key = filter::add_port(
            &self.media,
            cx.id,
            MediaKind::Video,
            stage,
            stopping.clone(),
        );
        Ok(Box::new(Local {
            port: LocalPort {
                id: cx.id.to_string(),
                key,
                media: self.media.clone(),
                stopping,
            },
            slot,
            hosted: self.hosted,
            class: self.class,
        }))
    }
}

/// A module element whose instance runs in the server's process (`--workers 0`).
struct Local {
    port: LocalPort,
    slot: Arc<Slot>,
    hosted: &'static Hosted,
    class: &'static ClassDef,
}

impl Element for Local {
    fn stats(&mut self, q: &fluo_core::StatsQuery<'_>) -> Option<Map<String, Value>> {
        self.port.media.element_stats(q)
    }

    fn invoke(
        &mut self,
        _cx: &mut ElementCx<'_>,
        method: &str,
        params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        let declared = self.hosted.declares(self.class, method);
        declared.then(|| self.slot.invoke(method, params))
    }

    fn property_set(
        &mut self,
        _cx: &mut ElementCx<'_>,
        name: &str,
        value: &Value,
    ) -> Result<(), KurentoError> {
        if !self.hosted.declares_property(self.class, name) {
            return Ok(());
        }
        self.slot.property_set(name, value)
    }

    fn media_connected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.port.connected(edge);
    }

    fn media_disconnected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.port.disconnected(edge);
    }

    fn released(&mut self) {
        self.port.released();
    }

    fn stopping(&self) -> Option<Stopping> {
        Some(self.port.stopping.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Described(&'static str);

    impl Module for Described {
        fn idl(&self) -> &str {
            self.0
        }
        fn create(
            &self,
            _: &mut dyn Host,
            _: &str,
            _: &Map<String, Value>,
        ) -> Result<Box<dyn fluo_module::Instance>, KurentoError> {
            Err(KurentoError::new(ErrorCode::UnexpectedError, "not here"))
        }
    }

    #[test]
    fn the_instance_answers_its_class_and_module_ancestors_methods_only() {
        let module = Described(
            "module m 1.0.0\n\
             class Base extends Filter abstract\n  method a(): void\n  prop p: int\n\
             class Leaf extends Base\n  ctor mediaPipeline: MediaPipeline\n  method b(): void\n\
             class Loop extends Loop\n  ctor mediaPipeline: MediaPipeline\n",
        );
        let hosted = Hosted {
            parsed: idl::parse(module.idl()).expect("parses"),
            module: Arc::new(module),
        };
        let leaf = hosted.class("Leaf").expect("Leaf can be created");
        assert!(hosted.declares(leaf, "b"));
        assert!(hosted.declares(leaf, "a"), "its module ancestor's");
        assert!(
            !hosted.declares(leaf, "getName"),
            "Fluo's classes' methods are the engine's"
        );
        assert!(hosted.declares_property(leaf, "p"));
        assert!(!hosted.declares_property(leaf, "name"));
        assert!(hosted.class("Base").is_none(), "abstract");
        let looped = hosted.class("Loop").expect("Loop");
        assert!(!hosted.declares(looped, "x"), "a cycle ends");
    }
}
