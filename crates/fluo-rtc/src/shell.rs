//! The media thread: real sockets and the real clock around [`MediaCore`].

use crate::core::{Control, MediaCore};
use crate::EventSink;
use std::net::{SocketAddr, UdpSocket};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub(crate) fn spawn(
    sockets: Vec<UdpSocket>,
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
                // Keep addresses and sockets index-aligned: drop a socket as a pair.
                let (locals, sockets): (Vec<SocketAddr>, Vec<tokio::net::UdpSocket>) = sockets
                    .into_iter()
                    .filter_map(|s| {
                        let addr = s.local_addr().ok()?;
                        Some((addr, tokio::net::UdpSocket::from_std(s).ok()?))
                    })
                    .unzip();
                let mut core = MediaCore::new(Instant::now());
                let mut buf = vec![0u8; 2048];
                loop {
                    let next = core
                        .poll_timeout()
                        .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                    tokio::select! {
                        c = ctl.recv() => {
                            let Some(c) = c else { return };
                            core.control(Instant::now(), c);
                            while let Ok(c) = ctl.try_recv() {
                                core.control(Instant::now(), c);
                            }
                        }
                        (i, n, src) = recv_any(&sockets, &mut buf) => {
                            core.handle_receive(Instant::now(), locals[i], src, &buf[..n]);
                        }
                        _ = tokio::time::sleep_until(next.into()) => core.handle_timeout(Instant::now()),
                    }
                    while let Some(d) = core.poll_transmit() {
                        if let Some(i) = locals.iter().position(|a| *a == d.source) {
                            // UDP: a full send buffer drops the packet, as the network would.
                            let _ = sockets[i].try_send_to(&d.contents, d.destination);
                        }
                    }
                    while let Some((id, ev, fields)) = core.poll_event() {
                        events(&id, &ev, fields);
                    }
                }
            });
        })?;
    Ok(())
}

/// Receives one datagram from whichever socket has one: (socket index, length, source).
async fn recv_any(sockets: &[tokio::net::UdpSocket], buf: &mut [u8]) -> (usize, usize, SocketAddr) {
    std::future::poll_fn(|cx| {
        for (i, s) in sockets.iter().enumerate() {
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
