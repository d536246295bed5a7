//! The Redis store against a real `redis-server` started by each test on a free loopback port
//! (`buckler_kv::testing::RedisServer`; the Debian package `redis-server` must be installed).

use std::time::{Duration, Instant};

use buckler_kv::redis_store::RateClock;
use buckler_kv::testing::RedisServer;
use buckler_kv::{KvStore, MemoryStore, RedisStore, Store, StoreError};
use buckler_policy::ratelimit::SlidingWindow;
use bytes::Bytes;

const TIMEOUT: Duration = Duration::from_millis(300);

fn store(server: &RedisServer) -> RedisStore {
    RedisStore::new(&server.url(), TIMEOUT).expect("store")
}

/// Polls `check` until it is true or `within` has passed.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_sharing_one_redis_see_one_limit() {
    let server = RedisServer::start();
    let a = store(&server);
    let b = store(&server);
    let window = SlidingWindow::new(10, Duration::from_secs(60)).unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..100 {
        let client = if i % 2 == 0 { a.clone() } else { b.clone() };
        calls.spawn(async move {
            client
                .rate_limit("rl:test:one", &window, 0)
                .await
                .expect("decision")
        });
    }
    let mut allowed = 0;
    let mut retry_after = Vec::new();
    while let Some(decision) = calls.join_next().await {
        let decision = decision.unwrap();
        if decision.allowed {
            allowed += 1;
        } else {
            retry_after.push(decision.retry_after_secs);
            assert_eq!(decision.remaining, 0);
        }
        assert_eq!(decision.limit, 10);
    }
    assert_eq!(allowed, 10);
    assert!(retry_after.iter().all(|&s| (1..=120).contains(&s)));
    // Another key is another client.
    assert!(
        b.rate_limit("rl:test:two", &window, 0)
            .await
            .unwrap()
            .allowed
    );
}

#[tokio::test]
async fn redis_and_memory_give_the_same_decisions_for_the_same_sequence() {
    let server = RedisServer::start();
    let redis = store(&server).with_clock(RateClock::Caller);
    let memory = MemoryStore::new(1 << 20);
    let window = SlidingWindow::new(5, Duration::from_millis(1_000)).unwrap();
    // A pseudo-random walk of times over several windows: bursts, gaps of one and of several
    // windows, and a step back in time.
    let mut now: u64 = 1_765_000_000_000;
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let (mut allowed, mut refused) = (0, 0);
    for step in 0..400 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let advance = match seed % 20 {
            0..=15 => seed % 40,
            16..=17 => seed % 700,
            18 => 1_000 + seed % 1_500,
            _ => 3_000,
        };
        now += advance;
        if step == 200 {
            now -= 1_700;
        }
        let key = if seed.is_multiple_of(3) {
            "rl:cmp:b"
        } else {
            "rl:cmp:a"
        };
        let from_memory = memory.rate_limit(key, &window, now).await.unwrap();
        let from_redis = redis.rate_limit(key, &window, now).await.unwrap();
        assert_eq!(from_memory, from_redis, "step {step} at {now} for {key}");
        if from_memory.allowed {
            allowed += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        allowed > 50 && refused > 50,
        "{allowed} allowed, {refused} refused"
    );
}

#[tokio::test]
async fn the_server_clock_is_used_by_default() {
    let server = RedisServer::start();
    let redis = store(&server);
    let window = SlidingWindow::new(2, Duration::from_secs(30)).unwrap();
    // A caller clock far in the past would put every call in a different window; with the
    // server's clock these three share one.
    assert!(
        redis
            .rate_limit("rl:clock", &window, 1)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        redis
            .rate_limit("rl:clock", &window, 1_000_000)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !redis
            .rate_limit("rl:clock", &window, 9_000_000)
            .await
            .unwrap()
            .allowed
    );
}

#[tokio::test]
async fn get_put_delete_with_ttl() {
    let server = RedisServer::start();
    let redis = store(&server);
    assert_eq!(redis.get("rc:a").await.unwrap(), None);
    redis
        .put(
            "rc:a",
            Bytes::from_static(b"\x00body\xff"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        redis.get("rc:a").await.unwrap().as_deref(),
        Some(&b"\x00body\xff"[..])
    );
    redis.delete("rc:a").await.unwrap();
    redis.delete("rc:a").await.unwrap();
    assert_eq!(redis.get("rc:a").await.unwrap(), None);
    redis
        .put(
            "rc:short",
            Bytes::from_static(b"x"),
            Duration::from_millis(150),
        )
        .await
        .unwrap();
    assert!(redis.get("rc:short").await.unwrap().is_some());
    assert!(
        eventually(Duration::from_secs(3), || async {
            redis.get("rc:short").await.unwrap().is_none()
        })
        .await,
        "the entry expires with its TTL"
    );
    // Through the config enum too.
    let any = Store::Redis(redis.clone());
    any.put("rc:b", Bytes::from_static(b"y"), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(any.get("rc:b").await.unwrap().is_some());
    redis.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_back_promptly_while_redis_is_down_and_the_same_store_recovers() {
    let mut server = RedisServer::start();
    let redis = store(&server);
    let window = SlidingWindow::new(3, Duration::from_secs(60)).unwrap();
    assert!(
        redis
            .rate_limit("rl:down", &window, 0)
            .await
            .unwrap()
            .allowed
    );
    redis
        .put("rc:x", Bytes::from_static(b"1"), Duration::from_secs(60))
        .await
        .unwrap();

    server.stop();
    for _ in 0..5 {
        let started = Instant::now();
        let result = redis.rate_limit("rl:down", &window, 0).await;
        let took = started.elapsed();
        assert!(
            matches!(
                result,
                Err(StoreError::Unavailable(_) | StoreError::Timeout(_))
            ),
            "{result:?}"
        );
        // The timeout bounds each call, with a little slack for a loaded machine.
        assert!(took < TIMEOUT + Duration::from_millis(500), "{took:?}");
        let started = Instant::now();
        assert!(redis.get("rc:x").await.is_err());
        assert!(started.elapsed() < TIMEOUT + Duration::from_millis(500));
    }

    server.restart();
    // The same object reconnects by itself (and reloads the script, which a fresh Redis has
    // never seen).
    assert!(
        eventually(Duration::from_secs(10), || async {
            redis.rate_limit("rl:down", &window, 0).await.is_ok()
        })
        .await,
        "the store did not recover after the restart"
    );
    let after = redis.rate_limit("rl:down", &window, 0).await.unwrap();
    assert!(after.allowed, "a restarted Redis starts with no state");
    assert_eq!(redis.get("rc:x").await.unwrap(), None);
}

#[tokio::test]
async fn rediss_verifies_the_server_with_the_given_roots() {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert_pem = certified.cert.pem();
    let server = RedisServer::start_tls(&cert_pem, &certified.signing_key.serialize_pem());
    assert!(server.url().starts_with("rediss://"));
    let redis = RedisStore::with_ca(&server.url(), TIMEOUT, cert_pem.as_bytes()).unwrap();
    let window = SlidingWindow::new(1, Duration::from_secs(60)).unwrap();
    assert!(
        redis
            .rate_limit("rl:tls", &window, 0)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !redis
            .rate_limit("rl:tls", &window, 0)
            .await
            .unwrap()
            .allowed
    );
    redis
        .put("rc:tls", Bytes::from_static(b"z"), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(redis.get("rc:tls").await.unwrap().is_some());
    // The system's trust store does not know this certificate: refused, promptly.
    let untrusted = RedisStore::new(&server.url(), TIMEOUT).unwrap();
    let started = Instant::now();
    assert!(untrusted.get("rc:tls").await.is_err());
    assert!(started.elapsed() < TIMEOUT + Duration::from_millis(500));
}

#[tokio::test]
async fn a_silent_redis_costs_the_timeout_a_few_times_then_fails_fast() {
    // A listener that accepts and never answers, like a Redis behind a dropped route.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let accepting = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().take(20) {
            held.push(stream);
        }
    });
    let redis = RedisStore::new(&url, Duration::from_millis(150)).unwrap();
    for _ in 0..buckler_kv::redis_store::BREAKER_FAILURES {
        let started = Instant::now();
        assert!(redis.get("k").await.is_err());
        assert!(started.elapsed() < Duration::from_millis(800));
    }
    assert_eq!(
        redis.breaker_state(),
        buckler_policy::breaker::BreakerState::Open
    );
    let started = Instant::now();
    assert!(matches!(
        redis.get("k").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "fails at once"
    );
    drop(accepting);
}
