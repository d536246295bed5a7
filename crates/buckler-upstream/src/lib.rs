//! Calls out to upstreams: pooled HTTP clients (hyper-util's, one pool per set of
//! [`UpstreamClientSettings`], for `http` and `https`, HTTP/1.1, HTTP/2 by ALPN and h2c) shared by
//! every HTTP upstream, fetching of their API documents with a deadline and a size cap, and
//! Lambda invocation through `aws-sdk-lambda` with the JSON envelope.
//! This is the only crate that opens outbound connections.

mod body;
mod client;
mod fetch;
mod lambda;

pub use body::{empty_body, full_body, BoxError, ProxyBody};
pub use client::{
    HttpUpstreamClient, UpstreamBody, UpstreamClientSettings, UpstreamError, UpstreamPool,
    UpstreamProtocol,
};
pub use fetch::{FetchError, Fetched};
pub use lambda::{
    with_timeout, EnvelopeError, InvokeFailure, LambdaInvoker, LambdaTarget, RequestEnvelope,
    ResponseEnvelope, MAX_PAYLOAD_BYTES,
};
