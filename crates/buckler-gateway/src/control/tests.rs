//! The control plane against real (fake) upstreams.
use super::*;
use std::path::Path;
use std::time::Instant;

async fn control() -> Arc<Control> {
    // A domain whose only upstream never answers: nothing but the test publishes.
    let config = buckler_config::parse(
        r#"{ listen: "127.0.0.1:0", domains: [{ "domain-name": "*", upstreams: [
            { serviceType: "swagger2", serviceLocation: "http://127.0.0.1:9" } ] }] }"#,
        Path::new("test.json5"),
    )
    .unwrap();
    Control::start(config, HttpUpstreamClient::new())
        .await
        .unwrap()
}

/// A control plane for one wildcard domain with a swagger2 upstream at each location.
async fn control_over(locations: &[String]) -> Arc<Control> {
    let upstreams: Vec<String> = locations
        .iter()
        .map(|l| format!(r#"{{ serviceType: "swagger2", serviceLocation: "{l}" }}"#))
        .collect();
    let config = buckler_config::parse(
        &format!(
            r#"{{ listen: "127.0.0.1:0", domains: [{{ "domain-name": "*", upstreams: [{}] }}] }}"#,
            upstreams.join(", ")
        ),
        Path::new("test.json5"),
    )
    .unwrap();
    Control::start(config, HttpUpstreamClient::new())
        .await
        .unwrap()
}

/// `(identity, state, target weight)` of the wildcard domain's upstreams, in listing order.
fn listed(control: &Control) -> Vec<(String, UpstreamState, u32)> {
    control.table().domains()[0]
        .upstreams
        .iter()
        .map(|u| (u.identity().to_owned(), u.state(), u.target_weight()))
        .collect()
}

async fn put(control: &Arc<Control>, upstreams: &[(&str, &str, u32)]) -> UpstreamDiff {
    let body: Vec<String> = upstreams
        .iter()
        .map(|(kind, location, weight)| {
            format!(
                r#"{{"serviceType": "{kind}", "serviceLocation": "{location}", "weight": {weight}}}"#
            )
        })
        .collect();
    control
        .write_upstreams("*", &format!("[{}]", body.join(",")))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_replaced_list_is_classified_and_keeps_the_configured_order() {
    let (a, b, c, d) = (
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        "http://127.0.0.1:3",
        "http://127.0.0.1:4",
    );
    let control = control_over(&[a.to_owned(), b.to_owned(), c.to_owned()]).await;
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    use UpstreamState::Draining;

    let diff = put(
        &control,
        &[("swagger2", c, 1), ("swagger2", d, 1), ("swagger2", a, 5)],
    )
    .await;
    assert_eq!(diff.added, names(&[d]));
    assert_eq!(diff.reweighted, names(&[a]));
    assert_eq!(diff.unchanged, names(&[c]));
    assert_eq!(diff.removed, names(&[b]));
    assert!(diff.revived.is_empty());
    let order: Vec<_> = listed(&control).into_iter().map(|(id, ..)| id).collect();
    assert_eq!(
        order,
        names(&[c, d, a, b]),
        "wanted in order, then the draining"
    );
    assert_eq!(listed(&control)[3].1, Draining);
    assert_eq!(listed(&control)[2].2, 5);

    // The draining one comes back; the ones left out drain, in their old order.
    let diff = put(&control, &[("swagger2", b, 2), ("swagger2", c, 1)]).await;
    assert_eq!(diff.revived, names(&[b]));
    assert_eq!(diff.unchanged, names(&[c]));
    assert_eq!(diff.removed, names(&[d, a]));
    assert!(diff.added.is_empty() && diff.reweighted.is_empty());
    let listed_now = listed(&control);
    let order: Vec<_> = listed_now.iter().map(|(id, ..)| id.clone()).collect();
    assert_eq!(order, names(&[b, c, d, a]));
    assert_ne!(listed_now[0].1, Draining);
    assert_eq!(listed_now[0].2, 2);
    assert!(listed_now[2..]
        .iter()
        .all(|(_, state, _)| *state == Draining));

    // The same location under another service type replaces the old one outright, and one
    // already draining is not removed twice.
    let diff = put(&control, &[("swagger1", c, 1)]).await;
    assert_eq!(diff.added, names(&[c]));
    assert_eq!(diff.removed, names(&[b]));
    let listed_now = listed(&control);
    let order: Vec<_> = listed_now.iter().map(|(id, ..)| id.clone()).collect();
    assert_eq!(order, names(&[c, b, d, a]));
    assert_ne!(listed_now[0].1, Draining);
}

#[tokio::test]
async fn coalesced_publishes_share_rebuilds_and_each_waits_for_one() {
    let control = control().await;
    let before = control.table().generation;
    let asks: Vec<_> = (0..50)
        .map(|_| {
            let control = control.clone();
            tokio::spawn(async move {
                let asked_after = control.table().generation;
                control.publish_coalesced().await;
                // A table built after the ask is out by the time it returns.
                assert!(control.table().generation > asked_after);
            })
        })
        .collect();
    for ask in asks {
        ask.await.unwrap();
    }
    let rebuilds = control.table().generation - before;
    assert!(
        (1..50).contains(&rebuilds),
        "50 asks took {rebuilds} rebuilds"
    );
}

#[tokio::test]
async fn at_most_sixteen_documents_load_at_once() {
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // 24 upstreams whose document takes 150 ms to answer: without the cap all 24 loads
    // would be in flight together.
    let doc = buckler_testkit::Swagger2Doc::new("slow", "1")
        .op("get", "/hello")
        .to_json();
    let response: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{doc}",
            doc.len()
        )
        .into_boxed_str(),
    );
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut locations = Vec::new();
    for _ in 0..24 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        locations.push(format!("http://{}", listener.local_addr().unwrap()));
        let (in_flight, most) = (in_flight.clone(), most.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (in_flight, most) = (in_flight.clone(), most.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
    }
    let control = control_over(&locations).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !control.is_ready() {
        assert!(
            Instant::now() < deadline,
            "not every upstream loaded its docs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 16, "{most} documents loaded at once");
    assert!(most > 1, "loads ran one at a time");
}

#[tokio::test]
async fn silent_upstreams_do_not_hold_the_load_cap() {
    use std::sync::atomic::AtomicUsize;
    use tokio::io::AsyncReadExt;

    // 16 upstreams that take the request and never answer (the fetch times out after 10 s),
    // then one that answers: it must load while all 16 are still waiting.
    let gave_up = Arc::new(AtomicUsize::new(0));
    let mut locations = Vec::new();
    for _ in 0..16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        locations.push(format!("http://{}", listener.local_addr().unwrap()));
        let gave_up = gave_up.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let gave_up = gave_up.clone();
                tokio::spawn(async move {
                    let mut chunk = [0u8; 1024];
                    // Read the request and never answer; EOF means the loader gave up.
                    while let Ok(n) = stream.read(&mut chunk).await {
                        if n == 0 {
                            break;
                        }
                    }
                    gave_up.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
    }
    let healthy = buckler_testkit::FakeUpstream::builder("healthy")
        .doc(
            buckler_testkit::Swagger2Doc::new("healthy", "1")
                .op("get", "/hello")
                .to_json(),
        )
        .start()
        .await;
    locations.push(healthy.url());
    let control = control_over(&locations).await;
    let healthy_served = || {
        let table = control.table();
        table.domains()[0]
            .upstreams
            .last()
            .is_some_and(|u| u.has_served())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !healthy_served() {
        assert!(
            Instant::now() < deadline,
            "the healthy upstream never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gave_up = gave_up.load(Ordering::SeqCst);
    assert_eq!(
        gave_up, 0,
        "the healthy upstream loaded only after {gave_up} silent loads timed out"
    );
}

#[tokio::test]
async fn a_lone_ask_is_published_at_once() {
    let control = control().await;
    let before = control.table().generation;
    tokio::time::timeout(Duration::from_secs(5), control.publish_coalesced())
        .await
        .expect("published");
    assert_eq!(control.table().generation, before + 1);
}

#[tokio::test]
async fn upstreams_serving_one_document_share_its_docs() {
    let doc = |title: &str| {
        format!(
            r#"{{"swagger": "2.0", "info": {{"title": "{title}", "version": "1"}},
                "paths": {{"/x/{{id}}": {{"get": {{"responses": {{"200": {{"description": ""}}}}}}}}}}}}"#
        )
    };
    let (a, b, c) = (
        buckler_testkit::FakeUpstream::builder("a")
            .doc(doc("same"))
            .start()
            .await,
        buckler_testkit::FakeUpstream::builder("b")
            .doc(doc("same"))
            .start()
            .await,
        buckler_testkit::FakeUpstream::builder("c")
            .doc(doc("other"))
            .start()
            .await,
    );
    let control = control_over(&[a.url(), b.url(), c.url()]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while listed(&control)
        .iter()
        .any(|(_, state, _)| *state != UpstreamState::Serving)
    {
        assert!(Instant::now() < deadline, "{:?}", listed(&control));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let table = control.table();
    let docs: Vec<_> = table.domains()[0]
        .upstreams
        .iter()
        .map(|u| u.docs().unwrap())
        .collect();
    assert!(Arc::ptr_eq(&docs[0], &docs[1]), "parsed once, shared");
    assert!(!Arc::ptr_eq(&docs[0], &docs[2]));
    assert_eq!(
        (docs[0].title.as_str(), docs[2].title.as_str()),
        ("same", "other")
    );
    assert_eq!(docs[2].endpoints.len(), 1);
}

/// A control plane over one wildcard domain following `upstreams-file` at `path`, polled every
/// `poll`.
async fn control_over_file(path: &Path, poll: Duration) -> Arc<Control> {
    let config = buckler_config::parse(
        &format!(
            r#"{{ listen: "127.0.0.1:0", domains: [{{ "domain-name": "*",
                 "upstream-watcher": "file", "upstreams-file": "{}" }}] }}"#,
            path.display()
        ),
        Path::new("test.json5"),
    )
    .unwrap();
    let options = buckler_discovery::SourceOptions {
        file_poll_interval: poll,
        ..Default::default()
    };
    Control::start_with(config, HttpUpstreamClient::new(), options)
        .await
        .unwrap()
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "buckler-control-{}-{name}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("upstreams.json");
    std::fs::write(&path, text).unwrap();
    path
}

const ONE: &str = r#"[{"serviceType": "swagger2", "serviceLocation": "http://127.0.0.1:1"}]"#;
const TWO: &str = r#"[{"serviceType": "swagger2", "serviceLocation": "http://127.0.0.1:2"}]"#;

#[tokio::test]
async fn a_rejected_file_value_keeps_the_set_and_a_write_replacing_it_is_no_conflict() {
    let path = temp_file("rejected", ONE);
    let control = control_over_file(&path, Duration::from_millis(20)).await;
    std::fs::write(&path, r#"[{"serviceLocation": "ftp://x"}]"#).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while control.reload_counts().1 == 0 {
        assert!(Instant::now() < deadline, "the bad value was not rejected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(listed(&control)[0].0, "http://127.0.0.1:1", "the set stays");
    // The write expects the rejected value's revision, which is what the file holds.
    let diff = control.write_upstreams("*", TWO).await.unwrap();
    assert_eq!(diff.added, vec!["http://127.0.0.1:2".to_owned()]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), TWO);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test]
async fn a_write_racing_an_unseen_file_edit_conflicts_and_changes_nothing() {
    let path = temp_file("conflict", ONE);
    // Polled once an hour: the edit below stays unseen.
    let control = control_over_file(&path, Duration::from_secs(3600)).await;
    std::fs::write(&path, TWO).unwrap();
    let error = control.write_upstreams("*", ONE).await.unwrap_err();
    assert!(matches!(error, ChangeError::Conflict(_)), "{error}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        TWO,
        "not overwritten"
    );
    assert_eq!(listed(&control)[0].0, "http://127.0.0.1:1");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
