//! Upstream API documents — Swagger 2.0, OpenAPI 3.0/3.1 and Swagger 1.2 — parsed into one
//! normalised model (`openapiv3::OpenAPI`), and the routable endpoints extracted from it.
//! Routing and the merged spec are built only from the model. Pure: bytes in, values out.
//!
//! Swagger 2 semantics the model keeps exactly: the effective `consumes`/`produces` of every
//! operation (operation-level overriding root-level) are stored as the operation extensions
//! `x-buckler-consumes` / `x-buckler-produces`, because OpenAPI 3 can only say "consumes" when
//! an operation has a request body; `body`/`formData` parameters become the request body and
//! are listed in `x-buckler-body-parameters`.

mod endpoints;
mod error;
mod limits;
mod openapi3;
mod swagger1;
mod swagger2;

pub use endpoints::{endpoints, service_info, Endpoint, ParamLocation, Parameter};
pub use error::DocsError;
pub use limits::Limits;
pub use openapi3::parse_openapi3;
pub use swagger1::{parse_swagger1, swagger1_listing};
pub use swagger2::parse_swagger2;

/// Extension carrying an operation's effective consumed media types.
pub const X_CONSUMES: &str = "x-buckler-consumes";
/// Extension carrying an operation's effective produced media types.
pub const X_PRODUCES: &str = "x-buckler-produces";
/// Extension listing `[location, name]` of body and form parameters.
pub const X_BODY_PARAMETERS: &str = "x-buckler-body-parameters";
