//! The response cache and the shared Redis store end to end (SPEC §10): hit, miss, stale,
//! uncacheable, `Vary`, `max-object-bytes`, coalesced misses, invalidation; two gateways
//! sharing one real `redis-server` for a limit and a cache; Redis stopped and restarted.
//!
//! The Redis tests start `redis-server` themselves and FAIL (naming the Debian package) when
//! it is not installed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buckler_kv::testing::RedisServer;
use buckler_tests::*;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

/// An origin with cacheable resources, counting the requests each path gets.
struct Origin {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, u64>>>,
    failing: Arc<AtomicBool>,
}

impl Origin {
    async fn start() -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let failing = Arc::new(AtomicBool::new(false));
        let (h, f) = (hits.clone(), failing.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (hits, failing) = (h.clone(), f.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (hits, failing) = (hits.clone(), failing.clone());
                        async move { Ok::<_, Infallible>(answer(req, &hits, &failing).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Origin {
            addr,
            hits,
            failing,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self, path: &str) -> u64 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn doc() -> String {
    Swagger2Doc::new("origin", "1")
        .op("get", "/cached/{secs}")
        .op("post", "/cached/{secs}")
        .op("get", "/vary")
        .op("get", "/big/{bytes}")
        .op("get", "/nostore")
        .op("get", "/flaky")
        .op("get", "/slow/{ms}")
        .to_json()
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    hits: &Mutex<HashMap<String, u64>>,
    failing: &AtomicBool,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if path == "/spec" {
        return Response::new(Full::new(Bytes::from(doc())));
    }
    let count = {
        let mut hits = hits.lock().unwrap();
        let count = hits.entry(path.clone()).or_insert(0);
        *count += 1;
        *count
    };
    let segments: Vec<&str> = path.split('/').collect();
    let mut response = Response::builder().header("content-type", "application/json");
    let body = json!({"path": path, "count": count}).to_string();
    let body = match segments.get(1).copied() {
        Some("cached") if req.method() == http::Method::POST => {
            response = response.status(201);
            body
        }
        Some("cached") => {
            response = response.header("cache-control", format!("public, max-age={}", segments[2]));
            body
        }
        Some("vary") => {
            let accept = req
                .headers()
                .get("accept")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            response = response
                .header("cache-control", "max-age=60")
                .header("vary", "Accept");
            json!({"accept": accept, "count": count}).to_string()
        }
        Some("big") => {
            response = response.header("cache-control", "max-age=60");
            "x".repeat(segments[2].parse().unwrap())
        }
        Some("nostore") => {
            response = response.header("cache-control", "no-store");
            body
        }
        Some("flaky") => {
            if failing.load(Ordering::SeqCst) {
                response = response.status(500);
            } else {
                response = response.header("cache-control", "max-age=1");
            }
            body
        }
        Some("slow") => {
            tokio::time::sleep(Duration::from_millis(segments[2].parse().unwrap())).await;
            response = response.header("cache-control", "max-age=60");
            body
        }
        _ => {
            response = response.status(404);
            body
        }
    };
    response.body(Full::new(Bytes::from(body))).unwrap()
}

fn config(origin: &Origin, domain_extra: &str) -> String {
    format!(
        r#"{{ listen: "127.0.0.1:0", "trust-proxies": 1,
             domains: [{{ "domain-name": "*", {domain_extra}
               upstreams: [{{ serviceType: "swagger2", serviceLocation: "{}" }}] }}] }}"#,
        origin.url()
    )
}

const CACHE_MEMORY: &str = r#"
    "middleware-chain": [{ id: "cache", builder: "response-cache" }],
    middleware: { cache: { "max-object-bytes": "2kb" } },"#;

fn req(
    gw: &TestGateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut request = Request::builder().method(method).uri(gw.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::default()).unwrap()
}

fn x_cache(reply: &Reply) -> &str {
    reply
        .headers
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn hits_misses_head_and_age() {
    let origin = Origin::start().await;
    let gw = TestGateway::start_ready(&config(&origin, CACHE_MEMORY)).await;
    let first = gw.get("/cached/60").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(x_cache(&first), "miss");
    let second = gw.get("/cached/60").await;
    assert_eq!(x_cache(&second), "hit");
    assert_eq!(second.body, first.body);
    assert!(second.headers.contains_key("age"));
    assert_eq!(second.headers["cache-control"], "public, max-age=60");
    let head = gw.send(req(&gw, "HEAD", "/cached/60", &[])).await;
    assert_eq!(x_cache(&head), "hit", "HEAD is answered from the GET entry");
    assert!(head.body.is_empty());
    assert_eq!(origin.hits("/cached/60"), 1);
    // A different query is a different entry; request no-cache forwards.
    assert_eq!(x_cache(&gw.get("/cached/60?a=1").await), "miss");
    let refresh = gw
        .send(req(
            &gw,
            "GET",
            "/cached/60",
            &[("cache-control", "no-cache")],
        ))
        .await;
    assert_eq!(x_cache(&refresh), "miss");
    assert_eq!(origin.hits("/cached/60"), 3);
    let metrics = String::from_utf8_lossy(&gw.get("/metrics").await.body).into_owned();
    assert!(
        metrics.contains(
            r#"buckler_middleware_outcomes_total{domain="*",id="cache",outcome="hit"} 2"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn vary_no_store_authorization_and_size_bound() {
    let origin = Origin::start().await;
    let gw = TestGateway::start_ready(&config(&origin, CACHE_MEMORY)).await;
    let a = [("accept", "application/json")];
    let b = [("accept", "text/plain")];
    assert_eq!(
        x_cache(&gw.send(req(&gw, "GET", "/vary", &a)).await),
        "miss"
    );
    assert_eq!(
        x_cache(&gw.send(req(&gw, "GET", "/vary", &b)).await),
        "miss"
    );
    let hit_a = gw.send(req(&gw, "GET", "/vary", &a)).await;
    assert_eq!(x_cache(&hit_a), "hit");
    assert_eq!(hit_a.json()["accept"], "application/json");
    let hit_b = gw.send(req(&gw, "GET", "/vary", &b)).await;
    assert_eq!(hit_b.json()["accept"], "text/plain");
    assert_eq!(origin.hits("/vary"), 2);

    for _ in 0..2 {
        assert_eq!(x_cache(&gw.get("/nostore").await), "uncacheable");
    }
    assert_eq!(origin.hits("/nostore"), 2);
    // Authorization without public / s-maxage: not stored.
    let authorized = gw
        .send(req(
            &gw,
            "GET",
            "/vary",
            &[("authorization", "Bearer x"), ("accept", "x/y")],
        ))
        .await;
    assert_eq!(x_cache(&authorized), "uncacheable");

    // Over max-object-bytes: streamed whole, never stored.
    for _ in 0..2 {
        let big = gw.get("/big/5000").await;
        assert_eq!(big.body.len(), 5000);
        assert_eq!(x_cache(&big), "miss");
    }
    assert_eq!(origin.hits("/big/5000"), 2);
    assert_eq!(x_cache(&gw.get("/big/1000").await), "miss");
    assert_eq!(x_cache(&gw.get("/big/1000").await), "hit");
}

#[tokio::test]
async fn concurrent_misses_make_one_upstream_request() {
    let origin = Origin::start().await;
    let gw = Arc::new(TestGateway::start_ready(&config(&origin, CACHE_MEMORY)).await);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move { gw.get("/slow/300").await }));
    }
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            ["miss", "hit"].contains(&x_cache(&reply)),
            "{:?}",
            reply.headers
        );
    }
    assert_eq!(origin.hits("/slow/300"), 1);
}

#[tokio::test]
async fn stale_on_5xx_and_invalidation_by_unsafe_methods() {
    let origin = Origin::start().await;
    let gw = TestGateway::start_ready(&config(&origin, CACHE_MEMORY)).await;
    let fresh = gw.get("/flaky").await;
    assert_eq!(x_cache(&fresh), "miss");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    origin.failing.store(true, Ordering::SeqCst);
    let stale = gw.get("/flaky").await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(x_cache(&stale), "stale");
    assert_eq!(stale.body, fresh.body);
    assert_eq!(origin.hits("/flaky"), 2, "the upstream was asked first");

    assert_eq!(x_cache(&gw.get("/cached/60").await), "miss");
    assert_eq!(x_cache(&gw.get("/cached/60").await), "hit");
    let post = gw.send(req(&gw, "POST", "/cached/60", &[])).await;
    assert_eq!(post.status, StatusCode::CREATED);
    assert_eq!(x_cache(&post), "uncacheable");
    assert_eventually!(
        x_cache(&gw.get("/cached/60").await) == "miss",
        "a 2xx POST invalidates the path"
    );
}

fn shared_redis(origin: &Origin, redis: &RedisServer) -> String {
    let extra = format!(
        r#""middleware-chain": [{{ id: "limit", builder: "rate-limit", sla: "500ms" }},
                                {{ id: "cache", builder: "response-cache", sla: "500ms" }}],
           middleware: {{ limit: {{ "calls-per": 5, "per-seconds": 60, kvstore: "shared" }},
                          cache: {{ kvstore: "shared" }} }},
           kvstores: {{ shared: {{ type: "redis", url: "{}" }} }},"#,
        redis.url()
    );
    config(origin, &extra)
}

fn metric(text: &str, prefix: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn two_gateways_share_one_limit_and_one_cache_through_redis() {
    let redis = RedisServer::start();
    let origin = Origin::start().await;
    let one = TestGateway::start_ready(&shared_redis(&origin, &redis)).await;
    let two = TestGateway::start_ready(&shared_redis(&origin, &redis)).await;
    let client = [("x-forwarded-for", "10.9.9.9")];
    let mut ok = 0;
    let mut limited = 0;
    for i in 0..10 {
        let gw = if i % 2 == 0 { &one } else { &two };
        let reply = gw
            .send(req(gw, "GET", &format!("/cached/60?i={i}"), &client))
            .await;
        match reply.status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, limited), (5, 5), "one limit across both gateways");

    let other = [("x-forwarded-for", "10.9.9.10")];
    let miss = one.send(req(&one, "GET", "/cached/30", &other)).await;
    assert_eq!(x_cache(&miss), "miss");
    // The entry is written as the body streams; the other gateway sees it soon after.
    assert_eventually!(
        x_cache(&two.send(req(&two, "GET", "/cached/30", &other)).await) == "hit",
        "the second gateway hits the first one's entry"
    );
    assert_eq!(origin.hits("/cached/30"), 1);
}

#[tokio::test]
async fn redis_down_allows_and_misses_then_recovers() {
    let mut redis = RedisServer::start();
    let origin = Origin::start().await;
    let gw = TestGateway::start_ready(&shared_redis(&origin, &redis)).await;
    let client = [("x-forwarded-for", "10.8.8.8")];
    let first = gw.send(req(&gw, "GET", "/cached/60", &client)).await;
    assert_eq!(first.headers["ratelimit-remaining"], "4");
    assert_eq!(
        x_cache(&gw.send(req(&gw, "GET", "/cached/60", &client)).await),
        "hit"
    );

    redis.stop();
    for _ in 0..10 {
        let reply = gw.send(req(&gw, "GET", "/cached/60", &client)).await;
        assert_eq!(reply.status, StatusCode::OK, "a store that is down allows");
        assert!(!reply.headers.contains_key("ratelimit-limit"));
        assert_eq!(x_cache(&reply), "miss", "and the cache misses");
    }
    let metrics = String::from_utf8_lossy(&gw.get("/metrics").await.body).into_owned();
    assert_eq!(
        metric(
            &metrics,
            r#"buckler_ratelimit_store_errors_total{domain="*",id="limit"}"#
        ),
        10,
        "{metrics}"
    );

    redis.restart();
    // Reconnects by itself (after the store's fail-fast pause): limits and the cache resume.
    assert_eventually!(
        gw.send(req(&gw, "GET", "/cached/60", &client))
            .await
            .headers
            .contains_key("ratelimit-limit"),
        "the limit never came back after Redis restarted"
    );
    let mut limited = false;
    for _ in 0..6 {
        if gw.send(req(&gw, "GET", "/cached/60", &client)).await.status
            == StatusCode::TOO_MANY_REQUESTS
        {
            limited = true;
        }
    }
    assert!(limited, "limits apply again");
    let other = [("x-forwarded-for", "10.8.8.9")];
    assert_eventually!(
        x_cache(&gw.send(req(&gw, "GET", "/cached/60", &other)).await) == "hit",
        "the cache stores and hits again"
    );
}
