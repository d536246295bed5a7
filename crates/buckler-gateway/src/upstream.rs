//! One upstream as the gateway tracks it across tables: its spec, state, learned endpoints,
//! in-flight count and metrics. Handles are shared (`Arc`) by every table that routes to the
//! upstream, so counters and pools survive table swaps.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use buckler_config::{ServiceLocation, UpstreamSpec};
use buckler_route::{MediaType, PathTemplate};
use buckler_upstream::LambdaTarget;
use http::uri::{Authority, Scheme};
use sha2::{Digest, Sha256};

use crate::metrics::RequestStats;

/// Where an upstream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum UpstreamState {
    /// Docs not known yet: no traffic.
    Fetching = 0,
    /// Docs known: takes traffic.
    Serving = 1,
    /// The last docs fetch failed and no docs were ever known: no traffic, retrying.
    Failed = 2,
    /// Removed: finishing in-flight requests, no new ones.
    Draining = 3,
}

impl UpstreamState {
    /// The name used in the admin API and the healthcheck.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamState::Fetching => "fetching",
            UpstreamState::Serving => "serving",
            UpstreamState::Failed => "failed",
            UpstreamState::Draining => "draining",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => UpstreamState::Serving,
            2 => UpstreamState::Failed,
            3 => UpstreamState::Draining,
            _ => UpstreamState::Fetching,
        }
    }
}

/// The SHA-256 of a document's format and bytes: what identifies it in the cache, and what
/// tells a docs refresh whether anything changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DocsDigest(pub [u8; 32]);

impl DocsDigest {
    /// The digest of a document in `format` made of `parts` (a Swagger 1.2 listing and its
    /// declarations, or one Swagger 2.0 / OpenAPI 3 document). Each part is length-prefixed,
    /// so moving bytes between parts changes the digest.
    pub fn of(format: &str, parts: &[&[u8]]) -> DocsDigest {
        let mut hasher = Sha256::new();
        hasher.update((format.len() as u64).to_le_bytes());
        hasher.update(format.as_bytes());
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        DocsDigest(hasher.finalize().into())
    }
}

/// One endpoint an upstream declared, ready for the routing table.
#[derive(Debug, Clone)]
pub struct RoutableEndpoint {
    pub template: PathTemplate,
    /// The template as the document wrote it (variable names kept), base path included.
    pub path: String,
    /// Declared parameters, for the merged `/spec`.
    pub parameters: Vec<buckler_docs::Parameter>,
    pub method: http::Method,
    pub consumes: Vec<MediaType>,
    pub produces: Vec<MediaType>,
    /// `x-disabled-middleware` ids, lower-cased.
    pub disabled_middleware: Vec<String>,
    /// `x-disabled-listeners` ids, lower-cased.
    pub disabled_listeners: Vec<String>,
}

/// What an upstream's document told us.
#[derive(Debug)]
pub struct UpstreamDocs {
    pub title: String,
    pub version: String,
    pub endpoints: Vec<RoutableEndpoint>,
    /// What the docs were parsed from: shares them between upstreams serving the same
    /// document, and skips republishing an unchanged one.
    pub digest: DocsDigest,
}

/// The base an HTTP upstream's requests are sent to.
#[derive(Debug, Clone)]
pub struct HttpBase {
    pub scheme: Scheme,
    pub authority: Authority,
}

/// An upstream tracked by the gateway.
#[derive(Debug)]
pub struct UpstreamHandle {
    pub spec: UpstreamSpec,
    pub domain: String,
    /// `None` for upstreams that are not reached over HTTP.
    pub http_base: Option<HttpBase>,
    /// `Some` for Lambda upstreams.
    pub lambda_target: Option<LambdaTarget>,
    state: AtomicU8,
    served_once: AtomicBool,
    docs: ArcSwapOption<UpstreamDocs>,
    docs_error: Mutex<Option<String>>,
    in_flight: AtomicI64,
    docs_failures: AtomicU64,
    /// The configured weight (changes with the upstream set; `spec.weight` is the first one).
    target_weight: AtomicU32,
    /// The weight of the last published table, as `f64` bits.
    effective_weight: AtomicU64,
    pub stats: RequestStats,
    /// Resilience state (breakers, health-check verdict), kept here so it survives table swaps.
    pub(crate) resilience: crate::resilience::UpstreamResilience,
}

impl UpstreamHandle {
    /// A new handle in state `fetching`.
    pub fn new(spec: UpstreamSpec, domain: &str) -> Self {
        let http_base = match &spec.location {
            ServiceLocation::Http(location) => {
                let scheme = if location.normalized.starts_with("https:") {
                    Scheme::HTTPS
                } else {
                    Scheme::HTTP
                };
                let authority = location
                    .normalized
                    .split_once("://")
                    .and_then(|(_, rest)| Authority::try_from(rest).ok());
                authority.map(|authority| HttpBase { scheme, authority })
            }
            ServiceLocation::Lambda(_) => None,
        };
        let lambda_target = match &spec.location {
            ServiceLocation::Lambda(location) => Some(LambdaTarget {
                function_name: location.function_name.clone(),
                qualifier: location.qualifier.clone(),
                region: location.region.clone(),
            }),
            ServiceLocation::Http(_) => None,
        };
        let weight = spec.weight;
        UpstreamHandle {
            spec,
            domain: domain.to_owned(),
            http_base,
            lambda_target,
            state: AtomicU8::new(UpstreamState::Fetching as u8),
            served_once: AtomicBool::new(false),
            docs: ArcSwapOption::empty(),
            docs_error: Mutex::new(None),
            in_flight: AtomicI64::new(0),
            docs_failures: AtomicU64::new(0),
            target_weight: AtomicU32::new(weight),
            effective_weight: AtomicU64::new(f64::from(weight).to_bits()),
            stats: RequestStats::default(),
            resilience: crate::resilience::UpstreamResilience::default(),
        }
    }

    /// The normalised location: this upstream's identity.
    pub fn identity(&self) -> &str {
        self.spec.identity()
    }

    pub fn state(&self) -> UpstreamState {
        UpstreamState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// True once a table routing to this upstream has been published.
    pub fn has_served(&self) -> bool {
        self.served_once.load(Ordering::Acquire)
    }

    /// The current docs, if any were ever loaded.
    pub fn docs(&self) -> Option<Arc<UpstreamDocs>> {
        self.docs.load_full()
    }

    /// The last docs error, cleared by a successful load.
    pub fn docs_error(&self) -> Option<String> {
        self.docs_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    /// Requests in flight (request sent, response body not finished).
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Failed fetches or parses of the docs so far.
    pub fn docs_failures(&self) -> u64 {
        self.docs_failures.load(Ordering::Relaxed)
    }

    /// Installs freshly loaded docs; the upstream serves from the next table on. Its state
    /// says `serving` only once that table is out ([`UpstreamHandle::mark_served`]).
    pub fn set_docs(&self, docs: Arc<UpstreamDocs>) {
        self.docs.store(Some(docs));
        if let Ok(mut error) = self.docs_error.lock() {
            *error = None;
        }
        if self.state() == UpstreamState::Failed {
            self.state
                .store(UpstreamState::Fetching as u8, Ordering::Release);
        }
    }

    /// Records that a table routing to this upstream has been published, and only now calls it
    /// `serving`: before, `/healthcheck` and the admin API would say so while requests still
    /// met the previous table and got 404.
    pub fn mark_served(&self) {
        self.served_once.store(true, Ordering::Release);
        if self.state() != UpstreamState::Draining {
            self.state
                .store(UpstreamState::Serving as u8, Ordering::Release);
        }
    }

    /// Records a failed load. An upstream that has docs keeps serving with them.
    pub fn set_docs_error(&self, error: String) {
        self.docs_failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut slot) = self.docs_error.lock() {
            *slot = Some(error);
        }
        if self.docs.load().is_none() && self.state() != UpstreamState::Draining {
            self.state
                .store(UpstreamState::Failed as u8, Ordering::Release);
        }
    }

    /// Marks the upstream as removed.
    pub fn start_draining(&self) {
        self.state
            .store(UpstreamState::Draining as u8, Ordering::Release);
    }

    /// Brings a draining upstream back (it was re-added before it was dropped).
    pub fn revive(&self) {
        let state = if self.docs.load().is_some() {
            UpstreamState::Serving
        } else {
            UpstreamState::Fetching
        };
        self.state.store(state as u8, Ordering::Release);
    }

    /// The configured (target) weight.
    pub fn target_weight(&self) -> u32 {
        self.target_weight.load(Ordering::Relaxed)
    }

    pub(crate) fn set_target_weight(&self, weight: u32) {
        self.target_weight.store(weight, Ordering::Relaxed);
    }

    /// The weight the current table gives this upstream.
    pub fn effective_weight(&self) -> f64 {
        f64::from_bits(self.effective_weight.load(Ordering::Relaxed))
    }

    pub(crate) fn set_effective_weight(&self, weight: f64) {
        self.effective_weight
            .store(weight.to_bits(), Ordering::Relaxed);
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub fn begin_request(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            upstream: self.clone(),
        }
    }
}

/// Decrements the upstream's in-flight count when dropped (response body finished or abandoned).
#[derive(Debug)]
pub struct InFlightGuard {
    upstream: Arc<UpstreamHandle>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.upstream.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readiness follows the published table, not the docs: `/healthcheck` must not say ready
    /// while requests would still meet a table without the upstream's routes.
    #[test]
    fn docs_alone_do_not_make_an_upstream_ready() {
        let spec = buckler_config::parse_upstreams(
            r#"[{"serviceType": "swagger2", "serviceLocation": "http://127.0.0.1:1"}]"#,
            "test",
            &Default::default(),
        )
        .expect("valid upstream")
        .remove(0);
        let handle = UpstreamHandle::new(spec, "*");
        handle.set_docs(Arc::new(UpstreamDocs {
            title: "t".into(),
            version: "1".into(),
            endpoints: Vec::new(),
            digest: DocsDigest([1; 32]),
        }));
        assert_eq!(
            handle.state(),
            UpstreamState::Fetching,
            "serving before any table routes to it"
        );
        assert!(!handle.has_served(), "ready before any table routes to it");
        handle.mark_served();
        assert!(handle.has_served());
        assert_eq!(handle.state(), UpstreamState::Serving);
    }
}
