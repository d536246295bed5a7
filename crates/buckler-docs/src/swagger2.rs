//! Swagger 2.0: small hand-written serde structs (tolerant of fields Buckler does not use,
//! strict on the types of those it does), converted into the OpenAPI 3 model.

use indexmap::IndexMap;
use openapiv3 as oa;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::check_json_start;
use crate::limits::{limited_map, with_path_limit};
use crate::{DocsError, Limits, X_BODY_PARAMETERS, X_CONSUMES, X_PRODUCES};

#[derive(Debug, Deserialize)]
struct Document {
    swagger: Value,
    #[serde(default)]
    info: Info,
    #[serde(rename = "basePath")]
    base_path: Option<String>,
    consumes: Option<Vec<String>>,
    produces: Option<Vec<String>>,
    #[serde(default, deserialize_with = "limited_map")]
    paths: IndexMap<String, PathItem>,
    #[serde(default)]
    parameters: IndexMap<String, Param>,
}

#[derive(Debug, Default, Deserialize)]
struct Info {
    title: Option<String>,
    version: Option<String>,
    description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct PathItem {
    get: Option<Operation>,
    put: Option<Operation>,
    post: Option<Operation>,
    delete: Option<Operation>,
    options: Option<Operation>,
    head: Option<Operation>,
    patch: Option<Operation>,
    #[serde(default)]
    parameters: Vec<ParamOrRef>,
}

#[derive(Debug, Deserialize)]
struct Operation {
    consumes: Option<Vec<String>>,
    produces: Option<Vec<String>>,
    #[serde(default)]
    parameters: Vec<ParamOrRef>,
    #[serde(rename = "operationId")]
    operation_id: Option<String>,
    summary: Option<String>,
    description: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    responses: IndexMap<String, ResponseObject>,
    #[serde(flatten)]
    rest: IndexMap<String, Value>,
}

#[derive(Debug, Deserialize)]
struct ResponseObject {
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ParamOrRef {
    Ref {
        #[serde(rename = "$ref")]
        reference: String,
    },
    Param(Param),
}

#[derive(Debug, Clone, Deserialize)]
struct Param {
    name: String,
    #[serde(rename = "in")]
    location: String,
    #[serde(default)]
    required: bool,
    description: Option<String>,
}

/// Parses a Swagger 2.0 JSON document into the normalised model.
pub fn parse_swagger2(bytes: &[u8], limits: &Limits) -> Result<oa::OpenAPI, DocsError> {
    if bytes.len() > limits.max_bytes {
        return Err(DocsError::TooLarge {
            bytes: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    check_json_start(bytes)?;
    let document: Document = with_path_limit(limits, || serde_json::from_slice(bytes))?;
    if document.swagger.as_str() != Some("2.0") {
        return Err(DocsError::WrongVersion {
            found: document.swagger.to_string(),
            expected: "\"2.0\"",
        });
    }
    convert(document, limits)
}

fn convert(document: Document, limits: &Limits) -> Result<oa::OpenAPI, DocsError> {
    let mut model = oa::OpenAPI {
        openapi: "3.0.3".to_owned(),
        info: oa::Info {
            title: document.info.title.clone().unwrap_or_else(|| "(not specified)".to_owned()),
            version: document.info.version.clone().unwrap_or_default(),
            description: document.info.description.clone(),
            ..Default::default()
        },
        ..Default::default()
    };
    if let Some(base_path) = document.base_path.as_deref().filter(|b| !b.is_empty()) {
        model.servers.push(oa::Server {
            url: base_path.to_owned(),
            ..Default::default()
        });
    }
    let mut operations = 0usize;
    for (path, item) in &document.paths {
        let mut converted = oa::PathItem::default();
        let methods: [(&str, &Option<Operation>, &mut Option<oa::Operation>); 7] = [
            ("GET", &item.get, &mut converted.get),
            ("PUT", &item.put, &mut converted.put),
            ("POST", &item.post, &mut converted.post),
            ("DELETE", &item.delete, &mut converted.delete),
            ("OPTIONS", &item.options, &mut converted.options),
            ("HEAD", &item.head, &mut converted.head),
            ("PATCH", &item.patch, &mut converted.patch),
        ];
        for (method, operation, slot) in methods {
            let Some(operation) = operation else { continue };
            operations += 1;
            if operations > limits.max_operations {
                return Err(DocsError::TooManyOperations {
                    limit: limits.max_operations,
                });
            }
            *slot = Some(convert_operation(&document, path, method, &item.parameters, operation)?);
        }
        model.paths.paths.insert(path.clone(), oa::ReferenceOr::Item(converted));
    }
    Ok(model)
}

fn resolve(document: &Document, path: &str, method: &str, param: &ParamOrRef) -> Result<Param, DocsError> {
    match param {
        ParamOrRef::Param(param) => Ok(param.clone()),
        ParamOrRef::Ref { reference } => reference
            .strip_prefix("#/parameters/")
            .and_then(|name| document.parameters.get(name))
            .cloned()
            .ok_or_else(|| DocsError::UnresolvedReference {
                path: path.to_owned(),
                method: method.to_owned(),
                reference: reference.clone(),
            }),
    }
}

fn convert_operation(
    document: &Document,
    path: &str,
    method: &str,
    path_parameters: &[ParamOrRef],
    operation: &Operation,
) -> Result<oa::Operation, DocsError> {
    // Path-level parameters first; an operation parameter with the same (in, name) wins.
    let mut params: Vec<Param> = Vec::new();
    for param in path_parameters.iter().chain(&operation.parameters) {
        let param = resolve(document, path, method, param)?;
        let location = param.location.to_ascii_lowercase();
        params.retain(|p| !(p.location.eq_ignore_ascii_case(&location) && p.name == param.name));
        params.push(param);
    }
    let consumes = media_list(operation.consumes.as_ref().or(document.consumes.as_ref()));
    let produces = media_list(operation.produces.as_ref().or(document.produces.as_ref()));

    let mut converted = oa::Operation {
        operation_id: operation.operation_id.clone(),
        summary: operation.summary.clone(),
        description: operation.description.clone(),
        tags: operation.tags.clone(),
        ..Default::default()
    };
    let mut body_parameters = Vec::new();
    for param in &params {
        let data = oa::ParameterData {
            name: if param.location.eq_ignore_ascii_case("header") {
                param.name.to_ascii_lowercase()
            } else {
                param.name.clone()
            },
            description: param.description.clone(),
            required: param.required || param.location == "path",
            deprecated: None,
            format: oa::ParameterSchemaOrContent::Schema(oa::ReferenceOr::Item(any_schema())),
            example: None,
            examples: IndexMap::new(),
            explode: None,
            extensions: IndexMap::new(),
        };
        let converted_param = match param.location.to_ascii_lowercase().as_str() {
            "query" => oa::Parameter::Query {
                parameter_data: data,
                allow_reserved: false,
                style: oa::QueryStyle::Form,
                allow_empty_value: None,
            },
            "header" => oa::Parameter::Header {
                parameter_data: data,
                style: oa::HeaderStyle::Simple,
            },
            "path" => oa::Parameter::Path {
                parameter_data: data,
                style: oa::PathStyle::Simple,
            },
            "body" | "formdata" => {
                let location = if param.location.eq_ignore_ascii_case("body") { "body" } else { "formData" };
                body_parameters.push(json!([location, param.name]));
                continue;
            }
            _ => {
                return Err(DocsError::InvalidParameterLocation {
                    path: path.to_owned(),
                    method: method.to_owned(),
                    name: param.name.clone(),
                    location: param.location.clone(),
                })
            }
        };
        converted.parameters.push(oa::ReferenceOr::Item(converted_param));
    }
    if !body_parameters.is_empty() {
        let types = if consumes.is_empty() { vec!["application/json".to_owned()] } else { consumes.clone() };
        converted.request_body = Some(oa::ReferenceOr::Item(oa::RequestBody {
            content: types.iter().map(|t| (t.clone(), oa::MediaType::default())).collect(),
            required: true,
            ..Default::default()
        }));
        converted
            .extensions
            .insert(X_BODY_PARAMETERS.to_owned(), Value::Array(body_parameters));
    }
    let responses = if operation.responses.is_empty() {
        vec![("default".to_owned(), "response".to_owned())]
    } else {
        operation
            .responses
            .iter()
            .map(|(code, r)| (code.clone(), r.description.clone().unwrap_or_default()))
            .collect()
    };
    for (code, description) in responses {
        let response = oa::Response {
            description,
            content: produces.iter().map(|t| (t.clone(), oa::MediaType::default())).collect(),
            ..Default::default()
        };
        match code.parse::<u16>() {
            Ok(status) => {
                converted
                    .responses
                    .responses
                    .insert(oa::StatusCode::Code(status), oa::ReferenceOr::Item(response));
            }
            Err(_) => converted.responses.default = Some(oa::ReferenceOr::Item(response)),
        }
    }
    converted.extensions.insert(X_CONSUMES.to_owned(), json!(consumes));
    converted.extensions.insert(X_PRODUCES.to_owned(), json!(produces));
    for (key, value) in &operation.rest {
        let lower = key.to_ascii_lowercase();
        if lower == "x-disabled-middleware" || lower == "x-disabled-listeners" {
            converted.extensions.insert(lower, value.clone());
        }
    }
    Ok(converted)
}

/// Media types with parameters dropped and lower-cased; unparsable entries dropped.
pub(crate) fn media_list(types: Option<&Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for raw in types.into_iter().flatten() {
        let essence = raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if essence.split_once('/').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty()) && !out.contains(&essence) {
            out.push(essence);
        }
    }
    out
}

pub(crate) fn any_schema() -> oa::Schema {
    oa::Schema {
        schema_data: Default::default(),
        schema_kind: oa::SchemaKind::Any(Default::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{endpoints, ParamLocation};

    fn parse(doc: Value) -> Result<oa::OpenAPI, DocsError> {
        parse_swagger2(doc.to_string().as_bytes(), &Limits::default())
    }

    #[test]
    fn base_path_media_types_parameters_and_extensions() {
        let model = parse(json!({
            "swagger": "2.0",
            "info": {"title": "pets", "version": "2"},
            "basePath": "/v2",
            "consumes": ["application/json"],
            "produces": ["application/json", "application/xml; charset=utf-8"],
            "parameters": {"limit": {"name": "limit", "in": "query"}},
            "paths": {
                "/pets/{id}": {
                    "parameters": [{"name": "id", "in": "path", "required": true}, {"name": "X-Trace", "in": "header"}],
                    "get": {"parameters": [{"$ref": "#/parameters/limit"}], "responses": {"200": {"description": "ok"}}},
                    "put": {"consumes": ["text/plain"], "produces": [], "parameters": [{"name": "body", "in": "body"}, {"name": "X-Trace", "in": "header", "description": "override"}]},
                    "head": {"x-Disabled-Middleware": ["RateLimit"], "x-disabled-listeners": ["log"]},
                    "post": {"parameters": [{"name": "f", "in": "FormData"}]}
                }
            }
        }))
        .unwrap();
        let list = endpoints(&model);
        assert_eq!(list.len(), 4);
        let get = list.iter().find(|e| e.method == http::Method::GET).unwrap();
        assert_eq!(get.path, "/v2/pets/{id}");
        assert_eq!(get.consumes, vec!["application/json"]);
        assert_eq!(get.produces, vec!["application/json", "application/xml"]);
        let locations: Vec<(ParamLocation, &str)> = get.parameters.iter().map(|p| (p.location, p.name.as_str())).collect();
        assert_eq!(
            locations,
            vec![(ParamLocation::Path, "id"), (ParamLocation::Header, "x-trace"), (ParamLocation::Query, "limit")]
        );
        let put = list.iter().find(|e| e.method == http::Method::PUT).unwrap();
        assert_eq!(put.consumes, vec!["text/plain"], "operation overrides root");
        assert!(put.produces.is_empty(), "an empty operation list overrides too");
        assert!(put.parameters.iter().any(|p| p.location == ParamLocation::Body));
        assert_eq!(put.parameters.iter().filter(|p| p.name == "x-trace").count(), 1, "operation wins");
        let head = list.iter().find(|e| e.method == http::Method::HEAD).unwrap();
        assert_eq!(head.disabled_middleware, vec!["ratelimit"]);
        assert_eq!(head.disabled_listeners, vec!["log"]);
        let post = list.iter().find(|e| e.method == http::Method::POST).unwrap();
        assert!(post.parameters.iter().any(|p| p.location == ParamLocation::FormData));
        assert_eq!(crate::service_info(&model), ("pets".to_owned(), "2".to_owned()));
    }

    #[test]
    fn errors_are_precise() {
        let wrong_type = parse(json!({"swagger": "2.0", "info": {"title": 7}, "paths": {}})).unwrap_err();
        assert!(matches!(wrong_type, DocsError::Json { .. }), "{wrong_type}");
        assert!(wrong_type.to_string().contains("line 1"), "{wrong_type}");
        let paths_list = parse(json!({"swagger": "2.0", "paths": []})).unwrap_err();
        assert!(paths_list.to_string().contains("map"), "{paths_list}");
        let version = parse(json!({"swagger": "1.2", "paths": {}})).unwrap_err();
        assert!(matches!(version, DocsError::WrongVersion { .. }), "{version}");
        let location = parse(json!({"swagger": "2.0", "paths": {"/a": {"get": {"parameters": [{"name": "x", "in": "cookie"}]}}}})).unwrap_err();
        assert!(location.to_string().contains("GET /a") && location.to_string().contains("cookie"), "{location}");
        let reference = parse(json!({"swagger": "2.0", "paths": {"/a": {"get": {"parameters": [{"$ref": "#/parameters/nope"}]}}}})).unwrap_err();
        assert!(matches!(reference, DocsError::UnresolvedReference { .. }), "{reference}");
        assert_eq!(parse_swagger2(b"swagger: '2.0'\npaths: {}\n", &Limits::default()).unwrap_err(), DocsError::NotJson);
        let small = Limits { max_bytes: 10, ..Limits::default() };
        assert!(matches!(parse_swagger2(b"{\"swagger\": \"2.0\"}", &small), Err(DocsError::TooLarge { .. })));
    }

    #[test]
    fn path_and_operation_limits() {
        let mut paths = serde_json::Map::new();
        for i in 0..20 {
            paths.insert(format!("/p{i}"), json!({"get": {}, "post": {}}));
        }
        let doc = json!({"swagger": "2.0", "paths": paths}).to_string();
        let few_paths = Limits { max_paths: 10, ..Limits::default() };
        assert_eq!(parse_swagger2(doc.as_bytes(), &few_paths).unwrap_err(), DocsError::TooManyPaths { limit: 10 });
        let few_ops = Limits { max_operations: 30, ..Limits::default() };
        assert_eq!(parse_swagger2(doc.as_bytes(), &few_ops).unwrap_err(), DocsError::TooManyOperations { limit: 30 });
        assert_eq!(endpoints(&parse_swagger2(doc.as_bytes(), &Limits::default()).unwrap()).len(), 40);
    }
}
