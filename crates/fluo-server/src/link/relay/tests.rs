//! Unit tests of the relay service: which requests are relayed, the relay table and the
//! janitor's decisions, the order of requests per relay, the leftovers, answers matched.

use super::janitor::{Ends, InFlight, Leftovers, Probe, Table, Verdict};
use super::rpc::{Inbox, Rpc};
use super::*;
use std::collections::HashSet;
use std::time::Instant;

const P: &str = "p1_kurento.MediaPipeline";
const Q: &str = "q2_kurento.MediaPipeline";

fn req(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn invoke(object: &str, op: &str, args: Value) -> Map<String, Value> {
    req(json!({"id": 1, "method": "invoke", "params": {
        "object": object, "operation": op, "operationParams": args}}))
}

#[test]
fn only_a_media_elements_connect_to_another_pipeline_is_relayed() {
    let src = format!("{P}/a_kurento.WebRtcEndpoint");
    let sink = format!("{Q}/b_kurento.WebRtcEndpoint");
    let c = cross(&invoke(
        &src,
        "connect",
        json!({"sink": sink, "mediaType": "VIDEO"}),
    ))
    .expect("relayed");
    assert!(c.connect && c.source == src && c.sink == sink);
    assert_eq!(c.params, req(json!({"mediaType": "VIDEO"})));
    assert_eq!(
        c.key(),
        Key {
            source: src.clone(),
            pipeline: Q.into()
        }
    );
    let d = cross(&invoke(&src, "disconnect", json!({"sink": sink}))).expect("relayed");
    assert!(!d.connect);
    // The same pipeline: the engine's connect, as KMS's.
    let same = format!("{P}/c_kurento.PassThrough");
    assert!(cross(&invoke(&src, "connect", json!({"sink": same}))).is_none());
    // A Dispatcher's connect names hub ports (of another pipeline: still not a relay).
    let hub = format!("{P}/d_kurento.Dispatcher");
    let ports = json!({"source": format!("{P}/e_kurento.HubPort"), "sink": format!("{Q}/f_kurento.HubPort")});
    assert!(cross(&invoke(&hub, "connect", ports)).is_none());
    let one = json!({"sink": format!("{Q}/f_kurento.HubPort")});
    assert!(cross(&invoke(&hub, "connect", one)).is_none());
    // Other operations, other methods, odd sinks.
    assert!(cross(&invoke(&src, "getSinkConnections", json!({"sink": sink}))).is_none());
    assert!(cross(&invoke(&src, "connect", json!({"sink": 7}))).is_none());
    assert!(cross(&invoke(&src, "connect", json!({"sink": "x/y"}))).is_none());
    assert!(cross(&invoke(&src, "connect", json!({"sink": Q}))).is_none());
    let mut r = invoke(&src, "connect", json!({"sink": sink}));
    r.insert("method".into(), Value::from("transaction"));
    assert!(cross(&r).is_none());
}

fn key(n: u8) -> Key {
    Key {
        source: format!("{P}/{n}_kurento.WebRtcEndpoint"),
        pipeline: Q.into(),
    }
}

#[test]
fn one_relay_per_source_and_sink_pipeline() {
    let mut t = Table::default();
    assert!(t.ends(&key(1)).is_none());
    assert!(t.add(key(1), Ends::new("out1".into(), "in1".into(), None)));
    // A second sink of the same pipeline finds it; another source does not.
    assert_eq!(t.ends(&key(1)).map(|e| e.inp), Some("in1".to_string()));
    assert!(t.ends(&key(2)).is_none());
    let other = Key {
        pipeline: "r3_kurento.MediaPipeline".into(),
        ..key(1)
    };
    assert!(t.ends(&other).is_none());
    assert_eq!(t.keys(), vec![key(1)]);
    assert!(t.remove(&key(1)).is_some() && t.keys().is_empty());
}

#[test]
fn the_janitor_releases_a_relay_idle_twice_in_a_row_or_with_an_end_gone() {
    let mut t = Table::default();
    assert!(t.add(key(1), Ends::new("o".into(), "i".into(), None)));
    // Idle once, then feeding again: the count starts over.
    assert_eq!(t.judge(&key(1), Probe::Idle), Verdict::Keep);
    assert_eq!(t.judge(&key(1), Probe::Feeding), Verdict::Keep);
    assert_eq!(t.judge(&key(1), Probe::Idle), Verdict::Keep);
    // An owner that does not answer now decides nothing.
    assert_eq!(t.judge(&key(1), Probe::Unknown), Verdict::Keep);
    assert_eq!(t.judge(&key(1), Probe::Idle), Verdict::Release);
    assert!(t.ends(&key(1)).is_none());
    assert_eq!(t.judge(&key(1), Probe::Idle), Verdict::Keep);
    assert!(t.add(key(2), Ends::new("o".into(), "i".into(), None)));
    assert_eq!(t.judge(&key(2), Probe::Gone), Verdict::Release);
    assert!(t.keys().is_empty());
}

#[test]
fn a_relays_errors_name_the_relay_and_keep_their_code() {
    let c = cross(&invoke(
        &format!("{P}/a_kurento.WebRtcEndpoint"),
        "connect",
        json!({"sink": format!("{Q}/b_kurento.WebRtcEndpoint")}),
    ))
    .expect("relayed");
    let e = KurentoError::object_not_found("x").to_json();
    let a = about(e.clone(), &c);
    assert_eq!(a["code"], e["code"]);
    let m = a["message"].as_str().unwrap();
    assert!(
        m.starts_with(&format!("relay from {} to {}: ", c.source, c.sink)),
        "{m}"
    );
    assert!(m.ends_with(e["message"].as_str().unwrap()), "{m}");
}

#[test]
fn a_job_out_of_time_is_answered_40004_naming_its_step() {
    let c = cross(&invoke(
        &format!("{P}/a_kurento.WebRtcEndpoint"),
        "connect",
        json!({"sink": format!("{Q}/b_kurento.WebRtcEndpoint")}),
    ))
    .expect("relayed");
    let step = Step::new(&Arc::default());
    let first = step.late(&c);
    assert_eq!(first["code"], ErrorCode::ConnectError.code());
    let m = first["message"].as_str().unwrap();
    assert!(
        m.contains("within 8 s (while waiting for another request on this relay)"),
        "{m}"
    );
    let step = Step::new(&Arc::default());
    step.clone().at("creating relayIn").unwrap();
    let m = step.late(&c)["message"].as_str().unwrap().to_string();
    assert!(
        m.starts_with("relay from ") && m.ends_with("(while creating relayIn)"),
        "{m}"
    );
}

#[test]
fn what_the_janitor_reads_from_the_ends_answers() {
    let some = Ok(json!([{"source": "a", "sink": "b"}]));
    let none = Ok(json!([]));
    let gone = Err(KurentoError::object_not_found("x").to_json());
    let down = Err(KurentoError::new(ErrorCode::ConnectError, "unreachable").to_json());
    assert_eq!(Probe::of(&some, &some), Probe::Feeding);
    assert_eq!(Probe::of(&none, &some), Probe::Idle);
    assert_eq!(Probe::of(&none, &none), Probe::Idle);
    assert_eq!(Probe::of(&gone, &some), Probe::Gone);
    assert_eq!(Probe::of(&down, &gone), Probe::Gone);
    assert_eq!(Probe::of(&none, &gone), Probe::Gone);
    assert_eq!(Probe::of(&down, &some), Probe::Unknown);
    // relayIn feeds something but its upstream went (relayOut gone, or fed by nothing): fed
    // again; relayOut's node silent: fed again after a few checks.
    assert_eq!(Probe::of(&some, &gone), Probe::Cut);
    assert_eq!(Probe::of(&some, &none), Probe::Cut);
    assert_eq!(Probe::of(&some, &down), Probe::Dark);
    // A feed that failed counts the relay broken on 40101 only.
    assert!(janitor::gone(&gone) && !janitor::gone(&down) && !janitor::gone(&some));
}

#[test]
fn answers_and_errors_reach_the_request_that_waits_for_them() {
    let inbox = Inbox::default();
    let mut rx1 = Rpc::awaited(&inbox, 1);
    let mut rx2 = Rpc::awaited(&inbox, 2);
    inbox.deliver(r#"{"jsonrpc":"2.0","method":"onEvent","params":{}}"#);
    inbox.deliver(r#"{"id":2,"jsonrpc":"2.0","error":{"code":40101,"message":"gone"}}"#);
    inbox.deliver(r#"{"id":1,"jsonrpc":"2.0","result":{"value":"x","sessionId":"s"}}"#);
    assert_eq!(
        rx1.try_recv().unwrap(),
        Ok(json!({"value": "x", "sessionId": "s"}))
    );
    assert_eq!(rx2.try_recv().unwrap().unwrap_err()["code"], 40101);
    assert_eq!(Rpc::session(&inbox).as_deref(), Some("s"));
    assert_eq!(lock(&inbox.leftovers).len(), 0);
}

#[test]
fn the_object_of_a_create_answered_after_its_wait_is_queued_for_release() {
    let inbox = Inbox::default();
    // A create (3) and an invoke (4) gave up waiting; both answers come later.
    drop(Rpc::awaited(&inbox, 3));
    drop(Rpc::awaited(&inbox, 4));
    Rpc::timed_out(&inbox, 3, true);
    Rpc::timed_out(&inbox, 4, false);
    inbox.deliver(r#"{"id":4,"jsonrpc":"2.0","result":{"value":"not-an-object"}}"#);
    inbox.deliver(r#"{"id":3,"jsonrpc":"2.0","result":{"value":"q/late_kurento.WebRtcEndpoint"}}"#);
    // The same answer again (a retry) queues nothing more.
    inbox.deliver(r#"{"id":3,"jsonrpc":"2.0","result":{"value":"q/late_kurento.WebRtcEndpoint"}}"#);
    let queued = lock(&inbox.leftovers).take();
    let ids: Vec<&str> = queued.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(ids, ["q/late_kurento.WebRtcEndpoint"]);
    // A late create that failed made nothing.
    Rpc::timed_out(&inbox, 5, true);
    inbox.deliver(r#"{"id":5,"jsonrpc":"2.0","error":{"code":40101,"message":"gone"}}"#);
    assert_eq!(lock(&inbox.leftovers).len(), 0);
}

#[test]
fn an_end_whose_release_failed_is_tried_again_until_gone_or_given_up() {
    let mut l = Leftovers::default();
    let t0 = Instant::now();
    l.add("a".into(), t0);
    l.add("b".into(), t0);
    l.add("c".into(), t0);
    l.add("a".into(), t0 + Duration::from_secs(5));
    let mut due = l.take();
    due.sort();
    assert_eq!(due.len(), 3);
    assert_eq!(l.len(), 0);
    let down = Err(KurentoError::new(ErrorCode::ConnectError, "unreachable").to_json());
    let gone = Err(KurentoError::object_not_found("x").to_json());
    let now = t0 + Duration::from_secs(1);
    // Released, gone (40101), unreachable: only the last stays, with its first time.
    l.released("a".into(), due[0].1, &Ok(Value::Null), now);
    l.released("b".into(), due[1].1, &gone, now);
    l.released("c".into(), due[2].1, &down, now);
    assert_eq!(l.take(), vec![("c".to_string(), t0)]);
    // Unreachable for ten minutes: given up.
    l.released("c".into(), t0, &down, t0 + Duration::from_secs(600));
    assert_eq!(l.len(), 0);
}

fn ask_of(client: &ClientHandle, conn: u64) -> Ask<'_> {
    Ask {
        conn,
        peer: std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
        client,
        session: None,
        text: "",
    }
}

#[test]
fn a_disconnect_waits_for_a_connect_of_its_relay_still_in_progress() {
    let hook = Hook::default();
    let (out, _rx) = mpsc::channel(8);
    let client = ClientHandle::new(out);
    let src = format!("{P}/a_kurento.WebRtcEndpoint");
    let sink = format!("{Q}/b_kurento.WebRtcEndpoint");
    let disconnect = invoke(&src, "disconnect", json!({"sink": sink}));
    let c = cross(&disconnect).unwrap();
    // No relay, nothing waiting: routed as any request.
    assert!(!hook.take(&ask_of(&client, 1), &disconnect, c.clone()));
    // A connect waiting: the disconnect is the relay service's, after it.
    let connect = invoke(&src, "connect", json!({"sink": sink}));
    assert!(hook.take(&ask_of(&client, 1), &connect, cross(&connect).unwrap()));
    assert!(hook.take(&ask_of(&client, 1), &disconnect, c));
    // Another source's disconnect to the same pipeline is not.
    let other = invoke(
        &format!("{P}/z_kurento.WebRtcEndpoint"),
        "disconnect",
        json!({"sink": sink}),
    );
    assert!(!hook.take(&ask_of(&client, 1), &other, cross(&other).unwrap()));
    let mut rx = lock(&hook.rx).take().unwrap();
    let (first, _t1) = rx.try_recv().unwrap();
    let (second, _t2) = rx.try_recv().unwrap();
    assert!(first.cross.connect && !second.cross.connect);
    assert!(rx.try_recv().is_err());
}

/// Whether `t`'s turn comes within 50 ms.
async fn goes(t: &mut Turn) -> bool {
    tokio::time::timeout(Duration::from_millis(50), t.wait())
        .await
        .is_ok()
}

#[tokio::test]
async fn requests_on_one_relay_run_in_the_order_they_were_taken() {
    let turns: Arc<Mutex<Turns>> = Arc::default();
    let mut a = Turn::take(&turns, key(1));
    let mut b = Turn::take(&turns, key(1));
    let mut c = Turn::take(&turns, key(1));
    let mut other = Turn::take(&turns, key(2));
    // The first of each relay goes at once.
    a.wait().await;
    other.wait().await;
    // The second waits for the first, the third for the second.
    assert!(
        !goes(&mut b).await,
        "the second went before the first was done"
    );
    drop(a);
    assert!(goes(&mut b).await);
    assert!(
        !goes(&mut c).await,
        "the third went before the second was done"
    );
    drop(b);
    assert!(goes(&mut c).await);
    // The last one done leaves nothing behind.
    drop(c);
    assert!(!lock(&turns).tails.contains_key(&key(1)));
    drop(other);
    assert!(lock(&turns).tails.is_empty());
}

#[test]
fn a_job_past_its_deadline_takes_no_further_step() {
    let c = cross(&invoke(
        &format!("{P}/a_kurento.WebRtcEndpoint"),
        "connect",
        json!({"sink": format!("{Q}/b_kurento.WebRtcEndpoint")}),
    ))
    .expect("relayed");
    let step = Step::new(&Arc::default());
    assert!(step.at("creating relayOut").is_ok());
    let late = step.late(&c);
    assert!(late["message"]
        .as_str()
        .unwrap()
        .ends_with("(while creating relayOut)"));
    let e = step.at("creating relayIn").unwrap_err();
    assert_eq!(e["code"], ErrorCode::ConnectError.code());
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("before creating relayIn"),
        "{e}"
    );
}

#[test]
fn an_entry_that_stops_releases_every_relay_and_takes_none_after() {
    let mut t = Table::default();
    assert!(t.add(key(1), Ends::new("o1".into(), "i1".into(), None)));
    assert!(t.add(key(2), Ends::new("o2".into(), "i2".into(), None)));
    let mut all: Vec<String> = t.take_all().into_iter().map(|e| e.out).collect();
    all.sort();
    assert_eq!(all, ["o1", "o2"]);
    assert!(t.keys().is_empty());
    // A relay a job finishes during the stop is not recorded (the job releases it).
    assert!(
        !t.add(key(3), Ends::new("o3".into(), "i3".into(), None)),
        "added after the stop"
    );
    assert!(t.keys().is_empty());
}

#[test]
fn a_job_running_when_the_entry_stops_takes_no_further_step() {
    let stopping = Arc::new(AtomicBool::new(false));
    let step = Step::new(&stopping);
    assert!(step.at("creating relayOut").is_ok());
    stopping.store(true, Ordering::SeqCst);
    let e = step.at("creating relayIn").unwrap_err();
    assert_eq!(e["code"], ErrorCode::ConnectError.code());
    let m = e["message"].as_str().unwrap();
    assert!(
        m.contains("stops") && m.contains("before creating relayIn"),
        "{m}"
    );
}

#[tokio::test]
async fn the_requests_queued_when_the_entry_stops_are_answered_40009() {
    let hook = Hook::default();
    let (out, mut answers) = mpsc::channel(64);
    let client = ClientHandle::new(out);
    let sink = format!("{Q}/b_kurento.WebRtcEndpoint");
    let take = |n: usize| {
        let src = format!("{P}/{n}_kurento.WebRtcEndpoint");
        let r = invoke(&src, "connect", json!({"sink": sink}));
        assert!(hook.take(&ask_of(&client, 1), &r, cross(&r).unwrap()));
    };
    for n in 0..3 {
        take(n);
    }
    assert!(answers.try_recv().is_err(), "none answered yet");
    let mut jobs = lock(&hook.rx).take().unwrap();
    refuse_queued(&mut jobs);
    for n in 0..3 {
        let a: Value = serde_json::from_str(&answers.try_recv().expect("answered")).unwrap();
        assert_eq!(a["error"]["code"], 40009, "{a}");
        let m = a["error"]["message"].as_str().unwrap();
        let src = format!("{P}/{n}_kurento.WebRtcEndpoint");
        assert!(
            m.starts_with(&format!("relay from {src} to {sink}: ")),
            "{m}"
        );
    }
    // Their places are given back; one sent after the stop is answered at once.
    assert!(lock(&hook.busy).is_empty(), "places kept");
    take(9);
    let a: Value = serde_json::from_str(&answers.try_recv().expect("answered")).unwrap();
    assert_eq!(a["error"]["code"], 40009, "{a}");
    assert!(lock(&hook.busy).is_empty());
}

#[test]
fn a_connection_has_at_most_32_requests_across_pipelines_at_once() {
    let hook = Hook::default();
    let (out, mut answers) = mpsc::channel(64);
    let client = ClientHandle::new(out);
    let sink = format!("{Q}/b_kurento.WebRtcEndpoint");
    let connect = |n: usize| {
        let src = format!("{P}/{n}_kurento.WebRtcEndpoint");
        invoke(&src, "connect", json!({"sink": sink}))
    };
    let take = |conn: u64, n: usize| {
        let r = connect(n);
        assert!(hook.take(&ask_of(&client, conn), &r, cross(&r).unwrap()));
    };
    for n in 0..PER_CONNECTION {
        take(1, n);
    }
    assert!(answers.try_recv().is_err(), "none answered yet");
    // One more on that connection: answered 40009 at once.
    take(1, 99);
    let refused: Value = serde_json::from_str(&answers.try_recv().unwrap()).unwrap();
    assert_eq!(refused["error"]["code"], 40009, "{refused}");
    // Another connection is not held back.
    take(2, 98);
    assert!(answers.try_recv().is_err());
    // One of the first connection's requests done: room for one more.
    let mut jobs = lock(&hook.rx).take().unwrap();
    drop(jobs.try_recv().unwrap());
    take(1, 100);
    assert!(answers.try_recv().is_err(), "refused after one was done");
    take(1, 101);
    assert!(answers.try_recv().is_ok(), "the 33rd was not refused");
}

#[tokio::test]
async fn a_relay_whose_check_has_not_ended_is_skipped_and_delays_no_other() {
    let mut flight = InFlight::default();
    let mut tasks = tokio::task::JoinSet::new();
    let (slow_tx, slow_rx) = oneshot::channel::<()>();
    assert_eq!(flight.due(vec![key(1), key(2)]), [key(1), key(2)]);
    // Relay 1's owner is slow to answer; relay 2's answers.
    let slow = tasks.spawn(async move { drop(slow_rx.await) });
    flight.started(slow.id(), key(1));
    let fast = tasks.spawn(async {});
    flight.started(fast.id(), key(2));
    let (id, ()) = tasks.join_next_with_id().await.unwrap().unwrap();
    assert_eq!(flight.ended(id), Some(key(2)));
    // Next second: relay 2 is checked again, relay 1 skipped.
    assert_eq!(flight.due(vec![key(1), key(2)]), [key(2)]);
    drop(slow_tx);
    let (id, ()) = tasks.join_next_with_id().await.unwrap().unwrap();
    assert_eq!(flight.ended(id), Some(key(1)));
    assert_eq!(flight.due(vec![key(1), key(2)]), [key(1), key(2)]);
}

/// Relay of source 1 into pipeline `q`.
fn into(q: &str) -> Key {
    Key {
        pipeline: format!("{q}_kurento.MediaPipeline"),
        ..key(1)
    }
}

/// Records relay `k` fed by `parent` (`None`: the source).
fn grown(t: &mut Table, k: &Key, parent: Option<&Key>) {
    let e = Ends::new(
        format!("out-{}", k.pipeline),
        format!("in-{}", k.pipeline),
        parent.cloned(),
    );
    assert!(t.add(k.clone(), e));
}

/// A table of source 1's relays, each `(into, fed by)` grown in order (fed by `None`: the
/// source), with the source's id and an empty set of relays to avoid.
fn tree_of(relays: &[(&str, Option<&str>)]) -> (Table, String, HashSet<Key>) {
    let mut t = Table::default();
    for (q, parent) in relays {
        grown(&mut t, &into(q), parent.map(into).as_ref());
    }
    (t, key(1).source, HashSet::new())
}

#[test]
fn relays_of_one_source_form_a_tree_of_the_fanout_asked() {
    let (mut t, src, none) = tree_of(&[]);
    // F = 1: a chain; the source feeds one relay, each relay one more.
    assert_eq!(tree::pick(&t, &src, 1, &none), None);
    grown(&mut t, &into("b"), None);
    assert_eq!(tree::pick(&t, &src, 1, &none), Some(into("b")));
    grown(&mut t, &into("c"), Some(&into("b")));
    assert_eq!(tree::pick(&t, &src, 1, &none), Some(into("c")));
    assert_eq!(tree::depth(&t, &into("c")), Some(2));
    // F = 2 on the same relays: the source has room for one more.
    assert_eq!(tree::pick(&t, &src, 2, &none), None);
    grown(&mut t, &into("d"), None);
    // Then the shallowest with room, the oldest first: b (feeding c) before d (feeding
    // none), until b is full.
    assert_eq!(tree::pick(&t, &src, 2, &none), Some(into("b")));
    grown(&mut t, &into("f"), Some(&into("b")));
    assert_eq!(tree::pick(&t, &src, 2, &none), Some(into("d")));
    grown(&mut t, &into("e"), Some(&into("d")));
    assert_eq!(tree::pick(&t, &src, 2, &none), Some(into("d")));
    grown(&mut t, &into("g"), Some(&into("d")));
    // Depth 1 full: the oldest at depth 2, c.
    assert_eq!(tree::pick(&t, &src, 2, &none), Some(into("c")));
    // Another source's relays are not its tree.
    assert_eq!(tree::pick(&t, &key(2).source, 2, &none), None);
    // The subtree of b: b, c, f.
    let under_b = tree::subtree(&t, &into("b"));
    assert_eq!(under_b, [into("b"), into("c"), into("f")].into());
    // b fed again avoids itself and its subtree; the source's place b held is free.
    assert_eq!(tree::pick(&t, &src, 2, &under_b), None);
    // With that place taken by another relay (h): h, at depth 1 with room.
    grown(&mut t, &into("h"), None);
    assert_eq!(tree::pick(&t, &src, 2, &under_b), Some(into("h")));
}

#[test]
fn of_feeders_as_deep_the_oldest_is_picked_before_the_least_loaded() {
    // F = 2: z then a fed by the source, y by z: z is older, feeds more, sorts after a.
    let (mut t, src, none) = tree_of(&[("z", None), ("a", None), ("y", Some("z"))]);
    assert_eq!(tree::pick(&t, &src, 2, &none), Some(into("z")));
    // Fed again, z keeps its age.
    let new = Ends::new("o2".into(), "i2".into(), None);
    assert!(t.replace(&into("z"), "in-z_kurento.MediaPipeline", new));
    assert_eq!(tree::pick(&t, &src, 2, &none), Some(into("z")));
}

#[test]
fn a_relay_being_made_holds_its_place_and_an_orphan_or_idle_relay_feeds_none() {
    let none = HashSet::new();
    let src = key(1).source;
    let table: Arc<Mutex<Table>> = Arc::default();
    // Two relays made at once with F = 1: the first takes the source, the second a relay.
    let first = tree::Place::choose(&table, &src, 1, &none);
    assert_eq!(
        (first.parent.clone(), first.from.clone()),
        (None, src.clone())
    );
    grown(&mut lock(&table), &into("b"), None);
    let second = tree::Place::choose(&table, &src, 1, &none);
    drop(first);
    assert_eq!(second.parent, Some(into("b")));
    assert_eq!(second.from, "in-b_kurento.MediaPipeline");
    // b's place is taken by the second while it is made: no room anywhere, a third would
    // be fed by the source.
    assert_eq!(tree::pick(&lock(&table), &src, 1, &none), None);
    drop(second);
    assert!(lock(&table).places.is_empty(), "places left");
    // A relay whose parent left the table is not a parent; nor is an idle one.
    let (mut t, _, _) = tree_of(&[("c", Some("gone")), ("b", None)]);
    assert_eq!(tree::depth(&t, &into("c")), None);
    assert_eq!(t.judge(&into("b"), Probe::Idle), Verdict::Keep);
    assert_eq!(tree::pick(&t, &src, 1, &none), None);
}

#[test]
fn a_relay_cut_from_its_upstream_is_fed_again_and_a_silent_upstream_after_three_checks() {
    let (mut t, _, _) = tree_of(&[("b", None)]);
    assert_eq!(t.judge(&into("b"), Probe::Cut), Verdict::Refeed);
    assert!(t.ends(&into("b")).is_some(), "kept while fed again");
    assert_eq!(t.judge(&into("b"), Probe::Dark), Verdict::Keep);
    assert_eq!(t.judge(&into("b"), Probe::Dark), Verdict::Keep);
    assert_eq!(t.judge(&into("b"), Probe::Dark), Verdict::Refeed);
    // Feeding again in between starts the count over.
    assert_eq!(t.judge(&into("b"), Probe::Dark), Verdict::Keep);
    assert_eq!(t.judge(&into("b"), Probe::Feeding), Verdict::Keep);
    assert_eq!(t.judge(&into("b"), Probe::Dark), Verdict::Keep);
    assert_eq!(t.judge(&into("b"), Probe::Dark), Verdict::Keep);
    // Ends replaced only where the table still has the old ones.
    let new = Ends::new("o2".into(), "i2".into(), None);
    assert!(!t.replace(&into("b"), "not-its-relayIn", new.clone()));
    assert!(t.replace(&into("b"), "in-b_kurento.MediaPipeline", new));
    assert_eq!(t.ends(&into("b")).map(|e| e.inp), Some("i2".into()));
    assert!(!t.replace(&into("x"), "i2", Ends::new("o".into(), "i".into(), None)));
}

#[test]
fn a_relay_whose_upstream_does_not_answer_but_whose_media_arrives_is_kept() {
    // relayIn's getStats: its inbound entries' packets, summed (an outbound one apart).
    let stats = |n: u64| {
        json!({"in_audio": {"type": "inboundrtp", "packetsReceived": n},
            "in_video": {"type": "inboundrtp", "packetsReceived": 2 * n},
            "out_video": {"type": "outboundrtp", "packetsSent": 7}})
    };
    assert_eq!(janitor::received(&stats(10)), 30);
    assert_eq!(janitor::received(&json!({})), 0);
    assert_eq!(janitor::received(&json!("no stats")), 0);
    let (mut t, src, none) = tree_of(&[("b", None)]);
    let b = into("b");
    // Only the entry's link to relayOut's node is cut: relayOut does not answer, but
    // relayIn's packets keep growing. The first such check has nothing to compare with.
    // (`judge_dark` is what the janitor's check calls for such a relay.)
    let check = |t: &mut Table, rx: Option<u64>| t.judge_dark(&b, rx);
    assert_eq!(check(&mut t, Some(100)), (Probe::Dark, Verdict::Keep));
    for n in 1..=5 {
        let got = check(&mut t, Some(100 + 50 * n));
        assert_eq!(got, (Probe::Flowing, Verdict::Keep), "check {n}");
    }
    // A feeder still (its media flows).
    assert_eq!(tree::pick(&t, &src, 1, &none), Some(b.clone()));
    // The media stops too: fed again at the third check without new packets; stats that
    // could not be read tell nothing either.
    assert_eq!(check(&mut t, Some(350)), (Probe::Dark, Verdict::Keep));
    assert_eq!(check(&mut t, None), (Probe::Dark, Verdict::Keep));
    assert_eq!(check(&mut t, Some(350)), (Probe::Dark, Verdict::Refeed));
    // A check that found relayOut answering forgets the count of packets: the next silent
    // spell starts from the packets then.
    let (mut t, _, _) = tree_of(&[("b", None)]);
    assert!(!t.arrived(&b, Some(100)));
    assert_eq!(t.judge(&b, Probe::Feeding), Verdict::Keep);
    assert!(
        !t.arrived(&b, Some(900)),
        "compared with a count before the answer"
    );
    assert!(t.arrived(&b, Some(901)));
    // Statistics that could not be read once do not hide the packets that arrived across
    // them (a busy node answers late now and then).
    let (mut t, _, _) = tree_of(&[("b", None)]);
    assert_eq!(check(&mut t, Some(100)), (Probe::Dark, Verdict::Keep));
    assert_eq!(check(&mut t, None), (Probe::Dark, Verdict::Keep));
    assert_eq!(check(&mut t, Some(150)), (Probe::Flowing, Verdict::Keep));
    assert!(!t.arrived(&into("x"), Some(1)), "not a relay of the table");
}

#[test]
fn a_relay_whose_relay_in_does_not_answer_feeds_none_and_after_three_checks_takes_no_place() {
    // F = 1: b fed by the source; b's node stops answering.
    let (mut t, src, none) = tree_of(&[("b", None)]);
    assert_eq!(tree::pick(&t, &src, 1, &none), Some(into("b")));
    assert_eq!(t.judge(&into("b"), Probe::Unknown), Verdict::Keep);
    // Not a feeder from the first silent check; still the source's place for two more.
    assert_eq!(tree::pick(&t, &src, 1, &none), None);
    assert_eq!(t.judge(&into("b"), Probe::Unknown), Verdict::Keep);
    grown(&mut t, &into("c"), None);
    assert_eq!(tree::pick(&t, &src, 2, &none), Some(into("c")));
    // The third: b's place under the source is free again.
    assert_eq!(t.judge(&into("b"), Probe::Unknown), Verdict::Keep);
    assert_eq!(tree::pick(&t, &src, 2, &none), None);
    // An answer again: a feeder, and counted, again.
    assert_eq!(t.judge(&into("b"), Probe::Feeding), Verdict::Keep);
    assert_eq!(tree::pick(&t, &src, 2, &none), Some(into("b")));
}

#[test]
fn a_relay_that_a_new_relay_could_not_be_made_from_feeds_none_for_a_while() {
    // F = 1: b fed by the source, c by b.
    let (mut t, src, none) = tree_of(&[("b", None), ("c", Some("b"))]);
    assert_eq!(tree::pick(&t, &src, 1, &none), Some(into("c")));
    // Failed at `at`: no feeder until FAILED_FOR later (times after `at`, so that the test
    // does not depend on how long the host has been up: review R42 B2).
    let at = Instant::now();
    t.feeder_failed(into("c"), at);
    assert!(t.failed_lately(&into("c"), at));
    assert_eq!(tree::pick(&t, &src, 1, &none), None);
    let almost = at + janitor::FAILED_FOR - Duration::from_millis(1);
    assert!(t.failed_lately(&into("c"), almost));
    assert_eq!(tree::pick_at(&t, &src, 1, &none, almost), None);
    // FAILED_FOR after it: a feeder again.
    let later = at + janitor::FAILED_FOR;
    assert!(!t.failed_lately(&into("c"), later));
    assert_eq!(tree::pick_at(&t, &src, 1, &none, later), Some(into("c")));
    // A failure recorded later forgets those past FAILED_FOR before it.
    t.feeder_failed(into("b"), later + Duration::from_secs(1));
    assert!(!t.failed_lately(&into("c"), at));
}

#[test]
fn a_relay_being_fed_again_feeds_no_new_relay_nor_does_anything_under_it() {
    // F = 2: b and e fed by the source, c by b, f and g by e: b has room.
    let relays = [
        ("b", None),
        ("e", None),
        ("c", Some("b")),
        ("f", Some("e")),
        ("g", Some("e")),
    ];
    let (mut t, src, none) = tree_of(&relays);
    assert_eq!(tree::pick(&t, &src, 2, &none), Some(into("b")));
    // b cut: neither b nor c (under it) feeds a new relay until b has new ends.
    assert_eq!(t.judge(&into("b"), Probe::Cut), Verdict::Refeed);
    assert_eq!(tree::depth(&t, &into("c")), None);
    assert_eq!(tree::pick(&t, &src, 2, &none), Some(into("f")));
    // f cut too (two at once under other parents, review R42 finding 1b): not picked.
    assert_eq!(t.judge(&into("f"), Probe::Cut), Verdict::Refeed);
    assert_eq!(tree::pick(&t, &src, 2, &none), Some(into("g")));
    // A refeed that gave up leaves b a feeder again (its own ends only).
    t.refeed_gave_up(&into("b"), "not-its-relayIn");
    assert_eq!(tree::pick(&t, &src, 2, &none), Some(into("g")));
    t.refeed_gave_up(&into("b"), "in-b_kurento.MediaPipeline");
    assert_eq!(tree::depth(&t, &into("c")), Some(2));
    assert_eq!(tree::pick(&t, &src, 2, &none), Some(into("b")));
    // f's new ends (fed by b) recorded: f feeds again, b is full, e has room.
    let new = Ends::new("o2".into(), "i2".into(), Some(into("b")));
    assert!(t.replace(&into("f"), "in-f_kurento.MediaPipeline", new));
    assert_eq!(tree::pick(&t, &src, 2, &none), Some(into("e")));
}

#[test]
fn a_relay_fed_again_connects_each_sink_as_the_old_relay_in_fed_it() {
    // An item of getSinkConnections: its media type and descriptions kept.
    let item = json!({"source": "old", "sink": "k", "type": "VIDEO",
        "sourceDescription": "", "sinkDescription": "default"});
    assert_eq!(
        tree::reconnect(&item),
        json!({"sink": "k", "mediaType": "VIDEO", "sinkMediaDescription": "default"})
    );
    let bare = json!({"source": "old", "sink": "k"});
    assert_eq!(tree::reconnect(&bare), json!({"sink": "k"}));
}
