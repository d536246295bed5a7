//! The etcd source against a real etcd (Debian's etcd-server), started on free loopback ports.

use std::time::{Duration, Instant, SystemTime};

use buckler_config::LambdaDefaults;
use buckler_discovery::testing::EtcdServer;
use buckler_discovery::{
    Backoff, ChangeMeta, EtcdOptions, EtcdSource, ReadError, RejectReason, Revision, SourceEvent,
    SourceStatus, SourceWatch, UpstreamSource, WriteError,
};

const KEY: &str = "/buckler/api.example.org/upstreams";

fn list(weights: &[(&str, u32)]) -> String {
    let entries: Vec<String> = weights
        .iter()
        .map(|(location, weight)| {
            format!(
                r#"{{"serviceType":"swagger2","serviceLocation":"{location}","weight":{weight}}}"#
            )
        })
        .collect();
    format!("[{}]", entries.join(","))
}

fn options() -> EtcdOptions {
    EtcdOptions {
        request_timeout: Duration::from_secs(1),
        backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(300),
        },
        watch_idle_timeout: Duration::from_secs(60),
    }
}

fn source(endpoints: &[String]) -> EtcdSource {
    EtcdSource::new(endpoints, KEY, LambdaDefaults::default(), options()).unwrap()
}

async fn next(watch: &mut SourceWatch, within: Duration) -> SourceEvent {
    match tokio::time::timeout(within, watch.next()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("the watch ended"),
        Err(_) => panic!("no event within {within:?}"),
    }
}

fn weights(event: &SourceEvent) -> Vec<(String, u32)> {
    match event {
        SourceEvent::Changed(snapshot) => snapshot
            .upstreams
            .iter()
            .map(|u| (u.identity().to_owned(), u.weight))
            .collect(),
        other => panic!("expected a new list, got {other:?}"),
    }
}

async fn status_becomes(
    source: &EtcdSource,
    within: Duration,
    wanted: fn(&SourceStatus) -> bool,
) -> SourceStatus {
    let mut status = source.status();
    let deadline = Instant::now() + within;
    loop {
        let current = status.borrow_and_update().clone();
        if wanted(&current) {
            return current;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, status.changed()).await.is_err() {
            panic!("status still {current:?} after {within:?}");
        }
    }
}

#[tokio::test]
async fn a_new_value_is_seen_within_a_second_and_an_invalid_one_is_rejected_with_its_position() {
    let etcd = EtcdServer::started();
    let dead = format!(
        "http://127.0.0.1:{}",
        buckler_discovery::testing::free_port()
    );
    // The first endpoint is down: the client moves on to the live one.
    let source = source(&[dead, etcd.url()]);
    let client = source.client().clone();
    assert!(matches!(source.read().await, Err(ReadError::Missing(_))));
    client
        .put(KEY, list(&[("http://a:1", 1)]).as_bytes())
        .await
        .unwrap();
    let first = source.read().await.unwrap();
    assert!(matches!(first.revision, Revision::Etcd(_)));
    assert_eq!(first.meta, None);
    let mut watch = source.watch(Some(first.revision));

    let put_at = Instant::now();
    client
        .put(
            KEY,
            list(&[("http://a:1", 5), ("http://b:1", 1)]).as_bytes(),
        )
        .await
        .unwrap();
    let event = next(&mut watch, Duration::from_secs(1)).await;
    assert!(put_at.elapsed() < Duration::from_secs(1));
    assert_eq!(
        weights(&event),
        vec![("http://a:1".into(), 5), ("http://b:1".into(), 1)]
    );
    let SourceEvent::Changed(second) = event else {
        unreachable!()
    };
    // Written by another tool: no change record, anchored to when it was seen.
    assert_eq!(second.meta, None);
    assert_eq!(second.anchor(), second.seen_at);

    client
        .put(
            KEY,
            br#"[{"serviceType":"swagger2","serviceLocation":"http://a:1","weight":-1}]"#,
        )
        .await
        .unwrap();
    match next(&mut watch, Duration::from_secs(1)).await {
        SourceEvent::Rejected(rejection) => {
            assert!(matches!(rejection.revision, Revision::Etcd(_)));
            let message = rejection.reason.to_string();
            assert!(
                message.starts_with(&format!("etcd:{KEY}:1:")) && message.contains("[0].weight"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(*source.status().borrow(), SourceStatus::Live);

    // A deleted key is refused too: an empty set is never inferred.
    client.delete(KEY).await.unwrap();
    match next(&mut watch, Duration::from_secs(1)).await {
        SourceEvent::Rejected(rejection) => {
            assert_eq!(rejection.revision, Revision::Absent);
            assert!(matches!(rejection.reason, RejectReason::Deleted(_)));
        }
        other => panic!("{other:?}"),
    }
    client
        .put(KEY, list(&[("http://c:1", 2)]).as_bytes())
        .await
        .unwrap();
    let event = next(&mut watch, Duration::from_secs(1)).await;
    assert_eq!(weights(&event), vec![("http://c:1".into(), 2)]);
}

#[tokio::test]
async fn a_write_records_its_change_beside_the_list_and_a_stale_revision_conflicts() {
    let etcd = EtcdServer::started();
    let source = source(&[etcd.url()]);
    let client = source.client().clone();
    let changed_at = SystemTime::now() - Duration::from_secs(3);
    let meta = ChangeMeta {
        changed_at,
        from: [("http://a:1".to_owned(), 2.5)].into_iter().collect(),
    };
    // The first write creates the key, expecting it absent.
    let text = list(&[("http://a:1", 4)]);
    let created = source
        .write(&text, Revision::Absent, meta.clone())
        .await
        .unwrap();
    let Revision::Etcd(created_revision) = created.revision else {
        panic!("{:?}", created.revision)
    };
    let again = source.write(&text, Revision::Absent, meta.clone()).await;
    assert_eq!(
        again,
        Err(WriteError::Conflict {
            expected: Revision::Absent,
            current: created.revision
        })
    );

    // Another instance of the fleet follows the same key.
    let other = EtcdSource::new(&[etcd.url()], KEY, LambdaDefaults::default(), options()).unwrap();
    let mut watch = other.watch(Some(created.revision));
    let text = list(&[("http://a:1", 10)]);
    let written = source
        .write(&text, created.revision, meta.clone())
        .await
        .unwrap();
    let Revision::Etcd(revision) = written.revision else {
        panic!()
    };
    assert!(revision > created_revision);
    // The array in KEY, the record in KEY/meta, in the same revision.
    let (value, value_revision) = client.get(KEY).await.unwrap().unwrap();
    assert_eq!(value, text.as_bytes());
    assert_eq!(value_revision, revision);
    let (record, record_revision) = client.get(&format!("{KEY}/meta")).await.unwrap().unwrap();
    assert_eq!(record_revision, revision);
    let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(
        record["changedAt"],
        buckler_discovery::format_rfc3339(changed_at).as_str()
    );
    assert_eq!(record["from"]["http://a:1"], 2.5);

    // The other instance's watch sees the record, so both anchor ramps to the recorded time.
    match next(&mut watch, Duration::from_secs(1)).await {
        SourceEvent::Changed(snapshot) => {
            assert_eq!(snapshot.revision, written.revision);
            let seen = snapshot.meta.as_ref().expect("the change record");
            assert_eq!(seen.from, meta.from);
            let drift = seen
                .changed_at
                .duration_since(changed_at)
                .unwrap_or_else(|e| e.duration());
            assert!(drift < Duration::from_millis(1), "{drift:?}");
            assert_eq!(snapshot.anchor(), seen.changed_at);
        }
        other => panic!("{other:?}"),
    }
    // An instance started now reads the record with the value.
    let read = other.read().await.unwrap();
    assert_eq!(read.revision, written.revision);
    assert_eq!(read.meta.expect("the change record").from, meta.from);

    // A lost race: the writer's revision is stale.
    let stale = source
        .write(&list(&[("http://a:1", 1)]), created.revision, meta.clone())
        .await;
    assert_eq!(
        stale,
        Err(WriteError::Conflict {
            expected: created.revision,
            current: written.revision
        })
    );
    assert_eq!(client.get(KEY).await.unwrap().unwrap().0, text.as_bytes());
    // An invalid list is refused before etcd is asked.
    let invalid = source
        .write(
            r#"[{"serviceType":"swagger2"}]"#,
            written.revision,
            meta.clone(),
        )
        .await;
    assert!(
        matches!(invalid, Err(WriteError::Invalid(_))),
        "{invalid:?}"
    );

    // A value put by another tool after Buckler's write leaves the old record behind: it
    // does not match, so the value is anchored to when it is seen.
    client
        .put(KEY, list(&[("http://a:1", 7)]).as_bytes())
        .await
        .unwrap();
    match next(&mut watch, Duration::from_secs(1)).await {
        SourceEvent::Changed(snapshot) => assert_eq!(snapshot.meta, None),
        other => panic!("{other:?}"),
    }
    assert_eq!(source.read().await.unwrap().meta, None);
}

#[tokio::test]
async fn the_watch_resumes_after_etcd_restarts_and_sees_a_value_written_after() {
    let mut etcd = EtcdServer::started();
    let source = source(&[etcd.url()]);
    let client = source.client().clone();
    client
        .put(KEY, list(&[("http://a:1", 1)]).as_bytes())
        .await
        .unwrap();
    let mut watch = source.watch(None);
    let event = next(&mut watch, Duration::from_secs(2)).await;
    assert_eq!(weights(&event), vec![("http://a:1".into(), 1)]);
    status_becomes(&source, Duration::from_secs(2), |s| {
        *s == SourceStatus::Live
    })
    .await;

    etcd.kill();
    let stale = status_becomes(&source, Duration::from_secs(5), |s| {
        matches!(s, SourceStatus::Stale { .. })
    })
    .await;
    assert!(format!("{stale:?}").contains("etcd"), "{stale:?}");
    etcd.start();
    client
        .put(KEY, list(&[("http://a:1", 9)]).as_bytes())
        .await
        .unwrap();
    let event = next(&mut watch, Duration::from_secs(5)).await;
    assert_eq!(weights(&event), vec![("http://a:1".into(), 9)]);
    status_becomes(&source, Duration::from_secs(2), |s| {
        *s == SourceStatus::Live
    })
    .await;
}

#[tokio::test]
async fn a_compacted_revision_makes_the_watch_re_read_the_key() {
    let etcd = EtcdServer::started();
    let source = source(&[etcd.url()]);
    let client = source.client().clone();
    let old = client
        .put(KEY, list(&[("http://a:1", 1)]).as_bytes())
        .await
        .unwrap();
    client
        .put(KEY, list(&[("http://a:1", 2)]).as_bytes())
        .await
        .unwrap();
    for i in 0..5 {
        client
            .put("/other", format!("{i}").as_bytes())
            .await
            .unwrap();
    }
    let newest = client
        .put(KEY, list(&[("http://a:1", 3)]).as_bytes())
        .await
        .unwrap();
    let last = client.put("/other", b"x").await.unwrap();
    client.compact(last).await.unwrap();
    // Watching from before the compaction: etcd cancels, the source re-reads, and reports
    // the current value once.
    let mut watch = source.watch(Some(Revision::Etcd(old)));
    let event = next(&mut watch, Duration::from_secs(2)).await;
    assert_eq!(weights(&event), vec![("http://a:1".into(), 3)]);
    let SourceEvent::Changed(snapshot) = event else {
        unreachable!()
    };
    assert_eq!(snapshot.revision, Revision::Etcd(newest));
    assert_eq!(source.compaction_rereads(), 1);
    // And it follows on from there.
    client
        .put(KEY, list(&[("http://a:1", 4)]).as_bytes())
        .await
        .unwrap();
    let event = next(&mut watch, Duration::from_secs(1)).await;
    assert_eq!(weights(&event), vec![("http://a:1".into(), 4)]);
    assert_eq!(source.compaction_rereads(), 1);
}

#[tokio::test]
async fn a_source_opened_while_etcd_is_down_waits_then_goes_live() {
    let mut etcd = EtcdServer::prepared();
    let source = source(&[etcd.url()]);
    assert!(matches!(
        source.read().await,
        Err(ReadError::Unavailable(_))
    ));
    let mut watch = source.watch(None);
    let waiting = status_becomes(
        &source,
        Duration::from_secs(2),
        |s| matches!(s, SourceStatus::Waiting { reason } if reason.contains("unreachable")),
    )
    .await;
    assert!(format!("{waiting:?}").contains(&etcd.url()), "{waiting:?}");

    etcd.start();
    // Up, but the key has no value yet: still waiting, and saying why.
    status_becomes(
        &source,
        Duration::from_secs(5),
        |s| matches!(s, SourceStatus::Waiting { reason } if reason.contains("has no value yet")),
    )
    .await;
    source
        .client()
        .put(KEY, list(&[("http://a:1", 3)]).as_bytes())
        .await
        .unwrap();
    let event = next(&mut watch, Duration::from_secs(2)).await;
    assert_eq!(weights(&event), vec![("http://a:1".into(), 3)]);
    status_becomes(&source, Duration::from_secs(1), |s| {
        *s == SourceStatus::Live
    })
    .await;
}

#[tokio::test]
async fn a_quiet_watch_is_reopened_and_misses_nothing() {
    let etcd = EtcdServer::started();
    let quiet = EtcdOptions {
        watch_idle_timeout: Duration::from_millis(100),
        ..options()
    };
    let source = EtcdSource::new(&[etcd.url()], KEY, LambdaDefaults::default(), quiet).unwrap();
    let client = source.client().clone();
    client
        .put(KEY, list(&[("http://a:1", 1)]).as_bytes())
        .await
        .unwrap();
    let mut watch = source.watch(None);
    assert_eq!(
        weights(&next(&mut watch, Duration::from_secs(2)).await),
        vec![("http://a:1".into(), 1)]
    );
    // Several idle reopens pass; a value put between two of them still arrives, once.
    tokio::time::sleep(Duration::from_millis(450)).await;
    client
        .put(KEY, list(&[("http://a:1", 2)]).as_bytes())
        .await
        .unwrap();
    assert_eq!(
        weights(&next(&mut watch, Duration::from_secs(1)).await),
        vec![("http://a:1".into(), 2)]
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(350), watch.next())
            .await
            .is_err()
    );
    assert_eq!(*source.status().borrow(), SourceStatus::Live);
}
