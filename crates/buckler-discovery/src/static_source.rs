//! `upstream-watcher: "static"`: the config's list, replaced in memory by admin writes.

use std::sync::Arc;
use std::time::SystemTime;

use buckler_config::{LambdaDefaults, UpstreamSpec};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::watch;

use crate::status::StatusCell;
use crate::{
    ChangeMeta, ReadError, Revision, Snapshot, SourceEvent, SourceStatus, SourceWatch,
    UpstreamSource, WriteError,
};

/// The config's list (revision `Static(1)`); each write replaces it in memory (`Static(n+1)`)
/// and is lost on restart or on a reload that changes the config's list (re-open then).
#[derive(Debug, Clone)]
pub struct StaticSource {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    lambda: LambdaDefaults,
    current: watch::Sender<Snapshot>,
    status: StatusCell,
}

impl StaticSource {
    /// A source holding `upstreams` (already validated with the config).
    pub fn new(upstreams: Vec<UpstreamSpec>, lambda: LambdaDefaults) -> Self {
        let snapshot = Snapshot {
            upstreams,
            revision: Revision::Static(1),
            meta: None,
            seen_at: SystemTime::now(),
        };
        StaticSource {
            inner: Arc::new(Inner {
                lambda,
                current: watch::Sender::new(snapshot),
                status: StatusCell::new(SourceStatus::Live),
            }),
        }
    }
}

impl UpstreamSource for StaticSource {
    fn describe(&self) -> String {
        "the config's upstreams".to_owned()
    }

    fn read(&self) -> BoxFuture<'_, Result<Snapshot, ReadError>> {
        let snapshot = self.inner.current.borrow().clone();
        async move { Ok(snapshot) }.boxed()
    }

    fn watch(&self, after: Option<Revision>) -> SourceWatch {
        let mut current = self.inner.current.subscribe();
        SourceWatch::spawn(move |sender| async move {
            let mut last = after;
            loop {
                let snapshot = current.borrow_and_update().clone();
                if last != Some(snapshot.revision) {
                    last = Some(snapshot.revision);
                    if !sender.send(SourceEvent::Changed(snapshot)).await {
                        return;
                    }
                }
                if current.changed().await.is_err() {
                    return;
                }
            }
        })
    }

    fn write<'a>(
        &'a self,
        text: &'a str,
        expected: Revision,
        meta: ChangeMeta,
    ) -> BoxFuture<'a, Result<Snapshot, WriteError>> {
        async move {
            let upstreams =
                buckler_config::parse_upstreams(text, "request body", &self.inner.lambda)
                    .map_err(WriteError::Invalid)?;
            let mut outcome = Err(WriteError::Unavailable(String::new()));
            self.inner.current.send_if_modified(|snapshot| {
                let Revision::Static(n) = snapshot.revision else {
                    return false;
                };
                if snapshot.revision != expected {
                    outcome = Err(WriteError::Conflict {
                        expected,
                        current: snapshot.revision,
                    });
                    return false;
                }
                *snapshot = Snapshot {
                    upstreams,
                    revision: Revision::Static(n + 1),
                    meta: Some(meta),
                    seen_at: SystemTime::now(),
                };
                outcome = Ok(snapshot.clone());
                true
            });
            outcome
        }
        .boxed()
    }

    fn status(&self) -> watch::Receiver<SourceStatus> {
        self.inner.status.subscribe()
    }
}
