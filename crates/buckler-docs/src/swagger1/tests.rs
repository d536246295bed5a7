use super::*;
use crate::{endpoints, service_info, Parameter};

const LISTING: &[u8] =
    br#"{"swaggerVersion": "1.2", "apiVersion": "1.0.3", "info": {"title": "Users"},
    "apis": [{"path": "/users"}, {"path": "legacy.{format}"}]}"#;

fn parse(declarations: &[&str]) -> Result<oa::OpenAPI, DocsError> {
    let declarations: Vec<Vec<u8>> = declarations.iter().map(|d| d.as_bytes().to_vec()).collect();
    parse_swagger1(LISTING, &declarations, &Limits::default())
}

#[test]
fn listing_paths_get_a_leading_slash_and_format_becomes_json() {
    assert_eq!(
        swagger1_listing(LISTING, &Limits::default()).unwrap(),
        ["/users", "/legacy.json"]
    );
    let old_shape = br#"{"swaggerVersion": "1.1", "basePath": "http://x/api", "apis": [{"path": "/pets.{format}", "description": "pets"}]}"#;
    assert_eq!(
        swagger1_listing(old_shape, &Limits::default()).unwrap(),
        ["/pets.json"]
    );
}

#[test]
fn declarations_become_operations_with_media_types_and_parameters() {
    let users = r#"{"swaggerVersion": "1.2", "basePath": "http://ignored/base", "resourcePath": "/users",
        "produces": ["application/json"], "consumes": ["application/json"],
        "apis": [{"path": "/users/{id}", "operations": [
            {"method": "GET", "nickname": "getUser", "parameters": [
                {"name": "id", "paramType": "path", "type": "integer", "format": "int64"},
                {"name": "X-A", "paramType": "Header", "type": "string"}]},
            {"method": "put", "consumes": ["text/plain; charset=utf-8"], "produces": [],
             "parameters": [{"name": "body", "paramType": "body", "type": "User"}]}
        ]}]}"#;
    let legacy = r#"{"swaggerVersion": "1.1", "apis": [{"path": "/old.{format}", "operations": [
        {"httpMethod": "POST", "parameters": [{"name": "f", "paramType": "form", "dataType": "string"}]}]}]}"#;
    let model = parse(&[users, legacy]).unwrap();
    assert_eq!(
        service_info(&model),
        ("Users".to_owned(), "1.0.3".to_owned())
    );
    let list = endpoints(&model);
    let summary: Vec<(String, &str, &[String], &[String])> = list
        .iter()
        .map(|e| {
            (
                e.method.to_string(),
                e.path.as_str(),
                e.consumes.as_slice(),
                e.produces.as_slice(),
            )
        })
        .collect();
    let json = ["application/json".to_owned()];
    assert_eq!(
        summary,
        [
            ("GET".to_owned(), "/users/{id}", &json[..], &json[..]),
            (
                "PUT".to_owned(),
                "/users/{id}",
                &["text/plain".to_owned()][..],
                &[][..]
            ),
            ("POST".to_owned(), "/old.json", &[][..], &[][..]),
        ]
    );
    let parameter = |location, name: &str| Parameter {
        location,
        name: name.to_owned(),
    };
    assert_eq!(
        list[0].parameters,
        [
            parameter(ParamLocation::Path, "id"),
            parameter(ParamLocation::Header, "x-a")
        ]
    );
    assert_eq!(list[1].parameters, [parameter(ParamLocation::Body, "body")]);
    assert_eq!(
        list[2].parameters,
        [parameter(ParamLocation::FormData, "f")]
    );
    let written = serde_json::to_value(&model).unwrap();
    let id = &written["paths"]["/users/{id}"]["get"]["parameters"][0];
    assert_eq!(
        id["schema"],
        serde_json::json!({"type": "integer", "format": "int64"})
    );
    assert_eq!(
        written["paths"]["/users/{id}"]["get"]["operationId"],
        "getUser"
    );
}

#[test]
fn a_path_declared_twice_merges_and_the_later_method_wins() {
    let first = r#"{"apis": [{"path": "/a", "operations": [{"method": "GET", "produces": ["text/plain"]}, {"method": "DELETE"}]}]}"#;
    let second = r#"{"apis": [{"path": "/a", "operations": [{"method": "GET", "produces": ["text/html"]}]}]}"#;
    let list = endpoints(&parse(&[first, second]).unwrap());
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].produces, ["text/html"]);
}

#[test]
fn methods_are_required_and_must_be_known() {
    let missing =
        r#"{"apis": [{"path": "/a", "operations": [{"method": "GET"}, {"nickname": "x"}]}]}"#;
    assert_eq!(
        parse(&[missing]).unwrap_err(),
        DocsError::MissingMethod {
            path: "/a".to_owned(),
            index: 1
        }
    );
    let unknown = r#"{"apis": [{"path": "/a", "operations": [{"method": "CONNECT"}]}]}"#;
    assert_eq!(
        parse(&[unknown]).unwrap_err(),
        DocsError::UnsupportedMethod {
            path: "/a".to_owned(),
            method: "CONNECT".to_owned()
        }
    );
}

#[test]
fn unknown_param_types_are_errors() {
    let decl = r#"{"apis": [{"path": "/a", "operations": [{"method": "GET", "parameters": [{"name": "x", "paramType": "matrix"}]}]}]}"#;
    let err = parse(&[decl]).unwrap_err();
    assert_eq!(err.to_string(), "GET /a: parameter \"x\" has unknown location \"matrix\" (expected one of body, form, header, path, query)");
}

#[test]
fn other_document_kinds_are_refused() {
    let swagger2 = br#"{"swagger": "2.0", "paths": {}}"#;
    assert!(matches!(
        swagger1_listing(swagger2, &Limits::default()),
        Err(DocsError::WrongVersion { .. })
    ));
    let future = br#"{"swaggerVersion": "2.0", "apis": []}"#;
    assert!(matches!(
        swagger1_listing(future, &Limits::default()),
        Err(DocsError::WrongVersion { .. })
    ));
    let declaration = r#"{"openapi": "3.0.0", "apis": []}"#;
    assert!(matches!(
        parse(&[declaration]),
        Err(DocsError::WrongVersion { .. })
    ));
    assert_eq!(
        swagger1_listing(b"apis:\n  - path: /a\n", &Limits::default()).unwrap(),
        ["/a"],
        "YAML"
    );
}

#[test]
fn type_errors_in_declarations_carry_position_and_path() {
    let decl = "{\"apis\": [{\"path\": \"/a\",\n \"operations\": [{\"method\": \"GET\", \"parameters\": [{\"name\": \"x\", \"paramType\": \"query\", \"required\": 1}]}]}]}";
    let err = parse(&[decl]).unwrap_err();
    assert!(
        matches!(&err, DocsError::Json { line: 2, path, .. } if path == "apis[0].operations[0].parameters[0].required"),
        "{err:?}"
    );
}

#[test]
fn limits_count_across_declarations() {
    let limits = |max_paths, max_operations| Limits {
        max_paths,
        max_operations,
        ..Limits::default()
    };
    assert_eq!(
        swagger1_listing(LISTING, &limits(1, 10)).unwrap_err(),
        DocsError::TooManyPaths { count: 2, limit: 1 }
    );
    let decl = |path: &str| {
        format!(r#"{{"apis": [{{"path": "{path}", "operations": [{{"method": "GET"}}, {{"method": "POST"}}]}}]}}"#).into_bytes()
    };
    let declarations = [decl("/a"), decl("/b")];
    assert_eq!(
        parse_swagger1(LISTING, &declarations, &limits(2, 3)).unwrap_err(),
        DocsError::TooManyOperations { count: 4, limit: 3 }
    );
    let three = [decl("/a"), decl("/b"), decl("/c")];
    assert_eq!(
        parse_swagger1(LISTING, &three, &limits(2, 100)).unwrap_err(),
        DocsError::TooManyPaths { count: 3, limit: 2 }
    );
    let small = Limits {
        max_bytes: 10,
        ..Limits::default()
    };
    assert!(matches!(
        parse_swagger1(b"{}", &declarations, &small),
        Err(DocsError::TooLarge { .. })
    ));
}
