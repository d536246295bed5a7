//! Reloads apply every key they can (SPEC §2, last paragraph): one test per reloadable key,
//! and a restart-only key named in the reload's outcome. Plus SPEC §4's drain rule with a slow
//! request in flight.

use base64::Engine;
use buckler_testkit::{FakeLambda, LambdaCall, LambdaReply};
use buckler_tests::*;
use http::{Method, StatusCode};
use serde_json::json;

/// Writes `text` as the config file in `dir` and returns its path.
fn write_config(dir: &TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.join("buckler.json5");
    std::fs::write(&path, text).unwrap();
    path
}

async fn reload(gw: &TestGateway) -> serde_json::Value {
    let reply = gw
        .admin(Method::POST, "/admin/reload", Some("new"), None)
        .await;
    let fallback = gw
        .admin(Method::POST, "/admin/reload", Some("old"), None)
        .await;
    if reply.status == StatusCode::OK {
        reply.json()
    } else {
        assert_eq!(fallback.status, StatusCode::OK, "{}", fallback.json());
        fallback.json()
    }
}

fn one_upstream(url: &str, domain_extra: &str, top_extra: &str) -> String {
    format!(
        r#"{{ listen: "127.0.0.1:0", admin: {{ listen: "127.0.0.1:0", token: "old" }}, {top_extra}
             domains: [{{ "domain-name": "*", {domain_extra}
                          upstreams: [{{ serviceType: "swagger2", serviceLocation: "{url}" }}] }}] }}"#
    )
}

async fn upstream() -> FakeUpstream {
    upstream_named("a").await
}

async fn upstream_named(name: &str) -> FakeUpstream {
    FakeUpstream::builder(name)
        .doc(
            Swagger2Doc::new(name, "1")
                .op("get", "/w")
                .op("get", "/slow/{ms}")
                .to_json(),
        )
        .doc_at(
            "/v2/spec",
            Swagger2Doc::new(name, "2")
                .op("get", "/only-in-v2")
                .to_json(),
        )
        .start()
        .await
}

#[tokio::test]
async fn a_reload_rotates_the_admin_token() {
    let a = upstream().await;
    let dir = temp_dir("reload-token");
    let path = write_config(&dir, &one_upstream(&a.url(), "", ""));
    let gw = TestGateway::start_file(&path).await;
    let domains = |token| gw.admin(Method::GET, "/admin/domains", Some(token), None);
    assert_eq!(domains("old").await.status, StatusCode::OK);

    std::fs::write(
        &path,
        one_upstream(&a.url(), "", "").replace("\"old\"", "\"new\""),
    )
    .unwrap();
    let outcome = gw
        .admin(Method::POST, "/admin/reload", Some("old"), None)
        .await;
    assert_eq!(outcome.status, StatusCode::OK);
    assert_eq!(
        domains("old").await.status,
        StatusCode::FORBIDDEN,
        "the leaked token no longer works"
    );
    assert_eq!(domains("new").await.status, StatusCode::OK);
    let none = gw.admin(Method::GET, "/admin/domains", None, None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_reload_changes_where_docs_are_fetched_from() {
    let a = upstream().await;
    let dir = temp_dir("reload-paths");
    let path = write_config(&dir, &one_upstream(&a.url(), "", ""));
    let gw = TestGateway::start_file(&path).await;
    gw.wait_ready().await;
    assert_eq!(gw.get("/only-in-v2").await.status, StatusCode::NOT_FOUND);

    let moved = one_upstream(&a.url(), "", r#"paths: { swagger2: "/v2/spec" },"#);
    std::fs::write(&path, moved).unwrap();
    reload(&gw).await;
    assert_eventually!(
        gw.get("/only-in-v2").await.status == StatusCode::OK,
        "the document at the new path was never loaded"
    );
    assert_eq!(gw.get("/w").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_reload_changes_how_often_docs_are_refreshed() {
    let a = upstream().await;
    let dir = temp_dir("reload-refresh");
    let path = write_config(
        &dir,
        &one_upstream(&a.url(), r#""docs-refresh": "1h","#, ""),
    );
    let gw = TestGateway::start_file(&path).await;
    gw.wait_ready().await;
    let fetched = a.doc_request_count();

    std::fs::write(
        &path,
        one_upstream(&a.url(), r#""docs-refresh": "100ms","#, ""),
    )
    .unwrap();
    reload(&gw).await;
    a.set_doc(Swagger2Doc::new("a", "3").op("get", "/added").to_json());
    assert_eventually!(
        gw.get("/added").await.status == StatusCode::OK,
        "the new refresh interval was never used"
    );
    assert!(a.doc_request_count() > fetched + 1);
}

#[tokio::test]
async fn a_reload_changes_the_request_timeout() {
    let a = upstream().await;
    let dir = temp_dir("reload-timeout");
    let path = write_config(
        &dir,
        &one_upstream(&a.url(), r#""request-timeout": "10s","#, ""),
    );
    let gw = TestGateway::start_file(&path).await;
    gw.wait_ready().await;
    assert_eq!(gw.get("/slow/600").await.status, StatusCode::OK);

    std::fs::write(
        &path,
        one_upstream(&a.url(), r#""request-timeout": "200ms","#, ""),
    )
    .unwrap();
    reload(&gw).await;
    assert_eq!(
        gw.get("/slow/600").await.status,
        StatusCode::GATEWAY_TIMEOUT
    );
}

#[tokio::test]
async fn a_reload_names_the_restart_only_keys_it_did_not_apply() {
    let a = upstream().await;
    let dir = temp_dir("reload-listen");
    let path = write_config(&dir, &one_upstream(&a.url(), "", ""));
    let gw = TestGateway::start_file(&path).await;
    gw.wait_ready().await;
    let moved = one_upstream(&a.url(), r#""request-timeout": "3s","#, "workers: 3,").replacen(
        "\"127.0.0.1:0\"",
        "\"127.0.0.1:1\"",
        1,
    );
    std::fs::write(&path, moved).unwrap();
    let outcome = reload(&gw).await;
    assert_eq!(outcome["result"], "ok");
    assert_eq!(outcome["restartRequired"], json!(["listen", "workers"]));
    assert!(
        outcome["summary"]
            .as_str()
            .unwrap()
            .contains("not applied until restart: listen, workers"),
        "{outcome}"
    );
    // Still served on the port it was bound to.
    assert_eq!(gw.get("/healthcheck").await.status, StatusCode::OK);
}

fn credentials() {
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDBUCKLERTEST");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "buckler-test-secret");
}

/// A function that serves its doc at `/spec` and says which Invoke API answered.
fn function(name: &'static str) -> impl Fn(&LambdaCall) -> LambdaReply + Send + Sync {
    move |call: &LambdaCall| {
        let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
        if call.json()["uri"] == "/spec" {
            let doc = Swagger2Doc::new("fn", "1").op("get", "/who").to_json();
            return LambdaReply::json(json!({"status": 200, "body": b64(doc)}));
        }
        LambdaReply::json(json!({"status": 200, "body": b64(name.to_owned())}))
    }
}

#[tokio::test]
async fn a_reload_changes_the_lambda_endpoint() {
    credentials();
    let (first, second) = (FakeLambda::start().await, FakeLambda::start().await);
    first.function("orders", function("first"));
    second.function("orders", function("second"));
    let config = |endpoint: String| {
        format!(
            r#"{{ listen: "127.0.0.1:0", admin: {{ listen: "127.0.0.1:0", token: "old" }},
                 lambda: {{ region: "us-east-1", "endpoint-url": "{endpoint}" }},
                 domains: [{{ "domain-name": "*", upstreams: [{{ serviceType: "lambda",
                   serviceLocation: "arn:aws:lambda:us-east-1:123456789012:function:orders" }}] }}] }}"#
        )
    };
    let dir = temp_dir("reload-lambda");
    let path = write_config(&dir, &config(first.endpoint()));
    let gw = TestGateway::start_file(&path).await;
    gw.wait_ready().await;
    assert_eq!(&gw.get("/who").await.body[..], b"first");

    std::fs::write(&path, config(second.endpoint())).unwrap();
    reload(&gw).await;
    assert_eq!(&gw.get("/who").await.body[..], b"second");
}

/// SPEC §4: a draining upstream takes a new request only when no candidate that is not
/// draining can serve it. Removing A while B ramps up from 0 sent half of the new requests
/// to A for a whole step.
#[tokio::test]
async fn a_removed_upstream_takes_no_new_request_while_another_ramps_up() {
    let (a, b) = (upstream_named("a").await, upstream_named("b").await);
    let config = format!(
        r#"{{ listen: "127.0.0.1:0", admin: {{ listen: "127.0.0.1:0" }},
             domains: [{{ "domain-name": "*", "drain-timeout": "30s",
               "upstream-weighting": {{ "step-count": 10, "step-duration": "1h" }},
               upstreams: {} }}] }}"#,
        upstreams_json(&[(&a.url(), 1), (&b.url(), 0)])
    );
    let gw = TestGateway::start_ready(&config).await;
    // A slow request keeps A busy: it drains, it is not dropped.
    let slow = {
        let url = gw.url("/slow/2000");
        tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Full<bytes::Bytes>>();
            client.get(url.parse().unwrap()).await.map(|r| r.status())
        })
    };
    assert_eventually!(a.request_count() > 0, "the slow request never reached A");

    // Remove A; B ramps from 0 toward 10 over ten hour-long steps: its weight stays 0 now.
    let put = gw
        .admin(
            Method::PUT,
            "/admin/domains/*/upstreams",
            None,
            Some(&upstreams_json(&[(&b.url(), 10)])),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json());
    let before = a.request_count();
    for _ in 0..20 {
        let reply = gw.get("/w").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.upstream(), "b");
    }
    assert_eq!(
        a.request_count(),
        before,
        "the draining upstream took new requests while B could serve them"
    );
    assert_eq!(
        slow.await.unwrap().expect("slow request completed"),
        StatusCode::OK,
        "the in-flight request on the draining upstream finished"
    );
}
