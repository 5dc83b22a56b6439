//! What leaves the media thread: the core's datagrams and the egress fast path's batches, on
//! the shell's UDP sockets, TURN relays and ICE-TCP connections.

use super::{Conns, Writers};
use crate::core::{Datagram, MediaCore};
use crate::turn::{Clock, Io, Relay};
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;
use str0m::net::Protocol;

/// What sends the media core's datagrams: the shell's sockets, relays and ICE-TCP
/// connections.
pub(super) struct Net<'a> {
    pub(super) locals: &'a [SocketAddr],
    pub(super) sockets: &'a [Option<tokio::net::UdpSocket>],
    pub(super) relays: &'a mut Vec<Relay>,
    pub(super) conns: &'a Conns,
    pub(super) turn_writers: &'a Writers,
}

impl<'a> Net<'a> {
    pub(super) fn of(
        locals: &'a [SocketAddr],
        sockets: &'a [Option<tokio::net::UdpSocket>],
        relays: &'a mut Vec<Relay>,
        conns: &'a Conns,
        turn_writers: &'a Writers,
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
pub(super) fn send_out(
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
pub(super) fn to_turn(
    r: &Relay,
    idx: usize,
    bytes: Vec<u8>,
    sockets: &[Option<tokio::net::UdpSocket>],
    writers: &Writers,
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

/// The address of a closed slot: never a socket's.
pub(super) const CLOSED: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// A socket bound for one endpoint joins the others, in a free slot if there is one.
pub(super) fn open_socket(
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
    conns: &Conns,
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
