//! Swagger 1.2 (and the older 1.1 shape): a resource listing naming API declarations, each
//! with `apis[].path` × `operations[]`.
//!
//! As Shield did: declaration `basePath`/`resourcePath` are ignored for routing (upstreams
//! serve the paths as declared), and, as the 1.1 → 1.2 migration did, `{format}` in listing
//! and API paths becomes `json`. 1.1 spells `method` as `httpMethod`; `paramType` is matched
//! case-insensitively (`form` is the form location). Swagger 1 has no vendor extensions.
//! The listing and each declaration may be JSON or YAML, told apart by content.

use indexmap::IndexMap;
use openapiv3 as oa;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::json::{check_counts, parse_typed, read_body, PathCensus};
use crate::media::media_list;
use crate::model::{build_operation, merge_param, SourceOperation, SourceParam};
use crate::{schema, DocsError, Limits, ParamLocation};

#[derive(Debug, Deserialize)]
struct Listing {
    #[serde(default)]
    apis: Vec<ListedApi>,
    #[serde(rename = "apiVersion")]
    api_version: Option<Value>,
    info: Option<ListingInfo>,
    #[serde(rename = "swaggerVersion")]
    swagger_version: Option<Value>,
    swagger: Option<Value>,
    openapi: Option<Value>,
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
    #[serde(rename = "swaggerVersion")]
    swagger_version: Option<Value>,
    swagger: Option<Value>,
    openapi: Option<Value>,
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
    notes: Option<String>,
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
    description: Option<String>,
    /// 1.2 primitive type (1.1: `dataType`).
    #[serde(rename = "type", alias = "dataType")]
    data_type: Option<String>,
    format: Option<String>,
}

const EXPECTED_VERSION: &str = "swaggerVersion \"1.x\"";

fn check_version(
    swagger_version: Option<&Value>,
    swagger: Option<&Value>,
    openapi: Option<&Value>,
) -> Result<(), DocsError> {
    if let Some(other) = swagger.or(openapi) {
        return Err(DocsError::WrongVersion {
            found: other.to_string(),
            expected: EXPECTED_VERSION,
        });
    }
    let version = match swagger_version {
        None => return Ok(()),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    };
    if version.starts_with("1.") {
        Ok(())
    } else {
        Err(DocsError::WrongVersion {
            found: format!("{version:?}"),
            expected: EXPECTED_VERSION,
        })
    }
}

fn read_listing(bytes: &[u8], limits: &Limits) -> Result<Listing, DocsError> {
    let listing: Listing = parse_typed(read_body(bytes, limits, None)?)?;
    check_version(
        listing.swagger_version.as_ref(),
        listing.swagger.as_ref(),
        listing.openapi.as_ref(),
    )?;
    if listing.apis.len() > limits.max_paths {
        return Err(DocsError::TooManyPaths {
            count: listing.apis.len(),
            limit: limits.max_paths,
        });
    }
    Ok(listing)
}

/// The API declaration paths a resource listing names, in order, to be fetched next relative
/// to the listing URL (`/users` from `apis[].path`; always with a leading `/`; `{format}`
/// replaced by `json`). More listed APIs than `max_paths` is an error.
pub fn swagger1_listing(bytes: &[u8], limits: &Limits) -> Result<Vec<String>, DocsError> {
    let listing = read_listing(bytes, limits)?;
    Ok(listing
        .apis
        .iter()
        .map(|api| normalise_path(&api.path))
        .collect())
}

fn normalise_path(path: &str) -> String {
    let path = path.replace("{format}", "json");
    if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    }
}

/// The listing and its fetched declarations (in listing order) as the normalised model.
/// Title from the listing's `info.title`, version from its `apiVersion`. Paths and operations
/// are counted across all declarations; a path declared twice merges, the later operation for
/// the same method wins.
pub fn parse_swagger1(
    listing: &[u8],
    declarations: &[Vec<u8>],
    limits: &Limits,
) -> Result<oa::OpenAPI, DocsError> {
    let listing = read_listing(listing, limits)?;
    let version = match listing.api_version {
        Some(Value::String(text)) => text,
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let mut model = oa::OpenAPI {
        openapi: "3.0.3".to_owned(),
        info: oa::Info {
            title: listing
                .info
                .and_then(|i| i.title)
                .unwrap_or_else(|| "(not specified)".to_owned()),
            version,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut paths: IndexMap<String, oa::PathItem> = IndexMap::new();
    let mut counts = PathCensus::default();
    for bytes in declarations {
        let declaration: Declaration = parse_typed(read_body(bytes, limits, None)?)?;
        check_version(
            declaration.swagger_version.as_ref(),
            declaration.swagger.as_ref(),
            declaration.openapi.as_ref(),
        )?;
        for api in &declaration.apis {
            let path = normalise_path(&api.path);
            counts.paths += usize::from(!paths.contains_key(&path));
            counts.operations += api.operations.len();
            check_counts(counts, limits)?;
            let item = paths.entry(path.clone()).or_default();
            for (index, operation) in api.operations.iter().enumerate() {
                let method = operation
                    .method
                    .as_deref()
                    .or(operation.http_method.as_deref())
                    .ok_or_else(|| DocsError::MissingMethod {
                        path: path.clone(),
                        index,
                    })?
                    .to_ascii_uppercase();
                let slot = match method.as_str() {
                    "GET" => &mut item.get,
                    "PUT" => &mut item.put,
                    "POST" => &mut item.post,
                    "DELETE" => &mut item.delete,
                    "OPTIONS" => &mut item.options,
                    "HEAD" => &mut item.head,
                    "PATCH" => &mut item.patch,
                    _ => return Err(DocsError::UnsupportedMethod { path, method }),
                };
                *slot = Some(convert(&declaration, &path, &method, operation)?);
            }
        }
    }
    for (path, item) in paths {
        model.paths.paths.insert(path, oa::ReferenceOr::Item(item));
    }
    Ok(model)
}

fn convert(
    declaration: &Declaration,
    path: &str,
    method: &str,
    operation: &Operation,
) -> Result<oa::Operation, DocsError> {
    let mut params = Vec::with_capacity(operation.parameters.len());
    for param in &operation.parameters {
        let location = match param.param_type.to_ascii_lowercase().as_str() {
            "body" => ParamLocation::Body,
            "form" => ParamLocation::FormData,
            "header" => ParamLocation::Header,
            "path" => ParamLocation::Path,
            "query" => ParamLocation::Query,
            _ => {
                return Err(DocsError::InvalidParameterLocation {
                    path: path.to_owned(),
                    method: method.to_owned(),
                    name: param.name.clone(),
                    location: param.param_type.clone(),
                    expected: "body, form, header, path, query",
                })
            }
        };
        merge_param(
            &mut params,
            SourceParam {
                location,
                name: param.name.clone(),
                required: param.required,
                description: param.description.clone(),
                schema: primitive_schema(param),
            },
        );
    }
    let consumes = operation
        .consumes
        .as_ref()
        .or(declaration.consumes.as_ref());
    let produces = operation
        .produces
        .as_ref()
        .or(declaration.produces.as_ref());
    Ok(build_operation(SourceOperation {
        operation_id: operation.nickname.clone(),
        summary: operation.summary.clone(),
        description: operation.notes.clone(),
        params,
        consumes: media_list(consumes.into_iter().flatten()),
        produces: media_list(produces.into_iter().flatten()),
        ..Default::default()
    }))
}

/// Primitive 1.2 types carry over; models and 1.1 type names become the any-schema.
fn primitive_schema(param: &Param) -> oa::ReferenceOr<oa::Schema> {
    let mut fields = Map::new();
    if let Some(kind) = param.data_type.as_deref() {
        if matches!(kind, "integer" | "number" | "string" | "boolean") {
            fields.insert("type".to_owned(), Value::from(kind));
            if let Some(format) = &param.format {
                fields.insert("format".to_owned(), Value::from(format.as_str()));
            }
        }
    }
    schema::from_inline(&fields)
}

#[cfg(test)]
mod tests;
