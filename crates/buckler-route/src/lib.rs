//! Routing for Buckler: path templates as Swagger documents write them, the specificity order
//! that decides between overlapping templates, the routing table (a trie, not a linear scan),
//! and content negotiation inside an endpoint group. Pure: no I/O.

mod negotiate;
mod shadow;
mod table;
mod template;

pub use negotiate::{negotiate, MediaType, Negotiable, NegotiationError, Selection};
pub use shadow::shadowed_templates;
pub use table::{RouteMatch, RoutingTable, RoutingTableBuilder};
pub use template::{PathTemplate, QueryPredicate, Segment, TemplateError};
