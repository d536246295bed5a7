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
    let yaml = parse_openapi3(
        b"openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths: {}\n",
        &Limits::default(),
    );
    assert!(yaml.is_ok(), "{yaml:?}");
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

fn routes(model: &oa::OpenAPI) -> Vec<String> {
    endpoints(model)
        .iter()
        .map(|e| format!("{} {}", e.method, e.path))
        .collect()
}

#[test]
fn boolean_schemas_of_31_load() {
    let document = json!({
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {"/v1/domains/records/{recordId}": {"patch": {
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object",
                "properties": {"any": true, "none": false, "list": {"type": "array", "items": true}},
                "additionalProperties": false,
                "oneOf": [true, {"type": "string"}]
            }}}},
            "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": false}}}}
        }}},
        "components": {"schemas": {"Anything": true, "Nothing": false}}
    });
    let model = parse(&document).unwrap();
    assert_eq!(routes(&model), ["PATCH /v1/domains/records/{recordId}"]);
    let schemas = &model.components.as_ref().unwrap().schemas;
    let any = serde_json::to_value(&schemas["Anything"]).unwrap();
    assert_eq!(any, json!({}));
    let none = serde_json::to_value(&schemas["Nothing"]).unwrap();
    assert_eq!(none, json!({"not": {}}));
}

#[test]
fn callbacks_given_as_references_do_not_reject_the_document() {
    let document = json!({
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {"/api/v1/search/video-channels": {"get": {
            "callbacks": {
                "known": {"$ref": "#/components/callbacks/Hook"},
                "unknown": {"$ref": "#/components/callbacks/Missing"},
                "inline": {"{$request.body#/url}": {"post": {"responses": {"200": {"description": "ok"}}}}}
            },
            "responses": {"200": {"description": "ok"}}
        }}},
        "components": {"callbacks": {"Hook": {"{$request.body#/url}": {"post": {
            "responses": {"200": {"description": "ok"}}
        }}}}}
    });
    let model = parse(&document).unwrap();
    assert_eq!(routes(&model), ["GET /api/v1/search/video-channels"]);
    let operation = model.paths.paths["/api/v1/search/video-channels"]
        .as_item()
        .unwrap()
        .get
        .as_ref()
        .unwrap();
    let names: Vec<&String> = operation.callbacks.keys().collect();
    assert_eq!(names, ["known", "inline"], "resolved, dropped, kept");
}

#[test]
fn path_items_given_as_references_are_inlined_or_rejected() {
    let document = json!({
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/numbers/{id}": {"get": {"responses": {"200": {"description": "ok"}}}},
            "/aliases/{id}": {"$ref": "#/paths/~1numbers~1{id}"},
            "/shared": {"$ref": "#/x-path-items/shared", "summary": "own keys win"},
            "/chained": {"$ref": "#/paths/~1aliases~1{id}"}
        },
        "x-path-items": {"shared": {"post": {"responses": {"200": {"description": "ok"}}}, "summary": "target"}}
    });
    let model = parse(&document).unwrap();
    assert_eq!(
        routes(&model),
        [
            "GET /numbers/{id}",
            "GET /aliases/{id}",
            "POST /shared",
            "GET /chained"
        ]
    );
    let shared = model.paths.paths["/shared"].as_item().unwrap();
    assert_eq!(shared.summary.as_deref(), Some("own keys win"));
    for (reference, problem) in [
        (
            "other.yaml#/paths/~1a",
            "only local references (#/...) are resolved",
        ),
        ("#/paths/~1missing", "it points to nothing"),
        (
            "#/paths/~1x",
            "a chain of references that does not end (a cycle?)",
        ),
    ] {
        let document = json!({
            "openapi": "3.0.3",
            "info": {"title": "t", "version": "1"},
            "paths": {"/x": {"$ref": reference}}
        });
        assert_eq!(
            parse(&document).unwrap_err(),
            DocsError::PathItemReference {
                path: "/x".to_owned(),
                reference: reference.to_owned(),
                problem,
            }
        );
    }
}

#[test]
fn yaml_documents_load_with_numbers_for_versions_and_status_codes() {
    let yaml = b"openapi: 3.0\ninfo:\n  title: t\n  version: 1.0\nservers:\n  - url: https://x.test/v1\npaths:\n  /pets/{id}:\n    get:\n      responses:\n        200:\n          description: ok\n          content:\n            application/json: {}\n";
    let model = parse_openapi3(yaml, &Limits::default()).unwrap();
    assert_eq!(model.info.version, "1.0");
    assert_eq!(routes(&model), ["GET /v1/pets/{id}"]);
    assert_eq!(endpoints(&model)[0].produces, ["application/json"]);
    let flow = b"{openapi: 3.1.0, info: {title: t, version: '1'}, paths: {/a: {get: {responses: {'200': {description: ok}}}}}}";
    assert!(
        parse_openapi3(flow, &Limits::default()).is_err(),
        "a flow mapping starts like JSON"
    );
    let model = parse_openapi3_as(flow, Some(DocFormat::Yaml), &Limits::default()).unwrap();
    assert_eq!(routes(&model), ["GET /a"]);
}

#[test]
fn default_limits_take_the_largest_published_documents() {
    let limits = Limits::default();
    assert_eq!(limits.max_bytes, 64 * 1024 * 1024);
    assert_eq!(limits.max_paths, 50_000);
    let mut paths = Map::new();
    for i in 0..12_000 {
        paths.insert(
            format!("/p{i}"),
            json!({"get": {"responses": {"200": {"description": "ok"}}}}),
        );
    }
    let document =
        json!({"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": paths});
    assert_eq!(endpoints(&parse(&document).unwrap()).len(), 12_000);
}

#[test]
fn operations_of_31_without_responses_and_mutual_tls_schemes_load() {
    let document = json!({
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {"/cookies": {"get": {"parameters": [{"name": "c", "in": "cookie", "schema": {}}]}}},
        "components": {"securitySchemes": {
            "mtls": {"type": "mutualTLS"},
            "key": {"type": "apiKey", "name": "k", "in": "header"}
        }}
    });
    let model = parse(&document).unwrap();
    assert_eq!(routes(&model), ["GET /cookies"]);
    let schemes = &model.components.as_ref().unwrap().security_schemes;
    assert_eq!(schemes.keys().collect::<Vec<_>>(), ["key"]);
}

#[test]
fn a_parameter_without_schema_or_content_is_named_in_words() {
    let document = json!({
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {"/c": {"get": {"parameters": [{"name": "c", "in": "query"}], "responses": {}}}}
    });
    let err = parse(&document).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid document at paths./c.get.parameters[0]: a parameter needs `schema` or `content`"
    );
}
