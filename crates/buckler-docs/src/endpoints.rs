//! Routable endpoints, extracted from the normalised model.

use openapiv3 as oa;
use serde_json::Value;

use crate::swagger2::media_list;
use crate::{X_BODY_PARAMETERS, X_CONSUMES, X_PRODUCES};

/// Where a parameter lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamLocation {
    Path,
    Query,
    Header,
    Cookie,
    Body,
    FormData,
}

/// One declared parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub location: ParamLocation,
    /// Header names are lower-cased.
    pub name: String,
}

/// One operation as the router sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub method: http::Method,
    /// The full template, base path included: `/v1/users/{id}`.
    pub path: String,
    /// Media types, parameters dropped, lower-cased; empty = declares nothing.
    pub consumes: Vec<String>,
    pub produces: Vec<String>,
    /// Path-level merged with operation-level (operation wins on the same location and name).
    pub parameters: Vec<Parameter>,
    /// From `x-disabled-middleware`, lower-cased.
    pub disabled_middleware: Vec<String>,
    /// From `x-disabled-listeners`.
    pub disabled_listeners: Vec<String>,
}

/// The path part of the first server's URL (`https://api.x.com/v1` → `/v1`; `/` → ``), with
/// server variables replaced by their defaults.
fn base_path(doc: &oa::OpenAPI) -> String {
    let Some(server) = doc.servers.first() else {
        return String::new();
    };
    let mut url = server.url.clone();
    if let Some(variables) = &server.variables {
        for (name, variable) in variables {
            url = url.replace(&format!("{{{name}}}"), &variable.default);
        }
    }
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => url.as_str(),
    };
    path.trim_end_matches('/').to_owned()
}

fn join(base: &str, path: &str) -> String {
    if base.is_empty() {
        return path.to_owned();
    }
    if path.is_empty() || path == "/" {
        return base.to_owned();
    }
    format!("{base}/{}", path.trim_start_matches('/'))
}

fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    value?.as_array().map(|items| items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
}

fn extension<'a>(op: &'a oa::Operation, key: &str) -> Option<&'a Value> {
    op.extensions
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn parameter_of(param: &oa::ReferenceOr<oa::Parameter>) -> Option<Parameter> {
    let oa::ReferenceOr::Item(param) = param else { return None };
    let (location, data) = match param {
        oa::Parameter::Query { parameter_data, .. } => (ParamLocation::Query, parameter_data),
        oa::Parameter::Header { parameter_data, .. } => (ParamLocation::Header, parameter_data),
        oa::Parameter::Path { parameter_data, .. } => (ParamLocation::Path, parameter_data),
        oa::Parameter::Cookie { parameter_data, .. } => (ParamLocation::Cookie, parameter_data),
    };
    let name = if location == ParamLocation::Header {
        data.name.to_ascii_lowercase()
    } else {
        data.name.clone()
    };
    Some(Parameter { location, name })
}

/// Every operation of the model as a routable endpoint, in document order.
pub fn endpoints(doc: &oa::OpenAPI) -> Vec<Endpoint> {
    let base = base_path(doc);
    let mut out = Vec::new();
    for (path, item) in &doc.paths.paths {
        let oa::ReferenceOr::Item(item) = item else { continue };
        let operations = [
            (http::Method::GET, &item.get),
            (http::Method::PUT, &item.put),
            (http::Method::POST, &item.post),
            (http::Method::DELETE, &item.delete),
            (http::Method::OPTIONS, &item.options),
            (http::Method::HEAD, &item.head),
            (http::Method::PATCH, &item.patch),
            (http::Method::TRACE, &item.trace),
        ];
        for (method, operation) in operations {
            let Some(op) = operation else { continue };
            out.push(endpoint(&base, path, method, item, op));
        }
    }
    out
}

fn endpoint(base: &str, path: &str, method: http::Method, item: &oa::PathItem, op: &oa::Operation) -> Endpoint {
    let consumes = strings(extension(op, X_CONSUMES)).unwrap_or_else(|| match &op.request_body {
        Some(oa::ReferenceOr::Item(body)) => body.content.keys().cloned().collect(),
        _ => Vec::new(),
    });
    let produces = strings(extension(op, X_PRODUCES)).unwrap_or_else(|| {
        let mut types = Vec::new();
        let all = op.responses.default.iter().chain(op.responses.responses.values());
        for response in all {
            if let oa::ReferenceOr::Item(response) = response {
                types.extend(response.content.keys().cloned());
            }
        }
        types
    });
    let mut parameters: Vec<Parameter> = Vec::new();
    for param in item.parameters.iter().chain(&op.parameters).filter_map(parameter_of) {
        parameters.retain(|p| !(p.location == param.location && p.name == param.name));
        parameters.push(param);
    }
    if let Some(Value::Array(pairs)) = extension(op, X_BODY_PARAMETERS) {
        for pair in pairs {
            let location = match pair.get(0).and_then(Value::as_str) {
                Some("body") => ParamLocation::Body,
                Some("formData") => ParamLocation::FormData,
                _ => continue,
            };
            if let Some(name) = pair.get(1).and_then(Value::as_str) {
                parameters.push(Parameter {
                    location,
                    name: name.to_owned(),
                });
            }
        }
    }
    let lower = |key: &str| -> Vec<String> {
        strings(extension(op, key))
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .collect()
    };
    Endpoint {
        method,
        path: join(base, path),
        consumes: media_list(Some(&consumes)),
        produces: media_list(Some(&produces)),
        parameters,
        disabled_middleware: lower("x-disabled-middleware"),
        disabled_listeners: lower("x-disabled-listeners"),
    }
}

/// Title and version from `info` (`"(not specified)"` when the title is empty).
pub fn service_info(doc: &oa::OpenAPI) -> (String, String) {
    let title = if doc.info.title.is_empty() {
        "(not specified)".to_owned()
    } else {
        doc.info.title.clone()
    };
    (title, doc.info.version.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_join_cleanly() {
        let mut doc = oa::OpenAPI::default();
        assert_eq!(base_path(&doc), "");
        for (url, expected) in [("/v1", "/v1"), ("/", ""), ("https://api.example.com/v2/", "/v2"), ("https://api.example.com", "")] {
            doc.servers = vec![oa::Server { url: url.to_owned(), ..Default::default() }];
            assert_eq!(base_path(&doc), expected, "{url}");
        }
        assert_eq!(join("/v1", "/users"), "/v1/users");
        assert_eq!(join("/v1", "/"), "/v1");
        assert_eq!(join("", "/users"), "/users");
    }
}
