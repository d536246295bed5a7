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
/// - an empty picker has nothing to pick and returns `None`.
#[derive(Debug)]
pub struct WeightedPicker {
    /// Upper bound of each candidate's interval on the `u64` circle, ascending; the last is
    /// `u64::MAX`. Zero-weight candidates get an empty interval.
    bounds: Box<[u64]>,
    counter: AtomicU64,
}

impl WeightedPicker {
    /// A picker over `weights`, starting its sequence at `start` (carry the previous picker's
    /// [`position`](Self::position) over to keep the sequence going across table swaps).
    pub fn new(weights: &[f64], start: u64) -> Self {
        let clean: Vec<f64> = weights
            .iter()
            .map(|w| if w.is_finite() && *w > 0.0 { *w } else { 0.0 })
            .collect();
        let total: f64 = clean.iter().sum();
        let effective: Vec<f64> = if total > 0.0 {
            clean
        } else {
            vec![1.0; weights.len()]
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

    /// The next candidate among `allowed` (indices into this picker's candidates), weighted the
    /// same way; `None` when `allowed` is empty. Out-of-range indices are ignored.
    pub fn pick_among(&self, allowed: &[usize]) -> Option<usize> {
        let widths: Vec<(usize, u64)> = allowed
            .iter()
            .filter(|i| **i < self.bounds.len())
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
    fn position_carries_over() {
        let picker = WeightedPicker::new(&[1.0, 1.0], 7);
        picker.pick();
        assert_eq!(picker.position(), 8);
    }
}
