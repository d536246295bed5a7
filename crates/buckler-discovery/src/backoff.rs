//! Retry pacing: exponential with jitter, so a fleet that lost etcd together does not
//! reconnect in lockstep.

use std::time::Duration;

/// Delays between retries: `initial`, doubling up to `max`, each within ±20 % at random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling to 2 s: an etcd back after an outage is followed again within about 2 s.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }
}

/// The delays of one run of failures.
#[derive(Debug)]
pub(crate) struct Delays {
    spec: Backoff,
    next: Duration,
}

impl Delays {
    pub(crate) fn new(spec: Backoff) -> Self {
        Delays {
            spec,
            next: spec.initial,
        }
    }

    /// The next delay, jittered; later ones grow.
    pub(crate) fn next(&mut self) -> Duration {
        let base = self.next.min(self.spec.max);
        self.next = (base * 2).min(self.spec.max).max(self.spec.initial);
        base.mul_f64(0.8 + 0.4 * fastrand::f64())
    }

    /// Back to `initial` after a success.
    pub(crate) fn reset(&mut self) {
        self.next = self.spec.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_within_the_jitter_and_reset() {
        let mut delays = Delays::new(Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(700),
        });
        let bases = [100, 200, 400, 700, 700];
        for base in bases {
            let delay = delays.next().as_secs_f64() * 1000.0;
            let base = f64::from(base);
            assert!(
                delay >= base * 0.8 - 1e-6 && delay <= base * 1.2 + 1e-6,
                "{delay} vs {base}"
            );
        }
        delays.reset();
        assert!(delays.next() <= Duration::from_millis(120));
    }
}
