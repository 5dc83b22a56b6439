//! DTLS handshakes off the media thread.
//!
//! A joining viewer's DTLS handshake is the heaviest per-join work that reaches the media
//! thread: the server's flight signs its key exchange (ECDSA) and the client's is checked and
//! agreed on (ECDH, a signature verified, keys derived), all inside str0m's `handle_input`
//! for the datagram. With [`MediaCore::offload_handshakes`] on (the shell turns it on), a DTLS
//! datagram for an endpoint that is not connected yet is not fed to its session on the media
//! thread: it becomes a [`Handshake`] that the shell runs on its handshake thread, under the
//! endpoint's lock, after which [`MediaCore::handshake_done`] drains the session on the media
//! thread (its next flight out, its `Connected` event) as any datagram's drive would. Once the
//! endpoint is connected, DTLS (a retransmitted Finished, close_notify) is fed inline again.
//!
//! Order per endpoint holds: one thread runs the handshakes in the order their datagrams
//! arrived, and everything else that touches the session takes the same lock. The router's
//! pushes to a viewer that is not connected return before taking its lock (`Ep::live`), so
//! forwarding never waits for a handshake.

use super::{lock, EpRef, MediaCore};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use str0m::net::{Protocol, Receive};
use str0m::Input;

/// A DTLS datagram for a joining endpoint's session, to be fed to it off the media thread.
pub struct Handshake {
    key: u64,
    ep: EpRef,
    at: Instant,
    proto: Protocol,
    source: SocketAddr,
    /// The local address as the endpoint's session sees it (its announced address).
    destination: SocketAddr,
    data: Vec<u8>,
}

impl Handshake {
    /// Feeds the datagram to the endpoint's session (the handshake's crypto runs here).
    /// Returns the endpoint's key, for [`MediaCore::handshake_done`].
    pub fn run(self) -> u64 {
        let mut ep = lock(&self.ep);
        if let Ok(contents) = self.data.as_slice().try_into() {
            let input = Input::Receive(
                self.at,
                Receive {
                    proto: self.proto,
                    source: self.source,
                    destination: self.destination,
                    contents,
                },
            );
            if let Err(err) = ep.rtc.handle_input(input) {
                tracing::debug!(id = %ep.id, "DTLS input rejected: {err}");
            }
        }
        self.key
    }
}

/// Whether a datagram is DTLS (RFC 7983's demultiplexing by first byte).
pub(super) fn is_dtls(data: &[u8]) -> bool {
    matches!(data.first(), Some(20..=63))
}

impl MediaCore {
    /// From now on, DTLS datagrams of endpoints that are not connected are handed out by
    /// [`MediaCore::poll_handshake`] instead of being fed to their sessions here.
    pub fn offload_handshakes(&mut self, on: bool) {
        self.offload = on;
    }

    /// The next DTLS datagram to feed to a joining endpoint off this thread.
    pub fn poll_handshake(&mut self) -> Option<Handshake> {
        self.handshakes.pop_front()
    }

    /// A [`Handshake`] ran: the endpoint `key`'s session is drained (what it sends, its
    /// events) and what that wrote is flushed.
    pub fn handshake_done(&mut self, now: Instant, key: u64) {
        self.now = now;
        self.drive(key);
        self.flush();
    }

    /// Queues a DTLS datagram of a joining endpoint for the handshake thread.
    pub(super) fn queue_handshake(
        &mut self,
        key: u64,
        ep: EpRef,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.handshakes.push_back(Handshake {
            key,
            ep,
            at: self.now,
            proto,
            source,
            destination,
            data: data.to_vec(),
        });
    }
}

/// Nanoseconds and runs of the handshake thread (the media thread's profile reads them).
pub(crate) type Timed = std::sync::Arc<(AtomicU64, AtomicU64)>;

/// Starts the thread that runs [`Handshake`]s; each one done is reported on `done`, with
/// `timed` the time it took is added. `None` if the thread cannot start.
pub(crate) fn handshake_thread(
    done: tokio::sync::mpsc::UnboundedSender<u64>,
    timed: Option<Timed>,
) -> Option<std::sync::mpsc::Sender<Handshake>> {
    let (tx, rx) = std::sync::mpsc::channel::<Handshake>();
    let spawned = std::thread::Builder::new()
        .name("fluo-dtls".into())
        .spawn(move || {
            while let Ok(h) = rx.recv() {
                let t = Instant::now();
                let key = h.run();
                if let Some(n) = &timed {
                    let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    n.0.fetch_add(ns, Ordering::Relaxed);
                    n.1.fetch_add(1, Ordering::Relaxed);
                }
                if done.send(key).is_err() {
                    return;
                }
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!("no DTLS handshake thread ({e}): handshakes run on the media thread");
            None
        }
    }
}
