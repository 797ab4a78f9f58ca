//! One encrypted frame, and one TCP segment, for the yamux frames that one pass of a
//! connection's task produces (issue 21 item 2).
//!
//! yamux 0.14 flushes its socket after every frame it writes: a stream's opening, its
//! data and its close each go out as an encrypted frame of their own, and with
//! `TCP_NODELAY` as a TCP segment of their own, each acknowledged. A sync exchange with
//! nothing new took 11 loopback packets (the asker's opening, request, close and window
//! update were four segments). [`Coalesced`] sits between yamux and Noise and lets the
//! first flush after new bytes go by: it wakes the connection's task and returns at
//! once, so yamux goes on writing the frames it has, and the next flush that finds no
//! new bytes since the last one flushes them all. Noise holds what was written until
//! that flush (it seals up to a frame's worth at once), so what one pass wrote leaves
//! as one encrypted frame.
//!
//! The cost: what a pass writes goes out when the task runs again, at once since it was
//! woken (one more poll of the connection per pass that wrote). Closing flushes first.

use std::{
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};

/// An upgrade that gives the multiplexer `U` a [`Coalesced`] socket (which passes every
/// flush through when `on` is false: the sim's before).
#[derive(Debug, Clone)]
pub(crate) struct Coalesce<U> {
    pub(crate) muxer: U,
    pub(crate) on: bool,
}

impl<U: UpgradeInfo> UpgradeInfo for Coalesce<U> {
    type Info = U::Info;
    type InfoIter = U::InfoIter;

    fn protocol_info(&self) -> Self::InfoIter {
        self.muxer.protocol_info()
    }
}

impl<C, U> InboundConnectionUpgrade<C> for Coalesce<U>
where
    U: InboundConnectionUpgrade<Coalesced<C>>,
{
    type Output = U::Output;
    type Error = U::Error;
    type Future = U::Future;

    fn upgrade_inbound(self, socket: C, info: Self::Info) -> Self::Future {
        self.muxer.upgrade_inbound(Coalesced::new(socket, self.on), info)
    }
}

impl<C, U> OutboundConnectionUpgrade<C> for Coalesce<U>
where
    U: OutboundConnectionUpgrade<Coalesced<C>>,
{
    type Output = U::Output;
    type Error = U::Error;
    type Future = U::Future;

    fn upgrade_outbound(self, socket: C, info: Self::Info) -> Self::Future {
        self.muxer.upgrade_outbound(Coalesced::new(socket, self.on), info)
    }
}

/// A socket whose flushes wait for the end of the writer's pass (see the module).
#[derive(Debug)]
pub(crate) struct Coalesced<C> {
    inner: C,
    /// Whether flushes wait (else each goes through).
    on: bool,
    /// Bytes were written since the last call to `poll_flush`.
    written: bool,
    /// Bytes were written since the inner socket was last flushed.
    unflushed: bool,
}

impl<C> Coalesced<C> {
    pub(crate) fn new(inner: C, on: bool) -> Self {
        Self { inner, on, written: false, unflushed: false }
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for Coalesced<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Coalesced<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        if n > 0 {
            self.written = true;
            self.unflushed = true;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if std::mem::take(&mut self.written) && self.on {
            // More may come in this pass: flush when the task runs again.
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        if self.unflushed {
            ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.unflushed {
            ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
            self.written = false;
            self.unflushed = false;
        }
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use futures::{future::poll_fn, io::Cursor, task::noop_waker_ref, AsyncReadExt, AsyncWriteExt};
    use libp2p::core::muxing::StreamMuxerExt;

    use super::*;

    /// A socket that counts the flushes that reach it.
    struct Counting<C> {
        inner: C,
        flushes: Arc<AtomicUsize>,
    }

    impl<C: AsyncRead + Unpin> AsyncRead for Counting<C> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl<C: AsyncWrite + Unpin> AsyncWrite for Counting<C> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_close(cx)
        }
    }

    /// A coalescing socket over a counting one that keeps what it is given.
    type Kept = Coalesced<Counting<Cursor<Vec<u8>>>>;

    fn counting() -> (Kept, Arc<AtomicUsize>) {
        let flushes = Arc::new(AtomicUsize::new(0));
        let inner = Counting { inner: Cursor::new(Vec::new()), flushes: flushes.clone() };
        (Coalesced::new(inner, true), flushes)
    }

    #[test]
    fn a_pass_of_writes_reaches_the_socket_in_one_flush() {
        let (mut socket, flushes) = counting();
        let mut cx = Context::from_waker(noop_waker_ref());
        // yamux's pattern: each frame written, then a flush, then the next frame.
        for frame in [&b"open"[..], b"data", b"close"] {
            assert!(Pin::new(&mut socket).poll_write(&mut cx, frame).is_ready());
            assert!(Pin::new(&mut socket).poll_flush(&mut cx).is_ready());
        }
        assert_eq!(flushes.load(Ordering::Relaxed), 0, "flushed within the pass");
        // The next pass's first flush finds nothing new: everything goes out.
        assert!(Pin::new(&mut socket).poll_flush(&mut cx).is_ready());
        assert_eq!(flushes.load(Ordering::Relaxed), 1);
        // Nothing written since: no flush reaches the socket.
        assert!(Pin::new(&mut socket).poll_flush(&mut cx).is_ready());
        assert_eq!(flushes.load(Ordering::Relaxed), 1);
        assert_eq!(socket.inner.inner.get_ref().as_slice(), b"opendataclose");
    }

    #[test]
    fn a_deferred_flush_wakes_the_writer_and_close_flushes() {
        let (mut socket, flushes) = counting();
        let woken = Arc::new(AtomicUsize::new(0));
        let waker = futures::task::waker(Arc::new(Wake(woken.clone())));
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut socket).poll_write(&mut cx, b"frame").is_ready());
        assert!(Pin::new(&mut socket).poll_flush(&mut cx).is_ready());
        assert_eq!(woken.load(Ordering::Relaxed), 1, "the task is woken to flush");
        assert!(Pin::new(&mut socket).poll_write(&mut cx, b"last").is_ready());
        assert!(Pin::new(&mut socket).poll_close(&mut cx).is_ready());
        assert_eq!(flushes.load(Ordering::Relaxed), 1, "close flushes what is pending");
    }

    struct Wake(Arc<AtomicUsize>);

    impl futures::task::ArcWake for Wake {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A yamux connection over an in-memory pipe: a stream opened, written and closed
    /// reaches the socket in one flush with [`Coalesce`] and in several without.
    #[tokio::test]
    async fn a_yamux_stream_opened_written_and_closed_is_one_flush() {
        async fn flushes_for_one_stream(coalesce: bool) -> usize {
            use tokio_util::compat::TokioAsyncReadCompatExt;
            let (a, b) = tokio::io::duplex(64 * 1024);
            let (a, b) = (a.compat(), b.compat());
            let flushes = Arc::new(AtomicUsize::new(0));
            let a = Counting { inner: a, flushes: flushes.clone() };
            let info = "/yamux/1.0.0";
            let config = libp2p::yamux::Config::default();
            let up = Coalesce { muxer: config.clone(), on: coalesce }.upgrade_outbound(a, info);
            let mut dialer = up.await.expect("yamux");
            let mut listener = config.upgrade_inbound(b, info).await.expect("yamux");
            let mut stream = poll_fn(|cx| dialer.poll_outbound_unpin(cx)).await.expect("stream");
            let write = async {
                stream.write_all(b"a request").await.expect("write");
                stream.close().await.expect("close");
            };
            // The dialer's connection runs while the stream writes and closes.
            let drive = poll_fn(|cx| {
                let _ = dialer.poll_unpin(cx);
                Poll::<()>::Pending
            });
            let read = async {
                let mut inbound =
                    poll_fn(|cx| listener.poll_inbound_unpin(cx)).await.expect("inbound");
                let drive = poll_fn(|cx| {
                    let _ = listener.poll_unpin(cx);
                    Poll::<()>::Pending
                });
                let mut got = Vec::new();
                futures::select! {
                    r = inbound.read_to_end(&mut got).fuse() => r.expect("read"),
                    _ = drive.fuse() => unreachable!(),
                };
                got
            };
            let work = async { futures::join!(write, read).1 };
            let got = futures::select! {
                got = Box::pin(work).fuse() => got,
                _ = Box::pin(drive).fuse() => unreachable!(),
            };
            assert_eq!(got, b"a request");
            flushes.load(Ordering::Relaxed)
        }
        use futures::FutureExt;
        let within = |f| tokio::time::timeout(std::time::Duration::from_secs(10), f);
        let plain = within(flushes_for_one_stream(false)).await.expect("stream done");
        let coalesced = within(flushes_for_one_stream(true)).await.expect("stream done");
        assert!(plain >= 3, "yamux flushes each frame: {plain}");
        assert_eq!(coalesced, 1, "one flush for the opening, the data and the close");
    }
}
