//! The pooled upstream client.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{BoxError, ProxyBody};
use crate::http1_pool::{Http1Pool, Http1Send, PoolSettings, PooledBody};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Under NGINX's default `keepalive_timeout` (75 s), so the gateway usually retires an idle
/// connection before the upstream does; one the upstream closed first is skipped at checkout.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_IDLE_PER_HOST: usize = 1024;

/// Why a request to an upstream produced no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The connection could not be established (refused, unreachable, TLS handshake failed).
    /// Nothing reached the upstream, so any request may be retried elsewhere.
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

/// A pooled client for `http` and `https` upstreams. Cheap to clone; one instance is shared by
/// all upstreams so their idle connections survive table swaps.
///
/// Plain `http` upstreams use Buckler's own HTTP/1.1 pool ([`crate::http1_pool`]: less work
/// per request than hyper-util's); `https` ones (HTTP/1.1 or HTTP/2 by ALPN)
/// go through hyper-util's pooled client.
#[derive(Clone, Debug)]
pub struct HttpUpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
    http1: Arc<Http1Pool>,
}

/// A response body from either path.
#[derive(Debug)]
pub enum UpstreamBody {
    /// From hyper-util's pooled client (`https` upstreams).
    Pooled(Incoming),
    /// From Buckler's own HTTP/1.1 pool (`http` upstreams).
    Http1(PooledBody),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamBody::Pooled(body) => Pin::new(body).poll_frame(cx),
            UpstreamBody::Http1(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Pooled(body) => body.is_end_stream(),
            UpstreamBody::Http1(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Pooled(body) => body.size_hint(),
            UpstreamBody::Http1(body) => body.size_hint(),
        }
    }
}

impl HttpUpstreamClient {
    /// A client trusting the platform's root certificates (none found means only plain HTTP
    /// upstreams work; TLS ones fail to connect with a clear error).
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_keepalive(Some(TCP_KEEPALIVE));
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let tls = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(builder) => builder,
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(empty_roots_config(provider)),
        };
        let connector = tls
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let http1 = Http1Pool::new(PoolSettings {
            connect_timeout: CONNECT_TIMEOUT,
            tcp_keepalive: TCP_KEEPALIVE,
            idle_timeout: IDLE_TIMEOUT,
            max_idle_per_host: MAX_IDLE_PER_HOST,
        });
        HttpUpstreamClient { client, http1 }
    }

    /// Sends `request` (absolute URI) and returns the response head with its streaming body:
    /// [`send_to`](Self::send_to) with the URI's scheme and authority.
    pub async fn send(
        &self,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let uri = request.uri();
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            // Not absolute: hyper-util's client refuses it with its own error.
            let response = self.client.request(request).await.map_err(classify)?;
            return Ok(response.map(UpstreamBody::Pooled));
        };
        let origin = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(origin);
        self.send_to(&scheme, &authority, request).await
    }

    /// Sends `request`, whose URI is only the path and query, to the upstream at
    /// `scheme://authority`. The gateway builds its requests so: plain-HTTP upstreams (HTTP/1.1)
    /// take them as they are, where an absolute URI would be built per request only to be
    /// taken apart again (~300 instructions); `https` ones get the absolute URI hyper-util's
    /// client needs (TLS, ALPN).
    ///
    /// Not an `async fn`: a plain-HTTP request is handed to an idle connection right away, and
    /// the small future returned only waits for its response (see `Http1Pool::send`).
    pub fn send_to(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        request: Request<ProxyBody>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send + 'static {
        if *scheme == Scheme::HTTP {
            Sending::Http1(self.http1.send(authority, request))
        } else {
            Sending::Pooled(self.send_pooled(scheme, authority, request))
        }
    }

    /// Through hyper-util's pooled client, with the absolute URI it needs.
    fn send_pooled(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        mut request: Request<ProxyBody>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send>> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(scheme.clone());
        parts.authority = Some(authority.clone());
        parts.path_and_query = request.uri().path_and_query().cloned();
        let uri = match http::Uri::from_parts(parts) {
            Ok(uri) => uri,
            Err(error) => {
                return Box::pin(std::future::ready(Err(UpstreamError::Connect(Box::new(
                    error,
                )))))
            }
        };
        *request.uri_mut() = uri;
        let response = self.client.request(request);
        Box::pin(async move {
            let response = response.await.map_err(classify)?;
            Ok(response.map(UpstreamBody::Pooled))
        })
    }
}

/// The future of [`HttpUpstreamClient::send_to`].
enum Sending {
    Http1(Http1Send),
    Pooled(Pin<Box<dyn Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send>>),
}

impl Future for Sending {
    type Output = Result<Response<UpstreamBody>, UpstreamError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Sending::Http1(send) => Pin::new(send)
                .poll(cx)
                .map_ok(|response| response.map(UpstreamBody::Http1)),
            Sending::Pooled(send) => send.as_mut().poll(cx),
        }
    }
}

impl Default for HttpUpstreamClient {
    fn default() -> Self {
        Self::new()
    }
}

fn empty_roots_config(
    provider: std::sync::Arc<rustls::crypto::CryptoProvider>,
) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        })
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        })
}

fn classify(error: hyper_util::client::legacy::Error) -> UpstreamError {
    if error.is_connect() {
        return UpstreamError::Connect(Box::new(error));
    }
    let is_body = {
        let mut current: Option<&(dyn std::error::Error + 'static)> =
            std::error::Error::source(&error);
        let mut found = false;
        while let Some(cause) = current {
            if let Some(hyper_error) = cause.downcast_ref::<hyper::Error>() {
                found = is_request_body_failure(hyper_error);
            }
            current = cause.source();
        }
        found
    };
    if is_body {
        UpstreamError::RequestBody(Box::new(error))
    } else {
        UpstreamError::Reset(Box::new(error))
    }
}

/// Whether hyper failed because the request body did (the client went away, or it passed the
/// size limit): a "user" error carrying the body's own error as its source. Both upstream
/// pools sort their errors by this.
pub(crate) fn is_request_body_failure(error: &hyper::Error) -> bool {
    error.is_user() && !error.is_canceled() && std::error::Error::source(error).is_some()
}
