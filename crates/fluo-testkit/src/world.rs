//! Fluo's engine and media core with in-memory browsers on a virtual-time network.

use crate::browser::Browser;
use fluo_core::{Engine, EngineConfig, FixedHost, Now, Output};
use fluo_rtc::{Control, MediaCore, WebRtc};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// Decides whether the network drops a datagram to browser `i`.
pub type DropRule = Box<dyn FnMut(usize, &[u8]) -> bool>;

/// A bandwidth limit on the way from the server to one browser, as a `tbf` qdisc: a token
/// bucket filled at `bps` up to `burst_bytes` (each datagram takes its size, IPv4 and UDP
/// headers counted), datagrams leaving in order as soon as the bucket holds their size; one
/// that would find more than `queue_bytes` waiting for tokens is dropped. With no burst
/// allowance (`Link::new`) a datagram leaves `bps` after those queued before it: a link that
/// is truly limited. With one (`Link::tbf`) what is sent faster than `bps` passes at the rate
/// sent until the bucket is empty, as tc's tbf, a policer or a cellular scheduler lets it.
#[derive(Debug, Clone)]
pub struct Link {
    pub bps: u64,
    pub queue_bytes: usize,
    pub burst_bytes: usize,
    /// When the last datagram queued leaves, and the bucket's tokens (bytes) then.
    last: Option<(Instant, f64)>,
    /// When each datagram still waiting for tokens leaves, and its bytes.
    waiting: VecDeque<(Instant, usize)>,
    /// Datagrams dropped because the queue was full, and passed.
    pub dropped: u64,
    pub passed: u64,
}

/// Bytes of IPv4 and UDP header a datagram takes on a link.
const IP_UDP: usize = 28;

impl Link {
    /// No burst allowance: `bps`, a queue of `queue_bytes`.
    pub fn new(bps: u64, queue_bytes: usize) -> Link {
        Link::tbf(bps, 0, queue_bytes)
    }

    /// A token bucket of `burst_bytes` filled at `bps`, datagrams waiting for tokens up to
    /// `queue_bytes` (tc's `limit`: e2e's `tbf rate 300kbit burst 5000 limit 7500` is
    /// `Link::tbf(300_000, 5_000, 7_500)`, which tc shows as a latency of 66.7 ms).
    pub fn tbf(bps: u64, burst_bytes: usize, queue_bytes: usize) -> Link {
        Link {
            bps,
            queue_bytes,
            burst_bytes,
            last: None,
            waiting: VecDeque::new(),
            dropped: 0,
            passed: 0,
        }
    }

    /// When a datagram of `len` bytes sent at `now` has crossed the link; `None`: dropped.
    fn admit(&mut self, now: Instant, len: usize) -> Option<Instant> {
        let size = len + IP_UDP;
        let rate = self.bps.max(1) as f64 / 8.0;
        while self.waiting.front().is_some_and(|(t, _)| *t <= now) {
            self.waiting.pop_front();
        }
        let queued: usize = if self.burst_bytes == 0 {
            // The one being sent counts for what is left of it.
            let busy = self.last.map_or(now, |(t, _)| t.max(now));
            ((busy - now).as_secs_f64() * rate) as usize
        } else {
            self.waiting.iter().map(|(_, b)| b).sum()
        };
        if queued + size > self.queue_bytes {
            self.dropped += 1;
            return None;
        }
        let (start, tokens) = match self.last {
            Some((t, k)) if t > now => (t, k),
            Some((t, k)) => (now, k + (now - t).as_secs_f64() * rate),
            None => (now, self.burst_bytes as f64),
        };
        let tokens = tokens.min(self.burst_bytes as f64);
        let short = (size as f64 - tokens).max(0.0);
        let done = start + Duration::from_secs_f64(short / rate);
        self.last = Some((done, tokens + short - size as f64));
        if done > now {
            self.waiting.push_back((done, size));
        }
        self.passed += 1;
        Some(done)
    }
}

/// The whole server without sockets, threads or wall clock.
pub struct World {
    pub engine: Engine,
    pub core: MediaCore,
    ctl: UnboundedReceiver<Control>,
    pub browsers: Vec<Browser>,
    pub now: Now,
    pub server: SocketAddr,
    next_id: u64,
    inbox: HashMap<u64, VecDeque<Value>>,
    /// Datagrams the network dropped (by `drop_to` or `drop_from`).
    pub dropped: u64,
    /// Datagrams from Fluo to addresses where no browser is (any more).
    pub to_nobody: u64,
    /// Drop a datagram from Fluo to a browser when this returns true.
    pub drop_to: Option<DropRule>,
    /// Drop a datagram from browser `i` to Fluo when this returns true.
    pub drop_from: Option<DropRule>,
    /// One-way network delay, each way (datagrams wait for `run` to reach their time).
    pub delay: Duration,
    /// Datagrams on the way: (due, towards the server, source, destination, bytes).
    in_flight: VecDeque<(Instant, bool, SocketAddr, SocketAddr, Vec<u8>)>,
    /// Bandwidth limits from the server to browsers, by browser index (see [`Link`]).
    pub links: HashMap<usize, Link>,
    /// A 1:1 NAT in front of Fluo: browsers reach the server at this public address.
    pub public_addr: Option<SocketAddr>,
    /// More local addresses of the server (see [`World::with_interfaces`]).
    pub other_servers: Vec<SocketAddr>,
    /// Every datagram Fluo sent to a browser, (browser, size, TOS byte), while `record_sent`.
    pub sent: Vec<(usize, usize, u8)>,
    pub record_sent: bool,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    pub fn new() -> World {
        let server: SocketAddr = "127.0.0.1:40000".parse().expect("address");
        Self::with_interfaces(vec![(server, "lo".into())])
    }

    /// A server whose media sockets are at these addresses, on these network interfaces (the
    /// first is [`World::server`]).
    pub fn with_interfaces(interfaces: Vec<(SocketAddr, String)>) -> World {
        Self::with_options(interfaces, fluo_rtc::BweMode::Off)
    }

    /// A server whose receive-only viewers' bandwidth is estimated (the server's `--bwe on`).
    pub fn with_bwe() -> World {
        Self::with_bwe_mode(fluo_rtc::BweMode::On)
    }

    /// A server with this `--bwe` mode (the server's default is `auto`; [`World::new`]'s is
    /// `off`).
    pub fn with_bwe_mode(mode: fluo_rtc::BweMode) -> World {
        let server: SocketAddr = "127.0.0.1:40000".parse().expect("address");
        Self::with_options(vec![(server, "lo".into())], mode)
    }

    fn with_options(interfaces: Vec<(SocketAddr, String)>, bwe: fluo_rtc::BweMode) -> World {
        let mono = Instant::now();
        let now = Now {
            mono,
            wall_ms: 1_700_000_000_000,
        };
        let server = interfaces[0].0;
        let other_servers = interfaces[1..].iter().map(|(a, _)| *a).collect();
        let (webrtc, ctl) = WebRtc::in_memory_on(interfaces);
        let webrtc = webrtc.with_bwe_mode(bwe);
        let mut engine = Engine::new(EngineConfig::default(), Box::new(FixedHost::default()), now);
        engine.register_factory("WebRtcEndpoint", webrtc.factory());
        engine.connection_opened(now, 1, std::net::Ipv4Addr::LOCALHOST.into());
        World {
            engine,
            core: MediaCore::new(mono),
            ctl,
            browsers: vec![],
            now,
            server,
            next_id: 0,
            inbox: HashMap::new(),
            dropped: 0,
            to_nobody: 0,
            drop_to: None,
            drop_from: None,
            delay: Duration::ZERO,
            in_flight: VecDeque::new(),
            links: HashMap::new(),
            public_addr: None,
            other_servers,
            sent: vec![],
            record_sent: false,
        }
    }

    /// Adds a browser at 127.0.0.(2 + i % 250):(5000 + i / 250); `rtp_mode` browsers record
    /// raw RTP.
    pub fn add_browser(&mut self, name: &str, rtp_mode: bool) -> usize {
        self.add_browser_with(name, rtp_mode, |c| c)
    }

    /// Like [`World::add_browser`] with an adjusted str0m configuration.
    pub fn add_browser_with(
        &mut self,
        name: &str,
        rtp_mode: bool,
        f: impl FnOnce(str0m::RtcConfig) -> str0m::RtcConfig,
    ) -> usize {
        let i = self.browsers.len();
        let addr: SocketAddr = format!("127.0.0.{}:{}", 2 + i % 250, 5000 + i / 250)
            .parse()
            .expect("address");
        self.browsers
            .push(Browser::with_config(name, addr, rtp_mode, self.now.mono, f));
        i
    }

    // ---- Kurento Protocol ----

    fn pump_engine(&mut self) {
        while let Some(Output::Send { conn, text }) = self.engine.poll_output() {
            let v: Value = serde_json::from_str(&text).expect("engine writes JSON");
            self.inbox.entry(conn).or_default().push_back(v);
        }
    }

    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let req = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        self.engine.handle_text(self.now, 1, &req.to_string());
        self.pump_engine();
        let q = self.inbox.entry(1).or_default();
        let pos = q
            .iter()
            .position(|v| v["id"] == json!(id))
            .expect("a response");
        q.remove(pos).expect("present")
    }

    pub fn ok(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params);
        assert!(r.get("error").is_none(), "{method} failed: {r}");
        r["result"].clone()
    }

    pub fn invoke(&mut self, object: &str, op: &str, params: Value) -> Value {
        self.ok(
            "invoke",
            json!({"object": object, "operation": op, "operationParams": params}),
        )["value"]
            .clone()
    }

    pub fn invoke_err(&mut self, object: &str, op: &str, params: Value) -> Value {
        let r = self.call(
            "invoke",
            json!({"object": object, "operation": op, "operationParams": params}),
        );
        r.get("error")
            .cloned()
            .unwrap_or_else(|| panic!("{op} should fail: {r}"))
    }

    pub fn create(&mut self, class: &str, pipeline: Option<&str>) -> String {
        let mut p = json!({"type": class});
        if let Some(pl) = pipeline {
            p["constructorParams"] = json!({"mediaPipeline": pl});
        }
        self.ok("create", p)["value"]
            .as_str()
            .expect("an id")
            .to_string()
    }

    /// Creates an object with these constructor parameters.
    pub fn create_with(&mut self, class: &str, params: Value) -> String {
        self.ok(
            "create",
            json!({"type": class, "constructorParams": params}),
        )["value"]
            .as_str()
            .expect("an id")
            .to_string()
    }

    pub fn subscribe(&mut self, object: &str, event: &str) {
        self.ok("subscribe", json!({"object": object, "type": event}));
    }

    /// Events received so far (drained), as (type, data).
    pub fn events(&mut self) -> Vec<(String, Value)> {
        self.pump_engine();
        let q = self.inbox.entry(1).or_default();
        let (ev, rest): (Vec<Value>, Vec<Value>) =
            q.drain(..).partition(|v| v["method"] == "onEvent");
        q.extend(rest);
        let model = self.engine.model();
        ev.into_iter()
            .map(|v| {
                let val = &v["params"]["value"];
                let name = val["type"].as_str().unwrap_or_default().to_string();
                let data = val["data"].clone();
                // Every event must have the shape the Kurento model gives it.
                assert!(model.event(&name).is_some(), "unknown event {name}");
                for f in model.event_fields(&name) {
                    match data.get(&f.name) {
                        Some(x) => {
                            if let Err(e) =
                                fluo_api::model::check::check_value(model, x, &f.ty, &f.name)
                            {
                                panic!(
                                    "event {name}: field {} is not a {}: {e} in {data}",
                                    f.name, f.ty
                                );
                            }
                        }
                        None => assert!(f.optional, "event {name} lacks {} in {data}", f.name),
                    }
                }
                (name, data)
            })
            .collect()
    }

    /// A browser offers, Fluo answers (the browser's candidate is sent first, as the
    /// tutorials do).
    pub fn negotiate_browser_offer(
        &mut self,
        b: usize,
        endpoint: &str,
        dir: str0m::media::Direction,
    ) {
        let cand = self.browsers[b].candidate_json();
        self.invoke(endpoint, "addIceCandidate", json!({"candidate": cand}));
        let offer = self.browsers[b].offer(dir);
        let answer = self.invoke(endpoint, "processOffer", json!({"offer": offer}));
        self.browsers[b].accept_answer(answer.as_str().expect("an SDP answer"));
        self.invoke(endpoint, "gatherCandidates", json!({}));
    }

    /// Adds a browser and negotiates it with `endpoint`, the browser offering.
    pub fn join(
        &mut self,
        name: &str,
        rtp_mode: bool,
        endpoint: &str,
        dir: str0m::media::Direction,
    ) -> usize {
        let b = self.add_browser(name, rtp_mode);
        self.negotiate_browser_offer(b, endpoint, dir);
        b
    }

    /// Fluo offers, the browser answers.
    pub fn negotiate_server_offer(&mut self, b: usize, endpoint: &str) {
        let offer = self.invoke(endpoint, "generateOffer", json!({}));
        let answer = self.browsers[b].answer(offer.as_str().expect("an SDP offer"));
        self.invoke(endpoint, "processAnswer", json!({"answer": answer}));
        let cand = self.browsers[b].candidate_json();
        self.invoke(endpoint, "addIceCandidate", json!({"candidate": cand}));
    }

    // ---- network and time ----

    /// Whether `addr` is the server's: one of its media sockets, or a port on one of their IP
    /// addresses (the addresses it gives endpoints of their own, see
    /// [`fluo_rtc::IN_MEMORY_OWN_PORTS`]).
    fn serves(&self, addr: SocketAddr) -> bool {
        std::iter::once(&self.server)
            .chain(&self.other_servers)
            .any(|s| s.ip() == addr.ip())
    }

    /// Moves every pending datagram until the network is quiet at the current instant (with
    /// a [`World::delay`], datagrams between browsers and the server sent now arrive when
    /// `run` reaches their time).
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Ok(c) = self.ctl.try_recv() {
                self.core.control(self.now.mono, c);
                moved = true;
            }
            while self
                .in_flight
                .front()
                .is_some_and(|(due, ..)| *due <= self.now.mono)
            {
                let Some((_, to_server, src, dst, data)) = self.in_flight.pop_front() else {
                    break;
                };
                moved = true;
                if to_server {
                    self.deliver_to_server(src, dst, &data);
                } else {
                    self.deliver_to_browser(src, dst, &data);
                }
            }
            for i in 0..self.browsers.len() {
                let out = std::mem::take(&mut self.browsers[i].outbox);
                for (src, dst, data) in out {
                    moved = true;
                    if self.delay.is_zero() {
                        self.deliver_to_server(src, dst, &data);
                    } else {
                        let due = self.now.mono + self.delay;
                        self.on_the_way((due, true, src, dst, data));
                    }
                }
            }
            // Datagrams from one of Fluo's endpoints to another (back to back, across
            // pipelines), to the server's own addresses.
            let mut to_self = vec![];
            while let Some(d) = self.core.poll_transmit() {
                moved = true;
                let browser = self.browsers.iter().position(|b| b.addr == d.destination);
                if browser.is_none() && self.serves(d.destination) {
                    to_self.push(d);
                    continue;
                }
                if let (Some(i), true) = (browser, self.record_sent) {
                    self.sent.push((i, d.contents.len(), d.tos));
                }
                let now = self.now.mono;
                let limited = (browser.and_then(|i| self.links.get_mut(&i)))
                    .map(|link| link.admit(now, d.contents.len()));
                match limited {
                    // Dropped by a full link queue.
                    Some(None) => {}
                    Some(Some(done)) => {
                        let due = done + self.delay;
                        self.on_the_way((due, false, d.source, d.destination, d.contents));
                    }
                    None if self.delay.is_zero() => {
                        self.deliver_to_browser(d.source, d.destination, &d.contents);
                    }
                    None => {
                        let due = self.now.mono + self.delay;
                        self.on_the_way((due, false, d.source, d.destination, d.contents));
                    }
                }
            }
            for d in to_self {
                self.core
                    .handle_receive(self.now.mono, d.destination, d.source, &d.contents);
            }
            while let Some((id, ev)) = self.core.poll_event() {
                self.engine.emit_event(self.now, &id, ev);
            }
            if !moved {
                return;
            }
        }
        panic!("the network did not settle");
    }

    /// A datagram on the way, in order of arrival among the others (a limited link delays some
    /// more than [`World::delay`]).
    fn on_the_way(&mut self, item: (Instant, bool, SocketAddr, SocketAddr, Vec<u8>)) {
        let at = self.in_flight.partition_point(|(t, ..)| *t <= item.0);
        self.in_flight.insert(at, item);
    }

    /// A datagram from a browser reaches the server (unless dropped).
    fn deliver_to_server(&mut self, src: SocketAddr, dst: SocketAddr, data: &[u8]) {
        // Behind the NAT only the public address reaches the server's shared socket;
        // without, any of its addresses (those it gives endpoints of their own too).
        let local = match self.public_addr {
            Some(public) if dst == public => Some(self.server),
            Some(_) => self.other_servers.contains(&dst).then_some(dst),
            None => self.serves(dst).then_some(dst),
        };
        let Some(local) = local else {
            return;
        };
        if let (Some(f), Some(i)) = (
            self.drop_from.as_mut(),
            self.browsers.iter().position(|b| b.addr == src),
        ) {
            if f(i, data) {
                self.dropped += 1;
                return;
            }
        }
        self.core.handle_receive(self.now.mono, local, src, data);
    }

    /// A datagram from the server reaches a browser (unless dropped).
    fn deliver_to_browser(&mut self, src: SocketAddr, dst: SocketAddr, data: &[u8]) {
        let Some(i) = self.browsers.iter().position(|b| b.addr == dst) else {
            self.to_nobody += 1;
            return;
        };
        if let Some(f) = self.drop_to.as_mut() {
            if f(i, data) {
                self.dropped += 1;
                return;
            }
        }
        let from = match self.public_addr {
            Some(public) if src == self.server => public,
            _ => src,
        };
        self.browsers[i].receive(self.now.mono, from, data);
    }

    /// Advances virtual time by `d` in steps of `step`, firing timers and moving datagrams;
    /// `each` runs at every step (to send media).
    pub fn run(&mut self, d: Duration, step: Duration, mut each: impl FnMut(&mut World)) {
        let end = self.now.mono + d;
        while self.now.mono < end {
            each(self);
            self.settle();
            self.now = self.now.advanced(step);
            let now = self.now.mono;
            for b in &mut self.browsers {
                b.timeout(now);
            }
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
            }
            if self.engine.poll_timeout().is_some_and(|t| t <= now) {
                self.engine.handle_timeout(self.now);
            }
            self.settle();
        }
    }

    /// Runs until every browser is connected (or `max` passes). The server builds each
    /// endpoint's session at the real clock (fluo-rtc's `RtcPool`), and its DTLS waits for the
    /// instant it was built: a simulated clock still behind the real one (a set-up that took
    /// real seconds on a loaded machine) is first brought up to it, else the handshake waits
    /// as long in simulated time (`egress_no_alloc` failed so, 2 runs in 25, review R44).
    pub fn connect_all(&mut self, max: Duration) -> bool {
        let behind = Instant::now().saturating_duration_since(self.now.mono);
        self.now = self.now.advanced(behind);
        let end = self.now.mono + max;
        while self.now.mono < end {
            self.run(Duration::from_millis(10), Duration::from_millis(1), |_| {});
            if self.browsers.iter().all(|b| b.connected) {
                return true;
            }
        }
        false
    }

    /// Sends ~30 fps video and 50 fps audio from the given browsers for `d`.
    pub fn stream(&mut self, senders: &[usize], d: Duration) {
        let senders = senders.to_vec();
        let mut tick = 0u64;
        self.run(d, Duration::from_millis(1), move |w| {
            let now = w.now.mono;
            for &s in &senders {
                if tick.is_multiple_of(33) {
                    w.browsers[s].send_video_frame(now, 3000);
                }
                if tick.is_multiple_of(20) {
                    w.browsers[s].send_audio_frame(now);
                }
            }
            tick += 1;
        });
    }
}
