//! Retries (SPEC §9): which failed attempts may be retried, at most `attempts` retries per
//! request, and an Envoy-style budget: retries in flight never exceed `budget-percent` of the
//! domain's requests in flight, but 3 are always allowed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::Method;

/// The largest request body that is buffered for a retry (64 KiB).
pub const MAX_RETRY_BODY_BYTES: u64 = 64 * 1024;

/// Retries the budget always allows in flight, whatever the percentage (Envoy's
/// `min_retry_concurrency`).
pub const MIN_RETRY_CONCURRENCY: u64 = 3;

/// How an attempt failed, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// The connection to the upstream could not be made (refused, unreachable, connect
    /// timeout, TLS handshake failure). The upstream saw nothing.
    Connect,
    /// The connection was reset or closed before any byte of the response arrived.
    ResetBeforeResponse,
    /// Anything else: a timeout after the request was sent, a reset after response bytes, a
    /// 5xx. Not retried (the upstream may have acted on the request).
    Other,
}

/// What the gateway holds of the request body, as far as replaying it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyReplay {
    /// No body (or an empty one).
    Empty,
    /// The whole body is buffered, this many bytes.
    Buffered(u64),
    /// The body streams (or was larger than the buffer): it cannot be sent again.
    Streaming,
}

/// Whether a failed attempt may be retried on another upstream: an idempotent method (GET,
/// HEAD, OPTIONS, PUT, DELETE; never POST or PATCH), a body that is empty or fully buffered
/// within [`MAX_RETRY_BODY_BYTES`], and a failure before the upstream could have answered
/// (connect error, or reset before any response byte).
pub fn is_retryable(method: &Method, body: BodyReplay, failure: AttemptFailure) -> bool {
    let idempotent = matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    );
    let replayable = match body {
        BodyReplay::Empty => true,
        BodyReplay::Buffered(len) => len <= MAX_RETRY_BODY_BYTES,
        BodyReplay::Streaming => false,
    };
    let early = matches!(
        failure,
        AttemptFailure::Connect | AttemptFailure::ResetBeforeResponse
    );
    idempotent && replayable && early
}

/// Whether a request body of this declared length should be buffered so it can be retried:
/// only for idempotent methods and bodies within [`MAX_RETRY_BODY_BYTES`] (`None`, an unknown
/// length, is not buffered).
pub fn should_buffer_for_retry(method: &Method, content_length: Option<u64>) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    ) && content_length.is_some_and(|len| len <= MAX_RETRY_BODY_BYTES)
}

/// The retry settings and in-flight counts of one domain (`retry: {attempts, budget-percent}`).
///
/// Each request holds a [`RequestInFlight`] while it is under way; each retry holds a
/// [`RetryInFlight`]. Both release their count when dropped, so a cancelled request cannot
/// leak budget. Keep it in an `Arc` that survives table swaps if counts should carry over a
/// reload; a new budget simply starts from zero.
#[derive(Debug)]
pub struct RetryBudget {
    attempts: u32,
    budget_percent: u32,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl RetryBudget {
    /// `attempts`: retries allowed per request (0 = none). `budget_percent`: retries in flight
    /// as a percentage of requests in flight (values over 100 are allowed).
    pub fn new(attempts: u32, budget_percent: u32) -> Self {
        RetryBudget {
            attempts,
            budget_percent,
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// Retries allowed per request.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Requests in flight now.
    pub fn requests_in_flight(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Retries in flight now.
    pub fn retries_in_flight(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The most retries that may be in flight with `requests` requests in flight.
    pub fn retry_limit(&self, requests: u64) -> u64 {
        (requests.saturating_mul(u64::from(self.budget_percent)) / 100).max(MIN_RETRY_CONCURRENCY)
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn start_request(self: &Arc<Self>) -> RequestInFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        RequestInFlight {
            budget: self.clone(),
            retries_done: 0,
        }
    }
}

/// One request in flight; asks for retries with [`try_retry`](Self::try_retry).
#[derive(Debug)]
pub struct RequestInFlight {
    budget: Arc<RetryBudget>,
    retries_done: u32,
}

impl RequestInFlight {
    /// Retries this request has been granted so far.
    pub fn retries_done(&self) -> u32 {
        self.retries_done
    }

    /// Grants one retry when this request has retries left (`attempts`) and the budget has
    /// room. The retry counts as in flight until the returned guard is dropped. `None` means
    /// no retry: answer with the failure (and count a budget refusal when
    /// `retries_done() < attempts`).
    pub fn try_retry(&mut self) -> Option<RetryInFlight> {
        if self.retries_done >= self.budget.attempts {
            return None;
        }
        let limit = self
            .budget
            .retry_limit(self.budget.requests.load(Ordering::Relaxed));
        let granted = self
            .budget
            .retries
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |retries| {
                (retries < limit).then_some(retries + 1)
            })
            .is_ok();
        if !granted {
            return None;
        }
        self.retries_done += 1;
        Some(RetryInFlight {
            budget: self.budget.clone(),
        })
    }
}

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        self.budget.requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One retry in flight; releases its place in the budget when dropped.
#[derive(Debug)]
pub struct RetryInFlight {
    budget: Arc<RetryBudget>,
}

impl Drop for RetryInFlight {
    fn drop(&mut self) {
        self.budget.retries.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idempotent_methods_with_replayable_bodies_and_early_failures_retry() {
        use AttemptFailure::*;
        use BodyReplay::*;
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(is_retryable(&m, Empty, Connect), "{m}");
            assert!(is_retryable(&m, Empty, ResetBeforeResponse), "{m}");
            assert!(!is_retryable(&m, Empty, Other), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT, Method::TRACE] {
            assert!(!is_retryable(&m, Empty, Connect), "{m}");
        }
        let custom = Method::from_bytes(b"PURGE").unwrap();
        assert!(!is_retryable(&custom, Empty, Connect));
        assert!(is_retryable(
            &Method::PUT,
            Buffered(MAX_RETRY_BODY_BYTES),
            Connect
        ));
        assert!(!is_retryable(
            &Method::PUT,
            Buffered(MAX_RETRY_BODY_BYTES + 1),
            Connect
        ));
        assert!(!is_retryable(&Method::PUT, Streaming, Connect));
    }

    #[test]
    fn buffering_is_only_for_small_known_bodies_of_idempotent_methods() {
        assert!(should_buffer_for_retry(&Method::PUT, Some(10)));
        assert!(!should_buffer_for_retry(&Method::PUT, None));
        assert!(!should_buffer_for_retry(&Method::PUT, Some(70_000)));
        assert!(!should_buffer_for_retry(&Method::POST, Some(10)));
    }

    #[test]
    fn attempts_bound_retries_per_request() {
        let budget = Arc::new(RetryBudget::new(2, 100));
        let mut req = budget.start_request();
        let a = req.try_retry();
        let b = req.try_retry();
        assert!(a.is_some() && b.is_some());
        assert!(req.try_retry().is_none());
        assert_eq!(req.retries_done(), 2);
        let none = Arc::new(RetryBudget::new(0, 100));
        assert!(none.start_request().try_retry().is_none());
    }

    #[test]
    fn at_least_three_retries_may_be_in_flight() {
        let budget = Arc::new(RetryBudget::new(1, 20));
        let mut reqs: Vec<_> = (0..4).map(|_| budget.start_request()).collect();
        let granted: Vec<_> = reqs.iter_mut().filter_map(|r| r.try_retry()).collect();
        assert_eq!(granted.len(), 3, "20 % of 4 is 0, the floor is 3");
        assert_eq!(budget.retries_in_flight(), 3);
    }

    #[test]
    fn retries_in_flight_stay_within_the_percentage() {
        let budget = Arc::new(RetryBudget::new(1, 20));
        let mut reqs: Vec<_> = (0..100).map(|_| budget.start_request()).collect();
        let granted: Vec<_> = reqs.iter_mut().filter_map(|r| r.try_retry()).collect();
        assert_eq!(granted.len(), 20);
        drop(granted);
        assert_eq!(budget.retries_in_flight(), 0, "guards release on drop");
        // The 20 that retried used their one attempt; 20 of the other 80 get one now.
        let again: Vec<_> = reqs.iter_mut().filter_map(|r| r.try_retry()).collect();
        assert_eq!(again.len(), 20);
        assert!(reqs[..20].iter().all(|r| r.retries_done() == 1));
        drop(again);
        drop(reqs);
        assert_eq!(budget.requests_in_flight(), 0);
    }

    #[test]
    fn the_budget_holds_under_concurrency() {
        let budget = Arc::new(RetryBudget::new(1, 10));
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let requests: Vec<_> = (0..200).map(|_| budget.start_request()).collect();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let budget = budget.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let mut mine: Vec<_> = (0..50).map(|_| budget.start_request()).collect();
                    barrier.wait();
                    let granted: Vec<_> = mine.iter_mut().filter_map(|r| r.try_retry()).collect();
                    // Hold every guard until all threads are done asking.
                    (granted, mine)
                })
            })
            .collect();
        let held: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let total: usize = held.iter().map(|(granted, _)| granted.len()).sum();
        // 400 requests in flight at the barrier: 10 % is exactly 40.
        assert_eq!(total, 40);
        drop(held);
        drop(requests);
        assert_eq!(budget.retries_in_flight(), 0);
        assert_eq!(budget.requests_in_flight(), 0);
    }
}
