//! A TCP stream whose small gathered writes go out as one `send(2)`.
//!
//! hyper hands a message to its socket as slices — the head, then the body's chunks — and
//! writes them with `writev(2)` when the stream supports vectored writes, as Tokio's does.
//! On Linux `writev` goes through the VFS layer (file position lock, iovec import, the
//! generic write path) before it reaches TCP; `send` goes to the socket directly. For the
//! small messages a gateway mostly carries, copying the slices into one buffer and sending
//! that is cheaper than the gathered write (`benches/README.md`); large writes stay gathered,
//! so streamed bodies are not copied.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Gathered writes up to this many bytes are copied and sent whole.
const FLATTEN_LIMIT: usize = 4096;

thread_local! {
    /// Where a gathered write is copied; one per thread, reused (never above `FLATTEN_LIMIT`).
    static FLAT: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(FLATTEN_LIMIT));
}

/// A [`TcpStream`] that writes small vectored writes with a single `send`.
#[derive(Debug)]
pub struct SendStream(TcpStream);

impl SendStream {
    pub fn new(stream: TcpStream) -> Self {
        SendStream(stream)
    }
}

impl AsyncRead for SendStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut nonempty = bufs.iter().filter(|buf| !buf.is_empty());
        let (Some(first), second) = (nonempty.next(), nonempty.next()) else {
            return Poll::Ready(Ok(0));
        };
        let Some(second) = second else {
            return Pin::new(&mut self.0).poll_write(cx, first);
        };
        let total: usize = bufs.iter().map(|buf| buf.len()).sum();
        if total > FLATTEN_LIMIT {
            return Pin::new(&mut self.0).poll_write_vectored(cx, bufs);
        }
        FLAT.with_borrow_mut(|flat| {
            flat.clear();
            flat.extend_from_slice(first);
            flat.extend_from_slice(second);
            for buf in nonempty {
                flat.extend_from_slice(buf);
            }
            // A partial send reports how far into the slices it got, as `writev` would.
            Pin::new(&mut self.0).poll_write(cx, flat)
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
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
        let body: Vec<u8> = (0..3 * FLATTEN_LIMIT).map(|i| (i % 251) as u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
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
}
