//! `max-connections`: a cap on client connections held at once, taken before `accept`, so
//! over it new connections wait in the kernel's accept queue instead of being accepted and
//! closed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The connection cap. A reload may raise it (waiting accept loops go on at once) or lower it
/// (open connections stay; new ones wait until fewer than the new cap are open).
#[derive(Debug)]
pub(crate) struct ConnectionLimit {
    semaphore: Arc<Semaphore>,
    /// The cap in force, changed under this lock so two reloads do not interleave.
    limit: Mutex<u32>,
    /// Permits still to be taken out of circulation after the cap was lowered while they were
    /// held: each returning permit pays one instead of going back.
    debt: AtomicU32,
}

/// One connection's place under the cap; dropping it lets the next connection in.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    permit: Option<OwnedSemaphorePermit>,
    limit: Arc<ConnectionLimit>,
}

impl ConnectionLimit {
    /// A cap of `limit` connections (at least 1).
    pub(crate) fn new(limit: u32) -> ConnectionLimit {
        let limit = limit.max(1);
        ConnectionLimit {
            semaphore: Arc::new(Semaphore::new(limit as usize)),
            limit: Mutex::new(limit),
            debt: AtomicU32::new(0),
        }
    }

    /// Waits for a place under the cap.
    pub(crate) async fn acquire(self: &Arc<Self>) -> ConnectionPermit {
        // The semaphore is never closed, so this does not fail; if it ever did, waiting
        // forever keeps the cap rather than breaking it.
        let permit = match self.semaphore.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => std::future::pending().await,
        };
        ConnectionPermit {
            permit: Some(permit),
            limit: self.clone(),
        }
    }

    /// Connections that may still open before the cap is reached.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Changes the cap (at least 1).
    pub(crate) fn set_limit(&self, new: u32) {
        let new = new.max(1);
        let mut current = self.limit.lock().unwrap_or_else(|p| p.into_inner());
        if new > *current {
            let mut raise = new - *current;
            // Cancel debt first: those permits are still out and will now come back.
            let _ = self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |debt| {
                    let paid = debt.min(raise);
                    Some(debt - paid)
                })
                .map(|debt| raise -= debt.min(raise));
            self.semaphore.add_permits(raise as usize);
        } else if new < *current {
            let lower = (*current - new) as usize;
            let forgotten = self.semaphore.forget_permits(lower);
            self.debt
                .fetch_add((lower - forgotten) as u32, Ordering::AcqRel);
        }
        *current = new;
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let paid = self
            .limit
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |debt| {
                debt.checked_sub(1)
            })
            .is_ok();
        if paid {
            permit.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lowering_the_cap_takes_effect_as_connections_close_and_raising_it_at_once() {
        let limit = Arc::new(ConnectionLimit::new(3));
        let a = limit.acquire().await;
        let b = limit.acquire().await;
        let c = limit.acquire().await;
        assert_eq!(limit.available(), 0);

        limit.set_limit(1);
        drop(a);
        drop(b);
        assert_eq!(limit.available(), 0, "two returned permits paid the debt");
        drop(c);
        assert_eq!(limit.available(), 1);

        let d = limit.acquire().await;
        limit.set_limit(2);
        assert_eq!(limit.available(), 1);
        limit.set_limit(4);
        assert_eq!(limit.available(), 3);
        drop(d);
        assert_eq!(limit.available(), 4);
    }

    #[tokio::test]
    async fn raising_the_cap_cancels_debt_before_adding_places() {
        let limit = Arc::new(ConnectionLimit::new(2));
        let a = limit.acquire().await;
        let b = limit.acquire().await;
        limit.set_limit(1); // one permit owed
        limit.set_limit(3); // the debt cancelled, one new place
        assert_eq!(limit.available(), 1);
        drop(a);
        drop(b);
        assert_eq!(limit.available(), 3);
    }
}
