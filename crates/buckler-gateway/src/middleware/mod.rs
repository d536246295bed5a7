//! Middleware and listeners on the request path (SPEC §10): built once per domain per
//! configuration ([`DomainMiddleware`]), then compiled per endpoint group when the table is
//! built (chain order minus the group's `x-disabled-middleware`) into a [`Chain`], a plain
//! list of a closed enum — no per-request lookups, no dynamic registration.
//!
//! ```text
//!            request ─▶ api-key-auth ─▶ rate-limit ─▶ response-cache ─▶ upstream
//!   401/403/503 ◀───────────┘               │              │ hit/stale
//!              429 + Retry-After ◀──────────┘              ▼
//!   response ◀── RateLimit-* headers ◀── X-Cache, store ◀──┘
//!            └─▶ access-log listeners (every request of the domain, errors included)
//! ```
//!
//! A middleware that answers stops the chain; the decorations of the entries before it
//! (`RateLimit-*`) still reach the response. Every entry's own work is bounded by its `sla`.

mod access_log;
mod apikey;
mod cache;
mod ratelimit;
mod stats;
mod stores;
mod trace;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use buckler_config::{DomainConfig, ListenerBuilder, MiddlewareBuilder, MiddlewareSpec};
use buckler_upstream::ProxyBody;
use http::{HeaderMap, Response};

use crate::error::GatewayError;
use crate::outbound::Outbound;

pub(crate) use access_log::{AccessLog, AccessStart, Listeners, UpstreamUsed};
pub(crate) use trace::{traceparent, TraceId};

use apikey::ApiKeyAuth;
use cache::{CacheAfter, CacheStep, ResponseCache};
use ratelimit::RateLimit;
use stats::MiddlewareStats;
use stores::Stores;

/// Why a domain's middleware could not be built (the configuration is refused).
#[derive(Debug, thiserror::Error)]
pub enum MiddlewareError {
    #[error("middleware {id}: {reason}")]
    Invalid { id: String, reason: String },
    #[error("kvstores.{name}: {reason}")]
    Store { name: String, reason: String },
    #[error("listener {id}: cannot open {path}: {reason}")]
    Listener {
        id: String,
        path: String,
        reason: String,
    },
}

/// One middleware of a chain.
#[derive(Debug, Clone)]
pub(crate) enum Middleware {
    ApiKeyAuth(Arc<ApiKeyAuth>),
    RateLimit(Arc<RateLimit>),
    ResponseCache(Arc<ResponseCache>),
}

impl Middleware {
    fn id(&self) -> &Arc<str> {
        match self {
            Middleware::ApiKeyAuth(m) => &m.id,
            Middleware::RateLimit(m) => &m.id,
            Middleware::ResponseCache(m) => &m.id,
        }
    }

    fn stats(&self) -> &Arc<MiddlewareStats> {
        match self {
            Middleware::ApiKeyAuth(m) => &m.stats,
            Middleware::RateLimit(m) => &m.stats,
            Middleware::ResponseCache(m) => &m.stats,
        }
    }

    fn builder(&self) -> &'static str {
        match self {
            Middleware::ApiKeyAuth(_) => "api-key-auth",
            Middleware::RateLimit(_) => "rate-limit",
            Middleware::ResponseCache(_) => "response-cache",
        }
    }
}

/// Everything one domain's configuration asks for in middleware and listeners, built once
/// per configuration and shared by every table built from it (ramp steps included), so
/// memory stores, Redis connections and counters are not rebuilt by a table swap.
#[derive(Debug)]
pub(crate) struct DomainMiddleware {
    domain: String,
    /// Chain order.
    entries: Vec<Middleware>,
    listeners: Vec<Arc<AccessLog>>,
    all_listeners: Listeners,
    stores: Stores,
    /// Whether requests need their `Client-Address` computed (a rate limit or a listener).
    needs_client_address: bool,
}

impl DomainMiddleware {
    /// An empty set (no middleware, no listeners).
    pub(crate) fn empty(domain: &str) -> DomainMiddleware {
        DomainMiddleware {
            domain: domain.to_owned(),
            entries: Vec::new(),
            listeners: Vec::new(),
            all_listeners: Listeners::default(),
            stores: Stores::default(),
            needs_client_address: false,
        }
    }

    /// Builds the domain's middleware, stores and listeners. From `previous` (the same
    /// domain's set in force) it keeps what did not change: stores with the same settings
    /// (Redis connections, memory contents), access-log writers to the same place, and each
    /// middleware's counters. Must run inside a Tokio runtime (Redis connects lazily).
    pub(crate) fn build(
        settings: &DomainConfig,
        previous: Option<&DomainMiddleware>,
    ) -> Result<DomainMiddleware, MiddlewareError> {
        let domain = settings.domain_name.clone();
        let stores = Stores::build(
            &settings.kvstores,
            &settings.middleware_chain,
            previous.map(|p| &p.stores),
        )?;
        let mut entries = Vec::with_capacity(settings.middleware_chain.len());
        for spec in &settings.middleware_chain {
            let stats = previous
                .and_then(|p| p.entries.iter().find(|m| *m.id().as_ref() == spec.id))
                .filter(|m| m.builder() == builder_name(&spec.builder))
                .map(|m| m.stats().clone())
                .unwrap_or_default();
            entries.push(build_one(&domain, spec, &stores, stats)?);
        }
        // API-key headers are never written to access logs, even when `log` names them.
        let redacted: Vec<http::HeaderName> = settings
            .middleware_chain
            .iter()
            .filter_map(|m| match &m.builder {
                MiddlewareBuilder::ApiKeyAuth { header_name, .. } => {
                    http::HeaderName::from_bytes(header_name.as_bytes()).ok()
                }
                _ => None,
            })
            .collect();
        let mut listeners = Vec::with_capacity(settings.listeners.len());
        for spec in &settings.listeners {
            let ListenerBuilder::AccessLog { path } = &spec.builder;
            let kept = previous.and_then(|p| {
                p.listeners
                    .iter()
                    .find(|l| l.id.eq_ignore_ascii_case(&spec.id) && l.path() == path.as_deref())
            });
            let log = match kept {
                Some(log) => log.reconfigured(&settings.log, redacted.clone()),
                None => AccessLog::start(&spec.id, path.clone(), &settings.log, redacted.clone())
                    .map_err(|reason| MiddlewareError::Listener {
                    id: spec.id.clone(),
                    path: path
                        .as_ref()
                        .map_or("stdout".to_owned(), |p| p.display().to_string()),
                    reason,
                })?,
            };
            listeners.push(Arc::new(log));
        }
        let needs_client_address = !listeners.is_empty()
            || entries
                .iter()
                .any(|m| matches!(m, Middleware::RateLimit(_)));
        Ok(DomainMiddleware {
            all_listeners: Listeners::new(listeners.clone()),
            domain,
            entries,
            listeners,
            stores,
            needs_client_address,
        })
    }

    /// The chain of a group whose endpoints disabled `disabled` (lower-cased ids).
    pub(crate) fn chain_for(&self, disabled: &[String]) -> Chain {
        Chain {
            entries: self
                .entries
                .iter()
                .filter(|m| !disabled.iter().any(|d| d.eq_ignore_ascii_case(m.id())))
                .cloned()
                .collect(),
        }
    }

    /// The listeners of a group whose endpoints disabled `disabled`.
    pub(crate) fn listeners_for(&self, disabled: &[String]) -> Listeners {
        if disabled.is_empty() {
            return self.all_listeners.clone();
        }
        Listeners::new(
            self.listeners
                .iter()
                .filter(|l| !disabled.iter().any(|d| d.eq_ignore_ascii_case(&l.id)))
                .cloned()
                .collect(),
        )
    }

    /// Every listener of the domain (for requests that matched no endpoint).
    pub(crate) fn listeners(&self) -> &Listeners {
        &self.all_listeners
    }

    /// Whether requests of this domain need their `Client-Address`.
    pub(crate) fn needs_client_address(&self) -> bool {
        self.needs_client_address
    }

    /// Reopens every access-log file (SIGUSR1, after log rotation).
    pub(crate) fn reopen_logs(&self) {
        for log in &self.listeners {
            log.reopen();
        }
    }

    /// The ids of the chain and the listeners, for `/healthcheck`.
    pub(crate) fn describe(&self) -> (Vec<&str>, Vec<&str>) {
        (
            self.entries.iter().map(|m| m.id().as_ref()).collect(),
            self.listeners.iter().map(|l| l.id.as_str()).collect(),
        )
    }

    /// Prometheus samples of the domain's middleware and listeners (no `# HELP` lines: the
    /// caller writes those once, from [`render_help`]).
    pub(crate) fn render_metrics(&self, out: &mut String) {
        let domain = crate::metrics::label(&self.domain);
        for entry in &self.entries {
            entry
                .stats()
                .render(out, &domain, &crate::metrics::label(entry.id()));
        }
        for log in &self.listeners {
            let dropped = log.dropped();
            let _ = writeln!(
                out,
                "{}{{domain=\"{domain}\",listener=\"{}\"}} {dropped}",
                crate::names::ACCESS_LOG_DROPPED_TOTAL,
                crate::metrics::label(&log.id)
            );
        }
    }
}

/// `# HELP` / `# TYPE` lines of the middleware metrics.
pub(crate) fn render_help(out: &mut String) {
    stats::render_help(out);
    let name = crate::names::ACCESS_LOG_DROPPED_TOTAL;
    let _ = writeln!(
        out,
        "# HELP {name} Access-log lines dropped because the writer fell behind.\n# TYPE {name} counter"
    );
}

fn builder_name(builder: &MiddlewareBuilder) -> &'static str {
    match builder {
        MiddlewareBuilder::ApiKeyAuth { .. } => "api-key-auth",
        MiddlewareBuilder::RateLimit { .. } => "rate-limit",
        MiddlewareBuilder::ResponseCache { .. } => "response-cache",
    }
}

fn build_one(
    domain: &str,
    spec: &MiddlewareSpec,
    stores: &Stores,
    stats: Arc<MiddlewareStats>,
) -> Result<Middleware, MiddlewareError> {
    let id: Arc<str> = Arc::from(spec.id.as_str());
    let invalid = |reason: String| MiddlewareError::Invalid {
        id: spec.id.clone(),
        reason,
    };
    Ok(match &spec.builder {
        MiddlewareBuilder::ApiKeyAuth {
            header_name,
            allowed,
            case_sensitive,
            strip_header,
        } => Middleware::ApiKeyAuth(Arc::new(
            ApiKeyAuth::build(
                id,
                spec.sla,
                header_name,
                allowed,
                *case_sensitive,
                *strip_header,
                stats,
            )
            .map_err(invalid)?,
        )),
        MiddlewareBuilder::RateLimit {
            calls_per,
            per_seconds,
            bypass_header,
            bypass_values,
            kvstore,
        } => {
            // A bypass header without values is a configuration warning (`config.warnings`),
            // printed by `buckler check` and logged at load and reload.
            Middleware::RateLimit(Arc::new(
                RateLimit::build(
                    domain,
                    id,
                    spec.sla,
                    *calls_per,
                    *per_seconds,
                    bypass_header.as_deref(),
                    bypass_values.as_deref(),
                    stores.for_middleware(&spec.id, kvstore.as_deref()),
                    stats,
                )
                .map_err(invalid)?,
            ))
        }
        MiddlewareBuilder::ResponseCache {
            kvstore,
            max_object_bytes,
        } => Middleware::ResponseCache(Arc::new(ResponseCache::build(
            domain,
            id,
            spec.sla,
            *max_object_bytes,
            stores.for_middleware(&spec.id, kvstore.as_deref()),
            stats,
        ))),
    })
}

/// The middleware an endpoint group runs, in `middleware-chain` order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chain {
    entries: Vec<Middleware>,
}

/// What the request side of a chain decided, and what the response side still has to do.
#[derive(Debug, Default)]
pub(crate) struct ChainRun {
    /// The answer of the entry that stopped the chain, if one did.
    answer: Option<Result<Response<ProxyBody>, GatewayError>>,
    /// Headers every response of this request gets (`RateLimit-*`).
    pub(crate) decorations: HeaderMap,
    /// Time spent in each entry, for the access log.
    pub(crate) timings: Vec<(Arc<str>, Duration)>,
    /// Response-side work of the entries that let the request through, in chain order.
    after: Vec<CacheAfter>,
}

/// What the chain needs besides the outbound request.
pub(crate) struct RequestInfo<'a> {
    /// `Client-Address` (computed when the domain needs it, else empty).
    pub(crate) client_address: &'a str,
    /// The domain's `request-timeout`: how long a coalesced cache miss waits for its leader.
    pub(crate) request_timeout: Duration,
}

impl Chain {
    /// Whether no middleware runs.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs the request side of every entry in order, until one answers.
    pub(crate) async fn run(&self, outbound: &mut Outbound, info: &RequestInfo<'_>) -> ChainRun {
        let mut run = ChainRun::default();
        for entry in &self.entries {
            let started = Instant::now();
            let stopped = match entry {
                Middleware::ApiKeyAuth(auth) => match auth.check(&mut outbound.headers, started) {
                    Ok(()) => false,
                    Err(error) => {
                        run.answer = Some(Err(error));
                        true
                    }
                },
                Middleware::RateLimit(limit) => {
                    match limit.decide(info.client_address, &outbound.headers).await {
                        Ok(headers) => {
                            run.decorations.extend(headers);
                            false
                        }
                        Err((headers, error)) => {
                            run.decorations.extend(headers);
                            run.answer = Some(Err(error));
                            true
                        }
                    }
                }
                Middleware::ResponseCache(cache) => {
                    match cache.lookup(outbound, info.request_timeout).await {
                        CacheStep::Answer(response) => {
                            run.answer = Some(Ok(response));
                            true
                        }
                        CacheStep::Forward(after) => {
                            run.after.push(*after);
                            false
                        }
                    }
                }
            };
            run.timings.push((entry.id().clone(), started.elapsed()));
            if stopped {
                break;
            }
        }
        run
    }
}

impl ChainRun {
    /// The answer of the entry that stopped the chain: the upstream is not asked. The
    /// response side of the entries before it is dropped with it (a cache must neither store
    /// a 429 nor put a stale entry in its place; a coalescing leader lets its followers go).
    pub(crate) fn take_answer(&mut self) -> Option<Result<Response<ProxyBody>, GatewayError>> {
        let answer = self.answer.take();
        if answer.is_some() {
            self.after.clear();
        }
        answer
    }

    /// Runs the response side, last entry first: stores or serves stale (the cache).
    pub(crate) fn finish<E>(
        self,
        mut outcome: Result<Response<ProxyBody>, E>,
    ) -> Result<Response<ProxyBody>, E> {
        for after in self.after.into_iter().rev() {
            outcome = after.finish(outcome);
        }
        outcome
    }
}

#[cfg(test)]
mod tests;
