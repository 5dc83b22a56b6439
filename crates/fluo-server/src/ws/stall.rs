//! A connection's write progress: its TCP stream wrapped so that the writer knows when the
//! socket last accepted bytes, and the sends that give up on a socket that accepts none for
//! the configured time while a frame waits (`--ws-write-timeout-secs`).
//!
//! The bounded outbox alone (1024 frames) only ends a client that does not read when the core
//! makes replies faster than the socket takes them: one asking slowly, or a core answering
//! slowly, left such a connection open for ever, its frames in the kernel's buffers.

use futures_util::{Sink, SinkExt};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When a connection's socket last accepted bytes, shared by its stream and its writer.
#[derive(Clone)]
pub(crate) struct Progress {
    base: Instant,
    /// Nanoseconds from `base` to the last write that took at least one byte.
    last: Arc<AtomicU64>,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        Progress {
            base: Instant::now(),
            last: Arc::default(),
        }
    }

    fn mark(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }
}

/// A stream that records in its [`Progress`] every write the socket accepts. Under TLS it is
/// the TCP stream, so that it counts what reaches the socket, not what enters rustls' buffer.
pub(crate) struct Watched<S> {
    inner: S,
    progress: Progress,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, progress: Progress) -> Watched<S> {
        Watched { inner, progress }
    }

    fn took(&self, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.progress.mark();
            }
        }
        r
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.took(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.took(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a send ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    Done,
    /// The socket failed (the client went away).
    Failed,
    /// The socket accepted no byte for the timeout while the frame waited.
    Stalled,
}

/// Sends one frame (written and flushed), giving up once the socket has accepted no byte for
/// `stall`, counted from the later of the send's start and the socket's last progress.
pub(crate) async fn send<K, M>(sink: &mut K, frame: M, progress: &Progress, stall: Duration) -> Sent
where
    K: Sink<M> + Unpin,
{
    let started = Instant::now();
    let sending = sink.send(frame);
    tokio::pin!(sending);
    loop {
        let deadline = progress.last().max(started) + stall;
        tokio::select! {
            biased;
            r = &mut sending => return if r.is_ok() { Sent::Done } else { Sent::Failed },
            _ = tokio::time::sleep_until(deadline.into()) => {
                // Bytes taken while we slept move the deadline on.
                if progress.last().max(started) + stall <= Instant::now() {
                    return Sent::Stalled;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A sink of byte frames written whole to a pipe of `capacity` bytes whose far end is
    /// returned, through [`Watched`].
    fn pipe(
        capacity: usize,
        progress: &Progress,
    ) -> (
        impl Sink<Vec<u8>, Error = io::Error> + Unpin,
        tokio::io::DuplexStream,
    ) {
        let (a, b) = tokio::io::duplex(capacity);
        let w = Watched::new(a, progress.clone());
        let sink = futures_util::sink::unfold(w, |mut w, frame: Vec<u8>| async move {
            w.write_all(&frame).await?;
            Ok::<_, io::Error>(w)
        });
        (Box::pin(sink), b)
    }

    #[tokio::test]
    async fn a_frame_the_socket_never_takes_is_given_up_after_the_timeout() {
        let progress = Progress::new();
        let (mut sink, _far) = pipe(16, &progress);
        let t0 = Instant::now();
        let sent = send(
            &mut sink,
            vec![0; 1024],
            &progress,
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(sent, Sent::Stalled);
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(200), "gave up after {took:?}");
        assert!(took < Duration::from_secs(2), "gave up after {took:?}");
    }

    #[tokio::test]
    async fn a_frame_read_slowly_but_steadily_is_sent_whole() {
        let progress = Progress::new();
        let (mut sink, mut far) = pipe(64, &progress);
        // 64 bytes every 50 ms: 1 KiB takes 0.8 s, four times the timeout, each pause a quarter.
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 64];
            while got < 1024 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                got += far.read(&mut buf).await.expect("read");
            }
            got
        });
        let t0 = Instant::now();
        let sent = send(
            &mut sink,
            vec![7; 1024],
            &progress,
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(sent, Sent::Done, "after {:?}", t0.elapsed());
        assert!(
            t0.elapsed() >= Duration::from_millis(400),
            "the reader paced it"
        );
        assert_eq!(reader.await.expect("reader"), 1024);
    }

    #[tokio::test]
    async fn a_write_that_takes_bytes_is_progress_and_a_blocked_one_is_not() {
        let (a, _far) = tokio::io::duplex(4);
        let progress = Progress::new();
        let mut w = Watched::new(a, progress.clone());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = progress.last();
        w.write_all(b"1234").await.expect("fits");
        let after = progress.last();
        assert!(after > before);
        let blocked = tokio::time::timeout(Duration::from_millis(50), w.write_all(b"5")).await;
        assert!(blocked.is_err(), "the pipe is full");
        assert_eq!(progress.last(), after);
    }
}
