//! Graceful shutdown of served connections: tell every open connection to finish its in-flight
//! requests and close, then wait until all have.
//!
//! hyper-util's `GracefulShutdown` does the same, but its watcher polls a `tokio::sync::watch`
//! notification on every poll of the connection, which locks and unlocks a mutex: two atomic
//! round trips per poll, four per proxied request, for a signal that comes once in the
//! process's life. Here a connection registers its task's waker once, and each poll after that
//! reads one flag.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

/// A connection that can be asked to finish what it is doing and close.
pub(crate) trait Finish {
    fn finish(self: Pin<&mut Self>);
}

/// Hands out watched connections and, at shutdown, tells them to finish.
#[derive(Clone, Default)]
pub(crate) struct Shutdown {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    signaled: AtomicBool,
    open: Mutex<Open>,
    /// Notified when the last open connection ends after the signal.
    all_closed: Notify,
}

/// The open connections, each with its task's waker once it has been polled.
#[derive(Default)]
struct Open {
    next_id: u64,
    wakers: HashMap<u64, Option<Waker>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Open> {
        // Only a map of wakers is behind the lock; keep using it after a panic elsewhere.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Shutdown {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Wraps `conn` so that a signal tells it to finish; the returned future ends with it.
    pub(crate) fn watch<C: Future + Finish>(&self, conn: C) -> Watched<C> {
        let mut open = self.shared.lock();
        let id = open.next_id;
        open.next_id += 1;
        open.wakers.insert(id, None);
        Watched {
            conn: Box::pin(conn),
            shared: self.shared.clone(),
            id,
            waker_registered: false,
            finishing: false,
        }
    }

    /// Connections not yet ended.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.shared.lock().wakers.len()
    }

    /// Tells every connection to finish (those watched later finish at their first poll) and
    /// waits until all have ended.
    pub(crate) async fn shutdown(&self) {
        self.shared.signaled.store(true, Ordering::Release);
        let wakers: Vec<Waker> = self
            .shared
            .lock()
            .wakers
            .values()
            .flatten()
            .cloned()
            .collect();
        for waker in wakers {
            waker.wake();
        }
        loop {
            // `notify_one` keeps a permit when nobody waits yet, so an end between this check
            // and the wait below is not missed.
            if self.shared.lock().wakers.is_empty() {
                return;
            }
            self.shared.all_closed.notified().await;
        }
    }
}

/// A connection under watch: polls it, and asks it to finish once shutdown is signaled.
pub(crate) struct Watched<C> {
    /// Boxed: the connection is large, and a watched one is moved into its task.
    conn: Pin<Box<C>>,
    shared: Arc<Shared>,
    id: u64,
    waker_registered: bool,
    finishing: bool,
}

impl<C> Drop for Watched<C> {
    fn drop(&mut self) {
        let mut open = self.shared.lock();
        open.wakers.remove(&self.id);
        if open.wakers.is_empty() && self.shared.signaled.load(Ordering::Acquire) {
            self.shared.all_closed.notify_one();
        }
    }
}

impl<C: Future + Finish> Future for Watched<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = &mut *self;
        if !this.finishing {
            let mut signaled = this.shared.signaled.load(Ordering::Acquire);
            if !signaled && !this.waker_registered {
                // Once: the connection runs in a task of its own, whose waker does not change.
                // Checked again under the lock, which `shutdown` takes after setting the flag,
                // so the signal either finds this waker or is seen here.
                let mut open = this.shared.lock();
                signaled = this.shared.signaled.load(Ordering::Acquire);
                if !signaled {
                    open.wakers.insert(this.id, Some(cx.waker().clone()));
                    this.waker_registered = true;
                }
            }
            if signaled {
                this.finishing = true;
                this.conn.as_mut().finish();
            }
        }
        this.conn.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Pending until told to finish, then ready on its next poll; counts its polls.
    struct Conn {
        finishing: bool,
        polls: Arc<AtomicUsize>,
    }

    impl Future for Conn {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.finishing {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    impl Finish for Conn {
        fn finish(mut self: Pin<&mut Self>) {
            self.finishing = true;
        }
    }

    fn conn() -> (Conn, Arc<AtomicUsize>) {
        let polls = Arc::new(AtomicUsize::new(0));
        let conn = Conn {
            finishing: false,
            polls: polls.clone(),
        };
        (conn, polls)
    }

    #[tokio::test]
    async fn shutdown_wakes_idle_connections_and_waits_for_all_to_end() {
        let shutdown = Shutdown::new();
        let (first, first_polls) = conn();
        let (second, _) = conn();
        let first = tokio::spawn(shutdown.watch(first));
        let second = tokio::spawn(shutdown.watch(second));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(shutdown.open(), 2);
        assert_eq!(
            first_polls.load(Ordering::SeqCst),
            1,
            "idle: polled once, then asleep"
        );

        tokio::time::timeout(Duration::from_secs(5), shutdown.shutdown())
            .await
            .expect("every connection finished");
        assert_eq!(shutdown.open(), 0);
        first.await.expect("ended");
        second.await.expect("ended");
        assert_eq!(
            first_polls.load(Ordering::SeqCst),
            2,
            "woken once by the signal"
        );
    }

    #[tokio::test]
    async fn a_connection_watched_after_the_signal_finishes_at_once() {
        let shutdown = Shutdown::new();
        tokio::time::timeout(Duration::from_secs(5), shutdown.shutdown())
            .await
            .expect("nothing open");
        let (late, polls) = conn();
        tokio::time::timeout(Duration::from_secs(5), shutdown.watch(late))
            .await
            .expect("finished on its first poll");
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        assert_eq!(shutdown.open(), 0);
    }

    #[tokio::test]
    async fn shutdown_waits_for_a_connection_still_finishing() {
        /// Needs a second wake after being told to finish (a request still in flight).
        struct Slow {
            told: bool,
            done: Arc<AtomicBool>,
        }
        impl Future for Slow {
            type Output = ();
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                if self.told && self.done.load(Ordering::SeqCst) {
                    return Poll::Ready(());
                }
                let waker = cx.waker().clone();
                let done = self.done.clone();
                if self.told {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        done.store(true, Ordering::SeqCst);
                        waker.wake();
                    });
                }
                Poll::Pending
            }
        }
        impl Finish for Slow {
            fn finish(mut self: Pin<&mut Self>) {
                self.told = true;
            }
        }
        let shutdown = Shutdown::new();
        let done = Arc::new(AtomicBool::new(false));
        tokio::spawn(shutdown.watch(Slow {
            told: false,
            done: done.clone(),
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
        tokio::time::timeout(Duration::from_secs(5), shutdown.shutdown())
            .await
            .expect("finished");
        assert!(
            done.load(Ordering::SeqCst),
            "returned only after the connection ended"
        );
    }
}
