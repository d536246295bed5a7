//! Golden tests: sample documents from `gateway-config/samples/` → `endpoints()` rendered one
//! line per endpoint, compared with `tests/golden/*.txt`. `BUCKLER_BLESS=1` rewrites them.

use std::fmt::Write as _;
use std::path::PathBuf;

use buckler_docs::{
    endpoints, parse_openapi3, parse_swagger1, parse_swagger2, service_info, swagger1_listing,
    Endpoint, Limits, ParamLocation,
};
use serde_json::{json, Map, Value};

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../gateway-config/samples")
}

fn sample(name: &str) -> Vec<u8> {
    let path = samples().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn location(location: ParamLocation) -> &'static str {
    match location {
        ParamLocation::Path => "path",
        ParamLocation::Query => "query",
        ParamLocation::Header => "header",
        ParamLocation::Cookie => "cookie",
        ParamLocation::Body => "body",
        ParamLocation::FormData => "formData",
    }
}

/// `GET /v2/pet/{petId} consumes=[] produces=[application/json,application/xml] params=[path:petId]`,
/// then the disabled lists when not empty.
fn render(model: &openapiv3::OpenAPI) -> String {
    let (title, version) = service_info(model);
    let mut out = format!("# {title} {version}\n");
    for Endpoint {
        method,
        path,
        consumes,
        produces,
        parameters,
        disabled_middleware,
        disabled_listeners,
    } in endpoints(model)
    {
        let params: Vec<String> = parameters
            .iter()
            .map(|p| format!("{}:{}", location(p.location), p.name))
            .collect();
        let _ = write!(
            out,
            "{method} {path} consumes=[{}] produces=[{}] params=[{}]",
            consumes.join(","),
            produces.join(","),
            params.join(",")
        );
        if !disabled_middleware.is_empty() {
            let _ = write!(
                out,
                " disabled-middleware=[{}]",
                disabled_middleware.join(",")
            );
        }
        if !disabled_listeners.is_empty() {
            let _ = write!(
                out,
                " disabled-listeners=[{}]",
                disabled_listeners.join(",")
            );
        }
        out.push('\n');
    }
    out
}

/// Compares with the golden file, or writes it under `BUCKLER_BLESS=1`. Also checks that the
/// model survives serialisation with the same endpoints (what `/spec` consumers read back).
fn check(name: &str, model: &openapiv3::OpenAPI) {
    let rendered = render(model);
    let read_back: openapiv3::OpenAPI =
        serde_json::from_str(&serde_json::to_string(model).unwrap()).unwrap();
    assert_eq!(
        render(&read_back),
        rendered,
        "{name}: the model does not round-trip"
    );
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    if std::env::var_os("BUCKLER_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&golden, &rendered).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with BUCKLER_BLESS=1 to create it)",
            golden.display()
        )
    });
    assert!(
        expected == rendered,
        "{name} differs from {} (BUCKLER_BLESS=1 to accept):\n--- expected\n{expected}\n--- actual\n{rendered}",
        golden.display()
    );
}

#[test]
fn petstore_swagger2() {
    let model = parse_swagger2(&sample("petstore-swagger2.json"), &Limits::default()).unwrap();
    check("petstore-swagger2", &model);
}

#[test]
fn petstore_openapi3() {
    let model = parse_openapi3(&sample("petstore-openapi3.json"), &Limits::default()).unwrap();
    check("petstore-openapi3", &model);
}

#[test]
fn bookstore_openapi31() {
    let model = parse_openapi3(&sample("bookstore-openapi31.json"), &Limits::default()).unwrap();
    check("bookstore-openapi31", &model);
}

#[test]
fn petstore_swagger1() {
    let listing = sample("petstore-swagger1-listing.json");
    let apis = swagger1_listing(&listing, &Limits::default()).unwrap();
    assert_eq!(apis, ["/pet", "/store"]);
    let declarations: Vec<Vec<u8>> = apis
        .iter()
        .map(|api| {
            sample(&format!(
                "petstore-swagger1-{}.json",
                api.trim_start_matches('/')
            ))
        })
        .collect();
    let model = parse_swagger1(&listing, &declarations, &Limits::default()).unwrap();
    check("petstore-swagger1", &model);
}

/// A deterministic Swagger 2 document with `count` resources, each with a collection path, an
/// item path and a nested action path, varied methods, media types and parameters.
fn generated_swagger2(count: usize) -> Value {
    let mut paths = Map::new();
    for i in 0..count {
        let resource = format!("/r{i:03}");
        let consumes = match i % 3 {
            0 => json!(["application/json"]),
            1 => json!(["application/json", "application/x-www-form-urlencoded"]),
            _ => json!([]),
        };
        paths.insert(
            resource.clone(),
            json!({
                "get": {"parameters": [{"name": "limit", "in": "query", "type": "integer"}], "responses": {"200": {"description": "ok"}}},
                "post": {"consumes": consumes, "parameters": [{"name": "body", "in": "body", "schema": {"type": "object"}}]}
            }),
        );
        let mut item = json!({
            "parameters": [{"name": "id", "in": "path", "required": true, "type": "string"}],
            "get": {"produces": ["application/json", "text/csv; charset=utf-8"]},
            "delete": {"parameters": [{"name": "If-Match", "in": "header"}]}
        });
        if i % 4 == 0 {
            item["head"] = json!({"x-disabled-middleware": ["Cache"]});
        }
        paths.insert(format!("{resource}/{{id}}"), item);
        if i % 2 == 0 {
            paths.insert(
                format!("{resource}/{{id}}/actions/{{+action}}"),
                json!({"patch": {"consumes": ["application/merge-patch+json"]}, "options": {}}),
            );
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "generated", "version": count.to_string()},
        "basePath": "/gen",
        "produces": ["application/json"],
        "paths": paths
    })
}

#[test]
fn generated_swagger2_with_hundreds_of_paths() {
    let document = generated_swagger2(200).to_string();
    let model = parse_swagger2(document.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(model.paths.paths.len(), 500);
    assert_eq!(endpoints(&model).len(), 200 * 2 + 200 * 2 + 50 + 100 * 2);
    check("generated-swagger2", &model);
    let tight = Limits {
        max_paths: 499,
        ..Limits::default()
    };
    assert!(parse_swagger2(document.as_bytes(), &tight).is_err());
}
