//! A fault-injecting HTTP/1.1 upstream on `127.0.0.1:0`, written on raw sockets so every byte
//! it sends is the test's choice: it answers 5xx, resets, hangs before or inside the head or
//! the body, and lies about lengths.
//!
//! `GET {doc_path}` always serves the Swagger document; `GET {health_path}` answers with the
//! status set by [`FaultUpstream::set_health`] (200 at first); every other request is answered
//! as the current [`Fault`] says ([`FaultUpstream::set_fault`], `Fault::Ok` at first) and
//! recorded. Request bodies are read whole, by `Content-Length` or the chunked coding.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How the upstream answers requests other than its doc and health paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `200` with a small JSON body naming the upstream (`{"upstream": name}`).
    Ok,
    /// This status, with a small body.
    Status(u16),
    /// Reads the request, then resets the connection (RST) without a byte of response.
    ResetBeforeHead,
    /// Reads the request and never answers (the connection stays open).
    HangBeforeHead,
    /// Sends part of the response head, then nothing more.
    HangInHead,
    /// Sends a head with `Content-Length: 1000` and `sent` bytes of body, then nothing more.
    HangInBody { sent: usize },
    /// Says `Content-Length: 100`, sends 10 bytes and closes the connection.
    ShortBody,
    /// Sends `Content-Length: 5` and `Transfer-Encoding: chunked` with a chunked body of
    /// 11 bytes (`hello world`).
    LengthAndChunked,
    /// Waits this long, then answers like `Ok`.
    Delay(Duration),
}

/// A request the fault upstream received (not the doc or health requests).
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// The request line and header lines as received, without the blank line.
    pub head: String,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawRequest {
    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }
}

#[derive(Debug)]
struct Shared {
    name: String,
    doc_path: String,
    doc: String,
    health_path: String,
    health_status: AtomicU16,
    health_hits: AtomicU64,
    fault: Mutex<Fault>,
    hits: AtomicU64,
    requests: Mutex<Vec<RawRequest>>,
}

/// The running fault upstream; stops (and drops every connection) when dropped.
#[derive(Debug)]
pub struct FaultUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl FaultUpstream {
    /// Starts on `127.0.0.1:0`, serving `doc` (a Swagger 2 JSON document) at `/spec` and a
    /// health endpoint at `/health`.
    pub async fn start(name: &str, doc: impl Into<String>) -> FaultUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            doc_path: "/spec".to_owned(),
            doc: doc.into(),
            health_path: "/health".to_owned(),
            health_status: AtomicU16::new(200),
            health_hits: AtomicU64::new(0),
            fault: Mutex::new(Fault::Ok),
            hits: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let shared = shared.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let task = tokio::spawn(serve(stream, shared.clone()));
                    if let Ok(mut list) = connections.lock() {
                        list.retain(|t| !t.is_finished());
                        list.push(task);
                    }
                }
            })
        };
        FaultUpstream {
            addr,
            shared,
            accept,
            connections,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How requests other than the doc and health ones are answered from now on.
    pub fn set_fault(&self, fault: Fault) {
        *self.shared.fault.lock().expect("fault lock") = fault;
    }

    /// The status health checks get from now on.
    pub fn set_health(&self, status: u16) {
        self.shared.health_status.store(status, Ordering::SeqCst);
    }

    /// Requests received, other than doc and health ones.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Health-check requests received.
    pub fn health_hits(&self) -> u64 {
        self.shared.health_hits.load(Ordering::SeqCst)
    }

    /// The requests received so far (not the doc or health ones).
    pub fn requests(&self) -> Vec<RawRequest> {
        self.shared.requests.lock().expect("requests lock").clone()
    }
}

impl Drop for FaultUpstream {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(list) = self.connections.lock() {
            for task in list.iter() {
                task.abort();
            }
        }
    }
}

/// Reads one request (head and body); `None` at EOF or on malformed input.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<RawRequest> {
    let head_end = loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end + 4);
    let request = RawRequest {
        head,
        body: Vec::new(),
    };
    let length = request
        .header_values("content-length")
        .first()
        .and_then(|v| v.parse::<usize>().ok());
    let chunked = request
        .header_values("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    let mut request = request;
    if chunked {
        loop {
            let line_end = loop {
                if let Some(end) = find(buffer, b"\r\n") {
                    break end;
                }
                fill(stream, buffer).await?;
            };
            let size_text = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            buffer.drain(..line_end + 2);
            if size == 0 {
                // Trailers (none expected) end with a blank line.
                loop {
                    if let Some(end) = find(buffer, b"\r\n") {
                        buffer.drain(..end + 2);
                        if end == 0 {
                            break;
                        }
                        continue;
                    }
                    fill(stream, buffer).await?;
                }
                break;
            }
            while buffer.len() < size + 2 {
                fill(stream, buffer).await?;
            }
            request.body.extend_from_slice(&buffer[..size]);
            buffer.drain(..size + 2);
        }
    } else if let Some(length) = length {
        while buffer.len() < length {
            fill(stream, buffer).await?;
        }
        request.body = buffer.drain(..length).collect();
    }
    Some(request)
}

async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await.ok()?;
    if n == 0 {
        return None;
    }
    buffer.extend_from_slice(&chunk[..n]);
    Some(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn response(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buffer = Vec::new();
    while let Some(request) = read_request(&mut stream, &mut buffer).await {
        let path = request
            .head
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_owned();
        if path == shared.doc_path {
            let reply = response(200, "application/json", &shared.doc);
            if stream.write_all(&reply).await.is_err() {
                return;
            }
            continue;
        }
        if path == shared.health_path {
            shared.health_hits.fetch_add(1, Ordering::SeqCst);
            let status = shared.health_status.load(Ordering::SeqCst);
            if stream
                .write_all(&response(status, "text/plain", "health"))
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        shared.hits.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut requests) = shared.requests.lock() {
            requests.push(request);
        }
        let fault = shared.fault.lock().map(|f| f.clone()).unwrap_or(Fault::Ok);
        let ok_body = format!("{{\"upstream\":\"{}\"}}", shared.name);
        let written = match fault {
            Fault::Ok => stream
                .write_all(&response(200, "application/json", &ok_body))
                .await
                .is_ok(),
            Fault::Delay(delay) => {
                tokio::time::sleep(delay).await;
                stream
                    .write_all(&response(200, "application/json", &ok_body))
                    .await
                    .is_ok()
            }
            Fault::Status(status) => stream
                .write_all(&response(status, "application/json", &ok_body))
                .await
                .is_ok(),
            Fault::ResetBeforeHead => {
                let _ = stream.set_zero_linger();
                return;
            }
            Fault::HangBeforeHead => {
                std::future::pending::<()>().await;
                return;
            }
            Fault::HangInHead => {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-le").await;
                std::future::pending::<()>().await;
                return;
            }
            Fault::HangInBody { sent } => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&vec![b'x'; sent.min(999)]).await;
                std::future::pending::<()>().await;
                return;
            }
            Fault::ShortBody => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\n0123456789")
                    .await;
                return;
            }
            Fault::LengthAndChunked => stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")
                .await
                .is_ok(),
        };
        if !written {
            return;
        }
    }
}
