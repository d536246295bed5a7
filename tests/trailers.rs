//! Trailers an upstream sends after its body reach the client through the gateway.

use std::net::SocketAddr;

use buckler_tests::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A raw HTTP/1.1 upstream: `/spec` is its Swagger document, anything else a chunked `ok`
/// followed by the trailer `grpc-status: 0`. Raw, because a hyper server sends trailers only
/// to a request that says `TE: trailers`, and the gateway drops `TE` as hop-by-hop.
async fn upstream_with_trailers() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let doc = Swagger2Doc::new("trailers", "1")
        .op("get", "/grpc-like")
        .to_json();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let doc = doc.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                    seen.extend_from_slice(&chunk[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..end]).into_owned();
                        seen.drain(..end + 4);
                        let response = if head.starts_with("GET /spec ") {
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                 content-length: {}\r\n\r\n{doc}",
                                doc.len()
                            )
                        } else {
                            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\
                             trailer: grpc-status\r\n\r\n\
                             2\r\nok\r\n0\r\ngrpc-status: 0\r\n\r\n"
                                .to_owned()
                        };
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn upstream_trailers_reach_an_http2_client() {
    let upstream = upstream_with_trailers().await;
    let gw =
        TestGateway::start_ready(&config_text(&[(&format!("http://{upstream}"), 1)], "")).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    for _ in 0..3 {
        let response = client
            .request(
                Request::get(gw.url("/grpc-like"))
                    .body(Full::default())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("trailers arrived");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(&collected.to_bytes()[..], b"ok");
    }
}
