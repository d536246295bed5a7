//! The control plane: owns the configuration and the upstream handles, runs the docs loaders,
//! and publishes a fresh [`RuntimeTable`] whenever something changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use buckler_config::{Config, DomainConfig, UpstreamSpec, UpstreamWatcher};
use buckler_upstream::HttpUpstreamClient;
use tokio::task::AbortHandle;

use crate::metrics::RequestStats;
use crate::table::{DomainInput, RuntimeTable};
use crate::upstream::UpstreamHandle;

/// Why the gateway could not be set up from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("domain {domain}: {reason}")]
    Upstreams { domain: String, reason: String },
}

/// The control plane. Request handling only ever calls [`Control::table`].
#[derive(Debug)]
pub struct Control {
    table: ArcSwap<RuntimeTable>,
    state: Mutex<ControlState>,
    client: HttpUpstreamClient,
    ready: AtomicBool,
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
    upstreams: Vec<Arc<UpstreamHandle>>,
    loaders: HashMap<String, AbortHandle>,
    local_stats: Arc<RequestStats>,
}

impl Control {
    /// Sets up every domain of `config` and starts loading upstream docs. Must run inside a
    /// tokio runtime.
    pub fn start(config: Config, client: HttpUpstreamClient) -> Result<Arc<Control>, SetupError> {
        let config = Arc::new(config);
        let mut domains = Vec::new();
        for settings in &config.domains {
            let specs = initial_upstreams(settings, &config)?;
            let upstreams = specs
                .into_iter()
                .map(|spec| Arc::new(UpstreamHandle::new(spec, &settings.domain_name)))
                .collect();
            domains.push(DomainState {
                settings: settings.clone(),
                upstreams,
                loaders: HashMap::new(),
                local_stats: Arc::new(RequestStats::default()),
            });
        }
        let state = ControlState {
            config: config.clone(),
            domains,
            generation: 0,
        };
        let table = build_table(&state);
        let control = Arc::new(Control {
            table: ArcSwap::from_pointee(table),
            state: Mutex::new(state),
            client,
            ready: AtomicBool::new(false),
        });
        control.spawn_loaders();
        Ok(control)
    }

    /// The table to serve the next request with.
    pub fn table(&self) -> Arc<RuntimeTable> {
        self.table.load_full()
    }

    /// The shared upstream client.
    pub fn client(&self) -> &HttpUpstreamClient {
        &self.client
    }

    /// Rebuilds the table from the current upstream states and swaps it in.
    pub fn publish(&self) {
        let Ok(mut state) = self.state.lock() else { return };
        state.generation += 1;
        let table = build_table(&state);
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

    fn spawn_loaders(self: &Arc<Self>) {
        let Ok(mut state) = self.state.lock() else { return };
        let paths = state.config.paths.clone();
        for domain in &mut state.domains {
            for upstream in &domain.upstreams {
                if domain.loaders.contains_key(upstream.identity()) {
                    continue;
                }
                let task = tokio::spawn(crate::docs_loader::run(
                    Arc::downgrade(self),
                    self.client.clone(),
                    upstream.clone(),
                    paths.clone(),
                    domain.settings.docs_refresh,
                ));
                domain
                    .loaders
                    .insert(upstream.identity().to_owned(), task.abort_handle());
            }
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Ok(state) = self.state.lock() {
            for domain in &state.domains {
                for loader in domain.loaders.values() {
                    loader.abort();
                }
            }
        }
    }
}

fn initial_upstreams(settings: &DomainConfig, config: &Config) -> Result<Vec<UpstreamSpec>, SetupError> {
    let error = |reason: String| SetupError::Upstreams {
        domain: settings.domain_name.clone(),
        reason,
    };
    match &settings.upstream_watcher {
        UpstreamWatcher::Static { upstreams } => Ok(upstreams.clone()),
        UpstreamWatcher::File { path } => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| error(format!("cannot read upstreams-file {}: {e}", path.display())))?;
            buckler_config::parse_upstreams(&text, &path.display().to_string(), &config.lambda)
                .map_err(|e| error(e.to_string()))
        }
        UpstreamWatcher::Etcd { .. } => Err(error(
            "the etcd upstream watcher is not supported by this build yet".to_owned(),
        )),
    }
}

fn build_table(state: &ControlState) -> RuntimeTable {
    let inputs = state
        .domains
        .iter()
        .map(|domain| DomainInput {
            settings: &domain.settings,
            upstreams: domain.upstreams.clone(),
            local_stats: domain.local_stats.clone(),
        })
        .collect();
    RuntimeTable::build(state.config.clone(), state.generation, inputs)
}
