//! A fake HTTP upstream on `127.0.0.1:0`: serves a Swagger document at its doc path and answers
//! every other request according to the path, so tests can exercise the proxy end to end.
//!
//! Behaviours, chosen by path segments anywhere in the request path:
//! - `.../slow/{ms}/...`: waits `ms` milliseconds before answering;
//! - `.../stream/{bytes}`: streams `bytes` bytes of `x` in 64 KiB chunks;
//! - `.../status/{code}`: answers with that status;
//! - anything else: echoes the request as JSON (`upstream`, `method`, `path`, `query`,
//!   `version`, `headers` as `[name, value]` pairs, `body_len`, and `body` when it is short UTF-8).
//!
//! Request bodies are always consumed frame by frame and counted, never buffered whole.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

type Body = BoxBody<Bytes, Infallible>;

/// What the upstream answers at its doc path.
#[derive(Debug, Clone)]
struct DocResponse {
    status: StatusCode,
    body: Bytes,
}

/// A request as the fake upstream saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
}

#[derive(Debug)]
struct Shared {
    name: String,
    doc_path: String,
    doc: Mutex<DocResponse>,
    /// More documents by path (Swagger 1.2 declarations).
    extra_docs: Mutex<std::collections::HashMap<String, Bytes>>,
    requests: AtomicU64,
    doc_requests: AtomicU64,
    not_modified: AtomicU64,
    recent: Mutex<Vec<RecordedRequest>>,
}

/// Configures a [`FakeUpstream`] before it starts.
#[derive(Debug)]
pub struct FakeUpstreamBuilder {
    name: String,
    bind: SocketAddr,
    extra_docs: std::collections::HashMap<String, Bytes>,
    doc_path: String,
    doc: DocResponse,
}

/// A running fake upstream; stops when dropped.
#[derive(Debug)]
pub struct FakeUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl FakeUpstreamBuilder {
    /// Serves the document at `path` (default `/spec`).
    pub fn doc_path(mut self, path: &str) -> Self {
        self.doc_path = path.to_owned();
        self
    }

    /// The document body served with status 200.
    pub fn doc(mut self, body: impl Into<String>) -> Self {
        self.doc = DocResponse {
            status: StatusCode::OK,
            body: Bytes::from(body.into()),
        };
        self
    }

    /// Also serves `body` (status 200) at `path`, e.g. a Swagger 1.2 API declaration.
    pub fn doc_at(mut self, path: &str, body: impl Into<String>) -> Self {
        self.extra_docs
            .insert(path.to_owned(), Bytes::from(body.into()));
        self
    }

    /// Listens on `addr` instead of `127.0.0.1:0` (for demos with fixed ports).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Binds (by default `127.0.0.1:0`) and starts serving HTTP/1.1 and HTTP/2 (prior
    /// knowledge). Panics when the address cannot be bound: use [`Self::try_start`] to handle it.
    pub async fn start(self) -> FakeUpstream {
        self.try_start().await.expect("bind fake upstream")
    }

    /// Like [`Self::start`], returning the bind error.
    pub async fn try_start(self) -> std::io::Result<FakeUpstream> {
        let listener = TcpListener::bind(self.bind).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name: self.name,
            doc_path: self.doc_path,
            doc: Mutex::new(self.doc),
            extra_docs: Mutex::new(self.extra_docs),
            requests: AtomicU64::new(0),
            doc_requests: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
            recent: Mutex::new(Vec::new()),
        });
        let (stop, mut stopped) = watch::channel(false);
        let serving = shared.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    _ = stopped.changed() => return,
                };
                let shared = serving.clone();
                let mut conn_stopped = stopped.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(answer(shared, req).await) }
                    });
                    let builder = ConnBuilder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = conn_stopped.changed() => {}
                    }
                });
            }
        });
        Ok(FakeUpstream { addr, shared, stop })
    }
}

impl FakeUpstream {
    /// A builder for an upstream that reports `name` in its echo responses.
    pub fn builder(name: &str) -> FakeUpstreamBuilder {
        FakeUpstreamBuilder {
            name: name.to_owned(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            extra_docs: Default::default(),
            doc_path: "/spec".to_owned(),
            doc: DocResponse {
                status: StatusCode::NOT_FOUND,
                body: Bytes::from_static(b"no doc configured"),
            },
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, usable as a `serviceLocation`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the document (status 200) served from now on.
    pub fn set_doc(&self, body: impl Into<String>) {
        self.set_doc_response(StatusCode::OK, body);
    }

    /// Replaces the document and its status.
    pub fn set_doc_response(&self, status: StatusCode, body: impl Into<String>) {
        let mut doc = self.shared.doc.lock().expect("doc lock");
        *doc = DocResponse {
            status,
            body: Bytes::from(body.into()),
        };
    }

    /// Requests answered, not counting document fetches.
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Document fetches answered `304 Not Modified`.
    pub fn not_modified_count(&self) -> u64 {
        self.shared.not_modified.load(Ordering::SeqCst)
    }

    /// Document fetches answered.
    pub fn doc_request_count(&self) -> u64 {
        self.shared.doc_requests.load(Ordering::SeqCst)
    }

    /// The last (up to 100) non-document requests, oldest first.
    pub fn recent_requests(&self) -> Vec<RecordedRequest> {
        self.shared.recent.lock().expect("recent lock").clone()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn answer(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() == shared.doc_path {
        shared.doc_requests.fetch_add(1, Ordering::SeqCst);
        let doc = shared.doc.lock().expect("doc lock").clone();
        // A strong ETag from the body's hash; `If-None-Match` on it gets a bodyless 304.
        let etag = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            doc.body.hash(&mut hasher);
            format!("\"{:016x}\"", hasher.finish())
        };
        let matches = req
            .headers()
            .get("if-none-match")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == etag);
        if matches && doc.status == StatusCode::OK {
            shared.not_modified.fetch_add(1, Ordering::SeqCst);
            return Response::builder()
                .status(StatusCode::NOT_MODIFIED)
                .header("etag", etag)
                .body(full(Bytes::new()))
                .expect("304 response");
        }
        return Response::builder()
            .status(doc.status)
            .header("content-type", "application/json")
            .header("etag", etag)
            .body(full(doc.body))
            .expect("doc response");
    }
    let extra = shared
        .extra_docs
        .lock()
        .expect("extra docs lock")
        .get(req.uri().path())
        .cloned();
    if let Some(body) = extra {
        shared.doc_requests.fetch_add(1, Ordering::SeqCst);
        return Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(full(body))
            .expect("doc response");
    }
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let (parts, mut body) = req.into_parts();
    let segments: Vec<&str> = parts.uri.path().split('/').collect();
    let after = |name: &str| -> Option<u64> {
        let at = segments.iter().position(|s| *s == name)?;
        segments.get(at + 1)?.parse().ok()
    };
    if let Some(ms) = after("slow") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    // Consume the body frame by frame: counts bytes without holding more than one frame.
    let mut body_len = 0u64;
    let mut short_body = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            body_len += data.len() as u64;
            if short_body.len() < 64 * 1024 {
                short_body.extend_from_slice(data);
            }
        }
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    {
        let mut recent = shared.recent.lock().expect("recent lock");
        if recent.len() >= 100 {
            recent.remove(0);
        }
        recent.push(RecordedRequest {
            method: parts.method.to_string(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers: headers.clone(),
            body_len,
        });
    }

    if let Some(bytes) = after("stream") {
        return streamed(bytes);
    }
    let status = after("status")
        .and_then(|code| StatusCode::from_u16(code as u16).ok())
        .unwrap_or(StatusCode::OK);
    let echo = json!({
        "upstream": shared.name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_len": body_len,
        "body": if body_len <= 64 * 1024 { String::from_utf8(short_body).ok() } else { None },
    });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-upstream", shared.name.as_str())
        .header("connection", "keep-alive")
        .header("keep-alive", "timeout=5")
        .body(full(Bytes::from(echo.to_string())))
        .expect("echo response")
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).boxed()
}

/// A body of `total` bytes produced lazily in 64 KiB chunks.
fn streamed(total: u64) -> Response<Body> {
    const CHUNK: u64 = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK as usize]);
    let frames = stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            if sent >= total {
                return None;
            }
            let len = CHUNK.min(total - sent);
            let frame = Frame::data(chunk.slice(0..len as usize));
            Some((Ok::<_, Infallible>(frame), sent + len))
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/octet-stream")
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .expect("stream response")
}
