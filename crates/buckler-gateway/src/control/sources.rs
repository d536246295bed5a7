//! Where a domain's upstream list comes from, wired in: each domain has one
//! [`UpstreamSource`] (`static`, `file` or `etcd`, from `buckler-discovery`) and one task that
//! follows its watch and hands every event to the control plane. Admin writes go to the same
//! source (`Control::write_upstreams`), so one path serves all three.

use std::sync::{Arc, Weak};

use buckler_config::{DomainConfig, LambdaDefaults, UpstreamWatcher};
use buckler_discovery::{
    ReadError, Revision, Snapshot, SourceOptions, SourceStatus, SourceWatch, UpstreamSource,
};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::{Control, SetupError};

/// A source opened for a domain, before it is attached (nothing runs yet).
pub(super) struct Opened {
    pub(super) source: Arc<dyn UpstreamSource>,
    /// The list read at opening: `static` and `file` are read before a domain starts (a bad
    /// file fails the start or the reload); `etcd` is not (an instance starts while etcd is
    /// down), and its first value arrives through the watch.
    pub(super) first: Option<Snapshot>,
    /// The Lambda defaults the source completes function names with: a reload that changes
    /// them re-opens the source.
    pub(super) lambda: LambdaDefaults,
}

/// Opens the source `settings` names and, for `static` and `file`, reads it.
pub(super) async fn open(
    settings: &DomainConfig,
    lambda: &LambdaDefaults,
    options: &SourceOptions,
) -> Result<Opened, SetupError> {
    let error = |reason: String| SetupError::Upstreams {
        domain: settings.domain_name.clone(),
        reason,
    };
    let source = buckler_discovery::open(&settings.upstream_watcher, lambda, options)
        .map_err(|e| error(e.to_string()))?;
    let first = match &settings.upstream_watcher {
        UpstreamWatcher::Etcd { .. } => None,
        UpstreamWatcher::Static { .. } | UpstreamWatcher::File { .. } => {
            Some(source.read().await.map_err(|e| match e {
                ReadError::Invalid { errors, .. } => error(errors.to_string()),
                other => error(format!("upstreams-file: {other}")),
            })?)
        }
    };
    Ok(Opened {
        source,
        first,
        lambda: lambda.clone(),
    })
}

/// A domain's attached source and where the domain stands in it.
pub(super) struct DomainSource {
    /// Tells this opening from a later one of the same domain (a reload re-opens): events of
    /// a source no longer attached are dropped.
    pub(super) id: u64,
    pub(super) source: Arc<dyn UpstreamSource>,
    pub(super) lambda: LambdaDefaults,
    /// The newest revision the source reported, valid or not: what an admin write expects
    /// (so a `PUT` that fixes a rejected value is not a conflict). `None`: nothing heard yet.
    pub(super) latest: Option<Revision>,
    /// The revision of the list the domain runs: the watch's echo of it changes nothing.
    pub(super) applied: Option<Revision>,
    /// Held by an admin write from the write until its result is applied, and by the follower
    /// for each event, so the watch's echo of a write is never applied before the write
    /// itself (which would leave the write's answer with an empty diff).
    pub(super) writes: Arc<tokio::sync::Mutex<()>>,
    follower: AbortHandle,
}

impl std::fmt::Debug for DomainSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainSource")
            .field("id", &self.id)
            .field("source", &self.source.describe())
            .field("latest", &self.latest)
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

impl DomainSource {
    /// Starts following `opened` for `domain` (after the revision it was read at, if it was).
    pub(super) fn attach(
        control: &Arc<Control>,
        domain: &str,
        id: u64,
        opened: &Opened,
    ) -> DomainSource {
        let after = opened.first.as_ref().map(|snapshot| snapshot.revision);
        let writes = Arc::new(tokio::sync::Mutex::new(()));
        let watch = opened.source.watch(after);
        let follower = tokio::spawn(follow(
            Arc::downgrade(control),
            domain.to_owned(),
            id,
            watch,
            writes.clone(),
        ))
        .abort_handle();
        DomainSource {
            id,
            source: opened.source.clone(),
            lambda: opened.lambda.clone(),
            latest: after,
            applied: after,
            writes,
            follower,
        }
    }

    /// Stops following (the watch stops with its task).
    pub(super) fn stop(&self) {
        self.follower.abort();
    }

    /// What `/healthcheck` shows of this source.
    pub(super) fn view(&self, domain: &str) -> SourceView {
        SourceView {
            domain: domain.to_owned(),
            description: self.source.describe(),
            status: self.source.status(),
        }
    }
}

/// One domain's source as `/healthcheck` shows it.
#[derive(Debug, Clone)]
pub(crate) struct SourceView {
    pub(crate) domain: String,
    /// `file /etc/…`, `etcd key /k at http://…`.
    pub(crate) description: String,
    pub(crate) status: watch::Receiver<SourceStatus>,
}

impl SourceView {
    /// Why the domain has nothing to serve from its source yet, if it has not.
    pub(crate) fn waiting_reason(&self) -> Option<String> {
        match &*self.status.borrow() {
            SourceStatus::Waiting { reason } => Some(format!(
                "domain {}: waiting for {}: {reason}",
                self.domain, self.description
            )),
            SourceStatus::Live | SourceStatus::Stale { .. } => None,
        }
    }
}

/// Hands every event of `watch` to the control plane, until the domain's source is replaced
/// (this task is aborted) or the control plane is gone.
async fn follow(
    control: Weak<Control>,
    domain: String,
    id: u64,
    mut watch: SourceWatch,
    writes: Arc<tokio::sync::Mutex<()>>,
) {
    while let Some(event) = watch.next().await {
        let _no_write_in_between = writes.lock().await;
        let Some(control) = control.upgrade() else {
            return;
        };
        control.source_event(&domain, id, event);
    }
}
