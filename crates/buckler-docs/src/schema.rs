//! Swagger 2.0 schemas into OpenAPI 3.0 schemas, for `/spec` only: routing never reads a
//! schema, so a schema the model cannot hold becomes the empty ("any") schema instead of
//! failing the document.

use openapiv3 as oa;
use serde_json::{Map, Value};

use crate::model::any_schema;

/// Rewrites a Swagger 2 schema: `#/definitions/X` refs → `#/components/schemas/X`,
/// `type: file` → `type: string, format: binary`, `x-nullable` → `nullable`, a string
/// `discriminator` → `{propertyName}`. Falls back to the any-schema.
pub(crate) fn from_swagger2(schema: &Value) -> oa::ReferenceOr<oa::Schema> {
    let mut schema = schema.clone();
    rewrite(&mut schema);
    serde_json::from_value(schema).unwrap_or_else(|_| any_schema())
}

/// The schema of a non-body Swagger 2 parameter, which declares `type`, `format`, `items`,
/// `enum`, `default` and the validation keywords inline.
pub(crate) fn from_inline(fields: &Map<String, Value>) -> oa::ReferenceOr<oa::Schema> {
    const SCHEMA_KEYS: [&str; 15] = [
        "type",
        "format",
        "items",
        "enum",
        "default",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
    ];
    let schema: Map<String, Value> = fields
        .iter()
        .filter(|(key, _)| SCHEMA_KEYS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    from_swagger2(&Value::Object(schema))
}

fn rewrite(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get_mut("$ref") {
                if let Some(name) = reference.strip_prefix("#/definitions/") {
                    *reference = format!("#/components/schemas/{name}");
                }
            }
            if object.get("type").and_then(Value::as_str) == Some("file") {
                object.insert("type".to_owned(), Value::from("string"));
                object.insert("format".to_owned(), Value::from("binary"));
            }
            if let Some(nullable) = object.remove("x-nullable") {
                object.insert("nullable".to_owned(), nullable);
            }
            if let Some(Value::String(property)) = object.get("discriminator") {
                let discriminator = serde_json::json!({ "propertyName": property });
                object.insert("discriminator".to_owned(), discriminator);
            }
            object.values_mut().for_each(rewrite);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn definitions_refs_files_nullables_and_discriminators_are_translated() {
        let schema = from_swagger2(&json!({
            "type": "object",
            "discriminator": "kind",
            "properties": {
                "owner": {"$ref": "#/definitions/User"},
                "photo": {"type": "file"},
                "nick": {"type": "string", "x-nullable": true}
            }
        }));
        let translated = serde_json::to_value(&schema).unwrap();
        assert_eq!(
            translated["properties"]["owner"]["$ref"],
            "#/components/schemas/User"
        );
        assert_eq!(
            translated["properties"]["photo"],
            json!({"type": "string", "format": "binary"})
        );
        assert_eq!(translated["properties"]["nick"]["nullable"], true);
        assert_eq!(translated["discriminator"]["propertyName"], "kind");
    }

    #[test]
    fn an_unreadable_schema_becomes_the_any_schema() {
        let schema = from_swagger2(&json!({"type": "object", "properties": 7}));
        assert_eq!(schema, any_schema());
    }

    #[test]
    fn inline_parameter_schemas_keep_only_schema_keywords() {
        let fields = json!({"name": "limit", "in": "query", "type": "integer", "format": "int32", "maximum": 100});
        let schema = from_inline(fields.as_object().unwrap());
        let translated = serde_json::to_value(&schema).unwrap();
        assert_eq!(
            translated,
            json!({"type": "integer", "format": "int32", "maximum": 100})
        );
    }
}
