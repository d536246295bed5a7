//! The access log's `bytes_in` is the request body that really arrived, counted as it passes:
//! a chunked HTTP/1.1 upload and an HTTP/2 upload without `Content-Length` report their true
//! size (issue 32), not a declared length they do not have.

use std::convert::Infallible;
use std::time::Duration;

use buckler_tests::*;
use bytes::Bytes;
use futures_util::stream;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(log: &std::path::Path) -> (FakeUpstream, TestGateway) {
    let upstream = FakeUpstream::builder("one")
        .doc(Swagger2Doc::new("bytes", "1").op("post", "/echo").to_json())
        .start()
        .await;
    let extra = format!(
        r#"listeners: [{{ id: "Access", builder: "access-log" }}],
        "listener-config": {{ Access: {{ path: {log:?} }} }},"#
    );
    let gw = TestGateway::start_ready(&config_text(&[(&upstream.url(), 1)], &extra)).await;
    (upstream, gw)
}

fn read_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// Sends `request` on a fresh connection and reads until the connection closes or a complete
/// response with a `Content-Length` body has arrived; returns the status line.
async fn raw_request(gw: &TestGateway, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    stream.write_all(request).await.expect("send");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|length| seen.len() >= end + 4 + length) {
                return head.lines().next().unwrap_or_default().to_owned();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("response within 10 s")
            .expect("read");
        assert!(
            n > 0,
            "closed before a whole response: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn a_chunked_upload_logs_the_bytes_that_arrived() {
    let dir = temp_dir("access-bytes-chunked");
    let log = dir.join("access.log");
    let (_upstream, gw) = start(&log).await;
    // 3 chunks: 5 + 100,000 + 1 bytes, no Content-Length anywhere.
    let mut request =
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
            .to_vec();
    request.extend_from_slice(format!("{:x}\r\n", 100_000).as_bytes());
    request.extend(std::iter::repeat_n(b'b', 100_000));
    request.extend_from_slice(b"\r\n1\r\n!\r\n0\r\n\r\n");
    let status = raw_request(&gw, &request).await;
    assert!(status.starts_with("http/1.1 200"), "{status}");
    assert_eventually!(read_lines(&log).len() == 1, "{:?}", read_lines(&log));
    let line = &read_lines(&log)[0];
    assert_eq!(line["method"], "POST");
    assert_eq!(line["bytes_in"], 100_006, "{line}");
}

#[tokio::test]
async fn an_http2_upload_without_a_length_logs_the_bytes_that_arrived() {
    let dir = temp_dir("access-bytes-h2");
    let log = dir.join("access.log");
    let (_upstream, gw) = start(&log).await;
    let stream = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    tokio::spawn(connection);
    // 4 frames of 50,000 bytes, streamed: the size is unknown up front, so no content-length.
    let chunk = Bytes::from(vec![b'u'; 50_000]);
    let frames = stream::iter((0..4).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))));
    let request = Request::post(gw.url("/echo"))
        .body(StreamBody::new(frames))
        .unwrap();
    assert!(request.headers().get("content-length").is_none());
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.expect("body");
    assert_eventually!(read_lines(&log).len() == 1, "{:?}", read_lines(&log));
    let line = &read_lines(&log)[0];
    assert_eq!(line["bytes_in"], 200_000, "{line}");
}
