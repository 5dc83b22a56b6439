//! The modules of this server (docs/modules.md): the compiled-in ones (ChromaFilter with
//! the `chroma` feature and OpenCVExample with `opencvexample`, both on by default; the test
//! module with `test-elements`) and the
//! WebAssembly modules found at start in the modules folders (`--modules-dir`,
//! KURENTO_MODULES_PATH). The server's model is the built-in one with their descriptions;
//! the media plane hosts their instances.

use fluo_module::Module;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The compiled-in modules.
pub fn compiled_in() -> Vec<Arc<dyn Module>> {
    let list: Vec<Option<Arc<dyn Module>>> = vec![
        #[cfg(feature = "chroma")]
        Some(Arc::new(fluo_module_chroma::Chroma)),
        #[cfg(feature = "opencvexample")]
        Some(Arc::new(fluo_module_opencvexample::OpenCvExample)),
        #[cfg(feature = "test-elements")]
        Some(Arc::new(fluo_module_test::TestModule)),
        None,
    ];
    list.into_iter().flatten().collect()
}

/// The variables that carry the modules folders and the WebAssembly limits to the media
/// workers (the flags' variables: a worker's environment is cleared but for these).
const MODULES_PATH: &str = "KURENTO_MODULES_PATH";
const CALL_TIME: &str = "FLUO_WASM_CALL_TIME_LIMIT";
const MEMORY: &str = "FLUO_WASM_MEMORY_LIMIT";

/// The environment a media worker needs to load the same modules as the server.
pub(crate) fn worker_env(
    dirs: &[PathBuf],
    limits: fluo_module_wasm::Limits,
) -> Vec<(&'static str, String)> {
    let joined: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    vec![
        (MODULES_PATH, joined.join(":")),
        (CALL_TIME, limits.call_time.as_millis().to_string()),
        (MEMORY, limits.memory_bytes.to_string()),
    ]
}

/// A media worker's modules folders and limits, from [`worker_env`]'s variables.
pub(crate) fn from_env() -> (Vec<PathBuf>, fluo_module_wasm::Limits) {
    let mut limits = fluo_module_wasm::Limits::default();
    let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(ms) = num(CALL_TIME) {
        limits.call_time = std::time::Duration::from_millis(ms.max(1));
    }
    if let Some(b) = num(MEMORY) {
        limits.memory_bytes = usize::try_from(b).unwrap_or(usize::MAX);
    }
    let dirs = std::env::var_os(MODULES_PATH)
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    (dirs, limits)
}

/// Every module of this process: the compiled-in ones, then the WebAssembly ones (set by
/// [`install`]).
fn all() -> &'static [Arc<dyn Module>] {
    LOADED.get().map(Vec::as_slice).unwrap_or_default()
}

static LOADED: OnceLock<Vec<Arc<dyn Module>>> = OnceLock::new();

/// Loads the WebAssembly modules in `dirs` and installs them with the compiled-in ones in
/// the media plane (once per process: the server's and each media worker's). A WebAssembly
/// module that names a module, class, type or event named already (built in, compiled in,
/// or by a file before it) is left out, with a log line.
pub(crate) fn install(dirs: &[PathBuf], limits: fluo_module_wasm::Limits) {
    LOADED.get_or_init(|| {
        // A module whose classes Fluo cannot host is left out (a unit test checks the
        // compiled-in ones).
        let hostable = |m: &dyn Module| match fluo_module::check_classes(m) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("module not loaded: {e}");
                false
            }
        };
        let mut list: Vec<Arc<dyn Module>> = compiled_in()
            .into_iter()
            .filter(|m| hostable(&**m))
            .collect();
        let builtin = fluo_api::model::Model::builtin();
        let mut taken: HashSet<String> = HashSet::new();
        for m in builtin.modules() {
            taken.insert(m.name.clone());
            taken.extend(m.classes.iter().chain(&m.types).chain(&m.events).cloned());
        }
        #[cfg(feature = "test-elements")]
        taken.extend(names(fluo_gst::TEST_MODULE_IDL));
        for m in &list {
            taken.extend(names(m.idl()));
        }
        // The types declared so far: a module may declare one again with the same fields
        // (Kurento's chroma and pointerdetector both declare WindowParam).
        let mut model = builtin.clone();
        for m in &list {
            let _ = model.add_module(m.idl());
        }
        // Compiling a hostile file is wasmtime's work: a panic there drops the modules, not
        // the process.
        let loaded = fluo_core::panics::contain(|| fluo_module_wasm::load_dirs(dirs, limits))
            .unwrap_or_else(|_| {
                tracing::error!("WebAssembly modules not loaded: compiling one panicked");
                Vec::new()
            });
        for m in loaded {
            let mine = names(m.idl());
            let types = fluo_api::model::idl::parse(m.idl())
                .map(|p| p.types)
                .unwrap_or_default();
            let same = |n: &str| {
                let known = model.type_def(n).map(without_prefix);
                types.iter().any(|t| Some(without_prefix(t)) == known)
            };
            let file = m.file().display().to_string();
            if let Some(n) = mine.iter().find(|n| taken.contains(*n) && !same(n)) {
                tracing::error!(%file, "WebAssembly module not loaded: {n} is named already");
                continue;
            }
            if let Err(e) = fluo_module::check_classes(&m) {
                tracing::error!(%file, "WebAssembly module not loaded: {e}");
                continue;
            }
            taken.extend(mine);
            let _ = model.add_module(m.idl());
            list.push(Arc::new(m));
        }
        if let Err(e) = fluo_gst::install_modules(list.clone()) {
            tracing::error!("modules: {e}");
        }
        list
    });
}

/// A type's definition without the module that declares it.
fn without_prefix(t: &fluo_api::model::TypeDef) -> fluo_api::model::TypeDef {
    let mut t = t.clone();
    match &mut t {
        fluo_api::model::TypeDef::Enum { prefix, .. }
        | fluo_api::model::TypeDef::Struct { prefix, .. } => prefix.clear(),
    }
    t
}

/// A description's module, class, type and event names (none if it does not parse).
fn names(idl: &str) -> Vec<String> {
    let Ok(p) = fluo_api::model::idl::parse(idl) else {
        return vec![];
    };
    let mut out = vec![p.name];
    out.extend(p.classes.into_iter().map(|c| c.name));
    out.extend(p.types.into_iter().map(|t| match t {
        fluo_api::model::TypeDef::Enum { name, .. }
        | fluo_api::model::TypeDef::Struct { name, .. } => name,
    }));
    out.extend(p.events.into_iter().map(|e| e.name));
    out
}

/// The built-in model with the installed modules' descriptions (and, in a test-elements
/// build, the test elements' module); after [`install`].
pub(crate) fn model() -> &'static fluo_api::model::Model {
    static MODEL: OnceLock<fluo_api::model::Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let mut m = fluo_api::model::Model::builtin().clone();
        #[cfg(feature = "test-elements")]
        if let Err(e) = m.add_module(fluo_gst::TEST_MODULE_IDL) {
            tracing::error!("the test elements' model does not parse: {e}");
        }
        for module in all() {
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
            fluo_module::check_classes(&*module).expect("Fluo can host its classes");
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
