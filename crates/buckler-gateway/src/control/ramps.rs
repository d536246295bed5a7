//! The ramp driver: publishes a table at every ramp step, and sleeps while nothing moves.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::Control;

/// Runs until the control plane is dropped. Holds no strong reference between steps, so the
/// control plane can be dropped while it sleeps.
pub(super) async fn drive(control: Weak<Control>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(control) = control.upgrade() else {
                return;
            };
            control.next_ramp_step().map(|at| control.instant_at(at))
        };
        let changed = wake.notified();
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {
                        let Some(control) = control.upgrade() else { return };
                        control.publish_coalesced().await;
                    }
                    _ = changed => {}
                }
            }
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = changed => {}
                }
            }
        }
    }
}
