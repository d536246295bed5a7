//! Upstream API documents — Swagger 2.0, OpenAPI 3.0/3.1 and Swagger 1.2, JSON or YAML — parsed
//! into one normalised model, `openapiv3::OpenAPI`, and the routable endpoints extracted from
//! it. Routing and the merged `/spec` are built only from the model. Pure: bytes in, values
//! out, no I/O.
//!
//! # How Swagger semantics survive the trip to OpenAPI 3
//!
//! OpenAPI 3 can only say what an operation consumes through a request body, but a Swagger
//! operation may declare `consumes` without any `body`/`formData` parameter, and routing
//! (content negotiation, `415`) must still honour it. So the Swagger converters store, on every
//! operation, the effective lists as extensions:
//!
//! - [`X_CONSUMES`] / [`X_PRODUCES`]: the effective media types (operation-level when present,
//!   even when `[]`, else document-level), normalised; [`endpoints`] prefers them over the
//!   request body and response content.
//! - [`X_BODY_PARAMETERS`]: `[location, name]` of the `body`/`formData` parameters, which become
//!   the request body (body schema, or an object schema of the form fields, under each consumed
//!   type, or `application/json` / `application/x-www-form-urlencoded` when none is declared).
//!
//! Produced types become the content keys of every response. `basePath` becomes the only
//! server. Extensions survive serialisation, so a model written out and read back yields the
//! same endpoints. [`parse_openapi3`] removes any `x-buckler-*` keys an upstream sent, so only
//! the converters set them. Consumers rendering `/spec` may strip them.

#[cfg(feature = "corpus")]
pub mod corpus;
mod endpoints;
mod error;
mod json;
mod limits;
mod media;
mod model;
mod openapi3;
mod pointer;
mod schema;
mod swagger1;
mod swagger2;

pub use endpoints::{endpoints, service_info, Endpoint, ParamLocation, Parameter};
pub use error::DocsError;
pub use limits::Limits;
pub use openapi3::{parse_openapi3, parse_openapi3_as};
pub use swagger1::{parse_swagger1, swagger1_listing};
pub use swagger2::{parse_swagger2, parse_swagger2_as};

/// How a document's bytes are read. Every parser accepts both; [`DocFormat::sniff`] decides
/// when no `Content-Type` names one ([`DocFormat::from_content_type`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocFormat {
    /// RFC 8259 JSON.
    Json,
    /// YAML 1.2 (core schema), one document; anchors and aliases within budget.
    Yaml,
}

/// Operation extension: the effective consumed media types (a JSON array of strings).
pub const X_CONSUMES: &str = "x-buckler-consumes";
/// Operation extension: the effective produced media types (a JSON array of strings).
pub const X_PRODUCES: &str = "x-buckler-produces";
/// Operation extension: `[location, name]` pairs of body and form parameters.
pub const X_BODY_PARAMETERS: &str = "x-buckler-body-parameters";
/// Operation extension (key matched case-insensitively): middleware ids to skip.
pub const X_DISABLED_MIDDLEWARE: &str = "x-disabled-middleware";
/// Operation extension (key matched case-insensitively): listener ids not to notify.
pub const X_DISABLED_LISTENERS: &str = "x-disabled-listeners";
