//! Hostile or broken documents are isolated to their upstream.

use buckler_tests::*;
use http::StatusCode;

#[tokio::test]
async fn a_hostile_doc_fails_its_upstream_only() {
    let good = FakeUpstream::builder("good")
        .doc(Swagger2Doc::new("good", "1").op("get", "/fine").to_json())
        .start()
        .await;
    let bad_regex = FakeUpstream::builder("regex")
        .doc(
            Swagger2Doc::new("regex", "1")
                .op("get", "/x/{id: [0-9+}")
                .to_json(),
        )
        .start()
        .await;
    let wrong_types = FakeUpstream::builder("types")
        .doc(r#"{"swagger": "2.0", "info": {"title": 7}, "paths": []}"#)
        .start()
        .await;
    // About 10 MB of paths.
    let mut huge = Swagger2Doc::new("huge", "1");
    for i in 0..200_000 {
        huge = huge.op("get", &format!("/p{i}/{{id}}"));
    }
    let huge = FakeUpstream::builder("huge")
        .doc(huge.to_json())
        .start()
        .await;

    let config = config_text(
        &[
            (&good.url(), 1),
            (&bad_regex.url(), 1),
            (&wrong_types.url(), 1),
            (&huge.url(), 1),
        ],
        "",
    );
    let gw = TestGateway::start(&config).await;
    assert_eventually!(
        gw.get("/fine").await.status == StatusCode::OK,
        "the good upstream serves"
    );
    assert_eventually!(
        {
            let health = gw.get("/healthcheck").await.json();
            health["domains"][0]["upstreams"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|u| u["state"] == "failed")
                .count()
                == 3
        },
        "three failed upstreams"
    );
    let health = gw.get("/healthcheck").await.json();
    let errors: Vec<String> = health["domains"][0]["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["docsError"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("/x/{id: [0-9+}")),
        "{errors:?}"
    );
    assert_eq!(
        gw.get("/healthcheck").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(gw.get("/fine").await.status, StatusCode::OK);
}

/// `docs-limits` (issue 34 item 5): the caps are settings; a document over one is refused for
/// its upstream with an error naming the cap, and the same document loads under the default.
#[tokio::test]
async fn docs_limits_are_settings() {
    let upstream = FakeUpstream::builder("big")
        .doc(
            Swagger2Doc::new("big", "1")
                .op("get", "/a")
                .op("get", "/b")
                .op("get", "/c")
                .to_json(),
        )
        .start()
        .await;
    let config = |limits: &str| {
        format!(
            r#"{{ listen: "127.0.0.1:0", {limits} domains: [{{ "domain-name": "*", upstreams: {} }}] }}"#,
            upstreams_json(&[(&upstream.url(), 1)])
        )
    };
    let capped = TestGateway::start(&config(r#""docs-limits": { "max-paths": 2 },"#)).await;
    assert_eventually!(
        capped.get("/healthcheck").await.json()["domains"][0]["upstreams"][0]["docsError"]
            .as_str()
            .is_some_and(|e| e.contains("paths")),
        "never refused: {}",
        capped.get("/healthcheck").await.json()
    );
    assert_eq!(capped.get("/a").await.status, StatusCode::NOT_FOUND);
    let default = TestGateway::start_ready(&config("")).await;
    assert_eq!(default.get("/c").await.status, StatusCode::OK);
}
