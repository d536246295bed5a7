//! Resilience end to end (SPEC §9, issue 31): circuit breakers, `max-in-flight`, active health
//! checks, budgeted retries, body timeouts, and the host and framing rules, against the
//! fault-injecting upstream.

use std::time::{Duration, Instant};

use buckler_testkit::{Fault, FaultUpstream};
use buckler_tests::*;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn doc(name: &str) -> String {
    Swagger2Doc::new(name, "1")
        .op("get", "/a")
        .op("get", "/b")
        .op("post", "/a")
        .op("put", "/a")
        .to_json()
}

fn echo_doc(name: &str) -> String {
    Swagger2Doc::new(name, "1")
        .op("get", "/echo")
        .op("post", "/echo")
        .op("get", "/stream/{bytes}")
        .to_json()
}

/// The `upstreams[i]` entry of the one domain in `/healthcheck`.
async fn upstream_health(gw: &TestGateway, i: usize) -> serde_json::Value {
    gw.get("/healthcheck").await.json()["domains"][0]["upstreams"][i].clone()
}

#[tokio::test]
async fn the_upstream_breaker_opens_refuses_at_once_and_recovers_through_one_trial() {
    let upstream = FaultUpstream::start("one", doc("one")).await;
    let gw = TestGateway::start_ready(&config_text(
        &[(&upstream.url(), 1)],
        r#""circuit-breaker": { "max-failures": 3, "endpoint-max-failures": 100, "reset-timeout": "600ms" },"#,
    ))
    .await;
    upstream.set_fault(Fault::Status(500));
    for _ in 0..3 {
        let reply = gw.get("/a").await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reply.upstream(), "one", "a 5xx is passed through unchanged");
    }
    // Open: refused at once, the upstream sees nothing.
    let refused = gw.get("/a").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.json()["status"], 503);
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("circuit open"),
        "{:?}",
        refused.json()
    );
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(upstream.hits(), 3);
    assert_eq!(upstream_health(&gw, 0).await["breaker"], "open");
    assert_eq!(upstream_health(&gw, 0).await["healthy"], false);
    let m = gw.metrics().await;
    assert_eq!(
        metric_sample(&m, "buckler_circuit_breaker_state{domain=\"*\""),
        1.0,
        "{m}"
    );
    let admin_free = gw.get("/b").await;
    assert_eq!(
        admin_free.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the upstream breaker covers every endpoint"
    );

    // Half-open: exactly one trial; it fails, the breaker opens again.
    tokio::time::sleep(Duration::from_millis(650)).await;
    assert_eq!(upstream_health(&gw, 0).await["breaker"], "half-open");
    assert_eq!(gw.get("/a").await.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(upstream.hits(), 4, "one trial reached the upstream");
    assert_eq!(gw.get("/a").await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.hits(), 4);

    // Half-open again: the trial succeeds and closes it.
    upstream.set_fault(Fault::Ok);
    tokio::time::sleep(Duration::from_millis(650)).await;
    assert_eq!(gw.get("/a").await.status, StatusCode::OK);
    assert_eq!(upstream_health(&gw, 0).await["breaker"], "closed");
    for _ in 0..5 {
        assert_eq!(gw.get("/b").await.status, StatusCode::OK);
    }
    assert_eq!(upstream.hits(), 10);
}

#[tokio::test]
async fn an_endpoint_breaker_removes_only_that_endpoint() {
    let upstream = FaultUpstream::start("one", doc("one")).await;
    let gw = TestGateway::start_ready(&config_text(
        &[(&upstream.url(), 1)],
        r#""circuit-breaker": { "max-failures": 100, "endpoint-max-failures": 2, "reset-timeout": "10s" },"#,
    ))
    .await;
    upstream.set_fault(Fault::Status(502));
    assert_eq!(gw.get("/a").await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(gw.get("/a").await.status, StatusCode::BAD_GATEWAY);
    let refused = gw.get("/a").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((9..=10).contains(&retry_after), "{retry_after}");
    upstream.set_fault(Fault::Ok);
    assert_eq!(
        gw.get("/b").await.status,
        StatusCode::OK,
        "other endpoints still served"
    );
    assert_eq!(gw.get("/a").await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream_health(&gw, 0).await["breaker"], "closed");
    let m = gw.metrics().await;
    assert!(
        m.contains("buckler_endpoint_circuit_breaker_state{domain=\"*\"")
            && m.contains("endpoint=\"GET /a\"} 1"),
        "{m}"
    );
}

/// Timeouts and resets count as failures; a client's malformed body does not.
#[tokio::test]
async fn timeouts_and_resets_count_client_faults_do_not() {
    let upstream = FaultUpstream::start("one", doc("one")).await;
    let gw = TestGateway::start_ready(&config_text(
        &[(&upstream.url(), 1)],
        r#""circuit-breaker": { "max-failures": 2, "reset-timeout": "10s" }, "request-timeout": "300ms", retry: { attempts: 0 },"#,
    ))
    .await;
    // Malformed chunked bodies, many times: 400 each, the breaker stays closed.
    for _ in 0..4 {
        let reply = raw_exchange(
            gw.addr,
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    }
    assert_eq!(upstream_health(&gw, 0).await["breaker"], "closed");
    assert_eq!(gw.get("/a").await.status, StatusCode::OK);

    upstream.set_fault(Fault::HangBeforeHead);
    assert_eq!(gw.get("/a").await.status, StatusCode::GATEWAY_TIMEOUT);
    upstream.set_fault(Fault::ResetBeforeHead);
    assert_eq!(gw.get("/a").await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(upstream_health(&gw, 0).await["breaker"], "open");
    assert_eq!(gw.get("/a").await.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_full_upstream_is_skipped_and_a_full_group_sheds_at_once() {
    let upstream = FaultUpstream::start("one", doc("one")).await;
    let gw = TestGateway::start_ready(&config_text(
        &[(&upstream.url(), 1)],
        r#""circuit-breaker": { "max-in-flight": 2 },"#,
    ))
    .await;
    upstream.set_fault(Fault::Delay(Duration::from_millis(1500)));
    let gw = std::sync::Arc::new(gw);
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { gw.get("/a").await.status })
        })
        .collect();
    assert_eventually!(upstream.hits() == 2, "two requests in flight");
    let started = Instant::now();
    let shed = gw.get("/a").await;
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "no queueing"
    );
    assert!(shed.json()["error"]
        .as_str()
        .unwrap()
        .contains("overloaded"));
    assert_eq!(shed.headers["retry-after"], "1");
    for task in slow {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    upstream.set_fault(Fault::Ok);
    assert_eq!(gw.get("/a").await.status, StatusCode::OK);
}

#[tokio::test]
async fn health_checks_take_an_upstream_out_and_back_without_a_failed_request() {
    let sick = FaultUpstream::start("sick", doc("sick")).await;
    let fine = FaultUpstream::start("fine", doc("fine")).await;
    let gw = TestGateway::start_ready(&config_text(
        &[(&sick.url(), 1), (&fine.url(), 1)],
        r#""health-check": { path: "/health", interval: "100ms", timeout: "500ms", "unhealthy-threshold": 2, "healthy-threshold": 2 },"#,
    ))
    .await;
    assert_eventually!(sick.health_hits() >= 1, "the upstream is probed");
    sick.set_health(503);
    assert_eventually!(
        upstream_health(&gw, 0).await["healthy"] == false,
        "the failing upstream leaves selection"
    );
    let before = sick.hits();
    for _ in 0..10 {
        let reply = gw.get("/a").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.upstream(), "fine");
    }
    assert_eq!(
        sick.hits(),
        before,
        "no request reached the unhealthy upstream"
    );
    let m = gw.metrics().await;
    assert!(
        metric_sample(
            &m,
            &format!(
                "buckler_health_checks_total{{domain=\"*\",upstream=\"{}\",result=\"fail\"}}",
                sick.url()
            )
        ) >= 2.0,
        "{m}"
    );

    sick.set_health(200);
    assert_eventually!(
        upstream_health(&gw, 0).await["healthy"] == true,
        "the upstream comes back after passing its checks"
    );
    let mut reached = false;
    for _ in 0..10 {
        let reply = gw.get("/a").await;
        assert_eq!(reply.status, StatusCode::OK);
        reached |= reply.upstream() == "sick";
    }
    assert!(reached, "the recovered upstream takes requests again");
}

/// A closed port: a GET is retried on the other upstream, a POST never is.
#[tokio::test]
async fn a_get_is_retried_on_another_upstream_a_post_never() {
    let alive = FaultUpstream::start("alive", doc("alive")).await;
    let doomed = FaultUpstream::start("doomed", doc("doomed")).await;
    let gw = TestGateway::start_ready(&config_text(
        &[(&alive.url(), 1), (&doomed.url(), 1)],
        r#""circuit-breaker": { "max-failures": 1000, "endpoint-max-failures": 1000 },"#,
    ))
    .await;
    drop(doomed);
    for _ in 0..10 {
        let reply = gw.get("/a").await;
        assert_eq!(reply.status, StatusCode::OK, "GET retried elsewhere");
        assert_eq!(reply.upstream(), "alive");
    }
    // A small PUT body is buffered and retried too.
    for _ in 0..4 {
        let reply = gw
            .send(
                Request::put(gw.url("/a"))
                    .body(Full::new(Bytes::from_static(b"{}")))
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "PUT retried elsewhere");
    }
    let put_bodies: Vec<_> = alive
        .requests()
        .into_iter()
        .filter(|r| r.head.starts_with("PUT"))
        .map(|r| r.body)
        .collect();
    assert!(put_bodies.iter().all(|b| b == b"{}"), "{put_bodies:?}");
    let failed_posts = gw
        .post_statuses("/a", 10)
        .await
        .into_iter()
        .filter(|status| *status == StatusCode::BAD_GATEWAY)
        .count();
    assert!(failed_posts > 0, "POST is never retried");
    let m = gw.metrics().await;
    assert!(
        metric_sample(&m, "buckler_retries_total{domain=\"*\",outcome=\"sent\"}") >= 5.0,
        "{m}"
    );
}

/// With `budget-percent: 0` only the floor of 3 retries may be in flight at once: a burst of
/// failing first attempts gets no more retries than that while they are under way.
#[tokio::test]
async fn the_retry_budget_bounds_retries_in_flight() {
    let slow = FaultUpstream::start("slow", doc("slow")).await;
    let doomed = FaultUpstream::start("doomed", doc("doomed")).await;
    let gw = TestGateway::start_ready(&config_text(
        &[(&slow.url(), 1), (&doomed.url(), 1)],
        r#""circuit-breaker": { "max-failures": 1000, "endpoint-max-failures": 1000 }, retry: { attempts: 1, "budget-percent": 0 },"#,
    ))
    .await;
    drop(doomed);
    slow.set_fault(Fault::Delay(Duration::from_millis(1500)));
    let gw = std::sync::Arc::new(gw);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { gw.get("/a").await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let m = gw.metrics().await;
    let sent = metric_sample(&m, "buckler_retries_total{domain=\"*\",outcome=\"sent\"}");
    let refused = metric_sample(
        &m,
        "buckler_retries_total{domain=\"*\",outcome=\"budget-exhausted\"}",
    );
    assert!(sent <= 3.0, "at most 3 retries in flight: {m}");
    assert!(refused >= 1.0, "the rest refused by the budget: {m}");
    let failed = statuses
        .iter()
        .filter(|s| **s == StatusCode::BAD_GATEWAY)
        .count();
    assert_eq!(failed as f64, refused, "{statuses:?}");
}

/// An upstream that dies with more requests on it than the budget has room for: their
/// retries take turns within the budget (each lasts a moment on the live upstream) and no
/// GET fails, while no more than the budget's 3 retries are ever in flight at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_dying_under_many_requests_fails_no_get() {
    let alive = FaultUpstream::start("alive", doc("alive")).await;
    let doomed = FaultUpstream::start("doomed", doc("doomed")).await;
    let gw = TestGateway::start_ready(&config_text(
        &[(&alive.url(), 1), (&doomed.url(), 3)],
        r#"retry: { attempts: 1, "budget-percent": 0 },"#,
    ))
    .await;
    doomed.set_fault(Fault::HangBeforeHead);
    let gw = std::sync::Arc::new(gw);
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { gw.get("/a").await.status })
        })
        .collect();
    // Most of them hang on the doomed upstream; then it dies, closing every connection.
    assert_eventually!(
        doomed.requests().len() >= 8,
        "requests reached the doomed upstream"
    );
    let stuck = doomed.requests().len();
    drop(doomed);
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "every GET retried: {statuses:?}"
    );
    let m = gw.metrics().await;
    let sent = metric_sample(&m, "buckler_retries_total{domain=\"*\",outcome=\"sent\"}");
    assert!(sent >= stuck as f64, "{stuck} stuck requests retried: {m}");
    assert_eq!(
        metric_sample(
            &m,
            "buckler_retries_total{domain=\"*\",outcome=\"budget-exhausted\"}"
        ),
        0.0,
        "{m}"
    );
}

/// Finding 3: `request-timeout` counts from the request's last byte sent, so a slow, steady
/// upload completes; finding 2: an upload that stops gets 408.
#[tokio::test]
async fn a_slow_steady_upload_completes_and_a_stalled_one_is_408() {
    let upstream = FakeUpstream::builder("one")
        .doc(echo_doc("one"))
        .start()
        .await;
    let gw = TestGateway::start_ready(&config_text(
        &[(&upstream.url(), 1)],
        r#""request-timeout": "400ms", "body-idle-timeout": "500ms","#,
    ))
    .await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        .await
        .unwrap();
    // 10 bytes over ~1.5 s: longer than request-timeout, never idle for body-idle-timeout.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        stream.write_all(b"x").await.unwrap();
    }
    let reply = read_some(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"body_len\":10"), "{reply}");

    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nxyz")
        .await
        .unwrap();
    let started = Instant::now();
    let reply = read_some(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Reads until the peer closes or stays silent for a second.
async fn read_some(stream: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Finding 2: a stalled upstream response body is cut — HTTP/1.1: the connection is closed;
/// HTTP/2: the stream is reset.
#[tokio::test]
async fn a_stalled_response_body_is_cut() {
    let upstream = FaultUpstream::start("one", doc("one")).await;
    let gw = TestGateway::start_ready(&config_text(
        &[(&upstream.url(), 1)],
        r#""body-idle-timeout": "300ms","#,
    ))
    .await;
    upstream.set_fault(Fault::HangInBody { sent: 10 });
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&out);
    assert!(closed, "the connection is closed, not left hanging: {text}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let started = Instant::now();
    let response = gw
        .http2_response(Request::get(gw.url("/a")).body(Full::default()).unwrap())
        .await
        .expect("a response head");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await;
    assert!(body.is_err(), "the HTTP/2 stream is reset");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Finding 4 (gateway side): an upstream response with both `Content-Length` and chunked is
/// framed by the chunks and its length dropped; a body shorter than its length is an error,
/// never a complete-looking body.
#[tokio::test]
async fn upstream_framing_lies_do_not_reach_the_client() {
    let upstream = FaultUpstream::start("one", doc("one")).await;
    let gw = TestGateway::start_ready(&config_text(&[(&upstream.url(), 1)], "")).await;
    upstream.set_fault(Fault::LengthAndChunked);
    let response = gw
        .http2_response(Request::get(gw.url("/a")).body(Full::default()).unwrap())
        .await
        .expect("a response head");
    assert!(
        response.headers().get("content-length").is_none(),
        "{:?}",
        response.headers()
    );
    let body = response
        .into_body()
        .collect()
        .await
        .expect("whole body")
        .to_bytes();
    assert_eq!(&body[..], b"hello world");

    upstream.set_fault(Fault::ShortBody);
    let cut = match gw
        .http2_response(Request::get(gw.url("/a")).body(Full::default()).unwrap())
        .await
    {
        // Reset before or after the head: either way never a complete-looking body.
        Err(_) => true,
        Ok(response) => response.into_body().collect().await.is_err(),
    };
    assert!(cut, "a short body is cut, not completed");
}

/// Finding 6: the host that routes is the host the upstream sees.
#[tokio::test]
async fn host_confusion_is_refused_or_resolved() {
    let upstream = FakeUpstream::builder("one")
        .doc(echo_doc("one"))
        .start()
        .await;
    let gw = TestGateway::start_ready(&config_text(&[(&upstream.url(), 1)], "")).await;
    let reply = raw_exchange(
        gw.addr,
        b"GET http://b.test/echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(r#"["host","b.test"]"#), "{reply}");
    for bad in [
        &b"GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        b"GET /echo HTTP/1.1\r\nHost: user@a.test\r\nConnection: close\r\n\r\n",
    ] {
        let reply = raw_exchange(gw.addr, bad).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
        assert!(reply.contains("\"status\":400"), "{reply}");
    }
    let before = upstream.request_count();
    let reply = gw
        .send_h2(
            Request::get(gw.url("/echo"))
                .header("host", "other.test")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:?}", reply.body);
    assert_eq!(
        upstream.request_count(),
        before,
        "refused before the upstream"
    );
}

/// Finding 7: split HTTP/2 cookies reach an HTTP/1.1 upstream as one `Cookie`.
#[tokio::test]
async fn http2_cookies_are_joined_for_http1_upstreams() {
    let upstream = FakeUpstream::builder("one")
        .doc(echo_doc("one"))
        .start()
        .await;
    let gw = TestGateway::start_ready(&config_text(&[(&upstream.url(), 1)], "")).await;
    let reply = gw
        .send_h2(
            Request::get(gw.url("/echo"))
                .header("cookie", "a=1")
                .header("cookie", "b=2")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let cookies: Vec<_> = reply.json()["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0] == "cookie")
        .map(|pair| pair[1].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies, ["a=1; b=2"]);
}

/// Finding 11: a GET's chunked body is forwarded like a `Content-Length` one.
#[tokio::test]
async fn a_chunked_get_body_is_forwarded() {
    let upstream = FaultUpstream::start("one", doc("one")).await;
    let gw = TestGateway::start_ready(&config_text(&[(&upstream.url(), 1)], "")).await;
    let reply = raw_exchange(
        gw.addr,
        b"GET /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let reply = raw_exchange(
        gw.addr,
        b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let bodies: Vec<Vec<u8>> = upstream.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, [b"abc".to_vec(), b"abc".to_vec()]);
}

/// Finding 11: errors hyper answers itself (obs-fold, NUL, oversized heads) get the JSON error
/// body too, and the connection is still closed.
#[tokio::test]
async fn errors_the_http_layer_makes_have_the_json_body() {
    let upstream = FaultUpstream::start("one", doc("one")).await;
    let gw = TestGateway::start_ready(&config_text(&[(&upstream.url(), 1)], "")).await;
    let big = format!(
        "GET /a HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(140 * 1024)
    );
    for (request, status) in [
        (
            &b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"[..],
            400,
        ),
        (b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", 400),
        (big.as_bytes(), 431),
    ] {
        let reply = raw_exchange(gw.addr, request).await;
        assert!(reply.starts_with(&format!("HTTP/1.1 {status}")), "{reply}");
        assert!(reply.contains("content-type: application/json"), "{reply}");
        let body = &reply[reply.find("\r\n\r\n").unwrap() + 4..];
        let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(json["status"], status);
        assert!(reply.contains("connection: close"), "{reply}");
    }
    assert_eq!(upstream.hits(), 0);
}
