//! Routable endpoints, extracted from the normalised model.

use openapiv3 as oa;
use serde_json::Value;

use crate::media::media_list;
use crate::{
    X_BODY_PARAMETERS, X_CONSUMES, X_DISABLED_LISTENERS, X_DISABLED_MIDDLEWARE, X_PRODUCES,
};

/// Where a parameter lives. `Body` and `FormData` only come from Swagger documents (an
/// OpenAPI 3 request body is not a parameter).
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
    /// Header names are lower-cased; other names are kept as declared.
    pub name: String,
}

/// One operation as the router sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub method: http::Method,
    /// The full template, base path included: `/v1/users/{id}`. Always starts with `/`.
    pub path: String,
    /// Media types, parameters dropped, lower-cased, deduplicated; empty = declares nothing.
    pub consumes: Vec<String>,
    /// Same rules as `consumes`; for OpenAPI 3, the union over the responses (status codes in
    /// order, then `default`).
    pub produces: Vec<String>,
    /// Path-level merged with operation-level (operation wins on the same location and name,
    /// and comes last); then body and form parameters.
    pub parameters: Vec<Parameter>,
    /// From `x-disabled-middleware`, lower-cased; a value that is not a list is ignored.
    pub disabled_middleware: Vec<String>,
    /// From `x-disabled-listeners`, lower-cased (listener ids compare case-insensitively).
    pub disabled_listeners: Vec<String>,
}

/// Every operation of the model as a routable endpoint, in document order (paths in order,
/// then get, put, post, delete, options, head, patch, trace). Path items given as a `$ref`
/// are skipped (the OpenAPI 3 parser inlines the ones it can resolve); parameter, request
/// body and response references are resolved against `components`, unresolvable ones skipped.
pub fn endpoints(doc: &oa::OpenAPI) -> Vec<Endpoint> {
    let base = base_path(doc);
    let mut out = Vec::new();
    for (path, item) in &doc.paths.paths {
        let oa::ReferenceOr::Item(item) = item else {
            continue;
        };
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
            if let Some(operation) = operation {
                out.push(endpoint(doc, join(&base, path), method, item, operation));
            }
        }
    }
    out
}

/// Title and version from `info` (`"(not specified)"` when the title is empty).
pub fn service_info(doc: &oa::OpenAPI) -> (String, String) {
    let title = if doc.info.title.trim().is_empty() {
        "(not specified)".to_owned()
    } else {
        doc.info.title.clone()
    };
    (title, doc.info.version.clone())
}

/// The path part of the first server's URL (`https://api.x.com/v1` → `/v1`; `/` → empty), with
/// server variables replaced by their defaults; query and fragment dropped.
fn base_path(doc: &oa::OpenAPI) -> String {
    let Some(server) = doc.servers.first() else {
        return String::new();
    };
    let mut url = server.url.clone();
    for (name, variable) in server.variables.iter().flatten() {
        url = url.replace(&format!("{{{name}}}"), &variable.default);
    }
    let after_authority = |rest: &str| {
        rest.find('/')
            .map_or(String::new(), |i| rest[i..].to_owned())
    };
    let path = match url.split_once("://") {
        Some((_, rest)) => after_authority(rest),
        None => match url.strip_prefix("//") {
            Some(rest) => after_authority(rest),
            None => url,
        },
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = path.trim_end_matches('/');
    if path.is_empty() || path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// `base` + `path` with exactly one slash between them.
fn join(base: &str, path: &str) -> String {
    let path = path.trim_start_matches('/');
    match (base.is_empty(), path.is_empty()) {
        (true, _) => format!("/{path}"),
        (false, true) => base.to_owned(),
        (false, false) => format!("{base}/{path}"),
    }
}

fn endpoint(
    doc: &oa::OpenAPI,
    path: String,
    method: http::Method,
    item: &oa::PathItem,
    op: &oa::Operation,
) -> Endpoint {
    let consumes = match strings(extension(op, X_CONSUMES)) {
        Some(types) => types,
        None => request_body(doc, op)
            .map(|body| body.content.keys().cloned().collect())
            .unwrap_or_default(),
    };
    let produces = match strings(extension(op, X_PRODUCES)) {
        Some(types) => types,
        None => op
            .responses
            .responses
            .values()
            .chain(&op.responses.default)
            .filter_map(|r| response(doc, r))
            .flat_map(|r| r.content.keys().cloned())
            .collect(),
    };
    Endpoint {
        method,
        path,
        consumes: media_list(&consumes),
        produces: media_list(&produces),
        parameters: parameters(doc, item, op),
        disabled_middleware: lower_cased(extension(op, X_DISABLED_MIDDLEWARE)),
        disabled_listeners: lower_cased(extension(op, X_DISABLED_LISTENERS)),
    }
}

fn parameters(doc: &oa::OpenAPI, item: &oa::PathItem, op: &oa::Operation) -> Vec<Parameter> {
    let mut parameters: Vec<Parameter> = Vec::new();
    for param in item.parameters.iter().chain(&op.parameters) {
        let Some(param) = parameter(doc, param) else {
            continue;
        };
        parameters.retain(|p| p != &param);
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
    parameters
}

fn parameter(doc: &oa::OpenAPI, param: &oa::ReferenceOr<oa::Parameter>) -> Option<Parameter> {
    let param = resolve(param, "#/components/parameters/", |c| &c.parameters, doc)?;
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

fn request_body<'a>(doc: &'a oa::OpenAPI, op: &'a oa::Operation) -> Option<&'a oa::RequestBody> {
    resolve(
        op.request_body.as_ref()?,
        "#/components/requestBodies/",
        |c| &c.request_bodies,
        doc,
    )
}

fn response<'a>(
    doc: &'a oa::OpenAPI,
    response: &'a oa::ReferenceOr<oa::Response>,
) -> Option<&'a oa::Response> {
    resolve(response, "#/components/responses/", |c| &c.responses, doc)
}

/// The item itself, or the component a local reference names (one level: components that are
/// references themselves are not followed).
fn resolve<'a, T>(
    value: &'a oa::ReferenceOr<T>,
    prefix: &str,
    section: impl Fn(&'a oa::Components) -> &'a indexmap::IndexMap<String, oa::ReferenceOr<T>>,
    doc: &'a oa::OpenAPI,
) -> Option<&'a T> {
    match value {
        oa::ReferenceOr::Item(item) => Some(item),
        oa::ReferenceOr::Reference { reference } => {
            let name = reference
                .strip_prefix(prefix)?
                .replace("~1", "/")
                .replace("~0", "~");
            section(doc.components.as_ref()?).get(&name)?.as_item()
        }
    }
}

/// An operation extension, the key matched case-insensitively.
fn extension<'a>(op: &'a oa::Operation, key: &str) -> Option<&'a Value> {
    op.extensions
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// The strings of a JSON array (other items skipped); `None` when it is not an array.
fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    let items = value?.as_array()?;
    Some(
        items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
    )
}

fn lower_cased(value: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in strings(value).unwrap_or_default() {
        let id = id.to_ascii_lowercase();
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests;
