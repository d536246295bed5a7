//! `upstream-watcher: "file"`: a strict-JSON file, polled, written atomically with a
//! content-hash check.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use buckler_config::LambdaDefaults;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::status::StatusCell;
use crate::{
    parse_value, ChangeMeta, ReadError, RejectReason, Rejection, Revision, Snapshot, SourceEvent,
    SourceStatus, SourceWatch, UpstreamSource, WriteError,
};

/// Every this many polls the file is read and hashed even if its size and mtime look the
/// same: two writes of one size inside the file system's timestamp granularity still show.
const FULL_READ_EVERY: u32 = 8;

/// A strict-JSON upstream list in a file. Its revision is the SHA-256 of its bytes. Polling
/// the path (not an inode watch) sees editors' write-to-temp-then-rename saves as well as
/// in-place writes. A valid new value is reported at the first look; an invalid one, or the
/// file's absence, only when two looks in a row (one poll interval apart) find it, so a write
/// caught half done or an editor's move-then-write save is not reported as an error.
#[derive(Debug, Clone)]
pub struct FileSource {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    name: String,
    lambda: LambdaDefaults,
    poll_interval: Duration,
    status: StatusCell,
    /// Serialises this process's writes; other processes are caught by the hash re-check.
    write_lock: tokio::sync::Mutex<()>,
}

/// What one look at the file found.
enum Look {
    Missing,
    Unreadable(String),
    Bytes(Vec<u8>),
}

impl FileSource {
    /// A source over `path`, polled every `poll_interval` while watched.
    pub fn new(path: PathBuf, lambda: LambdaDefaults, poll_interval: Duration) -> Self {
        let name = path.display().to_string();
        FileSource {
            inner: Arc::new(Inner {
                status: StatusCell::new(SourceStatus::Waiting {
                    reason: format!("{name} not read yet"),
                }),
                path,
                name,
                lambda,
                poll_interval,
                write_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }
}

fn hash(bytes: &[u8]) -> Revision {
    Revision::ContentHash(Sha256::digest(bytes).into())
}

async fn look(path: &Path) -> Look {
    match tokio::fs::read(path).await {
        Ok(bytes) => Look::Bytes(bytes),
        Err(error) if error.kind() == ErrorKind::NotFound => Look::Missing,
        Err(error) => Look::Unreadable(format!("cannot read {}: {error}", path.display())),
    }
}

impl Inner {
    fn snapshot_of(&self, bytes: &[u8]) -> Result<Snapshot, ReadError> {
        let revision = hash(bytes);
        match parse_value(bytes, &self.name, &self.lambda) {
            Ok(upstreams) => Ok(Snapshot {
                upstreams,
                revision,
                meta: None,
                seen_at: SystemTime::now(),
            }),
            Err(errors) => Err(ReadError::Invalid { revision, errors }),
        }
    }

    async fn watch(self: Arc<Self>, after: Option<Revision>, sender: crate::EventSender) {
        let mut last = after;
        let mut had_value = after.is_some();
        let mut last_stamp: Option<(Option<SystemTime>, u64)> = None;
        let mut polls_since_read = 0u32;
        let mut first = true;
        // An invalid value seen once, not yet reported.
        let mut unsettled: Option<Revision> = None;
        loop {
            if !first {
                tokio::time::sleep(self.poll_interval).await;
            }
            first = false;
            // A cheap stat first: most polls find nothing new.
            if let Ok(metadata) = tokio::fs::metadata(&self.path).await {
                let stamp = (metadata.modified().ok(), metadata.len());
                polls_since_read += 1;
                if last_stamp == Some(stamp) && polls_since_read < FULL_READ_EVERY {
                    continue;
                }
                last_stamp = Some(stamp);
            }
            polls_since_read = 0;
            let bytes = match look(&self.path).await {
                Look::Bytes(bytes) => bytes,
                Look::Missing => {
                    last_stamp = None;
                    if had_value && last != Some(Revision::Absent) {
                        // Some editors move the file away before writing the new one: a
                        // deletion is reported only if the next look finds no file either.
                        if unsettled != Some(Revision::Absent) {
                            unsettled = Some(Revision::Absent);
                            continue;
                        }
                        unsettled = None;
                        self.status
                            .failing(format!("{} does not exist", self.name), had_value);
                        last = Some(Revision::Absent);
                        let rejection = Rejection {
                            revision: Revision::Absent,
                            reason: RejectReason::Deleted(self.name.clone()),
                        };
                        if !sender.send(SourceEvent::Rejected(rejection)).await {
                            return;
                        }
                    } else {
                        self.status
                            .failing(format!("{} does not exist", self.name), had_value);
                    }
                    continue;
                }
                Look::Unreadable(reason) => {
                    last_stamp = None;
                    self.status.failing(reason, had_value);
                    continue;
                }
            };
            let revision = hash(&bytes);
            if last == Some(revision) {
                if had_value {
                    self.status.live();
                }
                continue;
            }
            let parsed = self.snapshot_of(&bytes);
            if parsed.is_err() && unsettled != Some(revision) {
                // An in-place write (truncate, then write) can be caught half done: an invalid
                // value is reported only if the next look finds the same bytes.
                unsettled = Some(revision);
                last_stamp = None;
                continue;
            }
            unsettled = None;
            last = Some(revision);
            let event = match parsed {
                Ok(snapshot) => {
                    had_value = true;
                    self.status.live();
                    SourceEvent::Changed(snapshot)
                }
                Err(ReadError::Invalid { revision, errors }) => {
                    if had_value {
                        self.status.live();
                    } else {
                        self.status
                            .waiting(format!("{} is not a valid list", self.name));
                    }
                    SourceEvent::Rejected(Rejection {
                        revision,
                        reason: RejectReason::Invalid(errors),
                    })
                }
                Err(_) => continue,
            };
            if !sender.send(event).await {
                return;
            }
        }
    }

    async fn write(
        &self,
        text: &str,
        expected: Revision,
        meta: ChangeMeta,
    ) -> Result<Snapshot, WriteError> {
        let upstreams = buckler_config::parse_upstreams(text, "request body", &self.lambda)
            .map_err(WriteError::Invalid)?;
        let _serialised = self.write_lock.lock().await;
        let current = self.current_revision().await?;
        if current != expected {
            return Err(WriteError::Conflict { expected, current });
        }
        let unavailable =
            |e: std::io::Error| WriteError::Unavailable(format!("cannot write {}: {e}", self.name));
        let temp = temp_path(&self.path);
        tokio::fs::write(&temp, text).await.map_err(unavailable)?;
        if let Ok(metadata) = tokio::fs::metadata(&self.path).await {
            // Keep the file's mode: an operator's 0600 must not become 0644 by a write.
            let _ = tokio::fs::set_permissions(&temp, metadata.permissions()).await;
        }
        // Another process may have written since the first check: look again just before the
        // rename, so only a write inside these few microseconds can still be lost.
        let current = match self.current_revision().await {
            Ok(current) => current,
            Err(error) => {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(error);
            }
        };
        if current != expected {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(WriteError::Conflict { expected, current });
        }
        if let Err(error) = tokio::fs::rename(&temp, &self.path).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(unavailable(error));
        }
        Ok(Snapshot {
            upstreams,
            revision: hash(text.as_bytes()),
            meta: Some(meta),
            seen_at: SystemTime::now(),
        })
    }

    async fn current_revision(&self) -> Result<Revision, WriteError> {
        match look(&self.path).await {
            Look::Bytes(bytes) => Ok(hash(&bytes)),
            Look::Missing => Ok(Revision::Absent),
            Look::Unreadable(reason) => Err(WriteError::Unavailable(reason)),
        }
    }
}

/// A hidden name beside `path` (same directory, so the rename is atomic), unique per write.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upstreams".to_owned());
    path.with_file_name(format!(
        ".{name}.{}.{:08x}.tmp",
        std::process::id(),
        fastrand::u32(..)
    ))
}

impl UpstreamSource for FileSource {
    fn describe(&self) -> String {
        format!("file {}", self.inner.name)
    }

    fn read(&self) -> BoxFuture<'_, Result<Snapshot, ReadError>> {
        async move {
            match look(&self.inner.path).await {
                Look::Bytes(bytes) => {
                    let snapshot = self.inner.snapshot_of(&bytes);
                    if snapshot.is_ok() {
                        self.inner.status.live();
                    }
                    snapshot
                }
                Look::Missing => Err(ReadError::Missing(self.inner.name.clone())),
                Look::Unreadable(reason) => Err(ReadError::Unavailable(reason)),
            }
        }
        .boxed()
    }

    fn watch(&self, after: Option<Revision>) -> SourceWatch {
        let inner = self.inner.clone();
        SourceWatch::spawn(move |sender| inner.watch(after, sender))
    }

    fn write<'a>(
        &'a self,
        text: &'a str,
        expected: Revision,
        meta: ChangeMeta,
    ) -> BoxFuture<'a, Result<Snapshot, WriteError>> {
        self.inner.write(text, expected, meta).boxed()
    }

    fn status(&self) -> watch::Receiver<SourceStatus> {
        self.inner.status.subscribe()
    }
}
