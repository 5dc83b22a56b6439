//! Property-based fuzzing of the request parser and dispatch: arbitrary text and arbitrary
//! well-formed-looking requests never panic, always get exactly one reply when they carry an
//! id, and leave the engine answering pings; no error text carries a memory address or a Rust
//! `Debug` dump. Runs in `make test` with a bounded case count (FLUO_FUZZ_CASES overrides
//! it).
mod common;
use common::H;
use fluo_api::text::leaks;
use proptest::prelude::*;
use serde_json::{json, Value};

fn cases() -> u32 {
    std::env::var("FLUO_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z:_./-]{0,12}".prop_map(Value::from),
        Just(Value::from("newref:0")),
        Just(Value::from("manager_ServerManager")),
        Just(Value::from("VIDEO")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const METHODS: &[&str] = &[
    "ping",
    "connect",
    "create",
    "invoke",
    "subscribe",
    "unsubscribe",
    "release",
    "describe",
    "ref",
    "unref",
    "keepAlive",
    "transaction",
    "closeSession",
    "bogus",
];
const OPS: &[&str] = &[
    "connect",
    "disconnect",
    "getName",
    "setName",
    "addTag",
    "getTag",
    "getInfo",
    "getSinkConnections",
    "getGstreamerDot",
    "getKmd",
    "getUsedCpu",
    "setMinEncoderBitrate",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_breaks_the_engine(text in ".{0,200}") {
        let mut h = H::new();
        let replies = h.raw(1, &text);
        prop_assert!(replies.len() <= 1);
        for r in &replies {
            let msg = r["error"]["message"].as_str().unwrap_or_default();
            prop_assert!(!leaks(msg), "the error text leaks: {}", msg);
        }
        let pong = h.raw(1, r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#);
        prop_assert_eq!(&pong[0]["result"]["value"], "pong");
    }

    #[test]
    fn arbitrary_requests_get_one_reply_each(
        steps in prop::collection::vec(
            (0..METHODS.len(), 0..OPS.len(), arb_json(), arb_json(), 0..6usize),
            1..12,
        )
    ) {
        let mut h = H::new();
        let p = h.create(1, "MediaPipeline", None);
        let e = h.create(1, "PassThrough", Some(&p));
        let targets = [p.clone(), e.clone(), "manager_ServerManager".into(), "nope".into(), "newref:0".into(), String::new()];
        for (i, (m, op, a, b, t)) in steps.into_iter().enumerate() {
            let method = METHODS[m];
            let params = json!({
                "object": targets[t],
                "operation": OPS[op],
                "operationParams": {"sink": targets[(t + 1) % targets.len()], "name": a, "key": b.clone(), "value": b, "mediaType": "VIDEO"},
                "type": if m % 2 == 0 { "PassThrough" } else { "ObjectCreated" },
                "constructorParams": {"mediaPipeline": p},
                "operations": [{"jsonrpc":"2.0","id":0,"method":"create","params":{"type":"MediaPipeline"}}],
                "subscription": "x",
            });
            let req = json!({"jsonrpc":"2.0","id": 1000 + i,"method": method,"params": params});
            let replies = h.raw(1, &req.to_string());
            prop_assert_eq!(replies.len(), 1, "{}", req);
            let r = &replies[0];
            prop_assert!(r.get("result").is_some() != r.get("error").is_some());
            // Every error text, also those inside a transaction's answers.
            let mut texts = vec![r["error"]["message"].clone()];
            for sub in r["result"]["value"].as_array().into_iter().flatten() {
                texts.push(sub["error"]["message"].clone());
            }
            for msg in texts.iter().filter_map(Value::as_str) {
                prop_assert!(!leaks(msg), "the error text leaks: {} (for {})", msg, req);
            }
        }
        let pong = h.raw(1, r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#);
        prop_assert_eq!(&pong[0]["result"]["value"], "pong");
    }
}
