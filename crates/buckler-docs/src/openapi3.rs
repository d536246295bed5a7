//! OpenAPI 3.0 and 3.1 documents, read with `openapiv3` after size, version and count checks.
//!
//! 3.1 documents are first reduced to what the 3.0 model holds. Lossy, and irrelevant to
//! routing (which reads no schema): in schemas, `type: [T, "null"]` becomes `type: T,
//! nullable: true`, a type list with several non-null types and `type: "null"` lose their type
//! (any value), `const` becomes a one-value `enum`, numeric `exclusiveMinimum`/`Maximum` become
//! `minimum`/`maximum` with the 3.0 boolean flag, `examples` lists become `example` (the first);
//! an operation without `responses` (optional in 3.1) gets an empty map; `mutualTLS` security
//! schemes (3.1 only) are dropped;
//! a boolean schema becomes `{}` (`true`) or `{"not": {}}` (`false`); `webhooks` and
//! `jsonSchemaDialect` are dropped; `paths` may be absent. 3.0 documents are read as they are.
//!
//! In both: a path item given as a local `$ref` (`#/components/pathItems/x`,
//! `#/paths/~1other`, any `#/...` pointer, chains followed) is inlined, its own keys over the
//! target's; one that cannot be (another file, a pointer to nothing) rejects the document.
//! Callbacks do not route: one given as a `$ref` is inlined when it resolves, and a callback
//! the model cannot hold is dropped rather than rejecting the document. A YAML `info.version`
//! written as a number (`1.0`) is read as its text.

use openapiv3 as oa;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::json::{census_and_value, parse_value, read_body, version_text};
use crate::pointer::{merged, resolve_local};
use crate::{DocFormat, DocsError, Limits, X_DISABLED_LISTENERS, X_DISABLED_MIDDLEWARE};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Parses an OpenAPI 3.0.x or 3.1.x document, JSON or YAML (told apart by content), into the
/// model.
///
/// Checks, in order: size, version (`openapi` must be `3.0[.x]` or `3.1[.x]`), path and
/// operation counts, syntax (line and column), path item references, parameter locations
/// (`query`, `header`, `path`, `cookie`), then the model (errors name the path of the failing
/// object). `x-buckler-*` extensions from the upstream are removed; `x-disabled-*` keys are
/// matched case-insensitively.
pub fn parse_openapi3(bytes: &[u8], limits: &Limits) -> Result<oa::OpenAPI, DocsError> {
    parse_openapi3_as(bytes, None, limits)
}

/// [`parse_openapi3`], read as `format` when the source said which (its `Content-Type`, see
/// [`DocFormat::from_content_type`]); `None` or [`DocFormat::Json`] let the content decide.
pub fn parse_openapi3_as(
    bytes: &[u8],
    format: Option<DocFormat>,
    limits: &Limits,
) -> Result<oa::OpenAPI, DocsError> {
    let body = read_body(bytes, limits, format)?;
    let (census, parsed) = census_and_value(body, limits)?;
    let minor = version_text(census.openapi.as_ref())
        .as_deref()
        .and_then(minor_version);
    let Some(minor) = minor else {
        return Err(DocsError::WrongVersion {
            found: census
                .openapi
                .map_or_else(|| "(none)".to_owned(), |v| v.to_string()),
            expected: "\"3.0.x\" or \"3.1.x\"",
        });
    };
    let mut document: Value = match parsed {
        Some(document) => document,
        None => parse_value(body)?,
    };
    let Value::Object(root) = &mut document else {
        return Err(DocsError::Invalid {
            path: ".".to_owned(),
            message: "expected an object (a map of keys to values)".to_owned(),
        });
    };
    root.insert("openapi".to_owned(), Value::from(format!("3.{minor}.0")));
    inline_path_items(root)?;
    if let Some(Value::Object(info)) = root.get_mut("info") {
        if let Some(version) = info.get_mut("version") {
            if matches!(version, Value::Number(_) | Value::Bool(_)) {
                *version = Value::from(version.to_string());
            }
        }
    }
    if minor == 1 {
        down_convert_31(root);
    }
    inline_callbacks(root);
    prepare_operations(root)?;
    match oa::OpenAPI::deserialize(&document) {
        Ok(model) => Ok(model),
        Err(error) => Err(
            locate_error(&document).unwrap_or_else(|| DocsError::Invalid {
                path: ".".to_owned(),
                message: crate::error::tidy(&error.to_string()),
            }),
        ),
    }
}

/// Replaces every path item given as `$ref` by the object it names (see the module docs).
fn inline_path_items(root: &mut Map<String, Value>) -> Result<(), DocsError> {
    let has_reference = root
        .get("paths")
        .and_then(Value::as_object)
        .is_some_and(|paths| paths.values().any(|item| item.get("$ref").is_some()));
    if !has_reference {
        return Ok(());
    }
    let whole = Value::Object(std::mem::take(root));
    let resolved = resolve_path_items(&whole);
    if let Value::Object(whole) = whole {
        *root = whole;
    }
    if let Some(Value::Object(paths)) = root.get_mut("paths") {
        for (path, item) in resolved? {
            paths.insert(path, item);
        }
    }
    Ok(())
}

fn resolve_path_items(whole: &Value) -> Result<Vec<(String, Value)>, DocsError> {
    let mut resolved = Vec::new();
    let Some(Value::Object(paths)) = whole.get("paths") else {
        return Ok(resolved);
    };
    for (path, item) in paths {
        let (Some(reference), Value::Object(sibling)) = (item.get("$ref"), item) else {
            continue;
        };
        let problem = |problem| DocsError::PathItemReference {
            path: path.clone(),
            reference: reference
                .as_str()
                .map_or_else(|| reference.to_string(), str::to_owned),
            problem,
        };
        let Some(reference) = reference.as_str() else {
            return Err(problem("$ref is not a string"));
        };
        let target = resolve_local(whole, reference).map_err(problem)?;
        resolved.push((path.clone(), merged(target, sibling)));
    }
    Ok(resolved)
}

/// Inlines callbacks given as `$ref` and drops those the model cannot hold (see the module
/// docs): callbacks never route, and one the model cannot read must not reject the document.
fn inline_callbacks(root: &mut Map<String, Value>) {
    let whole = Value::Object(std::mem::take(root));
    let mut replacements: Vec<(String, &'static str, String, Option<Value>)> = Vec::new();
    if let Some(Value::Object(paths)) = whole.get("paths") {
        for (path, item) in paths {
            for method in METHODS {
                let Some(Value::Object(callbacks)) =
                    item.get(method).and_then(|o| o.get("callbacks"))
                else {
                    continue;
                };
                for (name, callback) in callbacks {
                    let resolved = match callback.get("$ref").and_then(Value::as_str) {
                        Some(reference) => resolve_local(&whole, reference)
                            .ok()
                            .map(|target| Value::Object(target.clone())),
                        None => Some(callback.clone()),
                    };
                    let readable =
                        resolved.filter(|value| oa::Callback::deserialize(value).is_ok());
                    if readable.as_ref() != Some(callback) {
                        replacements.push((path.clone(), method, name.clone(), readable));
                    }
                }
            }
        }
    }
    if let Value::Object(whole) = whole {
        *root = whole;
    }
    for (path, method, name, replacement) in replacements {
        let Some(Value::Object(callbacks)) = root
            .get_mut("paths")
            .and_then(|paths| paths.get_mut(&path))
            .and_then(|item| item.get_mut(method))
            .and_then(|operation| operation.get_mut("callbacks"))
        else {
            continue;
        };
        match replacement {
            Some(value) => {
                callbacks.insert(name, value);
            }
            None => {
                callbacks.shift_remove(&name);
            }
        }
    }
    if let Some(Value::Object(callbacks)) = root
        .get_mut("components")
        .and_then(|c| c.get_mut("callbacks"))
    {
        callbacks
            .retain(|_, callback| oa::ReferenceOr::<oa::Callback>::deserialize(&*callback).is_ok());
    }
}

/// `3.0`, `3.0.3`, `3.1.0-rc1` → the minor version (0 or 1); anything else → `None`.
fn minor_version(version: &str) -> Option<u8> {
    let mut parts = version.splitn(3, '.');
    let (major, minor) = (parts.next()?, parts.next()?);
    let patch_ok = parts.next().is_none_or(|patch| {
        let digits = patch.split('-').next().unwrap_or_default();
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    match (major, minor, patch_ok) {
        ("3", "0", true) => Some(0),
        ("3", "1", true) => Some(1),
        _ => None,
    }
}

/// Per operation: strips `x-buckler-*` keys, lower-cases the `x-disabled-*` keys and checks
/// parameter locations (path-level and operation-level).
fn prepare_operations(root: &mut Map<String, Value>) -> Result<(), DocsError> {
    let Some(Value::Object(paths)) = root.get_mut("paths") else {
        return Ok(());
    };
    for (path, item) in paths.iter_mut() {
        let Value::Object(item) = item else { continue };
        check_locations(path, "(all methods)", item.get("parameters"))?;
        for method in METHODS {
            let Some(Value::Object(operation)) = item.get_mut(method) else {
                continue;
            };
            check_locations(
                path,
                &method.to_ascii_uppercase(),
                operation.get("parameters"),
            )?;
            let keys: Vec<String> = operation.keys().cloned().collect();
            for key in keys {
                let lower = key.to_ascii_lowercase();
                if lower.starts_with("x-buckler-") {
                    operation.remove(&key);
                } else if (lower == X_DISABLED_MIDDLEWARE || lower == X_DISABLED_LISTENERS)
                    && key != lower
                {
                    if let Some(value) = operation.remove(&key) {
                        operation.insert(lower, value);
                    }
                }
            }
        }
    }
    Ok(())
}

fn check_locations(path: &str, method: &str, parameters: Option<&Value>) -> Result<(), DocsError> {
    let Some(Value::Array(parameters)) = parameters else {
        return Ok(());
    };
    for (index, parameter) in parameters.iter().enumerate() {
        let Value::Object(parameter) = parameter else {
            continue;
        };
        if parameter.contains_key("$ref") {
            continue;
        }
        let incomplete = |missing| DocsError::IncompleteParameter {
            path: path.to_owned(),
            method: method.to_owned(),
            index,
            missing,
        };
        let name = parameter
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| incomplete("name"))?;
        let location = parameter
            .get("in")
            .and_then(Value::as_str)
            .ok_or_else(|| incomplete("in"))?;
        if !matches!(location, "query" | "header" | "path" | "cookie") {
            return Err(DocsError::InvalidParameterLocation {
                path: path.to_owned(),
                method: method.to_owned(),
                name: name.to_owned(),
                location: location.to_owned(),
                expected: "query, header, path, cookie",
            });
        }
    }
    Ok(())
}

/// Finds the most specific known object that does not fit the model, for an error that says
/// where. `None` when every piece fits on its own.
fn locate_error(document: &Value) -> Option<DocsError> {
    if let Some(Value::Object(paths)) = document.get("paths") {
        for (path, item) in paths {
            if !path.starts_with('/') {
                continue;
            }
            let at = format!("paths.{path}");
            if let Some(Value::Object(fields)) = Some(item).filter(|i| i.get("$ref").is_none()) {
                for method in METHODS {
                    if let Some(operation) = fields.get(method) {
                        if let Some(error) =
                            locate_in_operation(operation, &format!("{at}.{method}"))
                        {
                            return Some(error);
                        }
                    }
                }
                if let Some(error) = check_list::<oa::Parameter>(
                    fields.get("parameters"),
                    &format!("{at}.parameters"),
                ) {
                    return Some(error);
                }
            }
            if let Some(error) = check_ref_or::<oa::PathItem>(item, &at) {
                return Some(error);
            }
        }
    }
    if let Some(Value::Object(components)) = document.get("components") {
        let sections: [(&str, Checker); 4] = [
            ("schemas", check_ref_or::<oa::Schema>),
            ("responses", check_ref_or::<oa::Response>),
            ("parameters", check_ref_or::<oa::Parameter>),
            ("requestBodies", check_ref_or::<oa::RequestBody>),
        ];
        for (section, check) in sections {
            if let Some(Value::Object(entries)) = components.get(section) {
                for (name, entry) in entries {
                    if let Some(error) = check(entry, &format!("components.{section}.{name}")) {
                        return Some(error);
                    }
                }
            }
        }
        if let Some(error) = check::<oa::Components>(&document["components"], "components") {
            return Some(error);
        }
    }
    let pieces: [(&str, Checker); 2] = [
        ("info", check::<oa::Info>),
        ("servers", check::<Vec<oa::Server>>),
    ];
    pieces
        .into_iter()
        .find_map(|(key, check)| document.get(key).and_then(|value| check(value, key)))
}

type Checker = fn(&Value, &str) -> Option<DocsError>;

fn locate_in_operation(operation: &Value, at: &str) -> Option<DocsError> {
    check_list::<oa::Parameter>(operation.get("parameters"), &format!("{at}.parameters"))
        .or_else(|| {
            let body = operation.get("requestBody")?;
            check_ref_or::<oa::RequestBody>(body, &format!("{at}.requestBody"))
        })
        .or_else(|| {
            let Value::Object(responses) = operation.get("responses")? else {
                return None;
            };
            responses
                .iter()
                .filter(|(code, _)| !code.starts_with("x-"))
                .find_map(|(code, response)| {
                    check_ref_or::<oa::Response>(response, &format!("{at}.responses.{code}"))
                })
        })
        .or_else(|| check::<oa::Operation>(operation, at))
}

fn check_list<T: DeserializeOwned>(list: Option<&Value>, at: &str) -> Option<DocsError> {
    let Some(Value::Array(items)) = list else {
        return list.and_then(|value| check::<Vec<oa::ReferenceOr<T>>>(value, at));
    };
    items
        .iter()
        .enumerate()
        .find_map(|(index, item)| check_ref_or::<T>(item, &format!("{at}[{index}]")))
}

/// Checks a `ReferenceOr<T>`; an object without `$ref` is checked as `T` so that the message
/// is `T`'s own instead of "did not match any variant".
fn check_ref_or<T: DeserializeOwned>(value: &Value, at: &str) -> Option<DocsError> {
    if value.get("$ref").is_some() {
        return check::<oa::ReferenceOr<T>>(value, at);
    }
    check::<T>(value, at)
}

fn check<T: DeserializeOwned>(value: &Value, at: &str) -> Option<DocsError> {
    T::deserialize(value).err().map(|error| DocsError::Invalid {
        path: at.to_owned(),
        message: crate::error::tidy(&error.to_string()),
    })
}

/// The 3.1 → 3.0 reduction described in the module docs.
fn down_convert_31(root: &mut Map<String, Value>) {
    root.remove("webhooks");
    root.remove("jsonSchemaDialect");
    root.insert("openapi".to_owned(), Value::from("3.0.3"));
    if let Some(Value::Object(components)) = root.get_mut("components") {
        components.remove("pathItems");
        if let Some(Value::Object(schemes)) = components.get_mut("securitySchemes") {
            schemes.retain(|_, scheme| {
                scheme.get("type").and_then(Value::as_str) != Some("mutualTLS")
            });
        }
    }
    let paths = root
        .entry("paths")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(paths) = paths {
        for item in paths.values_mut() {
            for method in METHODS {
                if let Some(Value::Object(operation)) = item.get_mut(method) {
                    operation
                        .entry("responses")
                        .or_insert_with(|| Value::Object(Map::new()));
                }
            }
        }
    }
    reduce_entries(root);
}

/// Objects whose keys are names (of properties, components, media types, status codes...), not
/// keywords: their values are walked without treating any key as a keyword.
const NAME_MAPS: [&str; 16] = [
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "schemas",
    "parameters",
    "responses",
    "requestBodies",
    "headers",
    "content",
    "encoding",
    "callbacks",
    "links",
    "securitySchemes",
    "variables",
    "paths",
];

/// Applies the schema rules to every object, except inside values that are data (`example`,
/// `examples`, `enum`, `const`, extensions).
fn reduce_schemas(value: &mut Value) {
    match value {
        Value::Object(object) => {
            reduce_schema(object);
            reduce_entries(object);
        }
        Value::Array(items) => items.iter_mut().for_each(reduce_schemas),
        _ => {}
    }
}

/// Keys whose value is one schema, a list of schemas, or a map of names to schemas: where a
/// 3.1 boolean schema may stand.
const SCHEMA_VALUED: [&str; 12] = [
    "schema",
    "items",
    "additionalItems",
    "not",
    "contains",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedItems",
    "contentSchema",
    "unevaluatedProperties",
];
const SCHEMA_LISTS: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];
const SCHEMA_MAPS: [&str; 5] = [
    "properties",
    "patternProperties",
    "$defs",
    "dependentSchemas",
    "schemas",
];

/// A boolean schema as the 3.0 model can hold it: `true` accepts anything (`{}`), `false`
/// nothing (`{"not": {}}`).
fn boolean_schema(value: &mut Value) {
    if let Value::Bool(accepts) = value {
        *value = if *accepts {
            Value::Object(Map::new())
        } else {
            serde_json::json!({"not": {}})
        };
    }
}

fn reduce_entries(object: &mut Map<String, Value>) {
    for (key, child) in object.iter_mut() {
        let key = key.as_str();
        if SCHEMA_VALUED.contains(&key) {
            boolean_schema(child);
        } else if SCHEMA_LISTS.contains(&key) {
            if let Value::Array(items) = child {
                items.iter_mut().for_each(boolean_schema);
            }
        } else if SCHEMA_MAPS.contains(&key) {
            if let Value::Object(named) = child {
                named.values_mut().for_each(boolean_schema);
            }
        }
        let is_data =
            matches!(key, "example" | "examples" | "enum" | "const") || key.starts_with("x-");
        match child {
            _ if is_data => {}
            Value::Object(names) if NAME_MAPS.contains(&key) => {
                names.values_mut().for_each(reduce_schemas);
            }
            child => reduce_schemas(child),
        }
    }
}

fn reduce_schema(object: &mut Map<String, Value>) {
    let null = Value::from("null");
    match object.get("type") {
        Some(Value::Array(types)) => {
            let nullable = types.contains(&null);
            let concrete: Vec<Value> = types.iter().filter(|t| **t != null).cloned().collect();
            match <[Value; 1]>::try_from(concrete) {
                Ok([single]) => {
                    object.insert("type".to_owned(), single);
                }
                Err(_) => {
                    object.remove("type");
                }
            }
            if nullable {
                object.insert("nullable".to_owned(), Value::Bool(true));
            }
        }
        Some(t) if *t == null => {
            object.remove("type");
            object.insert("nullable".to_owned(), Value::Bool(true));
        }
        _ => {}
    }
    if let Some(constant) = object.remove("const") {
        object
            .entry("enum")
            .or_insert_with(|| Value::Array(vec![constant]));
    }
    for (exclusive, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if let Some(limit) = object.get(exclusive).filter(|v| v.is_number()).cloned() {
            object.insert(bound.to_owned(), limit);
            object.insert(exclusive.to_owned(), Value::Bool(true));
        }
    }
    if let Some(Value::Array(examples)) = object.get("examples") {
        let first = examples.first().cloned();
        object.remove("examples");
        if let Some(first) = first {
            object.entry("example").or_insert(first);
        }
    }
}

#[cfg(test)]
mod tests;
