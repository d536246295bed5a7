//! Counters of each middleware's outcomes (SPEC §8), kept across reloads for an unchanged
//! id and builder, rendered into `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::names;

/// One outcome of one middleware on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `api-key-auth`: an allowed key.
    AuthAllowed,
    /// `api-key-auth`: no key (401) or a wrong one (403).
    AuthDenied,
    /// `rate-limit`: under the limit.
    RateAllowed,
    /// `rate-limit`: over it (429).
    RateLimited,
    /// `rate-limit`: the bypass header skipped the limit.
    RateBypassed,
    /// `rate-limit`: the store failed or was too slow; the request was allowed.
    RateStoreError,
    /// `response-cache`: served fresh from the store.
    CacheHit,
    /// `response-cache`: forwarded (and stored when the response allows).
    CacheMiss,
    /// `response-cache`: a stale entry served.
    CacheStale,
    /// `response-cache`: neither looked up nor stored.
    CacheUncacheable,
}

const OUTCOMES: [(Outcome, &str); 10] = [
    (Outcome::AuthAllowed, "allowed"),
    (Outcome::AuthDenied, "denied"),
    (Outcome::RateAllowed, "allowed"),
    (Outcome::RateLimited, "limited"),
    (Outcome::RateBypassed, "bypassed"),
    (Outcome::RateStoreError, "store-error"),
    (Outcome::CacheHit, "hit"),
    (Outcome::CacheMiss, "miss"),
    (Outcome::CacheStale, "stale"),
    (Outcome::CacheUncacheable, "uncacheable"),
];

/// The counters of one middleware.
#[derive(Debug, Default)]
pub(crate) struct MiddlewareStats {
    outcomes: [AtomicU64; OUTCOMES.len()],
    sla_exceeded: AtomicU64,
    store_errors: AtomicU64,
}

impl MiddlewareStats {
    /// Counts one outcome.
    pub(crate) fn count(&self, outcome: Outcome) {
        let index = OUTCOMES
            .iter()
            .position(|(o, _)| *o == outcome)
            .unwrap_or(0);
        self.outcomes[index].fetch_add(1, Ordering::Relaxed);
        if outcome == Outcome::RateStoreError {
            self.store_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a request on which the middleware's own work outlasted its `sla`.
    pub(crate) fn count_sla_exceeded(&self) {
        self.sla_exceeded.fetch_add(1, Ordering::Relaxed);
    }

    /// The count of one outcome (tests).
    #[cfg(test)]
    pub(crate) fn get(&self, outcome: Outcome) -> u64 {
        let index = OUTCOMES
            .iter()
            .position(|(o, _)| *o == outcome)
            .unwrap_or(0);
        self.outcomes[index].load(Ordering::Relaxed)
    }

    /// Requests on which the `sla` ran out (tests).
    #[cfg(test)]
    pub(crate) fn sla_exceeded(&self) -> u64 {
        self.sla_exceeded.load(Ordering::Relaxed)
    }

    /// Writes this middleware's samples; `domain` and `id` are already escaped.
    pub(crate) fn render(&self, out: &mut String, domain: &str, id: &str) {
        for ((_, name), counter) in OUTCOMES.iter().zip(&self.outcomes) {
            let value = counter.load(Ordering::Relaxed);
            if value > 0 {
                let _ = writeln!(
                    out,
                    "{}{{domain=\"{domain}\",id=\"{id}\",outcome=\"{name}\"}} {value}",
                    names::MIDDLEWARE_OUTCOMES_TOTAL
                );
            }
        }
        let _ = writeln!(
            out,
            "{}{{domain=\"{domain}\",id=\"{id}\"}} {}",
            names::MIDDLEWARE_SLA_EXCEEDED_TOTAL,
            self.sla_exceeded.load(Ordering::Relaxed)
        );
        let errors = self.store_errors.load(Ordering::Relaxed);
        if errors > 0 {
            let _ = writeln!(
                out,
                "{}{{domain=\"{domain}\",id=\"{id}\"}} {errors}",
                names::RATELIMIT_STORE_ERRORS_TOTAL
            );
        }
    }
}

/// The `# HELP` / `# TYPE` lines of the families [`MiddlewareStats::render`] writes.
pub(crate) fn render_help(out: &mut String) {
    for (name, help) in [
        (
            names::MIDDLEWARE_OUTCOMES_TOTAL,
            "Middleware decisions by domain, middleware id and outcome.",
        ),
        (
            names::MIDDLEWARE_SLA_EXCEEDED_TOTAL,
            "Requests on which a middleware's own work outlasted its sla.",
        ),
        (
            names::RATELIMIT_STORE_ERRORS_TOTAL,
            "Rate-limit decisions the store could not make (the request was allowed).",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    }
}
