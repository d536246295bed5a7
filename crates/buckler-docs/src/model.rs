//! Building OpenAPI 3 operations from the Swagger 1.2 / 2.0 view of an operation: parameters
//! with a location, effective media type lists, responses. Routing semantics that OpenAPI 3
//! cannot express are carried in `x-buckler-*` extensions (see the crate docs).

use indexmap::IndexMap;
use openapiv3 as oa;
use serde_json::{json, Value};

use crate::{ParamLocation, X_BODY_PARAMETERS, X_CONSUMES, X_PRODUCES};

/// A parameter after reference resolution and location validation.
#[derive(Debug, Clone)]
pub(crate) struct SourceParam {
    pub location: ParamLocation,
    pub name: String,
    pub required: bool,
    pub description: Option<String>,
    pub schema: oa::ReferenceOr<oa::Schema>,
}

impl SourceParam {
    /// Two parameters are the same when location and name match (header names ignoring case).
    pub fn same_as(&self, other: &SourceParam) -> bool {
        self.location == other.location
            && if self.location == ParamLocation::Header {
                self.name.eq_ignore_ascii_case(&other.name)
            } else {
                self.name == other.name
            }
    }
}

/// Adds `param`, replacing an earlier parameter with the same location and name.
pub(crate) fn merge_param(params: &mut Vec<SourceParam>, param: SourceParam) {
    params.retain(|p| !p.same_as(&param));
    params.push(param);
}

/// One declared response.
#[derive(Debug, Clone)]
pub(crate) struct SourceResponse {
    /// `"200"`, `"2XX"` or `"default"`.
    pub status: String,
    pub description: String,
    pub schema: Option<oa::ReferenceOr<oa::Schema>>,
}

/// An operation in Swagger terms.
#[derive(Debug, Default)]
pub(crate) struct SourceOperation {
    pub operation_id: Option<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub deprecated: bool,
    pub params: Vec<SourceParam>,
    /// Effective lists (operation-level if present, else document-level), normalised.
    pub consumes: Vec<String>,
    pub produces: Vec<String>,
    pub responses: Vec<SourceResponse>,
    /// Vendor extensions to keep (keys start with `x-`).
    pub extensions: IndexMap<String, Value>,
}

pub(crate) fn any_schema() -> oa::ReferenceOr<oa::Schema> {
    oa::ReferenceOr::Item(oa::Schema {
        schema_data: oa::SchemaData::default(),
        schema_kind: oa::SchemaKind::Any(oa::AnySchema::default()),
    })
}

/// The OpenAPI 3 operation. Body and form parameters become the request body (declared for
/// the effective `consumes`, or `application/json` / `application/x-www-form-urlencoded`
/// when it is empty); the effective lists and the body parameters are kept in extensions.
pub(crate) fn build_operation(source: SourceOperation) -> oa::Operation {
    let mut operation = oa::Operation {
        operation_id: source.operation_id,
        summary: source.summary,
        description: source.description,
        tags: source.tags,
        deprecated: source.deprecated,
        ..Default::default()
    };
    let mut body: Option<&SourceParam> = None;
    let mut form: Vec<&SourceParam> = Vec::new();
    for param in &source.params {
        let data = |param: &SourceParam| oa::ParameterData {
            name: param.name.clone(),
            description: param.description.clone(),
            required: param.required || param.location == ParamLocation::Path,
            deprecated: None,
            format: oa::ParameterSchemaOrContent::Schema(param.schema.clone()),
            example: None,
            examples: IndexMap::new(),
            explode: None,
            extensions: IndexMap::new(),
        };
        let converted = match param.location {
            ParamLocation::Query => oa::Parameter::Query {
                parameter_data: data(param),
                allow_reserved: false,
                style: oa::QueryStyle::Form,
                allow_empty_value: None,
            },
            ParamLocation::Header => oa::Parameter::Header {
                parameter_data: data(param),
                style: oa::HeaderStyle::Simple,
            },
            ParamLocation::Path => oa::Parameter::Path {
                parameter_data: data(param),
                style: oa::PathStyle::Simple,
            },
            ParamLocation::Cookie => oa::Parameter::Cookie {
                parameter_data: data(param),
                style: oa::CookieStyle::Form,
            },
            ParamLocation::Body => {
                body = Some(param);
                continue;
            }
            ParamLocation::FormData => {
                form.push(param);
                continue;
            }
        };
        operation.parameters.push(oa::ReferenceOr::Item(converted));
    }
    if body.is_some() || !form.is_empty() {
        operation.request_body = Some(oa::ReferenceOr::Item(request_body(
            body,
            &form,
            &source.consumes,
        )));
        let listed: Vec<Value> = body
            .into_iter()
            .chain(form)
            .map(|p| json!([location_name(p.location), p.name]))
            .collect();
        operation
            .extensions
            .insert(X_BODY_PARAMETERS.to_owned(), Value::Array(listed));
    }
    let responses = if source.responses.is_empty() {
        vec![SourceResponse {
            status: "default".to_owned(),
            description: "response".to_owned(),
            schema: None,
        }]
    } else {
        source.responses
    };
    for response in responses {
        let content = source
            .produces
            .iter()
            .map(|t| (t.clone(), media_type(response.schema.clone())))
            .collect();
        let converted = oa::ReferenceOr::Item(oa::Response {
            description: response.description,
            content,
            ..Default::default()
        });
        match status_code(&response.status) {
            Some(code) => {
                operation.responses.responses.insert(code, converted);
            }
            None => operation.responses.default = Some(converted),
        }
    }
    operation
        .extensions
        .insert(X_CONSUMES.to_owned(), json!(source.consumes));
    operation
        .extensions
        .insert(X_PRODUCES.to_owned(), json!(source.produces));
    operation.extensions.extend(source.extensions);
    operation
}

/// `"200"` → code, `"2XX"` → range, anything else (`"default"`) → `None`.
fn status_code(status: &str) -> Option<oa::StatusCode> {
    if let Ok(code) = status.parse::<u16>() {
        return Some(oa::StatusCode::Code(code));
    }
    match status.as_bytes() {
        [digit @ b'1'..=b'5', b'X' | b'x', b'X' | b'x'] => {
            Some(oa::StatusCode::Range(u16::from(digit - b'0')))
        }
        _ => None,
    }
}

pub(crate) fn location_name(location: ParamLocation) -> &'static str {
    match location {
        ParamLocation::Path => "path",
        ParamLocation::Query => "query",
        ParamLocation::Header => "header",
        ParamLocation::Cookie => "cookie",
        ParamLocation::Body => "body",
        ParamLocation::FormData => "formData",
    }
}

fn media_type(schema: Option<oa::ReferenceOr<oa::Schema>>) -> oa::MediaType {
    oa::MediaType {
        schema,
        ..Default::default()
    }
}

fn request_body(
    body: Option<&SourceParam>,
    form: &[&SourceParam],
    consumes: &[String],
) -> oa::RequestBody {
    let (schema, required, default_type) = match body {
        Some(body) => (body.schema.clone(), body.required, "application/json"),
        None => {
            let mut object = oa::ObjectType::default();
            for param in form {
                object
                    .properties
                    .insert(param.name.clone(), boxed(param.schema.clone()));
                if param.required {
                    object.required.push(param.name.clone());
                }
            }
            let schema = oa::Schema {
                schema_data: oa::SchemaData::default(),
                schema_kind: oa::SchemaKind::Type(oa::Type::Object(object)),
            };
            let required = form.iter().any(|p| p.required);
            (
                oa::ReferenceOr::Item(schema),
                required,
                "application/x-www-form-urlencoded",
            )
        }
    };
    let types = if consumes.is_empty() {
        vec![default_type.to_owned()]
    } else {
        consumes.to_vec()
    };
    oa::RequestBody {
        description: body.and_then(|b| b.description.clone()),
        content: types
            .into_iter()
            .map(|t| (t, media_type(Some(schema.clone()))))
            .collect(),
        required,
        extensions: IndexMap::new(),
    }
}

fn boxed(schema: oa::ReferenceOr<oa::Schema>) -> oa::ReferenceOr<Box<oa::Schema>> {
    match schema {
        oa::ReferenceOr::Item(schema) => oa::ReferenceOr::Item(Box::new(schema)),
        oa::ReferenceOr::Reference { reference } => oa::ReferenceOr::Reference { reference },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(location: ParamLocation, name: &str, required: bool) -> SourceParam {
        SourceParam {
            location,
            name: name.to_owned(),
            required,
            description: None,
            schema: any_schema(),
        }
    }

    #[test]
    fn header_parameters_merge_ignoring_case_others_do_not() {
        let mut params = vec![
            param(ParamLocation::Header, "X-Trace", false),
            param(ParamLocation::Query, "q", false),
        ];
        merge_param(&mut params, param(ParamLocation::Header, "x-trace", true));
        merge_param(&mut params, param(ParamLocation::Query, "Q", false));
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["q", "x-trace", "Q"]);
        assert!(params[1].required, "the later declaration wins");
    }

    #[test]
    fn form_parameters_become_an_object_body_with_a_form_default_type() {
        let operation = build_operation(SourceOperation {
            params: vec![
                param(ParamLocation::FormData, "a", true),
                param(ParamLocation::FormData, "b", false),
            ],
            ..Default::default()
        });
        let Some(oa::ReferenceOr::Item(body)) = operation.request_body else {
            panic!("no body")
        };
        assert_eq!(
            body.content.keys().collect::<Vec<_>>(),
            ["application/x-www-form-urlencoded"]
        );
        assert!(body.required);
        let schema = body.content[0]
            .schema
            .as_ref()
            .and_then(|s| s.as_item())
            .unwrap();
        let oa::SchemaKind::Type(oa::Type::Object(object)) = &schema.schema_kind else {
            panic!("{schema:?}")
        };
        assert_eq!(object.properties.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(object.required, ["a"]);
        assert_eq!(
            operation.extensions[X_BODY_PARAMETERS],
            json!([["formData", "a"], ["formData", "b"]])
        );
    }

    #[test]
    fn status_codes_ranges_and_default() {
        assert_eq!(status_code("404"), Some(oa::StatusCode::Code(404)));
        assert_eq!(status_code("2XX"), Some(oa::StatusCode::Range(2)));
        assert_eq!(status_code("default"), None);
        assert_eq!(status_code("6XX"), None);
    }

    #[test]
    fn an_operation_without_responses_gets_a_default_one_with_the_produced_types() {
        let operation = build_operation(SourceOperation {
            produces: vec!["application/json".to_owned()],
            ..Default::default()
        });
        let Some(oa::ReferenceOr::Item(default)) = &operation.responses.default else {
            panic!("no default response")
        };
        assert_eq!(
            default.content.keys().collect::<Vec<_>>(),
            ["application/json"]
        );
    }
}
