//! The pick stage: an upstream of the group by weight, skipping those whose circuit breakers
//! are open, that are full (`max-in-flight`) or that fail their health checks, and the
//! admission each attempt reports its outcome to (SPEC §9).

use std::time::{Duration, Instant};

use buckler_policy::{retry_after_secs, Admitted};
use buckler_route::Selection;

use crate::error::GatewayError;
use crate::resilience::CandidateBreakers;
use crate::table::{Candidate, EndpointGroup};

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
