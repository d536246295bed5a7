//! The outbound request's head: the client's, minus hop-by-hop headers and `Client-Address`,
//! plus the forwarding headers (`X-Forwarded-*`, `Via`, `X-Request-Id`).

use buckler_config::Config;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;

use super::ConnectionInfo;
use crate::headers;
use crate::outbound::Outbound;

/// Builds the outbound head, taking the client's headers out of `parts`. `stripped` is the
/// routed path when an ignored extension was removed from it.
pub(super) fn outbound(
    parts: &mut Parts,
    connection: ConnectionInfo,
    request_id: &HeaderValue,
    stripped: Option<&str>,
    config: &Config,
) -> Outbound {
    if tracing::enabled!(tracing::Level::TRACE) {
        let client_address =
            headers::client_address(connection.peer.ip(), &parts.headers, config.trust_proxies);
        tracing::trace!(client_address, "client address");
    }
    let forwarded_proto = forwarded_proto(parts, connection, config.trust_x_forwarded_proto);
    // The client's path and query, shared rather than copied, unless an extension was stripped.
    let path_and_query = match stripped {
        None => parts.uri.path_and_query().cloned(),
        Some(path) => match parts.uri.query() {
            Some(query) => PathAndQuery::try_from(format!("{path}?{query}")).ok(),
            None => PathAndQuery::try_from(path).ok(),
        },
    }
    .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let host_header = parts.headers.get(header::HOST).cloned();
    // HTTP/2 carries the host in the URI; the upstream (HTTP/1.1) needs a `Host` header.
    let authority_host = match host_header {
        Some(_) => None,
        None => parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };

    let mut outbound_headers = std::mem::take(&mut parts.headers);
    headers::remove_hop_by_hop(&mut outbound_headers);
    outbound_headers.remove(&headers::CLIENT_ADDRESS);
    join_cookies(&mut outbound_headers);
    headers::append_forwarded_for(&mut outbound_headers, connection.peer.ip());
    outbound_headers.insert(
        &headers::X_FORWARDED_PROTO,
        HeaderValue::from_static(forwarded_proto),
    );
    if let Some(host) = host_header.or_else(|| authority_host.clone()) {
        outbound_headers.insert(&headers::X_FORWARDED_HOST, host);
    }
    if let Some(host) = authority_host {
        outbound_headers.insert(header::HOST, host);
    }
    outbound_headers.insert(&headers::X_REQUEST_ID, request_id.clone());
    headers::append_via(&mut outbound_headers);
    Outbound {
        method: parts.method.clone(),
        path_and_query,
        headers: outbound_headers,
    }
}

/// Several `cookie` fields (HTTP/2 splits them, RFC 9113 §8.2.3) become one, joined with
/// `; `, as an HTTP/1.1 upstream expects.
fn join_cookies(headers: &mut http::HeaderMap) {
    let mut cookies = headers.get_all(header::COOKIE).iter();
    if cookies.nth(1).is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if let Ok(value) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, value);
    }
}

/// `X-Forwarded-Proto`: the connection's scheme, or the client's claim when trusted.
fn forwarded_proto(parts: &Parts, connection: ConnectionInfo, trust: bool) -> &'static str {
    if trust {
        match parts
            .headers
            .get(&headers::X_FORWARDED_PROTO)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("https") => return "https",
            Some("http") => return "http",
            _ => {}
        }
    }
    connection.scheme
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_parts;

    fn config(trust_proto: bool) -> Config {
        let text = format!(
            r#"{{ listen: "127.0.0.1:0", "trust-x-forwarded-proto": {trust_proto},
                 domains: [{{ "domain-name": "*", upstreams: [] }}] }}"#
        );
        buckler_config::parse(&text, std::path::Path::new("test.json5")).unwrap()
    }

    const CONNECTION: ConnectionInfo = ConnectionInfo {
        peer: std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5000),
        scheme: "http",
    };

    #[test]
    fn forwarding_headers_are_set_and_hop_by_hop_ones_removed() {
        let mut parts = test_parts(
            "GET",
            "/items/7.json?x=1",
            &[
                ("host", "api.test"),
                ("connection", "keep-alive, x-private"),
                ("x-private", "1"),
                ("client-address", "10.0.0.1"),
                ("x-forwarded-for", "192.0.2.1"),
                ("x-forwarded-proto", "https"),
            ],
        );
        let id = HeaderValue::from_static("req-1");
        let out = outbound(
            &mut parts,
            CONNECTION,
            &id,
            Some("/items/7"),
            &config(false),
        );
        assert_eq!(out.path_and_query.as_str(), "/items/7?x=1");
        let h = &out.headers;
        assert!(h.get("connection").is_none() && h.get("x-private").is_none());
        assert!(h.get("client-address").is_none());
        assert_eq!(h["x-forwarded-for"], "192.0.2.1, 127.0.0.1");
        assert_eq!(
            h["x-forwarded-proto"], "http",
            "the client's claim is not trusted"
        );
        assert_eq!(h["x-forwarded-host"], "api.test");
        assert_eq!(h["x-request-id"], "req-1");
        assert_eq!(h["via"], "1.1 buckler");

        let mut parts = test_parts("GET", "/", &[("x-forwarded-proto", "https")]);
        let out = outbound(&mut parts, CONNECTION, &id, None, &config(true));
        assert_eq!(out.headers["x-forwarded-proto"], "https");
    }

    #[test]
    fn split_cookies_are_joined() {
        let mut parts = test_parts("GET", "/", &[("cookie", "a=1"), ("cookie", "b=2")]);
        let id = HeaderValue::from_static("r");
        let out = outbound(&mut parts, CONNECTION, &id, None, &config(false));
        let cookies: Vec<_> = out.headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; b=2"]);
    }

    #[test]
    fn an_http2_authority_becomes_the_host() {
        let mut parts = test_parts("GET", "http://api.test:8080/x", &[]);
        let id = HeaderValue::from_static("r");
        let out = outbound(&mut parts, CONNECTION, &id, None, &config(false));
        assert_eq!(out.headers["host"], "api.test:8080");
        assert_eq!(out.headers["x-forwarded-host"], "api.test:8080");
        assert_eq!(out.path_and_query.as_str(), "/x");
    }
}
