//! The file source: atomic writes with a content-hash check, and polling for changes.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use buckler_config::LambdaDefaults;
use buckler_discovery::{
    ChangeMeta, FileSource, ReadError, RejectReason, Revision, SourceEvent, SourceStatus,
    SourceWatch, UpstreamSource, WriteError,
};

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "buckler-discovery-file-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn list(location: &str, weight: u32) -> String {
    format!(r#"[{{"serviceType":"swagger2","serviceLocation":"{location}","weight":{weight}}}]"#)
}

fn meta() -> ChangeMeta {
    ChangeMeta {
        changed_at: SystemTime::now(),
        from: Default::default(),
    }
}

fn source(path: &Path) -> FileSource {
    FileSource::new(
        path.to_path_buf(),
        LambdaDefaults::default(),
        Duration::from_millis(20),
    )
}

async fn next(watch: &mut SourceWatch) -> SourceEvent {
    match tokio::time::timeout(Duration::from_secs(2), watch.next()).await {
        Ok(Some(event)) => event,
        other => panic!("no event: {other:?}"),
    }
}

fn weight_of(event: &SourceEvent) -> u32 {
    match event {
        SourceEvent::Changed(snapshot) => snapshot.upstreams[0].weight,
        other => panic!("expected a new list, got {other:?}"),
    }
}

#[tokio::test]
async fn a_write_replaces_the_file_atomically_and_a_stale_revision_conflicts() {
    let dir = TempDir::new();
    let path = dir.0.join("upstreams.json");
    let source = source(&path);
    assert!(matches!(source.read().await, Err(ReadError::Missing(_))));
    // Expecting no file creates it; a second such write conflicts.
    let created = source
        .write(&list("http://a:1", 1), Revision::Absent, meta())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        list("http://a:1", 1)
    );
    assert!(matches!(
        source
            .write(&list("http://a:1", 2), Revision::Absent, meta())
            .await,
        Err(WriteError::Conflict {
            expected: Revision::Absent,
            ..
        })
    ));
    let read = source.read().await.unwrap();
    assert_eq!(read.revision, created.revision);
    assert!(matches!(read.revision, Revision::ContentHash(_)));

    let written = source
        .write(&list("http://a:1", 5), read.revision, meta())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        list("http://a:1", 5)
    );
    assert_ne!(written.revision, read.revision);
    // Someone edited the file after our read: the write loses and changes nothing.
    std::fs::write(&path, list("http://a:1", 7)).unwrap();
    let lost = source
        .write(&list("http://a:1", 9), written.revision, meta())
        .await;
    match lost {
        Err(WriteError::Conflict { expected, current }) => {
            assert_eq!(expected, written.revision);
            assert_eq!(current, source.read().await.unwrap().revision);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        list("http://a:1", 7)
    );
    let invalid = source
        .write("[{]", source.read().await.unwrap().revision, meta())
        .await;
    assert!(matches!(invalid, Err(WriteError::Invalid(_))));
    // No temp file is left behind.
    let names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["upstreams.json".to_owned()]);
}

#[tokio::test]
async fn the_watch_sees_edits_renames_invalid_values_and_deletion() {
    let dir = TempDir::new();
    let path = dir.0.join("upstreams.json");
    std::fs::write(&path, list("http://a:1", 1)).unwrap();
    let source = source(&path);
    let first = source.read().await.unwrap();
    let mut watch = source.watch(Some(first.revision));

    std::fs::write(&path, list("http://a:1", 2)).unwrap();
    assert_eq!(weight_of(&next(&mut watch).await), 2);

    // An editor's save: a new file renamed over the old one.
    let temp = dir.0.join("save.tmp");
    std::fs::write(&temp, list("http://a:1", 3)).unwrap();
    std::fs::rename(&temp, &path).unwrap();
    assert_eq!(weight_of(&next(&mut watch).await), 3);

    // Same size, written right after: the content hash still tells them apart.
    std::fs::write(&path, list("http://a:1", 4)).unwrap();
    assert_eq!(weight_of(&next(&mut watch).await), 4);

    std::fs::write(
        &path,
        "[\n  {\"serviceType\": \"swagger2\", \"serviceLocation\": \"http://a:1/x\"}\n]",
    )
    .unwrap();
    match next(&mut watch).await {
        SourceEvent::Rejected(rejection) => {
            let message = rejection.reason.to_string();
            assert!(
                message.starts_with(&format!("{}:2:", path.display()))
                    && message.contains("[0].serviceLocation"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(*source.status().borrow(), SourceStatus::Live);

    std::fs::remove_file(&path).unwrap();
    match next(&mut watch).await {
        SourceEvent::Rejected(rejection) => {
            assert_eq!(rejection.revision, Revision::Absent);
            assert!(matches!(rejection.reason, RejectReason::Deleted(_)));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        *source.status().borrow(),
        SourceStatus::Stale { .. }
    ));
    std::fs::write(&path, list("http://a:1", 6)).unwrap();
    assert_eq!(weight_of(&next(&mut watch).await), 6);
    assert_eq!(*source.status().borrow(), SourceStatus::Live);

    // Its own writes come through the watch too.
    let current = source.read().await.unwrap().revision;
    source
        .write(&list("http://a:1", 8), current, meta())
        .await
        .unwrap();
    assert_eq!(weight_of(&next(&mut watch).await), 8);
}

#[tokio::test]
async fn a_watch_from_nothing_waits_for_the_file_then_reports_it() {
    let dir = TempDir::new();
    let path = dir.0.join("later.json");
    let source = source(&path);
    let mut watch = source.watch(None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    match &*source.status().borrow() {
        SourceStatus::Waiting { reason } => assert!(reason.contains("does not exist"), "{reason}"),
        other => panic!("{other:?}"),
    }
    std::fs::write(&path, list("http://a:1", 1)).unwrap();
    assert_eq!(weight_of(&next(&mut watch).await), 1);
}
