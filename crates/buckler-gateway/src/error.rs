//! Every response the gateway makes up itself, and the one place where each failure becomes an
//! HTTP status. The match below is exhaustive on purpose: a new failure must choose its status
//! here, and `docs/errors.md` lists the same table.

use http::{header, HeaderValue, Response, StatusCode};

use buckler_upstream::{full_body, ProxyBody};

/// A failure answered by the gateway instead of an upstream.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no domain is configured for host {host:?}")]
    UnknownHost { host: String },
    #[error("no route matches {path}")]
    NoRoute { path: String },
    #[error("method {method} is not allowed here")]
    MethodNotAllowed { method: String, allow: String },
    #[error("no upstream accepts content type {content_type}")]
    UnsupportedMediaType { content_type: String },
    #[error("no upstream can produce a type the Accept header allows")]
    NotAcceptable,
    #[error("no upstream is available for this endpoint")]
    NoHealthyUpstream,
    #[error("no upstream can take the request now ({reason})")]
    UpstreamsUnavailable {
        /// `circuit open`, `overloaded` or `failing health checks`.
        reason: &'static str,
        retry_after_seconds: u64,
    },
    #[error("the request body stalled for {timeout_ms} ms")]
    RequestBodyTimeout { timeout_ms: u128 },
    #[error("could not connect to the upstream")]
    UpstreamConnect,
    #[error("the upstream closed the connection before answering")]
    UpstreamReset,
    #[error("the upstream did not answer within {timeout_ms} ms")]
    UpstreamTimeout { timeout_ms: u128 },
    #[error("request headers exceed {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("malformed request: {reason}")]
    MalformedRequest { reason: &'static str },
    #[error("the Lambda function failed: {detail}")]
    LambdaFunctionError { detail: String },
    #[error("{cause}")]
    LambdaBadResponse { cause: String },
    #[error("Lambda throttled the invocation")]
    LambdaThrottled { retry_after_seconds: Option<u64> },
    #[error("the Lambda invocation failed: {cause}")]
    LambdaInvokeFailed { cause: String },
    #[error("a bearer token is required")]
    MissingCredential,
    #[error("the bearer token is not valid")]
    WrongCredential,
    #[error("{message}")]
    InvalidInput {
        message: String,
        errors: Vec<String>,
    },
    #[error("{message}")]
    AdminNotFound { message: String },
    /// An admin write lost a race with another writer of the domain's source.
    #[error("{message}")]
    AdminConflict { message: String },
    /// The domain's source (etcd, the upstreams file) cannot be reached or written.
    #[error("{message}")]
    AdminUnavailable { message: String },
    #[error("an API key is required in header {header}")]
    ApiKeyMissing { header: String },
    #[error("the API key is not allowed")]
    ApiKeyWrong,
    #[error("too many requests")]
    RateLimited { retry_after_seconds: u64 },
    #[error("middleware {id} did not decide in time")]
    MiddlewareUnavailable { id: String },
}

impl GatewayError {
    /// The status this failure is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::UnknownHost { .. } | GatewayError::NoRoute { .. } => {
                StatusCode::NOT_FOUND
            }
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            GatewayError::NoHealthyUpstream | GatewayError::UpstreamsUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::RequestBodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            GatewayError::UpstreamConnect
            | GatewayError::UpstreamReset
            | GatewayError::LambdaFunctionError { .. }
            | GatewayError::LambdaBadResponse { .. }
            | GatewayError::LambdaInvokeFailed { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::LambdaThrottled { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::MalformedRequest { .. } | GatewayError::InvalidInput { .. } => {
                StatusCode::BAD_REQUEST
            }
            GatewayError::MissingCredential => StatusCode::UNAUTHORIZED,
            GatewayError::WrongCredential => StatusCode::FORBIDDEN,
            GatewayError::AdminNotFound { .. } => StatusCode::NOT_FOUND,
            GatewayError::AdminConflict { .. } => StatusCode::CONFLICT,
            GatewayError::AdminUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::ApiKeyMissing { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::ApiKeyWrong => StatusCode::FORBIDDEN,
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::MiddlewareUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The response: `{"error": "...", "status": N}` plus the headers the status calls for.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let mut body = serde_json::json!({"error": self.to_string(), "status": status.as_u16()});
        if let GatewayError::InvalidInput { errors, .. } = &self {
            body["errors"] = serde_json::json!(errors);
        }
        let mut response = Response::new(full_body(body.to_string()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let GatewayError::MethodNotAllowed { allow, .. } = &self {
            if let Ok(value) = HeaderValue::from_str(allow) {
                headers.insert(header::ALLOW, value);
            }
        }
        if let GatewayError::LambdaThrottled {
            retry_after_seconds: Some(seconds),
        } = &self
        {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        if let GatewayError::UpstreamsUnavailable {
            retry_after_seconds,
            ..
        } = &self
        {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
        }
        if let GatewayError::ApiKeyMissing { header } = &self {
            if let Ok(value) = HeaderValue::from_str(&format!("ApiKey header=\"{header}\"")) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        if let GatewayError::RateLimited {
            retry_after_seconds,
        } = &self
        {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
        }
        if let GatewayError::MissingCredential = &self {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(response: Response<ProxyBody>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn every_failure_maps_to_its_status_with_a_json_body() {
        let cases = [
            (GatewayError::UnknownHost { host: "x".into() }, 404),
            (GatewayError::NoRoute { path: "/x".into() }, 404),
            (
                GatewayError::MethodNotAllowed {
                    method: "PUT".into(),
                    allow: "GET, HEAD".into(),
                },
                405,
            ),
            (
                GatewayError::UnsupportedMediaType {
                    content_type: "text/plain".into(),
                },
                415,
            ),
            (GatewayError::NotAcceptable, 406),
            (GatewayError::NoHealthyUpstream, 503),
            (
                GatewayError::UpstreamsUnavailable {
                    reason: "circuit open",
                    retry_after_seconds: 4,
                },
                503,
            ),
            (GatewayError::RequestBodyTimeout { timeout_ms: 30 }, 408),
            (GatewayError::UpstreamConnect, 502),
            (GatewayError::UpstreamReset, 502),
            (GatewayError::UpstreamTimeout { timeout_ms: 5 }, 504),
            (GatewayError::HeadersTooLarge { limit: 65536 }, 431),
            (GatewayError::BodyTooLarge { limit: 10 }, 413),
            (GatewayError::MalformedRequest { reason: "bad" }, 400),
            (
                GatewayError::LambdaFunctionError {
                    detail: "boom".into(),
                },
                502,
            ),
            (
                GatewayError::LambdaBadResponse {
                    cause: "bad base64".into(),
                },
                502,
            ),
            (
                GatewayError::LambdaThrottled {
                    retry_after_seconds: Some(3),
                },
                503,
            ),
            (
                GatewayError::LambdaInvokeFailed {
                    cause: "no such function".into(),
                },
                502,
            ),
            (GatewayError::MissingCredential, 401),
            (GatewayError::WrongCredential, 403),
            (
                GatewayError::InvalidInput {
                    message: "bad list".into(),
                    errors: vec!["x".into()],
                },
                400,
            ),
            (
                GatewayError::AdminNotFound {
                    message: "no such domain".into(),
                },
                404,
            ),
            (
                GatewayError::AdminConflict {
                    message: "the upstream list changed since revision etcd-4".into(),
                },
                409,
            ),
            (
                GatewayError::AdminUnavailable {
                    message: "etcd at http://127.0.0.1:2379 unreachable".into(),
                },
                503,
            ),
            (
                GatewayError::ApiKeyMissing {
                    header: "x-api-key".into(),
                },
                401,
            ),
            (GatewayError::ApiKeyWrong, 403),
            (
                GatewayError::RateLimited {
                    retry_after_seconds: 2,
                },
                429,
            ),
            (
                GatewayError::MiddlewareUnavailable { id: "auth".into() },
                503,
            ),
        ];
        for (error, status) in cases {
            let message = error.to_string();
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status, "{message}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
            let body = body_json(response).await;
            assert_eq!(body["status"], status);
            assert_eq!(body["error"], message);
        }
    }

    #[test]
    fn api_key_and_rate_limit_answers_carry_their_headers() {
        let missing = GatewayError::ApiKeyMissing {
            header: "x-api-key".into(),
        }
        .into_response();
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            "ApiKey header=\"x-api-key\""
        );
        let limited = GatewayError::RateLimited {
            retry_after_seconds: 7,
        }
        .into_response();
        assert_eq!(limited.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn throttle_carries_retry_after() {
        let response = GatewayError::LambdaThrottled {
            retry_after_seconds: Some(3),
        }
        .into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn unavailable_upstreams_carry_retry_after() {
        let response = GatewayError::UpstreamsUnavailable {
            reason: "circuit open",
            retry_after_seconds: 7,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn method_not_allowed_carries_allow() {
        let response = GatewayError::MethodNotAllowed {
            method: "PUT".into(),
            allow: "GET, HEAD".into(),
        }
        .into_response();
        assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
    }
}
