//! Notices an HTTP/1.1 request head carrying both `Content-Length` and `Transfer-Encoding`
//! (SPEC §9: 400 and close). hyper accepts such a request: it drops the `Content-Length`,
//! frames the body by its chunks and closes the connection afterwards, so the request the
//! pipeline sees looks like any chunked one. The connection's bytes are watched on their way
//! into hyper instead: a header block holding both fields raises the connection's
//! [`FramingAlarm`], which the listener puts into each request's extensions.
//!
//! The watch is line-based and does not know heads from bodies, so body bytes that look like
//! such a header block raise the alarm too; the check only refuses requests that carry
//! `Transfer-Encoding`, so at worst a later chunked request on that same client's connection
//! is refused. A real head with both fields always raises it before hyper hands the request
//! on (hyper reads the head through this wrapper first).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Raised once a header block with both `Content-Length` and `Transfer-Encoding` went by.
#[derive(Debug, Clone, Default)]
pub struct FramingAlarm(Arc<AtomicBool>);

impl FramingAlarm {
    /// Whether the connection sent such a header block.
    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

const CONTENT_LENGTH: &[u8] = b"content-length:";
const TRANSFER_ENCODING: &[u8] = b"transfer-encoding:";

/// A line-by-line watch over a byte stream: the start of each line, and blank lines (the ends
/// of header blocks).
#[derive(Debug, Default)]
struct Scanner {
    prefix: [u8; TRANSFER_ENCODING.len()],
    len: usize,
    saw_length: bool,
    saw_coding: bool,
}

impl Scanner {
    /// Feeds bytes; true when a block with both fields has been seen.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut alarm = false;
        for &byte in bytes {
            if byte == b'\n' {
                let blank = self.len == 0 || (self.len == 1 && self.prefix[0] == b'\r');
                if blank {
                    self.saw_length = false;
                    self.saw_coding = false;
                }
                self.len = 0;
                continue;
            }
            if self.len < self.prefix.len() {
                self.prefix[self.len] = byte;
                self.len += 1;
                let line = &self.prefix[..self.len];
                if line.eq_ignore_ascii_case(CONTENT_LENGTH) {
                    self.saw_length = true;
                } else if line.eq_ignore_ascii_case(TRANSFER_ENCODING) {
                    self.saw_coding = true;
                }
                alarm |= self.saw_length && self.saw_coding;
            } else {
                // Longer than any prefix watched: not blank, nothing more to learn.
                self.len = self.prefix.len() + 1;
            }
        }
        alarm
    }
}

/// A client connection whose incoming bytes are watched (see the module docs).
pub struct Watched<T> {
    inner: T,
    scanner: Scanner,
    alarm: FramingAlarm,
}

impl<T> Watched<T> {
    /// Wraps a client connection; put the returned alarm into every request's extensions.
    pub fn new(inner: T) -> (Self, FramingAlarm) {
        let alarm = FramingAlarm::default();
        (
            Watched {
                inner,
                scanner: Scanner::default(),
                alarm: alarm.clone(),
            },
            alarm,
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            if this.scanner.feed(&buf.filled()[before..]) {
                this.alarm.0.store(true, Ordering::Release);
            }
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(chunks: &[&[u8]]) -> bool {
        let mut scanner = Scanner::default();
        chunks.iter().any(|chunk| scanner.feed(chunk))
    }

    #[test]
    fn both_fields_in_one_head_raise_it_in_any_order_and_split_anyhow() {
        assert!(alarm(&[
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        ]));
        assert!(alarm(&[
            b"POST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\nhost: x\r\ncontent-length: 4\r\n\r\n"
        ]));
        assert!(alarm(&[
            b"POST / HTTP/1.1\r\nContent-Len",
            b"gth: 4\r\nTransfer-",
            b"Encoding: chunked\r\n\r\n"
        ]));
    }

    #[test]
    fn separate_heads_and_lookalike_names_do_not() {
        assert!(!alarm(&[
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ]));
        assert!(!alarm(&[
            b"POST / HTTP/1.1\r\nX-Content-Length: 4\r\nContent-Transfer-Encoding: chunked\r\n\r\n"
        ]));
    }
}
