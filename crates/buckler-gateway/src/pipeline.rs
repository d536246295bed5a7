//! The request path, as short single-purpose stages:
//! checks → local endpoints → domain → route → negotiate → pick → dispatch.
//! Every stage either hands the request on or answers with a [`GatewayError`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use buckler_route::{negotiate, NegotiationError, RouteMatch, Selection};
use buckler_upstream::{empty_body, BoxError, ProxyBody, UpstreamBody, UpstreamError};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::control::Control;
use crate::error::GatewayError;
use crate::headers;
use crate::local;
use crate::request_timer;
use crate::table::{DomainTable, EndpointGroup};
use crate::upstream::InFlightGuard;

/// Request headers larger than this are refused with 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What the gateway knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    /// `"http"` or `"https"`, for `X-Forwarded-Proto`.
    pub scheme: &'static str,
}

/// Handles one request end to end. Never fails: every failure becomes a response.
///
/// Checks, routing, negotiation and the outbound request are decided when this is called; the
/// future it returns holds only what the upstream exchange needs. As one `async fn`, the
/// future kept the incoming request, its parts and every step's locals for its whole life
/// (2.8 KiB against 1.0 KiB now), and was copied whole at every move, boxing included.
pub fn handle(
    control: Arc<Control>,
    connection: ConnectionInfo,
    request: Request<Incoming>,
) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
    let started = Instant::now();
    let request_id = headers::request_id(request.headers());
    // Captured only when the request log line will be written: the hot path allocates nothing
    // for logging when debug is off.
    let logged = tracing::enabled!(tracing::Level::DEBUG)
        .then(|| (request.method().clone(), request.uri().path().to_owned()));
    let mut routed = route(&control, connection, request, &request_id);
    async move {
        let outcome = match routed {
            Ok(Routed::Answer(response)) => Ok(response),
            // Borrowed where it lies, not moved into a local: the future keeps one copy.
            Ok(Routed::Forward(ref mut forward)) => forward.dispatch(&control, started).await,
            Err(failure) => Err(failure),
        };
        let mut response = match outcome {
            Ok(response) => response,
            Err((error, domain)) => {
                let response = error.into_response();
                if let Some(domain) = domain {
                    domain
                        .local_stats
                        .record(response.status().as_u16(), started.elapsed());
                }
                response
            }
        };
        let response_headers = response.headers_mut();
        headers::append_via(response_headers);
        response_headers.insert(&headers::X_REQUEST_ID, request_id.clone());
        if let Some((method, path)) = logged {
            tracing::debug!(
                request_id = request_id.to_str().unwrap_or(""),
                %method,
                path,
                status = response.status().as_u16(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "request"
            );
        }
        response
    }
}

type Failure = (GatewayError, Option<Arc<DomainTable>>);

/// Where a request goes: answered by the gateway itself, or forwarded.
enum Routed {
    Answer(Response<ProxyBody>),
    Forward(Forward),
}

/// A request ready for its upstream exchange.
struct Forward {
    domain: Arc<DomainTable>,
    group: Arc<EndpointGroup>,
    selection: Selection,
    outbound: Outbound,
    /// Taken by the first attempt.
    body: Option<ProxyBody>,
    has_body: bool,
}

impl Forward {
    /// Picks an upstream and sends; bodyless idempotent requests that fail before any response
    /// byte are retried once on another upstream of the group.
    async fn dispatch(
        &mut self,
        control: &Control,
        started: Instant,
    ) -> Result<Response<ProxyBody>, Failure> {
        self.send(control, started)
            .await
            .map_err(|error| (error, Some(self.domain.clone())))
    }

    async fn send(
        &mut self,
        control: &Control,
        started: Instant,
    ) -> Result<Response<ProxyBody>, GatewayError> {
        let Forward {
            domain,
            group,
            selection,
            outbound,
            body,
            has_body,
        } = self;
        let body = body.take().unwrap_or_else(empty_body);
        let first = pick(group, selection, None).ok_or(GatewayError::NoHealthyUpstream)?;
        let retryable = !*has_body && is_idempotent(&outbound.method);
        match send_to(control, domain, group, first, outbound, body, started).await {
            Err(SendFailure::BeforeResponse(error)) if retryable => {
                match pick(group, selection, Some(first)) {
                    Some(second) if second != first => {
                        tracing::debug!(
                            failed = group.candidates[first].upstream.identity(),
                            retry = group.candidates[second].upstream.identity(),
                            "retrying idempotent request on another upstream"
                        );
                        // The retry's clock starts now: its upstream's latency and its own
                        // timeout are the retry's, as they were the first attempt's.
                        send_to(
                            control,
                            domain,
                            group,
                            second,
                            outbound,
                            empty_body(),
                            Instant::now(),
                        )
                        .await
                        .map_err(SendFailure::into_error)
                    }
                    _ => Err(error),
                }
            }
            other => other.map_err(SendFailure::into_error),
        }
    }
}

/// Every stage before the upstream exchange, synchronously.
fn route(
    control: &Arc<Control>,
    connection: ConnectionInfo,
    request: Request<Incoming>,
    request_id: &HeaderValue,
) -> Result<Routed, Failure> {
    check_request(&request).map_err(|e| (e, None))?;
    let table = control.table_guard();
    let paths = &table.config.paths;

    // Local endpoints answer for every host and take precedence over upstream routes.
    if request.method() == Method::GET || request.method() == Method::HEAD {
        let path = request.uri().path();
        if path == paths.healthcheck {
            return Ok(Routed::Answer(local::healthcheck(control, &table)));
        }
        if path == paths.metrics {
            return Ok(Routed::Answer(local::metrics(control, &table)));
        }
        if path == paths.spec {
            let host = headers::request_host(request.uri(), request.headers());
            if let Some(domain) = table.domain_for(host.as_deref()) {
                return Ok(Routed::Answer(local::spec(domain, table.generation)));
            }
        }
    }

    // Looked up once: it picks the domain and is forwarded (or becomes `X-Forwarded-Host`).
    let host_header = request.headers().get(header::HOST).cloned();
    let host = headers::host_of(request.uri(), host_header.as_ref());
    let Some(domain) = table.domain_for(host.as_deref()).cloned() else {
        return Err((
            GatewayError::UnknownHost {
                host: host.map(|host| host.into_owned()).unwrap_or_default(),
            },
            None,
        ));
    };
    let fail = |error: GatewayError| (error, Some(domain.clone()));

    let original_path = request.uri().path();
    let stripped = headers::strip_extension(original_path, &domain.settings.ignore_extensions);
    let path = stripped.as_deref().unwrap_or(original_path);

    let group = match domain.routes.lookup(request.method(), path) {
        RouteMatch::Matched { group, .. } => group.clone(),
        RouteMatch::Options { allow } => return Ok(Routed::Answer(options_response(&allow))),
        RouteMatch::MethodNotAllowed { allow } => {
            return Err(fail(GatewayError::MethodNotAllowed {
                method: request.method().to_string(),
                allow,
            }))
        }
        RouteMatch::NotFound => {
            return Err(fail(GatewayError::NoRoute {
                path: path.to_owned(),
            }))
        }
    };

    let has_body = !request.body().is_end_stream();
    // Only a body has a media type to negotiate (and a length to check).
    let content_type = if has_body {
        request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    } else {
        None
    };
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let selection = match negotiate(&group.candidates, content_type, has_body, accept) {
        Ok(selection) => selection,
        Err(NegotiationError::UnsupportedMediaType) => {
            return Err(fail(GatewayError::UnsupportedMediaType {
                content_type: content_type.unwrap_or_default().to_owned(),
            }))
        }
        Err(NegotiationError::NotAcceptable) => return Err(fail(GatewayError::NotAcceptable)),
    };

    let max_body = table.config.max_request_body;
    if has_body && declared_length(&request).is_some_and(|length| length > max_body) {
        return Err(fail(GatewayError::BodyTooLarge { limit: max_body }));
    }

    if tracing::enabled!(tracing::Level::TRACE) {
        let client_address = headers::client_address(
            connection.peer.ip(),
            request.headers(),
            table.config.trust_proxies,
        );
        tracing::trace!(client_address, "client address");
    }
    let forwarded_proto =
        forwarded_proto(&request, connection, table.config.trust_x_forwarded_proto);
    let (parts, body) = request.into_parts();
    // The client's path and query, shared rather than copied, unless an extension was stripped.
    let path_and_query = match stripped {
        None => parts.uri.path_and_query().cloned(),
        Some(path) => match parts.uri.query() {
            Some(query) => PathAndQuery::try_from(format!("{path}?{query}")).ok(),
            None => PathAndQuery::try_from(path).ok(),
        },
    }
    .unwrap_or_else(|| PathAndQuery::from_static("/"));
    // HTTP/2 carries the host in the URI; the upstream (HTTP/1.1) needs a `Host` header.
    let authority_host = match host_header {
        Some(_) => None,
        None => parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };

    let mut outbound_headers = parts.headers;
    headers::remove_hop_by_hop(&mut outbound_headers);
    outbound_headers.remove(&headers::CLIENT_ADDRESS);
    headers::append_forwarded_for(&mut outbound_headers, connection.peer.ip());
    outbound_headers.insert(
        &headers::X_FORWARDED_PROTO,
        HeaderValue::from_static(forwarded_proto),
    );
    if let Some(host) = host_header.or_else(|| authority_host.clone()) {
        outbound_headers.insert(&headers::X_FORWARDED_HOST, host);
    }
    if let Some(host) = authority_host {
        outbound_headers.insert(header::HOST, host);
    }
    outbound_headers.insert(&headers::X_REQUEST_ID, request_id.clone());
    headers::append_via(&mut outbound_headers);

    let outbound = Outbound {
        method: parts.method,
        path_and_query,
        headers: outbound_headers,
    };
    let body: ProxyBody = if has_body {
        Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX))
            .map_err(|error| -> BoxError { error })
            .boxed()
    } else {
        empty_body()
    };

    Ok(Routed::Forward(Forward {
        domain,
        group,
        selection,
        outbound,
        body: Some(body),
        has_body,
    }))
}

/// Everything of the outbound request but its body and upstream.
pub(crate) struct Outbound {
    pub(crate) method: Method,
    pub(crate) path_and_query: PathAndQuery,
    pub(crate) headers: http::HeaderMap,
}

impl Outbound {
    /// The request for one attempt, in origin form (path and query): the upstream client adds
    /// what its scheme needs (`Host` if missing, an absolute URI for `https`).
    fn to_request(&self, body: ProxyBody) -> Request<ProxyBody> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = Uri::from(self.path_and_query.clone());
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = self.headers.clone();
        request
    }
}

enum SendFailure {
    /// Nothing reached the client and the upstream did not answer: safe to retry.
    BeforeResponse(GatewayError),
    Other(GatewayError),
}

impl SendFailure {
    fn into_error(self) -> GatewayError {
        match self {
            SendFailure::BeforeResponse(error) | SendFailure::Other(error) => error,
        }
    }
}

async fn send_to(
    control: &Control,
    domain: &DomainTable,
    group: &EndpointGroup,
    index: usize,
    outbound: &Outbound,
    body: ProxyBody,
    attempt_started: Instant,
) -> Result<Response<ProxyBody>, SendFailure> {
    let upstream = &group.candidates[index].upstream;
    if let Some(target) = &upstream.lambda_target {
        // Boxed for the same reason as the HTTP send below: the SDK's futures are large.
        let result = Box::pin(crate::lambda::invoke(
            control, domain, upstream, target, outbound, body,
        ))
        .await;
        let status = match &result {
            Ok(response) => response.status().as_u16(),
            Err(error) => error.status().as_u16(),
        };
        upstream.stats.record(status, attempt_started.elapsed());
        return result.map_err(SendFailure::Other);
    }
    let base = upstream
        .http_base
        .as_ref()
        .ok_or(SendFailure::Other(GatewayError::NoHealthyUpstream))?;
    let request = outbound.to_request(body);
    // Handed to an idle upstream connection here; `send` only waits for the response (72 bytes,
    // so it needs no box of its own).
    let send = control
        .client()
        .send_to(&base.scheme, &base.authority, request);
    let guard = upstream.begin_request();
    let timeout = domain.settings.request_timeout;
    // From the attempt's start, already read, rather than a clock read of its own.
    let deadline = tokio::time::Instant::from_std(attempt_started + timeout);
    let response = match request_timer::within(deadline, send).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            let failure = match &error {
                UpstreamError::Connect(_) => {
                    SendFailure::BeforeResponse(GatewayError::UpstreamConnect)
                }
                UpstreamError::Reset(_) => SendFailure::BeforeResponse(GatewayError::UpstreamReset),
                UpstreamError::RequestBody(_) => {
                    let too_large = error
                        .body_error()
                        .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
                    if too_large {
                        SendFailure::Other(GatewayError::BodyTooLarge {
                            limit: control.table().config.max_request_body,
                        })
                    } else {
                        SendFailure::Other(GatewayError::UpstreamReset)
                    }
                }
            };
            tracing::warn!(
                upstream = upstream.identity(),
                "upstream request failed: {error}"
            );
            upstream
                .stats
                .record(failure_status(&failure), attempt_started.elapsed());
            return Err(failure);
        }
        Err(_) => {
            upstream.stats.record(504, attempt_started.elapsed());
            return Err(SendFailure::Other(GatewayError::UpstreamTimeout {
                timeout_ms: timeout.as_millis(),
            }));
        }
    };
    upstream
        .stats
        .record(response.status().as_u16(), attempt_started.elapsed());
    let (mut parts, incoming) = response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers);
    let body = GuardedBody {
        inner: incoming,
        _guard: guard,
    };
    Ok(Response::from_parts(parts, body.boxed()))
}

fn failure_status(failure: &SendFailure) -> u16 {
    match failure {
        SendFailure::BeforeResponse(error) | SendFailure::Other(error) => error.status().as_u16(),
    }
}

/// A weighted pick among the negotiated candidates, optionally excluding one (for the retry).
fn pick(group: &EndpointGroup, selection: &Selection, exclude: Option<usize>) -> Option<usize> {
    match (selection, exclude) {
        (Selection::All, None) => group.picker.pick(),
        (Selection::All, Some(excluded)) => {
            let rest: Vec<usize> = (0..group.candidates.len())
                .filter(|i| *i != excluded)
                .collect();
            group.picker.pick_among(&rest)
        }
        (Selection::Subset(allowed), exclude) => {
            let rest: Vec<usize> = allowed
                .iter()
                .copied()
                .filter(|i| Some(*i) != exclude)
                .collect();
            group.picker.pick_among(&rest)
        }
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// Rejects requests the gateway must not forward: oversized header blocks, ambiguous framing
/// (both `Content-Length` and `Transfer-Encoding`: a request-smuggling vector) and more than
/// one `Host`.
fn check_request(request: &Request<Incoming>) -> Result<(), GatewayError> {
    // One pass over the header lines instead of a hashed lookup per rule.
    let (mut bytes, mut lengths, mut chunked, mut hosts) = (0, 0, false, 0);
    for (name, value) in request.headers() {
        bytes += name.as_str().len() + value.len() + 4;
        if name == header::CONTENT_LENGTH {
            lengths += 1;
        } else if name == header::TRANSFER_ENCODING {
            chunked = true;
        } else if name == header::HOST {
            hosts += 1;
        }
    }
    if bytes > MAX_HEADER_BYTES {
        return Err(GatewayError::HeadersTooLarge {
            limit: MAX_HEADER_BYTES,
        });
    }
    if lengths > 0 && chunked {
        return Err(GatewayError::MalformedRequest {
            reason: "both Content-Length and Transfer-Encoding are present",
        });
    }
    if lengths > 1 {
        return Err(GatewayError::MalformedRequest {
            reason: "more than one Content-Length",
        });
    }
    // RFC 9112 §3.2: which host is meant would be ambiguous (and the routing host and the
    // upstream's could differ).
    if hosts > 1 {
        return Err(GatewayError::MalformedRequest {
            reason: "more than one Host",
        });
    }
    Ok(())
}

fn declared_length(request: &Request<Incoming>) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn forwarded_proto(
    request: &Request<Incoming>,
    connection: ConnectionInfo,
    trust: bool,
) -> &'static str {
    if trust {
        match request
            .headers()
            .get(&headers::X_FORWARDED_PROTO)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("https") => return "https",
            Some("http") => return "http",
            _ => {}
        }
    }
    connection.scheme
}

fn options_response(allow: &str) -> Response<ProxyBody> {
    let mut response = Response::new(empty_body());
    *response.status_mut() = StatusCode::OK;
    if let Ok(value) = HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// An upstream response body that keeps the upstream's in-flight count up until it is
/// finished or dropped.
struct GuardedBody {
    inner: UpstreamBody,
    _guard: InFlightGuard,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(|error| -> BoxError { Box::new(error) })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
