//! The upstream exchange: pick an upstream of the group by weight, send, and retry a request
//! that failed before any response byte on another upstream when that is safe.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use buckler_route::Selection;
use buckler_upstream::{empty_body, BoxError, ProxyBody, UpstreamBody, UpstreamError};
use bytes::Bytes;
use http::{Method, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::Failure;
use crate::control::Control;
use crate::error::GatewayError;
use crate::headers;
use crate::outbound::Outbound;
use crate::request_timer;
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

impl Forward {
    /// Picks an upstream and sends; bodyless idempotent requests that fail before any response
    /// byte are retried once on another upstream of the group.
    pub(super) async fn dispatch(
        self,
        control: &Control,
        body: ProxyBody,
        started: Instant,
    ) -> Result<Response<ProxyBody>, Failure> {
        self.send(control, body, started)
            .await
            .map_err(|error| (error, Some(self.domain.clone())))
    }

    async fn send(
        &self,
        control: &Control,
        body: ProxyBody,
        started: Instant,
    ) -> Result<Response<ProxyBody>, GatewayError> {
        let Forward {
            domain,
            group,
            selection,
            outbound,
            has_body,
            ..
        } = self;
        let first = pick(group, selection, None).ok_or(GatewayError::NoHealthyUpstream)?;
        let retryable = !*has_body && is_idempotent(&outbound.method);
        match self.send_to(control, first, body, started).await {
            Err(SendFailure::BeforeResponse(error)) if retryable => {
                match pick(group, selection, Some(first)) {
                    Some(second) if second != first => {
                        tracing::debug!(
                            domain = %domain.settings.domain_name,
                            failed = group.candidates[first].upstream.identity(),
                            retry = group.candidates[second].upstream.identity(),
                            "retrying idempotent request on another upstream"
                        );
                        // The retry's clock starts now: its upstream's latency and its own
                        // timeout are the retry's, as they were the first attempt's.
                        self.send_to(control, second, empty_body(), Instant::now())
                            .await
                            .map_err(SendFailure::into_error)
                    }
                    _ => Err(error),
                }
            }
            other => other.map_err(SendFailure::into_error),
        }
    }

    /// One attempt on candidate `index` of the group.
    async fn send_to(
        &self,
        control: &Control,
        index: usize,
        body: ProxyBody,
        attempt_started: Instant,
    ) -> Result<Response<ProxyBody>, SendFailure> {
        let upstream = &self.group.candidates[index].upstream;
        let timeout = self.domain.settings.request_timeout;
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
            return result.map_err(SendFailure::Other);
        }
        let base = upstream
            .http_base
            .as_ref()
            .ok_or(SendFailure::Other(GatewayError::NoHealthyUpstream))?;
        let request = self.outbound.to_request(body);
        let send = control
            .client()
            .send_to(&base.scheme, &base.authority, request);
        let guard = upstream.begin_request();
        // From the attempt's start, already read, rather than a clock read of its own.
        let deadline = tokio::time::Instant::from_std(attempt_started + timeout);
        let response = match request_timer::within(deadline, send).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                let failure = classify(&error, self.max_body);
                tracing::warn!(
                    upstream = upstream.identity(),
                    "upstream request failed: {error}"
                );
                upstream
                    .stats
                    .record(failure.status(), attempt_started.elapsed());
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
}

/// How an attempt failed, as far as a retry is concerned.
#[derive(Debug)]
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

    fn status(&self) -> u16 {
        match self {
            SendFailure::BeforeResponse(error) | SendFailure::Other(error) => {
                error.status().as_u16()
            }
        }
    }
}

/// The gateway's error for an upstream client failure.
fn classify(error: &UpstreamError, max_body: u64) -> SendFailure {
    match error {
        UpstreamError::Connect(_) => SendFailure::BeforeResponse(GatewayError::UpstreamConnect),
        UpstreamError::Reset(_) => SendFailure::BeforeResponse(GatewayError::UpstreamReset),
        UpstreamError::RequestBody(_) => {
            let too_large = error
                .body_error()
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            if too_large {
                SendFailure::Other(GatewayError::BodyTooLarge { limit: max_body })
            } else {
                SendFailure::Other(GatewayError::UpstreamReset)
            }
        }
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

    #[test]
    fn only_idempotent_methods_are_retried() {
        for method in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(is_idempotent(&method), "{method}");
        }
        for method in [Method::POST, Method::PATCH] {
            assert!(!is_idempotent(&method), "{method}");
        }
    }

    #[test]
    fn connect_and_reset_failures_may_be_retried_others_not() {
        let boxed = || -> BoxError { "x".into() };
        assert!(matches!(
            classify(&UpstreamError::Connect(boxed()), 1),
            SendFailure::BeforeResponse(GatewayError::UpstreamConnect)
        ));
        assert!(matches!(
            classify(&UpstreamError::Reset(boxed()), 1),
            SendFailure::BeforeResponse(GatewayError::UpstreamReset)
        ));
        assert!(matches!(
            classify(&UpstreamError::RequestBody(boxed()), 1),
            SendFailure::Other(GatewayError::UpstreamReset)
        ));
    }
}
