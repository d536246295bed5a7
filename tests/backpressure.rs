//! A client that stops reading a large response costs bounded memory (SPEC §9, Limits): the
//! gateway stops reading from the upstream instead of buffering the body for that client.
//!
//! Measured as memory, not time: a raw upstream writes a 64 MiB body as fast as its socket
//! takes it, a raw client reads the response head and then never reads again; once the
//! upstream's writes have stalled (the chain is full), the growth of this process's resident
//! memory is divided by the number of stalled streams. The upstream and the clients are raw
//! sockets, so the only user-space buffers that grow are the gateway's (kernel socket buffers
//! are not resident memory). A test binary of its own, so nothing else runs beside the
//! measurement.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buckler_tests::h2frames::{self, HEADERS};
use buckler_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The body the upstream offers: far more than any buffer on the way.
const BODY_BYTES: u64 = 64 * 1024 * 1024;
/// Stalled streams per measurement: enough that per-stream growth dominates the noise.
const STREAMS: usize = 32;

/// A raw HTTP/1.1 upstream: serves its Swagger document at `/spec`, and answers anything else
/// with a 64 MiB body written from one static buffer, counting what its socket accepted.
struct BulkUpstream {
    addr: SocketAddr,
    written: Arc<AtomicU64>,
}

impl BulkUpstream {
    async fn start() -> BulkUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let written = Arc::new(AtomicU64::new(0));
        let doc = Swagger2Doc::new("bulk", "1").op("get", "/big").to_json();
        let counter = written.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, doc.clone(), counter.clone()));
            }
        });
        BulkUpstream { addr, written }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }
}

async fn serve(mut stream: TcpStream, doc: String, written: Arc<AtomicU64>) {
    static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&pending[..end]).into_owned();
        pending.drain(..end + 4);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        if path.starts_with("/spec") {
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{doc}",
                doc.len()
            );
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {BODY_BYTES}\r\n\r\n"
        );
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let mut sent = 0u64;
        while sent < BODY_BYTES {
            let len = CHUNK.len().min((BODY_BYTES - sent) as usize);
            match stream.write(&CHUNK[..len]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    sent += n as u64;
                    written.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
        }
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// A client socket with a small receive buffer, so the kernel holds little of what the
/// gateway sends before the gateway's own buffers fill.
async fn connect(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(addr).await.expect("connect")
}

/// Sends `GET /big` over HTTP/1.1, reads up to the end of the response head, then stops.
async fn stalled_http1(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr).await;
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send request");
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("response head within 10 s")
            .expect("read");
        assert!(n > 0, "gateway closed the connection");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    stream
}

/// Opens an HTTP/2 (h2c) connection whose flow-control windows are as large as HTTP/2 allows,
/// so nothing but the gateway's own limits stops it sending; sends `GET /big`, reads up to the
/// response HEADERS, then stops reading.
async fn stalled_http2(addr: SocketAddr) -> TcpStream {
    const INITIAL_WINDOW_SIZE: u16 = 0x4;
    const WINDOW_UPDATE: u8 = 0x8;
    const MAX_WINDOW: u32 = (1 << 31) - 1;
    let mut stream = connect(addr).await;
    let mut settings = INITIAL_WINDOW_SIZE.to_be_bytes().to_vec();
    settings.extend(MAX_WINDOW.to_be_bytes());
    let mut start = h2frames::PREFACE.to_vec();
    start.extend(h2frames::frame(h2frames::SETTINGS, 0, 0, &settings));
    start.extend(h2frames::frame(
        WINDOW_UPDATE,
        0,
        0,
        &(MAX_WINDOW - 65_535).to_be_bytes(),
    ));
    // GET, http, :path "/big" (literal, indexed name), :authority "x".
    let block = [
        0x82, 0x86, 0x04, 0x04, b'/', b'b', b'i', b'g', 0x41, 0x01, b'x',
    ];
    start.extend(h2frames::frame(
        HEADERS,
        h2frames::END_HEADERS | h2frames::END_STREAM,
        1,
        &block,
    ));
    stream.write_all(&start).await.expect("send request");
    let headers = h2frames::read_until(&mut stream, Duration::from_secs(10), |frame| {
        frame.kind == HEADERS && frame.stream == 1
    })
    .await;
    assert!(headers.is_ok(), "no response HEADERS: {headers:?}");
    stream
}

/// Waits until the upstream's writes have stopped growing for a while: every stream's chain
/// is full. Returns the bytes the upstream wrote.
async fn wait_stalled(upstream: &BulkUpstream) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = upstream.written();
    let mut quiet = 0;
    while quiet < 10 {
        assert!(Instant::now() < deadline, "upstream writes never stalled");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = upstream.written();
        if now == last {
            quiet += 1;
        } else {
            quiet = 0;
            last = now;
        }
    }
    last
}

/// Stalls `STREAMS` responses opened by `open` and returns the resident memory each added, in
/// KiB, with the bytes the upstream wrote per stream.
async fn per_stream_cost<F, Fut>(open: F) -> (f64, f64)
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = TcpStream>,
{
    let upstream = BulkUpstream::start().await;
    let gw = TestGateway::start_ready(&config_text(&[(&upstream.url(), 1)], "")).await;
    let mut held = Vec::new();
    // Warm up: the allocator's and the runtime's one-off growth is not per stream.
    for _ in 0..4 {
        held.push(open(gw.addr).await);
    }
    let written_before = wait_stalled(&upstream).await;
    let rss_before = rss_kib();
    for _ in 0..STREAMS {
        held.push(open(gw.addr).await);
    }
    let written_after = wait_stalled(&upstream).await;
    let per_stream_kib = rss_kib().saturating_sub(rss_before) as f64 / STREAMS as f64;
    let written_kib = (written_after - written_before) as f64 / 1024.0 / STREAMS as f64;
    println!(
        "per stalled stream: {per_stream_kib:.1} KiB resident, {written_kib:.1} KiB written by the upstream"
    );
    drop(held);
    (per_stream_kib, written_kib)
}

/// What a stalled HTTP/1.1 response may cost: hyper's write queue toward the client (up to
/// 128 KiB, `H1_MAX_BUF`, plus the chunk that crossed it), one 64 KiB upstream read buffer,
/// and a client and an upstream connection's state. Measured 356 KiB on 2026-12-08 (1,251 KiB
/// with hyper's defaults before): docs/resilience.md, Limits.
const HTTP1_BOUND_KIB: f64 = 480.0;
/// What a stalled HTTP/2 response may cost: at most 64 KiB in the stream's send buffer
/// (`H2_MAX_SEND_BUF`), the upstream read buffer and the connections' state. Measured 35 KiB
/// on 2026-12-08 (1,607 KiB with hyper's 400 KB send buffer before).
const HTTP2_BOUND_KIB: f64 = 200.0;

/// One test for both protocols: two measurements at once would see each other's memory.
#[tokio::test]
async fn a_client_that_stops_reading_costs_bounded_memory() {
    let (http1, _) = per_stream_cost(stalled_http1).await;
    let (http2, _) = per_stream_cost(stalled_http2).await;
    assert!(
        http1 < HTTP1_BOUND_KIB,
        "{http1:.1} KiB per stalled HTTP/1.1 stream (bound {HTTP1_BOUND_KIB} KiB)"
    );
    assert!(
        http2 < HTTP2_BOUND_KIB,
        "{http2:.1} KiB per stalled HTTP/2 stream (bound {HTTP2_BOUND_KIB} KiB)"
    );
}
