//! The upstream exchange: pick an upstream of the group by weight (skipping open breakers,
//! full upstreams and failed health checks), send, and retry a request that failed before any
//! response byte on another upstream when that is safe and the domain's retry budget allows.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use buckler_policy::retry::{should_buffer_for_retry, MAX_RETRY_BODY_BYTES};
use buckler_policy::{is_retryable, AttemptFailure, BodyReplay};
use buckler_route::Selection;
use buckler_upstream::{empty_body, full_body, BoxError, ProxyBody, UpstreamBody, UpstreamError};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};

use super::observe::ClientBody;
use super::select::{self, Attempt};
use super::Failure;
use crate::control::Control;
use crate::error::GatewayError;
use crate::headers;
use crate::middleware::UpstreamUsed;
use crate::outbound::Outbound;
use crate::request_timer;
use crate::resilience::bodies::{IdleCut, Upload, UploadFault, UploadState};
use crate::table::{DomainTable, EndpointGroup};
use crate::upstream::InFlightGuard;

/// A request ready for its upstream exchange.
pub(super) struct Forward {
    pub(super) domain: Arc<DomainTable>,
    pub(super) group: Arc<EndpointGroup>,
    pub(super) selection: Selection,
    pub(super) outbound: Outbound,
    pub(super) has_body: bool,
    pub(super) max_body: u64,
}

/// The request body as the attempts send it.
enum Prepared {
    /// No body: every attempt sends none.
    Empty,
    /// Read whole (idempotent, at most 64 KiB): every attempt sends a copy.
    Buffered(Bytes),
    /// Streams from the client: one attempt only. Taken by the first attempt.
    Streaming(Option<ProxyBody>, Arc<UploadState>),
}

impl Prepared {
    fn replay(&self) -> BodyReplay {
        match self {
            Prepared::Empty => BodyReplay::Empty,
            Prepared::Buffered(bytes) => BodyReplay::Buffered(bytes.len() as u64),
            Prepared::Streaming(..) => BodyReplay::Streaming,
        }
    }

    /// The body for the next attempt, and the upload state when it streams.
    fn next(&mut self) -> (ProxyBody, Option<Arc<UploadState>>) {
        match self {
            Prepared::Empty => (empty_body(), None),
            Prepared::Buffered(bytes) => (full_body(bytes.clone()), None),
            Prepared::Streaming(body, state) => {
                (body.take().unwrap_or_else(empty_body), Some(state.clone()))
            }
        }
    }
}

impl Forward {
    /// Reads or wraps the client's body, picks an upstream and sends; a failure before any
    /// response byte is retried elsewhere when SPEC §9 allows it.
    pub(super) async fn dispatch(
        self,
        control: &Control,
        body: ClientBody,
        started: Instant,
    ) -> Result<Response<ProxyBody>, Failure> {
        self.send(control, body, started)
            .await
            .map_err(|error| (error, Some(self.domain.clone())))
    }

    /// The client's body, bounded by `max-request-body` and `body-idle-timeout`: read whole
    /// when it may be retried, else streamed.
    async fn prepare(&self, body: ClientBody) -> Result<Prepared, GatewayError> {
        if !self.has_body {
            return Ok(Prepared::Empty);
        }
        let settings = &self.domain.settings;
        let state = Arc::new(UploadState::default());
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        let upload = Limited::new(
            Upload::new(body, settings.body_idle_timeout, state.clone()),
            limit,
        );
        let declared = self
            .outbound
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let buffer = settings.retry.attempts > 0
            && should_buffer_for_retry(&self.outbound.method, declared)
            && declared.is_some_and(|len| len <= self.max_body);
        if !buffer {
            let body = upload.map_err(|error| -> BoxError { error }).boxed();
            return Ok(Prepared::Streaming(Some(body), state));
        }
        match upload.collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                debug_assert!(bytes.len() as u64 <= MAX_RETRY_BODY_BYTES);
                Ok(Prepared::Buffered(bytes))
            }
            Err(error) => Err(client_body_error(
                &*error,
                state.fault(),
                self.max_body,
                settings,
            )),
        }
    }

    async fn send(
        &self,
        control: &Control,
        body: ClientBody,
        started: Instant,
    ) -> Result<Response<ProxyBody>, GatewayError> {
        let Forward {
            domain,
            group,
            selection,
            outbound,
            ..
        } = self;
        // Picked before the body is read: an open circuit answers at once.
        let (mut index, mut attempt) =
            select::pick(group, selection, &[])?.ok_or(GatewayError::NoHealthyUpstream)?;
        let mut prepared = self.prepare(body).await?;
        let mut in_flight = domain.resilience.budget.start_request();
        let mut tried: smallvec::SmallVec<[usize; 2]> = smallvec::SmallVec::new();
        let mut attempt_started = started;
        // Held until the retry has its answer: the budget counts retries in flight.
        let mut _retry = None;
        loop {
            tried.push(index);
            let (body, upload) = prepared.next();
            let failure = match self
                .send_to(control, index, attempt, body, upload, attempt_started)
                .await
            {
                Ok(response) => return Ok(response),
                Err(failure) => failure,
            };
            if !is_retryable(&outbound.method, prepared.replay(), failure.kind) {
                return Err(failure.error);
            }
            let Some(mut next_pick) = select::pick(group, selection, &tried)? else {
                return Err(failure.error);
            };
            let Some(retry) = domain.resilience.retry_slot(&mut in_flight).await else {
                if in_flight.retries_done() < domain.settings.retry.attempts {
                    domain.resilience.count_retry(false);
                }
                return Err(failure.error);
            };
            if retry.waited() {
                // Breakers and health may have moved while the retry waited for its place.
                match select::pick(group, selection, &tried)? {
                    Some(pick) => next_pick = pick,
                    None => return Err(failure.error),
                }
            }
            let (next, next_attempt) = next_pick;
            domain.resilience.count_retry(true);
            tracing::debug!(
                domain = %domain.settings.domain_name,
                failed = group.candidates[index].upstream.identity(),
                retry = group.candidates[next].upstream.identity(),
                "retrying on another upstream: {}", failure.error
            );
            _retry = Some(retry);
            index = next;
            attempt = next_attempt;
            // The retry's clock starts now: its upstream's latency and its own timeout are
            // the retry's, as they were the first attempt's.
            attempt_started = Instant::now();
        }
    }

    /// One attempt on candidate `index` of the group; reports its outcome to the breakers.
    async fn send_to(
        &self,
        control: &Control,
        index: usize,
        attempt: Attempt<'_>,
        body: ProxyBody,
        upload: Option<Arc<UploadState>>,
        attempt_started: Instant,
    ) -> Result<Response<ProxyBody>, SendFailure> {
        let upstream = &self.group.candidates[index].upstream;
        let result = self
            .exchange(control, index, body, upload.as_deref(), attempt_started)
            .await;
        let verdict = match &result {
            Ok(response) => Some(!response.status().is_server_error()),
            Err(failure) if failure.clients_fault => None,
            Err(_) => Some(false),
        };
        let (upstream_opened, endpoint_opened) = attempt.record(verdict);
        if upstream_opened || endpoint_opened {
            tracing::warn!(
                domain = %self.domain.settings.domain_name,
                upstream = upstream.identity(),
                scope = if upstream_opened { "upstream" } else { "endpoint" },
                reset_timeout_ms = self.domain.settings.circuit_breaker.reset_timeout.as_millis() as u64,
                "circuit breaker opened"
            );
        }
        result
    }

    async fn exchange(
        &self,
        control: &Control,
        index: usize,
        body: ProxyBody,
        upload: Option<&UploadState>,
        attempt_started: Instant,
    ) -> Result<Response<ProxyBody>, SendFailure> {
        let upstream = &self.group.candidates[index].upstream;
        let settings = &self.domain.settings;
        let timeout = settings.request_timeout;
        if let Some(target) = &upstream.lambda_target {
            let lambda = control.lambda();
            // Boxed: the SDK's futures are large.
            let result = Box::pin(crate::lambda::invoke(
                &lambda,
                &self.domain,
                upstream,
                target,
                &self.outbound,
                body,
            ))
            .await;
            let status = match &result {
                Ok(response) => response.status().as_u16(),
                Err(error) => error.status().as_u16(),
            };
            upstream.stats.record(status, attempt_started.elapsed());
            let result = result.map(|mut response| {
                // Which upstream answered, for the access log (only read when there is one).
                if !self.group.listeners.is_empty() {
                    response.extensions_mut().insert(UpstreamUsed {
                        upstream: upstream.clone(),
                        elapsed: attempt_started.elapsed(),
                    });
                }
                response
            });
            return result.map_err(|error| {
                let fault = upload.and_then(UploadState::fault);
                match fault {
                    Some(fault) => SendFailure::client(upload_error(fault, settings)),
                    None if error.status().is_client_error() => SendFailure::client(error),
                    None => SendFailure::other(error),
                }
            });
        }
        let base = upstream
            .http_base
            .as_ref()
            .ok_or(SendFailure::other(GatewayError::NoHealthyUpstream))?;
        let unknown_length = body.size_hint().exact().is_none() && !body.is_end_stream();
        let mut request = self.outbound.to_request(body);
        if unknown_length && matches!(*request.method(), Method::GET | Method::HEAD) {
            // hyper sends no body for a GET or HEAD of unknown length unless asked to chunk
            // it; a Content-Length body of the same request goes through, so this one must.
            request.headers_mut().insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        // The domain's pool (its connect timeout, trust and protocol).
        let pool = self
            .domain
            .pool
            .as_ref()
            .unwrap_or_else(|| control.client().default_pool());
        let send = pool.send_to(&base.scheme, &base.authority, request);
        let guard = upstream.begin_request();
        let outcome = match upload {
            // `request-timeout` counts from the request's last byte sent: a slow, steady
            // upload is bounded by `body-idle-timeout`, not by this.
            Some(upload) => {
                let after_upload = async {
                    upload.finished().await;
                    tokio::time::sleep(timeout).await;
                };
                tokio::select! {
                    biased;
                    result = send => Ok(result),
                    () = after_upload => Err(()),
                }
            }
            None => {
                // From the attempt's start, already read, rather than a clock read of its own.
                let deadline = tokio::time::Instant::from_std(attempt_started + timeout);
                request_timer::within(deadline, send).await.map_err(|_| ())
            }
        };
        let response = match outcome {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                let failure = classify(
                    &error,
                    upload.and_then(UploadState::fault),
                    self.max_body,
                    settings,
                );
                if !failure.clients_fault {
                    tracing::warn!(
                        upstream = upstream.identity(),
                        "upstream request failed: {error}"
                    );
                }
                upstream
                    .stats
                    .record(failure.error.status().as_u16(), attempt_started.elapsed());
                return Err(failure);
            }
            Err(()) => {
                upstream.stats.record(504, attempt_started.elapsed());
                return Err(SendFailure::other(GatewayError::UpstreamTimeout {
                    timeout_ms: timeout.as_millis(),
                }));
            }
        };
        upstream
            .stats
            .record(response.status().as_u16(), attempt_started.elapsed());
        let (mut parts, incoming) = response.into_parts();
        // Framed by the chunked coding (RFC 9112 §6.3): a length beside it is stale.
        if parts.headers.contains_key(header::TRANSFER_ENCODING) {
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        headers::remove_hop_by_hop(&mut parts.headers);
        // Which upstream answered, for the access log (only read when there is one).
        if !self.group.listeners.is_empty() {
            parts.extensions.insert(UpstreamUsed {
                upstream: upstream.clone(),
                elapsed: attempt_started.elapsed(),
            });
        }
        let body = GuardedBody {
            inner: incoming,
            _guard: guard,
        };
        let body = IdleCut::new(body, settings.body_idle_timeout);
        Ok(Response::from_parts(parts, body.boxed()))
    }
}

/// How an attempt failed: the gateway's error, what it means for a retry, and whether it was
/// the client's doing (then it never counts against the upstream's breakers).
#[derive(Debug)]
struct SendFailure {
    error: GatewayError,
    kind: AttemptFailure,
    clients_fault: bool,
}

impl SendFailure {
    fn other(error: GatewayError) -> Self {
        SendFailure {
            error,
            kind: AttemptFailure::Other,
            clients_fault: false,
        }
    }

    fn client(error: GatewayError) -> Self {
        SendFailure {
            error,
            kind: AttemptFailure::Other,
            clients_fault: true,
        }
    }
}

/// The gateway's error for a failed upload.
fn upload_error(fault: UploadFault, settings: &buckler_config::DomainConfig) -> GatewayError {
    match fault {
        UploadFault::Malformed => GatewayError::MalformedRequest {
            reason: "the request body is malformed or incomplete",
        },
        UploadFault::Stalled => GatewayError::RequestBodyTimeout {
            timeout_ms: settings.body_idle_timeout.as_millis(),
        },
    }
}

/// The gateway's error for a client body that failed while it was read or sent.
fn client_body_error(
    error: &(dyn std::error::Error + 'static),
    fault: Option<UploadFault>,
    max_body: u64,
    settings: &buckler_config::DomainConfig,
) -> GatewayError {
    if error.is::<http_body_util::LengthLimitError>() {
        return GatewayError::BodyTooLarge { limit: max_body };
    }
    upload_error(fault.unwrap_or(UploadFault::Malformed), settings)
}

/// The gateway's error for an upstream client failure. A failed upload is the client's fault
/// whatever the upstream client calls it.
fn classify(
    error: &UpstreamError,
    fault: Option<UploadFault>,
    max_body: u64,
    settings: &buckler_config::DomainConfig,
) -> SendFailure {
    if let Some(fault) = fault {
        return SendFailure::client(upload_error(fault, settings));
    }
    match error {
        UpstreamError::Connect(_) => SendFailure {
            error: GatewayError::UpstreamConnect,
            kind: AttemptFailure::Connect,
            clients_fault: false,
        },
        UpstreamError::Reset(_) => SendFailure {
            error: GatewayError::UpstreamReset,
            kind: AttemptFailure::ResetBeforeResponse,
            clients_fault: false,
        },
        UpstreamError::RequestBody(_) => match error.body_error() {
            Some(body_error) if body_error.is::<http_body_util::LengthLimitError>() => {
                SendFailure::client(GatewayError::BodyTooLarge { limit: max_body })
            }
            _ => SendFailure::other(GatewayError::UpstreamReset),
        },
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> buckler_config::DomainConfig {
        let config = buckler_config::parse(
            r#"{ listen: "127.0.0.1:0", domains: [{ "domain-name": "*", upstreams: [] }] }"#,
            std::path::Path::new("test.json5"),
        )
        .unwrap();
        config.domains[0].clone()
    }

    #[test]
    fn connect_and_reset_failures_may_be_retried_others_not() {
        let boxed = || -> BoxError { "x".into() };
        let s = settings();
        let connect = classify(&UpstreamError::Connect(boxed()), None, 1, &s);
        assert!(matches!(connect.error, GatewayError::UpstreamConnect));
        assert_eq!(connect.kind, AttemptFailure::Connect);
        let reset = classify(&UpstreamError::Reset(boxed()), None, 1, &s);
        assert!(matches!(reset.error, GatewayError::UpstreamReset));
        assert_eq!(reset.kind, AttemptFailure::ResetBeforeResponse);
        let body = classify(&UpstreamError::RequestBody(boxed()), None, 1, &s);
        assert_eq!(body.kind, AttemptFailure::Other);
        assert!(!body.clients_fault);
    }

    /// A malformed or stalled upload is the client's: 400 / 408, never a strike against the
    /// upstream, however the upstream client reported it.
    #[test]
    fn a_failed_upload_is_the_clients_fault() {
        let boxed = || -> BoxError { "x".into() };
        let s = settings();
        let malformed = classify(
            &UpstreamError::Reset(boxed()),
            Some(UploadFault::Malformed),
            1,
            &s,
        );
        assert!(malformed.clients_fault);
        assert_eq!(malformed.error.status(), 400);
        let stalled = classify(
            &UpstreamError::RequestBody(boxed()),
            Some(UploadFault::Stalled),
            1,
            &s,
        );
        assert!(stalled.clients_fault);
        assert_eq!(stalled.error.status(), 408);
    }
}
