//! Shared support for the end-to-end tests: start a gateway from JSON5 text and talk to it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use buckler_gateway::RunningGateway;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

pub mod h2frames;
pub mod pki;

pub use buckler_testkit::{assert_eventually, trace_init, FakeUpstream, Swagger2Doc};

/// A gateway started for one test, with HTTP clients pointed at it.
pub struct TestGateway {
    pub gateway: RunningGateway,
    pub addr: SocketAddr,
    http1: Client<HttpConnector, Full<Bytes>>,
    /// One HTTP/2 connection, shared by every `send_h2`.
    http2: Client<HttpConnector, Full<Bytes>>,
}

/// A response with its body read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// `upstream` field of a fake upstream's echo.
    pub fn upstream(&self) -> String {
        self.json()["upstream"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// First value of a header of the echoed request.
    pub fn echoed_header(&self, name: &str) -> Option<String> {
        self.json()["headers"]
            .as_array()?
            .iter()
            .find(|pair| pair[0] == name)
            .and_then(|pair| pair[1].as_str().map(str::to_owned))
    }
}

/// `{"serviceType": "swagger2", "serviceLocation": url, "weight": w}` entries as JSON text.
pub fn upstreams_json(upstreams: &[(&str, u32)]) -> String {
    let entries: Vec<serde_json::Value> = upstreams
        .iter()
        .map(|(url, weight)| serde_json::json!({"serviceType": "swagger2", "serviceLocation": url, "weight": weight}))
        .collect();
    serde_json::Value::Array(entries).to_string()
}

/// A fresh temporary directory for one test, removed with everything in it when dropped.
pub struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!(
        "buckler-test-{}-{}-{}",
        std::process::id(),
        name,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}

/// The value of the first sample on a line starting with `prefix` (`name{labels}`) in
/// `/metrics` text; 0 when there is none, as for a counter never incremented.
pub fn metric_sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// Two upstreams, "blue" and "green", each declaring `GET /w` and `GET /slow/{ms}`: what the
/// weight, drain and fleet tests split traffic across.
pub async fn blue_and_green() -> (FakeUpstream, FakeUpstream) {
    let doc = |name: &str| {
        Swagger2Doc::new(name, "1")
            .op("get", "/w")
            .op("get", "/slow/{ms}")
            .to_json()
    };
    (
        FakeUpstream::builder("blue").doc(doc("blue")).start().await,
        FakeUpstream::builder("green")
            .doc(doc("green"))
            .start()
            .await,
    )
}

/// A config whose one domain reads its upstreams from `upstreams.json` beside the config
/// file (`upstream-watcher: file`), with an admin listener and a one-step ramp of `step`.
pub fn watched_file_config(step: &str) -> String {
    format!(
        r#"{{ listen: "127.0.0.1:0", admin: {{ listen: "127.0.0.1:0" }},
             domains: [{{ "domain-name": "*", "upstream-watcher": "file", "upstreams-file": "upstreams.json",
                         "upstream-weighting": {{ "step-count": 1, "step-duration": "{step}" }} }}] }}"#
    )
}

/// A one-domain (`*`) config listening on 127.0.0.1:0; `domain_extra` is spliced into the
/// domain object (JSON5, e.g. `"request-timeout": "300ms",`).
pub fn config_text(upstreams: &[(&str, u32)], domain_extra: &str) -> String {
    format!(
        r#"{{
  listen: "127.0.0.1:0",
  "shutdown-grace": "2s",
  domains: [{{
    "domain-name": "*",
    {domain_extra}
    upstreams: {},
  }}],
}}"#,
        upstreams_json(upstreams)
    )
}

impl TestGateway {
    /// Parses `config` (JSON5) and starts the gateway.
    pub async fn start(config: &str) -> TestGateway {
        trace_init();
        let config = buckler_config::parse(config, Path::new("test.json5"))
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        Self::run(config).await
    }

    /// Loads the config from a file (so reloads can re-read it) and starts the gateway.
    pub async fn start_file(path: &Path) -> TestGateway {
        trace_init();
        let config =
            buckler_config::load(path).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        Self::run(config).await
    }

    /// Starts the gateway on `config`, with the clients tests send through.
    async fn run(config: buckler_config::Config) -> TestGateway {
        let gateway = RunningGateway::start(config).await.expect("gateway starts");
        let addr = gateway.addrs()[0];
        TestGateway {
            gateway,
            addr,
            http1: Client::builder(TokioExecutor::new()).build_http(),
            http2: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    /// `http://ADMIN_ADDR{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        let admin = self
            .gateway
            .admin_addr()
            .expect("admin listener configured");
        format!("http://{admin}{path}")
    }

    /// An admin call with an optional bearer token and JSON body.
    pub async fn admin(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(self.admin_url(path));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = body
            .map(|b| Full::new(Bytes::from(b.to_owned())))
            .unwrap_or_default();
        self.send(request.body(body).unwrap()).await
    }

    /// Starts and waits until `/healthcheck` says every upstream has served.
    pub async fn start_ready(config: &str) -> TestGateway {
        let gateway = TestGateway::start(config).await;
        gateway.wait_ready().await;
        gateway
    }

    pub async fn wait_ready(&self) {
        assert_eventually!(
            self.get("/healthcheck").await.status == StatusCode::OK,
            "gateway never became ready: {}",
            String::from_utf8_lossy(&self.get("/healthcheck").await.body)
        );
    }

    /// The one domain's upstreams as `GET /admin/domains/*/upstreams` lists them.
    pub async fn upstream_listing(&self) -> Vec<serde_json::Value> {
        match self
            .admin(http::Method::GET, "/admin/domains/*/upstreams", None, None)
            .await
            .json()
        {
            serde_json::Value::Array(entries) => entries,
            other => panic!("not a listing: {other}"),
        }
    }

    /// The listing's entry for the upstream at `location`, if it is listed.
    pub async fn upstream_entry(&self, location: &str) -> Option<serde_json::Value> {
        self.upstream_listing()
            .await
            .into_iter()
            .find(|entry| entry["serviceLocation"] == location)
    }

    /// `PUT /admin/domains/*/upstreams` with these `(location, weight)` pairs, no token.
    pub async fn put_upstreams(&self, upstreams: &[(&str, u32)]) -> Reply {
        self.admin(
            http::Method::PUT,
            "/admin/domains/*/upstreams",
            None,
            Some(&upstreams_json(upstreams)),
        )
        .await
    }

    /// Sends `POST path` with a one-byte body `n` times, one after another; the statuses.
    pub async fn post_statuses(&self, path: &str, n: usize) -> Vec<StatusCode> {
        let mut statuses = Vec::with_capacity(n);
        for _ in 0..n {
            let request = Request::post(self.url(path))
                .body(Full::new(Bytes::from_static(b"x")))
                .unwrap();
            statuses.push(self.send(request).await.status);
        }
        statuses
    }

    /// `/metrics` as text.
    pub async fn metrics(&self) -> String {
        String::from_utf8_lossy(&self.get("/metrics").await.body).into_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Request::get(self.url(path)).body(Full::default()).unwrap())
            .await
    }

    /// Sends over HTTP/1.1 (keep-alive pool).
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Reply {
        let response = tokio::time::timeout(Duration::from_secs(30), self.http1.request(request))
            .await
            .expect("gateway answered in time")
            .expect("request reached the gateway");
        read(response).await
    }

    /// Sends over HTTP/2 with prior knowledge and returns the response with its body unread
    /// (for tests of how a body ends).
    pub async fn http2_response(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        tokio::time::timeout(Duration::from_secs(30), self.http2.request(request))
            .await
            .expect("gateway answered in time")
    }

    /// Sends over HTTP/2 with prior knowledge (h2c), on the gateway's one HTTP/2 connection.
    pub async fn send_h2(&self, request: Request<Full<Bytes>>) -> Reply {
        let response = tokio::time::timeout(Duration::from_secs(30), self.http2.request(request))
            .await
            .expect("gateway answered in time")
            .expect("h2 request reached the gateway");
        assert_eq!(response.version(), Version::HTTP_2);
        read(response).await
    }
}

async fn read(response: http::Response<hyper::body::Incoming>) -> Reply {
    read_reply(response).await
}

/// Reads a response's body whole.
pub async fn read_reply(response: http::Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body read").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Sends raw bytes over a fresh TCP connection and returns everything read until close or a
/// short idle pause (for requests a normal client refuses to send).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
