//! The stages that decide where a request goes: the gateway's own endpoints, the domain (by
//! host), the endpoint group (by method and path), and content negotiation.

use std::sync::Arc;

use buckler_config::Paths;
use buckler_route::{negotiate as negotiate_media, NegotiationError, RouteMatch, Selection};
use buckler_upstream::{empty_body, ProxyBody};
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};

use crate::error::GatewayError;
use crate::headers;
use crate::table::{DomainTable, EndpointGroup, RuntimeTable};

/// One of the gateway's own endpoints on the main listener.
#[derive(Debug)]
pub(super) enum LocalEndpoint {
    Healthcheck,
    Metrics,
    /// The merged spec of the domain the request's host names.
    Spec(Arc<DomainTable>),
}

/// Local endpoints answer `GET` and `HEAD` for every host and take precedence over upstream
/// routes (`/spec` only for a known host).
pub(super) fn local_endpoint(parts: &Parts, table: &RuntimeTable) -> Option<LocalEndpoint> {
    let paths: &Paths = &table.config.paths;
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return None;
    }
    let path = parts.uri.path();
    if path == paths.healthcheck {
        return Some(LocalEndpoint::Healthcheck);
    }
    if path == paths.metrics {
        return Some(LocalEndpoint::Metrics);
    }
    if path == paths.spec {
        let host = headers::request_host(&parts.uri, &parts.headers);
        return table
            .domain_for(host.as_deref())
            .map(|domain| LocalEndpoint::Spec(domain.clone()));
    }
    None
}

/// The domain the request's host names (`*` catches the rest).
pub(super) fn domain(
    table: &RuntimeTable,
    parts: &Parts,
) -> Result<Arc<DomainTable>, GatewayError> {
    let host = headers::host_of(&parts.uri, parts.headers.get(header::HOST));
    table
        .domain_for(host.as_deref())
        .cloned()
        .ok_or_else(|| GatewayError::UnknownHost {
            host: host.map(|host| host.into_owned()).unwrap_or_default(),
        })
}

/// Where routing sent a request.
pub(super) enum Endpoint {
    /// To this group; `stripped` is the path without an ignored extension, when one was.
    Group {
        group: Arc<EndpointGroup>,
        stripped: Option<String>,
    },
    /// `OPTIONS` for a path some group serves: answered with `Allow`.
    Options { allow: String },
}

/// The endpoint group for the request's method and path (an ignored extension stripped). The
/// query is passed along: templates with a query part (`/{Bucket}?acl`) match on it, and a
/// table without such templates never reads it.
pub(super) fn endpoint(domain: &DomainTable, parts: &Parts) -> Result<Endpoint, GatewayError> {
    let original = parts.uri.path();
    let stripped = headers::strip_extension(original, &domain.settings.ignore_extensions);
    let path = stripped.as_deref().unwrap_or(original);
    match domain
        .routes
        .lookup_query(&parts.method, path, parts.uri.query())
    {
        RouteMatch::Matched { group, .. } => Ok(Endpoint::Group {
            group: group.clone(),
            stripped,
        }),
        RouteMatch::Options { allow } => Ok(Endpoint::Options { allow }),
        RouteMatch::MethodNotAllowed { allow } => Err(GatewayError::MethodNotAllowed {
            method: parts.method.to_string(),
            allow,
        }),
        RouteMatch::NotFound => Err(GatewayError::NoRoute {
            path: path.to_owned(),
        }),
    }
}

/// Which candidates of the group can take the request's body and produce what it accepts.
/// Only a request with a body has a media type to negotiate.
pub(super) fn negotiate(
    group: &EndpointGroup,
    parts: &Parts,
    has_body: bool,
) -> Result<Selection, GatewayError> {
    let text = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let content_type = if has_body {
        text(header::CONTENT_TYPE)
    } else {
        None
    };
    match negotiate_media(
        &group.candidates,
        content_type,
        has_body,
        text(header::ACCEPT),
    ) {
        Ok(selection) => Ok(selection),
        Err(NegotiationError::UnsupportedMediaType) => Err(GatewayError::UnsupportedMediaType {
            content_type: content_type.unwrap_or_default().to_owned(),
        }),
        Err(NegotiationError::NotAcceptable) => Err(GatewayError::NotAcceptable),
    }
}

/// The answer to `OPTIONS` on a routed path.
pub(super) fn options_response(allow: &str) -> Response<ProxyBody> {
    let mut response = Response::new(empty_body());
    *response.status_mut() = StatusCode::OK;
    if let Ok(value) = HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_parts;
    use crate::table::DomainInput;
    use crate::upstream::UpstreamHandle;

    /// A table with domain `api.test` and one upstream serving `GET /items/{id}` (JSON in and
    /// out) and `POST /items`.
    fn table() -> RuntimeTable {
        let config = buckler_config::parse(
            r#"{ listen: "127.0.0.1:0", domains: [{ "domain-name": "api.test",
                 "ignore-extensions": ["json"], upstreams: [
                 { serviceType: "swagger2", serviceLocation: "http://127.0.0.1:9" } ] }] }"#,
            std::path::Path::new("test.json5"),
        )
        .unwrap();
        let doc = buckler_testkit::Swagger2Doc::new("items", "1")
            .op("get", "/items/{id}")
            .op("post", "/items")
            .media(&["application/json"], &["application/json"])
            .to_json();
        let model = buckler_docs::parse_swagger2(doc.as_bytes(), &Default::default()).unwrap();
        let digest = crate::upstream::DocsDigest::of("swagger2", &[doc.as_bytes()]);
        let docs = crate::docs_loader::routable(&model, digest).unwrap();
        let settings = config.domains[0].clone();
        let spec = match &settings.upstream_watcher {
            buckler_config::UpstreamWatcher::Static { upstreams } => upstreams[0].clone(),
            _ => unreachable!(),
        };
        let handle = Arc::new(UpstreamHandle::new(spec, "api.test"));
        handle.set_docs(Arc::new(docs));
        RuntimeTable::build(
            Arc::new(config),
            1,
            vec![DomainInput::new(
                &settings,
                vec![(handle, 1.0)],
                Default::default(),
            )],
        )
    }

    #[test]
    fn local_endpoints_answer_get_and_head_only() {
        let table = table();
        let get = test_parts("GET", "/healthcheck", &[]);
        assert!(matches!(
            local_endpoint(&get, &table),
            Some(LocalEndpoint::Healthcheck)
        ));
        let head = test_parts("HEAD", "/metrics", &[]);
        assert!(matches!(
            local_endpoint(&head, &table),
            Some(LocalEndpoint::Metrics)
        ));
        let post = test_parts("POST", "/healthcheck", &[]);
        assert!(local_endpoint(&post, &table).is_none());
        let spec = test_parts("GET", "/spec", &[("host", "api.test")]);
        assert!(matches!(
            local_endpoint(&spec, &table),
            Some(LocalEndpoint::Spec(_))
        ));
        let unknown = test_parts("GET", "/spec", &[("host", "other.test")]);
        assert!(local_endpoint(&unknown, &table).is_none());
    }

    #[test]
    fn the_host_picks_the_domain_port_and_case_ignored() {
        let table = table();
        let parts = test_parts("GET", "/items/1", &[("host", "API.test:8080")]);
        assert_eq!(
            domain(&table, &parts).unwrap().settings.domain_name,
            "api.test"
        );
        let parts = test_parts("GET", "/items/1", &[("host", "other.test")]);
        assert!(matches!(
            domain(&table, &parts),
            Err(GatewayError::UnknownHost { host }) if host == "other.test"
        ));
    }

    #[test]
    fn method_and_path_pick_the_group_or_say_why_not() {
        let table = table();
        let domain = domain(&table, &test_parts("GET", "/", &[("host", "api.test")])).unwrap();
        let routed = |method, path| endpoint(&domain, &test_parts(method, path, &[]));
        assert!(matches!(
            routed("GET", "/items/7"),
            Ok(Endpoint::Group { stripped: None, .. })
        ));
        assert!(matches!(
            routed("GET", "/items/7.json"),
            Ok(Endpoint::Group { stripped: Some(path), .. }) if path == "/items/7"
        ));
        assert!(matches!(
            routed("DELETE", "/items/7"),
            Err(GatewayError::MethodNotAllowed { .. })
        ));
        assert!(matches!(
            routed("OPTIONS", "/items"),
            Ok(Endpoint::Options { allow }) if allow.contains("POST")
        ));
        assert!(matches!(
            routed("GET", "/nothing"),
            Err(GatewayError::NoRoute { .. })
        ));
    }

    #[test]
    fn negotiation_refuses_what_no_candidate_speaks() {
        let table = table();
        let domain = domain(&table, &test_parts("GET", "/", &[("host", "api.test")])).unwrap();
        let Ok(Endpoint::Group { group, .. }) =
            endpoint(&domain, &test_parts("POST", "/items", &[]))
        else {
            panic!("routed")
        };
        let xml = test_parts("POST", "/items", &[("content-type", "text/xml")]);
        assert!(matches!(
            negotiate(&group, &xml, true),
            Err(GatewayError::UnsupportedMediaType { .. })
        ));
        // Without a body there is no media type to check.
        assert!(negotiate(&group, &xml, false).is_ok());
        let json = test_parts("POST", "/items", &[("content-type", "application/json")]);
        assert!(negotiate(&group, &json, true).is_ok());
        let accept = test_parts("POST", "/items", &[("accept", "image/png")]);
        assert!(matches!(
            negotiate(&group, &accept, false),
            Err(GatewayError::NotAcceptable)
        ));
    }
}
