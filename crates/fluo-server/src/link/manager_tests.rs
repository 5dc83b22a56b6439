//! The unit tests of link/manager.rs (the ServerManager through an entry).

use super::*;
use crate::ws::Seen;

fn req(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn only_the_lists_and_the_managers_subscriptions_span_the_cluster() {
    let inv = |op: &str, object: &str| {
        req(json!({"method": "invoke", "params": {"object": object, "operation": op}}))
    };
    assert_eq!(
        gathered(&inv("getPipelines", SERVER_MANAGER_ID)),
        Some("getPipelines")
    );
    assert_eq!(
        gathered(&inv("getSessions", SERVER_MANAGER_ID)),
        Some("getSessions")
    );
    for op in [
        "getInfo",
        "getKmd",
        "getCpuCount",
        "getUsedMemory",
        "getMetadata",
    ] {
        assert_eq!(gathered(&inv(op, SERVER_MANAGER_ID)), None, "{op}");
    }
    assert_eq!(
        gathered(&inv("getPipelines", "p_kurento.MediaPipeline")),
        None
    );
    let sub = |object: &str| {
        req(json!({"method": "subscribe", "params": {"object": object, "type": "ObjectCreated"}}))
    };
    assert!(manager_subscribe(&sub(SERVER_MANAGER_ID)));
    assert!(!manager_subscribe(&sub("p_kurento.MediaPipeline")));
    assert!(!manager_subscribe(&inv("getPipelines", SERVER_MANAGER_ID)));
}

fn record(id: &str, boot: u64) -> NodeRecord {
    NodeRecord {
        boot,
        info: fluo_cluster::NodeInfo {
            id: NodeId::new(id).unwrap(),
            signalling: "ws://127.0.0.1:9/kurento".into(),
            peer: "127.0.0.1:9".into(),
            capacity: 10,
        },
        stats: Default::default(),
    }
}

/// `seen`'s connection is answered in session `s` (its writer saw the answer).
fn answered_in(seen: &Seen, s: &str) {
    seen.learn(&json!({"id": 1, "jsonrpc": "2.0", "result": {"sessionId": s}}).to_string());
}

/// A request of `at`'s connection, last answered in `session`.
fn ask<'a>(at: &'a At, session: Option<&str>, text: &'a str) -> Ask<'a> {
    Ask {
        conn: at.conn,
        peer: at.peer,
        client: &at.client,
        session: session.map(str::to_string),
        text,
    }
}

/// The router of entry node-a (store in memory, nothing listed, no link).
fn router() -> Router {
    let secret = Arc::new(crate::config::ClusterSecret(b"s".to_vec()));
    Router::new(
        NodeId::new("node-a").unwrap(),
        Arc::new(crate::cluster::View::default()),
        fluo_cluster::Coordinator::in_process(),
        (secret, Duration::from_secs(3)),
        Duration::from_secs(5),
        crate::link::RELAY_FANOUT,
    )
}

/// Client connection `conn` (its handle, what it is sent).
fn conn(conn: u64) -> (At, tokio::sync::mpsc::Receiver<String>) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let at = At {
        conn,
        client: ClientHandle::new(tx),
        peer: IpAddr::from([127, 0, 0, 1]),
    };
    (at, rx)
}

fn sub(event: &str) -> Map<String, Value> {
    req(json!({"jsonrpc": "2.0", "id": 3, "method": "subscribe",
        "params": {"object": SERVER_MANAGER_ID, "type": event}}))
}

/// A todo as (connection, node, bind, event types).
type Due = (u64, String, bool, Vec<String>);

/// What is due for each todo.
fn due(l: &Listeners, others: &[NodeRecord], link: &Arc<Link>) -> Vec<Due> {
    due_at(l, others, link, Instant::now())
}

/// What is due for each todo at `now`.
fn due_at(l: &Listeners, others: &[NodeRecord], link: &Arc<Link>, now: Instant) -> Vec<Due> {
    let todo = l.due(others, now, |_| Some(link.clone()));
    let planned = |t: &Todo| {
        let m = &l.sessions[&t.session];
        let (bind, reqs) = m.plan(&t.node.info.id, Some(link), t.at.conn, now);
        let events = reqs.iter().map(|r| event_type(r).to_string()).collect();
        (t.at.conn, t.node.info.id.to_string(), bind, events)
    };
    todo.iter().map(planned).collect()
}

/// Records `l`'s todos as sent over `link`.
fn send_all(l: &mut Listeners, others: &[NodeRecord], link: &Arc<Link>) {
    send_all_at(l, others, link, Instant::now());
}

/// Records `l`'s todos at `now` as sent over `link`.
fn send_all_at(l: &mut Listeners, others: &[NodeRecord], link: &Arc<Link>, now: Instant) {
    for t in l.due(others, now, |_| Some(link.clone())) {
        let m = l.sessions.get_mut(&t.session).unwrap();
        let (_, reqs) = m.plan(&t.node.info.id, Some(link), t.at.conn, now);
        m.sent(&t.node.info.id, link, t.at.conn, &reqs);
    }
}

#[test]
fn a_sessions_subscriptions_follow_it_to_a_new_connection_and_end_with_it() {
    let grace = Duration::from_secs(5);
    let mut l = Listeners::new(grace);
    let b = [record("node-b", 1)];
    let (link, _frames) = super::super::entry::detached("node-b", 1);
    let (at1, _rx1) = conn(1);
    assert!(l.listen(at1.clone(), Some("s".into()), &sub("ObjectCreated")));
    assert!(
        !l.listen(at1, Some("s".into()), &sub("ObjectCreated")),
        "one per type"
    );
    let made = |c, n: &str| vec![(c, n.to_string(), false, vec!["ObjectCreated".to_string()])];
    assert_eq!(due(&l, &b, &link), made(1, "node-b"));
    send_all(&mut l, &b, &link);
    assert!(due(&l, &b, &link).is_empty());
    // The connection ends: kept through the grace period, nothing to make meanwhile.
    let t0 = Instant::now();
    l.closed(1, t0);
    l.tidy(t0 + grace - Duration::from_millis(1));
    assert!(l.sessions.contains_key("s"));
    assert!(due(&l, &b, &link).is_empty());
    // Resumed on connection 2: bound to it where made (nothing made again there); a node
    // listed since gets the subscription on connection 2.
    let (at2, _rx2) = conn(2);
    assert!(l.attach("s", at2.clone()));
    assert!(!l.attach("s", at2.clone()), "already there");
    let (link_c, _frames_c) = super::super::entry::detached("node-c", 1);
    assert_eq!(
        due(&l, &b, &link),
        vec![(2, "node-b".to_string(), true, vec![])]
    );
    assert_eq!(due(&l, &[record("node-c", 1)], &link_c), made(2, "node-c"));
    send_all(&mut l, &b, &link);
    assert!(due(&l, &b, &link).is_empty());
    // A new link to node-b in the same boot (the old one broke): the copies live on in
    // the session there, so the session is bound to the new mirror and nothing is made
    // again (R43-cluster 6); a link to a new boot (the node restarted) makes them again.
    let (link2, _frames2) = super::super::entry::detached("node-b", 1);
    assert_eq!(
        due(&l, &b, &link2),
        vec![(2, "node-b".to_string(), true, vec![])]
    );
    let (link3, _frames3) = super::super::entry::detached("node-b", 2);
    assert_eq!(due(&l, &[record("node-b", 2)], &link3), made(2, "node-b"));
    // Connection 2 ends too; past the grace period the session's subscriptions end, and
    // a later connection speaking for it finds none.
    let t1 = Instant::now();
    l.closed(2, t1);
    l.tidy(t1 + grace);
    assert!(l.sessions.is_empty());
    assert!(!l.attach("s", at2));
    // A closeSession ends them at once.
    let (at3, _rx3) = conn(3);
    l.listen(at3, Some("s3".into()), &sub("ObjectCreated"));
    l.ended("s3");
    assert!(l.sessions.is_empty() && l.conns.is_empty());
    // A connection that speaks for another session leaves the first one's subscriptions
    // waiting for it, as the engine leaves that session.
    let (at4, _rx4) = conn(4);
    l.listen(at4.clone(), Some("s4".into()), &sub("ObjectCreated"));
    assert!(!l.attach("s5", at4.clone()));
    assert!(l.sessions["s4"].at.is_none() && l.conns.is_empty());
    assert!(l.attach("s4", at4));
    assert_eq!(l.conns.get(&4).map(String::as_str), Some("s4"));
}

#[test]
fn a_subscription_kept_before_its_session_was_known_is_the_sessions_once_learnt() {
    let mut l = Listeners::new(Duration::from_secs(5));
    let b = [record("node-b", 1)];
    let (link, _frames) = super::super::entry::detached("node-b", 1);
    let seen = Arc::<Seen>::default();
    let (mut at, _rx) = conn(1);
    at.client = at.client.seeing(seen.clone());
    l.listen(at.clone(), None, &sub("ObjectCreated"));
    // Nothing to make before the session is known; a connection that ends first leaves
    // nothing.
    l.tidy(Instant::now());
    assert!(due(&l, &b, &link).is_empty());
    answered_in(&seen, "s");
    assert_eq!(l.learnt(1).as_deref(), Some("s"));
    l.listen(at, Some("s".into()), &sub("ObjectDestroyed"));
    let events = vec!["ObjectCreated".to_string(), "ObjectDestroyed".to_string()];
    assert_eq!(
        due(&l, &b, &link),
        vec![(1, "node-b".into(), false, events)]
    );
    let (at2, _rx2) = conn(2);
    l.listen(at2, None, &sub("ObjectCreated"));
    l.closed(2, Instant::now());
    assert!(l.unsessioned.is_empty());
}

/// A connection's first request was its subscription; the next one, in the session the
/// answer gave, goes to another node before the task's look: the subscription is the
/// session's by then, so it is made there first (`subscribe` then `create`).
#[test]
fn a_request_in_the_session_finds_a_subscription_kept_before_it_was_known() {
    let mut l = Listeners::new(Duration::from_secs(5));
    let seen = Arc::<Seen>::default();
    let (mut at, _rx) = conn(1);
    at.client = at.client.seeing(seen.clone());
    l.listen(at, None, &sub("ObjectCreated"));
    assert!(l.on(1, None).is_none(), "no session yet");
    answered_in(&seen, "s");
    let (s, got) = l
        .on(1, Some("s".into()))
        .expect("the session's subscriptions");
    assert_eq!(s, "s");
    assert_eq!(got.reqs.len(), 1);
    assert!(l.unsessioned.is_empty());
    assert!(l.on(2, Some("s".into())).is_none(), "another connection's");
    // So is a second subscription, in the session: both the session's at once.
    let seen = Arc::<Seen>::default();
    let (mut at, _rx) = conn(3);
    at.client = at.client.seeing(seen.clone());
    l.listen(at.clone(), None, &sub("ObjectCreated"));
    answered_in(&seen, "s3");
    l.listen(at, Some("s3".into()), &sub("ObjectDestroyed"));
    assert!(l.unsessioned.is_empty());
    assert_eq!(l.sessions["s3"].reqs.len(), 2);
}

/// R43-cluster 7: a `connect {sessionId}` from another connection moves the session's
/// subscriptions (and the binds on the nodes) only once an answer in that session goes
/// out on it: not when refused, nor when the connection ended first.
#[tokio::test]
async fn a_resume_moves_the_subscriptions_only_once_accepted() {
    let r = router();
    let on = |r: &Router| {
        lock(&r.manager.listeners).sessions["s"]
            .at
            .as_ref()
            .map(|a| a.conn)
    };
    let client = |c: u64| {
        let seen = Arc::<Seen>::default();
        let (mut at, rx) = conn(c);
        at.client = at.client.seeing(seen.clone());
        (at, seen, rx)
    };
    let (at1, seen1, _rx1) = client(1);
    answered_in(&seen1, "s");
    assert!(
        !r.manager(&ask(&at1, Some("s"), ""), &sub("ObjectCreated"))
            .await
    );
    assert_eq!(on(&r), Some(1));
    // Connection 2 asks to resume s: nothing moves before the answer, nor on a refusal.
    let (at2, seen2, _rx2) = client(2);
    let connect = r#"{"jsonrpc":"2.0","id":5,"method":"connect","params":{"sessionId":"s"}}"#;
    assert!(
        r.route(ask(&at2, None, connect)).await.is_some(),
        "the engine answers it"
    );
    assert_eq!(on(&r), Some(1), "moved before the answer");
    seen2.learn(r#"{"error":{"code":40007,"message":"Invalid session"},"id":5,"jsonrpc":"2.0"}"#);
    assert_eq!(on(&r), Some(1), "moved on a refusal");
    // Accepted: they follow.
    assert!(r.route(ask(&at2, None, connect)).await.is_some());
    answered_in(&seen2, "s");
    assert_eq!(on(&r), Some(2));
    // A connection that ends before its answer goes out gets nothing.
    let (at3, seen3, _rx3) = client(3);
    assert!(r.route(ask(&at3, None, connect)).await.is_some());
    r.closed(3);
    answered_in(&seen3, "s");
    assert_eq!(on(&r), Some(2));
    // A session without subscriptions here: nothing waits.
    let other = r#"{"jsonrpc":"2.0","id":6,"method":"connect","params":{"sessionId":"t"}}"#;
    assert!(r.route(ask(&at3, None, other)).await.is_some());
    assert!(lock(&r.manager.listeners).resuming.is_empty());
}

/// R43-cluster 3: two live connections of one session take turns (each request binds
/// the session to its connection, as on the engine): the task binds it on the nodes at
/// its next look, not at each turn, and not at all when it ends where it was; a request
/// that goes to the node binds it there by itself.
#[tokio::test]
async fn two_live_connections_of_a_session_taking_turns_cost_no_bind_at_each_turn() {
    use futures_util::FutureExt;
    let r = router();
    r.view
        .listed(Some(vec![record("node-a", 1), record("node-b", 1)]));
    let (link, mut frames) = super::super::entry::detached("node-b", 1);
    r.links.put(link.clone());
    let node = NodeId::new("node-b").unwrap();
    let (at1, _rx1) = conn(1);
    let (at2, _rx2) = conn(2);
    assert!(
        !r.manager(&ask(&at1, Some("s"), ""), &sub("ObjectCreated"))
            .await
    );
    // The task, woken by the subscription.
    assert!(r.manager.wake.notified().now_or_never().is_some());
    r.subscribe_everywhere().await;
    let made = texts(&mut frames);
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0]["method"], "subscribe");
    // The entry's task, woken or at its look: the binds it sent.
    let binds = |frames: &mut tokio::sync::mpsc::Receiver<_>| {
        let sent = texts(frames);
        let binds = sent
            .iter()
            .filter(|t| t["method"] == "connect" || t["method"] == "ping");
        binds.count()
    };
    let cpus = r#"{"jsonrpc":"2.0","id":7,"method":"invoke","params":{"object":"manager_ServerManager","operation":"getCpuCount"}}"#;
    let mut pings = 0;
    for turn in 0..20 {
        let at = if turn % 2 == 0 { &at2 } else { &at1 };
        assert!(r.route(ask(at, Some("s"), cpus)).await.is_some());
        if r.manager.wake.notified().now_or_never().is_some() {
            r.subscribe_everywhere().await;
        }
        pings += binds(&mut frames);
    }
    assert_eq!(pings, 0, "binds sent while the connections took turns");
    // The task's next look: it ended on connection 1, where it was bound: none.
    r.subscribe_everywhere().await;
    assert_eq!(binds(&mut frames), 0);
    // On connection 2: one, at the next look, and no more at the ones after.
    assert!(r.route(ask(&at2, Some("s"), cpus)).await.is_some());
    r.subscribe_everywhere().await;
    r.subscribe_everywhere().await;
    assert_eq!(binds(&mut frames), 1);
    // A request of connection 1 that goes to node-b binds it there itself.
    assert!(r.route(ask(&at1, Some("s"), cpus)).await.is_some());
    r.subscriptions_first(&ask(&at1, Some("s"), cpus), &node, &link);
    r.subscribe_everywhere().await;
    assert_eq!(binds(&mut frames), 0);
}

/// R43-cluster 6 through the task: its look found no live link to node-b (the old one
/// broke) and it makes one to the same boot: the copies are bound there, not made again.
#[tokio::test]
async fn the_task_binds_over_a_link_it_made_again_to_the_same_boot() {
    use futures_util::FutureExt;
    let r = router();
    r.view
        .listed(Some(vec![record("node-a", 1), record("node-b", 1)]));
    let (link1, mut frames1) = super::super::entry::detached("node-b", 1);
    r.links.put(link1);
    let (at1, _rx1) = conn(1);
    let (first, req) = (ask(&at1, Some("s"), ""), sub("ObjectCreated"));
    assert!(!r.manager(&first, &req).await);
    assert!(r.manager.wake.notified().now_or_never().is_some());
    r.subscribe_everywhere().await;
    assert_eq!(texts(&mut frames1).len(), 1);
    let todo = lock(&r.manager.listeners).due(&r.others(), Instant::now(), |_| None);
    assert_eq!(todo.len(), 1);
    let (link2, mut frames2) = super::super::entry::detached("node-b", 1);
    for t in todo {
        r.make(t, &link2);
    }
    let sent = texts(&mut frames2);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["method"], "connect", "{sent:?}");
}

#[test]
fn a_copy_a_node_refused_is_made_again_after_a_wait_that_doubles() {
    let mut l = Listeners::new(Duration::from_secs(5));
    let b = [record("node-b", 1)];
    let (link, _frames) = super::super::entry::detached("node-b", 1);
    let (at, _rx) = conn(1);
    l.listen(at.clone(), Some("s".into()), &sub("ObjectCreated"));
    l.listen(at, Some("s".into()), &sub("ObjectDestroyed"));
    send_all(&mut l, &b, &link);
    let answer = |event: &str, error: Option<Value>| Answer {
        node: NodeId::new("node-b").unwrap(),
        session: "s".into(),
        asked: Asked::Copy(event.into()),
        outcome: error.map_or(Outcome::Done, Outcome::Refused),
    };
    let refusal = json!({"code": 40000, "message": "too many subscriptions"});
    let again = vec![(
        1,
        "node-b".to_string(),
        false,
        vec!["ObjectDestroyed".to_string()],
    )];
    let key = (
        NodeId::new("node-b").unwrap(),
        "ObjectDestroyed".to_string(),
    );
    let ms = Duration::from_millis;
    // One made, one refused: only the refused one again, once its wait (1 s, then 2 s,
    // 4 s ... at most RETRY_MAX) has run out, and again while it is refused.
    let t0 = Instant::now();
    l.heard(
        vec![
            answer("ObjectCreated", None),
            answer("ObjectDestroyed", Some(refusal.clone())),
        ],
        t0,
    );
    assert!(l.sessions["s"].refused.contains_key(&key));
    assert!(due_at(&l, &b, &link, t0 + ms(999)).is_empty());
    assert_eq!(due_at(&l, &b, &link, t0 + ms(1000)), again);
    let t1 = t0 + ms(1000);
    l.heard(vec![answer("ObjectDestroyed", Some(refusal.clone()))], t1);
    assert!(due_at(&l, &b, &link, t1 + ms(1999)).is_empty());
    assert_eq!(due_at(&l, &b, &link, t1 + ms(2000)), again);
    let mut t = t1 + ms(2000);
    for _ in 0..20 {
        l.heard(vec![answer("ObjectDestroyed", Some(refusal.clone()))], t);
        t += RETRY_MAX;
    }
    assert_eq!(l.sessions["s"].refused[&key].times, 22);
    assert!(due_at(&l, &b, &link, t - ms(1)).is_empty());
    assert_eq!(due_at(&l, &b, &link, t), again);
    // Made once it is taken: nothing more to make, nothing refused.
    send_all_at(&mut l, &b, &link, t);
    l.heard(vec![answer("ObjectDestroyed", None)], t);
    assert!(due_at(&l, &b, &link, t).is_empty());
    assert!(l.sessions["s"].refused.is_empty());
    // An answer for a session no longer kept is ignored.
    l.heard(
        vec![Answer {
            session: "gone".into(),
            ..answer("ObjectCreated", None)
        }],
        t,
    );
}

/// The texts `frames` holds (what a detached link sent).
fn texts(frames: &mut tokio::sync::mpsc::Receiver<super::super::Frame>) -> Vec<Value> {
    let mut out = vec![];
    while let Ok(f) = frames.try_recv() {
        if let super::super::Frame::Text { text, .. } = f {
            out.push(serde_json::from_str(&text).unwrap());
        }
    }
    out
}

/// R43-cluster 6: a link made again to the same boot of a node binds the session there
/// (a `connect` naming it) instead of making its copies a second time; a copy whose
/// answer the broken link lost, and every copy of a session that ended there (the bind
/// answered 40007), are made again.
#[test]
fn copies_on_a_link_made_again_are_bound_there_and_made_again_only_when_gone() {
    let mut l = Listeners::new(Duration::from_secs(5));
    let b = [record("node-b", 1)];
    let node = NodeId::new("node-b").unwrap();
    let (link1, _frames1) = super::super::entry::detached("node-b", 1);
    let (at, _rx) = conn(1);
    l.listen(at.clone(), Some("s".into()), &sub("ObjectCreated"));
    l.listen(at.clone(), Some("s".into()), &sub("ObjectDestroyed"));
    // No link to the node yet: all of them are due (the task makes the link).
    assert_eq!(l.due(&b, Instant::now(), |_| None).len(), 1);
    let (bind, reqs) = l.sessions["s"].plan(&node, None, 1, Instant::now());
    assert_eq!((bind, reqs.len()), (false, 2));
    send_all(&mut l, &b, &link1);
    let (link2, mut frames2) = super::super::entry::detached("node-b", 1);
    let ask = Ask {
        conn: 1,
        peer: at.peer,
        client: &at.client,
        session: Some("s".into()),
        text: "",
    };
    let answers = Answers::default();
    let m = l.sessions.get_mut("s").unwrap();
    let (bind, reqs) = m.plan(&node, Some(&link2), 1, Instant::now());
    assert!(bind && reqs.is_empty(), "{bind} {reqs:?}");
    assert_eq!(
        m.send(&ask, ("s", &node, &link2), (bind, &reqs), &answers),
        Some(0)
    );
    let sent = texts(&mut frames2);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["method"], "connect");
    assert_eq!(sent[0]["params"]["sessionId"], "s");
    assert!(due(&l, &b, &link2).is_empty(), "bound there: nothing more");
    let answer = |asked: Asked, outcome: Outcome| Answer {
        node: node.clone(),
        session: "s".into(),
        asked,
        outcome,
    };
    // The bind taken: nothing changes.
    let events = || vec!["ObjectCreated".to_string(), "ObjectDestroyed".to_string()];
    let now = Instant::now();
    l.heard(vec![answer(Asked::Bind(events()), Outcome::Done)], now);
    assert!(due(&l, &b, &link2).is_empty());
    // The first link had lost the answer to a copy: that one is made again.
    let lost = answer(Asked::Copy("ObjectDestroyed".into()), Outcome::Lost);
    l.heard(vec![lost], now);
    let one = vec!["ObjectDestroyed".to_string()];
    assert_eq!(due(&l, &b, &link2), vec![(1, "node-b".into(), false, one)]);
    send_all(&mut l, &b, &link2);
    // The session had ended there (its grace period ran out before the link came back):
    // the bind is answered 40007, and the copies are made again.
    let gone = Outcome::Refused(json!({"code": 40007, "message": "Invalid session"}));
    l.heard(vec![answer(Asked::Bind(events()), gone)], now);
    assert_eq!(
        due(&l, &b, &link2),
        vec![(1, "node-b".into(), false, events())]
    );
    assert!(
        l.sessions["s"].refused.is_empty(),
        "not a refusal to wait on"
    );
}

#[test]
fn a_list_is_read_from_an_answers_value() {
    assert_eq!(
        list(&json!({"value": ["a", "b"]})),
        vec![json!("a"), json!("b")]
    );
    assert!(list(&json!({"value": 3})).is_empty());
    assert!(list(&json!(null)).is_empty());
}

#[test]
fn subscriptions_a_full_link_refused_are_told_apart_from_those_it_took() {
    // A link whose queue (64 frames) has room for three more: conn 1's mirror opening
    // and two of its three copies; the third is refused, and the count says which were
    // sent so that only they are recorded as made (R43-cluster 2).
    let (link, _frames) = super::super::entry::detached("node-b", 1);
    let (other, _rx) = conn(99);
    fn ask_of(at: &At) -> Ask<'_> {
        Ask {
            conn: at.conn,
            peer: at.peer,
            client: &at.client,
            session: Some("s".into()),
            text: "",
        }
    }
    for _ in 0..60 {
        let filler = ask_of(&other);
        link.send(&filler, None, Pending::Swallow, "{}".into())
            .unwrap();
    }
    let (at, _rx) = conn(1);
    let reqs = [sub("ObjectCreated"), sub("ObjectDestroyed"), sub("Other")];
    let answers = Answers::default();
    assert_eq!(
        send_subscriptions(&ask_of(&at), &link, "s", &reqs, &answers),
        2
    );
    assert_eq!(
        send_subscriptions(&ask_of(&at), &link, "s", &reqs, &answers),
        0
    );
}
