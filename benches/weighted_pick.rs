//! Weighted pick over 2, 10, 100 and 1,000 upstreams.

/// The allocator the `buckler` binary ships with, so allocation-heavy paths cost here what
/// they cost in production.
#[global_allocator]
static ALLOCATOR: buckler_alloc::Allocator = buckler_alloc::Allocator;

use buckler_balance::WeightedPicker;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("weighted_pick");
    for size in [2usize, 10, 100, 1_000] {
        let weights: Vec<f64> = (0..size).map(|i| 1.0 + (i % 7) as f64 * 0.5).collect();
        let picker = WeightedPicker::new(&weights, 0);
        group.bench_with_input(BenchmarkId::from_parameter(size), &picker, |b, picker| {
            b.iter(|| black_box(picker.pick()))
        });
    }
    group.finish();
}

criterion_group!(benches, pick);
criterion_main!(benches);
