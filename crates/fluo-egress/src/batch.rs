//! Datagrams queued for one batched send, each with its [`Path`]: the source socket, the
//! destination and the IP TOS / traffic class byte. Buffers are reused from batch to batch (no
//! allocation once each has held a full packet).
//!
//! The egress only produces bytes and paths; the network shell sends them. [`Sender`] sends
//! the datagrams of UDP sockets with `sendmmsg(2)` (one system call per run of datagrams on
//! the same socket, the TOS as a control message per datagram, as fluo-rtc's `send_marked`
//! marks one datagram) and hands every other path (TURN-relayed, ICE-TCP) to the shell,
//! which wraps or frames them itself.

use std::net::SocketAddr;

/// Room reserved per datagram: an MTU-sized packet plus the SRTP tag.
const SLOT: usize = 1500;

/// Which of the shell's sockets or transports a datagram leaves by: an opaque number the
/// shell gives each (a UDP socket, a TURN allocation, an ICE-TCP connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SocketId(pub u32);

/// Where a viewer's datagrams go: the shell's socket, the peer's address and the TOS byte
/// (DSCP << 2; 0 leaves the socket's own marking).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    /// The source socket or transport.
    pub socket: SocketId,
    /// The peer's address (for a TURN-relayed path, the peer as the relay sees it).
    pub to: SocketAddr,
    /// The IPv4 TOS / IPv6 traffic class byte of each datagram (qosDscp), 0 for none.
    pub tos: u8,
}

/// Datagrams to send, each with its path.
#[derive(Debug, Default)]
pub struct Batch {
    bufs: Vec<Vec<u8>>,
    paths: Vec<Path>,
    len: usize,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// A cleared buffer for the next datagram, on `path`.
    pub fn next(&mut self, path: Path) -> &mut Vec<u8> {
        if self.len == self.bufs.len() {
            self.bufs.push(Vec::with_capacity(SLOT));
            self.paths.push(path);
        }
        self.paths[self.len] = path;
        let b = &mut self.bufs[self.len];
        b.clear();
        self.len += 1;
        b
    }

    /// Drops the datagram last taken with [`Batch::next`].
    pub fn undo(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the queued datagrams (their buffers stay for the next batch).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The queued datagrams.
    pub fn iter(&self) -> impl Iterator<Item = (Path, &[u8])> {
        self.paths[..self.len]
            .iter()
            .copied()
            .zip(self.bufs[..self.len].iter().map(Vec::as_slice))
    }

    pub(crate) fn paths(&self) -> &[Path] {
        &self.paths[..self.len]
    }

    pub(crate) fn bufs(&self) -> &[Vec<u8>] {
        &self.bufs[..self.len]
    }
}

/// The network shell as the [`Sender`] sees it.
#[cfg(target_os = "linux")]
pub trait Transport {
    /// The UDP socket behind `socket`, or `None` when the shell sends that path's datagrams
    /// itself (TURN-relayed, ICE-TCP).
    fn udp(&self, socket: SocketId) -> Option<std::os::fd::BorrowedFd<'_>>;

    /// A datagram on a path that is not a plain UDP socket: the shell wraps it (TURN) or
    /// frames it (ICE-TCP, RFC 4571) and sends it.
    fn send_other(&mut self, path: &Path, datagram: &[u8]);
}

/// What one [`Sender::send`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Datagrams dropped: a full send buffer drops the rest of its run, another error the
    /// one datagram (a route gone, a destination refused).
    pub dropped: usize,
    /// Datagrams handed to [`Transport::send_other`].
    pub other: usize,
    /// System calls made.
    pub calls: usize,
}

/// Sends batches: runs of datagrams on one UDP socket with `sendmmsg`, the rest through the
/// shell. Its system-call headers are kept between calls (no allocation once warm).
#[cfg(target_os = "linux")]
#[derive(Debug, Default)]
pub struct Sender {
    mmsg: crate::sys::Mmsg,
}

#[cfg(target_os = "linux")]
impl Sender {
    /// A sender.
    pub fn new() -> Sender {
        Sender::default()
    }

    /// Sends every datagram of `batch`. Datagrams on the same UDP socket go out in one
    /// `sendmmsg` per consecutive run (the caller keeps viewers of one socket together for the
    /// fewest calls); order is kept within each socket.
    pub fn send(&mut self, batch: &Batch, transport: &mut impl Transport) -> SendReport {
        let paths = batch.paths();
        let bufs = batch.bufs();
        let mut report = SendReport::default();
        let mut at = 0;
        while at < paths.len() {
            let socket = paths[at].socket;
            let end = at
                + paths[at..]
                    .iter()
                    .take_while(|p| p.socket == socket)
                    .count();
            if let Some(fd) = transport.udp(socket) {
                let r = self.mmsg.send(fd, &paths[at..end], &bufs[at..end]);
                report.sent += r.sent;
                report.dropped += r.dropped;
                report.calls += r.calls;
                at = end;
                continue;
            }
            for (path, buf) in paths[at..end].iter().zip(&bufs[at..end]) {
                transport.send_other(path, buf);
            }
            report.other += end - at;
            at = end;
        }
        report
    }
}
