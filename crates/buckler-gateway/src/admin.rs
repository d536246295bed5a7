//! The admin API, served on its own listener only (SPEC §7). With `admin.token` set, every
//! call needs `Authorization: Bearer <token>`: none → 401, a wrong one → 403.

use std::sync::Arc;

use buckler_route::{negotiate, NegotiationError, RouteMatch, Selection};
use buckler_upstream::ProxyBody;
use http::header;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::{json, Value};

use crate::control::{ChangeError, Control};
use crate::error::GatewayError;
use crate::local::{self, UpstreamListing};

/// Largest admin request body accepted.
const MAX_ADMIN_BODY: usize = 1024 * 1024;

/// Handles one admin request.
pub async fn handle(control: Arc<Control>, request: Request<Incoming>) -> Response<ProxyBody> {
    // The token of the configuration in force: a reload that rotates it takes effect here.
    if let Err(error) = authorize(control.admin_token().as_deref(), &request) {
        return error.into_response();
    }
    route(&control, request)
        .await
        .unwrap_or_else(GatewayError::into_response)
}

fn authorize(token: Option<&str>, request: &Request<Incoming>) -> Result<(), GatewayError> {
    let Some(token) = token else { return Ok(()) };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        None => Err(GatewayError::MissingCredential),
        Some(presented) if constant_time_eq(presented.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(GatewayError::WrongCredential),
    }
}

/// Compares without an early exit, so response timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn route(
    control: &Arc<Control>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, GatewayError> {
    let path = request.uri().path().to_owned();
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method().clone();
    match (method, segments.as_slice()) {
        (Method::GET, ["admin", "domains"]) => Ok(ok_json(&list_domains(control))),
        (Method::GET, ["admin", "domains", domain, "upstreams"]) => list_upstreams(control, domain),
        (Method::PUT, ["admin", "domains", domain, "upstreams"]) => {
            let domain = domain.to_string();
            let body = read_body(request).await?;
            put_upstreams(control, &domain, &body).await
        }
        (Method::GET, ["admin", "domains", domain, "routes"]) => {
            list_routes(control, domain).map(|v| ok_json(&v))
        }
        (Method::GET, ["admin", "explain"]) => {
            explain(control, request.uri().query().unwrap_or("")).map(|v| ok_json(&v))
        }
        (Method::POST, ["admin", "reload"]) => Ok(reload(control).await),
        _ => Err(GatewayError::AdminNotFound {
            message: format!("no admin endpoint {} {path}", request.method()),
        }),
    }
}

fn list_domains(control: &Control) -> Value {
    let table = control.table();
    Value::Array(
        table
            .domains()
            .iter()
            .map(|d| {
                json!({
                    "domain-name": d.settings.domain_name,
                    "upstreams": d.upstreams.len(),
                    "endpoints": d.routes.len(),
                })
            })
            .collect(),
    )
}

fn find_domain<'a>(
    table: &'a crate::table::RuntimeTable,
    name: &str,
) -> Result<&'a Arc<crate::table::DomainTable>, GatewayError> {
    let name = name.to_ascii_lowercase();
    table
        .domains()
        .iter()
        .find(|d| d.settings.domain_name == name)
        .ok_or_else(|| GatewayError::AdminNotFound {
            message: format!("no domain named {name:?}"),
        })
}

fn list_upstreams(control: &Control, domain: &str) -> Result<Response<ProxyBody>, GatewayError> {
    let table = control.table();
    let domain = find_domain(&table, domain)?;
    Ok(ok_json(&UpstreamListing(&domain.upstreams)))
}

async fn put_upstreams(
    control: &Arc<Control>,
    domain: &str,
    body: &str,
) -> Result<Response<ProxyBody>, GatewayError> {
    match control
        .write_upstreams(&domain.to_ascii_lowercase(), body)
        .await
    {
        Ok(diff) => Ok(ok_json(&json!({
            "added": diff.added,
            "removed": diff.removed,
            "reweighted": diff.reweighted,
            "revived": diff.revived,
            "unchanged": diff.unchanged,
        }))),
        Err(error) => Err(change_error(error)),
    }
}

fn change_error(error: ChangeError) -> GatewayError {
    match error {
        ChangeError::UnknownDomain(name) => GatewayError::AdminNotFound {
            message: format!("no domain named {name:?}"),
        },
        ChangeError::Invalid(errors) => GatewayError::InvalidInput {
            message: format!("invalid: {} problem(s), nothing changed", errors.0.len()),
            errors: errors.0.iter().map(|e| e.to_string()).collect(),
        },
        ChangeError::Setup(error) => GatewayError::InvalidInput {
            message: "invalid, nothing changed".to_owned(),
            errors: vec![error.to_string()],
        },
        ChangeError::Conflict(message) => GatewayError::AdminConflict { message },
        ChangeError::Unavailable(message) => GatewayError::AdminUnavailable { message },
    }
}

fn list_routes(control: &Control, domain: &str) -> Result<Value, GatewayError> {
    let table = control.table();
    let domain = find_domain(&table, domain)?;
    Ok(Value::Array(
        domain
            .routes
            .iter()
            .map(|(template, method, group)| {
                json!({
                    "template": template.canonical(),
                    "method": method.as_str(),
                    "candidates": group.candidates.iter().map(|c| json!({
                        "serviceLocation": c.upstream.identity(),
                        "effectiveWeight": c.weight,
                        "consumes": c.consumes.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                        "produces": c.produces.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    ))
}

fn explain(control: &Control, query: &str) -> Result<Value, GatewayError> {
    let mut domain = None;
    let mut method = "GET".to_owned();
    let mut path = None;
    let mut content_type = None;
    let mut accept = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "domain" => domain = Some(percent_decode(value)),
            "method" => method = percent_decode(value).to_ascii_uppercase(),
            "path" => path = Some(percent_decode(value)),
            "content-type" => content_type = Some(percent_decode(value)),
            "accept" => accept = Some(percent_decode(value)),
            _ => {}
        }
    }
    let invalid = |message: &str| GatewayError::InvalidInput {
        message: message.to_owned(),
        errors: vec![],
    };
    let path = path.ok_or_else(|| invalid("query parameter `path` is required"))?;
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| invalid("invalid method"))?;
    let table = control.table();
    let host = domain
        .unwrap_or_else(|| "*".to_owned())
        .to_ascii_lowercase();
    // The gateway's own endpoints answer before any routing, whatever the upstreams declare.
    let paths = &table.config.paths;
    if method == Method::GET || method == Method::HEAD {
        let local = [
            (&paths.healthcheck, "healthcheck"),
            (&paths.metrics, "metrics"),
            (&paths.spec, "spec"),
        ];
        if let Some((_, name)) = local.iter().find(|(local, _)| **local == path) {
            return Ok(json!({
                "status": 200,
                "local": name,
                "reason": format!("{path} is the gateway's own {name} endpoint: it answers before any upstream route"),
            }));
        }
    }
    let Some(domain) = table.domain_for(Some(&host)) else {
        return Ok(json!({"status": 404, "reason": format!("no domain serves host {host:?}")}));
    };
    let stripped = crate::headers::strip_extension(&path, &domain.settings.ignore_extensions);
    let routed_path = stripped.as_deref().unwrap_or(&path);
    Ok(match domain.routes.lookup(&method, routed_path) {
        RouteMatch::Matched {
            template,
            method: declared,
            group,
        } => {
            // With `content-type` (a request with a body) and/or `accept`, negotiation is
            // explained too, exactly as the request path would run it.
            let selection = negotiate(
                &group.candidates,
                content_type.as_deref(),
                content_type.is_some(),
                accept.as_deref(),
            );
            let (status, reason, chosen): (u16, &str, Vec<usize>) = match selection {
                Ok(Selection::All) => (200, "matched", (0..group.candidates.len()).collect()),
                Ok(Selection::Subset(indices)) => {
                    (200, "matched; negotiation narrowed the candidates", indices)
                }
                Err(NegotiationError::UnsupportedMediaType) => {
                    (415, "no candidate consumes the content type", vec![])
                }
                Err(NegotiationError::NotAcceptable) => {
                    (406, "no candidate produces an acceptable type", vec![])
                }
            };
            json!({
                "status": status,
                "reason": reason,
                "domain": domain.settings.domain_name,
                "path": routed_path,
                "template": template.canonical(),
                "method": declared.as_str(),
                "candidates": chosen.iter().map(|i| {
                    let c = &group.candidates[*i];
                    json!({
                        "serviceLocation": c.upstream.identity(),
                        "effectiveWeight": c.weight,
                        "consumes": c.consumes.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                        "produces": c.produces.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                    })
                }).collect::<Vec<_>>(),
            })
        }
        RouteMatch::Options { allow } => {
            json!({"status": 200, "reason": "synthetic OPTIONS", "allow": allow})
        }
        RouteMatch::MethodNotAllowed { allow } => {
            json!({"status": 405, "reason": "no matching template declares the method", "allow": allow})
        }
        RouteMatch::NotFound => {
            json!({"status": 404, "reason": "no template matches the path", "path": routed_path})
        }
    })
}

async fn reload(control: &Arc<Control>) -> Response<ProxyBody> {
    match control.reload().await {
        Ok(outcome) => ok_json(&json!({
            // "partial": applied, but a certificate pair was refused (its old pair serves on).
            "result": if outcome.refused.is_empty() { "ok" } else { "partial" },
            "summary": outcome.to_string(),
            "restartRequired": outcome.restart_required,
            "refused": outcome.refused,
        })),
        Err(error) => {
            let errors: Vec<String> = match &error {
                ChangeError::Invalid(errors) => errors.0.iter().map(|e| e.to_string()).collect(),
                other => vec![other.to_string()],
            };
            let body = json!({"result": "error", "error": "reload rejected, nothing changed", "errors": errors, "status": 400});
            json_response(StatusCode::BAD_REQUEST, &body)
        }
    }
}

async fn read_body(request: Request<Incoming>) -> Result<String, GatewayError> {
    let bytes = Limited::new(request.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
        .map_err(|_| GatewayError::BodyTooLarge {
            limit: MAX_ADMIN_BODY as u64,
        })?
        .to_bytes();
    String::from_utf8(bytes.to_vec()).map_err(|_| GatewayError::InvalidInput {
        message: "the body is not UTF-8".to_owned(),
        errors: vec![],
    })
}

fn ok_json(body: &impl Serialize) -> Response<ProxyBody> {
    json_response(StatusCode::OK, body)
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response<ProxyBody> {
    local::json_response(status, body, "application/json")
}

/// Decodes `%XX` escapes (and `+` as space, for query values); invalid escapes stay as they are.
fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("%2A"), "*");
        assert_eq!(percent_decode("/users/%7Bid%7D"), "/users/{id}");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn source_write_failures_answer_400_409_503() {
        use buckler_discovery::{Revision, WriteError};
        let cases = [
            (
                WriteError::Invalid(buckler_config::ConfigErrors(vec![])),
                400,
            ),
            (
                WriteError::Conflict {
                    expected: Revision::Etcd(3),
                    current: Revision::Etcd(4),
                },
                409,
            ),
            (WriteError::Unavailable("etcd at x unreachable".into()), 503),
        ];
        for (error, status) in cases {
            let message = error.to_string();
            let mapped = change_error(ChangeError::from(error));
            assert_eq!(mapped.status().as_u16(), status, "{message}");
        }
        let unknown = change_error(ChangeError::UnknownDomain("x".into()));
        assert_eq!(unknown.status().as_u16(), 404);
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secrets"));
    }
}
