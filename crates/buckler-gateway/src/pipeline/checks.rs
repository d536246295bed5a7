//! The first stage: requests the gateway must not forward, refused before anything else.

use http::header;
use http::request::Parts;

use crate::error::GatewayError;

/// Request headers larger than this are refused with 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Rejects oversized header blocks, ambiguous framing (both `Content-Length` and
/// `Transfer-Encoding`: a request-smuggling vector; or two `Content-Length`s) and more than
/// one `Host`.
pub(super) fn check(parts: &Parts) -> Result<(), GatewayError> {
    // One pass over the header lines instead of a hashed lookup per rule.
    let (mut bytes, mut lengths, mut chunked, mut hosts) = (0, 0, false, 0);
    for (name, value) in &parts.headers {
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

/// Refuses a body whose declared length is over `max-request-body` before anything is sent
/// (a body without a declared length is cut by the limiter as it streams).
pub(super) fn declared_length_within(
    parts: &Parts,
    has_body: bool,
    max_body: u64,
) -> Result<(), GatewayError> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if has_body && declared.is_some_and(|length| length > max_body) {
        return Err(GatewayError::BodyTooLarge { limit: max_body });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_parts;

    fn reason(parts: &Parts) -> Option<&'static str> {
        match check(parts) {
            Err(GatewayError::MalformedRequest { reason }) => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let both = test_parts(
            "POST",
            "/x",
            &[("content-length", "3"), ("transfer-encoding", "chunked")],
        );
        assert_eq!(
            reason(&both),
            Some("both Content-Length and Transfer-Encoding are present")
        );
        let two = test_parts(
            "POST",
            "/x",
            &[("content-length", "3"), ("content-length", "3")],
        );
        assert_eq!(reason(&two), Some("more than one Content-Length"));
        let hosts = test_parts("GET", "/x", &[("host", "a"), ("host", "b")]);
        assert_eq!(reason(&hosts), Some("more than one Host"));
        assert!(check(&test_parts("GET", "/x", &[("host", "a")])).is_ok());
    }

    #[test]
    fn oversized_headers_are_refused() {
        let big = "x".repeat(MAX_HEADER_BYTES);
        let parts = test_parts("GET", "/x", &[("x-big", &big)]);
        assert!(matches!(
            check(&parts),
            Err(GatewayError::HeadersTooLarge { .. })
        ));
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_only_with_a_body() {
        let parts = test_parts("POST", "/x", &[("content-length", "11")]);
        assert!(matches!(
            declared_length_within(&parts, true, 10),
            Err(GatewayError::BodyTooLarge { limit: 10 })
        ));
        assert!(declared_length_within(&parts, true, 11).is_ok());
        assert!(declared_length_within(&parts, false, 10).is_ok());
    }
}
