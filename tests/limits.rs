//! Client limits (SPEC §9 **Limits**): `max-connections` holds new connections in the accept
//! queue, `client-header-timeout` closes silent connections and slow heads, `client-idle-timeout`
//! closes idle HTTP/1.1 connections and sends GOAWAY on idle HTTP/2 ones, the HTTP/2 stream
//! limit is advertised, and h2's rapid-reset and CONTINUATION protections answer with GOAWAY.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use buckler_tests::h2frames::{self, Frame};
use buckler_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A gateway with no upstream (the local endpoints answer) and `extra` top-level keys.
async fn gateway(extra: &str) -> TestGateway {
    TestGateway::start(&format!(
        r#"{{
  listen: "127.0.0.1:0",
  "shutdown-grace": "1s",
  {extra}
  domains: [{{ "domain-name": "*", upstreams: [] }}],
}}"#
    ))
    .await
}

const REQUEST: &[u8] = b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n";

/// Reads one response head and its Content-Length body; `None` on close or after `within`.
async fn response(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    return Some(head);
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Waits until the peer closes `stream` (EOF or reset), discarding what it sends; the time
/// it took, or `None` if it stayed open for `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

#[tokio::test]
async fn over_max_connections_a_new_connection_waits_until_one_closes() {
    let gw = gateway(r#""max-connections": 2,"#).await;
    let mut first = connect(gw.addr).await;
    let mut second = connect(gw.addr).await;
    for stream in [&mut first, &mut second] {
        stream.write_all(REQUEST).await.unwrap();
        assert!(response(stream, Duration::from_secs(10)).await.is_some());
    }

    // The third connects (the kernel queues it) but is not served while two are open.
    let mut third = connect(gw.addr).await;
    third.write_all(REQUEST).await.unwrap();
    assert_eq!(
        response(&mut third, Duration::from_millis(700)).await,
        None,
        "served over the cap"
    );
    // Nor was it accepted and closed: one closes, and the third is served.
    drop(first);
    let head = response(&mut third, Duration::from_secs(10))
        .await
        .expect("served once a place freed");
    assert!(head.starts_with("http/1.1 "), "{head}");
    // The held connection still works.
    second.write_all(REQUEST).await.unwrap();
    assert!(response(&mut second, Duration::from_secs(10))
        .await
        .is_some());
}

#[tokio::test]
async fn a_burst_of_connections_waits_in_a_deep_accept_queue() {
    // One place: every connection of the burst waits in the accept queue. Tokio's own bind
    // asks for 1,024; beyond the queue the kernel drops SYNs and clients retry a second later.
    let gw = gateway(r#""max-connections": 1,"#).await;
    let mut held = connect(gw.addr).await;
    held.write_all(REQUEST).await.unwrap();
    assert!(response(&mut held, Duration::from_secs(10)).await.is_some());
    let started = Instant::now();
    let mut burst = Vec::new();
    for _ in 0..1_500 {
        let stream = tokio::time::timeout(Duration::from_millis(900), TcpStream::connect(gw.addr))
            .await
            .unwrap_or_else(|_| panic!("connect {} stalled", burst.len()))
            .expect("connect");
        burst.push(stream);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let gw = gateway(r#""client-header-timeout": "300ms", "client-idle-timeout": "30s","#).await;
    let mut silent = connect(gw.addr).await;
    let took = closed_within(&mut silent, Duration::from_secs(5))
        .await
        .expect("a connection that never sends a byte is closed");
    assert!(took >= Duration::from_millis(250), "{took:?}");

    // h2c: the preface, then no request.
    let mut h2 = connect(gw.addr).await;
    h2.write_all(&h2frames::client_start()).await.unwrap();
    h2frames::goaway(&mut h2, Duration::from_secs(5))
        .await
        .expect("an HTTP/2 connection without a request gets GOAWAY");
    assert!(closed_within(&mut h2, Duration::from_secs(5))
        .await
        .is_some());
}

#[tokio::test]
async fn a_slow_head_is_closed_after_the_header_timeout_even_after_a_keep_alive_pause() {
    let gw = gateway(r#""client-header-timeout": "500ms", "client-idle-timeout": "30s","#).await;
    for pause_first in [false, true] {
        let mut stream = connect(gw.addr).await;
        if pause_first {
            stream.write_all(REQUEST).await.unwrap();
            assert!(response(&mut stream, Duration::from_secs(10))
                .await
                .is_some());
            // Idle for longer than the header timeout: idle is not a slow head.
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        let started = Instant::now();
        stream
            .write_all(b"GET /healthcheck HTTP/1.1\r\n")
            .await
            .unwrap();
        // One header byte every 100 ms: never a complete head.
        let mut closed = false;
        for _ in 0..50 {
            if stream.write_all(b"X").await.is_err() {
                closed = true;
                break;
            }
            let mut buf = [0u8; 64];
            match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(_)) | Err(_) => {}
            }
        }
        assert!(
            closed,
            "a slowloris head kept its connection (pause first: {pause_first})"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(3),
            "closed after {took:?} (pause first: {pause_first})"
        );
    }
}

#[tokio::test]
async fn idle_connections_are_closed_http1_outright_http2_with_goaway() {
    let gw = gateway(r#""client-header-timeout": "5s", "client-idle-timeout": "400ms","#).await;
    let mut h1 = connect(gw.addr).await;
    h1.write_all(REQUEST).await.unwrap();
    assert!(response(&mut h1, Duration::from_secs(10)).await.is_some());
    let took = closed_within(&mut h1, Duration::from_secs(5))
        .await
        .expect("an idle HTTP/1.1 connection is closed");
    assert!(took >= Duration::from_millis(300), "{took:?}");

    let mut h2 = connect(gw.addr).await;
    h2.write_all(&h2frames::client_start()).await.unwrap();
    h2.write_all(&h2frames::get(1)).await.unwrap();
    h2frames::read_until(&mut h2, Duration::from_secs(10), |f: &Frame| {
        f.stream == 1 && f.flags & h2frames::END_STREAM != 0
    })
    .await
    .expect("the response");
    let started = Instant::now();
    let goaway = h2frames::goaway(&mut h2, Duration::from_secs(5))
        .await
        .expect("an idle HTTP/2 connection gets GOAWAY");
    assert_eq!(goaway.goaway_code(), Some(0), "NO_ERROR");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn http2_max_concurrent_streams_is_advertised() {
    let gw = gateway(r#""http2-max-concurrent-streams": 7,"#).await;
    let mut h2 = connect(gw.addr).await;
    h2.write_all(&h2frames::client_start()).await.unwrap();
    let settings = h2frames::read_until(&mut h2, Duration::from_secs(5), |f: &Frame| {
        f.kind == h2frames::SETTINGS && f.flags & 1 == 0
    })
    .await
    .expect("server SETTINGS");
    assert_eq!(settings.setting(h2frames::MAX_CONCURRENT_STREAMS), Some(7));
}

#[tokio::test]
async fn a_rapid_reset_flood_ends_in_goaway() {
    let gw = gateway("").await;
    let mut h2 = connect(gw.addr).await;
    let mut flood = h2frames::client_start();
    for i in 0..200u32 {
        let stream = 2 * i + 1;
        flood.extend(h2frames::get(stream));
        flood.extend(h2frames::cancel(stream));
    }
    // The server may close while the flood is still being written.
    let _ = h2.write_all(&flood).await;
    let goaway = h2frames::goaway(&mut h2, Duration::from_secs(5))
        .await
        .expect("GOAWAY after a rapid-reset flood");
    assert_eq!(goaway.goaway_code(), Some(0xb), "ENHANCE_YOUR_CALM");
}

#[tokio::test]
async fn a_continuation_flood_ends_in_goaway() {
    let gw = gateway("").await;
    let mut h2 = connect(gw.addr).await;
    let mut flood = h2frames::client_start();
    // A head that never ends: HEADERS without END_HEADERS, then empty CONTINUATION frames.
    flood.extend(h2frames::frame(
        h2frames::HEADERS,
        h2frames::END_STREAM,
        1,
        &h2frames::get_block(),
    ));
    for _ in 0..10_000 {
        flood.extend(h2frames::frame(h2frames::CONTINUATION, 0, 1, &[]));
    }
    let _ = h2.write_all(&flood).await;
    let goaway = h2frames::goaway(&mut h2, Duration::from_secs(5))
        .await
        .expect("GOAWAY after a CONTINUATION flood");
    assert_ne!(goaway.goaway_code(), Some(0), "an error code");
}

#[tokio::test]
async fn a_reload_applies_new_limits_to_new_connections() {
    let dir = temp_dir("limits-reload");
    let path = dir.join("gateway.json5");
    let write = |idle: &str| {
        std::fs::write(
            &path,
            format!(
                r#"{{ listen: "127.0.0.1:0", "shutdown-grace": "1s", "client-idle-timeout": "{idle}",
                     domains: [{{ "domain-name": "*", upstreams: [] }}] }}"#
            ),
        )
        .unwrap();
    };
    write("30s");
    let gw = TestGateway::start_file(&path).await;
    let mut before = connect(gw.addr).await;
    before.write_all(REQUEST).await.unwrap();
    assert!(response(&mut before, Duration::from_secs(10))
        .await
        .is_some());

    write("300ms");
    let outcome = gw.gateway.control().reload().await.expect("reload");
    assert!(outcome.restart_required.is_empty(), "{outcome}");
    let mut after = connect(gw.addr).await;
    after.write_all(REQUEST).await.unwrap();
    assert!(response(&mut after, Duration::from_secs(10))
        .await
        .is_some());
    assert!(
        closed_within(&mut after, Duration::from_secs(5))
            .await
            .is_some(),
        "a connection accepted after the reload has the new idle timeout"
    );
    // The connection from before keeps the settings it was accepted with.
    assert!(closed_within(&mut before, Duration::from_millis(500))
        .await
        .is_none());
}
