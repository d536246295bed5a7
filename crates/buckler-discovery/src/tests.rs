//! Unit tests of the pieces shared by every source.

use std::time::{Duration, UNIX_EPOCH};

use buckler_config::LambdaDefaults;

use super::*;
use crate::json::{meta_from_json, meta_to_json};

fn lambda() -> LambdaDefaults {
    LambdaDefaults::default()
}

#[test]
fn a_written_list_parses_back_to_the_same_list() {
    let text = r#"[{"serviceType":"swagger2","serviceLocation":"HTTP://Example.org:8080","weight":3},
        {"serviceType":"lambda","serviceLocation":"arn:aws:lambda:us-east-1:123456789012:function:orders"}]"#;
    let specs = buckler_config::parse_upstreams(text, "t", &lambda()).unwrap();
    let written = upstreams_to_json(&specs);
    assert_eq!(
        buckler_config::parse_upstreams(&written, "t", &lambda()).unwrap(),
        specs
    );
    assert!(
        written.contains(r#""serviceLocation":"http://example.org:8080""#),
        "{written}"
    );
    assert_eq!(upstreams_to_json(&[]), "[]\n");
}

#[test]
fn a_change_record_round_trips_and_bad_ones_are_none() {
    let meta = ChangeMeta {
        changed_at: UNIX_EPOCH + Duration::from_millis(1_796_679_005_123),
        from: [
            ("http://a:1".to_owned(), 2.5),
            ("http://b:1".to_owned(), 0.0),
        ]
        .into_iter()
        .collect(),
    };
    let json = meta_to_json(&meta);
    assert_eq!(
        json,
        r#"{"changedAt":"2026-12-07T21:30:05.123Z","from":{"http://a:1":2.5,"http://b:1":0.0}}"#
    );
    assert_eq!(meta_from_json(json.as_bytes()), Some(meta));
    assert_eq!(meta_from_json(b"[1]"), None);
    assert_eq!(meta_from_json(br#"{"changedAt":"yesterday"}"#), None);
    let partial =
        meta_from_json(br#"{"changedAt":"2026-12-07T21:30:05Z","from":{"a":-1,"b":"x","c":4}}"#)
            .unwrap();
    assert_eq!(partial.from.len(), 1);
    assert_eq!(partial.from["c"], 4.0);
}

#[test]
fn the_anchor_is_the_recorded_time_but_never_after_it_was_seen() {
    let seen_at = UNIX_EPOCH + Duration::from_secs(1_000);
    let mut snapshot = Snapshot {
        upstreams: Vec::new(),
        revision: Revision::Etcd(7),
        meta: None,
        seen_at,
    };
    assert_eq!(snapshot.anchor(), seen_at);
    snapshot.meta = Some(ChangeMeta {
        changed_at: seen_at - Duration::from_secs(4),
        from: Default::default(),
    });
    assert_eq!(snapshot.anchor(), seen_at - Duration::from_secs(4));
    assert_eq!(
        snapshot.anchor_age(seen_at + Duration::from_secs(1)),
        Duration::from_secs(5)
    );
    snapshot.meta = Some(ChangeMeta {
        changed_at: seen_at + Duration::from_secs(4),
        from: Default::default(),
    });
    assert_eq!(snapshot.anchor(), seen_at);
    assert_eq!(
        snapshot.anchor_age(seen_at - Duration::from_secs(1)),
        Duration::ZERO
    );
}

#[test]
fn not_utf8_is_reported_at_its_position() {
    let errors = parse_value(b"[\n  {\"a\xff\"}]", "etcd:/k", &lambda()).unwrap_err();
    assert_eq!(errors.to_string(), "etcd:/k:2:6: not UTF-8");
}

#[test]
fn revisions_display_shortly() {
    assert_eq!(Revision::Absent.to_string(), "absent");
    assert_eq!(Revision::Static(3).to_string(), "static-3");
    assert_eq!(Revision::Etcd(42).to_string(), "etcd-42");
    assert_eq!(
        Revision::ContentHash([0xab; 32]).to_string(),
        "sha256-abababababababab"
    );
}

#[tokio::test]
async fn a_static_source_replaces_in_memory_and_refuses_a_stale_revision() {
    let initial = buckler_config::parse_upstreams(
        r#"[{"serviceType":"swagger2","serviceLocation":"http://a:1"}]"#,
        "t",
        &lambda(),
    )
    .unwrap();
    let source = StaticSource::new(initial.clone(), lambda());
    let first = source.read().await.unwrap();
    assert_eq!(first.revision, Revision::Static(1));
    assert_eq!(first.upstreams, initial);
    let mut watch = source.watch(Some(first.revision));
    let meta = ChangeMeta {
        changed_at: SystemTime::now(),
        from: Default::default(),
    };
    let written = source
        .write(
            r#"[{"serviceType":"swagger2","serviceLocation":"http://b:1","weight":5}]"#,
            Revision::Static(1),
            meta.clone(),
        )
        .await
        .unwrap();
    assert_eq!(written.revision, Revision::Static(2));
    assert_eq!(written.meta, Some(meta.clone()));
    match watch.next().await {
        Some(SourceEvent::Changed(snapshot)) => assert_eq!(snapshot, written),
        other => panic!("{other:?}"),
    }
    let stale = source.write("[]", Revision::Static(1), meta.clone()).await;
    assert_eq!(
        stale,
        Err(WriteError::Conflict {
            expected: Revision::Static(1),
            current: Revision::Static(2)
        })
    );
    let invalid = source
        .write(
            r#"[{"serviceType":"nope","serviceLocation":"http://b:1"}]"#,
            Revision::Static(2),
            meta,
        )
        .await;
    match invalid {
        Err(WriteError::Invalid(errors)) => {
            assert!(
                errors
                    .to_string()
                    .starts_with("request body:1:17: [0].serviceType"),
                "{errors}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(source.read().await.unwrap(), written);
    assert_eq!(*source.status().borrow(), SourceStatus::Live);
}

#[test]
fn open_builds_each_kind_and_refuses_a_bad_endpoint() {
    let options = SourceOptions::default();
    let etcd = UpstreamWatcher::Etcd {
        endpoints: vec!["http://127.0.0.1:1".to_owned()],
        key: "/k".to_owned(),
    };
    assert_eq!(
        open(&etcd, &lambda(), &options).unwrap().describe(),
        "etcd key /k at http://127.0.0.1:1"
    );
    let file = UpstreamWatcher::File {
        path: "/x/u.json".into(),
    };
    assert_eq!(
        open(&file, &lambda(), &options).unwrap().describe(),
        "file /x/u.json"
    );
    let bad = UpstreamWatcher::Etcd {
        endpoints: vec!["127.0.0.1:2379".to_owned()],
        key: "/k".to_owned(),
    };
    assert!(matches!(
        open(&bad, &lambda(), &options),
        Err(OpenError::BadEndpoint { .. })
    ));
}
