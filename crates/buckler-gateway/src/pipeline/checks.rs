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
    // hyper drops the Content-Length of such a request before it gets here; the connection
    // watch saw it go by (resilience::framing).
    let length_dropped = chunked
        && parts
            .extensions
            .get::<crate::resilience::framing::FramingAlarm>()
            .is_some_and(|alarm| alarm.raised());
    if (lengths > 0 && chunked) || length_dropped {
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

/// Settles which host the request is for (RFC 9112 §3.2, RFC 9113 §8.3.1) so that routing
/// and the upstream see the same one: an invalid `Host` (unparsable, or with userinfo) is
/// refused; an HTTP/1.1 request needs one unless its target is in absolute form, whose
/// authority then wins and replaces `Host`; over HTTP/2 a `host` field that disagrees with
/// `:authority` is refused.
pub(super) fn settle_host(parts: &mut Parts) -> Result<(), GatewayError> {
    let invalid = |reason| Err(GatewayError::MalformedRequest { reason });
    if let Some(host) = parts.headers.get(header::HOST) {
        let valid = !host.is_empty()
            && !host.as_bytes().contains(&b'@')
            && http::uri::Authority::try_from(host.as_bytes()).is_ok();
        if !valid {
            return invalid("the Host header is not a valid host");
        }
    }
    let authority = parts.uri.authority().map(|a| a.as_str());
    if authority.is_some_and(|a| a.contains('@')) {
        return invalid("the request target's authority carries userinfo");
    }
    let host = parts.headers.get(header::HOST);
    match parts.version {
        http::Version::HTTP_2 | http::Version::HTTP_3 => {
            if let (Some(authority), Some(host)) = (authority, host) {
                if !host.as_bytes().eq_ignore_ascii_case(authority.as_bytes()) {
                    return invalid("the host field disagrees with :authority");
                }
            }
        }
        http::Version::HTTP_11 => match authority {
            Some(authority) if host.is_none_or(|h| h.as_bytes() != authority.as_bytes()) => {
                if let Ok(value) = header::HeaderValue::from_str(authority) {
                    parts.headers.insert(header::HOST, value);
                }
            }
            Some(_) => {}
            None if host.is_none() => return invalid("an HTTP/1.1 request needs a Host header"),
            None => {}
        },
        _ => {}
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
    fn the_host_is_settled_before_routing() {
        let reason = |parts: &mut Parts| match settle_host(parts) {
            Err(GatewayError::MalformedRequest { reason }) => Some(reason),
            _ => None,
        };
        let mut absolute = test_parts("GET", "http://a.test/x", &[("host", "b.test")]);
        assert_eq!(reason(&mut absolute), None);
        assert_eq!(absolute.headers["host"], "a.test", "the authority wins");
        let mut userinfo = test_parts("GET", "/x", &[("host", "user@a.test")]);
        assert!(reason(&mut userinfo).is_some());
        let mut missing = test_parts("GET", "/x", &[]);
        assert_eq!(
            reason(&mut missing),
            Some("an HTTP/1.1 request needs a Host header")
        );
        let mut empty = test_parts("GET", "/x", &[("host", "")]);
        assert!(reason(&mut empty).is_some());
        let mut http10 = test_parts("GET", "/x", &[]);
        http10.version = http::Version::HTTP_10;
        assert_eq!(reason(&mut http10), None);
        let mut h2 = test_parts("GET", "http://a.test/x", &[("host", "b.test")]);
        h2.version = http::Version::HTTP_2;
        assert_eq!(
            reason(&mut h2),
            Some("the host field disagrees with :authority")
        );
        let mut h2_same = test_parts("GET", "http://a.test/x", &[("host", "A.test")]);
        h2_same.version = http::Version::HTTP_2;
        assert_eq!(reason(&mut h2_same), None);
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
