//! Walks the spanned document, checks every key and value, and builds the [`Config`].
//! Every problem is collected; nothing stops at the first.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::errors::{Ctx, Fields};
use crate::json5::{Kind, Value};
use crate::model::*;
use crate::schema::{self, Field};
use crate::upstream::upstream_list;

/// Builds the configuration from a parsed document.
pub(crate) fn config(ctx: &mut Ctx, root: &Value, file: &Path) -> Option<Config> {
    let fields = ctx.object(root, "", schema::ROOT)?;
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: String| -> PathBuf {
        let path = PathBuf::from(p);
        if path.is_absolute() {
            path
        } else {
            base.join(path)
        }
    };

    let listen = match fields.get("listen") {
        None => Some(vec![SocketAddr::from(([127, 0, 0, 1], 8080))]),
        Some(value) => addresses(ctx, value, "listen", true),
    };
    let tls = optional(ctx, &fields, "tls", schema::TLS, |ctx, f, path| {
        let listen = f
            .get("listen")
            .and_then(|v| addresses(ctx, v, &format!("{path}.listen"), false));
        let (cert, key) = cert_pair(ctx, f, path, &resolve);
        let min_version = match f.get("min-version") {
            None => Some(TlsVersion::V1_2),
            Some(v) => choice(
                ctx,
                v,
                &format!("{path}.min-version"),
                &[("1.2", TlsVersion::V1_2), ("1.3", TlsVersion::V1_3)],
            ),
        };
        Some(TlsConfig {
            listen: listen?,
            cert: cert?,
            key: key?,
            min_version: min_version?,
        })
    });
    if let (Some(value), Some(addrs), Some(None)) = (fields.get("listen"), &listen, &tls) {
        if addrs.is_empty() {
            ctx.error_at(
                value,
                "listen",
                "at least one address is required when there is no `tls` listener",
            );
        }
    }
    let workers = match fields.get("workers") {
        None => Some(Workers::Auto),
        Some(v) => workers(ctx, v),
    };
    let max_connections = fields
        .get("max-connections")
        .map_or(Some(100_000), |v| {
            ctx.uint(v, "max-connections", 1, u32::MAX as u64)
        })
        .map(|n| n as u32);
    let client_header_timeout = positive_duration_or(
        ctx,
        &fields,
        "client-header-timeout",
        "",
        Duration::from_secs(10),
    );
    let client_idle_timeout = positive_duration_or(
        ctx,
        &fields,
        "client-idle-timeout",
        "",
        Duration::from_secs(60),
    );
    let http2_max_concurrent_streams = fields
        .get("http2-max-concurrent-streams")
        .map_or(Some(100), |v| {
            ctx.uint(v, "http2-max-concurrent-streams", 1, u32::MAX as u64)
        })
        .map(|n| n as u32);
    let admin = optional(ctx, &fields, "admin", schema::ADMIN, |ctx, f, path| {
        let listen = f
            .get("listen")
            .and_then(|v| socket_addr(ctx, v, &format!("{path}.listen")))?;
        let token = match f.get("token") {
            None => Some(None),
            Some(v) => ctx.string(v, &format!("{path}.token")).map(|t| {
                Some(match t.strip_prefix("env:") {
                    Some(name) => Secret::Env(name.to_owned()),
                    None => Secret::Literal(t),
                })
            }),
        }?;
        Some(AdminConfig { listen, token })
    });
    let shutdown_grace = duration_or(ctx, &fields, "shutdown-grace", "", Duration::from_secs(30));
    let trust_proxies = fields
        .get("trust-proxies")
        .map_or(Some(0), |v| ctx.uint(v, "trust-proxies", 0, 1000))
        .map(|n| n as usize);
    let trust_proto = fields
        .get("trust-x-forwarded-proto")
        .map_or(Some(false), |v| ctx.boolean(v, "trust-x-forwarded-proto"));
    let max_request_body = fields
        .get("max-request-body")
        .map_or(Some(100 << 20), |v| ctx.size(v, "max-request-body"));
    let docs_limits = match fields.get("docs-limits") {
        None => Some(DocsLimits::default()),
        Some(value) => docs_limits(ctx, value),
    };
    let paths = match fields.get("paths") {
        None => Some(Paths::default()),
        Some(value) => paths(ctx, value),
    };
    let lambda = match fields.get("lambda") {
        None => Some(LambdaDefaults::default()),
        Some(value) => lambda(ctx, value),
    };
    let lambda_defaults = lambda.clone().unwrap_or_default();
    let domains = fields.get("domains").and_then(|value| {
        let items = ctx.array(value, "domains")?;
        if items.is_empty() {
            ctx.error_at(value, "domains", "at least one domain is required");
        }
        let mut out = Vec::new();
        let mut names: Vec<(String, usize)> = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match domain(
                ctx,
                item,
                &format!("domains[{i}]"),
                &lambda_defaults,
                &resolve,
            ) {
                Some(d) => {
                    if let Some((_, first)) = names.iter().find(|(n, _)| *n == d.domain_name) {
                        ctx.error_at(
                            item,
                            &format!("domains[{i}].domain-name"),
                            format!(
                                "duplicate domain {:?} (also domains[{first}])",
                                d.domain_name
                            ),
                        );
                        ok = false;
                    }
                    names.push((d.domain_name.clone(), i));
                    out.push(d);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    });
    Some(Config {
        file: file.to_path_buf(),
        listen: listen?,
        tls: tls?,
        admin: admin?,
        workers: workers?,
        max_connections: max_connections?,
        client_header_timeout: client_header_timeout?,
        client_idle_timeout: client_idle_timeout?,
        http2_max_concurrent_streams: http2_max_concurrent_streams?,
        shutdown_grace: shutdown_grace?,
        trust_proxies: trust_proxies?,
        trust_x_forwarded_proto: trust_proto?,
        max_request_body: max_request_body?,
        paths: paths?,
        docs_limits: docs_limits?,
        lambda: lambda?,
        domains: domains?,
        warnings: Vec::new(),
    })
}

/// `Some(None)` when absent, `Some(Some(x))` when valid, `None` on error.
fn optional<T>(
    ctx: &mut Ctx,
    fields: &Fields<'_>,
    key: &str,
    table: &[Field],
    build: impl FnOnce(&mut Ctx, &Fields<'_>, &str) -> Option<T>,
) -> Option<Option<T>> {
    let Some(value) = fields.get(key) else {
        return Some(None);
    };
    let inner = ctx.object(value, key, table)?;
    build(ctx, &inner, key).map(Some)
}

/// [`optional`] for a key under `prefix` (a domain, `upstream-weighting`).
fn optional_at<T>(
    ctx: &mut Ctx,
    fields: &Fields<'_>,
    prefix: &str,
    key: &str,
    table: &[Field],
    build: impl FnOnce(&mut Ctx, &Fields<'_>, &str) -> Option<T>,
) -> Option<Option<T>> {
    let Some(value) = fields.get(key) else {
        return Some(None);
    };
    let path = join(prefix, key);
    let inner = ctx.object(value, &path, table)?;
    build(ctx, &inner, &path).map(Some)
}

fn ramp_guard(ctx: &mut Ctx, f: &Fields<'_>, path: &str) -> Option<RampGuard> {
    let defaults = RampGuard::default();
    let error_rate = f
        .get("max-error-rate-increase")
        .map_or(Some(defaults.max_error_rate_increase), |v| {
            ctx.number(v, &join(path, "max-error-rate-increase"), 0.0, 1.0)
        });
    let p99_ratio = f
        .get("max-p99-ratio")
        .map_or(Some(defaults.max_p99_ratio), |v| {
            ctx.number(v, &join(path, "max-p99-ratio"), 1.0, 1_000_000.0)
        });
    let p99_floor = duration_or(ctx, f, "p99-floor", path, defaults.p99_floor);
    let min_requests = f
        .get("min-requests")
        .map_or(Some(defaults.min_requests), |v| {
            ctx.uint(v, &join(path, "min-requests"), 1, u32::MAX as u64)
        });
    let action = match f.get("action") {
        None => Some(defaults.action),
        Some(v) => choice(
            ctx,
            v,
            &join(path, "action"),
            &[
                ("pause", GuardAction::Pause),
                ("rollback", GuardAction::Rollback),
            ],
        ),
    };
    Some(RampGuard {
        max_error_rate_increase: error_rate?,
        max_p99_ratio: p99_ratio?,
        p99_floor: p99_floor?,
        min_requests: min_requests?,
        action: action?,
    })
}

fn circuit_breaker(ctx: &mut Ctx, f: &Fields<'_>, path: &str) -> Option<CircuitBreakerConfig> {
    let defaults = CircuitBreakerConfig::default();
    let count = |ctx: &mut Ctx, key: &str, default: u32| {
        f.get(key)
            .map_or(Some(default as u64), |v| {
                ctx.uint(v, &join(path, key), 1, u32::MAX as u64)
            })
            .map(|n| n as u32)
    };
    let max_failures = count(ctx, "max-failures", defaults.max_failures);
    let endpoint_max_failures = count(ctx, "endpoint-max-failures", defaults.endpoint_max_failures);
    let max_in_flight = count(ctx, "max-in-flight", defaults.max_in_flight);
    let reset_timeout = positive_duration_or(ctx, f, "reset-timeout", path, defaults.reset_timeout);
    Some(CircuitBreakerConfig {
        max_failures: max_failures?,
        endpoint_max_failures: endpoint_max_failures?,
        reset_timeout: reset_timeout?,
        max_in_flight: max_in_flight?,
    })
}

fn health_check(ctx: &mut Ctx, f: &Fields<'_>, path: &str) -> Option<HealthCheckConfig> {
    let probe_path = f.get("path").and_then(|v| {
        let text = ctx.string(v, &join(path, "path"))?;
        if text.starts_with('/') {
            Some(text)
        } else {
            ctx.error_at(
                v,
                &join(path, "path"),
                format!("{text:?} must start with \"/\""),
            );
            None
        }
    });
    let interval = positive_duration_or(ctx, f, "interval", path, Duration::from_secs(5));
    let timeout = positive_duration_or(ctx, f, "timeout", path, Duration::from_secs(1));
    let threshold = |ctx: &mut Ctx, key: &str, default: u64| {
        f.get(key)
            .map_or(Some(default), |v| ctx.uint(v, &join(path, key), 1, 1_000))
            .map(|n| n as u32)
    };
    let unhealthy = threshold(ctx, "unhealthy-threshold", 3);
    let healthy = threshold(ctx, "healthy-threshold", 2);
    Some(HealthCheckConfig {
        path: probe_path?,
        interval: interval?,
        timeout: timeout?,
        unhealthy_threshold: unhealthy?,
        healthy_threshold: healthy?,
    })
}

fn retry(ctx: &mut Ctx, f: &Fields<'_>, path: &str) -> Option<RetryConfig> {
    let defaults = RetryConfig::default();
    let attempts = f
        .get("attempts")
        .map_or(Some(defaults.attempts as u64), |v| {
            ctx.uint(v, &join(path, "attempts"), 0, 10)
        });
    let budget = f
        .get("budget-percent")
        .map_or(Some(defaults.budget_percent as u64), |v| {
            ctx.uint(v, &join(path, "budget-percent"), 0, 100)
        });
    Some(RetryConfig {
        attempts: attempts? as u32,
        budget_percent: budget? as u32,
    })
}

fn duration_or(
    ctx: &mut Ctx,
    fields: &Fields<'_>,
    key: &str,
    prefix: &str,
    default: Duration,
) -> Option<Duration> {
    match fields.get(key) {
        None => Some(default),
        Some(v) => ctx.duration(v, &join(prefix, key)),
    }
}

/// Like [`duration_or`], refusing zero (a timeout of nothing would fail every request).
fn positive_duration_or(
    ctx: &mut Ctx,
    fields: &Fields<'_>,
    key: &str,
    prefix: &str,
    default: Duration,
) -> Option<Duration> {
    let duration = duration_or(ctx, fields, key, prefix, default)?;
    if duration.is_zero() {
        if let Some(v) = fields.get(key) {
            ctx.error_at(v, &join(prefix, key), "must be greater than zero");
        }
        return None;
    }
    Some(duration)
}

/// A string that must be one of `options`; the error lists them.
fn choice<T: Copy>(ctx: &mut Ctx, value: &Value, path: &str, options: &[(&str, T)]) -> Option<T> {
    let Kind::String(text) = &value.kind else {
        let names: Vec<String> = options.iter().map(|(n, _)| format!("{n:?}")).collect();
        ctx.error_at(
            value,
            path,
            format!(
                "expected one of {}, found {}",
                names.join(", "),
                value.kind.describe()
            ),
        );
        return None;
    };
    match options.iter().find(|(name, _)| name == text) {
        Some((_, chosen)) => Some(*chosen),
        None => {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            ctx.error_at(
                value,
                path,
                format!("unknown value {text:?}; valid: {}", names.join(", ")),
            );
            None
        }
    }
}

/// `cert` and `key` of a `tls` object, resolved against the config file's directory.
fn cert_pair(
    ctx: &mut Ctx,
    fields: &Fields<'_>,
    path: &str,
    resolve: &dyn Fn(String) -> PathBuf,
) -> (Option<PathBuf>, Option<PathBuf>) {
    let mut file = |key: &str| {
        fields
            .get(key)
            .and_then(|v| ctx.string(v, &format!("{path}.{key}")))
            .map(resolve)
    };
    (file("cert"), file("key"))
}

fn workers(ctx: &mut Ctx, value: &Value) -> Option<Workers> {
    match &value.kind {
        Kind::String(text) if text == "auto" => Some(Workers::Auto),
        Kind::Number { .. } => ctx
            .uint(value, "workers", 1, 4096)
            .map(|n| Workers::Count(n as u32)),
        _ => {
            ctx.error_at(
                value,
                "workers",
                format!(
                    "expected a thread count or \"auto\", found {}",
                    match &value.kind {
                        Kind::String(text) => format!("{text:?}"),
                        other => other.describe().to_owned(),
                    }
                ),
            );
            None
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn socket_addr(ctx: &mut Ctx, value: &Value, path: &str) -> Option<SocketAddr> {
    let text = ctx.string(value, path)?;
    match text.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            ctx.error_at(
                value,
                path,
                format!("{text:?} is not an address like \"127.0.0.1:8080\" or \"[::]:8443\""),
            );
            None
        }
    }
}

/// An address or a list of them; `allow_empty`: `[]` means none.
fn addresses(
    ctx: &mut Ctx,
    value: &Value,
    path: &str,
    allow_empty: bool,
) -> Option<Vec<SocketAddr>> {
    match &value.kind {
        Kind::String(_) => socket_addr(ctx, value, path).map(|a| vec![a]),
        Kind::Array(items) if allow_empty || !items.is_empty() => {
            let addrs: Vec<Option<SocketAddr>> = items
                .iter()
                .enumerate()
                .map(|(i, item)| socket_addr(ctx, item, &format!("{path}[{i}]")))
                .collect();
            addrs.into_iter().collect()
        }
        Kind::Array(_) => {
            ctx.error_at(value, path, "at least one address is required");
            None
        }
        other => {
            ctx.error_at(
                value,
                path,
                format!(
                    "expected an address or a list of addresses, found {}",
                    other.describe()
                ),
            );
            None
        }
    }
}

fn paths(ctx: &mut Ctx, value: &Value) -> Option<Paths> {
    let fields = ctx.object(value, "paths", schema::PATHS)?;
    let mut paths = Paths::default();
    let mut ok = true;
    for (key, slot) in [
        ("healthcheck", &mut paths.healthcheck),
        ("metrics", &mut paths.metrics),
        ("spec", &mut paths.spec),
        ("swagger1", &mut paths.swagger1),
        ("swagger2", &mut paths.swagger2),
    ] {
        let Some(v) = fields.get(key) else { continue };
        match ctx.string(v, &format!("paths.{key}")) {
            Some(p) if p.starts_with('/') => *slot = p,
            Some(p) => {
                ctx.error_at(
                    v,
                    &format!("paths.{key}"),
                    format!("{p:?} must start with \"/\""),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(paths)
}

fn docs_limits(ctx: &mut Ctx, value: &Value) -> Option<DocsLimits> {
    let fields = ctx.object(value, "docs-limits", schema::DOCS_LIMITS)?;
    let mut limits = DocsLimits::default();
    let mut ok = true;
    if let Some(v) = fields.get("max-bytes") {
        match ctx.size(v, "docs-limits.max-bytes") {
            Some(n) => limits.max_bytes = n,
            None => ok = false,
        }
    }
    for (key, slot) in [
        ("max-paths", &mut limits.max_paths),
        ("max-operations", &mut limits.max_operations),
    ] {
        let Some(v) = fields.get(key) else { continue };
        match ctx.uint(v, &format!("docs-limits.{key}"), 1, u64::from(u32::MAX)) {
            Some(n) => *slot = n,
            None => ok = false,
        }
    }
    ok.then_some(limits)
}

fn lambda(ctx: &mut Ctx, value: &Value) -> Option<LambdaDefaults> {
    let fields = ctx.object(value, "lambda", schema::LAMBDA)?;
    let region = match fields.get("region") {
        None => Some(None),
        Some(v) => ctx.string(v, "lambda.region").map(Some),
    };
    let endpoint_url = match fields.get("endpoint-url") {
        None => Some(None),
        Some(v) => {
            let url = ctx.string(v, "lambda.endpoint-url")?;
            if url.starts_with("http://") || url.starts_with("https://") {
                Some(Some(url))
            } else {
                ctx.error_at(
                    v,
                    "lambda.endpoint-url",
                    format!("{url:?} is not an absolute http(s) URL"),
                );
                None
            }
        }
    };
    Some(LambdaDefaults {
        region: region?,
        endpoint_url: endpoint_url?,
    })
}

fn domain(
    ctx: &mut Ctx,
    value: &Value,
    path: &str,
    lambda: &LambdaDefaults,
    resolve: &dyn Fn(String) -> PathBuf,
) -> Option<DomainConfig> {
    let fields = ctx.object(value, path, schema::DOMAIN)?;
    let p = |key: &str| format!("{path}.{key}");
    let domain_name = fields.get("domain-name").and_then(|v| {
        let name = ctx.string(v, &p("domain-name"))?.to_ascii_lowercase();
        let valid = name == "*"
            || (!name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'));
        if !valid {
            ctx.error_at(
                v,
                &p("domain-name"),
                format!("{name:?} is not a host name (no scheme, no port) or \"*\""),
            );
        }
        valid.then_some(name)
    });
    let tls = optional_at(
        ctx,
        &fields,
        path,
        "tls",
        schema::DOMAIN_TLS,
        |ctx, f, tpath| {
            let (cert, key) = cert_pair(ctx, f, tpath, resolve);
            Some(DomainTls {
                cert: cert?,
                key: key?,
            })
        },
    );
    let upstream_weighting = match fields.get("upstream-weighting") {
        None => Some(UpstreamWeighting {
            step_count: 10,
            step_duration: Duration::from_secs(3),
            guard: None,
        }),
        Some(v) => {
            let wpath = p("upstream-weighting");
            ctx.object(v, &wpath, schema::WEIGHTING).and_then(|w| {
                let step_count = w.get("step-count").map_or(Some(10), |v| {
                    ctx.uint(v, &format!("{wpath}.step-count"), 1, 100_000)
                });
                let step_duration =
                    duration_or(ctx, &w, "step-duration", &wpath, Duration::from_secs(3));
                let guard = optional_at(ctx, &w, &wpath, "guard", schema::GUARD, ramp_guard);
                Some(UpstreamWeighting {
                    step_count: step_count? as u32,
                    step_duration: step_duration?,
                    guard: guard?,
                })
            })
        }
    };
    let drain_timeout = duration_or(ctx, &fields, "drain-timeout", path, Duration::from_secs(60));
    let connect_timeout = positive_duration_or(
        ctx,
        &fields,
        "connect-timeout",
        path,
        Duration::from_secs(2),
    );
    let body_idle_timeout = positive_duration_or(
        ctx,
        &fields,
        "body-idle-timeout",
        path,
        Duration::from_secs(30),
    );
    let upstream_ca = match fields.get("upstream-ca") {
        None => Some(None),
        Some(v) => ctx.string(v, &p("upstream-ca")).map(|f| Some(resolve(f))),
    };
    let upstream_protocol = match fields.get("upstream-protocol") {
        None => Some(UpstreamProtocol::Auto),
        Some(v) => choice(
            ctx,
            v,
            &p("upstream-protocol"),
            &[
                ("auto", UpstreamProtocol::Auto),
                ("http1", UpstreamProtocol::Http1),
                ("h2c", UpstreamProtocol::H2c),
            ],
        ),
    };
    let circuit_breaker = optional_at(
        ctx,
        &fields,
        path,
        "circuit-breaker",
        schema::CIRCUIT_BREAKER,
        circuit_breaker,
    )
    .map(Option::unwrap_or_default);
    let health_check = optional_at(
        ctx,
        &fields,
        path,
        "health-check",
        schema::HEALTH_CHECK,
        health_check,
    );
    let retry = optional_at(ctx, &fields, path, "retry", schema::RETRY, retry)
        .map(Option::unwrap_or_default);
    let request_timeout = duration_or(
        ctx,
        &fields,
        "request-timeout",
        path,
        Duration::from_secs(5),
    )
    .and_then(|d| {
        if d.is_zero() {
            if let Some(v) = fields.get("request-timeout") {
                ctx.error_at(v, &p("request-timeout"), "must be greater than zero");
            }
            None
        } else {
            Some(d)
        }
    });
    let docs_refresh = duration_or(ctx, &fields, "docs-refresh", path, Duration::from_secs(60));
    let ignore_extensions = fields
        .get("ignore-extensions")
        .map_or(Some(Vec::new()), |v| {
            ctx.str_list(v, &p("ignore-extensions")).map(|list| {
                list.into_iter()
                    .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
                    .collect()
            })
        });
    let watcher = watcher(ctx, &fields, value, path, lambda, resolve);
    let kvstores = kvstores(ctx, &fields, path);
    let known_stores: Vec<String> = kvstores
        .as_ref()
        .map(|k| k.keys().cloned().collect())
        .unwrap_or_default();
    let middleware_chain = middleware(ctx, &fields, path, &known_stores);
    let listeners = listeners(ctx, &fields, path, resolve);
    let log = match fields.get("log") {
        None => Some(LogConfig::default()),
        Some(v) => ctx.object(v, &p("log"), schema::LOG).and_then(|l| {
            let lower =
                |list: Vec<String>| list.into_iter().map(|h| h.to_ascii_lowercase()).collect();
            let request = l.get("request-headers").map_or(Some(Vec::new()), |v| {
                ctx.str_list(v, &format!("{path}.log.request-headers"))
            });
            let response = l.get("response-headers").map_or(Some(Vec::new()), |v| {
                ctx.str_list(v, &format!("{path}.log.response-headers"))
            });
            Some(LogConfig {
                request_headers: lower(request?),
                response_headers: lower(response?),
            })
        }),
    };
    Some(DomainConfig {
        domain_name: domain_name?,
        tls: tls?,
        upstream_weighting: upstream_weighting?,
        drain_timeout: drain_timeout?,
        connect_timeout: connect_timeout?,
        request_timeout: request_timeout?,
        body_idle_timeout: body_idle_timeout?,
        docs_refresh: docs_refresh?,
        ignore_extensions: ignore_extensions?,
        upstream_ca: upstream_ca?,
        upstream_protocol: upstream_protocol?,
        circuit_breaker: circuit_breaker?,
        health_check: health_check?,
        retry: retry?,
        upstream_watcher: watcher?,
        middleware_chain: middleware_chain?,
        listeners: listeners?,
        log: log?,
        kvstores: kvstores?,
    })
}

fn watcher(
    ctx: &mut Ctx,
    fields: &Fields<'_>,
    domain: &Value,
    path: &str,
    lambda: &LambdaDefaults,
    resolve: &dyn Fn(String) -> PathBuf,
) -> Option<UpstreamWatcher> {
    let p = |key: &str| format!("{path}.{key}");
    let kind = match fields.get("upstream-watcher") {
        None => "static".to_owned(),
        Some(v) => {
            let kind = ctx.string(v, &p("upstream-watcher"))?;
            if !["static", "file", "etcd"].contains(&kind.as_str()) {
                ctx.error_at(
                    v,
                    &p("upstream-watcher"),
                    format!("unknown watcher {kind:?}; valid: static, file, etcd"),
                );
                return None;
            }
            kind
        }
    };
    let mut ok = true;
    for (key, owner) in [
        ("upstreams", "static"),
        ("upstreams-file", "file"),
        ("etcd", "etcd"),
    ] {
        if kind != owner {
            if let Some(v) = fields.get(key) {
                ctx.error_at(v, &p(key), format!("only valid with \"upstream-watcher\": \"{owner}\" (this domain uses \"{kind}\")"));
                ok = false;
            }
        }
    }
    let watcher = match kind.as_str() {
        "file" => match fields.get("upstreams-file") {
            Some(v) => ctx
                .string(v, &p("upstreams-file"))
                .map(|f| UpstreamWatcher::File { path: resolve(f) }),
            None => {
                ctx.error_at(
                    domain,
                    &p("upstreams-file"),
                    "required with \"upstream-watcher\": \"file\"",
                );
                None
            }
        },
        "etcd" => match fields.get("etcd") {
            Some(v) => ctx.object(v, &p("etcd"), schema::ETCD).and_then(|e| {
                let endpoints = e
                    .get("endpoints")
                    .and_then(|v| ctx.str_list(v, &format!("{path}.etcd.endpoints")));
                let key = e
                    .get("key")
                    .and_then(|v| ctx.string(v, &format!("{path}.etcd.key")));
                Some(UpstreamWatcher::Etcd {
                    endpoints: endpoints?,
                    key: key?,
                })
            }),
            None => {
                ctx.error_at(
                    domain,
                    &p("etcd"),
                    "required with \"upstream-watcher\": \"etcd\"",
                );
                None
            }
        },
        _ => match fields.get("upstreams") {
            None => Some(UpstreamWatcher::Static {
                upstreams: Vec::new(),
            }),
            Some(v) => upstream_list(ctx, v, &p("upstreams"), lambda)
                .map(|upstreams| UpstreamWatcher::Static { upstreams }),
        },
    };
    if ok {
        watcher
    } else {
        None
    }
}

fn kvstores(
    ctx: &mut Ctx,
    fields: &Fields<'_>,
    path: &str,
) -> Option<BTreeMap<String, KvStoreSpec>> {
    let Some(value) = fields.get("kvstores") else {
        return Some(BTreeMap::new());
    };
    let kpath = format!("{path}.kvstores");
    let Kind::Object(entries) = &value.kind else {
        ctx.error_at(
            value,
            &kpath,
            format!(
                "expected an object of stores by id, found {}",
                value.kind.describe()
            ),
        );
        return None;
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, item) in entries {
        let ipath = format!("{kpath}.{}", key.name);
        let Some(f) = ctx.object(item, &ipath, schema::KVSTORE) else {
            ok = false;
            continue;
        };
        let kind = f
            .get("type")
            .and_then(|v| ctx.string(v, &format!("{ipath}.type")));
        let store = match kind.as_deref() {
            Some("memory") => {
                let max_bytes = f.get("max-bytes").map_or(Some(64 << 20), |v| {
                    ctx.size(v, &format!("{ipath}.max-bytes"))
                });
                if let (Some(v), Some(_)) = (f.get("url"), &max_bytes) {
                    ctx.error_at(v, &format!("{ipath}.url"), "only valid for a redis store");
                    None
                } else {
                    max_bytes.map(|max_bytes| KvStoreSpec::Memory { max_bytes })
                }
            }
            Some("redis") => match f
                .get("url")
                .and_then(|v| ctx.string(v, &format!("{ipath}.url")))
            {
                Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                    if let Some(v) = f.get("max-bytes") {
                        ctx.error_at(
                            v,
                            &format!("{ipath}.max-bytes"),
                            "only valid for a memory store",
                        );
                        None
                    } else {
                        Some(KvStoreSpec::Redis { url })
                    }
                }
                Some(url) => {
                    if let Some(v) = f.get("url") {
                        ctx.error_at(
                            v,
                            &format!("{ipath}.url"),
                            format!("{url:?} is not a redis:// URL"),
                        );
                    }
                    None
                }
                None => {
                    ctx.error_at(item, &format!("{ipath}.url"), "required for a redis store");
                    None
                }
            },
            Some(other) => {
                if let Some(v) = f.get("type") {
                    ctx.error_at(
                        v,
                        &format!("{ipath}.type"),
                        format!("unknown store type {other:?}; valid: memory, redis"),
                    );
                }
                None
            }
            None => None,
        };
        match store {
            Some(store) => {
                out.insert(key.name.clone(), store);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn middleware(
    ctx: &mut Ctx,
    fields: &Fields<'_>,
    path: &str,
    stores: &[String],
) -> Option<Vec<MiddlewareSpec>> {
    let settings: Vec<(String, &Value)> = match fields.get("middleware") {
        None => Vec::new(),
        Some(v) => match &v.kind {
            Kind::Object(entries) => entries
                .iter()
                .map(|(k, v)| (k.name.to_ascii_lowercase(), v))
                .collect(),
            other => {
                ctx.error_at(
                    v,
                    &format!("{path}.middleware"),
                    format!(
                        "expected an object of settings by id, found {}",
                        other.describe()
                    ),
                );
                return None;
            }
        },
    };
    // Ids compare case-insensitively: `Auth` and `auth` are one id, said twice.
    for (i, (id, v)) in settings.iter().enumerate() {
        if settings[..i].iter().any(|(other, _)| other == id) {
            ctx.error_at(
                v,
                &format!("{path}.middleware.{id}"),
                format!("duplicate middleware id {id:?} (ids compare case-insensitively)"),
            );
            return None;
        }
    }
    let Some(chain) = fields.get("middleware-chain") else {
        for (id, v) in &settings {
            ctx.error_at(
                v,
                &format!("{path}.middleware.{id}"),
                "settings for a middleware that is not in middleware-chain",
            );
        }
        return settings.is_empty().then(Vec::new);
    };
    let items = ctx.array(chain, &format!("{path}.middleware-chain"))?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}.middleware-chain[{i}]");
        let Some(f) = ctx.object(item, &ipath, schema::MIDDLEWARE_ENTRY) else {
            ok = false;
            continue;
        };
        let id = f
            .get("id")
            .and_then(|v| ctx.string(v, &format!("{ipath}.id")))
            .map(|s| s.to_ascii_lowercase());
        let builder = f
            .get("builder")
            .and_then(|v| ctx.string(v, &format!("{ipath}.builder")));
        let sla = duration_or(ctx, &f, "sla", &ipath, Duration::from_millis(20));
        let (Some(id), Some(builder), Some(sla)) = (id, builder, sla) else {
            ok = false;
            continue;
        };
        if out.iter().any(|m: &MiddlewareSpec| m.id == id) {
            ctx.error_at(
                item,
                &format!("{ipath}.id"),
                format!("duplicate middleware id {id:?}"),
            );
            ok = false;
            continue;
        }
        let own = settings.iter().find(|(sid, _)| *sid == id).map(|(_, v)| *v);
        let spath = format!("{path}.middleware.{id}");
        let own_fields = match own {
            Some(v) => match ctx.object(v, &spath, schema::MIDDLEWARE_SETTINGS) {
                Some(f) => Some(f),
                None => {
                    ok = false;
                    continue;
                }
            },
            None => None,
        };
        let built = build_middleware(
            ctx,
            &builder,
            own_fields.as_ref(),
            own.unwrap_or(item),
            &spath,
            stores,
            f.get("builder").unwrap_or(item),
            &ipath,
        );
        match built {
            Some(builder) => out.push(MiddlewareSpec { id, builder, sla }),
            None => ok = false,
        }
    }
    for (id, v) in &settings {
        if !out.iter().any(|m| m.id == *id) && ok {
            ctx.error_at(
                v,
                &format!("{path}.middleware.{id}"),
                "settings for a middleware that is not in middleware-chain",
            );
            ok = false;
        }
    }
    ok.then_some(out)
}

#[allow(clippy::too_many_arguments)]
fn build_middleware(
    ctx: &mut Ctx,
    builder: &str,
    settings: Option<&Fields<'_>>,
    settings_value: &Value,
    spath: &str,
    stores: &[String],
    builder_value: &Value,
    ipath: &str,
) -> Option<MiddlewareBuilder> {
    let only = |ctx: &mut Ctx, allowed: &[&str]| -> bool {
        let mut ok = true;
        if let Some(f) = settings {
            for field in schema::MIDDLEWARE_SETTINGS {
                if !allowed.contains(&field.key) {
                    if let Some(v) = f.get(field.key) {
                        ctx.error_at(
                            v,
                            &format!("{spath}.{}", field.key),
                            format!("not a setting of {builder}; valid: {}", allowed.join(", ")),
                        );
                        ok = false;
                    }
                }
            }
        }
        ok
    };
    let store = |ctx: &mut Ctx| -> Option<Option<String>> {
        match settings.and_then(|f| f.get("kvstore")) {
            None => Some(None),
            Some(v) => {
                let id = ctx.string(v, &format!("{spath}.kvstore"))?;
                if stores.contains(&id) {
                    Some(Some(id))
                } else {
                    ctx.error_at(
                        v,
                        &format!("{spath}.kvstore"),
                        format!("no kvstore named {id:?} in this domain"),
                    );
                    None
                }
            }
        }
    };
    let required = |ctx: &mut Ctx, key: &str| -> Option<&Value> {
        let found = settings.and_then(|f| f.get(key));
        if found.is_none() {
            ctx.error_at(
                settings_value,
                &format!("{spath}.{key}"),
                format!("required by {builder}"),
            );
        }
        found
    };
    match builder {
        "api-key-auth" => {
            let clean = only(
                ctx,
                &["header-name", "allowed", "case-sensitive", "strip-header"],
            );
            let header = settings
                .and_then(|f| f.get("header-name"))
                .map_or(Some("x-api-key".to_owned()), |v| {
                    header_name(ctx, v, &format!("{spath}.header-name"))
                });
            let allowed = required(ctx, "allowed").and_then(|v| allowed_keys(ctx, v, spath));
            let flag = |ctx: &mut Ctx, key: &str, default: bool| {
                settings
                    .and_then(|f| f.get(key))
                    .map_or(Some(default), |v| ctx.boolean(v, &format!("{spath}.{key}")))
            };
            let case = flag(ctx, "case-sensitive", true);
            let strip = flag(ctx, "strip-header", false);
            clean.then_some(())?;
            Some(MiddlewareBuilder::ApiKeyAuth {
                header_name: header?,
                allowed: allowed?,
                case_sensitive: case?,
                strip_header: strip?,
            })
        }
        "rate-limit" => {
            let clean = only(
                ctx,
                &[
                    "calls-per",
                    "per-seconds",
                    "bypass-header",
                    "bypass-values",
                    "kvstore",
                ],
            );
            let calls = required(ctx, "calls-per")
                .and_then(|v| ctx.uint(v, &format!("{spath}.calls-per"), 1, u32::MAX as u64));
            let per = required(ctx, "per-seconds")
                .and_then(|v| ctx.uint(v, &format!("{spath}.per-seconds"), 1, 86_400));
            let bypass = match settings.and_then(|f| f.get("bypass-header")) {
                None => Some(None),
                Some(v) => header_name(ctx, v, &format!("{spath}.bypass-header")).map(Some),
            };
            let bypass_values = match settings.and_then(|f| f.get("bypass-values")) {
                None => Some(None),
                Some(v) => {
                    let vpath = format!("{spath}.bypass-values");
                    let without_header = settings.is_some_and(|f| !f.has("bypass-header"));
                    if without_header {
                        ctx.error_at(v, &vpath, "only valid with bypass-header");
                    }
                    ctx.str_list(v, &vpath)
                        .filter(|_| !without_header)
                        .map(Some)
                }
            };
            if let (Some(header), None) = (
                settings.and_then(|f| f.get("bypass-header")),
                settings.and_then(|f| f.get("bypass-values")),
            ) {
                ctx.warn_at(
                    header,
                    &format!("{spath}.bypass-header"),
                    "without bypass-values, any value of this header skips the limit",
                );
            }
            let kvstore = store(ctx);
            clean.then_some(())?;
            Some(MiddlewareBuilder::RateLimit {
                calls_per: calls?,
                per_seconds: per?,
                bypass_header: bypass?,
                bypass_values: bypass_values?,
                kvstore: kvstore?,
            })
        }
        "response-cache" => {
            let clean = only(ctx, &["kvstore", "max-object-bytes"]);
            let kvstore = store(ctx);
            let max_object_bytes = settings
                .and_then(|f| f.get("max-object-bytes"))
                .map_or(Some(1 << 20), |v| {
                    ctx.size(v, &format!("{spath}.max-object-bytes"))
                });
            clean.then_some(())?;
            Some(MiddlewareBuilder::ResponseCache {
                kvstore: kvstore?,
                max_object_bytes: max_object_bytes?,
            })
        }
        other => {
            ctx.error_at(
                builder_value,
                &format!("{ipath}.builder"),
                format!(
                    "unknown builder {other:?}; valid: api-key-auth, rate-limit, response-cache"
                ),
            );
            None
        }
    }
}

/// A header name (RFC 9110 token characters), lower-cased.
fn header_name(ctx: &mut Ctx, value: &Value, path: &str) -> Option<String> {
    let name = ctx.string(value, path)?;
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        Some(name.to_ascii_lowercase())
    } else {
        ctx.error_at(value, path, format!("{name:?} is not a header name"));
        None
    }
}

/// `api-key-auth` `allowed`: literal keys, `env:NAME` or `sha256:HEX` (64 hex digits).
fn allowed_keys(ctx: &mut Ctx, value: &Value, spath: &str) -> Option<Vec<AllowedKey>> {
    let path = format!("{spath}.allowed");
    let items = ctx.array(value, &path)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let Some(text) = ctx.string(item, &ipath) else {
            ok = false;
            continue;
        };
        let entry = if let Some(name) = text.strip_prefix("env:") {
            (!name.is_empty()).then(|| AllowedKey::Env(name.to_owned()))
        } else if let Some(hex) = text.strip_prefix("sha256:") {
            sha256_hex(hex).map(AllowedKey::Sha256)
        } else {
            (!text.is_empty()).then(|| AllowedKey::Literal(text.clone()))
        };
        match entry {
            Some(entry) => out.push(entry),
            None => {
                // Never echo a literal key into a log line.
                let shown = if text.starts_with("env:") || text.starts_with("sha256:") {
                    format!("{text:?}")
                } else {
                    "an empty key".to_owned()
                };
                ctx.error_at(
                    item,
                    &ipath,
                    format!("{shown} is not a key, \"env:NAME\" or \"sha256:\" and 64 hex digits"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn sha256_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(digest)
}

fn listeners(
    ctx: &mut Ctx,
    fields: &Fields<'_>,
    path: &str,
    resolve: &dyn Fn(String) -> PathBuf,
) -> Option<Vec<ListenerSpec>> {
    let settings: Vec<(String, &Value)> = match fields.get("listener-config") {
        None => Vec::new(),
        Some(v) => match &v.kind {
            Kind::Object(entries) => entries.iter().map(|(k, v)| (k.name.clone(), v)).collect(),
            other => {
                ctx.error_at(
                    v,
                    &format!("{path}.listener-config"),
                    format!(
                        "expected an object of settings by id, found {}",
                        other.describe()
                    ),
                );
                return None;
            }
        },
    };
    let items: &[Value] = match fields.get("listeners") {
        None => &[],
        Some(v) => ctx.array(v, &format!("{path}.listeners"))?,
    };
    let mut out: Vec<ListenerSpec> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}.listeners[{i}]");
        let Some(f) = ctx.object(item, &ipath, schema::LISTENER_ENTRY) else {
            ok = false;
            continue;
        };
        let id = f
            .get("id")
            .and_then(|v| ctx.string(v, &format!("{ipath}.id")));
        let builder = f
            .get("builder")
            .and_then(|v| ctx.string(v, &format!("{ipath}.builder")));
        let (Some(id), Some(builder)) = (id, builder) else {
            ok = false;
            continue;
        };
        if out.iter().any(|l| l.id == id) {
            ctx.error_at(
                item,
                &format!("{ipath}.id"),
                format!("duplicate listener id {id:?}"),
            );
            ok = false;
            continue;
        }
        if builder != "access-log" {
            if let Some(v) = f.get("builder") {
                ctx.error_at(
                    v,
                    &format!("{ipath}.builder"),
                    format!("unknown builder {builder:?}; valid: access-log"),
                );
            }
            ok = false;
            continue;
        }
        let own = settings.iter().find(|(sid, _)| *sid == id).map(|(_, v)| *v);
        let spath = format!("{path}.listener-config.{id}");
        let file = match own {
            None => Some(None),
            Some(v) => ctx
                .object(v, &spath, schema::LISTENER_SETTINGS)
                .and_then(|s| match s.get("path") {
                    None => Some(None),
                    Some(p) => ctx
                        .string(p, &format!("{spath}.path"))
                        .map(|p| Some(resolve(p))),
                }),
        };
        match file {
            Some(file) => out.push(ListenerSpec {
                id,
                builder: ListenerBuilder::AccessLog { path: file },
            }),
            None => ok = false,
        }
    }
    for (id, v) in &settings {
        if !out.iter().any(|l| l.id == *id) && ok {
            ctx.error_at(
                v,
                &format!("{path}.listener-config.{id}"),
                "settings for a listener that is not in listeners",
            );
            ok = false;
        }
    }
    ok.then_some(out)
}
