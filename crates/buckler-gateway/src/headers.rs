//! Header rules of the request path, as pure functions: hop-by-hop removal, `X-Forwarded-*`,
//! `Client-Address`, request ids and `ignore-extensions`.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `Client-Address`: computed by the gateway, stripped before forwarding.
pub static CLIENT_ADDRESS: HeaderName = HeaderName::from_static("client-address");
/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The `Via` entry this gateway adds.
pub const VIA_ENTRY: &str = "1.1 buckler";

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1), plus the
/// legacy `Proxy-Connection` and `Keep-Alive`.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including every header named in `Connection`.
/// `Transfer-Encoding` is removed too: the outgoing connection frames the body itself.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

/// The client address as Shield computed it: the list is the peer address followed by the
/// `X-Forwarded-For` entries from right to left; take index `trust_proxies`, clamped to the
/// last entry (the left-most, i.e. the original client as the first proxy saw it).
/// Malformed entries are taken as they are.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trust_proxies: usize) -> String {
    if trust_proxies == 0 {
        return peer.to_string();
    }
    let forwarded: Vec<&str> = headers
        .get(&X_FORWARDED_FOR)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if forwarded.is_empty() {
        return peer.to_string();
    }
    let from_right = (trust_proxies - 1).min(forwarded.len() - 1);
    forwarded[forwarded.len() - 1 - from_right].to_owned()
}

/// Appends the peer to `X-Forwarded-For` (joining repeated headers into one list).
pub fn append_forwarded_for(headers: &mut HeaderMap, peer: IpAddr) {
    let existing: Vec<String> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .collect();
    let value = if existing.is_empty() {
        peer.to_string()
    } else {
        format!("{}, {}", existing.join(", "), peer)
    };
    headers.remove(&X_FORWARDED_FOR);
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(&X_FORWARDED_FOR, value);
    }
}

/// Appends this gateway's entry to `Via`.
pub fn append_via(headers: &mut HeaderMap) {
    let value = match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.trim().is_empty() => format!("{existing}, {VIA_ENTRY}"),
        _ => VIA_ENTRY.to_owned(),
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(header::VIA, value);
    }
}

/// The request id to use: the client's `X-Request-Id` when it is a sane token (1–200
/// visible ASCII characters), otherwise a fresh random 128-bit hex id.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(value) = headers.get(&X_REQUEST_ID) {
        let bytes = value.as_bytes();
        if !bytes.is_empty() && bytes.len() <= 200 && bytes.iter().all(|b| b.is_ascii_graphic()) {
            return value.clone();
        }
    }
    let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Total size of the header block as a client sent it: names, values and `": "`/CRLF framing.
pub fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// Strips a configured extension from the LAST path segment (`/a/b.json` → `/a/b` when
/// `json` is listed; `""` in the list strips a bare trailing dot). Extensions compare
/// case-insensitively; dots in earlier segments and the query are untouched. Returns `None`
/// when nothing changes.
pub fn strip_extension(path: &str, extensions: &[String]) -> Option<String> {
    if extensions.is_empty() {
        return None;
    }
    let last_segment_start = path.rfind('/').map_or(0, |i| i + 1);
    let last = &path[last_segment_start..];
    let dot = last.rfind('.')?;
    let extension = &last[dot + 1..];
    if extensions.iter().any(|e| e.eq_ignore_ascii_case(extension)) {
        Some(path[..last_segment_start + dot].to_owned())
    } else {
        None
    }
}

/// The host a request is for: `Host` (HTTP/1.1) or the URI authority (HTTP/2), without port,
/// lower-cased. IPv6 literals keep their brackets.
pub fn request_host(uri: &http::Uri, headers: &HeaderMap) -> Option<String> {
    let raw = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.as_str().to_owned()))?;
    let raw = raw.rsplit('@').next().unwrap_or(&raw);
    let host = if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        raw.split(':').next().unwrap_or(raw)
    };
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(9, 9, 9, 9));

    #[test]
    fn client_address_follows_shields_cases() {
        let xff = headers(&[("x-forwarded-for", "1.1.1.1,2.2.2.2,3.3.3.3,4.4.4.4")]);
        assert_eq!(client_address(PEER, &xff, 0), "9.9.9.9");
        assert_eq!(client_address(PEER, &xff, 1), "4.4.4.4");
        assert_eq!(client_address(PEER, &xff, 2), "3.3.3.3");
        assert_eq!(client_address(PEER, &xff, 45), "1.1.1.1");
        let one = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(client_address(PEER, &one, 1), "1.1.1.1");
        assert_eq!(client_address(PEER, &HeaderMap::new(), 3), "9.9.9.9");
        let malformed = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(client_address(PEER, &malformed, 1), "not-an-ip");
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut map = headers(&[("x-forwarded-for", "1.1.1.1, 2.2.2.2")]);
        append_forwarded_for(&mut map, PEER);
        assert_eq!(map[&X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 9.9.9.9");
        let mut empty = HeaderMap::new();
        append_forwarded_for(&mut empty, PEER);
        assert_eq!(empty[&X_FORWARDED_FOR], "9.9.9.9");
        let mut repeated = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
        ]);
        append_forwarded_for(&mut repeated, PEER);
        assert_eq!(repeated[&X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 9.9.9.9");
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_go() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("x-kept", "yes"),
        ]);
        remove_hop_by_hop(&mut map);
        let names: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-kept"]);
    }

    #[test]
    fn via_is_appended() {
        let mut map = headers(&[("via", "1.0 fred")]);
        append_via(&mut map);
        assert_eq!(map[header::VIA], "1.0 fred, 1.1 buckler");
        let mut empty = HeaderMap::new();
        append_via(&mut empty);
        assert_eq!(empty[header::VIA], "1.1 buckler");
    }

    #[test]
    fn request_ids_are_kept_or_generated() {
        let kept = request_id(&headers(&[("x-request-id", "abc-123")]));
        assert_eq!(kept, "abc-123");
        let generated = request_id(&headers(&[("x-request-id", "has space")]));
        assert_eq!(generated.len(), 32);
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn extensions_follow_shields_cases() {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            strip_extension("/a/b.json", &list(&["json"])).as_deref(),
            Some("/a/b")
        );
        assert_eq!(
            strip_extension("/a/b.JSON", &list(&["json"])).as_deref(),
            Some("/a/b")
        );
        assert_eq!(
            strip_extension("/a/b.xml", &list(&["json", "xml"])).as_deref(),
            Some("/a/b")
        );
        assert_eq!(
            strip_extension("/a/b.verylongext", &list(&["verylongext"])).as_deref(),
            Some("/a/b")
        );
        assert_eq!(
            strip_extension("/a/b.", &list(&[""])).as_deref(),
            Some("/a/b")
        );
        assert_eq!(strip_extension("/a.json/b", &list(&["json"])), None);
        assert_eq!(strip_extension("/a/b.json", &list(&[])), None);
        assert_eq!(strip_extension("/a/b.csv", &list(&["json"])), None);
    }

    #[test]
    fn host_comes_from_host_header_or_authority() {
        let uri: http::Uri = "/x".parse().unwrap();
        assert_eq!(
            request_host(&uri, &headers(&[("host", "API.Example.org:8080")])).as_deref(),
            Some("api.example.org")
        );
        assert_eq!(
            request_host(&uri, &headers(&[("host", "[::1]:80")])).as_deref(),
            Some("[::1]")
        );
        let h2: http::Uri = "http://Svc.local:99/x".parse().unwrap();
        assert_eq!(
            request_host(&h2, &HeaderMap::new()).as_deref(),
            Some("svc.local")
        );
        assert_eq!(request_host(&uri, &HeaderMap::new()), None);
    }
}
