//! Circuit breakers with Shield's semantics (SPEC §9): consecutive failures open the breaker for
//! `reset-timeout`, then exactly one half-open trial at a time; its success closes the breaker,
//! its failure opens it again.
//!
//! A breaker is one `AtomicU64` (state and deadline packed together) and one `AtomicU32`
//! (consecutive failures), so it can sit in an upstream handle that survives table swaps and be
//! read by every worker without a lock. Time is passed in as [`Instant`]s and kept as
//! milliseconds since the breaker's `epoch`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The breaker settings of a domain (`circuit-breaker` in the config), with Shield's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open an upstream's breaker (`max-failures`, default 50).
    pub max_failures: u32,
    /// Consecutive failures that open an (upstream, endpoint) breaker (`endpoint-max-failures`,
    /// default 25).
    pub endpoint_max_failures: u32,
    /// How long a breaker stays open before it lets one trial through (`reset-timeout`, 10 s).
    pub reset_timeout: Duration,
    /// Requests in flight at which an upstream is skipped like an open one (`max-in-flight`,
    /// default 10,000).
    pub max_in_flight: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            max_failures: 50,
            endpoint_max_failures: 25,
            reset_timeout: Duration::from_secs(10),
            max_in_flight: 10_000,
        }
    }
}

/// A breaker's state, for `/metrics` and `/healthcheck`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Requests flow; failures are being counted.
    Closed,
    /// Requests are refused until the reset timeout has passed.
    Open,
    /// The reset timeout has passed: one trial request may go (or is under way).
    HalfOpen,
}

impl BreakerState {
    /// The name used in metrics labels and JSON: `closed`, `open`, `half-open`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }

    /// A number for a gauge: 0 closed, 1 open, 2 half-open.
    pub const fn as_gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// What [`CircuitBreaker::try_acquire`] granted; hand it back with the request's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// An ordinary request through a closed breaker.
    Normal,
    /// The one half-open trial. Only the trial whose start matches the breaker's decides.
    Trial {
        /// Milliseconds since the breaker's epoch when this trial was admitted.
        started_ms: u64,
    },
}

/// Why a breaker refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Open: the breaker allows a trial after this long.
    Open {
        /// Time until the breaker becomes half-open (zero when it is half-open with a trial
        /// under way: the next chance is when that trial ends).
        retry_after: Duration,
    },
    /// Half-open and its one trial is under way.
    TrialInFlight,
}

// The state word: the top two bits say which state, the low 62 bits carry milliseconds since
// the epoch (the open deadline, or the start of the half-open trial).
const TAG_SHIFT: u32 = 62;
const MS_MASK: u64 = (1 << TAG_SHIFT) - 1;
const TAG_CLOSED: u64 = 0;
const TAG_OPEN: u64 = 1;
const TAG_TRIAL: u64 = 2;
const CLOSED: u64 = 0;

const fn pack(tag: u64, ms: u64) -> u64 {
    (tag << TAG_SHIFT) | (ms & MS_MASK)
}

const fn unpack(word: u64) -> (u64, u64) {
    (word >> TAG_SHIFT, word & MS_MASK)
}

/// One circuit breaker: consecutive failures → open for `reset_timeout` → one half-open trial.
///
/// Every method takes `now`; calls with an earlier `now` than a previous one are treated as
/// happening at the breaker's epoch at the earliest (never a panic). A half-open trial whose
/// outcome is never reported (its request was dropped) is replaced by a new trial once it has
/// been under way for `reset_timeout`, so a lost trial cannot wedge the breaker open.
#[derive(Debug)]
pub struct CircuitBreaker {
    epoch: Instant,
    max_failures: u32,
    reset_timeout_ms: u64,
    failures: AtomicU32,
    state: AtomicU64,
}

impl CircuitBreaker {
    /// A closed breaker. `max_failures` of 0 is taken as 1. `epoch` is any instant not later
    /// than the first `now` this breaker will see (e.g. when the upstream handle was made).
    pub fn new(max_failures: u32, reset_timeout: Duration, epoch: Instant) -> Self {
        CircuitBreaker {
            epoch,
            max_failures: max_failures.max(1),
            reset_timeout_ms: u64::try_from(reset_timeout.as_millis()).unwrap_or(MS_MASK / 2),
            failures: AtomicU32::new(0),
            state: AtomicU64::new(CLOSED),
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(self.epoch).as_millis();
        u64::try_from(ms).unwrap_or(MS_MASK).min(MS_MASK / 2)
    }

    /// The state as metrics show it. An open breaker whose reset timeout has passed reports
    /// `HalfOpen` (the next request will be its trial).
    pub fn state(&self, now: Instant) -> BreakerState {
        let (tag, ms) = unpack(self.state.load(Ordering::Acquire));
        match tag {
            TAG_CLOSED => BreakerState::Closed,
            TAG_OPEN if self.ms(now) >= ms => BreakerState::HalfOpen,
            TAG_OPEN => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// Consecutive failures counted while closed (reset by a success or by opening).
    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether a request could be admitted now, without admitting it: closed, or open past its
    /// deadline, or half-open with a trial that has been lost. Selection uses this to skip the
    /// upstream; [`try_acquire`](Self::try_acquire) is still needed for the pick, because
    /// another request may take the one trial in between.
    pub fn is_selectable(&self, now: Instant) -> bool {
        self.check(now).is_ok()
    }

    /// `Ok(())` when selectable, else why not and for how long (see [`Refusal`]).
    pub fn check(&self, now: Instant) -> Result<(), Refusal> {
        let (tag, ms) = unpack(self.state.load(Ordering::Acquire));
        let now_ms = self.ms(now);
        match tag {
            TAG_CLOSED => Ok(()),
            TAG_OPEN if now_ms >= ms => Ok(()),
            TAG_OPEN => Err(Refusal::Open {
                retry_after: Duration::from_millis(ms - now_ms),
            }),
            _ if now_ms >= ms.saturating_add(self.reset_timeout_ms) => Ok(()),
            _ => Err(Refusal::TrialInFlight),
        }
    }

    /// How long until this breaker would admit a request: zero when it would now, the time
    /// to the open deadline when open, and for a trial under way the time until it would be
    /// taken as lost (an upper bound; the trial usually ends sooner). For `Retry-After`, take
    /// the smallest over the candidates and round up to whole seconds.
    pub fn until_selectable(&self, now: Instant) -> Duration {
        let (tag, ms) = unpack(self.state.load(Ordering::Acquire));
        let now_ms = self.ms(now);
        let ready_ms = match tag {
            TAG_CLOSED => return Duration::ZERO,
            TAG_OPEN => ms,
            _ => ms.saturating_add(self.reset_timeout_ms),
        };
        Duration::from_millis(ready_ms.saturating_sub(now_ms))
    }

    /// Admits a request or refuses it. Closed → `Normal`. Open past its deadline (or a trial
    /// lost for `reset_timeout`) → this request becomes the one `Trial`, and every other
    /// caller is refused until it reports. Exactly one caller wins the trial when several race.
    pub fn try_acquire(&self, now: Instant) -> Result<Admission, Refusal> {
        let now_ms = self.ms(now);
        let mut word = self.state.load(Ordering::Acquire);
        loop {
            let (tag, ms) = unpack(word);
            let trial_due = match tag {
                TAG_CLOSED => return Ok(Admission::Normal),
                TAG_OPEN => now_ms >= ms,
                _ => now_ms >= ms.saturating_add(self.reset_timeout_ms),
            };
            if !trial_due {
                return Err(match tag {
                    TAG_OPEN => Refusal::Open {
                        retry_after: Duration::from_millis(ms - now_ms),
                    },
                    _ => Refusal::TrialInFlight,
                });
            }
            match self.state.compare_exchange_weak(
                word,
                pack(TAG_TRIAL, now_ms),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(Admission::Trial { started_ms: now_ms }),
                Err(actual) => word = actual,
            }
        }
    }

    /// Reports a success (a response that is not a 5xx). A `Normal` success resets the
    /// failure count; the matching `Trial` success closes the breaker. A success of a request
    /// admitted before the breaker opened changes nothing.
    pub fn record_success(&self, admission: Admission) {
        match admission {
            Admission::Normal => {
                // Read before writing: on the common path (no failures) every worker only
                // reads the line, so successes on many cores do not bounce it between them.
                if self.failures.load(Ordering::Relaxed) != 0
                    && self.state.load(Ordering::Acquire) == CLOSED
                {
                    self.failures.store(0, Ordering::Relaxed);
                }
            }
            Admission::Trial { started_ms } => {
                let trial = pack(TAG_TRIAL, started_ms);
                if self
                    .state
                    .compare_exchange(trial, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.failures.store(0, Ordering::Relaxed);
                }
            }
        }
    }

    /// Reports a failure (connect error, reset, timeout or 5xx). Returns `true` when this
    /// failure opened the breaker (for a log line or an event). The `max_failures`-th
    /// consecutive `Normal` failure opens it until `now + reset_timeout`; the matching
    /// `Trial` failure opens it again. Failures of requests admitted before it opened are
    /// ignored (they say nothing new).
    pub fn record_failure(&self, admission: Admission, now: Instant) -> bool {
        let reopen = pack(TAG_OPEN, self.ms(now).saturating_add(self.reset_timeout_ms));
        match admission {
            Admission::Normal => {
                if self.state.load(Ordering::Acquire) != CLOSED {
                    return false;
                }
                let failures = self
                    .failures
                    .fetch_add(1, Ordering::AcqRel)
                    .saturating_add(1);
                if failures < self.max_failures {
                    return false;
                }
                let opened = self
                    .state
                    .compare_exchange(CLOSED, reopen, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
                if opened {
                    self.failures.store(0, Ordering::Relaxed);
                }
                opened
            }
            Admission::Trial { started_ms } => self
                .state
                .compare_exchange(
                    pack(TAG_TRIAL, started_ms),
                    reopen,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok(),
        }
    }

    /// Reports that an admitted request ended with no verdict (cancelled by the client, or a
    /// failure that is not the upstream's, such as a malformed request body). A `Trial` gives
    /// its place back at once, so the next request becomes the trial.
    pub fn record_abandoned(&self, admission: Admission) {
        if let Admission::Trial { started_ms } = admission {
            let _ = self.state.compare_exchange(
                pack(TAG_TRIAL, started_ms),
                pack(TAG_OPEN, 0),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }
}

/// Why an upstream cannot take a request now (see [`UpstreamBreakers::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The upstream's own breaker refused.
    UpstreamOpen(Refusal),
    /// The (upstream, endpoint) breaker refused.
    EndpointOpen(Refusal),
    /// `max-in-flight` requests are under way.
    Full,
}

impl Unavailable {
    /// The time after which this reason may have passed, for `Retry-After`: for an open
    /// breaker the time to its half-open; for a trial under way or a full upstream, zero
    /// (it can change any moment; callers round up to at least one second).
    pub fn retry_after(self) -> Duration {
        match self {
            Unavailable::UpstreamOpen(Refusal::Open { retry_after })
            | Unavailable::EndpointOpen(Refusal::Open { retry_after }) => retry_after,
            _ => Duration::ZERO,
        }
    }
}

/// What [`UpstreamBreakers::admit`] granted for one request: the upstream's and the
/// endpoint's admissions, reported back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// The upstream breaker's admission.
    pub upstream: Admission,
    /// The endpoint breaker's admission.
    pub endpoint: Admission,
}

/// The breakers of one upstream: its own, plus one per endpoint template, created on first
/// use. Lives in the upstream handle, so its state survives table swaps.
///
/// The request path should not look endpoints up by name: the table build calls
/// [`endpoint`](Self::endpoint) once per endpoint template and keeps the `Arc`, and each
/// request then uses [`check`](Self::check) / [`admit`](Self::admit) with it.
#[derive(Debug)]
pub struct UpstreamBreakers {
    config: BreakerConfig,
    epoch: Instant,
    upstream: CircuitBreaker,
    endpoints: RwLock<HashMap<Box<str>, Arc<CircuitBreaker>>>,
}

impl UpstreamBreakers {
    /// Closed breakers for one upstream.
    pub fn new(config: BreakerConfig, epoch: Instant) -> Self {
        UpstreamBreakers {
            config,
            epoch,
            upstream: CircuitBreaker::new(config.max_failures, config.reset_timeout, epoch),
            endpoints: RwLock::new(HashMap::new()),
        }
    }

    /// The settings these breakers were made with. A reload that changes them should make
    /// new breakers (the state starts closed again), since thresholds are part of the state.
    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    /// The upstream's own breaker.
    pub fn upstream(&self) -> &CircuitBreaker {
        &self.upstream
    }

    /// The breaker of one endpoint template, made closed on first use. Call it when the table
    /// is built, not per request.
    pub fn endpoint(&self, template: &str) -> Arc<CircuitBreaker> {
        if let Some(found) = self
            .endpoints
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(template)
        {
            return found.clone();
        }
        let mut map = self
            .endpoints
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(template.into())
            .or_insert_with(|| {
                Arc::new(CircuitBreaker::new(
                    self.config.endpoint_max_failures,
                    self.config.reset_timeout,
                    self.epoch,
                ))
            })
            .clone()
    }

    /// Drops the breakers of templates no longer served (after a docs change), keeping the
    /// others' state.
    pub fn retain_endpoints(&self, mut keep: impl FnMut(&str) -> bool) {
        self.endpoints
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|template, _| keep(template));
    }

    /// Every endpoint breaker with its state now, for `/healthcheck` and `/metrics`
    /// (sorted by template).
    pub fn endpoint_states(&self, now: Instant) -> Vec<(String, BreakerState)> {
        let mut states: Vec<(String, BreakerState)> = self
            .endpoints
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(template, breaker)| (template.to_string(), breaker.state(now)))
            .collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        states
    }

    /// Whether this upstream can take a request for `endpoint` now, given its requests in
    /// flight: the upstream breaker, then the endpoint breaker, then `max-in-flight`.
    /// Admits nothing (see [`admit`](Self::admit)).
    pub fn check(
        &self,
        endpoint: &CircuitBreaker,
        in_flight: u64,
        now: Instant,
    ) -> Result<(), Unavailable> {
        self.upstream
            .check(now)
            .map_err(Unavailable::UpstreamOpen)?;
        endpoint.check(now).map_err(Unavailable::EndpointOpen)?;
        if in_flight >= u64::from(self.config.max_in_flight) {
            return Err(Unavailable::Full);
        }
        Ok(())
    }

    /// Admits a request to this upstream for `endpoint`: both breakers must admit it and the
    /// upstream must be under `max-in-flight` (`in_flight` not counting this request). When
    /// the endpoint breaker refuses after the upstream breaker granted its trial, that trial
    /// is given back, so a refusal leaves no trace.
    pub fn admit(
        &self,
        endpoint: &CircuitBreaker,
        in_flight: u64,
        now: Instant,
    ) -> Result<Admitted, Unavailable> {
        if in_flight >= u64::from(self.config.max_in_flight) {
            return Err(Unavailable::Full);
        }
        let upstream = self
            .upstream
            .try_acquire(now)
            .map_err(Unavailable::UpstreamOpen)?;
        match endpoint.try_acquire(now) {
            Ok(endpoint) => Ok(Admitted { upstream, endpoint }),
            Err(refusal) => {
                self.upstream.record_abandoned(upstream);
                Err(Unavailable::EndpointOpen(refusal))
            }
        }
    }

    /// Reports a request's outcome to both breakers: `Some(true)` success, `Some(false)`
    /// failure (connect error, reset, timeout, 5xx), `None` no verdict (cancelled, or the
    /// client's fault). Returns whether a breaker opened (upstream, endpoint).
    pub fn record(
        &self,
        endpoint: &CircuitBreaker,
        admitted: Admitted,
        success: Option<bool>,
        now: Instant,
    ) -> (bool, bool) {
        match success {
            Some(true) => {
                self.upstream.record_success(admitted.upstream);
                endpoint.record_success(admitted.endpoint);
                (false, false)
            }
            Some(false) => (
                self.upstream.record_failure(admitted.upstream, now),
                endpoint.record_failure(admitted.endpoint, now),
            ),
            None => {
                self.upstream.record_abandoned(admitted.upstream);
                endpoint.record_abandoned(admitted.endpoint);
                (false, false)
            }
        }
    }
}

/// `Retry-After` seconds for a 503 when every candidate is unavailable: the smallest wait,
/// rounded up to whole seconds, at least 1.
pub fn retry_after_secs(waits: impl IntoIterator<Item = Duration>) -> u64 {
    let shortest = waits.into_iter().min().unwrap_or(Duration::ZERO);
    let secs = shortest.as_secs() + u64::from(shortest.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESET: Duration = Duration::from_secs(10);

    fn breaker(max: u32) -> (CircuitBreaker, Instant) {
        let t0 = Instant::now();
        (CircuitBreaker::new(max, RESET, t0), t0)
    }

    fn fail(b: &CircuitBreaker, now: Instant) -> bool {
        let admission = b.try_acquire(now).expect("admitted");
        b.record_failure(admission, now)
    }

    #[test]
    fn stays_closed_below_the_threshold_and_success_resets_the_count() {
        let (b, t0) = breaker(3);
        assert!(!fail(&b, t0));
        assert!(!fail(&b, t0));
        assert_eq!(b.consecutive_failures(), 2);
        let ok = b.try_acquire(t0).unwrap();
        b.record_success(ok);
        assert_eq!(b.consecutive_failures(), 0);
        assert!(!fail(&b, t0));
        assert!(!fail(&b, t0));
        assert_eq!(b.state(t0), BreakerState::Closed);
        assert!(fail(&b, t0), "the third consecutive failure opens it");
        assert_eq!(b.state(t0), BreakerState::Open);
    }

    #[test]
    fn open_refuses_until_the_reset_timeout_with_the_time_left() {
        let (b, t0) = breaker(1);
        assert!(fail(&b, t0));
        let t4 = t0 + Duration::from_secs(4);
        assert!(!b.is_selectable(t4));
        assert_eq!(
            b.try_acquire(t4),
            Err(Refusal::Open {
                retry_after: Duration::from_secs(6)
            })
        );
        assert_eq!(b.until_selectable(t4), Duration::from_secs(6));
        let t10 = t0 + RESET;
        assert!(b.is_selectable(t10));
        assert_eq!(b.state(t10), BreakerState::HalfOpen);
        assert_eq!(b.until_selectable(t10), Duration::ZERO);
    }

    #[test]
    fn half_open_admits_exactly_one_trial_and_its_success_closes() {
        let (b, t0) = breaker(1);
        fail(&b, t0);
        let t10 = t0 + RESET;
        let trial = b.try_acquire(t10).unwrap();
        assert!(matches!(trial, Admission::Trial { .. }));
        assert_eq!(b.try_acquire(t10), Err(Refusal::TrialInFlight));
        assert_eq!(b.state(t10), BreakerState::HalfOpen);
        assert!(!b.is_selectable(t10 + Duration::from_secs(1)));
        b.record_success(trial);
        assert_eq!(b.state(t10), BreakerState::Closed);
        assert_eq!(b.try_acquire(t10), Ok(Admission::Normal));
    }

    #[test]
    fn a_failed_trial_opens_again_for_a_full_reset_timeout() {
        let (b, t0) = breaker(1);
        fail(&b, t0);
        let t12 = t0 + Duration::from_secs(12);
        let trial = b.try_acquire(t12).unwrap();
        assert!(b.record_failure(trial, t12));
        assert_eq!(b.state(t12), BreakerState::Open);
        assert_eq!(b.until_selectable(t12), RESET);
        assert!(!b.is_selectable(t12 + Duration::from_millis(9_999)));
        assert!(b.is_selectable(t12 + RESET));
    }

    #[test]
    fn a_lost_trial_is_replaced_after_the_reset_timeout_and_its_late_verdict_is_ignored() {
        let (b, t0) = breaker(1);
        fail(&b, t0);
        let t10 = t0 + RESET;
        let lost = b.try_acquire(t10).unwrap();
        assert_eq!(b.until_selectable(t10), RESET);
        let t20 = t10 + RESET;
        let second = b.try_acquire(t20).unwrap();
        assert_ne!(lost, second);
        b.record_success(lost);
        assert_eq!(
            b.state(t20),
            BreakerState::HalfOpen,
            "stale verdict ignored"
        );
        b.record_success(second);
        assert_eq!(b.state(t20), BreakerState::Closed);
    }

    #[test]
    fn an_abandoned_trial_lets_the_next_request_be_the_trial() {
        let (b, t0) = breaker(1);
        fail(&b, t0);
        let t10 = t0 + RESET;
        let trial = b.try_acquire(t10).unwrap();
        b.record_abandoned(trial);
        assert!(b.is_selectable(t10));
        assert!(matches!(b.try_acquire(t10), Ok(Admission::Trial { .. })));
    }

    #[test]
    fn outcomes_of_requests_admitted_before_opening_change_nothing() {
        let (b, t0) = breaker(2);
        let early = b.try_acquire(t0).unwrap();
        let late = b.try_acquire(t0).unwrap();
        fail(&b, t0);
        fail(&b, t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        b.record_success(early);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.record_failure(late, t0 + Duration::from_secs(5)));
        assert_eq!(b.until_selectable(t0), RESET, "deadline not pushed back");
    }

    #[test]
    fn a_now_before_the_epoch_does_not_panic() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(1, RESET, t0 + Duration::from_secs(100));
        assert!(fail(&b, t0));
        assert!(!b.is_selectable(t0));
        assert_eq!(b.until_selectable(t0), RESET);
    }

    #[test]
    fn concurrent_callers_win_exactly_one_trial() {
        let (b, t0) = breaker(1);
        fail(&b, t0);
        let t10 = t0 + RESET;
        let b = Arc::new(b);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..1000).filter(|_| b.try_acquire(t10).is_ok()).count())
            })
            .collect();
        let won: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(won, 1);
    }

    #[test]
    fn state_names_for_metrics() {
        assert_eq!(BreakerState::Closed.as_str(), "closed");
        assert_eq!(BreakerState::Open.as_str(), "open");
        assert_eq!(BreakerState::HalfOpen.as_str(), "half-open");
        assert_eq!(BreakerState::HalfOpen.as_gauge(), 2);
    }

    fn config() -> BreakerConfig {
        BreakerConfig {
            max_failures: 4,
            endpoint_max_failures: 2,
            reset_timeout: RESET,
            max_in_flight: 3,
        }
    }

    #[test]
    fn endpoint_breaker_opens_first_and_only_for_that_endpoint() {
        let t0 = Instant::now();
        let up = UpstreamBreakers::new(config(), t0);
        let orders = up.endpoint("/orders/{id}");
        let users = up.endpoint("/users");
        for _ in 0..2 {
            let a = up.admit(&orders, 0, t0).unwrap();
            up.record(&orders, a, Some(false), t0);
        }
        assert!(matches!(
            up.check(&orders, 0, t0),
            Err(Unavailable::EndpointOpen(Refusal::Open { .. }))
        ));
        assert_eq!(up.check(&users, 0, t0), Ok(()));
        assert_eq!(up.upstream().state(t0), BreakerState::Closed);
        assert_eq!(
            up.endpoint_states(t0),
            vec![
                ("/orders/{id}".to_string(), BreakerState::Open),
                ("/users".to_string(), BreakerState::Closed)
            ]
        );
        // The same Arc comes back for the same template.
        assert!(Arc::ptr_eq(&orders, &up.endpoint("/orders/{id}")));
    }

    #[test]
    fn upstream_breaker_counts_failures_across_endpoints() {
        let t0 = Instant::now();
        let up = UpstreamBreakers::new(config(), t0);
        let eps: Vec<_> = (0..4).map(|i| up.endpoint(&format!("/e{i}"))).collect();
        for ep in &eps {
            let a = up.admit(ep, 0, t0).unwrap();
            up.record(ep, a, Some(false), t0);
        }
        assert_eq!(up.upstream().state(t0), BreakerState::Open);
        let err = up.check(&eps[0], 0, t0).unwrap_err();
        assert!(matches!(err, Unavailable::UpstreamOpen(_)));
        assert_eq!(err.retry_after(), RESET);
    }

    #[test]
    fn max_in_flight_skips_the_upstream() {
        let t0 = Instant::now();
        let up = UpstreamBreakers::new(config(), t0);
        let ep = up.endpoint("/x");
        assert_eq!(up.check(&ep, 2, t0), Ok(()));
        assert_eq!(up.check(&ep, 3, t0), Err(Unavailable::Full));
        assert_eq!(up.admit(&ep, 3, t0), Err(Unavailable::Full));
        assert_eq!(Unavailable::Full.retry_after(), Duration::ZERO);
    }

    #[test]
    fn an_endpoint_refusal_gives_back_the_upstream_trial() {
        let t0 = Instant::now();
        let up = UpstreamBreakers::new(
            BreakerConfig {
                max_failures: 1,
                endpoint_max_failures: 1,
                ..config()
            },
            t0,
        );
        let ep = up.endpoint("/x");
        let a = up.admit(&ep, 0, t0).unwrap();
        up.record(&ep, a, Some(false), t0);
        // Both open; at t0+10 s both are due. Take the endpoint trial elsewhere first.
        let t10 = t0 + RESET;
        let taken = ep.try_acquire(t10).unwrap();
        assert!(matches!(
            up.admit(&ep, 0, t10),
            Err(Unavailable::EndpointOpen(Refusal::TrialInFlight))
        ));
        assert!(
            up.upstream().is_selectable(t10),
            "upstream trial given back"
        );
        ep.record_success(taken);
        let a = up.admit(&ep, 0, t10).unwrap();
        assert!(matches!(a.upstream, Admission::Trial { .. }));
        up.record(&ep, a, Some(true), t10);
        assert_eq!(up.upstream().state(t10), BreakerState::Closed);
    }

    #[test]
    fn abandoned_outcome_neither_counts_nor_resets() {
        let t0 = Instant::now();
        let up = UpstreamBreakers::new(config(), t0);
        let ep = up.endpoint("/x");
        let a = up.admit(&ep, 0, t0).unwrap();
        up.record(&ep, a, Some(false), t0);
        let a = up.admit(&ep, 0, t0).unwrap();
        up.record(&ep, a, None, t0);
        assert_eq!(ep.consecutive_failures(), 1);
        assert_eq!(up.upstream().consecutive_failures(), 1);
    }

    #[test]
    fn retain_endpoints_drops_the_others() {
        let t0 = Instant::now();
        let up = UpstreamBreakers::new(config(), t0);
        up.endpoint("/a");
        up.endpoint("/b");
        up.retain_endpoints(|t| t == "/a");
        assert_eq!(up.endpoint_states(t0).len(), 1);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_at_least_one() {
        assert_eq!(retry_after_secs([]), 1);
        assert_eq!(retry_after_secs([Duration::ZERO]), 1);
        assert_eq!(
            retry_after_secs([Duration::from_millis(2_100), Duration::from_secs(7)]),
            3
        );
        assert_eq!(retry_after_secs([Duration::from_secs(4)]), 4);
    }
}
