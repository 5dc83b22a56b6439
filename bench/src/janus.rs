//! Janus's HTTP API, enough for the VideoRoom: one publisher and its subscribers. Requests
//! are plain HTTP/1.1 over a new connection each; the asynchronous answers of the plugin
//! arrive on a long poll that one thread keeps open and hands out by transaction.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const ROOM: u64 = 1234;

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("janus: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(40)))
        .map_err(|e| e.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = vec![];
    s.read_to_end(&mut resp)
        .map_err(|e| format!("janus: {e}"))?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("janus: no HTTP body")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!(
            "janus: {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body).ok_or_else(|| format!("janus: bad chunked body: {body}"))?
    } else {
        body.to_string()
    };
    serde_json::from_str(body.trim()).map_err(|e| format!("janus: {e}: {body}"))
}

/// The payload of a chunked HTTP/1.1 body.
fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(after.get(..n)?);
        rest = after.get(n..)?.strip_prefix("\r\n")?;
    }
}

type Waiters = Arc<Mutex<HashMap<String, Sender<Value>>>>;

/// One Janus session with its long-poll thread.
pub struct Janus {
    port: u16,
    session: u64,
    waiters: Waiters,
    stop: Arc<AtomicBool>,
    poller: Option<std::thread::JoinHandle<()>>,
    next: AtomicU64,
}

impl Janus {
    pub fn connect(port: u16) -> Result<Janus, String> {
        let r = http(
            port,
            "POST",
            "/janus",
            Some(&json!({"janus":"create","transaction":"c"})),
        )?;
        let session = r["data"]["id"]
            .as_u64()
            .ok_or(format!("janus create: {r}"))?;
        let waiters: Waiters = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (w, st) = (waiters.clone(), stop.clone());
        let poller = std::thread::Builder::new()
            .name("janus-poll".into())
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    let path = format!("/janus/{session}?maxev=50");
                    let Ok(v) = http(port, "GET", &path, None) else {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    let list = match v {
                        Value::Array(a) => a,
                        other => vec![other],
                    };
                    for ev in list {
                        let Some(tr) = ev["transaction"].as_str() else {
                            continue;
                        };
                        if let Some(tx) = w.lock().expect("waiters").remove(tr) {
                            let _ = tx.send(ev);
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Janus {
            port,
            session,
            waiters,
            stop,
            poller: Some(poller),
            next: AtomicU64::new(1),
        })
    }

    fn transaction(&self) -> String {
        format!("t{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Attaches a VideoRoom handle; returns its id.
    pub fn attach(&self) -> Result<u64, String> {
        let body = json!({"janus":"attach","plugin":"janus.plugin.videoroom","transaction": self.transaction()});
        let r = http(
            self.port,
            "POST",
            &format!("/janus/{}", self.session),
            Some(&body),
        )?;
        r["data"]["id"].as_u64().ok_or(format!("janus attach: {r}"))
    }

    /// Sends a plugin message (with a JSEP when given) and waits for the plugin's answer.
    pub fn message(&self, handle: u64, body: Value, jsep: Option<Value>) -> Result<Value, String> {
        let tr = self.transaction();
        let mut req = json!({"janus":"message","transaction": tr, "body": body});
        if let Some(j) = jsep {
            req["jsep"] = j;
        }
        let (tx, rx) = mpsc::channel();
        self.waiters.lock().expect("waiters").insert(tr.clone(), tx);
        let path = format!("/janus/{}/{handle}", self.session);
        let r = http(self.port, "POST", &path, Some(&req));
        let r = match r {
            Ok(r) if r["janus"] == "ack" => rx
                .recv_timeout(Duration::from_secs(20))
                .map_err(|_| format!("janus: no answer to {}", req["body"])),
            other => other,
        };
        self.waiters.lock().expect("waiters").remove(&tr);
        let r = r?;
        if r["janus"] == "error" || r["plugindata"]["data"]["error"].is_string() {
            return Err(format!("janus: {r}"));
        }
        Ok(r)
    }

    /// Tells Janus this handle has no more candidates than those in its SDP.
    pub fn trickle_done(&self, handle: u64) -> Result<(), String> {
        self.to_handle(
            handle,
            json!({"janus":"trickle","candidate":{"completed":true}}),
        )
    }

    pub fn detach(&self, handle: u64) -> Result<(), String> {
        self.to_handle(handle, json!({"janus":"detach"}))
    }

    /// Posts a request to a handle, with a transaction of its own; its answer is not needed.
    fn to_handle(&self, handle: u64, mut body: Value) -> Result<(), String> {
        body["transaction"] = json!(self.transaction());
        let path = format!("/janus/{}/{handle}", self.session);
        http(self.port, "POST", &path, Some(&body)).map(|_| ())
    }

    /// Joins the room as its publisher with `offer`; returns (publisher id, answer SDP).
    pub fn publish(&self, handle: u64, offer: &str) -> Result<(u64, String), String> {
        let r = self.message(
            handle,
            json!({"request":"join","ptype":"publisher","room": ROOM}),
            None,
        )?;
        let id = r["plugindata"]["data"]["id"]
            .as_u64()
            .ok_or(format!("janus join: {r}"))?;
        let jsep = json!({"type":"offer","sdp": offer});
        let r = self.message(
            handle,
            json!({"request":"publish","audio":true,"video":true}),
            Some(jsep),
        )?;
        let sdp = r["jsep"]["sdp"]
            .as_str()
            .ok_or(format!("janus publish: {r}"))?;
        Ok((id, sdp.to_string()))
    }

    /// Subscribes to `feed`; returns Janus's offer.
    pub fn subscribe(&self, handle: u64, feed: u64) -> Result<String, String> {
        let body =
            json!({"request":"join","ptype":"subscriber","room": ROOM,"streams":[{"feed": feed}]});
        let r = self.message(handle, body, None)?;
        r["jsep"]["sdp"]
            .as_str()
            .map(str::to_string)
            .ok_or(format!("janus subscribe: {r}"))
    }

    /// Answers a subscription's offer.
    pub fn start(&self, handle: u64, answer: &str) -> Result<(), String> {
        let jsep = json!({"type":"answer","sdp": answer});
        self.message(handle, json!({"request":"start","room": ROOM}), Some(jsep))
            .map(|_| ())
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let body = json!({"janus":"destroy","transaction":"d"});
        let _ = http(
            self.port,
            "POST",
            &format!("/janus/{}", self.session),
            Some(&body),
        );
        // The long poll returns within its 30 s keepalive at worst; do not wait for it.
        drop(self.poller.take());
    }
}

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn dechunks_janus_answers() {
        let body = "3e\r\n{\n   \"janus\": \"success\",\n   \"transaction\": \"c\",\n   \"data\": {}}\r\n0\r\n\r\n";
        let got = dechunk(body).expect("a chunked body");
        assert!(got.starts_with("{\n   \"janus\": \"success\""), "{got}");
        assert_eq!(got.len(), 0x3e);
        assert_eq!(dechunk("5\r\nab"), None, "a chunk shorter than its size");
        assert_eq!(dechunk("zz\r\n"), None, "a size that is not hex");
    }
}
