//! Lock-free request metrics and their Prometheus text rendering.
//!
//! Counters live in the objects they describe ([`RequestStats`] inside each upstream handle and
//! each domain), so the request path only does relaxed atomic adds; rendering walks the current
//! table.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the duration histogram buckets.
pub const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Response counts by status class and a duration histogram.
#[derive(Debug, Default)]
pub struct RequestStats {
    /// Index 0 = 1xx … 4 = 5xx.
    by_class: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS.len()],
    /// No separate count: it is the sum of `by_class`, one atomic add fewer per response.
    sum_micros: AtomicU64,
}

impl RequestStats {
    /// Records one response.
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Responses counted so far, all classes.
    pub fn total(&self) -> u64 {
        self.by_class
            .iter()
            .map(|counter| counter.load(Ordering::Relaxed))
            .sum()
    }

    /// Writes `buckler_requests_total` samples with the given label set (`domain="..",upstream=".."`).
    pub fn render_counts(&self, out: &mut String, labels: &str) {
        for (i, counter) in self.by_class.iter().enumerate() {
            let value = counter.load(Ordering::Relaxed);
            if value > 0 {
                let _ = writeln!(
                    out,
                    "{}{{{labels},class=\"{}xx\"}} {value}",
                    crate::names::REQUESTS_TOTAL,
                    i + 1
                );
            }
        }
    }

    /// Writes the histogram samples with the given label set.
    pub fn render_histogram(&self, out: &mut String, labels: &str) {
        let name = crate::names::REQUEST_DURATION_SECONDS;
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = self.total();
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Escapes a Prometheus label value.
pub fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_classes_and_cumulative_buckets() {
        let stats = RequestStats::default();
        stats.record(200, Duration::from_millis(2));
        stats.record(502, Duration::from_millis(30));
        stats.record(204, Duration::from_secs(20));
        let mut out = String::new();
        stats.render_counts(&mut out, "domain=\"d\",upstream=\"u\"");
        assert!(
            out.contains("buckler_requests_total{domain=\"d\",upstream=\"u\",class=\"2xx\"} 2"),
            "{out}"
        );
        assert!(out.contains("class=\"5xx\"} 1"), "{out}");
        let mut hist = String::new();
        stats.render_histogram(&mut hist, "domain=\"d\"");
        assert!(hist.contains("le=\"0.0025\"} 1"), "{hist}");
        assert!(hist.contains("le=\"0.05\"} 2"), "{hist}");
        assert!(hist.contains("le=\"10\"} 2"), "{hist}");
        assert!(hist.contains("le=\"+Inf\"} 3"), "{hist}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
