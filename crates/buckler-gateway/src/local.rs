//! The gateway's own endpoints on the main listener: `/healthcheck` and `/metrics`.

use std::fmt::Write;
use std::sync::Arc;

use buckler_upstream::{full_body, ProxyBody};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde_json::{json, Value};

use crate::control::Control;
use crate::metrics::label;
use crate::names;
use crate::table::{DomainTable, RuntimeTable};
use crate::upstream::UpstreamHandle;

/// `GET /healthcheck`: every domain with its upstreams. `503` until every configured upstream
/// has served once, then `200` for good (a readiness latch, as in Shield).
pub fn healthcheck(control: &Control, table: &RuntimeTable) -> Response<ProxyBody> {
    let ready = control.is_ready();
    let domains: Vec<Value> = table
        .domains()
        .iter()
        .map(|d| domain_health(d.as_ref()))
        .collect();
    let body = json!({
        "status": if ready { "ready" } else { "starting" },
        "generation": table.generation,
        "domains": domains,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &body, "application/json")
}

fn domain_health(domain: &DomainTable) -> Value {
    let upstreams: Vec<Value> = domain.upstreams.iter().map(upstream_health).collect();
    json!({
        "domain-name": domain.settings.domain_name,
        "ready": domain.upstreams.iter().all(|u| u.has_served()),
        "endpoints": domain.routes.len(),
        "upstreams": upstreams,
        "middleware": domain.settings.middleware_chain.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        "listeners": domain.settings.listeners.iter().map(|l| l.id.clone()).collect::<Vec<_>>(),
    })
}

/// One upstream as the healthcheck and the admin API show it.
pub fn upstream_health(upstream: &Arc<UpstreamHandle>) -> Value {
    let docs = upstream.docs();
    let mut value = json!({
        "serviceType": upstream.spec.service_type.as_str(),
        "serviceLocation": upstream.identity(),
        "weight": upstream.target_weight(),
        "effectiveWeight": upstream.effective_weight(),
        "state": upstream.state().as_str(),
        "inFlight": upstream.in_flight(),
        "endpoints": docs.as_ref().map_or(0, |d| d.endpoints.len()),
        "service": docs.as_ref().map(|d| d.title.clone()),
        "version": docs.as_ref().map(|d| d.version.clone()),
    });
    if let Some(error) = upstream.docs_error() {
        value["docsError"] = Value::String(error);
    }
    value
}

/// (name, type, help, value) of a per-upstream sample.
type UpstreamGauge = (
    &'static str,
    &'static str,
    &'static str,
    fn(&UpstreamHandle) -> f64,
);

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
pub fn metrics(control: &Control, table: &RuntimeTable) -> Response<ProxyBody> {
    let mut out = String::new();
    let (reloads_ok, reloads_error) = control.reload_counts();
    let _ = writeln!(
        out,
        "# HELP {} Configuration reloads by result.",
        names::CONFIG_RELOADS_TOTAL
    );
    let _ = writeln!(out, "# TYPE {} counter", names::CONFIG_RELOADS_TOTAL);
    let _ = writeln!(
        out,
        "{}{{result=\"ok\"}} {reloads_ok}",
        names::CONFIG_RELOADS_TOTAL
    );
    let _ = writeln!(
        out,
        "{}{{result=\"error\"}} {reloads_error}",
        names::CONFIG_RELOADS_TOTAL
    );
    let _ = writeln!(
        out,
        "# HELP {} Responses by domain, upstream and status class.",
        names::REQUESTS_TOTAL
    );
    let _ = writeln!(out, "# TYPE {} counter", names::REQUESTS_TOTAL);
    for domain in table.domains() {
        let d = label(&domain.settings.domain_name);
        domain
            .local_stats
            .render_counts(&mut out, &format!("domain=\"{d}\",upstream=\"\""));
        for upstream in &domain.upstreams {
            let labels = format!("domain=\"{d}\",upstream=\"{}\"", label(upstream.identity()));
            upstream.stats.render_counts(&mut out, &labels);
        }
    }
    let _ = writeln!(
        out,
        "# HELP {} Time to the response head.",
        names::REQUEST_DURATION_SECONDS
    );
    let _ = writeln!(out, "# TYPE {} histogram", names::REQUEST_DURATION_SECONDS);
    for domain in table.domains() {
        let d = label(&domain.settings.domain_name);
        domain
            .local_stats
            .render_histogram(&mut out, &format!("domain=\"{d}\",upstream=\"\""));
        for upstream in &domain.upstreams {
            let labels = format!("domain=\"{d}\",upstream=\"{}\"", label(upstream.identity()));
            upstream.stats.render_histogram(&mut out, &labels);
        }
    }
    let gauges: [UpstreamGauge; 5] = [
        (
            names::UPSTREAM_IN_FLIGHT,
            "gauge",
            "Requests in flight to the upstream.",
            |u| u.in_flight() as f64,
        ),
        (
            names::UPSTREAM_EFFECTIVE_WEIGHT,
            "gauge",
            "Weight traffic follows now.",
            |u| u.effective_weight(),
        ),
        (
            names::UPSTREAM_TARGET_WEIGHT,
            "gauge",
            "Configured weight.",
            |u| f64::from(u.target_weight()),
        ),
        (
            names::UPSTREAM_SERVING,
            "gauge",
            "1 when the upstream takes traffic.",
            |u| {
                f64::from(u8::from(
                    u.state() == crate::upstream::UpstreamState::Serving,
                ))
            },
        ),
        (
            names::DOCS_FETCH_FAILURES_TOTAL,
            "counter",
            "Failed document fetches or parses.",
            |u| u.docs_failures() as f64,
        ),
    ];
    for (name, kind, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for domain in table.domains() {
            let d = label(&domain.settings.domain_name);
            for upstream in &domain.upstreams {
                let _ = writeln!(
                    out,
                    "{name}{{domain=\"{d}\",upstream=\"{}\"}} {}",
                    label(upstream.identity()),
                    value(upstream)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP {} Routing-table generation served.",
        names::TABLE_GENERATION
    );
    let _ = writeln!(out, "# TYPE {} gauge", names::TABLE_GENERATION);
    let _ = writeln!(out, "{} {}", names::TABLE_GENERATION, table.generation);
    let mut response = Response::new(full_body(out));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /spec`: the merged OpenAPI 3.0 document of the request's domain.
pub fn spec(domain: &DomainTable, generation: u64) -> Response<ProxyBody> {
    json_response(
        StatusCode::OK,
        &crate::spec::merged_spec(domain, generation),
        "application/json",
    )
}

fn json_response(
    status: StatusCode,
    body: &Value,
    content_type: &'static str,
) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
