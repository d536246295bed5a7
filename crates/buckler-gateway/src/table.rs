//! The immutable runtime table: everything a request needs, built once per change and
//! published with one atomic swap. Requests hold the `Arc` they started with, so a swap never
//! disturbs a request in flight.

use std::collections::HashMap;
use std::sync::Arc;

use buckler_balance::WeightedPicker;
use buckler_config::{Config, DomainConfig};
use buckler_route::{MediaType, Negotiable, PathTemplate, RoutingTable, RoutingTableBuilder};

use crate::metrics::RequestStats;
use crate::middleware::{Chain, DomainMiddleware, Listeners};
use crate::upstream::{UpstreamDocs, UpstreamHandle, UpstreamState};

/// The whole gateway's routing state at one instant.
#[derive(Debug)]
pub struct RuntimeTable {
    pub config: Arc<Config>,
    /// Increases by one with every publish.
    pub generation: u64,
    /// Looked up on every request: a fast hasher (host names are not attacker-chosen keys
    /// here; the set is fixed by the config).
    domains: HashMap<String, Arc<DomainTable>, foldhash::fast::RandomState>,
    wildcard: Option<Arc<DomainTable>>,
    /// Every domain in configuration order, for listings.
    ordered: Vec<Arc<DomainTable>>,
}

/// One domain's routes and upstreams.
#[derive(Debug)]
pub struct DomainTable {
    pub settings: DomainConfig,
    /// Each group behind an `Arc`, so a request on its way to an upstream can hold its own.
    pub routes: RoutingTable<Arc<EndpointGroup>>,
    /// Every upstream of the domain, whatever its state, in configuration order.
    pub upstreams: Vec<Arc<UpstreamHandle>>,
    /// Responses the gateway made itself for this domain (404, 405, ...).
    pub local_stats: Arc<RequestStats>,
    /// The retry budget and counts, kept across tables by the control plane.
    pub(crate) resilience: Arc<crate::resilience::DomainResilience>,
    /// The domain's middleware, stores and listeners, built once per configuration.
    pub(crate) middleware: Arc<DomainMiddleware>,
    /// The pool its HTTP upstreams are reached through (`connect-timeout`, `upstream-ca`,
    /// `upstream-protocol`); `None` (tables built with [`DomainInput::new`]): the shared
    /// client's default pool.
    pub(crate) pool: Option<buckler_upstream::UpstreamPool>,
}

/// The upstreams that serve one (template, method), with their weighted picker.
#[derive(Debug)]
pub struct EndpointGroup {
    pub candidates: Vec<Candidate>,
    pub picker: WeightedPicker,
    /// The middleware its requests run through, compiled when the table is built.
    pub(crate) middleware: Chain,
    /// The listeners its requests report to (the domain's, minus `x-disabled-listeners`).
    pub(crate) listeners: Listeners,
    /// The template as the first candidate's document wrote it (for access logs).
    pub(crate) template: Arc<str>,
}

/// One upstream inside an endpoint group, with the media types it declared there.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub upstream: Arc<UpstreamHandle>,
    /// Effective weight in this table (fractional during a ramp, 0 while draining).
    pub weight: f64,
    pub consumes: Vec<MediaType>,
    pub produces: Vec<MediaType>,
    /// The upstream's breakers and this endpoint's, resolved when the table is built (never
    /// looked up by name per request).
    pub(crate) breakers: crate::resilience::CandidateBreakers,
}

impl Negotiable for Candidate {
    fn consumes(&self) -> &[MediaType] {
        &self.consumes
    }
    fn produces(&self) -> &[MediaType] {
        &self.produces
    }
}

/// What a domain contributes to a table build: its upstreams with the effective weight each
/// has in this table.
#[derive(Debug)]
pub struct DomainInput<'a> {
    pub settings: &'a DomainConfig,
    pub upstreams: Vec<(Arc<UpstreamHandle>, f64)>,
    pub local_stats: Arc<RequestStats>,
    pub(crate) resilience: Arc<crate::resilience::DomainResilience>,
    /// The domain's middleware and listeners (none with [`DomainInput::new`]).
    pub(crate) middleware: Arc<DomainMiddleware>,
    /// The domain's upstream pool (none with [`DomainInput::new`]: the default pool).
    pub(crate) pool: Option<buckler_upstream::UpstreamPool>,
}

impl<'a> DomainInput<'a> {
    /// A domain without middleware or listeners and with fresh resilience state (benchmarks,
    /// tests); the control plane passes the ones it keeps across tables.
    pub fn new(
        settings: &'a DomainConfig,
        upstreams: Vec<(Arc<UpstreamHandle>, f64)>,
        local_stats: Arc<RequestStats>,
    ) -> Self {
        DomainInput {
            settings,
            upstreams,
            local_stats,
            resilience: crate::resilience::DomainResilience::for_settings(None, settings),
            middleware: Arc::new(DomainMiddleware::empty(&settings.domain_name)),
            pool: None,
        }
    }
}

impl RuntimeTable {
    /// Builds a table: for each domain, the endpoints of every `serving` upstream grouped by
    /// equivalent template and method.
    pub fn build(config: Arc<Config>, generation: u64, inputs: Vec<DomainInput<'_>>) -> Self {
        let mut domains = HashMap::default();
        let mut wildcard = None;
        let mut ordered = Vec::new();
        for input in inputs {
            let table = Arc::new(DomainTable {
                settings: input.settings.clone(),
                routes: build_routes(input.settings, &input.upstreams, &input.middleware),
                upstreams: input.upstreams.into_iter().map(|(u, _)| u).collect(),
                local_stats: input.local_stats,
                resilience: input.resilience,
                middleware: input.middleware,
                pool: input.pool,
            });
            if table.settings.domain_name == "*" {
                wildcard = Some(table.clone());
            } else {
                domains.insert(table.settings.domain_name.clone(), table.clone());
            }
            ordered.push(table);
        }
        RuntimeTable {
            config,
            generation,
            domains,
            wildcard,
            ordered,
        }
    }

    /// The domain serving `host` (already lower-cased, without port), falling back to `*`.
    pub fn domain_for(&self, host: Option<&str>) -> Option<&Arc<DomainTable>> {
        host.and_then(|host| self.domains.get(host))
            .or(self.wildcard.as_ref())
    }

    /// Every domain in configuration order.
    pub fn domains(&self) -> &[Arc<DomainTable>] {
        &self.ordered
    }
}

fn build_routes(
    settings: &DomainConfig,
    upstreams: &[(Arc<UpstreamHandle>, f64)],
    middleware: &DomainMiddleware,
) -> RoutingTable<Arc<EndpointGroup>> {
    let breaker_config = crate::resilience::breaker_config(&settings.circuit_breaker);
    // Every ramp step runs this over every endpoint of every upstream, so it borrows from the
    // docs instead of copying: the docs are held here for the whole build.
    let routable: Vec<(&Arc<UpstreamHandle>, f64, Arc<UpstreamDocs>)> = upstreams
        .iter()
        // Every upstream with docs is a candidate: a serving one; one whose first docs just
        // loaded (this table is the one that makes it serve: `mark_served` follows the swap, so
        // the admin API never says `serving` before requests can reach it); and a draining one,
        // which the picker leaves alone while any other candidate of a group can serve.
        .filter_map(|(upstream, weight)| Some((upstream, *weight, upstream.docs()?)))
        .collect();
    // (canonical template, method) -> index into `groups`; the Vec keeps build order stable.
    let mut index: HashMap<(&str, &http::Method), usize, foldhash::fast::RandomState> =
        HashMap::default();
    let mut groups: Vec<(&PathTemplate, &http::Method, Vec<Candidate>, Disabled<'_>)> = Vec::new();
    for (upstream, weight, docs) in &routable {
        for endpoint in &docs.endpoints {
            let key = (endpoint.template.canonical(), &endpoint.method);
            let slot = *index.entry(key).or_insert_with(|| {
                groups.push((
                    &endpoint.template,
                    &endpoint.method,
                    Vec::new(),
                    Disabled::new(&endpoint.path),
                ));
                groups.len() - 1
            });
            // Middleware or listeners disabled by any candidate endpoint are off for the group.
            groups[slot].3.add(endpoint);
            let candidates = &mut groups[slot].2;
            let candidate = Candidate {
                upstream: Arc::clone(upstream),
                weight: *weight,
                consumes: endpoint.consumes.clone(),
                produces: endpoint.produces.clone(),
                breakers: crate::resilience::CandidateBreakers::resolve(
                    &upstream.resilience,
                    breaker_config,
                    &format!("{} {}", endpoint.method, endpoint.template.canonical()),
                ),
            };
            // One document may declare equivalent templates twice (`/u/{id}`, `/u/{uid}`):
            // the upstream still counts once in the group.
            match candidates
                .iter_mut()
                .find(|c| Arc::ptr_eq(&c.upstream, upstream))
            {
                Some(existing) => *existing = candidate,
                None => candidates.push(candidate),
            }
        }
    }
    let mut builder = RoutingTableBuilder::new();
    for (template, method, candidates, disabled) in groups {
        let weights: Vec<f64> = candidates.iter().map(|c| c.weight).collect();
        // SPEC §4: a draining upstream takes a new request only when no other candidate can,
        // even one ramping up from weight 0.
        let draining: Vec<bool> = candidates
            .iter()
            .map(|c| c.upstream.state() == UpstreamState::Draining)
            .collect();
        builder.group_mut(template.clone(), method.clone(), || {
            Arc::new(EndpointGroup {
                picker: WeightedPicker::with_draining(&weights, &draining, 0),
                candidates,
                middleware: middleware.chain_for(&disabled.middleware),
                listeners: middleware.listeners_for(&disabled.listeners),
                template: Arc::from(disabled.template),
            })
        });
    }
    builder.build()
}

/// What the endpoints of one group turned off, and the template to log it under.
struct Disabled<'a> {
    template: &'a str,
    middleware: Vec<String>,
    listeners: Vec<String>,
}

impl<'a> Disabled<'a> {
    fn new(template: &'a str) -> Self {
        Disabled {
            template,
            middleware: Vec::new(),
            listeners: Vec::new(),
        }
    }

    fn add(&mut self, endpoint: &crate::upstream::RoutableEndpoint) {
        for id in &endpoint.disabled_middleware {
            if !self.middleware.contains(id) {
                self.middleware.push(id.clone());
            }
        }
        for id in &endpoint.disabled_listeners {
            if !self.listeners.contains(id) {
                self.listeners.push(id.clone());
            }
        }
    }
}
