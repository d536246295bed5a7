//! Swagger 1.2 (and the older 1.1 shape): a resource listing naming API declarations, each
//! with `apis[].path` × `operations[]`. Declaration `basePath`/`resourcePath` are ignored for
//! routing, as Shield did: upstreams serve the paths as declared.

use indexmap::IndexMap;
use openapiv3 as oa;
use serde::Deserialize;
use serde_json::json;

use crate::error::check_json_start;
use crate::swagger2::{any_schema, media_list};
use crate::{DocsError, Limits, X_BODY_PARAMETERS, X_CONSUMES, X_PRODUCES};

#[derive(Debug, Deserialize)]
struct Listing {
    #[serde(default)]
    apis: Vec<ListedApi>,
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    #[serde(default)]
    info: Option<ListingInfo>,
}

#[derive(Debug, Deserialize)]
struct ListingInfo {
    title: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ListedApi {
    path: String,
}

#[derive(Debug, Deserialize)]
struct Declaration {
    #[serde(default)]
    apis: Vec<Api>,
    consumes: Option<Vec<String>>,
    produces: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct Api {
    path: String,
    #[serde(default)]
    operations: Vec<Operation>,
}

#[derive(Debug, Deserialize)]
struct Operation {
    method: Option<String>,
    /// Swagger 1.1 name of `method`.
    #[serde(rename = "httpMethod")]
    http_method: Option<String>,
    nickname: Option<String>,
    summary: Option<String>,
    consumes: Option<Vec<String>>,
    produces: Option<Vec<String>>,
    #[serde(default)]
    parameters: Vec<Param>,
}

#[derive(Debug, Deserialize)]
struct Param {
    name: String,
    #[serde(rename = "paramType")]
    param_type: String,
    #[serde(default)]
    required: bool,
}

fn check(bytes: &[u8], limits: &Limits) -> Result<(), DocsError> {
    if bytes.len() > limits.max_bytes {
        return Err(DocsError::TooLarge {
            bytes: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    check_json_start(bytes)
}

/// The API declaration paths a resource listing names, to be fetched next relative to the
/// listing URL (`/users` from `apis[].path`).
pub fn swagger1_listing(bytes: &[u8], limits: &Limits) -> Result<Vec<String>, DocsError> {
    check(bytes, limits)?;
    let listing: Listing = serde_json::from_slice(bytes).map_err(|e| DocsError::from_json(&e))?;
    if listing.apis.len() > limits.max_paths {
        return Err(DocsError::TooManyPaths { limit: limits.max_paths });
    }
    Ok(listing.apis.into_iter().map(|a| a.path).collect())
}

/// The listing and its fetched declarations (in listing order) as the normalised model.
pub fn parse_swagger1(listing: &[u8], declarations: &[Vec<u8>], limits: &Limits) -> Result<oa::OpenAPI, DocsError> {
    check(listing, limits)?;
    let parsed: Listing = serde_json::from_slice(listing).map_err(|e| DocsError::from_json(&e))?;
    let mut model = oa::OpenAPI {
        openapi: "3.0.3".to_owned(),
        info: oa::Info {
            title: parsed
                .info
                .and_then(|i| i.title)
                .unwrap_or_else(|| "(not specified)".to_owned()),
            version: parsed.api_version.unwrap_or_default(),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut paths: IndexMap<String, oa::PathItem> = IndexMap::new();
    let mut operations = 0usize;
    for bytes in declarations {
        check(bytes, limits)?;
        let declaration: Declaration = serde_json::from_slice(bytes).map_err(|e| DocsError::from_json(&e))?;
        for api in &declaration.apis {
            if !paths.contains_key(&api.path) && paths.len() >= limits.max_paths {
                return Err(DocsError::TooManyPaths { limit: limits.max_paths });
            }
            let item = paths.entry(api.path.clone()).or_default();
            for op in &api.operations {
                operations += 1;
                if operations > limits.max_operations {
                    return Err(DocsError::TooManyOperations {
                        limit: limits.max_operations,
                    });
                }
                let method = op
                    .method
                    .as_deref()
                    .or(op.http_method.as_deref())
                    .unwrap_or("GET")
                    .to_ascii_uppercase();
                let converted = convert(&declaration, &api.path, &method, op)?;
                let slot = match method.as_str() {
                    "GET" => &mut item.get,
                    "PUT" => &mut item.put,
                    "POST" => &mut item.post,
                    "DELETE" => &mut item.delete,
                    "OPTIONS" => &mut item.options,
                    "HEAD" => &mut item.head,
                    "PATCH" => &mut item.patch,
                    _ => continue,
                };
                *slot = Some(converted);
            }
        }
    }
    for (path, item) in paths {
        model.paths.paths.insert(path, oa::ReferenceOr::Item(item));
    }
    Ok(model)
}

fn convert(declaration: &Declaration, path: &str, method: &str, op: &Operation) -> Result<oa::Operation, DocsError> {
    let consumes = media_list(op.consumes.as_ref().or(declaration.consumes.as_ref()));
    let produces = media_list(op.produces.as_ref().or(declaration.produces.as_ref()));
    let mut converted = oa::Operation {
        operation_id: op.nickname.clone(),
        summary: op.summary.clone(),
        ..Default::default()
    };
    let mut body = Vec::new();
    for param in &op.parameters {
        let data = |name: String| oa::ParameterData {
            name,
            description: None,
            required: param.required || param.param_type == "path",
            deprecated: None,
            format: oa::ParameterSchemaOrContent::Schema(oa::ReferenceOr::Item(any_schema())),
            example: None,
            examples: IndexMap::new(),
            explode: None,
            extensions: IndexMap::new(),
        };
        let converted_param = match param.param_type.as_str() {
            "query" => oa::Parameter::Query {
                parameter_data: data(param.name.clone()),
                allow_reserved: false,
                style: oa::QueryStyle::Form,
                allow_empty_value: None,
            },
            "header" => oa::Parameter::Header {
                parameter_data: data(param.name.to_ascii_lowercase()),
                style: oa::HeaderStyle::Simple,
            },
            "path" => oa::Parameter::Path {
                parameter_data: data(param.name.clone()),
                style: oa::PathStyle::Simple,
            },
            "body" | "form" => {
                let location = if param.param_type == "body" { "body" } else { "formData" };
                body.push(json!([location, param.name]));
                continue;
            }
            other => {
                return Err(DocsError::InvalidParameterLocation {
                    path: path.to_owned(),
                    method: method.to_owned(),
                    name: param.name.clone(),
                    location: other.to_owned(),
                })
            }
        };
        converted.parameters.push(oa::ReferenceOr::Item(converted_param));
    }
    if !body.is_empty() {
        converted.extensions.insert(X_BODY_PARAMETERS.to_owned(), serde_json::Value::Array(body));
    }
    converted.responses.default = Some(oa::ReferenceOr::Item(oa::Response {
        description: "response".to_owned(),
        content: produces.iter().map(|t| (t.clone(), oa::MediaType::default())).collect(),
        ..Default::default()
    }));
    converted.extensions.insert(X_CONSUMES.to_owned(), json!(consumes));
    converted.extensions.insert(X_PRODUCES.to_owned(), json!(produces));
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_and_declarations_in_both_shapes() {
        let listing = br#"{"swaggerVersion": "1.2", "apiVersion": "1.0", "apis": [{"path": "/users"}, {"path": "/legacy"}]}"#;
        assert_eq!(swagger1_listing(listing, &Limits::default()).unwrap(), vec!["/users", "/legacy"]);
        let users = br#"{"swaggerVersion": "1.2", "basePath": "http://x", "produces": ["application/json"],
            "apis": [{"path": "/users/{id}", "operations": [
                {"method": "GET", "nickname": "getUser", "parameters": [{"name": "id", "paramType": "path"}, {"name": "X-A", "paramType": "header"}]},
                {"method": "PUT", "consumes": ["application/json"], "parameters": [{"name": "body", "paramType": "body"}]}
            ]}]}"#
            .to_vec();
        let legacy = br#"{"apis": [{"path": "/old", "operations": [{"httpMethod": "POST", "parameters": [{"name": "f", "paramType": "form"}]}]}]}"#.to_vec();
        let model = parse_swagger1(listing, &[users, legacy], &Limits::default()).unwrap();
        let list = crate::endpoints(&model);
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].method, http::Method::GET);
        assert_eq!(list[0].path, "/users/{id}");
        assert_eq!(list[0].produces, vec!["application/json"]);
        assert!(list[0].parameters.iter().any(|p| p.name == "x-a"));
        assert_eq!(list[1].consumes, vec!["application/json"]);
        assert_eq!(list[2].method, http::Method::POST);
        assert_eq!(list[2].path, "/old");
    }

    #[test]
    fn bad_param_type_is_an_error() {
        let listing = br#"{"apis": [{"path": "/a"}]}"#;
        let decl = br#"{"apis": [{"path": "/a", "operations": [{"method": "GET", "parameters": [{"name": "x", "paramType": "matrix"}]}]}]}"#.to_vec();
        let err = parse_swagger1(listing, &[decl], &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("matrix"), "{err}");
    }
}
