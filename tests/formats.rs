//! Every doc format side by side, refresh, the merged `/spec`, and the admin routing views.

use buckler_tests::*;
use http::{Method, StatusCode};
use serde_json::json;

fn swagger1_upstream(name: &str) -> buckler_testkit::FakeUpstreamBuilder {
    FakeUpstream::builder(name)
        .doc_path("/api-docs")
        .doc(json!({"swaggerVersion": "1.2", "apiVersion": "1.0", "apis": [{"path": "/users"}]}).to_string())
        .doc_at(
            "/api-docs/users",
            json!({"swaggerVersion": "1.2", "apis": [
                {"path": "/legacy/users/{id}", "operations": [{"method": "GET", "nickname": "getUser",
                    "parameters": [{"name": "id", "paramType": "path"}]}]},
                {"path": "/shared", "operations": [{"method": "GET", "nickname": "shared"}]}
            ]})
            .to_string(),
        )
}

fn openapi3_doc() -> String {
    json!({
        "openapi": "3.1.0",
        "info": {"title": "orders", "version": "3"},
        "servers": [{"url": "/api"}],
        "paths": {
            "/orders/{id}": {"get": {"parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                                      "responses": {"200": {"description": "ok", "content": {"application/json": {}}}}}},
            "/shared": {"get": {"responses": {"200": {"description": "ok"}}}}
        }
    })
    .to_string()
}

fn config_of(entries: serde_json::Value, extra: &str) -> String {
    format!(
        r#"{{ listen: "127.0.0.1:0", admin: {{ listen: "127.0.0.1:0" }}, domains: [{{ "domain-name": "*", {extra} upstreams: {entries} }}] }}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_formats_side_by_side_and_load_balanced_together() {
    let v1 = swagger1_upstream("v1").start().await;
    let v2 = FakeUpstream::builder("v2")
        .doc(
            Swagger2Doc::new("v2", "2")
                .op("get", "/v2/things")
                .op("get", "/shared")
                .to_json(),
        )
        .start()
        .await;
    // OpenAPI 3 documents live at paths.swagger2 too.
    let v3 = FakeUpstream::builder("v3")
        .doc(openapi3_doc())
        .start()
        .await;
    let entries = json!([
        {"serviceType": "swagger1", "serviceLocation": v1.url()},
        {"serviceType": "swagger2", "serviceLocation": v2.url()},
        {"serviceType": "openapi3", "serviceLocation": v3.url()},
    ]);
    let gw = TestGateway::start_ready(&config_of(entries, "")).await;
    assert_eq!(gw.get("/legacy/users/7").await.upstream(), "v1");
    assert_eq!(gw.get("/v2/things").await.upstream(), "v2");
    assert_eq!(gw.get("/api/orders/9").await.upstream(), "v3");
    assert_eq!(
        gw.get("/orders/9").await.status,
        StatusCode::NOT_FOUND,
        "OpenAPI 3 server path honoured"
    );
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..300 {
        *seen.entry(gw.get("/shared").await.upstream()).or_insert(0) += 1;
    }
    // `/shared` is declared by the Swagger 1.2 and the Swagger 2.0 upstream (the OpenAPI 3 one
    // has it under /api): they split it 1:1.
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!((seen["v1"] - 150i32).abs() <= 3, "{seen:?}");

    // The merged spec parses as OpenAPI and lists every endpoint.
    let spec = gw.get("/spec").await;
    assert_eq!(spec.status, StatusCode::OK);
    let model: openapiv3::OpenAPI =
        serde_json::from_slice(&spec.body).expect("the merged /spec is OpenAPI 3.0");
    let paths: Vec<&String> = model.paths.paths.keys().collect();
    for expected in [
        "/legacy/users/{id}",
        "/v2/things",
        "/api/orders/{id}",
        "/shared",
    ] {
        assert!(
            paths.iter().any(|p| *p == expected),
            "{expected} missing from {paths:?}"
        );
    }
    let orders = model.paths.paths["/api/orders/{id}"]
        .as_item()
        .unwrap()
        .get
        .as_ref()
        .unwrap();
    assert_eq!(orders.parameters.len(), 1);
    assert!(orders
        .responses
        .default
        .as_ref()
        .unwrap()
        .as_item()
        .unwrap()
        .content
        .contains_key("application/json"));

    // Admin views of the same table.
    let routes = gw
        .admin(Method::GET, "/admin/domains/*/routes", None, None)
        .await
        .json();
    let templates: Vec<&str> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["template"].as_str().unwrap())
        .collect();
    assert_eq!(templates.len(), 5, "{templates:?}");
    let shared = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["template"] == "/shared")
        .unwrap();
    assert_eq!(shared["candidates"].as_array().unwrap().len(), 2);
    let explain = gw
        .admin(
            Method::GET,
            "/admin/explain?domain=any.host&method=GET&path=/api/orders/9",
            None,
            None,
        )
        .await
        .json();
    assert_eq!(explain["template"], "/api/orders/{}");
    assert_eq!(explain["candidates"][0]["serviceLocation"], v3.url());
    let explain_405 = gw
        .admin(
            Method::GET,
            "/admin/explain?method=DELETE&path=/shared",
            None,
            None,
        )
        .await
        .json();
    assert_eq!(explain_405["status"], 405);
    assert_eq!(explain_405["allow"], "GET, HEAD");
    let explain_406 = gw
        .admin(
            Method::GET,
            "/admin/explain?path=/api/orders/1&accept=text/html",
            None,
            None,
        )
        .await
        .json();
    assert_eq!(explain_406["status"], 406, "{explain_406}");
    let explain_415 = gw
        .admin(
            Method::GET,
            "/admin/explain?path=/shared&content-type=text/plain",
            None,
            None,
        )
        .await
        .json();
    assert_eq!(
        explain_415["status"], 200,
        "candidates declaring no consumes accept anything: {explain_415}"
    );
    let explain_404 = gw
        .admin(Method::GET, "/admin/explain?path=/nope", None, None)
        .await
        .json();
    assert_eq!(explain_404["status"], 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_picks_up_new_endpoints_and_keeps_the_last_good_doc() {
    let upstream = FakeUpstream::builder("svc")
        .doc(Swagger2Doc::new("svc", "1").op("get", "/one").to_json())
        .start()
        .await;
    let entries = json!([{"serviceType": "swagger2", "serviceLocation": upstream.url()}]);
    let gw = TestGateway::start_ready(&config_of(entries, r#""docs-refresh": "200ms","#)).await;
    assert_eq!(gw.get("/two").await.status, StatusCode::NOT_FOUND);
    assert_eventually!(
        upstream.not_modified_count() >= 2,
        "unchanged docs are revalidated with If-None-Match"
    );
    let generation = gw.get("/healthcheck").await.json()["generation"].clone();
    assert_eq!(
        gw.get("/healthcheck").await.json()["generation"],
        generation,
        "a 304 publishes nothing"
    );

    upstream.set_doc(Swagger2Doc::new("svc", "2").op("get", "/two").to_json());
    assert_eventually!(
        gw.get("/two").await.status == StatusCode::OK,
        "the new endpoint appears"
    );
    assert_eventually!(
        gw.get("/one").await.status == StatusCode::NOT_FOUND,
        "the removed endpoint goes"
    );

    upstream.set_doc("{ not json");
    assert_eventually!(
        gw.get("/healthcheck").await.json()["domains"][0]["upstreams"][0]
            .get("docsError")
            .is_some(),
        "the parse error is reported"
    );
    let health = gw.get("/healthcheck").await.json();
    assert_eq!(
        health["domains"][0]["upstreams"][0]["state"], "serving",
        "last good doc kept"
    );
    assert_eq!(gw.get("/two").await.status, StatusCode::OK);
}

/// Issue 34 item 9: an upstream declaring `GET /metrics` never gets those requests (the
/// gateway answers them), and `explain` says so instead of naming the upstream.
#[tokio::test]
async fn explain_names_the_local_endpoint_that_shadows_a_declared_route() {
    let upstream = FakeUpstream::builder("shadowed")
        .doc(
            Swagger2Doc::new("shadowed", "1")
                .op("get", "/metrics")
                .op("get", "/orders")
                .to_json(),
        )
        .start()
        .await;
    let config = format!(
        r#"{{ listen: "127.0.0.1:0", admin: {{ listen: "127.0.0.1:0" }},
             domains: [{{ "domain-name": "*", upstreams: {} }}] }}"#,
        upstreams_json(&[(&upstream.url(), 1)])
    );
    let gw = TestGateway::start_ready(&config).await;
    let explain = gw
        .admin(Method::GET, "/admin/explain?path=/metrics", None, None)
        .await
        .json();
    assert_eq!(explain["local"], "metrics", "{explain}");
    assert!(explain.get("candidates").is_none(), "{explain}");
    let routed = gw
        .admin(Method::GET, "/admin/explain?path=/orders", None, None)
        .await
        .json();
    assert_eq!(routed["template"], "/orders");
    let metrics = gw.get("/metrics").await;
    assert!(String::from_utf8_lossy(&metrics.body).contains("buckler_requests_total"));
    assert_eq!(
        upstream.request_count(),
        0,
        "the upstream never saw /metrics"
    );
}
