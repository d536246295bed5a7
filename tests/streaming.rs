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

#[tokio::test]
async fn fifty_megabytes_stream_both_ways_with_flat_memory() {
    let upstream = FakeUpstream::builder("bulk")
        .doc(
            Swagger2Doc::new("bulk", "1")
                .op("post", "/upload")
                .op("get", "/stream/{bytes}")
                .to_json(),
        )
        .start()
        .await;
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
    let mut body = response.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.unwrap().data_ref() {
            received += data.len() as u64;
        }
    }
    assert_eq!(received, FIFTY_MB);

    // Upload: a lazily generated chunked body.
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    let chunks = (FIFTY_MB / chunk.len() as u64) as usize;
    let frames =
        stream::iter((0..chunks).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))));
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(
            Request::post(gw.url("/upload"))
                .body(StreamBody::new(frames))
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
