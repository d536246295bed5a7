//! The validated configuration: what the rest of Buckler reads.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A whole configuration file. Every key of SPEC §2 has a typed field here, with SPEC's
/// default when absent; which of them the gateway acts on is [`crate::support`]'s table.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from (reloads re-read it).
    pub file: PathBuf,
    /// Plain listeners (HTTP/1.1 and h2c); empty when `listen: []` (TLS or admin only).
    pub listen: Vec<SocketAddr>,
    pub tls: Option<TlsConfig>,
    pub admin: Option<AdminConfig>,
    /// Request-serving threads (`workers`, default `"auto"`).
    pub workers: Workers,
    /// Client connections held at once (`max-connections`, default 100000).
    pub max_connections: u32,
    /// A request head (and a connection's first bytes) must arrive within this (default 10 s).
    pub client_header_timeout: Duration,
    /// An idle keep-alive connection is closed after this (default 60 s).
    pub client_idle_timeout: Duration,
    /// HTTP/2 streams per connection (default 100).
    pub http2_max_concurrent_streams: u32,
    pub shutdown_grace: Duration,
    pub trust_proxies: usize,
    pub trust_x_forwarded_proto: bool,
    /// Largest request body accepted, in bytes.
    pub max_request_body: u64,
    pub paths: Paths,
    pub lambda: LambdaDefaults,
    /// Caps on upstream documents (`docs-limits`).
    pub docs_limits: DocsLimits,
    pub domains: Vec<DomainConfig>,
    /// Problems that do not fail the file, each `FILE:LINE:COL: key: message` when displayed
    /// (`buckler check` prints them on stderr; `run` and reloads should log them).
    pub warnings: Vec<crate::ConfigError>,
}

/// `workers`: a thread count, or one per CPU this process may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Workers {
    #[default]
    Auto,
    /// At least 1.
    Count(u32),
}

/// The main TLS listeners (`tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Required with `tls`; a string or a non-empty list in the file.
    pub listen: Vec<SocketAddr>,
    /// The default certificate chain (PEM), resolved against the config file's directory.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Lowest protocol version offered (default 1.2).
    pub min_version: TlsVersion,
}

/// `tls.min-version`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    #[default]
    V1_2,
    V1_3,
}

/// A domain's own certificate (`domains[].tls`), served when SNI names the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token: Option<Secret>,
}

/// A secret given literally or as `env:NAME`. Debug output never shows a literal.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Literal(String),
    Env(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Literal(_) => f.write_str("Secret::Literal(<redacted>)"),
            Secret::Env(name) => write!(f, "Secret::Env({name:?})"),
        }
    }
}

/// Caps on one upstream document (`docs-limits`): generous by default, so that the largest
/// published descriptions (Microsoft Graph beta: 47 MB) load; a document over a cap is refused
/// with an error naming it, and only that upstream is affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocsLimits {
    pub max_bytes: u64,
    pub max_paths: u64,
    pub max_operations: u64,
}

impl Default for DocsLimits {
    fn default() -> Self {
        DocsLimits {
            max_bytes: 64 << 20,
            max_paths: 50_000,
            max_operations: 200_000,
        }
    }
}

/// Local endpoint paths, and where docs are fetched from upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub healthcheck: String,
    pub metrics: String,
    pub spec: String,
    pub swagger1: String,
    pub swagger2: String,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            healthcheck: "/healthcheck".to_owned(),
            metrics: "/metrics".to_owned(),
            spec: "/spec".to_owned(),
            swagger1: "/api-docs".to_owned(),
            swagger2: "/spec".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LambdaDefaults {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DomainConfig {
    /// Lower-cased; `*` is the catch-all.
    pub domain_name: String,
    /// The certificate served when SNI names this domain; `None`: the default one.
    pub tls: Option<DomainTls>,
    pub upstream_weighting: UpstreamWeighting,
    pub drain_timeout: Duration,
    /// TCP + TLS connect to an upstream (default 2 s).
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Longest silence inside a request or response body (default 30 s).
    pub body_idle_timeout: Duration,
    pub docs_refresh: Duration,
    /// Lower-case, without the leading dot; `""` strips a bare trailing dot.
    pub ignore_extensions: Vec<String>,
    /// PEM bundle trusted for https upstreams besides the system store (resolved path).
    pub upstream_ca: Option<PathBuf>,
    pub upstream_protocol: UpstreamProtocol,
    pub circuit_breaker: CircuitBreakerConfig,
    /// `None` (the default): no active health checks.
    pub health_check: Option<HealthCheckConfig>,
    pub retry: RetryConfig,
    pub upstream_watcher: UpstreamWatcher,
    pub middleware_chain: Vec<MiddlewareSpec>,
    pub listeners: Vec<ListenerSpec>,
    pub log: LogConfig,
    pub kvstores: BTreeMap<String, KvStoreSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpstreamWeighting {
    pub step_count: u32,
    pub step_duration: Duration,
    /// The ramp guard (SPEC §14); `None`: no guard.
    pub guard: Option<RampGuard>,
}

/// `upstream-weighting.guard`: when a ramp's gaining upstreams do worse than the baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RampGuard {
    /// Error-rate excess over the baseline that acts (default 0.02), 0 to 1.
    pub max_error_rate_increase: f64,
    /// p99 ratio over the baseline that acts (default 2.0), at least 1.
    pub max_p99_ratio: f64,
    /// A p99 below this never acts (default 10 ms).
    pub p99_floor: Duration,
    /// Requests each side needs before the guard judges (default 200).
    pub min_requests: u64,
    pub action: GuardAction,
}

impl Default for RampGuard {
    fn default() -> Self {
        RampGuard {
            max_error_rate_increase: 0.02,
            max_p99_ratio: 2.0,
            p99_floor: Duration::from_millis(10),
            min_requests: 200,
            action: GuardAction::Rollback,
        }
    }
}

/// What the ramp guard does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GuardAction {
    /// Freeze every effective weight of the domain.
    Pause,
    /// Move back to the weights from before the ramp, at once.
    #[default]
    Rollback,
}

/// `upstream-protocol`: how `http` / `https` upstream locations are spoken to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// https: h2 or HTTP/1.1 by ALPN; http: HTTP/1.1.
    #[default]
    Auto,
    Http1,
    /// HTTP/2 with prior knowledge over plain TCP.
    H2c,
}

/// `circuit-breaker` (SPEC §9); present with these defaults when the key is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures of an upstream that open its breaker (default 50).
    pub max_failures: u32,
    /// Consecutive failures of an (upstream, endpoint) that open that breaker (default 25).
    pub endpoint_max_failures: u32,
    /// How long a breaker stays open before one trial request (default 10 s).
    pub reset_timeout: Duration,
    /// In-flight requests at which an upstream is skipped like an open one (default 10000).
    pub max_in_flight: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            max_failures: 50,
            endpoint_max_failures: 25,
            reset_timeout: Duration::from_secs(10),
            max_in_flight: 10_000,
        }
    }
}

/// `health-check` (SPEC §9): active probes of HTTP upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// Required; starts with `/`.
    pub path: String,
    /// Default 5 s.
    pub interval: Duration,
    /// Default 1 s.
    pub timeout: Duration,
    /// Failed checks in a row that take an upstream out (default 3).
    pub unhealthy_threshold: u32,
    /// Passed checks in a row that bring it back (default 2).
    pub healthy_threshold: u32,
}

/// `retry` (SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Retries per request, 0 = none (default 1).
    pub attempts: u32,
    /// Retries in flight as a percentage of the domain's requests in flight (default 20).
    pub budget_percent: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: 1,
            budget_percent: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamWatcher {
    Static { upstreams: Vec<UpstreamSpec> },
    File { path: PathBuf },
    Etcd { endpoints: Vec<String>, key: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiddlewareSpec {
    /// Lower-cased.
    pub id: String,
    pub builder: MiddlewareBuilder,
    pub sla: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MiddlewareBuilder {
    ApiKeyAuth {
        /// Lower-cased (default `x-api-key`).
        header_name: String,
        allowed: Vec<AllowedKey>,
        /// Default true; `sha256:` entries always compare exactly.
        case_sensitive: bool,
        /// Remove the key header before forwarding (default false).
        strip_header: bool,
    },
    RateLimit {
        calls_per: u64,
        per_seconds: u64,
        /// Lower-cased header name; `None`: no bypass.
        bypass_header: Option<String>,
        /// Values of `bypass_header` that bypass; `None` (absent): any value does.
        bypass_values: Option<Vec<String>>,
        kvstore: Option<String>,
    },
    ResponseCache {
        kvstore: Option<String>,
        /// Largest response body stored (default 1 MiB).
        max_object_bytes: u64,
    },
}

/// One `api-key-auth` `allowed` entry. Debug output never shows a literal key.
#[derive(Clone, PartialEq, Eq)]
pub enum AllowedKey {
    Literal(String),
    /// `env:NAME`: the key is the variable's value when the table is built.
    Env(String),
    /// `sha256:HEX`: the SHA-256 digest of the key (64 hex digits, either case).
    Sha256([u8; 32]),
}

impl fmt::Debug for AllowedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowedKey::Literal(_) => f.write_str("AllowedKey::Literal(<redacted>)"),
            AllowedKey::Env(name) => write!(f, "AllowedKey::Env({name:?})"),
            AllowedKey::Sha256(_) => f.write_str("AllowedKey::Sha256(..)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub id: String,
    pub builder: ListenerBuilder,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerBuilder {
    /// One JSON line per request to stdout (`None`) or a file.
    AccessLog { path: Option<PathBuf> },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogConfig {
    pub request_headers: Vec<String>,
    pub response_headers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvStoreSpec {
    /// Bounded, least recently used entries evicted first (`max-bytes`, default 64 MiB).
    Memory { max_bytes: u64 },
    /// `redis://` or `rediss://` (TLS).
    Redis { url: String },
}

/// One Upstream Service Object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    pub service_type: ServiceType,
    pub location: ServiceLocation,
    pub weight: u32,
}

impl UpstreamSpec {
    /// The normalised location: the upstream's identity.
    pub fn identity(&self) -> &str {
        match &self.location {
            ServiceLocation::Http(http) => &http.normalized,
            ServiceLocation::Lambda(lambda) => &lambda.identity,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceType {
    Swagger1,
    Swagger2,
    Lambda,
    Openapi3,
}

impl ServiceType {
    pub const NAMES: [&'static str; 4] = ["swagger1", "swagger2", "lambda", "openapi3"];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::Swagger1 => "swagger1",
            ServiceType::Swagger2 => "swagger2",
            ServiceType::Lambda => "lambda",
            ServiceType::Openapi3 => "openapi3",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "swagger1" => Some(ServiceType::Swagger1),
            "swagger2" => Some(ServiceType::Swagger2),
            "lambda" => Some(ServiceType::Lambda),
            "openapi3" => Some(ServiceType::Openapi3),
            _ => None,
        }
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceLocation {
    Http(HttpLocation),
    Lambda(LambdaLocation),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLocation {
    pub scheme: Scheme,
    /// Lower-case; IPv6 literals keep their brackets.
    pub host: String,
    pub port: Option<u16>,
    /// `scheme://host[:port]`, lower-cased: the identity.
    pub normalized: String,
}

impl HttpLocation {
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(match self.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaLocation {
    /// The ARN (without qualifier) or bare name as given.
    pub function_name: String,
    pub qualifier: Option<String>,
    pub region: String,
    pub account: Option<String>,
    /// The location string as given.
    pub identity: String,
}
