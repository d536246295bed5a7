//! A TCP stream whose small writes go out as one `send(2)` each, at the end of the scheduler's
//! pass over the tasks that were ready.
//!
//! Two things, both about system calls:
//!
//! - **One `send` per message.** hyper hands a message to its socket as slices (the head,
//!   then the body's chunks) and writes them with `writev(2)` when the stream supports
//!   vectored writes. On Linux `writev` goes through the VFS layer (file position lock, iovec
//!   import, the generic write path) before it reaches TCP; `send` goes to the socket
//!   directly. Small messages are copied into one buffer and sent whole; large writes stay
//!   gathered, so streamed bodies are not copied.
//! - **Sends after receives.** On Tokio's current-thread scheduler (Buckler's, one core per
//!   process), a small write is kept in the stream's buffer and the stream is queued; a
//!   flusher task, at the back of the run queue, sends every queued buffer once the tasks
//!   that were ready before it have run. HAProxy's loop works the same way: receive on every
//!   ready connection, then send. A peer (client or upstream) then gets its data in bursts,
//!   and is woken once per burst instead of once per message; on loopback, waking a process
//!   on another CPU costs more than the send (`benches/README.md`: peer wake-ups per request
//!   from 0.27–0.42 to 0.14, HAProxy's rate; wrk +15 % and h2load +14 % in an interleaved A/B
//!   of the PGO+BOLT builds).
//!
//! A deferred write's error is kept and returned by the stream's next write, flush or
//! shutdown. A stream dropped with bytes still queued stays open until they are sent: the
//! queue holds the socket.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Notify;

/// Gathered writes up to this many bytes are copied and sent whole; writes up to this size
/// are deferred.
const FLATTEN_LIMIT: usize = 4096;

/// Deferred bytes one stream may hold; a writer past it waits until they are sent.
const DEFER_LIMIT: usize = 64 * 1024;

thread_local! {
    /// Where a gathered write is copied; one per thread, reused (never above `FLATTEN_LIMIT`).
    static FLAT: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(FLATTEN_LIMIT));
    /// Streams with deferred bytes, and the flusher that sends them, for this thread's
    /// current-thread runtime.
    static BATCH: RefCell<Batch> = RefCell::new(Batch::default());
}

#[derive(Default)]
struct Batch {
    queued: Vec<Arc<Shared>>,
    flusher: Option<Flusher>,
}

struct Flusher {
    notify: Arc<Notify>,
    /// Dead once the flusher's task is dropped, with its runtime: the next runtime on this
    /// thread starts its own.
    alive: Weak<()>,
}

/// A [`TcpStream`] that writes small vectored writes with a single `send`, deferred to the
/// end of the scheduler's pass on the current-thread scheduler.
#[derive(Debug)]
pub struct SendStream {
    shared: Arc<Shared>,
    defer: bool,
}

#[derive(Debug)]
struct Shared {
    stream: TcpStream,
    out: Mutex<Out>,
}

#[derive(Debug, Default)]
struct Out {
    pending: Vec<u8>,
    /// In the batch, or with a task waiting to send it: not to be queued again.
    queued: bool,
    /// A deferred send's error, for the stream's next write, flush or shutdown.
    error: Option<io::ErrorKind>,
}

impl SendStream {
    pub fn new(stream: TcpStream) -> Self {
        let defer = Handle::try_current()
            .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::CurrentThread);
        SendStream {
            shared: Arc::new(Shared {
                stream,
                out: Mutex::new(Out::default()),
            }),
            defer,
        }
    }

    /// Sends what is deferred, waiting for the socket when it is full.
    fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.defer {
            return Poll::Ready(Ok(()));
        }
        let mut out = self.shared.lock();
        // `send_now` ends on `WouldBlock`, which clears the readiness `poll_write_ready`
        // then waits on; a failed send is kept, as the flusher keeps it.
        while !self.shared.send_now(&mut out) {
            ready!(self.shared.stream.poll_write_ready(cx))?;
        }
        match out.error {
            Some(kind) => Poll::Ready(Err(kind.into())),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Writes straight to the socket with `write`, waiting for room: after what is deferred,
    /// so bytes keep their order.
    fn poll_write_direct(
        &self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(cx))?;
        loop {
            ready!(self.shared.stream.poll_write_ready(cx))?;
            match write(&self.shared.stream) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    /// Writes `buf`: deferred when small, else after what is deferred.
    fn poll_send(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.defer && buf.len() <= FLATTEN_LIMIT {
            let mut out = self.shared.lock();
            if let Some(kind) = out.error {
                return Poll::Ready(Err(kind.into()));
            }
            if out.pending.len() + buf.len() <= DEFER_LIMIT {
                out.pending.extend_from_slice(buf);
                if !out.queued {
                    out.queued = true;
                    drop(out);
                    defer(&self.shared);
                }
                return Poll::Ready(Ok(buf.len()));
            }
        }
        self.poll_write_direct(cx, |stream| stream.try_write(buf))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Out> {
        // Only bytes and flags are behind the lock; keep using them after a panic elsewhere.
        self.out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends the deferred bytes without waiting. True when none are left (sent, or dropped
    /// with the error kept).
    fn send_now(&self, out: &mut Out) -> bool {
        while !out.pending.is_empty() {
            match self.stream.try_write(&out.pending) {
                Ok(sent) => drop(out.pending.drain(..sent)),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return false,
                Err(error) => {
                    out.error = Some(error.kind());
                    out.pending.clear();
                }
            }
        }
        true
    }
}

/// Queues `shared` for this thread's flusher, starting one if there is none (or its runtime
/// has gone).
fn defer(shared: &Arc<Shared>) {
    BATCH.with_borrow_mut(|batch| {
        let alive = batch
            .flusher
            .as_ref()
            .is_some_and(|flusher| flusher.alive.strong_count() > 0);
        if !alive {
            // Streams queued under a runtime that has gone are dead with it.
            batch.queued.clear();
            let notify = Arc::new(Notify::new());
            let token = Arc::new(());
            batch.flusher = Some(Flusher {
                notify: notify.clone(),
                alive: Arc::downgrade(&token),
            });
            tokio::spawn(flush(notify, token));
        }
        if batch.queued.is_empty() {
            if let Some(flusher) = &batch.flusher {
                flusher.notify.notify_one();
            }
        }
        batch.queued.push(shared.clone());
    });
}

/// The flusher: woken when the batch gets its first stream, it runs after the tasks that
/// were ready then, and sends every queued stream's bytes.
async fn flush(notify: Arc<Notify>, _alive: Arc<()>) {
    let mut sending = Vec::new();
    loop {
        notify.notified().await;
        BATCH.with_borrow_mut(|batch| std::mem::swap(&mut batch.queued, &mut sending));
        for shared in sending.drain(..) {
            let mut out = shared.lock();
            if shared.send_now(&mut out) {
                out.queued = false;
            } else {
                // The socket is full: a task of its own waits for room. Rare with small
                // writes; it keeps `queued` so the stream is not queued twice.
                drop(out);
                tokio::spawn(send_when_writable(shared));
            }
        }
    }
}

async fn send_when_writable(shared: Arc<Shared>) {
    loop {
        let ready = shared.stream.writable().await;
        let mut out = shared.lock();
        if let Err(error) = ready {
            out.error = Some(error.kind());
            out.pending.clear();
        }
        if shared.send_now(&mut out) {
            out.queued = false;
            return;
        }
    }
}

impl AsyncRead for SendStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.shared.stream.poll_read_ready(cx))?;
            match self.shared.stream.try_read_buf(buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result.map(|_| ())),
            }
        }
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_send(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut nonempty = bufs.iter().filter(|buf| !buf.is_empty());
        let (Some(first), second) = (nonempty.next(), nonempty.next()) else {
            return Poll::Ready(Ok(0));
        };
        let Some(second) = second else {
            return self.poll_send(cx, first);
        };
        let total: usize = bufs.iter().map(|buf| buf.len()).sum();
        if total > FLATTEN_LIMIT {
            return self.poll_write_direct(cx, |stream| stream.try_write_vectored(bufs));
        }
        FLAT.with_borrow_mut(|flat| {
            flat.clear();
            flat.extend_from_slice(first);
            flat.extend_from_slice(second);
            for buf in nonempty {
                flat.extend_from_slice(buf);
            }
            // A partial send reports how far into the slices it got, as `writev` would.
            self.poll_send(cx, flat)
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Deferred bytes go out at the end of the scheduler's pass; a flush only reports an
    /// error from an earlier deferred send.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.defer {
            if let Some(kind) = self.shared.lock().error {
                return Poll::Ready(Err(kind.into()));
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Poll::Ready(socket2::SockRef::from(&self.shared.stream).shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair on loopback: our end wrapped, the peer's plain.
    async fn pair() -> (SendStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connect = TcpStream::connect(listener.local_addr().unwrap());
        let (ours, accepted) = tokio::join!(connect, listener.accept());
        (SendStream::new(ours.unwrap()), accepted.unwrap().0)
    }

    /// Bytes `range` of a stream that repeats 0..251: every offset is checkable.
    fn pattern(range: std::ops::Range<usize>) -> Vec<u8> {
        range.map(|i| (i % 251) as u8).collect()
    }

    /// Everything the peer receives until our side closes.
    async fn read_all(peer: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        got
    }

    async fn write_gathered(stream: &mut SendStream, slices: &[&[u8]]) -> usize {
        let bufs: Vec<IoSlice<'_>> = slices.iter().map(|s| IoSlice::new(s)).collect();
        std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_write_vectored(cx, &bufs))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn small_gathered_writes_arrive_whole_and_in_order() {
        let (mut ours, mut peer) = pair().await;
        let written = write_gathered(
            &mut ours,
            &[b"HTTP/1.1 200 OK\r\n\r\n", b"", b"hello", b"!"],
        )
        .await;
        assert_eq!(written, 25);
        let mut got = vec![0; 25];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\nhello!");
        assert_eq!(write_gathered(&mut ours, &[b"", b""]).await, 0);
    }

    #[tokio::test]
    async fn large_gathered_writes_keep_every_byte() {
        let (mut ours, mut peer) = pair().await;
        let head = b"head:".to_vec();
        let body = pattern(0..3 * FLATTEN_LIMIT);
        let reader = tokio::spawn(async move { read_all(&mut peer).await });
        let mut sent = 0;
        let whole = [head.as_slice(), body.as_slice()].concat();
        while sent < whole.len() {
            // Resume mid-message, as hyper does after a partial write.
            let (first, rest) = whole[sent..].split_at(head.len().min(whole.len() - sent));
            sent += write_gathered(&mut ours, &[first, rest]).await;
        }
        ours.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), whole);
    }

    #[tokio::test]
    async fn a_stream_dropped_with_deferred_bytes_sends_them_then_closes() {
        let (mut ours, mut peer) = pair().await;
        assert!(
            ours.defer,
            "current-thread runtime: small writes are deferred"
        );
        ours.write_all(b"last words").await.unwrap();
        assert!(!ours.shared.lock().pending.is_empty(), "not sent yet");
        drop(ours);
        assert_eq!(read_all(&mut peer).await, b"last words");
    }

    #[tokio::test]
    async fn shutdown_sends_deferred_bytes_before_the_fin() {
        let (mut ours, mut peer) = pair().await;
        ours.write_all(b"head").await.unwrap();
        ours.write_all(b" and tail").await.unwrap();
        ours.shutdown().await.unwrap();
        assert_eq!(read_all(&mut peer).await, b"head and tail");
    }

    /// Small writes past what the socket holds while the peer is not reading: the flusher
    /// hands the stream to a task that waits for room, the writer waits past `DEFER_LIMIT`,
    /// and every byte arrives in order once the peer reads.
    #[tokio::test]
    async fn small_writes_to_a_full_socket_arrive_in_order() {
        let (mut ours, mut peer) = pair().await;
        let total = 8_000_000;
        let writer = tokio::spawn(async move {
            let mut written = 0usize;
            while written < total {
                let piece = pattern(written..written + 1000);
                ours.write_all(&piece).await.unwrap();
                written += piece.len();
            }
            ours.shutdown().await.unwrap();
        });
        // Let the socket buffers fill before reading anything.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let mut got = Vec::with_capacity(total);
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            peer.read_to_end(&mut got),
        )
        .await
        .expect("all bytes arrive")
        .unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), total);
        assert!(got == pattern(0..total));
    }

    #[tokio::test]
    async fn a_failed_deferred_send_fails_the_next_write() {
        let (mut ours, peer) = pair().await;
        // Closing with unread data makes the peer answer further sends with a reset.
        socket2::SockRef::from(&peer)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(peer);
        let mut failed = None;
        for _ in 0..200 {
            if let Err(error) = ours.write_all(b"into the void").await {
                failed = Some(error);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(failed.is_some(), "a reset peer fails a write soon");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_multi_thread_scheduler_sends_at_once() {
        let (mut ours, mut peer) = pair().await;
        assert!(!ours.defer);
        ours.write_all(b"now").await.unwrap();
        let mut got = [0u8; 3];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"now");
    }

    /// The writer stops with bytes still deferred and the socket full (an answer written,
    /// the next request awaited): they must still go out once the peer reads.
    #[tokio::test]
    async fn deferred_bytes_left_behind_a_full_socket_go_out_without_another_write() {
        let (mut ours, mut peer) = pair().await;
        socket2::SockRef::from(&ours.shared.stream)
            .set_send_buffer_size(4096)
            .unwrap();
        socket2::SockRef::from(&peer)
            .set_recv_buffer_size(4096)
            .unwrap();
        // Tiny windows and Nagle would stall each segment for a delayed ACK.
        ours.shared.stream.set_nodelay(true).unwrap();
        peer.set_nodelay(true).unwrap();
        let total = 100_000;
        let (done, wrote_all) = tokio::sync::oneshot::channel();
        let writer = tokio::spawn(async move {
            for start in (0..total).step_by(1000) {
                let piece = pattern(start..start + 1000);
                ours.write_all(&piece).await.unwrap();
            }
            let _ = done.send(());
            // Stays open and writes nothing more, as a connection awaiting its next request.
            std::future::pending::<()>().await;
            drop(ours);
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut got = vec![0u8; total];
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            peer.read_exact(&mut got),
        )
        .await
        .expect("every deferred byte arrives")
        .unwrap();
        wrote_all.await.unwrap();
        assert!(got == pattern(0..total));
        writer.abort();
    }
}
