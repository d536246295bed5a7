use std::task::{Context, Poll};

/// A function to help "yield" a future, such that it is re-scheduled immediately.
///
/// Useful for spin counts, so a future doesn't hog too much time.
pub(crate) fn yield_now(cx: &mut Context<'_>) -> Poll<std::convert::Infallible> {
    cx.waker().wake_by_ref();
    Poll::Pending
}

// Buckler patch: `now_or_never` (and its no-op waker) went with tokio's mpsc in
// `client::dispatch`, whose queue has a `try_recv` of its own.
