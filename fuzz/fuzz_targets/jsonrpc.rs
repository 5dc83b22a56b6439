//! Kurento Protocol text frames into one engine: the input is split on '\n' into frames. A
//! frame starting with `2>` goes to a second connection; `#close` closes connection 1 (its
//! session stays for reconnection, as in KMS) and `#open` opens it again; `#tick` advances
//! virtual time by a minute and fires the engine's timers. Everything else goes to
//! connection 1. Whatever comes back must be JSON.
#![no_main]

use fluo_core::{Engine, EngineConfig, FixedHost, Now, Output};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fn drain(e: &mut Engine) {
    while let Some(Output::Send { text, .. }) = e.poll_output() {
        if let Err(err) = serde_json::from_str::<serde_json::Value>(&text) {
            panic!("the engine wrote something that is not JSON ({err}): {text}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut now = Now {
        mono: Instant::now(),
        wall_ms: 1_700_000_000_000,
    };
    let mut e = Engine::new(EngineConfig::default(), Box::new(FixedHost::default()), now);
    let local = std::net::IpAddr::from([127, 0, 0, 1]);
    e.connection_opened(now, 1, local);
    e.connection_opened(now, 2, local);
    for frame in text.split('\n') {
        match frame {
            "#close" => e.connection_closed(now, 1),
            "#open" => e.connection_opened(now, 1, local),
            "#tick" => {
                now = now.advanced(Duration::from_secs(60));
                if e.poll_timeout().is_some_and(|t| t <= now.mono) {
                    e.handle_timeout(now);
                }
            }
            f => match f.strip_prefix("2>") {
                Some(f) => e.handle_text(now, 2, f),
                None => e.handle_text(now, 1, f),
            },
        }
        drain(&mut e);
    }
    // The engine still answers.
    e.handle_text(now, 2, r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#);
    let mut pong = false;
    while let Some(Output::Send { text, .. }) = e.poll_output() {
        pong |= text.contains("pong");
    }
    assert!(pong, "no pong after the input");
});
