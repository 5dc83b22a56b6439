//! The media thread: real sockets and the real clock around [`MediaCore`].
//!
//! UDP sockets carry datagrams as they are. ICE-TCP listeners (passive candidates) accept
//! connections whose frames (RFC 4571: a 16-bit length, then the packet) go to the core as
//! TCP input; what the core sends to such a remote is framed onto its connection.

use crate::core::{Control, Datagram, MediaCore, SocketChange};
use crate::profile::Profile;
use crate::stun::{Discoveries, StunCache};
use crate::turn::{Clock, Io, Relay};
use fluo_core::EventSink;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::task::Poll;
use std::time::{Duration, Instant};
use str0m::net::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
const TCP_FIRST_FRAME: Duration = Duration::from_secs(10);
/// A connection silent for this long is closed (ICE consent checks come every few seconds
/// on a live one).
const TCP_IDLE: Duration = Duration::from_secs(30);
/// Largest frame taken from a peer (a packet never comes near; RFC 4571 allows 65535).
const MAX_TCP_FRAME: usize = 4096;
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

/// What the connection tasks tell the media loop.
enum TcpEvent {
    Frame {
        local: SocketAddr,
        remote: SocketAddr,
        data: Vec<u8>,
    },
    Closed {
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// Bytes from the TCP connection of the TURN allocation `relay`.
    Turn { relay: usize, data: Vec<u8> },
    /// That connection ended: the allocation is gone.
    TurnClosed { relay: usize },
}

pub(crate) fn spawn(
    sockets: Vec<UdpSocket>,
    listeners: Vec<TcpListener>,
    mut relays: Vec<Relay>,
    clock: Clock,
    stun_cache: std::sync::Arc<StunCache>,
    mut ctl: mpsc::UnboundedReceiver<Control>,
    events: EventSink,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("fluo-media".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the media runtime starts");
            rt.block_on(async move {
                // Keep addresses and sockets index-aligned: drop a socket as a pair. A slot
                // is empty once the endpoint a socket was bound for is gone (relays keep
                // the index of theirs).
                let (mut locals, mut sockets): (Vec<SocketAddr>, Vec<Option<tokio::net::UdpSocket>>) = sockets
                    .into_iter()
                    .filter_map(|s| {
                        let addr = s.local_addr().ok()?;
                        Some((addr, Some(tokio::net::UdpSocket::from_std(s).ok()?)))
                    })
                    .unzip();
                let (tcp_locals, listeners): (Vec<SocketAddr>, Vec<tokio::net::TcpListener>) =
                    listeners
                        .into_iter()
                        .filter_map(|l| {
                            let addr = l.local_addr().ok()?;
                            Some((addr, tokio::net::TcpListener::from_std(l).ok()?))
                        })
                        .unzip();
                let (tcp_tx, mut tcp_rx) = mpsc::channel::<TcpEvent>(4096);
                let mut conns: HashMap<(SocketAddr, SocketAddr), mpsc::Sender<Vec<u8>>> =
                    HashMap::new();
                let mut tcp_per_ip: HashMap<std::net::IpAddr, usize> = HashMap::new();
                // TURN allocations over TCP: a reader task each, and a writer queue.
                let mut turn_writers: HashMap<usize, mpsc::Sender<Vec<u8>>> = HashMap::new();
                for (idx, r) in relays.iter_mut().enumerate() {
                    if let Io::Tcp(stream) = &mut r.io {
                        let Some(st) = stream.take() else { continue };
                        let Ok(st) = tokio::net::TcpStream::from_std(st) else { continue };
                        let (wtx, wrx) = mpsc::channel(TCP_SEND_QUEUE);
                        turn_writers.insert(idx, wtx);
                        tokio::spawn(turn_connection(st, idx, tcp_tx.clone(), wrx));
                    }
                }
                let mut core = MediaCore::new(Instant::now());
                let mut prof = Profile::from_env();
                let mut sender = fluo_egress::Sender::new();
                let mut buf = vec![0u8; 2048];
                let mut relay_next: Option<Instant> = None;
                let mut discoveries = Discoveries::default();
                let mut stun_next: Option<Instant> = None;
                loop {
                    let next = core
                        .poll_timeout()
                        .into_iter()
                        .chain(relay_next)
                        .chain(stun_next)
                        .min()
                        .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                    tokio::select! {
                        c = ctl.recv() => {
                            let Some(c) = c else { return };
                            control_pass(&mut core, &mut prof, &mut ctl, c);
                        }
                        (i, n, src) = recv_any(&sockets, &mut buf) => {
                            // This datagram and those waiting behind it on the same socket (a
                            // video frame is several), with one flush of what they forwarded.
                            let batch_began = Instant::now();
                            core.receive_batch(|core| {
                                let mut next = Some((n, src));
                                let mut count = 0;
                                while let Some((n, src)) = next {
                                    let now = Instant::now();
                                    let udp_relay = relays.iter_mut().find(|r| {
                                        matches!(r.io, Io::Udp(s) if s == i) && r.server == src
                                    });
                                    match udp_relay {
                                        // An answer to an endpoint's STUN server.
                                        _ if discoveries.receive(i, src, &buf[..n]) => {}
                                        // Relayed for a peer: as if received on the relayed
                                        // address.
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
                                    // At most RECV_BATCH datagrams or 1 ms of work: the first
                                    // one's copies wait for the batch's flush.
                                    let more = count < RECV_BATCH
                                        && batch_began.elapsed() < RECV_BATCH_TIME
                                        && core.egress_pending() < EGRESS_BATCH;
                                    next = more
                                        .then(|| sockets[i].as_ref()?.try_recv_from(&mut buf).ok())
                                        .flatten();
                                }
                            });
                            prof.batch_done(batch_began);
                        }
                        (i, stream, remote) = accept_any(&listeners) => {
                            let local = tcp_locals[i];
                            let from_ip = tcp_per_ip.get(&remote.ip()).copied().unwrap_or(0);
                            if conns.len() >= MAX_TCP_CONNECTIONS || from_ip >= MAX_TCP_PER_IP {
                                tracing::warn!(%remote, "too many ICE-TCP connections: refused");
                            } else {
                                *tcp_per_ip.entry(remote.ip()).or_default() += 1;
                                let (wtx, wrx) = mpsc::channel(TCP_SEND_QUEUE);
                                conns.insert((local, remote), wtx);
                                tokio::spawn(tcp_connection(stream, local, remote, tcp_tx.clone(), wrx));
                            }
                        }
                        Some(ev) = tcp_rx.recv() => match ev {
                            TcpEvent::Frame { local, remote, data } => core.handle_receive_on(
                                Instant::now(),
                                Protocol::Tcp,
                                local,
                                remote,
                                &data,
                            ),
                            TcpEvent::Closed { local, remote } => {
                                conns.remove(&(local, remote));
                                if let Some(n) = tcp_per_ip.get_mut(&remote.ip()) {
                                    *n = n.saturating_sub(1);
                                    if *n == 0 {
                                        tcp_per_ip.remove(&remote.ip());
                                    }
                                }
                            }
                            TcpEvent::TurnClosed { relay } => {
                                if let Some(r) = relays.get_mut(relay) {
                                    r.dead = true;
                                }
                            }
                            TcpEvent::Turn { relay, data } => {
                                if let Some(r) = relays.get_mut(relay) {
                                    let relayed = r.relayed;
                                    for (peer, data) in r.receive(clock, Instant::now(), &data) {
                                        core.handle_receive(Instant::now(), relayed, peer, &data);
                                    }
                                }
                            }
                        },
                        _ = tokio::time::sleep_until(next.into()) => prof.time("timers", || core.handle_timeout(Instant::now())),
                    }
                    let now = Instant::now();
                    // Allocations made for endpoints: their UDP socket joins the others.
                    while let Some((sock, relay)) = core.poll_new_relay() {
                        let mut relay = *relay;
                        let idx = relays.len();
                        if let Some(sock) = sock {
                            let addr = sock.local_addr();
                            match (addr, tokio::net::UdpSocket::from_std(sock)) {
                                (Ok(addr), Ok(s)) => {
                                    locals.push(addr);
                                    sockets.push(Some(s));
                                    relay.socket = sockets.len() - 1;
                                    relay.io = Io::Udp(sockets.len() - 1);
                                }
                                _ => continue,
                            }
                        } else if let Io::Tcp(stream) = &mut relay.io {
                            let Some(st) = stream.take() else { continue };
                            let Ok(st) = tokio::net::TcpStream::from_std(st) else { continue };
                            let (wtx, wrx) = mpsc::channel(TCP_SEND_QUEUE);
                            turn_writers.insert(idx, wtx);
                            tokio::spawn(turn_connection(st, idx, tcp_tx.clone(), wrx));
                        }
                        relays.push(relay);
                    }
                    while let Some(server) = core.poll_discover() {
                        if !discoveries.start(server, &locals, now) {
                            tracing::warn!(%server, "no media socket of this STUN server's address family");
                            stun_cache.finish(&server, vec![]);
                        }
                    }
                    stun_next = discoveries.poll(now, &stun_cache, &mut |i, to, bytes| {
                        if let Some(s) = &sockets[i] {
                            let _ = s.try_send_to(bytes, to);
                        }
                    });
                    permit(&mut core, &mut relays, clock, now);
                    // Sockets of endpoints that run full ICE with an ICE-lite peer, before
                    // their first checks leave.
                    let mut closing = vec![];
                    while let Some(change) = core.poll_socket_change() {
                        match change {
                            SocketChange::Open(s) => open_socket(s, &mut locals, &mut sockets),
                            SocketChange::Close(addr) => closing.push(addr),
                        }
                    }
                    let net = Net::of(&locals, &sockets, &mut relays, &conns, &turn_writers);
                    prof.time("send", || send_out(&mut core, &mut sender, net, clock, now));
                    prof.maybe_log();
                    // After what the endpoint sent on its way out (DTLS close_notify).
                    for addr in closing {
                        if let Some(i) = locals.iter().position(|a| *a == addr) {
                            sockets[i] = None;
                            locals[i] = CLOSED;
                        }
                    }
                    relay_next = None;
                    for (idx, r) in relays.iter_mut().enumerate() {
                        let (out, next) = r.poll(clock, now);
                        for bytes in out {
                            to_turn(r, idx, bytes, &sockets, &turn_writers);
                        }
                        relay_next = relay_next.into_iter().chain(next).min();
                    }
                    while let Some((id, ev)) = core.poll_event() {
                        events(&id, ev);
                    }
                }
            });
        })?;
    Ok(())
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

/// What sends the media core's datagrams: the shell's sockets, relays and ICE-TCP
/// connections.
struct Net<'a> {
    locals: &'a [SocketAddr],
    sockets: &'a [Option<tokio::net::UdpSocket>],
    relays: &'a mut Vec<Relay>,
    conns: &'a HashMap<(SocketAddr, SocketAddr), mpsc::Sender<Vec<u8>>>,
    turn_writers: &'a HashMap<usize, mpsc::Sender<Vec<u8>>>,
}

impl<'a> Net<'a> {
    fn of(
        locals: &'a [SocketAddr],
        sockets: &'a [Option<tokio::net::UdpSocket>],
        relays: &'a mut Vec<Relay>,
        conns: &'a HashMap<(SocketAddr, SocketAddr), mpsc::Sender<Vec<u8>>>,
        turn_writers: &'a HashMap<usize, mpsc::Sender<Vec<u8>>>,
    ) -> Net<'a> {
        Net {
            locals,
            sockets,
            relays,
            conns,
            turn_writers,
        }
    }
}

/// Sends what the media core queued: the egress fast path's batch first (`sendmmsg` per run
/// of one UDP socket, TURN-relayed and ICE-TCP paths as str0m's datagrams go), then str0m's
/// datagrams (ICE, DTLS, SCTP; RTP and RTCP of endpoints without the fast path).
fn send_out(
    core: &mut MediaCore,
    sender: &mut fluo_egress::Sender,
    net: Net<'_>,
    clock: Clock,
    now: Instant,
) {
    let Net {
        locals,
        sockets,
        relays,
        conns,
        turn_writers,
    } = net;
    core.send_egress(|batch, ids| {
        let net = Net::of(locals, sockets, &mut *relays, conns, turn_writers);
        let mut out = EgressOut {
            ids,
            net,
            clock,
            now,
        };
        let r = sender.send(batch, &mut out);
        if r.dropped > 0 {
            tracing::trace!(dropped = r.dropped, "egress datagrams dropped");
        }
    });
    while let Some(d) = core.poll_transmit() {
        match relays.iter().position(|r| r.relayed == d.source) {
            Some(idx) => {
                let r = &mut relays[idx];
                if let Some(bytes) = r.send(clock, now, d.destination, &d.contents) {
                    to_turn(r, idx, bytes, sockets, turn_writers);
                }
            }
            None => send(&d, locals, sockets, conns),
        }
    }
}

/// The shell's sockets as the egress fast path's sender sees them (by the core's socket
/// ids): plain UDP sockets by their descriptor, everything else (TURN-relayed, ICE-TCP) sent
/// as `send_out` sends str0m's datagrams.
struct EgressOut<'a, 'b> {
    ids: &'b [(Protocol, SocketAddr)],
    net: Net<'a>,
    clock: Clock,
    now: Instant,
}

impl fluo_egress::Transport for EgressOut<'_, '_> {
    fn udp(&self, socket: fluo_egress::SocketId) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        let &(proto, local) = self.ids.get(socket.0 as usize)?;
        if proto != Protocol::Udp || self.net.relays.iter().any(|r| r.relayed == local) {
            return None;
        }
        let i = self.net.locals.iter().position(|a| *a == local)?;
        self.net.sockets[i].as_ref().map(|s| s.as_fd())
    }

    fn send_other(&mut self, path: &fluo_egress::Path, datagram: &[u8]) {
        let Some(&(proto, local)) = self.ids.get(path.socket.0 as usize) else {
            return;
        };
        if let Some(idx) = self.net.relays.iter().position(|r| r.relayed == local) {
            let r = &mut self.net.relays[idx];
            if let Some(bytes) = r.send(self.clock, self.now, path.to, datagram) {
                to_turn(r, idx, bytes, self.net.sockets, self.net.turn_writers);
            }
            return;
        }
        let d = Datagram {
            proto,
            source: local,
            destination: path.to,
            contents: datagram.to_vec(),
            tos: path.tos,
        };
        send(&d, self.net.locals, self.net.sockets, self.net.conns);
    }
}

/// Bytes for the TURN server of allocation `idx`: on its media socket, or its TCP connection
/// (where the client already framed them).
fn to_turn(
    r: &Relay,
    idx: usize,
    bytes: Vec<u8>,
    sockets: &[Option<tokio::net::UdpSocket>],
    writers: &HashMap<usize, mpsc::Sender<Vec<u8>>>,
) {
    match r.io {
        Io::Udp(i) => {
            if let Some(s) = &sockets[i] {
                let _ = s.try_send_to(&bytes, r.server);
            }
        }
        Io::Tcp(_) => {
            if let Some(w) = writers.get(&idx) {
                let _ = w.try_send(bytes);
            }
        }
    }
}

/// The TCP connection of a TURN allocation: bytes read go to the media loop, queued bytes
/// are written.
async fn turn_connection(
    stream: tokio::net::TcpStream,
    relay: usize,
    to_core: mpsc::Sender<TcpEvent>,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = outgoing.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 8192];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let ev = TcpEvent::Turn {
                    relay,
                    data: buf[..n].to_vec(),
                };
                if to_core.send(ev).await.is_err() {
                    break;
                }
            }
        }
    }
    tracing::warn!(
        relay,
        "the TCP connection to the TURN server closed: its relay is gone"
    );
    writer.abort();
    let _ = to_core.send(TcpEvent::TurnClosed { relay }).await;
}

/// The address of a closed slot: never a socket's.
const CLOSED: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// A socket bound for one endpoint joins the others, in a free slot if there is one.
fn open_socket(
    s: UdpSocket,
    locals: &mut Vec<SocketAddr>,
    sockets: &mut Vec<Option<tokio::net::UdpSocket>>,
) {
    let (Ok(addr), Ok(s)) = (s.local_addr(), tokio::net::UdpSocket::from_std(s)) else {
        return;
    };
    match sockets.iter().position(Option::is_none) {
        Some(i) => {
            locals[i] = addr;
            sockets[i] = Some(s);
        }
        None => {
            locals.push(addr);
            sockets.push(Some(s));
        }
    }
}

fn send(
    d: &Datagram,
    locals: &[SocketAddr],
    sockets: &[Option<tokio::net::UdpSocket>],
    conns: &HashMap<(SocketAddr, SocketAddr), mpsc::Sender<Vec<u8>>>,
) {
    match d.proto {
        Protocol::Udp => {
            if let Some(Some(socket)) = locals
                .iter()
                .position(|a| *a == d.source)
                .map(|i| &sockets[i])
            {
                // UDP: a full send buffer drops this packet, as the network would, and only
                // this one: the kernel is asked every time (tokio's `try_send_to` stops asking
                // after one WouldBlock until its reactor sees the socket writable again, which
                // would drop the rest of a fan-out burst).
                let to = socket2::SockAddr::from(d.destination);
                let sock = socket2::SockRef::from(socket);
                if d.tos == 0 {
                    let _ = sock.send_to(&d.contents, &to);
                } else {
                    // qosDscp: the mark goes with this datagram only (the socket is shared).
                    crate::net::send_marked(&sock, &d.contents, &to, d.tos);
                }
            }
        }
        _ => {
            // The peer's connection (ICE-TCP is passive here: we never connect out). A full
            // queue drops the frame; a closed connection is forgotten by its task.
            if let Some(w) = conns.get(&(d.source, d.destination)) {
                let _ = w.try_send(d.contents.clone());
            }
        }
    }
}

/// One ICE-TCP connection: reads RFC 4571 frames into the media loop and writes what the
/// loop queues for it; ends on close, error, an oversized frame, or silence before the first
/// frame.
async fn tcp_connection(
    stream: tokio::net::TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    to_core: mpsc::Sender<TcpEvent>,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            let Ok(len) = u16::try_from(frame.len()) else {
                continue;
            };
            let mut out = Vec::with_capacity(frame.len() + 2);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&frame);
            if wr.write_all(&out).await.is_err() {
                return;
            }
        }
    });
    let mut first = true;
    loop {
        let mut len = [0u8; 2];
        let wait = if first { TCP_FIRST_FRAME } else { TCP_IDLE };
        match tokio::time::timeout(wait, rd.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::debug!(%remote, "ICE-TCP connection silent: closed");
                break;
            }
        }
        let n = usize::from(u16::from_be_bytes(len));
        if n > MAX_TCP_FRAME {
            tracing::debug!(%remote, n, "ICE-TCP frame too large: connection closed");
            break;
        }
        let mut data = vec![0u8; n];
        if !matches!(
            tokio::time::timeout(TCP_IDLE, rd.read_exact(&mut data)).await,
            Ok(Ok(_))
        ) {
            break;
        }
        // The first frame of an ICE-TCP connection is an ICE check (a STUN request).
        if first && (n < 20 || data[0] > 1) {
            tracing::debug!(%remote, "ICE-TCP connection that does not start with STUN: closed");
            break;
        }
        first = false;
        let ev = TcpEvent::Frame {
            local,
            remote,
            data,
        };
        if to_core.send(ev).await.is_err() {
            break;
        }
    }
    writer.abort();
    let _ = to_core.send(TcpEvent::Closed { local, remote }).await;
}

/// Accepts one connection on whichever listener has one: (listener index, stream, remote).
async fn accept_any(
    listeners: &[tokio::net::TcpListener],
) -> (usize, tokio::net::TcpStream, SocketAddr) {
    std::future::poll_fn(|cx| {
        for (i, l) in listeners.iter().enumerate() {
            match l.poll_accept(cx) {
                Poll::Ready(Ok((s, remote))) => return Poll::Ready((i, s, remote)),
                Poll::Ready(Err(e)) => {
                    // Out of descriptors, a connection reset before accept: keep listening.
                    tracing::debug!("ICE-TCP accept error: {e}");
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

/// Receives one datagram from whichever socket has one: (socket index, length, source).
async fn recv_any(
    sockets: &[Option<tokio::net::UdpSocket>],
    buf: &mut [u8],
) -> (usize, usize, SocketAddr) {
    std::future::poll_fn(|cx| {
        for (i, s) in sockets.iter().enumerate() {
            let Some(s) = s else { continue };
            let mut rb = tokio::io::ReadBuf::new(buf);
            match s.poll_recv_from(cx, &mut rb) {
                Poll::Ready(Ok(src)) => return Poll::Ready((i, rb.filled().len(), src)),
                Poll::Ready(Err(e)) => {
                    // ICMP errors (port unreachable) surface here; keep receiving.
                    tracing::trace!("udp receive error: {e}");
                    cx.waker().wake_by_ref();
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}
