//! The control plane: owns the configuration and the upstream handles of every domain, and
//! publishes a fresh [`RuntimeTable`] whenever anything changes. Every way in — the domain's
//! source (static config, `upstreams-file`, etcd key), the admin API (which writes to that
//! source), SIGHUP reloads — goes through the same validate → plan → execute → publish path.
//!
//! ```text
//! source watch (static, file, etcd) ─┐
//! admin PUT ─▶ source.write ─────────┼─▶ plan::plan (pure) ─▶ Control::execute ─▶ publish ─▶ ArcSwap<RuntimeTable>
//! reload (SIGHUP, admin) ────────────┘        ▲                   │ spawns
//!                                             │                   ├─ docs loaders (docs_loader)
//!                                     ramps::drive (steps)        └─ drainers (drain)
//! ```
//!
//! Ramps are anchored to the change's recorded time and starting weights when the source has
//! them (etcd's `KEY/meta`), so every instance of a fleet moves in step (SPEC §11).

mod drain;
pub(crate) mod plan;
mod ramps;
mod sources;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use buckler_balance::RampSchedule;
use buckler_balance::WeightRamp;
use buckler_config::{Config, ConfigErrors, DomainConfig, Secret, UpstreamSpec};
use buckler_discovery::{
    ChangeMeta, RejectReason, Revision, Snapshot, SourceEvent, SourceOptions, WriteError,
};
use buckler_upstream::{HttpUpstreamClient, LambdaInvoker, UpstreamPool};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::docs_cache::DocsCache;
use crate::docs_loader::{self, LoaderEnv};
use crate::metrics::RequestStats;
use crate::middleware::{DomainMiddleware, MiddlewareError};
use crate::publish::{self, Publish, Publisher};
use crate::table::{DomainInput, RuntimeTable};
use crate::upstream::{UpstreamHandle, UpstreamState};
use crate::upstream_client::DomainClient;
use plan::{Anchor, Current, Step};
pub(crate) use sources::SourceView;
use sources::{DomainSource, Opened};

/// Where the ramp clock starts: a year, so a change recorded up to a year before this
/// process started (an instance joining a long ramp) still has a place on the clock.
const RAMP_CLOCK_START: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why the gateway could not be set up from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("domain {domain}: {reason}")]
    Upstreams { domain: String, reason: String },
    #[error("admin.token: environment variable {0} is not set")]
    MissingToken(String),
    #[error("domain {domain}: {source}")]
    Middleware {
        domain: String,
        #[source]
        source: MiddlewareError,
    },
    /// The domain's `upstream-ca` bundle cannot be read or used (the message names the file).
    #[error("domain {domain}: {source}")]
    UpstreamCa {
        domain: String,
        #[source]
        source: crate::upstream_client::UpstreamCaError,
    },
}

/// Why a change was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no domain named {0:?}")]
    UnknownDomain(String),
    #[error("{0}")]
    Invalid(ConfigErrors),
    #[error("{0}")]
    Setup(#[from] SetupError),
    /// The source moved on since this instance last heard from it (admin API: 409).
    #[error("{0}")]
    Conflict(String),
    /// The source cannot be reached or written (admin API: 503).
    #[error("{0}")]
    Unavailable(String),
}

impl From<WriteError> for ChangeError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Invalid(errors) => ChangeError::Invalid(errors),
            conflict @ WriteError::Conflict { .. } => ChangeError::Conflict(conflict.to_string()),
            WriteError::Unavailable(reason) => ChangeError::Unavailable(reason),
        }
    }
}

/// What a change of an upstream set did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UpstreamDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub reweighted: Vec<String>,
    pub revived: Vec<String>,
    pub unchanged: Vec<String>,
}

/// What a configuration reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Domains kept, added and removed, in words.
    pub summary: String,
    /// Keys that changed but take effect only at the next restart (`listen`, `admin.listen`,
    /// `tls.listen`, `workers`): everything else was applied.
    pub restart_required: Vec<&'static str>,
    /// Certificate pairs refused (each line names its file); their old pairs stay in use.
    pub refused: Vec<String>,
}

impl std::fmt::Display for ReloadOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary)?;
        if !self.restart_required.is_empty() {
            write!(
                f,
                "; changed but not applied until restart: {}",
                self.restart_required.join(", ")
            )?;
        }
        if !self.refused.is_empty() {
            write!(f, "; {}", self.refused.join("; "))?;
        }
        Ok(())
    }
}

/// The control plane. Request handling only ever reads [`Control::table`] (and the reloadable
/// settings beside it: the admin token, the Lambda invoker).
#[derive(Debug)]
pub struct Control {
    table: ArcSwap<RuntimeTable>,
    state: Mutex<ControlState>,
    client: HttpUpstreamClient,
    /// Replaced by a reload that changes `lambda.endpoint-url`.
    lambda: Arc<ArcSwap<LambdaInvoker>>,
    /// The admin API's bearer token, re-read on every reload (so rotating it takes one).
    admin_token: ArcSwap<Option<Arc<str>>>,
    ready: AtomicBool,
    /// Origin of the ramp clock. Tokio's clock, so tests can pause and advance it.
    origin: tokio::time::Instant,
    /// Wakes the ramp driver when ramps change.
    ramps_changed: Arc<Notify>,
    publisher: Arc<Publisher>,
    /// Parsed docs shared between upstreams serving the same document.
    docs_cache: Arc<DocsCache>,
    reloads_ok: AtomicU64,
    reloads_error: AtomicU64,
    /// Every domain's source, for `/healthcheck` (replaced when sources are opened).
    sources: ArcSwap<Vec<SourceView>>,
    source_options: SourceOptions,
    next_source_id: AtomicU64,
    /// One reload at a time: sources are opened before the state is locked.
    reloading: tokio::sync::Mutex<()>,
    /// The client listeners' reloadable state (timeouts, connection cap, certificates),
    /// attached once they are built.
    listeners: OnceLock<Arc<dyn ClientListeners>>,
}

/// What a reload changes on the client listeners (`listen/` implements it; a trait so the
/// control plane does not depend on the listeners).
pub(crate) trait ClientListeners: std::fmt::Debug + Send + Sync {
    /// Applies a validated configuration (timeouts, connection cap, certificates, with
    /// blocking file reads). Returns one line per certificate pair refused.
    fn apply(&self, config: &Config) -> Vec<String>;
    /// Appends the listeners' metric samples to a Prometheus text page.
    fn render_metrics(&self, out: &mut String);
}

#[derive(Debug)]
struct ControlState {
    config: Arc<Config>,
    domains: Vec<DomainState>,
    generation: u64,
}

#[derive(Debug)]
struct DomainState {
    settings: DomainConfig,
    upstreams: Vec<Tracked>,
    local_stats: Arc<RequestStats>,
    source: DomainSource,
    resilience: Arc<crate::resilience::DomainResilience>,
    /// Middleware, stores and listeners of the configuration in force.
    middleware: Arc<DomainMiddleware>,
    /// The pool its upstreams are reached through, for the configuration in force.
    client: DomainClient,
}

/// One upstream of a domain with its ramp and background tasks.
#[derive(Debug)]
struct Tracked {
    handle: Arc<UpstreamHandle>,
    ramp: WeightRamp,
    loader: AbortHandle,
    drainer: Option<AbortHandle>,
    /// The active health check's probe task, when the domain has one.
    health: Option<AbortHandle>,
}

impl Tracked {
    fn stop(&self) {
        self.loader.abort();
        if let Some(health) = &self.health {
            health.abort();
        }
        if let Some(drainer) = &self.drainer {
            drainer.abort();
        }
    }
}

impl Publish for Control {
    fn publish(&self) {
        Control::publish(self);
    }
}

impl Control {
    /// Sets up every domain of `config` and starts loading upstream docs. `static` and `file`
    /// sources are read first (a missing or invalid file fails the start); an `etcd` domain
    /// starts empty and fills once etcd answers. Must run inside a tokio runtime.
    pub async fn start(
        config: Config,
        client: HttpUpstreamClient,
    ) -> Result<Arc<Control>, SetupError> {
        Control::start_with(config, client, SourceOptions::default()).await
    }

    /// [`Control::start`] with other source settings (poll interval, etcd timeouts).
    pub async fn start_with(
        config: Config,
        client: HttpUpstreamClient,
        source_options: SourceOptions,
    ) -> Result<Arc<Control>, SetupError> {
        let mut initial = Vec::with_capacity(config.domains.len());
        for domain in &config.domains {
            initial.push(sources::open(domain, &config.lambda, &source_options).await?);
        }
        let token = admin_token(&config)?;
        let middleware = build_middleware(&config, |_| None)?;
        let clients = build_clients(&config, &client, |_| None)?;
        let control = Arc::new(Control {
            table: ArcSwap::from_pointee(RuntimeTable::build(
                Arc::new(config.clone()),
                0,
                Vec::new(),
            )),
            lambda: Arc::new(ArcSwap::from_pointee(LambdaInvoker::new(
                config.lambda.endpoint_url.clone(),
            ))),
            admin_token: ArcSwap::from_pointee(token),
            state: Mutex::new(ControlState {
                config: Arc::new(config),
                domains: Vec::new(),
                generation: 0,
            }),
            client,
            ready: AtomicBool::new(false),
            origin: tokio::time::Instant::now(),
            ramps_changed: Arc::new(Notify::new()),
            publisher: Publisher::new(),
            docs_cache: Arc::new(DocsCache::default()),
            reloads_ok: AtomicU64::new(0),
            reloads_error: AtomicU64::new(0),
            sources: ArcSwap::from_pointee(Vec::new()),
            source_options,
            next_source_id: AtomicU64::new(1),
            reloading: tokio::sync::Mutex::new(()),
            listeners: OnceLock::new(),
        });
        {
            let mut state = control.lock();
            let config = state.config.clone();
            for (((settings, opened), middleware), client) in config
                .domains
                .iter()
                .zip(initial)
                .zip(middleware)
                .zip(clients)
            {
                let domain = control.new_domain(settings, opened, middleware, client, &config);
                state.domains.push(domain);
            }
            control.store_sources(&state);
            control.publish_locked(&mut state);
        }
        tokio::spawn(ramps::drive(
            Arc::downgrade(&control),
            control.ramps_changed.clone(),
        ));
        tokio::spawn(publish::serve(
            Arc::downgrade(&control),
            control.publisher.clone(),
        ));
        Ok(control)
    }

    /// The table to serve the next request with.
    pub fn table(&self) -> Arc<RuntimeTable> {
        self.table.load_full()
    }

    /// The current table, borrowed for one synchronous step (routing a request): no reference
    /// count is taken, two atomic operations fewer than `table()`.
    pub(crate) fn table_guard(&self) -> arc_swap::Guard<Arc<RuntimeTable>> {
        self.table.load()
    }

    /// The shared upstream client.
    pub fn client(&self) -> &HttpUpstreamClient {
        &self.client
    }

    /// The Lambda invoker of the configuration in force (one SDK client per region).
    pub fn lambda(&self) -> Arc<LambdaInvoker> {
        self.lambda.load_full()
    }

    /// The admin token of the configuration in force (`None`: the admin API is open).
    pub fn admin_token(&self) -> Option<Arc<str>> {
        self.admin_token.load().as_ref().clone()
    }

    /// Time on the ramp clock (it starts at [`RAMP_CLOCK_START`]).
    fn now(&self) -> Duration {
        RAMP_CLOCK_START + self.origin.elapsed()
    }

    /// The instant a ramp-clock time falls on.
    fn instant_at(&self, at: Duration) -> tokio::time::Instant {
        self.origin + at.saturating_sub(RAMP_CLOCK_START)
    }

    /// Where on the ramp clock the ramps of `snapshot` start, and from which weights.
    fn anchor_of<'a>(&self, snapshot: &'a Snapshot) -> Anchor<'a> {
        let age = snapshot.anchor_age(SystemTime::now());
        Anchor {
            started_at: Some(self.now().saturating_sub(age)),
            from: snapshot.meta.as_ref().map(|meta| &meta.from),
        }
    }

    /// Every domain's source with its status, for `/healthcheck`.
    pub(crate) fn sources(&self) -> Arc<Vec<SourceView>> {
        self.sources.load_full()
    }

    /// Why some domain has nothing to serve from its source yet (etcd not answering at
    /// start, key missing), if one has not.
    pub(crate) fn waiting_reason(&self) -> Option<String> {
        self.sources
            .load()
            .iter()
            .find_map(SourceView::waiting_reason)
    }

    fn store_sources(&self, state: &ControlState) {
        let views = state
            .domains
            .iter()
            .map(|d| d.source.view(&d.settings.domain_name))
            .collect();
        self.sources.store(Arc::new(views));
    }

    fn lock(&self) -> MutexGuard<'_, ControlState> {
        // A panic while holding the lock cannot leave the state half-changed in a way that
        // matters more than stopping would: keep serving with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Rebuilds the table from the current upstream states and weights and swaps it in.
    pub fn publish(&self) {
        let mut state = self.lock();
        self.publish_locked(&mut state);
    }

    /// Returns once a table that includes every change made before this call is published
    /// (see [`Publisher::publish_coalesced`]).
    pub async fn publish_coalesced(&self) {
        self.publisher.publish_coalesced().await;
    }

    fn publish_locked(&self, state: &mut ControlState) {
        state.generation += 1;
        let now = self.now();
        let inputs = state
            .domains
            .iter()
            .map(|domain| DomainInput {
                settings: &domain.settings,
                upstreams: domain
                    .upstreams
                    .iter()
                    .map(|tracked| {
                        let weight = tracked.ramp.effective(now);
                        tracked.handle.set_effective_weight(weight);
                        (tracked.handle.clone(), weight)
                    })
                    .collect(),
                local_stats: domain.local_stats.clone(),
                resilience: domain.resilience.clone(),
                middleware: domain.middleware.clone(),
                pool: Some(domain.client.pool().clone()),
            })
            .collect();
        let table = RuntimeTable::build(state.config.clone(), state.generation, inputs);
        tracing::debug!(generation = table.generation, "publishing routing table");
        self.table.store(Arc::new(table));
    }

    /// True once every configured upstream has been serving at least once and every domain's
    /// source has given a list; stays true after (a readiness latch, as Shield's healthcheck
    /// had). `/healthcheck` also answers 503 while [`Control::waiting_reason`] has a reason.
    pub fn is_ready(&self) -> bool {
        if self.ready.load(Ordering::Acquire) {
            return true;
        }
        if self.waiting_reason().is_some() {
            return false;
        }
        let table = self.table();
        let ready = table
            .domains()
            .iter()
            .all(|domain| domain.upstreams.iter().all(|u| u.has_served()));
        if ready {
            self.ready.store(true, Ordering::Release);
        }
        ready
    }

    /// Reload counts so far: (ok, error).
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_error.load(Ordering::Relaxed),
        )
    }

    /// Hands reloads to the client listeners from now on (once; later calls are ignored).
    pub(crate) fn attach_listeners(&self, listeners: Arc<dyn ClientListeners>) {
        let _ = self.listeners.set(listeners);
    }

    /// The client listeners' state, once attached.
    pub(crate) fn listeners(&self) -> Option<&Arc<dyn ClientListeners>> {
        self.listeners.get()
    }

    /// Counts a reload (also certificate reloads caused by file changes).
    pub(crate) fn count_reload(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_error
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes a new upstream set to the domain's source and applies it at once: `static`
    /// keeps it in memory, `file` writes the file (atomically), `etcd` puts the key and its
    /// change record in one transaction, so every gateway following the source converges.
    /// The write expects the source to be at the revision this instance last heard of: if
    /// another writer got there first, nothing changes ([`ChangeError::Conflict`]). The
    /// change record holds this instance's effective weights, from which every instance
    /// ramps. Strict JSON, validated whole first.
    pub async fn write_upstreams(
        self: &Arc<Self>,
        domain_name: &str,
        body: &str,
    ) -> Result<UpstreamDiff, ChangeError> {
        let (source, id, writes) = {
            let state = self.lock();
            let domain = find_domain(&state, domain_name)?;
            (
                domain.source.source.clone(),
                domain.source.id,
                domain.source.writes.clone(),
            )
        };
        let _one_write_at_a_time = writes.lock().await;
        let (expected, meta) = {
            let state = self.lock();
            let domain = find_domain(&state, domain_name)?;
            if domain.source.id != id {
                return Err(reopened(domain_name));
            }
            let now = self.now();
            let from: BTreeMap<String, f64> = domain
                .upstreams
                .iter()
                .filter(|t| t.handle.state() != UpstreamState::Draining)
                .map(|t| (t.handle.identity().to_owned(), t.ramp.effective(now)))
                .collect();
            let meta = ChangeMeta {
                changed_at: SystemTime::now(),
                from,
            };
            (domain.source.latest.unwrap_or(Revision::Absent), meta)
        };
        let snapshot = source.write(body, expected, meta).await?;
        let mut state = self.lock();
        let config = state.config.clone();
        let index = state
            .domains
            .iter()
            .position(|d| d.settings.domain_name == domain_name && d.source.id == id)
            .ok_or_else(|| reopened(domain_name))?;
        let domain = &mut state.domains[index];
        domain.source.latest = Some(snapshot.revision);
        domain.source.applied = Some(snapshot.revision);
        let diff = self.execute(
            domain,
            snapshot.upstreams.clone(),
            &config,
            self.anchor_of(&snapshot),
        );
        self.publish_locked(&mut state);
        drop(state);
        self.ramps_changed.notify_one();
        tracing::info!(domain = domain_name, revision = %snapshot.revision, ?diff, "upstream set written");
        Ok(diff)
    }

    /// One event of a domain's source watch: a valid list is applied (ramps anchored to its
    /// recorded change); an invalid one is logged with every error and counted, and the
    /// previous set stays. Events of a source no longer attached are dropped.
    fn source_event(self: &Arc<Self>, domain_name: &str, id: u64, event: SourceEvent) {
        let mut state = self.lock();
        let config = state.config.clone();
        let Some(index) = state
            .domains
            .iter()
            .position(|d| d.settings.domain_name == domain_name && d.source.id == id)
        else {
            return;
        };
        let domain = &mut state.domains[index];
        let description = domain.source.source.describe();
        match event {
            SourceEvent::Changed(snapshot) => {
                domain.source.latest = Some(snapshot.revision);
                if domain.source.applied == Some(snapshot.revision) {
                    // The echo of this instance's own write, or a value already applied.
                    return;
                }
                let had_list = domain.source.applied.is_some();
                domain.source.applied = Some(snapshot.revision);
                let diff = self.execute(
                    domain,
                    snapshot.upstreams.clone(),
                    &config,
                    self.anchor_of(&snapshot),
                );
                self.publish_locked(&mut state);
                drop(state);
                self.ramps_changed.notify_one();
                if had_list {
                    self.count_reload(true);
                }
                tracing::info!(domain = domain_name, source = %description, revision = %snapshot.revision, recorded = snapshot.meta.is_some(), ?diff, "upstream set changed");
            }
            SourceEvent::Rejected(rejection) => {
                domain.source.latest = Some(rejection.revision);
                drop(state);
                self.count_reload(false);
                match &rejection.reason {
                    RejectReason::Invalid(errors) => {
                        for error in &errors.0 {
                            tracing::error!(domain = domain_name, source = %description, "upstream list rejected, previous set kept: {error}");
                        }
                    }
                    RejectReason::Deleted(_) => {
                        tracing::error!(domain = domain_name, source = %description, "{}", rejection.reason);
                    }
                }
            }
        }
    }

    /// Re-reads the configuration file and applies it: a complete new configuration is
    /// validated first, and on any error nothing changes. Listeners are never rebound.
    pub async fn reload(self: &Arc<Self>) -> Result<ReloadOutcome, ChangeError> {
        let _one_reload_at_a_time = self.reloading.lock().await;
        let path = self.lock().config.file.clone();
        let result = match buckler_config::load(&path) {
            Ok(config) => self.apply_config(config).await,
            Err(errors) => Err(ChangeError::Invalid(errors)),
        };
        match &result {
            Ok(outcome) => {
                self.count_reload(outcome.refused.is_empty());
                tracing::info!(file = %path.display(), "configuration reloaded: {outcome}");
            }
            Err(error) => {
                self.count_reload(false);
                for line in error.to_string().lines() {
                    tracing::error!(file = %path.display(), "configuration reload rejected: {line}");
                }
            }
        }
        result
    }

    /// Applies a validated configuration: everything but the restart-only keys, which the
    /// outcome names when they changed. A domain whose watcher (or the Lambda defaults its
    /// lists are read with) changed gets its source re-opened; the others keep following
    /// theirs (an admin write to a `static` list survives a reload that leaves it alone).
    async fn apply_config(self: &Arc<Self>, config: Config) -> Result<ReloadOutcome, ChangeError> {
        // Everything that can fail happens before the state is touched.
        let reopen: Vec<bool> = {
            let state = self.lock();
            config
                .domains
                .iter()
                .map(|settings| {
                    state
                        .domains
                        .iter()
                        .find(|d| d.settings.domain_name == settings.domain_name)
                        .is_none_or(|d| {
                            d.settings.upstream_watcher != settings.upstream_watcher
                                || d.source.lambda != config.lambda
                        })
                })
                .collect()
        };
        let mut opened: Vec<Option<Opened>> = Vec::with_capacity(reopen.len());
        for (settings, reopen) in config.domains.iter().zip(reopen) {
            opened.push(if reopen {
                Some(sources::open(settings, &config.lambda, &self.source_options).await?)
            } else {
                None
            });
        }
        let token = admin_token(&config)?;
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        // Timeouts, the connection cap and certificates, before the state is locked (blocking
        // reads of the pairs, on the blocking pool). A refused pair keeps its old one and does
        // not stop the reload.
        let refused = match self.listeners.get() {
            Some(listeners) => {
                let (listeners, new) = (listeners.clone(), config.clone());
                tokio::task::spawn_blocking(move || listeners.apply(&new))
                    .await
                    .unwrap_or_else(|error| vec![format!("certificates not reloaded: {error}")])
            }
            None => Vec::new(),
        };
        // Each domain's upstream pool (reads `upstream-ca` files): a bad bundle refuses the
        // reload, and the configuration in force keeps working.
        let previous: Vec<(String, DomainClient)> = self
            .lock()
            .domains
            .iter()
            .map(|d| (d.settings.domain_name.clone(), d.client.clone()))
            .collect();
        let clients = build_clients(&config, &self.client, |name| {
            previous
                .iter()
                .find(|(domain, _)| domain == name)
                .map(|(_, client)| client)
        })?;
        let mut state = self.lock();
        let middleware = build_middleware(&config, |name| {
            state
                .domains
                .iter()
                .find(|d| d.settings.domain_name == name)
                .map(|d| d.middleware.clone())
        })?;
        let restart_required = restart_only_changes(&state.config, &config);
        self.admin_token.store(Arc::new(token));
        if state.config.lambda.endpoint_url != config.lambda.endpoint_url {
            self.lambda.store(Arc::new(LambdaInvoker::new(
                config.lambda.endpoint_url.clone(),
            )));
        }
        // Where, how often and how much is fetched: loaders start over with the new settings.
        let paths_changed =
            state.config.paths != config.paths || state.config.docs_limits != config.docs_limits;
        let config = Arc::new(config);
        state.config = config.clone();
        let mut old: Vec<DomainState> = std::mem::take(&mut state.domains);
        let mut kept = 0;
        for (((settings, opened), middleware), client) in config
            .domains
            .iter()
            .zip(opened)
            .zip(middleware)
            .zip(clients)
        {
            let existing = old
                .iter()
                .position(|d| d.settings.domain_name == settings.domain_name);
            match (existing, opened) {
                (Some(i), opened) => {
                    let mut domain = old.swap_remove(i);
                    domain.middleware = middleware;
                    let pool_changed = !domain.client.same_pool(&client);
                    domain.client = client;
                    self.update_domain_settings(
                        &mut domain,
                        settings,
                        paths_changed || pool_changed,
                        &config,
                    );
                    if let Some(opened) = opened {
                        self.attach_source(&mut domain, &opened, &config);
                    }
                    state.domains.push(domain);
                    kept += 1;
                }
                (None, Some(opened)) => {
                    let domain = self.new_domain(settings, opened, middleware, client, &config);
                    state.domains.push(domain);
                }
                (None, None) => unreachable!("a new domain's source is always opened"),
            }
        }
        let removed = old.len();
        for domain in old {
            stop_domain(&domain);
        }
        let added = state.domains.len() - kept;
        self.store_sources(&state);
        self.publish_locked(&mut state);
        drop(state);
        self.ramps_changed.notify_one();
        for key in &restart_required {
            tracing::warn!("`{key}` changed: it is applied at the next restart, not by a reload");
        }
        Ok(ReloadOutcome {
            summary: format!("{kept} domains kept, {added} added, {removed} removed"),
            restart_required,
            refused,
        })
    }

    fn new_domain(
        self: &Arc<Self>,
        settings: &DomainConfig,
        opened: Opened,
        middleware: Arc<DomainMiddleware>,
        client: DomainClient,
        config: &Config,
    ) -> DomainState {
        let id = self.next_source_id.fetch_add(1, Ordering::Relaxed);
        let mut domain = DomainState {
            settings: settings.clone(),
            upstreams: Vec::new(),
            local_stats: Arc::new(RequestStats::default()),
            source: DomainSource::attach(self, &settings.domain_name, id, &opened),
            resilience: crate::resilience::DomainResilience::for_settings(None, settings),
            middleware,
            client,
        };
        if let Some(first) = &opened.first {
            self.execute(
                &mut domain,
                first.upstreams.clone(),
                config,
                self.anchor_of(first),
            );
        }
        domain
    }

    /// Replaces a kept domain's source with a newly opened one and applies its list (an
    /// `etcd` source's list comes through its watch).
    fn attach_source(self: &Arc<Self>, domain: &mut DomainState, opened: &Opened, config: &Config) {
        domain.source.stop();
        let id = self.next_source_id.fetch_add(1, Ordering::Relaxed);
        domain.source = DomainSource::attach(self, &domain.settings.domain_name, id, opened);
        if let Some(first) = &opened.first {
            self.execute(
                domain,
                first.upstreams.clone(),
                config,
                self.anchor_of(first),
            );
        }
    }

    /// Applies a domain's new settings. Ramps follow a new schedule (the caller re-opens the
    /// source when the watcher changed); when where or how often docs are fetched changed, or
    /// the pool they are fetched through (`fetch_changed`), every upstream's loader starts over
    /// with the new settings (an upstream keeps serving its last docs meanwhile), and a new pool
    /// restarts the health checks on it too.
    fn update_domain_settings(
        self: &Arc<Self>,
        domain: &mut DomainState,
        settings: &DomainConfig,
        fetch_changed: bool,
        config: &Config,
    ) {
        let now = self.now();
        let schedule = schedule_of(settings);
        for tracked in &mut domain.upstreams {
            tracked.ramp.reschedule(schedule, now);
        }
        let refresh_changed = domain.settings.docs_refresh != settings.docs_refresh;
        let health_changed = domain.settings.health_check != settings.health_check || fetch_changed;
        domain.resilience =
            crate::resilience::DomainResilience::for_settings(Some(&domain.resilience), settings);
        domain.settings = settings.clone();
        if health_changed {
            for tracked in &mut domain.upstreams {
                if let Some(health) = tracked.health.take() {
                    health.abort();
                }
                tracked.health =
                    self.spawn_health_check(&tracked.handle, settings, domain.client.pool());
            }
        }
        if fetch_changed || refresh_changed {
            for tracked in &mut domain.upstreams {
                tracked.loader.abort();
                tracked.loader =
                    self.spawn_loader(&tracked.handle, settings, domain.client.pool(), config);
            }
        }
    }

    /// Plans the change from the domain's tracked set to `specs` (ramps anchored at `anchor`)
    /// and carries it out.
    fn execute(
        self: &Arc<Self>,
        domain: &mut DomainState,
        specs: Vec<UpstreamSpec>,
        config: &Config,
        anchor: Anchor<'_>,
    ) -> UpstreamDiff {
        let now = self.now();
        let previous = std::mem::take(&mut domain.upstreams);
        let current: Vec<Current<'_>> = previous
            .iter()
            .map(|tracked| Current {
                identity: tracked.handle.identity(),
                service_type: tracked.handle.spec.service_type,
                draining: tracked.handle.state() == UpstreamState::Draining,
                target_weight: tracked.handle.target_weight(),
                ramp: tracked.ramp,
            })
            .collect();
        let plan = plan::plan(&current, specs, schedule_of(&domain.settings), now, anchor);
        let diff = plan.summary(&current);
        drop(current);
        let mut old: Vec<Option<Tracked>> = previous.into_iter().map(Some).collect();
        let mut upstreams = Vec::with_capacity(plan.steps.len());
        for step in plan.steps {
            let take = |old: &mut Vec<Option<Tracked>>, index: usize| {
                old[index].take().expect("a plan names each upstream once")
            };
            match step {
                Step::Add {
                    spec,
                    ramp,
                    replaces,
                } => {
                    if let Some(index) = replaces {
                        take(&mut old, index).stop();
                    }
                    let handle = Arc::new(UpstreamHandle::new(spec, &domain.settings.domain_name));
                    let pool = domain.client.pool();
                    let loader = self.spawn_loader(&handle, &domain.settings, pool, config);
                    let health = self.spawn_health_check(&handle, &domain.settings, pool);
                    upstreams.push(Tracked {
                        handle,
                        ramp,
                        loader,
                        drainer: None,
                        health,
                    });
                }
                Step::Keep { index } | Step::StillDraining { index } => {
                    upstreams.push(take(&mut old, index));
                }
                Step::Retarget {
                    index,
                    weight,
                    ramp,
                } => {
                    let mut tracked = take(&mut old, index);
                    tracked.handle.set_target_weight(weight);
                    tracked.ramp = ramp;
                    upstreams.push(tracked);
                }
                Step::Revive {
                    index,
                    weight,
                    ramp,
                } => {
                    let mut tracked = take(&mut old, index);
                    if let Some(drainer) = tracked.drainer.take() {
                        drainer.abort();
                    }
                    tracked.handle.revive();
                    tracked.handle.set_target_weight(weight);
                    tracked.ramp = ramp;
                    upstreams.push(tracked);
                }
                Step::Drain { index, ramp } => {
                    let mut tracked = take(&mut old, index);
                    tracked.handle.start_draining();
                    tracked.ramp = ramp;
                    tracked.drainer = Some(
                        tokio::spawn(drain::drain(
                            Arc::downgrade(self),
                            tracked.handle.clone(),
                            domain.settings.drain_timeout,
                        ))
                        .abort_handle(),
                    );
                    upstreams.push(tracked);
                }
            }
        }
        domain.upstreams = upstreams;
        diff
    }

    fn spawn_loader(
        self: &Arc<Self>,
        handle: &Arc<UpstreamHandle>,
        settings: &DomainConfig,
        pool: &UpstreamPool,
        config: &Config,
    ) -> AbortHandle {
        let env = LoaderEnv {
            pool: pool.clone(),
            lambda: self.lambda.clone(),
            docs_cache: self.docs_cache.clone(),
            publisher: self.publisher.clone(),
            paths: config.paths.clone(),
            refresh: settings.docs_refresh,
            limits: docs_loader::limits_of(&config.docs_limits),
        };
        tokio::spawn(docs_loader::run(env, handle.clone())).abort_handle()
    }

    /// The upstream's active health check, when its domain has `health-check`.
    fn spawn_health_check(
        &self,
        handle: &Arc<UpstreamHandle>,
        settings: &DomainConfig,
        pool: &UpstreamPool,
    ) -> Option<AbortHandle> {
        crate::health_check::spawn(pool, handle, settings.health_check.as_ref())
    }

    /// Drops a drained upstream (if it is still draining: it may have been revived).
    fn finish_drain(&self, handle: &Arc<UpstreamHandle>) {
        let mut state = self.lock();
        let mut dropped = false;
        for domain in &mut state.domains {
            if let Some(i) = domain.upstreams.iter().position(|t| {
                Arc::ptr_eq(&t.handle, handle) && t.handle.state() == UpstreamState::Draining
            }) {
                let tracked = domain.upstreams.remove(i);
                tracked.loader.abort();
                if let Some(health) = &tracked.health {
                    health.abort();
                }
                dropped = true;
            }
        }
        if dropped {
            tracing::info!(
                upstream = handle.identity(),
                in_flight = handle.in_flight(),
                "drained upstream dropped"
            );
            self.publish_locked(&mut state);
        }
    }

    /// Reopens every access-log file (SIGUSR1, after log rotation): the next line of each
    /// goes to a freshly opened file at its configured path.
    pub fn reopen_access_logs(&self) {
        let state = self.lock();
        for domain in &state.domains {
            domain.middleware.reopen_logs();
        }
    }

    /// The earliest upcoming ramp step on the ramp clock, if any ramp is moving.
    fn next_ramp_step(&self) -> Option<Duration> {
        let now = self.now();
        let state = self.lock();
        state
            .domains
            .iter()
            .flat_map(|d| d.upstreams.iter())
            .filter_map(|t| t.ramp.next_step_at(now))
            .min()
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        for domain in &state.domains {
            stop_domain(domain);
        }
    }
}

fn stop_domain(domain: &DomainState) {
    for tracked in &domain.upstreams {
        tracked.stop();
    }
    domain.source.stop();
}

fn find_domain<'a>(state: &'a ControlState, name: &str) -> Result<&'a DomainState, ChangeError> {
    state
        .domains
        .iter()
        .find(|d| d.settings.domain_name == name)
        .ok_or_else(|| ChangeError::UnknownDomain(name.to_owned()))
}

/// A reload re-opened the domain's source while a write was on its way.
fn reopened(domain: &str) -> ChangeError {
    ChangeError::Unavailable(format!(
        "domain {domain}: a reload replaced its upstream source during the write; read the list again"
    ))
}

fn schedule_of(settings: &DomainConfig) -> RampSchedule {
    RampSchedule {
        step_count: settings.upstream_weighting.step_count,
        step_duration: settings.upstream_weighting.step_duration,
    }
}

/// Every domain's middleware for `config`, reusing from `previous(domain name)` what did not
/// change (stores, access-log writers, counters).
fn build_middleware(
    config: &Config,
    previous: impl Fn(&str) -> Option<Arc<DomainMiddleware>>,
) -> Result<Vec<Arc<DomainMiddleware>>, SetupError> {
    config
        .domains
        .iter()
        .map(|settings| {
            let old = previous(&settings.domain_name);
            DomainMiddleware::build(settings, old.as_deref())
                .map(Arc::new)
                .map_err(|source| SetupError::Middleware {
                    domain: settings.domain_name.clone(),
                    source,
                })
        })
        .collect()
}

/// Every domain's upstream client for `config`, reusing from `previous(domain name)` the TLS
/// configuration (and so the pool) when `upstream-ca` and `upstream-protocol` did not change.
fn build_clients<'a>(
    config: &Config,
    client: &HttpUpstreamClient,
    previous: impl Fn(&str) -> Option<&'a DomainClient>,
) -> Result<Vec<DomainClient>, SetupError> {
    config
        .domains
        .iter()
        .map(|settings| {
            DomainClient::build(client, settings, previous(&settings.domain_name)).map_err(
                |source| SetupError::UpstreamCa {
                    domain: settings.domain_name.clone(),
                    source,
                },
            )
        })
        .collect()
}

/// The admin token `config` asks for, resolved (`env:NAME` read now).
fn admin_token(config: &Config) -> Result<Option<Arc<str>>, SetupError> {
    match config.admin.as_ref().and_then(|a| a.token.as_ref()) {
        None => Ok(None),
        Some(Secret::Literal(token)) => Ok(Some(Arc::from(token.as_str()))),
        Some(Secret::Env(name)) => std::env::var(name)
            .map(|token| Some(Arc::from(token.as_str())))
            .map_err(|_| SetupError::MissingToken(name.clone())),
    }
}

/// The restart-only keys whose values differ between `old` and `new`: a reload never rebinds
/// a listener or rebuilds the runtime.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("listen");
    }
    if old.admin.as_ref().map(|a| a.listen) != new.admin.as_ref().map(|a| a.listen) {
        changed.push("admin.listen");
    }
    if old.workers != new.workers {
        changed.push("workers");
    }
    if old.tls.as_ref().map(|t| &t.listen) != new.tls.as_ref().map(|t| &t.listen) {
        changed.push("tls.listen");
    }
    changed
}

#[cfg(test)]
mod tests;
