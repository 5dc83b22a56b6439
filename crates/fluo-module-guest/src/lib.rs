//! A Fluo module as a WebAssembly module (docs/modules.md, "WebAssembly modules"): write the
//! module against fluo-module's API (`Module`, `Instance`) as a compiled-in one, make the
//! crate a `cdylib`, call [`export_module!`] with the module's value, and build it with
//! `cargo build --release --target wasm32-unknown-unknown`. This crate implements the
//! guest's side of the ABI (crates/fluo-module-wasm/src/abi.rs): the exports the macro
//! defines call [`run`]'s functions, which keep the one element this instance hosts.
//!
//! Built for another target (a workspace build or test), the imports are stand-ins that
//! only record, so the module's own unit tests can run on the build machine.

pub use fluo_module;

use fluo_module::{ErrorCode, Host, Image, Instance, KurentoError, Map, Module, Value};
use std::cell::RefCell;

#[cfg(target_arch = "wasm32")]
mod imports {
    #[link(wasm_import_module = "fluo")]
    extern "C" {
        pub fn reply(ptr: *const u8, len: usize);
        pub fn emit(ptr: *const u8, name_len: usize, len: usize);
        pub fn error(ptr: *const u8, len: usize);
        pub fn log(level: i32, ptr: *const u8, len: usize);
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imports {
    //! Stand-ins off wasm32: nothing crosses.
    pub unsafe fn reply(_ptr: *const u8, _len: usize) {}
    pub unsafe fn emit(_ptr: *const u8, _name_len: usize, _len: usize) {}
    pub unsafe fn error(_ptr: *const u8, _len: usize) {}
    pub unsafe fn log(_level: i32, _ptr: *const u8, _len: usize) {}
}

fn reply(bytes: &[u8]) {
    // SAFETY: the host reads `len` bytes at `ptr` during the call; the slice outlives it.
    unsafe { imports::reply(bytes.as_ptr(), bytes.len()) }
}

/// A log line in the server's log: `level` 1 error, 2 warn, 3 info, 4 debug.
pub fn log(level: i32, line: &str) {
    // SAFETY: as in `reply`.
    unsafe { imports::log(level.max(1), line.as_ptr(), line.len()) }
}

/// The host as the guest sees it: events and errors cross; images are not offered to
/// WebAssembly modules yet.
struct GuestHost;

impl Host for GuestHost {
    fn emit(&mut self, event: &str, fields: Map<String, Value>) {
        let mut bytes = event.as_bytes().to_vec();
        bytes.extend_from_slice(Value::Object(fields).to_string().as_bytes());
        // SAFETY: as in `reply`.
        unsafe { imports::emit(bytes.as_ptr(), event.len(), bytes.len()) }
    }

    fn load_image(&mut self, uri: &str) -> Result<u64, KurentoError> {
        Err(KurentoError::new(
            ErrorCode::MediaObjectOperationNotSupported,
            format!("images ({uri}) cannot be loaded by a WebAssembly module yet"),
        ))
    }

    fn error(&mut self, description: &str) {
        // SAFETY: as in `reply`.
        unsafe { imports::error(description.as_ptr(), description.len()) }
    }
}

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static ELEMENT: RefCell<Option<Box<dyn Instance>>> = const { RefCell::new(None) };
}

/// The functions the exports of [`export_module!`] call (not for modules' own use).
pub mod run {
    use super::*;

    /// Installs a panic hook that gives the host the panic's message before the trap.
    pub fn hook() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let text = info.to_string();
                // SAFETY: as in `reply`.
                unsafe { imports::log(0, text.as_ptr(), text.len()) }
            }))
        });
    }

    /// `fluo_buffer`.
    pub fn buffer(len: usize) -> *mut u8 {
        BUFFER.with_borrow_mut(|b| {
            if b.len() < len {
                b.resize(len, 0);
            }
            b.as_mut_ptr()
        })
    }

    fn split(name_len: usize, len: usize) -> (String, Vec<u8>) {
        BUFFER.with_borrow(|b| {
            let input = &b[..len.min(b.len())];
            let (name, rest) = input.split_at(name_len.min(input.len()));
            (String::from_utf8_lossy(name).into_owned(), rest.to_vec())
        })
    }

    fn answer(r: Result<Value, KurentoError>) -> i32 {
        match r {
            Ok(Value::Null) => 0,
            Ok(v) => {
                reply(v.to_string().as_bytes());
                0
            }
            Err(e) => {
                reply(e.message.as_bytes());
                e.code.code() as i32
            }
        }
    }

    fn object(bytes: &[u8]) -> Result<Map<String, Value>, KurentoError> {
        serde_json::from_slice(bytes).map_err(|e| {
            KurentoError::new(
                ErrorCode::UnexpectedError,
                format!("not a JSON object: {e}"),
            )
        })
    }

    /// `fluo_idl`.
    pub fn idl(module: &dyn Module) -> i32 {
        hook();
        reply(module.idl().as_bytes());
        0
    }

    /// `fluo_create`.
    pub fn create(module: &dyn Module, class_len: usize, len: usize) -> i32 {
        hook();
        let (class, params) = split(class_len, len);
        let made = object(&params).and_then(|p| module.create(&mut GuestHost, &class, &p));
        answer(made.map(|i| {
            ELEMENT.with_borrow_mut(|e| *e = Some(i));
            Value::Null
        }))
    }

    fn with<R>(
        f: impl FnOnce(&mut dyn Instance) -> Result<R, KurentoError>,
    ) -> Result<R, KurentoError> {
        ELEMENT.with_borrow_mut(|e| match e {
            Some(i) => f(&mut **i),
            None => Err(KurentoError::new(
                ErrorCode::UnexpectedError,
                "no element: create was not called",
            )),
        })
    }

    /// `fluo_format`.
    pub fn format() -> i32 {
        let f = with(|i| Ok(i.format()));
        match f {
            Ok(fluo_module::PixelFormat::I420) => 1,
            Ok(fluo_module::PixelFormat::Bgra) => 2,
            _ => 0,
        }
    }

    /// `fluo_invoke`.
    pub fn invoke(name_len: usize, len: usize) -> i32 {
        let (method, params) = split(name_len, len);
        answer(object(&params).and_then(|p| with(|i| i.invoke(&mut GuestHost, &method, &p))))
    }

    /// `fluo_property`.
    pub fn property(name_len: usize, len: usize) -> i32 {
        let (name, value) = split(name_len, len);
        let value: Result<Value, KurentoError> = serde_json::from_slice(&value)
            .map_err(|e| KurentoError::new(ErrorCode::UnexpectedError, format!("not JSON: {e}")));
        let set = value.and_then(|v| with(|i| i.property_set(&mut GuestHost, &name, &v)));
        answer(set.map(|_| Value::Null))
    }

    /// `fluo_frame`.
    pub fn frame(width: u32, height: u32, len: usize, pts_ns: i64) -> i32 {
        let mut buf = BUFFER.with_borrow_mut(std::mem::take);
        let r = with(|i| {
            let planes = super::planes(i.format(), width, height, &mut buf[..len]);
            let mut frame = fluo_module::VideoFrame {
                format: i.format(),
                width,
                height,
                pts_ns: u64::try_from(pts_ns).ok(),
                planes,
            };
            i.process(&mut GuestHost, &mut frame);
            Ok(())
        });
        BUFFER.with_borrow_mut(|b| *b = buf);
        answer(r.map(|_| Value::Null))
    }
}

/// The planes of a packed frame.
fn planes(
    format: fluo_module::PixelFormat,
    width: u32,
    height: u32,
    data: &mut [u8],
) -> Vec<fluo_module::Plane<'_>> {
    let (w, h) = (width as usize, height as usize);
    match format {
        fluo_module::PixelFormat::Rgba | fluo_module::PixelFormat::Bgra => {
            vec![fluo_module::Plane {
                data,
                stride: w * 4,
            }]
        }
        fluo_module::PixelFormat::I420 => {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let (y, rest) = data.split_at_mut((w * h).min(data.len()));
            let (u, v) = rest.split_at_mut((cw * ch).min(rest.len()));
            vec![
                fluo_module::Plane { data: y, stride: w },
                fluo_module::Plane {
                    data: u,
                    stride: cw,
                },
                fluo_module::Plane {
                    data: v,
                    stride: cw,
                },
            ]
        }
    }
}

/// Unused: keeps `Image` in the public API's reach for modules that name it.
#[doc(hidden)]
pub type GuestImage = Image;

/// Defines the ABI's exports for the module `$module` (an expression of a type that
/// implements `fluo_module::Module`, evaluated at each call: a unit struct suits).
#[macro_export]
macro_rules! export_module {
    ($module:expr) => {
        #[no_mangle]
        pub extern "C" fn fluo_buffer(len: usize) -> *mut u8 {
            $crate::run::buffer(len)
        }
        #[no_mangle]
        pub extern "C" fn fluo_idl() -> i32 {
            $crate::run::idl(&$module)
        }
        #[no_mangle]
        pub extern "C" fn fluo_create(class_len: usize, len: usize) -> i32 {
            $crate::run::create(&$module, class_len, len)
        }
        #[no_mangle]
        pub extern "C" fn fluo_format() -> i32 {
            $crate::run::format()
        }
        #[no_mangle]
        pub extern "C" fn fluo_invoke(name_len: usize, len: usize) -> i32 {
            $crate::run::invoke(name_len, len)
        }
        #[no_mangle]
        pub extern "C" fn fluo_property(name_len: usize, len: usize) -> i32 {
            $crate::run::property(name_len, len)
        }
        #[no_mangle]
        pub extern "C" fn fluo_frame(width: u32, height: u32, len: usize, pts_ns: i64) -> i32 {
            $crate::run::frame(width, height, len, pts_ns)
        }
    };
}
