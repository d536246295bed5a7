//! Noticing that certificate files changed on disk, by polling their content.
//!
//! Polling rather than inotify: it sees in-place rewrites, renames over the file, and the
//! symlink swaps Kubernetes does for mounted secrets alike (Envoy's file watch notices only
//! the last, Traefik's none of them), and costs a few small reads per interval.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// What a file held at a poll: the SHA-256 of its content, or `None` when it could not be
/// read (missing, or no permission).
type Content = Option<[u8; 32]>;

#[derive(Debug)]
struct FileState {
    /// The content last reported (or seen when watching began).
    settled: Content,
    /// The content seen at the last poll.
    last_seen: Content,
}

/// Polls a set of files and says which ones changed.
///
/// A file counts as changed when its content differs (by SHA-256) from the content last
/// reported. Comparing content rather than mtime and size catches a same-size rewrite within
/// the file system's timestamp granularity, and ignores a `touch`.
///
/// Changes are reported only from a poll at which no watched file changed since the poll
/// before: a rotation that writes the key, then the certificate, then renames them, is
/// reported once, whole, one interval after its last write, instead of as a half-written
/// pair (which would fail validation and keep the old pair anyway). A file that disappears is
/// reported once it stays gone for a poll, and again when it is back.
#[derive(Debug, Default)]
pub struct FileWatcher {
    files: BTreeMap<PathBuf, FileState>,
}

impl FileWatcher {
    /// Watches `paths`, taking their content now as the baseline (blocking reads). Create the
    /// watcher before loading the certificates it guards, so a change in between is reported
    /// rather than missed.
    pub fn new<P: Into<PathBuf>>(paths: impl IntoIterator<Item = P>) -> FileWatcher {
        let mut watcher = FileWatcher::default();
        watcher.set_paths(paths);
        watcher
    }

    /// Watches exactly `paths` from now on (after a config reload). Paths already watched
    /// keep their state; new ones take their content now as the baseline.
    pub fn set_paths<P: Into<PathBuf>>(&mut self, paths: impl IntoIterator<Item = P>) {
        let mut files = BTreeMap::new();
        for path in paths {
            let path = path.into();
            let state = match self.files.remove(&path) {
                Some(state) => state,
                None => {
                    let content = read_content(&path);
                    FileState {
                        settled: content,
                        last_seen: content,
                    }
                }
            };
            files.insert(path, state);
        }
        self.files = files;
    }

    /// The files being watched.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.keys().map(PathBuf::as_path)
    }

    /// Reads every file once (blocking) and returns those that changed since the last report,
    /// in path order, if no file changed since the previous poll. Empty otherwise.
    pub fn poll(&mut self) -> Vec<PathBuf> {
        let mut still_moving = false;
        for (path, state) in &mut self.files {
            let now = read_content(path);
            still_moving |= now != state.last_seen;
            state.last_seen = now;
        }
        if still_moving {
            return Vec::new();
        }
        let mut changed = Vec::new();
        for (path, state) in &mut self.files {
            if state.last_seen != state.settled {
                state.settled = state.last_seen;
                changed.push(path.clone());
            }
        }
        changed
    }
}

fn read_content(path: &Path) -> Content {
    std::fs::read(path)
        .ok()
        .map(|bytes| Sha256::digest(&bytes).into())
}

/// A [`FileWatcher`] polling on a tokio task. Dropping it stops the task.
#[derive(Debug)]
pub struct FileWatch {
    changes: mpsc::Receiver<Vec<PathBuf>>,
    paths: WatchedPaths,
    task: JoinHandle<()>,
}

/// Changes which files a [`FileWatch`] polls; cheap to clone, so the code that reloads the
/// config can hold one while a task owns the [`FileWatch`].
#[derive(Debug, Clone)]
pub struct WatchedPaths(Arc<watch::Sender<Vec<PathBuf>>>);

impl WatchedPaths {
    /// Watches exactly `paths` from the next poll on (after a config reload). Files already
    /// watched keep their state; new ones take their content at that poll as the baseline.
    /// Does nothing once the watch has stopped.
    pub fn set(&self, paths: Vec<PathBuf>) {
        self.0.send_replace(paths);
    }
}

impl FileWatch {
    /// How often the gateway polls certificate files: a rotation is picked up within about
    /// two intervals (one to see it, one to see that it stopped changing).
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

    /// Polls `watcher` every `interval` (the reads run on the blocking pool) and sends each
    /// non-empty set of changed files. Must be called inside a tokio runtime. An `interval`
    /// of zero is taken as one millisecond.
    pub fn spawn(watcher: FileWatcher, interval: Duration) -> FileWatch {
        let interval = interval.max(Duration::from_millis(1));
        let (change_tx, changes) = mpsc::channel(4);
        let initial: Vec<PathBuf> = watcher.paths().map(Path::to_path_buf).collect();
        let (paths, mut path_rx) = watch::channel(initial);
        let paths = WatchedPaths(Arc::new(paths));
        let task = tokio::spawn(async move {
            let mut watcher = Some(watcher);
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate; the baseline was just taken
            loop {
                ticks.tick().await;
                let new_paths = match path_rx.has_changed() {
                    Ok(true) => Some(path_rx.borrow_and_update().clone()),
                    Ok(false) => None,
                    Err(_) => return, // the FileWatch was dropped
                };
                let Some(mut polling) = watcher.take() else {
                    return;
                };
                let polled = tokio::task::spawn_blocking(move || {
                    if let Some(paths) = new_paths {
                        polling.set_paths(paths);
                    }
                    let changed = polling.poll();
                    (polling, changed)
                })
                .await;
                let Ok((polling, changed)) = polled else {
                    return; // the runtime is shutting down
                };
                watcher = Some(polling);
                if !changed.is_empty() && change_tx.send(changed).await.is_err() {
                    return;
                }
            }
        });
        FileWatch {
            changes,
            paths,
            task,
        }
    }

    /// The next set of changed files; `None` once the polling task has stopped.
    pub async fn changed(&mut self) -> Option<Vec<PathBuf>> {
        self.changes.recv().await
    }

    /// Watches exactly `paths` from the next poll on; see [`WatchedPaths::set`].
    pub fn set_paths(&self, paths: Vec<PathBuf>) {
        self.paths.set(paths);
    }

    /// A handle that changes the watched files, for whoever applies config reloads.
    pub fn watched_paths(&self) -> WatchedPaths {
        self.paths.clone()
    }
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "buckler-tls-watch-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn reports_a_pair_once_nothing_moved_for_a_poll() {
        let dir = TempDir::new("twice");
        let cert = dir.0.join("cert.pem");
        let key = dir.0.join("key.pem");
        std::fs::write(&cert, "one").unwrap();
        std::fs::write(&key, "one").unwrap();
        let mut watcher = FileWatcher::new([&cert, &key]);
        assert!(watcher.poll().is_empty());

        std::fs::write(&key, "two").unwrap();
        assert!(watcher.poll().is_empty(), "first sighting waits");
        std::fs::write(&cert, "two").unwrap();
        assert!(watcher.poll().is_empty(), "the cert is still being written");
        assert_eq!(
            watcher.poll(),
            vec![cert.clone(), key.clone()],
            "the pair, whole"
        );
        assert!(watcher.poll().is_empty(), "reported once");
    }

    #[test]
    fn a_change_that_keeps_changing_waits_and_a_revert_is_no_change() {
        let dir = TempDir::new("revert");
        let cert = dir.0.join("cert.pem");
        std::fs::write(&cert, "one").unwrap();
        let mut watcher = FileWatcher::new([&cert]);
        std::fs::write(&cert, "two").unwrap();
        assert!(watcher.poll().is_empty());
        std::fs::write(&cert, "three").unwrap();
        assert!(watcher.poll().is_empty(), "still being written");
        std::fs::write(&cert, "one").unwrap();
        assert!(watcher.poll().is_empty(), "back to what was reported");
        assert!(watcher.poll().is_empty());
    }

    #[test]
    fn a_touch_is_not_a_change_and_same_size_rewrite_is() {
        let dir = TempDir::new("touch");
        let cert = dir.0.join("cert.pem");
        std::fs::write(&cert, "aaaa").unwrap();
        let mut watcher = FileWatcher::new([&cert]);
        std::fs::write(&cert, "aaaa").unwrap();
        assert!(watcher.poll().is_empty());
        assert!(watcher.poll().is_empty());
        std::fs::write(&cert, "bbbb").unwrap();
        watcher.poll();
        assert_eq!(watcher.poll(), vec![cert]);
    }

    #[test]
    fn disappearing_and_returning_files_are_reported_each_time() {
        let dir = TempDir::new("gone");
        let cert = dir.0.join("cert.pem");
        std::fs::write(&cert, "one").unwrap();
        let mut watcher = FileWatcher::new([&cert]);
        std::fs::remove_file(&cert).unwrap();
        watcher.poll();
        assert_eq!(watcher.poll(), vec![cert.clone()]);
        std::fs::write(&cert, "one").unwrap();
        watcher.poll();
        assert_eq!(watcher.poll(), vec![cert.clone()]);
    }

    #[test]
    fn set_paths_keeps_state_of_known_files_and_baselines_new_ones() {
        let dir = TempDir::new("paths");
        let a = dir.0.join("a.pem");
        let b = dir.0.join("b.pem");
        std::fs::write(&a, "one").unwrap();
        std::fs::write(&b, "one").unwrap();
        let mut watcher = FileWatcher::new([&a]);
        std::fs::write(&a, "two").unwrap();
        watcher.poll();
        watcher.set_paths([&a, &b]);
        assert_eq!(
            watcher.poll(),
            vec![a.clone()],
            "a's pending change survives"
        );
        assert!(
            watcher.poll().is_empty(),
            "b's current content is its baseline"
        );
        watcher.set_paths([&b]);
        assert_eq!(watcher.paths().collect::<Vec<_>>(), vec![b.as_path()]);
    }
}
