//! One element's wasm instance ([`Guest`]): its store (limits, what the current call
//! replied, the events it raised), the calls through the ABI ([`crate::abi`]), and the
//! [`fluo_module::Instance`] the host sees.

use crate::{abi, Limits, TICK};
use fluo_api::text::foreign;
use fluo_module::{ErrorCode, Host, Instance, KurentoError, Map, PixelFormat, Value, VideoFrame};
use wasmtime::{
    Caller, Engine, Extern, Linker, Memory, ResourceLimiter, Store, Trap, TypedFunc, WasmParams,
    WasmResults,
};

/// The most an event's name and fields may take (the host's limit for module events).
const MAX_EVENT_BYTES: usize = 64 << 10;

/// The most events one call may raise.
const MAX_EVENTS_PER_CALL: usize = 64;

/// The most lines one call may log, and the most bytes of each.
const MAX_LOG_LINES: usize = 16;
const MAX_LOG_BYTES: usize = 4 << 10;

/// The most of a guest's text (a panic message, an error reply) that reaches a client or the
/// log.
const MAX_TEXT: usize = 1 << 10;

/// What a store holds besides the instance.
pub(crate) struct Ctx {
    memory_limit: usize,
    /// The current call's reply.
    reply: Vec<u8>,
    /// Events raised in the current call, raised through the host after it: a named event
    /// with its fields, or (`None`) an Error event's description.
    events: Vec<(Option<String>, Map<String, Value>)>,
    /// The guest's panic message, if it gave one before trapping.
    panic: Option<String>,
    /// Set when the guest grew its memory past the limit.
    over_memory: Option<usize>,
    /// Lines the current call logged.
    logged: usize,
    class: String,
}

impl ResourceLimiter for Ctx {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.over_memory = Some(desired);
            return Err(wasmtime::Error::msg("memory limit"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 16)
    }

    // One instance with one memory and a few tables: the memory limit is the instance's.
    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }
}

/// Bytes `ptr..ptr+len` of the caller's memory (at most [`abi::MAX_MESSAGE`]).
fn read(caller: &mut Caller<'_, Ctx>, ptr: i32, len: i32) -> wasmtime::Result<Vec<u8>> {
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= abi::MAX_MESSAGE)
        .ok_or_else(|| wasmtime::Error::msg("a message of a negative length or over 1 MiB"))?;
    let memory = caller
        .get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or_else(|| wasmtime::Error::msg("the module exports no memory"))?;
    let start = ptr as u32 as usize;
    (memory.data(&caller).get(start..start + len))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| wasmtime::Error::msg("a message outside the module's memory"))
}

/// A guest's text, at most [`MAX_TEXT`] bytes of it.
fn text(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_TEXT)];
    String::from_utf8_lossy(cut).into_owned()
}

/// The imports of [`abi::IMPORTS`].
fn linker(engine: &Engine) -> wasmtime::Result<Linker<Ctx>> {
    let mut l = Linker::new(engine);
    l.func_wrap(
        abi::IMPORTS,
        "reply",
        |mut c: Caller<'_, Ctx>, p: i32, n: i32| {
            let bytes = read(&mut c, p, n)?;
            c.data_mut().reply = bytes;
            Ok(())
        },
    )?;
    l.func_wrap(
        abi::IMPORTS,
        "emit",
        |mut c: Caller<'_, Ctx>, p: i32, name_len: i32, n: i32| {
            // Checked before anything is read or parsed: an event over the host's limit, or
            // more events in one call than any module needs, break the ABI.
            if usize::try_from(n).is_ok_and(|n| n > MAX_EVENT_BYTES) {
                return Err(wasmtime::Error::msg("an event over 64 KiB"));
            }
            if c.data().events.len() >= MAX_EVENTS_PER_CALL {
                return Err(wasmtime::Error::msg("over 64 events in one call"));
            }
            let bytes = read(&mut c, p, n)?;
            let split = usize::try_from(name_len)
                .ok()
                .filter(|k| *k <= bytes.len())
                .ok_or_else(|| wasmtime::Error::msg("an event name longer than its message"))?;
            let (name, fields) = bytes.split_at(split);
            let fields: Map<String, Value> = serde_json::from_slice(fields).map_err(|e| {
                wasmtime::Error::msg(format!("an event's fields are not a JSON object: {e}"))
            })?;
            c.data_mut().events.push((Some(text(name)), fields));
            Ok(())
        },
    )?;
    l.func_wrap(
        abi::IMPORTS,
        "error",
        |mut c: Caller<'_, Ctx>, p: i32, n: i32| {
            // An Error event counts as an event; its text is cut as any guest's text.
            if c.data().events.len() >= MAX_EVENTS_PER_CALL {
                return Err(wasmtime::Error::msg("over 64 events in one call"));
            }
            let n = n.min(MAX_TEXT as i32);
            let description = text(&read(&mut c, p, n)?);
            let fields = Map::from_iter([("description".to_string(), Value::from(description))]);
            c.data_mut().events.push((None, fields));
            Ok(())
        },
    )?;
    l.func_wrap(
        abi::IMPORTS,
        "log",
        |mut c: Caller<'_, Ctx>, level: i32, p: i32, n: i32| {
            // At most MAX_LOG_LINES lines per call, each cut to MAX_LOG_BYTES: a module
            // cannot fill the operator's disk. The rest are dropped quietly.
            c.data_mut().logged += 1;
            if c.data().logged > MAX_LOG_LINES && level != 0 {
                return Ok(());
            }
            let n = n.min(MAX_LOG_BYTES as i32);
            let line = foreign(text(&read(&mut c, p, n)?));
            let class = c.data().class.clone();
            match level {
                0 => {
                    tracing::warn!("{class}: the WebAssembly module panics: {line}");
                    c.data_mut().panic = Some(line);
                }
                1 => tracing::error!("{class}: {line}"),
                2 => tracing::warn!("{class}: {line}"),
                3 => tracing::info!("{class}: {line}"),
                _ => tracing::debug!("{class}: {line}"),
            }
            Ok(())
        },
    )?;
    Ok(l)
}

/// One element's instance.
pub(crate) struct Guest {
    store: Store<Ctx>,
    memory: Memory,
    buffer: TypedFunc<i32, i32>,
    idl: TypedFunc<(), i32>,
    create: TypedFunc<(i32, i32), i32>,
    format_fn: TypedFunc<(), i32>,
    invoke: TypedFunc<(i32, i32), i32>,
    property: TypedFunc<(i32, i32), i32>,
    frame: TypedFunc<(i32, i32, i32, i64), i32>,
    format: PixelFormat,
    limits: Limits,
    stopped: Option<String>,
    scratch: Vec<u8>,
}

impl Guest {
    /// Instantiates `module` for an element of `class`, under `limits`.
    pub(crate) fn new(
        engine: &Engine,
        module: &wasmtime::Module,
        limits: Limits,
        class: &str,
    ) -> Result<Guest, String> {
        let ctx = Ctx {
            memory_limit: limits.memory_bytes,
            reply: vec![],
            events: vec![],
            panic: None,
            over_memory: None,
            logged: 0,
            class: class.to_string(),
        };
        let mut store = Store::new(engine, ctx);
        store.limiter(|c| c as &mut dyn ResourceLimiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks(limits));
        let linker = linker(engine).map_err(|e| foreign(e.root_cause()))?;
        let inst = match linker.instantiate(&mut store, module) {
            Ok(i) => i,
            Err(e) => return Err(reason(&mut store, limits, &e)),
        };
        let memory = (inst.get_memory(&mut store, "memory"))
            .ok_or_else(|| "the module exports no memory".to_string())?;
        macro_rules! export {
            ($name:literal) => {
                inst.get_typed_func(&mut store, $name)
                    .map_err(|e| format!("its export {}: {}", $name, foreign(e.root_cause())))?
            };
        }
        Ok(Guest {
            buffer: export!("fluo_buffer"),
            idl: export!("fluo_idl"),
            create: export!("fluo_create"),
            format_fn: export!("fluo_format"),
            invoke: export!("fluo_invoke"),
            property: export!("fluo_property"),
            frame: export!("fluo_frame"),
            store,
            memory,
            format: PixelFormat::Rgba,
            limits,
            stopped: None,
            scratch: vec![],
        })
    }

    /// Calls `f` under the time limit; a trap ends the instance (the reason kept for
    /// [`Instance::stopped`] and answered).
    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        f: TypedFunc<P, R>,
        params: P,
    ) -> Result<R, String> {
        if let Some(why) = &self.stopped {
            return Err(why.clone());
        }
        self.store.set_epoch_deadline(ticks(self.limits));
        let ctx = self.store.data_mut();
        ctx.reply.clear();
        ctx.panic = None;
        ctx.over_memory = None;
        ctx.logged = 0;
        match f.call(&mut self.store, params) {
            Ok(r) => Ok(r),
            Err(e) => {
                let why = reason(&mut self.store, self.limits, &e);
                Err(self.stop(why))
            }
        }
    }

    fn stop(&mut self, why: String) -> String {
        if self.stopped.is_none() {
            self.stopped = Some(why.clone());
        }
        why
    }

    /// Writes `parts` one after the other into the guest's buffer; its address.
    fn put(&mut self, parts: &[&[u8]]) -> Result<usize, String> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let n = i32::try_from(len).map_err(|_| "an input over 2 GiB".to_string())?;
        let start = self.call(self.buffer.clone(), n)? as u32 as usize;
        let data = self.memory.data_mut(&mut self.store);
        let Some(dst) = data.get_mut(start..start + len) else {
            return Err(self.stop("fluo_buffer answered a buffer outside its memory".into()));
        };
        let mut at = 0;
        for p in parts {
            dst[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        Ok(start)
    }

    /// The reply as text, cleaned for a client.
    fn reply_text(&self) -> String {
        foreign(text(&self.store.data().reply))
    }

    /// Raises the events the last call emitted.
    fn flush(&mut self, host: &mut dyn Host) {
        for (name, fields) in std::mem::take(&mut self.store.data_mut().events) {
            match name {
                Some(name) => host.emit(&name, fields),
                None => {
                    let description = fields.get("description").and_then(Value::as_str);
                    host.error(description.unwrap_or_default());
                }
            }
        }
    }

    /// Its description (at load).
    pub(crate) fn idl(&mut self) -> Result<String, String> {
        self.call(self.idl.clone(), ())?;
        Ok(String::from_utf8_lossy(&self.store.data().reply).into_owned())
    }

    /// A call of `f` with a name and a JSON value: `Ok(reply)` or the module's error, or
    /// the stop as 40003.
    fn named(
        &mut self,
        host: &mut dyn Host,
        f: TypedFunc<(i32, i32), i32>,
        name: &str,
        json: &Value,
    ) -> Result<Vec<u8>, KurentoError> {
        let class = self.store.data().class.clone();
        let stopped = |why: String| {
            KurentoError::new(
                ErrorCode::UnexpectedError,
                format!("{class}: the module stopped ({why})"),
            )
        };
        let json = json.to_string();
        self.put(&[name.as_bytes(), json.as_bytes()])
            .map_err(stopped)?;
        let len = (name.len() + json.len()) as i32;
        let code = self.call(f, (name.len() as i32, len));
        self.flush(host);
        match code.map_err(stopped)? {
            0 => Ok(std::mem::take(&mut self.store.data_mut().reply)),
            c => {
                let code = ErrorCode::from_code(c.into()).unwrap_or(ErrorCode::UnexpectedError);
                Err(KurentoError::new(code, self.reply_text()))
            }
        }
    }

    /// create's call, then the frame format.
    pub(crate) fn create(
        &mut self,
        host: &mut dyn Host,
        class: &str,
        params: &Map<String, Value>,
    ) -> Result<(), KurentoError> {
        self.named(
            host,
            self.create.clone(),
            class,
            &Value::Object(params.clone()),
        )?;
        let stopped = |why: String| {
            KurentoError::new(
                ErrorCode::UnexpectedError,
                format!("{class}: the module stopped ({why})"),
            )
        };
        self.format = match self.call(self.format_fn.clone(), ()).map_err(stopped)? {
            0 => PixelFormat::Rgba,
            1 => PixelFormat::I420,
            2 => PixelFormat::Bgra,
            n => return Err(stopped(format!("fluo_format answered {n}, not 0, 1 or 2"))),
        };
        Ok(())
    }

    /// One frame through the guest; `Err` ends the instance.
    fn frame(&mut self, host: &mut dyn Host, frame: &mut VideoFrame<'_>) -> Result<(), String> {
        let rows = rows(frame);
        let mut packed = std::mem::take(&mut self.scratch);
        packed.clear();
        for (plane, (row_bytes, height)) in frame.planes.iter().zip(&rows) {
            for y in 0..*height {
                let at = y * plane.stride;
                let row = plane.data.get(at..at + row_bytes);
                packed.extend_from_slice(row.ok_or("a frame shorter than its size")?);
            }
        }
        let len = i32::try_from(packed.len()).map_err(|_| "a frame over 2 GiB")?;
        let start = self.put(&[&packed])?;
        let pts = frame.pts_ns.map(|p| p as i64).unwrap_or(-1);
        let (w, h) = (frame.width as i32, frame.height as i32);
        let r = self.call(self.frame.clone(), (w, h, len, pts));
        self.flush(host);
        r?;
        let data = self.memory.data(&self.store);
        let out = data
            .get(start..start + packed.len())
            .ok_or("the frame's buffer is outside the module's memory")?;
        let mut at = 0;
        for (plane, (row_bytes, height)) in frame.planes.iter_mut().zip(&rows) {
            for y in 0..*height {
                let dst = plane.stride * y;
                plane.data[dst..dst + row_bytes].copy_from_slice(&out[at..at + row_bytes]);
                at += row_bytes;
            }
        }
        self.scratch = packed;
        Ok(())
    }
}

/// Each plane's bytes a row and rows.
fn rows(frame: &VideoFrame<'_>) -> Vec<(usize, usize)> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    match frame.format {
        PixelFormat::Rgba | PixelFormat::Bgra => vec![(w * 4, h)],
        PixelFormat::I420 => {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            vec![(w, h), (cw, ch), (cw, ch)]
        }
    }
}

/// The time limit in epoch ticks.
fn ticks(limits: Limits) -> u64 {
    (limits.call_time.as_millis() / TICK.as_millis()).max(1) as u64 + 1
}

/// Why a call failed, in words a client may read.
fn reason(store: &mut Store<Ctx>, limits: Limits, e: &wasmtime::Error) -> String {
    let ctx = store.data_mut();
    if let Some(bytes) = ctx.over_memory.take() {
        return format!(
            "its memory would grow to {bytes} bytes, over its limit of {} bytes",
            limits.memory_bytes
        );
    }
    if let Some(p) = ctx.panic.take() {
        return format!("it panicked: {p}");
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!(
            "a call ran longer than its limit of {} ms",
            limits.call_time.as_millis()
        ),
        Some(t) => {
            let t = t.to_string();
            format!("it trapped: {}", t.trim_start_matches("wasm trap: "))
        }
        None => foreign(e.root_cause()),
    }
}

impl Instance for Guest {
    fn format(&self) -> PixelFormat {
        self.format
    }

    fn invoke(
        &mut self,
        host: &mut dyn Host,
        method: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, KurentoError> {
        let reply = self.named(
            host,
            self.invoke.clone(),
            method,
            &Value::Object(params.clone()),
        )?;
        if reply.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&reply).map_err(|e| {
            let why = self.stop(format!("{method}'s result is not JSON: {e}"));
            KurentoError::new(ErrorCode::UnexpectedError, why)
        })
    }

    fn property_set(
        &mut self,
        host: &mut dyn Host,
        name: &str,
        value: &Value,
    ) -> Result<(), KurentoError> {
        self.named(host, self.property.clone(), name, value)
            .map(|_| ())
    }

    fn process(&mut self, host: &mut dyn Host, frame: &mut VideoFrame<'_>) {
        if let Err(why) = self.frame(host, frame) {
            self.stop(why);
        }
    }

    fn stopped(&self) -> Option<String> {
        self.stopped.clone()
    }
}
