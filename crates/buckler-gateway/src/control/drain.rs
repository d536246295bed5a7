//! Draining a removed upstream: wait until it has nothing in flight (or its drain timeout),
//! then drop it from the domain.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Control;
use crate::upstream::UpstreamHandle;

/// How often a draining upstream's in-flight count is looked at.
const POLL: Duration = Duration::from_millis(25);

/// Waits until `handle` has nothing in flight, or `timeout`, then drops it (if it was not
/// revived meanwhile).
pub(super) async fn drain(control: Weak<Control>, handle: Arc<UpstreamHandle>, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    // A request that picked it from the previous table may still be about to begin: wait for a
    // table without it to be out, after which no new request can pick it.
    if let Some(strong) = control.upgrade() {
        strong.publish_coalesced().await;
    }
    while handle.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    if let Some(control) = control.upgrade() {
        control.finish_drain(&handle);
    }
}
