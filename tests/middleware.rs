//! Middleware and listeners end to end (SPEC §10): API keys, rate limits, the access log,
//! `x-disabled-middleware`, metrics and the healthcheck, on the memory store.

use buckler_tests::*;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

fn doc() -> String {
    Swagger2Doc::new("mw", "1")
        .op("get", "/echo")
        .op("post", "/echo")
        .op("get", "/status/{code}")
        .op_with(
            "get",
            "/open",
            json!({"x-disabled-middleware": ["AUTH"], "x-disabled-listeners": ["access"]}),
        )
        .to_json()
}

async fn start(domain_extra: &str) -> (FakeUpstream, TestGateway) {
    let upstream = FakeUpstream::builder("one").doc(doc()).start().await;
    let config = format!(
        r#"{{ listen: "127.0.0.1:0", "trust-proxies": 1,
             domains: [{{ "domain-name": "*", {domain_extra} upstreams: {} }}] }}"#,
        upstreams_json(&[(&upstream.url(), 1)])
    );
    let gw = TestGateway::start_ready(&config).await;
    (upstream, gw)
}

fn get(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut request = Request::get(gw.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::default()).unwrap()
}

const AUTH: &str = r#"
    "middleware-chain": [{ id: "auth", builder: "api-key-auth" }],
    middleware: { auth: { "header-name": "X-Key", allowed: ["Right", "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
                          "strip-header": true } },"#;

#[tokio::test]
async fn api_keys_answer_401_without_a_key_403_with_a_wrong_one() {
    let (upstream, gw) = start(AUTH).await;
    let missing = gw.get("/echo").await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.headers["www-authenticate"],
        "ApiKey header=\"x-key\""
    );
    assert_eq!(missing.json()["status"], 401);
    let wrong = gw.send(get(&gw, "/echo", &[("x-key", "right")])).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(!wrong.headers.contains_key("www-authenticate"));
    assert_eq!(
        upstream.request_count(),
        0,
        "refused requests never reach the upstream"
    );

    let right = gw.send(get(&gw, "/echo", &[("x-key", "Right")])).await;
    assert_eq!(right.status, StatusCode::OK);
    assert_eq!(
        right.echoed_header("x-key"),
        None,
        "strip-header removes the key"
    );
    // `sha256:` of "test".
    let hashed = gw.send(get(&gw, "/echo", &[("x-key", "test")])).await;
    assert_eq!(hashed.status, StatusCode::OK);

    // x-disabled-middleware (ids compare case-insensitively): no key needed there.
    assert_eq!(gw.get("/open").await.status, StatusCode::OK);
    // Never applied to local endpoints or routing errors.
    assert_eq!(gw.get("/healthcheck").await.status, StatusCode::OK);
    assert_eq!(gw.get("/nowhere").await.status, StatusCode::NOT_FOUND);
    let put = Request::put(gw.url("/echo")).body(Full::default()).unwrap();
    assert_eq!(gw.send(put).await.status, StatusCode::METHOD_NOT_ALLOWED);

    let metrics = String::from_utf8_lossy(&gw.get("/metrics").await.body).into_owned();
    assert!(
        metrics.contains(
            r#"buckler_middleware_outcomes_total{domain="*",id="auth",outcome="denied"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"buckler_middleware_outcomes_total{domain="*",id="auth",outcome="allowed"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"buckler_middleware_sla_exceeded_total{domain="*",id="auth"} 0"#),
        "{metrics}"
    );
    let health = gw.get("/healthcheck").await.json();
    assert_eq!(health["domains"][0]["middleware"], json!(["auth"]));
}

const LIMIT: &str = r#"
    "middleware-chain": [{ id: "limit", builder: "rate-limit" }],
    middleware: { limit: { "calls-per": 3, "per-seconds": 60, "bypass-header": "X-Internal", "bypass-values": ["ops"] } },"#;

#[tokio::test]
async fn rate_limits_per_client_address_with_headers_on_every_response() {
    let (upstream, gw) = start(LIMIT).await;
    let client = [("x-forwarded-for", "10.0.0.1")];
    for remaining in ["2", "1", "0"] {
        let reply = gw.send(get(&gw, "/echo", &client)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers["ratelimit-limit"], "3");
        assert_eq!(reply.headers["ratelimit-remaining"], remaining);
        assert!(reply.headers.contains_key("ratelimit-reset"));
    }
    let limited = gw.send(get(&gw, "/echo", &client)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(limited.headers["ratelimit-remaining"], "0");
    assert_eq!(limited.json()["status"], 429);
    assert_eq!(upstream.request_count(), 3);

    // Upstream error responses of the route carry the headers too (another client).
    let other = [("x-forwarded-for", "10.0.0.2")];
    let upstream_error = gw.send(get(&gw, "/status/500", &other)).await;
    assert_eq!(upstream_error.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(upstream_error.headers["ratelimit-remaining"], "2");

    // The bypass header skips the limit only with a listed value.
    let bypass = gw
        .send(get(&gw, "/echo", &[client[0], ("x-internal", "ops")]))
        .await;
    assert_eq!(bypass.status, StatusCode::OK);
    assert!(!bypass.headers.contains_key("ratelimit-limit"));
    let wrong = gw
        .send(get(&gw, "/echo", &[client[0], ("x-internal", "nope")]))
        .await;
    assert_eq!(wrong.status, StatusCode::TOO_MANY_REQUESTS);

    let metrics = String::from_utf8_lossy(&gw.get("/metrics").await.body).into_owned();
    for line in [
        r#"buckler_middleware_outcomes_total{domain="*",id="limit",outcome="allowed"} 4"#,
        r#"buckler_middleware_outcomes_total{domain="*",id="limit",outcome="limited"} 2"#,
        r#"buckler_middleware_outcomes_total{domain="*",id="limit",outcome="bypassed"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
}

#[tokio::test]
async fn a_reload_keeps_the_limit_state() {
    let dir = temp_dir("mw-reload");
    let upstream = FakeUpstream::builder("one").doc(doc()).start().await;
    let path = dir.join("gw.json5");
    let write = |calls: u32| {
        std::fs::write(
            &path,
            format!(
                r#"{{ listen: "127.0.0.1:0", domains: [{{ "domain-name": "*",
                     "middleware-chain": [{{ id: "limit", builder: "rate-limit" }}],
                     middleware: {{ limit: {{ "calls-per": 2, "per-seconds": 60, kvstore: "m" }} }},
                     kvstores: {{ m: {{ type: "memory", "max-bytes": "1mb" }} }},
                     "request-timeout": "{calls}s",
                     upstreams: {} }}] }}"#,
                upstreams_json(&[(&upstream.url(), 1)])
            ),
        )
        .unwrap();
    };
    write(5);
    let gw = TestGateway::start_file(&path).await;
    gw.wait_ready().await;
    assert_eq!(gw.get("/echo").await.status, StatusCode::OK);
    assert_eq!(gw.get("/echo").await.status, StatusCode::OK);
    write(6);
    gw.gateway.control().reload().await.expect("reload applies");
    assert_eq!(
        gw.get("/echo").await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "an unchanged store keeps its state across a reload"
    );
}

fn read_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

#[tokio::test]
async fn the_access_log_writes_one_json_line_per_request_and_reopens() {
    let dir = temp_dir("mw-access");
    let log = dir.join("access.log");
    let extra = format!(
        r#"{AUTH}
        listeners: [{{ id: "Access", builder: "access-log" }}],
        "listener-config": {{ Access: {{ path: {log:?} }} }},
        log: {{ "request-headers": ["user-agent", "x-key"], "response-headers": ["content-type"] }},"#
    );
    let (upstream, gw) = start(&extra).await;
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let ok = gw
        .send(
            Request::post(gw.url("/echo?x=1"))
                .header("x-key", "Right")
                .header("user-agent", "tester")
                .header("traceparent", trace)
                .header("x-forwarded-for", "10.1.1.1")
                .body(Full::new(Bytes::from_static(b"hello")))
                .unwrap(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        ok.echoed_header("traceparent").as_deref(),
        Some(trace),
        "kept"
    );
    let denied = gw.get("/echo").await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gw.get("/missing").await.status, StatusCode::NOT_FOUND);
    // A disabled listener: this endpoint writes nothing.
    assert_eq!(gw.get("/open").await.status, StatusCode::OK);
    // A traceparent is started when the client sent none, and forwarded.
    let started = gw.send(get(&gw, "/echo", &[("x-key", "Right")])).await;
    let sent = started
        .echoed_header("traceparent")
        .expect("a traceparent upstream");
    assert_eq!(sent.len(), 55, "{sent}");

    assert_eventually!(read_lines(&log).len() == 4, "{:?}", read_lines(&log));
    let lines = read_lines(&log);
    let first = &lines[0];
    for field in [
        "time",
        "request_id",
        "trace_id",
        "client_address",
        "method",
        "path",
        "template",
        "status",
        "upstream",
        "duration_ms",
        "upstream_duration_ms",
        "bytes_in",
        "bytes_out",
        "cache",
        "middleware_ms",
        "request_headers",
        "response_headers",
    ] {
        assert!(first.get(field).is_some(), "{field} missing: {first}");
    }
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/echo?x=1");
    assert_eq!(first["template"], "/echo");
    assert_eq!(first["status"], 200);
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(first["client_address"], "10.1.1.1");
    assert_eq!(first["upstream"], upstream.url());
    assert_eq!(first["bytes_in"], 5);
    assert_eq!(first["bytes_out"].as_u64(), Some(ok.body.len() as u64));
    assert_eq!(
        first["request_id"],
        ok.headers["x-request-id"].to_str().unwrap()
    );
    assert_eq!(first["request_headers"]["user-agent"], "tester");
    assert_eq!(
        first["request_headers"]["x-key"], "<redacted>",
        "keys are never logged"
    );
    assert_eq!(
        first["response_headers"]["content-type"],
        "application/json"
    );
    assert!(first["middleware_ms"]["auth"].is_number(), "{first}");
    assert!(first["upstream_duration_ms"].is_number());
    assert_eq!(lines[1]["status"], 401);
    assert_eq!(lines[1]["upstream"], Value::Null);
    assert_eq!(lines[2]["status"], 404);
    assert_eq!(lines[2]["template"], Value::Null);
    assert_eq!(lines[3]["trace_id"], sent[3..35]);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("Right"), "the key never reaches the log");

    // Log rotation: move the file away, reopen (the SIGUSR1 hook), and the next line goes to
    // a new file at the configured path.
    let rotated = dir.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    gw.gateway.control().reopen_access_logs();
    assert_eq!(gw.get("/missing").await.status, StatusCode::NOT_FOUND);
    assert_eventually!(read_lines(&log).len() == 1, "no line in the reopened file");
    assert_eq!(read_lines(&rotated).len(), 4);
    let metrics = String::from_utf8_lossy(&gw.get("/metrics").await.body).into_owned();
    assert!(
        metrics.contains(r#"buckler_access_log_dropped_total{domain="*",listener="Access"} 0"#),
        "{metrics}"
    );
    let health = gw.get("/healthcheck").await.json();
    assert_eq!(health["domains"][0]["listeners"], json!(["Access"]));
}
