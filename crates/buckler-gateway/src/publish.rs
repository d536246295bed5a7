//! Coalesced publishing: many "publish a table that includes my change" asks share one
//! rebuild, and rebuilds are paced so a stream of changes cannot hog a worker thread.
//!
//! This module knows nothing of the control plane: whoever owns the table implements
//! [`Publish`], and the docs loaders only hold a [`Publisher`] to ask with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// What rebuilds and swaps in the routing table.
pub(crate) trait Publish: Send + Sync + 'static {
    /// Rebuilds the table from the current state and swaps it in.
    fn publish(&self);
}

/// Tickets for coalesced publishes: `requested` counts the asks, `published` is the highest
/// ticket a published table is known to include.
#[derive(Debug)]
pub(crate) struct Publisher {
    requested: AtomicU64,
    published: watch::Sender<u64>,
    wake: Notify,
}

/// Longest pause between two coalesced publishes.
const MAX_PUBLISH_PACE: Duration = Duration::from_millis(250);

impl Publisher {
    pub(crate) fn new() -> Arc<Publisher> {
        Arc::new(Publisher {
            requested: AtomicU64::new(0),
            published: watch::Sender::new(0),
            wake: Notify::new(),
        })
    }

    /// Returns once a table that includes every change made before this call is published.
    /// Asks that arrive together share one rebuild, and rebuilds are paced (see [`serve`]): a
    /// fleet of upstreams whose docs load at once would otherwise rebuild a growing table once
    /// per upstream. Never returns if nothing serves this publisher (see [`serve`]).
    pub(crate) async fn publish_coalesced(&self) {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut published = self.published.subscribe();
        self.wake.notify_one();
        // The sender lives as long as `self`, so this only ends with the ticket published.
        let _ = published.wait_for(|covered| *covered >= ticket).await;
    }
}

/// Serves `publisher`'s asks for `target` until `target` is dropped: one rebuild covers every
/// ask made before it started, and the next starts no sooner than ten times the last one took
/// (at most [`MAX_PUBLISH_PACE`]), so while changes stream in, rebuilding takes at most about a
/// tenth of a thread's time. An ask after a quiet spell is served at once. The rebuild runs on
/// the blocking pool: a table of a thousand upstreams takes milliseconds to build, and the
/// request threads must not wait for it.
pub(crate) async fn serve<P: Publish>(target: Weak<P>, publisher: Arc<Publisher>) {
    let mut earliest_next = tokio::time::Instant::now();
    loop {
        publisher.wake.notified().await;
        tokio::time::sleep_until(earliest_next).await;
        if target.strong_count() == 0 {
            return;
        }
        let started = tokio::time::Instant::now();
        // Read before the rebuild: every ticket up to here was taken after its change was made,
        // so the rebuild sees all of them.
        let covered = publisher.requested.load(Ordering::SeqCst);
        let weak = target.clone();
        let built = tokio::task::spawn_blocking(move || {
            if let Some(target) = weak.upgrade() {
                target.publish();
            }
        })
        .await;
        if built.is_err() {
            tracing::error!("a table rebuild panicked; the previous table stays");
        }
        publisher.published.send_replace(covered);
        earliest_next = started + (started.elapsed() * 10).min(MAX_PUBLISH_PACE);
    }
}
