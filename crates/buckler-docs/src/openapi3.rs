//! OpenAPI 3.0 and 3.1 documents: deserialised with `openapiv3` after size and version
//! checks. 3.1 documents are first reduced to what the 3.0 model can hold: JSON Schema
//! `type` arrays keep their first non-null type, `webhooks` and `jsonSchemaDialect` are
//! dropped (routing does not use schemas; `/spec` shows them simplified).

use openapiv3 as oa;
use serde_json::Value;

use crate::error::check_json_start;
use crate::limits::with_path_limit;
use crate::{DocsError, Limits};

/// Parses an OpenAPI 3.0.x or 3.1.x JSON document into the model.
pub fn parse_openapi3(bytes: &[u8], limits: &Limits) -> Result<oa::OpenAPI, DocsError> {
    if bytes.len() > limits.max_bytes {
        return Err(DocsError::TooLarge {
            bytes: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    check_json_start(bytes)?;
    let mut value: Value = serde_json::from_slice(bytes).map_err(|e| DocsError::from_json(&e))?;
    let version = value.get("openapi").and_then(Value::as_str).unwrap_or("").to_owned();
    let is_31 = version.starts_with("3.1");
    if !(version.starts_with("3.0") || is_31) {
        return Err(DocsError::WrongVersion {
            found: value.get("openapi").map_or("none".to_owned(), |v| v.to_string()),
            expected: "3.0.x or 3.1.x",
        });
    }
    let paths = value.get("paths").and_then(Value::as_object).map_or(0, |p| p.len());
    if paths > limits.max_paths {
        return Err(DocsError::TooManyPaths { limit: limits.max_paths });
    }
    if is_31 {
        if let Some(object) = value.as_object_mut() {
            object.remove("webhooks");
            object.remove("jsonSchemaDialect");
            object.insert("openapi".to_owned(), Value::String("3.0.3".to_owned()));
            if !object.contains_key("paths") {
                object.insert("paths".to_owned(), Value::Object(Default::default()));
            }
        }
    }
    // Also applied to 3.0 documents: type arrays are a common slip there, harmless to routing.
    simplify_31(&mut value);
    let text = value.to_string();
    let model: oa::OpenAPI = with_path_limit(limits, || serde_json::from_str(&text))?;
    let operations: usize = model
        .paths
        .paths
        .values()
        .filter_map(|p| p.as_item())
        .map(|p| p.iter().count())
        .sum();
    if operations > limits.max_operations {
        return Err(DocsError::TooManyOperations {
            limit: limits.max_operations,
        });
    }
    Ok(model)
}

/// `"type": ["string", "null"]` → `"type": "string", "nullable": true`; `examples` arrays in
/// schemas → dropped (3.0 has a single `example`).
fn simplify_31(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if let Some(Value::Array(types)) = object.get("type").cloned() {
                let nullable = types.iter().any(|t| t == "null");
                let first = types.into_iter().find(|t| t != "null").unwrap_or(Value::String("object".to_owned()));
                object.insert("type".to_owned(), first);
                if nullable {
                    object.insert("nullable".to_owned(), Value::Bool(true));
                }
            }
            if object.get("examples").is_some_and(Value::is_array) {
                object.remove("examples");
            }
            for child in object.values_mut() {
                simplify_31(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(simplify_31),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_30_and_31_with_media_types_and_servers() {
        for version in ["3.0.3", "3.1.0"] {
            let doc = json!({
                "openapi": version,
                "info": {"title": "orders", "version": "3"},
                "servers": [{"url": "https://{host}/api/{v}", "variables": {"host": {"default": "x"}, "v": {"default": "v1"}}}],
                "paths": {"/orders/{id}": {
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": ["string", "null"]}}],
                    "post": {
                        "requestBody": {"content": {"application/json": {}}},
                        "responses": {"200": {"description": "ok", "content": {"application/json": {}, "text/csv": {}}}}
                    }
                }},
                "webhooks": {}
            });
            let model = parse_openapi3(doc.to_string().as_bytes(), &Limits::default()).unwrap();
            let list = crate::endpoints(&model);
            assert_eq!(list.len(), 1, "{version}");
            assert_eq!(list[0].path, "/api/v1/orders/{id}");
            assert_eq!(list[0].consumes, vec!["application/json"]);
            assert_eq!(list[0].produces, vec!["application/json", "text/csv"]);
            assert_eq!(list[0].parameters.len(), 1);
        }
    }

    #[test]
    fn rejects_other_versions() {
        let err = parse_openapi3(br#"{"swagger": "2.0", "paths": {}}"#, &Limits::default()).unwrap_err();
        assert!(matches!(err, DocsError::WrongVersion { .. }), "{err}");
    }
}
