//! The one home of metric names and log field names; `docs/metrics.md` documents each.

/// Counter: responses by domain, upstream (`""` for gateway-made ones) and status class.
pub const REQUESTS_TOTAL: &str = "buckler_requests_total";
/// Histogram (seconds): time to the response head, by domain and upstream.
pub const REQUEST_DURATION_SECONDS: &str = "buckler_request_duration_seconds";
/// Gauge: requests in flight to an upstream.
pub const UPSTREAM_IN_FLIGHT: &str = "buckler_upstream_in_flight";
/// Gauge: the weight traffic follows right now.
pub const UPSTREAM_EFFECTIVE_WEIGHT: &str = "buckler_upstream_effective_weight";
/// Gauge: the configured (target) weight.
pub const UPSTREAM_TARGET_WEIGHT: &str = "buckler_upstream_target_weight";
/// Gauge: 1 when the upstream's docs are known and it takes traffic.
pub const UPSTREAM_SERVING: &str = "buckler_upstream_serving";
/// Counter: failed document fetches or parses.
pub const DOCS_FETCH_FAILURES_TOTAL: &str = "buckler_docs_fetch_failures_total";
/// Counter: configuration reloads by result (`ok` / `error`).
pub const CONFIG_RELOADS_TOTAL: &str = "buckler_config_reloads_total";
/// Gauge: routing-table generation currently served.
pub const TABLE_GENERATION: &str = "buckler_table_generation";
/// Gauge: the request-serving threads of the runtime answering (`workers`), as the runtime
/// itself counts them.
pub const RUNTIME_WORKERS: &str = "buckler_runtime_workers";
/// Gauge: `notAfter` of the certificate served, in Unix seconds, by `domain` (`*`: default).
pub const TLS_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS: &str =
    "buckler_tls_certificate_expiry_timestamp_seconds";
/// Gauge: an upstream's circuit breaker (0 closed, 1 open, 2 half-open).
pub const CIRCUIT_BREAKER_STATE: &str = "buckler_circuit_breaker_state";
/// Gauge: an (upstream, endpoint) circuit breaker that is not closed (1 open, 2 half-open).
pub const ENDPOINT_CIRCUIT_BREAKER_STATE: &str = "buckler_endpoint_circuit_breaker_state";
/// Counter: active health checks by result (`pass` / `fail`).
pub const HEALTH_CHECKS_TOTAL: &str = "buckler_health_checks_total";
/// Counter: retries by outcome (`sent` / `budget-exhausted`).
pub const RETRIES_TOTAL: &str = "buckler_retries_total";

/// Log field: the request id.
pub const LOG_REQUEST_ID: &str = "request_id";
/// Counter: middleware decisions by domain, middleware id and outcome (`allowed`, `denied`,
/// `limited`, `bypassed`, `store-error`, `hit`, `miss`, `stale`, `uncacheable`).
pub const MIDDLEWARE_OUTCOMES_TOTAL: &str = "buckler_middleware_outcomes_total";
/// Counter: requests on which a middleware's own work outlasted its `sla`, by domain and id.
pub const MIDDLEWARE_SLA_EXCEEDED_TOTAL: &str = "buckler_middleware_sla_exceeded_total";
/// Counter: rate-limit decisions the store failed to make (the request was allowed).
pub const RATELIMIT_STORE_ERRORS_TOTAL: &str = "buckler_ratelimit_store_errors_total";
/// Counter: access-log lines dropped because the writer fell behind, by domain and listener.
pub const ACCESS_LOG_DROPPED_TOTAL: &str = "buckler_access_log_dropped_total";
