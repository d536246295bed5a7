//! `GET /spec`: the merged OpenAPI 3.0 document of every endpoint a domain serves, built from
//! the normalised endpoints of its upstreams (most specific template first).

use std::collections::BTreeSet;

use buckler_docs::ParamLocation;
use serde_json::{json, Map, Value};

use crate::table::DomainTable;

/// A Buckler template as an OpenAPI path: `{id: [0-9]+}` → `{id}` (the regex becomes the
/// parameter's `pattern`), `{+rest}` → `{rest}`, `{.ext}` dropped, `{?x}`-style prefixes
/// removed. Returns the path and its path parameters as (name, pattern).
fn openapi_path(template: &str) -> (String, Vec<(String, Option<String>)>) {
    let mut path = String::new();
    let mut params = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        path.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        // Balance nested braces of regexes like `{2,3}`.
        let mut depth = 0usize;
        let mut close = None;
        for (i, c) in after.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    close = Some(i);
                    break;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        let Some(close) = close else {
            path.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let inner = &after[..close];
        rest = &after[close + 1..];
        if inner.starts_with('.') {
            continue;
        }
        let inner = inner.trim_start_matches(['+', '?', '#', '/', ';', '&']);
        let (name, pattern) = match inner.split_once(':') {
            Some((name, regex)) => (name.trim().to_owned(), Some(format!("^{}$", regex.trim()))),
            None => (inner.trim().to_owned(), None),
        };
        path.push('{');
        path.push_str(&name);
        path.push('}');
        params.push((name, pattern));
    }
    path.push_str(rest);
    if path.is_empty() {
        path.push('/');
    }
    (path, params)
}

fn location_name(location: ParamLocation) -> Option<&'static str> {
    match location {
        ParamLocation::Path => Some("path"),
        ParamLocation::Query => Some("query"),
        ParamLocation::Header => Some("header"),
        ParamLocation::Cookie => Some("cookie"),
        ParamLocation::Body | ParamLocation::FormData => None,
    }
}

/// The merged document for one domain.
pub fn merged_spec(domain: &DomainTable, generation: u64) -> Value {
    let mut paths = Map::new();
    for (template, method, group) in domain.routes.iter() {
        // Every candidate's declaration of this endpoint.
        let declared: Vec<_> = group
            .candidates
            .iter()
            .filter_map(|c| c.upstream.docs())
            .flat_map(|docs| {
                docs.endpoints
                    .iter()
                    .filter(|e| e.template == *template && e.method == *method)
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        let Some(first) = declared.first() else {
            continue;
        };
        let (path, path_params) = openapi_path(&first.path);
        let mut seen = BTreeSet::new();
        let mut parameters = Vec::new();
        let mut has_body = false;
        for (name, pattern) in &path_params {
            seen.insert(("path".to_owned(), name.clone()));
            let mut schema = json!({"type": "string"});
            if let Some(pattern) = pattern {
                schema["pattern"] = json!(pattern);
            }
            parameters
                .push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
        }
        for endpoint in &declared {
            for parameter in &endpoint.parameters {
                let Some(location) = location_name(parameter.location) else {
                    has_body = true;
                    continue;
                };
                if location == "path" || !seen.insert((location.to_owned(), parameter.name.clone()))
                {
                    continue;
                }
                parameters.push(
                    json!({"name": parameter.name, "in": location, "schema": {"type": "string"}}),
                );
            }
        }
        let union =
            |pick: fn(&crate::upstream::RoutableEndpoint) -> &Vec<buckler_route::MediaType>| {
                let mut types: Vec<String> = Vec::new();
                for endpoint in &declared {
                    for media in pick(endpoint) {
                        if !types.iter().any(|t| t == media.as_str()) {
                            types.push(media.as_str().to_owned());
                        }
                    }
                }
                types
            };
        let consumes = union(|e| &e.consumes);
        let produces = union(|e| &e.produces);
        let content = |types: &[String]| -> Value {
            Value::Object(types.iter().map(|t| (t.clone(), json!({}))).collect())
        };
        let mut operation = json!({
            "parameters": parameters,
            "responses": {"default": {"description": "the upstream's response", "content": content(&produces)}},
            "x-buckler-upstreams": group.candidates.iter().map(|c| c.upstream.identity()).collect::<Vec<_>>(),
        });
        if has_body || !consumes.is_empty() {
            let types = if consumes.is_empty() {
                vec!["application/octet-stream".to_owned()]
            } else {
                consumes
            };
            operation["requestBody"] = json!({"content": content(&types)});
        }
        let item = paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()));
        let key = method.as_str().to_ascii_lowercase();
        if let Value::Object(item) = item {
            // Two Buckler templates can map to one OpenAPI path: the more specific keeps it.
            item.entry(key).or_insert(operation);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": format!("Buckler: {}", domain.settings.domain_name),
            "version": generation.to_string(),
            "description": "Every endpoint this domain serves, merged from its upstreams' documents.",
        },
        "paths": paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_become_openapi_paths() {
        assert_eq!(
            openapi_path("/users/{id}"),
            ("/users/{id}".to_owned(), vec![("id".to_owned(), None)])
        );
        assert_eq!(
            openapi_path("/x/{id: [0-9]{2,3}}/y"),
            (
                "/x/{id}/y".to_owned(),
                vec![("id".to_owned(), Some("^[0-9]{2,3}$".to_owned()))]
            )
        );
        assert_eq!(
            openapi_path("/files/{+path}"),
            ("/files/{path}".to_owned(), vec![("path".to_owned(), None)])
        );
        assert_eq!(openapi_path("/doc{.ext}"), ("/doc".to_owned(), vec![]));
        assert_eq!(openapi_path(""), ("/".to_owned(), vec![]));
    }
}
