//! The pool against real upstreams on 127.0.0.1:0: raw HTTP/1.1 ones scripted byte by byte,
//! and hyper HTTP/2-only servers that record what they were spoken to in.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Version};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::body::{empty_body, full_body, BoxError};

const HELLO: &str = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

/// Polls `check` every 10 ms until it holds or 10 s pass.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How the scripted upstream ends each exchange.
#[derive(Clone, Copy)]
enum After {
    KeepOpen,
    /// Closes the socket right after the response, without saying so in the headers: the
    /// pooled connection is dead by the time it is next used.
    Close,
}

/// A raw HTTP/1.1 upstream answering every request head with `response`.
struct RawUpstream {
    authority: Authority,
    /// Connections accepted.
    accepted: Arc<AtomicUsize>,
    /// Connections open now (accepted and not yet closed by either side).
    open: Arc<AtomicUsize>,
    /// One message per connection the upstream has closed itself (`After::Close`).
    closed: mpsc::UnboundedReceiver<()>,
}

async fn raw_upstream(response: &'static str, after: After) -> RawUpstream {
    raw_upstream_answering_after(response, after, Duration::ZERO).await
}

/// [`raw_upstream`] waiting `delay` before each answer.
async fn raw_upstream_answering_after(
    response: &'static str,
    after: After,
    delay: Duration,
) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let (accepted_count, open_count) = (accepted.clone(), open.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            accepted_count.fetch_add(1, Ordering::SeqCst);
            open_count.fetch_add(1, Ordering::SeqCst);
            let (open_count, closed_tx) = (open_count.clone(), closed_tx.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut chunk = [0u8; 4096];
                'conn: while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                    seen.extend_from_slice(&chunk[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            break 'conn;
                        }
                        if let After::Close = after {
                            drop(stream);
                            open_count.fetch_sub(1, Ordering::SeqCst);
                            let _ = closed_tx.send(());
                            return;
                        }
                    }
                }
                open_count.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    RawUpstream {
        authority,
        accepted,
        open,
        closed,
    }
}

fn settings() -> UpstreamClientSettings {
    UpstreamClientSettings {
        max_idle_per_host: 4,
        ..UpstreamClientSettings::default()
    }
}

fn pool_with(settings: &UpstreamClientSettings) -> UpstreamPool {
    HttpUpstreamClient::new().pool(settings)
}

fn request(method: &str, authority: &Authority) -> Request<ProxyBody> {
    Request::builder()
        .method(method)
        .uri("/hello")
        .header("host", authority.as_str())
        .body(empty_body())
        .unwrap()
}

async fn get(
    pool: &UpstreamPool,
    scheme: &Scheme,
    authority: &Authority,
) -> Response<UpstreamBody> {
    pool.send_to(scheme, authority, request("GET", authority))
        .await
        .unwrap()
}

async fn get_text(pool: &UpstreamPool, authority: &Authority) -> String {
    let response = get(pool, &Scheme::HTTP, authority).await;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn requests_go_out_in_origin_form_with_a_host() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.unwrap();
            head.extend_from_slice(&chunk[..n]);
        }
        stream.write_all(HELLO.as_bytes()).await.unwrap();
        String::from_utf8(head).unwrap()
    });
    let mut without_host = request("GET", &authority);
    without_host.headers_mut().remove("host");
    *without_host.uri_mut() = format!("http://{authority}/spec?x=1").parse().unwrap();
    HttpUpstreamClient::new().send(without_host).await.unwrap();
    let head = server.await.unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /spec?x=1 http/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("host: {authority}\r\n")), "{head}");
}

#[tokio::test]
async fn a_relative_uri_without_an_authority_is_refused() {
    let error = HttpUpstreamClient::new()
        .send(Request::get("/x").body(empty_body()).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, UpstreamError::Connect(_)), "{error:?}");
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    let upstream = raw_upstream(HELLO, After::KeepOpen).await;
    let pool = pool_with(&settings());
    for _ in 0..5 {
        assert_eq!(get_text(&pool, &upstream.authority).await, "hello");
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn each_thread_keeps_connections_of_its_own() {
    let upstream = raw_upstream(HELLO, After::KeepOpen).await;
    let pool = pool_with(&settings());
    assert_eq!(get_text(&pool, &upstream.authority).await, "hello");
    // Another thread with a runtime of its own, as `workers` runs them: it opens its own
    // connection (driven on its thread) and reuses it, and never takes this thread's. This
    // runtime, which serves the upstream, awaits it rather than blocking on a join.
    let (other_pool, authority) = (pool.clone(), upstream.authority.clone());
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            for _ in 0..3 {
                assert_eq!(get_text(&other_pool, &authority).await, "hello");
            }
        });
        let _ = done.send(());
    });
    finished.await.expect("the other thread's requests succeed");
    assert_eq!(get_text(&pool, &upstream.authority).await, "hello");
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn equal_settings_share_one_pool() {
    let upstream = raw_upstream(HELLO, After::KeepOpen).await;
    let client = HttpUpstreamClient::new();
    let custom = UpstreamClientSettings {
        idle_timeout: Duration::from_secs(30),
        ..UpstreamClientSettings::default()
    };
    for _ in 0..3 {
        assert_eq!(
            get_text(&client.pool(&custom), &upstream.authority).await,
            "hello"
        );
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
    // The default settings are the default pool: the client's own `send_to` shares it.
    let default_pool = client.pool(&UpstreamClientSettings::default());
    assert_eq!(get_text(&default_pool, &upstream.authority).await, "hello");
    let response = client
        .send_to(
            &Scheme::HTTP,
            &upstream.authority,
            request("GET", &upstream.authority),
        )
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn chunked_bodies_stream_and_the_connection_is_reused() {
    const CHUNKED: &str = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                           3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n";
    let upstream = raw_upstream(CHUNKED, After::KeepOpen).await;
    let pool = pool_with(&settings());
    assert_eq!(get_text(&pool, &upstream.authority).await, "abcdefg");
    assert_eq!(get_text(&pool, &upstream.authority).await, "abcdefg");
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
}

/// The upstream closes each connection right after its response, without saying so; the next
/// request finds the pooled connection closed (its close has arrived before the request is
/// sent) and goes out on a new one instead of failing — several times over, since which of
/// the two ways it is caught (the connection's task saw the close first, or the request was
/// handed over and given back unsent) depends on scheduling.
#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_does_not_fail_the_next_request() {
    let mut upstream = raw_upstream(HELLO, After::Close).await;
    let pool = pool_with(&settings());
    for round in 1..=20 {
        assert_eq!(get_text(&pool, &upstream.authority).await, "hello");
        // The upstream has closed its side before the next request is made.
        upstream.closed.recv().await.unwrap();
        assert_eq!(upstream.accepted.load(Ordering::SeqCst), round);
    }
}

#[tokio::test]
async fn idle_connections_past_the_timeout_are_closed_without_further_traffic() {
    let upstream = raw_upstream(HELLO, After::KeepOpen).await;
    let pool = pool_with(&UpstreamClientSettings {
        idle_timeout: Duration::from_millis(200),
        ..settings()
    });
    assert_eq!(get_text(&pool, &upstream.authority).await, "hello");
    assert_eq!(upstream.open.load(Ordering::SeqCst), 1);
    eventually("the idle connection is closed", || {
        upstream.open.load(Ordering::SeqCst) == 0
    })
    .await;
}

#[tokio::test]
async fn idle_connections_are_capped_per_host() {
    let upstream =
        raw_upstream_answering_after(HELLO, After::KeepOpen, Duration::from_millis(200)).await;
    let pool = pool_with(&UpstreamClientSettings {
        max_idle_per_host: 2,
        ..settings()
    });
    // Five requests at once need five connections; only two stay open afterwards.
    let sends = (0..5).map(|_| {
        let pool = pool.clone();
        let authority = upstream.authority.clone();
        tokio::spawn(async move { get_text(&pool, &authority).await })
    });
    for send in sends.collect::<Vec<_>>() {
        assert_eq!(send.await.unwrap(), "hello");
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 5);
    eventually("idle connections beyond the cap are closed", || {
        upstream.open.load(Ordering::SeqCst) == 2
    })
    .await;
}

#[tokio::test]
async fn connection_close_responses_are_not_pooled() {
    const CLOSING: &str = "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok";
    let upstream = raw_upstream(CLOSING, After::KeepOpen).await;
    let pool = pool_with(&settings());
    assert_eq!(get_text(&pool, &upstream.authority).await, "ok");
    assert_eq!(get_text(&pool, &upstream.authority).await, "ok");
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    drop(listener);
    let error = pool_with(&settings())
        .send_to(&Scheme::HTTP, &authority, request("GET", &authority))
        .await
        .unwrap_err();
    assert!(matches!(error, UpstreamError::Connect(_)), "{error:?}");
}

/// The connect timeout covers the TLS handshake, not only TCP: an upstream that accepts and
/// never answers the ClientHello is a connect error once it passes.
#[tokio::test]
async fn a_tls_handshake_that_never_finishes_is_a_connect_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let pool = pool_with(&UpstreamClientSettings {
        connect_timeout: Duration::from_millis(300),
        ..settings()
    });
    let started = std::time::Instant::now();
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        pool.send_to(&Scheme::HTTPS, &authority, request("GET", &authority)),
    )
    .await
    .expect("the connect timeout ends the attempt")
    .unwrap_err();
    assert!(matches!(error, UpstreamError::Connect(_)), "{error:?}");
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut timed_out = false;
    while let Some(current) = cause {
        timed_out |= current.is::<ConnectTimedOut>();
        cause = current.source();
    }
    assert!(timed_out, "says it timed out: {error:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_reset_before_the_response_head_is_a_reset_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut chunk = [0u8; 1024];
            let _ = stream.read(&mut chunk).await;
            // Closes without answering.
        }
    });
    let error = pool_with(&settings())
        .send_to(&Scheme::HTTP, &authority, request("GET", &authority))
        .await
        .unwrap_err();
    assert!(matches!(error, UpstreamError::Reset(_)), "{error:?}");
}

/// A body of the given frames, in order: data and a trailers frame as a peer sends them.
struct Frames(VecDeque<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

fn trailers(name: &'static str, value: &'static str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(name, value.parse().unwrap());
    map
}

/// What the HTTP/2 test upstream saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    version: Version,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

/// An HTTP/2-only hyper server (prior knowledge, no TLS): records each request's version,
/// body and trailers, and answers `ok` with a `grpc-status: 0` trailer.
struct H2Upstream {
    authority: Authority,
    accepted: Arc<AtomicUsize>,
    /// Connections open now.
    open: Arc<AtomicUsize>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

async fn h2_upstream() -> H2Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (counter, open_count) = (accepted.clone(), open.clone());
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            open_count.fetch_add(1, Ordering::SeqCst);
            let seen_tx = seen_tx.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let seen_tx = seen_tx.clone();
                async move {
                    let version = request.version();
                    let collected = request.into_body().collect().await.unwrap();
                    let trailers = collected.trailers().cloned();
                    let _ = seen_tx.send(Seen {
                        version,
                        body: collected.to_bytes(),
                        trailers,
                    });
                    let body = Frames(VecDeque::from([
                        Frame::data(Bytes::from_static(b"ok")),
                        Frame::trailers(trailers_of_response()),
                    ]));
                    Ok::<_, Infallible>(Response::new(body))
                }
            });
            let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service);
            let open_count = open_count.clone();
            tokio::spawn(async move {
                let _ = connection.await;
                open_count.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    H2Upstream {
        authority,
        accepted,
        open,
        seen,
    }
}

fn trailers_of_response() -> HeaderMap {
    trailers("grpc-status", "0")
}

fn h2c() -> UpstreamClientSettings {
    UpstreamClientSettings {
        protocol: UpstreamProtocol::H2c,
        ..settings()
    }
}

#[tokio::test]
async fn an_h2c_upstream_is_spoken_to_in_http2_and_its_streams_share_one_connection() {
    let mut upstream = h2_upstream().await;
    let pool = pool_with(&h2c());
    let mut responses = Vec::new();
    for _ in 0..3 {
        responses.push(get(&pool, &Scheme::HTTP, &upstream.authority).await);
    }
    for response in responses {
        assert_eq!(response.version(), Version::HTTP_2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
    }
    for _ in 0..3 {
        assert_eq!(upstream.seen.recv().await.unwrap().version, Version::HTTP_2);
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1, "multiplexed");
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let upstream = h2_upstream().await;
    let pool = pool_with(&UpstreamClientSettings {
        idle_timeout: Duration::from_millis(200),
        ..h2c()
    });
    let response = get(&pool, &Scheme::HTTP, &upstream.authority).await;
    response.into_body().collect().await.unwrap();
    assert_eq!(upstream.open.load(Ordering::SeqCst), 1);
    eventually("the idle HTTP/2 connection is closed", || {
        upstream.open.load(Ordering::SeqCst) == 0
    })
    .await;
}

#[tokio::test]
async fn an_http2_only_upstream_is_not_reached_without_h2c() {
    let upstream = h2_upstream().await;
    let error = pool_with(&settings())
        .send_to(
            &Scheme::HTTP,
            &upstream.authority,
            request("GET", &upstream.authority),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, UpstreamError::Reset(_)), "{error:?}");
}

#[tokio::test]
async fn trailers_pass_through_http2_both_ways() {
    let mut upstream = h2_upstream().await;
    let pool = pool_with(&h2c());
    let mut post = request("POST", &upstream.authority);
    *post.body_mut() = Frames(VecDeque::from([
        Frame::data(Bytes::from_static(b"abc")),
        Frame::trailers(trailers("x-checksum", "900150983cd24fb0")),
    ]))
    .boxed();
    let response = pool
        .send_to(&Scheme::HTTP, &upstream.authority, post)
        .await
        .unwrap();
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers(), Some(&trailers_of_response()));
    assert_eq!(&collected.to_bytes()[..], b"ok");
    let seen = upstream.seen.recv().await.unwrap();
    assert_eq!(&seen.body[..], b"abc");
    assert_eq!(
        seen.trailers,
        Some(trailers("x-checksum", "900150983cd24fb0"))
    );
}

#[tokio::test]
async fn trailers_of_a_chunked_http1_response_pass_through() {
    const WITH_TRAILERS: &str = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\
                                 trailer: grpc-status\r\n\r\n\
                                 2\r\nok\r\n0\r\ngrpc-status: 0\r\n\r\n";
    let upstream = raw_upstream(WITH_TRAILERS, After::KeepOpen).await;
    let pool = pool_with(&settings());
    for _ in 0..2 {
        let response = get(&pool, &Scheme::HTTP, &upstream.authority).await;
        let collected = response.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&trailers_of_response()));
        assert_eq!(&collected.to_bytes()[..], b"ok");
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
}

/// A request body the client sends in pieces streams to the upstream as it comes.
#[tokio::test]
async fn a_request_body_sent_in_pieces_reaches_the_upstream() {
    struct Pieces(mpsc::Receiver<Bytes>);
    impl Body for Pieces {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0
                .poll_recv(cx)
                .map(|piece| piece.map(|b| Ok(Frame::data(b))))
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    let (first_seen_tx, first_seen) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut chunk = [0u8; 1024];
        let mut first_seen_tx = Some(first_seen_tx);
        while !seen.ends_with(b"0\r\n\r\n") {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the whole body arrives");
            seen.extend_from_slice(&chunk[..n]);
            if seen.ends_with(b"3\r\nabc\r\n") {
                if let Some(tx) = first_seen_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
        stream.write_all(HELLO.as_bytes()).await.unwrap();
        String::from_utf8(seen).unwrap()
    });
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        // The second piece only once the upstream has the first: the body streams.
        first_seen.await.unwrap();
        tx.send(Bytes::from_static(b"defg")).await.unwrap();
    });
    let mut post = request("POST", &authority);
    *post.body_mut() = Pieces(rx).boxed();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        pool_with(&settings()).send_to(&Scheme::HTTP, &authority, post),
    )
    .await
    .expect("the body streams")
    .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello");
    let seen = server.await.unwrap();
    assert!(
        seen.ends_with("\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"),
        "{seen}"
    );
}

#[tokio::test]
async fn a_failing_request_body_is_a_request_body_error() {
    #[derive(Debug, thiserror::Error)]
    #[error("client went away")]
    struct Gone;
    /// One piece of data, then the error.
    struct Failing(bool);
    impl Body for Failing {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if std::mem::replace(&mut self.0, true) {
                Poll::Ready(Some(Err(Box::new(Gone))))
            } else {
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"abc")))))
            }
        }
    }
    let upstream = raw_upstream(HELLO, After::KeepOpen).await;
    let mut post = request("POST", &upstream.authority);
    *post.body_mut() = Failing(false).boxed();
    let error = pool_with(&settings())
        .send_to(&Scheme::HTTP, &upstream.authority, post)
        .await
        .unwrap_err();
    assert!(matches!(error, UpstreamError::RequestBody(_)), "{error:?}");
    assert!(
        error.body_error().is_some_and(|e| e.is::<Gone>()),
        "{error:?}"
    );
}

/// A certificate authority made for one test, and a certificate it signed for `localhost`.
struct TestPki {
    ca: rustls::pki_types::CertificateDer<'static>,
    leaf: rustls::pki_types::CertificateDer<'static>,
    leaf_key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn test_pki() -> TestPki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Buckler test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    TestPki {
        ca: ca.der().clone(),
        leaf: leaf.der().clone(),
        leaf_key: rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client configuration trusting only `ca`.
fn trusting(ca: &rustls::pki_types::CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// What the TLS test upstream saw of one request.
#[derive(Debug)]
struct SeenTls {
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
    version: Version,
}

/// An HTTPS upstream (ALPN `h2` and `http/1.1`, HTTP/1.1 or HTTP/2 as negotiated) presenting
/// `pki`'s `localhost` certificate; records each request's SNI, ALPN and HTTP version.
async fn tls_upstream(pki: &TestPki) -> (Authority, mpsc::UnboundedReceiver<SeenTls>) {
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.leaf.clone()], pki.leaf_key.clone_key())
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, seen_tx) = (acceptor.clone(), seen_tx.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let (_, session) = tls.get_ref();
                let sni = session.server_name().map(str::to_owned);
                let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let _ = seen_tx.send(SeenTls {
                        sni: sni.clone(),
                        alpn: alpn.clone(),
                        version: request.version(),
                    });
                    async { Ok::<_, Infallible>(Response::new(full_body("secure"))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (format!("localhost:{port}").parse().unwrap(), seen)
}

async fn get_secure(pool: &UpstreamPool, authority: &Authority) -> Result<String, UpstreamError> {
    let response = pool
        .send_to(&Scheme::HTTPS, authority, request("GET", authority))
        .await?;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok(String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn an_https_upstream_is_verified_and_spoken_to_in_http2_by_alpn() {
    let pki = test_pki();
    let (authority, mut seen) = tls_upstream(&pki).await;
    let pool = pool_with(&UpstreamClientSettings {
        tls: Some(trusting(&pki.ca)),
        ..settings()
    });
    assert_eq!(get_secure(&pool, &authority).await.unwrap(), "secure");
    let seen = seen.recv().await.unwrap();
    assert_eq!(seen.sni.as_deref(), Some("localhost"), "SNI is the host");
    assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(seen.version, Version::HTTP_2);
}

#[tokio::test]
async fn http1_is_forced_on_https_by_the_protocol_setting() {
    let pki = test_pki();
    let (authority, mut seen) = tls_upstream(&pki).await;
    let pool = pool_with(&UpstreamClientSettings {
        tls: Some(trusting(&pki.ca)),
        protocol: UpstreamProtocol::Http1,
        ..settings()
    });
    assert_eq!(get_secure(&pool, &authority).await.unwrap(), "secure");
    let seen = seen.recv().await.unwrap();
    assert_eq!(seen.alpn, None, "no ALPN offered: HTTP/1.1");
    assert_eq!(seen.version, Version::HTTP_11);
}

#[tokio::test]
async fn an_https_upstream_signed_by_an_unknown_ca_is_never_served() {
    let pki = test_pki();
    let (authority, mut seen) = tls_upstream(&pki).await;
    // The platform's roots, which do not hold the test CA; then another test CA.
    let other = test_pki();
    for tls in [None, Some(trusting(&other.ca))] {
        let pool = pool_with(&UpstreamClientSettings { tls, ..settings() });
        let error = get_secure(&pool, &authority).await.unwrap_err();
        assert!(matches!(error, UpstreamError::Connect(_)), "{error:?}");
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        let mut text = String::new();
        while let Some(current) = cause {
            text.push_str(&format!("{current}; "));
            cause = current.source();
        }
        assert!(text.contains("certificate"), "says why: {text}");
    }
    assert!(seen.try_recv().is_err(), "no request reached the upstream");
}

/// A response body without end, in 16 KiB frames, counting what it produced.
struct Endless(Arc<AtomicUsize>);

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        static CHUNK: [u8; 16 * 1024] = [b'x'; 16 * 1024];
        self.0.fetch_add(CHUNK.len(), Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK)))))
    }
}

/// What an HTTP/2 upstream can push into the gateway for a response nobody reads is the
/// stream window (plus the frame in hand): flow control, not a buffer, stops it. With hyper's
/// default 2 MiB window the upstream produced about 2 MiB here.
#[tokio::test]
async fn an_unread_http2_response_holds_at_most_the_stream_window() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = Authority::try_from(listener.local_addr().unwrap().to_string()).unwrap();
    let produced = Arc::new(AtomicUsize::new(0));
    let counter = produced.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(move |_request| {
            let counter = counter.clone();
            async move { Ok::<_, Infallible>(Response::new(Endless(counter))) }
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
    let pool = pool_with(&h2c());
    let response = get(&pool, &Scheme::HTTP, &authority).await;
    assert_eq!(response.version(), Version::HTTP_2);
    // Wait until the upstream has stopped producing (stable for half a second).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (mut last, mut quiet) = (produced.load(Ordering::SeqCst), 0);
    while quiet < 10 {
        assert!(tokio::time::Instant::now() < deadline, "never stalled");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = produced.load(Ordering::SeqCst);
        (quiet, last) = if now == last {
            (quiet + 1, last)
        } else {
            (0, now)
        };
    }
    let bound = HTTP2_STREAM_WINDOW as usize + 64 * 1024;
    assert!(
        last <= bound,
        "{last} bytes produced for an unread response (bound {bound})"
    );
    drop(response);
}
