//! The golden-ratio weighted picker.

use std::sync::atomic::{AtomicU64, Ordering};

/// 2⁶⁴ / φ, the Weyl increment: successive multiples of it, read as fractions of 2⁶⁴, form the
/// golden-ratio sequence.
const GOLDEN_STEP: u64 = 0x9E37_79B9_7F4A_7C15;

/// Picks candidate indices in proportion to their weights.
///
/// Edge cases, by design:
/// - weights that are zero, negative or not finite count as zero;
/// - a zero-weight candidate is never picked while any candidate has a positive weight;
/// - when every weight is zero, candidates are picked equally (the gateway's "weight 0 still
///   serves when nothing else can" rule);
/// - an empty picker has nothing to pick and returns `None`;
/// - a draining candidate (see [`with_draining`](Self::with_draining)) is picked only when no
///   candidate that is not draining can serve, whatever the others' weights: a non-draining
///   candidate at weight 0 still goes first (SPEC §4: removing A while B ramps up from 0 sends
///   every new request to B).
#[derive(Debug)]
pub struct WeightedPicker {
    /// Upper bound of each candidate's interval on the `u64` circle, ascending; the last is
    /// `u64::MAX`. Zero-weight candidates get an empty interval.
    bounds: Box<[u64]>,
    /// Per candidate: draining (served only when no other candidate can be).
    draining: Box<[bool]>,
    counter: AtomicU64,
}

impl WeightedPicker {
    /// A picker over `weights`, starting its sequence at `start` (carry the previous picker's
    /// [`position`](Self::position) over to keep the sequence going across table swaps).
    pub fn new(weights: &[f64], start: u64) -> Self {
        Self::with_draining(weights, &[], start)
    }

    /// A picker over `weights` where `draining[i]` marks candidate `i` as draining (a missing
    /// entry means not draining). While any candidate is not draining, draining ones get no
    /// picks from [`pick`](Self::pick), and [`pick_among`](Self::pick_among) gives them picks
    /// only when `allowed` holds no candidate that is not draining. Among the candidates that
    /// serve, weights apply as in [`new`](Self::new): all at zero share equally.
    pub fn with_draining(weights: &[f64], draining: &[bool], start: u64) -> Self {
        let draining: Box<[bool]> = (0..weights.len())
            .map(|i| draining.get(i).copied().unwrap_or(false))
            .collect();
        let any_serving = draining.iter().any(|d| !d);
        let clean: Vec<f64> = weights
            .iter()
            .zip(draining.iter())
            .map(|(w, drains)| {
                let usable = w.is_finite() && *w > 0.0 && !(any_serving && *drains);
                if usable {
                    *w
                } else {
                    0.0
                }
            })
            .collect();
        let total: f64 = clean.iter().sum();
        let effective: Vec<f64> = if total > 0.0 {
            clean
        } else {
            // Every serving candidate is at zero: they share equally, and the draining ones
            // still wait unless nothing else is there.
            draining
                .iter()
                .map(|drains| if any_serving && *drains { 0.0 } else { 1.0 })
                .collect()
        };
        let total: f64 = effective.iter().sum();
        let mut bounds = Vec::with_capacity(effective.len());
        let mut cumulative = 0.0;
        for weight in &effective {
            cumulative += weight;
            // Scale to the u64 circle; f64 → u64 casts saturate, so this cannot overflow.
            bounds.push(((cumulative / total) * u64::MAX as f64) as u64);
        }
        // The last positive candidate must own the very top of the circle despite rounding.
        if let Some(last) = effective.iter().rposition(|w| *w > 0.0) {
            for bound in &mut bounds[last..] {
                *bound = u64::MAX;
            }
        }
        WeightedPicker {
            bounds: bounds.into_boxed_slice(),
            draining,
            counter: AtomicU64::new(start),
        }
    }

    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    /// True when there is no candidate.
    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
    }

    /// How many picks this picker has made since its start value.
    pub fn position(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }

    /// The next candidate index, or `None` when there are no candidates.
    pub fn pick(&self) -> Option<usize> {
        if self.bounds.is_empty() {
            return None;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Some(self.index_of(point(n)))
    }

    /// True when candidate `index` is draining; false for an out-of-range index.
    pub fn is_draining(&self, index: usize) -> bool {
        self.draining.get(index).copied().unwrap_or(false)
    }

    /// The next candidate among `allowed` (indices into this picker's candidates), weighted the
    /// same way; `None` when `allowed` is empty. Out-of-range indices are ignored. Draining
    /// candidates of `allowed` are picked only when every allowed candidate is draining (then
    /// equally, their weight being zero).
    pub fn pick_among(&self, allowed: &[usize]) -> Option<usize> {
        let in_range = |i: &&usize| **i < self.bounds.len();
        let any_serving = allowed.iter().filter(in_range).any(|&i| !self.draining[i]);
        let widths: Vec<(usize, u64)> = allowed
            .iter()
            .filter(in_range)
            .filter(|&&i| !(any_serving && self.draining[i]))
            .map(|&i| (i, self.width(i)))
            .collect();
        if widths.is_empty() {
            return None;
        }
        let total: u128 = widths.iter().map(|(_, w)| *w as u128).sum();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        if total == 0 {
            // Every allowed candidate has weight zero: share equally.
            return Some(widths[(n % widths.len() as u64) as usize].0);
        }
        let target = (point(n) as u128 * total) >> 64;
        let mut cumulative = 0u128;
        for (index, width) in &widths {
            cumulative += *width as u128;
            if target < cumulative {
                return Some(*index);
            }
        }
        widths.last().map(|(i, _)| *i)
    }

    fn width(&self, index: usize) -> u64 {
        let low = if index == 0 {
            0
        } else {
            self.bounds[index - 1]
        };
        self.bounds[index] - low
    }

    fn index_of(&self, point: u64) -> usize {
        // First interval whose upper bound exceeds the point; `u64::MAX` itself belongs to the
        // last positive candidate.
        let index = self.bounds.partition_point(|bound| *bound <= point);
        index.min(self.bounds.len() - 1)
    }
}

fn point(n: u64) -> u64 {
    n.wrapping_mul(GOLDEN_STEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(picker: &WeightedPicker, picks: usize) -> Vec<usize> {
        let mut counts = vec![0; picker.len()];
        for _ in 0..picks {
            counts[picker.pick().unwrap()] += 1;
        }
        counts
    }

    fn assert_shares(weights: &[f64], picks: usize, tolerance: f64) {
        let picker = WeightedPicker::new(weights, 0);
        let counts = counts(&picker, picks);
        let total: f64 = weights.iter().sum();
        for (i, weight) in weights.iter().enumerate() {
            let expected = weight / total;
            let got = counts[i] as f64 / picks as f64;
            assert!(
                (got - expected).abs() <= tolerance,
                "candidate {i}: share {got:.4}, expected {expected:.4} (weights {weights:?})"
            );
        }
    }

    #[test]
    fn three_to_one_is_exact_within_a_percent() {
        assert_shares(&[3.0, 1.0], 4_000, 0.01);
    }

    #[test]
    fn skewed_and_many_weights_hold_shares() {
        assert_shares(&[1.0, 99.0], 10_000, 0.01);
        let hundred: Vec<f64> = (1..=100).map(|w| w as f64).collect();
        assert_shares(&hundred, 10_000, 0.01);
        assert_shares(&[0.5, 2.25, 7.25], 10_000, 0.01);
    }

    #[test]
    fn zero_weight_gets_nothing_while_others_are_positive() {
        let picker = WeightedPicker::new(&[0.0, 2.0, 1.0], 0);
        assert_eq!(counts(&picker, 3_000)[0], 0);
    }

    #[test]
    fn all_zero_weights_share_equally() {
        let picker = WeightedPicker::new(&[0.0, 0.0, 0.0], 0);
        let counts = counts(&picker, 3_000);
        for count in counts {
            assert!((950..=1050).contains(&count), "{count}");
        }
    }

    #[test]
    fn empty_picker_picks_nothing() {
        let picker = WeightedPicker::new(&[], 0);
        assert_eq!(picker.pick(), None);
        assert_eq!(picker.pick_among(&[0]), None);
    }

    #[test]
    fn picks_are_smooth_over_any_hundred_consecutive() {
        for weights in [
            vec![10.0, 1.0],
            vec![3.0, 1.0],
            vec![1.0, 2.0, 3.0, 4.0],
            vec![1.0, 99.0],
        ] {
            let picker = WeightedPicker::new(&weights, 0);
            let picks: Vec<usize> = (0..5_000).map(|_| picker.pick().unwrap()).collect();
            let total: f64 = weights.iter().sum();
            for window in picks.windows(100) {
                for (i, weight) in weights.iter().enumerate() {
                    let count = window.iter().filter(|p| **p == i).count() as f64;
                    let share = 100.0 * weight / total;
                    assert!(
                        (count - share).abs() <= 3.0,
                        "weights {weights:?}: candidate {i} got {count} of 100, share {share}"
                    );
                }
            }
        }
    }

    #[test]
    fn no_long_runs_for_a_heavy_candidate() {
        let picker = WeightedPicker::new(&[10.0, 1.0], 0);
        let picks: Vec<usize> = (0..1_100).map(|_| picker.pick().unwrap()).collect();
        let longest = picks
            .chunk_by(|a, b| a == b)
            .filter(|run| run[0] == 0)
            .map(|run| run.len())
            .max()
            .unwrap();
        // Gaps of the golden-ratio sequence take at most three lengths (the three-gap theorem),
        // so runs stay close to the ideal 10; an expanded list walked in order would give 10
        // every cycle and a shuffled one up to 20.
        assert!(longest <= 13, "weight-10 candidate ran {longest} in a row");
    }

    #[test]
    fn pick_among_respects_the_subset_and_weights() {
        let picker = WeightedPicker::new(&[1.0, 3.0, 5.0], 0);
        let mut counts = [0usize; 3];
        for _ in 0..4_000 {
            counts[picker.pick_among(&[0, 1]).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0);
        let share = counts[1] as f64 / 4_000.0;
        assert!((share - 0.75).abs() <= 0.01, "{share}");
    }

    #[test]
    fn pick_among_zero_weights_shares_equally() {
        let picker = WeightedPicker::new(&[0.0, 0.0, 4.0], 0);
        let mut counts = [0usize; 3];
        for _ in 0..1_000 {
            counts[picker.pick_among(&[0, 1]).unwrap()] += 1;
        }
        assert_eq!(counts, [500, 500, 0]);
    }

    #[test]
    fn a_draining_candidate_waits_while_a_serving_one_is_at_zero() {
        // A drains (weight 0), B is at 0 too: B takes everything, not half.
        let picker = WeightedPicker::with_draining(&[0.0, 0.0], &[true, false], 0);
        assert_eq!(counts(&picker, 1_000), [0, 1_000]);
        assert!(picker.is_draining(0) && !picker.is_draining(1) && !picker.is_draining(9));
        // Zero-weight serving candidates share equally; the draining one still waits.
        let picker = WeightedPicker::with_draining(&[0.0, 0.0, 0.0], &[false, true, false], 0);
        assert_eq!(counts(&picker, 1_000), [500, 0, 500]);
        // A draining candidate given a positive weight by mistake still waits.
        let picker = WeightedPicker::with_draining(&[5.0, 1.0], &[true, false], 0);
        assert_eq!(counts(&picker, 1_000), [0, 1_000]);
    }

    #[test]
    fn draining_candidates_serve_only_when_nothing_else_can() {
        let picker = WeightedPicker::with_draining(&[0.0, 0.0, 0.0], &[true, true, false], 0);
        // The serving candidate is excluded (a retry, a negotiated subset): the draining
        // ones share what is left equally.
        let mut among = [0usize; 3];
        for _ in 0..1_000 {
            among[picker.pick_among(&[0, 1]).unwrap()] += 1;
        }
        assert_eq!(among, [500, 500, 0]);
        // With the serving candidate allowed, it takes every pick.
        for _ in 0..1_000 {
            assert_eq!(picker.pick_among(&[0, 1, 2]), Some(2));
        }
        // Every candidate draining: they share.
        let all = WeightedPicker::with_draining(&[0.0, 0.0], &[true, true], 0);
        assert_eq!(counts(&all, 1_000), [500, 500]);
        // A short `draining` slice means "not draining" for the rest.
        let short = WeightedPicker::with_draining(&[0.0, 0.0], &[true], 0);
        assert_eq!(counts(&short, 100), [0, 100]);
    }

    #[test]
    fn removing_a_while_b_ramps_up_from_zero_sends_every_request_to_b() {
        use crate::{RampSchedule, WeightRamp};
        use std::time::Duration;
        let schedule = RampSchedule {
            step_count: 4,
            step_duration: Duration::from_secs(3),
        };
        // A served at 10; at t=100 s the set is replaced by B at 10: A drains at 0 at once,
        // B (new to the ramp at 0) moves 0 → 10 in four steps.
        let mut a = WeightRamp::fixed(10.0, schedule);
        let mut b = WeightRamp::fixed(0.0, schedule);
        let change = Duration::from_secs(100);
        a.jump(0.0);
        b.retarget(10.0, change);
        let mut saw_zero = false;
        for tenth in 0..=150 {
            let now = change + Duration::from_millis(100 * tenth);
            let weights = [a.effective(now), b.effective(now)];
            saw_zero |= weights[1] == 0.0;
            let picker = WeightedPicker::with_draining(&weights, &[true, false], tenth);
            for _ in 0..50 {
                assert_eq!(
                    picker.pick(),
                    Some(1),
                    "at {now:?} with weights {weights:?}"
                );
            }
        }
        assert!(saw_zero, "the first step is a whole step-duration away");
        // B fails (excluded): then, and only then, the draining A serves.
        let picker = WeightedPicker::with_draining(&[0.0, 0.0], &[true, false], 0);
        assert_eq!(picker.pick_among(&[0]), Some(0));
    }

    #[test]
    fn position_carries_over() {
        let picker = WeightedPicker::new(&[1.0, 1.0], 7);
        picker.pick();
        assert_eq!(picker.position(), 8);
    }
}
