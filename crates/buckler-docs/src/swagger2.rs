//! Swagger 2.0: small hand-written serde types (tolerant of fields Buckler does not read,
//! strict on the types of those it does), converted into the OpenAPI 3 model.
//!
//! No `#[serde(flatten)]`: it buffers the whole object and error positions would point at its
//! end. Objects that keep arbitrary extra keys have hand-written visitors instead.

use std::fmt;

use indexmap::IndexMap;
use openapiv3 as oa;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::json::{census, parse_typed, parse_value, read_body, version_text, without_extensions};
use crate::media::media_list;
use crate::model::{build_operation, merge_param, SourceOperation, SourceParam, SourceResponse};
use crate::pointer::{merged, resolve_local};
use crate::{
    schema, DocFormat, DocsError, Limits, ParamLocation, X_DISABLED_LISTENERS,
    X_DISABLED_MIDDLEWARE,
};

#[derive(Debug, Deserialize)]
struct Document {
    #[serde(default)]
    info: Info,
    #[serde(rename = "basePath")]
    base_path: Option<String>,
    consumes: Option<Vec<String>>,
    produces: Option<Vec<String>>,
    #[serde(default, deserialize_with = "without_extensions")]
    paths: IndexMap<String, PathItem>,
    #[serde(default)]
    parameters: IndexMap<String, Param>,
    #[serde(default, deserialize_with = "without_extensions")]
    responses: IndexMap<String, Response>,
    #[serde(default)]
    definitions: IndexMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Info {
    title: Option<String>,
    version: Option<String>,
    description: Option<String>,
}

/// Swagger 2 has no `trace`. A `$ref` is resolved against the document before conversion.
#[derive(Debug, Default, Deserialize)]
struct PathItem {
    #[serde(rename = "$ref")]
    reference: Option<String>,
    get: Option<Operation>,
    put: Option<Operation>,
    post: Option<Operation>,
    delete: Option<Operation>,
    options: Option<Operation>,
    head: Option<Operation>,
    patch: Option<Operation>,
    #[serde(default)]
    parameters: Vec<Param>,
}

#[derive(Debug, Default)]
struct Operation {
    operation_id: Option<String>,
    summary: Option<String>,
    description: Option<String>,
    tags: Vec<String>,
    deprecated: bool,
    consumes: Option<Vec<String>>,
    produces: Option<Vec<String>>,
    parameters: Vec<Param>,
    responses: IndexMap<String, Response>,
    /// `x-` keys; the two Buckler reads are stored under their lower-case names.
    extensions: IndexMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Response {
    #[serde(rename = "$ref")]
    reference: Option<String>,
    description: Option<String>,
    schema: Option<Value>,
}

/// A parameter or a `$ref` to one; `name` and `in` are checked after resolution so that the
/// error can name the operation.
#[derive(Debug, Default, Clone)]
struct Param {
    reference: Option<String>,
    name: Option<String>,
    location: Option<String>,
    required: bool,
    description: Option<String>,
    schema: Option<Value>,
    /// Everything else: the inline schema of non-body parameters (`type`, `format`, ...).
    inline: Map<String, Value>,
}

impl<'de> Deserialize<'de> for Operation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OperationVisitor;
        impl<'de> Visitor<'de> for OperationVisitor {
            type Value = Operation;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an operation object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Operation, A::Error> {
                let mut op = Operation::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "operationId" => op.operation_id = map.next_value()?,
                        "summary" => op.summary = map.next_value()?,
                        "description" => op.description = map.next_value()?,
                        "tags" => op.tags = map.next_value::<Option<_>>()?.unwrap_or_default(),
                        "deprecated" => {
                            op.deprecated = map.next_value::<Option<_>>()?.unwrap_or_default()
                        }
                        "consumes" => op.consumes = map.next_value()?,
                        "produces" => op.produces = map.next_value()?,
                        "parameters" => {
                            op.parameters = map.next_value::<Option<_>>()?.unwrap_or_default()
                        }
                        "responses" => op.responses = map.next_value::<Responses>()?.0,
                        _ => {
                            let lower = key.to_ascii_lowercase();
                            if lower == X_DISABLED_MIDDLEWARE || lower == X_DISABLED_LISTENERS {
                                op.extensions.insert(lower, map.next_value()?);
                            } else if key.starts_with("x-") {
                                op.extensions.insert(key, map.next_value()?);
                            } else {
                                map.next_value::<IgnoredAny>()?;
                            }
                        }
                    }
                }
                Ok(op)
            }
        }
        deserializer.deserialize_map(OperationVisitor)
    }
}

#[derive(Deserialize)]
struct Responses(#[serde(deserialize_with = "without_extensions")] IndexMap<String, Response>);

impl<'de> Deserialize<'de> for Param {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParamVisitor;
        impl<'de> Visitor<'de> for ParamVisitor {
            type Value = Param;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a parameter object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Param, A::Error> {
                let mut param = Param::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "$ref" => param.reference = Some(map.next_value()?),
                        "name" => param.name = Some(map.next_value()?),
                        "in" => param.location = Some(map.next_value()?),
                        "required" => param.required = map.next_value()?,
                        "description" => param.description = map.next_value()?,
                        "schema" => param.schema = Some(map.next_value()?),
                        _ => {
                            let value = map.next_value()?;
                            param.inline.insert(key, value);
                        }
                    }
                }
                Ok(param)
            }
        }
        deserializer.deserialize_map(ParamVisitor)
    }
}

/// Parses a Swagger 2.0 document, JSON or YAML (told apart by content), into the model.
///
/// Checks, in order: size, version (`swagger` must be `"2.0"`; YAML's unquoted `2.0` is
/// accepted), path and operation counts, then the typed parse (errors carry line, column and
/// path), then path item references, parameter references and locations. `x-` keys among
/// paths and responses are skipped.
pub fn parse_swagger2(bytes: &[u8], limits: &Limits) -> Result<oa::OpenAPI, DocsError> {
    parse_swagger2_as(bytes, None, limits)
}

/// [`parse_swagger2`], read as `format` when the source said which (its `Content-Type`, see
/// [`DocFormat::from_content_type`]); `None` or [`DocFormat::Json`] let the content decide.
pub fn parse_swagger2_as(
    bytes: &[u8],
    format: Option<DocFormat>,
    limits: &Limits,
) -> Result<oa::OpenAPI, DocsError> {
    let body = read_body(bytes, limits, format)?;
    let census = census(body, limits)?;
    if version_text(census.swagger.as_ref()).as_deref() != Some("2.0") {
        return Err(DocsError::WrongVersion {
            found: census
                .swagger
                .map_or_else(|| "(none)".to_owned(), |v| v.to_string()),
            expected: "\"2.0\"",
        });
    }
    let mut document: Document = parse_typed(body)?;
    if document.paths.values().any(|item| item.reference.is_some()) {
        resolve_path_items(&mut document, &parse_value(body)?)?;
    }
    convert(&document)
}

/// Replaces every path item given as a local `$ref` by the item it names (its own keys over
/// the target's). Anything unresolvable is an error: dropping the path would lose operations.
fn resolve_path_items(document: &mut Document, root: &Value) -> Result<(), DocsError> {
    for (path, item) in document.paths.iter_mut() {
        let Some(reference) = item.reference.take() else {
            continue;
        };
        let problem = |problem| DocsError::PathItemReference {
            path: path.clone(),
            reference: reference.clone(),
            problem,
        };
        let target = resolve_local(root, &reference).map_err(problem)?;
        let sibling = root
            .get("paths")
            .and_then(|paths| paths.get(path))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        *item = PathItem::deserialize(&merged(target, &sibling)).map_err(|error| {
            DocsError::Invalid {
                path: format!("paths.{path}"),
                message: crate::error::tidy(&error.to_string()),
            }
        })?;
        item.reference = None;
    }
    Ok(())
}

fn convert(document: &Document) -> Result<oa::OpenAPI, DocsError> {
    let mut model = oa::OpenAPI {
        openapi: "3.0.3".to_owned(),
        info: oa::Info {
            title: document
                .info
                .title
                .clone()
                .unwrap_or_else(|| "(not specified)".to_owned()),
            version: document.info.version.clone().unwrap_or_default(),
            description: document.info.description.clone(),
            ..Default::default()
        },
        ..Default::default()
    };
    if let Some(base_path) = document
        .base_path
        .as_deref()
        .filter(|b| !b.trim_matches('/').is_empty())
    {
        model.servers.push(oa::Server {
            url: with_leading_slash(base_path),
            ..Default::default()
        });
    }
    let mut components = oa::Components::default();
    for (name, definition) in &document.definitions {
        components
            .schemas
            .insert(name.clone(), schema::from_swagger2(definition));
    }
    if !components.schemas.is_empty() {
        model.components = Some(components);
    }
    for (path, item) in &document.paths {
        let path_params = resolve_all(document, path, "(all methods)", &item.parameters)?;
        let mut converted = oa::PathItem::default();
        let slots = [
            ("GET", &item.get, &mut converted.get),
            ("PUT", &item.put, &mut converted.put),
            ("POST", &item.post, &mut converted.post),
            ("DELETE", &item.delete, &mut converted.delete),
            ("OPTIONS", &item.options, &mut converted.options),
            ("HEAD", &item.head, &mut converted.head),
            ("PATCH", &item.patch, &mut converted.patch),
        ];
        for (method, operation, slot) in slots {
            if let Some(operation) = operation {
                *slot = Some(convert_operation(
                    document,
                    path,
                    method,
                    &path_params,
                    operation,
                )?);
            }
        }
        // openapiv3 keeps only path keys that start with "/".
        model
            .paths
            .paths
            .insert(with_leading_slash(path), oa::ReferenceOr::Item(converted));
    }
    Ok(model)
}

fn with_leading_slash(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

fn convert_operation(
    document: &Document,
    path: &str,
    method: &str,
    path_params: &[SourceParam],
    operation: &Operation,
) -> Result<oa::Operation, DocsError> {
    // Path-level parameters first; an operation parameter with the same (in, name) wins.
    let mut params = path_params.to_vec();
    for param in resolve_all(document, path, method, &operation.parameters)? {
        merge_param(&mut params, param);
    }
    // Operation-level lists replace the document's when present, even when empty.
    let consumes = media_list(
        operation
            .consumes
            .as_ref()
            .or(document.consumes.as_ref())
            .into_iter()
            .flatten(),
    );
    let produces = media_list(
        operation
            .produces
            .as_ref()
            .or(document.produces.as_ref())
            .into_iter()
            .flatten(),
    );
    let responses = operation
        .responses
        .iter()
        .map(|(status, response)| {
            let response = response
                .reference
                .as_deref()
                .and_then(|r| r.strip_prefix("#/responses/"))
                .and_then(|name| document.responses.get(&unescape_pointer(name)))
                .unwrap_or(response);
            SourceResponse {
                status: status.clone(),
                description: response.description.clone().unwrap_or_default(),
                schema: response.schema.as_ref().map(schema::from_swagger2),
            }
        })
        .collect();
    Ok(build_operation(SourceOperation {
        operation_id: operation.operation_id.clone(),
        summary: operation.summary.clone(),
        description: operation.description.clone(),
        tags: operation.tags.clone(),
        deprecated: operation.deprecated,
        params,
        consumes,
        produces,
        responses,
        extensions: operation.extensions.clone(),
    }))
}

/// Resolves references and validates each parameter of one list, merging duplicates.
fn resolve_all(
    document: &Document,
    path: &str,
    method: &str,
    params: &[Param],
) -> Result<Vec<SourceParam>, DocsError> {
    let mut resolved = Vec::with_capacity(params.len());
    for (index, param) in params.iter().enumerate() {
        merge_param(
            &mut resolved,
            resolve(document, path, method, index, param)?,
        );
    }
    Ok(resolved)
}

fn resolve(
    document: &Document,
    path: &str,
    method: &str,
    index: usize,
    param: &Param,
) -> Result<SourceParam, DocsError> {
    let param = match &param.reference {
        // A definition that is itself a reference is not followed (no chains, no cycles).
        Some(reference) => reference
            .strip_prefix("#/parameters/")
            .and_then(|name| document.parameters.get(&unescape_pointer(name)))
            .filter(|definition| definition.reference.is_none())
            .ok_or_else(|| DocsError::UnresolvedReference {
                path: path.to_owned(),
                method: method.to_owned(),
                reference: reference.clone(),
            })?,
        None => param,
    };
    let incomplete = |missing| DocsError::IncompleteParameter {
        path: path.to_owned(),
        method: method.to_owned(),
        index,
        missing,
    };
    let name = param.name.clone().ok_or_else(|| incomplete("name"))?;
    let location_text = param.location.as_deref().ok_or_else(|| incomplete("in"))?;
    let location = match location_text {
        "body" => ParamLocation::Body,
        "header" => ParamLocation::Header,
        "path" => ParamLocation::Path,
        "query" => ParamLocation::Query,
        // Case-insensitive, as Shield's latest fix made it.
        form if form.eq_ignore_ascii_case("formData") => ParamLocation::FormData,
        other => {
            return Err(DocsError::InvalidParameterLocation {
                path: path.to_owned(),
                method: method.to_owned(),
                name,
                location: other.to_owned(),
                expected: "body, formData, header, path, query",
            })
        }
    };
    let schema = match &param.schema {
        Some(body_schema) => schema::from_swagger2(body_schema),
        None => schema::from_inline(&param.inline),
    };
    Ok(SourceParam {
        location,
        name,
        required: param.required,
        description: param.description.clone(),
        schema,
    })
}

/// JSON Pointer escapes in a reference's last segment (`~1` is `/`, `~0` is `~`).
fn unescape_pointer(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests;
