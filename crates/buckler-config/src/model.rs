//! The validated configuration: what the rest of Buckler reads.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from (reloads re-read it).
    pub file: PathBuf,
    pub listen: Vec<SocketAddr>,
    pub tls: Option<TlsConfig>,
    pub admin: Option<AdminConfig>,
    pub shutdown_grace: Duration,
    pub trust_proxies: usize,
    pub trust_x_forwarded_proto: bool,
    /// Largest request body accepted, in bytes.
    pub max_request_body: u64,
    pub paths: Paths,
    pub lambda: LambdaDefaults,
    pub domains: Vec<DomainConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
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
    pub upstream_weighting: UpstreamWeighting,
    pub drain_timeout: Duration,
    pub request_timeout: Duration,
    pub docs_refresh: Duration,
    /// Lower-case, without the leading dot; `""` strips a bare trailing dot.
    pub ignore_extensions: Vec<String>,
    pub upstream_watcher: UpstreamWatcher,
    pub middleware_chain: Vec<MiddlewareSpec>,
    pub listeners: Vec<ListenerSpec>,
    pub log: LogConfig,
    pub kvstores: BTreeMap<String, KvStoreSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamWeighting {
    pub step_count: u32,
    pub step_duration: Duration,
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
        header_name: String,
        allowed: Vec<String>,
        case_sensitive: bool,
    },
    RateLimit {
        calls_per: u64,
        per_seconds: u64,
        bypass_header: String,
        kvstore: Option<String>,
    },
    ResponseCache {
        kvstore: Option<String>,
    },
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
    Memory,
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
