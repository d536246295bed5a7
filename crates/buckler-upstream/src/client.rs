//! The pooled upstream client: hyper-util's pooled `Client` for every scheme and protocol,
//! one per set of [`UpstreamClientSettings`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use thread_local::ThreadLocal;
use tokio::net::TcpStream;

use crate::body::{BoxError, ProxyBody};

const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// HTTP/1.1 read buffer per upstream connection, which also bounds a response head and the
/// size of each body chunk handed on: what a response waiting for a slow client holds here.
/// hyper's default is about 400 KB, which a client that stops reading kept alive twice over
/// (this buffer and the chunk queued downstream). 64 KiB keeps reads large enough for
/// throughput (a read is one syscall per 64 KiB) and response heads far above NGINX's 4–8 KiB
/// `proxy_buffer_size`.
const HTTP1_MAX_BUF: usize = 64 * 1024;

/// HTTP/2 flow-control window per upstream stream: what an upstream may send before the
/// gateway has passed it on, so the most a response waiting for a slow client holds here.
/// hyper's default is 2 MiB. 256 KiB keeps one stream at about 256 KiB per round trip
/// (over 1 GB/s at a 0.2 ms LAN round trip, about 8 MB/s across a 30 ms one), where
/// HAProxy's 64 KiB default halves that again; Envoy bounds a stream by its 1 MiB
/// `per_connection_buffer_limit_bytes`.
const HTTP2_STREAM_WINDOW: u32 = 256 * 1024;

/// HTTP/2 flow-control window per upstream connection: a stalled stream keeps its share of
/// it until it ends, so it is 64 stream windows, and 64 clients that stop reading do not
/// stall the other streams on that connection (hyper's default, 5 MiB over 2 MiB streams,
/// stalls after two).
const HTTP2_CONNECTION_WINDOW: u32 = 64 * HTTP2_STREAM_WINDOW;

/// What an HTTP/2 request stream toward an upstream may buffer in the gateway (the upload
/// direction): past it the client's body is no longer read. hyper's default is 1 MiB.
const HTTP2_MAX_SEND_BUF: usize = 64 * 1024;

/// Which HTTP version Buckler speaks to an upstream (a domain's `upstream-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UpstreamProtocol {
    /// `https`: HTTP/2 or HTTP/1.1, as the upstream chooses by ALPN. Plain `http`: HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1 only, on `https` too (no ALPN offered).
    Http1,
    /// HTTP/2 only: with prior knowledge on plain `http` (h2c), by ALPN `h2` on `https` (an
    /// upstream that does not agree fails the handshake).
    H2c,
}

/// How one pool connects and keeps connections: the gateway builds one per domain.
///
/// Two settings values with the same fields share one pool (see
/// [`HttpUpstreamClient::pool`]); a TLS configuration is told apart by its `Arc`'s identity,
/// so pass the same `Arc` again to keep a pool's idle connections across a reload.
#[derive(Debug, Clone)]
pub struct UpstreamClientSettings {
    /// Limit on establishing a connection: TCP connect and, for `https`, the TLS handshake.
    pub connect_timeout: Duration,
    /// An idle connection is closed after this long unused.
    pub idle_timeout: Duration,
    /// At most this many idle connections are kept per upstream (scheme and authority) by each
    /// thread sending requests (see [`UpstreamPool`]); one returned beyond it is closed. `0`
    /// keeps none: every request connects anew. An HTTP/2 connection counts once however many
    /// streams it carries.
    pub max_idle_per_host: usize,
    /// Which HTTP version to speak.
    pub protocol: UpstreamProtocol,
    /// Trust for `https` upstreams. `None`: the platform's root certificates (if none are
    /// found, every `https` upstream fails to connect, with the verification error). Any ALPN
    /// protocols set in it are replaced by those [`Self::protocol`] offers. Certificates are
    /// always verified: Buckler builds no configuration that skips it.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for UpstreamClientSettings {
    /// Connect within 5 s; idle connections kept 60 s, under NGINX's default
    /// `keepalive_timeout` (75 s), so the gateway usually retires one before the upstream
    /// does; 1024 idle per upstream; protocol by ALPN; the platform's roots.
    fn default() -> Self {
        UpstreamClientSettings {
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_idle_per_host: 1024,
            protocol: UpstreamProtocol::Auto,
            tls: None,
        }
    }
}

/// Why a request to an upstream produced no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The connection could not be established (refused, unreachable, timed out, TLS handshake
    /// or certificate verification failed). Nothing reached the upstream, so any request may
    /// be retried elsewhere.
    #[error("could not connect to the upstream: {0}")]
    Connect(#[source] BoxError),
    /// The request body stream failed while being sent (client went away, or it exceeded the
    /// body limit: see [`UpstreamError::body_error`]).
    #[error("the request body failed while being sent: {0}")]
    RequestBody(#[source] BoxError),
    /// The connection failed after the request started and before a response head arrived.
    #[error("the upstream closed or reset the connection: {0}")]
    Reset(#[source] BoxError),
}

impl UpstreamError {
    /// The error the request body produced, when that is what failed.
    pub fn body_error(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpstreamError::RequestBody(source) => {
                let mut current: &(dyn std::error::Error + 'static) = source.as_ref();
                // hyper wraps the body's own error; walk down to the innermost cause.
                while let Some(next) = current.source() {
                    current = next;
                }
                Some(current)
            }
            UpstreamError::Connect(_) | UpstreamError::Reset(_) => None,
        }
    }
}

/// A response body from an upstream, streamed as it arrives; trailers (HTTP/2, or HTTP/1.1
/// chunked) come as a last trailers frame.
#[derive(Debug)]
pub struct UpstreamBody(Incoming);

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// Upstream clients: a default pool, and pools for other settings made on first use and kept.
/// Cheap to clone; one instance is shared by all upstreams so their idle connections survive
/// table swaps.
#[derive(Clone, Debug)]
pub struct HttpUpstreamClient {
    default: UpstreamPool,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The platform's roots, loaded once, for every pool whose settings bring no TLS config.
    system_tls: Arc<rustls::ClientConfig>,
    pools: Mutex<HashMap<PoolKey, UpstreamPool>>,
}

/// What tells two pools apart: everything in [`UpstreamClientSettings`], the TLS configuration
/// by identity (a `ClientConfig` has no equality).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle_per_host: usize,
    protocol: UpstreamProtocol,
    /// `None`: the platform's roots.
    tls: Option<usize>,
}

impl PoolKey {
    fn of(settings: &UpstreamClientSettings) -> Self {
        PoolKey {
            connect_timeout: settings.connect_timeout,
            idle_timeout: settings.idle_timeout,
            max_idle_per_host: settings.max_idle_per_host,
            protocol: settings.protocol,
            tls: settings.tls.as_ref().map(|tls| Arc::as_ptr(tls) as usize),
        }
    }
}

/// One pool of upstream connections, for every upstream reached with one set of settings:
/// `http` and `https`, HTTP/1.1 and HTTP/2 (hyper-util's pooled `Client`, keyed inside by scheme
/// and authority). Cheap to clone.
///
/// Semantics, the same for every scheme and protocol:
/// - an idle connection is closed after `idle_timeout`, and at most `max_idle_per_host` idle
///   ones are kept per upstream;
/// - connecting (TCP, then TLS) fails with [`UpstreamError::Connect`] after `connect_timeout`;
/// - every connection is watched by its own task, so one the upstream closes while idle leaves
///   the pool as soon as its close arrives; a request handed to a pooled connection that turns
///   out to be closed before the request was written is given back unsent and goes out on
///   another connection (hyper-util's `retry_canceled_requests`), whatever its method, since
///   nothing of it reached the upstream. A request that was written is never resent here.
/// - HTTP/2 connections carry many requests at once; HTTP/1.1 ones one at a time.
/// - each thread sending requests keeps connections of its own (as NGINX's `keepalive` is per
///   worker), and the limits above hold per thread: a connection is driven by a task on the
///   thread that opened it, so a request handed to another thread's connection would wake
///   that thread to write it and be woken back with the response.
#[derive(Clone, Debug)]
pub struct UpstreamPool {
    per_thread: Arc<PerThread>,
}

/// How a pool's clients are made, and each thread's client.
#[derive(Debug)]
struct PerThread {
    builder: hyper_util::client::legacy::Builder,
    connector: TimedConnector,
    clients: ThreadLocal<Client<TimedConnector, ProxyBody>>,
}

impl PerThread {
    /// This thread's client, made on the thread's first request.
    fn client(&self) -> &Client<TimedConnector, ProxyBody> {
        self.clients
            .get_or(|| self.builder.build(self.connector.clone()))
    }
}

impl HttpUpstreamClient {
    /// A client whose default pool has [`UpstreamClientSettings::default`], trusting the
    /// platform's root certificates.
    pub fn new() -> Self {
        let system_tls = Arc::new(system_roots_config());
        let default = UpstreamPool::build(&UpstreamClientSettings::default(), &system_tls);
        HttpUpstreamClient {
            default,
            shared: Arc::new(Shared {
                system_tls,
                pools: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The pool for `settings`: the same pool (and its idle connections) for equal settings,
    /// made on first use. Pools are never dropped while the client lives; a TLS config that
    /// changes on every reload therefore leaves one small, idle pool behind per reload (its
    /// idle connections close after the idle timeout).
    pub fn pool(&self, settings: &UpstreamClientSettings) -> UpstreamPool {
        let key = PoolKey::of(settings);
        if key == PoolKey::of(&UpstreamClientSettings::default()) {
            return self.default.clone();
        }
        let mut pools = self
            .shared
            .pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pools
            .entry(key)
            .or_insert_with(|| UpstreamPool::build(settings, &self.shared.system_tls))
            .clone()
    }

    /// The pool for [`UpstreamClientSettings::default`].
    pub fn default_pool(&self) -> &UpstreamPool {
        &self.default
    }

    /// Sends `request` (absolute URI) through the default pool: see [`UpstreamPool::send`].
    pub fn send(
        &self,
        request: Request<ProxyBody>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send + 'static {
        self.default.send(request)
    }

    /// Sends `request` (origin-form URI) to `scheme://authority` through the default pool: see
    /// [`UpstreamPool::send_to`].
    pub fn send_to(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        request: Request<ProxyBody>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send + 'static {
        self.default.send_to(scheme, authority, request)
    }
}

impl Default for HttpUpstreamClient {
    fn default() -> Self {
        Self::new()
    }
}

impl UpstreamPool {
    fn build(settings: &UpstreamClientSettings, system_tls: &Arc<rustls::ClientConfig>) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        // The whole connect, TLS included, is bounded by `TimedConnector`; this bounds the TCP
        // part alone, and lets the connector try the next address of a name that has several.
        http.set_connect_timeout(Some(settings.connect_timeout));
        http.set_keepalive(Some(TCP_KEEPALIVE));
        let mut tls = settings.tls.as_ref().unwrap_or(system_tls).as_ref().clone();
        // hyper-rustls sets ALPN from the protocols enabled below and refuses a config that
        // already has some.
        tls.alpn_protocols.clear();
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let connector = match settings.protocol {
            UpstreamProtocol::Auto => builder.enable_http1().enable_http2().wrap_connector(http),
            UpstreamProtocol::Http1 => builder.enable_http1().wrap_connector(http),
            UpstreamProtocol::H2c => builder.enable_http2().wrap_connector(http),
        };
        let mut client = Client::builder(TokioExecutor::new());
        client
            .pool_idle_timeout(settings.idle_timeout)
            .pool_max_idle_per_host(settings.max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            // The default, said here because the pool's retry-safety rests on it.
            .retry_canceled_requests(true)
            // Per-stream buffering bounds (SPEC §9, Limits; docs/resilience.md): what waits
            // for a slow client or a slow upstream stays in these, and backpressure reaches
            // the other side instead.
            .http1_max_buf_size(HTTP1_MAX_BUF)
            .http2_initial_stream_window_size(HTTP2_STREAM_WINDOW)
            .http2_initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
            .http2_max_send_buf_size(HTTP2_MAX_SEND_BUF);
        if settings.protocol == UpstreamProtocol::H2c {
            client.http2_only(true);
        }
        UpstreamPool {
            per_thread: Arc::new(PerThread {
                builder: client,
                connector: TimedConnector {
                    inner: connector,
                    timeout: settings.connect_timeout,
                },
                clients: ThreadLocal::new(),
            }),
        }
    }

    /// Sends `request` (absolute URI) and returns the response head with its streaming body:
    /// [`send_to`](Self::send_to) with the URI's scheme and authority. A URI that is not
    /// absolute is a [`UpstreamError::Connect`] error.
    pub fn send(
        &self,
        request: Request<ProxyBody>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send + 'static {
        let uri = request.uri();
        match (uri.scheme().cloned(), uri.authority().cloned()) {
            (Some(scheme), Some(authority)) => {
                Sending::Started(self.send_to(&scheme, &authority, request))
            }
            _ => Sending::Refused(Some(UpstreamError::Connect(
                format!("not an absolute URI: {uri}").into(),
            ))),
        }
    }

    /// Sends `request`, whose URI is its path and query (an absolute one's scheme and authority
    /// are replaced), to the upstream at `scheme://authority`, and returns the response head
    /// with its streaming body. An HTTP/1.1 request gets a `Host` header from `authority` if
    /// it has none. Request bodies stream, trailers included (over HTTP/1.1 they need chunked
    /// transfer coding). `Version::HTTP_2` on the request is taken as HTTP/1.1: which version
    /// goes on the wire is the pool's [`UpstreamProtocol`] and the upstream's ALPN choice.
    pub fn send_to(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        mut request: Request<ProxyBody>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send>> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(scheme.clone());
        parts.authority = Some(authority.clone());
        parts.path_and_query = Some(
            request
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        let uri = match Uri::from_parts(parts) {
            Ok(uri) => uri,
            Err(error) => {
                return Box::pin(std::future::ready(Err(UpstreamError::Connect(Box::new(
                    error,
                )))))
            }
        };
        *request.uri_mut() = uri;
        if request.version() == Version::HTTP_2 {
            *request.version_mut() = Version::HTTP_11;
        }
        let response = self.per_thread.client().request(request);
        Box::pin(async move {
            let response = response.await.map_err(classify)?;
            Ok(response.map(UpstreamBody))
        })
    }
}

/// The future of [`UpstreamPool::send`].
enum Sending<F> {
    Started(F),
    Refused(Option<UpstreamError>),
}

impl<F> Future for Sending<F>
where
    F: Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Unpin,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Sending::Started(send) => Pin::new(send).poll(cx),
            Sending::Refused(error) => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| UpstreamError::Connect("polled after completion".into())))),
        }
    }
}

/// The HTTPS-or-HTTP connector with one deadline over TCP connect and TLS handshake.
#[derive(Clone, Debug)]
struct TimedConnector {
    inner: HttpsConnector<HttpConnector>,
    timeout: Duration,
}

/// A connect that took longer than the connect timeout.
#[derive(Debug, thiserror::Error)]
#[error("connect (TCP and TLS) timed out after {0:?}")]
struct ConnectTimedOut(Duration);

type Connecting =
    Pin<Box<dyn Future<Output = Result<MaybeHttpsStream<TokioIo<TcpStream>>, BoxError>> + Send>>;

impl tower_service::Service<Uri> for TimedConnector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected,
                Err(_) => Err(Box::new(ConnectTimedOut(timeout)) as BoxError),
            }
        })
    }
}

/// The platform's root certificates, with aws-lc-rs and rustls's safe protocol versions.
/// Certificates the platform store holds but rustls cannot parse are skipped; no roots at all
/// means every `https` upstream fails verification, visibly, rather than being trusted.
fn system_roots_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!("reading the platform's root certificates: {error}");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::warn!("{ignored} platform root certificates could not be parsed");
    }
    if added == 0 {
        tracing::warn!("no platform root certificates found: https upstreams will not verify");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
        // aws-lc-rs supports TLS 1.2 and 1.3; kept as a fallback only.
        Err(_) => rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    }
}

fn classify(error: hyper_util::client::legacy::Error) -> UpstreamError {
    if error.is_connect() {
        return UpstreamError::Connect(Box::new(error));
    }
    let mut current: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&error);
    let mut is_body = false;
    while let Some(cause) = current {
        if let Some(hyper_error) = cause.downcast_ref::<hyper::Error>() {
            is_body = is_request_body_failure(hyper_error);
        }
        current = cause.source();
    }
    if is_body {
        UpstreamError::RequestBody(Box::new(error))
    } else {
        UpstreamError::Reset(Box::new(error))
    }
}

/// Whether hyper failed because the request body did (the client went away, or it passed the
/// size limit): a "user" error carrying the body's own error as its source.
fn is_request_body_failure(error: &hyper::Error) -> bool {
    error.is_user() && !error.is_canceled() && std::error::Error::source(error).is_some()
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
