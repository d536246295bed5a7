//! One upstream request for concurrent cache misses of one key (SPEC §10 `response-cache`):
//! the first miss becomes the leader and fetches; the others wait for what it brings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

#[derive(Clone)]
enum Flight<V> {
    Pending,
    Done(Option<V>),
}

type Flights<V> = Mutex<HashMap<Box<str>, watch::Receiver<Flight<V>>>>;

/// Coalesces concurrent work per key. `V` is what a leader hands its followers (e.g. the
/// encoded response); it is cloned once per follower, so make it cheap (`Bytes`, an `Arc`).
pub struct Coalescer<V> {
    flights: Arc<Flights<V>>,
}

impl<V> Default for Coalescer<V> {
    fn default() -> Self {
        Coalescer {
            flights: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<V> std::fmt::Debug for Coalescer<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer").finish_non_exhaustive()
    }
}

/// The caller's part in a flight.
pub enum Turn<V> {
    /// Do the work, then [`Leader::finish`]. Dropping the leader without finishing (an error,
    /// a cancelled request) releases the followers with `None`.
    Leader(Leader<V>),
    /// Wait for the leader with [`Follower::wait`].
    Follower(Follower<V>),
}

/// The one caller doing the work for a key.
pub struct Leader<V> {
    key: Box<str>,
    sender: watch::Sender<Flight<V>>,
    flights: Arc<Flights<V>>,
}

/// A caller waiting for a leader.
pub struct Follower<V> {
    receiver: watch::Receiver<Flight<V>>,
}

impl<V: Clone + Send + Sync> Coalescer<V> {
    /// A coalescer with no flights.
    pub fn new() -> Self {
        Self::default()
    }

    /// Joins the flight for `key`, or starts one (then the caller leads).
    pub fn join(&self, key: &str) -> Turn<V> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(receiver) = flights.get(key) {
            return Turn::Follower(Follower {
                receiver: receiver.clone(),
            });
        }
        let (sender, receiver) = watch::channel(Flight::Pending);
        flights.insert(key.into(), receiver);
        Turn::Leader(Leader {
            key: key.into(),
            sender,
            flights: self.flights.clone(),
        })
    }

    /// Flights under way (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.flights.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl<V> Leader<V> {
    /// Ends the flight: followers get `value` (`None`: nothing to share, e.g. the response was
    /// not cacheable; each follower then fetches for itself). Later callers start a new flight.
    pub fn finish(self, value: Option<V>) {
        self.release();
        self.sender.send_replace(Flight::Done(value));
    }

    fn release(&self) {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        // Remove only our own flight (a finished one may already have been replaced).
        if flights
            .get(&*self.key)
            .is_some_and(|r| r.same_channel(&self.sender.subscribe()))
        {
            flights.remove(&*self.key);
        }
    }
}

impl<V> Drop for Leader<V> {
    fn drop(&mut self) {
        if matches!(*self.sender.borrow(), Flight::Pending) {
            self.release();
            self.sender.send_replace(Flight::Done(None));
        }
    }
}

impl<V: Clone> Follower<V> {
    /// Waits until the leader finishes; `None` when it shared nothing or went away. Bound it
    /// with the caller's own timeout.
    pub async fn wait(mut self) -> Option<V> {
        match self
            .receiver
            .wait_for(|flight| matches!(flight, Flight::Done(_)))
            .await
        {
            Ok(flight) => match &*flight {
                Flight::Done(value) => value.clone(),
                Flight::Pending => None,
            },
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_leader_many_followers_share_the_value() {
        let c: Coalescer<u32> = Coalescer::new();
        let Turn::Leader(leader) = c.join("k") else {
            panic!("first caller leads")
        };
        let followers: Vec<_> = (0..10)
            .map(|_| match c.join("k") {
                Turn::Follower(f) => tokio::spawn(f.wait()),
                Turn::Leader(_) => panic!("only one leader"),
            })
            .collect();
        assert!(matches!(c.join("other"), Turn::Leader(_)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        leader.finish(Some(7));
        for f in followers {
            assert_eq!(f.await.unwrap(), Some(7));
        }
        assert_eq!(c.in_flight(), 0);
        assert!(matches!(c.join("k"), Turn::Leader(_)), "a new flight");
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_followers_with_nothing() {
        let c: Coalescer<u32> = Coalescer::new();
        let leader = c.join("k");
        let Turn::Follower(f) = c.join("k") else {
            panic!()
        };
        let waiting = tokio::spawn(f.wait());
        drop(leader);
        assert_eq!(waiting.await.unwrap(), None);
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_follower_joining_after_finish_starts_anew() {
        let c: Coalescer<u32> = Coalescer::new();
        let Turn::Leader(leader) = c.join("k") else {
            panic!()
        };
        let Turn::Follower(early) = c.join("k") else {
            panic!()
        };
        leader.finish(None);
        assert_eq!(early.wait().await, None);
        let Turn::Leader(second) = c.join("k") else {
            panic!()
        };
        second.finish(Some(1));
        assert_eq!(c.in_flight(), 0);
    }
}
