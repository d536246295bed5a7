//! The control plane: owns the configuration, the upstream handles and their weight ramps,
//! runs the docs loaders, drains removed upstreams, and publishes a fresh [`RuntimeTable`]
//! whenever anything changes. Every way in — static config, `upstreams-file` edits, the admin
//! API, SIGHUP reloads — goes through the same validate → diff → publish path.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use buckler_balance::{RampSchedule, WeightRamp};
use buckler_config::{Config, ConfigErrors, DomainConfig, UpstreamSpec, UpstreamWatcher};
use buckler_upstream::{HttpUpstreamClient, LambdaInvoker};
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;

use crate::docs_cache::DocsCache;
use crate::metrics::RequestStats;
use crate::table::{DomainInput, RuntimeTable};
use crate::upstream::{UpstreamHandle, UpstreamState};

/// Why the gateway could not be set up from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("domain {domain}: {reason}")]
    Upstreams { domain: String, reason: String },
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
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("{0}")]
    Unsupported(String),
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

/// The control plane. Request handling only ever calls [`Control::table`].
#[derive(Debug)]
pub struct Control {
    table: ArcSwap<RuntimeTable>,
    state: Mutex<ControlState>,
    client: HttpUpstreamClient,
    lambda: LambdaInvoker,
    ready: AtomicBool,
    /// Origin of the ramp clock.
    origin: Instant,
    /// Wakes the ramp driver when ramps change.
    ramps_changed: Arc<Notify>,
    /// Publishes asked for by docs loaders, coalesced (see [`Control::publish_coalesced`]).
    coalesced: Coalesced,
    /// Parsed docs shared between upstreams serving the same document.
    docs_cache: DocsCache,
    reloads_ok: AtomicU64,
    reloads_error: AtomicU64,
}

/// Tickets for coalesced publishes: `requested` counts the asks, `published` is the highest
/// ticket a published table is known to include.
#[derive(Debug)]
struct Coalesced {
    requested: AtomicU64,
    published: watch::Sender<u64>,
    wake: Arc<Notify>,
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
    file_watcher: Option<AbortHandle>,
}

/// One upstream of a domain with its ramp and background tasks.
#[derive(Debug)]
struct Tracked {
    handle: Arc<UpstreamHandle>,
    ramp: WeightRamp,
    loader: AbortHandle,
    drainer: Option<AbortHandle>,
}

impl Tracked {
    fn stop(&self) {
        self.loader.abort();
        if let Some(drainer) = &self.drainer {
            drainer.abort();
        }
    }
}

impl Control {
    /// Sets up every domain of `config` and starts loading upstream docs. Must run inside a
    /// tokio runtime.
    pub fn start(config: Config, client: HttpUpstreamClient) -> Result<Arc<Control>, SetupError> {
        let initial: Vec<Vec<UpstreamSpec>> = config
            .domains
            .iter()
            .map(|domain| initial_upstreams(domain, &config))
            .collect::<Result<_, _>>()?;
        let config_lambda_endpoint = config.lambda.endpoint_url.clone();
        let control = Arc::new(Control {
            table: ArcSwap::from_pointee(RuntimeTable::build(
                Arc::new(config.clone()),
                0,
                Vec::new(),
            )),
            state: Mutex::new(ControlState {
                config: Arc::new(config),
                domains: Vec::new(),
                generation: 0,
            }),
            client,
            lambda: LambdaInvoker::new(config_lambda_endpoint),
            ready: AtomicBool::new(false),
            origin: Instant::now(),
            ramps_changed: Arc::new(Notify::new()),
            coalesced: Coalesced {
                requested: AtomicU64::new(0),
                published: watch::Sender::new(0),
                wake: Arc::new(Notify::new()),
            },
            docs_cache: DocsCache::default(),
            reloads_ok: AtomicU64::new(0),
            reloads_error: AtomicU64::new(0),
        });
        {
            let mut state = control.lock();
            let config = state.config.clone();
            for (settings, specs) in config.domains.iter().zip(initial) {
                let domain = control.new_domain(settings, specs, &config);
                state.domains.push(domain);
            }
            control.publish_locked(&mut state);
        }
        tokio::spawn(drive_ramps(
            Arc::downgrade(&control),
            control.ramps_changed.clone(),
        ));
        tokio::spawn(publish_when_asked(
            Arc::downgrade(&control),
            control.coalesced.wake.clone(),
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

    /// Parsed docs, shared by the upstreams serving the same document.
    pub(crate) fn docs_cache(&self) -> &DocsCache {
        &self.docs_cache
    }

    /// The shared Lambda invoker (one SDK client per region).
    pub fn lambda(&self) -> &LambdaInvoker {
        &self.lambda
    }

    /// Time on the ramp clock.
    fn now(&self) -> Duration {
        self.origin.elapsed()
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

    /// Returns once a table that includes every change made before this call is published.
    /// Asks that arrive together share one rebuild, and rebuilds are paced (see
    /// [`publish_when_asked`]): a fleet of upstreams whose docs load at once would otherwise
    /// rebuild a growing table once per upstream, stalling requests meanwhile.
    pub async fn publish_coalesced(&self) {
        let ticket = self.coalesced.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut published = self.coalesced.published.subscribe();
        self.coalesced.wake.notify_one();
        // The sender lives as long as `self`, so this only ends with the ticket published.
        let _ = published.wait_for(|covered| *covered >= ticket).await;
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
            })
            .collect();
        let table = RuntimeTable::build(state.config.clone(), state.generation, inputs);
        tracing::debug!(generation = table.generation, "publishing routing table");
        self.table.store(Arc::new(table));
    }

    /// True once every configured upstream has been serving at least once; stays true after
    /// (a readiness latch, as Shield's healthcheck had).
    pub fn is_ready(&self) -> bool {
        if self.ready.load(Ordering::Acquire) {
            return true;
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

    fn count_reload(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_error
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Replaces a domain's upstream set: new upstreams get their weight at once, changed
    /// weights ramp, removed upstreams drain, re-added draining ones revive. Publishes once.
    pub fn replace_upstreams(
        self: &Arc<Self>,
        domain_name: &str,
        specs: Vec<UpstreamSpec>,
    ) -> Result<UpstreamDiff, ChangeError> {
        let mut state = self.lock();
        let config = state.config.clone();
        let index = state
            .domains
            .iter()
            .position(|d| d.settings.domain_name == domain_name)
            .ok_or_else(|| ChangeError::UnknownDomain(domain_name.to_owned()))?;
        let diff = self.diff_upstreams(&mut state.domains[index], specs, &config);
        self.publish_locked(&mut state);
        drop(state);
        self.ramps_changed.notify_one();
        tracing::info!(domain = domain_name, ?diff, "upstream set changed");
        Ok(diff)
    }

    /// Writes a new upstream set the way the domain's watcher expects: for `static`, applied
    /// directly; for `file`, written to the file (atomically) and applied, so every gateway
    /// watching the file converges. Strict JSON, validated whole first.
    pub fn write_upstreams(
        self: &Arc<Self>,
        domain_name: &str,
        body: &str,
    ) -> Result<UpstreamDiff, ChangeError> {
        let (watcher, lambda) = {
            let state = self.lock();
            let domain = state
                .domains
                .iter()
                .find(|d| d.settings.domain_name == domain_name)
                .ok_or_else(|| ChangeError::UnknownDomain(domain_name.to_owned()))?;
            (
                domain.settings.upstream_watcher.clone(),
                state.config.lambda.clone(),
            )
        };
        let specs = buckler_config::parse_upstreams(body, "request body", &lambda)
            .map_err(ChangeError::Invalid)?;
        match watcher {
            UpstreamWatcher::Static { .. } => {}
            UpstreamWatcher::File { path } => write_atomically(&path, body)?,
            UpstreamWatcher::Etcd { .. } => {
                return Err(ChangeError::Unsupported(
                    "the etcd upstream watcher is not supported by this build yet".to_owned(),
                ))
            }
        }
        self.replace_upstreams(domain_name, specs)
    }

    /// Re-reads the configuration file and applies it: a complete new configuration is
    /// validated first, and on any error nothing changes. Listeners are never rebound.
    pub fn reload(self: &Arc<Self>) -> Result<String, ChangeError> {
        let path = self.lock().config.file.clone();
        let result = buckler_config::load(&path)
            .map_err(ChangeError::Invalid)
            .and_then(|config| self.apply_config(config));
        match &result {
            Ok(summary) => {
                self.count_reload(true);
                tracing::info!(file = %path.display(), "configuration reloaded: {summary}");
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

    fn apply_config(self: &Arc<Self>, config: Config) -> Result<String, ChangeError> {
        // Everything that can fail happens before the state is touched.
        let specs: Vec<Vec<UpstreamSpec>> = config
            .domains
            .iter()
            .map(|domain| initial_upstreams(domain, &config))
            .collect::<Result<_, _>>()?;
        let mut state = self.lock();
        if state.config.listen != config.listen {
            tracing::warn!(
                "`listen` changed: listeners are never rebound by a reload; restart to apply"
            );
        }
        let config = Arc::new(config);
        state.config = config.clone();
        let mut old: Vec<DomainState> = std::mem::take(&mut state.domains);
        let mut kept = 0;
        for (settings, specs) in config.domains.iter().zip(specs) {
            match old
                .iter()
                .position(|d| d.settings.domain_name == settings.domain_name)
            {
                Some(i) => {
                    let mut domain = old.swap_remove(i);
                    self.update_domain_settings(&mut domain, settings);
                    self.diff_upstreams(&mut domain, specs, &config);
                    state.domains.push(domain);
                    kept += 1;
                }
                None => {
                    let domain = self.new_domain(settings, specs, &config);
                    state.domains.push(domain);
                }
            }
        }
        let removed = old.len();
        for domain in old {
            stop_domain(&domain);
        }
        let added = state.domains.len() - kept;
        self.publish_locked(&mut state);
        drop(state);
        self.ramps_changed.notify_one();
        Ok(format!(
            "{kept} domains kept, {added} added, {removed} removed"
        ))
    }

    fn new_domain(
        self: &Arc<Self>,
        settings: &DomainConfig,
        specs: Vec<UpstreamSpec>,
        config: &Config,
    ) -> DomainState {
        let mut domain = DomainState {
            settings: settings.clone(),
            upstreams: Vec::new(),
            local_stats: Arc::new(RequestStats::default()),
            file_watcher: None,
        };
        self.diff_upstreams(&mut domain, specs, config);
        domain.file_watcher = self.spawn_file_watcher(settings);
        domain
    }

    fn update_domain_settings(self: &Arc<Self>, domain: &mut DomainState, settings: &DomainConfig) {
        let now = self.now();
        let schedule = schedule_of(settings);
        for tracked in &mut domain.upstreams {
            tracked.ramp.reschedule(schedule, now);
        }
        let watcher_changed = domain.settings.upstream_watcher != settings.upstream_watcher;
        domain.settings = settings.clone();
        if watcher_changed {
            if let Some(watcher) = domain.file_watcher.take() {
                watcher.abort();
            }
            domain.file_watcher = self.spawn_file_watcher(settings);
        }
    }

    /// The heart of every change: compare the wanted set with the tracked one.
    fn diff_upstreams(
        self: &Arc<Self>,
        domain: &mut DomainState,
        specs: Vec<UpstreamSpec>,
        config: &Config,
    ) -> UpstreamDiff {
        let now = self.now();
        let schedule = schedule_of(&domain.settings);
        let mut diff = UpstreamDiff::default();
        // Matched by hash, not by scanning: this runs on the requests' thread, and scans made
        // a `PUT` of 1,000 upstreams stall it for 15–95 ms (n² identity comparisons, n² log n
        // more to restore the order; `benches/README.md`, *Replacing a thousand upstreams*).
        let previous = std::mem::take(&mut domain.upstreams);
        let old_index: HashMap<String, usize> = previous
            .iter()
            .enumerate()
            .map(|(i, tracked)| (tracked.handle.identity().to_owned(), i))
            .collect();
        let mut old: Vec<Option<Tracked>> = previous.into_iter().map(Some).collect();
        // The wanted ones first, in the configured order (the order of listings); identities
        // are unique in a validated list.
        let mut upstreams = Vec::with_capacity(specs.len() + old.len());
        for spec in specs {
            let identity = spec.identity().to_owned();
            let weight = f64::from(spec.weight);
            let existing = old_index.get(&identity).and_then(|&i| old[i].take());
            match existing {
                Some(mut tracked) if tracked.handle.spec.service_type == spec.service_type => {
                    if tracked.handle.state() == UpstreamState::Draining {
                        // Re-added before it was dropped: it serves again at once (Shield lost it).
                        if let Some(drainer) = tracked.drainer.take() {
                            drainer.abort();
                        }
                        tracked.handle.revive();
                        tracked.handle.set_target_weight(spec.weight);
                        tracked.ramp = WeightRamp::fixed(weight, schedule);
                        diff.revived.push(identity);
                    } else if tracked.handle.target_weight() == spec.weight {
                        diff.unchanged.push(identity);
                    } else {
                        tracked.handle.set_target_weight(spec.weight);
                        tracked.ramp.retarget(weight, now);
                        diff.reweighted.push(identity);
                    }
                    upstreams.push(tracked);
                }
                replaced => {
                    // Same location under another service type: the old one is replaced.
                    if let Some(replaced) = replaced {
                        replaced.stop();
                    }
                    let handle = Arc::new(UpstreamHandle::new(spec, &domain.settings.domain_name));
                    let loader = self.spawn_loader(&handle, &domain.settings, config);
                    upstreams.push(Tracked {
                        handle,
                        ramp: WeightRamp::fixed(weight, schedule),
                        loader,
                        drainer: None,
                    });
                    diff.added.push(identity);
                }
            }
        }
        // Then the ones no longer wanted, in their old order: they drain to zero.
        for mut tracked in old.into_iter().flatten() {
            if tracked.handle.state() != UpstreamState::Draining {
                tracked.handle.start_draining();
                tracked.ramp.jump(0.0);
                tracked.drainer = Some(
                    tokio::spawn(drain(
                        Arc::downgrade(self),
                        tracked.handle.clone(),
                        domain.settings.drain_timeout,
                    ))
                    .abort_handle(),
                );
                diff.removed.push(tracked.handle.identity().to_owned());
            }
            upstreams.push(tracked);
        }
        domain.upstreams = upstreams;
        diff
    }

    fn spawn_loader(
        self: &Arc<Self>,
        handle: &Arc<UpstreamHandle>,
        settings: &DomainConfig,
        config: &Config,
    ) -> AbortHandle {
        tokio::spawn(crate::docs_loader::run(
            Arc::downgrade(self),
            self.client.clone(),
            handle.clone(),
            config.paths.clone(),
            settings.docs_refresh,
        ))
        .abort_handle()
    }

    fn spawn_file_watcher(self: &Arc<Self>, settings: &DomainConfig) -> Option<AbortHandle> {
        let UpstreamWatcher::File { path } = &settings.upstream_watcher else {
            return None;
        };
        let task = tokio::spawn(watch_file(
            Arc::downgrade(self),
            settings.domain_name.clone(),
            path.clone(),
        ));
        Some(task.abort_handle())
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

    /// The earliest upcoming ramp step, if any ramp is moving.
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
    if let Some(watcher) = &domain.file_watcher {
        watcher.abort();
    }
}

fn schedule_of(settings: &DomainConfig) -> RampSchedule {
    RampSchedule {
        step_count: settings.upstream_weighting.step_count,
        step_duration: settings.upstream_weighting.step_duration,
    }
}

fn initial_upstreams(
    settings: &DomainConfig,
    config: &Config,
) -> Result<Vec<UpstreamSpec>, SetupError> {
    let error = |reason: String| SetupError::Upstreams {
        domain: settings.domain_name.clone(),
        reason,
    };
    match &settings.upstream_watcher {
        UpstreamWatcher::Static { upstreams } => Ok(upstreams.clone()),
        UpstreamWatcher::File { path } => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                error(format!(
                    "cannot read upstreams-file {}: {e}",
                    path.display()
                ))
            })?;
            buckler_config::parse_upstreams(&text, &path.display().to_string(), &config.lambda)
                .map_err(|e| error(e.to_string()))
        }
        UpstreamWatcher::Etcd { .. } => Err(error(
            "the etcd upstream watcher is not supported by this build yet".to_owned(),
        )),
    }
}

/// Publishes a table at every ramp step, and sleeps while nothing moves.
async fn drive_ramps(control: Weak<Control>, wake: Arc<Notify>) {
    loop {
        let (next, origin) = {
            let Some(control) = control.upgrade() else {
                return;
            };
            (control.next_ramp_step(), control.origin)
        };
        // Holds no strong reference, so the control plane can still be dropped.
        let changed = wake.notified();
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until((origin + at).into()) => {
                        let Some(control) = control.upgrade() else { return };
                        control.publish();
                    }
                    _ = changed => {}
                }
            }
            None => {
                let wait = tokio::time::sleep(Duration::from_secs(1));
                tokio::select! {
                    _ = wait => {}
                    _ = changed => {}
                }
            }
        }
    }
}

/// Longest pause between two coalesced publishes.
const MAX_PUBLISH_PACE: Duration = Duration::from_millis(250);

/// Serves [`Control::publish_coalesced`]: one rebuild covers every ask made before it started,
/// and the next starts no sooner than ten times the last one took (at most
/// [`MAX_PUBLISH_PACE`]), so while changes stream in, rebuilding takes at most about a tenth
/// of the time the requests' thread has. An ask after a quiet spell is served at once.
async fn publish_when_asked(control: Weak<Control>, wake: Arc<Notify>) {
    let mut earliest_next = tokio::time::Instant::now();
    loop {
        wake.notified().await;
        tokio::time::sleep_until(earliest_next).await;
        let Some(control) = control.upgrade() else {
            return;
        };
        let started = tokio::time::Instant::now();
        // Read before the rebuild: every ticket up to here was taken after its change was made,
        // so the rebuild sees all of them.
        let covered = control.coalesced.requested.load(Ordering::SeqCst);
        control.publish();
        control.coalesced.published.send_replace(covered);
        earliest_next = started + (started.elapsed() * 10).min(MAX_PUBLISH_PACE);
    }
}

/// Waits until a removed upstream has nothing in flight, or its drain timeout, then drops it.
async fn drain(control: Weak<Control>, handle: Arc<UpstreamHandle>, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    // Requests that picked it from the previous table may still be starting: give them a beat.
    tokio::time::sleep(Duration::from_millis(50)).await;
    while handle.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if let Some(control) = control.upgrade() {
        control.finish_drain(&handle);
    }
}

/// Polls an `upstreams-file` for content changes. Polling the path (not an inode watch) sees
/// editors' write-to-temp-then-rename saves as well as in-place writes.
async fn watch_file(control: Weak<Control>, domain: String, path: std::path::PathBuf) {
    let mut last = std::fs::read(&path).ok();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(control) = control.upgrade() else {
            return;
        };
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if last.as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        last = Some(bytes.clone());
        let text = String::from_utf8_lossy(&bytes);
        let lambda = control.lock().config.lambda.clone();
        match buckler_config::parse_upstreams(&text, &path.display().to_string(), &lambda) {
            Ok(specs) => {
                control.count_reload(true);
                if let Err(error) = control.replace_upstreams(&domain, specs) {
                    tracing::error!(file = %path.display(), "upstreams-file change not applied: {error}");
                }
            }
            Err(errors) => {
                control.count_reload(false);
                for error in &errors.0 {
                    tracing::error!(file = %path.display(), "upstreams-file change rejected, previous set kept: {error}");
                }
            }
        }
    }
}

/// Writes `text` next to `path` and renames it over, so watchers never see half a file.
fn write_atomically(path: &Path, text: &str) -> Result<(), ChangeError> {
    let error = |e: std::io::Error| ChangeError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let temp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&temp, text).map_err(error)?;
    std::fs::rename(&temp, path).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> Arc<Control> {
        // A domain whose only upstream never answers: nothing but the test publishes.
        let config = buckler_config::parse(
            r#"{ listen: "127.0.0.1:0", domains: [{ "domain-name": "*", upstreams: [
                { serviceType: "swagger2", serviceLocation: "http://127.0.0.1:9" } ] }] }"#,
            Path::new("test.json5"),
        )
        .unwrap();
        Control::start(config, HttpUpstreamClient::new()).unwrap()
    }

    /// A control plane for one wildcard domain with a swagger2 upstream at each location.
    fn control_over(locations: &[String]) -> Arc<Control> {
        let upstreams: Vec<String> = locations
            .iter()
            .map(|l| format!(r#"{{ serviceType: "swagger2", serviceLocation: "{l}" }}"#))
            .collect();
        let config = buckler_config::parse(
            &format!(
                r#"{{ listen: "127.0.0.1:0", domains: [{{ "domain-name": "*", upstreams: [{}] }}] }}"#,
                upstreams.join(", ")
            ),
            Path::new("test.json5"),
        )
        .unwrap();
        Control::start(config, HttpUpstreamClient::new()).unwrap()
    }

    /// `(identity, state, target weight)` of the wildcard domain's upstreams, in listing order.
    fn listed(control: &Control) -> Vec<(String, UpstreamState, u32)> {
        control.table().domains()[0]
            .upstreams
            .iter()
            .map(|u| (u.identity().to_owned(), u.state(), u.target_weight()))
            .collect()
    }

    fn put(control: &Arc<Control>, upstreams: &[(&str, &str, u32)]) -> UpstreamDiff {
        let body: Vec<String> = upstreams
            .iter()
            .map(|(kind, location, weight)| {
                format!(
                    r#"{{"serviceType": "{kind}", "serviceLocation": "{location}", "weight": {weight}}}"#
                )
            })
            .collect();
        control
            .write_upstreams("*", &format!("[{}]", body.join(",")))
            .unwrap()
    }

    #[tokio::test]
    async fn a_replaced_list_is_classified_and_keeps_the_configured_order() {
        let (a, b, c, d) = (
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            "http://127.0.0.1:3",
            "http://127.0.0.1:4",
        );
        let control = control_over(&[a.to_owned(), b.to_owned(), c.to_owned()]);
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        use UpstreamState::Draining;

        let diff = put(
            &control,
            &[("swagger2", c, 1), ("swagger2", d, 1), ("swagger2", a, 5)],
        );
        assert_eq!(diff.added, names(&[d]));
        assert_eq!(diff.reweighted, names(&[a]));
        assert_eq!(diff.unchanged, names(&[c]));
        assert_eq!(diff.removed, names(&[b]));
        assert!(diff.revived.is_empty());
        let order: Vec<_> = listed(&control).into_iter().map(|(id, ..)| id).collect();
        assert_eq!(
            order,
            names(&[c, d, a, b]),
            "wanted in order, then the draining"
        );
        assert_eq!(listed(&control)[3].1, Draining);
        assert_eq!(listed(&control)[2].2, 5);

        // The draining one comes back; the ones left out drain, in their old order.
        let diff = put(&control, &[("swagger2", b, 2), ("swagger2", c, 1)]);
        assert_eq!(diff.revived, names(&[b]));
        assert_eq!(diff.unchanged, names(&[c]));
        assert_eq!(diff.removed, names(&[d, a]));
        assert!(diff.added.is_empty() && diff.reweighted.is_empty());
        let listed_now = listed(&control);
        let order: Vec<_> = listed_now.iter().map(|(id, ..)| id.clone()).collect();
        assert_eq!(order, names(&[b, c, d, a]));
        assert_ne!(listed_now[0].1, Draining);
        assert_eq!(listed_now[0].2, 2);
        assert!(listed_now[2..]
            .iter()
            .all(|(_, state, _)| *state == Draining));

        // The same location under another service type replaces the old one outright, and one
        // already draining is not removed twice.
        let diff = put(&control, &[("swagger1", c, 1)]);
        assert_eq!(diff.added, names(&[c]));
        assert_eq!(diff.removed, names(&[b]));
        let listed_now = listed(&control);
        let order: Vec<_> = listed_now.iter().map(|(id, ..)| id.clone()).collect();
        assert_eq!(order, names(&[c, b, d, a]));
        assert_ne!(listed_now[0].1, Draining);
    }

    #[tokio::test]
    async fn coalesced_publishes_share_rebuilds_and_each_waits_for_one() {
        let control = control();
        let before = control.table().generation;
        let asks: Vec<_> = (0..50)
            .map(|_| {
                let control = control.clone();
                tokio::spawn(async move {
                    let asked_after = control.table().generation;
                    control.publish_coalesced().await;
                    // A table built after the ask is out by the time it returns.
                    assert!(control.table().generation > asked_after);
                })
            })
            .collect();
        for ask in asks {
            ask.await.unwrap();
        }
        let rebuilds = control.table().generation - before;
        assert!(
            (1..50).contains(&rebuilds),
            "50 asks took {rebuilds} rebuilds"
        );
    }

    #[tokio::test]
    async fn at_most_sixteen_documents_load_at_once() {
        use std::sync::atomic::AtomicUsize;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        // 24 upstreams whose document takes 150 ms to answer: without the cap all 24 loads
        // would be in flight together.
        let doc = buckler_testkit::Swagger2Doc::new("slow", "1")
            .op("get", "/hello")
            .to_json();
        let response: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{doc}",
                doc.len()
            )
            .into_boxed_str(),
        );
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut locations = Vec::new();
        for _ in 0..24 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            locations.push(format!("http://{}", listener.local_addr().unwrap()));
            let (in_flight, most) = (in_flight.clone(), most.clone());
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let (in_flight, most) = (in_flight.clone(), most.clone());
                    tokio::spawn(async move {
                        let mut head = Vec::new();
                        let mut chunk = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        let _ = stream.write_all(response.as_bytes()).await;
                    });
                }
            });
        }
        let control = control_over(&locations);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !control.is_ready() {
            assert!(
                Instant::now() < deadline,
                "not every upstream loaded its docs"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most <= 16, "{most} documents loaded at once");
        assert!(most > 1, "loads ran one at a time");
    }

    #[tokio::test]
    async fn silent_upstreams_do_not_hold_the_load_cap() {
        use std::sync::atomic::AtomicUsize;
        use tokio::io::AsyncReadExt;

        // 16 upstreams that take the request and never answer (the fetch times out after 10 s),
        // then one that answers: it must load while all 16 are still waiting.
        let gave_up = Arc::new(AtomicUsize::new(0));
        let mut locations = Vec::new();
        for _ in 0..16 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            locations.push(format!("http://{}", listener.local_addr().unwrap()));
            let gave_up = gave_up.clone();
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let gave_up = gave_up.clone();
                    tokio::spawn(async move {
                        let mut chunk = [0u8; 1024];
                        // Read the request and never answer; EOF means the loader gave up.
                        while let Ok(n) = stream.read(&mut chunk).await {
                            if n == 0 {
                                break;
                            }
                        }
                        gave_up.fetch_add(1, Ordering::SeqCst);
                    });
                }
            });
        }
        let healthy = buckler_testkit::FakeUpstream::builder("healthy")
            .doc(
                buckler_testkit::Swagger2Doc::new("healthy", "1")
                    .op("get", "/hello")
                    .to_json(),
            )
            .start()
            .await;
        locations.push(healthy.url());
        let control = control_over(&locations);
        let healthy_served = || {
            let table = control.table();
            table.domains()[0]
                .upstreams
                .last()
                .is_some_and(|u| u.has_served())
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !healthy_served() {
            assert!(
                Instant::now() < deadline,
                "the healthy upstream never loaded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let gave_up = gave_up.load(Ordering::SeqCst);
        assert_eq!(
            gave_up, 0,
            "the healthy upstream loaded only after {gave_up} silent loads timed out"
        );
    }

    #[tokio::test]
    async fn a_lone_ask_is_published_at_once() {
        let control = control();
        let before = control.table().generation;
        tokio::time::timeout(Duration::from_secs(5), control.publish_coalesced())
            .await
            .expect("published");
        assert_eq!(control.table().generation, before + 1);
    }

    #[tokio::test]
    async fn upstreams_serving_one_document_share_its_docs() {
        let doc = |title: &str| {
            format!(
                r#"{{"swagger": "2.0", "info": {{"title": "{title}", "version": "1"}},
                    "paths": {{"/x/{{id}}": {{"get": {{"responses": {{"200": {{"description": ""}}}}}}}}}}}}"#
            )
        };
        let (a, b, c) = (
            buckler_testkit::FakeUpstream::builder("a")
                .doc(doc("same"))
                .start()
                .await,
            buckler_testkit::FakeUpstream::builder("b")
                .doc(doc("same"))
                .start()
                .await,
            buckler_testkit::FakeUpstream::builder("c")
                .doc(doc("other"))
                .start()
                .await,
        );
        let control = control_over(&[a.url(), b.url(), c.url()]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while listed(&control)
            .iter()
            .any(|(_, state, _)| *state != UpstreamState::Serving)
        {
            assert!(Instant::now() < deadline, "{:?}", listed(&control));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let table = control.table();
        let docs: Vec<_> = table.domains()[0]
            .upstreams
            .iter()
            .map(|u| u.docs().unwrap())
            .collect();
        assert!(Arc::ptr_eq(&docs[0], &docs[1]), "parsed once, shared");
        assert!(!Arc::ptr_eq(&docs[0], &docs[2]));
        assert_eq!(
            (docs[0].title.as_str(), docs[2].title.as_str()),
            ("same", "other")
        );
        assert_eq!(docs[2].endpoints.len(), 1);
    }
}
