//! The `tls` listeners' certificates: the set the config asks for, reloads (config reloads
//! and file changes), and the expiry metric.

use std::fmt::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use buckler_config::{Config, TlsVersion};
use buckler_tls::{
    CertSet, FileWatch, FileWatcher, MinVersion, PairPaths, ReloadOutcome, TlsSetupError,
    TlsTermination, WatchedPaths,
};

use crate::metrics::label;
use crate::names;

/// TLS termination and what it was last loaded from.
#[derive(Debug)]
pub(crate) struct TlsListeners {
    termination: Arc<TlsTermination>,
    /// The pairs and version of the configuration in force (a file change re-reads these).
    current: Mutex<(CertSet, MinVersion)>,
    /// Taken by [`TlsListeners::spawn_file_watch`].
    watcher: Mutex<Option<FileWatcher>>,
    /// Set once the file watch runs: a config reload changes the files it polls.
    watched: Mutex<Option<WatchedPaths>>,
}

/// The certificate pairs and minimum version `config` asks for; `None` without `tls`.
pub(crate) fn wanted(config: &Config) -> Option<(CertSet, MinVersion)> {
    let tls = config.tls.as_ref()?;
    let mut set = CertSet::new(PairPaths::new(&tls.cert, &tls.key));
    for domain in &config.domains {
        if let Some(pair) = &domain.tls {
            set = set.with_domain(&domain.domain_name, PairPaths::new(&pair.cert, &pair.key));
        }
    }
    let min_version = match tls.min_version {
        TlsVersion::V1_2 => MinVersion::Tls12,
        TlsVersion::V1_3 => MinVersion::Tls13,
    };
    Some((set, min_version))
}

impl TlsListeners {
    /// Loads every pair `config` names (blocking reads); `None` without `tls`.
    pub(crate) fn start(config: &Config) -> Result<Option<TlsListeners>, TlsSetupError> {
        let Some((set, min_version)) = wanted(config) else {
            return Ok(None);
        };
        // Before loading, so a change in between is seen by the first poll.
        let watcher = FileWatcher::new(set.files());
        let termination = TlsTermination::start(&set, min_version, SystemTime::now())?;
        for (domain, not_after) in termination.store().expiry_timestamps() {
            tracing::info!(domain, not_after, "TLS certificate loaded");
        }
        Ok(Some(TlsListeners {
            termination: Arc::new(termination),
            current: Mutex::new((set, min_version)),
            watcher: Mutex::new(Some(watcher)),
            watched: Mutex::new(None),
        }))
    }

    pub(crate) fn termination(&self) -> &Arc<TlsTermination> {
        &self.termination
    }

    /// Applies a reloaded configuration's pairs and `min-version` (blocking reads). A config
    /// without `tls` changes nothing: the listeners stay until a restart.
    pub(crate) fn apply(&self, config: &Config) -> Vec<String> {
        let Some((set, min_version)) = wanted(config) else {
            return Vec::new();
        };
        let files: Vec<PathBuf> = set.files().into_iter().map(PathBuf::from).collect();
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        *current = (set, min_version);
        let outcome = self
            .termination
            .reload(&current.0, min_version, SystemTime::now());
        drop(current);
        if let Some(watched) = &*self.watched.lock().unwrap_or_else(|p| p.into_inner()) {
            watched.set(files);
        }
        report(&outcome, "configuration reload")
    }

    /// Re-reads the pairs of the configuration in force (blocking reads).
    fn reload_files(&self) -> ReloadOutcome {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        self.termination
            .reload(&current.0, current.1, SystemTime::now())
    }

    /// Polls the certificate files and reloads when they change; `on_reload(ok)` after each.
    pub(crate) fn spawn_file_watch(self: Arc<Self>, on_reload: impl Fn(bool) + Send + 'static) {
        let Some(watcher) = self
            .watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let mut watch = FileWatch::spawn(watcher, FileWatch::DEFAULT_INTERVAL);
        *self.watched.lock().unwrap_or_else(|p| p.into_inner()) = Some(watch.watched_paths());
        let listeners = Arc::downgrade(&self);
        drop(self);
        tokio::spawn(async move {
            while let Some(changed) = watch.changed().await {
                let Some(tls) = listeners.upgrade() else {
                    return;
                };
                let files: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
                tracing::info!(files = %files.join(", "), "certificate files changed: reloading");
                let Ok(outcome) = tokio::task::spawn_blocking(move || tls.reload_files()).await
                else {
                    return; // the runtime is shutting down
                };
                let refused = report(&outcome, "certificate files changed");
                on_reload(refused.is_empty());
            }
        });
    }

    /// `buckler_tls_certificate_expiry_timestamp_seconds{domain}` samples.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        let name = names::TLS_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS;
        let _ = writeln!(
            out,
            "# HELP {name} notAfter of the certificate served, by domain (\"*\": the default)."
        );
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (domain, not_after) in self.termination.store().expiry_timestamps() {
            let _ = writeln!(out, "{name}{{domain=\"{}\"}} {not_after}", label(&domain));
        }
    }
}

/// Logs what a certificate reload did; returns one line per refused pair.
fn report(outcome: &ReloadOutcome, cause: &str) -> Vec<String> {
    for name in outcome.replaced.iter().chain(&outcome.added) {
        tracing::info!(cause, "TLS: new certificate in use for {}", name.label());
    }
    for name in &outcome.removed {
        tracing::info!(cause, "TLS: {name} is no longer configured");
    }
    outcome
        .failed
        .iter()
        .map(|failed| {
            let line = format!("certificate refused: {failed}");
            tracing::error!(cause, "TLS: {line}");
            line
        })
        .collect()
}
