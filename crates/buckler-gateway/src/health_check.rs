//! Active health checks (SPEC §9 `health-check`): one task per HTTP upstream of a domain that
//! has them, sending `GET path` every `interval`. An upstream that fails
//! `unhealthy-threshold` checks in a row leaves selection until it passes `healthy-threshold`
//! in a row. Lambda upstreams are not probed.

use std::sync::Arc;

use buckler_config::HealthCheckConfig;
use buckler_policy::{HealthChange, HealthThresholds, HealthTracker};
use buckler_upstream::{empty_body, UpstreamPool};
use http::uri::PathAndQuery;
use http::{Method, Request, Uri};
use http_body_util::BodyExt;
use tokio::task::AbortHandle;

use crate::upstream::UpstreamHandle;

/// Starts probing `handle` when the domain has `health-check` and the upstream is reached over
/// HTTP (through the domain's pool); `None` otherwise. Aborting the task (health checks turned off, upstream removed)
/// gives the upstream back to selection.
pub(crate) fn spawn(
    client: &UpstreamPool,
    handle: &Arc<UpstreamHandle>,
    config: Option<&HealthCheckConfig>,
) -> Option<AbortHandle> {
    let config = config?.clone();
    handle.http_base.as_ref()?;
    Some(tokio::spawn(run(client.clone(), handle.clone(), config)).abort_handle())
}

/// Sets the upstream healthy again when the probe task ends, however it ends.
struct Verdict(Arc<UpstreamHandle>);

impl Drop for Verdict {
    fn drop(&mut self) {
        self.0.resilience.set_probe_healthy(true);
    }
}

async fn run(client: UpstreamPool, handle: Arc<UpstreamHandle>, config: HealthCheckConfig) {
    let verdict = Verdict(handle);
    let handle = &verdict.0;
    let tracker = HealthTracker::new(HealthThresholds {
        unhealthy: config.unhealthy_threshold,
        healthy: config.healthy_threshold,
    });
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let passed = probe(&client, handle, &config).await;
        handle.resilience.count_check(passed);
        match tracker.record(passed) {
            Some(HealthChange::BecameUnhealthy) => {
                tracing::warn!(
                    domain = handle.domain,
                    upstream = handle.identity(),
                    path = config.path,
                    "upstream failed its health checks: out of selection"
                );
            }
            Some(HealthChange::BecameHealthy) => {
                tracing::info!(
                    domain = handle.domain,
                    upstream = handle.identity(),
                    "upstream passes its health checks again: back in selection"
                );
            }
            None => {}
        }
        handle.resilience.set_probe_healthy(tracker.is_healthy());
    }
}

/// One check: a 2xx answer, its body read whole, within `timeout`.
async fn probe(client: &UpstreamPool, handle: &UpstreamHandle, config: &HealthCheckConfig) -> bool {
    let Some(base) = &handle.http_base else {
        return true;
    };
    let Ok(path) = PathAndQuery::try_from(config.path.as_str()) else {
        return false;
    };
    let mut request = Request::new(empty_body());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = Uri::from(path);
    if let Ok(host) = http::HeaderValue::from_str(base.authority.as_str()) {
        request.headers_mut().insert(http::header::HOST, host);
    }
    request.headers_mut().insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static("buckler-health-check"),
    );
    let exchange = async {
        let response = client
            .send_to(&base.scheme, &base.authority, request)
            .await
            .ok()?;
        let ok = response.status().is_success();
        response.into_body().collect().await.ok()?;
        Some(ok)
    };
    matches!(
        tokio::time::timeout(config.timeout, exchange).await,
        Ok(Some(true))
    )
}
