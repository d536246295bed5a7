//! Routing end to end: template specificity across upstreams, methods, negotiation, domains
//! and the weighted split.

use buckler_tests::*;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::json;

async fn two_upstreams() -> (FakeUpstream, FakeUpstream) {
    let general = FakeUpstream::builder("general")
        .doc(
            Swagger2Doc::new("general", "1")
                .op("get", "/users/{id}")
                .op("put", "/users/{id}")
                .op("get", "/files/{+path}")
                .op("get", "/")
                .op("get", "/items/{id}")
                .to_json(),
        )
        .start()
        .await;
    let specific = FakeUpstream::builder("specific")
        .doc(
            Swagger2Doc::new("specific", "1")
                .op("get", "/users/me")
                .op("get", "/files/{+path}/meta")
                .op("get", "/items/{id: [0-9]+}")
                .op("delete", "/users/me")
                .to_json(),
        )
        .start()
        .await;
    (general, specific)
}

#[tokio::test]
async fn most_specific_template_wins_across_upstreams() {
    let (general, specific) = two_upstreams().await;
    let gw = TestGateway::start_ready(&config_text(
        &[(&general.url(), 1), (&specific.url(), 1)],
        "",
    ))
    .await;

    assert_eq!(gw.get("/users/me").await.upstream(), "specific");
    assert_eq!(gw.get("/users/7").await.upstream(), "general");
    assert_eq!(
        gw.get("/users/me/").await.upstream(),
        "specific",
        "trailing slash ignored"
    );
    assert_eq!(gw.get("/files/a/b/c").await.upstream(), "general");
    assert_eq!(gw.get("/files/a/b/meta").await.upstream(), "specific");
    assert_eq!(gw.get("/").await.upstream(), "general", "root is routable");
    // `/items/{id}` (variable) is more specific than `/items/{id: [0-9]+}` (regex).
    assert_eq!(gw.get("/items/42").await.upstream(), "general");

    let echoed = gw.get("/users/7?x=1&y=2").await.json();
    assert_eq!(echoed["path"], "/users/7");
    assert_eq!(echoed["query"], "x=1&y=2");
}

#[tokio::test]
async fn method_rules_405_options_head_and_fallback() {
    let (general, specific) = two_upstreams().await;
    let gw = TestGateway::start_ready(&config_text(
        &[(&general.url(), 1), (&specific.url(), 1)],
        "",
    ))
    .await;

    // PUT /users/me: the specific template lacks PUT; the less specific one declares it.
    let put = gw
        .send(
            Request::put(gw.url("/users/me"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(put.upstream(), "general");

    let post = gw
        .send(
            Request::post(gw.url("/users/me"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers["allow"], "GET, HEAD, PUT, DELETE");
    assert_eq!(post.json()["status"], 405);

    let options = gw
        .send(
            Request::options(gw.url("/users/me"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(options.status, StatusCode::OK);
    assert_eq!(options.headers["allow"], "GET, HEAD, PUT, DELETE");

    let head = gw
        .send(
            Request::head(gw.url("/users/7"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK, "HEAD falls back to GET");
    assert_eq!(head.headers["x-upstream"], "general");
    assert!(head.body.is_empty());

    let missing = gw.get("/nothing/here").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["status"], 404);
}

#[tokio::test]
async fn content_negotiation_415_and_406() {
    let json_only = FakeUpstream::builder("json")
        .doc(
            Swagger2Doc::new("json", "1")
                .media(&["application/json"], &["application/json"])
                .op("post", "/orders")
                .to_json(),
        )
        .start()
        .await;
    let gw = TestGateway::start_ready(&config_text(&[(&json_only.url(), 1)], "")).await;
    let post = |content_type: &str, accept: Option<&str>, body: &'static str| {
        let mut request = Request::post(gw.url("/orders")).header("content-type", content_type);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        request
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    let ok = gw
        .send(post("application/json; charset=utf-8", None, "{}"))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "parameters are ignored");
    let unsupported = gw.send(post("text/plain", None, "hi")).await;
    assert_eq!(unsupported.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(unsupported.json()["status"], 415);
    let bodyless = gw
        .send(
            Request::post(gw.url("/orders"))
                .header("content-type", "text/plain")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(
        bodyless.status,
        StatusCode::OK,
        "bodyless requests skip the consumes check"
    );
    let not_acceptable = gw
        .send(post("application/json", Some("text/html"), "{}"))
        .await;
    assert_eq!(not_acceptable.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(not_acceptable.json()["status"], 406);
    let acceptable = gw
        .send(post(
            "application/json",
            Some("text/html;q=0.9, application/*;q=0.5"),
            "{}",
        ))
        .await;
    assert_eq!(acceptable.status, StatusCode::OK);
}

#[tokio::test]
async fn domains_by_host_with_catch_all() {
    let blue = FakeUpstream::builder("blue")
        .doc(Swagger2Doc::new("blue", "1").op("get", "/who").to_json())
        .start()
        .await;
    let green = FakeUpstream::builder("green")
        .doc(Swagger2Doc::new("green", "1").op("get", "/who").to_json())
        .start()
        .await;
    let exact_only = format!(
        r#"{{ listen: "127.0.0.1:0", domains: [
            {{ "domain-name": "API.example.org", upstreams: {} }},
        ] }}"#,
        upstreams_json(&[(&blue.url(), 1)])
    );
    let gw = TestGateway::start_ready(&exact_only).await;
    let with_host = |host: &str| {
        Request::get(gw.url("/who"))
            .header("host", host)
            .body(Full::default())
            .unwrap()
    };
    assert_eq!(
        gw.send(with_host("api.example.org:8080")).await.upstream(),
        "blue"
    );
    let unknown = gw.send(with_host("other.example.org")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.json()["error"]
        .as_str()
        .unwrap()
        .contains("other.example.org"));

    let with_wildcard = format!(
        r#"{{ listen: "127.0.0.1:0", domains: [
            {{ "domain-name": "api.example.org", upstreams: {} }},
            {{ "domain-name": "*", upstreams: {} }},
        ] }}"#,
        upstreams_json(&[(&blue.url(), 1)]),
        upstreams_json(&[(&green.url(), 1)])
    );
    let gw2 = TestGateway::start_ready(&with_wildcard).await;
    let to = |host: &str| {
        Request::get(gw2.url("/who"))
            .header("host", host)
            .body(Full::default())
            .unwrap()
    };
    assert_eq!(gw2.send(to("API.EXAMPLE.ORG")).await.upstream(), "blue");
    assert_eq!(gw2.send(to("anything.else")).await.upstream(), "green");
}

#[tokio::test]
async fn weighted_three_to_one_within_one_percent() {
    let doc = Swagger2Doc::new("svc", "1").op("get", "/w").to_json();
    let a = FakeUpstream::builder("a").doc(doc.clone()).start().await;
    let b = FakeUpstream::builder("b").doc(doc).start().await;
    let gw = TestGateway::start_ready(&config_text(&[(&a.url(), 3), (&b.url(), 1)], "")).await;
    let mut to_a = 0;
    for _ in 0..4_000 {
        let reply = gw.get("/w").await;
        assert_eq!(reply.status, StatusCode::OK);
        if reply.headers["x-upstream"] == "a" {
            to_a += 1;
        }
    }
    let share = f64::from(to_a) / 4_000.0;
    assert!((share - 0.75).abs() <= 0.01, "share of a: {share}");
    assert_eq!(a.request_count() + b.request_count(), 4_000);
}

#[tokio::test]
async fn equivalent_templates_with_other_variable_names_share_traffic() {
    let a = FakeUpstream::builder("a")
        .doc(Swagger2Doc::new("a", "1").op("get", "/u/{id}").to_json())
        .start()
        .await;
    let b = FakeUpstream::builder("b")
        .doc(
            Swagger2Doc::new("b", "2")
                .op("get", "/u/{userId}")
                .to_json(),
        )
        .start()
        .await;
    let gw = TestGateway::start_ready(&config_text(&[(&a.url(), 1), (&b.url(), 1)], "")).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        seen.insert(gw.get("/u/1").await.upstream());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec!["a", "b"]);
}

#[tokio::test]
async fn base_path_is_honoured_and_extensions_stripped() {
    let svc = FakeUpstream::builder("svc")
        .doc(
            Swagger2Doc::new("svc", "1")
                .base_path("/v1")
                .op("get", "/pets/{id}")
                .to_json(),
        )
        .start()
        .await;
    let gw = TestGateway::start_ready(&config_text(
        &[(&svc.url(), 1)],
        r#""ignore-extensions": ["json"],"#,
    ))
    .await;
    let reply = gw.get("/v1/pets/3.json?fields=a.json").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["path"], "/v1/pets/3");
    assert_eq!(reply.json()["query"], "fields=a.json");
    assert_eq!(gw.get("/pets/3").await.status, StatusCode::NOT_FOUND);
    let _ = json!({});
}
