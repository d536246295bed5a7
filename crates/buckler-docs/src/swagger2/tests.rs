use serde_json::json;

use super::*;
use crate::{endpoints, service_info, Endpoint, Parameter, X_CONSUMES};

fn parse(doc: &Value) -> Result<oa::OpenAPI, DocsError> {
    parse_swagger2(doc.to_string().as_bytes(), &Limits::default())
}

fn only(doc: &Value) -> Endpoint {
    let list = endpoints(&parse(doc).unwrap());
    assert_eq!(list.len(), 1, "{list:?}");
    list.into_iter().next().unwrap()
}

fn doc_with(paths: Value) -> Value {
    json!({"swagger": "2.0", "info": {"title": "t", "version": "1"}, "paths": paths})
}

fn param(location: ParamLocation, name: &str) -> Parameter {
    Parameter {
        location,
        name: name.to_owned(),
    }
}

#[test]
fn base_path_becomes_the_server_and_prefixes_every_path() {
    let mut doc = doc_with(json!({"/pets/{id}": {"get": {}}, "/": {"get": {}}}));
    doc["basePath"] = json!("/v2/");
    let model = parse(&doc).unwrap();
    assert_eq!(model.servers.len(), 1);
    assert_eq!(model.servers[0].url, "/v2/");
    let paths: Vec<String> = endpoints(&model).into_iter().map(|e| e.path).collect();
    assert_eq!(paths, ["/v2/pets/{id}", "/v2"]);

    doc["basePath"] = json!("/");
    let model = parse(&doc).unwrap();
    assert!(model.servers.is_empty(), "\"/\" contributes nothing");
    assert_eq!(endpoints(&model)[0].path, "/pets/{id}");

    doc["basePath"] = json!("api");
    assert_eq!(endpoints(&parse(&doc).unwrap())[0].path, "/api/pets/{id}");
}

#[test]
fn path_keys_without_a_leading_slash_get_one() {
    assert_eq!(only(&doc_with(json!({"pets": {"get": {}}}))).path, "/pets");
}

#[test]
fn root_media_types_apply_unless_the_operation_declares_its_own_even_empty() {
    let mut doc = doc_with(json!({"/a": {
        "get": {},
        "put": {"consumes": ["text/plain"], "produces": []},
        "post": {"consumes": null}
    }}));
    doc["consumes"] = json!(["application/json"]);
    doc["produces"] = json!(["application/json", "Application/XML; charset=utf-8"]);
    let list = endpoints(&parse(&doc).unwrap());
    let media = |e: &Endpoint| (e.method.to_string(), e.consumes.clone(), e.produces.clone());
    let json_xml = vec!["application/json".to_owned(), "application/xml".to_owned()];
    assert_eq!(
        list.iter().map(media).collect::<Vec<_>>(),
        [
            (
                "GET".to_owned(),
                vec!["application/json".to_owned()],
                json_xml.clone()
            ),
            ("PUT".to_owned(), vec!["text/plain".to_owned()], vec![]),
            (
                "POST".to_owned(),
                vec!["application/json".to_owned()],
                json_xml
            ),
        ]
    );
}

#[test]
fn consumes_without_a_body_parameter_survives_and_round_trips() {
    let doc = doc_with(
        json!({"/upload": {"post": {"consumes": ["application/octet-stream"], "produces": ["text/plain"]}}}),
    );
    let model = parse(&doc).unwrap();
    let operation = model.paths.paths["/upload"]
        .as_item()
        .unwrap()
        .post
        .as_ref()
        .unwrap();
    assert!(
        operation.request_body.is_none(),
        "no body parameter, no request body"
    );
    assert_eq!(
        operation.extensions[X_CONSUMES],
        json!(["application/octet-stream"])
    );
    let before = endpoints(&model);
    assert_eq!(before[0].consumes, ["application/octet-stream"]);
    let written = serde_json::to_string(&model).unwrap();
    let read_back: oa::OpenAPI = serde_json::from_str(&written).unwrap();
    assert_eq!(endpoints(&read_back), before);
}

#[test]
fn body_and_form_parameters_become_the_request_body() {
    let mut doc = doc_with(json!({
        "/pets": {"post": {
            "consumes": ["application/json", "application/xml"],
            "parameters": [{"name": "pet", "in": "body", "required": true, "schema": {"$ref": "#/definitions/Pet"}}],
            "responses": {"200": {"description": "ok", "schema": {"$ref": "#/definitions/Pet"}}}
        }},
        "/pets/{id}/photo": {"post": {
            "parameters": [{"name": "file", "in": "formData", "type": "file"}, {"name": "id", "in": "path", "type": "integer"}]
        }}
    }));
    doc["produces"] = json!(["application/json"]);
    doc["definitions"] =
        json!({"Pet": {"type": "object", "properties": {"name": {"type": "string"}}}});
    let model = parse(&doc).unwrap();
    let schemas = &model.components.as_ref().unwrap().schemas;
    assert!(schemas.contains_key("Pet"));
    let written = serde_json::to_value(&model).unwrap();
    let body = &written["paths"]["/pets"]["post"]["requestBody"];
    assert_eq!(body["required"], true);
    assert_eq!(
        body["content"]["application/xml"]["schema"]["$ref"],
        "#/components/schemas/Pet"
    );
    let response = &written["paths"]["/pets"]["post"]["responses"]["200"];
    assert_eq!(
        response["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Pet"
    );
    let form = &written["paths"]["/pets/{id}/photo"]["post"]["requestBody"]["content"];
    assert_eq!(
        form["application/x-www-form-urlencoded"]["schema"]["properties"]["file"],
        json!({"type": "string", "format": "binary"})
    );
    let list = endpoints(&model);
    assert_eq!(list[0].parameters, [param(ParamLocation::Body, "pet")]);
    assert_eq!(
        list[0].consumes,
        ["application/json", "application/xml"],
        "the model's default type does not leak"
    );
    assert_eq!(
        list[1].parameters,
        [
            param(ParamLocation::Path, "id"),
            param(ParamLocation::FormData, "file")
        ]
    );
    assert!(list[1].consumes.is_empty(), "declares nothing");
}

#[test]
fn path_level_parameters_merge_with_operation_parameters_which_win() {
    let doc = doc_with(json!({"/pets/{id}": {
        "parameters": [
            {"name": "id", "in": "path", "required": true, "type": "string"},
            {"name": "X-Trace", "in": "header", "description": "path level"},
            {"name": "q", "in": "query"}
        ],
        "get": {"parameters": [
            {"name": "x-trace", "in": "header", "description": "operation level"},
            {"name": "id", "in": "query"}
        ]}
    }}));
    let model = parse(&doc).unwrap();
    let endpoint = &endpoints(&model)[0];
    assert_eq!(
        endpoint.parameters,
        [
            param(ParamLocation::Path, "id"),
            param(ParamLocation::Query, "q"),
            param(ParamLocation::Header, "x-trace"),
            param(ParamLocation::Query, "id"),
        ]
    );
    let written = serde_json::to_value(&model).unwrap();
    let header = &written["paths"]["/pets/{id}"]["get"]["parameters"][2];
    assert_eq!(header["description"], "operation level");
}

#[test]
fn parameter_references_resolve_against_the_document() {
    let mut doc = doc_with(
        json!({"/a": {"get": {"parameters": [{"$ref": "#/parameters/limit"}, {"$ref": "#/parameters/a~1b"}]}}}),
    );
    doc["parameters"] = json!({"limit": {"name": "limit", "in": "query", "type": "integer"}, "a/b": {"name": "X-AB", "in": "header"}});
    assert_eq!(
        only(&doc).parameters,
        [
            param(ParamLocation::Query, "limit"),
            param(ParamLocation::Header, "x-ab")
        ]
    );
}

#[test]
fn unresolvable_and_chained_references_are_errors() {
    let mut doc = doc_with(json!({"/a": {"get": {"parameters": [{"$ref": "#/parameters/nope"}]}}}));
    let expected = DocsError::UnresolvedReference {
        path: "/a".to_owned(),
        method: "GET".to_owned(),
        reference: "#/parameters/nope".to_owned(),
    };
    assert_eq!(parse(&doc).unwrap_err(), expected);
    doc["parameters"] = json!({"nope": {"$ref": "#/parameters/nope"}});
    assert_eq!(
        parse(&doc).unwrap_err(),
        expected,
        "a self-reference is not followed"
    );
    let external = doc_with(json!({"/a": {"get": {"parameters": [{"$ref": "other.json#/x"}]}}}));
    assert!(matches!(
        parse(&external),
        Err(DocsError::UnresolvedReference { .. })
    ));
}

#[test]
fn parameter_locations_are_validated_and_form_data_is_case_insensitive() {
    let form = doc_with(json!({"/a": {"post": {"parameters": [{"name": "f", "in": "FORMDATA"}]}}}));
    assert_eq!(
        only(&form).parameters,
        [param(ParamLocation::FormData, "f")]
    );
    let cookie = doc_with(json!({"/a": {"put": {"parameters": [{"name": "c", "in": "cookie"}]}}}));
    let err = parse(&cookie).unwrap_err();
    assert_eq!(
        err,
        DocsError::InvalidParameterLocation {
            path: "/a".to_owned(),
            method: "PUT".to_owned(),
            name: "c".to_owned(),
            location: "cookie".to_owned(),
            expected: "body, formData, header, path, query",
        }
    );
    assert!(
        err.to_string()
            .starts_with("PUT /a: parameter \"c\" has unknown location \"cookie\""),
        "{err}"
    );
    let upper = doc_with(json!({"/a": {"parameters": [{"name": "q", "in": "Query"}], "get": {}}}));
    let err = parse(&upper).unwrap_err();
    assert!(
        matches!(&err, DocsError::InvalidParameterLocation { method, .. } if method == "(all methods)"),
        "{err}"
    );
}

#[test]
fn parameters_without_name_or_location_are_errors() {
    let nameless = doc_with(
        json!({"/a": {"get": {"parameters": [{"name": "ok", "in": "query"}, {"in": "query"}]}}}),
    );
    assert_eq!(
        parse(&nameless).unwrap_err(),
        DocsError::IncompleteParameter {
            path: "/a".to_owned(),
            method: "GET".to_owned(),
            index: 1,
            missing: "name",
        }
    );
    let nowhere = doc_with(json!({"/a": {"get": {"parameters": [{"name": "x"}]}}}));
    assert!(matches!(
        parse(&nowhere),
        Err(DocsError::IncompleteParameter { missing: "in", .. })
    ));
}

#[test]
fn every_swagger2_method_is_honoured_in_document_order() {
    let doc = doc_with(json!({"/a": {
        "patch": {}, "head": {}, "options": {}, "delete": {}, "post": {}, "put": {}, "get": {}, "trace": {}
    }}));
    let methods: Vec<String> = endpoints(&parse(&doc).unwrap())
        .iter()
        .map(|e| e.method.to_string())
        .collect();
    assert_eq!(
        methods,
        ["GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH"],
        "no trace in Swagger 2"
    );
}

#[test]
fn disabled_middleware_and_listeners_are_read_case_insensitively() {
    let doc = doc_with(json!({"/a": {
        "get": {"X-Disabled-Middleware": ["RateLimit", "cache", "ratelimit"], "x-DISABLED-listeners": ["Console", 7]},
        "put": {"x-disabled-middleware": "cache", "x-disabled-listeners": {"a": 1}}
    }}));
    let model = parse(&doc).unwrap();
    let get = model.paths.paths["/a"]
        .as_item()
        .unwrap()
        .get
        .as_ref()
        .unwrap();
    assert!(
        get.extensions.contains_key("x-disabled-middleware"),
        "kept in the model under the lower-case key"
    );
    let list = endpoints(&model);
    assert_eq!(list[0].disabled_middleware, ["ratelimit", "cache"]);
    assert_eq!(list[0].disabled_listeners, ["console"]);
    assert!(
        list[1].disabled_middleware.is_empty(),
        "a non-list value is ignored"
    );
    assert!(list[1].disabled_listeners.is_empty());
}

#[test]
fn extension_keys_among_paths_and_responses_are_skipped() {
    let doc = doc_with(json!({
        "x-generated": true,
        "/a": {"get": {"responses": {"200": {"description": "ok"}, "x-note": "anything"}}, "x-owner": "team"}
    }));
    let model = parse(&doc).unwrap();
    assert_eq!(model.paths.paths.keys().collect::<Vec<_>>(), ["/a"]);
    assert_eq!(endpoints(&model).len(), 1);
}

#[test]
fn response_references_resolve() {
    let mut doc = doc_with(
        json!({"/a": {"get": {"produces": ["application/json"], "responses": {"404": {"$ref": "#/responses/NotFound"}}}}}),
    );
    doc["responses"] =
        json!({"NotFound": {"description": "no such thing", "schema": {"type": "string"}}});
    let written = serde_json::to_value(parse(&doc).unwrap()).unwrap();
    assert_eq!(
        written["paths"]["/a"]["get"]["responses"]["404"]["description"],
        "no such thing"
    );
}

#[test]
fn info_is_carried_over_with_defaults() {
    assert_eq!(
        service_info(&parse(&doc_with(json!({}))).unwrap()),
        ("t".to_owned(), "1".to_owned())
    );
    let bare = json!({"swagger": "2.0", "paths": {}});
    assert_eq!(
        service_info(&parse(&bare).unwrap()),
        ("(not specified)".to_owned(), String::new())
    );
}

#[test]
fn wrong_versions_are_named() {
    for (swagger, found) in [
        (json!("1.2"), "\"1.2\""),
        (json!(3.0), "3.0"),
        (json!("3.0.0"), "\"3.0.0\""),
        (Value::Null, "(none)"),
    ] {
        let doc = json!({"swagger": swagger, "paths": {}});
        assert_eq!(
            parse(&doc).unwrap_err(),
            DocsError::WrongVersion {
                found: found.to_owned(),
                expected: "\"2.0\""
            }
        );
    }
    // YAML writes `swagger: 2.0` unquoted, a number.
    assert!(parse(&json!({"swagger": 2.0, "paths": {}})).is_ok());
    let openapi = json!({"openapi": "3.0.0", "paths": {}});
    let err = parse(&openapi).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported document version (none) (expected \"2.0\")"
    );
}

#[test]
fn wrong_types_report_line_column_and_json_path() {
    let text = "{\n  \"swagger\": \"2.0\",\n  \"paths\": {\n    \"/a\": {\"get\": {\"parameters\": [{\"name\": \"q\", \"in\": \"query\", \"required\": \"yes\"}]}}\n  }\n}";
    let err = parse_swagger2(text.as_bytes(), &Limits::default()).unwrap_err();
    let DocsError::Json {
        line,
        column,
        path,
        message,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (*line, path.as_str()),
        (4, "paths./a.get.parameters[0].required")
    );
    assert!(*column > 60, "{column}");
    assert!(message.contains("expected a boolean"), "{message}");

    let info = json!({"swagger": "2.0", "info": {"title": 7}, "paths": {}});
    let err = parse(&info).unwrap_err();
    assert!(
        matches!(&err, DocsError::Json { path, .. } if path == "info.title"),
        "{err:?}"
    );
    let consumes = doc_with(json!({"/a": {"get": {"consumes": "application/json"}}}));
    let err = parse(&consumes).unwrap_err();
    assert!(
        matches!(&err, DocsError::Json { path, .. } if path == "paths./a.get.consumes"),
        "{err:?}"
    );
}

#[test]
fn malformed_json_and_yaml_are_refused_clearly() {
    let err = parse_swagger2(b"{\"swagger\": \"2.0\",", &Limits::default()).unwrap_err();
    assert!(matches!(err, DocsError::Json { line: 1, .. }), "{err:?}");
    let yaml = b"swagger: \"2.0\"\ninfo:\n  title: x\npaths:\n  /a:\n    get:\n      parameters:\n        - {name: x, in: query, required: maybe}\n";
    let err = parse_swagger2(yaml, &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, DocsError::Json { line: 8, path, .. } if path == "paths./a.get.parameters[0].required"),
        "{err:?}"
    );
}

#[test]
fn size_is_checked_before_anything_else() {
    let limits = Limits {
        max_bytes: 8,
        ..Limits::default()
    };
    let err = parse_swagger2(b"swagger: not even json", &limits).unwrap_err();
    assert_eq!(
        err,
        DocsError::TooLarge {
            bytes: 22,
            limit: 8
        }
    );
}

#[test]
fn path_and_operation_limits_are_enforced_with_counts() {
    let mut paths = Map::new();
    for i in 0..20 {
        paths.insert(format!("/p{i}"), json!({"get": {}, "post": {}}));
    }
    paths.insert("x-not-a-path".to_owned(), json!({}));
    let doc = doc_with(Value::Object(paths)).to_string();
    let limits = |max_paths, max_operations| Limits {
        max_paths,
        max_operations,
        ..Limits::default()
    };
    assert_eq!(
        parse_swagger2(doc.as_bytes(), &limits(19, 100)).unwrap_err(),
        DocsError::TooManyPaths {
            count: 20,
            limit: 19
        }
    );
    assert_eq!(
        parse_swagger2(doc.as_bytes(), &limits(20, 39)).unwrap_err(),
        DocsError::TooManyOperations {
            count: 40,
            limit: 39
        }
    );
    assert_eq!(
        endpoints(&parse_swagger2(doc.as_bytes(), &limits(20, 40)).unwrap()).len(),
        40
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let depth = 100_000;
    let doc = format!(
        "{{\"swagger\": \"2.0\", \"paths\": {{}}, \"definitions\": {{\"Deep\": {}{}}}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let err = parse_swagger2(doc.as_bytes(), &Limits::default()).unwrap_err();
    let DocsError::Json { message, .. } = err else {
        panic!("{err:?}")
    };
    assert!(message.contains("recursion limit"), "{message}");
}

#[test]
fn a_byte_order_mark_is_tolerated() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(doc_with(json!({"/a": {"get": {}}})).to_string().as_bytes());
    assert_eq!(
        endpoints(&parse_swagger2(&bytes, &Limits::default()).unwrap()).len(),
        1
    );
}

#[test]
fn path_items_given_as_references_are_inlined_or_rejected() {
    let doc = json!({
        "swagger": "2.0",
        "paths": {
            "/numbers/{id}": {"get": {"responses": {"200": {"description": "ok"}}}},
            "/aliases/{id}": {"$ref": "#/paths/~1numbers~1%7Bid%7D"},
            "/shared": {"$ref": "#/x-items/shared"}
        },
        "x-items": {"shared": {"post": {"responses": {"200": {"description": "ok"}}}}}
    });
    let routes: Vec<String> = endpoints(&parse(&doc).unwrap())
        .iter()
        .map(|e| format!("{} {}", e.method, e.path))
        .collect();
    assert_eq!(
        routes,
        ["GET /numbers/{id}", "GET /aliases/{id}", "POST /shared"]
    );
    let bad = json!({"swagger": "2.0", "paths": {"/x": {"$ref": "https://elsewhere.test/x.json"}}});
    assert_eq!(
        parse(&bad).unwrap_err(),
        DocsError::PathItemReference {
            path: "/x".to_owned(),
            reference: "https://elsewhere.test/x.json".to_owned(),
            problem: "only local references (#/...) are resolved",
        }
    );
}

#[test]
fn yaml_documents_load() {
    let yaml = b"# published as swagger.yaml\nswagger: '2.0'\ninfo: {title: t, version: 1.0}\nbasePath: /v1\nproduces: [application/json]\npaths:\n  /pets/{id}:\n    parameters:\n      - &id {name: id, in: path, required: true, type: string}\n    get:\n      responses:\n        200: {description: ok}\n    delete:\n      parameters: [*id]\n      responses:\n        default: {description: ok}\n";
    let model = parse_swagger2(yaml, &Limits::default()).unwrap();
    assert_eq!(service_info(&model), ("t".to_owned(), "1.0".to_owned()));
    let routes: Vec<String> = endpoints(&model)
        .iter()
        .map(|e| format!("{} {} {:?}", e.method, e.path, e.produces))
        .collect();
    assert_eq!(
        routes,
        [
            "GET /v1/pets/{id} [\"application/json\"]",
            "DELETE /v1/pets/{id} [\"application/json\"]"
        ]
    );
}
