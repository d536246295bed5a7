#[cfg(all(feature = "client", feature = "http1"))]
use bytes::BytesMut;
use http::header::HeaderValue;
#[cfg(all(feature = "http2", feature = "client"))]
use http::Method;
#[cfg(any(feature = "client", all(feature = "server", feature = "http2")))]
use http::{
    header::{ValueIter, CONTENT_LENGTH},
    HeaderMap,
};

#[cfg(feature = "http1")]
pub(super) fn connection_keep_alive(value: &HeaderValue) -> bool {
    connection_has(value, "keep-alive")
}

#[cfg(feature = "http1")]
pub(super) fn connection_close(value: &HeaderValue) -> bool {
    connection_has(value, "close")
}

// Returns true if any `Connection` header field carries a `close` token.
// A message may have more than one `Connection` header line, so all of them
// must be inspected (`get`/`connection_close` alone only sees the first).
#[cfg(feature = "http1")]
pub(super) fn connection_any_close(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .any(connection_close)
}

#[cfg(feature = "http1")]
fn connection_has(value: &HeaderValue, needle: &str) -> bool {
    // Buckler patch: one pass over the bytes for the check `to_str` makes, one for the tokens,
    // instead of `to_str`, `split` and a Unicode `trim` (every `Connection` header of every
    // response went through them). Same answers: a value with a byte `to_str` refuses has no
    // tokens, and the only whitespace left to trim is spaces and tabs.
    let bytes = value.as_bytes();
    if !bytes.iter().all(|&b| b == b'\t' || (32..127).contains(&b)) {
        return false;
    }
    bytes
        .split(|&b| b == b',')
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(feature = "http1")]
pub(super) fn te_is_trailers(headers: &http::HeaderMap) -> bool {
    header_value_list_has(headers.get_all(http::header::TE).into_iter(), "trailers")
}

#[cfg(feature = "http1")]
fn header_value_list_has(values: http::header::ValueIter<'_, HeaderValue>, needle: &str) -> bool {
    for value in values {
        if let Ok(line) = value.to_str() {
            for token in line.split(',') {
                if token.trim().eq_ignore_ascii_case(needle) {
                    return true;
                }
            }
        }
    }

    false
}

#[cfg(all(feature = "http1", feature = "server"))]
pub(super) fn content_length_parse(value: &HeaderValue) -> Option<u64> {
    from_digits(value.as_bytes())
}

#[cfg(any(feature = "client", all(feature = "server", feature = "http2")))]
pub(super) fn content_length_parse_all(headers: &HeaderMap) -> Option<u64> {
    content_length_parse_all_values(headers.get_all(CONTENT_LENGTH).into_iter())
}

#[cfg(any(feature = "client", all(feature = "server", feature = "http2")))]
pub(super) fn content_length_parse_all_values(values: ValueIter<'_, HeaderValue>) -> Option<u64> {
    // If multiple Content-Length headers were sent, everything can still
    // be alright if they all contain the same value, and all parse
    // correctly. If not, then it's an error.

    let mut content_length: Option<u64> = None;
    for h in values {
        // Buckler patch: a value of digits alone (nearly every one) is read directly, without
        // the UTF-8 check, the split on commas and the trim; the result is the same.
        if let Some(n) = from_digits(h.as_bytes()) {
            if content_length.is_none() {
                content_length = Some(n);
            } else if content_length != Some(n) {
                return None;
            }
            continue;
        }
        if let Ok(line) = h.to_str() {
            for v in line.split(',') {
                let n = from_digits(v.trim().as_bytes())?;

                if content_length.is_none() {
                    content_length = Some(n);
                } else if content_length != Some(n) {
                    return None;
                }
            }
        } else {
            return None;
        }
    }

    content_length
}

fn from_digits(bytes: &[u8]) -> Option<u64> {
    // cannot use FromStr for u64, since it allows a signed prefix
    let mut result = 0u64;
    const RADIX: u64 = 10;

    if bytes.is_empty() {
        return None;
    }

    for &b in bytes {
        // can't use char::to_digit, since we haven't verified these bytes
        // are utf-8.
        match b {
            b'0'..=b'9' => {
                result = result.checked_mul(RADIX)?;
                result = result.checked_add(u64::from(b - b'0'))?;
            }
            _ => {
                // not a DIGIT, get outta here!
                return None;
            }
        }
    }

    Some(result)
}

#[cfg(all(feature = "http2", feature = "client"))]
pub(super) fn method_has_defined_payload_semantics(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
    )
}

#[cfg(feature = "http2")]
pub(super) fn set_content_length_if_missing(headers: &mut HeaderMap, len: u64) {
    headers
        .entry(CONTENT_LENGTH)
        .or_insert_with(|| HeaderValue::from(len));
}

#[cfg(all(feature = "client", feature = "http1"))]
pub(super) fn transfer_encoding_is_chunked(headers: &HeaderMap) -> bool {
    is_chunked(headers.get_all(http::header::TRANSFER_ENCODING).into_iter())
}

#[cfg(all(feature = "client", feature = "http1"))]
pub(super) fn is_chunked(mut encodings: ValueIter<'_, HeaderValue>) -> bool {
    // chunked must always be the last encoding, according to spec
    if let Some(line) = encodings.next_back() {
        return is_chunked_(line);
    }

    false
}

#[cfg(feature = "http1")]
pub(super) fn is_chunked_(value: &HeaderValue) -> bool {
    // chunked must always be the last encoding, according to spec
    if let Ok(s) = value.to_str() {
        if let Some(encoding) = s.rsplit(',').next() {
            return encoding.trim().eq_ignore_ascii_case("chunked");
        }
    }

    false
}

#[cfg(all(feature = "client", feature = "http1"))]
pub(super) fn add_chunked(mut entry: http::header::OccupiedEntry<'_, HeaderValue>) {
    const CHUNKED: &str = "chunked";

    if let Some(line) = entry.iter_mut().next_back() {
        // + 2 for ", "
        let new_cap = line.as_bytes().len() + CHUNKED.len() + 2;
        let mut buf = BytesMut::with_capacity(new_cap);
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(b", ");
        buf.extend_from_slice(CHUNKED.as_bytes());

        *line = HeaderValue::from_maybe_shared(buf.freeze())
            .expect("original header value plus ascii is valid");
        return;
    }

    entry.insert(HeaderValue::from_static(CHUNKED));
}

#[cfg(all(test, feature = "http1"))]
mod tests {
    use super::te_is_trailers;
    use http::header::{HeaderValue, TE};
    use http::HeaderMap;

    // Buckler patch: digits alone take a shorter path to the same answers.
    #[cfg(feature = "client")]
    #[test]
    fn content_length_parse_all_reads_digits_and_lists_alike() {
        use super::content_length_parse_all;
        use http::header::CONTENT_LENGTH;

        fn parse(values: &[&'static str]) -> Option<u64> {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(CONTENT_LENGTH, HeaderValue::from_static(value));
            }
            content_length_parse_all(&headers)
        }
        assert_eq!(parse(&["17"]), Some(17));
        assert_eq!(parse(&["0"]), Some(0));
        assert_eq!(parse(&["18446744073709551615"]), Some(u64::MAX));
        assert_eq!(parse(&["18446744073709551616"]), None, "overflow");
        assert_eq!(parse(&["17", "17"]), Some(17));
        assert_eq!(parse(&["17", "18"]), None);
        assert_eq!(parse(&["17, 17"]), Some(17));
        assert_eq!(parse(&["17", "17,17"]), Some(17));
        assert_eq!(parse(&[" 17 "]), Some(17));
        assert_eq!(parse(&["17,18"]), None);
        assert_eq!(parse(&["+17"]), None);
        assert_eq!(parse(&["1 7"]), None);
        assert_eq!(parse(&[""]), None);
        assert_eq!(parse(&[]), None);
    }

    // Buckler patch: `connection_has` works on bytes; the answers are those of the old
    // `to_str`/`split`/`trim` version.
    #[cfg(feature = "http1")]
    #[test]
    fn connection_tokens_are_matched_whole_and_case_blind() {
        use super::{connection_close, connection_keep_alive};

        let close =
            |value: &'static [u8]| connection_close(&HeaderValue::from_bytes(value).unwrap());
        assert!(close(b"close"));
        assert!(close(b"Close"));
        assert!(close(b" \tCLOSE\t "));
        assert!(close(b"keep-alive, close"));
        assert!(close(b"upgrade,close,te"));
        assert!(!close(b"closed"));
        assert!(!close(b"clo se"));
        assert!(!close(b""));
        assert!(!close(b","));
        assert!(!close(b"keep-alive"));
        // `to_str` refuses obs-text, and then no token counts.
        assert!(!close(b"close, \xe9"));
        assert!(connection_keep_alive(&HeaderValue::from_static("Keep-Alive")));
        assert!(!connection_keep_alive(&HeaderValue::from_static("keep-alive-ish")));
    }

    #[test]
    fn te_is_trailers_accepts_comma_separated_values() {
        let mut headers = HeaderMap::new();
        headers.insert(TE, HeaderValue::from_static("gzip, Trailers"));

        assert!(te_is_trailers(&headers));
    }

    #[test]
    fn te_is_trailers_accepts_multiple_header_lines() {
        let mut headers = HeaderMap::new();
        headers.append(TE, HeaderValue::from_static("gzip"));
        headers.append(TE, HeaderValue::from_static("trailers"));

        assert!(te_is_trailers(&headers));
    }

    #[test]
    fn te_is_trailers_rejects_missing_trailers_token() {
        let mut headers = HeaderMap::new();
        headers.insert(TE, HeaderValue::from_static("gzip"));

        assert!(!te_is_trailers(&headers));
    }
}
