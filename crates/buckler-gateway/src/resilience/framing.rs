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
//!
//! On the way out, the same wrapper gives the error responses hyper makes itself (a head it
//! cannot parse: obs-fold, NUL, bad names → 400; too large → 431; target too long → 414) the
//! gateway's JSON error body instead of an empty one. Those are recognised by their shape: a
//! 4xx with `connection: close`, `content-length: 0` and no `via` (every response the
//! gateway makes or forwards carries `Via`).
//!
//! The fuzz targets `request_head` and `chunked_body` (fuzz/) compile this file on its own:
//! it needs nothing from the rest of the crate, and should stay so.

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
///
/// `pub(crate)` for the `request_head` fuzz target, which compiles this file on its own.
#[derive(Debug, Default)]
pub(crate) struct Scanner {
    prefix: [u8; TRANSFER_ENCODING.len()],
    len: usize,
    saw_length: bool,
    saw_coding: bool,
}

impl Scanner {
    /// Feeds bytes; true when a block with both fields has been seen.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> bool {
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
    /// A rewritten error response being written: its bytes, how many went out, and the
    /// length of what hyper handed over (reported as written once all of it is out).
    rewrite: Option<(Vec<u8>, usize, usize)>,
}

/// The JSON-bodied replacement of a response hyper made itself, if `head` is one.
pub(crate) fn rewrite_hyper_error(head: &[u8]) -> Option<Vec<u8>> {
    const EMPTY: &[u8] = b"\r\ncontent-length: 0\r\n";
    if head.len() > 512
        || !head.starts_with(b"HTTP/1.1 4")
        || !head.ends_with(b"\r\n\r\n")
        || !contains(head, b"\r\nconnection: close\r\n")
        || !contains(head, EMPTY)
        || contains(&head.to_ascii_lowercase(), b"\r\nvia:")
    {
        return None;
    }
    let status: u16 = std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()?;
    let message = match status {
        431 => "request headers are too large",
        414 => "the request target is too long",
        _ => "malformed request: the request head could not be parsed",
    };
    let body = serde_json::json!({"error": message, "status": status}).to_string();
    let at = head.windows(EMPTY.len()).position(|w| w == EMPTY)?;
    let mut out = Vec::with_capacity(head.len() + body.len() + 64);
    out.extend_from_slice(&head[..at]);
    out.extend_from_slice(
        format!(
            "\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&head[at + EMPTY.len()..]);
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl<T: AsyncWrite + Unpin> Watched<T> {
    /// Writes the pending rewrite; `Ready(Ok(n))` with hyper's length once it is all out.
    fn poll_rewrite(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, original)) = &mut self.rewrite {
            if *written == bytes.len() {
                let original = *original;
                self.rewrite = None;
                return Poll::Ready(Ok(original));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => {
                    self.rewrite = None;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(error)) => {
                    self.rewrite = None;
                    return Poll::Ready(Err(error));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(0))
    }
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
                rewrite: None,
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
        let this = &mut *self;
        if this.rewrite.is_none() {
            if let Some(bytes) = rewrite_hyper_error(buf) {
                this.rewrite = Some((bytes, 0, buf.len()));
            }
        }
        if this.rewrite.is_some() {
            return this.poll_rewrite(cx);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
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
        let this = &mut *self;
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if this.rewrite.is_none() {
            if let (Some(only), None) = (filled.next(), filled.next()) {
                if let Some(bytes) = rewrite_hyper_error(only) {
                    this.rewrite = Some((bytes, 0, only.len()));
                }
            }
        }
        if this.rewrite.is_some() {
            return this.poll_rewrite(cx);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
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
    fn only_hypers_own_empty_errors_are_given_a_json_body() {
        let hyper = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 22:54:08 GMT\r\n\r\n";
        let rewritten = String::from_utf8(rewrite_hyper_error(hyper).unwrap()).unwrap();
        let (head, body) = rewritten.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(head.starts_with("HTTP/1.1 400") && head.contains("connection: close"));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["status"], 400);
        let forwarded = b"HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\nvia: 1.1 buckler\r\n\r\n";
        assert!(rewrite_hyper_error(forwarded).is_none());
        let ok = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(rewrite_hyper_error(ok).is_none());
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
