//! The request path, top to bottom:
//!
//! ```text
//! checks → local → domain → route → negotiate → middleware → pick → dispatch → observe
//! ```
//!
//! Every stage before `middleware` takes the request's head (`http::request::Parts`), not a
//! socket type, so each is unit-tested without sockets; each either hands the request on or
//! answers it with a [`GatewayError`]. `middleware` (a store round trip, a cache lookup) and
//! `dispatch` are the stages that await; the middleware's response side (cache store,
//! `RateLimit-*`) runs on the outcome before `observe`.

mod checks;
mod dispatch;
mod forward;
mod observe;
mod route;
mod select;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use buckler_upstream::ProxyBody;
use http::header::HeaderValue;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;

use crate::control::Control;
use crate::error::GatewayError;
use crate::headers;
use crate::local;
use crate::middleware::{self, RequestInfo};
use crate::table::DomainTable;

pub use checks::MAX_HEADER_BYTES;
use dispatch::Forward;
use route::{Endpoint, LocalEndpoint};

/// What the gateway knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    /// `"http"` or `"https"`, for `X-Forwarded-Proto`.
    pub scheme: &'static str,
}

/// Handles one request end to end. Never fails: every failure becomes a response.
///
/// Every stage up to the upstream exchange runs when this is called; the future it returns
/// holds only what the exchange needs (a smaller future, copied less at every move).
pub fn handle(
    control: Arc<Control>,
    connection: ConnectionInfo,
    request: Request<Incoming>,
) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
    let started = Instant::now();
    let (mut parts, body) = request.into_parts();
    let request_id = headers::request_id(&parts.headers);
    let mut observed = observe::Observed::new(&parts, request_id.clone(), started);
    let has_body = !body.is_end_stream();
    let decided = decide(
        &control,
        connection,
        &mut parts,
        has_body,
        &request_id,
        &mut observed,
    );
    async move {
        let outcome = match decided {
            Ok(Decided::Answer(response)) => Ok(response),
            Ok(Decided::Forward(forward, client_address)) => {
                let body = observed.client_body(body);
                proxy(
                    &control,
                    forward,
                    &client_address,
                    body,
                    started,
                    &mut observed,
                )
                .await
            }
            Err(failure) => Err(failure),
        };
        observed.finish(outcome)
    }
}

/// middleware → pick → dispatch, then the middleware's response side on the outcome.
async fn proxy(
    control: &Control,
    mut forward: Forward,
    client_address: &str,
    body: observe::ClientBody,
    started: Instant,
    observed: &mut observe::Observed,
) -> Result<Response<ProxyBody>, Failure> {
    let group = forward.group.clone();
    if group.middleware.is_empty() {
        return forward.dispatch(control, body, started).await;
    }
    let domain = forward.domain.clone();
    let info = RequestInfo {
        client_address,
        request_timeout: domain.settings.request_timeout,
    };
    let mut run = group.middleware.run(&mut forward.outbound, &info).await;
    observed.middleware(&mut run);
    let outcome = match run.take_answer() {
        Some(answer) => answer.map_err(|error| (error, Some(domain))),
        None => forward.dispatch(control, body, started).await,
    };
    run.finish(outcome)
}

/// A failure, with the domain it happened in (for the domain's own request counts).
type Failure = (GatewayError, Option<Arc<DomainTable>>);

/// What the stages before the upstream exchange decided.
enum Decided {
    /// Answered by the gateway itself (a local endpoint, `OPTIONS`).
    Answer(Response<ProxyBody>),
    /// To be sent to an upstream of this group, with the `Client-Address` (empty when the
    /// domain's middleware and listeners do not need it).
    Forward(Forward, String),
}

/// Every stage before the upstream exchange, in order, synchronously.
fn decide(
    control: &Arc<Control>,
    connection: ConnectionInfo,
    parts: &mut Parts,
    has_body: bool,
    request_id: &HeaderValue,
    observed: &mut observe::Observed,
) -> Result<Decided, Failure> {
    checks::check(parts).map_err(|e| (e, None))?;
    checks::settle_host(parts).map_err(|e| (e, None))?;
    let table = control.table_guard();
    if let Some(local) = route::local_endpoint(parts, &table) {
        let answer = match local {
            LocalEndpoint::Healthcheck => local::healthcheck(control, &table),
            LocalEndpoint::Metrics => local::metrics(control, &table),
            LocalEndpoint::Spec(domain) => local::spec(&domain, table.generation),
        };
        return Ok(Decided::Answer(answer));
    }
    let domain = route::domain(&table, parts).map_err(|e| (e, None))?;
    let trace_id = middleware::traceparent(&mut parts.headers);
    let client_address = if domain.middleware.needs_client_address() {
        headers::client_address(
            connection.peer.ip(),
            &parts.headers,
            table.config.trust_proxies,
        )
    } else {
        String::new()
    };
    observed.in_domain(
        domain.middleware.listeners(),
        parts,
        &client_address,
        trace_id,
    );
    let fail = |error: GatewayError| (error, Some(domain.clone()));
    let (group, routed_path) = match route::endpoint(&domain, parts).map_err(fail)? {
        Endpoint::Group { group, stripped } => (group, stripped),
        Endpoint::Options { allow } => return Ok(Decided::Answer(route::options_response(&allow))),
    };
    observed.routed(&group);
    let selection = route::negotiate(&group, parts, has_body).map_err(fail)?;
    let max_body = table.config.max_request_body;
    checks::declared_length_within(parts, has_body, max_body).map_err(fail)?;
    let outbound = forward::outbound(
        parts,
        connection,
        request_id,
        routed_path.as_deref(),
        &table.config,
    );
    Ok(Decided::Forward(
        Forward {
            domain,
            group,
            selection,
            outbound,
            has_body,
            max_body,
        },
        client_address,
    ))
}

/// A request head for the stages' unit tests.
#[cfg(test)]
pub(crate) fn test_parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .body(())
        .expect("a valid test request")
        .into_parts()
        .0
}
