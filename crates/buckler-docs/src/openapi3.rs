//! OpenAPI 3.0 and 3.1 documents, read with `openapiv3` after size, version and count checks.
//!
//! 3.1 documents are first reduced to what the 3.0 model holds. Lossy, and irrelevant to
//! routing (which reads no schema): in schemas, `type: [T, "null"]` becomes `type: T,
//! nullable: true`, a type list with several non-null types and `type: "null"` lose their type
//! (any value), `const` becomes a one-value `enum`, numeric `exclusiveMinimum`/`Maximum` become
//! `minimum`/`maximum` with the 3.0 boolean flag, `examples` lists become `example` (the first);
//! `webhooks` and `jsonSchemaDialect` are dropped; `paths` may be absent; path items referring
//! to `#/components/pathItems/...` are inlined. 3.0 documents are read as they are.

use openapiv3 as oa;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::json::{census, json_body};
use crate::{DocsError, Limits, X_DISABLED_LISTENERS, X_DISABLED_MIDDLEWARE};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Parses an OpenAPI 3.0.x or 3.1.x JSON document into the model.
///
/// Checks, in order: size, YAML, version (`openapi` must be `3.0[.x]` or `3.1[.x]`), path and
/// operation counts, JSON syntax (line and column), parameter locations (`query`, `header`,
/// `path`, `cookie`), then the model (errors name the JSON path of the failing object).
/// `x-buckler-*` extensions from the upstream are removed; `x-disabled-*` keys are matched
/// case-insensitively.
pub fn parse_openapi3(bytes: &[u8], limits: &Limits) -> Result<oa::OpenAPI, DocsError> {
    let body = json_body(bytes, limits)?;
    let census = census(body, limits)?;
    let minor = census
        .openapi
        .as_ref()
        .and_then(Value::as_str)
        .and_then(minor_version);
    let Some(minor) = minor else {
        return Err(DocsError::WrongVersion {
            found: census
                .openapi
                .map_or_else(|| "(none)".to_owned(), |v| v.to_string()),
            expected: "\"3.0.x\" or \"3.1.x\"",
        });
    };
    let mut document: Value =
        serde_json::from_slice(body).map_err(|e| DocsError::json(&e, String::new()))?;
    let Value::Object(root) = &mut document else {
        return Err(DocsError::Invalid {
            path: ".".to_owned(),
            message: "expected a JSON object".to_owned(),
        });
    };
    if minor == 1 {
        down_convert_31(root);
    }
    prepare_operations(root)?;
    match oa::OpenAPI::deserialize(&document) {
        Ok(model) => Ok(model),
        Err(error) => Err(
            locate_error(&document).unwrap_or_else(|| DocsError::Invalid {
                path: ".".to_owned(),
                message: error.to_string(),
            }),
        ),
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
        message: error.to_string(),
    })
}

/// The 3.1 → 3.0 reduction described in the module docs.
fn down_convert_31(root: &mut Map<String, Value>) {
    root.remove("webhooks");
    root.remove("jsonSchemaDialect");
    root.insert("openapi".to_owned(), Value::from("3.0.3"));
    let path_items = root
        .get_mut("components")
        .and_then(Value::as_object_mut)
        .and_then(|c| c.remove("pathItems"));
    let paths = root
        .entry("paths")
        .or_insert_with(|| Value::Object(Map::new()));
    if let (Some(Value::Object(path_items)), Value::Object(paths)) = (&path_items, paths) {
        for item in paths.values_mut() {
            let name = item
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/pathItems/"));
            if let Some(target) = name.and_then(|name| path_items.get(name)) {
                if target.get("$ref").is_none() {
                    *item = target.clone();
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

fn reduce_entries(object: &mut Map<String, Value>) {
    for (key, child) in object.iter_mut() {
        let is_data = matches!(key.as_str(), "example" | "examples" | "enum" | "const")
            || key.starts_with("x-");
        match child {
            _ if is_data => {}
            Value::Object(names) if NAME_MAPS.contains(&key.as_str()) => {
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
