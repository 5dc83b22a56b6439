//! The shell's TCP side (ICE-TCP connections and TURN allocations over TCP), and the waits for
//! whichever socket or listener is ready.

use super::{MAX_TCP_FRAME, TCP_FIRST_FRAME, TCP_IDLE};
use std::net::SocketAddr;
use std::task::Poll;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// What the connection tasks tell the media loop.
pub(super) enum TcpEvent {
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

/// The TCP connection of a TURN allocation: bytes read go to the media loop, queued bytes
/// are written.
pub(super) async fn turn_connection(
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

/// One ICE-TCP connection: reads RFC 4571 frames into the media loop and writes what the
/// loop queues for it; ends on close, error, an oversized frame, or silence before the first
/// frame.
pub(super) async fn tcp_connection(
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
pub(super) async fn accept_any(
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
pub(super) async fn recv_any(
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
