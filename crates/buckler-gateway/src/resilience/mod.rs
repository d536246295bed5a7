//! Resilience on the request path (SPEC §9): circuit breakers and health-check verdicts in the
//! pick, the retry budget, body timeouts, and the active health-check probes.
//!
//! The state machines are `buckler_policy`'s; this module holds their instances where they
//! survive table swaps (the upstream handle, the control plane's domain state) and applies them.

pub(crate) mod bodies;
pub(crate) mod framing;
pub(crate) mod health;

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use buckler_config::{CircuitBreakerConfig, DomainConfig, RetryConfig};
use buckler_policy::{
    retry_after_secs, Admitted, BreakerConfig, BreakerState, CircuitBreaker, RetryBudget,
    UpstreamBreakers,
};
use buckler_route::Selection;

use crate::error::GatewayError;
use crate::metrics::label;
use crate::names;
use crate::table::{Candidate, EndpointGroup, RuntimeTable};
use crate::upstream::UpstreamHandle;

/// The breaker settings of a domain's `circuit-breaker`.
pub(crate) fn breaker_config(config: &CircuitBreakerConfig) -> BreakerConfig {
    BreakerConfig {
        max_failures: config.max_failures,
        endpoint_max_failures: config.endpoint_max_failures,
        reset_timeout: config.reset_timeout,
        max_in_flight: config.max_in_flight,
    }
}

/// The resilience state of one upstream, kept in its handle so it survives table swaps.
#[derive(Debug)]
pub(crate) struct UpstreamResilience {
    /// Replaced (closed again) only when the domain's breaker settings change.
    breakers: ArcSwap<UpstreamBreakers>,
    /// The active health check's verdict; true when health checks are off.
    probe_healthy: AtomicBool,
    checks_passed: AtomicU64,
    checks_failed: AtomicU64,
}

impl Default for UpstreamResilience {
    fn default() -> Self {
        UpstreamResilience {
            breakers: ArcSwap::from_pointee(UpstreamBreakers::new(
                BreakerConfig::default(),
                Instant::now(),
            )),
            probe_healthy: AtomicBool::new(true),
            checks_passed: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
        }
    }
}

impl UpstreamResilience {
    /// The upstream's breakers now.
    pub(crate) fn breakers(&self) -> Arc<UpstreamBreakers> {
        self.breakers.load_full()
    }

    /// The breakers for `config`: the current ones when their settings match, else new closed
    /// ones (thresholds are part of a breaker's state). Called when a table is built.
    fn breakers_for(&self, config: BreakerConfig) -> Arc<UpstreamBreakers> {
        let current = self.breakers.load_full();
        if current.config() == config {
            return current;
        }
        let fresh = Arc::new(UpstreamBreakers::new(config, Instant::now()));
        self.breakers.store(fresh.clone());
        fresh
    }

    /// Whether the active health check lets the upstream take requests (true when off).
    pub(crate) fn is_probe_healthy(&self) -> bool {
        self.probe_healthy.load(Ordering::Acquire)
    }

    pub(crate) fn set_probe_healthy(&self, healthy: bool) {
        self.probe_healthy.store(healthy, Ordering::Release);
    }

    /// Counts one health-check result.
    pub(crate) fn count_check(&self, passed: bool) {
        let counter = if passed {
            &self.checks_passed
        } else {
            &self.checks_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The upstream breaker's state now.
    pub(crate) fn breaker_state(&self, now: Instant) -> BreakerState {
        self.breakers.load().upstream().state(now)
    }

    /// `healthy` of the admin API: breaker not open, and the health check passing.
    pub(crate) fn is_healthy(&self, now: Instant) -> bool {
        self.breaker_state(now) != BreakerState::Open && self.is_probe_healthy()
    }
}

/// A candidate's breakers: its upstream's and the (upstream, endpoint) one, resolved when the
/// table is built.
#[derive(Debug, Clone)]
pub(crate) struct CandidateBreakers {
    upstream: Arc<UpstreamBreakers>,
    endpoint: Arc<CircuitBreaker>,
}

impl CandidateBreakers {
    /// The breakers of `upstream` for the endpoint `key` (method and canonical template).
    pub(crate) fn resolve(upstream: &UpstreamHandle, config: BreakerConfig, key: &str) -> Self {
        let breakers = upstream.resilience.breakers_for(config);
        let endpoint = breakers.endpoint(key);
        CandidateBreakers {
            upstream: breakers,
            endpoint,
        }
    }
}

/// Why a candidate cannot take a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blocked {
    Open,
    Full,
    Unhealthy,
}

fn in_flight(candidate: &Candidate) -> u64 {
    u64::try_from(candidate.upstream.in_flight()).unwrap_or(0)
}

/// `Ok` when the candidate can be picked now, else why not and how long until it may.
fn availability(candidate: &Candidate, now: Instant) -> Result<(), (Blocked, Duration)> {
    if !candidate.upstream.resilience.is_probe_healthy() {
        return Err((Blocked::Unhealthy, Duration::ZERO));
    }
    let breakers = &candidate.breakers;
    match breakers
        .upstream
        .check(&breakers.endpoint, in_flight(candidate), now)
    {
        Ok(()) => Ok(()),
        Err(buckler_policy::Unavailable::Full) => Err((Blocked::Full, Duration::ZERO)),
        Err(_) => {
            let wait = breakers
                .upstream
                .upstream()
                .until_selectable(now)
                .max(breakers.endpoint.until_selectable(now));
            Err((Blocked::Open, wait))
        }
    }
}

/// One admitted attempt: report its outcome with [`Attempt::record`]. Dropped without a
/// verdict (the request was cancelled), it gives a half-open trial back at once. Borrows the
/// breakers from the group the request holds: no reference count is touched per request.
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    breakers: &'a CandidateBreakers,
    admitted: Option<Admitted>,
    admitted_at: Instant,
}

impl Attempt<'_> {
    /// `Some(true)`: a response that is not a 5xx. `Some(false)`: connect error, reset,
    /// timeout, 5xx. `None`: no verdict (the client's fault).
    /// Returns whether it opened the upstream's breaker, or the endpoint's.
    pub(crate) fn record(mut self, success: Option<bool>) -> (bool, bool) {
        match self.admitted.take() {
            Some(admitted) => {
                // The clock matters only to a failure (when the breaker reopens until).
                let now = match success {
                    Some(false) => Instant::now(),
                    _ => self.admitted_at,
                };
                self.breakers
                    .upstream
                    .record(&self.breakers.endpoint, admitted, success, now)
            }
            None => (false, false),
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some(admitted) = self.admitted.take() {
            self.breakers.upstream.record(
                &self.breakers.endpoint,
                admitted,
                None,
                self.admitted_at,
            );
        }
    }
}

fn admit(candidate: &Candidate, now: Instant) -> Option<Attempt<'_>> {
    if !candidate.upstream.resilience.is_probe_healthy() {
        return None;
    }
    let breakers = &candidate.breakers;
    let admitted = breakers
        .upstream
        .admit(&breakers.endpoint, in_flight(candidate), now)
        .ok()?;
    Some(Attempt {
        breakers,
        admitted: Some(admitted),
        admitted_at: now,
    })
}

/// Picks a candidate by weight among the negotiated ones, minus `tried`, skipping those whose
/// breakers are open, that are full (`max-in-flight`) or that fail their health checks, and
/// admits the request to its breakers.
///
/// When none can take it: for a first pick (`tried` empty) a `503` with `Retry-After` (the
/// seconds until the earliest candidate may take requests again); for a retry, `Ok(None)`.
pub(crate) fn pick<'a>(
    group: &'a EndpointGroup,
    selection: &Selection,
    tried: &[usize],
) -> Result<Option<(usize, Attempt<'a>)>, GatewayError> {
    let now = Instant::now();
    // The common case: nothing tried yet, every candidate negotiable, the weighted pick
    // available. One pick, one admission, no list.
    if tried.is_empty() && matches!(selection, Selection::All) {
        let Some(index) = group.picker.pick() else {
            return Err(GatewayError::NoHealthyUpstream);
        };
        if let Some(attempt) = admit(&group.candidates[index], now) {
            return Ok(Some((index, attempt)));
        }
    }
    let negotiated: Vec<usize> = match selection {
        Selection::All => (0..group.candidates.len()).collect(),
        Selection::Subset(allowed) => allowed.to_vec(),
    };
    let mut waits: Vec<(Blocked, Duration)> = Vec::new();
    let mut allowed: Vec<usize> = Vec::with_capacity(negotiated.len());
    for index in negotiated {
        if tried.contains(&index) {
            continue;
        }
        let Some(candidate) = group.candidates.get(index) else {
            continue;
        };
        match availability(candidate, now) {
            Ok(()) => allowed.push(index),
            Err(blocked) => waits.push(blocked),
        }
    }
    while let Some(index) = group.picker.pick_among(&allowed) {
        if let Some(attempt) = admit(&group.candidates[index], now) {
            return Ok(Some((index, attempt)));
        }
        // Taken in between (the half-open trial, the last in-flight place).
        let position = allowed.iter().position(|i| *i == index);
        if let Some(position) = position {
            allowed.swap_remove(position);
        } else {
            break;
        }
        waits.push((Blocked::Full, Duration::ZERO));
    }
    if !tried.is_empty() {
        return Ok(None);
    }
    if waits.is_empty() {
        return Err(GatewayError::NoHealthyUpstream);
    }
    let reason = if waits.iter().any(|(b, _)| *b == Blocked::Open) {
        "circuit open"
    } else if waits.iter().any(|(b, _)| *b == Blocked::Full) {
        "overloaded"
    } else {
        "failing health checks"
    };
    Err(GatewayError::UpstreamsUnavailable {
        reason,
        retry_after_seconds: retry_after_secs(waits.into_iter().map(|(_, wait)| wait)),
    })
}

/// The retry budget and retry counts of one domain, kept by the control plane so they survive
/// table swaps (a ramp publishes a table per step).
#[derive(Debug)]
pub(crate) struct DomainResilience {
    config: RetryConfig,
    pub(crate) budget: Arc<RetryBudget>,
    retried: AtomicU64,
    budget_exhausted: AtomicU64,
}

impl DomainResilience {
    /// For a domain's settings: `previous` kept when its retry settings are the same, else a
    /// new budget (its counts carried over).
    pub(crate) fn for_settings(
        previous: Option<&Arc<DomainResilience>>,
        settings: &DomainConfig,
    ) -> Arc<DomainResilience> {
        if let Some(previous) = previous {
            if previous.config == settings.retry {
                return previous.clone();
            }
        }
        let carried = |f: fn(&DomainResilience) -> &AtomicU64| {
            previous.map_or(0, |p| f(p).load(Ordering::Relaxed))
        };
        Arc::new(DomainResilience {
            config: settings.retry,
            budget: Arc::new(RetryBudget::new(
                settings.retry.attempts,
                settings.retry.budget_percent,
            )),
            retried: AtomicU64::new(carried(|p| &p.retried)),
            budget_exhausted: AtomicU64::new(carried(|p| &p.budget_exhausted)),
        })
    }

    /// Counts a retry sent (`true`) or refused by the budget (`false`).
    pub(crate) fn count_retry(&self, sent: bool) {
        let counter = if sent {
            &self.retried
        } else {
            &self.budget_exhausted
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes the resilience metrics of every domain (`/metrics`).
pub(crate) fn render_metrics(out: &mut String, table: &RuntimeTable) {
    let now = Instant::now();
    let _ = writeln!(
        out,
        "# HELP {} Circuit breaker of the upstream: 0 closed, 1 open, 2 half-open.",
        names::CIRCUIT_BREAKER_STATE
    );
    let _ = writeln!(out, "# TYPE {} gauge", names::CIRCUIT_BREAKER_STATE);
    for domain in table.domains() {
        let d = label(&domain.settings.domain_name);
        for upstream in &domain.upstreams {
            let breakers = upstream.resilience.breakers();
            let _ = writeln!(
                out,
                "{}{{domain=\"{d}\",upstream=\"{}\"}} {}",
                names::CIRCUIT_BREAKER_STATE,
                label(upstream.identity()),
                breakers.upstream().state(now).as_gauge()
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP {} Endpoint circuit breakers that are not closed: 1 open, 2 half-open.",
        names::ENDPOINT_CIRCUIT_BREAKER_STATE
    );
    let _ = writeln!(
        out,
        "# TYPE {} gauge",
        names::ENDPOINT_CIRCUIT_BREAKER_STATE
    );
    for domain in table.domains() {
        let d = label(&domain.settings.domain_name);
        for upstream in &domain.upstreams {
            for (endpoint, state) in upstream.resilience.breakers().endpoint_states(now) {
                if state != BreakerState::Closed {
                    let _ = writeln!(
                        out,
                        "{}{{domain=\"{d}\",upstream=\"{}\",endpoint=\"{}\"}} {}",
                        names::ENDPOINT_CIRCUIT_BREAKER_STATE,
                        label(upstream.identity()),
                        label(&endpoint),
                        state.as_gauge()
                    );
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP {} Active health checks by result (pass / fail).",
        names::HEALTH_CHECKS_TOTAL
    );
    let _ = writeln!(out, "# TYPE {} counter", names::HEALTH_CHECKS_TOTAL);
    for domain in table.domains() {
        let d = label(&domain.settings.domain_name);
        for upstream in &domain.upstreams {
            let r = &upstream.resilience;
            for (result, counter) in [("pass", &r.checks_passed), ("fail", &r.checks_failed)] {
                let value = counter.load(Ordering::Relaxed);
                if value > 0 {
                    let _ = writeln!(
                        out,
                        "{}{{domain=\"{d}\",upstream=\"{}\",result=\"{result}\"}} {value}",
                        names::HEALTH_CHECKS_TOTAL,
                        label(upstream.identity()),
                    );
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP {} Retries by outcome (sent / budget-exhausted).",
        names::RETRIES_TOTAL
    );
    let _ = writeln!(out, "# TYPE {} counter", names::RETRIES_TOTAL);
    for domain in table.domains() {
        let d = label(&domain.settings.domain_name);
        let r = &domain.resilience;
        for (outcome, counter) in [
            ("sent", &r.retried),
            ("budget-exhausted", &r.budget_exhausted),
        ] {
            let _ = writeln!(
                out,
                "{}{{domain=\"{d}\",outcome=\"{outcome}\"}} {}",
                names::RETRIES_TOTAL,
                counter.load(Ordering::Relaxed)
            );
        }
    }
}
