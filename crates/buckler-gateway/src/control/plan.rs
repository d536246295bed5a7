//! The diff at the heart of every upstream change, as a pure function: from the set a domain
//! tracks now, the list it should have, and the ramp clock's `now`, to a [`Plan`] of what
//! becomes of each upstream and its weight ramp. It starts nothing and touches no handle; the
//! control plane executes plans (`control::Control::execute`).
//!
//! A change can carry an [`Anchor`]: the moment its ramps started and the weights they start
//! from, as recorded by whoever made it (SPEC §11). Every instance of a fleet plans with the
//! same anchor, so their ramps move in step whenever each one saw the change.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use buckler_balance::{RampSchedule, WeightRamp};
use buckler_config::{ServiceType, UpstreamSpec};

use super::UpstreamDiff;

/// Where the ramps a change starts begin.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Anchor<'a> {
    /// Ramp-clock time the change's ramps start at (it may lie before `now`: steps already
    /// due count as done); `None`: `now`.
    pub(crate) started_at: Option<Duration>,
    /// Effective weights by identity the ramps start from. A changed upstream missing here
    /// starts from its own effective weight at `now`; a new upstream listed here joins the
    /// ramp it is in elsewhere (an instance started mid-ramp), one not listed gets its weight
    /// at once.
    pub(crate) from: Option<&'a BTreeMap<String, f64>>,
}

impl Anchor<'_> {
    fn start_weight(&self, identity: &str) -> Option<f64> {
        self.from
            .and_then(|from| from.get(identity))
            .copied()
            .filter(|w| w.is_finite() && *w >= 0.0)
    }
}

/// One upstream a domain tracks now, as the diff sees it.
#[derive(Debug, Clone)]
pub(crate) struct Current<'a> {
    pub(crate) identity: &'a str,
    pub(crate) service_type: ServiceType,
    pub(crate) draining: bool,
    pub(crate) target_weight: u32,
    pub(crate) ramp: WeightRamp,
}

/// What becomes of one upstream. `index` points into the `current` slice the plan was made
/// from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// New, or the same location under another service type (then `replaces` is the old one,
    /// which stops at once): serves with its configured weight as soon as its docs load.
    Add {
        spec: UpstreamSpec,
        ramp: WeightRamp,
        replaces: Option<usize>,
    },
    /// Wanted with the target it has: nothing changes.
    Keep { index: usize },
    /// Wanted with a new target: a fresh ramp from where its effective weight is now.
    Retarget {
        index: usize,
        weight: u32,
        ramp: WeightRamp,
    },
    /// Draining and wanted again: serves again at once, at its new weight (Shield lost it).
    Revive {
        index: usize,
        weight: u32,
        ramp: WeightRamp,
    },
    /// No longer wanted: weight 0 at once, then drains.
    Drain { index: usize, ramp: WeightRamp },
    /// Draining already, and still not wanted: stays listed until its drain ends.
    StillDraining { index: usize },
}

/// The steps in listing order: the wanted upstreams in the order given, then the ones no
/// longer wanted in their old order.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Plan {
    pub(crate) steps: Vec<Step>,
}

/// Plans the change from `current` to `wanted` at ramp-clock time `now`, ramps anchored at
/// `anchor` (`Anchor::default()`: at `now`, from each upstream's own effective weight; the
/// anchor's time is capped at `now`). Identities are unique
/// in a validated list; should one repeat, its first occurrence wins and later ones are added
/// as new upstreams (which validation prevents from happening).
///
/// Matched by hash, not by scanning: a `PUT` of 1,000 upstreams made n² identity comparisons.
pub(crate) fn plan(
    current: &[Current<'_>],
    wanted: Vec<UpstreamSpec>,
    schedule: RampSchedule,
    now: Duration,
    anchor: Anchor<'_>,
) -> Plan {
    let started_at = anchor.started_at.map_or(now, |at| at.min(now));
    let index: HashMap<&str, usize> = current
        .iter()
        .enumerate()
        .map(|(i, upstream)| (upstream.identity, i))
        .collect();
    let mut claimed = vec![false; current.len()];
    let mut steps = Vec::with_capacity(wanted.len() + current.len());
    for spec in wanted {
        let weight = f64::from(spec.weight);
        let existing = index
            .get(spec.identity())
            .copied()
            .filter(|&i| !std::mem::replace(&mut claimed[i], true));
        let step = match existing {
            Some(i) if current[i].service_type == spec.service_type => {
                let old = &current[i];
                if old.draining {
                    Step::Revive {
                        index: i,
                        weight: spec.weight,
                        ramp: WeightRamp::fixed(weight, schedule),
                    }
                } else if old.target_weight == spec.weight {
                    Step::Keep { index: i }
                } else {
                    let from = anchor
                        .start_weight(spec.identity())
                        .unwrap_or_else(|| old.ramp.effective(now));
                    let ramp = WeightRamp::starting(from, weight, started_at, schedule);
                    Step::Retarget {
                        index: i,
                        weight: spec.weight,
                        ramp,
                    }
                }
            }
            replaces => {
                // Known elsewhere in the fleet and ramping there: join that ramp.
                let ramp = match anchor.start_weight(spec.identity()) {
                    Some(from) if replaces.is_none() => {
                        WeightRamp::starting(from, weight, started_at, schedule)
                    }
                    _ => WeightRamp::fixed(weight, schedule),
                };
                Step::Add {
                    ramp,
                    spec,
                    replaces,
                }
            }
        };
        steps.push(step);
    }
    for (i, old) in current.iter().enumerate() {
        if claimed[i] {
            continue;
        }
        steps.push(if old.draining {
            Step::StillDraining { index: i }
        } else {
            let mut ramp = old.ramp;
            ramp.jump(0.0);
            Step::Drain { index: i, ramp }
        });
    }
    Plan { steps }
}

impl Plan {
    /// What the plan does, by identity, for the admin API's answer and the log.
    pub(crate) fn summary(&self, current: &[Current<'_>]) -> UpstreamDiff {
        let mut diff = UpstreamDiff::default();
        let name = |i: &usize| current[*i].identity.to_owned();
        for step in &self.steps {
            match step {
                Step::Add { spec, .. } => diff.added.push(spec.identity().to_owned()),
                Step::Keep { index } => diff.unchanged.push(name(index)),
                Step::Retarget { index, .. } => diff.reweighted.push(name(index)),
                Step::Revive { index, .. } => diff.revived.push(name(index)),
                Step::Drain { index, .. } => diff.removed.push(name(index)),
                Step::StillDraining { .. } => {}
            }
        }
        diff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: RampSchedule = RampSchedule {
        step_count: 4,
        step_duration: Duration::from_secs(1),
    };

    fn spec(kind: &str, location: &str, weight: u32) -> UpstreamSpec {
        let body = format!(
            r#"[{{"serviceType": "{kind}", "serviceLocation": "{location}", "weight": {weight}}}]"#
        );
        buckler_config::parse_upstreams(&body, "test", &Default::default())
            .unwrap()
            .remove(0)
    }

    fn current<'a>(identity: &'a str, weight: u32, draining: bool) -> Current<'a> {
        Current {
            identity,
            service_type: ServiceType::Swagger2,
            draining,
            target_weight: weight,
            ramp: WeightRamp::fixed(if draining { 0.0 } else { f64::from(weight) }, SCHEDULE),
        }
    }

    const A: &str = "http://127.0.0.1:1";
    const B: &str = "http://127.0.0.1:2";
    const C: &str = "http://127.0.0.1:3";

    #[test]
    fn an_empty_domain_adds_everything_at_full_weight() {
        let plan = plan(
            &[],
            vec![spec("swagger2", A, 3)],
            SCHEDULE,
            Duration::ZERO,
            Anchor::default(),
        );
        let [Step::Add { ramp, replaces, .. }] = plan.steps.as_slice() else {
            panic!("{plan:?}")
        };
        assert_eq!(*replaces, None);
        assert_eq!(ramp.effective(Duration::ZERO), 3.0);
    }

    #[test]
    fn a_new_target_ramps_from_the_current_effective_weight() {
        let now = Duration::from_secs(10);
        let current = [current(A, 4, false)];
        let plan = plan(
            &current,
            vec![spec("swagger2", A, 0)],
            SCHEDULE,
            now,
            Anchor::default(),
        );
        let [Step::Retarget { weight, ramp, .. }] = plan.steps.as_slice() else {
            panic!("{plan:?}")
        };
        assert_eq!(*weight, 0);
        assert_eq!(
            ramp.effective(now),
            4.0,
            "nothing moves before the first step"
        );
        assert_eq!(ramp.effective(now + Duration::from_secs(1)), 3.0);
        assert_eq!(ramp.effective(now + Duration::from_secs(4)), 0.0);
    }

    #[test]
    fn the_same_target_changes_nothing() {
        let current = [current(A, 4, false)];
        let plan = plan(
            &current,
            vec![spec("swagger2", A, 4)],
            SCHEDULE,
            Duration::ZERO,
            Anchor::default(),
        );
        assert_eq!(plan.steps, vec![Step::Keep { index: 0 }]);
    }

    #[test]
    fn left_out_upstreams_drain_at_weight_zero_after_the_wanted_ones() {
        let current = [
            current(A, 1, false),
            current(B, 1, true),
            current(C, 1, false),
        ];
        let plan = plan(
            &current,
            vec![spec("swagger2", C, 1)],
            SCHEDULE,
            Duration::ZERO,
            Anchor::default(),
        );
        assert_eq!(plan.steps[0], Step::Keep { index: 2 });
        let Step::Drain { index: 0, ramp } = plan.steps[1] else {
            panic!("{plan:?}")
        };
        assert_eq!(ramp.effective(Duration::ZERO), 0.0);
        assert_eq!(plan.steps[2], Step::StillDraining { index: 1 });
        let diff = plan.summary(&current);
        assert_eq!(diff.removed, vec![A.to_owned()], "B is not removed twice");
        assert_eq!(diff.unchanged, vec![C.to_owned()]);
    }

    #[test]
    fn a_draining_upstream_wanted_again_revives_at_its_new_weight_at_once() {
        let current = [current(A, 1, true)];
        let plan = plan(
            &current,
            vec![spec("swagger2", A, 7)],
            SCHEDULE,
            Duration::ZERO,
            Anchor::default(),
        );
        let [Step::Revive {
            weight: 7, ramp, ..
        }] = plan.steps.as_slice()
        else {
            panic!("{plan:?}")
        };
        assert_eq!(ramp.effective(Duration::ZERO), 7.0);
    }

    #[test]
    fn another_service_type_at_the_same_location_replaces_the_old_one() {
        let current = [current(A, 1, false)];
        let plan = plan(
            &current,
            vec![spec("swagger1", A, 1)],
            SCHEDULE,
            Duration::ZERO,
            Anchor::default(),
        );
        let [Step::Add { replaces, .. }] = plan.steps.as_slice() else {
            panic!("{plan:?}")
        };
        assert_eq!(*replaces, Some(0));
        let diff = plan.summary(&current);
        assert_eq!(diff.added, vec![A.to_owned()]);
        assert!(diff.removed.is_empty(), "replaced, not drained");
    }

    #[test]
    fn an_anchored_change_ramps_from_the_recorded_weights_and_time() {
        let now = Duration::from_secs(10);
        let current = [current(A, 100, false), current(B, 0, false)];
        let from = BTreeMap::from([(A.to_owned(), 80.0), (B.to_owned(), 20.0)]);
        // Recorded 2.5 s ago: two steps of four are done already.
        let anchor = Anchor {
            started_at: Some(now - Duration::from_millis(2500)),
            from: Some(&from),
        };
        let plan = plan(
            &current,
            vec![spec("swagger2", A, 0), spec("swagger2", B, 100)],
            SCHEDULE,
            now,
            anchor,
        );
        let [Step::Retarget { ramp: a, .. }, Step::Retarget { ramp: b, .. }] =
            plan.steps.as_slice()
        else {
            panic!("{plan:?}")
        };
        assert_eq!(a.effective(now), 40.0);
        assert_eq!(b.effective(now), 60.0);
        assert_eq!(a.next_step_at(now), Some(now + Duration::from_millis(500)));
        assert_eq!(a.effective(now + Duration::from_secs(2)), 0.0);
    }

    #[test]
    fn an_upstream_missing_from_the_record_ramps_from_its_own_weight() {
        let now = Duration::from_secs(10);
        let current = [current(A, 100, false)];
        let from = BTreeMap::new();
        let anchor = Anchor {
            started_at: Some(now - Duration::from_secs(1)),
            from: Some(&from),
        };
        let plan = plan(
            &current,
            vec![spec("swagger2", A, 0)],
            SCHEDULE,
            now,
            anchor,
        );
        let [Step::Retarget { ramp, .. }] = plan.steps.as_slice() else {
            panic!("{plan:?}")
        };
        assert_eq!(ramp.effective(now), 75.0, "one step done, from 100");
    }

    #[test]
    fn an_instance_started_mid_ramp_joins_it_and_new_upstreams_get_their_weight() {
        let now = Duration::from_secs(100);
        let from = BTreeMap::from([(A.to_owned(), 0.0)]);
        let anchor = Anchor {
            started_at: Some(now - Duration::from_secs(3)),
            from: Some(&from),
        };
        let plan = plan(
            &[],
            vec![spec("swagger2", A, 8), spec("swagger2", B, 5)],
            SCHEDULE,
            now,
            anchor,
        );
        let [Step::Add { ramp: a, .. }, Step::Add { ramp: b, .. }] = plan.steps.as_slice() else {
            panic!("{plan:?}")
        };
        assert_eq!(a.effective(now), 6.0, "three of four steps, as elsewhere");
        assert_eq!(b.effective(now), 5.0, "not in the record: at once");
    }

    #[test]
    fn an_anchor_in_the_future_is_capped_at_now() {
        let now = Duration::from_secs(10);
        let current = [current(A, 4, false)];
        let anchor = Anchor {
            started_at: Some(now + Duration::from_secs(60)),
            from: None,
        };
        let plan = plan(
            &current,
            vec![spec("swagger2", A, 0)],
            SCHEDULE,
            now,
            anchor,
        );
        let [Step::Retarget { ramp, .. }] = plan.steps.as_slice() else {
            panic!("{plan:?}")
        };
        assert_eq!(ramp.next_step_at(now), Some(now + Duration::from_secs(1)));
    }
}
