//! Bodies stream through the gateway both ways without being buffered: 50 MB up and down
//! while the whole test process's peak RSS stays far below the body size.

use std::convert::Infallible;

use buckler_tests::*;
use bytes::Bytes;
use futures_util::stream;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const FIFTY_MB: u64 = 50 * 1024 * 1024;

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// An upstream that streams bodies of any size, counts uploads, and answers slow or fast.
async fn bulk_upstream() -> FakeUpstream {
    FakeUpstream::builder("bulk")
        .doc(
            Swagger2Doc::new("bulk", "1")
                .op("post", "/upload")
                .op("get", "/stream/{bytes}")
                .op("get", "/slow/{ms}/echo")
                .op("get", "/echo")
                .to_json(),
        )
        .start()
        .await
}

/// Reads a body frame by frame, keeping only the count.
async fn count_bytes(mut body: hyper::body::Incoming) -> u64 {
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.unwrap().data_ref() {
            received += data.len() as u64;
        }
    }
    received
}

/// `total` bytes (a multiple of 64 KiB) in 64 KiB frames, generated as they are sent.
fn upload_body(
    total: u64,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>> {
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    let chunks = (total / chunk.len() as u64) as usize;
    StreamBody::new(stream::iter(
        (0..chunks).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))),
    ))
}

#[tokio::test]
async fn fifty_megabytes_stream_both_ways_with_flat_memory() {
    let upstream = bulk_upstream().await;
    let gw = TestGateway::start_ready(&config_text(&[(&upstream.url(), 1)], "")).await;
    let before = peak_rss_kib();

    // Download: count bytes frame by frame.
    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Empty<Bytes>>();
    let response = client
        .request(
            Request::get(gw.url(&format!("/stream/{FIFTY_MB}")))
                .body(http_body_util::Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(count_bytes(response.into_body()).await, FIFTY_MB);

    // Upload: a lazily generated chunked body.
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(
            Request::post(gw.url("/upload"))
                .body(upload_body(FIFTY_MB))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echo: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(echo["body_len"], FIFTY_MB);

    let growth_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(
        growth_mib < 40,
        "peak RSS grew by {growth_mib} MiB while streaming 2 x 50 MB: something buffers"
    );
}

/// A client's HTTP/2 streams share one connection and must still run side by side: a slow
/// request does not hold up fast ones, and 8 MB each way, far past HTTP/2's 64 KiB initial
/// windows, flows on while they run (flow-control updates reach the right streams).
#[tokio::test]
async fn http2_streams_on_one_connection_run_side_by_side() {
    const EIGHT_MB: u64 = 8 * 1024 * 1024;
    let upstream = bulk_upstream().await;
    let gw = TestGateway::start_ready(&config_text(&[(&upstream.url(), 1)], "")).await;
    // One client, one connection: hyper's HTTP/2 client multiplexes every request on it.
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::combinators::BoxBody<Bytes, Infallible>>();
    let empty = || http_body_util::Empty::new().map_err(|e| match e {}).boxed();

    let slow = tokio::spawn(
        client.request(
            Request::get(gw.url("/slow/1500/echo"))
                .body(empty())
                .unwrap(),
        ),
    );
    let download = {
        let request = Request::get(gw.url(&format!("/stream/{EIGHT_MB}")))
            .body(empty())
            .unwrap();
        let response = client.request(request);
        tokio::spawn(async move {
            let response = response.await.unwrap();
            assert_eq!(response.version(), http::Version::HTTP_2);
            count_bytes(response.into_body()).await
        })
    };
    let upload = {
        let request = Request::post(gw.url("/upload"))
            .body(upload_body(EIGHT_MB).boxed())
            .unwrap();
        let response = client.request(request);
        tokio::spawn(async move {
            let body = response.await.unwrap().into_body().collect().await.unwrap();
            serde_json::from_slice::<serde_json::Value>(&body.to_bytes()).unwrap()
        })
    };
    let fast: Vec<_> = (0..50)
        .map(|i| {
            let request = Request::get(gw.url(&format!("/echo?i={i}")))
                .body(empty())
                .unwrap();
            let response = client.request(request);
            tokio::spawn(async move {
                let response = response.await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                response.into_body().collect().await.unwrap();
            })
        })
        .collect();
    let within = std::time::Duration::from_secs(10);
    for answer in fast {
        tokio::time::timeout(within, answer).await.unwrap().unwrap();
    }
    assert!(
        !slow.is_finished(),
        "the fast requests finished while the slow one waited"
    );
    let download = tokio::time::timeout(within, download)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(download, EIGHT_MB);
    let upload = tokio::time::timeout(within, upload).await.unwrap().unwrap();
    assert_eq!(upload["body_len"], EIGHT_MB);
    let slow = tokio::time::timeout(within, slow)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(slow.status(), StatusCode::OK);
}
