//! Linear weight ramps as a pure function of time.
//!
//! A weight change for a known upstream moves from its current effective weight to the new
//! target in `step_count` equal steps, one every `step_duration`, the first one step after the
//! change. A new target during a ramp starts a fresh ramp from the in-progress value. Time is
//! passed in (a `Duration` since any fixed origin), so tests drive it without sleeping.

use std::time::Duration;

/// The schedule shared by every ramp of a domain (`upstream-weighting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RampSchedule {
    /// Number of equal steps; 0 is treated as 1 (a jump after one step).
    pub step_count: u32,
    /// Time between steps; zero means every change applies at once.
    pub step_duration: Duration,
}

/// One upstream's weight over time: where it started, where it is going, and when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightRamp {
    from: f64,
    target: f64,
    started_at: Duration,
    schedule: RampSchedule,
}

impl WeightRamp {
    /// A weight that is simply `weight` (a new upstream gets its weight at once).
    pub fn fixed(weight: f64, schedule: RampSchedule) -> Self {
        WeightRamp {
            from: weight,
            target: weight,
            started_at: Duration::ZERO,
            schedule,
        }
    }

    /// A ramp from `from` to `target` that started at `started_at` (which may lie before
    /// `now`: steps already due count as done, so a ramp begun elsewhere is joined where it
    /// stands). `from == target` is simply that weight. Used to move a fleet's instances in
    /// step: each anchors the ramp to the change's recorded time and starting weights.
    pub fn starting(from: f64, target: f64, started_at: Duration, schedule: RampSchedule) -> Self {
        WeightRamp {
            from,
            target,
            started_at,
            schedule,
        }
    }

    /// The target this ramp moves to.
    pub fn target(&self) -> f64 {
        self.target
    }

    /// Completed steps at `now` (0 ..= step_count).
    fn steps_done(&self, now: Duration) -> u32 {
        let steps = self.schedule.step_count.max(1);
        if self.schedule.step_duration.is_zero() {
            return steps;
        }
        let elapsed = now.saturating_sub(self.started_at);
        let done = elapsed.as_nanos() / self.schedule.step_duration.as_nanos();
        u32::try_from(done).unwrap_or(u32::MAX).min(steps)
    }

    /// The effective weight at `now`: `from + (target - from) · k / step_count` after `k`
    /// completed steps, exactly `target` once all steps are done.
    pub fn effective(&self, now: Duration) -> f64 {
        let steps = self.schedule.step_count.max(1);
        let done = self.steps_done(now);
        if done >= steps {
            return self.target;
        }
        self.from + (self.target - self.from) * f64::from(done) / f64::from(steps)
    }

    /// True while steps remain at `now`.
    pub fn is_moving(&self, now: Duration) -> bool {
        self.from != self.target && self.steps_done(now) < self.schedule.step_count.max(1)
    }

    /// When the next step happens, if any remain at `now`.
    pub fn next_step_at(&self, now: Duration) -> Option<Duration> {
        if !self.is_moving(now) {
            return None;
        }
        let next = self.steps_done(now) + 1;
        Some(self.started_at + self.schedule.step_duration * next)
    }

    /// Retargets at `now`. The same target again changes nothing (an in-progress ramp keeps
    /// going); a new target starts a fresh ramp from the current effective weight.
    pub fn retarget(&mut self, target: f64, now: Duration) {
        if target == self.target {
            return;
        }
        self.from = self.effective(now);
        self.target = target;
        self.started_at = now;
    }

    /// Drops to `weight` at once (removal: effective weight 0 immediately).
    pub fn jump(&mut self, weight: f64) {
        self.from = weight;
        self.target = weight;
    }

    /// Replaces the schedule (a reload changed `upstream-weighting`), keeping the current
    /// effective weight as the new starting point.
    pub fn reschedule(&mut self, schedule: RampSchedule, now: Duration) {
        if schedule == self.schedule {
            return;
        }
        self.from = self.effective(now);
        self.started_at = now;
        self.schedule = schedule;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_BY_ONE: RampSchedule = RampSchedule {
        step_count: 10,
        step_duration: Duration::from_secs(1),
    };

    fn at(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn zero_to_ten_in_ten_steps() {
        let mut ramp = WeightRamp::fixed(0.0, TEN_BY_ONE);
        ramp.retarget(10.0, at(100.0));
        assert_eq!(ramp.effective(at(100.0)), 0.0);
        assert_eq!(
            ramp.effective(at(100.999)),
            0.0,
            "the first step comes one step after"
        );
        for k in 1..=10 {
            assert_eq!(ramp.effective(at(100.0 + k as f64)), k as f64, "step {k}");
        }
        assert_eq!(ramp.effective(at(500.0)), 10.0);
        assert!(!ramp.is_moving(at(110.0)));
        assert_eq!(ramp.next_step_at(at(110.0)), None);
    }

    #[test]
    fn zero_to_five_moves_by_halves() {
        let mut ramp = WeightRamp::fixed(0.0, TEN_BY_ONE);
        ramp.retarget(5.0, at(0.0));
        let seen: Vec<f64> = (0..=10).map(|k| ramp.effective(at(k as f64))).collect();
        assert_eq!(
            seen,
            vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]
        );
    }

    #[test]
    fn retarget_mid_ramp_starts_from_the_in_progress_value() {
        let mut ramp = WeightRamp::fixed(100.0, TEN_BY_ONE);
        ramp.retarget(0.0, at(0.0));
        assert_eq!(ramp.effective(at(4.0)), 60.0);
        ramp.retarget(20.0, at(4.5));
        assert_eq!(ramp.effective(at(4.5)), 60.0);
        // (20 - 60) / 10 = -4 per step, a full ten steps again.
        assert_eq!(ramp.effective(at(5.5)), 56.0);
        assert_eq!(ramp.effective(at(14.5)), 20.0);
    }

    #[test]
    fn same_target_again_is_a_no_op() {
        let mut ramp = WeightRamp::fixed(0.0, TEN_BY_ONE);
        ramp.retarget(10.0, at(0.0));
        ramp.retarget(10.0, at(5.0));
        assert_eq!(ramp.effective(at(6.0)), 6.0, "not restarted");
    }

    #[test]
    fn parallel_ramps_are_independent() {
        let mut blue = WeightRamp::fixed(100.0, TEN_BY_ONE);
        let mut green = WeightRamp::fixed(0.0, TEN_BY_ONE);
        blue.retarget(0.0, at(0.0));
        green.retarget(100.0, at(0.0));
        for k in 0..=10 {
            let now = at(k as f64);
            assert_eq!(blue.effective(now) + green.effective(now), 100.0);
            assert_eq!(green.effective(now), 10.0 * k as f64);
        }
    }

    #[test]
    fn a_ramp_started_earlier_is_joined_where_it_stands() {
        let ramp = WeightRamp::starting(100.0, 0.0, at(10.0), TEN_BY_ONE);
        assert_eq!(ramp.effective(at(10.0)), 100.0);
        assert_eq!(ramp.effective(at(13.5)), 70.0, "three steps done");
        assert_eq!(ramp.next_step_at(at(13.5)), Some(at(14.0)));
        assert_eq!(ramp.effective(at(25.0)), 0.0);
        assert!(!ramp.is_moving(at(20.0)));
    }

    #[test]
    fn two_instances_anchored_alike_agree_whenever_each_joined() {
        // One saw the change at once, the other 3.7 s later: both anchor at 0.
        let early = WeightRamp::starting(40.0, 90.0, at(0.0), TEN_BY_ONE);
        let late = WeightRamp::starting(40.0, 90.0, at(0.0), TEN_BY_ONE);
        for tenth in 37..150 {
            let now = at(f64::from(tenth) / 10.0);
            assert_eq!(early.effective(now), late.effective(now));
        }
    }

    #[test]
    fn starting_at_the_target_does_not_move() {
        let ramp = WeightRamp::starting(5.0, 5.0, at(3.0), TEN_BY_ONE);
        assert_eq!(ramp.effective(at(3.0)), 5.0);
        assert!(!ramp.is_moving(at(3.0)));
        assert_eq!(ramp.next_step_at(at(3.0)), None);
    }

    #[test]
    fn idle_time_changes_nothing() {
        let ramp = WeightRamp::fixed(7.0, TEN_BY_ONE);
        for k in 0..1_000 {
            assert_eq!(ramp.effective(at(k as f64)), 7.0);
            assert_eq!(ramp.next_step_at(at(k as f64)), None);
        }
    }

    #[test]
    fn next_step_is_on_the_schedule() {
        let mut ramp = WeightRamp::fixed(0.0, TEN_BY_ONE);
        ramp.retarget(10.0, at(3.0));
        assert_eq!(ramp.next_step_at(at(3.0)), Some(at(4.0)));
        assert_eq!(ramp.next_step_at(at(4.2)), Some(at(5.0)));
        assert_eq!(ramp.next_step_at(at(12.9)), Some(at(13.0)));
    }

    #[test]
    fn zero_duration_applies_at_once_and_jump_is_immediate() {
        let instant = RampSchedule {
            step_count: 10,
            step_duration: Duration::ZERO,
        };
        let mut ramp = WeightRamp::fixed(1.0, instant);
        ramp.retarget(9.0, at(1.0));
        assert_eq!(ramp.effective(at(1.0)), 9.0);
        let mut removed = WeightRamp::fixed(50.0, TEN_BY_ONE);
        removed.retarget(80.0, at(0.0));
        removed.jump(0.0);
        assert_eq!(removed.effective(at(0.5)), 0.0);
        assert_eq!(removed.effective(at(50.0)), 0.0);
    }
}
