//! Request deadlines on timers that are kept and reused.
//!
//! `tokio::time::timeout` registers a fresh timer per request and takes it out of the wheel when
//! the request ends: the timer driver's lock twice, a clone of the runtime handle and a wake slot
//! taken — about ten atomic operations, each waiting for the request's earlier writes to leave
//! the store buffer. A registered timer that is reset to a later deadline only moves it (one
//! atomic operation), so the timers of finished requests are kept, per thread, for the next.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// Timers kept per thread: enough for this many requests in flight at once on a thread.
/// Each holds the waker of the last request that used it until reused or due.
const MAX_SPARE: usize = 1024;

thread_local! {
    static SPARE: RefCell<Vec<Pin<Box<Sleep>>>> = const { RefCell::new(Vec::new()) };
}

/// A kept timer's deadline passed before the future it raced finished.
#[derive(Debug)]
pub(crate) struct DeadlinePassed;

/// Runs `future` until `deadline` (`tokio::time::timeout_at`, on a kept timer): its output, or
/// `DeadlinePassed` if the deadline came first.
pub(crate) async fn within<F: Future>(
    deadline: Instant,
    future: F,
) -> Result<F::Output, DeadlinePassed> {
    let mut future = std::pin::pin!(future);
    let mut timer = RequestTimer::until(deadline);
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Ok(output)),
        Poll::Pending => timer.poll_elapsed(cx).map(|()| Err(DeadlinePassed)),
    })
    .await
}

/// A deadline for one request; its timer goes back to the thread's spares when dropped.
struct RequestTimer {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl RequestTimer {
    fn until(deadline: Instant) -> Self {
        let reused = SPARE
            .try_with(|spare| {
                let mut spare = spare.try_borrow_mut().ok()?;
                while let Some(mut sleep) = spare.pop() {
                    // An elapsed timer has left the wheel (its deadline passed, or its runtime
                    // shut down, which fires every timer): a fresh one costs the same.
                    if !sleep.is_elapsed() {
                        sleep.as_mut().reset(deadline);
                        return Some(sleep);
                    }
                }
                None
            })
            .ok()
            .flatten();
        let sleep = reused.unwrap_or_else(|| Box::pin(tokio::time::sleep_until(deadline)));
        RequestTimer { sleep: Some(sleep) }
    }

    /// Ready once the deadline has passed.
    fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Taken only by `drop`.
        let sleep = self.sleep.as_mut().expect("a live timer has its sleep");
        sleep.as_mut().poll(cx)
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        let Some(sleep) = self.sleep.take() else {
            return;
        };
        let _ = SPARE.try_with(move |spare| {
            if let Ok(mut spare) = spare.try_borrow_mut() {
                if spare.len() < MAX_SPARE {
                    spare.push(sleep);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::time::Duration;

    fn spares() -> usize {
        SPARE.with(|spare| spare.borrow().len())
    }

    async fn elapsed(timer: &mut RequestTimer) {
        poll_fn(|cx| timer.poll_elapsed(cx)).await;
    }

    #[tokio::test]
    async fn a_reused_timer_keeps_the_new_deadline_later_or_earlier() {
        let start = Instant::now();
        let mut first = RequestTimer::until(start + Duration::from_millis(20));
        elapsed(&mut first).await;
        assert!(start.elapsed() >= Duration::from_millis(20));
        drop(first);
        // Fired, so it left the wheel: not kept as a spare worth resetting.
        let mut second = RequestTimer::until(Instant::now() + Duration::from_secs(60));
        assert!(poll_fn(|cx| Poll::Ready(second.poll_elapsed(cx).is_pending())).await);
        drop(second);
        assert_eq!(spares(), 1, "a registered timer is kept");

        // Later than the one it carried: the deadline moves.
        let later = Instant::now() + Duration::from_secs(120);
        let mut third = RequestTimer::until(later);
        assert_eq!(spares(), 0, "the spare was taken");
        assert!(poll_fn(|cx| Poll::Ready(third.poll_elapsed(cx).is_pending())).await);
        drop(third);

        // Earlier: it must fire at the new deadline, not the old one.
        let start = Instant::now();
        let mut fourth = RequestTimer::until(start + Duration::from_millis(30));
        assert_eq!(spares(), 0);
        tokio::time::timeout(Duration::from_secs(5), elapsed(&mut fourth))
            .await
            .expect("fired at the earlier deadline");
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[tokio::test]
    async fn within_gives_the_output_or_reports_the_deadline() {
        let soon = Instant::now() + Duration::from_secs(60);
        assert_eq!(within(soon, async { 7 }).await.expect("in time"), 7);
        let start = Instant::now();
        let late = within(
            start + Duration::from_millis(20),
            std::future::pending::<()>(),
        )
        .await;
        assert!(late.is_err(), "the deadline came first");
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(spares(), 1, "the timer goes back to the thread's spares");
    }

    #[test]
    fn a_spare_from_a_runtime_that_shut_down_is_not_reused() {
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        first.block_on(async {
            let mut timer = RequestTimer::until(Instant::now() + Duration::from_secs(60));
            assert!(poll_fn(|cx| Poll::Ready(timer.poll_elapsed(cx).is_pending())).await);
        });
        assert_eq!(spares(), 1);
        drop(first);

        // Polling that spare's timer would panic: its runtime is gone.
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        second.block_on(async {
            let start = Instant::now();
            let mut timer = RequestTimer::until(start + Duration::from_millis(10));
            elapsed(&mut timer).await;
            assert!(start.elapsed() >= Duration::from_millis(10));
        });
    }
}
