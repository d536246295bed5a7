//! Active health-check verdicts (SPEC §9 `health-check`): an upstream that failed
//! `unhealthy-threshold` checks in a row leaves selection until it passes `healthy-threshold`
//! checks in a row.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The thresholds of a domain's `health-check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthThresholds {
    /// Failed checks in a row that make a healthy upstream unhealthy (default 3; 0 is taken
    /// as 1).
    pub unhealthy: u32,
    /// Passed checks in a row that make an unhealthy upstream healthy again (default 2; 0 is
    /// taken as 1).
    pub healthy: u32,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            unhealthy: 3,
            healthy: 2,
        }
    }
}

/// A change of verdict, returned by [`HealthTracker::record`] so the caller can log it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    /// The upstream just became unhealthy.
    BecameUnhealthy,
    /// The upstream just became healthy again.
    BecameHealthy,
}

#[derive(Debug, Default)]
struct Streak {
    passed: u32,
    failed: u32,
}

/// Counts consecutive check results of one upstream. Starts healthy, so turning health checks
/// on (or a restart) takes no upstream out of selection before it has failed its checks.
///
/// One prober writes ([`record`](Self::record), a small lock taken once per check interval);
/// the request path only reads [`is_healthy`](Self::is_healthy), one atomic load.
#[derive(Debug)]
pub struct HealthTracker {
    thresholds: HealthThresholds,
    healthy: AtomicBool,
    streak: Mutex<Streak>,
}

impl HealthTracker {
    /// A healthy tracker.
    pub fn new(thresholds: HealthThresholds) -> Self {
        HealthTracker {
            thresholds: HealthThresholds {
                unhealthy: thresholds.unhealthy.max(1),
                healthy: thresholds.healthy.max(1),
            },
            healthy: AtomicBool::new(true),
            streak: Mutex::new(Streak::default()),
        }
    }

    /// Whether the upstream may be selected (as far as health checks go).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Records one check: `passed` is a 2xx answer within the timeout; anything else (connect
    /// error, timeout, other status) is a failure. Returns the change of verdict, if any.
    pub fn record(&self, passed: bool) -> Option<HealthChange> {
        let mut streak = self
            .streak
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if passed {
            streak.failed = 0;
            streak.passed = streak.passed.saturating_add(1);
        } else {
            streak.passed = 0;
            streak.failed = streak.failed.saturating_add(1);
        }
        let healthy = self.healthy.load(Ordering::Acquire);
        if healthy && streak.failed >= self.thresholds.unhealthy {
            self.healthy.store(false, Ordering::Release);
            return Some(HealthChange::BecameUnhealthy);
        }
        if !healthy && streak.passed >= self.thresholds.healthy {
            self.healthy.store(true, Ordering::Release);
            return Some(HealthChange::BecameHealthy);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_healthy_and_leaves_after_the_unhealthy_threshold_in_a_row() {
        let h = HealthTracker::new(HealthThresholds::default());
        assert!(h.is_healthy());
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(true), None, "a pass breaks the streak");
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert!(h.is_healthy());
        assert_eq!(h.record(false), Some(HealthChange::BecameUnhealthy));
        assert!(!h.is_healthy());
        assert_eq!(h.record(false), None, "no second change");
    }

    #[test]
    fn returns_after_the_healthy_threshold_in_a_row() {
        let h = HealthTracker::new(HealthThresholds::default());
        for _ in 0..3 {
            h.record(false);
        }
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(false), None, "a failure breaks the streak");
        assert_eq!(h.record(true), None);
        assert!(!h.is_healthy());
        assert_eq!(h.record(true), Some(HealthChange::BecameHealthy));
        assert!(h.is_healthy());
        assert_eq!(h.record(true), None);
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let h = HealthTracker::new(HealthThresholds {
            unhealthy: 0,
            healthy: 0,
        });
        assert_eq!(h.record(false), Some(HealthChange::BecameUnhealthy));
        assert_eq!(h.record(true), Some(HealthChange::BecameHealthy));
    }
}
