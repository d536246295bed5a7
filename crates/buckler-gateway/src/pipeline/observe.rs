//! The last stage: every response, forwarded or made by the gateway, gets `Via` and
//! `X-Request-Id` (and the middleware's decorations, `RateLimit-*`); gateway-made errors are
//! counted for their domain; the request is logged at debug level, and reported to the
//! domain's access-log listeners when it has any.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use buckler_upstream::ProxyBody;
use bytes::Bytes;
use http::header::HeaderValue;
use http::request::Parts;
use http::{HeaderMap, Method, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::Failure;
use crate::headers;
use crate::middleware::{AccessStart, ChainRun, Listeners, TraceId};
use crate::table::EndpointGroup;

/// What the observe stage keeps from the request while it is handled.
pub(super) struct Observed {
    request_id: HeaderValue,
    started: Instant,
    /// Captured only when the request log line will be written: the hot path allocates
    /// nothing for logging when debug is off.
    logged: Option<(Method, String)>,
    /// The access-log record, when the request's domain (and endpoint) has listeners.
    access: Option<Box<AccessStart>>,
    /// Headers every response of the request gets (`RateLimit-*`).
    decorations: HeaderMap,
}

impl Observed {
    pub(super) fn new(parts: &Parts, request_id: HeaderValue, started: Instant) -> Observed {
        let logged = tracing::enabled!(tracing::Level::DEBUG)
            .then(|| (parts.method.clone(), parts.uri.path().to_owned()));
        Observed {
            request_id,
            started,
            logged,
            access: None,
            decorations: HeaderMap::new(),
        }
    }

    /// The request's domain is known: start its access-log record if it has listeners.
    pub(super) fn in_domain(
        &mut self,
        listeners: &Listeners,
        parts: &Parts,
        client_address: &str,
        trace_id: TraceId,
    ) {
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path(), |p| p.as_str());
        self.access = listeners.start(
            &parts.method,
            path,
            &parts.headers,
            client_address,
            trace_id,
        );
    }

    /// The request matched an endpoint group: its template, and its listeners.
    pub(super) fn routed(&mut self, group: &EndpointGroup) {
        if let Some(access) = self.access.take() {
            self.access = access.routed(&group.template, &group.listeners);
        }
    }

    /// What the middleware's request side left for every response: decorations, timings.
    pub(super) fn middleware(&mut self, run: &mut ChainRun) {
        self.decorations = std::mem::take(&mut run.decorations);
        if let Some(access) = &mut self.access {
            access.middleware(&run.timings);
        }
    }

    /// The client's request body, counted for the access log when the request has one.
    pub(super) fn client_body(&self, body: Incoming) -> ClientBody {
        ClientBody {
            inner: body,
            counted: self.access.as_ref().map(|access| access.bytes_in()),
        }
    }

    /// Turns the outcome into the response the client gets.
    pub(super) fn finish(
        self,
        outcome: Result<Response<ProxyBody>, Failure>,
    ) -> Response<ProxyBody> {
        let mut response = match outcome {
            Ok(response) => response,
            Err((error, domain)) => {
                let response = error.into_response();
                if let Some(domain) = domain {
                    domain
                        .local_stats
                        .record(response.status().as_u16(), self.started.elapsed());
                }
                response
            }
        };
        let response_headers = response.headers_mut();
        if !self.decorations.is_empty() {
            response_headers.extend(self.decorations);
        }
        headers::append_via(response_headers);
        response_headers.insert(&headers::X_REQUEST_ID, self.request_id.clone());
        if let Some((method, path)) = self.logged {
            tracing::debug!(
                request_id = self.request_id.to_str().unwrap_or(""),
                %method,
                path,
                status = response.status().as_u16(),
                elapsed_us = self.started.elapsed().as_micros() as u64,
                "request"
            );
        }
        match self.access {
            Some(access) => access.finish(
                response,
                self.request_id.to_str().unwrap_or(""),
                self.started,
            ),
            None => response,
        }
    }
}

/// The client's request body as it is read: each data frame's length is added to the
/// access-log record's `bytes_in` (when the request is logged), so chunked uploads and HTTP/2
/// bodies without `Content-Length` report the bytes that really arrived.
pub(crate) struct ClientBody {
    inner: Incoming,
    counted: Option<Arc<AtomicU64>>,
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Some(counted), Poll::Ready(Some(Ok(frame)))) = (&self.counted, &polled) {
            if let Some(data) = frame.data_ref() {
                counted.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
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
    use crate::error::GatewayError;
    use crate::pipeline::test_parts;

    #[test]
    fn every_response_carries_via_and_the_request_id() {
        let parts = test_parts("GET", "/x", &[]);
        let observed = Observed::new(&parts, HeaderValue::from_static("id-1"), Instant::now());
        let response = observed.finish(Err((GatewayError::NotAcceptable, None)));
        assert_eq!(response.status(), 406);
        assert_eq!(response.headers()["x-request-id"], "id-1");
        assert_eq!(response.headers()["via"], "1.1 buckler");
    }
}
