//! Calls out to upstreams: one pooled client (Buckler's own HTTP/1.1 pool for plain HTTP,
//! hyper-util's for TLS with HTTP/1.1 or HTTP/2) shared by every
//! HTTP upstream, fetching of their API documents with a deadline and a size cap, and Lambda
//! invocation through `aws-sdk-lambda` with the JSON envelope.
//! This is the only crate that opens outbound connections. [`SendStream`], the socket wrapper
//! both sides of the proxy write through, lives here too.

mod body;
mod client;
mod fetch;
mod http1_pool;
mod lambda;
mod send_stream;

pub use body::{empty_body, full_body, BoxError, ProxyBody};
pub use client::{HttpUpstreamClient, UpstreamBody, UpstreamError};
pub use fetch::{FetchError, Fetched};
pub use http1_pool::PooledBody;
pub use lambda::{
    with_timeout, EnvelopeError, InvokeFailure, LambdaInvoker, LambdaTarget, RequestEnvelope,
    ResponseEnvelope, MAX_PAYLOAD_BYTES,
};
pub use send_stream::SendStream;
