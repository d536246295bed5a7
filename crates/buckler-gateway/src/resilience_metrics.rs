//! The resilience metrics of `/metrics`: breaker states, health-check results, retries.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

use buckler_policy::BreakerState;

use crate::metrics::label;
use crate::names;
use crate::table::RuntimeTable;

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
