use serde_json::json;

use super::*;

fn model(document: Value) -> oa::OpenAPI {
    serde_json::from_value(document).unwrap()
}

fn server(url: &str) -> oa::OpenAPI {
    oa::OpenAPI {
        servers: vec![oa::Server {
            url: url.to_owned(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn base_path_is_the_path_part_of_the_first_server() {
    assert_eq!(base_path(&oa::OpenAPI::default()), "");
    for (url, expected) in [
        ("/v1", "/v1"),
        ("/", ""),
        ("", ""),
        ("v1/", "/v1"),
        ("https://api.example.com/v2/", "/v2"),
        ("https://api.example.com", ""),
        ("http://api.example.com:8080/a/b?x=1#f", "/a/b"),
        ("//cdn.example.com/v3", "/v3"),
    ] {
        assert_eq!(base_path(&server(url)), expected, "{url}");
    }
    let mut doc = server("https://api.example.com/v1");
    doc.servers.push(oa::Server {
        url: "/v9".to_owned(),
        ..Default::default()
    });
    assert_eq!(base_path(&doc), "/v1", "only the first server counts");
}

#[test]
fn joining_never_doubles_or_drops_slashes() {
    assert_eq!(join("/v1", "/users"), "/v1/users");
    assert_eq!(join("/v1", "users"), "/v1/users");
    assert_eq!(join("/v1", "/"), "/v1");
    assert_eq!(join("", "/users"), "/users");
    assert_eq!(join("", "/"), "/");
    assert_eq!(join("", "users"), "/users");
}

#[test]
fn component_references_are_resolved() {
    let doc = model(json!({
        "openapi": "3.0.3",
        "info": {"title": "", "version": "7"},
        "paths": {"/a": {"post": {
            "parameters": [{"$ref": "#/components/parameters/Trace"}, {"$ref": "#/components/parameters/Missing"}],
            "requestBody": {"$ref": "#/components/requestBodies/Order"},
            "responses": {"200": {"$ref": "#/components/responses/Ok"}, "404": {"description": "gone", "content": {"text/plain": {}}}}
        }}},
        "components": {
            "parameters": {"Trace": {"name": "X-Trace", "in": "header", "schema": {}}},
            "requestBodies": {"Order": {"content": {"application/json": {}, "application/xml": {}}}},
            "responses": {"Ok": {"description": "ok", "content": {"application/json": {}, "text/plain": {}}}}
        }
    }));
    let list = endpoints(&doc);
    assert_eq!(
        list[0].parameters,
        [Parameter {
            location: ParamLocation::Header,
            name: "x-trace".to_owned()
        }],
        "unresolvable references are skipped"
    );
    assert_eq!(list[0].consumes, ["application/json", "application/xml"]);
    assert_eq!(list[0].produces, ["application/json", "text/plain"]);
    assert_eq!(
        service_info(&doc),
        ("(not specified)".to_owned(), "7".to_owned())
    );
}

#[test]
fn extensions_take_precedence_over_bodies_and_responses() {
    let doc = model(json!({
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {"/a": {"post": {
            "x-buckler-consumes": ["text/csv"],
            "x-buckler-produces": [],
            "requestBody": {"content": {"application/json": {}}},
            "responses": {"200": {"description": "ok", "content": {"application/json": {}}}}
        }}}
    }));
    let list = endpoints(&doc);
    assert_eq!(list[0].consumes, ["text/csv"]);
    assert!(
        list[0].produces.is_empty(),
        "an empty list is a declaration too"
    );
}

#[test]
fn path_item_references_are_skipped_and_trace_is_routable() {
    let doc = model(json!({
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {"/ref": {"$ref": "other.json#/paths/x"}, "/t": {"trace": {"responses": {}}}}
    }));
    let list = endpoints(&doc);
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].method.clone(), list[0].path.as_str()),
        (http::Method::TRACE, "/t")
    );
}
