//! A test harness driving the engine with virtual time.
#![allow(dead_code)]

use fluo_core::{Engine, EngineConfig, FixedHost, Now, Output};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

pub struct H {
    pub e: Engine,
    pub now: Now,
    next_id: u64,
    inbox: HashMap<u64, VecDeque<Value>>,
}

impl H {
    pub fn new() -> H {
        Self::with(EngineConfig::default())
    }

    pub fn with(config: EngineConfig) -> H {
        let now = Now {
            mono: Instant::now(),
            wall_ms: 1_700_000_000_000,
        };
        let mut h = H {
            e: Engine::new(config, Box::new(FixedHost::default()), now),
            now,
            next_id: 0,
            inbox: HashMap::new(),
        };
        h.open(1);
        h
    }

    /// Opens a connection from 127.0.0.1.
    pub fn open(&mut self, conn: u64) {
        self.open_from(conn, "127.0.0.1");
    }

    /// Opens a connection from `addr`.
    pub fn open_from(&mut self, conn: u64, addr: &str) {
        let ip = addr.parse().expect("an IP address");
        self.e.connection_opened(self.now, conn, ip);
    }

    /// Opens one of Fluo's own (internal) connections, as a cascade relay's.
    pub fn open_internal(&mut self, conn: u64) {
        let ip = "127.0.0.1".parse().expect("an IP address");
        self.e.internal_connection_opened(self.now, conn, ip);
    }

    pub fn close(&mut self, conn: u64) {
        self.e.connection_closed(self.now, conn);
        self.pump();
    }

    fn pump(&mut self) {
        while let Some(Output::Send { conn, text }) = self.e.poll_output() {
            let v: Value = serde_json::from_str(&text).expect("engine writes JSON");
            self.inbox.entry(conn).or_default().push_back(v);
        }
    }

    /// Sends raw text on a connection, returns everything that came back on it that is not
    /// an event.
    pub fn raw(&mut self, conn: u64, text: &str) -> Vec<Value> {
        self.e.handle_text(self.now, conn, text);
        self.pump();
        let q = self.inbox.entry(conn).or_default();
        let (resp, rest): (Vec<Value>, Vec<Value>) =
            q.drain(..).partition(|v| v.get("method").is_none());
        q.extend(rest);
        resp
    }

    /// A request with a fresh id on `conn`; returns the full response.
    pub fn call(&mut self, conn: u64, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let req = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        let mut r = self.raw(conn, &req.to_string());
        assert_eq!(r.len(), 1, "one response expected for {req}: {r:?}");
        let r = r.remove(0);
        assert_eq!(r["id"], json!(id));
        r
    }

    /// `call` that must succeed; returns `result`.
    pub fn ok(&mut self, conn: u64, method: &str, params: Value) -> Value {
        let r = self.call(conn, method, params);
        assert!(r.get("error").is_none(), "{method} failed: {r}");
        r["result"].clone()
    }

    /// `call` that must fail; returns the error code.
    pub fn err(&mut self, conn: u64, method: &str, params: Value) -> i64 {
        let r = self.call(conn, method, params);
        r["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("{method} should fail: {r}"))
    }

    pub fn invoke(&mut self, conn: u64, object: &str, op: &str, params: Value) -> Value {
        self.ok(
            conn,
            "invoke",
            json!({"object": object, "operation": op, "operationParams": params}),
        )["value"]
            .clone()
    }

    pub fn create(&mut self, conn: u64, class: &str, pipeline: Option<&str>) -> String {
        let mut p = json!({"type": class});
        if let Some(pl) = pipeline {
            p["constructorParams"] = json!({"mediaPipeline": pl});
        }
        self.ok(conn, "create", p)["value"]
            .as_str()
            .expect("create returns an id")
            .to_string()
    }

    /// Events received on `conn` so far (drained).
    pub fn events(&mut self, conn: u64) -> Vec<Value> {
        self.pump();
        let q = self.inbox.entry(conn).or_default();
        let (ev, rest): (Vec<Value>, Vec<Value>) =
            q.drain(..).partition(|v| v["method"] == "onEvent");
        q.extend(rest);
        ev.into_iter()
            .map(|v| v["params"]["value"].clone())
            .collect()
    }

    /// Advances virtual time, firing every timer that falls due.
    pub fn advance(&mut self, d: Duration) {
        let target = self.now.advanced(d);
        while let Some(t) = self.e.poll_timeout() {
            if t > target.mono {
                break;
            }
            let step = t.saturating_duration_since(self.now.mono);
            self.now = self.now.advanced(step);
            self.e.handle_timeout(self.now);
        }
        self.now = target;
        self.e.handle_timeout(self.now);
        self.pump();
    }

    pub fn session(&mut self, conn: u64) -> String {
        self.ok(conn, "describe", json!({"object": "manager_ServerManager"}))["sessionId"]
            .as_str()
            .unwrap()
            .to_string()
    }
}
