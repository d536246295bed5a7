//! One declarative description of every object's keys. The validator checks keys against
//! these tables and the JSON Schema is generated from them, so the two cannot drift.

use crate::model::ServiceType;
use serde_json::{json, Map, Value};

/// A key of an object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub key: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub doc: &'static str,
}

impl Field {
    pub(crate) const fn req(key: &'static str, ty: Ty, doc: &'static str) -> Self {
        Field {
            key,
            ty,
            required: true,
            doc,
        }
    }

    pub(crate) const fn opt(key: &'static str, ty: Ty, doc: &'static str) -> Self {
        Field {
            key,
            ty,
            required: false,
            doc,
        }
    }
}

/// The type of a key's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    Str,
    Bool,
    UInt,
    /// A number, fractions allowed.
    Number,
    /// A positive integer or the string "auto".
    UIntOrAuto,
    Duration,
    Size,
    StrList,
    /// A string or a non-empty list of strings.
    StrOrList,
    Enum(&'static [&'static str]),
    Object(&'static [Field]),
    ObjectList(&'static [Field]),
    /// An object whose keys are ids and whose values are objects of any of these shapes.
    Map(&'static [Field]),
}

pub(crate) const TLS: &[Field] = &[
    Field::req(
        "listen",
        Ty::StrOrList,
        "HTTPS listener address(es), \"ip:port\"; restart-only.",
    ),
    Field::req(
        "cert",
        Ty::Str,
        "Default PEM certificate chain file (relative to the config file).",
    ),
    Field::req("key", Ty::Str, "Default PEM private key file."),
    Field::opt(
        "min-version",
        Ty::Enum(&["1.2", "1.3"]),
        "Lowest TLS version offered (default \"1.2\").",
    ),
];

pub(crate) const DOMAIN_TLS: &[Field] = &[
    Field::req(
        "cert",
        Ty::Str,
        "PEM certificate chain served when SNI names this domain.",
    ),
    Field::req("key", Ty::Str, "Its PEM private key file."),
];

pub(crate) const GUARD: &[Field] = &[
    Field::opt(
        "max-error-rate-increase",
        Ty::Number,
        "Error-rate excess of a gaining upstream over the baseline that acts, 0 to 1 (default 0.02).",
    ),
    Field::opt(
        "max-p99-ratio",
        Ty::Number,
        "p99 ratio over the baseline that acts, at least 1 (default 2.0).",
    ),
    Field::opt(
        "p99-floor",
        Ty::Duration,
        "A p99 below this never acts (default \"10ms\").",
    ),
    Field::opt(
        "min-requests",
        Ty::UInt,
        "Requests each side needs before judging (default 200).",
    ),
    Field::opt(
        "action",
        Ty::Enum(&["pause", "rollback"]),
        "What the guard does (default \"rollback\").",
    ),
];

pub(crate) const CIRCUIT_BREAKER: &[Field] = &[
    Field::opt(
        "max-failures",
        Ty::UInt,
        "Consecutive failures that open an upstream's breaker (default 50).",
    ),
    Field::opt(
        "endpoint-max-failures",
        Ty::UInt,
        "Consecutive failures that open an (upstream, endpoint) breaker (default 25).",
    ),
    Field::opt(
        "reset-timeout",
        Ty::Duration,
        "How long a breaker stays open before a trial request (default \"10s\").",
    ),
    Field::opt(
        "max-in-flight",
        Ty::UInt,
        "In-flight requests at which an upstream is skipped (default 10000).",
    ),
];

pub(crate) const HEALTH_CHECK: &[Field] = &[
    Field::req("path", Ty::Str, "Path probed with GET, e.g. \"/health\"."),
    Field::opt(
        "interval",
        Ty::Duration,
        "Time between probes (default \"5s\").",
    ),
    Field::opt("timeout", Ty::Duration, "Probe timeout (default \"1s\")."),
    Field::opt(
        "unhealthy-threshold",
        Ty::UInt,
        "Failed probes in a row that take an upstream out (default 3).",
    ),
    Field::opt(
        "healthy-threshold",
        Ty::UInt,
        "Passed probes in a row that bring it back (default 2).",
    ),
];

pub(crate) const RETRY: &[Field] = &[
    Field::opt(
        "attempts",
        Ty::UInt,
        "Retries per request on another upstream, 0 = none (default 1).",
    ),
    Field::opt(
        "budget-percent",
        Ty::UInt,
        "Retries in flight as a percentage of requests in flight (default 20).",
    ),
];

pub(crate) const ADMIN: &[Field] = &[
    Field::req("listen", Ty::Str, "Admin listener address, \"ip:port\"."),
    Field::opt("token", Ty::Str, "Bearer token, literal or \"env:NAME\"."),
];

pub(crate) const PATHS: &[Field] = &[
    Field::opt(
        "healthcheck",
        Ty::Str,
        "Healthcheck path (default /healthcheck).",
    ),
    Field::opt(
        "metrics",
        Ty::Str,
        "Prometheus metrics path (default /metrics).",
    ),
    Field::opt(
        "spec",
        Ty::Str,
        "Merged OpenAPI document path (default /spec).",
    ),
    Field::opt(
        "swagger1",
        Ty::Str,
        "Where Swagger 1.2 listings are fetched from upstreams (default /api-docs).",
    ),
    Field::opt(
        "swagger2",
        Ty::Str,
        "Where Swagger 2.0 / OpenAPI 3 docs are fetched from upstreams (default /spec).",
    ),
];

pub(crate) const LAMBDA: &[Field] = &[
    Field::opt("region", Ty::Str, "Region for bare function names."),
    Field::opt(
        "endpoint-url",
        Ty::Str,
        "Invoke API endpoint override (SAM local, LocalStack, tests).",
    ),
];

pub(crate) const WEIGHTING: &[Field] = &[
    Field::opt(
        "step-count",
        Ty::UInt,
        "Steps in a weight transition (default 10, at least 1).",
    ),
    Field::opt(
        "step-duration",
        Ty::Duration,
        "Time between steps (default \"3s\").",
    ),
    Field::opt(
        "guard",
        Ty::Object(GUARD),
        "Automatic pause or rollback of a ramp that does worse than the baseline (absent = none).",
    ),
];

pub(crate) const ETCD: &[Field] = &[
    Field::req("endpoints", Ty::StrList, "etcd client URLs."),
    Field::req(
        "key",
        Ty::Str,
        "Key holding the strict-JSON upstream array.",
    ),
];

pub(crate) const MIDDLEWARE_ENTRY: &[Field] = &[
    Field::req(
        "id",
        Ty::Str,
        "Unique id (case-insensitive); settings live in `middleware.{id}`.",
    ),
    Field::req(
        "builder",
        Ty::Enum(&["api-key-auth", "rate-limit", "response-cache"]),
        "Middleware kind.",
    ),
    Field::opt(
        "sla",
        Ty::Duration,
        "Time the middleware may take (default \"20ms\").",
    ),
];

pub(crate) const MIDDLEWARE_SETTINGS: &[Field] = &[
    Field::opt(
        "header-name",
        Ty::Str,
        "api-key-auth: header carrying the key (default X-Api-Key).",
    ),
    Field::opt(
        "allowed",
        Ty::StrList,
        "api-key-auth: accepted keys; an entry may be \"env:NAME\" or \"sha256:HEX\".",
    ),
    Field::opt(
        "case-sensitive",
        Ty::Bool,
        "api-key-auth: compare keys case-sensitively (default true).",
    ),
    Field::opt(
        "strip-header",
        Ty::Bool,
        "api-key-auth: remove the key header before forwarding (default false).",
    ),
    Field::opt(
        "calls-per",
        Ty::UInt,
        "rate-limit: calls allowed per window.",
    ),
    Field::opt(
        "per-seconds",
        Ty::UInt,
        "rate-limit: window length in seconds.",
    ),
    Field::opt(
        "bypass-header",
        Ty::Str,
        "rate-limit: requests with this header skip the limit.",
    ),
    Field::opt(
        "bypass-values",
        Ty::StrList,
        "rate-limit: values of bypass-header that skip the limit (absent: any value).",
    ),
    Field::opt(
        "kvstore",
        Ty::Str,
        "rate-limit / response-cache: id of a `kvstores` entry (default: a private memory store).",
    ),
    Field::opt(
        "max-object-bytes",
        Ty::Size,
        "response-cache: largest response body stored (default \"1mb\").",
    ),
];

pub(crate) const LISTENER_ENTRY: &[Field] = &[
    Field::req(
        "id",
        Ty::Str,
        "Unique id; settings live in `listener-config.{id}`.",
    ),
    Field::req("builder", Ty::Enum(&["access-log"]), "Listener kind."),
];

pub(crate) const LISTENER_SETTINGS: &[Field] = &[Field::opt(
    "path",
    Ty::Str,
    "access-log: file to append to (default stdout).",
)];

pub(crate) const KVSTORE: &[Field] = &[
    Field::req("type", Ty::Enum(&["memory", "redis"]), "Store kind."),
    Field::opt(
        "max-bytes",
        Ty::Size,
        "memory: bound of the LRU store (default \"64mb\").",
    ),
    Field::opt(
        "url",
        Ty::Str,
        "redis: redis://host:port (rediss:// for TLS).",
    ),
];

pub(crate) const LOG: &[Field] = &[
    Field::opt(
        "request-headers",
        Ty::StrList,
        "Request headers copied into access logs.",
    ),
    Field::opt(
        "response-headers",
        Ty::StrList,
        "Response headers copied into access logs.",
    ),
];

pub(crate) const DOMAIN: &[Field] = &[
    Field::req(
        "domain-name",
        Ty::Str,
        "Host matched against the Host header (port ignored); \"*\" catches the rest.",
    ),
    Field::opt(
        "tls",
        Ty::Object(DOMAIN_TLS),
        "Certificate served when SNI names this domain.",
    ),
    Field::opt(
        "upstream-weighting",
        Ty::Object(WEIGHTING),
        "How weight changes ramp.",
    ),
    Field::opt(
        "drain-timeout",
        Ty::Duration,
        "Longest a removed upstream drains (default \"60s\").",
    ),
    Field::opt(
        "connect-timeout",
        Ty::Duration,
        "TCP + TLS connect to an upstream (default \"2s\").",
    ),
    Field::opt(
        "request-timeout",
        Ty::Duration,
        "Time to the upstream's response head (default \"5s\").",
    ),
    Field::opt(
        "body-idle-timeout",
        Ty::Duration,
        "Longest silence inside a request or response body (default \"30s\").",
    ),
    Field::opt(
        "docs-refresh",
        Ty::Duration,
        "How often upstream docs are re-fetched (default \"60s\").",
    ),
    Field::opt(
        "ignore-extensions",
        Ty::StrList,
        "Extensions stripped from the last path segment, e.g. [\"json\"].",
    ),
    Field::opt(
        "upstream-ca",
        Ty::Str,
        "PEM bundle trusted for https upstreams, besides the system store.",
    ),
    Field::opt(
        "upstream-protocol",
        Ty::Enum(&["auto", "http1", "h2c"]),
        "auto (https: ALPN h2 or http/1.1; http: HTTP/1.1), http1, or h2c (default auto).",
    ),
    Field::opt(
        "circuit-breaker",
        Ty::Object(CIRCUIT_BREAKER),
        "Breakers per upstream and per (upstream, endpoint).",
    ),
    Field::opt(
        "health-check",
        Ty::Object(HEALTH_CHECK),
        "Active health checks of HTTP upstreams (absent = off).",
    ),
    Field::opt(
        "retry",
        Ty::Object(RETRY),
        "Retries of idempotent requests that failed before any response byte.",
    ),
    Field::opt(
        "upstream-watcher",
        Ty::Enum(&["static", "file", "etcd"]),
        "Where the upstream list comes from (default static).",
    ),
    Field::opt(
        "upstreams",
        Ty::ObjectList(UPSTREAM_FIELDS),
        "static: the Upstream Service Objects.",
    ),
    Field::opt(
        "upstreams-file",
        Ty::Str,
        "file: a strict-JSON array of Upstream Service Objects, watched.",
    ),
    Field::opt(
        "etcd",
        Ty::Object(ETCD),
        "etcd: where the upstream array lives.",
    ),
    Field::opt(
        "middleware-chain",
        Ty::ObjectList(MIDDLEWARE_ENTRY),
        "Request middleware, in order.",
    ),
    Field::opt(
        "middleware",
        Ty::Map(MIDDLEWARE_SETTINGS),
        "Settings per middleware id.",
    ),
    Field::opt(
        "listeners",
        Ty::ObjectList(LISTENER_ENTRY),
        "Request listeners.",
    ),
    Field::opt(
        "listener-config",
        Ty::Map(LISTENER_SETTINGS),
        "Settings per listener id.",
    ),
    Field::opt("kvstores", Ty::Map(KVSTORE), "Key-value stores by id."),
    Field::opt("log", Ty::Object(LOG), "Access-log header selection."),
];

pub(crate) const ROOT: &[Field] = &[
    Field::opt(
        "listen",
        Ty::StrOrList,
        "Plain HTTP address(es), \"ip:port\" (default 127.0.0.1:8080; [] = none, with tls); restart-only.",
    ),
    Field::opt(
        "tls",
        Ty::Object(TLS),
        "TLS for the main listener (HTTP/1.1 and HTTP/2 via ALPN).",
    ),
    Field::opt("admin", Ty::Object(ADMIN), "The admin API listener."),
    Field::opt(
        "workers",
        Ty::UIntOrAuto,
        "Request-serving threads: a number or \"auto\" (CPUs allowed; the default); restart-only.",
    ),
    Field::opt(
        "max-connections",
        Ty::UInt,
        "Client connections held at once; over it, new ones wait (default 100000).",
    ),
    Field::opt(
        "client-header-timeout",
        Ty::Duration,
        "A request head must arrive within this (default \"10s\").",
    ),
    Field::opt(
        "client-idle-timeout",
        Ty::Duration,
        "An idle keep-alive connection is closed after this (default \"60s\").",
    ),
    Field::opt(
        "http2-max-concurrent-streams",
        Ty::UInt,
        "HTTP/2 streams per client connection (default 100).",
    ),
    Field::opt(
        "shutdown-grace",
        Ty::Duration,
        "How long in-flight requests may finish on shutdown (default \"30s\").",
    ),
    Field::opt(
        "trust-proxies",
        Ty::UInt,
        "X-Forwarded-For hops to trust for Client-Address (default 0).",
    ),
    Field::opt(
        "trust-x-forwarded-proto",
        Ty::Bool,
        "Take the scheme from X-Forwarded-Proto (default false).",
    ),
    Field::opt(
        "max-request-body",
        Ty::Size,
        "Largest request body, bytes or \"10mb\" (default \"100mb\").",
    ),
    Field::opt(
        "paths",
        Ty::Object(PATHS),
        "Local endpoint paths and upstream doc paths.",
    ),
    Field::opt("lambda", Ty::Object(LAMBDA), "Lambda defaults."),
    Field::opt(
        "docs-limits",
        Ty::Object(DOCS_LIMITS),
        "Caps on upstream documents (defaults: 64mb, 50000 paths, 200000 operations).",
    ),
    Field::req("domains", Ty::ObjectList(DOMAIN), "The domains served."),
];

pub(crate) const DOCS_LIMITS: &[Field] = &[
    Field::opt(
        "max-bytes",
        Ty::Size,
        "Largest document, bytes or \"64mb\" (default \"64mb\").",
    ),
    Field::opt(
        "max-paths",
        Ty::UInt,
        "Most paths in one document (default 50000).",
    ),
    Field::opt(
        "max-operations",
        Ty::UInt,
        "Most operations in one document (default 200000).",
    ),
];

fn schema_of(ty: Ty) -> Value {
    match ty {
        Ty::Str => json!({"type": "string"}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::UInt => json!({"type": "integer", "minimum": 0}),
        Ty::Number => json!({"type": "number"}),
        Ty::UIntOrAuto => json!({"oneOf": [
            {"type": "integer", "minimum": 1},
            {"const": "auto"}
        ]}),
        Ty::Duration => json!({"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$"}),
        Ty::Size => json!({"oneOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": "^(?i)[0-9]+ *(b|k|kb|kib|m|mb|mib|g|gb|gib)?$"}
        ]}),
        Ty::StrList => json!({"type": "array", "items": {"type": "string"}}),
        Ty::StrOrList => json!({"oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}}
        ]}),
        Ty::Enum(values) => json!({"enum": values}),
        Ty::Object(fields) => object_schema(fields),
        Ty::ObjectList(fields) => json!({"type": "array", "items": object_schema(fields)}),
        Ty::Map(fields) => json!({"type": "object", "additionalProperties": object_schema(fields)}),
    }
}

fn object_schema(fields: &[Field]) -> Value {
    let mut properties = Map::new();
    for field in fields {
        let mut schema = schema_of(field.ty);
        schema["description"] = Value::String(field.doc.to_owned());
        properties.insert(field.key.to_owned(), schema);
    }
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.key)
        .collect();
    let mut schema =
        json!({"type": "object", "properties": properties, "additionalProperties": false});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

/// The JSON Schema (draft 2020-12) of the configuration file, generated from the same key
/// tables the validator uses.
pub fn json_schema() -> Value {
    let mut schema = object_schema(ROOT);
    let object = schema
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut out = Map::new();
    out.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    out.insert(
        "$id".into(),
        json!("https://buckler.dev/schema/buckler.schema.json"),
    );
    out.insert("title".into(), json!("Buckler configuration"));
    out.extend(object);
    schema = Value::Object(out);
    schema
}

/// The keys of an Upstream Service Object.
pub(crate) const UPSTREAM_FIELDS: &[Field] = &[
    Field::req("serviceType", Ty::Enum(&ServiceType::NAMES), "Doc format and transport."),
    Field::req(
        "serviceLocation",
        Ty::Str,
        "http(s)://host[:port] (no path, query, fragment or user-info), or a Lambda function ARN / name.",
    ),
    Field::opt("weight", Ty::UInt, "Non-negative integer load-balancing weight (default 1)."),
];
