//! Body wrappers for SPEC §9's timeouts: the client's upload (`body-idle-timeout` → 408, a
//! malformed body → 400, and the moment its last byte went out, from which `request-timeout`
//! counts), and the upstream's response body (`body-idle-timeout` → the response is cut).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use buckler_upstream::BoxError;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// How the client's upload failed, when it did: the client's fault, never the upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UploadFault {
    /// The body could not be read: bad chunked framing, or the client went away mid-body.
    Malformed,
    /// No byte arrived for `body-idle-timeout`.
    Stalled,
}

/// The error the wrapped upload yields; the upstream client passes it back as the request
/// body's own error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UploadError {
    #[error("the request body is malformed or incomplete: {0}")]
    Malformed(String),
    #[error("no byte of the request body arrived for {} ms", .0.as_millis())]
    Stalled(Duration),
}

const NO_FAULT: u8 = 0;
const FAULT_MALFORMED: u8 = 1;
const FAULT_STALLED: u8 = 2;

/// What the dispatcher learns from an upload as it goes: when it ended, and how it failed.
#[derive(Debug, Default)]
pub(crate) struct UploadState {
    done: AtomicBool,
    fault: AtomicU8,
    finished: Notify,
}

impl UploadState {
    /// Completes once the body's last byte was handed to the upstream client.
    pub(crate) async fn finished(&self) {
        loop {
            let notified = self.finished.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// The upload's failure, if it failed.
    pub(crate) fn fault(&self) -> Option<UploadFault> {
        match self.fault.load(Ordering::Acquire) {
            FAULT_MALFORMED => Some(UploadFault::Malformed),
            FAULT_STALLED => Some(UploadFault::Stalled),
            _ => None,
        }
    }

    fn finish(&self) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.finished.notify_waiters();
        }
    }

    fn fail(&self, fault: u8) {
        let _ = self
            .fault
            .compare_exchange(NO_FAULT, fault, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Arms an idle timer only when the inner body is not ready, so a body that is read through
/// in one go never touches the timer wheel.
#[derive(Debug)]
struct IdleTimer {
    idle: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    progressed: bool,
}

impl IdleTimer {
    fn new(idle: Duration) -> Self {
        IdleTimer {
            idle,
            sleep: None,
            progressed: true,
        }
    }

    /// Ready when no progress was made for `idle` (call when the inner body is pending).
    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.progressed || self.sleep.is_none() {
            let deadline = Instant::now() + self.idle;
            match &mut self.sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.progressed = false;
        }
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// The client's request body on its way upstream.
pub(crate) struct Upload<B> {
    inner: B,
    timer: IdleTimer,
    state: Arc<UploadState>,
}

impl<B> Upload<B> {
    /// Wraps `inner`; `idle` is the domain's `body-idle-timeout`.
    pub(crate) fn new(inner: B, idle: Duration, state: Arc<UploadState>) -> Self {
        Upload {
            inner,
            timer: IdleTimer::new(idle),
            state,
        }
    }
}

impl<B> Body for Upload<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer.progressed = true;
                if this.inner.is_end_stream() {
                    this.state.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.state.fail(FAULT_MALFORMED);
                Poll::Ready(Some(Err(Box::new(UploadError::Malformed(
                    error.to_string(),
                )))))
            }
            Poll::Ready(None) => {
                this.state.finish();
                Poll::Ready(None)
            }
            Poll::Pending => match this.timer.poll_stalled(cx) {
                Poll::Ready(()) => {
                    this.state.fail(FAULT_STALLED);
                    Poll::Ready(Some(Err(Box::new(UploadError::Stalled(this.timer.idle)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The upstream response body stalled for `body-idle-timeout`: the response is cut (hyper
/// closes an HTTP/1.1 connection and resets an HTTP/2 stream on a body error).
#[derive(Debug, thiserror::Error)]
#[error("the upstream response body stalled for {} ms", .0.as_millis())]
pub(crate) struct ResponseStalled(Duration);

/// An upstream response body that is cut when it stalls.
pub(crate) struct IdleCut<B> {
    inner: B,
    timer: IdleTimer,
}

impl<B> IdleCut<B> {
    pub(crate) fn new(inner: B, idle: Duration) -> Self {
        IdleCut {
            inner,
            timer: IdleTimer::new(idle),
        }
    }
}

impl<B> Body for IdleCut<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer.progressed = true;
                Poll::Ready(frame)
            }
            Poll::Pending => match this.timer.poll_stalled(cx) {
                Poll::Ready(()) => {
                    tracing::warn!(
                        idle_ms = this.timer.idle.as_millis() as u64,
                        "upstream response body stalled: cut"
                    );
                    Poll::Ready(Some(Err(Box::new(ResponseStalled(this.timer.idle)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn stream_body(
        rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
    ) -> impl Body<Data = Bytes, Error = BoxError> + Unpin {
        StreamBody::new(tokio_stream_from(rx))
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
    ) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }

    #[tokio::test]
    async fn a_stalled_upload_fails_as_stalled_and_a_steady_one_finishes() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let state = Arc::new(UploadState::default());
        let mut upload = Upload::new(stream_body(rx), Duration::from_millis(100), state.clone());
        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        assert!(upload.frame().await.unwrap().is_ok());
        let error = upload.frame().await.unwrap().unwrap_err();
        assert!(error.is::<UploadError>(), "{error}");
        assert_eq!(state.fault(), Some(UploadFault::Stalled));

        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let state = Arc::new(UploadState::default());
        let upload = Upload::new(stream_body(rx), Duration::from_millis(300), state.clone());
        let sender = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
                    .await
                    .unwrap();
            }
        });
        let collected = upload.collect().await.expect("a steady upload completes");
        assert_eq!(collected.to_bytes().len(), 5);
        sender.await.unwrap();
        state.finished().await;
        assert_eq!(state.fault(), None);
    }

    #[tokio::test]
    async fn a_stalled_response_body_is_cut() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut body = IdleCut::new(stream_body(rx), Duration::from_millis(100));
        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(error.is::<ResponseStalled>(), "{error}");
        drop(tx);
    }
}
