//! Resource limits hold per session, per connection, per client address and server-wide,
//! whatever session ids a client makes up; over a limit the answer is Kurento's 40009 and
//! nothing already created is lost.
mod common;
use common::H;
use fluo_core::EngineConfig;
use serde_json::{json, Value};
use std::time::Duration;

fn cfg() -> EngineConfig {
    EngineConfig {
        max_objects_per_connection: 20,
        max_objects_per_address: 50,
        ..EngineConfig::default()
    }
}

/// Creates a pipeline in session `s` (made up by the client) on `conn`; the full response.
fn create_in(h: &mut H, conn: u64, s: &str) -> Value {
    h.call(
        conn,
        "create",
        json!({"type": "MediaPipeline", "sessionId": s}),
    )
}

fn assert_limit(r: &Value, message: &str) {
    assert_eq!(r["error"]["code"], 40009, "{r}");
    assert_eq!(r["error"]["message"], message, "{r}");
    assert_eq!(r["error"]["data"]["type"], "NOT_ENOUGH_RESOURCES", "{r}");
}

fn pipelines(h: &mut H, conn: u64) -> Vec<String> {
    let v = h.invoke(conn, "manager_ServerManager", "getPipelines", json!({}));
    serde_json::from_value(v).unwrap()
}

#[test]
fn a_connection_making_up_session_ids_is_held_to_its_object_limit() {
    let mut h = H::with(cfg());
    let mut made = vec![];
    for i in 0..1000 {
        let r = create_in(&mut h, 1, &format!("made-up-{i}"));
        match r["result"]["value"].as_str() {
            Some(id) => made.push(id.to_string()),
            None => assert_limit(&r, "Limit reached: at most 20 objects per connection"),
        }
    }
    assert_eq!(made.len(), 20, "1000 session ids, 20 objects");
    // The connection is still served, and everything it made is still there.
    let r = h.raw(1, r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#);
    assert_eq!(r[0]["result"]["value"], "pong");
    h.open_from(2, "10.0.0.2");
    let mut listed = pipelines(&mut h, 2);
    listed.sort();
    made.sort();
    assert_eq!(listed, made);
    // Sessions that were refused or never held anything did not pile up: the 20 that hold
    // a pipeline, the one the last request bound, and the observer's.
    assert!(
        h.e.session_count() <= 22,
        "{} sessions",
        h.e.session_count()
    );

    // A well-behaved client from another address is not affected.
    let p = h.create(2, "MediaPipeline", None);
    for _ in 0..5 {
        h.create(2, "PassThrough", Some(&p));
    }
    // Releasing frees the connection's quota again.
    h.ok(
        1,
        "release",
        json!({"object": made[0], "sessionId": "made-up-0"}),
    );
    assert!(create_in(&mut h, 1, "made-up-again")["result"]["value"].is_string());
    assert_limit(
        &create_in(&mut h, 1, "made-up-once-more"),
        "Limit reached: at most 20 objects per connection",
    );
}

#[test]
fn new_connections_from_one_address_share_its_object_limit() {
    let mut h = H::with(cfg());
    let mut ok = 0;
    for conn in 1..=10u64 {
        if conn > 1 {
            h.open(conn);
        }
        for i in 0..30 {
            let r = create_in(&mut h, conn, &format!("c{conn}-{i}"));
            if r["result"]["value"].is_string() {
                ok += 1;
            } else if ok < 50 {
                assert_limit(&r, "Limit reached: at most 20 objects per connection");
            } else {
                assert_limit(&r, "Limit reached: at most 50 objects per client address");
            }
        }
        h.close(conn);
    }
    assert_eq!(ok, 50, "the address's limit holds across connections");
    // The objects of closed connections still count (their sessions are in the grace
    // period) and still exist.
    h.open_from(20, "192.0.2.7");
    assert_eq!(pipelines(&mut h, 20).len(), 50);
    h.open(21);
    assert_limit(
        &create_in(&mut h, 21, "late"),
        "Limit reached: at most 50 objects per client address",
    );
    // Another address is not affected.
    h.create(20, "MediaPipeline", None);
    // When the grace period ends the objects go, and so does their weight on the address.
    h.advance(Duration::from_secs(241));
    assert_eq!(pipelines(&mut h, 20).len(), 1);
    assert!(create_in(&mut h, 21, "after")["result"]["value"].is_string());
}

#[test]
fn an_ipv6_slash_64_is_one_address() {
    let mut h = H::with(EngineConfig {
        max_objects_per_address: 3,
        ..EngineConfig::default()
    });
    h.open_from(2, "2001:db8:1:2::1");
    h.open_from(3, "2001:db8:1:2:ffff::9");
    h.open_from(4, "2001:db8:1:3::1");
    h.create(2, "MediaPipeline", None);
    h.create(2, "MediaPipeline", None);
    h.create(3, "MediaPipeline", None);
    assert_limit(
        &h.call(3, "create", json!({"type": "MediaPipeline"})),
        "Limit reached: at most 3 objects per client address",
    );
    h.create(4, "MediaPipeline", None);
    // An IPv4-mapped IPv6 address is its IPv4 address.
    let mut h = H::with(EngineConfig {
        max_objects_per_address: 1,
        ..EngineConfig::default()
    });
    h.open_from(2, "::ffff:127.0.0.1");
    h.create(1, "MediaPipeline", None);
    assert_eq!(h.err(2, "create", json!({"type": "MediaPipeline"})), 40009);
}

#[test]
fn a_client_reconnecting_with_its_session_keeps_its_objects_and_its_limits() {
    let mut h = H::with(EngineConfig {
        max_objects_per_session: 4,
        ..EngineConfig::default()
    });
    let s = h.session(1);
    let p = h.create(1, "MediaPipeline", None);
    h.create(1, "PassThrough", Some(&p));
    h.close(1);
    // Back on a new connection from another address (a phone changing networks).
    h.open_from(2, "198.51.100.4");
    assert_eq!(h.ok(2, "connect", json!({"sessionId": s}))["sessionId"], s);
    h.create(2, "PassThrough", Some(&p));
    // The session holds the ServerManager it described, the pipeline and two elements.
    let r = h.call(
        2,
        "create",
        json!({"type":"PassThrough","constructorParams":{"mediaPipeline": p}}),
    );
    assert_limit(&r, "Limit reached: at most 4 objects per session");
    assert_eq!(
        h.invoke(2, &p, "getChildren", json!({}))
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn the_number_of_sessions_is_bounded_per_address_and_in_total() {
    let mut h = H::with(EngineConfig {
        max_sessions_per_address: 10,
        max_sessions: 25,
        ..EngineConfig::default()
    });
    let describe = |h: &mut H, conn: u64, s: &str| {
        h.call(
            conn,
            "describe",
            json!({"object": "manager_ServerManager", "sessionId": s}),
        )
    };
    // Describing the ServerManager makes a session known: it is kept for a returning
    // client, so it counts.
    let mut ok = 0;
    for i in 0..100 {
        let r = describe(&mut h, 1, &format!("a-{i}"));
        if r.get("error").is_none() {
            ok += 1;
        } else {
            assert_limit(&r, "Limit reached: at most 10 sessions per client address");
        }
    }
    assert_eq!(ok, 10);
    // Known sessions still answer.
    assert_eq!(describe(&mut h, 1, "a-3")["result"]["sessionId"], "a-3");
    // Other addresses fill the server up to its total.
    let mut ok = 0;
    for (conn, addr) in [(2, "10.0.0.2"), (3, "10.0.0.3"), (4, "10.0.0.4")] {
        h.open_from(conn, addr);
        for i in 0..10 {
            if describe(&mut h, conn, &format!("{addr}-{i}"))
                .get("error")
                .is_none()
            {
                ok += 1;
            }
        }
    }
    assert_eq!(ok, 15, "25 sessions in all");
    assert_eq!(h.e.session_count(), 25);
    h.open_from(5, "10.0.0.5");
    assert_limit(
        &h.call(5, "create", json!({"type": "MediaPipeline"})),
        "Limit reached: at most 25 sessions on this server",
    );
    // A session that ends makes room.
    h.ok(1, "closeSession", json!({"sessionId": "a-0"}));
    h.create(5, "MediaPipeline", None);
}

#[test]
fn server_wide_object_pipeline_and_element_limits() {
    let mut h = H::with(EngineConfig {
        max_objects: 6,
        max_pipelines: 2,
        max_elements_per_pipeline: 3,
        ..EngineConfig::default()
    });
    let p = h.create(1, "MediaPipeline", None);
    h.create(1, "MediaPipeline", None);
    assert_limit(
        &h.call(1, "create", json!({"type": "MediaPipeline"})),
        "Limit reached: at most 2 media pipelines",
    );
    for _ in 0..3 {
        h.create(1, "PassThrough", Some(&p));
    }
    let pass = json!({"type":"PassThrough","constructorParams":{"mediaPipeline": p}});
    assert_limit(
        &h.call(1, "create", pass.clone()),
        "Limit reached: at most 3 elements per pipeline",
    );
    let q = pipelines(&mut h, 1).into_iter().find(|x| *x != p).unwrap();
    h.create(1, "PassThrough", Some(&q));
    h.open_from(2, "10.0.0.2");
    assert_limit(
        &h.call(
            2,
            "create",
            json!({"type":"PassThrough","constructorParams":{"mediaPipeline": q}}),
        ),
        "Limit reached: at most 6 media objects on this server",
    );
    assert_eq!(h.e.object_count(), 7, "six objects and the ServerManager");
}

#[test]
fn subscriptions_are_bounded_per_address_whatever_sessions_hold_them() {
    let mut h = H::with(EngineConfig {
        max_subscriptions_per_address: 50,
        max_subscriptions: 80,
        session_grace: Duration::from_secs(10),
        ..EngineConfig::default()
    });
    let sub = |h: &mut H, conn: u64, s: &str| {
        h.call(
            conn,
            "subscribe",
            json!({"object": "manager_ServerManager", "type": "ObjectCreated", "sessionId": s}),
        )
    };
    let mut held = vec![];
    for i in 0..200 {
        let s = format!("sub-{i}");
        let r = sub(&mut h, 1, &s);
        match r["result"]["value"].as_str() {
            Some(id) => held.push((s, id.to_string())),
            None => assert_limit(
                &r,
                "Limit reached: at most 50 event subscriptions per client address",
            ),
        }
    }
    assert_eq!(held.len(), 50);
    // Events still reach a subscriber (once a connection speaks for its session again).
    h.raw(
        1,
        r#"{"jsonrpc":"2.0","id":"b","method":"ping","params":{"sessionId":"sub-0"}}"#,
    );
    h.open_from(2, "10.0.0.2");
    h.create(2, "MediaPipeline", None);
    assert_eq!(h.events(1).len(), 1);
    // Unsubscribing makes room.
    let (s, id) = held.pop().unwrap();
    h.ok(
        1,
        "unsubscribe",
        json!({"object": "manager_ServerManager", "subscription": id, "sessionId": s}),
    );
    assert!(sub(&mut h, 1, "sub-again")["result"]["value"].is_string());
    // Another address has its own share, up to the server's total.
    let mut ok = 0;
    for i in 0..50 {
        if sub(&mut h, 2, &format!("other-{i}"))["result"]["value"].is_string() {
            ok += 1;
        }
    }
    assert_eq!(ok, 30, "80 in all");
    assert_limit(
        &sub(&mut h, 2, "other-x"),
        "Limit reached: at most 80 event subscriptions on this server",
    );
    // Sessions that expire give their subscriptions back.
    h.close(1);
    h.close(2);
    h.advance(Duration::from_secs(11));
    h.open(3);
    assert!(sub(&mut h, 3, "fresh")["result"]["value"].is_string());
    assert_eq!(h.e.session_count(), 1);
}

#[test]
fn subscriptions_per_object_are_bounded_per_session_and_in_all() {
    let mut h = H::new();
    let sub = |h: &mut H, s: &str| {
        h.call(
            1,
            "subscribe",
            json!({"object": "manager_ServerManager", "type": "ObjectCreated", "sessionId": s}),
        )
    };
    for _ in 0..1000 {
        assert!(sub(&mut h, "one")["result"]["value"].is_string());
    }
    assert_limit(
        &sub(&mut h, "one"),
        "Limit reached: at most 1000 subscriptions per object and session",
    );
    for s in 0..9 {
        for _ in 0..1000 {
            assert!(sub(&mut h, &format!("s{s}"))["result"]["value"].is_string());
        }
    }
    assert_limit(
        &sub(&mut h, "late"),
        "Limit reached: at most 10000 event subscriptions per object",
    );
    // Other objects are not affected.
    let p = h.create(1, "MediaPipeline", None);
    h.ok(1, "subscribe", json!({"object": p, "type": "Error"}));
}

/// An element whose media goes on stopping after its release while a clone of its token
/// is held (here by the test, as by a GStreamer stopping thread).
struct Lingers(fluo_core::Stopping);

impl fluo_core::Element for Lingers {
    fn stopping(&self) -> Option<fluo_core::Stopping> {
        Some(self.0.clone())
    }
}

#[test]
fn released_objects_still_stopping_count_for_their_address_until_they_have_stopped() {
    use std::sync::{Arc, Mutex};
    let mut h = H::with(EngineConfig {
        max_objects_per_address: 4,
        ..EngineConfig::default()
    });
    let stopping: Arc<Mutex<Vec<fluo_core::Stopping>>> = Arc::default();
    let s = stopping.clone();
    h.e.register_factory(
        "PassThrough",
        Box::new(move |_: &fluo_core::FactoryCx<'_>| {
            let token = fluo_core::Stopping::new();
            s.lock().unwrap().push(token.clone());
            Ok(Box::new(Lingers(token)) as Box<dyn fluo_core::Element>)
        }),
    );
    h.open_from(2, "192.0.2.7");
    let p = h.create(2, "MediaPipeline", None);
    let create = |h: &mut H| {
        h.call(
            2,
            "create",
            json!({"type": "PassThrough", "constructorParams": {"mediaPipeline": p}}),
        )
    };
    // Create and release in a loop: the released elements are still stopping.
    for _ in 0..3 {
        let e = create(&mut h)["result"]["value"]
            .as_str()
            .unwrap()
            .to_string();
        h.ok(2, "release", json!({"object": e}));
    }
    assert_eq!(
        h.invoke(2, &p, "getChildren", json!({})),
        json!([]),
        "released"
    );
    assert_limit(
        &create(&mut h),
        "Limit reached: at most 4 objects per client address",
    );
    // Another address is not held to them.
    h.open_from(3, "192.0.2.8");
    h.create(3, "MediaPipeline", None);
    // One has stopped: room for one more.
    stopping.lock().unwrap().remove(0);
    let e = create(&mut h)["result"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert_limit(
        &create(&mut h),
        "Limit reached: at most 4 objects per client address",
    );
    // All have stopped: the pipeline and `e` are what the address holds.
    stopping.lock().unwrap().clear();
    assert!(create(&mut h)["result"]["value"].is_string());
    assert!(create(&mut h)["result"]["value"].is_string());
    assert_limit(
        &create(&mut h),
        "Limit reached: at most 4 objects per client address",
    );
    // An element that has nothing stopping counts no longer than it lives.
    h.ok(2, "release", json!({"object": e}));
    stopping.lock().unwrap().clear();
    assert!(create(&mut h)["result"]["value"].is_string());
}

#[test]
fn draining_refuses_new_pipelines_also_in_transactions_and_keeps_the_others() {
    let mut h = H::new();
    let pipe = h.create(1, "MediaPipeline", None);
    h.e.set_draining(true);
    let s = h.session(1);
    let r = create_in(&mut h, 1, &s);
    assert_eq!(r["error"]["code"], 40009, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("draining"),
        "{r}"
    );
    let t = h.ok(
        1,
        "transaction",
        json!({"operations": [
            {"jsonrpc":"2.0","id":0,"method":"create","params":{"type":"MediaPipeline"}},
        ]}),
    );
    assert_eq!(t["value"][0]["error"]["code"], 40009, "{t}");
    // The existing pipeline takes new elements.
    h.create(1, "PassThrough", Some(&pipe));
    let reading = h.e.reading();
    assert_eq!(reading.pipelines, 1);
    assert!(h.e.draining());
    assert_eq!(reading.elements.get("PassThrough"), Some(&1));
    assert_eq!(
        reading.errors.get(&40009),
        Some(&1),
        "the transaction's answer is not an error response"
    );
    h.e.set_draining(false);
    h.create(1, "MediaPipeline", None);
    assert_eq!(h.e.reading().pipelines, 2);
}
