//! Where a domain's upstream list comes from: the config (`static`), a strict-JSON file
//! (`file`) or an etcd key (`etcd`), behind one [`UpstreamSource`] that reads the current list,
//! watches for new ones and writes with a revision check. No routing and no weights here: a
//! source hands over validated lists; the control plane diffs and ramps them.
//!
//! Every value is parsed with [`buckler_config::parse_upstreams`], so a file, an etcd value and
//! an admin body are judged by the same rules and rejected with the same positioned messages.

mod backoff;
mod etcd;
mod file;
mod json;
mod rfc3339;
mod static_source;
mod status;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use buckler_config::{ConfigErrors, LambdaDefaults, UpstreamSpec, UpstreamWatcher};
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};

pub use backoff::Backoff;
pub use etcd::{EtcdClient, EtcdError, EtcdOptions, EtcdSource};
pub use file::FileSource;
pub use json::upstreams_to_json;
pub use rfc3339::{format_rfc3339, parse_rfc3339};
pub use static_source::StaticSource;

/// Where a list's value stands in its source, for the optimistic check of [`UpstreamSource::write`].
///
/// Compare revisions of one source only: a revision of another source never equals them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Revision {
    /// There is no value yet (a missing file or etcd key). A write expecting `Absent` creates it
    /// and conflicts if someone else created it first.
    Absent,
    /// The in-memory list of a `static` source: 1 for the config's list, +1 per write.
    Static(u64),
    /// SHA-256 of a file's bytes.
    ContentHash([u8; 32]),
    /// The etcd key's `mod_revision` (always > 0).
    Etcd(i64),
}

impl fmt::Display for Revision {
    /// `absent`, `static-3`, `sha256-<16 hex digits>`, `etcd-42`: short, for logs and ETags.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revision::Absent => f.write_str("absent"),
            Revision::Static(n) => write!(f, "static-{n}"),
            Revision::ContentHash(hash) => {
                f.write_str("sha256-")?;
                for byte in &hash[..8] {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            Revision::Etcd(n) => write!(f, "etcd-{n}"),
        }
    }
}

/// What Buckler's admin write records beside a list, so every instance of a fleet ramps from
/// the same weights at the same moment (SPEC §11). Stored in etcd as `KEY/meta`:
/// `{"changedAt": "<RFC 3339>", "from": {"<location>": <effective weight>, ...}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeMeta {
    /// When the change was made: the anchor of every ramp it starts.
    pub changed_at: SystemTime,
    /// Effective weights (by normalised location) the ramps start from. An upstream missing
    /// here ramps from the instance's own current effective weight.
    pub from: BTreeMap<String, f64>,
}

/// A valid list as its source holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Validated, in the source's order; identities unique.
    pub upstreams: Vec<UpstreamSpec>,
    /// Pass this to [`UpstreamSource::write`] as the expected revision.
    pub revision: Revision,
    /// The recorded change this value came with: only when it was written with this very
    /// value (etcd: `KEY/meta`'s `mod_revision` equals the key's). `None` for a value written
    /// by another tool, a file, or the config.
    pub meta: Option<ChangeMeta>,
    /// When this instance read or was told of the value.
    pub seen_at: SystemTime,
}

impl Snapshot {
    /// The moment ramps started by this value are anchored to: the recorded `changedAt` when
    /// there is one, otherwise when this instance saw the value. A recorded time later than
    /// `seen_at` (a writer's clock ahead of ours) is capped at `seen_at`, so no ramp starts
    /// in the future.
    pub fn anchor(&self) -> SystemTime {
        match &self.meta {
            Some(meta) => meta.changed_at.min(self.seen_at),
            None => self.seen_at,
        }
    }

    /// How long before `now` the anchor lies (zero if the anchor is later): subtract this from
    /// the control plane's monotonic "now" to place the ramp's start on its own timeline.
    pub fn anchor_age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.anchor()).unwrap_or(Duration::ZERO)
    }
}

/// A value the source refused: the previous set stays. The caller logs every error and counts
/// it (`buckler_config_reloads_total{result="error"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The revision of the refused value (`Absent` for a deleted key or file).
    pub revision: Revision,
    pub reason: RejectReason,
}

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// Not a valid list: every error, positioned (`SOURCE:LINE:COL: key: message`).
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// The key or file went away; an empty set is never inferred from that.
    #[error("{0} was deleted; the previous upstream set stays")]
    Deleted(String),
}

/// One thing a watch reports.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// A new valid list: apply it (diff, ramps anchored at [`Snapshot::anchor`]).
    Changed(Snapshot),
    /// A new value that is not valid: keep the previous set; log and count.
    Rejected(Rejection),
}

/// Whether a source is connected, for `/healthcheck` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceStatus {
    /// No valid value has been had yet (etcd unreachable at start, key or file missing, value
    /// invalid): the domain has nothing to serve from this source.
    Waiting { reason: String },
    /// Following the source.
    Live,
    /// A value was had, but the source is out of reach now: the last set stays in force.
    Stale { reason: String, since: SystemTime },
}

/// Why [`UpstreamSource::read`] has no list to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The source cannot be reached or read (etcd down, file unreadable).
    #[error("{0}")]
    Unavailable(String),
    /// The key or file does not exist (yet).
    #[error("{0} does not exist")]
    Missing(String),
    /// The value is there but not a valid list.
    #[error("{errors}")]
    Invalid {
        revision: Revision,
        errors: ConfigErrors,
    },
}

/// Why [`UpstreamSource::write`] changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The list is not valid (admin API: 400 with every error).
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// The source moved on since `expected` (admin API: 409).
    #[error(
        "the upstream list changed since revision {expected} (now {current}); re-read and retry"
    )]
    Conflict {
        expected: Revision,
        current: Revision,
    },
    /// The source cannot be reached or written (admin API: 503).
    #[error("{0}")]
    Unavailable(String),
}

/// Why [`open`] could not build a source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("etcd endpoint {endpoint:?}: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    #[error("etcd needs at least one endpoint")]
    NoEndpoints,
}

/// Where a domain's upstream list comes from. Implementations: [`StaticSource`],
/// [`FileSource`], [`EtcdSource`]; all share state behind `Arc`s, so every method works on
/// `&self` and a watch outlives nothing it needs.
pub trait UpstreamSource: Send + Sync + 'static {
    /// A short description for logs and `/healthcheck` (`etcd key /k at http://…`).
    fn describe(&self) -> String;

    /// The current list, once; fails at once when the source is out of reach (no retries:
    /// [`UpstreamSource::watch`] with `None` is the retrying way in).
    fn read(&self) -> BoxFuture<'_, Result<Snapshot, ReadError>>;

    /// Follows the source. With `after: None` it first gets the current value, retrying with
    /// backoff while the source is out of reach (status `Waiting`), and reports it as the first
    /// event; with `Some(revision)` it reports only values newer than that revision. Each new
    /// value arrives parsed: a [`SourceEvent::Changed`] or a [`SourceEvent::Rejected`]. Values
    /// that come in a burst may be folded into the newest. Must be called inside a Tokio
    /// runtime; dropping the [`SourceWatch`] stops it.
    fn watch(&self, after: Option<Revision>) -> SourceWatch;

    /// Replaces the list with `text` (strict JSON, validated whole first) if the source is
    /// still at `expected`; returns the snapshot now in force. The source's own watch reports
    /// the written value too (applying it twice changes nothing). `meta` is recorded where the
    /// source can (etcd) and kept in memory by `static`.
    fn write<'a>(
        &'a self,
        text: &'a str,
        expected: Revision,
        meta: ChangeMeta,
    ) -> BoxFuture<'a, Result<Snapshot, WriteError>>;

    /// The source's connection status, updated by its watches.
    fn status(&self) -> watch::Receiver<SourceStatus>;
}

/// A running watch: events in order, one task behind it, stopped when this is dropped.
#[derive(Debug)]
pub struct SourceWatch {
    events: mpsc::Receiver<SourceEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl SourceWatch {
    fn spawn<F, Fut>(run: F) -> SourceWatch
    where
        F: FnOnce(EventSender) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (sender, events) = mpsc::channel(16);
        let task = tokio::spawn(run(EventSender(sender)));
        SourceWatch { events, task }
    }

    /// The next event; `None` only if the watch task ended (it does not on its own).
    pub async fn next(&mut self) -> Option<SourceEvent> {
        self.events.recv().await
    }
}

impl Drop for SourceWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The sending side of a watch; `send` is false once the watcher is gone (the task then ends).
struct EventSender(mpsc::Sender<SourceEvent>);

impl EventSender {
    async fn send(&self, event: SourceEvent) -> bool {
        self.0.send(event).await.is_ok()
    }
}

/// Settings shared by the sources [`open`] builds.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// How often a `file` source looks at its file.
    pub file_poll_interval: Duration,
    /// Timeouts and retry pacing of an `etcd` source.
    pub etcd: EtcdOptions,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            file_poll_interval: Duration::from_millis(250),
            etcd: EtcdOptions::default(),
        }
    }
}

/// Builds the source a domain's `upstream-watcher` names. `lambda` completes bare Lambda
/// function names in every value read or written; re-open when it or the watcher changes on
/// reload. Opens no connection (an etcd that is down is not an error here).
pub fn open(
    watcher: &UpstreamWatcher,
    lambda: &LambdaDefaults,
    options: &SourceOptions,
) -> Result<Arc<dyn UpstreamSource>, OpenError> {
    Ok(match watcher {
        UpstreamWatcher::Static { upstreams } => {
            Arc::new(StaticSource::new(upstreams.clone(), lambda.clone()))
        }
        UpstreamWatcher::File { path } => Arc::new(FileSource::new(
            path.clone(),
            lambda.clone(),
            options.file_poll_interval,
        )),
        UpstreamWatcher::Etcd { endpoints, key } => Arc::new(EtcdSource::new(
            endpoints,
            key,
            lambda.clone(),
            options.etcd.clone(),
        )?),
    })
}

/// Parses a value's bytes as an upstream list; non-UTF-8 is reported at its position.
fn parse_value(
    bytes: &[u8],
    source_name: &str,
    lambda: &LambdaDefaults,
) -> Result<Vec<UpstreamSpec>, ConfigErrors> {
    match std::str::from_utf8(bytes) {
        Ok(text) => buckler_config::parse_upstreams(text, source_name, lambda),
        Err(error) => {
            let valid = &bytes[..error.valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&valid[line_start..])
                .chars()
                .count()
                + 1;
            Err(ConfigErrors(vec![buckler_config::ConfigError {
                file: source_name.to_owned(),
                line: u32::try_from(line).unwrap_or(u32::MAX),
                column: u32::try_from(column).unwrap_or(u32::MAX),
                key: String::new(),
                message: "not UTF-8".to_owned(),
            }]))
        }
    }
}

#[cfg(test)]
mod tests;
