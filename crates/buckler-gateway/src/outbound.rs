//! The request as it goes to an upstream, minus its body and its upstream: built once by the
//! pipeline, reused by a retry, read by the Lambda adapter.

use buckler_upstream::ProxyBody;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Uri, Version};

/// Everything of the outbound request but its body and upstream.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    pub(crate) method: Method,
    pub(crate) path_and_query: PathAndQuery,
    pub(crate) headers: HeaderMap,
}

impl Outbound {
    /// The request for one attempt, in origin form (path and query): the upstream client adds
    /// what its scheme needs (`Host` if missing, an absolute URI for `https`).
    pub(crate) fn to_request(&self, body: ProxyBody) -> Request<ProxyBody> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = Uri::from(self.path_and_query.clone());
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = self.headers.clone();
        request
    }
}
