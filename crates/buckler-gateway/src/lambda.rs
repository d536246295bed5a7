//! Dispatch to Lambda upstreams: the request body is collected (Lambda takes one payload, at
//! most 6 MB), wrapped in the JSON envelope, invoked synchronously within the domain's
//! `request-timeout`, and the function's envelope becomes the response.

use std::sync::Arc;

use buckler_upstream::{
    full_body, InvokeFailure, LambdaTarget, ProxyBody, RequestEnvelope, ResponseEnvelope,
    MAX_PAYLOAD_BYTES,
};
use http::Response;
use http_body_util::BodyExt;

use buckler_upstream::LambdaInvoker;

use crate::error::GatewayError;
use crate::outbound::Outbound;
use crate::request_timer;
use crate::table::DomainTable;
use crate::upstream::UpstreamHandle;

/// Invokes `target` for the outbound request.
pub(crate) async fn invoke(
    lambda: &LambdaInvoker,
    domain: &DomainTable,
    upstream: &Arc<UpstreamHandle>,
    target: &LambdaTarget,
    outbound: &Outbound,
    body: ProxyBody,
) -> Result<Response<ProxyBody>, GatewayError> {
    let body = collect_limited(body, MAX_PAYLOAD_BYTES).await?;
    let envelope = RequestEnvelope::new(
        outbound.method.as_str(),
        outbound.path_and_query.as_str(),
        outbound.headers.iter(),
        (!body.is_empty()).then_some(&body[..]),
    );
    let payload = envelope.to_payload();
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(GatewayError::BodyTooLarge {
            limit: MAX_PAYLOAD_BYTES as u64,
        });
    }
    let _guard = upstream.begin_request();
    let timeout = domain.settings.request_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let reply = request_timer::within(deadline, lambda.invoke(target, payload))
        .await
        .map_err(|_| GatewayError::UpstreamTimeout {
            timeout_ms: timeout.as_millis(),
        })?
        .map_err(invoke_error)?;
    let envelope =
        ResponseEnvelope::parse(&reply).map_err(|e| GatewayError::LambdaBadResponse {
            cause: e.to_string(),
        })?;
    let mut response = Response::new(full_body(envelope.body));
    *response.status_mut() = envelope.status;
    for (name, value) in envelope.headers {
        response.headers_mut().append(name, value);
    }
    crate::headers::remove_hop_by_hop(response.headers_mut());
    response.headers_mut().remove(http::header::CONTENT_LENGTH);
    Ok(response)
}

/// Collects a request body of at most `limit` bytes (a body over the gateway's own
/// `max-request-body` fails with the limiter's error, also answered 413).
async fn collect_limited(mut body: ProxyBody, limit: usize) -> Result<bytes::Bytes, GatewayError> {
    let mut collected = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                GatewayError::BodyTooLarge {
                    limit: limit as u64,
                }
            } else {
                GatewayError::MalformedRequest {
                    reason: "the request body could not be read",
                }
            }
        })?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                return Err(GatewayError::BodyTooLarge {
                    limit: limit as u64,
                });
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

fn invoke_error(failure: InvokeFailure) -> GatewayError {
    match failure {
        InvokeFailure::FunctionError { kind, detail } => GatewayError::LambdaFunctionError {
            detail: format!("{kind}: {detail}"),
        },
        InvokeFailure::Throttled {
            retry_after_seconds,
        } => GatewayError::LambdaThrottled {
            retry_after_seconds,
        },
        InvokeFailure::PayloadTooLarge => GatewayError::BodyTooLarge {
            limit: MAX_PAYLOAD_BYTES as u64,
        },
        InvokeFailure::Service(cause) => GatewayError::LambdaInvokeFailed { cause },
    }
}

/// The upstream's Swagger 2.0 document, obtained by invoking the function with a
/// `GET {path}` envelope; it must answer status 200.
pub(crate) async fn fetch_document(
    lambda: &LambdaInvoker,
    target: &LambdaTarget,
    path: &str,
    timeout: std::time::Duration,
) -> Result<bytes::Bytes, String> {
    let payload = RequestEnvelope::new("GET", path, std::iter::empty(), None).to_payload();
    let reply = tokio::time::timeout(timeout, lambda.invoke(target, payload))
        .await
        .map_err(|_| {
            format!(
                "invoking {} for GET {path}: no answer within {timeout:?}",
                target.function_name
            )
        })?
        .map_err(|e| format!("invoking {} for GET {path}: {e}", target.function_name))?;
    let envelope = ResponseEnvelope::parse(&reply)
        .map_err(|e| format!("invoking {} for GET {path}: {e}", target.function_name))?;
    if envelope.status != http::StatusCode::OK {
        return Err(format!(
            "invoking {} for GET {path}: status {}, expected 200",
            target.function_name, envelope.status
        ));
    }
    Ok(envelope.body)
}
