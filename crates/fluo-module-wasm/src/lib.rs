//! WebAssembly modules (docs/modules.md, "WebAssembly modules"): a `.wasm` file in a modules
//! folder, loaded when the server (and each media worker) starts, run by wasmtime and
//! offered to the rest of Fluo as a [`fluo_module::Module`] like a compiled-in one.
//!
//! Each element gets a wasm instance of its own in a store of its own, with two limits: a
//! call (a frame, a method, a property set, create) that runs longer than
//! [`Limits::call_time`] is interrupted (epoch interruption, a ticker thread every 10 ms),
//! and its linear memory cannot grow past [`Limits::memory_bytes`]. A trap, either limit,
//! or a broken ABI ends the instance: [`fluo_module::Instance::stopped`] says why and the
//! host raises the element's Error event, as after a compiled-in module's panic.
//!
//! The ABI (the guest side: crates/fluo-module-guest) is in [`abi`].

pub mod abi;
mod instance;

use fluo_module::{ErrorCode, Host, Instance, KurentoError, Map, Module, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use wasmtime::{Config, Engine};

/// What each element of a WebAssembly module may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest one call may run (a frame, a method, create).
    pub call_time: Duration,
    /// The most linear memory one element's instance may have.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            call_time: Duration::from_millis(200),
            memory_bytes: 64 << 20,
        }
    }
}

/// The epoch ticker's period: the grain of [`Limits::call_time`].
const TICK: Duration = Duration::from_millis(10);

/// The one engine (compiled code is shared by its stores); `None` when wasmtime could not
/// start as configured.
fn engine() -> Option<&'static Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut c = Config::new();
            c.epoch_interruption(true);
            // Trap texts without wasm offsets.
            c.wasm_backtrace(false);
            // Linear memories are bounds-checked within a small reservation rather than placed
            // in a 4 GiB one each: media workers run under a data size limit.
            c.memory_reservation(0);
            c.memory_guard_size(64 << 10);
            // No memfd images for initial memory: a media worker's sandbox refuses them
            // (instantiation failed with ENODEV there).
            c.memory_init_cow(false);
            // One 32-bit memory per instance (the memory limit counts it alone).
            c.wasm_multi_memory(false);
            c.wasm_memory64(false);
            Engine::new(&c)
                .map_err(|e| {
                    // No engine without the time limit: no WebAssembly modules at all.
                    tracing::error!(
                        "wasmtime does not start: {e}; no WebAssembly module is loaded"
                    );
                })
                .ok()
        })
        .as_ref()
}

/// Starts the epoch ticker once, from the first element's creation (in a media worker, after
/// its sandbox is entered: the sandbox must come before any other thread).
/// `false` when the ticker could not start: no call may run then (it could not be stopped).
pub(crate) fn start_ticker(engine: &'static Engine) -> bool {
    static STARTED: OnceLock<bool> = OnceLock::new();
    *STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("fluo-wasm-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                engine.increment_epoch();
            });
        if let Err(e) = &spawned {
            tracing::error!("wasm modules: no epoch ticker ({e}): their elements are refused");
        }
        spawned.is_ok()
    })
}

/// The most a `.wasm` file may weigh.
const MAX_FILE: u64 = 32 << 20;

/// A module loaded from a `.wasm` file.
pub struct WasmModule {
    file: PathBuf,
    module: wasmtime::Module,
    idl: String,
    limits: Limits,
}

impl std::fmt::Debug for WasmModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmModule")
            .field("file", &self.file)
            .field("limits", &self.limits)
            .finish()
    }
}

impl WasmModule {
    /// Compiles `file` and asks it for its description (one instance, under `limits`, made
    /// and dropped). The error says what is wrong with the file.
    pub fn load(file: &Path, limits: Limits) -> Result<WasmModule, String> {
        let engine = engine().ok_or("cannot be run: wasmtime did not start")?;
        let size = std::fs::metadata(file)
            .map_err(|e| format!("cannot be read: {e}"))?
            .len();
        if size > MAX_FILE {
            return Err(format!("is {size} bytes, over the {MAX_FILE} allowed"));
        }
        let bytes = std::fs::read(file).map_err(|e| format!("cannot be read: {e}"))?;
        let module = wasmtime::Module::new(engine, &bytes).map_err(|e| {
            format!(
                "is not a WebAssembly module: {}",
                first_part(e.root_cause())
            )
        })?;
        // The module's start function and its description run under the time limit too: a
        // ticker of their own, joined before load returns (a media worker loads before its
        // sandbox, which must come before any lasting thread).
        let done = std::sync::atomic::AtomicBool::new(false);
        let idl = std::thread::scope(|scope| {
            let ticker = scope.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            });
            let idl = (|| {
                let mut probe = instance::Guest::new(engine, &module, limits, "(load)")
                    .map_err(|e| format!("cannot be instantiated: {e}"))?;
                probe
                    .idl()
                    .map_err(|e| format!("gives no description: {e}"))
            })();
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = ticker.join();
            idl
        })?;
        fluo_api::model::idl::parse(&idl)
            .map_err(|e| format!("its description does not parse: {e}"))?;
        Ok(WasmModule {
            file: file.to_path_buf(),
            module,
            idl,
            limits,
        })
    }

    /// The file it came from.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

impl Module for WasmModule {
    fn idl(&self) -> &str {
        &self.idl
    }

    fn create(
        &self,
        host: &mut dyn Host,
        class: &str,
        params: &Map<String, Value>,
    ) -> Result<Box<dyn Instance>, KurentoError> {
        let failed = |what: String| {
            KurentoError::new(ErrorCode::UnexpectedError, format!("{class}: {what}"))
        };
        let engine = engine().ok_or_else(|| failed("wasmtime did not start".into()))?;
        if !start_ticker(engine) {
            return Err(failed("its calls could not be time-limited".into()));
        }
        let mut guest = instance::Guest::new(engine, &self.module, self.limits, class)
            .map_err(|e| failed(format!("the module cannot be instantiated: {e}")))?;
        guest.create(host, class, params)?;
        Ok(Box::new(guest))
    }
}

/// A parser's error without its byte dumps: its first line up to a " - " detail.
fn first_part(e: impl std::fmt::Display) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    fluo_api::text::foreign(line.split(" - ").next().unwrap_or(line))
}

/// Loads every `*.wasm` file in `dirs` (in name order); a file that does not load is logged
/// with the reason and left out, as is a folder that cannot be read.
pub fn load_dirs(dirs: &[PathBuf], limits: Limits) -> Vec<WasmModule> {
    let mut out = vec![];
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(dir = %dir.display(), "modules folder cannot be read: {e}");
                continue;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
            .collect();
        files.sort();
        for file in files {
            match WasmModule::load(&file, limits) {
                Ok(m) => {
                    tracing::info!(file = %file.display(), "WebAssembly module loaded");
                    out.push(m);
                }
                Err(e) => {
                    tracing::error!(file = %file.display(), "WebAssembly module not loaded: the file {e}")
                }
            }
        }
    }
    out
}
