//! AWS Lambda upstreams: the JSON envelope a function sees and answers with, and synchronous
//! invocation through `aws-sdk-lambda`, one client per (region, endpoint) shared by every
//! upstream that uses it.
//!
//! Request envelope: `{"method", "uri", "headers": [[name, value], ...], "body"?}` with header
//! names lower-cased, order and duplicates kept, and `body` the standard base64 (with padding)
//! of the raw bytes, omitted when there is none. Response envelope: `{"status", "headers"?,
//! "body"?}` with the same shapes; `status` must be 100–599 and `body` strict base64.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_lambda::config::retry::RetryConfig;
use aws_sdk_lambda::config::Region;
use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

/// Lambda's synchronous payload limit: larger requests are refused before invoking.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// The request as the function receives it.
#[derive(Debug, Serialize)]
pub struct RequestEnvelope<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub headers: Vec<[String; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl<'a> RequestEnvelope<'a> {
    /// Builds the envelope: header names lower-cased (order and repeats kept), values as text
    /// (non-UTF-8 bytes replaced), body base64-encoded when present and non-empty.
    pub fn new<'h>(
        method: &'a str,
        uri: &'a str,
        headers: impl IntoIterator<Item = (&'h HeaderName, &'h HeaderValue)>,
        body: Option<&[u8]>,
    ) -> Self {
        RequestEnvelope {
            method,
            uri,
            headers: headers
                .into_iter()
                .map(|(name, value)| {
                    [
                        name.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    ]
                })
                .collect(),
            body: body.filter(|b| !b.is_empty()).map(|b| STANDARD.encode(b)),
        }
    }

    /// The JSON payload.
    pub fn to_payload(&self) -> Vec<u8> {
        // Serialising strings and vectors of strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResponse {
    status: serde_json::Value,
    #[serde(default)]
    headers: Option<Vec<(String, String)>>,
    #[serde(default)]
    body: Option<String>,
}

/// The function's answer, validated.
#[derive(Debug)]
pub struct ResponseEnvelope {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// Why a function's answer is not a usable HTTP response.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the function's payload is not a response envelope: {0}")]
    Shape(String),
    #[error("the function's status {0} is not an HTTP status (100-599)")]
    Status(String),
    #[error("the function's header {0:?} is not a valid HTTP header")]
    Header(String),
    #[error("the function's body is not valid base64: {0}")]
    Base64(String),
}

impl ResponseEnvelope {
    /// Parses and validates a response payload.
    pub fn parse(payload: &[u8]) -> Result<Self, EnvelopeError> {
        let raw: RawResponse =
            serde_json::from_slice(payload).map_err(|e| EnvelopeError::Shape(e.to_string()))?;
        let status = raw
            .status
            .as_u64()
            .filter(|s| (100..=599).contains(s))
            .and_then(|s| StatusCode::from_u16(s as u16).ok())
            .ok_or_else(|| EnvelopeError::Status(raw.status.to_string()))?;
        let mut headers = Vec::new();
        for (name, value) in raw.headers.unwrap_or_default() {
            let parsed_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| EnvelopeError::Header(name.clone()))?;
            let parsed_value =
                HeaderValue::from_str(&value).map_err(|_| EnvelopeError::Header(name.clone()))?;
            headers.push((parsed_name, parsed_value));
        }
        let body = match raw.body {
            Some(text) => Bytes::from(
                STANDARD
                    .decode(text.as_bytes())
                    .map_err(|e| EnvelopeError::Base64(e.to_string()))?,
            ),
            None => Bytes::new(),
        };
        Ok(ResponseEnvelope {
            status,
            headers,
            body,
        })
    }
}

/// A function to invoke.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LambdaTarget {
    /// Function name or ARN (without qualifier).
    pub function_name: String,
    pub qualifier: Option<String>,
    pub region: String,
}

/// Why an invocation produced no usable payload.
#[derive(Debug, thiserror::Error)]
pub enum InvokeFailure {
    #[error("the function failed ({kind}): {detail}")]
    FunctionError { kind: String, detail: String },
    #[error("Lambda throttled the invocation")]
    Throttled { retry_after_seconds: Option<u64> },
    #[error("the request payload exceeds Lambda's {MAX_PAYLOAD_BYTES}-byte limit")]
    PayloadTooLarge,
    #[error("the Lambda invocation failed: {0}")]
    Service(String),
}

/// Invokes functions synchronously. Clients are built on first use per (region, endpoint)
/// from the standard AWS configuration chain (credentials, `AWS_ENDPOINT_URL_LAMBDA`, ...),
/// with the SDK's retries disabled so the gateway's own `request-timeout` is the one that holds.
#[derive(Debug, Default)]
pub struct LambdaInvoker {
    endpoint_url: Option<String>,
    clients: tokio::sync::Mutex<HashMap<String, aws_sdk_lambda::Client>>,
    /// Memo of the last client by region, to avoid the async lock on the hot path.
    cached: Mutex<HashMap<String, aws_sdk_lambda::Client>>,
}

impl LambdaInvoker {
    /// An invoker using `endpoint_url` (the config's `lambda.endpoint-url`) when given,
    /// otherwise the SDK's own endpoint resolution.
    pub fn new(endpoint_url: Option<String>) -> Self {
        LambdaInvoker {
            endpoint_url,
            ..Default::default()
        }
    }

    async fn client(&self, region: &str) -> aws_sdk_lambda::Client {
        if let Some(client) = self.cached.lock().ok().and_then(|c| c.get(region).cloned()) {
            return client;
        }
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(region) {
            return client.clone();
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .retry_config(RetryConfig::disabled());
        if let Some(endpoint) = &self.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let client = aws_sdk_lambda::Client::new(&loader.load().await);
        clients.insert(region.to_owned(), client.clone());
        if let Ok(mut cached) = self.cached.lock() {
            cached.insert(region.to_owned(), client.clone());
        }
        client
    }

    /// Invokes `target` with `payload` (RequestResponse) and returns the function's payload.
    pub async fn invoke(
        &self,
        target: &LambdaTarget,
        payload: Vec<u8>,
    ) -> Result<Bytes, InvokeFailure> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(InvokeFailure::PayloadTooLarge);
        }
        let client = self.client(&target.region).await;
        let output = client
            .invoke()
            .function_name(&target.function_name)
            .set_qualifier(target.qualifier.clone())
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(classify)?;
        let payload = output
            .payload()
            .map(|p| Bytes::copy_from_slice(p.as_ref()))
            .unwrap_or_default();
        if let Some(kind) = output.function_error() {
            let detail = String::from_utf8_lossy(&payload[..payload.len().min(512)]).into_owned();
            return Err(InvokeFailure::FunctionError {
                kind: kind.to_owned(),
                detail,
            });
        }
        Ok(payload)
    }
}

fn classify(
    error: SdkError<InvokeError, aws_sdk_lambda::config::http::HttpResponse>,
) -> InvokeFailure {
    if let Some(service) = error.as_service_error() {
        return match service {
            InvokeError::TooManyRequestsException(throttle) => InvokeFailure::Throttled {
                retry_after_seconds: throttle
                    .retry_after_seconds()
                    .and_then(|s| s.trim().parse().ok()),
            },
            InvokeError::RequestTooLargeException(_) => InvokeFailure::PayloadTooLarge,
            other => InvokeFailure::Service(format!("{other}")),
        };
    }
    let status = error.raw_response().map(|r| r.status().as_u16());
    if status == Some(429) {
        return InvokeFailure::Throttled {
            retry_after_seconds: None,
        };
    }
    InvokeFailure::Service(format!(
        "{}",
        aws_sdk_lambda::error::DisplayErrorContext(&error)
    ))
}

/// A timeout helper kept here so callers do not need to know the SDK's error types.
pub async fn with_timeout<T>(
    timeout: Duration,
    future: impl std::future::Future<Output = Result<T, InvokeFailure>>,
) -> Option<Result<T, InvokeFailure>> {
    tokio::time::timeout(timeout, future).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_envelope_keeps_order_duplicates_and_lowercases() {
        let mut headers = http::HeaderMap::new();
        headers.append("X-One", HeaderValue::from_static("1"));
        headers.append("x-one", HeaderValue::from_static("2"));
        headers.append("Content-Type", HeaderValue::from_static("application/json"));
        let envelope = RequestEnvelope::new(
            "POST",
            "/orders/7?verbose=1",
            headers.iter(),
            Some(b"{\"qty\":2}"),
        );
        let json: serde_json::Value = serde_json::from_slice(&envelope.to_payload()).unwrap();
        assert_eq!(json["method"], "POST");
        assert_eq!(json["uri"], "/orders/7?verbose=1");
        assert_eq!(
            json["headers"],
            serde_json::json!([
                ["x-one", "1"],
                ["x-one", "2"],
                ["content-type", "application/json"]
            ])
        );
        assert_eq!(json["body"], "eyJxdHkiOjJ9");
        let bodyless = RequestEnvelope::new("GET", "/", std::iter::empty(), None);
        let json: serde_json::Value = serde_json::from_slice(&bodyless.to_payload()).unwrap();
        assert!(json.get("body").is_none());
    }

    #[test]
    fn response_envelope_rules() {
        let ok = ResponseEnvelope::parse(br#"{"status": 201, "headers": [["content-type", "text/plain"], ["x-a", "1"], ["x-a", "2"]], "body": "aGk="}"#).unwrap();
        assert_eq!(ok.status, StatusCode::CREATED);
        assert_eq!(ok.headers.len(), 3);
        assert_eq!(&ok.body[..], b"hi");
        let minimal = ResponseEnvelope::parse(br#"{"status": 204}"#).unwrap();
        assert!(minimal.headers.is_empty() && minimal.body.is_empty());
        assert!(matches!(
            ResponseEnvelope::parse(br#"{"status": 600}"#),
            Err(EnvelopeError::Status(_))
        ));
        assert!(matches!(
            ResponseEnvelope::parse(br#"{"status": "200"}"#),
            Err(EnvelopeError::Status(_))
        ));
        assert!(matches!(
            ResponseEnvelope::parse(br#"{"status": 99}"#),
            Err(EnvelopeError::Status(_))
        ));
        assert!(matches!(
            ResponseEnvelope::parse(br#"{"headers": []}"#),
            Err(EnvelopeError::Shape(_))
        ));
        assert!(matches!(
            ResponseEnvelope::parse(b"not json"),
            Err(EnvelopeError::Shape(_))
        ));
        assert!(matches!(
            ResponseEnvelope::parse(br#"{"status": 200, "body": "!!"}"#),
            Err(EnvelopeError::Base64(_))
        ));
        assert!(
            matches!(
                ResponseEnvelope::parse(br#"{"status": 200, "body": "aGk"}"#),
                Err(EnvelopeError::Base64(_))
            ),
            "padding is required"
        );
        assert!(matches!(
            ResponseEnvelope::parse(br#"{"status": 200, "headers": [["bad name", "x"]]}"#),
            Err(EnvelopeError::Header(_))
        ));
    }
}
