//! Learning an upstream's endpoints: fetch its document, parse it into the normalised model,
//! turn every operation into a routable endpoint, and keep doing so every `docs-refresh`.
//! Until the first success the upstream takes no traffic; a later failure keeps the last good
//! docs. Failures retry with capped exponential backoff and jitter.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use buckler_config::{Paths, ServiceType};
use buckler_docs::Limits;
use buckler_route::{MediaType, PathTemplate};
use buckler_upstream::{Fetched, LambdaInvoker, UpstreamPool};

use crate::docs_cache::DocsCache;
use crate::publish::Publisher;
use crate::upstream::{DocsDigest, RoutableEndpoint, UpstreamDocs, UpstreamHandle};

/// How long one document fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// First retry delay after a failure; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Document loads (fetch and parse) in flight at once, process-wide. Adding a fleet of a
/// thousand upstreams otherwise wakes a thousand loads together, and the requests queued
/// behind their parsing waited ~100 ms (`benches/load/compare`, fleet measurement).
static LOADS_IN_FLIGHT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(16);
/// A load still unfinished after this long is waiting on a slow or silent upstream, not using
/// the CPU: it gives its place back and finishes outside the cap, so sixteen black-holed
/// upstreams cannot hold every other upstream's first load for the fetch timeout.
const SLOW_LOAD: Duration = Duration::from_secs(1);

/// Fetches and parses the docs of `upstream`. For single-document HTTP formats the last
/// `ETag` is sent as `If-None-Match`; `Ok(None)` means the upstream answered 304. A document
/// another upstream already serves is not parsed again: its docs are shared ([`DocsCache`]).
async fn load_docs(
    env: &LoaderEnv,
    upstream: &UpstreamHandle,
    etag: &mut Option<String>,
) -> Result<Option<Arc<UpstreamDocs>>, String> {
    let limits = env.limits;
    let (pool, paths, cache) = (&env.pool, &env.paths, &env.docs_cache);
    if let Some(target) = &upstream.lambda_target {
        let lambda = env.lambda.load_full();
        let bytes =
            crate::lambda::fetch_document(&lambda, target, &paths.swagger2, FETCH_TIMEOUT).await?;
        if bytes.len() > limits.max_bytes {
            return Err(format!("document larger than {} bytes", limits.max_bytes));
        }
        let digest = DocsDigest::of(ServiceType::Swagger2.as_str(), &[&bytes]);
        return parsed_once(cache, digest, move || {
            buckler_docs::parse_swagger2(&bytes, &limits)
        })
        .await
        .map(Some);
    }
    let Some(base) = &upstream.http_base else {
        return Err(format!(
            "{} upstreams are not supported by this build yet",
            upstream.spec.service_type
        ));
    };
    let root = format!("{}://{}", base.scheme, base.authority);
    let fetch = |path: String| {
        let url = format!("{root}{path}");
        async move {
            pool.fetch_document(&url, FETCH_TIMEOUT, limits.max_bytes)
                .await
                .map_err(|e| describe(&e))
        }
    };
    // Only a document that parsed keeps its ETag: a 304 must never stand for a bad one.
    let conditional = |path: String, etag: Option<String>| {
        let url = format!("{root}{path}");
        async move {
            pool.fetch_document_if_changed(&url, FETCH_TIMEOUT, limits.max_bytes, etag.as_deref())
                .await
                .map_err(|e| describe(&e))
        }
    };
    let service_type = upstream.spec.service_type;
    match service_type {
        ServiceType::Swagger2 | ServiceType::Openapi3 => {
            let known = etag.clone().filter(|_| upstream.docs().is_some());
            let (bytes, new_etag) = match conditional(paths.swagger2.clone(), known).await? {
                Fetched::NotModified => return Ok(None),
                Fetched::Document { body, etag } => (body, etag),
            };
            let digest = DocsDigest::of(service_type.as_str(), &[&bytes]);
            let docs = parsed_once(cache, digest, move || {
                if service_type == ServiceType::Swagger2 {
                    buckler_docs::parse_swagger2(&bytes, &limits)
                } else {
                    buckler_docs::parse_openapi3(&bytes, &limits)
                }
            })
            .await;
            *etag = if docs.is_ok() { new_etag } else { None };
            docs.map(Some)
        }
        ServiceType::Swagger1 => {
            let listing = fetch(paths.swagger1.clone()).await?;
            let apis =
                buckler_docs::swagger1_listing(&listing, &limits).map_err(|e| e.to_string())?;
            let mut declarations = Vec::with_capacity(apis.len());
            for api in apis {
                declarations.push(fetch(format!("{}{}", paths.swagger1, api)).await?.to_vec());
            }
            let mut parts: Vec<&[u8]> = vec![&listing];
            parts.extend(declarations.iter().map(|d| d.as_slice()));
            let digest = DocsDigest::of(service_type.as_str(), &parts);
            parsed_once(cache, digest, move || {
                buckler_docs::parse_swagger1(&listing, &declarations, &limits)
            })
            .await
            .map(Some)
        }
        ServiceType::Lambda => Err("a lambda upstream needs a function ARN or name".to_owned()),
    }
}

/// The docs for the document with `digest`: shared when an upstream holds them already, else
/// parsed and shared. Parsing runs on the blocking pool: a 10 MB document takes a good part of
/// a second, and the request threads must not wait for it.
async fn parsed_once<E: std::fmt::Display>(
    cache: &DocsCache,
    digest: DocsDigest,
    parse: impl FnOnce() -> Result<openapiv3::OpenAPI, E> + Send + 'static,
) -> Result<Arc<UpstreamDocs>, String> {
    if let Some(docs) = cache.get(&digest) {
        return Ok(docs);
    }
    let docs = tokio::task::spawn_blocking(move || {
        let model = parse().map_err(|e| e.to_string())?;
        routable(&model, digest)
    })
    .await
    .map_err(|_| "parsing the document panicked".to_owned())??;
    Ok(cache.share(docs))
}

/// Turns the normalised model into routable endpoints. One bad template rejects the whole
/// document: half an API is worse than a clear error.
pub fn routable(model: &openapiv3::OpenAPI, digest: DocsDigest) -> Result<UpstreamDocs, String> {
    let (title, version) = buckler_docs::service_info(model);
    let mut endpoints = Vec::new();
    for endpoint in buckler_docs::endpoints(model) {
        let template = PathTemplate::parse(&endpoint.path)
            .map_err(|e| format!("{} {}: {e}", endpoint.method, endpoint.path))?;
        let media = |types: &[String]| types.iter().filter_map(|t| MediaType::parse(t)).collect();
        endpoints.push(RoutableEndpoint {
            template,
            path: endpoint.path.clone(),
            parameters: endpoint.parameters.clone(),
            method: endpoint.method,
            consumes: media(&endpoint.consumes),
            produces: media(&endpoint.produces),
            disabled_middleware: endpoint.disabled_middleware,
            disabled_listeners: endpoint.disabled_listeners,
        });
    }
    Ok(UpstreamDocs {
        title,
        version,
        endpoints,
        digest,
    })
}

/// What a docs loader needs: the clients to fetch with, where and how often to fetch, the
/// shared parsed docs, and the publisher to ask for a table with new endpoints.
#[derive(Debug)]
pub(crate) struct LoaderEnv {
    /// The domain's upstream pool: documents are fetched as requests are sent (same trust,
    /// protocol and connect timeout).
    pub(crate) pool: UpstreamPool,
    pub(crate) lambda: Arc<ArcSwap<LambdaInvoker>>,
    pub(crate) docs_cache: Arc<DocsCache>,
    pub(crate) publisher: Arc<Publisher>,
    pub(crate) paths: Paths,
    pub(crate) refresh: Duration,
    /// The caps `docs-limits` sets on one document.
    pub(crate) limits: Limits,
}

/// `error` with every cause below it, so a `docsError` says why a connect failed (refused,
/// timed out, certificate not verified) and not only that it did. A cause already spelled out
/// by the message above it is not repeated.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        let part = current.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = current.source();
    }
    text
}

/// The parser's caps from the configuration's `docs-limits`.
pub(crate) fn limits_of(config: &buckler_config::DocsLimits) -> Limits {
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    Limits {
        max_bytes: size(config.max_bytes),
        max_paths: size(config.max_paths),
        max_operations: size(config.max_operations),
    }
}

/// Keeps `upstream`'s docs current until the task is aborted (the upstream was removed, the
/// control plane dropped, or the settings changed and a new loader took over). Publishes a new
/// table whenever the endpoints change.
pub(crate) async fn run(env: LoaderEnv, upstream: Arc<UpstreamHandle>) {
    let refresh = env.refresh;
    let mut backoff = FIRST_BACKOFF;
    let mut etag = None;
    loop {
        let loaded = {
            // Never closed, so acquiring only waits (holding no reference to the control plane).
            let permit = LOADS_IN_FLIGHT.acquire().await;
            // Boxed: a load's future is ~7 KiB, and every upstream's task would otherwise carry
            // one between loads too (7 MiB for a thousand upstreams, all moved into place and
            // faulted in when they are added).
            let mut load = Box::pin(load_docs(&env, &upstream, &mut etag));
            tokio::select! {
                loaded = &mut load => loaded,
                _ = tokio::time::sleep(SLOW_LOAD) => {
                    drop(permit);
                    load.await
                }
            }
        };
        let delay = match loaded {
            Ok(None) => {
                // 304: unchanged since the last good document.
                backoff = FIRST_BACKOFF;
                refresh
            }
            Ok(Some(docs)) => {
                backoff = FIRST_BACKOFF;
                let changed = upstream.docs().is_none_or(|old| old.digest != docs.digest);
                let first = !upstream.has_served();
                upstream.set_docs(docs);
                if changed || first {
                    warn_shadowed(&upstream, &env.paths);
                    tracing::info!(
                        upstream = upstream.identity(),
                        domain = %upstream.domain,
                        endpoints = upstream.docs().map_or(0, |d| d.endpoints.len()),
                        "upstream docs loaded"
                    );
                    env.publisher.publish_coalesced().await;
                    upstream.mark_served();
                }
                refresh
            }
            Err(error) => {
                tracing::warn!(
                    upstream = upstream.identity(),
                    domain = %upstream.domain,
                    retry_in_ms = backoff.as_millis() as u64,
                    "docs unavailable: {error}"
                );
                upstream.set_docs_error(error);
                let delay = if upstream.docs().is_some() {
                    refresh
                } else {
                    jitter(backoff)
                };
                backoff = (backoff * 2).min(MAX_BACKOFF);
                delay
            }
        };
        tokio::time::sleep(delay).await;
    }
}

/// Logs the declared `GET` templates that a local endpoint (`/healthcheck`, `/metrics`,
/// `/spec`) hides: the gateway answers those paths itself, so the upstream never sees them.
fn warn_shadowed(upstream: &UpstreamHandle, paths: &Paths) {
    let Some(docs) = upstream.docs() else { return };
    let local = [
        paths.healthcheck.as_str(),
        paths.metrics.as_str(),
        paths.spec.as_str(),
    ];
    let templates = docs
        .endpoints
        .iter()
        .filter(|e| e.method == http::Method::GET || e.method == http::Method::HEAD)
        .map(|e| &e.template);
    for (local_path, template) in buckler_route::shadowed_templates(templates, &local) {
        tracing::warn!(
            upstream = upstream.identity(),
            domain = %upstream.domain,
            template = %template,
            "GET {local_path} is the gateway's own endpoint: the upstream's route for it is never used"
        );
    }
}

/// ±20 % so a fleet of gateways does not retry in lockstep.
fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(0.8 + fastrand::f64() * 0.4)
}
