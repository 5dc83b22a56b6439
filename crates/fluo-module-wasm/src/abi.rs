//! The ABI between Fluo and a WebAssembly module (a core module; wasm32, so pointers and
//! lengths are `i32`). crates/fluo-module-guest implements the guest's side on top of
//! fluo-module's `Module`/`Instance` API; docs/modules.md describes it for other languages.
//!
//! The guest exports its `memory` and:
//!
//! | export | what it does |
//! |---|---|
//! | `fluo_buffer(len) -> ptr` | a buffer of at least `len` bytes the host writes the next call's input into (valid until the next `fluo_buffer`) |
//! | `fluo_idl() -> 0` | replies its description (Fluo's `.idl` text) |
//! | `fluo_create(class_len, len) -> code` | the buffer holds the class name (`class_len` bytes) then the constructor parameters as a JSON object; 0, or a Kurento error code with the message replied |
//! | `fluo_format() -> fmt` | 0: RGBA frames, 1: I420, 2: BGRA (the OpenCVFilter base's) |
//! | `fluo_invoke(name_len, len) -> code` | the buffer holds the method name then its parameters (a JSON object); 0 with the result replied as JSON, or a code with the message replied |
//! | `fluo_property(name_len, len) -> code` | the buffer holds the property name then its new value (JSON); 0, or a code (the value is refused) with the message replied |
//! | `fluo_frame(width, height, len, pts_ns: i64) -> 0` | the buffer holds one frame, its planes packed without padding (RGBA, BGRA: `width*height*4` bytes; I420: Y, then U and V of `ceil(width/2)*ceil(height/2)` bytes each), changed in place; `pts_ns` is -1 when the frame has none |
//!
//! The host offers, in import module `fluo`:
//!
//! | import | what it does |
//! |---|---|
//! | `reply(ptr, len)` | the current call's answer (UTF-8) |
//! | `emit(ptr, name_len, len)` | raises an event: its name (`name_len` bytes) then its fields (a JSON object) |
//! | `error(ptr, len)` | raises the element's Error event with this description (UTF-8, cut to 1 KiB; an event for the per-call limit); the element goes on |
//! | `log(level, ptr, len)` | a log line in the server's log (1 error, 2 warn, 3 info, 4 debug); level 0 is the guest's panic message, given just before it traps, and becomes part of the Error event's text |
//!
//! Each element runs in an instance of its own: the guest keeps one element's state.

/// The import module's name.
pub const IMPORTS: &str = "fluo";

/// The most a reply, event or log line may take (bytes): more is a broken ABI.
pub const MAX_MESSAGE: usize = 1 << 20;
