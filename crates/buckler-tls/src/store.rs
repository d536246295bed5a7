//! The certificates a TLS listener serves, chosen by SNI, swapped whole on reload.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::pair::{CertificatePair, PairError, PairPaths};

/// Which TLS server names a certificate pair answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CertName {
    /// Served when the client sends no SNI, or one no domain has a pair for: the top-level
    /// `tls` pair, or the `*` domain's.
    Default,
    /// Served when the SNI is exactly this name (lower case, no trailing dot).
    Domain(String),
}

impl CertName {
    /// A domain's `domain-name` as a certificate name: `*` is [`CertName::Default`]; any other
    /// name is lower-cased and loses one trailing dot, as SNI is compared.
    pub fn from_domain(domain_name: &str) -> CertName {
        if domain_name == "*" {
            return CertName::Default;
        }
        let name = domain_name.strip_suffix('.').unwrap_or(domain_name);
        CertName::Domain(name.to_ascii_lowercase())
    }

    /// The `domain` label of `buckler_tls_certificate_expiry_timestamp_seconds`: the name, or
    /// `*` for the default pair.
    pub fn label(&self) -> &str {
        match self {
            CertName::Default => "*",
            CertName::Domain(name) => name,
        }
    }
}

impl fmt::Display for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertName::Default => f.write_str("the default certificate"),
            CertName::Domain(name) => write!(f, "the certificate for {name}"),
        }
    }
}

/// The certificate pairs a configuration asks for: always a default, plus one per domain
/// that has `tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSet {
    pairs: BTreeMap<CertName, PairPaths>,
}

impl CertSet {
    /// A set holding only the default pair (the top-level `tls.cert` / `tls.key`).
    pub fn new(default: PairPaths) -> CertSet {
        CertSet {
            pairs: BTreeMap::from([(CertName::Default, default)]),
        }
    }

    /// Adds (or replaces) a domain's pair. `domain_name` `*` replaces the default pair.
    pub fn with_domain(mut self, domain_name: &str, paths: PairPaths) -> CertSet {
        self.pairs.insert(CertName::from_domain(domain_name), paths);
        self
    }

    /// Every name and the files for it, default first.
    pub fn iter(&self) -> impl Iterator<Item = (&CertName, &PairPaths)> {
        self.pairs.iter()
    }

    /// Every certificate and key file, each once: what the file watcher polls.
    pub fn files(&self) -> Vec<&Path> {
        let set: BTreeSet<&Path> = self
            .pairs
            .values()
            .flat_map(|paths| [paths.cert.as_path(), paths.key.as_path()])
            .collect();
        set.into_iter().collect()
    }
}

/// The pairs being served, as one immutable snapshot.
#[derive(Debug)]
struct Snapshot {
    default: Arc<CertificatePair>,
    /// Lower-case SNI → pair, for the handshake path.
    by_server_name: HashMap<Box<str>, Arc<CertificatePair>>,
}

impl Snapshot {
    fn from_pairs(pairs: BTreeMap<CertName, Arc<CertificatePair>>) -> Option<Snapshot> {
        let mut default = None;
        let mut by_server_name = HashMap::with_capacity(pairs.len());
        for (name, pair) in pairs {
            match name {
                CertName::Default => default = Some(pair),
                CertName::Domain(name) => {
                    by_server_name.insert(name.into_boxed_str(), pair);
                }
            }
        }
        Some(Snapshot {
            default: default?,
            by_server_name,
        })
    }

    fn pairs(&self) -> BTreeMap<CertName, Arc<CertificatePair>> {
        let mut pairs: BTreeMap<CertName, Arc<CertificatePair>> = self
            .by_server_name
            .iter()
            .map(|(name, pair)| (CertName::Domain(name.to_string()), pair.clone()))
            .collect();
        pairs.insert(CertName::Default, self.default.clone());
        pairs
    }

    fn pick(&self, server_name: Option<&str>) -> &Arc<CertificatePair> {
        let Some(name) = server_name else {
            return &self.default;
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        // rustls lower-cases SNI already; a name that is not is looked up lower-cased anyway.
        let found = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_server_name.get(name.to_ascii_lowercase().as_str())
        } else {
            self.by_server_name.get(name)
        };
        found.unwrap_or(&self.default)
    }
}

/// The certificates a TLS listener serves, keyed by SNI. Implements rustls's
/// [`ResolvesServerCert`], so one store behind an `Arc` is the listener's resolver.
///
/// Reading is lock-free (one `ArcSwap` load per handshake). A [`CertStore::reload`] builds
/// a new snapshot and swaps it in: handshakes already past certificate selection, and every
/// established connection, keep the certificate they got.
#[derive(Debug)]
pub struct CertStore {
    provider: Arc<CryptoProvider>,
    current: ArcSwap<Snapshot>,
    /// Reloads come from SIGHUP, the admin API and the file watcher; one at a time, so none
    /// builds on a snapshot another is about to replace.
    reload_lock: Mutex<()>,
}

impl CertStore {
    /// Loads and validates every pair of `set` (blocking file reads). Fails with every
    /// pair's error when any pair is bad: at startup there is no old pair to keep.
    pub fn load(
        set: &CertSet,
        provider: Arc<CryptoProvider>,
        now: SystemTime,
    ) -> Result<CertStore, StoreLoadError> {
        let mut pairs = BTreeMap::new();
        let mut failures = Vec::new();
        for (name, paths) in set.iter() {
            match CertificatePair::load(paths, &provider, now) {
                Ok(pair) => {
                    pairs.insert(name.clone(), Arc::new(pair));
                }
                Err(error) => failures.push((name.clone(), error)),
            }
        }
        if !failures.is_empty() {
            return Err(StoreLoadError { failures });
        }
        let snapshot = Snapshot::from_pairs(pairs).ok_or_else(|| StoreLoadError {
            failures: Vec::new(),
        })?;
        Ok(CertStore {
            provider,
            current: ArcSwap::from_pointee(snapshot),
            reload_lock: Mutex::new(()),
        })
    }

    /// Re-reads every pair of `set` (blocking file reads) and swaps in the ones that
    /// validate. A name whose new pair is bad keeps its old pair if it had one (the default
    /// always has one); a new name with a bad pair is not served (its SNI gets the default).
    /// Names not in `set` are dropped. A pair whose chain did not change is kept as it was.
    /// The outcome lists what happened to each name, with the errors for the log.
    pub fn reload(&self, set: &CertSet, now: SystemTime) -> ReloadOutcome {
        let _one_at_a_time = self
            .reload_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut old = self.current.load().pairs();
        let mut next = BTreeMap::new();
        let mut outcome = ReloadOutcome::default();
        for (name, paths) in set.iter() {
            let previous = old.remove(name);
            match (CertificatePair::load(paths, &self.provider, now), previous) {
                (Ok(fresh), Some(previous)) if fresh.same_chain_as(&previous) => {
                    outcome.unchanged.push(name.clone());
                    next.insert(name.clone(), previous);
                }
                (Ok(fresh), Some(_)) => {
                    outcome.replaced.push(name.clone());
                    next.insert(name.clone(), Arc::new(fresh));
                }
                (Ok(fresh), None) => {
                    outcome.added.push(name.clone());
                    next.insert(name.clone(), Arc::new(fresh));
                }
                (Err(error), previous) => {
                    outcome.failed.push(FailedPair {
                        name: name.clone(),
                        error,
                        kept_old: previous.is_some(),
                    });
                    if let Some(previous) = previous {
                        next.insert(name.clone(), previous);
                    }
                }
            }
        }
        outcome.removed = old.into_keys().collect();
        // The default is in every set and is kept when its new pair fails, so the snapshot
        // always has one; `None` cannot happen, and then the old snapshot simply stays.
        if let Some(snapshot) = Snapshot::from_pairs(next) {
            self.current.store(Arc::new(snapshot));
        }
        outcome
    }

    /// The pair served for `name` now, if any.
    pub fn pair(&self, name: &CertName) -> Option<Arc<CertificatePair>> {
        let snapshot = self.current.load();
        match name {
            CertName::Default => Some(snapshot.default.clone()),
            CertName::Domain(domain) => snapshot.by_server_name.get(domain.as_str()).cloned(),
        }
    }

    /// The pair a handshake with this SNI gets: the exact name's (compared case-insensitively,
    /// a trailing dot ignored), else the default. No SNI (a client dialling an IP address)
    /// gets the default.
    pub fn pair_for_server_name(&self, server_name: Option<&str>) -> Arc<CertificatePair> {
        self.current.load().pick(server_name).clone()
    }

    /// `(domain label, notAfter)` for every pair served, default (`*`) first: the samples of
    /// `buckler_tls_certificate_expiry_timestamp_seconds{domain}`.
    pub fn expiry_timestamps(&self) -> Vec<(String, i64)> {
        self.current
            .load()
            .pairs()
            .iter()
            .map(|(name, pair)| (name.label().to_owned(), pair.not_after_unix()))
            .collect()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.current.load();
        Some(
            snapshot
                .pick(client_hello.server_name())
                .certified_key()
                .clone(),
        )
    }
}

/// What a [`CertStore::reload`] did, name by name.
#[derive(Debug, Default)]
pub struct ReloadOutcome {
    /// A new, valid pair was swapped in.
    pub replaced: Vec<CertName>,
    /// A name that had no pair now has one.
    pub added: Vec<CertName>,
    /// The files still hold the chain being served.
    pub unchanged: Vec<CertName>,
    /// The name is no longer configured; its SNI now gets the default.
    pub removed: Vec<CertName>,
    /// The new pair is bad: see `kept_old`.
    pub failed: Vec<FailedPair>,
}

impl ReloadOutcome {
    /// True when no pair failed.
    pub fn is_ok(&self) -> bool {
        self.failed.is_empty()
    }

    /// True when anything served changed.
    pub fn changed(&self) -> bool {
        !(self.replaced.is_empty() && self.added.is_empty() && self.removed.is_empty())
    }
}

/// A pair a reload refused.
#[derive(Debug)]
pub struct FailedPair {
    /// The name whose new pair was refused.
    pub name: CertName,
    /// Why; its message starts with the file at fault.
    pub error: PairError,
    /// True when the old pair for this name is still served; false for a name that had none.
    pub kept_old: bool,
}

impl fmt::Display for FailedPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let consequence = if self.kept_old {
            "the previous one stays in use"
        } else {
            "not served"
        };
        write!(f, "{} ({}; {consequence})", self.error, self.name)
    }
}

/// Why a [`CertStore`] could not be built: one error per bad pair.
#[derive(Debug, thiserror::Error)]
#[error("{}", render_failures(.failures))]
pub struct StoreLoadError {
    /// Each bad pair's name and error; empty only if the set had no default pair.
    pub failures: Vec<(CertName, PairError)>,
}

fn render_failures(failures: &[(CertName, PairError)]) -> String {
    if failures.is_empty() {
        return "no default certificate".to_owned();
    }
    failures
        .iter()
        .map(|(_, error)| error.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_names_become_certificate_names_as_sni_is_compared() {
        assert_eq!(CertName::from_domain("*"), CertName::Default);
        assert_eq!(
            CertName::from_domain("API.Example.org."),
            CertName::Domain("api.example.org".into())
        );
        assert_eq!(CertName::Default.label(), "*");
        assert_eq!(CertName::from_domain("a.test").label(), "a.test");
    }

    #[test]
    fn a_star_domain_replaces_the_default_pair_and_files_are_listed_once() {
        let set = CertSet::new(PairPaths::new("top.pem", "top.key"))
            .with_domain("*", PairPaths::new("star.pem", "shared.key"))
            .with_domain("a.test", PairPaths::new("a.pem", "shared.key"));
        let names: Vec<(&CertName, &PairPaths)> = set.iter().collect();
        assert_eq!(names.len(), 2);
        assert_eq!(names[0].0, &CertName::Default);
        assert_eq!(names[0].1.cert, Path::new("star.pem"));
        assert_eq!(
            set.files(),
            vec![
                Path::new("a.pem"),
                Path::new("shared.key"),
                Path::new("star.pem")
            ]
        );
    }
}
