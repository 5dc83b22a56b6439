//! The client against a small stand-in for Janus's HTTP transport that counts the TCP
//! connections it accepts.

use super::{read_response, Janus};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Events waiting for the long poll.
#[derive(Default)]
struct Events {
    queue: Mutex<Vec<Value>>,
    ready: Condvar,
}

/// Serves the subset of Janus's API the client uses, on 127.0.0.1; returns its port and the
/// count of accepted connections. POST answers carry a Content-Length, long polls are
/// chunked (as libmicrohttpd sends them), and a request asking `Connection: close` gets it.
fn fake_janus() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let events = Arc::new(Events::default());
    let (a, ev) = (accepted.clone(), events);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            a.fetch_add(1, Ordering::SeqCst);
            let ev = ev.clone();
            std::thread::spawn(move || serve(s, &ev));
        }
    });
    (port, accepted)
}

fn serve(s: TcpStream, ev: &Events) {
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    let next_handle = AtomicUsize::new(100);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
        );
        let (mut len, mut close) = (0, false);
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end().to_ascii_lowercase();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if h.starts_with("connection:") && h.contains("close") {
                close = true;
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let tr = req["transaction"].clone();
        let conn = if close { "close" } else { "keep-alive" };
        let sent = if method == "GET" {
            // The long poll: whatever is queued, else wait a little.
            let mut q = ev.queue.lock().expect("events");
            if q.is_empty() {
                q = ev
                    .ready
                    .wait_timeout(q, Duration::from_millis(100))
                    .expect("events")
                    .0;
            }
            let list = Value::Array(std::mem::take(&mut *q)).to_string();
            let (a, b) = list.split_at(list.len() / 2);
            write!(
                w,
                "HTTP/1.1 200 OK\r\nConnection: {conn}\r\nTransfer-Encoding: chunked\r\n\r\n\
                 {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                a.len(),
                b.len()
            )
        } else {
            let answer = match req["janus"].as_str() {
                Some("create") => json!({"janus":"success","transaction": tr,"data":{"id": 7}}),
                Some("attach") => json!({"janus":"success","transaction": tr,
                    "data":{"id": next_handle.fetch_add(1, Ordering::SeqCst)}}),
                Some("message") => {
                    ev.queue
                        .lock()
                        .expect("events")
                        .push(json!({"janus":"event",
                        "transaction": tr, "plugindata":{"data":{"videoroom":"attached"}},
                        "jsep":{"type":"offer","sdp":format!("offer for {path}")}}));
                    ev.ready.notify_all();
                    json!({"janus":"ack","transaction": tr})
                }
                _ => json!({"janus":"success","transaction": tr}),
            }
            .to_string();
            write!(
                w,
                "HTTP/1.1 200 OK\r\nConnection: {conn}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{answer}",
                answer.len()
            )
        };
        if sent.is_err() || close {
            return;
        }
    }
}

/// Every request of a session rides on one kept-alive connection, and the long poll on one
/// more: a join costs Janus no TCP handshake (it cost one per request before).
#[test]
fn requests_reuse_one_connection() {
    let (port, accepted) = fake_janus();
    let janus = Janus::connect(port).expect("session");
    for _ in 0..10 {
        let h = janus.attach().expect("attach");
        let offer = janus.subscribe(h, 1).expect("subscribe");
        assert_eq!(offer, format!("offer for /janus/7/{h}"));
        janus.detach(h).expect("detach");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "one connection for 31 requests and one for the long polls"
    );
}

/// A pool opened beforehand serves concurrent joins without a new connection, and the
/// client counts what it opened.
#[test]
fn pool_opened_before_the_clock_serves_concurrent_joins() {
    let (port, accepted) = fake_janus();
    let janus = Arc::new(Janus::connect(port).expect("session"));
    janus.open_pool(8).expect("pool");
    let before = janus.connections_opened();
    let joins: Vec<_> = (0..8)
        .map(|_| {
            let j = janus.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let h = j.attach().expect("attach");
                    j.subscribe(h, 1).expect("subscribe");
                }
            })
        })
        .collect();
    for t in joins {
        t.join().expect("join thread");
    }
    assert_eq!(
        janus.connections_opened(),
        before,
        "no connection during the joins"
    );
    // The pool's eight, the long poll's one (the session's create used one of the pool's).
    assert_eq!(before, 9);
    assert_eq!(accepted.load(Ordering::SeqCst), 9);
}

#[test]
fn reads_delimited_responses() {
    let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                   3\r\n[1,\r\n2;ext=1\r\n2]\r\n0\r\nX-Trailer: 1\r\n\r\nHTTP/1.1 200 OK\r\n";
    let mut r = Cursor::new(chunked.as_bytes());
    let (status, body, keep) = read_response(&mut r).expect("chunked");
    assert_eq!(
        (status.as_str(), body.as_str(), keep),
        ("HTTP/1.1 200 OK", "[1,2]", true)
    );
    let mut rest = String::new();
    r.read_to_string(&mut rest).expect("rest");
    assert_eq!(
        rest, "HTTP/1.1 200 OK\r\n",
        "the next response is left unread"
    );

    let sized = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}extra";
    let (_, body, keep) = read_response(&mut Cursor::new(sized.as_bytes())).expect("sized");
    assert_eq!((body.as_str(), keep), ("{}", false));

    let to_end = "HTTP/1.1 200 OK\r\n\r\n{\"a\":1}";
    let (_, body, keep) = read_response(&mut Cursor::new(to_end.as_bytes())).expect("to end");
    assert_eq!((body.as_str(), keep), ("{\"a\":1}", false));

    for bad in [
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        "",
    ] {
        assert!(
            read_response(&mut Cursor::new(bad.as_bytes())).is_err(),
            "{bad:?}"
        );
    }
}
