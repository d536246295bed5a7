//! The gateway's own endpoints on the main listener: `/healthcheck` and `/metrics`.

use std::fmt::Write;
use std::sync::Arc;

use buckler_upstream::{full_body, ProxyBody};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde::ser::{Serialize, SerializeMap, Serializer};

use buckler_discovery::SourceStatus;

use crate::control::{Control, SourceView};
use crate::metrics::label;
use crate::names;
use crate::table::{DomainTable, RuntimeTable};
use crate::upstream::UpstreamHandle;

/// `GET /healthcheck`: every domain with its upstreams and its source. `503` until every
/// configured upstream has served once, then `200` for good (a readiness latch, as in Shield);
/// also `503` while a domain's source has never given a list (etcd down at start), naming it
/// in `reason`. A source out of reach after it gave one shows `stale` and stays `200`.
pub fn healthcheck(control: &Control, table: &RuntimeTable) -> Response<ProxyBody> {
    let waiting = control.waiting_reason();
    let ready = waiting.is_none() && control.is_ready();
    let sources = control.sources();
    let body = Healthcheck {
        ready,
        waiting: waiting.as_deref(),
        table,
        sources: &sources,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &body, "application/json")
}

// The healthcheck and the upstream listings are written straight from the table, without
// building a `serde_json::Value` first: load balancers poll `/healthcheck`, and with a
// thousand upstreams the intermediate maps made each answer take ~2 ms of the requests' thread.

struct Healthcheck<'a> {
    ready: bool,
    waiting: Option<&'a str>,
    table: &'a RuntimeTable,
    sources: &'a [SourceView],
}

impl Serialize for Healthcheck<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        let status = match (self.ready, self.waiting) {
            (true, _) => "ready",
            (false, Some(_)) => "waiting",
            (false, None) => "starting",
        };
        map.serialize_entry("status", status)?;
        if let Some(reason) = self.waiting {
            map.serialize_entry("reason", reason)?;
        }
        map.serialize_entry("generation", &self.table.generation)?;
        let domains: Vec<DomainHealth<'_>> = self
            .table
            .domains()
            .iter()
            .map(|d| {
                let source = self
                    .sources
                    .iter()
                    .find(|s| s.domain == d.settings.domain_name);
                DomainHealth(d, source)
            })
            .collect();
        map.serialize_entry("domains", &domains)?;
        map.end()
    }
}

struct DomainHealth<'a>(&'a DomainTable, Option<&'a SourceView>);

impl Serialize for DomainHealth<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let domain = self.0;
        let settings = &domain.settings;
        let mut map = serializer.serialize_map(Some(6))?;
        map.serialize_entry("domain-name", &settings.domain_name)?;
        map.serialize_entry("ready", &domain.upstreams.iter().all(|u| u.has_served()))?;
        map.serialize_entry("endpoints", &domain.routes.len())?;
        map.serialize_entry("upstreams", &UpstreamListing(&domain.upstreams))?;
        // The chain and listeners in force (chain order), as built from the configuration.
        let (middleware, listeners) = domain.middleware.describe();
        map.serialize_entry("middleware", &middleware)?;
        map.serialize_entry("listeners", &listeners)?;
        if let Some(source) = self.1 {
            map.serialize_entry("source", &SourceHealth(source))?;
        }
        map.end()
    }
}

/// `{"description", "status": "waiting"|"live"|"stale", "reason"?, "since"?}`.
struct SourceHealth<'a>(&'a SourceView);

impl Serialize for SourceHealth<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("description", &self.0.description)?;
        let status = self.0.status.borrow().clone();
        match status {
            SourceStatus::Waiting { reason } => {
                map.serialize_entry("status", "waiting")?;
                map.serialize_entry("reason", &reason)?;
            }
            SourceStatus::Live => map.serialize_entry("status", "live")?,
            SourceStatus::Stale { reason, since } => {
                map.serialize_entry("status", "stale")?;
                map.serialize_entry("reason", &reason)?;
                map.serialize_entry("since", &buckler_discovery::format_rfc3339(since))?;
            }
        }
        map.end()
    }
}

/// A domain's upstreams as the healthcheck and the admin API list them.
pub struct UpstreamListing<'a>(pub &'a [Arc<UpstreamHandle>]);

impl Serialize for UpstreamListing<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|u| UpstreamHealth(u)))
    }
}

/// One upstream as the healthcheck and the admin API show it.
struct UpstreamHealth<'a>(&'a UpstreamHandle);

impl Serialize for UpstreamHealth<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let upstream = self.0;
        let docs = upstream.docs();
        let docs_error = upstream.docs_error();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("serviceType", upstream.spec.service_type.as_str())?;
        map.serialize_entry("serviceLocation", upstream.identity())?;
        map.serialize_entry("weight", &upstream.target_weight())?;
        map.serialize_entry("effectiveWeight", &upstream.effective_weight())?;
        map.serialize_entry("state", upstream.state().as_str())?;
        map.serialize_entry("inFlight", &upstream.in_flight())?;
        let now = std::time::Instant::now();
        map.serialize_entry("breaker", upstream.resilience.breaker_state(now).as_str())?;
        map.serialize_entry("healthy", &upstream.resilience.is_healthy(now))?;
        map.serialize_entry("endpoints", &docs.as_ref().map_or(0, |d| d.endpoints.len()))?;
        map.serialize_entry("service", &docs.as_ref().map(|d| d.title.as_str()))?;
        map.serialize_entry("version", &docs.as_ref().map(|d| d.version.as_str()))?;
        if let Some(error) = &docs_error {
            map.serialize_entry("docsError", error)?;
        }
        map.end()
    }
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
    // Every request-serving thread: the answering runtime's workers, times the runtimes (one
    // per worker in the per-worker model, where each has one).
    let workers = tokio::runtime::Handle::current().metrics().num_workers()
        * crate::REQUEST_RUNTIMES.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP {0} Request-serving threads of the runtime.\n# TYPE {0} gauge\n{0} {workers}",
        names::RUNTIME_WORKERS
    );
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
    crate::resilience_metrics::render_metrics(&mut out, table);
    crate::middleware::render_help(&mut out);
    for domain in table.domains() {
        domain.middleware.render_metrics(&mut out);
    }
    let _ = writeln!(
        out,
        "# HELP {} Routing-table generation served.",
        names::TABLE_GENERATION
    );
    let _ = writeln!(out, "# TYPE {} gauge", names::TABLE_GENERATION);
    let _ = writeln!(out, "{} {}", names::TABLE_GENERATION, table.generation);
    if let Some(listeners) = control.listeners() {
        listeners.render_metrics(&mut out);
    }
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

/// A JSON response, shared by the local endpoints and the admin API.
pub(crate) fn json_response(
    status: StatusCode,
    body: &impl Serialize,
    content_type: &'static str,
) -> Response<ProxyBody> {
    let text = serde_json::to_string(body).expect("JSON of in-memory values cannot fail");
    let mut response = Response::new(full_body(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
