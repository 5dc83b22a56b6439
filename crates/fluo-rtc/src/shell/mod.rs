//! The media thread: real sockets and the real clock around [`MediaCore`].
//!
//! UDP sockets carry datagrams as they are. ICE-TCP listeners (passive candidates) accept
//! connections whose frames (RFC 4571: a 16-bit length, then the packet) go to the core as
//! TCP input; what the core sends to such a remote is framed onto its connection.

mod out;
mod tcp;

use crate::core::{Control, MediaCore, SocketChange};
use crate::profile::Profile;
use crate::stun::{Discoveries, StunCache};
use crate::turn::{Clock, Io, Relay};
use fluo_core::EventSink;
use out::{open_socket, send_out, to_turn, Net, CLOSED};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::net::Protocol;
use tcp::{accept_any, recv_any, tcp_connection, turn_connection, TcpEvent};
use tokio::sync::mpsc;

/// ICE-TCP connections open at once; more are refused (closed at once).
const MAX_TCP_CONNECTIONS: usize = 2048;
/// Most datagrams read from one socket before what they forwarded is sent.
const RECV_BATCH: usize = 32;
/// Datagrams of the egress fast path after which a receive batch ends and they are sent: the
/// batch's buffers (1.5 KB each, kept for reuse) stay bounded whatever the fan-out.
const EGRESS_BATCH: usize = 512;
/// Longest a batch of received datagrams is worked on before what it forwarded is sent.
const RECV_BATCH_TIME: Duration = Duration::from_millis(1);
/// ICE-TCP connections open at once from one IP address.
const MAX_TCP_PER_IP: usize = 64;
/// A connection must send its first frame (an ICE check) within this time.
pub(super) const TCP_FIRST_FRAME: Duration = Duration::from_secs(10);
/// A connection silent for this long is closed (ICE consent checks come every few seconds
/// on a live one).
pub(super) const TCP_IDLE: Duration = Duration::from_secs(30);
/// Largest frame taken from a peer (a packet never comes near; RFC 4571 allows 65535).
pub(super) const MAX_TCP_FRAME: usize = 4096;
/// Frames queued for one connection's writer; past that they are dropped, as UDP would.
const TCP_SEND_QUEUE: usize = 1024;

/// Command `c` and those waiting behind it on `ctl` (ports' packets: a frame is several) as
/// one pass of the core, with one flush at its end, bounded as a receive batch is.
fn control_pass(
    core: &mut MediaCore,
    prof: &mut Profile,
    ctl: &mut mpsc::UnboundedReceiver<Control>,
    c: Control,
) {
    let began = Instant::now();
    core.receive_batch(|core| {
        prof.time(c.kind(), || core.control(Instant::now(), c));
        let mut count = 1;
        while count < RECV_BATCH
            && began.elapsed() < RECV_BATCH_TIME
            && core.egress_pending() < EGRESS_BATCH
        {
            let Ok(c) = ctl.try_recv() else { break };
            prof.time(c.kind(), || core.control(Instant::now(), c));
            count += 1;
        }
    });
}

/// The peers' ICE-TCP connections by (local, remote) address: their writer queues.
type Conns = HashMap<(SocketAddr, SocketAddr), mpsc::Sender<Vec<u8>>>;
/// The writer queues of TURN allocations over TCP, by relay index.
type Writers = HashMap<usize, mpsc::Sender<Vec<u8>>>;

/// Starts the media thread: a current-thread runtime running [`Shell::run`] until the control
/// channel closes.
pub(crate) fn spawn(
    sockets: Vec<UdpSocket>,
    listeners: Vec<TcpListener>,
    relays: Vec<Relay>,
    clock: Clock,
    stun_cache: Arc<StunCache>,
    ctl: mpsc::UnboundedReceiver<Control>,
    events: EventSink,
) -> std::io::Result<tokio::runtime::Handle> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("fluo-media".into())
        .spawn(move || {
            rt.block_on(async move {
                let shell = Shell::new(sockets, listeners, relays, clock, stun_cache, ctl, events);
                shell.run().await;
            });
        })?;
    Ok(handle)
}

/// The media thread's state: the core, its sockets, listeners, relays and connections.
struct Shell {
    core: MediaCore,
    prof: Profile,
    sender: fluo_egress::Sender,
    buf: Vec<u8>,
    ctl: mpsc::UnboundedReceiver<Control>,
    events: EventSink,
    clock: Clock,
    stun_cache: Arc<StunCache>,
    discoveries: Discoveries,
    stun_next: Option<Instant>,
    relays: Vec<Relay>,
    relay_next: Option<Instant>,
    /// Addresses and sockets, index-aligned (a socket and its address go as a pair). A slot is
    /// empty once the endpoint a socket was bound for is gone (relays keep their index).
    locals: Vec<SocketAddr>,
    sockets: Vec<Option<tokio::net::UdpSocket>>,
    tcp_locals: Vec<SocketAddr>,
    listeners: Vec<tokio::net::TcpListener>,
    tcp_tx: mpsc::Sender<TcpEvent>,
    tcp_rx: mpsc::Receiver<TcpEvent>,
    conns: Conns,
    tcp_per_ip: HashMap<IpAddr, usize>,
    turn_writers: Writers,
}

impl Shell {
    /// Takes over the sockets (inside the media runtime: tokio's sockets need it).
    fn new(
        sockets: Vec<UdpSocket>,
        listeners: Vec<TcpListener>,
        relays: Vec<Relay>,
        clock: Clock,
        stun_cache: Arc<StunCache>,
        ctl: mpsc::UnboundedReceiver<Control>,
        events: EventSink,
    ) -> Shell {
        let (locals, sockets) = sockets
            .into_iter()
            .filter_map(|s| {
                let addr = s.local_addr().ok()?;
                Some((addr, Some(tokio::net::UdpSocket::from_std(s).ok()?)))
            })
            .unzip();
        let (tcp_locals, listeners) = listeners
            .into_iter()
            .filter_map(|l| {
                let addr = l.local_addr().ok()?;
                Some((addr, tokio::net::TcpListener::from_std(l).ok()?))
            })
            .unzip();
        let (tcp_tx, tcp_rx) = mpsc::channel::<TcpEvent>(4096);
        let mut shell = Shell {
            core: MediaCore::new(Instant::now()),
            prof: Profile::from_env(),
            sender: fluo_egress::Sender::new(),
            buf: vec![0u8; 2048],
            ctl,
            events,
            clock,
            stun_cache,
            discoveries: Discoveries::default(),
            stun_next: None,
            relays: vec![],
            relay_next: None,
            locals,
            sockets,
            tcp_locals,
            listeners,
            tcp_tx,
            tcp_rx,
            conns: HashMap::new(),
            tcp_per_ip: HashMap::new(),
            turn_writers: HashMap::new(),
        };
        // TURN allocations over TCP: a reader task each, and a writer queue.
        for mut relay in relays {
            let idx = shell.relays.len();
            shell.start_turn_tcp(idx, &mut relay.io);
            shell.relays.push(relay);
        }
        shell
    }

    /// The media loop: one wait for whatever is ready, its pass of the core, then what the pass
    /// left to do; ends when the control channel closes.
    async fn run(mut self) {
        loop {
            let next = self
                .core
                .poll_timeout()
                .into_iter()
                .chain(self.relay_next)
                .chain(self.stun_next)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                c = self.ctl.recv() => {
                    let Some(c) = c else { return };
                    control_pass(&mut self.core, &mut self.prof, &mut self.ctl, c);
                }
                (i, n, src) = recv_any(&self.sockets, &mut self.buf) => self.datagrams(i, n, src),
                (i, stream, remote) = accept_any(&self.listeners) => self.accept(i, stream, remote),
                Some(ev) = self.tcp_rx.recv() => self.tcp_event(ev),
                _ = tokio::time::sleep_until(next.into()) => {
                    let core = &mut self.core;
                    self.prof.time("timers", || core.handle_timeout(Instant::now()));
                }
            }
            self.after_pass(Instant::now());
        }
    }

    /// A datagram of `n` bytes in the buffer from socket `i`, and those waiting behind it on the
    /// same socket (a video frame is several), with one flush of what they forwarded.
    fn datagrams(&mut self, i: usize, n: usize, src: SocketAddr) {
        let Shell {
            core,
            prof,
            buf,
            clock,
            discoveries,
            relays,
            locals,
            sockets,
            ..
        } = self;
        let clock = *clock;
        let batch_began = Instant::now();
        core.receive_batch(|core| {
            let mut next = Some((n, src));
            let mut count = 0;
            while let Some((n, src)) = next {
                let now = Instant::now();
                let udp_relay = relays
                    .iter_mut()
                    .find(|r| matches!(r.io, Io::Udp(s) if s == i) && r.server == src);
                match udp_relay {
                    // An answer to an endpoint's STUN server.
                    _ if discoveries.receive(i, src, &buf[..n]) => {}
                    // Relayed for a peer: as if received on the relayed address.
                    Some(r) => {
                        let relayed = r.relayed;
                        for (peer, data) in r.receive(clock, now, &buf[..n]) {
                            core.handle_receive(now, relayed, peer, &data);
                        }
                    }
                    None => core.handle_receive(now, locals[i], src, &buf[..n]),
                }
                prof.datagram(&buf[..n], now);
                count += 1;
                // At most RECV_BATCH datagrams or 1 ms of work: the first one's copies wait for
                // the batch's flush.
                let more = count < RECV_BATCH
                    && batch_began.elapsed() < RECV_BATCH_TIME
                    && core.egress_pending() < EGRESS_BATCH;
                next = more
                    .then(|| sockets[i].as_ref()?.try_recv_from(buf).ok())
                    .flatten();
            }
        });
        prof.batch_done(batch_began);
    }

    /// A peer's ICE-TCP connection on listener `i`, within the limits per server and per IP.
    fn accept(&mut self, i: usize, stream: tokio::net::TcpStream, remote: SocketAddr) {
        let local = self.tcp_locals[i];
        let from_ip = self.tcp_per_ip.get(&remote.ip()).copied().unwrap_or(0);
        if self.conns.len() >= MAX_TCP_CONNECTIONS || from_ip >= MAX_TCP_PER_IP {
            tracing::warn!(%remote, "too many ICE-TCP connections: refused");
            return;
        }
        *self.tcp_per_ip.entry(remote.ip()).or_default() += 1;
        let (wtx, wrx) = mpsc::channel(TCP_SEND_QUEUE);
        self.conns.insert((local, remote), wtx);
        tokio::spawn(tcp_connection(
            stream,
            local,
            remote,
            self.tcp_tx.clone(),
            wrx,
        ));
    }

    /// What a connection task reported.
    fn tcp_event(&mut self, ev: TcpEvent) {
        match ev {
            TcpEvent::Frame {
                local,
                remote,
                data,
            } => self
                .core
                .handle_receive_on(Instant::now(), Protocol::Tcp, local, remote, &data),
            TcpEvent::Closed { local, remote } => {
                self.conns.remove(&(local, remote));
                if let Some(n) = self.tcp_per_ip.get_mut(&remote.ip()) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.tcp_per_ip.remove(&remote.ip());
                    }
                }
            }
            TcpEvent::TurnClosed { relay } => {
                if let Some(r) = self.relays.get_mut(relay) {
                    r.dead = true;
                }
            }
            TcpEvent::Turn { relay, data } => {
                if let Some(r) = self.relays.get_mut(relay) {
                    let relayed = r.relayed;
                    for (peer, data) in r.receive(self.clock, Instant::now(), &data) {
                        self.core
                            .handle_receive(Instant::now(), relayed, peer, &data);
                    }
                }
            }
        }
    }

    /// What a pass of the core left for the shell: new relays and sockets, STUN discoveries,
    /// TURN permissions, the datagrams to send, the relays' own traffic and the events.
    fn after_pass(&mut self, now: Instant) {
        self.adopt_relays();
        while let Some(server) = self.core.poll_discover() {
            if !self.discoveries.start(server, &self.locals, now) {
                tracing::warn!(%server, "no media socket of this STUN server's address family");
                self.stun_cache.finish(&server, vec![]);
            }
        }
        let sockets = &self.sockets;
        self.stun_next = self
            .discoveries
            .poll(now, &self.stun_cache, &mut |i, to, bytes| {
                if let Some(s) = &sockets[i] {
                    let _ = s.try_send_to(bytes, to);
                }
            });
        permit(&mut self.core, &mut self.relays, self.clock, now);
        self.send(now);
        self.relay_next = None;
        for (idx, r) in self.relays.iter_mut().enumerate() {
            let (out, next) = r.poll(self.clock, now);
            for bytes in out {
                to_turn(r, idx, bytes, &self.sockets, &self.turn_writers);
            }
            self.relay_next = self.relay_next.into_iter().chain(next).min();
        }
        while let Some((id, ev)) = self.core.poll_event() {
            (self.events)(&id, ev);
        }
    }

    /// Sockets opened for endpoints (full ICE with an ICE-lite peer: before their first checks
    /// leave), what the core queued, then the sockets closed (after what the endpoint sent on
    /// its way out: DTLS close_notify).
    fn send(&mut self, now: Instant) {
        let mut closing = vec![];
        while let Some(change) = self.core.poll_socket_change() {
            match change {
                SocketChange::Open(s) => open_socket(s, &mut self.locals, &mut self.sockets),
                SocketChange::Close(addr) => closing.push(addr),
            }
        }
        let net = Net::of(
            &self.locals,
            &self.sockets,
            &mut self.relays,
            &self.conns,
            &self.turn_writers,
        );
        let (core, sender, clock) = (&mut self.core, &mut self.sender, self.clock);
        self.prof
            .time("send", || send_out(core, sender, net, clock, now));
        self.prof.maybe_log();
        for addr in closing {
            if let Some(i) = self.locals.iter().position(|a| *a == addr) {
                self.sockets[i] = None;
                self.locals[i] = CLOSED;
            }
        }
    }

    /// Allocations made for endpoints: a UDP one's socket joins the others, a TCP one gets its
    /// connection's tasks.
    fn adopt_relays(&mut self) {
        while let Some((sock, relay)) = self.core.poll_new_relay() {
            let mut relay = *relay;
            let idx = self.relays.len();
            if let Some(sock) = sock {
                let addr = sock.local_addr();
                let (Ok(addr), Ok(s)) = (addr, tokio::net::UdpSocket::from_std(sock)) else {
                    continue;
                };
                self.locals.push(addr);
                self.sockets.push(Some(s));
                relay.socket = self.sockets.len() - 1;
                relay.io = Io::Udp(self.sockets.len() - 1);
            } else if !self.start_turn_tcp(idx, &mut relay.io) {
                continue;
            }
            self.relays.push(relay);
        }
    }

    /// Starts the reader and writer of relay `idx`'s TCP connection to its TURN server; true
    /// for a UDP relay, false when the connection cannot be taken over.
    fn start_turn_tcp(&mut self, idx: usize, io: &mut Io) -> bool {
        let Io::Tcp(stream) = io else { return true };
        let Some(st) = stream.take() else {
            return false;
        };
        let Ok(st) = tokio::net::TcpStream::from_std(st) else {
            return false;
        };
        let (wtx, wrx) = mpsc::channel(TCP_SEND_QUEUE);
        self.turn_writers.insert(idx, wtx);
        tokio::spawn(turn_connection(st, idx, self.tcp_tx.clone(), wrx));
        true
    }
}

/// A peer's address goes only to the relays its endpoint announces: the server-wide ones and
/// the endpoint's own turnUrl, never another client's.
fn permit(core: &mut MediaCore, relays: &mut [Relay], clock: Clock, now: Instant) {
    while let Some((ip, owner)) = core.poll_permit() {
        for r in relays.iter_mut() {
            if r.owner.is_none() || r.owner == owner {
                r.permit(clock, now, ip);
            }
        }
    }
}
