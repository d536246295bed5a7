//! Proxying end to end: header rules, gateway-made statuses, HTTP/2, retries, local endpoints.

use buckler_tests::*;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;

fn echo_doc(name: &str) -> String {
    Swagger2Doc::new(name, "1")
        .op("get", "/echo")
        .op("post", "/echo")
        .op("get", "/slow/{ms}")
        .op("get", "/status/{code}")
        .to_json()
}

async fn one_upstream(extra: &str) -> (FakeUpstream, TestGateway) {
    let upstream = FakeUpstream::builder("one")
        .doc(echo_doc("one"))
        .start()
        .await;
    let gw = TestGateway::start_ready(&config_text(&[(&upstream.url(), 1)], extra)).await;
    (upstream, gw)
}

/// The upstream always gets a `Host`: the client's, or the upstream's own authority when the
/// request has none left — an HTTP/1.0 request without one, or a `Connection` header naming it
/// (hop-by-hop, so removed).
#[tokio::test]
async fn a_request_without_host_reaches_the_upstream_with_its_authority() {
    let (upstream, gw) = one_upstream("").await;
    let authority = upstream.url().trim_start_matches("http://").to_owned();
    for request in [
        &b"GET /echo HTTP/1.0\r\n\r\n"[..],
        b"GET /echo HTTP/1.1\r\nHost: api.example.org\r\nConnection: host, close\r\n\r\n",
    ] {
        let reply = raw_exchange(gw.addr, request).await;
        assert!(reply.starts_with("HTTP/1."), "{reply}");
        assert!(reply[..12].ends_with("200"), "{reply}");
        let body = &reply[reply.find('{').expect("a JSON body")..=reply.rfind('}').unwrap()];
        let echoed: serde_json::Value = serde_json::from_str(body).expect("echo JSON");
        let host = echoed["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|pair| pair[0] == "host")
            .and_then(|pair| pair[1].as_str());
        assert_eq!(host, Some(authority.as_str()), "{reply}");
    }
}

#[tokio::test]
async fn request_and_response_header_rules() {
    let upstream = FakeUpstream::builder("one")
        .doc(echo_doc("one"))
        .start()
        .await;
    let config = format!(
        r#"{{ listen: "127.0.0.1:0", "trust-proxies": 1,
             domains: [{{ "domain-name": "*", upstreams: {} }}] }}"#,
        upstreams_json(&[(&upstream.url(), 1)])
    );
    let gw = TestGateway::start_ready(&config).await;
    let reply = gw
        .send(
            Request::get(gw.url("/echo"))
                .header("host", "api.example.org")
                .header("x-forwarded-for", "203.0.113.9")
                .header("client-address", "6.6.6.6")
                .header("connection", "keep-alive, x-hop")
                .header("x-hop", "secret")
                .header("x-request-id", "req-42")
                .header("x-custom", "kept")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.echoed_header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(
        reply.echoed_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        reply.echoed_header("x-forwarded-host").as_deref(),
        Some("api.example.org")
    );
    assert_eq!(
        reply.echoed_header("host").as_deref(),
        Some("api.example.org")
    );
    assert_eq!(
        reply.echoed_header("client-address"),
        None,
        "stripped before forwarding"
    );
    assert_eq!(
        reply.echoed_header("x-hop"),
        None,
        "named in Connection: hop-by-hop"
    );
    assert_eq!(
        reply.echoed_header("x-request-id").as_deref(),
        Some("req-42")
    );
    assert_eq!(reply.echoed_header("x-custom").as_deref(), Some("kept"));
    assert_eq!(reply.headers["via"], "1.1 buckler");
    assert_eq!(reply.headers["x-request-id"], "req-42");
    assert!(
        reply.headers.get("keep-alive").is_none(),
        "upstream's hop-by-hop header removed"
    );

    let generated = gw.get("/echo").await;
    let id = generated.headers["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(
        generated.echoed_header("x-request-id").as_deref(),
        Some(id.as_str())
    );
}

#[tokio::test]
async fn http2_prior_knowledge_to_the_gateway() {
    let (_upstream, gw) = one_upstream("").await;
    let reply = gw
        .send_h2(Request::get(gw.url("/echo")).body(Full::default()).unwrap())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.upstream(), "one");
    assert_eq!(
        reply.json()["version"],
        "HTTP/1.1",
        "upstream leg is HTTP/1.1"
    );
    let post = gw
        .send_h2(
            Request::post(gw.url("/echo"))
                .body(Full::new(Bytes::from_static(b"hello over h2")))
                .unwrap(),
        )
        .await;
    assert_eq!(post.json()["body"], "hello over h2");
}

/// Every HTTP/2 response on one connection must decode to the headers the upstream and the
/// gateway set, changing values (`X-Request-Id`, sent never-indexed) included, whatever the
/// encoder keeps in its HPACK table between responses.
#[tokio::test]
async fn http2_response_headers_arrive_whole_response_after_response() {
    let (_upstream, gw) = one_upstream("").await;
    let mut request_ids = std::collections::HashSet::new();
    for i in 0..20 {
        let path = format!("/echo?i={i}");
        let reply = gw
            .send_h2(Request::get(gw.url(&path)).body(Full::default()).unwrap())
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers["content-type"], "application/json");
        assert_eq!(reply.upstream(), "one");
        assert_eq!(reply.headers["x-upstream"], "one");
        assert!(reply.headers["via"].to_str().unwrap().contains("buckler"));
        assert_eq!(
            reply.headers["content-length"],
            reply.body.len().to_string().as_str()
        );
        let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 32, "a fresh request id: {id}");
        assert!(request_ids.insert(id), "request ids differ");
        assert_eq!(reply.json()["query"], format!("i={i}"));
        // Hop-by-hop headers the upstream sent stay behind, as over HTTP/1.1.
        assert!(reply.headers.get("keep-alive").is_none());
    }
}

#[tokio::test]
async fn request_timeout_is_504() {
    let (_upstream, gw) = one_upstream(r#""request-timeout": "300ms","#).await;
    let reply = gw.get("/slow/2000").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(reply.json()["status"], 504);
    assert_eq!(gw.get("/slow/10").await.status, StatusCode::OK);
}

#[tokio::test]
async fn upstream_gone_is_502_and_idempotent_requests_retry_elsewhere() {
    let doomed = FakeUpstream::builder("doomed")
        .doc(echo_doc("doomed"))
        .start()
        .await;
    let gw = TestGateway::start_ready(&config_text(&[(&doomed.url(), 1)], "")).await;
    drop(doomed);
    assert_eventually!(
        gw.get("/echo").await.status == StatusCode::BAD_GATEWAY,
        "502 after the upstream died"
    );
    let reply = gw.get("/echo").await;
    assert_eq!(reply.json()["status"], 502);

    let alive = FakeUpstream::builder("alive")
        .doc(echo_doc("alive"))
        .start()
        .await;
    let dead = FakeUpstream::builder("dead")
        .doc(echo_doc("dead"))
        .start()
        .await;
    let gw =
        TestGateway::start_ready(&config_text(&[(&alive.url(), 1), (&dead.url(), 1)], "")).await;
    drop(dead);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for _ in 0..20 {
        let reply = gw.get("/echo").await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "GET retried on the live upstream"
        );
        assert_eq!(reply.upstream(), "alive");
    }
    let failed_posts = gw
        .post_statuses("/echo", 20)
        .await
        .into_iter()
        .filter(|status| *status == StatusCode::BAD_GATEWAY)
        .count();
    assert!(failed_posts > 0, "POST is never retried");
}

#[tokio::test]
async fn upstream_statuses_pass_through_unchanged() {
    let (_upstream, gw) = one_upstream("").await;
    let reply = gw.get("/status/503").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.upstream(), "one");
}

#[tokio::test]
async fn oversized_headers_are_431() {
    let (_upstream, gw) = one_upstream("").await;
    let big = "a".repeat(70 * 1024);
    let reply = gw
        .send(
            Request::get(gw.url("/echo"))
                .header("x-big", big)
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(reply.json()["status"], 431);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let upstream = FakeUpstream::builder("one")
        .doc(echo_doc("one"))
        .start()
        .await;
    let config = format!(
        r#"{{ listen: "127.0.0.1:0", "max-request-body": 1024,
             domains: [{{ "domain-name": "*", upstreams: {} }}] }}"#,
        upstreams_json(&[(&upstream.url(), 1)])
    );
    let gw = TestGateway::start_ready(&config).await;
    let declared = gw
        .send(
            Request::post(gw.url("/echo"))
                .body(Full::new(Bytes::from(vec![b'x'; 4096])))
                .unwrap(),
        )
        .await;
    assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(declared.json()["status"], 413);
    assert_eq!(
        upstream.request_count(),
        0,
        "refused before contacting the upstream"
    );

    // Chunked: no length up front, the limit trips while streaming.
    let chunked = raw_exchange(
        gw.addr,
        format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n{}\r\n800\r\n{}\r\n0\r\n\r\n",
            "y".repeat(0x800),
            "y".repeat(0x800)
        )
        .as_bytes(),
    )
    .await;
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");

    let small = gw
        .send(
            Request::post(gw.url("/echo"))
                .body(Full::new(Bytes::from_static(b"fits")))
                .unwrap(),
        )
        .await;
    assert_eq!(small.status, StatusCode::OK);
}

#[tokio::test]
async fn malformed_framing_is_400_and_never_smuggles() {
    let (upstream, gw) = one_upstream("").await;
    // Transfer-Encoding whose final coding is not chunked: no way to find the body's end.
    let reply = raw_exchange(
        gw.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabcd",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    // Two different Content-Lengths.
    let reply = raw_exchange(
        gw.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    // Two Hosts: which one routes, and which one the upstream sees, would be ambiguous.
    let reply = raw_exchange(gw.addr, b"GET /echo HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("more than one Host"), "{reply}");
    assert_eq!(upstream.request_count(), 0);

    // Content-Length and Transfer-Encoding together (SPEC §9): 400 and the connection closed;
    // the upstream never sees the request, nor the one a smuggler hid behind the length.
    let reply = raw_exchange(
        gw.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(
        reply.contains("both Content-Length and Transfer-Encoding"),
        "{reply}"
    );
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "the connection is closed: {reply}"
    );
    assert_eq!(
        reply.matches("HTTP/1.1 ").count(),
        1,
        "one response only: {reply}"
    );
    // Either order of the two fields.
    let reply = raw_exchange(
        gw.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert_eq!(
        upstream.request_count(),
        0,
        "neither request reached the upstream"
    );
    // A plain chunked request on a fresh connection is still fine.
    let reply = raw_exchange(
        gw.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"body_len\":4"), "{reply}");
}

#[tokio::test]
async fn healthcheck_waits_for_docs_and_metrics_count_requests() {
    let upstream = FakeUpstream::builder("late").start().await; // no doc yet: 404 at /spec
    let gw = TestGateway::start(&config_text(&[(&upstream.url(), 1)], "")).await;
    let starting = gw.get("/healthcheck").await;
    assert_eq!(starting.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        gw.get("/echo").await.status,
        StatusCode::NOT_FOUND,
        "no traffic before docs"
    );
    assert_eventually!(
        gw.get("/healthcheck").await.json()["domains"][0]["upstreams"][0]["state"] == "failed",
        "failed state after a bad fetch"
    );
    upstream.set_doc(echo_doc("late"));
    gw.wait_ready().await;
    let health = gw.get("/healthcheck").await.json();
    let entry = &health["domains"][0]["upstreams"][0];
    assert_eq!(entry["state"], "serving");
    assert_eq!(entry["endpoints"], 4);
    assert_eq!(entry["serviceLocation"], upstream.url());
    assert!(entry.get("docsError").is_none());

    for _ in 0..3 {
        assert_eq!(gw.get("/echo").await.status, StatusCode::OK);
    }
    gw.get("/nope").await;
    let metrics = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    let line = format!(
        "buckler_requests_total{{domain=\"*\",upstream=\"{}\",class=\"2xx\"}} 3",
        upstream.url()
    );
    assert!(metrics.contains(&line), "{metrics}");
    assert!(
        metrics.contains("buckler_requests_total{domain=\"*\",upstream=\"\",class=\"4xx\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("buckler_request_duration_seconds_bucket{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE buckler_request_duration_seconds histogram"),
        "{metrics}"
    );
}
