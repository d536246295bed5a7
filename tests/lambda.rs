//! Lambda upstreams end to end: the real gateway, the real `aws-sdk-lambda`, the fake Invoke
//! API over HTTP. Every envelope rule, every response rule, docs by invocation, and a Lambda
//! sharing an endpoint group with an HTTP upstream.

use base64::Engine;
use buckler_testkit::{FakeLambda, LambdaCall, LambdaReply};
use buckler_tests::*;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn credentials() {
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDBUCKLERTEST");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "buckler-test-secret");
}

fn lambda_doc() -> String {
    Swagger2Doc::new("fn", "1")
        .op("get", "/echo")
        .op("post", "/echo")
        .op("get", "/behave/{how}")
        .op("get", "/shared")
        .to_json()
}

/// A function that serves its doc at `/spec` and echoes the envelope it received at `/echo`.
fn echo_function(call: &LambdaCall) -> LambdaReply {
    let envelope = call.json();
    let uri = envelope["uri"].as_str().unwrap_or_default().to_owned();
    let body = |value: Value| B64.encode(value.to_string());
    if uri == "/spec" {
        return LambdaReply::json(json!({"status": 200, "body": B64.encode(lambda_doc())}));
    }
    if let Some(how) = uri.strip_prefix("/behave/") {
        return match how {
            "garbage" => LambdaReply::Payload(Bytes::from_static(b"this is not json")),
            "bad-status" => LambdaReply::json(json!({"status": 700})),
            "bad-base64" => LambdaReply::json(json!({"status": 200, "body": "%%%"})),
            "crash" => {
                LambdaReply::FunctionError(Bytes::from_static(b"{\"errorMessage\":\"boom\"}"))
            }
            "throttle" => LambdaReply::Throttle(Some(4)),
            "slow" => LambdaReply::Delay(
                std::time::Duration::from_secs(3),
                Box::new(LambdaReply::json(json!({"status": 200}))),
            ),
            "minimal" => LambdaReply::json(json!({"status": 204})),
            _ => LambdaReply::json(json!({
                "status": 201,
                "headers": [["content-type", "text/plain"], ["x-multi", "a"], ["x-multi", "b"]],
                "body": B64.encode("made by lambda"),
            })),
        };
    }
    if uri == "/shared" {
        return LambdaReply::json(
            json!({"status": 200, "headers": [["x-upstream", "lambda"]], "body": body(json!({"upstream": "lambda"}))}),
        );
    }
    LambdaReply::json(
        json!({"status": 200, "headers": [["content-type", "application/json"]], "body": body(envelope)}),
    )
}

async fn gateway_with(fake: &FakeLambda, upstreams: &str) -> TestGateway {
    credentials();
    let config = format!(
        r#"{{ listen: "127.0.0.1:0", lambda: {{ region: "us-east-1", "endpoint-url": "{}" }},
             domains: [{{ "domain-name": "*", "request-timeout": "1s", upstreams: {upstreams} }}] }}"#,
        fake.endpoint()
    );
    TestGateway::start_ready(&config).await
}

fn lambda_upstream(arn: &str) -> String {
    json!([{"serviceType": "lambda", "serviceLocation": arn, "weight": 1}]).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_rules_and_docs_by_invocation() {
    let fake = FakeLambda::start().await;
    fake.function("orders", echo_function);
    let gw = gateway_with(
        &fake,
        &lambda_upstream("arn:aws:lambda:us-east-1:123456789012:function:orders"),
    )
    .await;
    let docs_call = fake
        .calls()
        .into_iter()
        .find(|c| c.json()["uri"] == "/spec")
        .expect("docs by invocation");
    assert_eq!(
        docs_call.json(),
        json!({"method": "GET", "uri": "/spec", "headers": []})
    );

    // Body absent, query kept, repeated headers in order, names lower-cased.
    let reply = gw
        .send(
            Request::get(gw.url("/echo?verbose=1&x=%20y"))
                .header("X-Repeat", "one")
                .header("x-repeat", "two")
                .header("X-Forwarded-For", "10.0.0.1")
                .header("Client-Address", "spoofed")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let envelope = reply.json();
    assert_eq!(envelope["method"], "GET");
    assert_eq!(envelope["uri"], "/echo?verbose=1&x=%20y");
    assert!(
        envelope.get("body").is_none(),
        "no body field without a body: {envelope}"
    );
    let headers: Vec<(String, String)> = envelope["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let repeats: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "x-repeat")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(repeats, vec!["one", "two"]);
    assert!(headers.iter().all(|(n, _)| *n == n.to_ascii_lowercase()));
    assert!(headers.contains(&(
        "x-forwarded-for".to_owned(),
        "10.0.0.1, 127.0.0.1".to_owned()
    )));
    assert!(!headers.iter().any(|(n, _)| n == "client-address"));

    // Binary body: standard base64 with padding of the raw bytes.
    let binary: Vec<u8> = (0u8..=255).collect();
    let reply = gw
        .send(
            Request::post(gw.url("/echo"))
                .body(Full::new(Bytes::from(binary.clone())))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.json()["body"], B64.encode(&binary));
    assert_eq!(reply.json()["method"], "POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_rules_and_failures() {
    let fake = FakeLambda::start().await;
    fake.function("orders", echo_function);
    let gw = gateway_with(&fake, &lambda_upstream("orders")).await;

    let made = gw.get("/behave/ok").await;
    assert_eq!(made.status, StatusCode::CREATED);
    assert_eq!(&made.body[..], b"made by lambda");
    assert_eq!(made.headers["content-type"], "text/plain");
    let multi: Vec<_> = made.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, vec!["a", "b"]);

    let minimal = gw.get("/behave/minimal").await;
    assert_eq!(minimal.status, StatusCode::NO_CONTENT);
    assert!(minimal.body.is_empty());

    for (how, status, needle) in [
        ("garbage", 502, "not a response envelope"),
        ("bad-status", 502, "700"),
        ("bad-base64", 502, "base64"),
        ("crash", 502, "Unhandled"),
        ("throttle", 503, "throttled"),
        ("slow", 504, "did not answer"),
    ] {
        let reply = gw.get(&format!("/behave/{how}")).await;
        assert_eq!(
            reply.status.as_u16(),
            status,
            "{how}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let error = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(needle), "{how}: {error}");
        if how == "throttle" {
            assert_eq!(reply.headers["retry-after"], "4");
        }
    }

    let too_big = gw
        .send(
            Request::post(gw.url("/echo"))
                .body(Full::new(Bytes::from(vec![b'x'; 6 * 1024 * 1024 + 1])))
                .unwrap(),
        )
        .await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_and_http_share_an_endpoint_group_one_to_one() {
    let fake = FakeLambda::start().await;
    fake.function("orders", echo_function);
    let http = FakeUpstream::builder("http")
        .doc(Swagger2Doc::new("http", "1").op("get", "/shared").to_json())
        .start()
        .await;
    let upstreams = json!([
        {"serviceType": "lambda", "serviceLocation": "orders", "weight": 1},
        {"serviceType": "swagger2", "serviceLocation": http.url(), "weight": 1},
    ])
    .to_string();
    let gw = gateway_with(&fake, &upstreams).await;
    let mut lambda = 0;
    for _ in 0..4_000 {
        let reply = gw.get("/shared").await;
        assert_eq!(reply.status, StatusCode::OK);
        if reply.headers["x-upstream"] == "lambda" {
            lambda += 1;
        }
    }
    let share = f64::from(lambda) / 4_000.0;
    assert!((share - 0.5).abs() <= 0.01, "lambda share {share}");
}
