//! The modules compiled into this build (docs/modules.md): ChromaFilter with the `chroma`
//! feature (on by default), the test module with `test-elements`. The server's model is the
//! built-in one with their descriptions; the media plane hosts their instances.

use fluo_module::Module;
use std::sync::{Arc, OnceLock};

/// The compiled-in modules.
pub fn compiled_in() -> Vec<Arc<dyn Module>> {
    let list: Vec<Option<Arc<dyn Module>>> = vec![
        #[cfg(feature = "chroma")]
        Some(Arc::new(fluo_module_chroma::Chroma)),
        #[cfg(feature = "test-elements")]
        Some(Arc::new(fluo_module_test::TestModule)),
        None,
    ];
    list.into_iter().flatten().collect()
}

/// Installs the compiled-in modules in the media plane (once per process: the server's and
/// each media worker's).
pub(crate) fn install() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if let Err(e) = fluo_gst::install_modules(compiled_in()) {
            tracing::error!("modules: {e}");
        }
    });
}

/// The built-in model with the compiled-in modules' descriptions (and, in a test-elements
/// build, the test elements' module).
pub(crate) fn model() -> &'static fluo_api::model::Model {
    static MODEL: OnceLock<fluo_api::model::Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let mut m = fluo_api::model::Model::builtin().clone();
        #[cfg(feature = "test-elements")]
        if let Err(e) = m.add_module(fluo_gst::TEST_MODULE_IDL) {
            tracing::error!("the test elements' model does not parse: {e}");
        }
        for module in compiled_in() {
            if let Err(e) = m.add_module(module.idl()) {
                tracing::error!("a module's description does not parse: {e}");
            }
        }
        m
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    /// A module's names must not take a built-in one's (its factory would replace the
    /// built-in's) nor another module's.
    #[test]
    fn the_compiled_in_modules_name_nothing_twice() {
        let builtin = fluo_api::model::Model::builtin();
        let mut modules: HashSet<String> =
            builtin.modules().iter().map(|m| m.name.clone()).collect();
        let mut names: HashSet<String> = HashSet::new();
        for m in builtin.modules() {
            names.extend(m.classes.iter().chain(&m.types).chain(&m.events).cloned());
        }
        #[cfg(feature = "test-elements")]
        {
            let t = fluo_api::model::idl::parse(fluo_gst::TEST_MODULE_IDL).expect("parses");
            modules.insert(t.name);
            names.extend(t.classes.into_iter().map(|c| c.name));
        }
        let list = super::compiled_in();
        #[cfg(feature = "chroma")]
        assert!(!list.is_empty());
        for module in list {
            let p =
                fluo_api::model::idl::parse(module.idl()).expect("a module's description parses");
            assert!(
                modules.insert(p.name.clone()),
                "module {} named twice",
                p.name
            );
            let own = p.classes.iter().map(|c| c.name.clone());
            let own = own.chain(p.types.iter().map(|t| match t {
                fluo_api::model::TypeDef::Enum { name, .. }
                | fluo_api::model::TypeDef::Struct { name, .. } => name.clone(),
            }));
            for n in own.chain(p.events.iter().map(|e| e.name.clone())) {
                assert!(names.insert(n.clone()), "{}: {n} is named already", p.name);
            }
        }
    }
}
