//! Janus's HTTP API, enough for the VideoRoom: one publisher and its subscribers.
//!
//! Requests go over persistent HTTP/1.1 connections (keep-alive), taken from a pool that
//! [`Janus::open_pool`] fills before a join's clock starts, as Fluo's WebSockets are opened
//! before it: a join measures the server, not TCP handshakes. The asynchronous answers of
//! the plugin arrive on a long poll that one thread keeps open on a connection of its own
//! and hands out by transaction. Every TCP connection the client opens is counted.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const ROOM: u64 = 1234;

/// One persistent HTTP/1.1 connection to Janus.
struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(port: u16, opened: &AtomicU64) -> Result<Conn, String> {
        let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("janus: {e}"))?;
        opened.fetch_add(1, Ordering::Relaxed);
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        // The long poll returns within 30 s (Janus's keep-alive event).
        s.set_read_timeout(Some(Duration::from_secs(40)))
            .map_err(|e| e.to_string())?;
        Ok(Conn {
            r: BufReader::new(s),
        })
    }

    /// One request and its answer; `Ok((json, reusable))`, `reusable` false when the
    /// server said it closes the connection.
    fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(Value, bool), String> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.r
            .get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| format!("janus: {e}"))?;
        let (status, body, keep) = read_response(&mut self.r)?;
        if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
            return Err(format!("janus: {status}"));
        }
        let v = serde_json::from_str(body.trim()).map_err(|e| format!("janus: {e}: {body}"))?;
        Ok((v, keep))
    }
}

/// Reads one HTTP/1.1 response: (status line, body, whether the connection stays open).
/// The body is delimited by Content-Length or chunked transfer coding; without either it
/// runs to the end of the connection.
fn read_response(r: &mut impl BufRead) -> Result<(String, String, bool), String> {
    fn read_line(r: &mut impl BufRead, line: &mut String) -> Result<(), String> {
        line.clear();
        match r.read_line(line) {
            Ok(0) => Err("janus: connection closed".to_string()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("janus: {e}")),
        }
    }
    let mut line = String::new();
    read_line(r, &mut line)?;
    let status = line.trim_end().to_string();
    let (mut length, mut chunked, mut keep) = (None, false, status.starts_with("HTTP/1.1"));
    loop {
        read_line(r, &mut line)?;
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            return Err(format!("janus: bad header {h:?}"));
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| format!("janus: bad Content-Length {value:?}"))?,
                )
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    keep = false;
                } else if v.contains("keep-alive") {
                    keep = true;
                }
            }
            _ => {}
        }
    }
    let mut body = vec![];
    if chunked {
        loop {
            read_line(r, &mut line)?;
            let size = line.trim_end().split(';').next().unwrap_or_default().trim();
            let n = usize::from_str_radix(size, 16)
                .map_err(|_| format!("janus: bad chunk size {size:?}"))?;
            if n == 0 {
                // Trailers, up to the empty line.
                loop {
                    read_line(r, &mut line)?;
                    if line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let at = body.len();
            body.resize(at + n, 0);
            r.read_exact(&mut body[at..])
                .map_err(|e| format!("janus: chunk: {e}"))?;
            read_line(r, &mut line)?;
            if !line.trim_end().is_empty() {
                return Err("janus: no line end after a chunk".into());
            }
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)
            .map_err(|e| format!("janus: body: {e}"))?;
    } else {
        r.read_to_end(&mut body)
            .map_err(|e| format!("janus: body: {e}"))?;
        keep = false;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned(), keep))
}

/// Idle persistent connections and the count of every connection opened.
struct Pool {
    port: u16,
    idle: Mutex<Vec<Conn>>,
    opened: Arc<AtomicU64>,
}

impl Pool {
    /// A request over an idle connection, or a new one when none is idle (counted).
    fn http(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let idle = self.idle.lock().expect("janus pool").pop();
        let mut conn = match idle {
            Some(c) => c,
            None => Conn::open(self.port, &self.opened)?,
        };
        let (v, keep) = conn.request(method, path, body)?;
        if keep {
            self.idle.lock().expect("janus pool").push(conn);
        }
        Ok(v)
    }
}

type Waiters = Arc<Mutex<HashMap<String, Sender<Value>>>>;

/// One Janus session with its long-poll thread.
pub struct Janus {
    pool: Arc<Pool>,
    session: u64,
    waiters: Waiters,
    stop: Arc<AtomicBool>,
    poller: Option<std::thread::JoinHandle<()>>,
    next: AtomicU64,
}

impl Janus {
    pub fn connect(port: u16) -> Result<Janus, String> {
        let pool = Arc::new(Pool {
            port,
            idle: Mutex::default(),
            opened: Arc::default(),
        });
        let r = pool.http(
            "POST",
            "/janus",
            Some(&json!({"janus":"create","transaction":"c"})),
        )?;
        let session = r["data"]["id"]
            .as_u64()
            .ok_or(format!("janus create: {r}"))?;
        let waiters: Waiters = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (w, st, opened) = (waiters.clone(), stop.clone(), pool.opened.clone());
        // The long poll's own connection, open before this returns.
        let mut conn = Some(Conn::open(port, &opened)?);
        let poller = std::thread::Builder::new()
            .name("janus-poll".into())
            .spawn(move || {
                let path = format!("/janus/{session}?maxev=50");
                while !st.load(Ordering::Relaxed) {
                    let r = match conn.take() {
                        Some(c) => Ok(c),
                        None => Conn::open(port, &opened),
                    }
                    .and_then(|mut c| {
                        let (v, keep) = c.request("GET", &path, None)?;
                        Ok((v, keep.then_some(c)))
                    });
                    let Ok((v, c)) = r else {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    conn = c;
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
            pool,
            session,
            waiters,
            stop,
            poller: Some(poller),
            next: AtomicU64::new(1),
        })
    }

    /// Opens persistent connections until `n` are idle in the pool (before a clock starts).
    pub fn open_pool(&self, n: usize) -> Result<(), String> {
        let mut idle = self.pool.idle.lock().expect("janus pool");
        while idle.len() < n {
            idle.push(Conn::open(self.pool.port, &self.pool.opened)?);
        }
        Ok(())
    }

    /// TCP connections this client has opened so far (requests and long poll).
    pub fn connections_opened(&self) -> u64 {
        self.pool.opened.load(Ordering::Relaxed)
    }

    fn transaction(&self) -> String {
        format!("t{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Attaches a VideoRoom handle; returns its id.
    pub fn attach(&self) -> Result<u64, String> {
        let body = json!({"janus":"attach","plugin":"janus.plugin.videoroom","transaction": self.transaction()});
        let r = self
            .pool
            .http("POST", &format!("/janus/{}", self.session), Some(&body))?;
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
        let r = self.pool.http("POST", &path, Some(&req));
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

    pub fn detach(&self, handle: u64) -> Result<(), String> {
        let body = json!({"janus":"detach","transaction": self.transaction()});
        let path = format!("/janus/{}/{handle}", self.session);
        self.pool.http("POST", &path, Some(&body)).map(|_| ())
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
        // All candidates are in the SDP: no trickle to wait for.
        let jsep = json!({"type":"offer","sdp": offer,"trickle": false});
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

    /// Answers a subscription's offer (all candidates in the SDP, no trickle).
    pub fn start(&self, handle: u64, answer: &str) -> Result<(), String> {
        let jsep = json!({"type":"answer","sdp": answer,"trickle": false});
        self.message(handle, json!({"request":"start","room": ROOM}), Some(jsep))
            .map(|_| ())
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let body = json!({"janus":"destroy","transaction":"d"});
        let _ = self
            .pool
            .http("POST", &format!("/janus/{}", self.session), Some(&body));
        // The long poll returns within its 30 s keepalive at worst; do not wait for it.
        drop(self.poller.take());
    }
}

#[cfg(test)]
mod tests;
