//! A source's connection status, shared by its watches.

use std::time::SystemTime;

use tokio::sync::watch;

use crate::SourceStatus;

/// Owns the status sender; keeps `Stale`'s `since` across repeated failures.
#[derive(Debug)]
pub(crate) struct StatusCell {
    sender: watch::Sender<SourceStatus>,
}

impl StatusCell {
    pub(crate) fn new(initial: SourceStatus) -> Self {
        StatusCell {
            sender: watch::Sender::new(initial),
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<SourceStatus> {
        self.sender.subscribe()
    }

    pub(crate) fn live(&self) {
        self.sender.send_if_modified(|status| {
            let changed = *status != SourceStatus::Live;
            *status = SourceStatus::Live;
            changed
        });
    }

    /// Still without a first value.
    pub(crate) fn waiting(&self, reason: String) {
        self.sender.send_if_modified(|status| {
            let next = SourceStatus::Waiting { reason };
            let changed = *status != next;
            *status = next;
            changed
        });
    }

    /// Out of reach: `Waiting` if no value was had yet (`had_value` false), else `Stale` since
    /// the first failure of this run.
    pub(crate) fn failing(&self, reason: String, had_value: bool) {
        if !had_value {
            self.waiting(reason);
            return;
        }
        self.sender.send_if_modified(|status| {
            let since = match status {
                SourceStatus::Stale { since, .. } => *since,
                _ => SystemTime::now(),
            };
            let next = SourceStatus::Stale { reason, since };
            let changed = *status != next;
            *status = next;
            changed
        });
    }
}
