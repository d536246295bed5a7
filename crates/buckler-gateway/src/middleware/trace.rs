//! W3C `traceparent` (SPEC §9): kept when the client sent a valid one, else started here;
//! forwarded upstream either way, and its trace id goes into the access log.

use std::fmt::Write as _;

use http::{HeaderMap, HeaderName, HeaderValue};

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// A trace id: 32 lower-case hex digits, kept inline (no allocation per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceId([u8; 32]);

impl TraceId {
    /// The 32 hex digits.
    pub(crate) fn as_str(&self) -> &str {
        // Only ever built from ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    fn from_hex(hex: &str) -> Option<TraceId> {
        hex.as_bytes().try_into().ok().map(TraceId)
    }
}

/// Makes sure `headers` carry a valid `traceparent` and returns its trace id. An invalid or
/// repeated one is replaced by a new trace (sampled flag off).
pub(crate) fn traceparent(headers: &mut HeaderMap) -> TraceId {
    let mut values = headers.get_all(&TRACEPARENT).iter();
    if let (Some(value), None) = (values.next(), values.next()) {
        if let Some(trace_id) = valid_trace_id(value.as_bytes()) {
            return trace_id;
        }
    }
    let mut value = String::with_capacity(55);
    let _ = write!(
        value,
        "00-{:032x}-{:016x}-00",
        fastrand::u128(1..),
        fastrand::u64(1..)
    );
    let trace_id = TraceId::from_hex(&value[3..35]).unwrap_or(TraceId([b'0'; 32]));
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(&TRACEPARENT, value);
    }
    trace_id
}

/// The trace id of a valid version-00 (or later, per the spec's forward compatibility)
/// `traceparent`: `vv-<32 hex>-<16 hex>-<2 hex>`, ids not all zero, version not `ff`.
fn valid_trace_id(value: &[u8]) -> Option<TraceId> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = lower_hex(version, 2)
        && version != "ff"
        && lower_hex(trace, 32)
        && lower_hex(parent, 16)
        && lower_hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0')
        && (version != "00" || parts.next().is_none());
    if ok {
        TraceId::from_hex(trace)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_kept() {
        let mut headers = HeaderMap::new();
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", value.parse().unwrap());
        assert_eq!(
            traceparent(&mut headers).as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(headers["traceparent"], value);
    }

    #[test]
    fn a_missing_or_invalid_one_is_started() {
        for bad in [
            None,
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            Some("garbage"),
        ] {
            let mut headers = HeaderMap::new();
            if let Some(bad) = bad {
                headers.insert("traceparent", bad.parse().unwrap());
            }
            let trace_id = traceparent(&mut headers);
            assert_eq!(trace_id.as_str().len(), 32);
            let sent = headers["traceparent"].to_str().unwrap().to_owned();
            assert_eq!(valid_trace_id(sent.as_bytes()), Some(trace_id), "{sent}");
        }
    }
}
