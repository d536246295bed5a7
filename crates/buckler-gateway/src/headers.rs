//! Header rules of the request path, as pure functions: hop-by-hop removal, `X-Forwarded-*`,
//! `Client-Address`, request ids and `ignore-extensions`.

use std::borrow::Cow;
use std::net::IpAddr;

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

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
    // One pass over the headers present instead of a hashed removal per hop-by-hop name: most
    // messages carry none of them but `Connection: keep-alive`, and this runs twice per request.
    // Inline: nearly every message dooms one name (`Connection`), and a heap vector for it was
    // an allocation per response.
    let mut doomed: SmallVec<[HeaderName; 4]> = SmallVec::new();
    let mut options_to_match = false;
    for (name, value) in headers.iter() {
        if *name == header::CONNECTION {
            options_to_match |= has_options_besides_keep_alive(value);
        }
        // A name's values come one after another, so comparing with the last one dedups.
        if (*name == header::TRANSFER_ENCODING || HOP_BY_HOP.contains(name))
            && doomed.last() != Some(name)
        {
            doomed.push(name.clone());
        }
    }
    if options_to_match {
        // Only options naming a header that is present matter; matched against the names
        // present, so nothing is parsed.
        for value in headers.get_all(header::CONNECTION) {
            let Ok(value) = value.to_str() else { continue };
            for option in value.split(',').map(str::trim) {
                let named = headers
                    .keys()
                    .find(|name| name.as_str().eq_ignore_ascii_case(option));
                if let Some(name) = named {
                    if !doomed.contains(name) {
                        doomed.push(name.clone());
                    }
                }
            }
        }
    }
    for name in doomed {
        headers.remove(name);
    }
}

/// Whether a `Connection` value lists anything but `keep-alive`, which names a header removed
/// as hop-by-hop anyway.
fn has_options_besides_keep_alive(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .any(|option| !option.trim_ascii().eq_ignore_ascii_case(b"keep-alive"))
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
    let mut entry = match headers.entry(&X_FORWARDED_FOR) {
        Entry::Vacant(entry) => {
            entry.insert(ip_value(peer));
            return;
        }
        Entry::Occupied(entry) => entry,
    };
    let peer = peer.to_string();
    let joined = entry
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .chain([peer.as_str()])
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(value) = HeaderValue::from_str(&joined) {
        entry.insert(value);
    }
}

/// An IP address as header text; IPv4 (nearly every peer) without the formatting machinery.
fn ip_value(ip: IpAddr) -> HeaderValue {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static(""));
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    HeaderValue::from_bytes(&text[..len]).unwrap_or(HeaderValue::from_static(""))
}

/// Appends this gateway's entry to `Via`.
pub fn append_via(headers: &mut HeaderMap) {
    let mut entry = match headers.entry(header::VIA) {
        Entry::Vacant(entry) => {
            entry.insert(HeaderValue::from_static(VIA_ENTRY));
            return;
        }
        Entry::Occupied(entry) => entry,
    };
    let value = match entry.get().to_str() {
        Ok(existing) if !existing.trim().is_empty() => {
            HeaderValue::from_str(&format!("{existing}, {VIA_ENTRY}"))
                .unwrap_or(HeaderValue::from_static(VIA_ENTRY))
        }
        _ => HeaderValue::from_static(VIA_ENTRY),
    };
    entry.insert(value);
}

/// The request id to use: the client's `X-Request-Id` when it is a sane token (1–200
/// visible ASCII characters), otherwise a fresh random 128-bit hex id.
///
/// Marked sensitive, which HTTP/2 encodes as "never indexed": neither h2's encoder nor an
/// HTTP/2 hop further on puts a value unique to one request into its HPACK table, where it
/// would only evict entries worth reusing.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    let mut id = client_request_id(headers).unwrap_or_else(fresh_request_id);
    id.set_sensitive(true);
    id
}

fn client_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let value = headers.get(&X_REQUEST_ID)?;
    let bytes = value.as_bytes();
    let sane =
        !bytes.is_empty() && bytes.len() <= 200 && bytes.iter().all(|b| b.is_ascii_graphic());
    sane.then(|| value.clone())
}

fn fresh_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    for (half, word) in [fastrand::u64(..), fastrand::u64(..)]
        .into_iter()
        .enumerate()
    {
        for (i, digit) in id[half * 16..][..16].iter_mut().enumerate() {
            *digit = HEX[(word >> (60 - 4 * i) & 0xf) as usize];
        }
    }
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
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
/// lower-cased. IPv6 literals keep their brackets. Borrowed unless it had to be lower-cased.
pub fn request_host<'a>(uri: &'a http::Uri, headers: &'a HeaderMap) -> Option<Cow<'a, str>> {
    host_of(uri, headers.get(header::HOST))
}

/// [`request_host`] with the `Host` header already looked up.
pub fn host_of<'a>(uri: &'a http::Uri, host: Option<&'a HeaderValue>) -> Option<Cow<'a, str>> {
    let raw = host
        .and_then(|value| value.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))?;
    let raw = raw.rfind('@').map_or(raw, |at| &raw[at + 1..]);
    let host = if raw.starts_with('[') {
        raw.find(']').map_or(raw, |end| &raw[..=end])
    } else {
        raw.find(':').map_or(raw, |colon| &raw[..colon])
    };
    Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
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

    /// The header names left after hop-by-hop removal, in order.
    fn names_left(pairs: &[(&str, &str)]) -> Vec<String> {
        let mut map = headers(pairs);
        remove_hop_by_hop(&mut map);
        map.keys().map(|name| name.as_str().to_owned()).collect()
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
    fn forwarded_for_writes_every_octet_width_and_ipv6() {
        for (peer, text) in [
            ("0.10.100.255", "0.10.100.255"),
            ("127.0.0.1", "127.0.0.1"),
            ("::1", "::1"),
            ("2001:db8::7", "2001:db8::7"),
        ] {
            let mut map = HeaderMap::new();
            append_forwarded_for(&mut map, peer.parse().unwrap());
            assert_eq!(map[&X_FORWARDED_FOR], text);
        }
    }

    #[test]
    fn messages_without_hop_by_hop_headers_are_untouched() {
        let mut map = headers(&[("host", "a"), ("x-one", "1"), ("x-one", "2")]);
        let before = map.clone();
        remove_hop_by_hop(&mut map);
        assert_eq!(map, before);
        assert_eq!(
            names_left(&[("connection", "close"), ("x-one", "1")]),
            ["x-one"]
        );
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_go() {
        assert_eq!(
            names_left(&[
                ("connection", "keep-alive, x-secret"),
                ("keep-alive", "timeout=5"),
                ("x-secret", "1"),
                ("te", "trailers"),
                ("transfer-encoding", "chunked"),
                ("upgrade", "websocket"),
                ("proxy-authorization", "Basic x"),
                ("x-kept", "yes"),
            ]),
            ["x-kept"]
        );
    }

    #[test]
    fn connection_options_are_matched_in_every_value_and_any_case() {
        // `keep-alive` alone: only the hop-by-hop headers go.
        assert_eq!(
            names_left(&[
                ("connection", "Keep-Alive"),
                ("keep-alive", "timeout=5"),
                ("x-kept", "yes"),
            ]),
            ["x-kept"]
        );

        // Options in a second `Connection` line, in other case, next to repeated hop-by-hop
        // values; `close` names a header too when one has that name.
        assert_eq!(
            names_left(&[
                ("connection", "keep-alive"),
                ("connection", " X-Secret ,close"),
                ("x-secret", "1"),
                ("x-secret", "2"),
                ("close", "odd but named"),
                ("te", "trailers"),
                ("te", "gzip"),
                ("x-kept", "yes"),
            ]),
            ["x-kept"]
        );
    }

    #[test]
    fn via_is_appended() {
        let mut map = headers(&[("via", "1.0 fred")]);
        append_via(&mut map);
        assert_eq!(map[header::VIA], "1.0 fred, 1.1 buckler");
        let mut empty = HeaderMap::new();
        append_via(&mut empty);
        assert_eq!(empty[header::VIA], "1.1 buckler");
        let mut blank = headers(&[("via", " ")]);
        append_via(&mut blank);
        assert_eq!(blank[header::VIA], "1.1 buckler");
    }

    #[test]
    fn request_ids_are_kept_or_generated() {
        let kept = request_id(&headers(&[("x-request-id", "abc-123")]));
        assert_eq!(kept, "abc-123");
        let generated = request_id(&headers(&[("x-request-id", "has space")]));
        assert_eq!(generated.len(), 32);
        assert!(generated.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert!(
            kept.is_sensitive() && generated.is_sensitive(),
            "never HPACK-indexed"
        );
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
        let lower = headers(&[("host", "api.example.org")]);
        assert!(matches!(
            request_host(&uri, &lower),
            Some(Cow::Borrowed("api.example.org"))
        ));
    }
}
