//! W3C `traceparent` (SPEC §9): kept when the client sent a valid one, else started here;
//! forwarded upstream either way, and its trace id goes into the access log.

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
    // Digit by digit into a buffer on the stack: through `format!` this took ~1,000 more
    // instructions per request (callgrind), on every request of every domain.
    let mut value = *b"00-00000000000000000000000000000000-0000000000000000-00";
    write_hex(&mut value[3..35], fastrand::u128(1..));
    write_hex(&mut value[36..52], u128::from(fastrand::u64(1..)));
    let mut trace_id = TraceId([b'0'; 32]);
    trace_id.0.copy_from_slice(&value[3..35]);
    if let Ok(value) = HeaderValue::from_bytes(&value) {
        headers.insert(&TRACEPARENT, value);
    }
    trace_id
}

/// The low `out.len()` hex digits of `n`, lower case, zero-padded, into `out`.
fn write_hex(out: &mut [u8], mut n: u128) {
    for digit in out.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
    }
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

    #[test]
    fn hex_digits_are_lower_case_and_zero_padded() {
        let mut out = [0u8; 8];
        write_hex(&mut out, 0xabc);
        assert_eq!(&out, b"00000abc");
        let mut out = [0u8; 32];
        write_hex(&mut out, u128::MAX);
        assert_eq!(&out, b"ffffffffffffffffffffffffffffffff");
    }
}
