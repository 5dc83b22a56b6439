//! What the pipeline view (the operations listener's `/admin/pipelines`) costs the threads
//! that answer it, for one pipeline of N WebRtcEndpoints: one publisher connected (audio,
//! video, data) to N - 1 viewers, each endpoint a node of the media router with its routes.
//!
//! - the core task: `Engine::view` (the pipelines, elements and connections, with the media
//!   connections each carries), with the listener's limits;
//! - the media thread: `MediaCore::view_reading` of what that view shows (every element's
//!   byte counts and states, the route of every media connection): the media thread forwards
//!   nothing while it reads, so this is the stall a view adds to media.
//!
//! `cargo bench -p fluo-rtc --bench view [-- N [ROUNDS]]` (defaults 1000 and 50): the time of
//! each, min / median / max over the rounds, wall time and this thread's CPU time. The
//! endpoints are not negotiated: their counters are read the same way either way.

use fluo_core::{Engine, EngineConfig, FixedHost, Now, Output, ViewLimits};
use fluo_rtc::{MediaCore, ViewAsk, WebRtc};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The operations listener's limits (crates/fluo-server/src/ops/view.rs).
const LIMITS: ViewLimits = ViewLimits {
    pipelines: 100,
    elements: 1000,
    connections: 4000,
    tags: 4,
    text: 64,
};

/// This thread's CPU time: on a shared machine the figure other processes' load does not
/// inflate, as wall time is.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

struct Scene {
    engine: Engine,
    core: MediaCore,
    ctl: tokio::sync::mpsc::UnboundedReceiver<fluo_rtc::Control>,
    now: Now,
    next: u64,
}

impl Scene {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let req = json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params});
        self.engine.handle_text(self.now, 1, &req.to_string());
        let mut answer = Value::Null;
        while let Some(out) = self.engine.poll_output() {
            let Output::Send { text, .. } = out;
            let v: Value = serde_json::from_str(&text).expect("JSON");
            if v["id"] == self.next {
                answer = v;
            }
        }
        while let Ok(c) = self.ctl.try_recv() {
            self.core.control(self.now.mono, c);
        }
        assert!(answer.get("error").is_none(), "{answer}");
        answer["result"]["value"].clone()
    }

    fn create(&mut self, class: &str, pipeline: Option<&str>) -> String {
        let mut p = json!({"type": class});
        if let Some(pl) = pipeline {
            p["constructorParams"] = json!({"mediaPipeline": pl});
        }
        self.call("create", p).as_str().expect("an id").to_string()
    }
}

/// min / median / max of `d`, in milliseconds.
fn spread(mut d: Vec<Duration>) -> String {
    d.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "{:.3} / {:.3} / {:.3} ms",
        ms(d[0]),
        ms(d[d.len() / 2]),
        ms(d[d.len() - 1])
    )
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(1000).max(2);
    let rounds = args.get(1).copied().unwrap_or(50).max(1);
    let now = Now {
        mono: Instant::now(),
        wall_ms: 1_700_000_000_000,
    };
    let (webrtc, ctl) = WebRtc::in_memory(vec!["127.0.0.1:40000".parse().expect("address")]);
    let mut engine = Engine::new(EngineConfig::default(), Box::new(FixedHost::default()), now);
    engine.register_factory("WebRtcEndpoint", webrtc.factory());
    engine.connection_opened(now, 1, std::net::Ipv4Addr::LOCALHOST.into());
    let mut s = Scene {
        engine,
        core: MediaCore::new(now.mono),
        ctl,
        now,
        next: 0,
    };
    let p = s.create("MediaPipeline", None);
    let publisher = s.create("WebRtcEndpoint", Some(&p));
    for _ in 1..n {
        let viewer = s.create("WebRtcEndpoint", Some(&p));
        s.call(
            "invoke",
            json!({"object": publisher, "operation": "connect", "operationParams": {"sink": viewer}}),
        );
    }
    assert_eq!(
        s.core.endpoint_count(),
        n,
        "every endpoint in the media core"
    );

    let (mut core_wall, mut core_cpu, mut media_wall, mut media_cpu) =
        (vec![], vec![], vec![], vec![]);
    let mut shape = (0, 0, 0);
    for _ in 0..rounds {
        let (t, c) = (Instant::now(), thread_cpu());
        let view = std::hint::black_box(s.engine.view(LIMITS, None));
        core_wall.push(t.elapsed());
        core_cpu.push(thread_cpu() - c);
        // The question the listener builds from that view (ops/view.rs, view_ask).
        let mut ask = ViewAsk::default();
        let mut at: HashMap<&str, usize> = HashMap::new();
        for e in view.pipelines.iter().flat_map(|p| &p.elements) {
            at.insert(&e.id, ask.elements.len());
            ask.elements.push(e.id.clone());
        }
        for c in view.pipelines.iter().flat_map(|p| &p.connections) {
            let Some(kind) = c.edge.media_kind() else {
                continue;
            };
            for (src, sink) in &c.carries {
                ask.routes.push((at[src.as_str()], at[sink.as_str()], kind));
            }
        }
        let (t, c) = (Instant::now(), thread_cpu());
        let reading = std::hint::black_box(s.core.view_reading(&ask));
        media_wall.push(t.elapsed());
        media_cpu.push(thread_cpu() - c);
        let connections = view.pipelines.iter().map(|p| p.connections.len()).sum();
        shape = (ask.elements.len(), connections, reading.routes.len());
    }
    println!(
        "pipeline view of {n} WebRtcEndpoints (1 publisher -> {} viewers): {} elements, {} connections, {} media routes read; {rounds} rounds, min / median / max",
        n - 1,
        shape.0,
        shape.1,
        shape.2
    );
    println!(
        "core task   Engine::view            wall {}   cpu {}",
        spread(core_wall),
        spread(core_cpu)
    );
    println!(
        "media thread MediaCore::view_reading wall {}   cpu {}",
        spread(media_wall),
        spread(media_cpu)
    );
}
