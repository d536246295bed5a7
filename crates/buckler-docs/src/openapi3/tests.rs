use serde_json::json;

use super::*;
use crate::{endpoints, ParamLocation, Parameter};

fn parse(doc: &Value) -> Result<oa::OpenAPI, DocsError> {
    parse_openapi3(doc.to_string().as_bytes(), &Limits::default())
}

fn doc(version: &str, paths: Value) -> Value {
    json!({"openapi": version, "info": {"title": "t", "version": "1"}, "paths": paths})
}

#[test]
fn versions_3_0_and_3_1_are_accepted_others_are_not() {
    for (version, minor) in [
        ("3.0", Some(0)),
        ("3.0.3", Some(0)),
        ("3.1.0", Some(1)),
        ("3.1.1-rc1", Some(1)),
    ] {
        assert_eq!(minor_version(version), minor, "{version}");
    }
    for version in ["3", "3.2.0", "2.0", "3.0.x", "3.0.", "3.10.0", ""] {
        assert_eq!(minor_version(version), None, "{version}");
    }
    let err = parse(&json!({"swagger": "2.0", "paths": {}})).unwrap_err();
    assert_eq!(
        err,
        DocsError::WrongVersion {
            found: "(none)".to_owned(),
            expected: "\"3.0.x\" or \"3.1.x\""
        }
    );
    let err = parse(&doc("3.2.0", json!({}))).unwrap_err();
    assert!(err.to_string().contains("\"3.2.0\""), "{err}");
}

#[test]
fn media_types_servers_and_parameters_of_both_versions() {
    for version in ["3.0.3", "3.1.0"] {
        let mut document = doc(
            version,
            json!({"/orders/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "post": {
                    "parameters": [{"name": "session", "in": "cookie", "schema": {}}, {"name": "X-Req", "in": "header", "schema": {}}],
                    "requestBody": {"content": {"application/json; charset=utf-8": {}}},
                    "responses": {
                        "200": {"description": "ok", "content": {"application/json": {}, "text/csv": {}}},
                        "default": {"description": "error", "content": {"application/problem+json": {}}}
                    }
                }
            }}),
        );
        document["servers"] = json!([{"url": "https://{host}/api/{v}", "variables": {"host": {"default": "x"}, "v": {"default": "v1"}}}]);
        let list = endpoints(&parse(&document).unwrap());
        assert_eq!(list.len(), 1, "{version}");
        assert_eq!(list[0].path, "/api/v1/orders/{id}");
        assert_eq!(list[0].consumes, ["application/json"]);
        assert_eq!(
            list[0].produces,
            ["application/json", "text/csv", "application/problem+json"]
        );
        let parameter = |location, name: &str| Parameter {
            location,
            name: name.to_owned(),
        };
        assert_eq!(
            list[0].parameters,
            [
                parameter(ParamLocation::Path, "id"),
                parameter(ParamLocation::Cookie, "session"),
                parameter(ParamLocation::Header, "x-req"),
            ]
        );
    }
}

#[test]
fn upstream_buckler_extensions_are_removed_and_disabled_keys_lower_cased() {
    let document = doc(
        "3.0.0",
        json!({"/a": {"put": {
            "x-buckler-consumes": ["text/evil"],
            "X-Buckler-Produces": ["text/evil"],
            "x-Disabled-Middleware": ["Cache"],
            "requestBody": {"content": {"text/plain": {}}},
            "responses": {}
        }}}),
    );
    let list = endpoints(&parse(&document).unwrap());
    assert_eq!(list[0].consumes, ["text/plain"]);
    assert!(list[0].produces.is_empty());
    assert_eq!(list[0].disabled_middleware, ["cache"]);
}

#[test]
fn parameter_locations_and_names_are_checked_with_the_operation_named() {
    let body = doc(
        "3.0.0",
        json!({"/a": {"post": {"parameters": [{"name": "b", "in": "body"}], "responses": {}}}}),
    );
    assert_eq!(
        parse(&body).unwrap_err(),
        DocsError::InvalidParameterLocation {
            path: "/a".to_owned(),
            method: "POST".to_owned(),
            name: "b".to_owned(),
            location: "body".to_owned(),
            expected: "query, header, path, cookie",
        }
    );
    let nameless = doc("3.1.0", json!({"/a": {"parameters": [{"in": "query"}]}}));
    assert!(matches!(
        parse(&nameless),
        Err(DocsError::IncompleteParameter {
            missing: "name",
            index: 0,
            ..
        })
    ));
}

#[test]
fn model_errors_name_the_failing_object() {
    let bad_response = doc(
        "3.0.0",
        json!({"/a": {"get": {"responses": {"200": {"description": 5}}}}}),
    );
    let err = parse(&bad_response).unwrap_err();
    let DocsError::Invalid { path, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(path, "paths./a.get.responses.200");
    assert!(
        message.contains("invalid type: integer `5`, expected a string"),
        "{message}"
    );

    let mut bad_schema = doc("3.0.0", json!({}));
    bad_schema["components"] = json!({"schemas": {"Pet": {"type": "object", "required": "name"}}});
    let err = parse(&bad_schema).unwrap_err();
    assert!(
        matches!(&err, DocsError::Invalid { path, .. } if path == "components.schemas.Pet"),
        "{err:?}"
    );

    let no_info = json!({"openapi": "3.0.0", "paths": {}});
    let err = parse(&no_info).unwrap_err();
    assert!(err.to_string().contains("info"), "{err}");
}

#[test]
fn json_syntax_errors_keep_their_position() {
    let err = parse_openapi3(
        b"{\"openapi\": \"3.0.0\",\n \"paths\": {,}}",
        &Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DocsError::Json { line: 2, .. }), "{err:?}");
}

#[test]
fn limits_apply() {
    let many = doc(
        "3.0.0",
        json!({"/a": {"get": {"responses": {}}}, "/b": {"get": {"responses": {}}, "put": {"responses": {}}}}),
    );
    let limits = Limits {
        max_operations: 2,
        ..Limits::default()
    };
    assert_eq!(
        parse_openapi3(many.to_string().as_bytes(), &limits).unwrap_err(),
        DocsError::TooManyOperations { count: 3, limit: 2 }
    );
    let limits = Limits {
        max_paths: 1,
        ..Limits::default()
    };
    assert_eq!(
        parse_openapi3(many.to_string().as_bytes(), &limits).unwrap_err(),
        DocsError::TooManyPaths { count: 2, limit: 1 }
    );
    assert_eq!(
        parse_openapi3(b"openapi: 3.0.0\n", &Limits::default()).unwrap_err(),
        DocsError::NotJson
    );
}

#[test]
fn openapi_31_is_reduced_to_the_30_model() {
    let document = json!({
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1", "summary": "3.1 only"},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "webhooks": {"newPet": {"post": {"responses": {"200": {"description": "ok"}}}}},
        "paths": {"/pets": {"$ref": "#/components/pathItems/Pets"}},
        "components": {
            "pathItems": {"Pets": {"get": {"responses": {"200": {"description": "ok", "content": {"application/json": {}}}}}}},
            "schemas": {
                "Pet": {
                    "type": "object",
                    "properties": {
                        "name": {"type": ["string", "null"]},
                        "tag": {"type": ["string", "integer"]},
                        "nothing": {"type": "null"},
                        "kind": {"const": "pet"},
                        "age": {"type": "integer", "exclusiveMinimum": 0},
                        "examples": {"type": "string", "examples": ["a", "b"]}
                    }
                },
                "example": {"type": ["boolean", "null"]}
            }
        }
    });
    let model = parse(&document).unwrap();
    let list = endpoints(&model);
    assert_eq!(
        list.len(),
        1,
        "the path item reference was inlined, webhooks dropped"
    );
    assert_eq!(
        (list[0].path.as_str(), list[0].produces.as_slice()),
        ("/pets", &["application/json".to_owned()][..])
    );
    let schemas = serde_json::to_value(&model.components.unwrap().schemas).unwrap();
    let properties = &schemas["Pet"]["properties"];
    assert_eq!(
        properties["name"],
        json!({"type": "string", "nullable": true})
    );
    assert_eq!(properties["tag"], json!({}), "several types: any value");
    assert_eq!(properties["nothing"], json!({"nullable": true}));
    assert_eq!(properties["kind"]["enum"], json!(["pet"]));
    assert_eq!(
        properties["age"],
        json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true})
    );
    assert_eq!(
        properties["examples"],
        json!({"type": "string", "example": "a"})
    );
    assert_eq!(
        schemas["example"],
        json!({"type": "boolean", "nullable": true}),
        "a schema named like a keyword"
    );
}

#[test]
fn openapi_31_may_omit_paths() {
    let model = parse(
        &json!({"openapi": "3.1.0", "info": {"title": "hooks", "version": "1"}, "webhooks": {}}),
    )
    .unwrap();
    assert!(endpoints(&model).is_empty());
}

#[test]
fn openapi_30_is_not_rewritten() {
    let document = doc(
        "3.0.3",
        json!({"/a": {"get": {"responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": ["string", "null"]}}}}}}}}),
    );
    assert!(matches!(parse(&document), Err(DocsError::Invalid { .. })));
}
